use std::collections::BTreeMap;

use driftwatch_common::api::v1::{Actor, ChangeKind, Provenance, SubjectState};
use driftwatch_common::hash::ContentHash;
use driftwatch_common::state::{FileKind, FileState};
use proptest::prelude::*;
use uuid::Uuid;

use super::*;
use crate::windows::schedule::Schedule;
use crate::windows::{ExpectedState, HostScope, Window, WindowKind, WindowStatus};

const HOUR: i64 = 3_600_000;
/// 2026-11-29T00:00:00Z.
const DAY: i64 = 1_795_910_400_000;

fn window(id: u128, hosts: HostScope, subjects: &[&str], start_h: i64, end_h: i64) -> Window {
    Window {
        id: Uuid::from_u128(id),
        ticket: format!("CHG-{id}"),
        title: "t".into(),
        kind: WindowKind::Normal,
        status: WindowStatus::Approved,
        requester: "alice".into(),
        decided_by: Some("bob".into()),
        decided_at: Some(0),
        decision_comment: None,
        hosts,
        subjects: subjects.iter().map(|s| s.to_string()).collect(),
        start: DAY + start_h * HOUR,
        end: DAY + end_h * HOUR,
        time_zone: "UTC".into(),
        expected: vec![],
        implementers: vec![],
        schedule: None,
        created_at: 0,
        ended_at: None,
        ended_by: None,
    }
}

fn names(list: &[&str]) -> HostScope {
    HostScope {
        names: list.iter().map(|s| s.to_string()).collect(),
        ..HostScope::default()
    }
}

fn globs(list: &[&str]) -> HostScope {
    HostScope {
        globs: list.iter().map(|s| s.to_string()).collect(),
        ..HostScope::default()
    }
}

fn labels(list: &[(&str, &str)]) -> HostScope {
    HostScope {
        labels: list
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..HostScope::default()
    }
}

fn file(hash: u8) -> SubjectState {
    SubjectState::File(FileState {
        kind: FileKind::File,
        mode: 0o644,
        uid: 0,
        gid: 0,
        size: 1,
        mtime_ns: 0,
        ctime_ns: 0,
        inode: 1,
        device: 1,
        nlink: 1,
        rdev: None,
        link_target: None,
        content_hash: Some(ContentHash([hash; 32])),
        xattrs: None,
    })
}

struct Case<'a> {
    host: &'a str,
    labels: &'a [(&'a str, &'a str)],
    /// Hours after DAY: the end of the spool interval (`None`: the interval is `at_h`).
    until_h: Option<f64>,
    subject: &'a str,
    kind: ChangeKind,
    after: Option<SubjectState>,
    /// Hours after DAY.
    at_h: f64,
    actor: Option<Actor>,
    provenance: Option<Provenance>,
    expected: Outcome,
}

fn case<'a>(host: &'a str, subject: &'a str, at_h: f64, expected: Outcome) -> Case<'a> {
    Case {
        host,
        labels: &[],
        until_h: None,
        subject,
        kind: ChangeKind::Content,
        after: Some(file(1)),
        at_h,
        actor: None,
        provenance: None,
        expected,
    }
}

fn authorized(id: u128) -> Outcome {
    Outcome::Authorized {
        window_id: Uuid::from_u128(id),
    }
}

fn hours(h: f64) -> i64 {
    DAY + (h * HOUR as f64) as i64
}

/// Runs each case against `windows` with a one-minute tolerance.
#[track_caller]
fn check(windows: &[Window], cases: &[Case<'_>]) {
    let index = WindowIndex::build(windows).unwrap();
    for c in cases {
        let labels: BTreeMap<String, String> = c
            .labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let got = match_event(
            &index,
            HostFacts {
                hostname: c.host,
                labels: &labels,
            },
            EventFacts {
                subject: c.subject,
                kind: c.kind,
                after: c.after.as_ref(),
                spooled: SpoolBounds {
                    after: hours(c.at_h),
                    before: hours(c.until_h.unwrap_or(c.at_h)),
                },
                actor: c.actor.as_ref(),
                provenance: c.provenance.as_ref(),
            },
            60_000,
        );
        assert_eq!(got, c.expected, "{} {} at +{}h", c.host, c.subject, c.at_h);
    }
}

#[test]
fn host_subject_and_time_must_all_be_covered() {
    let windows = [window(
        1,
        names(&["web-1"]),
        &["file:/etc/nginx/**", "package:nginx*"],
        2,
        4,
    )];
    check(
        &windows,
        &[
            case("web-1", "file:/etc/nginx/nginx.conf", 3.0, authorized(1)),
            case("web-1", "file:/etc/nginx/sites/a.conf", 2.0, authorized(1)),
            case("web-1", "package:nginx-common", 3.5, authorized(1)),
            case(
                "web-2",
                "file:/etc/nginx/nginx.conf",
                3.0,
                Outcome::Untraced,
            ),
            case("web-1", "file:/etc/ssh/sshd_config", 3.0, Outcome::Untraced),
            case("web-1", "file:/etc/nginx.conf", 3.0, Outcome::Untraced),
            case("web-1", "package:apache2", 3.0, Outcome::Untraced),
            case(
                "web-1",
                "file:/etc/nginx/nginx.conf",
                1.5,
                Outcome::Untraced,
            ),
            case(
                "web-1",
                "file:/etc/nginx/nginx.conf",
                4.5,
                Outcome::Untraced,
            ),
        ],
    );
}

#[test]
fn the_tolerance_applies_at_the_edges() {
    let windows = [window(1, names(&["web-1"]), &["file:/etc/**"], 2, 4)];
    let minute = 1.0 / 60.0;
    check(
        &windows,
        &[
            case(
                "web-1",
                "file:/etc/hosts",
                2.0 - 0.9 * minute,
                authorized(1),
            ),
            case(
                "web-1",
                "file:/etc/hosts",
                4.0 + 0.9 * minute,
                authorized(1),
            ),
            case(
                "web-1",
                "file:/etc/hosts",
                2.0 - 1.1 * minute,
                Outcome::Untraced,
            ),
            case(
                "web-1",
                "file:/etc/hosts",
                4.0 + 1.1 * minute,
                Outcome::Untraced,
            ),
        ],
    );
}

#[test]
fn hosts_are_matched_by_name_glob_or_all_labels() {
    let windows = [
        window(1, globs(&["db-*"]), &["package:*"], 0, 10),
        window(
            2,
            labels(&[("role", "web"), ("env", "prod")]),
            &["package:*"],
            0,
            10,
        ),
    ];
    let mut web_prod = case("web-9", "package:nginx", 5.0, authorized(2));
    web_prod.labels = &[("env", "prod"), ("role", "web"), ("dc", "par")];
    let mut web_test = case("web-9", "package:nginx", 5.0, Outcome::Untraced);
    web_test.labels = &[("env", "test"), ("role", "web")];
    check(
        &windows,
        &[
            case("db-1", "package:postgresql", 5.0, authorized(1)),
            case("dbx", "package:postgresql", 5.0, Outcome::Untraced),
            web_prod,
            web_test,
        ],
    );
}

#[test]
fn an_expected_state_authorizes_only_that_state() {
    let mut w = window(1, names(&["web-1"]), &["file:/etc/nginx/**"], 2, 4);
    w.expected = vec![ExpectedState {
        subject: "file:/etc/nginx/nginx.conf".into(),
        hash: Some(ContentHash([1; 32])),
        version: None,
        absent: false,
    }];
    let mut other = case(
        "web-1",
        "file:/etc/nginx/nginx.conf",
        3.0,
        Outcome::Untraced,
    );
    other.after = Some(file(2));
    other.expected = Outcome::UnexpectedState {
        window_id: Uuid::from_u128(1),
        expected: format!("hash {}", ContentHash([1; 32])),
    };
    let mut removed = case(
        "web-1",
        "file:/etc/nginx/nginx.conf",
        3.0,
        Outcome::Untraced,
    );
    removed.after = None;
    removed.kind = ChangeKind::Removed;
    removed.expected = other.expected.clone();
    check(
        &[w],
        &[
            case("web-1", "file:/etc/nginx/nginx.conf", 3.0, authorized(1)),
            other,
            removed,
            // Subjects the window names no state for are authorized as usual.
            case("web-1", "file:/etc/nginx/mime.types", 3.0, authorized(1)),
        ],
    );
}

#[test]
fn another_window_may_still_authorize_an_unexpected_state() {
    let mut strict = window(1, names(&["web-1"]), &["package:nginx"], 2, 4);
    strict.expected = vec![ExpectedState {
        subject: "package:nginx".into(),
        hash: None,
        version: Some("1.24".into()),
        absent: false,
    }];
    let loose = window(2, globs(&["web-*"]), &["package:*"], 0, 6);
    check(
        &[strict, loose],
        &[case("web-1", "package:nginx", 3.0, authorized(2))],
    );
}

#[test]
fn the_earliest_created_window_wins_and_restores_need_none() {
    let windows = [
        window(7, names(&["web-1"]), &["file:/etc/**"], 0, 10),
        window(3, globs(&["web-*"]), &["file:/etc/**"], 0, 10),
    ];
    let mut restored = case("web-1", "file:/etc/hosts", 50.0, Outcome::Restored);
    restored.kind = ChangeKind::Restored;
    check(
        &windows,
        &[
            case("web-1", "file:/etc/hosts", 5.0, authorized(3)),
            restored,
        ],
    );
}

#[test]
fn windows_that_were_never_approved_authorize_nothing() {
    let mut requested = window(1, names(&["web-1"]), &["file:/etc/**"], 0, 10);
    requested.status = WindowStatus::Requested;
    requested.decided_by = None;
    let mut closed_early = window(2, names(&["web-2"]), &["file:/etc/**"], 0, 10);
    closed_early.status = WindowStatus::Closed;
    closed_early.ended_at = Some(DAY + HOUR);
    check(
        &[requested, closed_early],
        &[
            case("web-1", "file:/etc/hosts", 5.0, Outcome::Untraced),
            case("web-2", "file:/etc/hosts", 0.5, authorized(2)),
            case("web-2", "file:/etc/hosts", 5.0, Outcome::Untraced),
        ],
    );
}

#[test]
fn the_person_is_the_login_user_else_the_service_user() {
    assert_eq!(person(Some(&login("carol"))), Some("carol"));
    let unresolved = Actor {
        login_user: None,
        ..login("carol")
    };
    assert_eq!(
        person(Some(&unresolved)),
        None,
        "not root: the person is unknown"
    );
    let service = Actor {
        login_uid: None,
        login_user: None,
        ..login("carol")
    };
    assert_eq!(person(Some(&service)), Some("root"));
    assert_eq!(person(Some(&Actor::default())), None);
    assert_eq!(person(None), None);
}

#[test]
fn implementers_and_the_approver_are_checked_inside_the_window() {
    let mut named = window(1, names(&["web-1"]), &["file:/etc/**"], 2, 4);
    named.implementers = vec!["carol".into(), "dave".into()];
    let open = window(2, names(&["web-2"]), &["file:/etc/**"], 2, 4);
    let by = |host: &'static str, actor: Option<Actor>, expected: Outcome| Case {
        actor,
        ..case(host, "file:/etc/hosts", 3.0, expected)
    };
    let id = |n| Uuid::from_u128(n);
    check(
        &[named, open],
        &[
            by("web-1", Some(login("carol")), authorized(1)),
            by("web-1", Some(login("dave")), authorized(1)),
            by(
                "web-1",
                Some(login("eve")),
                Outcome::WrongImplementer {
                    window_id: id(1),
                    actor: "eve".into(),
                },
            ),
            // The approver may not implement, even when named.
            by(
                "web-2",
                Some(login("bob")),
                Outcome::MadeByApprover {
                    window_id: id(2),
                    actor: "bob".into(),
                },
            ),
            by("web-1", None, Outcome::ActorUnknown { window_id: id(1) }),
            by(
                "web-1",
                Some(Actor {
                    login_user: None,
                    ..login("carol")
                }),
                Outcome::ActorUnknown { window_id: id(1) },
            ),
            // Without implementers an unknown actor is accepted, anyone but the approver too.
            by("web-2", None, authorized(2)),
            by("web-2", Some(login("eve")), authorized(2)),
            // Outside every window: untraced, whoever did it.
            Case {
                actor: Some(login("carol")),
                ..case("web-1", "file:/etc/hosts", 6.0, Outcome::Untraced)
            },
        ],
    );
}

#[test]
fn another_window_may_authorize_what_one_flags() {
    let mut strict = window(1, names(&["web-1"]), &["file:/etc/**"], 2, 4);
    strict.implementers = vec!["carol".into()];
    let mut other = window(2, globs(&["web-*"]), &["file:/etc/**"], 0, 6);
    other.implementers = vec!["dave".into()];
    check(
        &[strict, other],
        &[
            Case {
                actor: Some(login("dave")),
                ..case("web-1", "file:/etc/hosts", 3.0, authorized(2))
            },
            // Neither: the earliest created window's flag.
            Case {
                actor: Some(login("eve")),
                ..case(
                    "web-1",
                    "file:/etc/hosts",
                    3.0,
                    Outcome::WrongImplementer {
                        window_id: Uuid::from_u128(1),
                        actor: "eve".into(),
                    },
                )
            },
        ],
    );
}

#[test]
fn a_package_window_covers_files_that_match_the_packaged_content() {
    let mut upgrade = window(1, names(&["web-1"]), &["package:nginx*"], 2, 4);
    upgrade.implementers = vec!["carol".into()];
    let explicit = window(
        2,
        names(&["web-2"]),
        &["package:nginx*", "file:/etc/nginx/**"],
        2,
        4,
    );
    let file = |host: &'static str, path: &'static str, p: Option<Provenance>, expected| Case {
        provenance: p,
        actor: Some(login("carol")),
        ..case(host, path, 3.0, expected)
    };
    check(
        &[upgrade, explicit],
        &[
            file(
                "web-1",
                "file:/usr/sbin/nginx",
                Some(packaged("nginx", true)),
                authorized(1),
            ),
            file(
                "web-1",
                "file:/etc/nginx/nginx.conf",
                Some(packaged("nginx-common", true)),
                authorized(1),
            ),
            file(
                "web-1",
                "file:/usr/sbin/nginx",
                Some(packaged("nginx", false)),
                Outcome::PackageMismatch {
                    window_id: Uuid::from_u128(1),
                    package: "nginx".into(),
                },
            ),
            // Another package, no provenance, or a state key that only looks like a file.
            file(
                "web-1",
                "file:/usr/bin/vim",
                Some(packaged("vim", true)),
                Outcome::Untraced,
            ),
            file("web-1", "file:/usr/sbin/nginx", None, Outcome::Untraced),
            file(
                "web-1",
                "user:nginx",
                Some(packaged("nginx", true)),
                Outcome::Untraced,
            ),
            // Outside the window's time.
            Case {
                at_h: 5.0,
                ..file(
                    "web-1",
                    "file:/usr/sbin/nginx",
                    Some(packaged("nginx", true)),
                    Outcome::Untraced,
                )
            },
            // The actor checks still apply to a packaged file.
            Case {
                actor: Some(login("eve")),
                ..file(
                    "web-1",
                    "file:/usr/sbin/nginx",
                    Some(packaged("nginx", true)),
                    Outcome::WrongImplementer {
                        window_id: Uuid::from_u128(1),
                        actor: "eve".into(),
                    },
                )
            },
            // Covered by the window's own file globs: an edited conffile is the work itself.
            file(
                "web-2",
                "file:/etc/nginx/nginx.conf",
                Some(packaged("nginx", false)),
                authorized(2),
            ),
        ],
    );
}

#[test]
fn recurring_windows_authorize_only_during_their_occurrences() {
    // Every Sunday 02:00-04:00 Paris (01:00-03:00Z in winter), valid for a year from
    // 2026-11-20; DAY (2026-11-29) is a Sunday.
    let mut weekly = window(
        1,
        labels(&[("role", "web")]),
        &["package:*"],
        -9 * 24,
        356 * 24,
    );
    weekly.kind = WindowKind::Standard;
    weekly.time_zone = "Europe/Paris".into();
    weekly.schedule = Some(Schedule {
        weekdays: vec!["sun".into()],
        start: "02:00".into(),
        duration_minutes: 120,
    });
    // A one-off window on the same host, to show the two kinds of lists work together.
    let once = window(2, names(&["web-1"]), &["file:/etc/**"], 30, 31);
    let web = |at_h: f64, subject: &'static str, expected| Case {
        labels: &[("role", "web")],
        ..case("web-1", subject, at_h, expected)
    };
    check(
        &[weekly, once],
        &[
            web(1.5, "package:nginx", authorized(1)),
            web(2.9, "package:nginx", authorized(1)),
            web(3.5, "package:nginx", Outcome::Untraced),
            web(0.5, "package:nginx", Outcome::Untraced),
            web(24.0 + 1.5, "package:nginx", Outcome::Untraced),
            web(7.0 * 24.0 + 1.5, "package:nginx", authorized(1)),
            web(30.5, "file:/etc/hosts", authorized(2)),
            // Summer time: 02:00 Paris is 00:00Z (2027-06-06 is a Sunday, 189 days on).
            web(189.0 * 24.0 + 0.5, "package:nginx", authorized(1)),
            web(189.0 * 24.0 + 2.5, "package:nginx", Outcome::Untraced),
            // After the year the approval is valid for.
            web(364.0 * 24.0 + 1.5, "package:nginx", Outcome::Untraced),
        ],
    );
}

/// The matcher's full answer for one spool interval, in hours after DAY.
fn judged(windows: &[Window], subject: &str, after_h: f64, before_h: f64) -> Judgement {
    let labels = BTreeMap::from([("role".to_owned(), "web".to_owned())]);
    judge(
        &WindowIndex::build(windows).unwrap(),
        HostFacts {
            hostname: "web-1",
            labels: &labels,
        },
        EventFacts {
            subject,
            kind: ChangeKind::Content,
            after: None,
            spooled: SpoolBounds {
                after: hours(after_h),
                before: hours(before_h),
            },
            actor: None,
            provenance: None,
        },
        60_000,
    )
}

#[test]
fn the_whole_spool_interval_must_be_covered() {
    let windows = [window(1, names(&["web-1"]), &["file:/etc/**"], 2, 4)];
    let second = 1.0 / 3600.0;
    // An outage of hours inside the window: authorized.
    assert_eq!(
        judged(&windows, "file:/etc/a", 2.5, 3.9).outcome,
        authorized(1)
    );
    // Straddling its start or its end (beyond the tolerance): untraced, naming it.
    for (after, before) in [(1.5, 2.5), (3.5, 4.5), (1.0, 5.0)] {
        assert_eq!(
            judged(&windows, "file:/etc/a", after, before),
            Judgement {
                outcome: Outcome::Untraced,
                not_provably_in: Some(Uuid::from_u128(1)),
            },
            "[{after}, {before}]"
        );
    }
    // Wholly outside: untraced, nothing to name; another subject: nothing to name.
    assert_eq!(
        judged(&windows, "file:/etc/a", 5.0, 5.5).not_provably_in,
        None
    );
    assert_eq!(
        judged(&windows, "file:/usr/a", 1.5, 2.5).not_provably_in,
        None
    );
    // Within the tolerance of the start and of the planned end: authorized.
    assert_eq!(
        judged(&windows, "file:/etc/a", 2.0 - 59.0 * second, 2.1).outcome,
        authorized(1)
    );
    assert_eq!(
        judged(&windows, "file:/etc/a", 3.9, 4.0 + 59.0 * second).outcome,
        authorized(1)
    );
}

#[test]
fn a_closed_or_cancelled_window_covers_nothing_spooled_after_it_ended() {
    let second = 1.0 / 3600.0;
    for status in [WindowStatus::Closed, WindowStatus::Cancelled] {
        let mut w = window(1, names(&["web-1"]), &["file:/etc/**"], 2, 4);
        w.status = status;
        w.ended_at = Some(hours(3.0));
        let windows = [w];
        // Before the close: authorized.
        assert_eq!(
            judged(&windows, "file:/etc/a", 2.9, 3.0).outcome,
            authorized(1)
        );
        // 3 s after the close, whatever the tolerance: untraced; with a heartbeat before
        // the close, the interval straddles it and the window is named.
        let late = judged(&windows, "file:/etc/a", 2.99, 3.0 + 3.0 * second);
        assert_eq!(late.outcome, Outcome::Untraced, "{status:?}");
        assert_eq!(late.not_provably_in, Some(Uuid::from_u128(1)));
        let after = judged(&windows, "file:/etc/a", 3.0 + second, 3.0 + 3.0 * second);
        assert_eq!(after.outcome, Outcome::Untraced, "{status:?}");
        assert_eq!(after.not_provably_in, None);
    }
    // Closed after its planned end: the tolerance still extends the end up to the close.
    let mut w = window(1, names(&["web-1"]), &["file:/etc/**"], 2, 4);
    w.status = WindowStatus::Closed;
    w.ended_at = Some(hours(4.0) + 30_000);
    let windows = [w];
    assert_eq!(
        judged(&windows, "file:/etc/a", 3.9, 4.0 + 20.0 * second).outcome,
        authorized(1)
    );
    assert_eq!(
        judged(&windows, "file:/etc/a", 3.9, 4.0 + 40.0 * second).outcome,
        Outcome::Untraced
    );
}

#[test]
fn a_recurring_window_must_hold_the_interval_in_one_occurrence() {
    // Every day 01:00-03:00Z, valid for a week from DAY - 1 day.
    let mut daily = window(1, labels(&[("role", "web")]), &["package:*"], -24, 6 * 24);
    daily.kind = WindowKind::Standard;
    daily.schedule = Some(Schedule {
        weekdays: ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
            .map(str::to_owned)
            .to_vec(),
        start: "01:00".into(),
        duration_minutes: 120,
    });
    let windows = [daily];
    assert_eq!(
        judged(&windows, "package:nginx", 1.2, 2.8).outcome,
        authorized(1)
    );
    // From one occurrence into the gap, or across two of them: not provable.
    for (after, before) in [(2.5, 3.5), (2.5, 24.0 + 1.5)] {
        let j = judged(&windows, "package:nginx", after, before);
        assert_eq!(j.outcome, Outcome::Untraced, "[{after}, {before}]");
        assert_eq!(j.not_provably_in, Some(Uuid::from_u128(1)));
    }
}

/// The reference: every window, one by one, with the same rules.
struct Probe<'a> {
    host: &'a str,
    labels: &'a BTreeMap<String, String>,
    subject: &'a str,
    /// The spool interval.
    after: i64,
    before: i64,
    actor: Option<&'a Actor>,
    provenance: Option<&'a Provenance>,
}

fn brute_force(windows: &[Window], probe: &Probe<'_>, tol: i64) -> Outcome {
    let Probe {
        host,
        labels,
        subject,
        after,
        before,
        actor,
        provenance,
    } = *probe;
    // The tolerance never reaches past a close or cancellation.
    let closed_by = |w: &Window| w.ended_at.is_none_or(|ended| before <= ended);
    let who = actor.and_then(|a| match (&a.login_user, a.login_uid) {
        (Some(login), _) => Some(login.clone()),
        (None, Some(_)) => None,
        (None, None) => a.user.clone(),
    });
    let mut sorted: Vec<&Window> = windows.iter().filter(|w| w.was_approved()).collect();
    sorted.sort_by_key(|w| w.id);
    let mut flagged = None;
    for w in sorted {
        let in_time = closed_by(w)
            && match &w.schedule {
                None => w.start - tol <= after && before <= w.end + tol,
                Some(schedule) => occurrences(w, schedule)
                    .into_iter()
                    .any(|(s, e)| s - tol <= after && before <= e + tol),
            };
        let host_ok = w.hosts.names.iter().any(|n| n == host)
            || driftwatch_common::pattern::GlobList::new(&w.hosts.globs)
                .unwrap()
                .is_match(std::path::Path::new(host))
            || (!w.hosts.labels.is_empty()
                && w.hosts.labels.iter().all(|(k, v)| labels.get(k) == Some(v)));
        let globs = crate::windows::validate::SubjectGlobs::compile(&w.subjects).unwrap();
        let subject_ok = globs.covers(subject);
        let package = provenance.filter(|p| {
            subject.starts_with("file:") && globs.covers(&format!("package:{}", p.package))
        });
        if !(in_time && host_ok && (subject_ok || package.is_some())) {
            continue;
        }
        let window_id = w.id;
        if let Some(p) = package.filter(|p| !subject_ok && !p.matches_package) {
            flagged.get_or_insert(Outcome::PackageMismatch {
                window_id,
                package: p.package.clone(),
            });
            continue;
        }
        let flag = match &who {
            Some(who) if w.decided_by.as_ref() == Some(who) => Some(Outcome::MadeByApprover {
                window_id,
                actor: who.clone(),
            }),
            Some(who) if !w.implementers.is_empty() && !w.implementers.contains(who) => {
                Some(Outcome::WrongImplementer {
                    window_id,
                    actor: who.clone(),
                })
            }
            None if !w.implementers.is_empty() => Some(Outcome::ActorUnknown { window_id }),
            _ => None,
        };
        match flag {
            None => return Outcome::Authorized { window_id },
            Some(flag) => {
                flagged.get_or_insert(flag);
            }
        }
    }
    flagged.unwrap_or(Outcome::Untraced)
}

/// Every occurrence of a recurring window, expanded day by day over its planned validity
/// and cut to it (the index never does this).
fn occurrences(w: &Window, schedule: &Schedule) -> Vec<(i64, i64)> {
    let tz = jiff::tz::TimeZone::get(&w.time_zone).unwrap();
    let (h, m) = schedule.start.split_once(':').unwrap();
    let clock = jiff::civil::time(h.parse().unwrap(), m.parse().unwrap(), 0, 0);
    let day = |t: i64| {
        jiff::Timestamp::from_millisecond(t)
            .unwrap()
            .to_zoned(tz.clone())
            .date()
    };
    let names = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
    let (valid_from, valid_until) = (w.start, w.end);
    let mut found = Vec::new();
    let mut date = day(valid_from - 2 * 86_400_000);
    while date <= day(valid_until) {
        let weekday = names[date.weekday().to_monday_zero_offset() as usize];
        if schedule.weekdays.iter().any(|d| d == weekday) {
            let start = tz
                .to_ambiguous_zoned(date.to_datetime(clock))
                .compatible()
                .unwrap()
                .timestamp()
                .as_millisecond();
            let end = start + i64::from(schedule.duration_minutes) * 60_000;
            let (a, b) = (start.max(valid_from), end.min(valid_until));
            if a <= b {
                found.push((a, b));
            }
        }
        date = date.tomorrow().unwrap();
    }
    found
}

fn login(login: &str) -> Actor {
    Actor {
        source: "fanotify".into(),
        uid: Some(0),
        user: Some("root".into()),
        login_uid: Some(1000),
        login_user: Some(login.into()),
        ..Actor::default()
    }
}

fn arb_actor() -> impl Strategy<Value = Option<Actor>> {
    prop_oneof![
        Just(None),
        prop::sample::select(vec!["bob", "carol", "dave"]).prop_map(|l| Some(login(l))),
        // A login uid the host could not name, and a service user without a login.
        Just(Some(Actor {
            login_user: None,
            ..login("x")
        })),
        Just(Some(Actor {
            login_uid: None,
            login_user: None,
            user: Some("dave".into()),
            ..login("x")
        })),
    ]
}

fn packaged(package: &str, matches_package: bool) -> Provenance {
    Provenance {
        manager: "dpkg".into(),
        package: package.into(),
        version: "1.24.0-1".into(),
        matches_package,
    }
}

fn arb_provenance() -> impl Strategy<Value = Option<Provenance>> {
    prop_oneof![
        Just(None),
        (prop::sample::select(vec!["nginx", "vim"]), any::<bool>())
            .prop_map(|(p, matches)| Some(packaged(p, matches))),
    ]
}

fn arb_window() -> impl Strategy<Value = Window> {
    let hosts = prop_oneof![
        prop::sample::subsequence(vec!["h0", "h1", "h2", "h3"], 1..3).prop_map(|n| names(&n)),
        prop::sample::select(vec!["h*", "h[01]", "x*"]).prop_map(|g| globs(&[g])),
        prop::sample::select(vec![("role", "web"), ("role", "db")]).prop_map(|l| labels(&[l])),
    ];
    let subjects = prop::sample::subsequence(
        vec![
            "file:/etc/**",
            "file:/etc/*.conf",
            "package:*",
            "package:ng*",
            "package:vim",
        ],
        1..3,
    );
    let implementers = prop::sample::subsequence(vec!["carol", "dave"], 0..=2);
    let approver = prop::sample::select(vec!["bob", "carol"]);
    (
        (any::<u16>(), hosts, subjects),
        (0i64..48, 1i64..12),
        (implementers, approver),
        prop::option::weighted(0.3, arb_schedule()),
        prop::option::weighted(0.3, (0i64..(14 * 60), any::<bool>())),
    )
        .prop_map(
            |((id, hosts, subjects), (start, len), (implementers, approver), recurring, ended)| {
                let mut w = window(u128::from(id), hosts, &subjects, start, start + len);
                if let Some((after_min, closed)) = ended {
                    // Closed or cancelled some minutes after its start (maybe past its end).
                    w.status = if closed {
                        WindowStatus::Closed
                    } else {
                        WindowStatus::Cancelled
                    };
                    w.ended_at = Some(w.start + after_min * 60_000);
                }
                w.implementers = implementers.iter().map(|s| s.to_string()).collect();
                w.decided_by = Some(approver.to_owned());
                if let Some((schedule, zone, valid_hours)) = recurring {
                    // Valid from up to two days before the events, for one to four days.
                    w.kind = WindowKind::Standard;
                    w.start = DAY + (start - 48) * HOUR;
                    w.end = w.start + valid_hours * HOUR;
                    w.time_zone = zone.to_owned();
                    w.schedule = Some(schedule);
                }
                w
            },
        )
}

fn arb_schedule() -> impl Strategy<Value = (Schedule, &'static str, i64)> {
    let days =
        prop::sample::subsequence(vec!["mon", "tue", "wed", "thu", "fri", "sat", "sun"], 1..4);
    (
        days,
        (0u32..24, prop::sample::select(vec![0u32, 30])),
        prop::sample::select(vec![30u32, 120, 600, 1440]),
        prop::sample::select(vec![
            "UTC",
            "Europe/Paris",
            "America/New_York",
            "Asia/Kolkata",
        ]),
        24i64..96,
    )
        .prop_map(|(days, (h, m), duration_minutes, zone, valid_hours)| {
            (
                Schedule {
                    weekdays: days.iter().map(|d| d.to_string()).collect(),
                    start: format!("{h:02}:{m:02}"),
                    duration_minutes,
                },
                zone,
                valid_hours,
            )
        })
}

proptest! {
    // Each case builds the index twice (whole and one decision at a time): 64 cases keep
    // the debug test run short.
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn the_index_agrees_with_a_scan_of_every_window(
        windows in prop::collection::vec(arb_window(), 0..40),
        host in prop::sample::select(vec!["h0", "h1", "h2", "h3", "x9"]),
        role in prop::sample::select(vec!["web", "db", "none"]),
        subject in prop::sample::select(vec!["file:/etc/a.conf", "file:/etc/x/y", "file:/usr/sbin/nginx", "package:nginx", "package:vim", "user:bob"]),
        at_min in 0i64..(60 * 62),
        // Mostly a heartbeat interval or less; sometimes an outage of hours.
        spread_s in prop::sample::select(vec![0i64, 1, 30, 59, 60, 61, 90, 600, 7200, 36_000]),
        actor in arb_actor(),
        provenance in arb_provenance(),
    ) {
        // Ids must be unique, as UUIDs are.
        let mut windows = windows;
        windows.sort_by_key(|w| w.id);
        windows.dedup_by_key(|w| w.id);
        let labels = BTreeMap::from([("role".to_owned(), role.to_owned())]);
        let after = DAY + at_min * 60_000;
        let before = after + spread_s * 1000;
        let probe = Probe { host, labels: &labels, subject, after, before, actor: actor.as_ref(), provenance: provenance.as_ref() };
        let expected = brute_force(&windows, &probe, 60_000);
        let decide = |index: &WindowIndex| match_event(
            index,
            HostFacts { hostname: host, labels: &labels },
            EventFacts { subject, kind: ChangeKind::Content, after: None, spooled: SpoolBounds { after, before }, actor: actor.as_ref(), provenance: provenance.as_ref() },
            60_000,
        );
        prop_assert_eq!(decide(&WindowIndex::build(&windows).unwrap()), expected.clone());
        // Built one decision at a time, in any order, with a window rejected on the way.
        let mut incremental = WindowIndex::default();
        for window in windows.iter().rev() {
            let mut rejected = window.clone();
            rejected.status = WindowStatus::Rejected;
            incremental = incremental.updated(window).unwrap().updated(&rejected).unwrap().updated(window).unwrap();
        }
        prop_assert_eq!(decide(&incremental), expected);
    }
}

// Why a window did not cover an event: the decision per (event, window) that matching and
// explaining share (`decide.rs`, `explain.rs`).

/// What `w` alone says about a change of `subject` on web-1 (label role=web) spooled in
/// `[after_h, before_h]` hours after DAY, by `actor`, with `provenance`.
fn said(
    w: &Window,
    subject: &str,
    (after_h, before_h): (f64, f64),
    actor: Option<Actor>,
    provenance: Option<Provenance>,
) -> Candidate {
    let labels = BTreeMap::from([("role".to_owned(), "web".to_owned())]);
    let after = Some(file(1));
    let mut found = explain::explain(
        std::slice::from_ref(w),
        HostFacts {
            hostname: "web-1",
            labels: &labels,
        },
        EventFacts {
            subject,
            kind: ChangeKind::Content,
            after: after.as_ref(),
            spooled: SpoolBounds {
                after: hours(after_h),
                before: hours(before_h),
            },
            actor: actor.as_ref(),
            provenance: provenance.as_ref(),
        },
        60_000,
        explain::MAX_CANDIDATES,
    );
    assert_eq!(
        found.candidates.len(),
        1,
        "{:?} is not a candidate",
        w.ticket
    );
    found.candidates.remove(0)
}

use explain::Candidate;

fn misses(miss: Miss) -> Decision {
    Decision::Misses(miss)
}

#[test]
fn a_window_that_was_never_approved_says_its_state() {
    let minute = 1.0 / 60.0;
    for (status, decided) in [
        (WindowStatus::Requested, None),
        (WindowStatus::Rejected, Some("bob")),
        (WindowStatus::Cancelled, None),
    ] {
        let mut w = window(1, names(&["web-1"]), &["file:/etc/**"], 2, 4);
        w.status = status;
        w.decided_by = decided.map(str::to_owned);
        let c = said(&w, "file:/etc/a", (3.0, 3.0 + minute), None, None);
        assert_eq!(c.decision, misses(Miss::NotApproved { status }));
        assert!(
            c.says.contains(&format!("is {status}, not approved")),
            "{}",
            c.says
        );
        assert_eq!(c.window.status, status);
    }
    // Cancelled after approval, closed: they were approved (time decides).
    let mut w = window(1, names(&["web-1"]), &["file:/etc/**"], 2, 4);
    w.status = WindowStatus::Cancelled;
    w.ended_at = Some(hours(3.5));
    assert_eq!(
        said(&w, "file:/etc/a", (3.0, 3.0), None, None).decision,
        Decision::Authorizes
    );
}

#[test]
fn host_and_subject_outside_the_scope_are_named() {
    let w = window(1, names(&["web-2"]), &["file:/etc/**"], 2, 4);
    let c = said(&w, "file:/etc/a", (3.0, 3.0), None, None);
    assert_eq!(c.decision, misses(Miss::HostOutOfScope));
    assert_eq!(c.says, "host web-1 is not in its scope");
    for scope in [globs(&["db-*"]), labels(&[("role", "db")])] {
        let w = window(1, scope, &["file:/etc/**"], 2, 4);
        assert_eq!(
            said(&w, "file:/etc/a", (3.0, 3.0), None, None).decision,
            misses(Miss::HostOutOfScope)
        );
    }
    let w = window(1, labels(&[("role", "web")]), &["file:/etc/nginx/**"], 2, 4);
    let c = said(&w, "file:/etc/ssh/sshd_config", (3.0, 3.0), None, None);
    assert_eq!(c.decision, misses(Miss::SubjectOutside));
    assert_eq!(
        c.says,
        "file:/etc/ssh/sshd_config is outside its subject globs"
    );
    // A file of another package than the window names: outside too.
    let w = window(1, names(&["web-1"]), &["package:nginx"], 2, 4);
    assert_eq!(
        said(
            &w,
            "file:/usr/bin/vim",
            (3.0, 3.0),
            None,
            Some(packaged("vim", true))
        )
        .decision,
        misses(Miss::SubjectOutside)
    );
}

#[test]
fn time_outside_the_window_says_how_far_and_which_end() {
    let minute = 1.0 / 60.0;
    let w = window(1, names(&["web-1"]), &["file:/etc/**"], 2, 4);
    // Closed at 3:00; the change reached the spool 12 minutes later.
    let mut closed = w.clone();
    closed.status = WindowStatus::Closed;
    closed.ended_at = Some(hours(3.0));
    let c = said(
        &closed,
        "file:/etc/a",
        (3.0 + 12.0 * minute, 3.0 + 13.0 * minute),
        None,
        None,
    );
    assert_eq!(
        c.decision,
        misses(Miss::After {
            ended: Ending::Closed,
            at: hours(3.0),
            by_ms: 12 * 60_000,
        })
    );
    assert_eq!(
        c.says,
        "the change came 12 minutes after the window was closed (2026-11-29T03:00:00Z)"
    );
    let mut cancelled = closed.clone();
    cancelled.status = WindowStatus::Cancelled;
    assert!(matches!(
        said(&cancelled, "file:/etc/a", (3.5, 3.6), None, None).decision,
        Decision::Misses(Miss::After {
            ended: Ending::Cancelled,
            ..
        })
    ));
    // After the planned end (beyond the tolerance), before the start.
    let c = said(&w, "file:/etc/a", (5.5, 5.6), None, None);
    assert_eq!(
        c.decision,
        misses(Miss::After {
            ended: Ending::PlannedEnd,
            at: hours(4.0),
            by_ms: 90 * 60_000,
        })
    );
    assert!(
        c.says.contains("1 hour 30 minutes after the window ended"),
        "{}",
        c.says
    );
    let c = said(&w, "file:/etc/a", (1.0, 1.0 + 20.0 * minute), None, None);
    assert_eq!(
        c.decision,
        misses(Miss::Before {
            opens: Opening::Start,
            at: hours(2.0),
            by_ms: 40 * 60_000,
        })
    );
    assert!(
        c.says.contains("40 minutes before the window opened"),
        "{}",
        c.says
    );
    // Open for part of the spool interval only.
    let c = said(&w, "file:/etc/a", (3.5, 4.5), None, None);
    assert_eq!(c.decision, misses(Miss::NotProvablyInside));
    assert!(c.says.contains("not provably inside"), "{}", c.says);
}

#[test]
fn a_recurring_window_names_its_nearest_occurrence() {
    // Every day 01:00-03:00Z, valid for a week from DAY - 1 day.
    let mut daily = window(1, names(&["web-1"]), &["package:*"], -24, 6 * 24);
    daily.kind = WindowKind::Standard;
    daily.schedule = Some(Schedule {
        weekdays: ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
            .map(str::to_owned)
            .to_vec(),
        start: "01:00".into(),
        duration_minutes: 120,
    });
    let c = said(&daily, "package:nginx", (3.5, 3.6), None, None);
    assert_eq!(
        c.decision,
        misses(Miss::After {
            ended: Ending::Occurrence,
            at: hours(3.0),
            by_ms: 30 * 60_000,
        })
    );
    assert!(
        c.says
            .contains("30 minutes after its nearest occurrence ended"),
        "{}",
        c.says
    );
    let c = said(
        &daily,
        "package:nginx",
        (24.0 + 0.5, 24.0 + 0.6),
        None,
        None,
    );
    assert_eq!(
        c.decision,
        misses(Miss::Before {
            opens: Opening::Occurrence,
            at: hours(25.0),
            by_ms: 24 * 60_000,
        })
    );
    // Past the validity: its planned end.
    let c = said(
        &daily,
        "package:nginx",
        (7.0 * 24.0, 7.0 * 24.0),
        None,
        None,
    );
    assert!(matches!(
        c.decision,
        Decision::Misses(Miss::After {
            ended: Ending::PlannedEnd,
            ..
        })
    ));
}

#[test]
fn who_made_the_change_and_what_it_left_are_named_inside_the_window() {
    let mut w = window(
        7,
        names(&["web-1"]),
        &["file:/etc/**", "package:nginx"],
        2,
        4,
    );
    w.implementers = vec!["carol".into(), "dave".into()];
    let id = Uuid::from_u128(7);
    let at = (3.0, 3.0);
    let c = said(&w, "file:/etc/a", at, Some(login("bob")), None);
    assert_eq!(
        c.decision,
        Decision::Flags(Outcome::MadeByApprover {
            window_id: id,
            actor: "bob".into()
        })
    );
    assert!(
        c.says.contains("made by bob, who approved the window"),
        "{}",
        c.says
    );
    let c = said(&w, "file:/etc/a", at, Some(login("mallory")), None);
    assert_eq!(
        c.decision,
        Decision::Flags(Outcome::WrongImplementer {
            window_id: id,
            actor: "mallory".into()
        })
    );
    assert!(
        c.says
            .contains("made by mallory, not one of its implementers (carol, dave)"),
        "{}",
        c.says
    );
    let c = said(&w, "file:/etc/a", at, None, None);
    assert_eq!(
        c.decision,
        Decision::Flags(Outcome::ActorUnknown { window_id: id })
    );
    assert!(c.says.contains("could not tell who"), "{}", c.says);
    assert_eq!(
        said(&w, "file:/etc/a", at, Some(login("carol")), None).decision,
        Decision::Authorizes
    );
    // Another end state than the one approved.
    let mut expecting = w.clone();
    expecting.expected = vec![ExpectedState {
        subject: "file:/etc/a".into(),
        hash: Some(ContentHash([9; 32])),
        version: None,
        absent: false,
    }];
    let c = said(&expecting, "file:/etc/a", at, Some(login("carol")), None);
    assert!(
        matches!(
            &c.decision,
            Decision::Flags(Outcome::UnexpectedState { .. })
        ),
        "{c:?}"
    );
    assert!(c.says.contains("approved another end state"), "{}", c.says);
    // A file claiming the package with other content.
    let c = said(
        &w,
        "file:/usr/sbin/nginx",
        at,
        Some(login("carol")),
        Some(packaged("nginx", false)),
    );
    assert_eq!(
        c.decision,
        Decision::Flags(Outcome::PackageMismatch {
            window_id: id,
            package: "nginx".into()
        })
    );
    assert!(c.says.contains("not the packaged one"), "{}", c.says);
    assert_eq!(c.window.implementers, ["carol", "dave"]);
    assert_eq!(c.window.ticket, "CHG-7");
}

#[test]
fn candidates_are_near_or_in_scope_nearest_first_and_bounded() {
    let labels_web = BTreeMap::from([("role".to_owned(), "web".to_owned())]);
    let host = HostFacts {
        hostname: "web-1",
        labels: &labels_web,
    };
    let event = |after: &SpoolBounds| EventFacts {
        subject: "file:/etc/a",
        kind: ChangeKind::Content,
        after: None,
        spooled: *after,
        actor: None,
        provenance: None,
    };
    let spooled = SpoolBounds {
        after: hours(10.0),
        before: hours(10.0),
    };
    let windows = [
        // Near, another host: a candidate (host out of scope).
        window(1, names(&["db-1"]), &["user:*"], 8, 9),
        // Far, another host: not one.
        window(2, names(&["db-1"]), &["file:/etc/**"], -100, -99),
        // Far, this host and subject: a candidate (the same change approved days ago).
        window(3, names(&["web-1"]), &["file:/etc/**"], -100, -99),
        // Far, this host, another subject: not one.
        window(4, names(&["web-1"]), &["file:/usr/**"], -100, -99),
        // Nearest: covering.
        window(5, globs(&["web-*"]), &["file:/etc/**"], 9, 11),
    ];
    let found = explain::explain(&windows, host, event(&spooled), 60_000, 10);
    let ids: Vec<u128> = found
        .candidates
        .iter()
        .map(|c| c.window.id.as_u128())
        .collect();
    assert_eq!(ids, [5, 1, 3]);
    assert_eq!(found.candidates[0].decision, Decision::Authorizes);
    assert_eq!(found.omitted, 0);
    // The same window the matcher picks.
    assert_eq!(
        match_event(
            &WindowIndex::build(&windows).unwrap(),
            host,
            event(&spooled),
            60_000
        ),
        authorized(5)
    );
    let cut = explain::explain(&windows, host, event(&spooled), 60_000, 2);
    assert_eq!(cut.candidates.len(), 2);
    assert_eq!(cut.omitted, 1);
}

#[test]
fn decisions_and_durations_read_back_from_json() {
    for decision in [
        Decision::Authorizes,
        Decision::Flags(Outcome::MadeByApprover {
            window_id: Uuid::from_u128(1),
            actor: "bob".into(),
        }),
        misses(Miss::HostOutOfScope),
        misses(Miss::NotApproved {
            status: WindowStatus::Rejected,
        }),
        misses(Miss::After {
            ended: Ending::Closed,
            at: hours(3.0),
            by_ms: 1,
        }),
    ] {
        let text = serde_json::to_string(&decision).unwrap();
        assert_eq!(
            serde_json::from_str::<Decision>(&text).unwrap(),
            decision,
            "{text}"
        );
    }
    assert_eq!(
        serde_json::to_value(misses(Miss::After {
            ended: Ending::Closed,
            at: hours(3.0),
            by_ms: 720_000,
        }))
        .unwrap(),
        serde_json::json!({"verdict": "misses", "reason": "after", "ended": "closed",
                           "at": "2026-11-29T03:00:00Z", "by_ms": 720_000})
    );
    for (ms, words) in [
        (0, "less than a second"),
        (999, "less than a second"),
        (1_000, "1 second"),
        (45_000, "45 seconds"),
        (12 * 60_000 + 59_000, "12 minutes"),
        (HOUR, "1 hour"),
        (3 * HOUR + 5 * 60_000, "3 hours 5 minutes"),
        (2 * 24 * HOUR + 4 * HOUR, "2 days 4 hours"),
    ] {
        assert_eq!(span(ms), words);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Explaining decides with matching's rule: the window matching picks authorizes in the
    /// explanation, and a window the explanation says authorizes is one matching would
    /// pick on its own.
    #[test]
    fn explaining_agrees_with_matching(
        windows in prop::collection::vec(arb_window(), 0..20),
        host in prop::sample::select(vec!["h0", "h1", "x9"]),
        subject in prop::sample::select(vec!["file:/etc/a.conf", "file:/usr/sbin/nginx", "package:nginx"]),
        at_min in 0i64..(60 * 62),
        spread_s in prop::sample::select(vec![0i64, 30, 90, 7200]),
        actor in arb_actor(),
        provenance in arb_provenance(),
    ) {
        let mut windows = windows;
        windows.sort_by_key(|w| w.id);
        windows.dedup_by_key(|w| w.id);
        let labels = BTreeMap::from([("role".to_owned(), "web".to_owned())]);
        let host = HostFacts { hostname: host, labels: &labels };
        let after = DAY + at_min * 60_000;
        let event = EventFacts { subject, kind: ChangeKind::Content, after: None, spooled: SpoolBounds { after, before: after + spread_s * 1000 }, actor: actor.as_ref(), provenance: provenance.as_ref() };
        let judged = judge(&WindowIndex::build(&windows).unwrap(), host, event, 60_000);
        let explained = explain::explain(&windows, host, event, 60_000, usize::MAX);
        if let Outcome::Authorized { window_id } = judged.outcome {
            prop_assert!(explained.candidates.iter().any(|c| c.window.id == window_id && c.decision == Decision::Authorizes));
        }
        for c in &explained.candidates {
            let alone: Vec<Window> = windows.iter().filter(|w| w.id == c.window.id).cloned().collect();
            let single = judge(&WindowIndex::build(&alone).unwrap(), host, event, 60_000);
            prop_assert_eq!(
                c.decision == Decision::Authorizes,
                single.outcome == Outcome::Authorized { window_id: c.window.id }
            );
            if let Decision::Flags(flag) = &c.decision {
                prop_assert_eq!(&single.outcome, flag);
            }
            if c.decision == Decision::Misses(Miss::NotProvablyInside) {
                prop_assert_eq!(single.not_provably_in, Some(c.window.id));
            }
        }
    }
}
