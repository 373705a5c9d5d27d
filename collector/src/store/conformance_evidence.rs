//! The evidence queries every [`Store`] must answer alike ([`Store::export_records`],
//! [`Store::window_records`]), as one story beside [`super::conformance::story`].
//!
//! # Panics
//!
//! On the first behaviour that differs: it is a test.

use std::collections::BTreeMap;

use driftwatch_common::api::v1::{
    AgentCommand, AgentHealth, ChangeKind, CommandOutcome, CommandResult, DriftEvent, Inventory,
    SeenBy, SubjectKey, SubjectState,
};
use serde_json::json;
use uuid::Uuid;

use super::*;
use crate::audit::NewAudit;
use crate::drift::{DriftStatus, ResolutionCategory};
use crate::matcher::Outcome;
use crate::windows::{HostScope, Window, WindowKind, WindowStatus};
use driftwatch_common::chain_key::ChainKey;

const T0: Millis = 1_800_000_000_000;

fn audit(action: &str) -> NewAudit {
    NewAudit::new(T0, "auditor", action, "test", json!({}))
}

/// The chain key of seq 1 a test host is enrolled with.
pub fn key_of(host_id: Uuid) -> ChainKey {
    ChainKey::from_bytes(driftwatch_common::hash::ContentHash::of(host_id.as_bytes()).0)
}

/// The event after `prev` in its host's chain (`None`: the first), MAC'd with its key.
pub fn event(host_id: Uuid, prev: Option<&DriftEvent>, subject: &str, at: Millis) -> DriftEvent {
    let seq = prev.map_or(1, |p| p.seq + 1);
    let mut event = DriftEvent {
        id: Uuid::now_v7(),
        host_id,
        seq,
        prev_hash: prev.map_or(DriftEvent::GENESIS, DriftEvent::chain_hash),
        subject: SubjectKey(subject.to_owned()),
        kind: ChangeKind::Content,
        changed: vec!["version".into()],
        before: None,
        after: Some(SubjectState::Fields {
            fields: BTreeMap::from([("version".to_owned(), format!("{seq}"))]),
        }),
        diff: None,
        actor: None,
        seen_by: SeenBy::Scan,
        observed_at: time::OffsetDateTime::from_unix_timestamp(at / 1000).unwrap(),
        provenance: None,
        related: None,
        summary: None,
        mac: None,
    };
    event.seal(&key_of(host_id).forward(seq - 1));
    event
}

/// Enrolls `name` through a fresh one-time enrollment token (`digest` tells tokens apart);
/// also used by other modules' tests that need a host in a store.
pub async fn enroll<S: Store>(store: &S, name: &str, digest: u8) -> Host {
    let token = EnrollmentTokenRecord {
        id: Uuid::now_v7(),
        digest: [digest; 32],
        created_by: "root".into(),
        created_at: T0,
        expires_at: T0 + 60_000,
        uses_left: 1,
    };
    store
        .insert_enrollment_token(token.clone(), audit("enrollment_token.created"))
        .await
        .unwrap();
    let host = Host {
        id: Uuid::now_v7(),
        hostname: name.into(),
        labels: BTreeMap::new(),
        agent_version: "0.1.0".into(),
        enrolled_at: T0,
        last_seen_at: None,
        skew_ms: 0,
        inventory: None,
        health: None,
        reported_seq: 0,
        stored_seq: 0,
        chain_keyed: true,
    };
    let credential = TokenRecord {
        id: Uuid::now_v7(),
        name: name.into(),
        role: crate::identity::Role::Agent,
        host_id: Some(host.id),
        digest: [digest.wrapping_add(100); 32],
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
            [digest; 32],
            host.clone(),
            credential,
            Some(key_of(host.id)),
            audit("host.enrolled"),
        )
        .await
        .unwrap();
    host
}

pub async fn story<S: Store>(store: S) {
    let web = enroll(&store, "web-1", 1).await;
    let db = enroll(&store, "db-1", 2).await;
    let window = Window {
        id: Uuid::now_v7(),
        ticket: "CHG-7".into(),
        title: "nginx".into(),
        kind: WindowKind::Normal,
        status: WindowStatus::Approved,
        requester: "alice".into(),
        decided_by: Some("bob".into()),
        decided_at: Some(T0),
        decision_comment: None,
        hosts: HostScope {
            names: vec!["web-1".into()],
            ..HostScope::default()
        },
        subjects: vec!["package:*".into()],
        start: T0,
        end: T0 + 3_600_000,
        time_zone: "Europe/Paris".into(),
        expected: vec![],
        implementers: vec![],
        schedule: None,
        created_at: T0,
        ended_at: None,
        ended_by: None,
    };
    store
        .insert_window(window.clone(), audit("window.requested"))
        .await
        .unwrap();

    // web-1: one authorized change, one flagged against the window; db-1: one untraced.
    let first = event(web.id, None, "package:nginx", T0 + 1000);
    let second = event(web.id, Some(&first), "package:openssl", T0 + 2000);
    let stray = event(db.id, None, "package:vim", T0 + 3000);
    let decided = |event: &DriftEvent, outcome: Outcome| Decided {
        event_time: crate::clock::from_offset(event.observed_at),
        spool: crate::spool_time::SpoolTime {
            spooled_after: crate::clock::from_offset(event.observed_at),
            spooled_before: crate::clock::from_offset(event.observed_at),
            ..Default::default()
        },
        event: event.clone(),
        outcome,
    };
    store
        .ingest(
            web.id,
            vec![
                decided(
                    &first,
                    Outcome::Authorized {
                        window_id: window.id,
                    },
                ),
                decided(
                    &second,
                    Outcome::UnexpectedState {
                        window_id: window.id,
                        expected: "version 9".into(),
                    },
                ),
            ],
            T0 + 5000,
        )
        .await
        .unwrap();
    store
        .ingest(db.id, vec![decided(&stray, Outcome::Untraced)], T0 + 5000)
        .await
        .unwrap();
    let untraced = store
        .drift_items(DriftFilter {
            host_id: Some(db.id),
            ..DriftFilter::default()
        })
        .await
        .unwrap();
    store
        .resolve_drift(
            untraced[0].id,
            Resolution {
                category: ResolutionCategory::ConfirmedUnauthorized,
                comment: "incident 12".into(),
                ticket: None,
                by: "eve".into(),
                at: T0 + 65_000,
            },
            audit("drift.resolved"),
        )
        .await
        .unwrap();
    let mut closed = window.clone();
    closed.status = WindowStatus::Closed;
    closed.ended_at = Some(T0 + 70_000);
    closed.ended_by = Some("alice".into());
    store
        .close_window(closed, audit("window.closed"))
        .await
        .unwrap();
    let commands = store
        .heartbeat(
            HeartbeatRecord {
                host_id: web.id,
                received_at: T0 + 80_000,
                skew_ms: 0,
                inventory: Inventory::default(),
                health: AgentHealth::default(),
                reported_seq: 2,
                results: vec![],
            },
            vec![],
        )
        .await
        .unwrap();
    let [AgentCommand::BaselineAccept { command_id, .. }] = &commands[..] else {
        panic!("one close-out command expected, got {commands:?}");
    };
    store
        .heartbeat(
            HeartbeatRecord {
                host_id: web.id,
                received_at: T0 + 90_000,
                skew_ms: 0,
                inventory: Inventory::default(),
                health: AgentHealth::default(),
                reported_seq: 2,
                results: vec![CommandResult {
                    command_id: *command_id,
                    outcome: CommandOutcome::Applied,
                    baseline: None,
                }],
            },
            vec![],
        )
        .await
        .unwrap();
    let audited = || async { store.audit_log().await.unwrap().0.len() };
    let before = audited().await;

    // A period: every event in [from, to), in time order, with its drift and windows.
    let query = |from: Millis, to: Millis, hostname: Option<&str>, max_rows: u32| ExportQuery {
        from,
        to,
        hostname: hostname.map(str::to_owned),
        max_rows,
    };
    let all = store
        .export_records(query(T0, T0 + 3000, None, 10), audit("report.exported"))
        .await
        .unwrap();
    let ids: Vec<Uuid> = all.events.iter().map(|e| e.stored.event.id).collect();
    assert_eq!(
        ids,
        [first.id, second.id],
        "`to` is exclusive, ordered by time"
    );
    assert_eq!(all.events[0].hostname, "web-1");
    assert_eq!(all.windows.keys().collect::<Vec<_>>(), [&window.id]);
    assert_eq!(all.drift.len(), 2);
    assert!(
        all.drift
            .values()
            .any(|d| d.status == DriftStatus::Accepted)
    );
    assert_eq!(audited().await, before + 1, "the export is audited");

    let db_only = store
        .export_records(
            query(T0, T0 + 10_000, Some("db-1"), 10),
            audit("report.exported"),
        )
        .await
        .unwrap();
    assert_eq!(db_only.events.len(), 1);
    let resolved = &db_only.drift[&db_only.events[0].stored.drift_id.unwrap()];
    assert_eq!(resolved.resolution.as_ref().unwrap().by, "eve");
    assert!(db_only.windows.is_empty());

    let too_many = store
        .export_records(query(T0, T0 + 10_000, None, 2), audit("report.exported"))
        .await;
    assert!(matches!(too_many, Err(StoreError::TooLarge(_))), "3 > 2");
    assert_eq!(
        audited().await,
        before + 2,
        "a refused export writes nothing"
    );
    let exactly = store
        .export_records(query(T0, T0 + 10_000, None, 3), audit("report.exported"))
        .await
        .unwrap();
    assert_eq!(exactly.events.len(), 3);

    // A window: what it authorized or flagged, its drift, its close-out and the answers.
    let records = store
        .window_records(window.id, 10, audit("window.evidence"))
        .await
        .unwrap();
    let outcomes: Vec<&str> = records
        .events
        .iter()
        .map(|e| e.stored.outcome.name())
        .collect();
    assert_eq!(outcomes, ["authorized", "unexpected_state"]);
    assert_eq!(records.drift.len(), 2);
    assert_eq!(records.commands.len(), 1);
    let command = &records.commands[0];
    assert_eq!(
        (
            command.subject.as_str(),
            command.status.as_str(),
            command.hostname.as_str()
        ),
        ("package:nginx", "applied", "web-1")
    );
    assert_eq!(command.result, Some(CommandOutcome::Applied));
    assert_eq!(command.result_at, Some(T0 + 90_000));
    assert!(matches!(
        store
            .window_records(window.id, 1, audit("window.evidence"))
            .await,
        Err(StoreError::TooLarge(_))
    ));
    assert!(matches!(
        store
            .window_records(Uuid::now_v7(), 10, audit("window.evidence"))
            .await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(audited().await, before + 4);
}
