//! The agent daemon (`driftwatch-agent run`) against an in-process test collector:
//! real-time watch, restarts, SIGKILL, a collector that is down or failing, bursts,
//! directories that come and go, reloads, the watch limit, enrollment and close-out.
//! Every wait is bounded; all traffic stays on loopback.

use std::fs;
use std::time::Duration;

use driftwatch_common::api::v1::{
    AgentCommand, ChangeKind, CommandOutcome, DriftEvent, SeenBy, SubjectState,
};
use driftwatch_tests::daemon::{DaemonHost, Mode, TestCollector, wait_until};
use driftwatch_tests::{EXIT_INTEGRITY, p};

/// How long an event may take from a change to the collector in these tests (the
/// design's target is well under a second; debug builds on a busy CI machine are slower).
const DELIVERY: Duration = Duration::from_secs(15);

fn enrolled(collector: &TestCollector, extra: &str) -> DaemonHost {
    let host = DaemonHost::new(Some(&collector.url()), extra);
    host.init();
    host.enroll();
    host
}

#[track_caller]
fn wait_for_event(
    collector: &TestCollector,
    path: &std::path::Path,
    what: impl Fn(&DriftEvent) -> bool,
    log: impl Fn() -> String,
) -> DriftEvent {
    let mut found = None;
    let ok = wait_until(DELIVERY, || {
        found = collector.events_for(path).into_iter().find(|e| what(e));
        found.is_some()
    });
    assert!(
        ok,
        "no matching event for {} at the collector; events: {:#?}\nagent log:\n{}",
        path.display(),
        collector.events_for(path),
        log()
    );
    found.unwrap()
}

#[test]
fn a_write_to_a_watched_file_arrives_with_seen_by_watch_and_a_restore_resolves_it() {
    let collector = TestCollector::start();
    let host = enrolled(&collector, "");
    let credential = host.host.state().join("credential.json");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&fs::metadata(&credential).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600, "the credential is private");
    let daemon = host.start();

    let file = host.host.write("etc/app.conf", "port = 8080\n");
    let event = wait_for_event(
        &collector,
        &file,
        |e| e.kind == ChangeKind::Content,
        || daemon.log(),
    );
    assert_eq!(event.seen_by, SeenBy::Watch);
    assert!(event.changed.contains(&"hash".to_string()), "{event:#?}");
    assert!(event.before.is_some() && event.after.is_some());
    assert!(event.actor.is_some(), "every event says who, or why not");

    // Back to the baseline content: a `restored` event resolves the open drift.
    host.host.write("etc/app.conf", "port = 80\n");
    let restored = wait_for_event(
        &collector,
        &file,
        |e| e.kind == ChangeKind::Restored,
        || daemon.log(),
    );
    assert_eq!(restored.seen_by, SeenBy::Watch);
    assert_eq!(
        collector.events_for(&file).len(),
        2,
        "one change, one event each"
    );

    // The collector can prove nothing was dropped or reordered.
    assert_eq!(collector.verify_chain(), 2);
    let host_id = collector.events()[0].host_id;
    assert!(collector.events().iter().all(|e| e.host_id == host_id));

    // Heartbeats carry inventory, health and the last sequence number.
    assert!(wait_until(DELIVERY, || collector
        .heartbeats()
        .iter()
        .any(|h| h.last_seq == 2)));
    let heartbeat = collector.heartbeats().pop().unwrap();
    assert_eq!(heartbeat.host_id, host_id);
    assert!(!heartbeat.inventory.hostname.is_empty());
    assert!(heartbeat.health.baseline_entries >= 5);
    assert!(!heartbeat.health.spool_full);

    // `status` reads the live state.
    let run = host.cli(["status", "--json"]).run();
    run.expect(0);
    let status = run.json();
    assert_eq!(status["running"], true, "{status:#}");
    assert_eq!(status["status"]["ready"], true);
    assert_eq!(status["spool"]["last_seq"], 2);
    daemon.stop();

    let after = host.cli(["status"]).run();
    after.expect(2).stdout_has("not running");
}

#[test]
fn an_editor_save_is_one_event() {
    let collector = TestCollector::start();
    let host = enrolled(&collector, "");
    let daemon = host.start();
    // vim-style: backup by rename, write a new file, chmod it, remove the backup.
    let file = host.host.path("etc/app.conf");
    let backup = host.host.path("etc/app.conf~");
    fs::rename(&file, &backup).unwrap();
    fs::write(&file, "port = 9090\n").unwrap();
    host.host.chmod(&file, 0o644);
    fs::remove_file(&backup).unwrap();
    let event = wait_for_event(
        &collector,
        &file,
        |e| e.kind == ChangeKind::Content,
        || daemon.log(),
    );
    assert_eq!(event.seen_by, SeenBy::Watch);
    // Give stragglers a chance to show up, then check there was exactly one.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        collector.events_for(&file).len(),
        1,
        "{:#?}",
        collector.events_for(&file)
    );
    assert!(
        collector.events_for(&backup).is_empty(),
        "a transient file is no drift"
    );
    daemon.stop();
}

#[test]
fn renames_are_a_linked_removal_and_addition() {
    let collector = TestCollector::start();
    let host = enrolled(&collector, "");
    let daemon = host.start();
    let from = host.host.path("etc/sub/other.conf");
    let to = host.host.path("etc/sub/renamed.conf");
    fs::rename(&from, &to).unwrap();
    let removed = wait_for_event(
        &collector,
        &from,
        |e| e.kind == ChangeKind::Removed,
        || daemon.log(),
    );
    let added = wait_for_event(
        &collector,
        &to,
        |e| e.kind == ChangeKind::Added,
        || daemon.log(),
    );
    assert_eq!(removed.related, Some(added.id));
    assert_eq!(added.related, Some(removed.id));
    daemon.stop();
}

#[test]
fn sigkill_between_spool_and_ack_loses_nothing_and_duplicates_are_harmless() {
    let collector = TestCollector::start();
    let host = enrolled(&collector, "");
    // The collector stores what it gets, but the acknowledgement never arrives.
    collector.set_mode(Mode::Garbage);
    let daemon = host.start();
    let file = host
        .host
        .write("etc/app.conf", "changed before the crash\n");
    assert!(
        wait_until(DELIVERY, || !collector.events_for(&file).is_empty()),
        "the event was never sent:\n{}",
        daemon.log()
    );
    let status = daemon.wait_status("the unacknowledged event in the spool", DELIVERY, |s| {
        s["spool"]["events"].as_u64() >= Some(1)
    });
    assert_eq!(status["delivery"]["events_acked"], 0);
    daemon.kill9();

    collector.set_mode(Mode::Ok);
    let daemon = host.start();
    assert!(
        wait_until(DELIVERY, || {
            daemon.status().is_some_and(|s| {
                s["spool"]["events"] == 0 && s["delivery"]["events_acked"].as_u64() >= Some(1)
            })
        }),
        "the spooled event was not redelivered:\n{}",
        daemon.log()
    );
    // Sent at least twice, stored once: the same id, and no new event for the same change.
    let received = collector
        .received()
        .into_iter()
        .filter(|e| e.subject.0.ends_with("etc/app.conf"))
        .count();
    assert!(received >= 2, "received {received} time(s)");
    assert_eq!(
        collector.events_for(&file).len(),
        1,
        "{:#?}",
        collector.events_for(&file)
    );
    assert_eq!(collector.verify_chain(), 1);

    // And what was never sent before a SIGKILL is sent after it.
    collector.set_mode(Mode::Fail);
    let other = host.host.write("etc/sub/other.conf", "x = 2\n");
    daemon.wait_status("the second event spooled", DELIVERY, |s| {
        s["spool"]["events"].as_u64() >= Some(1)
    });
    daemon.kill9();
    collector.set_mode(Mode::Ok);
    let daemon = host.start();
    wait_for_event(
        &collector,
        &other,
        |e| e.kind == ChangeKind::Content,
        || daemon.log(),
    );
    assert_eq!(collector.events_for(&other).len(), 1);
    assert_eq!(collector.verify_chain(), 2);
    daemon.stop();
}

#[test]
fn a_collector_that_is_down_failing_or_slow_gets_everything_once_it_recovers() {
    let mut collector = TestCollector::start();
    let host = enrolled(&collector, "");
    let daemon = host.start();

    collector.stop();
    let a = host
        .host
        .write("etc/app.conf", "while the collector is down\n");
    daemon.wait_status("a failed delivery", DELIVERY, |s| {
        s["delivery"]["consecutive_failures"].as_u64() >= Some(1)
    });
    collector.restart();
    wait_for_event(
        &collector,
        &a,
        |e| e.kind == ChangeKind::Content,
        || daemon.log(),
    );

    collector.set_mode(Mode::Fail);
    let b = host.host.write("etc/sub/other.conf", "x = 500\n");
    daemon.wait_status("a 500", DELIVERY, |s| {
        s["delivery"]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("500"))
    });
    collector.set_mode(Mode::Slow(Duration::from_secs(4)));
    daemon.wait_status("a timeout", DELIVERY, |s| {
        s["delivery"]["last_error"]
            .as_str()
            .is_some_and(|e| !e.contains("500"))
    });
    collector.set_mode(Mode::Ok);
    wait_for_event(
        &collector,
        &b,
        |e| e.kind == ChangeKind::Content,
        || daemon.log(),
    );
    daemon.wait_status("an empty spool", DELIVERY, |s| s["spool"]["events"] == 0);
    assert_eq!(collector.verify_chain(), 2);
    daemon.stop();
}

#[test]
fn a_change_made_while_the_agent_was_stopped_is_found_by_the_startup_scan() {
    let collector = TestCollector::start();
    let host = enrolled(&collector, "");
    let daemon = host.start();
    let file = host.host.write("etc/app.conf", "seen live\n");
    wait_for_event(
        &collector,
        &file,
        |e| e.seen_by == SeenBy::Watch,
        || daemon.log(),
    );
    daemon.stop();

    let offline = host
        .host
        .write("etc/sub/other.conf", "changed while stopped\n");
    let daemon = host.start();
    let event = wait_for_event(&collector, &offline, |_| true, || daemon.log());
    assert_eq!(event.seen_by, SeenBy::Startup);
    assert_eq!(event.kind, ChangeKind::Content);
    daemon.wait_status("delivery", DELIVERY, |s| s["spool"]["events"] == 0);
    daemon.stop();

    // A restart with nothing new says nothing new: what was reported is remembered.
    let daemon = host.start();
    daemon.wait_status("the startup scan", DELIVERY, |s| {
        s["last_scan"]["kind"] == "startup"
    });
    std::thread::sleep(Duration::from_millis(500));
    daemon.stop();
    assert_eq!(collector.events().len(), 2, "{:#?}", collector.events());
    assert_eq!(collector.verify_chain(), 2);
}

#[test]
fn ten_thousand_files_changed_quickly_are_all_reported() {
    let collector = TestCollector::start();
    // A small notification queue: the burst overflows it, and the rescan must catch up.
    let host = enrolled(
        &collector,
        "[spool]\nmax_events = 100000\n[watch]\nqueue_capacity = 256\n",
    );
    let daemon = host.start();
    let dir = host.host.mkdir("burst");
    for i in 0..10_000 {
        fs::write(dir.join(format!("f{i:05}")), i.to_string()).unwrap();
    }
    // Every file is reported in its final state. A file caught between its creation and
    // its write (an overflow's rescan can look at any moment) is reported twice: empty,
    // then with its content; both are true observations.
    let final_sizes = || {
        let mut sizes = std::collections::HashMap::new();
        for event in collector.events() {
            if event.subject.0.contains("/burst/f")
                && let Some(SubjectState::File(after)) = &event.after
            {
                sizes.insert(event.subject.0.clone(), after.size);
            }
        }
        sizes
    };
    let mut count = 0;
    let ok = wait_until(Duration::from_secs(180), || {
        count = final_sizes().len();
        count == 10_000
    });
    assert!(ok, "{count} of 10000 files reported\n{}", daemon.log());
    let sizes = final_sizes();
    for i in 0..10_000 {
        let subject = format!("file:{}", dir.join(format!("f{i:05}")).display());
        assert_eq!(
            sizes.get(&subject).copied(),
            Some(i.to_string().len() as u64),
            "{subject} in its final state"
        );
    }
    let status = daemon.wait_status("coverage", DELIVERY, |_| true);
    assert!(
        status["coverage"]["dropped_event_batches"].as_u64() >= Some(1),
        "the small queue overflowed and was rescanned: {status:#}"
    );
    assert_eq!(collector.verify_chain(), collector.events().len() as u64);
    daemon.stop();
}

#[test]
fn a_watched_directory_deleted_and_recreated_is_still_watched() {
    let collector = TestCollector::start();
    let host = enrolled(&collector, "");
    let daemon = host.start();
    let sub = host.host.path("etc/sub");
    fs::remove_dir_all(&sub).unwrap();
    wait_for_event(
        &collector,
        &sub,
        |e| e.kind == ChangeKind::Removed,
        || daemon.log(),
    );
    fs::create_dir(&sub).unwrap();
    // Give the new directory's watch a moment to exist, as an admin would.
    std::thread::sleep(Duration::from_millis(300));
    let file = host.host.write("etc/sub/fresh.conf", "new\n");
    let event = wait_for_event(
        &collector,
        &file,
        |e| e.kind == ChangeKind::Added,
        || daemon.log(),
    );
    assert_eq!(event.seen_by, SeenBy::Watch);
    // Files created inside a new directory before its watch exists are found by walking it.
    let deep = host.host.path("etc/new/a/b/c.conf");
    fs::create_dir_all(deep.parent().unwrap()).unwrap();
    fs::write(&deep, "deep\n").unwrap();
    wait_for_event(
        &collector,
        &deep,
        |e| e.kind == ChangeKind::Added,
        || daemon.log(),
    );
    daemon.stop();
}

#[test]
fn an_invalid_configuration_on_sighup_keeps_the_agent_running_on_the_old_one() {
    let collector = TestCollector::start();
    let host = enrolled(&collector, "");
    let daemon = host.start();
    fs::write(&host.config, "[[rule]]\npath = \"relative/path\"\n").unwrap();
    daemon.signal("HUP");
    let status = daemon.wait_status("the refused reload", DELIVERY, |s| {
        s["last_reload"]["ok"] == false
    });
    let errors = status["last_reload"]["errors"].to_string();
    assert!(
        errors.contains(&format!("{}:2:8: rule[0].path", p(&host.config))),
        "{errors}"
    );
    assert!(
        daemon.log().contains("configuration reload refused"),
        "{}",
        daemon.log()
    );
    assert_eq!(status["ready"], true);

    // Still watching, on the old policy.
    let file = host.host.write("etc/app.conf", "after the bad reload\n");
    wait_for_event(
        &collector,
        &file,
        |e| e.seen_by == SeenBy::Watch,
        || daemon.log(),
    );

    // A valid configuration is applied (its first scan is `seen_by: scan`).
    host.write_config(Some(&collector.url()), "");
    daemon.signal("HUP");
    daemon.wait_status("the applied reload", DELIVERY, |s| {
        s["last_reload"]["ok"] == true
    });
    let later = host.host.write("bin/tool", "#!/bin/sh\necho changed\n");
    wait_for_event(
        &collector,
        &later,
        |e| e.seen_by == SeenBy::Watch,
        || daemon.log(),
    );
    daemon.stop();
}

#[test]
fn subtrees_beyond_the_watch_limit_fall_back_to_periodic_scanning() {
    let collector = TestCollector::start();
    // Two watches: the tree's parent and the tree itself; etc/, etc/sub/ and bin/ are left out.
    let host = enrolled(
        &collector,
        "[watch]\nmax_watches = 2\nfallback_scan_secs = 1\n",
    );
    let daemon = host.start();
    let status = daemon.wait_ready();
    let unwatched = status["coverage"]["unwatched"].as_array().unwrap().clone();
    assert!(!unwatched.is_empty(), "{status:#}");
    assert!(
        unwatched
            .iter()
            .any(|u| u.as_str().unwrap().contains("max_watches")),
        "{unwatched:?}"
    );
    let run = host.cli(["status"]).run();
    run.expect(3).stdout_has("unwatched");

    let file = host.host.write("etc/sub/other.conf", "x = 3\n");
    let event = wait_for_event(&collector, &file, |_| true, || daemon.log());
    assert_eq!(event.seen_by, SeenBy::Scan, "found by the fallback scan");
    // Heartbeats report the blind spots too.
    assert!(wait_until(DELIVERY, || collector
        .heartbeats()
        .iter()
        .any(|h| !h.health.coverage.unwatched.is_empty())));
    daemon.stop();
}

#[test]
fn baseline_accept_applies_only_to_the_reviewed_state() {
    let collector = TestCollector::start();
    let host = enrolled(&collector, "");
    let daemon = host.start();
    let file = host.host.write("etc/app.conf", "port = 443\n");
    let event = wait_for_event(
        &collector,
        &file,
        |e| e.kind == ChangeKind::Content,
        || daemon.log(),
    );

    // The subject changed again after review: the acceptance does not apply.
    let stale = event.before.clone();
    let mismatch_id = uuid::Uuid::now_v7();
    collector.queue_command(AgentCommand::BaselineAccept {
        command_id: mismatch_id,
        subject: event.subject.clone(),
        state: stale,
        window_id: None,
    });
    assert!(wait_until(DELIVERY, || collector
        .results()
        .iter()
        .any(|r| r.command_id == mismatch_id)));
    let result = collector
        .results()
        .into_iter()
        .find(|r| r.command_id == mismatch_id)
        .unwrap();
    assert!(
        matches!(
            result.outcome,
            CommandOutcome::Mismatch { current: Some(_) }
        ),
        "{result:?}"
    );

    let window = uuid::Uuid::now_v7();
    let applied_id = uuid::Uuid::now_v7();
    collector.queue_command(AgentCommand::BaselineAccept {
        command_id: applied_id,
        subject: event.subject.clone(),
        state: event.after.clone(),
        window_id: Some(window),
    });
    assert!(wait_until(DELIVERY, || collector
        .results()
        .iter()
        .any(|r| r.command_id == applied_id)));
    let result = collector
        .results()
        .into_iter()
        .find(|r| r.command_id == applied_id)
        .unwrap();
    assert_eq!(result.outcome, CommandOutcome::Applied, "{result:?}");
    daemon.stop();

    // The baseline took the reviewed state, recorded in its history with the window.
    host.cli(["check", "--quiet"]).run().expect(0);
    let show = host.cli(["baseline", "show", "--json"]).run();
    show.expect(0);
    assert!(show.stdout.contains(&window.to_string()), "{}", show.stdout);
}

#[test]
fn a_tampered_baseline_stops_the_start_loudly() {
    let collector = TestCollector::start();
    let host = enrolled(&collector, "");
    let key = host.host.state().join("baseline.key");
    fs::write(&key, "0".repeat(64)).unwrap();
    let run = host.cli(["run"]).timeout(Duration::from_secs(30)).run();
    run.expect(EXIT_INTEGRITY)
        .stderr_has("BASELINE INTEGRITY CHECK FAILED");
}

#[test]
fn without_enrollment_events_wait_in_the_spool_and_leave_after_enroll() {
    let collector = TestCollector::start();
    let host = DaemonHost::new(Some(&collector.url()), "");
    host.init();
    let daemon = host.start();
    let file = host.host.write("etc/app.conf", "before enrollment\n");
    daemon.wait_status("the spooled event", DELIVERY, |s| s["spool"]["events"] == 1);
    // Enrolling needs the daemon stopped (it re-stamps the spooled events).
    host.cli(["enroll", "--token", super_token()])
        .run()
        .expect(2)
        .stderr_has("stop it");
    daemon.stop();
    host.cli(["enroll", "--token", "wrong"])
        .run()
        .expect(2)
        .stderr_has("refused the enrollment token");
    host.enroll();
    let daemon = host.start();
    let event = wait_for_event(&collector, &file, |_| true, || daemon.log());
    assert_eq!(event.seq, 1);
    assert_ne!(event.host_id, uuid::Uuid::nil());
    daemon.stop();
}

fn super_token() -> &'static str {
    driftwatch_tests::daemon::TOKEN
}

#[test]
fn events_carry_a_masked_diff_and_say_who_made_the_change() {
    let collector = TestCollector::start();
    let host = DaemonHost::new(Some(&collector.url()), "");
    host.host
        .write("etc/db.conf", "host = db1\npassword = hunter2\n");
    host.init();
    host.enroll();
    let daemon = host.start();

    let file = host
        .host
        .write("etc/db.conf", "host = db2\npassword = s3cret-new\n");
    let event = wait_for_event(
        &collector,
        &file,
        |e| e.kind == ChangeKind::Content,
        || daemon.log(),
    );
    let diff = event
        .diff
        .as_deref()
        .expect("content drift of a text file carries a diff");
    assert!(
        diff.contains("-host = db1") && diff.contains("+host = db2"),
        "{diff}"
    );
    assert!(diff.contains("password = «masked "), "{diff}");
    assert!(
        !diff.contains("hunter2") && !diff.contains("s3cret-new"),
        "no secret leaves the host: {diff}"
    );
    let actor = event.actor.expect("every event says who, or why not");
    assert!(wait_until(DELIVERY, || !collector.heartbeats().is_empty()));
    let coverage = &collector.heartbeats()[0].health.coverage;
    if driftwatch_tests::is_root() {
        // This test process wrote the file, and fanotify says so.
        assert_eq!(actor.source, "fanotify", "{actor:?}");
        assert_eq!(actor.pid, Some(std::process::id()), "{actor:?}");
        assert!(actor.comm.is_some() && actor.uid == Some(0), "{actor:?}");
        assert_eq!(coverage.attribution_unavailable, None);
    } else {
        assert_eq!(actor.source, "none", "{actor:?}");
        assert!(actor.reason.unwrap_or_default().contains("CAP_SYS_ADMIN"));
        // Coverage is a signal: heartbeats say attribution is off, and why.
        let reason = coverage.attribution_unavailable.clone().unwrap_or_default();
        assert!(reason.contains("CAP_SYS_ADMIN"), "{reason}");
    }
    daemon.stop();
}
