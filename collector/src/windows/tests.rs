use std::collections::BTreeMap;

use uuid::Uuid;

use super::lifecycle::{Action, Refusal, check};
use super::schedule::Schedule;
use super::validate::{WindowRequest, validate};
use super::*;
use crate::clock::parse_instant;
use crate::identity::{Principal, Role};

/// A change to the valid request, and what the refusal must say.
type Broken = (Box<dyn Fn(&mut WindowRequest)>, &'static str);
/// A window's status, an action, who does it, and a check of the answer.
type Rule<'a> = (
    WindowStatus,
    Action,
    &'a Principal,
    Box<dyn Fn(Result<(), Refusal>) -> bool>,
);

/// 2026-11-20T00:00:00Z: before every window in these tests.
fn now() -> i64 {
    parse_instant("2026-11-20T00:00:00Z").unwrap()
}

fn request() -> WindowRequest {
    WindowRequest {
        ticket: "CHG-1042".into(),
        title: "nginx upgrade".into(),
        kind: WindowKind::Normal,
        hosts: HostScope {
            names: vec!["web-1".into()],
            ..HostScope::default()
        },
        subjects: vec!["file:/etc/nginx/**".into(), "package:nginx*".into()],
        start: "2026-11-29T02:00".into(),
        end: "2026-11-29T04:00".into(),
        time_zone: "Europe/Paris".into(),
        ..WindowRequest::default()
    }
}

fn problems(request: &WindowRequest) -> Vec<String> {
    match validate(request, "alice", now()) {
        Err(problems) => problems,
        other => panic!("expected problems, got {other:?}"),
    }
}

#[track_caller]
fn refused(request: WindowRequest, fragment: &str) {
    let problems = problems(&request);
    assert!(
        problems.iter().any(|p| p.contains(fragment)),
        "{problems:?} lacks {fragment:?}"
    );
}

#[test]
fn local_times_are_placed_in_the_time_zone() {
    let window = validate(&request(), "alice", now()).unwrap();
    // Paris is UTC+1 in November.
    assert_eq!(window.start, parse_instant("2026-11-29T01:00:00Z").unwrap());
    assert_eq!(window.end, parse_instant("2026-11-29T03:00:00Z").unwrap());
    assert_eq!(window.status, WindowStatus::Requested);
    assert_eq!(window.requester, "alice");

    let mut utc = request();
    utc.start = "2026-11-29T01:00:00Z".into();
    assert_eq!(validate(&utc, "alice", now()).unwrap().start, window.start);
}

#[test]
fn a_dst_gap_moves_forward() {
    let mut spring = request();
    // 02:30 does not exist in Paris on 2027-03-28.
    spring.start = "2027-03-28T02:30".into();
    spring.end = "2027-03-28T05:00".into();
    let window = validate(&spring, "alice", now()).unwrap();
    assert_eq!(window.start, parse_instant("2027-03-28T01:30:00Z").unwrap());
}

#[test]
fn impossible_requests_say_what_is_wrong() {
    #[rustfmt::skip]
    let cases: Vec<Broken> = vec![
        (Box::new(|r| r.end = "2026-11-29T01:00".into()), "is not after start"),
        (Box::new(|r| r.end = r.start.clone()), "is not after start"),
        (Box::new(|r| r.time_zone = "Europe/Pariss".into()), "unknown time zone `Europe/Pariss`"),
        (Box::new(|r| r.hosts = HostScope::default()), "empty host scope"),
        (Box::new(|r| r.subjects.clear()), "empty subject scope"),
        (Box::new(|r| r.subjects = vec!["/etc/nginx/**".into()]), "has no namespace: write `file:/etc/nginx/**`"),
        (Box::new(|r| r.subjects = vec!["file:etc/x".into()]), "start with `/` or `**`"),
        (Box::new(|r| r.subjects = vec!["file:/etc/[x".into()]), "not a valid glob"),
        (Box::new(|r| r.subjects = vec!["Package:x".into()]), "is not a namespace"),
        (Box::new(|r| r.start = "tomorrow".into()), "start: `tomorrow` is not a date and time"),
        (Box::new(|r| r.ticket = "  ".into()), "ticket is empty"),
        (Box::new(|r| r.title = "a\u{7}b".into()), "title contains control characters"),
        (Box::new(|r| r.hosts.globs = vec!["web-[".into()]), "`web-[` is not a valid glob"),
        (Box::new(|r| r.hosts.names = vec!["web 1".into()]), "contains spaces"),
        (Box::new(|r| { r.start = "2026-11-01T00:00".into(); r.end = "2026-12-15T00:00".into(); }), "more than 31 days"),
        (Box::new(|r| { r.start = "2026-11-01T00:00".into(); r.end = "2026-11-02T00:00".into(); }), "record work already done as an emergency window"),
        (Box::new(|r| r.expected = vec![ExpectedState { subject: "file:/etc/ssh/sshd_config".into(), hash: None, version: Some("1".into()), absent: false }]), "is not covered by the window's subjects"),
        (Box::new(|r| r.expected = vec![ExpectedState { subject: "package:nginx".into(), hash: None, version: Some("1".into()), absent: true }]), "exactly one of"),
    ];
    for (change, fragment) in cases {
        let mut request = request();
        change(&mut request);
        refused(request, fragment);
    }
}

#[test]
fn every_problem_is_reported_at_once() {
    let mut request = request();
    request.ticket.clear();
    request.hosts = HostScope::default();
    request.time_zone = "Mars/Olympus".into();
    assert_eq!(problems(&request).len(), 3, "{:?}", problems(&request));
}

#[test]
fn emergency_windows_may_lie_in_the_past() {
    let mut late = request();
    late.kind = WindowKind::Emergency;
    late.start = "2026-11-19T03:00".into();
    late.end = "2026-11-19T05:00".into();
    assert!(validate(&late, "alice", now()).is_ok());
}

fn standard(days: &[&str], start: &str, minutes: u32) -> WindowRequest {
    WindowRequest {
        kind: WindowKind::Standard,
        start: "2026-11-20T00:00".into(),
        end: "2027-11-19T00:00".into(),
        schedule: Some(Schedule {
            weekdays: days.iter().map(|d| d.to_string()).collect(),
            start: start.into(),
            duration_minutes: minutes,
        }),
        ..request()
    }
}

#[test]
fn recurring_standard_windows_are_checked_and_valid_for_a_year_at_most() {
    let window = validate(&standard(&["sun"], "02:00", 120), "alice", now()).unwrap();
    assert_eq!(window.schedule.unwrap().weekdays, ["sun"]);
    #[rustfmt::skip]
    let cases: Vec<Broken> = vec![
        (Box::new(|r| r.kind = WindowKind::Normal), "a schedule makes a recurring standard window, but kind is normal"),
        (Box::new(|r| r.schedule.as_mut().unwrap().weekdays = vec![]), "schedule.weekdays is empty"),
        (Box::new(|r| r.schedule.as_mut().unwrap().weekdays = vec!["sun".into(), "sunday".into()]), "schedule.weekdays[1]: `sunday` is not a weekday"),
        (Box::new(|r| r.schedule.as_mut().unwrap().weekdays = vec!["sun".into(), "sun".into()]), "schedule.weekdays[1]: `sun` is listed twice"),
        (Box::new(|r| r.schedule.as_mut().unwrap().start = "2:00".into()), "schedule.start: `2:00` is not a local time"),
        (Box::new(|r| r.schedule.as_mut().unwrap().start = "24:00".into()), "schedule.start: `24:00`"),
        (Box::new(|r| r.schedule.as_mut().unwrap().duration_minutes = 0), "schedule.duration_minutes is 0, expected 1 to 1440"),
        (Box::new(|r| r.schedule.as_mut().unwrap().duration_minutes = 1441), "is 1441"),
        (Box::new(|r| r.end = "2027-11-22T00:00".into()), "more than 366 days; re-approve the routine change each year"),
        // 2026-11-20 is a Friday: no Sunday before the 21st ends.
        (Box::new(|r| r.end = "2026-11-21T23:00".into()), "the schedule has no occurrence between start"),
    ];
    for (change, fragment) in cases {
        let mut request = standard(&["sun"], "02:00", 120);
        change(&mut request);
        refused(request, fragment);
    }
    // Every schedule problem at once, and the unknown zone named once.
    let mut many = standard(&["x"], "noon", 0);
    many.time_zone = "Mars/Olympus".into();
    let found = problems(&many);
    assert_eq!(found.len(), 4, "{found:?}");
}

#[test]
fn implementers_are_login_names_listed_once() {
    let mut named = request();
    named.implementers = vec!["carol".into(), "dave".into()];
    assert_eq!(
        validate(&named, "alice", now()).unwrap().implementers,
        ["carol", "dave"]
    );
    #[rustfmt::skip]
    let cases: Vec<Broken> = vec![
        (Box::new(|r| r.implementers = vec!["".into()]), "implementers[0]: `` is not a login name"),
        (Box::new(|r| r.implementers = vec!["carol".into(), "car ol".into()]), "implementers[1]: \"car ol\" contains spaces"),
        (Box::new(|r| r.implementers = vec!["uid:0".into()]), "contains spaces, control characters or `:`"),
        (Box::new(|r| r.implementers = vec!["carol".into(), "carol".into()]), "implementers[1]: `carol` is listed twice"),
        (Box::new(|r| r.implementers = (0..65).map(|i| format!("u{i}")).collect()), "65 names, at most 64"),
    ];
    for (change, fragment) in cases {
        let mut request = request();
        change(&mut request);
        refused(request, fragment);
    }
}

#[test]
fn unknown_request_fields_are_refused() {
    let mut json = serde_json::to_value(request()).unwrap();
    json["subject"] = serde_json::json!(["file:/x"]);
    let err = serde_json::from_value::<WindowRequest>(json).unwrap_err();
    assert!(err.to_string().contains("unknown field `subject`"), "{err}");
}

fn person(name: &str, role: Role) -> Principal {
    Principal {
        token_id: Uuid::now_v7(),
        name: name.into(),
        role,
        host_id: None,
    }
}

fn window(status: WindowStatus) -> Window {
    let mut window = validate(&request(), "alice", now()).unwrap();
    window.status = status;
    window
}

#[test]
fn lifecycle_rules() {
    use Action::*;
    use WindowStatus::*;
    let alice = person("alice", Role::ChangeManager);
    let bob = person("bob", Role::ChangeManager);
    let root = person("root", Role::Admin);
    let eve = person("eve", Role::Security);
    let audrey = person("audrey", Role::Auditor);
    let forbidden = |fragment: &'static str| move |r: Result<(), Refusal>| matches!(r, Err(Refusal::Forbidden(m)) if m.contains(fragment));
    let conflict = |r: Result<(), Refusal>| matches!(r, Err(Refusal::Conflict(_)));
    let ok = |r: Result<(), Refusal>| r.is_ok();
    #[rustfmt::skip]
    let cases: Vec<Rule<'_>> = vec![
        (Requested, Approve, &bob, Box::new(ok)),
        (Requested, Approve, &root, Box::new(forbidden("approve needs the change-manager role; root has role admin"))),
        (Requested, Reject, &root, Box::new(forbidden("needs the change-manager role"))),
        (Requested, Cancel, &root, Box::new(ok)),
        (Requested, Approve, &alice, Box::new(forbidden("segregation of duties: alice requested"))),
        (Requested, Reject, &alice, Box::new(forbidden("cancel it"))),
        (Requested, Approve, &eve, Box::new(forbidden("needs the change-manager role"))),
        (Requested, Cancel, &eve, Box::new(forbidden("needs the change-manager or admin role"))),
        (Requested, Approve, &audrey, Box::new(forbidden("has role auditor"))),
        (Requested, Reject, &bob, Box::new(ok)),
        (Requested, Cancel, &alice, Box::new(ok)),
        (Requested, Close, &alice, Box::new(conflict)),
        (Approved, Approve, &bob, Box::new(conflict)),
        (Approved, Close, &alice, Box::new(ok)),
        (Approved, Cancel, &bob, Box::new(ok)),
        (Rejected, Approve, &bob, Box::new(conflict)),
        (Closed, Cancel, &alice, Box::new(conflict)),
        (Cancelled, Close, &alice, Box::new(conflict)),
    ];
    for (status, action, actor, expect) in cases {
        let result = check(&window(status), action, actor, &[]);
        assert!(
            expect(result.clone()),
            "{status} {action} by {}: {result:?}",
            actor.name
        );
    }
}

#[test]
fn the_requester_cannot_decide_under_another_spelling_or_through_a_token_they_issued() {
    let requested = window(WindowStatus::Requested);
    for alias in [
        "Alice",
        "alice ",
        " ALICE",
        "\u{430}lice",
        "alice\u{200b}",
        "ａｌｉｃｅ",
    ] {
        let result = check(
            &requested,
            Action::Approve,
            &person(alias, Role::ChangeManager),
            &[],
        );
        assert!(
            matches!(&result, Err(Refusal::Forbidden(m)) if m.contains("segregation of duties: alice requested")),
            "{alias:?}: {result:?}"
        );
    }
    let bob = person("bob", Role::ChangeManager);
    // bob's token was issued by alice (or by someone alice issued a token to).
    for issuers in [
        vec!["alice".to_owned()],
        vec!["mallory".into(), "Alice".into()],
    ] {
        let result = check(&requested, Action::Approve, &bob, &issuers);
        assert!(
            matches!(&result, Err(Refusal::Forbidden(m)) if m.contains("token was issued by")),
            "{issuers:?}: {result:?}"
        );
    }
    assert!(
        check(
            &requested,
            Action::Approve,
            &bob,
            &["local:root".into(), "root".into()]
        )
        .is_ok()
    );
    // Cancelling and closing are not decisions: the issuer does not matter.
    assert!(check(&requested, Action::Cancel, &bob, &["alice".into()]).is_ok());
}

#[test]
fn only_approved_windows_authorize_and_ending_shortens_them() {
    let mut w = window(WindowStatus::Requested);
    assert!(!w.was_approved());
    w.status = WindowStatus::Approved;
    w.decided_by = Some("bob".into());
    assert!(w.was_approved());
    assert_eq!(w.effective_end(), w.end);
    w.status = WindowStatus::Cancelled;
    w.ended_at = Some(w.start + 1000);
    assert!(
        w.was_approved(),
        "what happened before the cancellation stays covered"
    );
    assert_eq!(w.effective_end(), w.start + 1000);
    w.decided_by = None;
    assert!(!w.was_approved(), "cancelled before approval");
}

#[test]
fn expected_states_compare_hash_version_or_absence() {
    use driftwatch_common::api::v1::SubjectState;
    let version = |v: &str| SubjectState::Fields {
        fields: BTreeMap::from([("version".to_owned(), v.to_owned())]),
    };
    let expect = ExpectedState {
        subject: "package:nginx".into(),
        hash: None,
        version: Some("1.24.0-1".into()),
        absent: false,
    };
    assert!(expect.is_met_by(Some(&version("1.24.0-1"))));
    assert!(!expect.is_met_by(Some(&version("1.25.0-1"))));
    assert!(!expect.is_met_by(None));
    let gone = ExpectedState {
        absent: true,
        version: None,
        ..expect
    };
    assert!(gone.is_met_by(None));
    assert_eq!(gone.describe(), "absent");
}
