//! Service behaviour under systemd, on the real binaries: a refused configuration exits 78
//! (the units' `RestartPreventExitStatus=`) with one line, in the journal's shape when
//! `JOURNAL_STREAM` names stderr (reproduced here by pointing it at the file stderr is);
//! the collector reloads its TLS certificate on SIGHUP and keeps its running configuration
//! when the new file is refused.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use driftwatch_tests::collector::{Collector, collector_bin, driftctl_bin, http};
use driftwatch_tests::daemon::wait_until;
use driftwatch_tests::{EXIT_CONFIG, agent_bin, p};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use serde_json::Value;

/// Runs `command` with stderr in a file (bounded); with `journal`, `JOURNAL_STREAM` names that
/// file as systemd names the journal stream. Returns the exit code and stderr.
fn run_to_file(mut command: Command, dir: &Path, journal: bool) -> (Option<i32>, String) {
    let path = dir.join("stderr");
    let file = fs::File::create(&path).unwrap();
    let meta = file.metadata().unwrap();
    command.env_remove("JOURNAL_STREAM");
    if journal {
        command.env("JOURNAL_STREAM", format!("{}:{}", meta.dev(), meta.ino()));
    }
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(file)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{command:?} did not finish within 60 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    (status.code(), fs::read_to_string(&path).unwrap())
}

const BAD_COLLECTOR: &str = "listen = \"0.0.0.0:8443\"\nplain_http = true\nhold_secs = -5\n";
const BAD_AGENT: &str = "state_dir = \"relative/dir\"\n[[rule]]\npath = \"etc\"\n";

#[test]
fn a_refused_configuration_exits_78_with_one_error_line() {
    let dir = tempfile::tempdir().unwrap();
    let collector_config = dir.path().join("collector.toml");
    fs::write(&collector_config, BAD_COLLECTOR).unwrap();
    let agent_config = dir.path().join("agent.toml");
    fs::write(&agent_config, BAD_AGENT).unwrap();
    let collector = |args: &[&str]| {
        let mut command = Command::new(collector_bin());
        command.arg("--config").arg(&collector_config).args(args);
        command
    };
    let agent = |args: &[&str]| {
        let mut command = Command::new(agent_bin());
        command.arg("--config").arg(&agent_config).args(args);
        command
    };
    let collector_problems = [
        format!("{}:2:14: plain_http", p(&collector_config)),
        format!("{}:3:13: hold_secs", p(&collector_config)),
    ];
    let agent_problems = [
        format!("{}:1:13: state_dir", p(&agent_config)),
        format!("{}:3:8: rule[0].path", p(&agent_config)),
    ];

    // In the journal: one line at priority err (3), every problem in it.
    for (command, problems) in [
        (collector(&["serve"]), &collector_problems),
        (collector(&["validate-config"]), &collector_problems),
        (agent(&["run"]), &agent_problems),
        (agent(&["validate-config"]), &agent_problems),
    ] {
        let shown = format!("{command:?}");
        let (code, stderr) = run_to_file(command, dir.path(), true);
        assert_eq!(code, Some(EXIT_CONFIG), "{shown}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{shown}: {stderr}");
        assert!(stderr.starts_with("<3>"), "{shown}: {stderr}");
        for problem in problems {
            assert!(
                stderr.contains(problem.as_str()),
                "{shown}: {problem} in {stderr}"
            );
        }
    }

    // Under --log-format json (stderr not the journal): one JSON object, level ERROR.
    for (command, problems) in [
        (
            collector(&["--log-format", "json", "serve"]),
            &collector_problems,
        ),
        (agent(&["--log-format", "json", "run"]), &agent_problems),
    ] {
        let shown = format!("{command:?}");
        let (code, stderr) = run_to_file(command, dir.path(), false);
        assert_eq!(code, Some(EXIT_CONFIG), "{shown}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{shown}: {stderr}");
        let line: Value = serde_json::from_str(&stderr).expect("one JSON object");
        assert_eq!(line["level"], "ERROR", "{line}");
        assert!(line["timestamp"].is_string(), "{line}");
        let message = line["fields"]["message"].as_str().unwrap();
        for problem in problems {
            assert!(message.contains(problem.as_str()), "{problem} in {message}");
        }
    }

    // The deprecated `serve --log-json` still means JSON (a warning that it is deprecated,
    // then the error); driftctl takes the flag too.
    let (code, stderr) = run_to_file(collector(&["serve", "--log-json"]), dir.path(), false);
    assert_eq!(code, Some(EXIT_CONFIG), "{stderr}");
    let lines: Vec<Value> = stderr
        .lines()
        .map(|line| serde_json::from_str(line).expect("JSON lines"))
        .collect();
    assert_eq!(lines.len(), 2, "{stderr}");
    assert_eq!(lines[0]["level"], "WARN", "{stderr}");
    assert!(stderr.contains("--log-format json"), "{stderr}");
    assert_eq!(lines[1]["level"], "ERROR", "{stderr}");
    let mut driftctl = Command::new(driftctl_bin());
    driftctl
        .args(["--log-format", "json", "drift", "list"])
        .env_remove("DRIFTWATCH_TOKEN");
    let (code, stderr) = run_to_file(driftctl, dir.path(), false);
    // No token configured is a configuration error for driftctl too.
    assert_eq!(code, Some(EXIT_CONFIG), "{stderr}");
    let line: Value = serde_json::from_str(&stderr).expect("one JSON object");
    assert!(
        line["fields"]["message"]
            .as_str()
            .unwrap()
            .contains("no token"),
        "{line}"
    );
}

#[test]
fn in_the_journal_log_lines_carry_a_priority_and_no_timestamp() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("collector.toml");
    fs::write(
        &config,
        format!(
            "plain_http = true\nstate_dir = \"{}\"\n",
            p(&dir.path().join("state"))
        ),
    )
    .unwrap();
    let token = |journal: bool| {
        let mut command = Command::new(collector_bin());
        command
            .arg("--config")
            .arg(&config)
            .args(["token", "create", "--role", "admin", "--person", "root"])
            .env("DRIFTWATCH_LOG", "info");
        run_to_file(command, dir.path(), journal)
    };
    let timestamp = |line: &str| {
        line.as_bytes().windows(11).any(|w| {
            w[4] == b'-' && w[7] == b'-' && w[10] == b'T' && w[..4].iter().all(u8::is_ascii_digit)
        })
    };
    let (code, stderr) = token(true);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("<6>"), "an info line: {stderr}");
    assert!(stderr.contains("audit signing key loaded"), "{stderr}");
    for line in stderr.lines().filter(|l| !l.starts_with("created a token")) {
        assert!(
            line.len() > 3 && line.starts_with('<') && line.as_bytes()[2] == b'>',
            "every log line has a priority: {line}"
        );
        assert!(!timestamp(line), "no timestamp of our own: {line}");
    }
    // Not the journal: our own timestamp, no priority prefix.
    let (code, stderr) = token(false);
    assert_eq!(code, Some(0), "{stderr}");
    let loaded = stderr
        .lines()
        .find(|l| l.contains("audit signing key loaded"))
        .unwrap_or_else(|| panic!("{stderr}"));
    assert!(timestamp(loaded) && !loaded.starts_with('<'), "{loaded}");
}

struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Ca {
    fn new() -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        Ca {
            issuer: CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap(),
        }
    }

    /// Writes a certificate for 127.0.0.1 and its key to `cert` and `key`.
    fn issue(&self, cert: &Path, key: &Path) {
        let pair = KeyPair::generate().unwrap();
        let issued = CertificateParams::new(vec!["127.0.0.1".to_owned()])
            .unwrap()
            .signed_by(&pair, &self.issuer)
            .unwrap();
        fs::write(cert, issued.pem()).unwrap();
        fs::write(key, pair.serialize_pem()).unwrap();
    }

    /// Whether a new HTTPS connection that trusts only this CA reaches `/healthz`.
    async fn trusted_by(&self, collector: &Collector) -> bool {
        let client = reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(self.issuer.pem().as_bytes()).unwrap()])
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        client
            .get(format!("https://{}/healthz", collector.addr))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
    }
}

/// Waits until the collector's log holds `text` `times` times.
fn wait_for_log(collector: &Collector, text: &str, times: usize) {
    assert!(
        wait_until(Duration::from_secs(20), || collector
            .log()
            .matches(text)
            .count()
            >= times),
        "no `{text}` (x{times}) in the log:\n{}",
        collector.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_serves_a_renewed_certificate_to_new_connections() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("server.crt"), dir.path().join("server.key"));
    let (old_ca, new_ca) = (Ca::new(), Ca::new());
    old_ca.issue(&cert, &key);
    let mut collector = Collector::start_tls(
        &format!("cert = \"{}\"\nkey = \"{}\"\n", p(&cert), p(&key)),
        "",
    );
    assert!(old_ca.trusted_by(&collector).await);
    assert!(!new_ca.trusted_by(&collector).await);

    // Renewed in place, as certbot or an ACME client does, then `systemctl reload`.
    new_ca.issue(&cert, &key);
    let reload = Command::new(collector_bin())
        .arg("--config")
        .arg(collector.config())
        .arg("validate-config")
        .output()
        .unwrap();
    assert!(reload.status.success(), "{reload:?}");
    collector.signal("HUP");
    wait_for_log(&collector, "configuration reloaded", 1);
    assert!(new_ca.trusted_by(&collector).await, "{}", collector.log());
    assert!(!old_ca.trusted_by(&collector).await);

    // A broken certificate is refused by the reload's validation and by the SIGHUP itself;
    // the running one stays.
    fs::write(&cert, "not a certificate\n").unwrap();
    let reload = Command::new(collector_bin())
        .arg("--config")
        .arg(collector.config())
        .arg("validate-config")
        .output()
        .unwrap();
    assert_eq!(reload.status.code(), Some(EXIT_CONFIG), "{reload:?}");
    collector.signal("HUP");
    wait_for_log(&collector, "configuration reload refused", 1);
    assert!(
        collector.log().contains(p(&cert)),
        "the refusal names the file:\n{}",
        collector.log()
    );
    assert!(new_ca.trusted_by(&collector).await, "{}", collector.log());

    let (code, log) = collector.stop();
    assert_eq!(code, Some(0), "{log}");
}

#[test]
fn sighup_with_a_refused_file_keeps_the_running_configuration() {
    let mut collector = Collector::start("");
    let good = fs::read_to_string(collector.config()).unwrap();

    fs::write(collector.config(), format!("{good}\nhold_secs = -5\n")).unwrap();
    collector.signal("HUP");
    wait_for_log(&collector, "configuration reload refused", 1);
    let log = collector.log();
    let refusal = log
        .lines()
        .find(|l| l.contains("configuration reload refused"))
        .unwrap();
    assert!(refusal.contains("ERROR"), "{refusal}");
    assert!(refusal.contains("hold_secs"), "{refusal}");
    assert_eq!(http::get(collector.addr, "/readyz", None).status, 200);

    // A valid file whose changes need a restart: applied as far as it can be, and said so.
    fs::write(
        collector.config(),
        good.replace("hold_secs = 1", "hold_secs = 2"),
    )
    .unwrap();
    collector.signal("HUP");
    wait_for_log(&collector, "need a restart", 1);
    let log = collector.log();
    let warning = log.lines().find(|l| l.contains("need a restart")).unwrap();
    assert!(
        warning.contains("WARN") && warning.contains("hold_secs"),
        "{warning}"
    );
    assert_eq!(http::get(collector.addr, "/readyz", None).status, 200);

    // SIGHUP did not end it: a clean stop.
    let (code, log) = collector.stop();
    assert_eq!(code, Some(0), "{log}");
}

/// The `Key=` values of a unit file in packaging/systemd.
fn unit_values(unit: &str, key: &str) -> Vec<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../packaging/systemd")
        .join(unit);
    let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .filter_map(|line| line.strip_prefix(key)?.strip_prefix('='))
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_units_validate_in_the_main_process_and_before_a_reload() {
    let dir = tempfile::tempdir().unwrap();
    for (unit, binary, bad, good) in [
        (
            "driftwatch-agent.service",
            agent_bin(),
            BAD_AGENT,
            "state_dir = \"/var/lib/driftwatch\"\n[[rule]]\npath = \"/etc\"\n",
        ),
        (
            "driftwatch-collector.service",
            collector_bin(),
            BAD_COLLECTOR,
            "plain_http = true\n",
        ),
    ] {
        // A failing ExecStartPre= is restarted whatever its code: validation is in ExecStart.
        assert!(unit_values(unit, "ExecStartPre").is_empty(), "{unit}");
        let prevent = unit_values(unit, "RestartPreventExitStatus").join(" ");
        assert!(
            prevent.split_whitespace().any(|code| code == "78"),
            "{unit}: RestartPreventExitStatus={prevent}"
        );
        assert_eq!(unit_values(unit, "Restart"), ["on-failure"], "{unit}");
        // ExecReload= validates, then signals: the first command, run on a refused and on a
        // valid file, decides whether `systemctl reload` fails.
        let reload = unit_values(unit, "ExecReload");
        assert_eq!(reload.len(), 2, "{unit}: {reload:?}");
        assert!(
            reload[1].contains("kill -HUP $MAINPID"),
            "{unit}: {reload:?}"
        );
        let words: Vec<&str> = reload[0].split_whitespace().collect();
        assert!(words.contains(&"validate-config"), "{unit}: {reload:?}");
        let config_at = words.iter().position(|w| *w == "--config").unwrap() + 1;
        for (text, expected) in [(bad, EXIT_CONFIG), (good, 0)] {
            let config = dir.path().join("unit.toml");
            fs::write(&config, text).unwrap();
            let mut command = Command::new(binary);
            for (i, word) in words.iter().enumerate().skip(1) {
                if i == config_at {
                    command.arg(&config);
                } else {
                    command.arg(word);
                }
            }
            let (code, stderr) = run_to_file(command, dir.path(), false);
            assert_eq!(
                code,
                Some(expected),
                "{unit}: {reload:?} on {text}: {stderr}"
            );
        }
    }
}
