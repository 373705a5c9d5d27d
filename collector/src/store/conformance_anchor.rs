//! What every store must do with anchored baselines (`crate::anchor`): keep the state, tell
//! which roots a host was expected on, refuse a judgement made on a stale state, and record
//! each source (an accept, a re-baseline event) once.

use driftwatch_common::api::v1::BaselineAnchor;
use driftwatch_common::hash::ContentHash;
use serde_json::json;
use uuid::Uuid;

use super::*;
use crate::anchor::{self, AnchorState};

const T0: Millis = 1_800_000_000_000;

fn root(n: u8) -> BaselineAnchor {
    BaselineAnchor {
        root: ContentHash([n; 32]),
        created_at: "2026-12-01T00:00:00Z".into(),
    }
}

pub async fn story<S: Store>(store: S) {
    let host = super::conformance_evidence::enroll(&store, "web-1", 9).await;

    // Nothing known yet.
    let view = store
        .anchor(host.id, vec![root(1).root], vec![Uuid::now_v7()])
        .await
        .unwrap();
    assert_eq!(view, AnchorView::default());

    // Enrollment sets the first expected root; it is then known.
    let enrolled = anchor::at_enrollment(&root(1), T0);
    let change =
        |judged: &AnchorState, j: anchor::Judgement, alert: Option<NewAlert>| AnchorChange {
            host_id: host.id,
            judged: judged.clone(),
            state: j.state,
            moved: j.moved,
            alert,
            at: T0,
        };
    assert!(
        store
            .save_anchor(change(&AnchorState::default(), enrolled.clone(), None))
            .await
            .unwrap()
    );
    let view = store
        .anchor(host.id, vec![root(1).root, root(2).root], vec![])
        .await
        .unwrap();
    assert_eq!(view.state, enrolled.state);
    assert_eq!(view.known_roots, vec![root(1).root]);

    // A judgement made on a stale state is refused, and writes nothing.
    let stale = anchor::at_enrollment(&root(2), T0);
    assert!(matches!(
        store
            .save_anchor(change(&AnchorState::default(), stale, None))
            .await,
        Err(StoreError::Conflict(_))
    ));

    // A re-baseline moves the root once; the same event again is a retry, with its alert.
    let rebaseline = anchor::Rebaseline {
        event_id: Uuid::now_v7(),
        from: Some(root(1)),
        to: root(3),
    };
    let moved = anchor::on_rebaseline(&view.state, &rebaseline, false, T0 + 1);
    let alert = NewAlert {
        kind: "baseline_anchor".into(),
        host_id: Some(host.id),
        body: json!({"kind": "baseline_anchor"}),
    };
    assert!(
        store
            .save_anchor(change(&view.state, moved.clone(), Some(alert.clone())))
            .await
            .unwrap()
    );
    let after = store.anchor(host.id, vec![], vec![]).await.unwrap();
    assert_eq!(after.state, moved.state);
    assert!(
        !store
            .save_anchor(change(&after.state, moved, Some(alert)))
            .await
            .unwrap(),
        "the same source twice is a retry"
    );
    let alerts = store.alerts(10).await.unwrap();
    assert_eq!(
        alerts
            .iter()
            .filter(|a| a.kind == "baseline_anchor")
            .count(),
        1
    );
}
