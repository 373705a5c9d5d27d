//! `baseline init --force`, `baseline accept` and `baseline show`.

use driftwatch_tests::{
    Agent, EXIT_CLEAN, EXIT_DRIFT, EXIT_ERROR, EXIT_INTEGRITY, HostDir, drift_for, drifts, p,
};
use serde_json::Value;

fn history_actions(host: &HostDir) -> (Vec<String>, Value) {
    let run = host.agent(["baseline", "show", "--json"]).run();
    run.expect(EXIT_CLEAN);
    let summary = run.json();
    let actions = summary["history"]
        .as_array()
        .unwrap_or_else(|| panic!("no history: {run}"))
        .iter()
        .map(|entry| entry["action"].as_str().unwrap().to_owned())
        .collect();
    (actions, summary)
}

#[test]
fn init_twice_needs_force() {
    let host = HostDir::new();
    host.write("a", "1\n");
    host.init();
    let db_before = std::fs::read(host.db()).unwrap();

    host.agent(["baseline", "init"])
        .run()
        .expect(EXIT_ERROR)
        .stderr_has("--force");
    assert_eq!(
        std::fs::read(host.db()).unwrap(),
        db_before,
        "a refused init must not touch the baseline"
    );

    host.write("b", "2\n");
    host.agent(["baseline", "init", "--force"])
        .run()
        .expect(EXIT_CLEAN)
        .stdout_has("replaced");
    // The new baseline includes b: no drift.
    host.check_json().expect(EXIT_CLEAN);

    let (actions, summary) = history_actions(&host);
    assert_eq!(summary["integrity"], "verified");
    assert_eq!(
        actions.last().map(String::as_str),
        Some("reinit"),
        "{summary:#}"
    );
    let text = host.agent(["baseline", "show"]).run();
    text.expect(EXIT_CLEAN)
        .stdout_has("integrity    verified")
        .stdout_has("reinit");
}

#[test]
fn reinit_keeps_the_previous_history() {
    let host = HostDir::new();
    host.write("a", "1\n");
    host.init();
    host.write("a", "2\n");
    host.agent(["baseline", "accept", "--reason", "CHG-7"])
        .arg(host.path("a"))
        .run()
        .expect(EXIT_CLEAN);
    host.agent(["baseline", "init", "--force"])
        .run()
        .expect(EXIT_CLEAN);
    let (actions, summary) = history_actions(&host);
    assert_eq!(actions, ["init", "accept", "reinit"], "{summary:#}");
}

#[test]
fn accept_makes_the_change_the_baseline_and_records_the_reason() {
    let host = HostDir::new();
    host.write("etc/app.conf", "a = 1\n");
    host.write("etc/other.conf", "b = 1\n");
    host.init();
    host.write("etc/app.conf", "a = 2\n");
    host.write("etc/other.conf", "b = 2\n");
    let app = host.path("etc/app.conf");
    let other = host.path("etc/other.conf");

    // --reason is required, and must not be blank.
    host.agent(["baseline", "accept"])
        .arg(&app)
        .run()
        .expect(EXIT_ERROR)
        .stderr_has("--reason");
    host.agent(["baseline", "accept", "--reason", "  "])
        .arg(&app)
        .run()
        .expect(EXIT_ERROR)
        .stderr_has("reason");
    let (actions, _) = history_actions(&host);
    assert_eq!(actions, ["init"], "a refused accept records nothing");

    host.agent(["baseline", "accept", "--reason", "CHG-1"])
        .arg(&app)
        .run()
        .expect(EXIT_CLEAN)
        .stdout_has(p(&app))
        .stdout_has("1 subject(s) accepted");

    // Only the accepted path is clean; the other still drifts.
    let run = host.check_json();
    run.expect(EXIT_DRIFT);
    let report = run.json();
    assert!(drift_for(&report, p(&app)).is_none(), "{run}");
    assert!(drift_for(&report, p(&other)).is_some(), "{run}");
    assert_eq!(drifts(&report).len(), 1, "{run}");

    // Accepting a directory accepts the drift below it.
    host.agent(["baseline", "accept", "--reason", "CHG-2"])
        .arg(host.path("etc"))
        .run()
        .expect(EXIT_CLEAN);
    host.agent(["check"])
        .run()
        .expect(EXIT_CLEAN)
        .stdout_has("no drift");

    let (actions, summary) = history_actions(&host);
    assert_eq!(actions, ["init", "accept", "accept"], "{summary:#}");
    let details: Vec<&str> = summary["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["detail"].as_str().unwrap())
        .collect();
    assert!(details[1].contains("CHG-1"), "{summary:#}");
    assert!(details[1].contains(p(&app)), "{summary:#}");
    assert!(details[2].contains("CHG-2"), "{summary:#}");
    assert!(details[2].contains(p(&other)), "{summary:#}");

    // Nothing left to accept.
    host.agent(["baseline", "accept", "--reason", "CHG-3"])
        .arg(&app)
        .run()
        .expect(EXIT_CLEAN)
        .stdout_has("nothing to accept");
    let (actions, _) = history_actions(&host);
    assert_eq!(actions.len(), 3, "accepting nothing records nothing");
}

#[test]
fn accept_with_relative_path_resolves_against_the_working_directory() {
    let host = HostDir::new();
    host.write("f", "1\n");
    host.init();
    host.write("f", "2\n");
    host.agent(["baseline", "accept", "--reason", "CHG-4", "f"])
        .current_dir(host.tree())
        .run()
        .expect(EXIT_CLEAN)
        .stdout_has(p(&host.path("f")));
    host.check_json().expect(EXIT_CLEAN);
}

#[test]
fn accepting_a_removal_drops_the_subject() {
    let host = HostDir::new();
    host.write("gone", "x\n");
    host.init();
    let gone = host.path("gone");
    std::fs::remove_file(&gone).unwrap();
    host.agent(["baseline", "accept", "--reason", "decommissioned"])
        .arg(&gone)
        .run()
        .expect(EXIT_CLEAN);
    host.check_json().expect(EXIT_CLEAN);
    host.agent(["baseline", "show"])
        .arg(&gone)
        .run()
        .expect(EXIT_ERROR)
        .stderr_has("not in the baseline");
}

#[test]
fn show_one_subject() {
    let host = HostDir::new();
    let file = host.write("data.conf", "k = v\n");
    host.chmod(&file, 0o640);
    host.init();

    let run = host.agent(["baseline", "show", "--json"]).arg(&file).run();
    run.expect(EXIT_CLEAN);
    let shown = run.json();
    assert_eq!(shown["path"], p(&file));
    let state = &shown["state"];
    assert_eq!(state["kind"], "file");
    assert_eq!(state["mode"], 0o640);
    assert_eq!(state["size"], 6);
    let hash = state["content_hash"].as_str().expect("content_hash");
    assert_eq!(hash.len(), 64);
    assert!(hash.bytes().all(|b| b.is_ascii_hexdigit()), "{hash}");
    assert_eq!(shown["snapshot"], true, "small text files keep a snapshot");

    // The hash is the one check reports as `before` after a change.
    host.write("data.conf", "k = w\n");
    let report = host.check_json();
    report.expect(EXIT_DRIFT);
    let report = report.json();
    let drift = drift_for(&report, p(&file)).expect("drift");
    assert_eq!(drift["before"]["content_hash"], hash);

    let dir = host
        .agent(["baseline", "show", "--json"])
        .arg(host.tree())
        .run();
    dir.expect(EXIT_CLEAN);
    assert_eq!(dir.json()["state"]["kind"], "dir");
    assert!(dir.json()["state"]["content_hash"].is_null());

    host.agent(["baseline", "show"])
        .arg(&file)
        .run()
        .expect(EXIT_CLEAN)
        .stdout_has("0640")
        .stdout_has(hash);
}

#[test]
fn show_of_unknown_subjects_is_an_error() {
    let host = HostDir::new();
    host.write("a", "1\n");
    host.init();
    let later = host.write("later", "created after init\n");

    host.agent(["baseline", "show"])
        .arg(&later)
        .run()
        .expect(EXIT_ERROR)
        .stderr_has(p(&later))
        .stderr_has("not in the baseline")
        .stderr_has("did not exist at init");

    let outside = host.root().join("elsewhere");
    let run = host.agent(["baseline", "show"]).arg(&outside).run();
    run.expect(EXIT_ERROR)
        .stderr_has(p(&outside))
        .stderr_has("no rule of the policy covers it");
    assert!(run.stdout.is_empty(), "{run}");
}

#[test]
fn commands_without_a_baseline_say_to_run_init() {
    let host = HostDir::new();
    host.write("a", "1\n");
    for args in [
        &["check"][..],
        &["baseline", "show"],
        &["baseline", "accept", "--reason", "x", "/"],
    ] {
        let run = host.agent(args).run();
        run.expect(EXIT_ERROR).stderr_has("baseline init");
    }
    assert!(!host.db().exists(), "nothing may create the db but init");
    assert!(!host.key().exists());
}

#[test]
fn path_without_db_is_a_usage_error() {
    let host = HostDir::new();
    for args in [&["check"][..], &["baseline", "init"]] {
        Agent::new()
            .args(args)
            .arg("--path")
            .arg(host.tree())
            .run()
            .expect(EXIT_ERROR)
            .stderr_has("--db");
    }
}

#[test]
fn path_to_a_missing_directory_is_an_error() {
    let host = HostDir::new();
    let missing = host.root().join("no-such-dir");
    for args in [&["check"][..], &["baseline", "init"]] {
        Agent::new()
            .args(args)
            .arg("--path")
            .arg(&missing)
            .arg("--db")
            .arg(host.db())
            .run()
            .expect(EXIT_ERROR)
            .stderr_has(p(&missing));
    }
    assert!(!host.db().exists());
}

/// The snapshot store (issue 12): configuration keeps its snapshot whatever the budget, the
/// rest shares it and init says what it left out; a diff is shown from the compressed store;
/// and a snapshot edited in the database is refused, not shown.
#[test]
fn snapshot_budget_leaves_out_what_it_says_and_a_tampered_snapshot_is_refused() {
    let host = HostDir::new();
    host.write("app/app.conf", "listen = 80\nworkers = 4\n");
    host.write("app/copy.conf", "listen = 80\nworkers = 4\n");
    for i in 0..5 {
        host.write(format!("src/file{i}.txt"), format!("line {i}\n").repeat(50));
    }
    let init = host
        .agent(["baseline", "init", "--snapshot-budget", "0"])
        .run();
    init.expect(EXIT_CLEAN)
        .stdout_has("snapshots: 2 files kept for diffs (1 distinct")
        .stdout_has("5 more files of at most 64.0 KiB")
        .stdout_has("--snapshot-budget");

    host.write("app/app.conf", "listen = 8080\nworkers = 4\n");
    host.write("src/file1.txt", "changed\n");
    let run = host.check_json();
    run.expect(EXIT_DRIFT);
    let report = run.json();
    let conf = drift_for(&report, p(&host.path("app/app.conf"))).expect("app.conf drifted");
    let diff = conf["diff"]
        .as_str()
        .unwrap_or_else(|| panic!("no diff: {conf:#}"));
    assert!(diff.lines().any(|l| l == "-listen = 80"), "{diff}");
    assert!(diff.lines().any(|l| l == "+listen = 8080"), "{diff}");
    let text = drift_for(&report, p(&host.path("src/file1.txt"))).expect("file1 drifted");
    assert!(text["diff"].is_null(), "left out by the budget: {text:#}");

    // The attack: change one byte of the stored (compressed) snapshot.
    let conn = rusqlite::Connection::open(host.db()).unwrap();
    let blob: Vec<u8> = conn
        .query_row("SELECT content FROM snapshot_blobs", [], |row| row.get(0))
        .unwrap();
    let mut edited = blob.clone();
    let last = edited.len() - 1;
    edited[last] ^= 0x01;
    let changed = conn
        .execute("UPDATE snapshot_blobs SET content = ?1", [&edited])
        .unwrap();
    assert_eq!(changed, 1);
    drop(conn);
    host.check_json()
        .expect(EXIT_INTEGRITY)
        .stderr_has("content snapshot of")
        .stderr_has("app.conf");
}
