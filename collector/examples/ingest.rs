//! Ingest throughput through the real code path (matching + SQLite commit), without HTTP:
//! `cargo run --release -p driftwatch-collector --example ingest -- [windows] [hosts] [events]`.
//! Defaults: 10,000 windows, 5,000 hosts, 200,000 events in batches of 500, on a file
//! database in a temp dir (synchronous = FULL, as in production). Prints events/s and the
//! p99 batch latency. A first measurement, not the benchmark issue 4 asks for.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use driftwatch_collector::app::{App, Settings};
use driftwatch_collector::clock::{Clock, SystemClock};
use driftwatch_collector::identity::{Principal, Role};
use driftwatch_collector::store::{SqliteStore, Store};
use driftwatch_collector::windows::HostScope;
use driftwatch_collector::windows::lifecycle::Action;
use driftwatch_collector::windows::validate::WindowRequest;
use driftwatch_common::api::v1::{
    ChangeKind, DriftEvent, EnrollRequest, EventBatch, SeenBy, SubjectKey, SubjectState,
};

fn main() -> anyhow::Result<()> {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse())
        .collect::<Result<_, _>>()?;
    let windows = args.first().copied().unwrap_or(10_000);
    let hosts = args.get(1).copied().unwrap_or(5_000);
    let events = args.get(2).copied().unwrap_or(200_000);
    let batch = 500;
    tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(async move {
        let dir = tempfile::tempdir()?;
        let store = SqliteStore::open(&dir.path().join("collector.db"))?;
        let settings = Settings { hold_ms: 300_000, burst_ms: 10_000, tolerance_ms: 60_000, silent_after_ms: 300_000, emergency_approval_ms: 86_400_000, max_body_bytes: 1 << 20, max_export_rows: 100_000 };
        let app = Arc::new(App::new(store.clone(), settings, Arc::new(SystemClock), driftwatch_collector::alerts::Sinks::none()).await.map_err(|e| anyhow::anyhow!("{e}"))?);
        let person = |name: &str| Principal { token_id: uuid::Uuid::nil(), name: name.into(), role: Role::ChangeManager, host_id: None };
        let (alice, bob) = (person("alice"), person("bob"));

        let started = Instant::now();
        let now = SystemClock.now();
        for w in 0..windows {
            // Windows spread over a month around now; each names 3 hosts.
            let start = now - 15 * 86_400_000 + (w as i64 * 2_592_000_000 / windows as i64);
            let request = WindowRequest {
                ticket: format!("CHG-{w}"),
                title: "bench".into(),
                kind: driftwatch_collector::windows::WindowKind::Emergency,
                hosts: HostScope { names: (0..3).map(|i| format!("host-{}", (w * 7 + i) % hosts)).collect(), ..HostScope::default() },
                subjects: vec!["file:/etc/app/**".into(), "package:app*".into()],
                start: driftwatch_collector::clock::rfc3339(start),
                end: driftwatch_collector::clock::rfc3339(start + 4 * 3_600_000),
                time_zone: "UTC".into(),
                ..WindowRequest::default()
            };
            let window = app.create_window(&alice, &request).await.map_err(|e| anyhow::anyhow!("{e}"))?;
            app.decide(&bob, window.id, Action::Approve, None).await.map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        println!("{windows} windows requested and approved in {:.1?}", started.elapsed());

        let admin = Principal { role: Role::Admin, ..person("root") };
        let mut agents = Vec::new();
        for h in 0..hosts {
            let (_, token) = app.create_enrollment_token(&admin, 3600, 1).await.map_err(|e| anyhow::anyhow!("{e}"))?;
            let enrolled = app
                .enroll(EnrollRequest { token, hostname: format!("host-{h}"), labels: BTreeMap::new(), agent_version: "bench".into() })
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            let agent = Principal { token_id: uuid::Uuid::nil(), name: format!("host-{h}"), role: Role::Agent, host_id: Some(enrolled.host_id) };
            agents.push((agent, 0u64, DriftEvent::GENESIS));
        }

        let mut latencies = Vec::new();
        let started = Instant::now();
        let mut sent = 0;
        let mut round = 0usize;
        while sent < events {
            // One batch per host in turn, as agents deliver.
            let (agent, seq, prev) = &mut agents[round % hosts];
            round += 1;
            let host_id = agent.host_id.unwrap();
            let mut batch_events = Vec::with_capacity(batch);
            for i in 0..batch.min(events - sent) {
                *seq += 1;
                let event = DriftEvent {
                    id: uuid::Uuid::now_v7(),
                    host_id,
                    seq: *seq,
                    prev_hash: *prev,
                    subject: SubjectKey(if i % 2 == 0 { format!("file:/etc/app/f{}", *seq % 50) } else { format!("package:lib{}", *seq % 50) }),
                    kind: ChangeKind::Content,
                    changed: vec!["version".into()],
                    before: None,
                    after: Some(SubjectState::Fields { fields: BTreeMap::from([("version".to_owned(), seq.to_string())]) }),
                    diff: None,
                    summary: None,
                    actor: None,
                    seen_by: SeenBy::Watch,
                    observed_at: time::OffsetDateTime::now_utc(),
                    provenance: None,
                    related: None,
                };
                *prev = event.chain_hash();
                batch_events.push(event);
            }
            sent += batch_events.len();
            let t = Instant::now();
            app.ingest(agent, EventBatch { events: batch_events }).await.map_err(|e| anyhow::anyhow!("{e}"))?;
            latencies.push(t.elapsed());
        }
        let elapsed = started.elapsed();
        latencies.sort();
        let p99 = latencies[(latencies.len() * 99 / 100).min(latencies.len() - 1)];
        let stats = store.stats(SystemClock.now(), 300_000).await?;
        println!(
            "{events} events from {hosts} hosts against {windows} windows: {:.0} events/s, batch of {batch} p99 {p99:.1?}; {} open drift items",
            events as f64 / elapsed.as_secs_f64(),
            stats.open_drift
        );
        store.close();
        Ok(())
    })
}
