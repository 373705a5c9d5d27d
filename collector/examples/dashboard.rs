//! The web console measured (issue 11): server time of its screens with 100,000 open drift
//! items on 5,000 hosts, and 200 live drift streams held while ingesting. Run by
//! `bench/dashboard.sh`, or:
//! `dashboard COLLECTOR_BIN [hosts] [windows] [samples] [streams] [stream_events]`
//! (defaults 5000 10000 50 200 100000).
//!
//! The real `driftwatch-collector` binary on 127.0.0.1 with a file database in a temp dir
//! (`synchronous = FULL`, as shipped), set up through the API as `ingest_http` does (tokens,
//! windows requested by one person and approved by another, enrollment, a first heartbeat),
//! then seeded through the real ingest path (gzip JSON batches with each host's credential,
//! chained and MAC'd like an agent's, 4 senders). Per 5,000 hosts the seed opens (numbers
//! scale with `hosts`):
//! - 40,000 items of 20 package patch runs, each the same version on 2,000 hosts (one inbox
//!   row each); a quarter of them with two events;
//! - 45,000 configuration files, 9 per host, each with its own content (per-host bursts);
//! - 10,000 items of bursts on 10 hosts (1,000 subjects each);
//! - 5,000 flagged items (inside a recurring window, by a person it does not name, or by an
//!   unknown actor);
//! - and 10,000 changes the recurring windows authorize (not open).
//!
//! Then it times, sequentially, request to complete response on loopback (server time plus
//! loopback), `samples` requests per screen after 3 warm-ups, and prints p50/p99/max beside
//! the targets (inbox first page < 200 ms, drift detail < 50 ms). Last, it ingests
//! `stream_events` events three times (without streams, with `streams` open event streams,
//! without again) and prints events/s and what each stream received.

#[path = "support/http.rs"]
mod http;
#[path = "support/workload.rs"]
mod workload;

use std::collections::BTreeMap;
use std::io::Write;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use driftwatch_collector::live::sse::Parser;
use driftwatch_common::api::v1::{
    Actor, ChangeKind, DriftEvent, EventBatch, SeenBy, SubjectKey, SubjectState,
};
use http::{Api, Launch, Started};
use serde_json::{Value, json};
use workload::{BATCH, Chain, percentile};

/// What this benchmark asks of the API beyond `http::Api::post`.
impl Api {
    async fn get(&self, path: &str, token: &str) -> anyhow::Result<Value> {
        let response = self
            .client
            .get(format!("{}{path}", self.base))
            .bearer_auth(token)
            .send()
            .await?;
        let status = response.status();
        let answer: Value = response.json().await?;
        if !status.is_success() {
            bail!("GET {path}: {status}: {answer}");
        }
        Ok(answer)
    }

    /// Posts one host's events as its agent does (gzip JSON, the host's credential).
    async fn events(&self, credential: &str, events: Vec<DriftEvent>) -> anyhow::Result<()> {
        let count = events.len();
        let body = serde_json::to_vec(&EventBatch { events })?;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&body)?;
        let response = self
            .client
            .post(format!("{}/api/v1/events", self.base))
            .bearer_auth(credential)
            .header("content-type", "application/json")
            .header("content-encoding", "gzip")
            .body(gz.finish()?)
            .send()
            .await?;
        let status = response.status();
        let ack: Value = response.json().await?;
        if !status.is_success() || ack["accepted"].as_u64() != Some(count as u64) {
            bail!("batch not fully accepted: {status}: {ack}");
        }
        Ok(())
    }
}

/// 20 packages a patch run upgrades on many hosts at once.
const PATCHED: [&str; 20] = [
    "openssl",
    "libssl3",
    "openssh-server",
    "sudo",
    "systemd",
    "libc6",
    "bash",
    "curl",
    "libcurl4",
    "tzdata",
    "ca-certificates",
    "linux-image-amd64",
    "python3",
    "perl-base",
    "zlib1g",
    "libxml2",
    "git",
    "vim-tiny",
    "rsyslog",
    "cron",
];

/// Configuration files changed on every host, each with its own content.
const CONFIGS: [&str; 9] = [
    "/etc/nginx/nginx.conf",
    "/etc/ssh/sshd_config",
    "/etc/sudoers.d/ops",
    "/etc/hosts",
    "/etc/resolv.conf",
    "/etc/sysctl.d/90-tuning.conf",
    "/etc/security/limits.conf",
    "/etc/cron.d/backup",
    "/etc/app/app.toml",
];

/// Hosts with a burst of `BURST` changed subjects.
const BURST_HOSTS: usize = 10;
const BURST: usize = 1_000;

/// What one seeded change is.
struct Change {
    subject: String,
    fields: BTreeMap<String, String>,
    diff: Option<String>,
    login: Option<&'static str>,
}

fn change(subject: String, key: &str, value: String, login: Option<&'static str>) -> Change {
    Change {
        subject,
        fields: BTreeMap::from([(key.to_owned(), value)]),
        diff: None,
        login,
    }
}

/// Host `h`'s seeded changes, in the order its agent reports them.
fn changes(h: usize) -> Vec<Change> {
    let mut out = Vec::new();
    // Patch runs: package k on the hosts with (h + k) % 5 < 2, 2 in 5 hosts; the first 5
    // packages went through a release candidate first (two events on the item).
    for (k, name) in PATCHED.iter().enumerate() {
        if (h + k) % 5 < 2 {
            if k < 5 {
                out.push(change(
                    format!("package:{name}"),
                    "version",
                    format!("{k}.0.1~rc1"),
                    Some("ops"),
                ));
            }
            out.push(change(
                format!("package:{name}"),
                "version",
                format!("{k}.0.1-1+deb12u1"),
                Some("ops"),
            ));
        }
    }
    // Configuration files, each host its own content, with a masked diff.
    for (j, path) in CONFIGS.iter().enumerate() {
        let mut c = change(
            format!("file:{path}"),
            "content",
            blake3::hash(format!("{h}/{j}").as_bytes())
                .to_hex()
                .to_string(),
            Some("ops"),
        );
        c.diff = Some(format!(
            "--- {path}\n+++ {path}\n@@ -1,6 +1,7 @@\n # managed by hand on host-{h}\n \
             worker_processes 4;\n-keepalive_timeout 65;\n+keepalive_timeout 30;\n+\
             client_max_body_size 64m;\n include /etc/app/*.conf;\n password = \
             [masked:3f2a91c0]\n log_level = info\n"
        ));
        out.push(c);
    }
    if h < BURST_HOSTS {
        for i in 0..BURST {
            out.push(change(
                format!("file:/usr/lib/python3/dist-packages/vendor/m{i}.py"),
                "content",
                blake3::hash(format!("{h}/m{i}").as_bytes())
                    .to_hex()
                    .to_string(),
                None,
            ));
        }
    }
    // The recurring windows of the workload cover `package:lib{w}*` on hosts of role
    // `role(w)` (web: even), naming `ops` as implementer: two authorized changes, and one
    // flagged (by `mallory`: wrong implementer; or with no actor known).
    let lib = h % 2;
    for suffix in ["a", "b"] {
        out.push(change(
            format!("package:lib{lib}-{suffix}"),
            "version",
            "2".into(),
            Some("ops"),
        ));
    }
    out.push(change(
        format!("package:lib{lib}-c"),
        "version",
        "2".into(),
        if h % 4 < 2 { Some("mallory") } else { None },
    ));
    out
}

/// The next event of `chain`, sealed with its chain key as an agent seals it.
fn event(chain: &mut Chain, change: Change) -> DriftEvent {
    chain.seq += 1;
    let mut event = DriftEvent {
        id: uuid::Uuid::now_v7(),
        host_id: chain.host_id,
        seq: chain.seq,
        prev_hash: chain.prev,
        subject: SubjectKey(change.subject),
        kind: ChangeKind::Content,
        changed: change.fields.keys().cloned().collect(),
        before: None,
        after: Some(SubjectState::Fields {
            fields: change.fields,
        }),
        diff: change.diff,
        actor: change.login.map(|login| Actor {
            source: "fanotify".into(),
            uid: Some(0),
            user: Some("root".into()),
            login_uid: Some(1000),
            login_user: Some(login.into()),
            exe: Some("/usr/bin/vim.basic".into()),
            tty: Some("pts/0".into()),
            ..Actor::default()
        }),
        seen_by: SeenBy::Watch,
        observed_at: time::OffsetDateTime::now_utc(),
        provenance: None,
        related: None,
        summary: None,
        mac: None,
    };
    chain.prev = match &mut chain.key {
        Some(key) => {
            let sealed = event.seal(key);
            key.advance();
            sealed.chain_hash()
        }
        None => event.chain_hash(),
    };
    event
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let bin = args.next().context(
        "usage: dashboard COLLECTOR_BIN [hosts] [windows] [samples] [streams] [stream_events]",
    )?;
    let numbers: Vec<usize> = args.map(|a| a.parse()).collect::<Result<_, _>>()?;
    let settings = Sizes {
        hosts: numbers.first().copied().unwrap_or(5_000).max(BURST_HOSTS),
        windows: numbers.get(1).copied().unwrap_or(10_000).max(100),
        samples: numbers.get(2).copied().unwrap_or(50).max(2),
        streams: numbers.get(3).copied().unwrap_or(200),
        stream_events: numbers.get(4).copied().unwrap_or(100_000),
    };
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(&bin, settings))
}

struct Sizes {
    hosts: usize,
    windows: usize,
    samples: usize,
    streams: usize,
    stream_events: usize,
}

/// Senders posting at once, as in `ingest_http`.
const SENDERS: usize = 4;

async fn run(bin: &str, sizes: Sizes) -> anyhow::Result<()> {
    let hosts = sizes.hosts;
    let windows = sizes.windows;
    let dir = tempfile::tempdir()?;
    // DASHBOARD_KEEP=1 keeps the database (and the collector's log) for EXPLAIN QUERY PLAN.
    let dir = if std::env::var_os("DASHBOARD_KEEP").is_some() {
        let kept = dir.keep();
        println!("setup: keeping {}", kept.display());
        Workdir::Kept(kept)
    } else {
        Workdir::Temp(dir)
    };
    // Each request's handler time as tower-http logs it (`latency`, in whole ms), read
    // back after the run beside the client-side figures.
    let log_path = dir.path().join("collector.log");
    let Started {
        collector: _collector,
        api,
        admin,
    } = http::start(
        bin,
        dir.path(),
        Launch {
            extra_config: &format!(
                "\n[limits]\nmax_streams = {}\n",
                (sizes.streams + 16).max(256)
            ),
            global_args: &["--log-format", "json"],
            log_filter: "warn,tower_http::trace::on_response=debug",
            stderr: Stdio::from(std::fs::File::create(&log_path)?),
        },
    )
    .await?;
    let alice = api.person(&admin, "alice", "change-manager").await?;
    let bob = api.person(&admin, "bob", "change-manager").await?;
    let sam = api.person(&admin, "sam", "security").await?;
    let took = api.approved_windows(&alice, &bob, windows, hosts).await?;
    println!("setup: {windows} windows requested and approved in {took:.1?}");

    let started = Instant::now();
    let issued = api
        .post(
            "/api/v1/enrollment-tokens",
            Some(&admin),
            &json!({"uses": hosts}),
        )
        .await?;
    let enrollment = issued["token"].as_str().context("a token")?.to_owned();
    let mut enrolling = tokio::task::JoinSet::new();
    for c in 0..SENDERS {
        let api = api.clone();
        let enrollment = enrollment.clone();
        enrolling.spawn(async move {
            let mut mine = Vec::new();
            for h in (c..hosts).step_by(SENDERS) {
                let (credential, chain) = api.enroll_host(&enrollment, h).await?;
                mine.push((h, credential, chain));
            }
            anyhow::Ok(mine)
        });
    }
    let mut agents: Vec<(usize, String, Chain)> = Vec::with_capacity(hosts);
    while let Some(done) = enrolling.join_next().await {
        agents.extend(done??);
    }
    agents.sort_by_key(|(h, _, _)| *h);
    println!(
        "setup: {hosts} hosts enrolled with a first heartbeat in {:.1?}",
        started.elapsed()
    );

    // The seed: every host's changes through the ingest path, 4 senders.
    let started = Instant::now();
    let mut shares: Vec<Vec<(usize, String, Chain)>> = (0..SENDERS).map(|_| Vec::new()).collect();
    for agent in agents {
        shares[agent.0 % SENDERS].push(agent);
    }
    let mut seeding = tokio::task::JoinSet::new();
    for mut share in shares {
        let api = api.clone();
        seeding.spawn(async move {
            let mut sent = 0usize;
            for (h, credential, chain) in &mut share {
                let events: Vec<DriftEvent> =
                    changes(*h).into_iter().map(|c| event(chain, c)).collect();
                sent += events.len();
                let mut events = events.into_iter().peekable();
                while events.peek().is_some() {
                    let batch: Vec<DriftEvent> = events.by_ref().take(BATCH).collect();
                    api.events(credential, batch).await?;
                }
            }
            anyhow::Ok((sent, share))
        });
    }
    let mut seeded = 0;
    let mut agents = Vec::with_capacity(hosts);
    while let Some(done) = seeding.join_next().await {
        let (sent, share) = done??;
        seeded += sent;
        agents.extend(share);
    }
    agents.sort_by_key(|(h, _, _)| *h);
    println!(
        "seed: {seeded} events from {hosts} hosts ingested in {:.1?}",
        started.elapsed()
    );
    let metrics = api
        .client
        .get(format!("{}/metrics", api.base))
        .bearer_auth(&admin)
        .send()
        .await?
        .error_for_status()?
        .text()
        .await?;
    for line in metrics
        .lines()
        .filter(|l| l.starts_with("driftwatch_drift_open") || l.starts_with("driftwatch_events_"))
    {
        println!("seed: collector metric: {line}");
    }

    // Sign in as sam (security) through the console's form, as a browser does.
    let signed_in = api
        .client
        .post(format!("{}/ui/sign-in", api.base))
        .header("sec-fetch-site", "same-origin")
        .header("content-type", "application/x-www-form-urlencoded")
        // A token is letters, digits and `_`: nothing to percent-encode.
        .body(format!("token={sam}"))
        .send()
        .await?;
    let cookie = signed_in
        .headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("dw_session="))
        .and_then(|v| v.split(';').next())
        .context("no session cookie from the sign-in")?
        .to_owned();

    // Items to open: a patch run's (two events), a configuration file's, a burst's, a flagged.
    let ids = |host: usize, subject: &'static str| {
        let api = api.clone();
        let sam = sam.clone();
        let host_id = agents[host].2.host_id;
        async move {
            let items = api
                .get(
                    &format!("/api/v1/drift?status=open&host={host_id}&limit=1000"),
                    &sam,
                )
                .await?;
            let items = items.as_array().context("a list of drift items")?;
            items
                .iter()
                .find(|i| i["subject"].as_str().is_some_and(|s| s.contains(subject)))
                .and_then(|i| i["id"].as_str())
                .map(str::to_owned)
                .with_context(|| format!("no open {subject} on host-{host}"))
        }
    };
    let middle = hosts / 2;
    let details = [
        ids(middle, "package:openssl").await?,
        ids(middle + 1, "sshd_config").await?,
        ids(3, "vendor/m500.py").await?,
        ids(middle, "-c").await?,
    ];

    println!();
    println!(
        "server time, request to complete response on loopback, {} requests each after 3 warm-ups",
        sizes.samples
    );
    println!(
        "{:<44} {:>7} {:>9} {:>9} {:>9} {:>8}  shown",
        "request", "n", "p50", "p99", "max", "target"
    );
    let inbox_target = Some(Duration::from_millis(200));
    let detail_target = Some(Duration::from_millis(50));
    let host_filter = format!("host-{middle}");
    let screens: [(String, Vec<String>, Auth, Option<Duration>); 7] = [
        (
            "/ui/inbox".into(),
            vec!["/ui/inbox".into()],
            Auth::Cookie,
            inbox_target,
        ),
        (
            format!("/ui/inbox?host={host_filter}"),
            vec![format!("/ui/inbox?host={host_filter}")],
            Auth::Cookie,
            inbox_target,
        ),
        (
            "/ui/inbox?subject=sshd_config".into(),
            vec!["/ui/inbox?subject=sshd_config".into()],
            Auth::Cookie,
            inbox_target,
        ),
        (
            "/ui/drift/{id} (4 items in turn)".into(),
            details.iter().map(|id| format!("/ui/drift/{id}")).collect(),
            Auth::Cookie,
            detail_target,
        ),
        (
            "/api/v1/drift/{id}/detail (4 items in turn)".into(),
            details
                .iter()
                .map(|id| format!("/api/v1/drift/{id}/detail"))
                .collect(),
            Auth::Bearer,
            detail_target,
        ),
        (
            "/ui/hosts".into(),
            vec!["/ui/hosts".into()],
            Auth::Cookie,
            None,
        ),
        (
            "/ui/overview".into(),
            vec!["/ui/overview".into()],
            Auth::Cookie,
            None,
        ),
    ];
    for (name, paths, auth, target) in &screens {
        let mut times = Vec::with_capacity(sizes.samples);
        let mut shown = String::new();
        for n in 0..sizes.samples + 3 {
            let path = &paths[n % paths.len()];
            let request = api.client.get(format!("{}{path}", api.base));
            let request = match auth {
                Auth::Cookie => request.header(reqwest::header::COOKIE, &cookie),
                Auth::Bearer => request.bearer_auth(&sam),
            };
            let t = Instant::now();
            let response = request.send().await?;
            let status = response.status();
            let body = response.text().await?;
            let elapsed = t.elapsed();
            if status != reqwest::StatusCode::OK {
                bail!("GET {path}: {status}: {}", &body[..body.len().min(300)]);
            }
            if n >= 3 {
                times.push(elapsed);
            }
            if n == 0 {
                shown = shown_of(path, &body);
            }
        }
        times.sort();
        println!(
            "{name:<44} {:>7} {:>9} {:>9} {:>9} {:>8}  {shown}",
            times.len(),
            ms(percentile(&times, 50)),
            ms(percentile(&times, 99)),
            ms(times[times.len() - 1]),
            target.map_or("-".to_owned(), |t| format!("< {}", ms(t))),
        );
    }
    handler_times(&log_path)?;

    // Live streams while ingesting.
    println!();
    let streams_path = "/api/v1/drift/stream";
    let mut agents: Vec<(String, Chain)> =
        agents.into_iter().map(|(_, c, chain)| (c, chain)).collect();
    let mut next_host = 0;
    let mut rates = Vec::new();
    for (phase, streams) in [
        ("without streams", 0),
        ("with streams", sizes.streams),
        ("without streams", 0),
    ] {
        let following = Followers::open(&api, &sam, streams_path, streams).await?;
        let head_before = head(&api, &sam).await?;
        let batches = sizes.stream_events.div_ceil(BATCH);
        let started = Instant::now();
        let latencies = ingest(&api, &mut agents, &mut next_host, sizes.stream_events).await?;
        let elapsed = started.elapsed();
        let rate = sizes.stream_events as f64 / elapsed.as_secs_f64();
        let head_after = head(&api, &sam).await?;
        println!(
            "streams: {phase} ({streams} open): {} events in {batches} batches of {BATCH}, \
             {SENDERS} senders: {rate:.0} events/s in {elapsed:.1?}, batch p50 {}, p99 {}; \
             {} drift changes (history {head_before}..{head_after})",
            sizes.stream_events,
            ms(percentile(&latencies, 50)),
            ms(percentile(&latencies, 99)),
            head_after - head_before,
        );
        rates.push(rate);
        if streams > 0 {
            following.report(head_before, head_after).await?;
        }
    }
    let without = (rates[0] + rates[2]) / 2.0;
    println!(
        "streams: ingest with {} streams / without (mean of the runs before and after): {:.3}",
        sizes.streams,
        rates[1] / without
    );
    Ok(())
}

/// The benchmark's directory: removed at the end unless kept.
enum Workdir {
    Temp(tempfile::TempDir),
    Kept(std::path::PathBuf),
}

impl Workdir {
    fn path(&self) -> &std::path::Path {
        match self {
            Workdir::Temp(dir) => dir.path(),
            Workdir::Kept(path) => path,
        }
    }
}

#[derive(Clone, Copy)]
enum Auth {
    Cookie,
    Bearer,
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

/// What the page shows, so a fast answer that showed nothing would be seen: the inbox's
/// "N items in M rows", a table's row count, a detail's event count.
fn shown_of(path: &str, body: &str) -> String {
    if path.starts_with("/ui/inbox") {
        return body
            .find(" items in ")
            .map(|at| {
                let start = body[..at].rfind('>').map_or(0, |s| s + 1);
                let end = body[at..].find('.').map_or(body.len(), |e| at + e);
                body[start..end].trim().to_owned()
            })
            .unwrap_or_else(|| "no count".into());
    }
    if path.starts_with("/api/") {
        let detail: Value = serde_json::from_str(body).unwrap_or_default();
        return format!(
            "{} events, {} explained",
            detail["events"].as_array().map_or(0, Vec::len),
            detail["explained"].as_array().map_or(0, Vec::len)
        );
    }
    format!(
        "{} table rows, {} bytes",
        body.matches("<tr").count(),
        body.len()
    )
}

/// The tower-http `latency` of each request (whole milliseconds, handler plus body) from
/// the collector's log, per request kind.
fn handler_times(log: &std::path::Path) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(log)?;
    let mut by_kind: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for line in text.lines() {
        let Ok(entry) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        let Some(latency) = entry["fields"]["latency"].as_str() else {
            continue;
        };
        let Some(ms) = latency
            .strip_suffix(" ms")
            .and_then(|n| n.trim().parse::<u64>().ok())
        else {
            continue;
        };
        let uri = entry["span"]["uri"].as_str().unwrap_or("?");
        let kind = if uri.starts_with("/ui/drift/") {
            "/ui/drift/{id}".to_owned()
        } else if uri.starts_with("/api/v1/drift/") && uri.ends_with("/detail") {
            "/api/v1/drift/{id}/detail".to_owned()
        } else if uri.starts_with("/ui/") {
            uri.to_owned()
        } else {
            continue;
        };
        by_kind.entry(kind).or_default().push(ms);
    }
    if by_kind.is_empty() {
        println!("collector log: no request latencies found (tower-http trace at debug)");
        return Ok(());
    }
    println!("collector log (tower-http `latency`, whole ms, warm-ups included):");
    for (kind, mut times) in by_kind {
        times.sort_unstable();
        let at = |p: usize| times[(times.len() * p / 100).min(times.len() - 1)];
        println!(
            "  {kind:<42} n {:>4}  p50 {} ms  p99 {} ms",
            times.len(),
            at(50),
            at(99)
        );
    }
    Ok(())
}

/// The live cursor's head now: the `ready` of a fresh stream.
async fn head(api: &Api, token: &str) -> anyhow::Result<i64> {
    let mut response = api
        .client
        .get(format!("{}/api/v1/drift/stream", api.base))
        .bearer_auth(token)
        .send()
        .await?
        .error_for_status()?;
    let mut parser = Parser::new();
    while let Some(chunk) = response.chunk().await? {
        for event in parser.feed(&chunk).map_err(anyhow::Error::msg)? {
            if event.event == "ready" {
                let ready: Value = serde_json::from_str(&event.data)?;
                return ready["head"].as_i64().context("a head in ready");
            }
        }
    }
    bail!("the stream ended before its ready event")
}

/// `count` events from the workload's chains (`Chain::batch`), batches of 500 to hosts in
/// turn from where the previous phase stopped, 4 senders; the latency of each batch.
async fn ingest(
    api: &Api,
    agents: &mut [(String, Chain)],
    next_host: &mut usize,
    count: usize,
) -> anyhow::Result<Vec<Duration>> {
    let batches = count.div_ceil(BATCH);
    let mut plan: Vec<Vec<(usize, usize)>> = (0..SENDERS).map(|_| Vec::new()).collect();
    for b in 0..batches {
        let host = (*next_host + b) % agents.len();
        plan[host % SENDERS].push((host, BATCH.min(count - b * BATCH)));
    }
    *next_host = (*next_host + batches) % agents.len();
    // Each sender takes its hosts' chains for the phase and gives them back.
    let mut taken: Vec<Vec<(usize, String, Chain)>> = (0..SENDERS).map(|_| Vec::new()).collect();
    for (s, batches) in plan.iter().enumerate() {
        for &(host, _) in batches {
            if !taken[s].iter().any(|(h, _, _)| *h == host) {
                let (credential, chain) = std::mem::replace(
                    &mut agents[host],
                    (String::new(), Chain::new(uuid::Uuid::nil(), None)),
                );
                taken[s].push((host, credential, chain));
            }
        }
    }
    let mut senders = tokio::task::JoinSet::new();
    for (batches, mut chains) in plan.into_iter().zip(taken) {
        let api = api.clone();
        senders.spawn(async move {
            let mut latencies = Vec::with_capacity(batches.len());
            for (host, count) in batches {
                let (_, credential, chain) = chains
                    .iter_mut()
                    .find(|(h, _, _)| *h == host)
                    .context("the sender's host")?;
                let events = chain.batch(count);
                let t = Instant::now();
                api.events(credential, events).await?;
                latencies.push(t.elapsed());
            }
            anyhow::Ok((latencies, chains))
        });
    }
    let mut latencies = Vec::new();
    while let Some(done) = senders.join_next().await {
        let (times, chains) = done??;
        latencies.extend(times);
        for (host, credential, chain) in chains {
            agents[host] = (credential, chain);
        }
    }
    latencies.sort();
    Ok(latencies)
}

/// What one stream received.
#[derive(Default)]
struct Tally {
    ready: AtomicI64,
    last: AtomicI64,
    changes: AtomicU64,
    resets: AtomicU64,
    out_of_order: AtomicU64,
    ended: AtomicBool,
}

/// Open event streams, each read by its own task.
struct Followers {
    tallies: Vec<Arc<Tally>>,
    tasks: tokio::task::JoinSet<anyhow::Result<()>>,
}

impl Followers {
    /// Opens `count` streams and waits until each has its `ready`.
    async fn open(api: &Api, token: &str, path: &str, count: usize) -> anyhow::Result<Followers> {
        let mut tallies = Vec::new();
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..count {
            let tally = Arc::new(Tally {
                ready: AtomicI64::new(-1),
                last: AtomicI64::new(-1),
                ..Tally::default()
            });
            tallies.push(Arc::clone(&tally));
            let response = api
                .client
                .get(format!("{}{path}", api.base))
                .bearer_auth(token)
                .send()
                .await?
                .error_for_status()?;
            tasks.spawn(follow(response, tally));
        }
        let started = Instant::now();
        while tallies.iter().any(|t| t.ready.load(Ordering::SeqCst) < 0) {
            if started.elapsed() > Duration::from_secs(60) {
                bail!("not every stream sent its ready within a minute");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(Followers { tallies, tasks })
    }

    /// Waits until every stream reached `head_after` (at most a minute), then prints what
    /// each received: every change from its `ready` to the head, none twice, none missing.
    async fn report(mut self, head_before: i64, head_after: i64) -> anyhow::Result<()> {
        let waited = Instant::now();
        while self.tallies.iter().any(|t| {
            t.last
                .load(Ordering::SeqCst)
                .max(t.ready.load(Ordering::SeqCst))
                < head_after
        }) {
            if waited.elapsed() > Duration::from_secs(60) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let caught_up = waited.elapsed();
        self.tasks.abort_all();
        let expected: Vec<i64> = self
            .tallies
            .iter()
            .map(|t| head_after - t.ready.load(Ordering::SeqCst))
            .collect();
        let counts: Vec<u64> = self
            .tallies
            .iter()
            .map(|t| t.changes.load(Ordering::SeqCst))
            .collect();
        let complete = self
            .tallies
            .iter()
            .zip(&expected)
            .filter(|(t, e)| {
                t.changes.load(Ordering::SeqCst) as i64 == **e
                    && t.last.load(Ordering::SeqCst) == head_after
            })
            .count();
        let resets: u64 = self
            .tallies
            .iter()
            .map(|t| t.resets.load(Ordering::SeqCst))
            .sum();
        let disorder: u64 = self
            .tallies
            .iter()
            .map(|t| t.out_of_order.load(Ordering::SeqCst))
            .sum();
        let ended = self
            .tallies
            .iter()
            .filter(|t| t.ended.load(Ordering::SeqCst))
            .count();
        println!(
            "streams: {} streams opened at head {head_before}: changes received per stream \
             min {}, max {} (expected {}..{}); {complete} of {} received every change, in \
             order, none twice; {resets} resets, {disorder} out of order or repeated, {ended} \
             ended early; the last stream reached the head {:.1?} after the ingest ended",
            self.tallies.len(),
            counts.iter().min().copied().unwrap_or(0),
            counts.iter().max().copied().unwrap_or(0),
            expected.iter().min().copied().unwrap_or(0),
            expected.iter().max().copied().unwrap_or(0),
            self.tallies.len(),
            caught_up,
        );
        Ok(())
    }
}

/// Reads one stream to its end, counting its changes.
async fn follow(mut response: reqwest::Response, tally: Arc<Tally>) -> anyhow::Result<()> {
    let mut parser = Parser::new();
    while let Some(chunk) = response.chunk().await? {
        for event in parser.feed(&chunk).map_err(anyhow::Error::msg)? {
            let id: i64 = event
                .id
                .as_deref()
                .and_then(|i| i.parse().ok())
                .unwrap_or(-1);
            match event.event.as_str() {
                "ready" => {
                    tally.last.store(id, Ordering::SeqCst);
                    tally.ready.store(id, Ordering::SeqCst);
                }
                "drift" => {
                    let last = tally.last.swap(id, Ordering::SeqCst);
                    if id != last + 1 {
                        tally.out_of_order.fetch_add(1, Ordering::SeqCst);
                    }
                    tally.changes.fetch_add(1, Ordering::SeqCst);
                }
                "reset" => {
                    tally.resets.fetch_add(1, Ordering::SeqCst);
                    tally.last.store(id, Ordering::SeqCst);
                }
                _ => {}
            }
        }
    }
    tally.ended.store(true, Ordering::SeqCst);
    Ok(())
}
