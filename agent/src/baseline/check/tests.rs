//! Scan + check on real temporary trees.

use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};

use driftwatch_common::attrs::Attribute;
use driftwatch_config::AgentConfig;

use super::*;
use crate::baseline::store::{BaselineStore, StorePaths};
use crate::cli::commands::{Target, create_baseline};

struct Fixture {
    _dir: tempfile::TempDir,
    root: PathBuf,
    target: Target,
}

impl Fixture {
    /// A tree under `root` with an ad-hoc `content` policy.
    fn new() -> Fixture {
        Fixture::with_policy(AgentConfig::adhoc)
    }

    fn with_policy(policy: impl FnOnce(&Path) -> AgentConfig) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("tree");
        fs::create_dir(&root).unwrap();
        let store = StorePaths::for_db(&dir.path().join("baseline.db"));
        let config = policy(&root);
        Fixture {
            root,
            target: Target { config, store },
            _dir: dir,
        }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    fn write(&self, rel: &str, content: &str) {
        let path = self.path(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, content).unwrap();
    }

    fn init(&self) {
        let report = create_baseline(&self.target, true, &Progress::silent()).unwrap();
        assert!(report.errors.is_empty(), "{:?}", report.errors);
    }

    fn check_with(&self, paranoid: bool) -> Findings {
        let store = BaselineStore::open(&self.target.store).unwrap();
        let baseline = store.load().unwrap();
        let policy = Policy::new(&self.target.config);
        run_check(
            &policy,
            &baseline,
            &CheckMode { paranoid },
            &Progress::silent(),
        )
        .unwrap()
    }

    fn check(&self) -> Findings {
        self.check_with(false)
    }

    /// (kind, path relative to the root, changed attributes) of every drift.
    fn drifts(&self) -> Vec<(DriftKind, String, Vec<Attribute>)> {
        self.check()
            .drifts
            .into_iter()
            .map(|d| (d.kind, self.rel(&d.path), d.changed))
            .collect()
    }

    fn rel(&self, path: &PathBytes) -> String {
        let rel = path.as_path().strip_prefix(&self.root).unwrap();
        PathBytes::from(rel).to_string()
    }
}

#[test]
fn unchanged_tree_has_no_drift() {
    let fx = Fixture::new();
    fx.write("a.conf", "a = 1\n");
    fx.write("sub/b.conf", "b = 2\n");
    fx.init();
    let findings = fx.check();
    assert!(findings.drifts.is_empty(), "{:?}", findings.drifts);
    assert!(findings.errors.is_empty());
    assert_eq!(findings.entries, 4); // root, a.conf, sub, sub/b.conf
}

#[test]
fn reports_added_removed_content_and_attributes() {
    let fx = Fixture::new();
    fx.write("keep", "same");
    fx.write("edit.conf", "port = 22\n");
    fx.write("gone", "bye");
    fx.write("perm", "x");
    fx.init();
    fx.write("edit.conf", "port = 2222\n");
    fs::remove_file(fx.path("gone")).unwrap();
    fs::set_permissions(fx.path("perm"), fs::Permissions::from_mode(0o4755)).unwrap();
    fx.write("new", "hello");
    assert_eq!(
        fx.drifts(),
        [
            (
                DriftKind::Content,
                "edit.conf".into(),
                vec![Attribute::Size, Attribute::Hash]
            ),
            (DriftKind::Removed, "gone".into(), vec![]),
            (DriftKind::Added, "new".into(), vec![]),
            (DriftKind::Attributes, "perm".into(), vec![Attribute::Mode]),
        ]
    );
}

#[test]
fn content_drift_of_a_text_file_carries_a_diff() {
    let fx = Fixture::new();
    fx.write("sshd_config", "PermitRootLogin no\nPort 22\n");
    fx.init();
    fx.write("sshd_config", "PermitRootLogin yes\nPort 22\n");
    let store = BaselineStore::open(&fx.target.store).unwrap();
    let baseline = store.load().unwrap();
    let findings = fx.check();
    let drift = &findings.drifts[0];
    let before = baseline
        .get(drift.path.as_bytes())
        .unwrap()
        .unwrap()
        .state
        .content_hash
        .unwrap();
    let old = store
        .snapshot(drift.path.as_bytes(), &before)
        .unwrap()
        .unwrap();
    let diff = unified_diff(&drift.path, &old, drift.new_snapshot.as_deref().unwrap()).unwrap();
    assert!(
        diff.contains("-PermitRootLogin no\n+PermitRootLogin yes"),
        "{diff}"
    );
}

#[test]
fn same_size_rewrite_with_restored_mtime_is_still_seen() {
    // An attacker restoring mtime cannot restore ctime.
    let fx = Fixture::new();
    fx.write("f", "aaaa");
    fx.init();
    let mtime = fs::metadata(fx.path("f")).unwrap().modified().unwrap();
    fx.write("f", "bbbb");
    fs::File::options()
        .write(true)
        .open(fx.path("f"))
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    assert_eq!(
        fx.drifts(),
        [(DriftKind::Content, "f".into(), vec![Attribute::Hash])]
    );
}

#[test]
fn paranoid_check_rehashes_even_when_metadata_matches() {
    let fx = Fixture::new();
    fx.write("f", "aaaa");
    fx.init();
    // Rewrite the baseline so its record claims other content with the same stat:
    // only a re-hash can notice.
    let mut store = BaselineStore::open(&fx.target.store).unwrap();
    let baseline = store.load().unwrap();
    let path = PathBytes::from(fx.path("f"));
    let mut forged = baseline.get(path.as_bytes()).unwrap().unwrap();
    forged.state.content_hash = Some(driftwatch_common::hash::ContentHash::of(b"zzzz"));
    let change = crate::baseline::store::AcceptedChange {
        path,
        record: Some(forged),
        snapshot: None,
    };
    let history = crate::baseline::store::NewHistory {
        action: "accept",
        actor: "test".into(),
        detail: "test".into(),
    };
    store.accept(&[change], history).unwrap();
    assert!(fx.check_with(false).drifts.is_empty());
    let paranoid = fx.check_with(true);
    assert_eq!(paranoid.drifts.len(), 1);
    assert_eq!(paranoid.drifts[0].changed, [Attribute::Hash]);
}

#[test]
fn file_replaced_by_directory_is_a_type_change() {
    let fx = Fixture::new();
    fx.write("thing", "file");
    fx.init();
    fs::remove_file(fx.path("thing")).unwrap();
    fs::create_dir(fx.path("thing")).unwrap();
    let drifts = fx.drifts();
    assert_eq!(drifts.len(), 1);
    assert_eq!(drifts[0].0, DriftKind::Content);
    assert!(drifts[0].2.contains(&Attribute::Type));
}

#[test]
fn symlink_retargeting_is_content_drift_and_loops_do_not_hang() {
    let fx = Fixture::new();
    symlink("target-a", fx.path("link")).unwrap();
    fs::create_dir(fx.path("loop")).unwrap();
    symlink("..", fx.path("loop/up")).unwrap();
    symlink("self", fx.path("self")).unwrap();
    fx.init();
    fs::remove_file(fx.path("link")).unwrap();
    symlink("target-b", fx.path("link")).unwrap();
    assert_eq!(
        fx.drifts(),
        [(
            DriftKind::Content,
            "link".into(),
            vec![Attribute::LinkTarget]
        )]
    );
}

#[test]
fn non_utf8_names_round_trip_exactly() {
    let fx = Fixture::new();
    let name = std::ffi::OsStr::from_bytes(b"caf\xe9\n.conf");
    fs::write(fx.root.join(name), "x").unwrap();
    fx.init();
    assert!(fx.check().drifts.is_empty());
    fs::write(fx.root.join(name), "y").unwrap();
    let drifts = fx.drifts();
    assert_eq!(drifts[0].1, "caf\\xe9\\x0a.conf");
}

#[test]
fn special_files_are_recorded_not_opened() {
    let fx = Fixture::new();
    let fifo = fx.path("fifo");
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let socket = std::os::unix::net::UnixListener::bind(fx.path("sock")).unwrap();
    fx.init();
    assert!(fx.check().drifts.is_empty());
    drop(socket);
    fs::remove_file(fx.path("sock")).unwrap();
    assert_eq!(fx.drifts(), [(DriftKind::Removed, "sock".into(), vec![])]);
}

#[test]
fn hard_links_are_separate_subjects_sharing_content() {
    let fx = Fixture::new();
    fx.write("one", "shared");
    fs::hard_link(fx.path("one"), fx.path("two")).unwrap();
    fx.init();
    fx.write("one", "changed");
    let changed: Vec<String> = fx.drifts().into_iter().map(|d| d.1).collect();
    assert_eq!(changed, ["one", "two"]);
}

#[test]
fn empty_directories_are_subjects() {
    let fx = Fixture::new();
    fs::create_dir(fx.path("empty")).unwrap();
    fx.init();
    fs::remove_dir(fx.path("empty")).unwrap();
    assert_eq!(fx.drifts(), [(DriftKind::Removed, "empty".into(), vec![])]);
}

fn policy(root: &Path, body: &str) -> AgentConfig {
    let text = body.replace("ROOT", root.to_str().unwrap());
    AgentConfig::from_toml(&text, Path::new("test.toml")).unwrap()
}

#[test]
fn growing_files_may_grow_but_not_shrink_or_change_history() {
    let fx = Fixture::with_policy(|root| {
        policy(root, "[[rule]]\npath = \"ROOT\"\ngroup = \"growing\"\n")
    });
    fx.write("app.log", "line 1\n");
    fx.init();
    fs::write(fx.path("app.log"), "line 1\nline 2\n").unwrap();
    assert!(fx.drifts().is_empty());
    fs::write(fx.path("app.log"), "LINE 1\nline 2\n").unwrap();
    assert_eq!(
        fx.drifts(),
        [(
            DriftKind::Content,
            "app.log".into(),
            vec![Attribute::Growing]
        )]
    );
    fs::write(fx.path("app.log"), "l").unwrap();
    assert_eq!(fx.drifts()[0].2, [Attribute::Growing]);
}

#[test]
fn excluded_paths_and_nested_rules() {
    let fx = Fixture::with_policy(|root| {
        policy(
            root,
            "[[rule]]\npath = \"ROOT\"\nexclude = [\"ROOT/cache\", \"**/*.swp\"]\n\
             [[rule]]\npath = \"ROOT/perms\"\ngroup = \"permissions\"\n\
             [[rule]]\npath = \"ROOT/skip\"\ngroup = \"ignore\"\n",
        )
    });
    fx.write("cache/x", "1");
    fx.write("a.swp", "1");
    fx.write("perms/p", "1");
    fx.write("skip/s", "1");
    fx.init();
    fx.write("cache/x", "2");
    fx.write("a.swp", "2");
    fx.write("skip/s", "2");
    fx.write("perms/p", "content is not compared");
    assert!(fx.drifts().is_empty(), "{:?}", fx.drifts());
    fs::set_permissions(fx.path("perms/p"), fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(
        fx.drifts(),
        [(
            DriftKind::Attributes,
            "perms/p".into(),
            vec![Attribute::Mode]
        )]
    );
}

#[test]
fn rule_for_picks_the_most_specific_rule() {
    let fx = Fixture::with_policy(|root| {
        policy(
            root,
            "[[rule]]\npath = \"ROOT\"\nexclude = [\"ROOT/cache\"]\n\
             [[rule]]\npath = \"ROOT/etc\"\ngroup = \"permissions\"\nrecurse = false\n",
        )
    });
    let p = Policy::new(&fx.target.config);
    assert_eq!(p.rule_for(&fx.path("a")).unwrap().group, "content");
    assert_eq!(p.rule_for(&fx.path("etc/a")).unwrap().group, "permissions");
    assert!(
        p.rule_for(&fx.path("etc/sub/a")).is_none(),
        "beyond a non-recursive rule"
    );
    assert!(
        p.rule_for(&fx.path("cache/deep/x")).is_none(),
        "under an excluded directory"
    );
    assert!(p.rule_for(Path::new("/elsewhere")).is_none());
}

#[test]
fn removed_rule_coverage_is_not_reported_as_removal() {
    let fx = Fixture::new();
    fx.write("a", "1");
    fx.init();
    let narrowed = Target {
        config: policy(
            &fx.root,
            "[[rule]]\npath = \"ROOT\"\nexclude = [\"ROOT/a\"]\n",
        ),
        store: fx.target.store.clone(),
    };
    let store = BaselineStore::open(&narrowed.store).unwrap();
    let findings = run_check(
        &Policy::new(&narrowed.config),
        &store.load().unwrap(),
        &CheckMode { paranoid: false },
        &Progress::silent(),
    )
    .unwrap();
    assert!(findings.drifts.is_empty());
    assert_eq!(findings.out_of_policy, 1);
}

#[test]
fn extended_attribute_changes_are_named() {
    let fx = Fixture::new();
    fx.write("bin", "x");
    fx.init();
    match xattr::set(fx.path("bin"), "user.driftwatch-test", b"1") {
        Ok(()) => {}
        // The temp filesystem has no user xattrs: nothing to test here.
        Err(err) if err.raw_os_error() == Some(libc::EOPNOTSUPP) => return,
        Err(err) => panic!("setting an xattr: {err}"),
    }
    let drift = fx.check().drifts.remove(0);
    assert_eq!(drift.kind, DriftKind::Attributes);
    assert_eq!(drift.changed, [Attribute::Xattrs]);
    let names = &drift.after.unwrap().xattrs.unwrap().names;
    assert_eq!(names, &[PathBytes(b"user.driftwatch-test".to_vec())]);
}

fn scoped(fx: &Fixture, scope: Vec<crate::observe::scan::ScopeEntry>) -> Findings {
    let store = BaselineStore::open(&fx.target.store).unwrap();
    let baseline = store.load().unwrap();
    let policy = Policy::new(&fx.target.config);
    let options = CheckOptions {
        scope: Some(scope),
        ..CheckOptions::default()
    };
    run_check_with(
        &policy,
        &baseline,
        &CheckMode { paranoid: false },
        &options,
        &Progress::silent(),
    )
    .unwrap()
}

fn kinds(fx: &Fixture, findings: &Findings) -> Vec<(DriftKind, String)> {
    findings
        .drifts
        .iter()
        .map(|d| (d.kind, fx.rel(&d.path)))
        .collect()
}

#[test]
fn a_scoped_check_sees_only_its_scope_and_never_calls_the_rest_removed() {
    use crate::observe::scan::ScopeEntry;
    let fx = Fixture::new();
    fx.write("a/one", "1");
    fx.write("a/two", "2");
    fx.write("b/three", "3");
    fx.write("ab", "x");
    fx.init();
    fx.write("a/one", "changed");
    fs::remove_file(fx.path("a/two")).unwrap();
    fx.write("a/new/deep", "new");
    fs::remove_file(fx.path("b/three")).unwrap();
    fs::remove_file(fx.path("ab")).unwrap();

    let single = scoped(&fx, vec![ScopeEntry::single(fx.path("a/one"))]);
    assert_eq!(kinds(&fx, &single), [(DriftKind::Content, "a/one".into())]);

    // A subtree: everything below `a` (not `ab`, a sibling sorting close by), and nothing of `b`.
    let subtree = scoped(&fx, vec![ScopeEntry::subtree(fx.path("a"))]);
    assert_eq!(
        kinds(&fx, &subtree),
        [
            (DriftKind::Added, "a/new".into()),
            (DriftKind::Added, "a/new/deep".into()),
            (DriftKind::Content, "a/one".into()),
            (DriftKind::Removed, "a/two".into()),
        ]
    );
    // A vanished single path is a removal.
    let gone = scoped(&fx, vec![ScopeEntry::single(fx.path("b/three"))]);
    assert_eq!(kinds(&fx, &gone), [(DriftKind::Removed, "b/three".into())]);
}

#[test]
fn a_scope_below_an_excluded_directory_or_in_a_nested_rule_follows_the_policy() {
    use crate::observe::scan::ScopeEntry;
    let fx = Fixture::with_policy(|root| {
        policy(
            root,
            "[[rule]]\npath = \"ROOT\"\nexclude = [\"ROOT/cache\"]\n\
             [[rule]]\npath = \"ROOT/perms\"\ngroup = \"permissions\"\n",
        )
    });
    fx.write("cache/x", "1");
    fx.write("perms/p", "1");
    fx.init();
    fx.write("cache/x", "2");
    fx.write("perms/p", "content is not compared here");
    fs::set_permissions(fx.path("perms/p"), fs::Permissions::from_mode(0o600)).unwrap();
    let whole = scoped(&fx, vec![ScopeEntry::subtree(fx.root.clone())]);
    assert_eq!(
        kinds(&fx, &whole),
        [(DriftKind::Attributes, "perms/p".into())]
    );
    let excluded = scoped(&fx, vec![ScopeEntry::subtree(fx.path("cache"))]);
    assert!(excluded.drifts.is_empty(), "{:?}", excluded.drifts);
}

#[test]
fn observe_path_reads_one_subject_like_a_check() {
    let fx = Fixture::new();
    fx.write("a", "1");
    fx.init();
    let store = BaselineStore::open(&fx.target.store).unwrap();
    let baseline = store.load().unwrap();
    let policy = Policy::new(&fx.target.config);
    assert!(matches!(
        observe_path(&policy, &baseline, &fx.path("a")),
        Observed::Clean(Some(_))
    ));
    fx.write("a", "2");
    let Observed::Drift(drift) = observe_path(&policy, &baseline, &fx.path("a")) else {
        panic!("expected drift")
    };
    assert_eq!(drift.kind, DriftKind::Content);
    fs::remove_file(fx.path("a")).unwrap();
    let Observed::Drift(drift) = observe_path(&policy, &baseline, &fx.path("a")) else {
        panic!("expected removal")
    };
    assert_eq!(drift.kind, DriftKind::Removed);
    assert!(matches!(
        observe_path(&policy, &baseline, &fx.path("never")),
        Observed::Clean(None)
    ));
    assert!(matches!(
        observe_path(&policy, &baseline, Path::new("/elsewhere")),
        Observed::NotCovered
    ));
}

#[test]
fn a_stopped_check_fails_instead_of_reporting_partial_findings() {
    let fx = Fixture::new();
    fx.write("a", "1");
    fx.init();
    fs::remove_file(fx.path("a")).unwrap();
    let store = BaselineStore::open(&fx.target.store).unwrap();
    let baseline = store.load().unwrap();
    let stop = std::sync::Arc::new(AtomicBool::new(true));
    let options = CheckOptions {
        stop: Some(stop),
        ..CheckOptions::default()
    };
    let result = run_check_with(
        &Policy::new(&fx.target.config),
        &baseline,
        &CheckMode { paranoid: false },
        &options,
        &Progress::silent(),
    );
    assert_eq!(result.unwrap_err().kind(), std::io::ErrorKind::Interrupted);
}

#[test]
fn what_the_sandbox_hides_is_not_checked_never_drift() {
    let fx = Fixture::with_policy(|root| {
        policy(
            root,
            "[[rule]]\npath = \"ROOT\"\n[[rule]]\npath = \"ROOT/home/alice/.ssh\"\n",
        )
    });
    fx.write("etc/app.conf", "a = 1\n");
    fx.write("usr/lib/modules/6.1/kernel/foo.ko", "module");
    fx.write("home/alice/.ssh/authorized_keys", "ssh-ed25519 AAAA\n");
    fx.init();
    // What a mount of systemd's inaccessible node shows: an empty mode-0000
    // directory; and a home hidden with its rule.
    fs::remove_dir_all(fx.path("usr/lib/modules/6.1")).unwrap();
    fs::set_permissions(
        fx.path("usr/lib/modules"),
        fs::Permissions::from_mode(0o000),
    )
    .unwrap();
    fs::remove_dir_all(fx.path("home/alice")).unwrap();
    let hidden = vec![fx.path("usr/lib/modules"), fx.path("home")];
    let store = BaselineStore::open(&fx.target.store).unwrap();
    let findings = run_check(
        &Policy::hiding(&fx.target.config, hidden),
        &store.load().unwrap(),
        &CheckMode { paranoid: true },
        &Progress::silent(),
    )
    .unwrap();
    fs::set_permissions(
        fx.path("usr/lib/modules"),
        fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    assert!(findings.drifts.is_empty(), "{:?}", findings.drifts);
    let unchecked: Vec<String> = findings.errors.iter().map(|e| fx.rel(&e.path)).collect();
    for path in [
        "usr/lib/modules",
        "usr/lib/modules/6.1/kernel/foo.ko",
        "home",
        "home/alice/.ssh",
        "home/alice/.ssh/authorized_keys",
    ] {
        assert!(
            unchecked.iter().any(|p| p == path),
            "{path} in {unchecked:?}"
        );
    }
    let named = findings
        .errors
        .iter()
        .find(|e| fx.rel(&e.path) == "usr/lib/modules")
        .unwrap();
    assert_eq!(named.message, crate::observe::sandbox::HIDDEN);
    assert_eq!(
        unchecked.iter().filter(|p| *p == "usr/lib/modules").count(),
        1,
        "reported once: {unchecked:?}"
    );
}
