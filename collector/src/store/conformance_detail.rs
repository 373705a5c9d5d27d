//! The drift detail every [`Store`] must read alike ([`Store::drift_record`], issue 11), as
//! one story beside [`super::conformance::story`]: the item, its own events, its history
//! (opened, resolved by whom and why) and the other drift of its host and subject, newest
//! first and bounded; another subject or host never appears.
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

const T0: Millis = 1_800_000_000_000;

fn untraced(event: &DriftEvent) -> Decided {
    let at = crate::clock::from_offset(event.observed_at);
    Decided {
        event_time: at,
        spool: crate::spool_time::SpoolTime {
            spooled_after: at - 1000,
            spooled_before: at,
            ..Default::default()
        },
        event: event.clone(),
        outcome: Outcome::Untraced,
    }
}

pub async fn story<S: Store>(store: S) {
    let web = enroll(&store, "web-1", 51).await;
    let db = enroll(&store, "db-1", 52).await;
    let first = event(web.id, None, "package:a", T0 + 1000);
    store
        .ingest(web.id, vec![untraced(&first)], T0 + 2000)
        .await
        .unwrap();
    let earlier = store.drift_items(DriftFilter::default()).await.unwrap()[0].clone();
    store
        .resolve_drift(
            earlier.id,
            Resolution {
                category: ResolutionCategory::FalsePositive,
                comment: "lab package".into(),
                ticket: None,
                by: "eve".into(),
                at: T0 + 3000,
            },
            NewAudit::new(T0 + 3000, "eve", "drift.resolved", "test", json!({})),
        )
        .await
        .unwrap();
    // The subject changes again (a new item), another subject, the same subject elsewhere.
    let again = event(web.id, Some(&first), "package:a", T0 + 4000);
    let other = event(web.id, Some(&again), "package:b", T0 + 4000);
    store
        .ingest(web.id, vec![untraced(&again), untraced(&other)], T0 + 5000)
        .await
        .unwrap();
    let elsewhere = event(db.id, None, "package:a", T0 + 4000);
    store
        .ingest(db.id, vec![untraced(&elsewhere)], T0 + 5000)
        .await
        .unwrap();
    let items = store.drift_items(DriftFilter::default()).await.unwrap();
    let latest = items
        .iter()
        .find(|d| d.host_id == web.id && d.subject == "package:a" && d.id != earlier.id)
        .unwrap()
        .clone();

    let record = store.drift_record(latest.id, 10).await.unwrap();
    assert_eq!(record.item, latest);
    let ids: Vec<Uuid> = record.events.iter().map(|e| e.event.id).collect();
    assert_eq!(ids, [again.id]);
    assert_eq!(record.history.len(), 1, "{:?}", record.history);
    assert_eq!(record.history[0].from, None);
    assert_eq!(record.history[0].to, DriftStatus::Open);
    assert_eq!(record.timeline.len(), 1, "{:?}", record.timeline);
    assert_eq!(record.timeline[0].id, earlier.id);
    assert_eq!(record.timeline[0].status, DriftStatus::Resolved);

    let record = store.drift_record(earlier.id, 10).await.unwrap();
    let resolved = record.history.last().unwrap();
    assert_eq!(
        (
            resolved.from,
            resolved.to,
            resolved.by.as_str(),
            resolved.at
        ),
        (
            Some(DriftStatus::Open),
            DriftStatus::Resolved,
            "eve",
            T0 + 3000
        )
    );
    assert_eq!(resolved.reason, "false_positive");
    assert_eq!(record.timeline.len(), 1);
    assert_eq!(record.timeline[0].id, latest.id);
    // Bounded.
    assert!(
        store
            .drift_record(earlier.id, 0)
            .await
            .unwrap()
            .timeline
            .is_empty()
    );
    assert!(matches!(
        store.drift_record(Uuid::now_v7(), 10).await,
        Err(StoreError::NotFound(_))
    ));
}
