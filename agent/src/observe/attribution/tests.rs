use super::*;
use std::process::Command;

fn is_root() -> bool {
    fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false)
}

/// An attribution with no listeners, for the answering logic.
fn offline() -> Attribution {
    Attribution {
        shared: Arc::new(Shared::new(vec!["/srv".into()], None, None)),
        listeners: Vec::new(),
        off: None,
    }
}

fn known(pid: u32) -> Actor {
    Actor {
        source: "fanotify".into(),
        pid: Some(pid),
        ..Actor::default()
    }
}

#[test]
fn this_process_is_identified() {
    let actor = process_actor(std::process::id(), &mut UserNames::load());
    assert_eq!(actor.source, "fanotify");
    assert!(!actor.exited);
    assert!(
        actor.comm.is_some() && actor.exe.is_some() && actor.uid.is_some(),
        "{actor:?}"
    );
}

#[test]
fn the_controlling_terminal_is_named() {
    // pts/3: major 136, minor 3; the process name holds a space and a ')'.
    let stat = |tty_nr: u32| format!("42 (my ) prog) S 1 42 42 {tty_nr} 42 4194560 0 0");
    assert_eq!(
        controlling_tty(&stat(136 << 8 | 3)).as_deref(),
        Some("pts/3")
    );
    assert_eq!(
        controlling_tty(&stat(137 << 8 | 4)).as_deref(),
        Some("pts/260")
    );
    assert_eq!(controlling_tty(&stat(4 << 8 | 1)).as_deref(), Some("tty1"));
    assert_eq!(
        controlling_tty(&stat(4 << 8 | 65)).as_deref(),
        Some("ttyS1")
    );
    // Minor numbers above 255 are split around the major.
    let big_minor = (300 & 0xff) | (136 << 8) | ((300 & !0xff) << 12);
    assert_eq!(
        controlling_tty(&stat(big_minor)).as_deref(),
        Some("pts/300")
    );
    assert_eq!(controlling_tty(&stat(0)), None);
    assert_eq!(controlling_tty("garbage"), None);
    assert_eq!(controlling_tty("1 (x) S 1"), None);
}

#[test]
fn a_zombie_keeps_its_name_and_uid_and_is_marked_exited() {
    let child = Command::new("true").spawn().unwrap();
    let pid = child.id();
    // Not waited for yet: once it has exited it stays a zombie.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .contains("State:\tZ")
    {
        assert!(Instant::now() < deadline, "the child never exited");
        std::thread::sleep(Duration::from_millis(5));
    }
    let actor = process_actor(pid, &mut UserNames::load());
    let mut child = child;
    child.wait().unwrap();
    assert!(actor.exited, "{actor:?}");
    assert_eq!(actor.comm.as_deref(), Some("true"), "{actor:?}");
    assert!(actor.uid.is_some(), "{actor:?}");
    assert!(
        actor
            .reason
            .as_deref()
            .unwrap()
            .contains("exited before it could be read"),
        "{actor:?}"
    );
}

#[test]
fn a_vanished_process_keeps_its_pid_and_is_marked_exited() {
    let mut child = Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    let actor = process_actor(pid, &mut UserNames::load());
    assert!(actor.exited, "{actor:?}");
    assert!(
        actor
            .reason
            .as_deref()
            .unwrap()
            .contains("exited before it could be read"),
        "{actor:?}"
    );
    assert_eq!(actor.pid, Some(pid));
}

#[test]
fn pid_zero_is_not_called_exited() {
    let actor = process_actor(0, &mut UserNames::load());
    assert!(!actor.exited && actor.pid.is_none(), "{actor:?}");
    assert!(actor.reason.unwrap().contains("pid namespace"));
}

#[test]
fn without_privilege_every_actor_says_why() {
    let attribution = Attribution::unavailable("fanotify needs CAP_SYS_ADMIN".into());
    let actor = attribution.actor_for(Path::new("/etc/hosts"), ChangeKind::Removed);
    assert_eq!(actor.source, "none");
    assert_eq!(
        actor.reason.as_deref(),
        Some("fanotify needs CAP_SYS_ADMIN")
    );
    assert_eq!(
        attribution.unavailable_reason(),
        Some("fanotify needs CAP_SYS_ADMIN")
    );
}

#[test]
fn each_kind_of_drift_is_answered_by_the_operation_that_explains_it() {
    let attribution = offline();
    let file = PathBuf::from("/srv/app.conf");
    attribution
        .shared
        .remember(file.clone(), Operation::Write, known(10), false);
    attribution
        .shared
        .remember(file.clone(), Operation::Attrib, known(11), false);
    attribution
        .shared
        .remember(file.clone(), Operation::Delete, known(12), false);
    let pid = |kind| attribution.actor_for(&file, kind).pid;
    assert_eq!(pid(ChangeKind::Content), Some(10));
    assert_eq!(pid(ChangeKind::Attributes), Some(11));
    assert_eq!(pid(ChangeKind::Removed), Some(12));
    // Nothing explains the addition of a path only chmod-ed: the reason says what was looked for.
    let other = PathBuf::from("/srv/other.conf");
    attribution
        .shared
        .remember(other.clone(), Operation::Attrib, known(13), false);
    let added = attribution.actor_for(&other, ChangeKind::Added);
    assert_eq!((added.source.as_str(), added.pid), ("fanotify", None));
    let reason = added.reason.unwrap();
    assert!(reason.contains("creation, rename, write"), "{reason}");
    assert!(reason.contains("predate"), "{reason}");
}

#[test]
fn events_outside_the_policy_are_ignored_but_directories_holding_it_are_kept() {
    let shared = Shared::new(vec!["/srv/app/conf".into()], None, None);
    let keep = |path: &str, dir| shared.as_policy_path(path.into(), dir);
    assert_eq!(
        keep("/srv/app/conf/a", false),
        Some("/srv/app/conf/a".into())
    );
    assert_eq!(keep("/srv/app/conf", false), Some("/srv/app/conf".into()));
    assert_eq!(keep("/srv/app/confx", false), None);
    assert_eq!(keep("/var/log/syslog", false), None);
    assert_eq!(keep("/srv/app", true), Some("/srv/app".into()));
    assert_eq!(keep("/srv/app", false), None);
}

#[test]
fn a_root_behind_a_symbolic_link_is_named_as_the_policy_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let real = dir.path().join("real");
    fs::create_dir(&real).unwrap();
    let link = dir.path().join("link");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let shared = Shared::new(vec![link.clone()], None, None);
    let resolved = fs::canonicalize(&real).unwrap().join("a.conf");
    assert_eq!(
        shared.as_policy_path(resolved, false),
        Some(link.join("a.conf"))
    );
}

#[test]
fn an_overflow_is_a_coverage_gap_and_reaches_the_listener() {
    let heard = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&heard);
    let listener: GapListener = Box::new(move |gap| sink.lock().unwrap().push(gap));
    let shared = Shared::new(Vec::new(), Some("partial".into()), Some(listener));
    assert_eq!(shared.gap().as_deref(), Some("partial"));
    shared.overflowed();
    let gap = shared.gap().unwrap();
    assert!(
        gap.starts_with("partial; ") && gap.contains("overflowed 1 time"),
        "{gap}"
    );
    assert_eq!(heard.lock().unwrap().as_slice(), &[Some(gap)]);
    assert!(shared.overflowed_recently());
    shared.listener_stopped("changes are no longer attributed: EIO".into());
    let gap = shared.gap().unwrap();
    assert!(
        gap.starts_with("partial; changes are no longer attributed: EIO; the fanotify"),
        "{gap}"
    );
    assert_eq!(heard.lock().unwrap().last(), Some(&Some(gap)));
}

/// Waits until `actor_for(path, kind)` names a pid, for up to 10 s.
fn wait_for_pid(attribution: &Attribution, path: &Path, kind: ChangeKind) -> Actor {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let actor = attribution.actor_for(path, kind);
        if actor.pid.is_some() || Instant::now() > deadline {
            return actor;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn started_or_skip(dir: &Path) -> Option<Attribution> {
    if !is_root() {
        eprintln!("skipped: fanotify filesystem marks need CAP_SYS_ADMIN");
        return None;
    }
    let attribution = Attribution::start(&[dir.to_owned()], None);
    if let Some(reason) = attribution.unavailable_reason() {
        eprintln!("skipped: {reason}");
        return None;
    }
    Some(attribution)
}

#[test]
fn a_write_by_a_known_process_is_attributed() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("watched.conf");
    fs::write(&file, "before\n").unwrap();
    let Some(attribution) = started_or_skip(dir.path()) else {
        return;
    };
    // A writer that lives long enough to be read from /proc.
    let mut writer = Command::new("sh")
        .arg("-c")
        .arg("echo after >> \"$1\"; sleep 2")
        .arg("sh")
        .arg(&file)
        .spawn()
        .unwrap();
    let actor = wait_for_pid(&attribution, &file, ChangeKind::Content);
    writer.kill().ok();
    writer.wait().ok();
    assert_eq!(actor.pid, Some(writer.id()), "{actor:?}");
    assert_eq!(actor.comm.as_deref(), Some("sh"), "{actor:?}");
    assert_eq!(actor.uid, Some(0));
    assert_eq!(actor.user.as_deref(), Some("root"));
    assert!(
        actor
            .exe
            .is_some_and(|exe| exe.ends_with("sh") || exe.contains("dash") || exe.contains("bash"))
    );
}

/// The pid of a finished command, and asserts it ran fine.
fn run(program: &str, args: &[&Path]) -> u32 {
    let mut child = Command::new(program).args(args).spawn().unwrap();
    let pid = child.id();
    assert!(child.wait().unwrap().success(), "{program} failed");
    pid
}

/// The actor names `pid` and either its process name or that it had exited.
#[track_caller]
fn assert_names(actor: &Actor, pid: u32, comm: &str) {
    assert_eq!(actor.source, "fanotify", "{actor:?}");
    assert_eq!(actor.pid, Some(pid), "{actor:?}");
    if actor.exited {
        assert!(
            actor
                .reason
                .as_deref()
                .unwrap_or_default()
                .contains("exited before"),
            "{actor:?}"
        );
    } else {
        assert_eq!(actor.comm.as_deref(), Some(comm), "{actor:?}");
    }
}

#[test]
fn chmod_mv_rm_and_creation_are_attributed_to_their_process() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a.conf");
    fs::write(&file, "x\n").unwrap();
    let Some(attribution) = started_or_skip(dir.path()) else {
        return;
    };
    let chmod = run("chmod", &[Path::new("600"), &file]);
    let actor = wait_for_pid(&attribution, &file, ChangeKind::Attributes);
    assert_names(&actor, chmod, "chmod");

    let moved = dir.path().join("b.conf");
    let mv = run("mv", &[&file, &moved]);
    let from = wait_for_pid(&attribution, &file, ChangeKind::Removed);
    let to = wait_for_pid(&attribution, &moved, ChangeKind::Added);
    assert_names(&from, mv, "mv");
    assert_names(&to, mv, "mv");

    let rm = run("rm", &[&moved]);
    // Wait for the unlink (b.conf had no removal before).
    let deadline = Instant::now() + Duration::from_secs(10);
    let removed = loop {
        let actor = attribution.actor_for(&moved, ChangeKind::Removed);
        if actor.pid == Some(rm) || Instant::now() > deadline {
            break actor;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_names(&removed, rm, "rm");

    let created = dir.path().join("new.conf");
    let touch = run("touch", &[&created]);
    let actor = wait_for_pid(&attribution, &created, ChangeKind::Added);
    assert_names(&actor, touch, "touch");

    // A directory removed with its contents explains the contents' removal.
    let sub = dir.path().join("sub");
    fs::create_dir(&sub).unwrap();
    fs::write(sub.join("inner.conf"), "y\n").unwrap();
    let rm_r = run("rm", &[Path::new("-r"), &sub]);
    let deadline = Instant::now() + Duration::from_secs(10);
    let inner = loop {
        let actor = attribution.actor_for(&sub.join("inner.conf"), ChangeKind::Removed);
        if actor.pid == Some(rm_r) || Instant::now() > deadline {
            break actor;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_names(&inner, rm_r, "rm");
    assert_eq!(attribution.coverage_gap(), None);
}

#[test]
fn the_agents_own_changes_are_not_remembered() {
    let dir = tempfile::tempdir().unwrap();
    let Some(attribution) = started_or_skip(dir.path()) else {
        return;
    };
    let own = dir.path().join("own.conf");
    fs::write(&own, "mine\n").unwrap();
    fs::set_permissions(&own, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    // A later metadata change by another process (seen only by the FID group)
    // proves the listener had time to see ours.
    let marker = dir.path().join("marker");
    fs::write(&marker, "").unwrap();
    let chmod = run("chmod", &[Path::new("600"), &marker]);
    let actor = wait_for_pid(&attribution, &marker, ChangeKind::Attributes);
    assert_eq!(actor.pid, Some(chmod), "{actor:?}");
    for kind in [
        ChangeKind::Added,
        ChangeKind::Attributes,
        ChangeKind::Content,
    ] {
        let actor = attribution.actor_for(&own, kind);
        assert_eq!(actor.pid, None, "{kind:?}: {actor:?}");
    }
}

#[test]
fn catching_up_waits_for_queued_events_to_be_remembered_and_no_longer() {
    // A stand-in for a fanotify group: a pipe holding one unread "event", and a
    // listener that is slow to read and to remember it.
    let (read_end, write_end) = nix::unistd::pipe().unwrap();
    nix::unistd::write(&write_end, b"e").unwrap();
    let mut attribution = offline();
    let state = Arc::clone(&attribution.shared);
    let queue = read_end.try_clone().unwrap();
    let listener = Listener::spawn("test-listener", queue.as_fd(), move |progress| {
        std::thread::sleep(Duration::from_millis(30));
        progress.reading();
        nix::unistd::read(&read_end, &mut [0u8; 1]).unwrap();
        std::thread::sleep(Duration::from_millis(30));
        state.remember("/srv/a".into(), Operation::Attrib, known(77), false);
        progress.handled(read_end.as_fd());
        while !state.stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(5));
        }
    })
    .unwrap();
    attribution.listeners.push(listener);
    let started = Instant::now();
    attribution.catch_up();
    let waited = started.elapsed();
    let actor = attribution.actor_for(Path::new("/srv/a"), ChangeKind::Attributes);
    assert_eq!(actor.pid, Some(77), "waited {waited:?}: {actor:?}");
    // Nothing queued any more: no waiting.
    let started = Instant::now();
    attribution.catch_up();
    assert!(started.elapsed() < Duration::from_millis(20));
}

#[test]
fn catching_up_is_bounded_when_a_listener_never_reads() {
    let (read_end, write_end) = nix::unistd::pipe().unwrap();
    nix::unistd::write(&write_end, b"e").unwrap();
    let mut attribution = offline();
    let state = Arc::clone(&attribution.shared);
    let listener = Listener::spawn("test-stuck", read_end.as_fd(), move |_progress| {
        while !state.stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(5));
        }
    })
    .unwrap();
    attribution.listeners.push(listener);
    let started = Instant::now();
    attribution.catch_up();
    let waited = started.elapsed();
    assert!(
        waited >= CATCH_UP && waited < CATCH_UP + Duration::from_millis(500),
        "{waited:?}"
    );
    drop(read_end);
}

#[test]
fn a_queue_seen_drained_after_the_change_needs_no_more_waiting() {
    let (read_end, write_end) = nix::unistd::pipe().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let running = Arc::clone(&stop);
    let listener = Listener::spawn("test-drained", read_end.as_fd(), move |_progress| {
        while !running.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(5));
        }
    })
    .unwrap();
    let change = Instant::now();
    // The listener handled a batch and found the queue empty after the change...
    listener.progress.reading();
    listener.progress.handled(read_end.as_fd());
    // ...then other events keep arriving: the queue is never empty again.
    nix::unistd::write(&write_end, b"more").unwrap();
    assert!(!listener.is_behind(change), "drained after the change");
    assert!(listener.is_behind(Instant::now()), "events wait now");
    stop.store(true, Ordering::Relaxed);
    listener.thread.join().unwrap();
}
