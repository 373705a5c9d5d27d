//! Retention every [`Store`] must apply alike ([`Store::prune`]), as one story beside
//! [`super::conformance::story`]: only what the plan names goes, the cut-off is exclusive,
//! open drift and undelivered alerts stay, each prune that removed rows is one audit entry,
//! and the audit log itself is untouched.
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
use crate::retention::{PruneCounts, PrunePlan};

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
    let web = enroll(&store, "web-1", 41).await;
    let first = event(web.id, None, "package:a", T0 + 1000);
    let second = event(web.id, Some(&first), "package:b", T0 + 2000);
    store
        .ingest(web.id, vec![decided(&first), decided(&second)], T0 + 5000)
        .await
        .unwrap();
    let items = store.drift_items(DriftFilter::default()).await.unwrap();
    let item = |subject: &str| items.iter().find(|d| d.subject == subject).unwrap().clone();
    let (resolved, open) = (item("package:a"), item("package:b"));
    let resolved_at = T0 + 10_000;
    store
        .resolve_drift(
            resolved.id,
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

    // One alert delivered to its one sink, one not delivered.
    let alert = |n: u32| NewAlert {
        kind: "test".into(),
        host_id: Some(web.id),
        body: json!({ "n": n }),
    };
    store.insert_alert(alert(1), T0).await.unwrap();
    let delivered = store.alerts(10).await.unwrap()[0].id;
    store
        .record_delivery(DeliveryAttempt {
            alert_id: delivered,
            sink: "file".into(),
            at: T0 + 1000,
            error: None,
            next_attempt_at: T0 + 1000,
            sinks: vec!["file".into()],
            dead_letter: None,
        })
        .await
        .unwrap();
    store.insert_alert(alert(2), T0 + 2000).await.unwrap();

    let (log_before, head_before) = store.audit_log().await.unwrap();
    // The cut-off is exclusive: rows of exactly that instant stay, and nothing is audited.
    let at_the_edge = PrunePlan {
        delivered_alerts_before: Some(T0 + 1000),
        resolved_drift_before: Some(resolved_at),
    };
    assert_eq!(
        store.prune(at_the_edge, T0 + 20_000).await.unwrap(),
        PruneCounts::default()
    );
    assert_eq!(store.audit_head().await.unwrap(), head_before);

    let plan = PrunePlan {
        delivered_alerts_before: Some(T0 + 1001),
        resolved_drift_before: Some(resolved_at + 1),
    };
    let counts = store.prune(plan, T0 + 30_000).await.unwrap();
    assert_eq!(counts.drift, 1, "{counts:?}");
    assert_eq!(counts.events, 1, "{counts:?}");
    assert!(counts.drift_history >= 2, "opened and resolved: {counts:?}");
    assert_eq!(counts.alerts, 1, "{counts:?}");
    assert_eq!(counts.alert_deliveries, 1, "{counts:?}");

    assert!(matches!(
        store.drift_item(resolved.id).await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(store.events(resolved.id).await.unwrap(), vec![]);
    assert_eq!(store.drift_item(open.id).await.unwrap().id, open.id);
    assert_eq!(store.events(open.id).await.unwrap().len(), 1);
    let alerts = store.alerts(10).await.unwrap();
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].body["n"], 2, "the undelivered alert stays");
    assert_eq!(
        store.host(web.id).await.unwrap().stored_seq,
        2,
        "the host's chain head is kept"
    );

    // The audit log: every entry before, untouched, then one entry naming the prune.
    let (log, _) = store.audit_log().await.unwrap();
    assert_eq!(log[..log_before.len()], log_before[..]);
    assert_eq!(log.len(), log_before.len() + 1);
    let entry = log.last().unwrap();
    assert_eq!(entry.action, crate::retention::PRUNED_ACTION);
    assert_eq!(entry.at, T0 + 30_000);
    let details: serde_json::Value = serde_json::from_str(&entry.details).unwrap();
    assert_eq!(details["rows"]["drift"], 1);
    assert_eq!(details["rows"]["alerts"], 1);
    assert_eq!(
        details["resolved_drift_before"],
        json!(crate::clock::rfc3339(resolved_at + 1))
    );

    // Again: nothing left to remove, no entry.
    assert_eq!(
        store.prune(plan, T0 + 40_000).await.unwrap(),
        PruneCounts::default()
    );
    assert_eq!(store.audit_log().await.unwrap().0.len(), log.len());

    // A backlog goes in batches of at most PRUNE_BATCH, each with its own entry.
    let batch = u64::from(crate::retention::PRUNE_BATCH);
    for n in 0..=batch {
        store.insert_alert(alert(n as u32), T0).await.unwrap();
    }
    store.settle_alerts(vec![], T0 + 1000).await.unwrap();
    let alerts_only = PrunePlan {
        delivered_alerts_before: Some(T0 + 1001),
        resolved_drift_before: None,
    };
    let first = store.prune(alerts_only, T0 + 50_000).await.unwrap();
    assert_eq!(first.alerts, batch);
    assert!(crate::retention::more_left(&first));
    let second = store.prune(alerts_only, T0 + 50_000).await.unwrap();
    assert_eq!(
        second.alerts, 2,
        "the rest, with the one undelivered before"
    );
    assert_eq!(store.audit_log().await.unwrap().0.len(), log.len() + 2);
}
