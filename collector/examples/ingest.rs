//! Ingest throughput through the real code path (`App::ingest`: validation, matching against
//! every approved window, one SQLite transaction per batch with the chain check and the drift
//! items), without HTTP. Run by `bench/collector.sh`, or:
//! `cargo run --release -p driftwatch-collector --example ingest -- [windows] [hosts] [events]`.
//!
//! Defaults: 10,000 windows, 5,000 hosts, 1,000,000 events in batches of 500 (one host per
//! batch, hosts in turn, as agents deliver), on a file database in a temp dir
//! (`synchronous = FULL`, as in production). 1% of the windows are recurring standard
//! windows (by label, open now); a quarter of the one-off windows name implementers; events
//! carry actors and, for files, package provenance, so every matcher rule runs.
//! Prints events/s ingested and matched, the p99 latency of one batch, the matcher alone on
//! a sample, and the outcomes, so a figure that skipped the work would show.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use driftwatch_collector::app::{App, Settings};
use driftwatch_collector::clock::{Clock, SystemClock, rfc3339};
use driftwatch_collector::identity::{Principal, Role};
use driftwatch_collector::matcher::{self, EventFacts, HostFacts, WindowIndex};
use driftwatch_collector::store::{SqliteStore, Store};
use driftwatch_collector::windows::lifecycle::Action;
use driftwatch_collector::windows::schedule::Schedule;
use driftwatch_collector::windows::validate::WindowRequest;
use driftwatch_collector::windows::{HostScope, WindowKind};
use driftwatch_common::api::v1::{
    Actor, ChangeKind, DriftEvent, EnrollRequest, EventBatch, Provenance, SeenBy, SubjectKey,
    SubjectState,
};

const BATCH: usize = 500;
/// Events kept to time the matcher alone.
const SAMPLE: usize = 100_000;
const HOUR: i64 = 3_600_000;
const DAY: i64 = 24 * HOUR;

fn err(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!("{e}")
}

fn role(host: usize) -> &'static str {
    if host.is_multiple_of(2) { "web" } else { "db" }
}

fn actor(n: u64) -> Option<Actor> {
    let login = match n % 20 {
        0 => return None,
        1 => "mallory",
        _ => "ops",
    };
    Some(Actor {
        source: "fanotify".into(),
        uid: Some(0),
        user: Some("root".into()),
        login_uid: Some(1000),
        login_user: Some(login.into()),
        ..Actor::default()
    })
}

fn main() -> anyhow::Result<()> {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse())
        .collect::<Result<_, _>>()?;
    let windows = args.first().copied().unwrap_or(10_000);
    let hosts = args.get(1).copied().unwrap_or(5_000);
    let events = args.get(2).copied().unwrap_or(1_000_000);
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(windows, hosts, events))
}

async fn run(windows: usize, hosts: usize, events: usize) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store = SqliteStore::open(&dir.path().join("collector.db"))?;
    let settings = Settings {
        hold_ms: 300_000,
        burst_ms: 10_000,
        tolerance_ms: 60_000,
        silent_after_ms: 300_000,
        emergency_approval_ms: 86_400_000,
        max_body_bytes: 1 << 20,
    };
    let app = Arc::new(
        App::new(store.clone(), settings, Arc::new(SystemClock), vec![])
            .await
            .map_err(err)?,
    );
    let person = |name: &str| Principal {
        token_id: uuid::Uuid::nil(),
        name: name.into(),
        role: Role::ChangeManager,
        host_id: None,
    };
    let (alice, bob) = (person("alice"), person("bob"));

    let started = Instant::now();
    let now = SystemClock.now();
    let recurring = (windows / 100).max(1);
    for w in 0..windows {
        let request = if w < recurring {
            // Standard windows: every day from half an hour ago, for an hour, by label.
            let opens = now - HOUR / 2;
            let clock = jiff::Timestamp::from_millisecond(opens)?
                .to_zoned(jiff::tz::TimeZone::UTC)
                .strftime("%H:%M")
                .to_string();
            WindowRequest {
                ticket: format!("STD-{w}"),
                title: "bench".into(),
                kind: WindowKind::Standard,
                hosts: HostScope {
                    labels: BTreeMap::from([("role".to_owned(), role(w).to_owned())]),
                    ..HostScope::default()
                },
                subjects: vec![format!("package:lib{}*", w % 10)],
                start: rfc3339(now - DAY),
                end: rfc3339(now + 300 * DAY),
                time_zone: "UTC".into(),
                schedule: Some(Schedule {
                    weekdays: ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
                        .map(str::to_owned)
                        .to_vec(),
                    start: clock,
                    duration_minutes: 60,
                }),
                implementers: vec!["ops".into()],
                ..WindowRequest::default()
            }
        } else {
            // One-off windows spread over a month around now; each names 3 hosts.
            let start = now - 15 * DAY + (w as i64 * 30 * DAY / windows as i64);
            WindowRequest {
                ticket: format!("CHG-{w}"),
                title: "bench".into(),
                kind: WindowKind::Emergency,
                hosts: HostScope {
                    names: (0..3)
                        .map(|i| format!("host-{}", (w * 7 + i) % hosts))
                        .collect(),
                    ..HostScope::default()
                },
                subjects: vec!["file:/etc/app/**".into(), "package:app*".into()],
                start: rfc3339(start),
                end: rfc3339(start + 4 * HOUR),
                time_zone: "UTC".into(),
                implementers: if w.is_multiple_of(4) {
                    vec!["ops".into()]
                } else {
                    vec![]
                },
                ..WindowRequest::default()
            }
        };
        let window = app.create_window(&alice, &request).await.map_err(err)?;
        app.decide(&bob, window.id, Action::Approve, None)
            .await
            .map_err(err)?;
    }
    println!(
        "{windows} windows ({recurring} recurring) requested and approved in {:.1?}",
        started.elapsed()
    );

    let admin = Principal {
        role: Role::Admin,
        ..person("root")
    };
    let mut agents = Vec::new();
    let mut host_labels = Vec::new();
    for h in 0..hosts {
        let (_, token) = app
            .create_enrollment_token(&admin, 3600, 1)
            .await
            .map_err(err)?;
        let labels = BTreeMap::from([("role".to_owned(), role(h).to_owned())]);
        let enrolled = app
            .enroll(EnrollRequest {
                token,
                hostname: format!("host-{h}"),
                labels: labels.clone(),
                agent_version: "bench".into(),
            })
            .await
            .map_err(err)?;
        let agent = Principal {
            token_id: uuid::Uuid::nil(),
            name: format!("host-{h}"),
            role: Role::Agent,
            host_id: Some(enrolled.host_id),
        };
        agents.push((agent, 0u64, DriftEvent::GENESIS));
        host_labels.push(labels);
    }

    let mut latencies: Vec<Duration> = Vec::new();
    let mut sample: Vec<(usize, DriftEvent)> = Vec::new();
    let started = Instant::now();
    let mut sent = 0;
    let mut round = 0usize;
    while sent < events {
        let host = round % hosts;
        round += 1;
        let (agent, seq, prev) = &mut agents[host];
        let host_id = agent.host_id.expect("an agent");
        let mut batch_events = Vec::with_capacity(BATCH);
        for i in 0..BATCH.min(events - sent) {
            *seq += 1;
            let file = i.is_multiple_of(2);
            let event = DriftEvent {
                id: uuid::Uuid::now_v7(),
                host_id,
                seq: *seq,
                prev_hash: *prev,
                subject: SubjectKey(if file {
                    format!("file:/etc/app/f{}", *seq % 50)
                } else {
                    format!("package:lib{}", *seq % 50)
                }),
                kind: ChangeKind::Content,
                changed: vec!["version".into()],
                before: None,
                after: Some(SubjectState::Fields {
                    fields: BTreeMap::from([("version".to_owned(), seq.to_string())]),
                }),
                diff: None,
                actor: actor(*seq),
                seen_by: SeenBy::Watch,
                observed_at: time::OffsetDateTime::now_utc(),
                provenance: (file && seq.is_multiple_of(3)).then(|| Provenance {
                    manager: "dpkg".into(),
                    package: "app".into(),
                    version: "1".into(),
                    matches_package: !seq.is_multiple_of(6),
                }),
                related: None,
            };
            *prev = event.chain_hash();
            if sample.len() < SAMPLE {
                sample.push((host, event.clone()));
            }
            batch_events.push(event);
        }
        sent += batch_events.len();
        let t = Instant::now();
        app.ingest(
            agent,
            EventBatch {
                events: batch_events,
            },
        )
        .await
        .map_err(err)?;
        latencies.push(t.elapsed());
    }
    let elapsed = started.elapsed();
    latencies.sort();
    let p = |q: usize| latencies[(latencies.len() * q / 100).min(latencies.len() - 1)];
    println!(
        "{events} events from {hosts} hosts against {windows} windows: {:.0} events/s ingested \
         and matched in {elapsed:.1?}; batch of {BATCH} latency p50 {:.1?}, p99 {:.1?}, max {:.1?}",
        events as f64 / elapsed.as_secs_f64(),
        p(50),
        p(99),
        latencies[latencies.len() - 1],
    );

    // The matcher alone, on the first events, against the same windows.
    let index = WindowIndex::build(&store.windows(None).await?).map_err(|(_, why)| err(why))?;
    let mut outcomes: BTreeMap<&'static str, usize> = BTreeMap::new();
    let t = Instant::now();
    for (host, event) in &sample {
        let outcome = matcher::match_event(
            &index,
            HostFacts {
                hostname: &format!("host-{host}"),
                labels: &host_labels[*host],
                skew_ms: 0,
            },
            EventFacts {
                subject: &event.subject.0,
                kind: event.kind,
                after: event.after.as_ref(),
                observed_at: event.observed_at.unix_timestamp_nanos() as i64 / 1_000_000,
                actor: event.actor.as_ref(),
                provenance: event.provenance.as_ref(),
            },
            60_000,
        );
        *outcomes.entry(outcome.name()).or_default() += 1;
    }
    let matched = t.elapsed();
    println!(
        "matcher alone: {:.0} events/s over {} events; outcomes {outcomes:?}",
        sample.len() as f64 / matched.as_secs_f64(),
        sample.len()
    );
    let stats = store.stats(SystemClock.now(), 300_000).await?;
    println!("{} open drift items", stats.open_drift);
    store.close();
    Ok(())
}
