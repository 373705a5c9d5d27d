//! The drift detail: one item with its masked diff side by side (marked when truncated or
//! without a text diff), attributes before and after, who made the change and how it was
//! seen, package provenance, its history, the subject's timeline on that host, and why no
//! window covered it (`App::drift_detail`, explained by the matcher's own rule). Resolve
//! from here, and record an emergency window from it (`windows.rs`).

use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use uuid::Uuid;

use driftwatch_common::api::v1::{Actor, SubjectState};

use super::form::Fields;
use super::layout::{self, Layout};
use super::session::{Viewer, app_error, csrf_refused};
use crate::api::AppState;
use crate::app::{RESOLVE_ROLES, ResolveRequest};
use crate::detail::DriftDetail;
use crate::drift::{DriftStatus, ResolutionCategory};
use crate::store::{Store, StoredEvent};
use crate::windows::lifecycle::WINDOW_ROLES;

/// The id in a console path, or a 404 page saying so.
pub fn parse_id(text: &str, what: &str) -> Result<Uuid, Box<Response>> {
    Uuid::try_parse(text.trim()).map_err(|_| {
        Box::new(layout::error_page(
            StatusCode::NOT_FOUND,
            &format!("`{text}` is not the id of a {what}."),
        ))
    })
}

/// A resolution category chosen in a form, or what to choose.
pub fn category(value: &str) -> Result<ResolutionCategory, &'static str> {
    match value {
        "confirmed_unauthorized" => Ok(ResolutionCategory::ConfirmedUnauthorized),
        "emergency_change" => Ok(ResolutionCategory::EmergencyChange),
        "false_positive" => Ok(ResolutionCategory::FalsePositive),
        _ => Err("Choose a category: confirmed unauthorized, emergency change or false positive."),
    }
}

/// One line of the side-by-side diff.
#[derive(Debug, PartialEq, Eq)]
pub struct DiffRow {
    /// `hunk`, `same`, `changed`, `removed`, `added`.
    pub class: &'static str,
    pub left: String,
    pub right: String,
}

/// A unified diff as side-by-side rows: removed lines on the left paired with the added
/// lines that follow them on the right; context on both sides; hunk headers across.
/// The file headers (`---`, `+++`) are left out; `[diff truncated]` says `true`.
pub fn side_by_side(diff: &str) -> (Vec<DiffRow>, bool) {
    let mut rows = Vec::new();
    let mut removed: Vec<String> = Vec::new();
    let mut added: Vec<String> = Vec::new();
    let mut truncated = false;
    let flush = |rows: &mut Vec<DiffRow>, removed: &mut Vec<String>, added: &mut Vec<String>| {
        let n = removed.len().max(added.len());
        let (mut r, mut a) = (removed.drain(..), added.drain(..));
        for _ in 0..n {
            let (left, right) = (r.next(), a.next());
            let class = match (&left, &right) {
                (Some(_), Some(_)) => "changed",
                (Some(_), None) => "removed",
                _ => "added",
            };
            rows.push(DiffRow {
                class,
                left: left.unwrap_or_default(),
                right: right.unwrap_or_default(),
            });
        }
    };
    for line in diff.lines() {
        if line == "[diff truncated]" {
            truncated = true;
            continue;
        }
        if line.starts_with("--- ") || line.starts_with("+++ ") {
            continue;
        }
        if let Some(rest) = line.strip_prefix('-') {
            removed.push(rest.to_owned());
        } else if let Some(rest) = line.strip_prefix('+') {
            added.push(rest.to_owned());
        } else {
            flush(&mut rows, &mut removed, &mut added);
            if line.starts_with("@@") {
                rows.push(DiffRow {
                    class: "hunk",
                    left: line.to_owned(),
                    right: String::new(),
                });
            } else if !line.is_empty() || !rows.is_empty() {
                let text = line.strip_prefix(' ').unwrap_or(line).to_owned();
                rows.push(DiffRow {
                    class: "same",
                    left: text.clone(),
                    right: text,
                });
            }
        }
    }
    flush(&mut rows, &mut removed, &mut added);
    (rows, truncated)
}

/// One attribute before and after.
pub struct Attr {
    pub name: String,
    pub before: String,
    pub after: String,
    pub changed: bool,
}

fn state_fields(state: Option<&SubjectState>) -> Vec<(String, String)> {
    match state {
        None => vec![("present".into(), "no (absent)".into())],
        Some(SubjectState::Fields { fields }) => {
            fields.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
        }
        Some(SubjectState::File(f)) => {
            let kind = serde_json::to_value(f.kind)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            let mut out = vec![
                ("type".to_owned(), kind),
                ("mode".to_owned(), format!("{:04o}", f.mode)),
                ("owner".to_owned(), format!("uid {} gid {}", f.uid, f.gid)),
                ("size".to_owned(), format!("{} bytes", f.size)),
                (
                    "content".to_owned(),
                    f.content_hash
                        .map_or_else(|| "not hashed".to_owned(), |h| h.to_string()),
                ),
            ];
            if let Some(target) = &f.link_target {
                out.push(("link target".into(), target.to_string()));
            }
            if let Some(x) = &f.xattrs {
                out.push((
                    "xattrs".into(),
                    serde_json::to_string(x).unwrap_or_default(),
                ));
            }
            out
        }
    }
}

/// The attributes of `before` and `after`, side by side, in the order first seen.
pub fn attributes(before: Option<&SubjectState>, after: Option<&SubjectState>) -> Vec<Attr> {
    let (b, a) = (state_fields(before), state_fields(after));
    let mut names: Vec<String> = Vec::new();
    for (name, _) in b.iter().chain(&a) {
        if !names.contains(name) {
            names.push(name.clone());
        }
    }
    let find = |list: &[(String, String)], name: &str| {
        list.iter()
            .find(|(n, _)| n == name)
            .map_or_else(|| "—".to_owned(), |(_, v)| v.clone())
    };
    names
        .into_iter()
        .map(|name| {
            let (before, after) = (find(&b, &name), find(&a, &name));
            Attr {
                changed: before != after,
                name,
                before,
                after,
            }
        })
        .collect()
}

/// Who made the change, in words: the process, its executable, the user, the login user
/// behind sudo, the terminal; or why the agent could not tell.
pub fn who(actor: Option<&Actor>) -> Vec<String> {
    let Some(a) = actor else {
        return vec!["not reported (no attribution for this event)".into()];
    };
    let mut out = Vec::new();
    if let Some(comm) = &a.comm {
        out.push(format!(
            "process {comm}{}",
            a.pid.map_or_else(String::new, |p| format!(" (pid {p})"))
        ));
    }
    if let Some(exe) = &a.exe {
        out.push(format!("executable {exe}"));
    }
    match (&a.user, a.uid) {
        (Some(user), _) => out.push(format!("user {user}")),
        (None, Some(uid)) => out.push(format!("uid {uid}")),
        _ => {}
    }
    match (&a.login_user, a.login_uid) {
        (Some(login), _) => out.push(format!("login user {login} (behind sudo)")),
        (None, Some(uid)) => out.push(format!("login uid {uid}")),
        _ => {}
    }
    if let Some(tty) = &a.tty {
        out.push(format!("terminal {tty}"));
    }
    if a.exited {
        out.push("the writer had exited before it could be read".into());
    }
    if let Some(reason) = &a.reason {
        out.push(format!("partial: {reason}"));
    }
    out.push(format!("attributed by {}", a.source));
    out
}

pub struct EventView {
    pub seq: u64,
    pub kind: String,
    pub seen_by: String,
    pub observed: String,
    pub received: String,
    pub outcome: String,
    pub chain: String,
    pub changed: String,
    pub summary: Option<String>,
    pub who: Vec<String>,
    pub provenance: Option<String>,
    pub attrs: Vec<Attr>,
    pub diff: Vec<DiffRow>,
    pub truncated: bool,
    /// Why there is no text diff, when there is none.
    pub no_diff: Option<&'static str>,
}

fn event_view(stored: &StoredEvent) -> EventView {
    let e = &stored.event;
    let name = |v: serde_json::Result<serde_json::Value>| {
        v.ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default()
    };
    let (diff, truncated) = e.diff.as_deref().map(side_by_side).unwrap_or_default();
    let is_file = e.subject.namespace() == "file";
    let content = matches!(
        e.kind,
        driftwatch_common::api::v1::ChangeKind::Content
            | driftwatch_common::api::v1::ChangeKind::Added
    );
    EventView {
        seq: e.seq,
        kind: name(serde_json::to_value(e.kind)),
        seen_by: match e.seen_by {
            driftwatch_common::api::v1::SeenBy::Watch => "the real-time watch",
            driftwatch_common::api::v1::SeenBy::Scan => "a scan",
            driftwatch_common::api::v1::SeenBy::Startup => {
                "the scan at agent start (changed while the agent was down)"
            }
        }
        .to_owned(),
        observed: e.observed_at.to_string(),
        received: layout::instant(stored.received_at),
        outcome: stored.outcome.name().to_owned(),
        chain: stored.chain.clone(),
        changed: e.changed.join(", "),
        summary: e.summary.clone(),
        who: who(e.actor.as_ref()),
        provenance: e.provenance.as_ref().map(|p| {
            format!(
                "{} package {} {}: content {} the packaged file",
                p.manager,
                p.package,
                p.version,
                if p.matches_package {
                    "matches"
                } else {
                    "differs from"
                }
            )
        }),
        attrs: attributes(e.before.as_ref(), e.after.as_ref()),
        no_diff: match &e.diff {
            Some(_) => None,
            None if is_file && content => Some(
                "No text diff: the content is binary, not UTF-8, or was not kept by the agent.",
            ),
            None => None,
        },
        diff,
        truncated,
    }
}

pub struct HistoryRow {
    pub at: String,
    pub change: String,
    pub by: String,
    pub reason: String,
}

pub struct TimelineRow {
    pub id: Uuid,
    pub status: &'static str,
    pub opened: String,
    pub reason: String,
}

pub struct CandidateView {
    pub window_id: Uuid,
    pub ticket: String,
    pub title: String,
    pub kind: String,
    pub status: String,
    pub authorizes: bool,
    pub says: String,
}

pub struct ExplainView {
    pub seq: u64,
    pub outcome: String,
    pub spooled: String,
    pub person: String,
    pub candidates: Vec<CandidateView>,
    pub omitted: usize,
}

#[derive(Template)]
#[template(path = "drift.html")]
struct DriftPage {
    layout: Layout,
    id: Uuid,
    hostname: String,
    subject: String,
    status: &'static str,
    reason: String,
    opened: String,
    since: String,
    event_count: u32,
    resolution: Option<String>,
    window: Option<Uuid>,
    events: Vec<EventView>,
    events_omitted: usize,
    history: Vec<HistoryRow>,
    timeline: Vec<TimelineRow>,
    explained: Vec<ExplainView>,
    not_explained: usize,
    tolerance: String,
    can_resolve: bool,
    can_record_window: bool,
}

fn page_of(viewer: &Viewer, d: DriftDetail) -> DriftPage {
    let item = &d.item;
    let open = item.status == DriftStatus::Open;
    DriftPage {
        layout: Layout::new("Drift detail", Some(viewer), "/ui/inbox"),
        id: item.id,
        hostname: item.hostname.clone(),
        subject: item.subject.clone(),
        status: item.status.name(),
        reason: item.reason.clone().unwrap_or_default(),
        opened: layout::instant(item.opened_at),
        since: item.untraced_since.map(layout::instant).unwrap_or_default(),
        event_count: item.events,
        resolution: item.resolution.as_ref().map(|r| {
            format!(
                "{} by {} at {}: {}{}",
                r.category.name(),
                r.by,
                layout::instant(r.at),
                r.comment,
                r.ticket
                    .as_ref()
                    .map_or_else(String::new, |t| format!(" (ticket {t})"))
            )
        }),
        window: item.window_id,
        events: d.events.iter().rev().map(event_view).collect(),
        events_omitted: d.events_omitted,
        history: d
            .history
            .iter()
            .map(|h| HistoryRow {
                at: layout::instant(h.at),
                change: match h.from {
                    None => format!("opened {}", h.to.name()),
                    Some(from) if from == h.to => format!("changed again ({})", h.to.name()),
                    Some(from) => format!("{} → {}", from.name(), h.to.name()),
                },
                by: h.by.clone(),
                reason: h.reason.clone(),
            })
            .collect(),
        timeline: d
            .timeline
            .iter()
            .map(|t| TimelineRow {
                id: t.id,
                status: t.status.name(),
                opened: layout::instant(t.opened_at),
                reason: t.reason.clone().unwrap_or_default(),
            })
            .collect(),
        explained: d
            .explanation
            .events
            .iter()
            .map(|e| ExplainView {
                seq: e.seq,
                outcome: e.outcome.name().to_owned(),
                spooled: format!(
                    "{} – {}",
                    layout::instant(e.spooled_after),
                    layout::instant(e.spooled_before)
                ),
                person: e
                    .person
                    .clone()
                    .unwrap_or_else(|| "unknown (no attribution)".into()),
                candidates: e
                    .candidates
                    .iter()
                    .map(|c| CandidateView {
                        window_id: c.window.id,
                        ticket: c.window.ticket.clone(),
                        title: c.window.title.clone(),
                        kind: c.window.kind.name().to_owned(),
                        status: c.window.status.name().to_owned(),
                        authorizes: matches!(c.decision, crate::matcher::Decision::Authorizes),
                        says: c.says.clone(),
                    })
                    .collect(),
                omitted: e.candidates_omitted,
            })
            .collect(),
        not_explained: d.explanation.events_not_explained,
        tolerance: layout::duration(d.explanation.tolerance_ms),
        can_resolve: open && RESOLVE_ROLES.contains(&viewer.principal.role),
        can_record_window: open && WINDOW_ROLES.contains(&viewer.principal.role),
    }
}

/// `GET /ui/drift/{id}`.
pub async fn page<S: Store>(
    State(app): State<AppState<S>>,
    viewer: Viewer,
    Path(id): Path<String>,
) -> Response {
    let id = match parse_id(&id, "drift item") {
        Ok(id) => id,
        Err(response) => return *response,
    };
    match app.drift_detail(&viewer.principal, id).await {
        Ok(detail) => layout::render(StatusCode::OK, &page_of(&viewer, detail)),
        Err(err) => app_error(err),
    }
}

/// `POST /ui/drift/{id}/resolve`: `csrf`, `category`, `comment` (required), `ticket`.
pub async fn resolve<S: Store>(
    State(app): State<AppState<S>>,
    viewer: Viewer,
    Path(id): Path<String>,
    fields: Fields,
) -> Response {
    if !super::csrf::matches(&viewer.csrf, fields.get("csrf").unwrap_or_default()) {
        return csrf_refused();
    }
    let id = match parse_id(&id, "drift item") {
        Ok(id) => id,
        Err(response) => return *response,
    };
    let bad = |message: &str| layout::error_page(StatusCode::BAD_REQUEST, message);
    let comment = fields.get("comment").unwrap_or_default().trim().to_owned();
    if comment.is_empty() && RESOLVE_ROLES.contains(&viewer.principal.role) {
        return bad("A reason is required: say what was found. Nothing was resolved.");
    }
    let category = match category(fields.get("category").unwrap_or_default()) {
        Ok(c) => c,
        Err(why) if RESOLVE_ROLES.contains(&viewer.principal.role) => return bad(why),
        // App refuses the role whatever the category.
        Err(_) => ResolutionCategory::FalsePositive,
    };
    let ticket = fields
        .get("ticket")
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_owned);
    let request = ResolveRequest {
        category,
        comment,
        ticket,
    };
    match app.resolve(&viewer.principal, id, request).await {
        Ok(_) => axum::response::IntoResponse::into_response(axum::response::Redirect::to(
            &format!("/ui/drift/{id}"),
        )),
        Err(err) => app_error(err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_unified_diff_reads_side_by_side() {
        let diff = "--- a (baseline)\n+++ a (now)\n@@ -1,3 +1,3 @@\n keep\n-old\n-gone\n+new\n same\n+extra\n";
        let (rows, truncated) = side_by_side(diff);
        assert!(!truncated);
        let got: Vec<(&str, &str, &str)> = rows
            .iter()
            .map(|r| (r.class, r.left.as_str(), r.right.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("hunk", "@@ -1,3 +1,3 @@", ""),
                ("same", "keep", "keep"),
                ("changed", "old", "new"),
                ("removed", "gone", ""),
                ("same", "same", "same"),
                ("added", "", "extra"),
            ]
        );
        let (_, truncated) = side_by_side("@@ -1 +1 @@\n-a\n+b\n\n[diff truncated]\n");
        assert!(truncated);
    }

    #[test]
    fn attributes_pair_before_and_after_and_mark_changes() {
        let mut before = std::collections::BTreeMap::new();
        before.insert("version".to_owned(), "1.0".to_owned());
        let mut after = before.clone();
        after.insert("version".into(), "2.0".into());
        after.insert("arch".into(), "amd64".into());
        let attrs = attributes(
            Some(&SubjectState::Fields { fields: before }),
            Some(&SubjectState::Fields { fields: after }),
        );
        let version = attrs.iter().find(|a| a.name == "version").unwrap();
        assert!(version.changed && version.before == "1.0" && version.after == "2.0");
        let arch = attrs.iter().find(|a| a.name == "arch").unwrap();
        assert!(arch.changed && arch.before == "—");
        let removed = attributes(
            Some(&SubjectState::Fields {
                fields: Default::default(),
            }),
            None,
        );
        assert!(removed.iter().any(|a| a.name == "present" && a.changed));
    }

    #[test]
    fn who_names_the_person_behind_sudo_and_says_when_unknown() {
        let actor = Actor {
            source: "audit".into(),
            comm: Some("vim".into()),
            pid: Some(42),
            user: Some("root".into()),
            login_user: Some("bob".into()),
            tty: Some("pts/3".into()),
            ..Actor::default()
        };
        let lines = who(Some(&actor));
        assert!(lines.contains(&"process vim (pid 42)".to_owned()));
        assert!(lines.contains(&"login user bob (behind sudo)".to_owned()));
        assert!(lines.contains(&"terminal pts/3".to_owned()));
        assert!(who(None)[0].starts_with("not reported"));
    }
}
