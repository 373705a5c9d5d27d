//! The untraced inbox, the default screen for security: open drift (untraced and flagged),
//! grouped ([`group`]), with its age against the hold and a severity; filters in the URL;
//! the same rows as CSV; bulk resolve through `App::resolve`, one item at a time.

use std::collections::{BTreeMap, BTreeSet};

use askama::Template;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use uuid::Uuid;

use driftwatch_common::api::v1::SubjectState;

use super::form::Fields;
use super::layout::{self, Layout};
use super::session::{Viewer, app_error, csrf_refused};
use crate::api::AppState;
use crate::app::{Limit, RESOLVE_ROLES, ResolveRequest};
use crate::drift::ResolutionCategory;
use crate::store::{DriftItem, OpenDriftQuery, Store, StoredEvent};

/// Open items read per page (the listing's maximum); a fuller inbox says so.
pub const MAX_ITEMS: u32 = 1000;
/// Most items one bulk resolve handles.
pub const MAX_RESOLVE: usize = 1000;

/// The filters, kept in the URL (`?host=web&reason=untraced`), so a view is bookmarkable
/// and the CSV link repeats it exactly.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct Filter {
    /// Host names containing this.
    pub host: String,
    /// Subjects containing this.
    pub subject: String,
    /// One review reason (`untraced`, `made_by_approver`, ...), or all.
    pub reason: String,
    /// `high`, `medium`, `low`, or all.
    pub severity: String,
}

impl Filter {
    pub fn keeps(&self, row: &Row) -> bool {
        (self.host.is_empty() || row.hostname.contains(self.host.trim()))
            && (self.subject.is_empty() || row.subject.contains(self.subject.trim()))
            && (self.reason.is_empty() || row.reason == self.reason)
            && (self.severity.is_empty() || row.severity.name() == self.severity)
    }

    /// The review reasons it keeps (`None`: any), for the store's query: the reason
    /// chosen, narrowed to the severity chosen (each known reason's [`Severity::of`]).
    pub fn reasons(&self) -> Option<Vec<String>> {
        if self.reason.is_empty() && self.severity.is_empty() {
            return None;
        }
        Some(
            known_reasons()
                .filter(|r| self.reason.is_empty() || *r == self.reason)
                .filter(|r| self.severity.is_empty() || Severity::of(r).name() == self.severity)
                .map(str::to_owned)
                .collect(),
        )
    }

    /// What the store reads for this filter: the texts and reasons in the query, so
    /// matching items are found among all open drift, not only the newest read.
    pub fn store_query(&self) -> OpenDriftQuery {
        OpenDriftQuery {
            host: self.host.trim().to_owned(),
            subject: self.subject.trim().to_owned(),
            reasons: self.reasons(),
            limit: MAX_ITEMS,
        }
    }

    /// The filter as a query string (`host=...&...`), for links.
    pub fn query(&self) -> String {
        [
            ("host", &self.host),
            ("subject", &self.subject),
            ("reason", &self.reason),
            ("severity", &self.severity),
        ]
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{k}={}", encode(v)))
        .collect::<Vec<_>>()
        .join("&")
    }
}

/// Every reason an open item can have (the filter's choices).
pub fn known_reasons() -> impl Iterator<Item = &'static str> {
    crate::matcher::REVIEW_OUTCOMES
        .into_iter()
        .chain([crate::drift::RESTORE_MISMATCH])
}

fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Low,
    Medium,
    High,
}

impl Severity {
    /// By why the item needs review: a change no window explains at all, or one a window
    /// covers but made by its approver or claiming a package it does not match, is high; a
    /// change inside a window but not as approved is medium; an unknown actor is low.
    pub fn of(reason: &str) -> Severity {
        match reason {
            "untraced" | "made_by_approver" | "package_mismatch" => Severity::High,
            "unexpected_state" | "wrong_implementer" | "restore_mismatch" => Severity::Medium,
            _ => Severity::Low,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Severity::High => "high",
            Severity::Medium => "medium",
            Severity::Low => "low",
        }
    }
}

/// One open item as the inbox sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    pub id: Uuid,
    pub host_id: Uuid,
    pub hostname: String,
    pub subject: String,
    pub reason: String,
    pub severity: Severity,
    /// Since when it needs review (the hold counts from here).
    pub since: i64,
    pub events: u32,
    /// What the subject became (its latest event's kind and resulting state; `None` when
    /// unknown): equal keys on several hosts are one change.
    pub state: Option<String>,
}

impl Row {
    pub fn new(item: &DriftItem, latest: Option<&StoredEvent>) -> Row {
        let reason = item.reason.clone().unwrap_or_else(|| "untraced".into());
        Row {
            id: item.id,
            host_id: item.host_id,
            hostname: item.hostname.clone(),
            subject: item.subject.clone(),
            severity: Severity::of(&reason),
            reason,
            since: item.untraced_since.unwrap_or(item.opened_at),
            events: item.events,
            state: latest.map(state_key),
        }
    }
}

/// The resulting state of an event, without what differs between hosts for the same
/// change (inode, device, times, link count): kind, type, mode, owner, size, content, link
/// target, xattrs; or a state subject's fields.
pub fn state_key(stored: &StoredEvent) -> String {
    let event = &stored.event;
    let kind = serde_json::to_string(&event.kind).unwrap_or_default();
    let state = match &event.after {
        None => "absent".to_owned(),
        Some(SubjectState::Fields { fields }) => serde_json::to_string(fields).unwrap_or_default(),
        Some(SubjectState::File(f)) => serde_json::to_string(&(
            &f.kind,
            f.mode,
            f.uid,
            f.gid,
            f.size,
            &f.content_hash,
            &f.link_target,
            &f.xattrs,
            f.rdev,
        ))
        .unwrap_or_default(),
    };
    format!("{kind}:{state}")
}

/// How the rows of a group belong together.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Shape {
    /// One subject changed the same way on several hosts (a patch run).
    Change { hosts: usize },
    /// Several subjects on one host needing review from within the burst of the first.
    Burst,
    /// One item.
    Single,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Group {
    pub shape: Shape,
    pub rows: Vec<Row>,
}

impl Group {
    pub fn oldest(&self) -> i64 {
        self.rows.iter().map(|r| r.since).min().unwrap_or(0)
    }
    pub fn severity(&self) -> Severity {
        self.rows
            .iter()
            .map(|r| r.severity)
            .max()
            .unwrap_or(Severity::Low)
    }
}

/// The grouping rule. First, one subject whose latest change left the same state
/// ([`state_key`]) on two or more hosts is one group, whatever the time (a patch run over
/// 300 hosts is one row). Then, per host, what remains is cut into bursts: an item needing
/// review within `burst_ms` of the first of the current burst joins it (the rule of the
/// untraced alert). Groups come oldest first: the longest over the hold on top.
pub fn group(rows: Vec<Row>, burst_ms: i64) -> Vec<Group> {
    let mut by_change: BTreeMap<(String, String), Vec<Row>> = BTreeMap::new();
    let mut rest = Vec::new();
    for row in rows {
        match &row.state {
            Some(state) => by_change
                .entry((row.subject.clone(), state.clone()))
                .or_default()
                .push(row),
            None => rest.push(row),
        }
    }
    let mut groups = Vec::new();
    for (_, mut rows) in by_change {
        let hosts: BTreeSet<Uuid> = rows.iter().map(|r| r.host_id).collect();
        if hosts.len() >= 2 {
            rows.sort_by(|a, b| (&a.hostname, a.since).cmp(&(&b.hostname, b.since)));
            groups.push(Group {
                shape: Shape::Change { hosts: hosts.len() },
                rows,
            });
        } else {
            rest.extend(rows);
        }
    }
    rest.sort_by(|a, b| (a.host_id, a.since, &a.subject).cmp(&(b.host_id, b.since, &b.subject)));
    let mut current: Vec<Row> = Vec::new();
    let flush = |current: &mut Vec<Row>, groups: &mut Vec<Group>| {
        if !current.is_empty() {
            let rows = std::mem::take(current);
            let shape = if rows.len() == 1 {
                Shape::Single
            } else {
                Shape::Burst
            };
            groups.push(Group { shape, rows });
        }
    };
    for row in rest {
        let joins = current.first().is_some_and(|first| {
            first.host_id == row.host_id && row.since - first.since <= burst_ms
        });
        if !joins {
            flush(&mut current, &mut groups);
        }
        current.push(row);
    }
    flush(&mut current, &mut groups);
    groups.sort_by_key(|g| (g.oldest(), g.rows[0].id));
    groups
}

/// The open items that need review, as rows, filtered: what the page and the CSV show.
async fn rows<S: Store>(
    app: &AppState<S>,
    viewer: &Viewer,
    filter: &Filter,
) -> Result<(Vec<Row>, bool), Response> {
    let items = app
        .inbox_items(
            &viewer.principal,
            filter.store_query(),
            Limit {
                asked: Some(MAX_ITEMS),
                default: MAX_ITEMS,
                max: MAX_ITEMS,
            },
        )
        .await
        .map_err(app_error)?;
    let full = items.len() >= MAX_ITEMS as usize;
    let latest = app
        .latest_events(&viewer.principal, &items)
        .await
        .map_err(app_error)?;
    let rows = items
        .iter()
        .map(|item| Row::new(item, latest.get(&item.id)))
        .filter(|row| filter.keeps(row))
        .collect();
    Ok((rows, full))
}

/// A group as the page shows it.
pub struct GroupView {
    pub title: String,
    /// The drift detail of the group's first item.
    pub first: Uuid,
    pub detail: String,
    pub ids: String,
    pub count: usize,
    pub severity: &'static str,
    pub reasons: String,
    pub age: String,
    pub over_hold: bool,
    pub since: String,
    pub hosts: String,
}

fn view(group: &Group, now: i64, hold_ms: i64) -> GroupView {
    let first = &group.rows[0];
    let hostnames: BTreeSet<&str> = group.rows.iter().map(|r| r.hostname.as_str()).collect();
    let subjects: BTreeSet<&str> = group.rows.iter().map(|r| r.subject.as_str()).collect();
    let reasons: BTreeSet<&str> = group.rows.iter().map(|r| r.reason.as_str()).collect();
    let list = |set: &BTreeSet<&str>| {
        let shown: Vec<&str> = set.iter().take(3).copied().collect();
        match set.len() {
            n if n > 3 => format!("{} and {} more", shown.join(", "), n - 3),
            _ => shown.join(", "),
        }
    };
    let (title, detail) = match group.shape {
        Shape::Change { hosts } => (
            first.subject.clone(),
            format!("the same change on {hosts} hosts"),
        ),
        Shape::Burst => (
            format!("{} subjects on {}", group.rows.len(), first.hostname),
            list(&subjects),
        ),
        Shape::Single => (first.subject.clone(), String::new()),
    };
    let oldest = group.oldest();
    let age = now - oldest;
    GroupView {
        first: first.id,
        title,
        detail,
        ids: group
            .rows
            .iter()
            .map(|r| r.id.to_string())
            .collect::<Vec<_>>()
            .join(","),
        count: group.rows.len(),
        severity: group.severity().name(),
        reasons: reasons.into_iter().collect::<Vec<_>>().join(", "),
        over_hold: age >= hold_ms,
        age: if age >= hold_ms {
            format!(
                "{} (hold of {} passed)",
                layout::duration(age),
                layout::duration(hold_ms)
            )
        } else {
            format!(
                "{} of a {} hold",
                layout::duration(age),
                layout::duration(hold_ms)
            )
        },
        since: layout::instant(oldest),
        hosts: list(&hostnames),
    }
}

#[derive(Template)]
#[template(path = "inbox.html")]
struct InboxPage {
    layout: Layout,
    filter: Filter,
    query: String,
    groups: Vec<GroupView>,
    items: usize,
    full: bool,
    can_resolve: bool,
    reasons: Vec<Choice>,
    severities: Vec<Choice>,
    max_items: u32,
    /// The live stream's head when the page was read (`?after=` of the banner's stream).
    cursor: i64,
}

/// An option of a filter's `<select>`.
struct Choice {
    value: &'static str,
    selected: bool,
}

fn choices(values: &[&'static str], chosen: &str) -> Vec<Choice> {
    values
        .iter()
        .map(|value| Choice {
            value,
            selected: *value == chosen,
        })
        .collect()
}

pub async fn page<S: Store>(
    State(app): State<AppState<S>>,
    viewer: Viewer,
    Query(filter): Query<Filter>,
) -> Response {
    // Read before the listing: the banner's stream starts after this cursor, so drift
    // changed while the page renders or before the browser connects is counted (at worst
    // a change the listing already shows is counted too).
    let cursor = match app.drift_stream_head(&viewer.principal).await {
        Ok(head) => head,
        Err(err) => return app_error(err),
    };
    let (rows, full) = match rows(&app, &viewer, &filter).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    let items = rows.len();
    let now = app.now();
    let groups = group(rows, app.settings.burst_ms)
        .iter()
        .map(|g| view(g, now, app.settings.hold_ms))
        .collect();
    let reasons: Vec<&'static str> = known_reasons().collect();
    let reasons = choices(&reasons, &filter.reason);
    let severities = choices(&["high", "medium", "low"], &filter.severity);
    layout::render(
        StatusCode::OK,
        &InboxPage {
            layout: Layout::new("Untraced inbox", Some(&viewer), "/ui/inbox"),
            query: filter.query(),
            filter,
            groups,
            items,
            full,
            can_resolve: RESOLVE_ROLES.contains(&viewer.principal.role),
            reasons,
            severities,
            max_items: MAX_ITEMS,
            cursor,
        },
    )
}

/// `GET /ui/inbox/stream[?after=CURSOR]`: the live drift stream for the inbox's banner
/// (`collector/web/static/app.js`), the API's stream with the session's `Principal`,
/// resumed after `Last-Event-ID` on a reconnect.
pub async fn stream<S: Store>(
    State(app): State<AppState<S>>,
    viewer: Viewer,
    headers: axum::http::HeaderMap,
    Query(query): Query<StreamQuery>,
) -> Response {
    let given = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or(query.after);
    let resume = match given.as_deref().map(str::trim).filter(|t| !t.is_empty()) {
        None => None,
        Some(text) => match text.parse::<i64>() {
            Ok(n) if n >= 0 => Some(n),
            _ => {
                return layout::error_page(
                    StatusCode::BAD_REQUEST,
                    "The stream cursor must be ASCII digits.",
                );
            }
        },
    };
    match crate::api::v1::drift::sse_response(&app, &viewer.principal, resume).await {
        Ok(response) => response,
        Err(err) => err.into_response(),
    }
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct StreamQuery {
    pub after: Option<String>,
}

/// `GET /ui/inbox.csv?<the same filter>`: one line per item the page shows, with its group.
pub async fn csv<S: Store>(
    State(app): State<AppState<S>>,
    viewer: Viewer,
    Query(filter): Query<Filter>,
) -> Response {
    let (rows, full) = match rows(&app, &viewer, &filter).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    let mut body = String::new();
    if full {
        body.push_str(&format!(
            "# only the newest {MAX_ITEMS} open items were read; narrow the filter\n"
        ));
    }
    body.push_str(&crate::reports::text::csv_record(&[
        "group", "shape", "drift_id", "host", "subject", "reason", "severity", "since", "events",
    ]));
    for (n, group) in group(rows, app.settings.burst_ms).iter().enumerate() {
        let shape = match group.shape {
            Shape::Change { .. } => "change",
            Shape::Burst => "burst",
            Shape::Single => "single",
        };
        for row in &group.rows {
            body.push_str(&crate::reports::text::csv_record(&[
                (n + 1).to_string(),
                shape.to_owned(),
                row.id.to_string(),
                row.hostname.clone(),
                row.subject.clone(),
                row.reason.clone(),
                row.severity.name().to_owned(),
                layout::instant(row.since),
                row.events.to_string(),
            ]));
        }
    }
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    headers.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_static("attachment; filename=\"untraced-inbox.csv\""),
    );
    response
}

#[derive(Template)]
#[template(path = "resolved.html")]
struct ResolvedPage {
    layout: Layout,
    resolved: usize,
    failures: Vec<String>,
    back: String,
}

/// `POST /ui/inbox/resolve`: `csrf`, `category`, `comment` (required), `ticket`, `group`
/// (repeated, each the comma-separated ids of a selected row), `back` (the filter).
pub async fn resolve<S: Store>(
    State(app): State<AppState<S>>,
    viewer: Viewer,
    fields: Fields,
) -> Response {
    if !super::csrf::matches(&viewer.csrf, fields.get("csrf").unwrap_or_default()) {
        return csrf_refused();
    }
    if !RESOLVE_ROLES.contains(&viewer.principal.role) {
        // App refuses it too; answered before reading the form so nothing is attempted.
        return app_error(crate::app::Error::Forbidden(format!(
            "resolving drift needs the security role; {} has role {}",
            viewer.principal.name, viewer.principal.role
        )));
    }
    let bad = |message: &str| layout::error_page(StatusCode::BAD_REQUEST, message);
    let comment = fields.get("comment").unwrap_or_default().trim().to_owned();
    if comment.is_empty() {
        return bad("A reason is required: say what was found. Nothing was resolved.");
    }
    let category = match fields.get("category").unwrap_or_default() {
        "confirmed_unauthorized" => ResolutionCategory::ConfirmedUnauthorized,
        "emergency_change" => ResolutionCategory::EmergencyChange,
        "false_positive" => ResolutionCategory::FalsePositive,
        _ => {
            return bad(
                "Choose a category: confirmed unauthorized, emergency change or false positive.",
            );
        }
    };
    let ticket = fields
        .get("ticket")
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_owned);
    let mut ids = Vec::new();
    for value in fields.all("group") {
        for text in value.split(',').filter(|t| !t.is_empty()) {
            match Uuid::try_parse(text.trim()) {
                Ok(id) => ids.push(id),
                Err(_) => return bad("A selected row names no drift item. Nothing was resolved."),
            }
        }
    }
    ids.sort();
    ids.dedup();
    if ids.is_empty() {
        return bad("Select at least one row to resolve.");
    }
    if ids.len() > MAX_RESOLVE {
        return bad(&format!(
            "At most {MAX_RESOLVE} items can be resolved at once. Nothing was resolved."
        ));
    }
    let mut resolved = 0;
    let mut failures = Vec::new();
    for id in ids {
        let request = ResolveRequest {
            category,
            comment: comment.clone(),
            ticket: ticket.clone(),
        };
        match app.resolve(&viewer.principal, id, request).await {
            Ok(_) => resolved += 1,
            Err(crate::app::Error::Store(err)) => {
                tracing::error!(error = %err, drift = %id, "console resolve failed");
                failures.push(format!("{id}: the collector could not record it"));
            }
            Err(err) => failures.push(format!("{id}: {err}")),
        }
    }
    let back = match fields.get("back").unwrap_or_default() {
        "" => "/ui/inbox".to_owned(),
        q => format!("/ui/inbox?{}", q.trim_start_matches('?')),
    };
    let status = if resolved == 0 {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    layout::render(
        status,
        &ResolvedPage {
            layout: Layout::new("Resolved", Some(&viewer), "/ui/inbox"),
            resolved,
            failures,
            back,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(n: u128, host: u128, subject: &str, since: i64, state: Option<&str>) -> Row {
        Row {
            id: Uuid::from_u128(n),
            host_id: Uuid::from_u128(1000 + host),
            hostname: format!("h{host}"),
            subject: subject.into(),
            reason: "untraced".into(),
            severity: Severity::High,
            since,
            events: 1,
            state: state.map(str::to_owned),
        }
    }

    fn ids(g: &Group) -> Vec<u128> {
        g.rows.iter().map(|r| r.id.as_u128()).collect()
    }

    #[test]
    fn one_change_on_many_hosts_is_one_row_with_its_host_count() {
        let rows: Vec<Row> = (0..300)
            .map(|h| {
                row(
                    h,
                    h,
                    "/etc/ssh/sshd_config",
                    1_000 + h as i64 * 50_000,
                    Some("c:abc"),
                )
            })
            .collect();
        let groups = group(rows, 10_000);
        assert_eq!(groups.len(), 1);
        assert_eq!(groups[0].shape, Shape::Change { hosts: 300 });
        assert_eq!(groups[0].rows.len(), 300);
    }

    #[test]
    fn a_different_result_on_one_host_is_not_part_of_the_change() {
        let groups = group(
            vec![
                row(1, 1, "/etc/a", 0, Some("c:x")),
                row(2, 2, "/etc/a", 0, Some("c:x")),
                row(3, 3, "/etc/a", 0, Some("c:y")),
            ],
            10_000,
        );
        assert_eq!(groups.len(), 2);
        let change = groups.iter().find(|g| g.rows.len() == 2).unwrap();
        assert_eq!(change.shape, Shape::Change { hosts: 2 });
        assert_eq!(ids(change), [1, 2]);
        assert!(
            groups
                .iter()
                .any(|g| g.shape == Shape::Single && ids(g) == [3])
        );
    }

    #[test]
    fn a_burst_on_one_host_is_one_row_and_ends_after_the_burst() {
        let groups = group(
            vec![
                row(1, 1, "/etc/a", 0, Some("1")),
                row(2, 1, "/etc/b", 4_000, Some("2")),
                row(3, 1, "/etc/c", 10_000, None),
                // More than burst_ms after the first of the burst: a new row.
                row(4, 1, "/etc/d", 10_001, Some("4")),
                // Another host at the same time: its own row.
                row(5, 2, "/etc/e", 1_000, Some("5")),
            ],
            10_000,
        );
        let shapes: Vec<(Shape, Vec<u128>)> =
            groups.iter().map(|g| (g.shape.clone(), ids(g))).collect();
        assert_eq!(
            shapes,
            [
                (Shape::Burst, vec![1, 2, 3]),
                (Shape::Single, vec![5]),
                (Shape::Single, vec![4]),
            ]
        );
    }

    #[test]
    fn the_same_subject_twice_on_one_host_is_no_fleet_change() {
        // Cannot happen for active items (one per host and subject), but the rule holds.
        let groups = group(
            vec![
                row(1, 1, "/etc/a", 0, Some("s")),
                row(2, 1, "/etc/a", 60_000, Some("s")),
            ],
            10_000,
        );
        assert!(groups.iter().all(|g| g.shape == Shape::Single));
    }

    #[test]
    fn severity_follows_the_reason() {
        assert_eq!(Severity::of("untraced"), Severity::High);
        assert_eq!(Severity::of("made_by_approver"), Severity::High);
        assert_eq!(Severity::of("wrong_implementer"), Severity::Medium);
        assert_eq!(Severity::of("actor_unknown"), Severity::Low);
    }

    #[test]
    fn filters_match_and_round_trip_through_the_query() {
        let filter = Filter {
            host: "web".into(),
            subject: "/etc/ssh".into(),
            reason: String::new(),
            severity: "high".into(),
        };
        let mut r = row(1, 1, "/etc/ssh/sshd_config", 0, None);
        r.hostname = "web-01".into();
        assert!(filter.keeps(&r));
        r.hostname = "db-01".into();
        assert!(!filter.keeps(&r));
        assert_eq!(
            filter.query(),
            "host=web&subject=%2Fetc%2Fssh&severity=high"
        );
    }

    #[test]
    fn the_store_reads_what_the_filter_keeps() {
        let reasons = |reason: &str, severity: &str| {
            Filter {
                reason: reason.into(),
                severity: severity.into(),
                ..Filter::default()
            }
            .reasons()
        };
        assert_eq!(reasons("", ""), None, "no filter: any reason");
        assert_eq!(
            reasons("", "high").unwrap(),
            ["untraced", "made_by_approver", "package_mismatch"]
        );
        assert_eq!(
            reasons("", "medium").unwrap(),
            ["unexpected_state", "wrong_implementer", "restore_mismatch"]
        );
        assert_eq!(reasons("", "low").unwrap(), ["actor_unknown"]);
        assert_eq!(reasons("untraced", "").unwrap(), ["untraced"]);
        assert_eq!(
            reasons("untraced", "low").unwrap(),
            Vec::<String>::new(),
            "a reason of another severity: nothing"
        );
        assert_eq!(reasons("nonsense", "").unwrap(), Vec::<String>::new());
        // Every reason the store is asked for is one the page's own filter keeps.
        for severity in ["high", "medium", "low"] {
            for reason in reasons("", severity).unwrap() {
                let mut r = row(1, 1, "file:/etc/x", 0, None);
                r.severity = Severity::of(&reason);
                r.reason = reason;
                assert!(
                    Filter {
                        severity: severity.into(),
                        ..Filter::default()
                    }
                    .keeps(&r)
                );
            }
        }
        let query = Filter {
            host: " web-1 ".into(),
            subject: "sshd".into(),
            ..Filter::default()
        }
        .store_query();
        assert_eq!(
            (query.host.as_str(), query.subject.as_str(), query.limit),
            ("web-1", "sshd", MAX_ITEMS)
        );
    }
}
