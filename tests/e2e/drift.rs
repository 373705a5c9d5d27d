//! The ad-hoc workflow: `baseline init` and `check` on one tree, and how
//! each kind of drift is reported.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use driftwatch_tests::{EXIT_CLEAN, EXIT_DRIFT, HostDir, drift_for, drifts, p};
use serde_json::json;

fn sample_host() -> HostDir {
    let host = HostDir::new();
    host.write("motd.txt", "hello\nsecond line\n");
    host.write("conf/app.conf", "port = 80\n");
    host.write("conf/mode-me", "x\n");
    host.write("gone/old.txt", "soon removed\n");
    host
}

#[test]
fn init_creates_db_and_private_key_then_check_is_clean() {
    let host = sample_host();
    let init = host.init();
    init.stdout_has("baseline created");
    assert!(host.db().is_file(), "no db after init: {init}");
    let key = std::fs::metadata(host.key()).expect("FILE.key beside the db");
    assert_eq!(key.permissions().mode() & 0o777, 0o600, "key file mode");
    let key_text = std::fs::read_to_string(host.key()).unwrap();
    assert_eq!(
        key_text.trim().len(),
        64,
        "key is 64 hex digits: {key_text:?}"
    );

    host.agent(["check"])
        .run()
        .expect(EXIT_CLEAN)
        .stdout_has("no drift");
    let report = host.check_json();
    report.expect(EXIT_CLEAN);
    let report = report.json();
    assert_eq!(drifts(&report).len(), 0, "{report:#}");
    assert_eq!(report["summary"]["drifts"], 0);
    // tree, motd.txt, conf, app.conf, mode-me, gone, old.txt
    assert_eq!(report["summary"]["entries"], 7, "{report:#}");
}

/// One entry: path, mode, owner, mtime and ctime (seconds, nanoseconds), content.
type EntryState = (String, u32, u32, i64, i64, i64, i64, Vec<u8>);

/// Every entry below `dir` (I6 evidence).
fn tree_state(dir: &Path) -> Vec<EntryState> {
    let mut entries = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(path) = todo.pop() {
        let meta = std::fs::symlink_metadata(&path).unwrap();
        let content = if meta.is_file() {
            std::fs::read(&path).unwrap()
        } else {
            Vec::new()
        };
        if meta.is_dir() {
            for entry in std::fs::read_dir(&path).unwrap() {
                todo.push(entry.unwrap().path());
            }
        }
        entries.push((
            path.display().to_string(),
            meta.mode(),
            meta.uid(),
            meta.mtime(),
            meta.mtime_nsec(),
            meta.ctime(),
            meta.ctime_nsec(),
            content,
        ));
    }
    entries.sort();
    entries
}

/// I6, the agent only reads: init, check and a paranoid check leave every
/// entry of the tree as it was, content, mode, owner, mtime and ctime (a
/// write, chmod, chown, xattr or an entry created and removed in a
/// directory would move a ctime).
#[test]
fn init_and_check_leave_the_checked_tree_untouched() {
    let host = sample_host();
    host.symlink("motd.txt", "conf/link");
    let before = tree_state(host.tree());
    host.init();
    host.agent(["check"]).run().expect(EXIT_CLEAN);
    host.agent(["check", "--paranoid"]).run().expect(EXIT_CLEAN);
    let after = tree_state(host.tree());
    assert_eq!(before.len(), 8);
    assert!(before == after, "the tree changed under init and check");
}

#[test]
fn every_kind_of_drift_is_reported() {
    let host = sample_host();
    host.init();

    host.write("conf/app.conf", "port = 8080\n");
    host.chmod(host.path("conf/mode-me"), 0o600);
    host.write("conf/new.conf", "added later\n");
    std::fs::remove_file(host.path("gone/old.txt")).unwrap();

    let run = host.check_json();
    run.expect(EXIT_DRIFT);
    let report = run.json();
    let app = p(&host.path("conf/app.conf")).to_owned();
    let mode_me = p(&host.path("conf/mode-me")).to_owned();
    let new = p(&host.path("conf/new.conf")).to_owned();
    let old = p(&host.path("gone/old.txt")).to_owned();

    let content = drift_for(&report, &app).unwrap_or_else(|| panic!("no drift for {app}{run}"));
    assert_eq!(content["kind"], "content");
    let changed = content["changed"].as_array().unwrap();
    assert!(changed.contains(&json!("hash")), "{content:#}");
    assert!(changed.contains(&json!("size")), "{content:#}");
    assert_ne!(
        content["before"]["content_hash"], content["after"]["content_hash"],
        "{content:#}"
    );
    assert_eq!(
        content["before"]["content_hash"].as_str().unwrap().len(),
        64
    );

    let attrs = drift_for(&report, &mode_me).expect("chmod is drift");
    assert_eq!(attrs["kind"], "attributes");
    assert_eq!(attrs["changed"], json!(["mode"]));
    assert_eq!(attrs["before"]["mode"], 0o644);
    assert_eq!(attrs["after"]["mode"], 0o600);
    assert_eq!(
        attrs["before"]["content_hash"], attrs["after"]["content_hash"],
        "a chmod does not change the content"
    );

    let added = drift_for(&report, &new).expect("new file is drift");
    assert_eq!(added["kind"], "added");
    assert!(added["before"].is_null(), "{added:#}");
    assert_eq!(added["after"]["kind"], "file");

    let removed = drift_for(&report, &old).expect("removed file is drift");
    assert_eq!(removed["kind"], "removed");
    assert!(removed["after"].is_null(), "{removed:#}");
    assert_eq!(removed["before"]["kind"], "file");

    let summary = &report["summary"];
    assert_eq!(summary["added"], 1, "{summary}");
    assert_eq!(summary["removed"], 1, "{summary}");
    assert_eq!(summary["content"], 1, "{summary}");
    assert_eq!(summary["attributes"], 1, "{summary}");
    assert_eq!(summary["drifts"], drifts(&report).len());

    // The human report names every path and the verdict.
    let text = host.agent(["check"]).run();
    text.expect(EXIT_DRIFT);
    for path in [&app, &mode_me, &new, &old] {
        text.stdout_has(path);
    }
    text.stdout_has("mode: 0644 -> 0600")
        .stdout_has("4 drift(s)");
}

#[test]
fn text_change_carries_a_unified_diff() {
    let host = sample_host();
    host.init();
    host.write("motd.txt", "hello\nchanged line\n");

    let run = host.check_json();
    run.expect(EXIT_DRIFT);
    let report = run.json();
    let motd = p(&host.path("motd.txt")).to_owned();
    let drift = drift_for(&report, &motd).expect("content drift");
    let diff = drift["diff"]
        .as_str()
        .unwrap_or_else(|| panic!("no diff: {drift:#}"));
    assert!(diff.lines().any(|l| l == "-second line"), "{diff}");
    assert!(diff.lines().any(|l| l == "+changed line"), "{diff}");
    assert!(diff.lines().any(|l| l == " hello"), "context line: {diff}");

    host.agent(["check"])
        .run()
        .stdout_has("-second line")
        .stdout_has("+changed line");
}

#[test]
fn binary_change_has_no_diff() {
    let host = HostDir::new();
    host.write("blob.bin", [0u8, 1, 2, 3, 0xff, 0]);
    host.init();
    host.write("blob.bin", [0u8, 1, 2, 4, 0xff, 0]);
    let report = host.check_json();
    report.expect(EXIT_DRIFT);
    let report = report.json();
    let drift = drift_for(&report, p(&host.path("blob.bin"))).expect("drift");
    assert_eq!(drift["kind"], "content");
    assert!(
        drift.get("diff").is_none(),
        "binary files get no diff: {drift:#}"
    );
}

#[test]
fn same_size_rewrite_with_restored_mtime_is_found_by_paranoid_check() {
    let host = HostDir::new();
    let file = host.write("f.conf", "aaaa\n");
    host.init();
    let before = std::fs::metadata(&file).unwrap().modified().unwrap();
    host.write("f.conf", "bbbb\n");
    std::fs::File::options()
        .write(true)
        .open(&file)
        .and_then(|f| f.set_modified(before))
        .unwrap();
    // ctime still moved, so even the quick check re-reads it.
    host.check_json().expect(EXIT_DRIFT);
    let run = host.agent(["check", "--json", "--paranoid"]).run();
    run.expect(EXIT_DRIFT);
    let report = run.json();
    assert_eq!(report["full_hash"], true, "{run}");
    let drift = drift_for(&report, p(&file)).expect("drift");
    assert_eq!(drift["kind"], "content");
}

#[test]
fn restoring_the_original_content_is_clean_again() {
    let host = HostDir::new();
    host.write("a.conf", "one\n");
    host.init();
    host.write("a.conf", "two\n");
    host.check_json().expect(EXIT_DRIFT);
    host.write("a.conf", "one\n");
    // mtime and ctime differ from the baseline, but content and attributes match.
    host.check_json().expect(EXIT_CLEAN);
}
