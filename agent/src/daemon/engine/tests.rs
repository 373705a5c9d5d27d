//! The detector on real temporary trees, without the watch: scans, the
//! reported state across restarts, restores, a full spool, baseline accepts.

use std::fs;
use std::path::{Path, PathBuf};

use driftwatch_common::api::v1::{ChangeKind, DriftEvent, SubjectKey};
use driftwatch_config::AgentConfig;

use super::*;
use crate::baseline::store::StorePaths;
use crate::cli::commands::{Target, create_baseline};

struct Fixture {
    _dir: tempfile::TempDir,
    root: PathBuf,
    state: PathBuf,
    config: AgentConfig,
}

impl Fixture {
    fn new(extra: &str) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("tree");
        let state = dir.path().join("state");
        fs::create_dir_all(&root).unwrap();
        fs::create_dir_all(&state).unwrap();
        let text = format!(
            "state_dir = \"{}\"\n[sources]\nenabled = []\n{extra}\n[[rule]]\npath = \"{}\"\n",
            state.display(),
            root.display()
        );
        let config = AgentConfig::from_toml(&text, Path::new("test.toml")).unwrap();
        let fx = Fixture {
            _dir: dir,
            root,
            state,
            config,
        };
        fx.write("a.conf", "one\n");
        fx.write("b.conf", "two\n");
        let target = Target {
            config: fx.config.clone(),
            store: StorePaths::in_state_dir(&fx.state),
        };
        create_baseline(&target, false, &Progress::silent()).unwrap();
        fx
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    fn write(&self, rel: &str, content: &str) {
        fs::write(self.path(rel), content).unwrap();
    }

    /// A detector as the daemon starts it (no watch).
    fn engine(&self) -> Engine {
        let (store, baseline) = load_baseline(&self.state).unwrap();
        let spool = Spool::open(&self.state.join(crate::daemon::spool::FILE_NAME)).unwrap();
        Engine::new(
            self.config.clone(),
            store,
            baseline,
            spool,
            None,
            StatusHandle::default(),
            Arc::new(Notify::new()),
            Arc::new(AtomicBool::new(false)),
        )
        .unwrap()
    }

    /// Every event in the spool, in order.
    fn spooled(&self) -> Vec<DriftEvent> {
        let spool = Spool::open(&self.state.join(crate::daemon::spool::FILE_NAME)).unwrap();
        spool
            .peek(10_000, u64::MAX)
            .unwrap()
            .iter()
            .map(|s| serde_json::from_str(&s.body).unwrap())
            .collect()
    }

    fn subject(&self, rel: &str) -> SubjectKey {
        SubjectKey::file(self.path(rel).as_os_str().as_encoded_bytes())
    }

    /// (subject relative path, kind, seen_by) of the spooled events.
    fn summary(&self) -> Vec<(String, ChangeKind, SeenBy)> {
        let prefix = format!("file:{}/", self.root.display());
        self.spooled()
            .into_iter()
            .map(|e| {
                (
                    e.subject.0.trim_start_matches(&prefix).to_owned(),
                    e.kind,
                    e.seen_by,
                )
            })
            .collect()
    }
}

#[test]
fn the_startup_scan_reports_offline_changes_once_across_restarts() {
    let fx = Fixture::new("");
    fx.write("a.conf", "changed while down\n");
    fs::remove_file(fx.path("b.conf")).unwrap();
    fx.engine().scan(ScanKind::Startup).unwrap();
    assert_eq!(
        fx.summary(),
        [
            ("a.conf".to_owned(), ChangeKind::Content, SeenBy::Startup),
            ("b.conf".to_owned(), ChangeKind::Removed, SeenBy::Startup),
        ]
    );
    // Scanning again, or after a restart, reports nothing new.
    let mut engine = fx.engine();
    engine.scan(ScanKind::Periodic).unwrap();
    drop(engine);
    fx.engine().scan(ScanKind::Startup).unwrap();
    assert_eq!(fx.spooled().len(), 2);
    // A further change of a drifted subject is a new event.
    fx.write("a.conf", "changed again\n");
    fx.engine().scan(ScanKind::Periodic).unwrap();
    assert_eq!(
        fx.summary()[2],
        ("a.conf".to_owned(), ChangeKind::Content, SeenBy::Scan)
    );
}

#[test]
fn a_subject_back_in_its_baseline_state_is_restored() {
    let fx = Fixture::new("");
    let mut engine = fx.engine();
    fx.write("a.conf", "drifted\n");
    fx.write("new.conf", "added\n");
    engine.scan(ScanKind::Startup).unwrap();
    fx.write("a.conf", "one\n");
    fs::remove_file(fx.path("new.conf")).unwrap();
    // A watch batch over just these paths finds both restored.
    engine
        .batch(Batch {
            scope: vec![
                ScopeEntry::single(fx.path("a.conf")),
                ScopeEntry::single(fx.path("new.conf")),
            ],
            renames: vec![],
            rescan: false,
        })
        .unwrap();
    let events = fx.spooled();
    let restored: Vec<&DriftEvent> = events
        .iter()
        .filter(|e| e.kind == ChangeKind::Restored)
        .collect();
    assert_eq!(restored.len(), 2, "{events:#?}");
    assert!(restored.iter().all(|e| e.seen_by == SeenBy::Watch));
    let a = restored
        .iter()
        .find(|e| e.subject == fx.subject("a.conf"))
        .unwrap();
    assert!(a.before.is_some() && a.after.is_some());
    let gone = restored
        .iter()
        .find(|e| e.subject == fx.subject("new.conf"))
        .unwrap();
    assert!(gone.after.is_none(), "absent, as in the baseline");
    assert!(engine.reported.is_empty());
}

#[test]
fn a_full_spool_holds_events_back_and_a_rescan_finds_them_once_there_is_room() {
    let fx = Fixture::new("[spool]\nmax_events = 1\n");
    let mut engine = fx.engine();
    fx.write("a.conf", "x\n");
    fx.write("b.conf", "y\n");
    engine.scan(ScanKind::Startup).unwrap();
    assert_eq!(fx.spooled().len(), 1);
    assert!(engine.status.snapshot().spool_full);
    assert!(engine.rescan_when_space);
    // Space is freed (the shipper's ack), then the detector hears of it.
    let mut shipper_side = Spool::open(&fx.state.join(crate::daemon::spool::FILE_NAME)).unwrap();
    shipper_side.ack(1, 1).unwrap();
    engine.run_message(EngineMsg::SpaceFreed);
    let events = fx.spooled();
    assert_eq!(events.len(), 1, "{events:#?}");
    assert_eq!(events[0].seq, 2);
    assert_eq!(events[0].seen_by, SeenBy::Scan);
    assert!(!engine.status.snapshot().spool_full);
    // Nothing was lost: both subjects were reported, each once.
    assert_eq!(engine.reported.files().len(), 2);
}

#[test]
fn baseline_accept_needs_the_reviewed_state_and_is_recorded() {
    let fx = Fixture::new("");
    let mut engine = fx.engine();
    fx.write("a.conf", "reviewed\n");
    engine.scan(ScanKind::Startup).unwrap();
    let event = fx.spooled().remove(0);

    let stale = engine.command(
        AgentCommand::BaselineAccept {
            command_id: uuid::Uuid::now_v7(),
            subject: event.subject.clone(),
            state: event.before.clone(),
            window_id: None,
        },
        None,
    );
    assert!(matches!(
        stale.outcome,
        CommandOutcome::Mismatch { current: Some(_) }
    ));

    // A state without its content hash names nothing: never a match.
    let mut vague = event.after.clone();
    if let Some(SubjectState::File(state)) = &mut vague {
        state.content_hash = None;
    }
    let unnamed = engine.command(
        AgentCommand::BaselineAccept {
            command_id: uuid::Uuid::now_v7(),
            subject: event.subject.clone(),
            state: vague,
            window_id: None,
        },
        None,
    );
    assert!(matches!(unnamed.outcome, CommandOutcome::Mismatch { .. }));

    let window = uuid::Uuid::now_v7();
    let applied = engine.command(
        AgentCommand::BaselineAccept {
            command_id: uuid::Uuid::now_v7(),
            subject: event.subject.clone(),
            state: event.after.clone(),
            window_id: Some(window),
        },
        None,
    );
    assert_eq!(applied.outcome, CommandOutcome::Applied);
    assert!(engine.reported.is_empty(), "the drift is the baseline now");
    // No `restored` event follows, and the baseline verifies with the new state.
    engine.scan(ScanKind::Periodic).unwrap();
    assert_eq!(fx.spooled().len(), 1);
    let (store, baseline) = load_baseline(&fx.state).unwrap();
    let record = baseline
        .get(fx.path("a.conf").as_os_str().as_encoded_bytes())
        .unwrap()
        .unwrap();
    assert_eq!(Some(SubjectState::File(record.state)), event.after);
    let history = store.history().unwrap();
    let last = history.last().unwrap();
    assert_eq!(last.action, "accept");
    assert!(last.detail.contains(&window.to_string()), "{}", last.detail);

    // Unknown namespaces fail with a reason.
    let package = engine.command(
        AgentCommand::BaselineAccept {
            command_id: uuid::Uuid::now_v7(),
            subject: SubjectKey("package:openssh-server".into()),
            state: None,
            window_id: None,
        },
        None,
    );
    assert!(matches!(package.outcome, CommandOutcome::Failed { .. }));
}

#[test]
fn the_fallback_scan_without_a_watch_covers_everything() {
    let fx = Fixture::new("");
    let mut engine = fx.engine();
    engine.scan(ScanKind::Startup).unwrap();
    fx.write("b.conf", "changed\n");
    engine.scan(ScanKind::Fallback).unwrap();
    assert_eq!(
        fx.summary(),
        [("b.conf".to_owned(), ChangeKind::Content, SeenBy::Scan)]
    );
}

#[test]
fn reviewed_state_comparison_is_strict_about_what_it_names() {
    use driftwatch_common::hash::ContentHash;
    use driftwatch_common::state::FileKind;
    let content = AttributeSet::builtin("content").unwrap();
    let state = |hash: Option<&[u8]>| FileState {
        kind: FileKind::File,
        mode: 0o644,
        uid: 0,
        gid: 0,
        size: 3,
        mtime_ns: 1,
        ctime_ns: 1,
        inode: 1,
        device: 1,
        nlink: 1,
        rdev: None,
        link_target: None,
        content_hash: hash.map(ContentHash::of),
        xattrs: Some(driftwatch_common::state::Xattrs::from_pairs(vec![])),
    };
    let now = state(Some(b"abc"));
    let touched = FileState {
        ctime_ns: 9,
        ..now.clone()
    };
    assert!(same_reviewed_state(Some(&now), Some(&touched), content));
    assert!(!same_reviewed_state(
        Some(&state(None)),
        Some(&now),
        content
    ));
    assert!(!same_reviewed_state(
        Some(&state(Some(b"xyz"))),
        Some(&now),
        content
    ));
    assert!(same_reviewed_state(None, None, content));
    assert!(!same_reviewed_state(None, Some(&now), content));
    let unknown_xattrs = FileState {
        xattrs: None,
        ..now.clone()
    };
    assert!(!same_reviewed_state(
        Some(&unknown_xattrs),
        Some(&now),
        content
    ));
}

mod sources {
    use driftwatch_common::api::v1::{SourceCondition, SubjectState};

    use super::*;
    use crate::baseline::store::{AcceptedState, NewHistory};
    use crate::observe::sources::poll::{Outcome, Poll, SourceResult};
    use crate::observe::sources::{Collection, Fields, fields};

    fn user(uid: &str) -> Fields {
        fields([
            ("uid", uid),
            ("gid", uid),
            ("gecos", ""),
            ("home", "/home/x"),
            ("shell", "/bin/sh"),
        ])
    }

    /// Baselines `user:bob` in the fixture's store (as `baseline init` with the user source would).
    fn baseline_bob(fx: &Fixture) {
        let (mut store, _) = load_baseline(&fx.state).unwrap();
        store
            .accept_with_state(
                &[],
                &[AcceptedState {
                    subject: SubjectKey("user:bob".into()),
                    fields: Some(user("1001")),
                }],
                NewHistory {
                    action: "accept",
                    actor: "test".into(),
                    detail: "{}".into(),
                },
            )
            .unwrap();
    }

    fn accounts(users: &[(&str, &str)]) -> Box<Poll> {
        let collection: Collection = users
            .iter()
            .map(|(name, uid)| (SubjectKey(format!("user:{name}")), user(uid)))
            .collect();
        poll(Outcome::Collected(collection))
    }

    fn poll(outcome: Outcome) -> Box<Poll> {
        Box::new(Poll {
            results: vec![SourceResult {
                name: "user",
                namespaces: &["user", "group"],
                outcome,
            }],
            finished_at: OffsetDateTime::now_utc(),
        })
    }

    fn sources(engine: &mut Engine, poll: Box<Poll>, seen_by: SeenBy) {
        engine.run_message(EngineMsg::Sources { poll, seen_by });
    }

    #[test]
    fn state_drift_is_chained_with_files_remembered_across_restarts_and_restored() {
        let fx = Fixture::new("");
        baseline_bob(&fx);
        let mut engine = fx.engine();
        fx.write("a.conf", "changed\n");
        engine.scan(ScanKind::Startup).unwrap();
        sources(
            &mut engine,
            accounts(&[("bob", "1001"), ("eve", "0")]),
            SeenBy::Startup,
        );
        let events = fx.spooled();
        assert_eq!(events.len(), 2, "{events:#?}");
        let eve = &events[1];
        assert_eq!(eve.subject.0, "user:eve");
        assert_eq!(eve.kind, ChangeKind::Added);
        assert_eq!(eve.seen_by, SeenBy::Startup);
        assert_eq!(eve.seq, 2);
        assert_eq!(eve.prev_hash, events[0].chain_hash());
        assert!(
            eve.summary
                .as_deref()
                .is_some_and(|s| s.starts_with("user eve added with uid 0")),
            "{eve:#?}"
        );
        assert_eq!(eve.before, None);
        assert_eq!(eve.after, Some(SubjectState::Fields { fields: user("0") }));
        assert_eq!(engine.status.snapshot().open_drift, 2);

        // After a restart, the same state is not reported again.
        drop(engine);
        let mut engine = fx.engine();
        sources(
            &mut engine,
            accounts(&[("bob", "1001"), ("eve", "0")]),
            SeenBy::Scan,
        );
        assert_eq!(fx.spooled().len(), 2);

        // Eve is gone: restored, and nothing is open on her any more.
        sources(&mut engine, accounts(&[("bob", "1001")]), SeenBy::Scan);
        let events = fx.spooled();
        assert_eq!(events.len(), 3);
        assert_eq!(events[2].kind, ChangeKind::Restored);
        assert_eq!(events[2].seen_by, SeenBy::Scan);
        assert!(engine.reported.subjects().is_empty());
        let status = engine.status.snapshot();
        assert!(status.coverage.last_source_poll_at.is_some());
        assert_eq!(status.coverage.sources[0].condition, SourceCondition::Ok);
        assert_eq!(status.coverage.sources[0].subjects, 1);
    }

    #[test]
    fn a_source_that_fails_is_coverage_not_drift() {
        let fx = Fixture::new("");
        baseline_bob(&fx);
        let mut engine = fx.engine();
        sources(
            &mut engine,
            poll(Outcome::Failed(
                "user: cannot read /etc/passwd: denied".into(),
            )),
            SeenBy::Startup,
        );
        sources(
            &mut engine,
            poll(Outcome::TimedOut("user: no answer within 30 s".into())),
            SeenBy::Scan,
        );
        assert!(fx.spooled().is_empty(), "bob is unverified, not removed");
        let status = engine.status.snapshot();
        assert_eq!(
            status.coverage.sources[0].condition,
            SourceCondition::TimedOut
        );
        assert_eq!(status.problems().len(), 1, "{:?}", status.problems());
    }

    #[test]
    fn a_state_accept_applies_only_to_the_state_collected_now() {
        let fx = Fixture::new("");
        baseline_bob(&fx);
        let mut engine = fx.engine();
        sources(
            &mut engine,
            accounts(&[("bob", "1001"), ("eve", "0")]),
            SeenBy::Scan,
        );
        let event = fx.spooled().remove(0);
        let accept = |state: Option<SubjectState>| AgentCommand::BaselineAccept {
            command_id: uuid::Uuid::now_v7(),
            subject: event.subject.clone(),
            state,
            window_id: None,
        };

        // Eve's uid changed again after review.
        let now = accounts(&[("bob", "1001"), ("eve", "1002")]);
        let result = engine.command(accept(event.after.clone()), Some(&now));
        assert_eq!(
            result.outcome,
            CommandOutcome::Mismatch {
                current: Some(SubjectState::Fields {
                    fields: user("1002")
                })
            }
        );
        // Her source cannot be read now: no decision.
        let failed = poll(Outcome::Failed("user: denied".into()));
        let result = engine.command(accept(event.after.clone()), Some(&failed));
        assert!(
            matches!(&result.outcome, CommandOutcome::Failed { message } if message.contains("denied")),
            "{result:?}"
        );
        // A file state for a state subject is refused.
        let result = engine.command(
            accept(Some(SubjectState::File(FileState {
                kind: driftwatch_common::state::FileKind::File,
                mode: 0o644,
                uid: 0,
                gid: 0,
                size: 0,
                mtime_ns: 0,
                ctime_ns: 0,
                inode: 1,
                device: 1,
                nlink: 1,
                rdev: None,
                link_target: None,
                content_hash: None,
                xattrs: None,
            }))),
            Some(&now),
        );
        assert!(matches!(result.outcome, CommandOutcome::Failed { .. }));

        let now = accounts(&[("bob", "1001"), ("eve", "0")]);
        let result = engine.command(accept(event.after.clone()), Some(&now));
        assert_eq!(result.outcome, CommandOutcome::Applied);
        assert!(engine.reported.subjects().is_empty());
        // Eve is the baseline now: the next poll says nothing, and the store agrees.
        sources(&mut engine, now, SeenBy::Scan);
        assert_eq!(fx.spooled().len(), 1);
        let (store, _) = load_baseline(&fx.state).unwrap();
        assert_eq!(store.state().unwrap().get(&event.subject), Some(&user("0")));
        assert!(
            store
                .history()
                .unwrap()
                .last()
                .unwrap()
                .detail
                .contains("user:eve")
        );
    }
}
