//! The live drift stream's cursor every [`Store`] must keep alike
//! ([`Store::drift_changes`]), as one story beside [`super::conformance::story`]: changes
//! come oldest first after the cursor, bounded, with the head; and a number is never handed
//! out twice, even after retention deleted the newest rows (a client's `Last-Event-ID`
//! would otherwise skip the change that reused it).
//!
//! # Panics
//!
//! On the first behaviour that differs: it is a test.

use serde_json::json;

use super::conformance_evidence::{enroll, event};
use super::*;
use crate::audit::NewAudit;
use crate::drift::ResolutionCategory;
use crate::matcher::Outcome;
use crate::retention::PrunePlan;

const T0: Millis = 1_800_000_000_000;

fn decided(event: &DriftEvent) -> Decided {
    let at = crate::clock::from_offset(event.observed_at);
    Decided {
        event_time: at,
        spool: crate::spool_time::SpoolTime {
            spooled_after: at,
            spooled_before: at,
            ..Default::default()
        },
        event: event.clone(),
        outcome: Outcome::Untraced,
    }
}

pub async fn story<S: Store>(store: S) {
    let empty = store.drift_changes(0, 10).await.unwrap();
    assert_eq!(empty, DriftChanges::default(), "nothing yet: head 0");

    let web = enroll(&store, "web-1", 41).await;
    let first = event(web.id, None, "package:a", T0 + 1000);
    let second = event(web.id, Some(&first), "package:b", T0 + 2000);
    store
        .ingest(web.id, vec![decided(&first), decided(&second)], T0 + 5000)
        .await
        .unwrap();
    let all = store.drift_changes(0, 10).await.unwrap();
    assert_eq!(all.changes.len(), 2, "{all:?}");
    let (a, b) = (&all.changes[0], &all.changes[1]);
    assert!(a.seq < b.seq, "oldest first: {all:?}");
    assert_eq!(all.head, b.seq);
    assert_eq!(
        (a.subject.as_str(), b.subject.as_str()),
        ("package:a", "package:b")
    );
    assert_eq!(a.hostname, "web-1");
    assert_eq!(a.host_id, web.id);
    assert_eq!((a.from, a.to), (None, DriftStatus::Open));
    assert_eq!(a.at, T0 + 5000);
    assert_eq!(a.review_reason.as_deref(), Some("untraced"));

    // Bounded, and after the cursor only; the head is the same either way.
    let one = store.drift_changes(0, 1).await.unwrap();
    assert_eq!((one.changes.len(), one.head), (1, b.seq));
    let after_a = store.drift_changes(a.seq, 10).await.unwrap();
    assert_eq!(after_a.changes, vec![b.clone()]);
    let none = store.drift_changes(0, 0).await.unwrap();
    assert_eq!((none.changes.len(), none.head), (0, b.seq));

    let resolved_at = T0 + 10_000;
    store
        .resolve_drift(
            a.drift_id,
            Resolution {
                category: ResolutionCategory::FalsePositive,
                comment: "test".into(),
                ticket: None,
                by: "eve".into(),
                at: resolved_at,
            },
            NewAudit::new(resolved_at, "eve", "drift.resolved", "test", json!({})),
        )
        .await
        .unwrap();
    let after_b = store.drift_changes(b.seq, 10).await.unwrap();
    assert_eq!(after_b.changes.len(), 1);
    let resolve = &after_b.changes[0];
    assert_eq!(
        (resolve.from, resolve.to, resolve.by.as_str()),
        (Some(DriftStatus::Open), DriftStatus::Resolved, "eve")
    );
    assert_eq!(resolve.drift_id, a.drift_id);

    // Retention removes the resolved item with its history, the newest row among them.
    let plan = PrunePlan {
        delivered_alerts_before: None,
        resolved_drift_before: Some(resolved_at + 1),
    };
    let counts = store.prune(plan, T0 + 20_000).await.unwrap();
    assert_eq!(counts.drift, 1, "{counts:?}");
    let head = store.drift_changes(0, 0).await.unwrap().head;
    assert_eq!(
        head, resolve.seq,
        "the head survives the deletion of its row"
    );

    // The next change gets a number no one saw: a client at `resolve.seq` receives it.
    let third = event(web.id, Some(&second), "package:c", T0 + 30_000);
    store
        .ingest(web.id, vec![decided(&third)], T0 + 31_000)
        .await
        .unwrap();
    let after = store.drift_changes(resolve.seq, 10).await.unwrap();
    assert_eq!(after.changes.len(), 1, "{after:?}");
    assert!(after.changes[0].seq > resolve.seq);
    assert_eq!(after.changes[0].subject, "package:c");

    // The open item of package:c changes again: one more change (open → open), so a
    // person watching the inbox sees it; the item keeps its id.
    let again = event(web.id, Some(&third), "package:c", T0 + 40_000);
    store
        .ingest(web.id, vec![decided(&again)], T0 + 41_000)
        .await
        .unwrap();
    let opened = &after.changes[0];
    let further = store.drift_changes(opened.seq, 10).await.unwrap();
    assert_eq!(further.changes.len(), 1, "{further:?}");
    let changed = &further.changes[0];
    assert_eq!(
        (changed.from, changed.to, changed.drift_id),
        (Some(DriftStatus::Open), DriftStatus::Open, opened.drift_id)
    );
    assert_eq!((changed.at, further.head), (T0 + 41_000, changed.seq));
}
