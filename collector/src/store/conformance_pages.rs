//! Listings with a cursor (issue 10) every [`Store`] must keep alike: each page method
//! returns the listing's order after the key it is given, at most the limit, so that
//! walking pages of any size yields exactly the unpaged listing, once each, in order.
//!
//! # Panics
//!
//! On the first behaviour that differs: it is a test.

use serde_json::json;

use super::conformance_evidence::{enroll, event};
use super::*;
use crate::audit::NewAudit;
use crate::matcher::Outcome;
use crate::windows::{HostScope, WindowKind};

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

fn window(ticket: &str, start: Millis, status: WindowStatus) -> Window {
    Window {
        id: Uuid::now_v7(),
        ticket: ticket.into(),
        title: "t".into(),
        kind: WindowKind::Normal,
        status,
        requester: "alice".into(),
        decided_by: None,
        decided_at: None,
        decision_comment: None,
        hosts: HostScope {
            names: vec!["web-1".into()],
            ..HostScope::default()
        },
        subjects: vec!["package:*".into()],
        start,
        end: start + 60_000,
        time_zone: "UTC".into(),
        expected: vec![],
        implementers: vec![],
        schedule: None,
        created_at: T0,
        ended_at: None,
        ended_by: None,
    }
}

pub async fn story<S: Store>(store: S) {
    // Hosts: names that sort apart from their enrollment order.
    let mut hosts = Vec::new();
    for (n, name) in ["db-2", "web-1", "app-3", "cache-4", "batch-5"]
        .iter()
        .enumerate()
    {
        hosts.push(enroll(&store, name, 50 + n as u8).await);
    }
    let all_hosts = store.hosts().await.unwrap();
    for size in [1, 2, 5, 6] {
        let mut walked = Vec::new();
        let mut after = None;
        loop {
            let page = store.hosts_page(after.clone(), size).await.unwrap();
            assert!(page.len() <= size as usize);
            let Some(last) = page.last() else { break };
            after = Some((last.hostname.clone(), last.id));
            walked.extend(page);
        }
        assert_eq!(walked, all_hosts, "hosts in pages of {size}");
    }

    // Drift: five items opened at distinct and equal times, on two hosts (equal times make
    // the id decide the order: the keyset must not lose one of a tie).
    let (a, b) = (&hosts[0], &hosts[1]);
    let e1 = event(a.id, None, "package:a", T0 + 1000);
    let e2 = event(a.id, Some(&e1), "package:b", T0 + 2000);
    let e3 = event(a.id, Some(&e2), "package:c", T0 + 3000);
    store
        .ingest(a.id, vec![decided(&e1), decided(&e2)], T0 + 5000)
        .await
        .unwrap();
    store
        .ingest(a.id, vec![decided(&e3)], T0 + 6000)
        .await
        .unwrap();
    let f1 = event(b.id, None, "package:a", T0 + 1000);
    let f2 = event(b.id, Some(&f1), "package:z", T0 + 2000);
    store
        .ingest(b.id, vec![decided(&f1), decided(&f2)], T0 + 5000)
        .await
        .unwrap();
    let filters = [
        DriftFilter::default(),
        DriftFilter {
            host_id: Some(a.id),
            ..DriftFilter::default()
        },
        DriftFilter {
            status: Some(DriftStatus::Open),
            ..DriftFilter::default()
        },
        DriftFilter {
            status: Some(DriftStatus::Resolved),
            ..DriftFilter::default()
        },
    ];
    for filter in filters {
        let all = store.drift_items(filter.clone()).await.unwrap();
        for size in [1, 2, 3, 10] {
            let mut walked: Vec<DriftItem> = Vec::new();
            let mut after = None;
            loop {
                let page = store
                    .drift_page(
                        DriftFilter {
                            limit: Some(size),
                            ..filter.clone()
                        },
                        after,
                    )
                    .await
                    .unwrap();
                assert!(page.len() <= size as usize);
                let Some(last) = page.last() else { break };
                after = Some((last.opened_at, last.id));
                walked.extend(page);
            }
            assert_eq!(walked, all, "drift {filter:?} in pages of {size}");
        }
    }
    let five = store
        .drift_page(DriftFilter::default(), None)
        .await
        .unwrap();
    assert_eq!(five.len(), 5, "{five:?}");
    assert!(
        five.windows(2)
            .all(|w| (w[0].opened_at, w[0].id) > (w[1].opened_at, w[1].id)),
        "newest opened first, then the greater id: {five:?}"
    );

    // Windows: by start, ties by id, with and without a status.
    let audit = |action: &str| NewAudit::new(T0, "alice", action, "test", json!({}));
    for (ticket, start, status) in [
        ("CHG-3", T0 + 3000, WindowStatus::Requested),
        ("CHG-1", T0 + 1000, WindowStatus::Requested),
        ("CHG-2a", T0 + 2000, WindowStatus::Rejected),
        ("CHG-2b", T0 + 2000, WindowStatus::Requested),
    ] {
        store
            .insert_window(window(ticket, start, status), audit("window.requested"))
            .await
            .unwrap();
    }
    for status in [
        None,
        Some(WindowStatus::Requested),
        Some(WindowStatus::Closed),
    ] {
        let all = store.windows(status).await.unwrap();
        for size in [1, 3, 4] {
            let mut walked = Vec::new();
            let mut after = None;
            loop {
                let page = store.windows_page(status, after, size).await.unwrap();
                let Some(last) = page.last() else { break };
                after = Some((last.start, last.id));
                walked.extend(page);
            }
            assert_eq!(walked, all, "windows {status:?} in pages of {size}");
        }
    }

    // The audit log: after a seq, in order, bounded.
    let (log, _) = store.audit_log().await.unwrap();
    assert!(log.len() >= 9, "enrollments and windows are audited");
    let mut walked = Vec::new();
    let mut after = 0;
    loop {
        let page = store.audit_page(after, 2).await.unwrap();
        assert!(page.len() <= 2);
        let Some(last) = page.last() else { break };
        after = last.seq;
        walked.extend(page);
    }
    assert_eq!(walked, log);
    assert!(
        store
            .audit_page(log.last().unwrap().seq, 10)
            .await
            .unwrap()
            .is_empty()
    );
}
