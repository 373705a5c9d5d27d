//! What the agent cannot read. Root ignores file permissions, so these run
//! the agent as uid/gid 65534 through `setpriv` when the tests run as root.

use std::fs;

use driftwatch_tests::{EXIT_CLEAN, EXIT_DRIFT, EXIT_INCOMPLETE, HostDir, drift_for, drifts, p};

/// A host whose tree nobody can read except for the parts made unreadable.
fn shared_host() -> HostDir {
    let host = HostDir::new();
    host.write("ok.conf", "fine\n");
    host.write("secret.conf", "s3cret\n");
    host.write("locked/inner.conf", "hidden\n");
    host.write("locked/deeper/more.conf", "hidden too\n");
    host.share_with_nobody();
    host
}

fn errors(report: &serde_json::Value) -> Vec<(String, String)> {
    report["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["path"].as_str().unwrap().to_owned(),
                e["message"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[test]
fn unreadable_file_is_incomplete_not_drift() {
    let host = shared_host();
    let secret = host.path("secret.conf");
    host.chmod(&secret, 0o000);

    let init = host
        .agent(["baseline", "init", "--json"])
        .unprivileged()
        .run();
    init.expect(EXIT_INCOMPLETE);
    let report = init.json();
    let errs = errors(&report);
    assert_eq!(errs.len(), 1, "{init}");
    assert_eq!(errs[0].0, p(&secret));
    assert!(errs[0].1.contains("ermission denied"), "{init}");
    assert!(
        host.db().is_file(),
        "a partial baseline is still written: {init}"
    );
    if host.agent(["check"]).unprivileged().drops_privileges() {
        // The history proves the harness really dropped privileges.
        host.agent(["baseline", "show"])
            .unprivileged()
            .run()
            .expect(EXIT_CLEAN)
            .stdout_has("(uid 65534)");
    }

    // Text output names the file too.
    let text = host.agent(["check"]).unprivileged().run();
    text.expect(EXIT_INCOMPLETE)
        .stdout_has(p(&secret))
        .stdout_has("could not be fully read")
        .stdout_has("no drift");

    let run = host.agent(["check", "--json"]).unprivileged().run();
    run.expect(EXIT_INCOMPLETE);
    let report = run.json();
    assert_eq!(drifts(&report).len(), 0, "unreadable is not drift: {run}");
    assert_eq!(errors(&report)[0].0, p(&secret));

    // A real change elsewhere is still drift (exit 1 wins over 3).
    host.write("ok.conf", "changed\n");
    let run = host.agent(["check", "--json"]).unprivileged().run();
    run.expect(EXIT_DRIFT);
    let report = run.json();
    assert!(
        drift_for(&report, p(&host.path("ok.conf"))).is_some(),
        "{run}"
    );
    assert!(drift_for(&report, p(&secret)).is_none(), "{run}");
    assert_eq!(report["summary"]["errors"], 1, "{run}");
}

#[test]
fn unreadable_directory_at_init_is_incomplete_and_never_removed() {
    let host = shared_host();
    let locked = host.path("locked");
    host.chmod(&locked, 0o000);

    let init = host
        .agent(["baseline", "init", "--json"])
        .unprivileged()
        .run();
    init.expect(EXIT_INCOMPLETE);
    let errs = errors(&init.json());
    assert_eq!(errs.len(), 1, "{init}");
    assert_eq!(errs[0].0, p(&locked), "{init}");

    let run = host.agent(["check", "--json"]).unprivileged().run();
    run.expect(EXIT_INCOMPLETE);
    let report = run.json();
    assert_eq!(drifts(&report).len(), 0, "{run}");
}

#[test]
fn directory_locked_after_init_does_not_report_its_contents_removed() {
    let host = shared_host();
    host.agent(["baseline", "init"])
        .unprivileged()
        .run()
        .expect(EXIT_CLEAN);
    let locked = host.path("locked");
    host.chmod(&locked, 0o000);

    let run = host.agent(["check", "--json"]).unprivileged().run();
    // The chmod of the directory itself is drift; what is below is unverified.
    run.expect(EXIT_DRIFT);
    let report = run.json();
    let drift = drift_for(&report, p(&locked)).expect("mode drift on the directory");
    assert_eq!(drift["kind"], "attributes");
    assert_eq!(drift["after"]["mode"], 0);
    assert_eq!(drifts(&report).len(), 1, "nothing below reported: {run}");
    let errs = errors(&report);
    for rel in [
        "locked/inner.conf",
        "locked/deeper",
        "locked/deeper/more.conf",
    ] {
        let path = host.path(rel);
        assert!(
            errs.iter().any(|(p_, _)| p_ == p(&path)),
            "{rel} should be reported as not checked: {run}"
        );
    }

    // Unlocked again: clean.
    host.chmod(&locked, 0o755);
    host.agent(["check"])
        .unprivileged()
        .run()
        .expect(EXIT_CLEAN);
}

#[test]
fn accept_refuses_when_subjects_in_scope_are_unreadable() {
    let host = shared_host();
    host.agent(["baseline", "init"])
        .unprivileged()
        .run()
        .expect(EXIT_CLEAN);
    let locked = host.path("locked");
    host.chmod(&locked, 0o000);
    let run = host
        .agent(["baseline", "accept", "--reason", "CHG-9"])
        .arg(&locked)
        .unprivileged()
        .run();
    run.expect(driftwatch_tests::EXIT_ERROR)
        .stderr_has("could not be read");
    host.chmod(&locked, 0o755);
    host.agent(["check"])
        .unprivileged()
        .run()
        .expect(EXIT_CLEAN);
}

#[test]
fn unwritable_db_location_fails_cleanly() {
    let host = shared_host();
    // state/ belongs to 65534 (or to us); a db under the tree's root dir is not writable by 65534.
    let agent = host.agent(["baseline", "init"]).unprivileged();
    if !agent.drops_privileges() {
        return; // as a normal user we can write our own directories
    }
    let db = host.root().join("not-writable.db");
    let run = driftwatch_tests::Agent::new()
        .args(["baseline", "init", "--quiet", "--path"])
        .arg(host.tree())
        .arg("--db")
        .arg(&db)
        .unprivileged()
        .run();
    run.expect(driftwatch_tests::EXIT_ERROR).stderr_has(p(&db));
    assert!(!db.exists());
    assert!(
        fs::read_dir(host.root())
            .unwrap()
            .flatten()
            .all(|e| !e.file_name().to_string_lossy().contains("not-writable")),
        "no temporary files left behind"
    );
}

#[test]
fn unreadable_root_path_is_recorded_with_its_error() {
    let host = shared_host();
    let root = host.tree();
    host.chmod(root, 0o000);

    let init = host
        .agent(["baseline", "init", "--json"])
        .unprivileged()
        .run();
    init.expect(EXIT_INCOMPLETE);
    let report = init.json();
    assert_eq!(report["entries"], 1, "only the root itself: {init}");
    let errs = errors(&report);
    assert_eq!(errs.len(), 1, "{init}");
    assert_eq!(errs[0].0, p(root), "{init}");
    assert!(errs[0].1.contains("cannot list directory"), "{init}");

    // Still unreadable: nothing below it can be called removed.
    let run = host.agent(["check", "--json"]).unprivileged().run();
    run.expect(EXIT_INCOMPLETE);
    assert_eq!(drifts(&run.json()).len(), 0, "{run}");
    host.chmod(root, 0o755);
}
