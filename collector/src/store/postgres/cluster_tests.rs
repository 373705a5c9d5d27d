//! Several collector nodes on one database (`cluster.rs`), on a real PostgreSQL server: two
//! pools are two nodes. Skipped like `tests.rs` without a server.

use std::time::Duration;

use serde_json::json;

use super::cluster::WINDOWS_LOCK;
use super::tests::TestDatabase;
use super::*;
use crate::store::conformance_evidence::{enroll, event};
use crate::windows::{HostScope, WindowKind};

const T0: Millis = 1_800_000_000_000;

fn window(ticket: &str) -> Window {
    Window {
        id: Uuid::now_v7(),
        ticket: ticket.into(),
        title: "t".into(),
        kind: WindowKind::Normal,
        status: WindowStatus::Requested,
        requester: "alice".into(),
        decided_by: None,
        decided_at: None,
        decision_comment: None,
        hosts: HostScope {
            names: vec!["web-1".into()],
            ..HostScope::default()
        },
        subjects: vec!["/etc/*".into()],
        start: T0 - 60_000,
        end: T0 + 60_000,
        time_zone: "UTC".into(),
        expected: vec![],
        implementers: vec![],
        schedule: None,
        created_at: T0,
        ended_at: None,
        ended_by: None,
    }
}

fn audit(action: &str) -> NewAudit {
    NewAudit::new(T0, "alice", action, "test", json!({}))
}

fn decided(events: &[driftwatch_common::api::v1::DriftEvent]) -> Vec<Decided> {
    events
        .iter()
        .map(|event| Decided {
            event: event.clone(),
            outcome: Outcome::Untraced,
            event_time: T0,
            spool: crate::spool_time::SpoolTime::default(),
        })
        .collect()
}

/// A window changed through node A moves the version node B's index was built at: B's
/// batch matched with the old index is handed back, nothing stored, and stored once B
/// matches at the new version. A window change waits for an ingest in flight.
#[tokio::test]
async fn a_window_change_on_one_node_makes_the_other_nodes_index_stale() {
    let Some(db) =
        TestDatabase::create("a_window_change_on_one_node_makes_the_other_nodes_index_stale").await
    else {
        return;
    };
    let (a, b) = (db.open().await, db.open().await);
    let host = enroll(&a, "web-1", 1).await;
    let indexed = b.windows_version().await.unwrap();
    let w = window("CHG-1");
    a.insert_window(w.clone(), audit("window.requested"))
        .await
        .unwrap();
    let mut approved = w.clone();
    approved.status = WindowStatus::Approved;
    approved.decided_by = Some("bob".into());
    a.update_window(approved, WindowStatus::Requested, audit("window.approved"))
        .await
        .unwrap();
    let now = b.windows_version().await.unwrap();
    assert_eq!(
        now,
        indexed + 2,
        "each window change moves the version once"
    );

    let first = event(host.id, None, "/etc/hosts", T0);
    let batch = decided(std::slice::from_ref(&first));
    match b.ingest_at(host.id, batch, T0, indexed).await.unwrap() {
        Ingested::StaleWindows(back) => assert_eq!(back.len(), 1, "the events come back"),
        Ingested::Stored(outcome) => panic!("stored with a stale index: {outcome:?}"),
    }
    let client = db.client().await;
    let count: i64 = client
        .query_one("SELECT count(*) FROM events", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 0, "nothing written for a stale index");
    match b
        .ingest_at(host.id, decided(&[first]), T0, now)
        .await
        .unwrap()
    {
        Ingested::Stored(outcome) => assert_eq!(outcome.accepted, 1),
        Ingested::StaleWindows(_) => panic!("refused at the current version"),
    }

    // An ingest in flight (its shared lock held here) makes a window change wait.
    let mut holder = db.client().await;
    let tx = holder.transaction().await.unwrap();
    tx.execute("SELECT pg_advisory_xact_lock_shared($1)", &[&WINDOWS_LOCK])
        .await
        .unwrap();
    let node = a.clone();
    let change = tokio::spawn(async move { node.insert_window(window("CHG-2"), audit("w")).await });
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(!change.is_finished(), "the change waits for the ingest");
    tx.commit().await.unwrap();
    change.await.unwrap().unwrap();
    assert_eq!(b.windows_version().await.unwrap(), now + 1);
    a.close();
    b.close();
}

/// The background rounds' lease: one node holds it and renews it; another takes it only
/// once it expired (the holder was killed).
#[tokio::test]
async fn a_lease_is_held_by_one_node_and_passes_on_when_it_expires() {
    let Some(db) =
        TestDatabase::create("a_lease_is_held_by_one_node_and_passes_on_when_it_expires").await
    else {
        return;
    };
    let (a, b) = (db.open().await, db.open().await);
    let (node_a, node_b) = (Uuid::now_v7(), Uuid::now_v7());
    let lease = || "rounds".to_owned();
    assert!(a.take_lease(lease(), node_a, 800).await.unwrap());
    assert!(!b.take_lease(lease(), node_b, 800).await.unwrap());
    assert!(
        a.take_lease(lease(), node_a, 800).await.unwrap(),
        "renewed by its holder"
    );
    assert!(
        b.take_lease("another".into(), node_b, 800).await.unwrap(),
        "leases are by name"
    );
    // Node A stops renewing (killed): the lease passes on once expired, and only then.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!b.take_lease(lease(), node_b, 800).await.unwrap());
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(b.take_lease(lease(), node_b, 800).await.unwrap());
    assert!(
        !a.take_lease(lease(), node_a, 800).await.unwrap(),
        "a node that comes back does not take it from the new holder"
    );

    // Many nodes asking at once: exactly one gets a free lease.
    let mut asks = Vec::new();
    for n in 0..8 {
        let store = if n % 2 == 0 { a.clone() } else { b.clone() };
        asks.push(tokio::spawn(async move {
            store
                .take_lease("contended".into(), Uuid::now_v7(), 60_000)
                .await
        }));
    }
    let mut held = 0;
    for ask in asks {
        held += usize::from(ask.await.unwrap().unwrap());
    }
    assert_eq!(held, 1);
    a.close();
    b.close();
}

/// Each alert goes to each sink once across nodes: one claim wins, a delivery recorded
/// ends the claim and is not claimed again, a dead node's claim runs out.
#[tokio::test]
async fn a_delivery_is_claimed_by_one_node_until_recorded_or_expired() {
    let Some(db) =
        TestDatabase::create("a_delivery_is_claimed_by_one_node_until_recorded_or_expired").await
    else {
        return;
    };
    let (a, b) = (db.open().await, db.open().await);
    for n in 0..2 {
        a.insert_alert(
            NewAlert {
                kind: "test".into(),
                host_id: None,
                body: json!({ "n": n }),
            },
            T0 + n,
        )
        .await
        .unwrap();
    }
    let due = b.due_deliveries("hook".into(), T0, 10).await.unwrap();
    assert_eq!(due.len(), 2);
    let (first, second) = (due[0].id, due[1].id);

    // Both nodes (eight tasks) claim the first alert at once: one wins.
    let mut claims = Vec::new();
    for n in 0..8 {
        let store = if n % 2 == 0 { a.clone() } else { b.clone() };
        claims.push(tokio::spawn(async move {
            let holder = Uuid::now_v7();
            let won = store
                .claim_delivery(first, "hook".into(), holder, T0, T0 + 30_000)
                .await
                .unwrap();
            won.then_some((holder, store))
        }));
    }
    let mut winners = Vec::new();
    for claim in claims {
        winners.extend(claim.await.unwrap());
    }
    assert_eq!(winners.len(), 1, "one claim wins");
    let (winner, store) = winners.pop().unwrap();
    let listed = a.due_deliveries("hook".into(), T0 + 1, 10).await.unwrap();
    assert_eq!(
        listed.iter().map(|alert| alert.id).collect::<Vec<_>>(),
        vec![second],
        "a claimed delivery is not listed as due"
    );
    store
        .record_delivery(DeliveryAttempt {
            alert_id: first,
            sink: "hook".into(),
            at: T0 + 2,
            error: None,
            next_attempt_at: T0 + 2,
            sinks: vec!["hook".into(), "syslog".into()],
            dead_letter: None,
        })
        .await
        .unwrap();
    // Recorded: the claim ended, and the delivery is owed no more to anyone.
    for store in [&a, &b] {
        assert!(
            !store
                .claim_delivery(first, "hook".into(), Uuid::now_v7(), T0 + 3, T0 + 30_000)
                .await
                .unwrap(),
            "a delivered alert is not claimed again"
        );
    }
    assert!(
        !a.claim_delivery(first, "hook".into(), winner, T0 + 3, T0 + 30_000)
            .await
            .unwrap()
    );
    // Another sink owes it still: claims are per sink.
    assert!(
        a.claim_delivery(first, "syslog".into(), Uuid::now_v7(), T0 + 3, T0 + 30_000)
            .await
            .unwrap()
    );

    // A node claims the second alert and dies: the claim holds until it runs out.
    let dead = Uuid::now_v7();
    assert!(
        a.claim_delivery(second, "hook".into(), dead, T0, T0 + 10_000)
            .await
            .unwrap()
    );
    let other = Uuid::now_v7();
    assert!(
        !b.claim_delivery(second, "hook".into(), other, T0 + 9_999, T0 + 40_000)
            .await
            .unwrap()
    );
    assert!(
        b.due_deliveries("hook".into(), T0 + 9_999, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        b.due_deliveries("hook".into(), T0 + 10_000, 10)
            .await
            .unwrap()
            .len(),
        1
    );
    assert!(
        b.claim_delivery(second, "hook".into(), other, T0 + 10_000, T0 + 40_000)
            .await
            .unwrap(),
        "a dead node's claim passes on"
    );
    a.close();
    b.close();
}
