//! `validate-config` and config-driven runs (`--config FILE`).

use std::path::{Path, PathBuf};

use driftwatch_tests::{
    Agent, EXIT_CLEAN, EXIT_CONFIG, EXIT_DRIFT, EXIT_ERROR, HostDir, drift_for, drifts, p,
};

fn write_config(host: &HostDir, name: &str, text: &str) -> PathBuf {
    let path = host.root().join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// A policy over the tree: `perm/` watched for permissions only, `cont/`
/// for content except `*.log`, state in `state/agent`.
fn policy(host: &HostDir) -> PathBuf {
    let text = format!(
        r#"# driftwatch test policy
state_dir = "{state}"

[scan]
workers = 2
full_rehash_interval_hours = 0

# Files only: listening ports and the like change under concurrent tests.
[sources]
enabled = []

[[rule]]
path = "{perm}"
group = "permissions"

[[rule]]
path = "{cont}"
exclude = ["**/*.log"]
"#,
        state = p(&host.state().join("agent")),
        perm = p(&host.path("perm")),
        cont = p(&host.path("cont")),
    );
    write_config(host, "agent.toml", &text)
}

fn with_config(config: &Path, args: &[&str]) -> Agent {
    Agent::new()
        .args(args)
        .arg("--config")
        .arg(config)
        .arg("-q")
}

#[test]
fn valid_config_validates() {
    let host = HostDir::new();
    host.mkdir("perm");
    host.mkdir("cont");
    let config = policy(&host);
    with_config(&config, &["validate-config"])
        .run()
        .expect(EXIT_CLEAN)
        .stdout_has("ok (2 rules");
    let run = with_config(&config, &["validate-config", "--json"]).run();
    run.expect(EXIT_CLEAN);
    let json = run.json();
    assert_eq!(json["valid"], true);
    assert_eq!(json["rules"], 2);
    assert_eq!(json["state_dir"], p(&host.state().join("agent")));
    assert!(
        !host.state().join("agent").exists(),
        "validate writes nothing"
    );
}

#[test]
fn config_from_environment_variable() {
    let host = HostDir::new();
    host.mkdir("perm");
    host.mkdir("cont");
    let config = policy(&host);
    Agent::new()
        .arg("validate-config")
        .env("DRIFTWATCH_CONFIG", &config)
        .run()
        .expect(EXIT_CLEAN);
}

/// Each semantic error: (line, column) of the offending text, and a piece of its message.
const BAD_CONFIG: &str = r#"state_dir = "relative/dir"

[[rule]]
path = "etc"
exclude = ["/a/[z-a]", "*.swp"]

[[rule]]
path = "/ok"
group = "nosuch"
"#;

#[test]
fn every_semantic_error_is_located() {
    let host = HostDir::new();
    let config = write_config(&host, "bad.toml", BAD_CONFIG);
    let run = with_config(&config, &["validate-config"]).run();
    run.expect(EXIT_CONFIG);
    let file = p(&config);
    for (line, column, key) in [
        (1, 13, "state_dir"),
        (4, 8, "rule[0].path"),
        (5, 12, "rule[0].exclude[0]"),
        (5, 24, "rule[0].exclude[1]"),
        (9, 9, "rule[1].group"),
    ] {
        run.stderr_has(&format!("{file}:{line}:{column}: {key}:"));
    }
    run.stderr_has("5 error(s)");
    assert!(run.stdout.is_empty(), "{run}");

    let run = with_config(&config, &["validate-config", "--json"]).run();
    run.expect(EXIT_CONFIG);
    let json = run.json();
    assert_eq!(json["valid"], false);
    let errors = json["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 5, "{run}");
    assert_eq!(errors[0]["line"], 1);
    assert_eq!(errors[0]["column"], 13);
    assert_eq!(errors[0]["key"], "state_dir");
    assert_eq!(errors[0]["file"], file);
}

#[test]
fn unknown_key_is_located() {
    let host = HostDir::new();
    let config = write_config(
        &host,
        "typo.toml",
        "state_dir = \"/var/lib/x\"\n\n[[rule]]\npath = \"/etc\"\nexlcude = [\"/etc/mtab\"]\n",
    );
    with_config(&config, &["validate-config"])
        .run()
        .expect(EXIT_CONFIG)
        .stderr_has(&format!("{}:5:1: rule[0].exlcude", p(&config)))
        .stderr_has("unknown field");
}

#[test]
fn syntax_error_is_located() {
    let host = HostDir::new();
    let config = write_config(&host, "syntax.toml", "[[rule]\npath = \"/etc\"\n");
    with_config(&config, &["validate-config"])
        .run()
        .expect(EXIT_CONFIG)
        .stderr_has(&format!("{}:1:", p(&config)));
}

#[test]
fn missing_config_file_is_named() {
    let host = HostDir::new();
    let missing = host.root().join("nope.toml");
    for args in [&["validate-config"][..], &["check"], &["baseline", "init"]] {
        with_config(&missing, args)
            .run()
            .expect(EXIT_CONFIG)
            .stderr_has(p(&missing))
            .stderr_has("cannot read");
    }
}

#[test]
fn invalid_config_writes_nothing() {
    let host = HostDir::new();
    host.mkdir("cont");
    let state = host.state().join("agent");
    let config = write_config(
        &host,
        "bad-glob.toml",
        &format!(
            "state_dir = \"{}\"\n[[rule]]\npath = \"{}\"\nexclude = [\"/[z-a]\"]\n",
            p(&state),
            p(&host.path("cont"))
        ),
    );
    for args in [&["check"][..], &["baseline", "init"], &["baseline", "show"]] {
        with_config(&config, args)
            .run()
            .expect(EXIT_CONFIG)
            .stderr_has(&format!("{}:4:", p(&config)));
    }
    assert!(
        !state.exists(),
        "an invalid config must not create the state dir"
    );
}

#[test]
fn config_driven_policy_applies_groups_and_excludes() {
    let host = HostDir::new();
    let perm_file = host.write("perm/resolv.conf", "nameserver 10.0.0.1\n");
    let cont_file = host.write("cont/app.conf", "a = 1\n");
    let log = host.write("cont/app.log", "started\n");
    host.write("outside/ignored", "not in any rule\n");
    let config = policy(&host);
    let state = host.state().join("agent");

    let init = with_config(&config, &["baseline", "init", "--json"]).run();
    init.expect(EXIT_CLEAN);
    // perm, resolv.conf, cont, app.conf (not app.log, not outside/)
    assert_eq!(init.json()["entries"], 4, "{init}");
    assert!(state.join("baseline.db").is_file(), "{init}");
    assert!(state.join("baseline.key").is_file(), "{init}");
    with_config(&config, &["check"]).run().expect(EXIT_CLEAN);

    // Content changes under the permissions rule, and of excluded files, are not drift.
    host.write("perm/resolv.conf", "nameserver 10.9.9.9\nsearch example\n");
    host.append("cont/app.log", "more log lines\n");
    host.write("cont/new.log", "excluded too\n");
    host.write("outside/ignored", "still not in any rule\n");
    let run = with_config(&config, &["check", "--json"]).run();
    run.expect(EXIT_CLEAN);
    assert_eq!(drifts(&run.json()).len(), 0, "{run}");

    // A chmod under the permissions rule is; so is content under the content rule.
    host.chmod(&perm_file, 0o600);
    host.write("cont/app.conf", "a = 2\n");
    let run = with_config(&config, &["check", "--json"]).run();
    run.expect(EXIT_DRIFT);
    let report = run.json();
    assert_eq!(drifts(&report).len(), 2, "{run}");
    let perm = drift_for(&report, p(&perm_file)).expect("chmod drift");
    assert_eq!(perm["kind"], "attributes");
    assert!(
        perm["after"]["content_hash"].is_null(),
        "permissions rule does not read content"
    );
    assert_eq!(
        drift_for(&report, p(&cont_file)).expect("content drift")["kind"],
        "content"
    );
    assert!(drift_for(&report, p(&log)).is_none());

    // show resolves subjects through the configured policy too.
    with_config(&config, &["baseline", "show"])
        .arg(&log)
        .run()
        .expect(EXIT_ERROR)
        .stderr_has("no rule of the policy covers it");
}

#[test]
fn changed_policy_is_flagged() {
    let host = HostDir::new();
    host.write("perm/a", "1\n");
    host.write("cont/b", "2\n");
    let config = policy(&host);
    with_config(&config, &["baseline", "init"])
        .run()
        .expect(EXIT_CLEAN);
    let mut text = std::fs::read_to_string(&config).unwrap();
    text = text.replace("**/*.log", "**/*.tmp");
    std::fs::write(&config, text).unwrap();
    let run = with_config(&config, &["check", "--json"]).run();
    run.expect(EXIT_CLEAN);
    assert_eq!(run.json()["policy_changed"], true, "{run}");
}
