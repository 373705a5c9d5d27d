//! What every store must do with a keyed event chain (issue 8): refuse forged events
//! without storing them, check gap fillers against both neighbours, and mark the chain of
//! a host without a key as unauthenticated. Run by each backend's tests.

use std::collections::BTreeMap;

use driftwatch_common::api::v1::{ChangeKind, DriftEvent, SeenBy, SubjectKey, SubjectState};
use driftwatch_common::chain_key::ChainKey;
use driftwatch_common::hash::ContentHash;
use uuid::Uuid;

use super::conformance_evidence::{enroll, key_of};
use super::*;
use crate::chain::{ChainProblem, Forgery};
use crate::matcher::Outcome;

const T0: Millis = 1_800_000_000_000;

/// Event `seq` of `host_id`, linked to `prev`, MAC'd with `key` (the key of seq 1).
fn event(host_id: Uuid, seq: u64, prev: ContentHash, key: Option<&ChainKey>) -> DriftEvent {
    let mut event = DriftEvent {
        id: Uuid::now_v7(),
        host_id,
        seq,
        prev_hash: prev,
        subject: SubjectKey(format!("package:p{seq}")),
        kind: ChangeKind::Content,
        changed: vec!["version".into()],
        before: None,
        after: Some(SubjectState::Fields {
            fields: BTreeMap::from([("version".to_owned(), seq.to_string())]),
        }),
        diff: None,
        summary: None,
        actor: None,
        seen_by: SeenBy::Watch,
        observed_at: time::OffsetDateTime::from_unix_timestamp(T0 / 1000).unwrap(),
        provenance: None,
        related: None,
        mac: None,
    };
    if let Some(key) = key {
        event.seal(&key.forward(seq - 1));
    }
    event
}

fn untraced(events: &[&DriftEvent]) -> Vec<Decided> {
    events
        .iter()
        .map(|e| Decided {
            event: (*e).clone(),
            outcome: Outcome::Untraced,
            event_time: T0,
            spool: SpoolTime {
                spooled_after: T0,
                spooled_before: T0,
                ..SpoolTime::default()
            },
        })
        .collect()
}

/// The chain verdict stored for `subject` of `host_id`.
async fn stored_chain<S: Store>(store: &S, host_id: Uuid, subject: &str) -> Option<String> {
    let items = store
        .drift_items(DriftFilter {
            host_id: Some(host_id),
            ..DriftFilter::default()
        })
        .await
        .unwrap();
    let item = items.iter().find(|d| d.subject == subject)?;
    let events = store.events(item.id).await.unwrap();
    events.first().map(|e| e.chain.clone())
}

pub async fn story<S: Store>(store: S) {
    let host = enroll(&store, "keyed-1", 41).await;
    assert!(store.host(host.id).await.unwrap().chain_keyed);
    let key = key_of(host.id);
    let one = event(host.id, 1, DriftEvent::GENESIS, Some(&key));
    let two = event(host.id, 2, one.chain_hash(), Some(&key));
    let three = event(host.id, 3, two.chain_hash(), Some(&key));
    let four = event(host.id, 4, three.chain_hash(), Some(&key));

    // Authentic and in order.
    let outcome = store.ingest(host.id, untraced(&[&one]), T0).await.unwrap();
    assert_eq!((outcome.accepted, outcome.rejected), (1, 0));
    assert_eq!(
        stored_chain(&store, host.id, "package:p1").await.as_deref(),
        Some("ok")
    );

    // Forged: no MAC, or the MAC of another number. Refused, not stored, alerted.
    let mut bare = two.clone();
    bare.mac = None;
    let mut stale = event(host.id, 2, one.chain_hash(), None);
    stale.seal(&key);
    let outcome = store
        .ingest(host.id, untraced(&[&bare, &stale]), T0)
        .await
        .unwrap();
    assert_eq!((outcome.accepted, outcome.rejected), (0, 2));
    let reasons: Vec<Forgery> = outcome
        .chain_problems
        .iter()
        .filter_map(|p| match p {
            ChainProblem::Forged { reason, seq: 2, .. } => Some(*reason),
            _ => None,
        })
        .collect();
    assert_eq!(reasons, [Forgery::MissingMac, Forgery::WrongMac]);
    assert_eq!(outcome.last_seq, 1, "the head did not move");
    assert_eq!(stored_chain(&store, host.id, "package:p2").await, None);

    // A gap, then a filler that does not fit the event after the hole: a splice.
    let outcome = store.ingest(host.id, untraced(&[&four]), T0).await.unwrap();
    assert_eq!(
        outcome.chain_problems,
        [ChainProblem::Gap { from: 2, to: 3 }]
    );
    let mut astray = event(host.id, 3, ContentHash([5; 32]), None);
    astray.seal(&key.forward(2));
    let outcome = store
        .ingest(host.id, untraced(&[&two, &astray]), T0)
        .await
        .unwrap();
    assert_eq!(outcome.accepted, 2);
    assert!(
        matches!(
            outcome.chain_problems.as_slice(),
            [ChainProblem::Splice {
                seq: 3,
                predecessor_differs: true,
                successor_differs: true,
                ..
            }]
        ),
        "{:?}",
        outcome.chain_problems
    );
    assert_eq!(
        stored_chain(&store, host.id, "package:p2").await.as_deref(),
        Some("late")
    );
    assert_eq!(
        stored_chain(&store, host.id, "package:p3").await.as_deref(),
        Some("splice")
    );
    // Another event at a number already held: a conflict, refused (it must not move drift).
    let mut rival = event(host.id, 1, DriftEvent::GENESIS, Some(&key));
    rival.kind = ChangeKind::Restored;
    let outcome = store
        .ingest(host.id, untraced(&[&rival]), T0)
        .await
        .unwrap();
    assert_eq!((outcome.accepted, outcome.rejected), (0, 1));
    assert_eq!(outcome.chain_problems, [ChainProblem::Conflict { seq: 1 }]);
    // The holes are filled: the next number still verifies from the stored keys.
    let five = event(host.id, 5, four.chain_hash(), Some(&key));
    let outcome = store.ingest(host.id, untraced(&[&five]), T0).await.unwrap();
    assert_eq!((outcome.accepted, outcome.chain_problems.len()), (1, 0));

    // A host without a chain key (enrolled before keys existed): accepted, but marked.
    let token = EnrollmentTokenRecord {
        id: Uuid::now_v7(),
        digest: [42; 32],
        created_by: "root".into(),
        created_at: T0,
        expires_at: T0 + 60_000,
        uses_left: 1,
    };
    let audit = |action: &str| NewAudit::new(T0, "root", action, "test", serde_json::json!({}));
    store
        .insert_enrollment_token(token.clone(), audit("enrollment_token.created"))
        .await
        .unwrap();
    let old = Host {
        id: Uuid::now_v7(),
        hostname: "old-1".into(),
        chain_keyed: false,
        ..host.clone()
    };
    let credential = TokenRecord {
        id: Uuid::now_v7(),
        name: "old-1".into(),
        role: crate::identity::Role::Agent,
        host_id: Some(old.id),
        digest: [43; 32],
        created_at: T0,
        created_by: "test".into(),
        revoked_at: None,
        person_id: None,
        person: None,
        created_by_token: None,
    };
    store
        .enroll(
            token.id,
            [42; 32],
            old.clone(),
            credential,
            None,
            audit("host.enrolled"),
        )
        .await
        .unwrap();
    assert!(!store.host(old.id).await.unwrap().chain_keyed);
    let plain = event(old.id, 1, DriftEvent::GENESIS, None);
    let outcome = store.ingest(old.id, untraced(&[&plain]), T0).await.unwrap();
    assert_eq!((outcome.accepted, outcome.rejected), (1, 0));
    assert_eq!(
        stored_chain(&store, old.id, "package:p1").await.as_deref(),
        Some("unauthenticated")
    );
}
