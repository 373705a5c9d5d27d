//! Ingest throughput through the real code path (`App::ingest`: validation, matching against
//! every approved window, one SQLite transaction per batch with the chain check and the drift
//! items), without HTTP (`ingest_http` adds it). Run by `bench/collector.sh`, or:
//! `cargo run --release -p driftwatch-collector --example ingest -- [windows] [hosts] [events]`.
//!
//! Defaults: 10,000 windows, 5,000 hosts, 1,000,000 events in batches of 500 (one host per
//! batch, hosts in turn, as agents deliver), on a file database in a temp dir
//! (`synchronous = FULL`, as in production). The workload (`support/workload.rs`): 1% of
//! the windows are recurring standard windows (by label, open now); a quarter of the one-off
//! windows name implementers; events carry actors and, for files, package provenance, so
//! every matcher rule runs.
//! Prints events/s ingested and matched, the p99 latency of one batch, the matcher alone on
//! a sample, and the outcomes, so a figure that skipped the work would show.

#[path = "support/workload.rs"]
mod workload;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use driftwatch_collector::app::{App, Settings};
use driftwatch_collector::clock::{Clock, SystemClock};
use driftwatch_collector::identity::{Principal, Role};
use driftwatch_collector::matcher::{self, EventFacts, HostFacts, WindowIndex};
use driftwatch_collector::spool_time::SpoolBounds;
use driftwatch_collector::store::{SqliteStore, Store};
use driftwatch_collector::windows::lifecycle::Action;
use driftwatch_common::api::v1::{DriftEvent, EnrollRequest, EventBatch};
use workload::{BATCH, Chain, labels, percentile};

/// Events kept to time the matcher alone.
const SAMPLE: usize = 100_000;

fn err(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!("{e}")
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
    // As in production: entries signed and event decisions sealed with the audit key.
    let key = Arc::new(driftwatch_collector::audit::AuditKey::from_seed([42; 32]));
    store.set_audit_key(Arc::clone(&key)).await.map_err(err)?;
    let settings = Settings {
        hold_ms: 300_000,
        burst_ms: 10_000,
        tolerance_ms: 60_000,
        silent_after_ms: 300_000,
        emergency_approval_ms: 86_400_000,
        max_body_bytes: 1 << 20,
        max_export_rows: 100_000,
        limits: Default::default(),
        metrics: Default::default(),
    };
    let app = Arc::new(
        App::new(
            store.clone(),
            settings,
            Arc::new(SystemClock),
            driftwatch_collector::alerts::Sinks::none(),
        )
        .await
        .map_err(err)?
        .with_audit_key(key, std::time::Duration::from_secs(3600)),
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
    for w in 0..windows {
        let request = workload::window(w, windows, hosts, now);
        let window = app.create_window(&alice, &request).await.map_err(err)?;
        app.decide(&bob, window.id, Action::Approve, None)
            .await
            .map_err(err)?;
    }
    println!(
        "{windows} windows requested and approved in {:.1?}",
        started.elapsed()
    );

    let admin = Principal {
        role: Role::Admin,
        ..person("root")
    };
    let mut agents = Vec::new();
    let enrolled_at = SystemClock.now();
    for h in 0..hosts {
        let (_, token) = app
            .create_enrollment_token(&admin, 3600, 1)
            .await
            .map_err(err)?;
        let enrolled = app
            .enroll(EnrollRequest {
                token,
                hostname: format!("host-{h}"),
                labels: labels(h),
                agent_version: "bench".into(),
                baseline: None,
            })
            .await
            .map_err(err)?;
        let agent = Principal {
            token_id: uuid::Uuid::nil(),
            name: format!("host-{h}"),
            role: Role::Agent,
            host_id: Some(enrolled.host_id),
        };
        app.heartbeat(&agent, workload::heartbeat(enrolled.host_id))
            .await
            .map_err(err)?;
        agents.push((agent, Chain::new(enrolled.host_id, enrolled.chain_key)));
    }

    let mut latencies: Vec<Duration> = Vec::new();
    let mut sample: Vec<(usize, DriftEvent)> = Vec::new();
    let started = Instant::now();
    let mut sent = 0;
    let mut round = 0usize;
    while sent < events {
        // One batch per host in turn, as agents deliver.
        let host = round % hosts;
        round += 1;
        let (agent, chain) = &mut agents[host];
        let batch = chain.batch(BATCH.min(events - sent));
        sent += batch.len();
        if sample.len() < SAMPLE {
            sample.extend(batch.iter().map(|e| (host, e.clone())));
        }
        let count = batch.len();
        let t = Instant::now();
        let ack = app
            .ingest(agent, EventBatch { events: batch })
            .await
            .map_err(err)?;
        latencies.push(t.elapsed());
        // Every event MAC'd with its chain key and linked: all stored, none refused.
        anyhow::ensure!(
            ack.accepted as usize == count && ack.rejected == 0,
            "batch not fully accepted: {ack:?}"
        );
    }
    let elapsed = started.elapsed();
    latencies.sort();
    println!(
        "{events} events from {hosts} hosts against {windows} windows: {:.0} events/s ingested \
         and matched in {elapsed:.1?}; batch of {BATCH} latency p50 {:.1?}, p99 {:.1?}, max {:.1?}",
        events as f64 / elapsed.as_secs_f64(),
        percentile(&latencies, 50),
        percentile(&latencies, 99),
        latencies[latencies.len() - 1],
    );

    // The matcher alone, on the first events, against the same windows.
    let index = WindowIndex::build(&store.windows(None).await?).map_err(|(_, why)| err(why))?;
    let host_labels: Vec<BTreeMap<String, String>> = (0..hosts).map(labels).collect();
    let mut outcomes: BTreeMap<&'static str, usize> = BTreeMap::new();
    let t = Instant::now();
    for (host, event) in &sample {
        let outcome = matcher::match_event(
            &index,
            HostFacts {
                hostname: &format!("host-{host}"),
                labels: &host_labels[*host],
            },
            EventFacts {
                subject: &event.subject.0,
                kind: event.kind,
                after: event.after.as_ref(),
                // As ingest bounds it: spooled since enrollment, before it arrived.
                spooled: SpoolBounds {
                    after: enrolled_at,
                    before: (event.observed_at.unix_timestamp_nanos() / 1_000_000) as i64,
                },
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
