//! Prometheus metrics as a scraper sees them: the real collector's `/metrics` after an
//! ingest, a delivery and a heartbeat, and the real agent's on its opt-in address and
//! as a node_exporter textfile, each checked by `promtool check metrics`.

use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use driftwatch_tests::collector::{Collector, http};
use driftwatch_tests::daemon::{DaemonHost, wait_until};
use driftwatch_tests::skip_unless_required;

/// `promtool`, or `None` after saying loudly that the check is skipped, unless
/// `DRIFTWATCH_REQUIRE_PROMTOOL` (set by `.ci/run`) says it must run.
fn promtool() -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join("promtool"))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        skip_unless_required(
            "DRIFTWATCH_REQUIRE_PROMTOOL",
            "promtool not found (install the Debian package `prometheus`): the exposition \
             was NOT checked by `promtool check metrics`",
        );
    }
    found
}

/// Runs `promtool check metrics` on `text`; fails the test on any complaint.
#[track_caller]
fn promtool_accepts(promtool: &Path, what: &str, text: &str) {
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("feed promtool");
    let out = child.wait_with_output().expect("promtool output");
    let complaints = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && complaints.trim().is_empty(),
        "promtool check metrics refuses {what} ({}):\n{complaints}\n--- exposition ---\n{text}",
        out.status
    );
}

fn free_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("its address")
}

/// The value of the sample `line_start` (name and labels as rendered), if present.
fn sample(text: &str, line_start: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(line_start)?.strip_prefix(' '))
        .and_then(|v| v.parse().ok())
}

/// The `driftwatch_*` names in packaging/prometheus (rules and dashboard) are families
/// the real binaries expose, so a renamed metric cannot leave a silent rule behind.
#[track_caller]
fn every_family_the_rules_and_dashboard_use_exists(expositions: &[&str]) {
    let exposed: Vec<&str> = expositions
        .iter()
        .flat_map(|text| text.lines())
        .filter_map(|l| l.strip_prefix("# TYPE ")?.split(' ').next())
        .collect();
    // Set by the dead-letter work in the alert sinks; absent until a delivery is refused.
    let set_elsewhere = ["driftwatch_alert_dead_letters"];
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/prometheus");
    let mut checked = 0;
    for file in ["driftwatch.rules.yml", "driftwatch-dashboard.json"] {
        let text = std::fs::read_to_string(dir.join(file)).expect("read packaging/prometheus");
        let names = text
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .filter(|word| word.starts_with("driftwatch_") && word.len() > "driftwatch_".len());
        for name in names {
            let family = ["_bucket", "_count", "_sum"]
                .iter()
                .find_map(|suffix| name.strip_suffix(suffix))
                .unwrap_or(name);
            assert!(
                exposed.contains(&family) || set_elsewhere.contains(&family),
                "{file} uses {name}, which neither binary exposes"
            );
            checked += 1;
        }
    }
    assert!(
        checked > 20,
        "only {checked} names found in packaging/prometheus"
    );
}

#[test]
fn collector_and_agent_metrics_pass_promtool_after_ingest_delivery_and_heartbeat() {
    let promtool = promtool();
    let collector = Collector::start("");
    let admin = collector.token("admin", "root");
    let scraper = collector.token("metrics", "prometheus");

    let agent_addr = free_port();
    let textfile_dir = tempfile::tempdir().expect("a textfile dir");
    let textfile = textfile_dir.path().join("driftwatch.prom");
    let host = DaemonHost::new(
        Some(&collector.url()),
        &format!(
            "[metrics]\nlisten = \"{agent_addr}\"\ntextfile = \"{}\"\ntextfile_interval_secs = 1\n",
            textfile.display()
        ),
    );
    host.init();
    let hostname = host.enroll_at(&collector, &admin);
    let daemon = host.start();

    // A change no window covers: ingested, untraced, alerted and delivered to the sink.
    host.host.write("etc/app.conf", "port = 8080\n");
    assert!(
        wait_until(Duration::from_secs(30), || !collector.alerts().is_empty()),
        "no alert delivered:\n{}\n{}",
        collector.log(),
        daemon.log()
    );
    assert!(
        wait_until(Duration::from_secs(30), || {
            !collector.get("/api/v1/hosts", &admin).expect(200)[0]["last_seen_at"].is_null()
        }),
        "no heartbeat"
    );

    let scrape = collector.get("/metrics", &scraper);
    assert_eq!(scrape.status, 200, "{}", scrape.body);
    let text = scrape.body;
    for family in [
        "driftwatch_ingest_seconds_bucket{le=\"+Inf\"}",
        "driftwatch_match_seconds_bucket{le=\"+Inf\"}",
        "driftwatch_alert_delivery_seconds_bucket{sink=\"jsonl\",le=\"+Inf\"}",
        "driftwatch_alert_delivery_delay_seconds_bucket{sink=\"jsonl\",le=\"+Inf\"}",
        "driftwatch_events_ingested_total{result=\"accepted\"}",
        "driftwatch_agent_heartbeat_age_hosts_omitted",
        "driftwatch_drift_untraced_oldest_age_seconds",
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_start_time_seconds",
    ] {
        assert!(sample(&text, family).is_some(), "{family} missing:\n{text}");
    }
    assert!(sample(&text, "driftwatch_ingest_seconds_count").unwrap() >= 1.0);
    assert!(
        sample(
            &text,
            "driftwatch_alert_delivery_seconds_count{sink=\"jsonl\"}"
        )
        .unwrap()
            >= 1.0
    );
    assert_eq!(
        sample(&text, "driftwatch_agent_heartbeat_age_hosts_omitted"),
        Some(0.0)
    );
    // The untraced change waited at least the hold (1 s) before its alert was delivered.
    assert_eq!(sample(&text, "driftwatch_drift_open"), Some(1.0), "{text}");
    let untraced_age = sample(&text, "driftwatch_drift_untraced_oldest_age_seconds").unwrap();
    assert!((1.0..60.0).contains(&untraced_age), "{untraced_age}");
    let age_prefix = format!("driftwatch_agent_heartbeat_age_seconds{{host=\"{hostname}\",");
    let age_line = text
        .lines()
        .find(|l| l.starts_with(&age_prefix))
        .unwrap_or_else(|| panic!("no heartbeat age for {hostname}:\n{text}"));
    let age: f64 = age_line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!((0.0..60.0).contains(&age), "{age_line}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("driftwatch_build_info{version=\"") && l.ends_with(" 1")),
        "{text}"
    );
    for family in text.lines().filter_map(|l| l.strip_prefix("# TYPE ")) {
        let name = family.split(' ').next().unwrap();
        assert!(
            text.contains(&format!("# HELP {name} ")),
            "{name} has no HELP"
        );
    }

    // The agent's own, on its address: what it spooled and what was acknowledged.
    let agent_text = http::get(agent_addr, "/metrics", None);
    assert_eq!(agent_text.status, 200, "{}", agent_text.body);
    let agent_text = agent_text.body;
    assert!(
        sample(&agent_text, "driftwatch_agent_events_delivered_total").unwrap() >= 1.0,
        "{agent_text}"
    );
    assert!(sample(&agent_text, "driftwatch_agent_events_spooled_total").unwrap() >= 1.0);
    assert!(sample(&agent_text, "driftwatch_agent_watches").unwrap() >= 1.0);
    assert_eq!(sample(&agent_text, "driftwatch_agent_ready"), Some(1.0));
    assert!(sample(&agent_text, "driftwatch_agent_last_scan_timestamp_seconds").is_some());
    assert!(sample(&agent_text, "process_resident_memory_bytes").unwrap() > 0.0);

    // And as a textfile, rewritten every second.
    assert!(
        wait_until(Duration::from_secs(10), || std::fs::read_to_string(
            &textfile
        )
        .is_ok_and(|t| t.contains("driftwatch_agent_events_delivered_total"))),
        "no textfile:\n{}",
        daemon.log()
    );
    let file_text = std::fs::read_to_string(&textfile).unwrap();
    assert!(file_text.contains("driftwatch_agent_process_resident_memory_bytes"));
    assert!(!file_text.lines().any(|l| l.starts_with("process_")));

    every_family_the_rules_and_dashboard_use_exists(&[&text, &agent_text]);

    if let Some(promtool) = &promtool {
        promtool_accepts(promtool, "the collector's /metrics", &text);
        promtool_accepts(promtool, "the agent's /metrics", &agent_text);
        promtool_accepts(promtool, "the agent's textfile", &file_text);
    }

    // Stopped, the textfile says so rather than showing a running agent.
    daemon.stop();
    let last = std::fs::read_to_string(&textfile).unwrap();
    assert_eq!(sample(&last, "driftwatch_agent_ready"), Some(0.0), "{last}");
    if let Some(promtool) = &promtool {
        promtool_accepts(promtool, "the stopped agent's textfile", &last);
    }
}

#[test]
fn an_agent_metrics_address_in_use_stops_the_start_with_a_clear_error() {
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().unwrap();
    let host = DaemonHost::new(None, &format!("[metrics]\nlisten = \"{addr}\"\n"));
    host.init();
    let daemon = driftwatch_tests::daemon::Daemon::spawn(&host.config, host.host.state());
    let (status, log) = daemon.wait_exit(Duration::from_secs(30));
    assert!(!status.success(), "started anyway:\n{log}");
    assert!(
        log.contains(&format!("cannot listen for metrics on {addr}")),
        "{log}"
    );
}
