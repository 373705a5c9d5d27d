//! Ingest throughput through the real `driftwatch-collector` binary over loopback HTTP: the
//! same workload as the `ingest` example (`support/workload.rs`), set up through the API
//! (tokens, windows requested by one person and approved by another, enrollment), then
//! events posted as agents post them (gzip JSON batches of 500, Bearer credential), from
//! `CLIENTS` concurrent senders, each owning a share of the hosts so every chain stays in
//! order. The client (event generation, JSON, gzip) shares the machine's cores with the
//! collector. Run by `bench/collector.sh`, or:
//! `ingest_http COLLECTOR_BIN [windows] [hosts] [events] [clients]`.

#[path = "support/http.rs"]
mod http;
#[path = "support/workload.rs"]
mod workload;

use std::io::Write;
use std::process::Stdio;
use std::time::Instant;

use anyhow::{Context, bail};
use driftwatch_common::api::v1::EventBatch;
use http::{Launch, Started};
use serde_json::{Value, json};
use workload::{BATCH, Chain, percentile};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let bin = args
        .next()
        .context("usage: ingest_http COLLECTOR_BIN [windows] [hosts] [events] [clients]")?;
    let numbers: Vec<usize> = args.map(|a| a.parse()).collect::<Result<_, _>>()?;
    let windows = numbers.first().copied().unwrap_or(10_000);
    let hosts = numbers.get(1).copied().unwrap_or(5_000);
    let events = numbers.get(2).copied().unwrap_or(1_000_000);
    let clients = numbers.get(3).copied().unwrap_or(4).max(1);
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(&bin, windows, hosts, events, clients))
}

async fn run(
    bin: &str,
    windows: usize,
    hosts: usize,
    events: usize,
    clients: usize,
) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let Started {
        collector: _collector,
        api,
        admin,
    } = http::start(
        bin,
        dir.path(),
        Launch {
            extra_config: "",
            global_args: &[],
            log_filter: "warn",
            stderr: Stdio::inherit(),
        },
    )
    .await?;
    let alice = api.person(&admin, "alice", "change-manager").await?;
    let bob = api.person(&admin, "bob", "change-manager").await?;
    let took = api.approved_windows(&alice, &bob, windows, hosts).await?;
    println!("{windows} windows requested and approved over HTTP in {took:.1?}");

    let mut chains = Vec::new();
    let mut left = 0;
    let mut token = String::new();
    for h in 0..hosts {
        if left == 0 {
            let issued = api
                .post(
                    "/api/v1/enrollment-tokens",
                    Some(&admin),
                    &json!({"uses": 10_000}),
                )
                .await?;
            token = issued["token"].as_str().context("a token")?.to_owned();
            left = 10_000;
        }
        left -= 1;
        chains.push(api.enroll_host(&token, h).await?);
    }

    // Sender `c` owns hosts c, c + clients, ...; batches go to its hosts in turn.
    let batches = events.div_ceil(BATCH);
    let mut shares: Vec<Vec<(String, Chain)>> = (0..clients).map(|_| Vec::new()).collect();
    for (h, chain) in chains.into_iter().enumerate() {
        shares[h % clients].push(chain);
    }
    let started = Instant::now();
    let mut senders = tokio::task::JoinSet::new();
    for (c, mut share) in shares.into_iter().enumerate() {
        let api = api.clone();
        // Batches numbered c, c + clients, ... are this sender's.
        let mine: Vec<usize> = (c..batches).step_by(clients).collect();
        senders.spawn(async move {
            let mut latencies = Vec::with_capacity(mine.len());
            for (round, b) in mine.into_iter().enumerate() {
                let count = BATCH.min(events - b * BATCH);
                let at = round % share.len();
                let (credential, chain) = &mut share[at];
                let body = serde_json::to_vec(&EventBatch {
                    events: chain.batch(count),
                })?;
                let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                gz.write_all(&body)?;
                let gz = gz.finish()?;
                let t = Instant::now();
                let response = api
                    .client
                    .post(format!("{}/api/v1/events", api.base))
                    .bearer_auth(&*credential)
                    .header("content-type", "application/json")
                    .header("content-encoding", "gzip")
                    .body(gz)
                    .send()
                    .await?;
                let status = response.status();
                let ack: Value = response.json().await?;
                latencies.push(t.elapsed());
                if !status.is_success() || ack["accepted"].as_u64() != Some(count as u64) {
                    bail!("batch not fully accepted: {status}: {ack}");
                }
            }
            anyhow::Ok(latencies)
        });
    }
    let mut latencies = Vec::new();
    while let Some(done) = senders.join_next().await {
        latencies.extend(done??);
    }
    let elapsed = started.elapsed();
    latencies.sort();
    println!(
        "{events} events from {hosts} hosts against {windows} windows over HTTP ({clients} \
         senders): {:.0} events/s ingested and matched in {elapsed:.1?}; request of {BATCH} \
         events latency p50 {:.1?}, p99 {:.1?}, max {:.1?}",
        events as f64 / elapsed.as_secs_f64(),
        percentile(&latencies, 50),
        percentile(&latencies, 99),
        latencies[latencies.len() - 1],
    );
    let client = reqwest::Client::new();
    // /metrics needs a reader's token (admin will do).
    let metrics = client
        .get(format!("{}/metrics", api.base))
        .bearer_auth(&admin)
        .send()
        .await?
        .error_for_status()?
        .text()
        .await?;
    for line in metrics.lines().filter(|l| {
        l.starts_with("driftwatch_events_ingested_total") || l.starts_with("driftwatch_drift_open")
    }) {
        println!("collector metric: {line}");
    }
    Ok(())
}
