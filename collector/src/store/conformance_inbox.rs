//! The untraced inbox's read every [`Store`] must answer alike ([`Store::open_drift`],
//! issue 11), as one story beside [`super::conformance::story`]: open items only, host
//! name and subject containing the texts given, the reasons kept (no reason counts as
//! `untraced`), newest first, bounded; matches are found however many newer items there
//! are.
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

fn decided(event: &DriftEvent, outcome: Outcome) -> Decided {
    let at = crate::clock::from_offset(event.observed_at);
    Decided {
        event_time: at,
        spool: crate::spool_time::SpoolTime {
            spooled_after: at - 1000,
            spooled_before: at,
            ..Default::default()
        },
        event: event.clone(),
        outcome,
    }
}

fn query(host: &str, subject: &str, reasons: Option<&[&str]>, limit: u32) -> OpenDriftQuery {
    OpenDriftQuery {
        host: host.into(),
        subject: subject.into(),
        reasons: reasons.map(|r| r.iter().map(|s| (*s).to_owned()).collect()),
        limit,
    }
}

/// `(hostname, subject)` of each item, in the order given.
fn seen(items: &[DriftItem]) -> Vec<(String, String)> {
    items
        .iter()
        .map(|d| (d.hostname.clone(), d.subject.clone()))
        .collect()
}

fn pair(host: &str, subject: &str) -> (String, String) {
    (host.to_owned(), subject.to_owned())
}

pub async fn story<S: Store>(store: S) {
    let web1 = enroll(&store, "web-1", 61).await;
    let web2 = enroll(&store, "web-2", 62).await;
    let db = enroll(&store, "db-1", 63).await;
    let window_id = Uuid::now_v7();
    // Oldest first: web-1's sshd_config (untraced), then web-2's (a person the window does
    // not name), db-1's sshd_config (an unknown actor), web-1's sudoers (untraced, resolved
    // below), then 20 newer items on db-1.
    let a = event(web1.id, None, "file:/etc/ssh/sshd_config", T0 + 1000);
    store
        .ingest(web1.id, vec![decided(&a, Outcome::Untraced)], T0 + 1000)
        .await
        .unwrap();
    let b = event(web2.id, None, "file:/etc/ssh/sshd_config", T0 + 2000);
    let wrong = Outcome::WrongImplementer {
        window_id,
        actor: "mallory".into(),
    };
    store
        .ingest(web2.id, vec![decided(&b, wrong)], T0 + 2000)
        .await
        .unwrap();
    let c = event(db.id, None, "file:/etc/ssh/sshd_config", T0 + 3000);
    store
        .ingest(
            db.id,
            vec![decided(&c, Outcome::ActorUnknown { window_id })],
            T0 + 3000,
        )
        .await
        .unwrap();
    let d = event(web1.id, Some(&a), "file:/etc/sudoers", T0 + 4000);
    store
        .ingest(web1.id, vec![decided(&d, Outcome::Untraced)], T0 + 4000)
        .await
        .unwrap();
    let mut prev = c.clone();
    for n in 0..20 {
        let next = event(db.id, Some(&prev), &format!("package:p{n}"), T0 + 5000 + n);
        store
            .ingest(
                db.id,
                vec![decided(&next, Outcome::Untraced)],
                T0 + 5000 + n,
            )
            .await
            .unwrap();
        prev = next;
    }
    let sudoers = store
        .open_drift(query("", "sudoers", None, 10))
        .await
        .unwrap();
    assert_eq!(seen(&sudoers), [pair("web-1", "file:/etc/sudoers")]);
    store
        .resolve_drift(
            sudoers[0].id,
            Resolution {
                category: ResolutionCategory::FalsePositive,
                comment: "expected".into(),
                ticket: None,
                by: "eve".into(),
                at: T0 + 9000,
            },
            NewAudit::new(T0 + 9000, "eve", "drift.resolved", "test", json!({})),
        )
        .await
        .unwrap();

    // Everything open, newest first, bounded.
    let all = store.open_drift(query("", "", None, 100)).await.unwrap();
    assert_eq!(all.len(), 23, "{:?}", seen(&all));
    assert!(all.iter().all(|d| d.status == DriftStatus::Open));
    assert_eq!(all[0].subject, "package:p19");
    assert_eq!(all[22].hostname, "web-1");
    let newest = store.open_drift(query("", "", None, 5)).await.unwrap();
    assert_eq!(seen(&newest), seen(&all[..5]));
    // Older matches are found past the 20 newer items; a resolved item is not open.
    assert_eq!(
        seen(&store.open_drift(query("web", "", None, 5)).await.unwrap()),
        [
            pair("web-2", "file:/etc/ssh/sshd_config"),
            pair("web-1", "file:/etc/ssh/sshd_config"),
        ]
    );
    assert_eq!(
        seen(&store.open_drift(query("", "ssh/", None, 5)).await.unwrap()),
        [
            pair("db-1", "file:/etc/ssh/sshd_config"),
            pair("web-2", "file:/etc/ssh/sshd_config"),
            pair("web-1", "file:/etc/ssh/sshd_config"),
        ]
    );
    assert_eq!(
        seen(
            &store
                .open_drift(query("web-1", "sshd", None, 5))
                .await
                .unwrap()
        ),
        [pair("web-1", "file:/etc/ssh/sshd_config")]
    );
    // Text is matched as given: case, and no pattern characters.
    assert!(
        store
            .open_drift(query("WEB", "", None, 5))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .open_drift(query("%", "", None, 5))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .open_drift(query("", "s%d", None, 5))
            .await
            .unwrap()
            .is_empty()
    );
    // Reasons: a flagged item's own, and untraced for the items without one.
    let by_reason = |reasons: &'static [&'static str]| {
        let store = &store;
        async move {
            seen(
                &store
                    .open_drift(query("", "sshd", Some(reasons), 5))
                    .await
                    .unwrap(),
            )
        }
    };
    assert_eq!(
        by_reason(&["wrong_implementer"]).await,
        [pair("web-2", "file:/etc/ssh/sshd_config")]
    );
    assert_eq!(
        by_reason(&["untraced", "actor_unknown"]).await,
        [
            pair("db-1", "file:/etc/ssh/sshd_config"),
            pair("web-1", "file:/etc/ssh/sshd_config"),
        ]
    );
    assert!(by_reason(&[]).await.is_empty(), "no reason kept: nothing");
    assert_eq!(
        store
            .open_drift(query("db", "", Some(&["untraced"]), 100))
            .await
            .unwrap()
            .len(),
        20
    );
}
