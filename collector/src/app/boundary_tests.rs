//! The boundary of `App`: every operation a person or agent triggers refuses the roles it
//! must, inside `App` (the handlers only extract and map errors). That nothing outside
//! `app/` reaches the store, the compiler enforces (`App::store` is private).

use std::sync::Arc;

use driftwatch_common::api::v1::{EventBatch, Heartbeat};

use super::*;
use crate::clock::ManualClock;
use crate::drift::ResolutionCategory;
use crate::reports::ops::{BundleParams, ExportParams};
use crate::store::SqliteStore;
use crate::store::{DriftFilter, OpenDriftQuery};
use crate::windows::HostScope;
use crate::windows::lifecycle::{self, Action};
use crate::windows::validate::WindowRequest;

/// 2026-11-23T10:00:00Z.
const NOW: Millis = 1_795_428_000_000;

/// A listing's limit out of bounds: refused, but only after the caller's role.
const LIMIT: Limit = Limit {
    asked: Some(0),
    default: 10,
    max: 10,
};

/// Every operation a caller triggers, with what it needs besides the caller.
#[derive(Clone, Copy, Debug)]
enum Op {
    CreateToken,
    CreatePerson,
    People,
    Tokens,
    RevokeToken,
    CreateEnrollmentToken,
    Ingest,
    Heartbeat,
    CreateWindow,
    Decide(Action),
    Windows,
    Window,
    DriftItems,
    DriftItem,
    DriftDetail,
    Resolve,
    VerifyAudit,
    AuditLogPage,
    AuditPublicKey,
    AuditCheckpoints,
    AuditEntries,
    Alerts,
    Hosts,
    DeadLetters,
    RetryDeadLetter,
    RetryDeadLetters,
    DropDeadLetter,
    Export,
    WindowEvidence,
    Metrics,
    LatestEvents,
    InboxItems,
    DriftStream,
    DriftStreamHead,
}

/// Who may do what; every other role is refused.
fn table() -> Vec<(Op, Vec<Role>)> {
    let people = Role::PEOPLE.to_vec();
    let admin = vec![Role::Admin];
    vec![
        (Op::CreateToken, admin.clone()),
        (Op::CreatePerson, admin.clone()),
        (Op::People, vec![Role::Admin, Role::Auditor]),
        (Op::Tokens, vec![Role::Admin, Role::Auditor]),
        (Op::RevokeToken, admin.clone()),
        (Op::CreateEnrollmentToken, admin.clone()),
        (Op::Ingest, vec![Role::Agent]),
        (Op::Heartbeat, vec![Role::Agent]),
        (Op::CreateWindow, lifecycle::WINDOW_ROLES.to_vec()),
        (
            Op::Decide(Action::Approve),
            lifecycle::DECISION_ROLES.to_vec(),
        ),
        (
            Op::Decide(Action::Reject),
            lifecycle::DECISION_ROLES.to_vec(),
        ),
        (Op::Decide(Action::Cancel), lifecycle::WINDOW_ROLES.to_vec()),
        (Op::Decide(Action::Close), lifecycle::WINDOW_ROLES.to_vec()),
        (Op::Windows, people.clone()),
        (Op::Window, people.clone()),
        (Op::DriftItems, people.clone()),
        (Op::DriftItem, people.clone()),
        (Op::DriftDetail, people.clone()),
        (Op::Resolve, vec![Role::Security]),
        (Op::VerifyAudit, people.clone()),
        (Op::AuditLogPage, people.clone()),
        (Op::AuditPublicKey, people.clone()),
        (Op::AuditCheckpoints, people.clone()),
        (Op::AuditEntries, people.clone()),
        (Op::Alerts, people.clone()),
        (Op::Hosts, people.clone()),
        (Op::DeadLetters, people.clone()),
        (Op::RetryDeadLetter, admin.clone()),
        (Op::RetryDeadLetters, admin.clone()),
        (Op::DropDeadLetter, admin),
        (Op::Export, super::evidence::EXPORT_ROLES.to_vec()),
        (Op::WindowEvidence, people),
        (Op::Metrics, Role::METRICS_READERS.to_vec()),
        (Op::LatestEvents, Role::PEOPLE.to_vec()),
        (Op::InboxItems, Role::PEOPLE.to_vec()),
        (Op::DriftStream, Role::PEOPLE.to_vec()),
        (Op::DriftStreamHead, Role::PEOPLE.to_vec()),
    ]
}

fn settings() -> Settings {
    Settings {
        hold_ms: 60_000,
        burst_ms: 10_000,
        tolerance_ms: 60_000,
        silent_after_ms: 300_000,
        emergency_approval_ms: 3_600_000,
        max_body_bytes: 1 << 16,
        max_export_rows: 10,
        limits: Default::default(),
        metrics: driftwatch_config::collector::MetricsAccess {
            require_token: true,
            ..Default::default()
        },
    }
}

fn principal(role: Role) -> Principal {
    Principal {
        token_id: Uuid::new_v4(),
        name: format!("someone with role {role}"),
        role,
        host_id: (role == Role::Agent).then(Uuid::new_v4),
    }
}

fn window_request() -> WindowRequest {
    WindowRequest {
        ticket: "CHG-1".into(),
        title: "rotate keys".into(),
        hosts: HostScope {
            names: vec!["web-1".into()],
            ..HostScope::default()
        },
        subjects: vec!["file:/etc/ssh/**".into()],
        start: "2026-11-24T10:00:00Z".into(),
        end: "2026-11-24T12:00:00Z".into(),
        time_zone: "UTC".into(),
        ..WindowRequest::default()
    }
}

/// Runs `op` as `who`; only the error matters here.
async fn attempt(app: &Arc<App<SqliteStore>>, op: Op, who: &Principal) -> Result<()> {
    let unknown = Uuid::new_v4();
    match op {
        Op::CreateToken => app
            .create_token(who, "new person", Role::Auditor)
            .await
            .map(drop),
        Op::CreatePerson => app.create_person(who, "another person").await.map(drop),
        Op::People => app.people(who).await.map(drop),
        Op::Tokens => app.tokens(who).await.map(drop),
        Op::RevokeToken => app.revoke_token(who, unknown).await.map(drop),
        Op::CreateEnrollmentToken => app.create_enrollment_token(who, 60, 1).await.map(drop),
        Op::Ingest => app
            .ingest(who, EventBatch { events: Vec::new() })
            .await
            .map(drop),
        Op::Heartbeat => {
            let beat = Heartbeat {
                host_id: who.host_id.unwrap_or(unknown),
                sent_at: time::OffsetDateTime::now_utc(),
                inventory: Default::default(),
                health: Default::default(),
                last_seq: 0,
                results: Vec::new(),
                baseline: None,
            };
            app.heartbeat(who, beat).await.map(drop)
        }
        Op::CreateWindow => app.create_window(who, &window_request()).await.map(drop),
        Op::Decide(action) => {
            // A fresh window each time, requested by another person, so that only the
            // role can refuse.
            let requester = Principal {
                name: "requester".into(),
                ..principal(Role::ChangeManager)
            };
            let window = app
                .create_window(&requester, &window_request())
                .await
                .expect("a valid window request");
            let comment = Some("reviewed".to_owned());
            app.decide(who, window.id, action, comment).await.map(drop)
        }
        Op::Windows => app.windows(who, None).await.map(drop),
        Op::Window => app.window(who, unknown).await.map(drop),
        Op::DriftItems => app
            .drift_items(who, DriftFilter::default(), LIMIT)
            .await
            .map(drop),
        Op::DriftItem => app.drift_item(who, unknown).await.map(drop),
        Op::DriftDetail => app.drift_detail(who, unknown).await.map(drop),
        Op::Resolve => {
            let request = ResolveRequest {
                category: ResolutionCategory::FalsePositive,
                comment: "checked".into(),
                ticket: None,
            };
            app.resolve(who, unknown, request).await.map(drop)
        }
        Op::VerifyAudit => app.verify_audit(who).await.map(drop),
        Op::AuditLogPage => app.audit_log_page(who, 0, LIMIT).await.map(drop),
        Op::AuditPublicKey => app.audit_public_key(who).map(drop),
        Op::AuditCheckpoints => app.audit_checkpoints(who).await.map(drop),
        Op::AuditEntries => app.audit_entries(who).await.map(drop),
        Op::Alerts => app.alerts(who, LIMIT).await.map(drop),
        Op::Hosts => app.hosts(who).await.map(drop),
        Op::DeadLetters => app.dead_letters(who, 10).await.map(drop),
        Op::RetryDeadLetter => app.retry_dead_letter(who, unknown, "jsonl").await.map(drop),
        Op::RetryDeadLetters => app.retry_dead_letters(who, "jsonl").await.map(drop),
        Op::DropDeadLetter => app
            .drop_dead_letter(who, unknown, "jsonl", "not needed")
            .await
            .map(drop),
        Op::Export => app.export(who, &ExportParams::default()).await.map(drop),
        Op::WindowEvidence => app
            .window_evidence(who, unknown, &BundleParams::default())
            .await
            .map(drop),
        Op::Metrics => app.metrics_exposition(Some(who)).await.map(drop),
        Op::LatestEvents => app.latest_events(who, &[]).await.map(drop),
        Op::InboxItems => app
            .inbox_items(who, OpenDriftQuery::default(), LIMIT)
            .await
            .map(drop),
        Op::DriftStream => app.drift_stream(who, None).await.map(drop),
        Op::DriftStreamHead => app.drift_stream_head(who).await.map(drop),
    }
}

/// A refusal because of the caller's role (as opposed to segregation of duties, a
/// missing record or bad input).
fn refused_for_role(outcome: &Result<()>) -> bool {
    matches!(outcome, Err(Error::Forbidden(why))
        if why.contains(" role ") || why.starts_with("only agent credentials"))
}

#[tokio::test]
async fn every_operation_refuses_the_roles_it_must_inside_app() {
    let store = SqliteStore::open_in_memory().unwrap();
    let app = Arc::new(
        App::new(
            store,
            settings(),
            Arc::new(ManualClock::at(NOW)),
            Sinks::none(),
        )
        .await
        .unwrap(),
    );
    let mut wrong = Vec::new();
    for (op, allowed) in table() {
        for role in Role::ALL {
            let outcome = attempt(&app, op, &principal(role)).await;
            let refused = refused_for_role(&outcome);
            if refused == allowed.contains(&role) {
                wrong.push(format!("{op:?} as {role}: {outcome:?}"));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "role checks disagree with the table:\n{}",
        wrong.join("\n")
    );
}
