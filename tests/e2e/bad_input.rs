//! Hostile and unusual trees: names that are not UTF-8, special files,
//! symlink loops, type changes, hard links, huge sparse files.

use std::fs;

use driftwatch_tests::{EXIT_CLEAN, EXIT_DRIFT, HostDir, drift_for, drifts, is_root, p};
use serde_json::json;

#[test]
fn non_utf8_names_round_trip_and_are_escaped() {
    let host = HostDir::new();
    host.mkdir("dir");
    let bad = host.write_raw_name("dir", b"bad\xff\xfename", "x\n");
    host.write_raw_name("dir", b"latin1-caf\xe9", "y\n");
    // A name that would fake a line (and a terminal escape) in text output.
    host.write_raw_name("dir", b"evil\nremoved     fake\x1b[2J", "z\n");
    let init = host.agent(["baseline", "init", "--json"]).run();
    init.expect(EXIT_CLEAN);
    assert_eq!(init.json()["entries"], 5, "{init}");
    host.check_json().expect(EXIT_CLEAN);

    fs::write(&bad, "changed\n").unwrap();
    let run = host.check_json();
    run.expect(EXIT_DRIFT);
    let report = run.json();
    let expected = format!("{}/dir/bad\\xff\\xfename", p(host.tree()));
    let drift = drift_for(&report, &expected)
        .unwrap_or_else(|| panic!("no drift with path {expected:?}: {run}"));
    assert_eq!(drift["kind"], "content");
    assert_eq!(drifts(&report).len(), 1, "{run}");

    // Text output: escaped too, and the hostile name cannot forge a line.
    let text = host.agent(["check"]).run();
    text.expect(EXIT_DRIFT).stdout_has(&expected);
    assert!(
        !text.stdout.contains('\x1b'),
        "raw escape in output: {text}"
    );
    assert!(
        !text.stdout.lines().any(|l| l.starts_with("removed")),
        "a file name forged a line: {text}"
    );

    // show accepts the raw name and prints it escaped.
    let shown = host.agent(["baseline", "show", "--json"]).arg(&bad).run();
    shown.expect(EXIT_CLEAN);
    assert_eq!(shown.json()["path"], expected.as_str());
}

#[test]
fn text_diff_is_escaped_once() {
    let host = HostDir::new();
    let ini = host.write("w.ini", "dir = C:\\temp\n");
    let raw = host.write_raw_name(".", b"n\xffm", "a");
    host.init();
    fs::write(&ini, "dir = C:\\tmp\n").unwrap();
    fs::write(&raw, "b").unwrap();

    // The JSON diff is right: one backslash.
    let json = host.check_json();
    json.expect(EXIT_DRIFT);
    let report = json.json();
    let diff = drift_for(&report, p(&host.path("w.ini"))).expect("drift")["diff"]
        .as_str()
        .expect("diff")
        .to_owned();
    assert!(diff.contains("\n-dir = C:\\temp\n"), "{diff}");

    let text = host.agent(["check"]).run();
    text.expect(EXIT_DRIFT)
        .stdout_has("-dir = C:\\temp")
        .stdout_has("+dir = C:\\tmp")
        .stdout_has(&format!("--- {}/n\\xffm (baseline)", p(host.tree())))
        .stdout_has(" \\ No newline at end of file");
    assert!(!text.stdout.contains("\\\\"), "double escaping: {text}");
}

#[test]
fn fifo_socket_and_device_do_not_hang_and_are_recorded() {
    let host = HostDir::new();
    host.write("plain", "p\n");
    let fifo = host.fifo("fifo");
    let socket = host.socket("sock");
    let device = is_root().then(|| host.char_device("null", 1, 3));

    // A reader opening the FIFO would block forever: the timeout catches a hang.
    host.init();
    host.check_json().expect(EXIT_CLEAN);

    let show = |path: &std::path::Path| {
        let run = host.agent(["baseline", "show", "--json"]).arg(path).run();
        run.expect(EXIT_CLEAN);
        run.json()
    };
    let fifo_state = show(&fifo);
    assert_eq!(fifo_state["state"]["kind"], "fifo");
    assert!(fifo_state["state"]["content_hash"].is_null());
    assert_eq!(show(&socket)["state"]["kind"], "socket");
    if let Some(device) = &device {
        let state = show(device);
        assert_eq!(state["state"]["kind"], "char_device");
        assert_eq!(state["state"]["rdev"], (1 << 8) | 3, "rdev of 1:3");
    }

    // A FIFO replaced by a regular file is a type change.
    fs::remove_file(&fifo).unwrap();
    fs::write(&fifo, "now a file\n").unwrap();
    let run = host.check_json();
    run.expect(EXIT_DRIFT);
    let report = run.json();
    let drift = drift_for(&report, p(&fifo)).expect("drift");
    assert!(
        drift["changed"]
            .as_array()
            .unwrap()
            .contains(&json!("type")),
        "{drift:#}"
    );
}

#[test]
fn symlink_loops_do_not_hang() {
    let host = HostDir::new();
    host.symlink("b", "a");
    host.symlink("a", "b");
    host.symlink("self", "self");
    host.mkdir("dir");
    host.symlink("..", "dir/up");
    host.symlink(host.tree(), "dir/root");
    host.write("dir/file", "f\n");

    let init = host.agent(["baseline", "init", "--json"]).run();
    init.expect(EXIT_CLEAN);
    // tree, a, b, self, dir, dir/up, dir/root, dir/file: links are not followed.
    assert_eq!(init.json()["entries"], 8, "{init}");
    host.check_json().expect(EXIT_CLEAN);

    let up = host
        .agent(["baseline", "show", "--json"])
        .arg(host.path("dir/up"))
        .run()
        .json();
    assert_eq!(up["state"]["kind"], "symlink");
    assert_eq!(up["state"]["link_target"], "..");

    // Retargeting a link is drift.
    fs::remove_file(host.path("a")).unwrap();
    host.symlink("elsewhere", "a");
    let run = host.check_json();
    run.expect(EXIT_DRIFT);
    let report = run.json();
    let drift = drift_for(&report, p(&host.path("a"))).expect("drift");
    assert!(
        drift["changed"]
            .as_array()
            .unwrap()
            .contains(&json!("link_target")),
        "{drift:#}"
    );
    assert_eq!(drift["after"]["link_target"], "elsewhere");
}

#[test]
fn file_replaced_by_directory_is_a_type_change() {
    let host = HostDir::new();
    host.write("thing", "file\n");
    host.init();
    let thing = host.path("thing");
    fs::remove_file(&thing).unwrap();
    host.write("thing/inner", "now a dir\n");

    let run = host.check_json();
    run.expect(EXIT_DRIFT);
    let report = run.json();
    let drift = drift_for(&report, p(&thing)).expect("drift");
    assert!(
        drift["changed"]
            .as_array()
            .unwrap()
            .contains(&json!("type")),
        "{drift:#}"
    );
    assert_eq!(drift["before"]["kind"], "file");
    assert_eq!(drift["after"]["kind"], "dir");
    let inner = drift_for(&report, p(&host.path("thing/inner"))).expect("inner is added");
    assert_eq!(inner["kind"], "added");
}

#[test]
fn hard_links_are_each_a_subject() {
    let host = HostDir::new();
    host.write("one", "shared\n");
    host.hard_link("one", "two");
    host.init();
    let shown = host
        .agent(["baseline", "show", "--json"])
        .arg(host.path("two"))
        .run()
        .json();
    assert_eq!(shown["state"]["nlink"], 2);

    // Writing through one name changes both.
    host.append("one", "more\n");
    let run = host.check_json();
    run.expect(EXIT_DRIFT);
    let report = run.json();
    for name in ["one", "two"] {
        let drift = drift_for(&report, p(&host.path(name)))
            .unwrap_or_else(|| panic!("no drift for {name}: {run}"));
        assert_eq!(drift["kind"], "content");
    }

    // Removing one link leaves the other with the same content: only a removal
    // (nlink is not in the `content` group).
    host.write("one", "shared\n");
    host.agent(["baseline", "accept", "--reason", "reset"])
        .arg(host.tree())
        .run()
        .expect(EXIT_CLEAN);
    fs::remove_file(host.path("two")).unwrap();
    let run = host.check_json();
    run.expect(EXIT_DRIFT);
    let report = run.json();
    assert_eq!(drifts(&report).len(), 1, "{run}");
    assert_eq!(
        drift_for(&report, p(&host.path("two"))).expect("removed")["kind"],
        "removed"
    );
}

#[test]
fn removed_empty_directory_is_removed_drift() {
    let host = HostDir::new();
    host.mkdir("empty");
    host.write("keep", "k\n");
    host.init();
    fs::remove_dir(host.path("empty")).unwrap();
    let run = host.check_json();
    run.expect(EXIT_DRIFT);
    let report = run.json();
    let drift = drift_for(&report, p(&host.path("empty"))).expect("drift");
    assert_eq!(drift["kind"], "removed");
    assert_eq!(drift["before"]["kind"], "dir");
    assert_eq!(drifts(&report).len(), 1, "{run}");
}

#[test]
fn removed_directory_reports_everything_below_it() {
    let host = HostDir::new();
    host.write("d/x", "1\n");
    host.write("d/sub/y", "2\n");
    host.init();
    fs::remove_dir_all(host.path("d")).unwrap();
    let run = host.check_json();
    run.expect(EXIT_DRIFT);
    let report = run.json();
    for rel in ["d", "d/x", "d/sub", "d/sub/y"] {
        let drift = drift_for(&report, p(&host.path(rel)))
            .unwrap_or_else(|| panic!("{rel} not reported: {run}"));
        assert_eq!(drift["kind"], "removed");
    }
}

#[test]
fn huge_sparse_file_is_hashed() {
    let host = HostDir::new();
    // Over 2 GiB: sizes and offsets must not go through 32-bit integers.
    let len = (2u64 << 30) + 3;
    let big = host.sparse("big.img", len);
    let init = host.agent(["baseline", "init", "--json"]).run();
    init.expect(EXIT_CLEAN);
    let init = init.json();
    assert_eq!(init["errors"], json!([]));
    assert!(init["bytes_hashed"].as_u64().unwrap() >= len, "{init:#}");

    let shown = host
        .agent(["baseline", "show", "--json"])
        .arg(&big)
        .run()
        .json();
    assert_eq!(shown["state"]["size"], len);
    assert!(shown["state"]["content_hash"].is_string(), "{shown:#}");
    assert_eq!(shown["snapshot"], false, "no snapshot of a huge file");
    // Unchanged metadata: the quick check does not re-read 2 GiB.
    host.check_json().expect(EXIT_CLEAN);
}
