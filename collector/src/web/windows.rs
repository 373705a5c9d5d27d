//! Change windows: active, upcoming and recurring windows in a list and on a timeline (a
//! server-rendered SVG: the CSP allows no inline style), request (and record an
//! emergency window from an open drift, scope and times filled in from it), approve,
//! reject, cancel and close; the close-out shows the drift it will accept and what it
//! will not; the evidence bundle.
//!
//! Buttons follow `App::may_decide`, the rule `App::decide` applies (role, status,
//! segregation of duties through the viewer's token lineage): a requester, or a token the
//! requester issued, sees why it cannot approve instead of a button.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use uuid::Uuid;

use super::drift::parse_id;
use super::form::Fields;
use super::layout::{self, Layout};
use super::session::{Viewer, app_error, csrf_refused};
use crate::api::AppState;
use crate::app::{Error as AppError, Limit};
use crate::clock::Millis;
use crate::drift::DriftStatus;
use crate::reports::ops::BundleParams;
use crate::store::{DriftFilter, Store};
use crate::windows::lifecycle::{self, Action, WINDOW_ROLES};
use crate::windows::schedule::Schedule;
use crate::windows::validate::WindowRequest;
use crate::windows::{ExpectedState, HostScope, Window, WindowKind, WindowStatus};
use driftwatch_common::hash::ContentHash;

/// Roles that may fetch a window's evidence bundle (`App::window_evidence`; a change
/// manager only for windows they requested, decided or closed).
const EVIDENCE_ROLES: [crate::identity::Role; 4] = [
    crate::identity::Role::Auditor,
    crate::identity::Role::Security,
    crate::identity::Role::Admin,
    crate::identity::Role::ChangeManager,
];
/// The timeline's span: from a day ago to a week ahead.
const TIMELINE_BEFORE_MS: i64 = 86_400_000;
const TIMELINE_AFTER_MS: i64 = 7 * 86_400_000;
/// Margin an emergency window recorded from a drift adds around the change's spool interval.
pub const EMERGENCY_MARGIN_MS: i64 = 5 * 60_000;

pub struct WindowRow {
    pub id: Uuid,
    pub ticket: String,
    pub title: String,
    pub kind: &'static str,
    pub status: &'static str,
    pub requester: String,
    pub hosts: String,
    pub subjects: String,
    pub when: String,
    pub schedule: Option<String>,
}

fn scope_text(scope: &HostScope) -> String {
    let mut parts: Vec<String> = scope.names.clone();
    parts.extend(scope.globs.iter().map(|g| format!("glob {g}")));
    if !scope.labels.is_empty() {
        parts.push(format!("labels {}", crate::app::labels_text(&scope.labels)));
    }
    parts.join(", ")
}

fn row(w: &Window) -> WindowRow {
    WindowRow {
        id: w.id,
        ticket: w.ticket.clone(),
        title: w.title.clone(),
        kind: w.kind.name(),
        status: w.status.name(),
        requester: w.requester.clone(),
        hosts: scope_text(&w.hosts),
        subjects: w.subjects.join(", "),
        when: format!(
            "{} – {} ({})",
            layout::instant(w.start),
            layout::instant(w.effective_end()),
            w.time_zone
        ),
        schedule: w.schedule.as_ref().map(ToString::to_string),
    }
}

/// Which list a window belongs in at `now`.
#[derive(Debug, PartialEq, Eq)]
pub enum Section {
    Active,
    Upcoming,
    Recurring,
    Requested,
    Ended,
}

pub fn section(w: &Window, now: Millis) -> Section {
    match w.status {
        WindowStatus::Requested => Section::Requested,
        WindowStatus::Approved if w.schedule.is_some() && w.effective_end() > now => {
            Section::Recurring
        }
        WindowStatus::Approved if w.start <= now && now < w.effective_end() => Section::Active,
        WindowStatus::Approved if w.start > now => Section::Upcoming,
        _ => Section::Ended,
    }
}

/// A bar of the timeline (SVG coordinates, 0 to 1000 across).
pub struct Bar {
    pub id: Uuid,
    pub y: usize,
    pub x: i64,
    pub width: i64,
    pub label: String,
    pub class: &'static str,
}

/// Bars of the windows overlapping `[from, to]`, one lane each.
pub fn bars(windows: &[&Window], from: Millis, to: Millis) -> Vec<Bar> {
    let span = (to - from).max(1);
    let pos = |t: Millis| ((t.clamp(from, to) - from) * 1000) / span;
    windows
        .iter()
        .filter(|w| w.start < to && w.effective_end() > from)
        .enumerate()
        .map(|(i, w)| Bar {
            id: w.id,
            y: 24 + i * 22,
            x: pos(w.start),
            width: (pos(w.effective_end()) - pos(w.start)).max(2),
            label: format!("{} {}", w.ticket, w.status),
            class: match (w.status, w.kind) {
                (WindowStatus::Requested, _) => "requested",
                (_, WindowKind::Emergency) => "emergency",
                _ => "approved",
            },
        })
        .collect()
}

#[derive(Template)]
#[template(path = "windows.html")]
struct WindowsPage {
    layout: Layout,
    sections: Vec<(&'static str, Vec<WindowRow>)>,
    bars: Vec<Bar>,
    height: usize,
    from: String,
    to: String,
    now_x: i64,
    can_request: bool,
}

/// `GET /ui/windows`.
pub async fn list<S: Store>(State(app): State<AppState<S>>, viewer: Viewer) -> Response {
    let mut windows = match app.windows(&viewer.principal, None).await {
        Ok(w) => w,
        Err(err) => return app_error(err),
    };
    windows.sort_by_key(|w| (w.start, w.id));
    let now = app.now();
    let pick = |s: Section| -> Vec<WindowRow> {
        windows
            .iter()
            .filter(|w| section(w, now) == s)
            .map(row)
            .collect()
    };
    let mut ended = pick(Section::Ended);
    ended.reverse();
    ended.truncate(50);
    let (from, to) = (now - TIMELINE_BEFORE_MS, now + TIMELINE_AFTER_MS);
    let shown: Vec<&Window> = windows
        .iter()
        .filter(|w| matches!(w.status, WindowStatus::Requested) || w.was_approved())
        .collect();
    let bars = bars(&shown, from, to);
    layout::render(
        StatusCode::OK,
        &WindowsPage {
            layout: Layout::new("Change windows", Some(&viewer), "/ui/windows"),
            sections: vec![
                ("Active now", pick(Section::Active)),
                ("Upcoming", pick(Section::Upcoming)),
                ("Recurring", pick(Section::Recurring)),
                ("Awaiting a decision", pick(Section::Requested)),
                ("Ended (latest 50)", ended),
            ],
            height: 30 + bars.len() * 22,
            bars,
            from: layout::instant(from),
            to: layout::instant(to),
            now_x: (TIMELINE_BEFORE_MS * 1000) / (to - from),
            can_request: WINDOW_ROLES.contains(&viewer.principal.role),
        },
    )
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct NewQuery {
    /// An open drift item to record an emergency window for.
    pub drift: String,
}

/// The request form's values.
#[derive(Clone, Debug, Default)]
pub struct Draft {
    pub ticket: String,
    pub title: String,
    pub kind: String,
    pub hosts: String,
    pub subjects: String,
    pub start: String,
    pub end: String,
    pub time_zone: String,
    pub implementers: String,
    /// Recurring (standard windows): the checked weekdays (`mon` … `sun`), the local start
    /// time and the duration in minutes, as typed. All empty: not recurring.
    pub weekdays: Vec<String>,
    pub schedule_start: String,
    pub schedule_minutes: String,
    /// Expected end states, one per line: `SUBJECT hash HEX`, `SUBJECT version V` or
    /// `SUBJECT absent`.
    pub expected: String,
}

/// The weekdays of a schedule, as the API names them, with their label on the form.
const WEEKDAYS: [(&str, &str); 7] = [
    ("mon", "Monday"),
    ("tue", "Tuesday"),
    ("wed", "Wednesday"),
    ("thu", "Thursday"),
    ("fri", "Friday"),
    ("sat", "Saturday"),
    ("sun", "Sunday"),
];

/// A weekday box on the form.
struct WeekdayBox {
    value: &'static str,
    label: &'static str,
    checked: bool,
}

#[derive(Template)]
#[template(path = "window_new.html")]
struct NewPage {
    layout: Layout,
    draft: Draft,
    from_drift: Option<String>,
    problems: Vec<String>,
    kinds: Vec<(&'static str, bool)>,
    weekdays: Vec<WeekdayBox>,
}

fn new_page(
    viewer: &Viewer,
    status: StatusCode,
    draft: Draft,
    from_drift: Option<String>,
    problems: Vec<String>,
) -> Response {
    let kinds = ["normal", "standard", "emergency"]
        .into_iter()
        .map(|k| (k, k == draft.kind))
        .collect();
    let weekdays = WEEKDAYS
        .iter()
        .map(|&(value, label)| WeekdayBox {
            value,
            label,
            checked: draft.weekdays.iter().any(|d| d == value),
        })
        .collect();
    layout::render(
        status,
        &NewPage {
            layout: Layout::new("Request a change window", Some(viewer), "/ui/windows"),
            draft,
            from_drift,
            problems,
            kinds,
            weekdays,
        },
    )
}

/// `GET /ui/windows/new[?drift=ID]`: the request form; from a drift, an emergency window
/// on its host and subject, from before the earliest change needing review reached the
/// spool to after the latest did.
pub async fn new<S: Store>(
    State(app): State<AppState<S>>,
    viewer: Viewer,
    Query(query): Query<NewQuery>,
) -> Response {
    if !WINDOW_ROLES.contains(&viewer.principal.role) {
        return app_error(crate::app::Error::Forbidden(format!(
            "requesting a change window needs the change_manager or admin role; {} has role {}",
            viewer.principal.name, viewer.principal.role
        )));
    }
    let mut draft = Draft {
        kind: "normal".into(),
        time_zone: "UTC".into(),
        ..Draft::default()
    };
    let mut from_drift = None;
    if !query.drift.is_empty() {
        let id = match parse_id(&query.drift, "drift item") {
            Ok(id) => id,
            Err(response) => return *response,
        };
        let detail = match app.drift_detail(&viewer.principal, id).await {
            Ok(d) => d,
            Err(err) => return app_error(err),
        };
        let spooled = detail
            .explanation
            .events
            .iter()
            .map(|e| (e.spooled_after, e.spooled_before));
        let start = spooled.clone().map(|s| s.0).min();
        let end = spooled.map(|s| s.1).max();
        let (start, end) = match (start, end) {
            (Some(s), Some(e)) => (s, e),
            _ => (detail.item.opened_at, detail.item.last_event_at),
        };
        draft = Draft {
            ticket: String::new(),
            title: format!("Emergency change to {}", detail.item.subject),
            kind: "emergency".into(),
            hosts: detail.item.hostname.clone(),
            subjects: detail.item.subject.clone(),
            start: crate::clock::rfc3339(start - EMERGENCY_MARGIN_MS),
            end: crate::clock::rfc3339(end + EMERGENCY_MARGIN_MS),
            time_zone: "UTC".into(),
            ..Draft::default()
        };
        from_drift = Some(id.to_string());
    }
    new_page(&viewer, StatusCode::OK, draft, from_drift, Vec::new())
}

fn split(text: &str) -> Vec<String> {
    text.split([',', '\n'])
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The schedule fields as the API's [`Schedule`]: `None` when all are empty; the rest of
/// the checking (weekdays, time, duration range, kind) is `validate`'s, as for the API.
fn schedule_of(draft: &Draft) -> Result<Option<Schedule>, String> {
    let start = draft.schedule_start.trim();
    let minutes = draft.schedule_minutes.trim();
    if draft.weekdays.is_empty() && start.is_empty() && minutes.is_empty() {
        return Ok(None);
    }
    let duration_minutes = match minutes {
        "" => 0,
        text => text.parse::<u32>().map_err(|_| {
            format!("the schedule's duration must be a whole number of minutes, got `{text}`")
        })?,
    };
    Ok(Some(Schedule {
        weekdays: draft.weekdays.clone(),
        start: start.to_owned(),
        duration_minutes,
    }))
}

/// The expected-state lines as the API's [`ExpectedState`]s: `SUBJECT hash HEX`,
/// `SUBJECT version V` or `SUBJECT absent`, one per line; every malformed line is a problem.
fn expected_of(text: &str) -> Result<Vec<ExpectedState>, Vec<String>> {
    let mut found = Vec::new();
    let mut problems = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        let mut state = ExpectedState {
            subject: words[0].to_owned(),
            hash: None,
            version: None,
            absent: false,
        };
        match words[1..] {
            ["absent"] => state.absent = true,
            ["version", version] => state.version = Some(version.to_owned()),
            ["hash", hex] => match hex.parse::<ContentHash>() {
                Ok(hash) => state.hash = Some(hash),
                Err(why) => {
                    problems.push(format!("expected state, line {}: {why}", n + 1));
                    continue;
                }
            },
            _ => {
                problems.push(format!(
                    "expected state, line {}: write `SUBJECT hash HEX`, `SUBJECT version V` \
                     or `SUBJECT absent`, got `{line}`",
                    n + 1
                ));
                continue;
            }
        }
        found.push(state);
    }
    if problems.is_empty() {
        Ok(found)
    } else {
        Err(problems)
    }
}

/// The form as a request: host names, and `glob:` entries as host globs.
pub fn request_of(draft: &Draft) -> Result<WindowRequest, Vec<String>> {
    let mut problems = Vec::new();
    let kind = draft
        .kind
        .parse::<WindowKind>()
        .map_err(|why| problems.push(why))
        .ok();
    let schedule = schedule_of(draft).map_err(|why| problems.push(why)).ok();
    let expected = expected_of(&draft.expected)
        .map_err(|found| problems.extend(found))
        .ok();
    let (Some(kind), Some(schedule), Some(expected)) = (kind, schedule, expected) else {
        return Err(problems);
    };
    let mut hosts = HostScope::default();
    for entry in split(&draft.hosts) {
        match entry.strip_prefix("glob:") {
            Some(glob) => hosts.globs.push(glob.trim().to_owned()),
            None => hosts.names.push(entry),
        }
    }
    Ok(WindowRequest {
        ticket: draft.ticket.clone(),
        title: draft.title.clone(),
        kind,
        hosts,
        subjects: split(&draft.subjects),
        start: draft.start.trim().to_owned(),
        end: draft.end.trim().to_owned(),
        time_zone: draft.time_zone.trim().to_owned(),
        expected,
        schedule,
        implementers: split(&draft.implementers),
    })
}

/// `POST /ui/windows`: the request form; on success the window's page.
pub async fn create<S: Store>(
    State(app): State<AppState<S>>,
    viewer: Viewer,
    fields: Fields,
) -> Response {
    if !super::csrf::matches(&viewer.csrf, fields.get("csrf").unwrap_or_default()) {
        return csrf_refused();
    }
    let get = |name: &str| fields.get(name).unwrap_or_default().to_owned();
    let draft = Draft {
        ticket: get("ticket"),
        title: get("title"),
        kind: get("kind"),
        hosts: get("hosts"),
        subjects: get("subjects"),
        start: get("start"),
        end: get("end"),
        time_zone: get("time_zone"),
        implementers: get("implementers"),
        weekdays: fields.all("weekday").map(str::to_owned).collect(),
        schedule_start: get("schedule_start"),
        schedule_minutes: get("schedule_minutes"),
        expected: get("expected"),
    };
    let from_drift = fields
        .get("drift")
        .filter(|d| !d.is_empty())
        .map(str::to_owned);
    let request = match request_of(&draft) {
        Ok(r) => r,
        Err(problems) => {
            return new_page(
                &viewer,
                StatusCode::BAD_REQUEST,
                draft,
                from_drift,
                problems,
            );
        }
    };
    match app.create_window(&viewer.principal, &request).await {
        Ok(window) => Redirect::to(&format!("/ui/windows/{}", window.id)).into_response(),
        Err(crate::app::Error::BadRequest(why)) => new_page(
            &viewer,
            StatusCode::BAD_REQUEST,
            draft,
            from_drift,
            why.split("; ").map(str::to_owned).collect(),
        ),
        Err(err) => app_error(err),
    }
}

/// An action the viewer may take, or why not.
pub struct ActionView {
    pub action: &'static str,
    pub label: &'static str,
    /// Needs a comment (reject).
    pub needs_comment: bool,
}

pub struct DriftLine {
    pub id: Uuid,
    pub hostname: String,
    pub subject: String,
    pub status: &'static str,
    pub reason: String,
}

#[derive(Template)]
#[template(path = "window.html")]
struct WindowPage {
    layout: Layout,
    w: WindowRow,
    decided: Option<String>,
    ended: Option<String>,
    implementers: String,
    expected: Vec<String>,
    actions: Vec<ActionView>,
    /// Why the viewer cannot approve, when they have the role but may not (their own).
    cannot_approve: Option<String>,
    accepts: Vec<DriftLine>,
    refuses: Vec<DriftLine>,
    can_evidence: bool,
    closing: bool,
}

/// `GET /ui/windows/{id}`.
pub async fn show<S: Store>(
    State(app): State<AppState<S>>,
    viewer: Viewer,
    Path(id): Path<String>,
) -> Response {
    let id = match parse_id(&id, "window") {
        Ok(id) => id,
        Err(response) => return *response,
    };
    let window = match app.window(&viewer.principal, id).await {
        Ok(w) => w,
        Err(err) => return app_error(err),
    };
    let me = &viewer.principal;
    let mut actions = Vec::new();
    let mut cannot_approve = None;
    for (action, label) in [
        (Action::Approve, "Approve"),
        (Action::Reject, "Reject"),
        (Action::Close, "Close out"),
        (Action::Cancel, "Cancel"),
    ] {
        // The rule `App::decide` applies, token lineage included: no button App refuses.
        match app.may_decide(me, &window, action).await {
            Ok(_) => actions.push(ActionView {
                action: action.name(),
                label,
                needs_comment: action == Action::Reject,
            }),
            Err(AppError::Forbidden(why))
                if action == Action::Approve && lifecycle::DECISION_ROLES.contains(&me.role) =>
            {
                cannot_approve = Some(why);
            }
            Err(AppError::Forbidden(_) | AppError::Conflict(_)) => {}
            Err(err) => return app_error(err),
        }
    }
    // The close-out: what it accepts (authorized under it) and what it does not (flagged
    // under it, still open).
    let read = |status| {
        let app = app.clone();
        async move {
            app.drift_items(
                me,
                DriftFilter {
                    status: Some(status),
                    window_id: Some(id),
                    ..DriftFilter::default()
                },
                Limit {
                    asked: Some(1000),
                    default: 1000,
                    max: 1000,
                },
            )
            .await
        }
    };
    let lines = |items: Vec<crate::store::DriftItem>| -> Vec<DriftLine> {
        items
            .into_iter()
            .map(|d| DriftLine {
                id: d.id,
                hostname: d.hostname,
                subject: d.subject,
                status: d.status.name(),
                reason: d.reason.unwrap_or_default(),
            })
            .collect()
    };
    let accepts = match read(DriftStatus::Authorized).await {
        Ok(items) => lines(items),
        Err(err) => return app_error(err),
    };
    let refuses = match read(DriftStatus::Open).await {
        Ok(items) => lines(items),
        Err(err) => return app_error(err),
    };
    let page = WindowPage {
        layout: Layout::new(
            &format!("Window {}", window.ticket),
            Some(&viewer),
            "/ui/windows",
        ),
        w: row(&window),
        decided: window.decided_by.as_ref().map(|by| {
            format!(
                "{} by {} at {}{}",
                if window.status == WindowStatus::Rejected {
                    "rejected"
                } else {
                    "approved"
                },
                by,
                window.decided_at.map(layout::instant).unwrap_or_default(),
                window
                    .decision_comment
                    .as_ref()
                    .map_or_else(String::new, |c| format!(": {c}"))
            )
        }),
        ended: window.ended_by.as_ref().map(|by| {
            format!(
                "ended by {} at {}",
                by,
                window.ended_at.map(layout::instant).unwrap_or_default()
            )
        }),
        implementers: if window.implementers.is_empty() {
            "anyone but the approver".into()
        } else {
            window.implementers.join(", ")
        },
        expected: window
            .expected
            .iter()
            .map(|e| format!("{}: {}", e.subject, e.describe()))
            .collect(),
        actions,
        cannot_approve,
        closing: window.status == WindowStatus::Approved,
        accepts,
        refuses,
        can_evidence: EVIDENCE_ROLES.contains(&me.role),
    };
    layout::render(StatusCode::OK, &page)
}

/// `POST /ui/windows/{id}/decide`: `csrf`, `action` (approve, reject, cancel, close),
/// `comment` (required to reject).
pub async fn decide<S: Store>(
    State(app): State<AppState<S>>,
    viewer: Viewer,
    Path(id): Path<String>,
    fields: Fields,
) -> Response {
    if !super::csrf::matches(&viewer.csrf, fields.get("csrf").unwrap_or_default()) {
        return csrf_refused();
    }
    let id = match parse_id(&id, "window") {
        Ok(id) => id,
        Err(response) => return *response,
    };
    let action = match fields.get("action").unwrap_or_default() {
        "approve" => Action::Approve,
        "reject" => Action::Reject,
        "cancel" => Action::Cancel,
        "close" => Action::Close,
        _ => {
            return layout::error_page(
                StatusCode::BAD_REQUEST,
                "Choose an action: approve, reject, cancel or close.",
            );
        }
    };
    let comment = fields.get("comment").map(str::to_owned);
    match app.decide(&viewer.principal, id, action, comment).await {
        Ok(_) => Redirect::to(&format!("/ui/windows/{id}")).into_response(),
        Err(err) => app_error(err),
    }
}

/// `GET /ui/windows/{id}/evidence?format=html|markdown|json`: the close-out bundle, as
/// the API serves it (audited by `App::window_evidence`).
pub async fn evidence<S: Store>(
    State(app): State<AppState<S>>,
    viewer: Viewer,
    Path(id): Path<String>,
    Query(params): Query<BundleParams>,
) -> Response {
    let id = match parse_id(&id, "window") {
        Ok(id) => id,
        Err(response) => return *response,
    };
    match app.window_evidence(&viewer.principal, id, &params).await {
        Ok((bundle, format)) => crate::api::v1::reports::bundle_document(&app, id, &bundle, format),
        Err(err) => app_error(err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(status: WindowStatus, start: Millis, end: Millis) -> Window {
        let draft = Draft {
            ticket: "CHG-1".into(),
            title: "t".into(),
            kind: "normal".into(),
            hosts: "web-1, glob:db-*".into(),
            subjects: "file:/etc/**".into(),
            start: crate::clock::rfc3339(start),
            end: crate::clock::rfc3339(end),
            time_zone: "UTC".into(),
            ..Draft::default()
        };
        let request = request_of(&draft).unwrap();
        let mut w = crate::windows::validate::validate(&request, "carol", 0).unwrap();
        w.status = status;
        w
    }

    #[test]
    fn the_form_gives_the_api_its_schedule_and_expected_states_or_every_problem() {
        let draft = Draft {
            ticket: "STD-1".into(),
            title: "t".into(),
            kind: "standard".into(),
            hosts: "web-1".into(),
            subjects: "package:nginx*".into(),
            start: "2026-11-01T00:00".into(),
            end: "2026-12-01T00:00".into(),
            time_zone: "UTC".into(),
            weekdays: vec!["sun".into(), "wed".into()],
            schedule_start: "02:00".into(),
            schedule_minutes: "90".into(),
            expected: format!(
                "package:nginx version 1.2.3\n\n file:/etc/motd absent \nfile:/etc/a hash {}",
                "ab".repeat(32)
            ),
            ..Draft::default()
        };
        let request = request_of(&draft).unwrap();
        assert_eq!(
            request.schedule,
            Some(Schedule {
                weekdays: vec!["sun".into(), "wed".into()],
                start: "02:00".into(),
                duration_minutes: 90,
            })
        );
        assert_eq!(request.expected.len(), 3);
        assert_eq!(request.expected[0].version.as_deref(), Some("1.2.3"));
        assert!(request.expected[1].absent);
        assert_eq!(request.expected[1].subject, "file:/etc/motd");
        assert!(request.expected[2].hash.is_some());
        // Nothing typed: not recurring, nothing expected.
        let plain = Draft {
            weekdays: Vec::new(),
            schedule_start: String::new(),
            schedule_minutes: String::new(),
            expected: String::new(),
            ..draft.clone()
        };
        let request = request_of(&plain).unwrap();
        assert_eq!((request.schedule, request.expected.len()), (None, 0));
        // Every problem at once, each naming its line.
        let bad = Draft {
            schedule_minutes: "ninety".into(),
            expected: "package:nginx\nfile:/etc/a hash nothex\nfile:/x absent".into(),
            kind: "weekly".into(),
            ..draft
        };
        let problems = request_of(&bad).unwrap_err();
        assert_eq!(problems.len(), 4, "{problems:?}");
        assert!(
            problems
                .iter()
                .any(|p| p.contains("whole number of minutes"))
        );
        assert!(
            problems
                .iter()
                .any(|p| p.starts_with("expected state, line 1: write"))
        );
        assert!(
            problems
                .iter()
                .any(|p| p.starts_with("expected state, line 2:"))
        );
    }

    #[test]
    fn windows_fall_into_their_sections() {
        const H: i64 = 3_600_000;
        let now = 1_800_000_000_000;
        let w = window(WindowStatus::Approved, now - H, now + H);
        assert_eq!(w.hosts.names, ["web-1"]);
        assert_eq!(w.hosts.globs, ["db-*"]);
        assert_eq!(section(&w, now), Section::Active);
        assert_eq!(
            section(&window(WindowStatus::Approved, now + H, now + 2 * H), now),
            Section::Upcoming
        );
        assert_eq!(
            section(&window(WindowStatus::Requested, now + H, now + 2 * H), now),
            Section::Requested
        );
        assert_eq!(
            section(&window(WindowStatus::Approved, now - 2 * H, now - H), now),
            Section::Ended
        );
        assert_eq!(
            section(&window(WindowStatus::Rejected, now - H, now + H), now),
            Section::Ended
        );
    }

    #[test]
    fn timeline_bars_are_clamped_to_the_span() {
        const H: i64 = 3_600_000;
        let now = 1_800_000_000_000;
        let a = window(WindowStatus::Approved, now - 10 * H, now + H);
        let b = window(WindowStatus::Requested, now + 5 * H, now + 6 * H);
        let far = window(WindowStatus::Approved, now + 100 * H, now + 101 * H);
        let bars = bars(&[&a, &b, &far], now, now + 10 * H);
        assert_eq!(bars.len(), 2);
        assert_eq!((bars[0].x, bars[0].width), (0, 100));
        assert_eq!(
            (bars[1].x, bars[1].width, bars[1].class),
            (500, 100, "requested")
        );
    }
}
