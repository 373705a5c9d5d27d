//! Table tests: a sequence of inotify notifications in, the settled work out.

use std::sync::atomic::{AtomicU32, Ordering};

use super::*;

const SETTLE: Duration = Duration::from_millis(100);
const MAX_DELAY: Duration = Duration::from_millis(1000);

/// A notification as the kernel sends it about `path` (its directory watched).
#[derive(Clone, Debug)]
struct Event {
    mask: EventMask,
    path: PathBuf,
    cookie: u32,
}

fn ev(mask: EventMask, path: &str) -> Event {
    Event {
        mask,
        path: PathBuf::from(path),
        cookie: 0,
    }
}

fn create_file(p: &str) -> Event {
    ev(EventMask::CREATE, p)
}
fn create_dir(p: &str) -> Event {
    ev(EventMask::CREATE | EventMask::ISDIR, p)
}
fn write(p: &str) -> Event {
    ev(EventMask::MODIFY, p)
}
fn close_write(p: &str) -> Event {
    ev(EventMask::CLOSE_WRITE, p)
}
/// Never asked for; ignored if it came anyway.
fn open(p: &str) -> Event {
    ev(EventMask::OPEN, p)
}
fn chmod(p: &str) -> Event {
    ev(EventMask::ATTRIB, p)
}
fn remove_file(p: &str) -> Event {
    ev(EventMask::DELETE, p)
}
fn remove_dir(p: &str) -> Event {
    ev(EventMask::DELETE | EventMask::ISDIR, p)
}
/// The two halves of one rename, linked by a cookie.
fn rename(from: &str, to: &str) -> Vec<Event> {
    static COOKIES: AtomicU32 = AtomicU32::new(1);
    let cookie = COOKIES.fetch_add(1, Ordering::Relaxed);
    vec![
        Event {
            cookie,
            ..ev(EventMask::MOVED_FROM, from)
        },
        Event {
            cookie,
            ..ev(EventMask::MOVED_TO, to)
        },
    ]
}
fn overflow() -> Event {
    ev(EventMask::Q_OVERFLOW, "/")
}

/// What the reader does: resolve the event to its directory and entry name
/// (events about a watched directory itself carry no name).
fn translate(event: &Event, pending: &mut PendingMove) -> Vec<Hint> {
    let about_itself = event.mask.intersects(
        EventMask::DELETE_SELF | EventMask::MOVE_SELF | EventMask::IGNORED | EventMask::Q_OVERFLOW,
    );
    let (dir, name) = if about_itself {
        (event.path.as_path(), None)
    } else {
        (
            event.path.parent().unwrap_or(Path::new("/")),
            event.path.file_name(),
        )
    };
    hints(
        &Notification {
            mask: event.mask,
            dir,
            name,
            cookie: event.cookie,
        },
        pending,
    )
}

fn single(p: &str) -> ScopeEntry {
    ScopeEntry::single(p)
}
fn subtree(p: &str) -> ScopeEntry {
    ScopeEntry::subtree(p)
}

/// Feeds `(milliseconds, event)` pairs, then returns every batch taken when
/// polled at each millisecond up to `until` ms.
fn run(events: Vec<(u64, Event)>, until: u64) -> Vec<(u64, Batch)> {
    let start = Instant::now();
    let mut coalescer = Coalescer::new(SETTLE, MAX_DELAY);
    let mut batches = Vec::new();
    let mut events = events.into_iter().peekable();
    let mut pending = PendingMove::default();
    for ms in 0..=until {
        let now = start + Duration::from_millis(ms);
        while let Some((_, event)) = events.next_if(|(at, _)| *at <= ms) {
            for hint in translate(&event, &mut pending) {
                coalescer.push(hint, now);
            }
        }
        if let Some(batch) = coalescer.take_due(now) {
            batches.push((ms, batch));
        }
    }
    batches
}

fn at(ms: u64, events: Vec<Event>) -> Vec<(u64, Event)> {
    events.into_iter().map(|e| (ms, e)).collect()
}

#[test]
fn an_editor_save_is_one_look_at_the_file() {
    // vim: write a swap file, move the original to a backup, write the new
    // file, chmod it, remove the backup and the swap file.
    let mut events = Vec::new();
    events.extend(at(0, vec![create_file("/e/.a.swp"), write("/e/.a.swp")]));
    events.extend(at(5, rename("/e/a", "/e/a~")));
    events.extend(at(
        6,
        vec![
            create_file("/e/a"),
            open("/e/a"),
            write("/e/a"),
            close_write("/e/a"),
        ],
    ));
    events.extend(at(
        7,
        vec![
            chmod("/e/a"),
            remove_file("/e/a~"),
            remove_file("/e/.a.swp"),
        ],
    ));
    let batches = run(events, 400);
    assert_eq!(batches.len(), 1, "{batches:#?}");
    let (ms, batch) = &batches[0];
    assert_eq!(*ms, 107, "settles {SETTLE:?} after the last notification");
    // Only the rename halves may be directories, so only they are subtrees.
    assert_eq!(
        batch.scope,
        [
            single("/e"),
            single("/e/.a.swp"),
            subtree("/e/a"),
            subtree("/e/a~")
        ]
    );
    assert_eq!(
        batch.renames,
        [(PathBuf::from("/e/a"), PathBuf::from("/e/a~"))]
    );
    assert!(!batch.rescan);
}

/// (name, notifications, poll until ms, expected batches as (ms, scope))
type Case = (
    &'static str,
    Vec<(u64, Event)>,
    u64,
    Vec<(u64, Vec<ScopeEntry>)>,
);

#[test]
fn table() {
    #[rustfmt::skip]
    let cases: Vec<Case> = vec![
        ("reads alone are nothing",
            at(0, vec![open("/d/f"), ev(EventMask::CLOSE_NOWRITE, "/d/f"), ev(EventMask::ACCESS, "/d/f")]), 300,
            vec![]),
        ("write, close and chmod of one file are one look",
            at(0, vec![write("/d/f"), close_write("/d/f"), chmod("/d/f")]), 300,
            vec![(100, vec![single("/d"), single("/d/f")])]),
        ("a new directory is walked",
            at(0, vec![create_dir("/d/new")]), 300,
            vec![(100, vec![single("/d"), subtree("/d/new")])]),
        ("a removed directory is looked at with everything below",
            vec![(0, remove_file("/d/sub/x")), (1, remove_dir("/d/sub"))], 300,
            vec![(100, vec![single("/d/sub"), single("/d/sub/x")]), (101, vec![single("/d"), subtree("/d/sub")])]),
        ("a busy directory does not hold a settled file back",
            vec![(0, write("/d/f0")), (50, write("/d/f1")), (100, write("/d/f2")), (150, write("/d/f3"))], 400,
            vec![(100, vec![single("/d"), single("/d/f0")]), (150, vec![single("/d"), single("/d/f1")]),
                 (200, vec![single("/d"), single("/d/f2")]), (250, vec![single("/d"), single("/d/f3")])]),
        ("two directories settle on their own",
            vec![(0, write("/a/f")), (50, write("/b/g"))], 300,
            vec![(100, vec![single("/a"), single("/a/f")]), (150, vec![single("/b"), single("/b/g")])]),
        ("a directory's own removal looks at its subtree",
            at(0, vec![ev(EventMask::DELETE_SELF, "/d/sub")]), 300,
            vec![(100, vec![single("/d"), subtree("/d/sub")])]),
        ("a move in from outside is a new subtree",
            at(0, vec![ev(EventMask::MOVED_TO | EventMask::ISDIR, "/d/in")]), 300,
            vec![(100, vec![single("/d"), subtree("/d/in")])]),
        ("a move out is a removal of the subtree",
            at(0, vec![ev(EventMask::MOVED_FROM, "/d/out")]), 300,
            vec![(100, vec![single("/d"), subtree("/d/out")])]),
        ("the end of a watch is nothing to look at",
            at(0, vec![ev(EventMask::IGNORED, "/d")]), 300,
            vec![]),
        ("continuous churn is handed over at max_delay",
            (0..30).map(|i| (i * 50, write("/log/app.log"))).collect(), 2100,
            vec![(1000, vec![single("/log"), single("/log/app.log")]), (1550, vec![single("/log"), single("/log/app.log")])]),
    ];
    for (name, events, until, expected) in cases {
        let got: Vec<(u64, Vec<ScopeEntry>)> = run(events, until)
            .into_iter()
            .map(|(ms, batch)| (ms, batch.scope))
            .collect();
        assert_eq!(got, expected, "{name}");
    }
}

#[test]
fn overflow_becomes_one_rescan_that_covers_pending_work() {
    let events = vec![(0, write("/d/f")), (10, overflow()), (20, write("/d/g"))];
    let batches = run(events, 300);
    assert_eq!(batches.len(), 2, "{batches:#?}");
    // At once, and the pending look at /d/f is part of it.
    assert_eq!(batches[0].0, 10);
    assert!(batches[0].1.rescan);
    assert!(batches[0].1.scope.is_empty());
    // What came after is looked at as usual.
    assert_eq!(batches[1].0, 120);
    assert_eq!(batches[1].1.scope, [single("/d"), single("/d/g")]);
}

#[test]
fn a_crowded_directory_collapses_into_one_subtree_look() {
    let events: Vec<(u64, Event)> = (0..GROUP_MAX + 5)
        .map(|i| (0, create_file(&format!("/d/many/f{i}"))))
        .collect();
    let batches = run(events, 200);
    assert_eq!(batches.len(), 1);
    assert_eq!(batches[0].1.scope, [subtree("/d/many")]);
}

#[test]
fn too_much_pending_work_becomes_a_rescan() {
    let start = Instant::now();
    let mut coalescer = Coalescer::new(SETTLE, MAX_DELAY);
    for i in 0..=TOTAL_MAX {
        coalescer.push(
            Hint::Touched {
                path: PathBuf::from(format!("/d{}/f{}", i / 500, i)),
                subtree: false,
            },
            start,
        );
    }
    let batch = coalescer.take_due(start).unwrap();
    assert!(batch.rescan);
    assert!(coalescer.take_due(start + MAX_DELAY).is_none());
}

#[test]
fn normalize_drops_what_a_subtree_covers() {
    let scope = normalize(vec![
        single("/a/b/c"),
        subtree("/a/b"),
        single("/a/b"),
        single("/a"),
        single("/a-b"),
        single("/a"),
        subtree("/z"),
        single("/z/y"),
    ]);
    assert_eq!(
        scope,
        [single("/a"), subtree("/a/b"), single("/a-b"), subtree("/z")]
    );
}

#[test]
fn merging_batches_keeps_everything_once() {
    let mut a = Batch {
        scope: vec![single("/d"), single("/d/f")],
        renames: vec![],
        rescan: false,
    };
    a.merge(Batch {
        scope: vec![subtree("/d")],
        renames: vec![(PathBuf::from("/d/x"), PathBuf::from("/d/y"))],
        rescan: false,
    });
    assert_eq!(a.scope, [subtree("/d")]);
    assert_eq!(a.renames.len(), 1);
}

#[test]
fn only_matching_halves_of_a_rename_are_linked() {
    let mut pending = PendingMove::default();
    let mut halves = rename("/d/a", "/d/b");
    let to = halves.pop().unwrap();
    let from = halves.pop().unwrap();
    // A move-to with another cookie (moved in from elsewhere) is not linked.
    translate(&from, &mut pending);
    let stranger = Event {
        cookie: to.cookie + 1000,
        ..to.clone()
    };
    assert_eq!(
        translate(&stranger, &mut pending),
        [Hint::Touched {
            path: PathBuf::from("/d/b"),
            subtree: true
        }]
    );
    // The pending half was used up: the real other half now comes alone, too.
    assert!(matches!(
        translate(&to, &mut pending)[..],
        [Hint::Touched { .. }]
    ));
    translate(&from, &mut pending);
    assert_eq!(
        translate(&to, &mut pending),
        [Hint::Renamed {
            from: PathBuf::from("/d/a"),
            to: PathBuf::from("/d/b")
        }]
    );
}
