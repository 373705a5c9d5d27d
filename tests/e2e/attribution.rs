//! Attribution end to end: the real daemon names the process behind a chmod, both
//! sides of a rename and a removal (fanotify in FID mode with filesystem marks). Needs
//! root (CAP_SYS_ADMIN); elsewhere each test prints why it is skipped. The unprivileged
//! side (actors say why they are unknown) is covered in `daemon.rs`.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use driftwatch_common::api::v1::{Actor, ChangeKind, DriftEvent};
use driftwatch_tests::daemon::{Daemon, DaemonHost, TestCollector, wait_until};

const DELIVERY: Duration = Duration::from_secs(15);

/// An enrolled, running daemon, or `None` (with the reason printed) where fanotify
/// is not permitted.
fn attributing_daemon(collector: &TestCollector) -> Option<(DaemonHost, Daemon)> {
    if !driftwatch_tests::is_root() {
        eprintln!("skipped: fanotify filesystem marks need CAP_SYS_ADMIN (run as root)");
        return None;
    }
    let host = DaemonHost::new(Some(&collector.url()), "");
    host.init();
    host.enroll();
    let daemon = host.start();
    let status = daemon.status().expect("a ready daemon has a status");
    let gap = &status["coverage"]["attribution_unavailable"];
    if !gap.is_null() {
        eprintln!("skipped: attribution is not available here: {gap}");
        daemon.stop();
        return None;
    }
    Some((host, daemon))
}

/// Runs a command to completion; returns its pid.
#[track_caller]
fn run(program: &str, args: &[&Path]) -> u32 {
    let mut child = Command::new(program).args(args).spawn().unwrap();
    let pid = child.id();
    assert!(child.wait().unwrap().success(), "{program} failed");
    pid
}

#[track_caller]
fn event_for(
    collector: &TestCollector,
    path: &Path,
    kind: ChangeKind,
    daemon: &Daemon,
) -> DriftEvent {
    let mut found = None;
    let arrived = wait_until(DELIVERY, || {
        found = collector
            .events_for(path)
            .into_iter()
            .find(|e| e.kind == kind);
        found.is_some()
    });
    assert!(
        arrived,
        "no {kind:?} event for {} at the collector; events: {:#?}\nagent log:\n{}",
        path.display(),
        collector.events_for(path),
        daemon.log()
    );
    found.unwrap()
}

/// The actor is the process `pid`: by name while it was alive, or saying it had exited.
#[track_caller]
fn assert_actor(event: &DriftEvent, pid: u32, comm: &str) {
    let actor: &Actor = event
        .actor
        .as_ref()
        .expect("every event says who, or why not");
    assert_eq!(actor.source, "fanotify", "{actor:?}");
    assert_eq!(actor.pid, Some(pid), "{:?}: {actor:?}", event.kind);
    if actor.exited {
        let reason = actor.reason.as_deref().unwrap_or_default();
        assert!(
            reason.contains("exited before it could be read"),
            "{actor:?}"
        );
    } else {
        assert_eq!(actor.comm.as_deref(), Some(comm), "{actor:?}");
        assert_eq!(actor.uid, Some(0), "{actor:?}");
    }
}

#[test]
fn chmod_mv_and_rm_are_attributed_to_the_process_that_ran_them() {
    let collector = TestCollector::start();
    let Some((host, daemon)) = attributing_daemon(&collector) else {
        return;
    };
    let conf = host.host.path("etc/app.conf");
    let chmod = run("chmod", &[Path::new("600"), &conf]);
    let event = event_for(&collector, &conf, ChangeKind::Attributes, &daemon);
    assert!(
        event.changed.iter().any(|c| c == "mode"),
        "{:?}",
        event.changed
    );
    assert_actor(&event, chmod, "chmod");

    let before = host.host.path("etc/sub/other.conf");
    let after = host.host.path("etc/sub/moved.conf");
    let mv = run("mv", &[&before, &after]);
    let removed = event_for(&collector, &before, ChangeKind::Removed, &daemon);
    let added = event_for(&collector, &after, ChangeKind::Added, &daemon);
    assert_actor(&removed, mv, "mv");
    assert_actor(&added, mv, "mv");

    let tool = host.host.path("bin/tool");
    let rm = run("rm", &[&tool]);
    let event = event_for(&collector, &tool, ChangeKind::Removed, &daemon);
    assert_actor(&event, rm, "rm");

    // A creation by a process that is still alive when the event is read.
    let created = host.host.path("etc/new.conf");
    let mut writer = Command::new("sh")
        .arg("-c")
        .arg("echo new > \"$1\"; sleep 5")
        .arg("sh")
        .arg(&created)
        .spawn()
        .unwrap();
    let event = event_for(&collector, &created, ChangeKind::Added, &daemon);
    writer.kill().ok();
    writer.wait().ok();
    let actor = event.actor.as_ref().unwrap();
    assert_eq!(actor.pid, Some(writer.id()), "{actor:?}");
    assert!(!actor.exited, "{actor:?}");
    assert_eq!(actor.comm.as_deref(), Some("sh"), "{actor:?}");
    daemon.stop();
}

#[test]
fn renaming_a_directory_names_the_mover_for_the_files_it_took_along() {
    let collector = TestCollector::start();
    let Some((host, daemon)) = attributing_daemon(&collector) else {
        return;
    };
    // No event names the files inside: the directory's own rename explains them.
    let before = host.host.path("etc/sub");
    let after = host.host.path("etc/sub-old");
    let mv = run("mv", &[&before, &after]);
    let removed = event_for(
        &collector,
        &before.join("other.conf"),
        ChangeKind::Removed,
        &daemon,
    );
    let added = event_for(
        &collector,
        &after.join("other.conf"),
        ChangeKind::Added,
        &daemon,
    );
    assert_actor(&removed, mv, "mv");
    assert_actor(&added, mv, "mv");
    daemon.stop();
}
