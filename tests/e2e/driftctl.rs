//! `driftctl` as scripts and people meet it: an exit code for each way a command fails,
//! settings from flags, environment, its config file and defaults (in that order), token
//! and config files nobody else can read or write, and a quiet end on a closed pipe.

use std::fs;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use driftwatch_tests::Run;
use driftwatch_tests::collector::{Collector, FakeAgent, driftctl_bin, isolate_driftctl, run};

/// A URL on 127.0.0.1 where nothing listens (a port just released).
fn closed_port_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    format!("http://127.0.0.1:{port}")
}

/// Writes `text` to `path` with `mode`.
fn write_mode(path: &Path, text: &str, mode: u32) -> PathBuf {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, text).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
    path.to_path_buf()
}

/// driftctl with nothing from the caller's environment but `env` (and `XDG_CONFIG_HOME`
/// pointing into `home`).
fn ctl(home: &Path, env: &[(&str, &str)], args: &[&str]) -> Run {
    let mut cmd = Command::new(driftctl_bin());
    isolate_driftctl(&mut cmd, &home.join("xdg"));
    cmd.env_remove("DRIFTWATCH_URL")
        .env_remove("DRIFTWATCH_TOKEN")
        .env("HOME", home)
        .args(args);
    for (key, value) in env {
        cmd.env(key, value);
    }
    run(cmd, Duration::from_secs(60))
}

#[test]
fn each_kind_of_failure_has_its_own_exit_code() {
    // One failed login empties this address's allowance: the next request is 429.
    let collector =
        Collector::start("[limits]\nauth_failure_burst = 1\nauth_failures_per_minute = 1\n");
    let admin = collector.token("admin", "root");
    let auditor = collector.token("auditor", "ann");

    // Usage: a bad command line, an argument driftctl checks itself.
    collector
        .driftctl(&admin, &["windows", "show", "not-a-uuid"])
        .expect(64)
        .stderr_has("invalid value 'not-a-uuid'");
    collector
        .driftctl(&admin, &["drift", "list", "--no-such-flag"])
        .expect(64);
    collector
        .driftctl(
            &admin,
            &[
                "drift",
                "resolve",
                &uuid::Uuid::nil().to_string(),
                "--category",
                "oops",
                "--comment",
                "x",
            ],
        )
        .expect(64)
        .stderr_has("--category `oops`");
    // Help is an answer, not an error.
    collector
        .driftctl(&admin, &["--help"])
        .expect(0)
        .stdout_has("89  conflict (409)");

    // 400: the collector refused the request's content.
    collector
        .driftctl(&admin, &["alerts", "--limit", "0"])
        .expect(65)
        .stderr_has("400");
    // 403: an auditor may not issue tokens.
    collector
        .driftctl(
            &auditor,
            &["token", "create", "--person", "mallory", "--role", "admin"],
        )
        .expect(83)
        .stderr_has("403");
    // 404: no such window.
    collector
        .driftctl(
            &admin,
            &["windows", "show", &uuid::Uuid::now_v7().to_string()],
        )
        .expect(84)
        .stderr_has("404");
    // 409: the person exists already.
    collector
        .driftctl(&admin, &["people", "create", "carol"])
        .expect(0);
    collector
        .driftctl(&admin, &["people", "create", "carol"])
        .expect(89)
        .stderr_has("409");
    // Unreachable: nothing listens on that port.
    let home = tempfile::tempdir().unwrap();
    let closed = closed_port_url();
    ctl(
        home.path(),
        &[("DRIFTWATCH_TOKEN", &admin)],
        &["--url", &closed, "hosts"],
    )
    .expect(69)
    .stderr_has(&format!("cannot reach the collector at {closed}"))
    .stderr_has("onnection refused");
    // Configuration: no token anywhere.
    ctl(
        home.path(),
        &[("DRIFTWATCH_URL", &collector.url())],
        &["hosts"],
    )
    .expect(78)
    .stderr_has("no token");
    // 401: a wrong token; then 429 (try again later) for the address that just failed.
    collector
        .driftctl("dwt_not-a-real-token", &["hosts"])
        .expect(81)
        .stderr_has("401");
    collector
        .driftctl(&admin, &["hosts"])
        .expect(75)
        .stderr_has("429");
}

#[test]
fn settings_come_from_flags_then_environment_then_the_config_file_then_defaults() {
    let collector = Collector::start("");
    let admin = collector.token("admin", "root");
    let home = tempfile::tempdir().unwrap();
    let home = home.path();
    let url = collector.url();
    let closed = closed_port_url();
    let good = write_mode(&home.join("admin.token"), &format!("{admin}\n"), 0o600);
    let wrong = write_mode(&home.join("wrong.token"), "dwt_wrong\n", 0o600);

    // The default place ($XDG_CONFIG_HOME/driftwatch/driftctl.toml); a relative
    // token_file is beside it.
    let config_dir = home.join("xdg/driftwatch");
    write_mode(&config_dir.join("admin.token"), &admin, 0o600);
    let config = write_mode(
        &config_dir.join("driftctl.toml"),
        &format!("url = \"{url}\"\ntoken_file = \"admin.token\"\n"),
        0o644,
    );
    ctl(home, &[], &["hosts"]).expect(0).stdout_has("(none)");
    // An empty variable counts as unset.
    ctl(
        home,
        &[("DRIFTWATCH_URL", ""), ("DRIFTWATCH_TOKEN", "")],
        &["hosts"],
    )
    .expect(0);

    // URL: the environment beats the file; the flag beats the environment.
    ctl(home, &[("DRIFTWATCH_URL", &closed)], &["hosts"])
        .expect(69)
        .stderr_has(&closed);
    ctl(
        home,
        &[("DRIFTWATCH_URL", &closed)],
        &["--url", &url, "hosts"],
    )
    .expect(0);

    // Token: DRIFTWATCH_TOKEN_FILE or DRIFTWATCH_TOKEN beat the file; the flag beats both.
    ctl(
        home,
        &[("DRIFTWATCH_TOKEN_FILE", wrong.to_str().unwrap())],
        &["hosts"],
    )
    .expect(81)
    .stderr_has("401");
    ctl(home, &[("DRIFTWATCH_TOKEN", "dwt_wrong")], &["hosts"]).expect(81);
    ctl(
        home,
        &[("DRIFTWATCH_TOKEN_FILE", wrong.to_str().unwrap())],
        &["--token-file", good.to_str().unwrap(), "hosts"],
    )
    .expect(0);
    ctl(
        home,
        &[("DRIFTWATCH_TOKEN", "dwt_wrong")],
        &["--token-file", good.to_str().unwrap(), "hosts"],
    )
    .expect(0);
    ctl(
        home,
        &[
            ("DRIFTWATCH_TOKEN", &admin),
            ("DRIFTWATCH_TOKEN_FILE", good.to_str().unwrap()),
        ],
        &["hosts"],
    )
    .expect(78)
    .stderr_has("both DRIFTWATCH_TOKEN and DRIFTWATCH_TOKEN_FILE are set");

    // Another file: DRIFTWATCH_CTL_CONFIG, and --config beats it. A named file must exist.
    let other = write_mode(
        &home.join("other.toml"),
        &format!("url = \"{closed}\"\ntoken_file = \"admin.token\"\n"),
        0o600,
    );
    ctl(
        home,
        &[("DRIFTWATCH_CTL_CONFIG", other.to_str().unwrap())],
        &["hosts"],
    )
    .expect(69)
    .stderr_has(&closed);
    ctl(
        home,
        &[("DRIFTWATCH_CTL_CONFIG", other.to_str().unwrap())],
        &["--config", config.to_str().unwrap(), "hosts"],
    )
    .expect(0);
    let missing = home.join("missing.toml");
    ctl(home, &[], &["--config", missing.to_str().unwrap(), "hosts"])
        .expect(78)
        .stderr_has(&format!("{}: cannot read the file", missing.display()));

    // The default URL when neither flag, environment nor file names one.
    fs::remove_file(&config).unwrap();
    let default = ctl(home, &[("DRIFTWATCH_TOKEN", "dwt_x")], &["hosts"]);
    if default.code() == 69 {
        default.stderr_has("cannot reach the collector at http://127.0.0.1:8443");
    } else {
        // Something listens there: it is asked, and knows no such token.
        default.expect(81);
    }
}

#[test]
fn token_and_config_files_nobody_else_controls_and_config_mistakes_by_line() {
    let collector = Collector::start("");
    let admin = collector.token("admin", "root");
    let home = tempfile::tempdir().unwrap();
    let home = home.path();
    let url = collector.url();
    let token = write_mode(&home.join("admin.token"), &admin, 0o644);
    let shown = token.display().to_string();

    // A token file others can read is refused, naming the file and its mode.
    ctl(
        home,
        &[("DRIFTWATCH_URL", &url)],
        &["--token-file", &shown, "hosts"],
    )
    .expect(78)
    .stderr_has(&format!("the token file {shown} has mode 0644"))
    .stderr_has("chmod 600");
    ctl(
        home,
        &[("DRIFTWATCH_URL", &url), ("DRIFTWATCH_TOKEN_FILE", &shown)],
        &["hosts"],
    )
    .expect(78)
    .stderr_has("has mode 0644");
    fs::set_permissions(&token, fs::Permissions::from_mode(0o600)).unwrap();
    ctl(
        home,
        &[("DRIFTWATCH_URL", &url)],
        &["--token-file", &shown, "hosts"],
    )
    .expect(0);

    // A token file that belongs to someone else (the tests run as root in CI).
    let theirs = write_mode(&home.join("theirs.token"), &admin, 0o600);
    if std::os::unix::fs::chown(&theirs, Some(65534), None).is_ok() {
        ctl(
            home,
            &[("DRIFTWATCH_URL", &url)],
            &["--token-file", theirs.to_str().unwrap(), "hosts"],
        )
        .expect(78)
        .stderr_has("owned by uid 65534, not by you");
    }

    // A config file others may write could send the token elsewhere: refused.
    let config_path = home.join("xdg/driftwatch/driftctl.toml");
    let config = write_mode(
        &config_path,
        &format!("url = \"{url}\"\ntoken_file = \"{shown}\"\n"),
        0o666,
    );
    ctl(home, &[], &["hosts"])
        .expect(78)
        .stderr_has(&format!("{}: has mode 0666", config.display()));
    fs::set_permissions(&config, fs::Permissions::from_mode(0o644)).unwrap();
    ctl(home, &[], &["hosts"]).expect(0);

    // Malformed: file, line, column and key; nothing is sent.
    write_mode(
        &config_path,
        &format!("url = \"{url}\"\ntoken_file = 7\n"),
        0o600,
    );
    ctl(home, &[], &["hosts"])
        .expect(78)
        .stderr_has(&format!("{}:2:14: token_file:", config.display()));
    // A secret in the config file is refused without being repeated.
    write_mode(
        &config_path,
        &format!("url = \"{url}\"\ntoken = \"{admin}\"\n"),
        0o600,
    );
    let refused = ctl(home, &[], &["hosts"]);
    refused
        .expect(78)
        .stderr_has(":2:9: token: a token does not belong in this file");
    assert!(!refused.stderr.contains(&admin), "{refused}");
    write_mode(&config_path, "url = \"ftp://x\"\n", 0o600);
    ctl(home, &[("DRIFTWATCH_TOKEN", &admin)], &["hosts"])
        .expect(78)
        .stderr_has(":1:7: url: `ftp://x` is not a collector URL");
    // An offline command does not need (or read) the config file.
    ctl(
        home,
        &[],
        &["verify", "/nonexistent", "--public-key", &"0".repeat(64)],
    )
    .expect(2)
    .stderr_has("cannot read /nonexistent");
}

/// Runs driftctl with standard output a pipe whose reader stops after a few bytes.
fn cut_short(collector: &Collector, token: &str, args: &[&str]) {
    let mut cmd = Command::new(driftctl_bin());
    isolate_driftctl(&mut cmd, collector.dir());
    let mut child = cmd
        .arg("--url")
        .arg(collector.url())
        .args(args)
        .env("DRIFTWATCH_TOKEN", token)
        .env_remove("DRIFTWATCH_URL")
        .env("RUST_BACKTRACE", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 64];
    stdout.read_exact(&mut first).unwrap();
    drop(stdout);
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("driftctl {args:?} did not end within 30 s of its reader leaving");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(!stderr.contains("panicked"), "driftctl {args:?}: {stderr}");
    assert_eq!(stderr, "", "driftctl {args:?} says nothing");
    // Ended by SIGPIPE, as `cat` is: a shell reports 141.
    assert_eq!(status.signal(), Some(13), "driftctl {args:?}: {status:?}");
}

#[test]
fn listings_end_quietly_when_the_reader_goes_away() {
    let collector = Collector::start("");
    let admin = collector.token("admin", "root");
    let agent = FakeAgent::enroll(&collector, &admin, "web-1");
    // 1000 drift items: far more than a pipe holds (64 KiB), so driftctl is still writing.
    for batch in 0..5 {
        let events: Vec<_> = (0..200)
            .map(|i| agent.event(&format!("package:pkg-{batch}-{i}"), "1.0"))
            .collect();
        agent.report(&collector, &events).expect(200);
    }
    let listed = collector.driftctl(&admin, &["drift", "list"]);
    listed.expect(0);
    assert!(
        listed.stdout.len() > 128 * 1024,
        "{} bytes",
        listed.stdout.len()
    );

    cut_short(&collector, &admin, &["drift", "list"]);
    cut_short(&collector, &admin, &["--json", "drift", "list"]);
}

#[test]
fn an_untrusted_certificate_is_unreachable_and_the_ca_comes_from_flag_or_file() {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    let home = tempfile::tempdir().unwrap();
    let home = home.path();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    let cert_file = write_mode(&home.join("server.crt"), &cert.pem(), 0o644);
    let key_file = write_mode(&home.join("server.key"), &key.serialize_pem(), 0o600);
    let ca_file = write_mode(&home.join("ca.pem"), &ca.pem(), 0o644);
    let collector = Collector::start_tls(
        &format!(
            "cert = \"{}\"\nkey = \"{}\"\n",
            cert_file.display(),
            key_file.display()
        ),
        "",
    );
    let admin = collector.token("admin", "root");
    let url = format!("https://{}", collector.addr);
    let env = [("DRIFTWATCH_TOKEN", admin.as_str())];

    // The system's roots do not know this CA: the TLS handshake fails.
    ctl(home, &env, &["--url", &url, "hosts"])
        .expect(69)
        .stderr_has(&format!("cannot reach the collector at {url}"));
    ctl(
        home,
        &env,
        &[
            "--url",
            &url,
            "--ca-cert",
            ca_file.to_str().unwrap(),
            "hosts",
        ],
    )
    .expect(0);
    // From the config file; DRIFTWATCH_CA_CERT and --ca-cert beat it.
    write_mode(
        &home.join("xdg/driftwatch/driftctl.toml"),
        &format!("url = \"{url}\"\nca_cert = \"{}\"\n", ca_file.display()),
        0o644,
    );
    ctl(home, &env, &["hosts"]).expect(0);
    let not_pem = write_mode(&home.join("not.pem"), "hello\n", 0o644);
    ctl(
        home,
        &[env[0], ("DRIFTWATCH_CA_CERT", not_pem.to_str().unwrap())],
        &["hosts"],
    )
    .expect(78)
    .stderr_has("not.pem is not a PEM certificate");
    ctl(
        home,
        &env,
        &["--ca-cert", not_pem.to_str().unwrap(), "hosts"],
    )
    .expect(78)
    .stderr_has("not.pem is not a PEM certificate");
}
