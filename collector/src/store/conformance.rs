//! The behaviour every [`Store`] must have, as one story run against each implementation
//! (SQLite in memory, and PostgreSQL in a fresh database: `postgres/tests.rs`).
//!
//! # Panics
//!
//! On the first behaviour that differs: it is a test.

use std::collections::BTreeMap;

use driftwatch_common::api::v1::{
    AgentCommand, AgentHealth, ChangeKind, CommandOutcome, CommandResult, DriftEvent, Inventory,
    SeenBy, SubjectKey, SubjectState,
};
use driftwatch_common::hash::ContentHash;
use serde_json::json;
use uuid::Uuid;

use super::*;
use crate::audit::{NewAudit, verify};
use crate::chain::ChainProblem;
use crate::drift::{DriftStatus, ResolutionCategory};
use crate::identity::Role;
use crate::matcher::Outcome;
use crate::windows::schedule::Schedule;
use crate::windows::{HostScope, Window, WindowKind, WindowStatus};

const T0: Millis = 1_800_000_000_000;

/// Words that repeat what the store found due: the story checks those facts for every
/// backend; the rules' wording of them is tested beside it (`alerts`).
const FACTS: AlertWords = AlertWords {
    untraced: |burst| NewAlert {
        kind: "untraced_drift".into(),
        host_id: Some(burst.host_id),
        body: json!({
            "hostname": burst.hostname,
            "subjects": burst.items.iter().map(|i| i.subject.clone()).collect::<Vec<_>>(),
            "tickets": burst.tickets.values().collect::<Vec<_>>(),
            "held_ms": burst.held_ms,
        }),
    },
    silent: |host| NewAlert {
        kind: "agent_silent".into(),
        host_id: Some(host.host_id),
        body: json!({
            "hostname": host.hostname,
            "last_seen_at": host.last_seen_at,
            "silent_after_ms": host.silent_after_ms,
        }),
    },
    emergency: |late| NewAlert {
        kind: "emergency_unapproved".into(),
        host_id: None,
        body: json!({
            "window_id": late.window_id,
            "ticket": late.ticket,
            "requester": late.requester,
            "recorded_at": late.recorded_at,
            "deadline_ms": late.deadline_ms,
        }),
    },
};

fn audit(action: &str) -> NewAudit {
    NewAudit::new(T0, "alice", action, "test", json!({}))
}

fn fields(version: &str) -> Option<SubjectState> {
    Some(SubjectState::Fields {
        fields: BTreeMap::from([("version".to_owned(), version.to_owned())]),
    })
}

/// Events of one host, chained.
struct Agent {
    host_id: Uuid,
    seq: u64,
    prev: ContentHash,
    /// The chain key of seq 1 the host was enrolled with, if any.
    key: Option<ChainKey>,
}

impl Agent {
    fn event(&mut self, subject: &str, kind: ChangeKind, version: &str) -> DriftEvent {
        self.seq += 1;
        let mut event = DriftEvent {
            id: Uuid::now_v7(),
            host_id: self.host_id,
            seq: self.seq,
            prev_hash: self.prev,
            subject: SubjectKey(subject.to_owned()),
            kind,
            changed: vec!["version".into()],
            before: None,
            after: fields(version),
            diff: None,
            summary: None,
            actor: None,
            seen_by: SeenBy::Watch,
            observed_at: time::OffsetDateTime::from_unix_timestamp(T0 / 1000).unwrap(),
            provenance: None,
            related: None,
            mac: None,
        };
        if let Some(first) = &self.key {
            event.seal(&first.forward(self.seq - 1));
        }
        self.prev = event.chain_hash();
        event
    }

    /// A `restored` event back to the state before the drift the helper opens (absent:
    /// its events have no `before`).
    fn restored(&mut self, subject: &str) -> DriftEvent {
        let prev = self.prev;
        let mut event = self.event(subject, ChangeKind::Restored, "");
        event.prev_hash = prev;
        event.changed.clear();
        event.after = None;
        if let Some(first) = &self.key {
            event.seal(&first.forward(event.seq - 1));
        }
        self.prev = event.chain_hash();
        event
    }
}

const WEB_KEY: [u8; 32] = [11; 32];

fn decided(event: DriftEvent, outcome: Outcome) -> Decided {
    let at = crate::clock::from_offset(event.observed_at);
    Decided {
        event_time: at,
        spool: crate::spool_time::SpoolTime {
            spooled_after: at,
            spooled_before: at,
            ..Default::default()
        },
        event,
        outcome,
    }
}

fn token(role: Role, name: &str, digest: u8) -> TokenRecord {
    TokenRecord {
        id: Uuid::now_v7(),
        name: name.into(),
        role,
        host_id: None,
        digest: [digest; 32],
        created_at: T0,
        created_by: "test".into(),
        revoked_at: None,
        person_id: None,
        person: None,
        created_by_token: None,
    }
}

pub async fn story<S: Store>(store: S) {
    store.ping().await.unwrap();

    // Tokens: stored by digest, revoked once.
    let alice = token(Role::ChangeManager, "alice", 1);
    store
        .insert_token(alice.clone(), audit("token.created"))
        .await
        .unwrap();
    assert_eq!(store.token(alice.id).await.unwrap(), alice);
    assert!(matches!(
        store.token(Uuid::now_v7()).await,
        Err(StoreError::NotFound(_))
    ));
    let revoked = store
        .revoke_token(alice.id, T0 + 1, audit("token.revoked"))
        .await
        .unwrap();
    assert_eq!(revoked.revoked_at, Some(T0 + 1));
    assert!(matches!(
        store
            .revoke_token(alice.id, T0 + 2, audit("token.revoked"))
            .await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(store.tokens().await.unwrap().len(), 1);

    // Enrollment: one use, the right digest, before expiry.
    let enrollment = EnrollmentTokenRecord {
        id: Uuid::now_v7(),
        digest: [9; 32],
        created_by: "root".into(),
        created_at: T0,
        expires_at: T0 + 60_000,
        uses_left: 1,
    };
    store
        .insert_enrollment_token(enrollment.clone(), audit("enrollment_token.created"))
        .await
        .unwrap();
    let host = |name: &str, at: Millis| Host {
        id: Uuid::now_v7(),
        hostname: name.into(),
        labels: BTreeMap::from([("role".to_owned(), "web".to_owned())]),
        agent_version: "0.1.0".into(),
        enrolled_at: at,
        last_seen_at: None,
        skew_ms: 0,
        inventory: None,
        health: None,
        reported_seq: 0,
        stored_seq: 0,
        chain_keyed: false,
    };
    let credential = |host: &Host| TokenRecord {
        host_id: Some(host.id),
        ..token(Role::Agent, &host.hostname, 7)
    };
    let web = host("web-1", T0 + 1000);
    for (digest, at, why) in [
        ([8; 32], T0 + 1000, "wrong digest"),
        ([9; 32], T0 + 60_000, "expired"),
    ] {
        let late = host("web-1", at);
        let refused = store
            .enroll(
                enrollment.id,
                digest,
                late.clone(),
                credential(&late),
                Some(ChainKey::from_bytes(WEB_KEY)),
                audit("host.enrolled"),
            )
            .await;
        assert!(matches!(refused, Err(StoreError::NotFound(_))), "{why}");
    }
    store
        .enroll(
            enrollment.id,
            [9; 32],
            web.clone(),
            credential(&web),
            Some(ChainKey::from_bytes(WEB_KEY)),
            audit("host.enrolled"),
        )
        .await
        .unwrap();
    let again = host("web-2", T0 + 2000);
    assert!(
        matches!(
            store
                .enroll(
                    enrollment.id,
                    [9; 32],
                    again.clone(),
                    credential(&again),
                    None,
                    audit("host.enrolled")
                )
                .await,
            Err(StoreError::NotFound(_))
        ),
        "used up"
    );
    assert!(
        matches!(store.host(again.id).await, Err(StoreError::NotFound(_))),
        "nothing written"
    );
    assert_eq!(store.host(web.id).await.unwrap().hostname, "web-1");
    assert_eq!(store.hosts().await.unwrap().len(), 1);

    // Ingest: idempotent, chained, drift opened per subject.
    let mut agent = Agent {
        host_id: web.id,
        seq: 0,
        prev: DriftEvent::GENESIS,
        key: Some(ChainKey::from_bytes(WEB_KEY)),
    };
    let first = agent.event("package:nginx", ChangeKind::Content, "1.24");
    let second = agent.event("package:nginx", ChangeKind::Content, "1.25");
    let outcome = store
        .ingest(
            web.id,
            vec![
                decided(first.clone(), Outcome::Untraced),
                decided(second.clone(), Outcome::Untraced),
            ],
            T0 + 5000,
        )
        .await
        .unwrap();
    assert_eq!(
        (outcome.accepted, outcome.duplicates, outcome.last_seq),
        (2, 0, 2)
    );
    assert!(
        outcome.chain_problems.is_empty(),
        "{:?}",
        outcome.chain_problems
    );
    let retry = store
        .ingest(
            web.id,
            vec![decided(second.clone(), Outcome::Untraced)],
            T0 + 6000,
        )
        .await
        .unwrap();
    assert_eq!(
        (retry.accepted, retry.duplicates, retry.last_seq),
        (0, 1, 2)
    );
    let mut forged = second.clone();
    forged.diff = Some("changed".into());
    let replay = store
        .ingest(web.id, vec![decided(forged, Outcome::Untraced)], T0 + 6000)
        .await
        .unwrap();
    assert!(matches!(
        replay.chain_problems[..],
        [ChainProblem::Replay { seq: 2, .. }]
    ));
    let open = store
        .drift_items(DriftFilter {
            status: Some(DriftStatus::Open),
            ..DriftFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(open.len(), 1, "one item per subject");
    let item = &open[0];
    assert_eq!(
        (item.events, item.subject.as_str(), item.untraced_since),
        (2, "package:nginx", Some(T0 + 5000))
    );
    assert_eq!(store.events(item.id).await.unwrap().len(), 2);

    // A gap is stored and reported; the chain continues from the newest event.
    agent.seq += 2;
    let after_gap = agent.event("file:/etc/hosts", ChangeKind::Content, "x");
    let gap = store
        .ingest(
            web.id,
            vec![decided(
                after_gap,
                Outcome::Authorized {
                    window_id: Uuid::nil(),
                },
            )],
            T0 + 7000,
        )
        .await
        .unwrap();
    assert_eq!(
        gap.chain_problems,
        vec![ChainProblem::Gap { from: 3, to: 4 }]
    );
    assert_eq!(gap.last_seq, 5);
    let authorized = store
        .drift_items(DriftFilter {
            status: Some(DriftStatus::Authorized),
            ..DriftFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(authorized.len(), 1);

    // An event for an unknown host writes nothing.
    let mut stranger = Agent {
        host_id: Uuid::now_v7(),
        seq: 0,
        prev: DriftEvent::GENESIS,
        key: None,
    };
    let refused = store
        .ingest(
            stranger.host_id,
            vec![decided(
                stranger.event("package:x", ChangeKind::Added, "1"),
                Outcome::Untraced,
            )],
            T0,
        )
        .await;
    assert!(matches!(refused, Err(StoreError::NotFound(_))));

    // Alerts: held, then one per host and burst; chain alerts go straight to the outbox.
    assert_eq!(
        store
            .raise_due_alerts(T0 + 5000 + 299_000, 300_000, 10_000, FACTS)
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        store
            .raise_due_alerts(T0 + 5000 + 300_000, 300_000, 10_000, FACTS)
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        store
            .raise_due_alerts(T0 + 5000 + 900_000, 300_000, 10_000, FACTS)
            .await
            .unwrap(),
        0,
        "once"
    );
    let pending = store.undelivered_alerts(10).await.unwrap();
    let kinds: Vec<&str> = pending.iter().map(|a| a.kind.as_str()).collect();
    assert_eq!(kinds, ["chain", "chain", "untraced_drift"]);
    // The rules were given the burst: its host, its items, how long it was held.
    let burst = &pending[2].body;
    assert_eq!(
        (&burst["hostname"], &burst["subjects"], &burst["held_ms"]),
        (&json!("web-1"), &json!(["package:nginx"]), &json!(300_000))
    );
    assert_eq!(pending[2].host_id, Some(web.id));
    // Delivery, per sink: a failing sink backs off alone, and an alert is delivered once
    // every sink has it.
    let sinks = || vec!["file".to_owned(), "hook".to_owned()];
    let attempt = |sink: &str, at: Millis, error: Option<&str>, next: Millis| DeliveryAttempt {
        alert_id: pending[0].id,
        sink: sink.into(),
        at,
        error: error.map(Into::into),
        next_attempt_at: next,
        sinks: sinks(),
        dead_letter: None,
    };
    let due = |sink: &'static str, at: Millis| {
        let store = store.clone();
        async move {
            store
                .due_deliveries(sink.into(), at, 10)
                .await
                .unwrap()
                .iter()
                .map(|a| a.id)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(due("hook", T0).await.len(), 3, "never tried: due");
    assert!(
        !store
            .record_delivery(attempt("hook", T0 + 1, Some("HTTP 503"), T0 + 1001))
            .await
            .unwrap()
    );
    assert!(
        !due("hook", T0 + 1000).await.contains(&pending[0].id),
        "backing off"
    );
    assert!(
        due("hook", T0 + 1001).await.contains(&pending[0].id),
        "due again"
    );
    assert!(
        !store
            .record_delivery(attempt("file", T0 + 2, None, T0 + 2))
            .await
            .unwrap(),
        "the hook still owes it"
    );
    assert!(
        !due("file", T0 + 5000).await.contains(&pending[0].id),
        "never twice"
    );
    let backlog = store.delivery_backlog(sinks()).await.unwrap();
    assert_eq!(
        backlog
            .iter()
            .map(|b| (b.sink.as_str(), b.undelivered, b.failing))
            .collect::<Vec<_>>(),
        [("file", 2, 0), ("hook", 3, 1)]
    );
    assert!(
        store
            .record_delivery(attempt("hook", T0 + 1001, None, T0 + 1001))
            .await
            .unwrap(),
        "every sink has it now"
    );
    let listed = store.alerts(10).await.unwrap();
    let first_alert = listed.iter().find(|a| a.id == pending[0].id).unwrap();
    assert_eq!(
        (
            first_alert.attempts,
            first_alert.delivered_at,
            first_alert.last_error.as_deref()
        ),
        (3, Some(T0 + 1001), Some("HTTP 503"))
    );
    let hook = &first_alert.deliveries[1];
    assert_eq!(
        (
            hook.sink.as_str(),
            hook.state,
            hook.attempts,
            hook.delivered_at,
            hook.next_attempt_at
        ),
        ("hook", DeliveryState::Delivered, 2, Some(T0 + 1001), None)
    );
    assert_eq!(first_alert.deliveries[0].state, DeliveryState::Delivered);
    assert!(
        due("hook", T0 + 9000)
            .await
            .iter()
            .all(|id| *id != pending[0].id)
    );
    assert_eq!(store.undelivered_alerts(10).await.unwrap().len(), 2);
    // A sink removed from the configuration no longer holds an alert back.
    store
        .record_delivery(DeliveryAttempt {
            alert_id: pending[1].id,
            ..attempt("file", T0 + 3, None, T0 + 3)
        })
        .await
        .unwrap();
    assert_eq!(store.settle_alerts(sinks(), T0 + 4).await.unwrap(), 0);
    assert_eq!(
        store
            .settle_alerts(vec!["file".into()], T0 + 4)
            .await
            .unwrap(),
        1
    );
    assert_eq!(store.undelivered_alerts(10).await.unwrap().len(), 1);
    // Without any sink, nothing is owed.
    assert_eq!(store.settle_alerts(Vec::new(), T0 + 5).await.unwrap(), 1);
    assert!(store.undelivered_alerts(10).await.unwrap().is_empty());

    // Resolution by a person: open drift only.
    let resolution = Resolution {
        category: ResolutionCategory::FalsePositive,
        comment: "tuning".into(),
        ticket: None,
        by: "eve".into(),
        at: T0 + 8000,
    };
    let resolved = store
        .resolve_drift(item.id, resolution.clone(), audit("drift.resolved"))
        .await
        .unwrap();
    assert_eq!(resolved.status, DriftStatus::Resolved);
    assert!(matches!(
        store
            .resolve_drift(item.id, resolution, audit("drift.resolved"))
            .await,
        Err(StoreError::Conflict(_))
    ));

    // A restored subject resolves its drift automatically.
    let restore = agent.restored("file:/etc/hosts");
    store
        .ingest(web.id, vec![decided(restore, Outcome::Restored)], T0 + 9000)
        .await
        .unwrap();
    let auto = store.drift_item(authorized[0].id).await.unwrap();
    assert_eq!(auto.status, DriftStatus::Resolved);
    assert_eq!(
        auto.resolution.unwrap().category,
        ResolutionCategory::Restored
    );

    // Windows: decisions need the expected status; review covers drift after the fact.
    let window = Window {
        id: Uuid::now_v7(),
        ticket: "CHG-1".into(),
        title: "t".into(),
        kind: WindowKind::Emergency,
        status: WindowStatus::Requested,
        requester: "alice".into(),
        decided_by: None,
        decided_at: None,
        decision_comment: None,
        hosts: HostScope {
            names: vec!["web-1".into()],
            ..HostScope::default()
        },
        subjects: vec!["package:*".into()],
        start: T0 - 60_000,
        end: T0 + 60_000,
        time_zone: "UTC".into(),
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
    // An emergency window left unapproved past its deadline alerts, once.
    assert_eq!(
        store
            .raise_emergency_alerts(T0 + 59_000, 60_000, FACTS)
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        store
            .raise_emergency_alerts(T0 + 60_000, 60_000, FACTS)
            .await
            .unwrap(),
        1
    );
    let alerts = store.alerts(100).await.unwrap();
    let late = alerts
        .iter()
        .find(|a| a.kind == "emergency_unapproved")
        .expect("an emergency alert");
    assert_eq!(
        (
            &late.body["window_id"],
            &late.body["ticket"],
            &late.body["recorded_at"]
        ),
        (&json!(window.id), &json!("CHG-1"), &json!(T0))
    );
    assert_eq!(
        store
            .raise_emergency_alerts(T0 + 99_000, 60_000, FACTS)
            .await
            .unwrap(),
        0
    );
    assert_eq!(store.window(window.id).await.unwrap(), window);
    // Implementers and a schedule are kept as given.
    let standard = Window {
        id: Uuid::now_v7(),
        ticket: "STD-1".into(),
        kind: WindowKind::Standard,
        implementers: vec!["carol".into(), "dave".into()],
        schedule: Some(Schedule {
            weekdays: vec!["sun".into()],
            start: "02:00".into(),
            duration_minutes: 120,
        }),
        ..window.clone()
    };
    store
        .insert_window(standard.clone(), audit("window.requested"))
        .await
        .unwrap();
    assert_eq!(store.window(standard.id).await.unwrap(), standard);
    let mut approved = window.clone();
    approved.status = WindowStatus::Approved;
    approved.decided_by = Some("bob".into());
    assert!(matches!(
        store
            .update_window(
                approved.clone(),
                WindowStatus::Approved,
                audit("window.approved")
            )
            .await,
        Err(StoreError::Conflict(_))
    ));
    store
        .update_window(
            approved.clone(),
            WindowStatus::Requested,
            audit("window.approved"),
        )
        .await
        .unwrap();
    assert_eq!(
        store
            .windows(Some(WindowStatus::Approved))
            .await
            .unwrap()
            .len(),
        1
    );

    let late = agent.event("package:vim", ChangeKind::Content, "9");
    store
        .ingest(
            web.id,
            vec![decided(late.clone(), Outcome::Untraced)],
            T0 + 10_000,
        )
        .await
        .unwrap();
    let candidates = store
        .review_candidates(T0 - 60_000, T0 + 60_000)
        .await
        .unwrap();
    assert!(
        candidates
            .iter()
            .any(|c| c.event.id == late.id && c.host.id == web.id)
    );
    let review = store
        .apply_review(
            window.id,
            vec![(
                late.id,
                Outcome::Authorized {
                    window_id: window.id,
                },
            )],
            T0 + 11_000,
            "bob".into(),
        )
        .await
        .unwrap();
    assert_eq!(
        review,
        ReviewOutcome {
            events: 1,
            drift_authorized: 1
        }
    );
    let vim = store
        .drift_items(DriftFilter {
            window_id: Some(window.id),
            ..DriftFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(vim.len(), 1);
    assert_eq!(vim[0].status, DriftStatus::Authorized);
    assert_eq!(
        store
            .raise_due_alerts(T0 + 10_000_000, 0, 0, FACTS)
            .await
            .unwrap(),
        0,
        "covered drift is not alerted"
    );

    // Close-out: authorized drift accepted, a command naming the reviewed state.
    let mut closed = approved.clone();
    closed.status = WindowStatus::Closed;
    closed.ended_at = Some(T0 + 12_000);
    closed.ended_by = Some("alice".into());
    let close = store
        .close_window(closed, audit("window.closed"))
        .await
        .unwrap();
    assert_eq!(
        close,
        CloseOutcome {
            accepted: 1,
            commands: 1
        }
    );
    let heartbeat = |results: Vec<CommandResult>| HeartbeatRecord {
        host_id: web.id,
        received_at: T0 + 13_000,
        skew_ms: -250,
        inventory: Inventory {
            hostname: "web-1".into(),
            ..Inventory::default()
        },
        health: AgentHealth::default(),
        reported_seq: 8,
        results,
    };
    let commands = store.heartbeat(heartbeat(vec![]), vec![]).await.unwrap();
    let [
        AgentCommand::BaselineAccept {
            command_id,
            subject,
            state,
            window_id,
        },
    ] = &commands[..]
    else {
        panic!("expected one command, got {commands:?}");
    };
    assert_eq!(
        (subject.0.as_str(), state, *window_id),
        ("package:vim", &fields("9"), Some(window.id))
    );
    let done = CommandResult {
        command_id: *command_id,
        outcome: CommandOutcome::Applied,
        baseline: None,
    };
    assert!(
        store
            .heartbeat(heartbeat(vec![done]), vec![])
            .await
            .unwrap()
            .is_empty()
    );
    let seen = store.host(web.id).await.unwrap();
    assert_eq!(
        (seen.skew_ms, seen.reported_seq, seen.last_seen_at),
        (-250, 8, Some(T0 + 13_000))
    );

    // Silence: one alert per host until it is heard from again.
    assert_eq!(
        store
            .raise_silent_alerts(T0 + 13_000 + 301_000, 300_000, FACTS)
            .await
            .unwrap(),
        1
    );
    let alerts = store.alerts(100).await.unwrap();
    let silent = alerts
        .iter()
        .find(|a| a.kind == "agent_silent")
        .expect("a silent alert");
    assert_eq!(
        (silent.kind.as_str(), silent.host_id),
        ("agent_silent", Some(web.id))
    );
    assert_eq!(
        (
            &silent.body["last_seen_at"],
            &silent.body["silent_after_ms"]
        ),
        (&json!(T0 + 13_000), &json!(300_000))
    );
    assert_eq!(
        store
            .raise_silent_alerts(T0 + 13_000 + 999_000, 300_000, FACTS)
            .await
            .unwrap(),
        0
    );
    let stats = store.stats(T0 + 13_000 + 999_000, 300_000).await.unwrap();
    assert_eq!((stats.hosts, stats.silent_hosts), (1, 1));

    // Configuration is audited when it changes, not at every start.
    let sinks = || {
        NewAudit::new(
            T0,
            "config file",
            "config.alert_sinks",
            "alert_sinks",
            json!({}),
        )
    };
    assert!(
        store
            .note_config("alert_sinks".into(), "[a]".into(), sinks())
            .await
            .unwrap()
    );
    assert!(
        !store
            .note_config("alert_sinks".into(), "[a]".into(), sinks())
            .await
            .unwrap()
    );
    assert!(
        store
            .note_config("alert_sinks".into(), "[b]".into(), sinks())
            .await
            .unwrap()
    );

    // Every audited change is in the chain, intact.
    let (entries, head) = store.audit_log().await.unwrap();
    let actions: Vec<&str> = entries.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(
        actions,
        [
            "token.created",
            "token.revoked",
            "enrollment_token.created",
            "host.enrolled",
            "drift.resolved",
            "window.requested",
            "window.requested",
            "window.approved",
            "window.closed",
            "config.alert_sinks",
            "config.alert_sinks",
        ]
    );
    assert!(verify(&entries, head).ok);

    // A further unapproved change of a subject already alerted on alerts again, after its
    // own hold; a change before that alert is part of it, and nothing alerts twice.
    let later = T0 + 50_000_000;
    let hold = 300_000;
    let mut report = |version: &str, at: Millis| {
        let event = agent.event("file:/etc/again.conf", ChangeKind::Content, version);
        let store = &store;
        async move {
            store
                .ingest(web.id, vec![decided(event, Outcome::Untraced)], at)
                .await
                .unwrap()
        }
    };
    report("1", later).await;
    let raise = |at: Millis| store.raise_due_alerts(at, hold, 10_000, FACTS);
    assert_eq!(raise(later + hold).await.unwrap(), 1, "the first change");
    report("2", later + hold + 1_000).await;
    report("3", later + hold + 2_000).await;
    assert_eq!(raise(later + hold + 2_000).await.unwrap(), 0, "held");
    assert_eq!(
        raise(later + 2 * hold + 1_000).await.unwrap(),
        1,
        "the changes after the alert, together"
    );
    assert_eq!(raise(later + 5 * hold).await.unwrap(), 0, "once");
}

/// Spool marks, spool bounds on events and clock alerts (authorization on the collector's
/// clock): what a backend must keep and return.
pub async fn clock_story<S: Store>(store: S) {
    use crate::spool_time::{ClockClaim, SpoolMark, SpoolTime};
    let host = super::conformance_evidence::enroll(&store, "web-9", 5).await;
    let heartbeat = |at: Millis, last_seq: u64| HeartbeatRecord {
        host_id: host.id,
        received_at: at,
        skew_ms: 0,
        inventory: Inventory::default(),
        health: AgentHealth::default(),
        reported_seq: last_seq,
        results: vec![],
    };
    // Idle: one mark kept, the latest.
    for i in 0..5 {
        store
            .heartbeat(heartbeat(T0 + i * 60_000, 0), vec![])
            .await
            .unwrap();
    }
    let mark = |received_at, last_seq| SpoolMark {
        received_at,
        last_seq,
    };
    assert_eq!(
        store.spool_marks(host.id).await.unwrap(),
        vec![mark(T0 + 240_000, 0)]
    );
    // Events 1 and 2 spooled, not delivered: the first report of 2 and the last are kept.
    for i in 5..8 {
        store
            .heartbeat(heartbeat(T0 + i * 60_000, 2), vec![])
            .await
            .unwrap();
    }
    assert_eq!(
        store.spool_marks(host.id).await.unwrap(),
        vec![
            mark(T0 + 240_000, 0),
            mark(T0 + 300_000, 2),
            mark(T0 + 420_000, 2)
        ]
    );

    // Ingest keeps each event's spool time; false claims are counted.
    let mut agent = Agent {
        host_id: host.id,
        seq: 0,
        prev: DriftEvent::GENESIS,
        key: Some(super::conformance_evidence::key_of(host.id)),
    };
    let spool = |claim| SpoolTime {
        spooled_after: T0 + 240_000,
        spooled_before: T0 + 300_000,
        clock_claim: claim,
        not_provably_in: None,
    };
    let mut honest = decided(
        agent.event("file:/etc/a", ChangeKind::Content, "1"),
        Outcome::Untraced,
    );
    honest.spool = spool(ClockClaim::Consistent);
    // The caller moves event times inside the bounds.
    honest.event_time = T0 + 250_000;
    let mut forged = decided(
        agent.event("file:/etc/b", ChangeKind::Content, "1"),
        Outcome::Untraced,
    );
    forged.spool = SpoolTime {
        not_provably_in: Some(Uuid::nil()),
        ..spool(ClockClaim::AfterBounds)
    };
    forged.event_time = T0 + 300_000;
    let outcome = store
        .ingest(host.id, vec![honest, forged.clone()], T0 + 480_000)
        .await
        .unwrap();
    assert_eq!((outcome.accepted, outcome.false_claims), (2, 1));
    let again = store
        .ingest(host.id, vec![forged.clone()], T0 + 490_000)
        .await
        .unwrap();
    assert_eq!((again.duplicates, again.false_claims), (1, 0), "a retry");
    let drift = store
        .drift_items(DriftFilter {
            host_id: Some(host.id),
            ..DriftFilter::default()
        })
        .await
        .unwrap();
    let b = drift.iter().find(|d| d.subject == "file:/etc/b").unwrap();
    assert_eq!(store.events(b.id).await.unwrap()[0].spool, forged.spool);
    // Events are stored: marks at or below the head collapse to the latest.
    store
        .heartbeat(heartbeat(T0 + 540_000, 2), vec![])
        .await
        .unwrap();
    assert_eq!(
        store.spool_marks(host.id).await.unwrap(),
        vec![mark(T0 + 540_000, 2)]
    );

    // Review candidates are chosen by their spool bounds.
    let in_range = store
        .review_candidates(T0 + 240_000, T0 + 300_000)
        .await
        .unwrap();
    assert_eq!(
        in_range
            .iter()
            .filter(|c| c.host.id == host.id)
            .map(|c| c.spooled)
            .collect::<Vec<_>>(),
        vec![forged.spool.bounds(); 2]
    );
    let narrower = store
        .review_candidates(T0 + 250_000, T0 + 300_000)
        .await
        .unwrap();
    assert!(narrower.iter().all(|c| c.host.id != host.id));

    // Clock alerts: one per host and burst.
    let alert = NewAlert {
        kind: "clock_claim".into(),
        host_id: Some(host.id),
        body: json!({"kind": "clock_claim"}),
    };
    assert!(
        store
            .raise_clock_alert(alert.clone(), T0 + 1_000_000, 10_000)
            .await
            .unwrap()
    );
    assert!(
        !store
            .raise_clock_alert(alert.clone(), T0 + 1_005_000, 10_000)
            .await
            .unwrap()
    );
    assert!(
        store
            .raise_clock_alert(alert, T0 + 1_011_000, 10_000)
            .await
            .unwrap()
    );
}
