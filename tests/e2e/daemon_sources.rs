//! State sources in the daemon: `driftwatch-agent run` polls the accounts of
//! a fixture system root (`[sources] root`), reports a new uid-0 user with
//! its worded summary, resolves it when the file is restored, treats a
//! source whose files are missing as unavailable (coverage, not drift),
//! applies a close-out accept only to the reviewed state, and follows a
//! SIGHUP that changes `[sources]`. Only sources the test controls are
//! enabled (ports would read this host's /proc/net: nondeterministic).

use std::fs;
use std::path::PathBuf;
use std::time::Duration;

use driftwatch_common::api::v1::{
    AgentCommand, ChangeKind, CommandOutcome, DriftEvent, SeenBy, SourceCondition, SubjectKey,
    SubjectState,
};
use driftwatch_tests::daemon::{Daemon, DaemonHost, TestCollector, wait_until};
use driftwatch_tests::p;
use serde_json::Value;

const DELIVERY: Duration = Duration::from_secs(20);
const PASSWD: &str =
    "root:x:0:0:root:/root:/bin/bash\nbob:x:1001:1001:Bob:/home/bob:/usr/sbin/nologin\n";
const GROUP: &str = "root:x:0:\nsudo:x:27:\n";
const EVE: &str = "eve:x:0:0::/home/eve:/bin/bash\n";

/// An enrolled host whose policy polls `enabled` every second, reading a
/// system root with accounts and no dpkg database.
fn host_with_sources(collector: &TestCollector, enabled: &str) -> (DaemonHost, PathBuf) {
    let host = DaemonHost::new(Some(&collector.url()), "");
    let root = host.host.root().join("sysroot");
    fs::create_dir_all(root.join("etc")).unwrap();
    fs::write(root.join("etc/passwd"), PASSWD).unwrap();
    fs::write(root.join("etc/group"), GROUP).unwrap();
    host.write_config(Some(&collector.url()), &sources_config(&root, enabled));
    host.init();
    host.enroll();
    (host, root)
}

fn sources_config(root: &std::path::Path, enabled: &str) -> String {
    format!(
        "[sources]\nenabled = [{enabled}]\ninterval_secs = 1\nroot = \"{}\"\n",
        p(root)
    )
}

#[track_caller]
fn wait_for_state_event(
    collector: &TestCollector,
    daemon: &Daemon,
    subject: &str,
    what: impl Fn(&DriftEvent) -> bool,
) -> DriftEvent {
    let mut found = None;
    let ok = wait_until(DELIVERY, || {
        found = collector
            .events()
            .into_iter()
            .find(|e| e.subject.0 == subject && what(e));
        found.is_some()
    });
    assert!(
        ok,
        "no matching {subject} event; events: {:#?}\nagent log:\n{}",
        collector.events(),
        daemon.log()
    );
    found.unwrap()
}

/// The `coverage.sources` of the status file, as (name, condition).
fn source_conditions(status: &Value) -> Vec<(String, String)> {
    status["coverage"]["sources"]
        .as_array()
        .map(|sources| {
            sources
                .iter()
                .map(|s| {
                    (
                        s["name"].as_str().unwrap_or_default().to_owned(),
                        s["condition"].as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_new_root_account_is_reported_in_words_restored_and_a_missing_source_is_only_coverage() {
    let collector = TestCollector::start();
    let (host, root) = host_with_sources(&collector, "\"user\", \"package\"");
    let daemon = host.start();

    // No dpkg database under the root: unavailable, in status and heartbeats, never drift.
    let status = daemon.wait_status("the first poll of the sources", DELIVERY, |s| {
        source_conditions(s)
            .iter()
            .any(|(name, c)| name == "user" && c == "ok")
    });
    assert_eq!(
        source_conditions(&status),
        [
            ("package".to_owned(), "unavailable".to_owned()),
            ("user".to_owned(), "ok".to_owned())
        ],
        "{status:#}"
    );
    assert!(status["coverage"]["last_source_poll_at"].is_string());
    assert!(
        wait_until(DELIVERY, || collector.heartbeats().iter().any(|h| h
            .health
            .coverage
            .sources
            .iter()
            .any(
                |s| s.name == "package" && s.condition == SourceCondition::Unavailable
            ))),
        "heartbeats carry the sources' coverage:\n{}",
        daemon.log()
    );
    host.cli(["status"])
        .run()
        .expect(0)
        .stdout_has("package: unavailable");

    // A second root account.
    fs::write(root.join("etc/passwd"), format!("{PASSWD}{EVE}")).unwrap();
    let added = wait_for_state_event(&collector, &daemon, "user:eve", |e| {
        e.kind == ChangeKind::Added
    });
    assert_eq!(added.seen_by, SeenBy::Scan);
    let summary = added.summary.clone().unwrap_or_default();
    assert!(
        summary.starts_with("user eve added with uid 0"),
        "{added:#?}"
    );
    assert_eq!(added.before, None);
    let Some(SubjectState::Fields { fields }) = &added.after else {
        panic!("{added:#?}");
    };
    assert_eq!(fields["uid"], "0");

    // Restored: the open drift resolves.
    fs::write(root.join("etc/passwd"), PASSWD).unwrap();
    let restored = wait_for_state_event(&collector, &daemon, "user:eve", |e| {
        e.kind == ChangeKind::Restored
    });
    assert_eq!(restored.seen_by, SeenBy::Scan);
    assert!(restored.after.is_none());
    assert!(
        collector
            .events()
            .iter()
            .all(|e| !e.subject.0.starts_with("package:")),
        "an unavailable source is no drift: {:#?}",
        collector.events()
    );

    // SIGHUP with another [sources]: only users are polled from now on.
    host.write_config(Some(&collector.url()), &sources_config(&root, "\"user\""));
    daemon.signal("HUP");
    daemon.wait_status("the reloaded sources", DELIVERY, |s| {
        source_conditions(s) == [("user".to_owned(), "ok".to_owned())]
    });
    daemon.stop();

    // A change made while the agent was down is reported by the startup poll.
    fs::write(root.join("etc/passwd"), format!("{PASSWD}{EVE}")).unwrap();
    let daemon = host.start();
    let again = wait_for_state_event(&collector, &daemon, "user:eve", |e| {
        e.kind == ChangeKind::Added && e.seen_by == SeenBy::Startup
    });
    assert!(again.summary.is_some());
    daemon.stop();
    // Every event, whichever way it was seen, is in the one hash chain.
    assert_eq!(collector.verify_chain(), 3);
}

#[test]
fn a_close_out_accept_of_an_account_applies_only_to_the_reviewed_state() {
    let collector = TestCollector::start();
    let (host, root) = host_with_sources(&collector, "\"user\"");
    let daemon = host.start();
    fs::write(root.join("etc/passwd"), format!("{PASSWD}{EVE}")).unwrap();
    let event = wait_for_state_event(&collector, &daemon, "user:eve", |e| {
        e.kind == ChangeKind::Added
    });

    // Changed again after review: eve's shell is not what was reviewed.
    fs::write(
        root.join("etc/passwd"),
        format!("{PASSWD}{}", EVE.replace("/bin/bash", "/bin/sh")),
    )
    .unwrap();
    let mismatch_id = uuid::Uuid::now_v7();
    collector.queue_command(AgentCommand::BaselineAccept {
        command_id: mismatch_id,
        subject: SubjectKey("user:eve".into()),
        state: event.after.clone(),
        window_id: None,
    });
    let result = wait_for_result(&collector, &daemon, mismatch_id);
    let CommandOutcome::Mismatch {
        current: Some(SubjectState::Fields { fields }),
    } = &result
    else {
        panic!("{result:?}");
    };
    assert_eq!(fields["shell"], "/bin/sh");

    // Back to the reviewed state: the accept applies.
    fs::write(root.join("etc/passwd"), format!("{PASSWD}{EVE}")).unwrap();
    let window = uuid::Uuid::now_v7();
    let applied_id = uuid::Uuid::now_v7();
    collector.queue_command(AgentCommand::BaselineAccept {
        command_id: applied_id,
        subject: SubjectKey("user:eve".into()),
        state: event.after.clone(),
        window_id: Some(window),
    });
    assert_eq!(
        wait_for_result(&collector, &daemon, applied_id),
        CommandOutcome::Applied
    );
    daemon.stop();

    // Eve is in the baseline now, with the window in its history.
    host.cli(["check", "--quiet"]).run().expect(0);
    let show = host.cli(["baseline", "show", "--json"]).run();
    show.expect(0);
    assert!(show.stdout.contains(&window.to_string()), "{}", show.stdout);
}

#[test]
fn a_hanging_source_times_out_and_never_delays_file_events() {
    let collector = TestCollector::start();
    let (host, root) = host_with_sources(&collector, "\"user\"");
    // A FIFO without a writer where /etc/passwd should be: reading it blocks forever.
    let passwd = root.join("etc/passwd");
    fs::remove_file(&passwd).unwrap();
    let made = std::process::Command::new("mkfifo")
        .arg(&passwd)
        .status()
        .unwrap();
    assert!(made.success());
    let daemon = host.start();
    daemon.wait_status("the hung source timed out", DELIVERY, |s| {
        source_conditions(s) == [("user".to_owned(), "timed_out".to_owned())]
    });
    let file = host.host.write("etc/app.conf", "port = 8080\n");
    assert!(
        wait_until(DELIVERY, || !collector.events_for(&file).is_empty()),
        "the file event was held up:\n{}",
        daemon.log()
    );
    host.cli(["status"])
        .run()
        .expect(3)
        .stdout_has("problem: state source user timed out");
    assert!(
        collector
            .events()
            .iter()
            .all(|e| !e.subject.0.starts_with("user:") && !e.subject.0.starts_with("group:")),
        "unverified accounts are not removed: {:#?}",
        collector.events()
    );
    daemon.stop();
}

#[track_caller]
fn wait_for_result(
    collector: &TestCollector,
    daemon: &Daemon,
    command_id: uuid::Uuid,
) -> CommandOutcome {
    let mut found = None;
    let ok = wait_until(DELIVERY, || {
        found = collector
            .results()
            .into_iter()
            .find(|r| r.command_id == command_id);
        found.is_some()
    });
    assert!(ok, "no result for {command_id}:\n{}", daemon.log());
    found.unwrap().outcome
}
