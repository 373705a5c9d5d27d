//! From a window request (as people write it) to a [`Window`], or every reason it is impossible.

use std::path::Path;

use driftwatch_common::pattern::GlobList;
use jiff::civil::DateTime;
use jiff::tz::TimeZone;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::schedule::{Recurrence, Schedule};
use super::{ExpectedState, HostScope, Window, WindowKind, WindowStatus};
use crate::clock::{Millis, rfc3339};

/// The longest window accepted: a change window is a bounded piece of work, and the
/// matcher's time index stays fast when windows are short.
pub const MAX_WINDOW_DAYS: i64 = 31;
/// The longest validity of a recurring standard window: a routine change is re-approved
/// at least yearly, which is also what auditors expect of a standard-change catalogue.
pub const MAX_RECURRING_DAYS: i64 = 366;
const MAX_TEXT: usize = 512;

/// `POST /api/v1/windows`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowRequest {
    pub ticket: String,
    pub title: String,
    #[serde(default)]
    pub kind: WindowKind,
    pub hosts: HostScope,
    pub subjects: Vec<String>,
    /// A local date and time in `time_zone` (`2026-11-29T02:00`), or an RFC 3339 instant.
    pub start: String,
    pub end: String,
    /// IANA time zone name (`Europe/Paris`, `UTC`).
    pub time_zone: String,
    #[serde(default)]
    pub expected: Vec<ExpectedState>,
    /// Recurring standard windows only: when, between `start` and `end`, the window is open.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<Schedule>,
    /// Login users (as the agent's actor reports them) allowed to make the change. Empty:
    /// anyone except the approver.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub implementers: Vec<String>,
}

/// Checks a request made by `requester` at `now` and builds the window (status requested);
/// otherwise every problem found, each a sentence for a person.
pub fn validate(
    request: &WindowRequest,
    requester: &str,
    now: Millis,
) -> Result<Window, Vec<String>> {
    let mut problems = Vec::new();
    text(&mut problems, "ticket", &request.ticket, 128);
    text(&mut problems, "title", &request.title, MAX_TEXT);
    host_scope(&mut problems, &request.hosts);
    let subjects = subject_globs(&mut problems, &request.subjects);
    implementers(&mut problems, &request.implementers);

    let zone = TimeZone::get(&request.time_zone);
    if zone.is_err() {
        problems.push(format!(
            "unknown time zone `{}`: use an IANA name such as `Europe/Paris` or `UTC`",
            request.time_zone
        ));
    }
    let start = zone.as_ref().ok().and_then(|tz| {
        instant(tz, &request.start)
            .map_err(|why| problems.push(format!("start: {why}")))
            .ok()
    });
    let end = zone.as_ref().ok().and_then(|tz| {
        instant(tz, &request.end)
            .map_err(|why| problems.push(format!("end: {why}")))
            .ok()
    });
    let recurrence = request.schedule.as_ref().and_then(|schedule| {
        if request.kind != WindowKind::Standard {
            problems.push(format!(
                "a schedule makes a recurring standard window, but kind is {}; set kind = \"standard\"",
                request.kind
            ));
        }
        Recurrence::compile(schedule, &request.time_zone)
            .map_err(|found| {
                // An unknown zone is already reported once above.
                problems.extend(found.into_iter().filter(|p| !p.starts_with("unknown time zone")));
            })
            .ok()
    });
    if let (Some(start), Some(end)) = (start, end) {
        let (longest, advice) = match request.schedule {
            Some(_) => (
                MAX_RECURRING_DAYS,
                "re-approve the routine change each year",
            ),
            None => (MAX_WINDOW_DAYS, "split the work into shorter windows"),
        };
        if end <= start {
            problems.push(format!(
                "end ({}) is not after start ({})",
                rfc3339(end),
                rfc3339(start)
            ));
        } else if end - start > longest * 86_400_000 {
            problems.push(format!(
                "the window lasts more than {longest} days; {advice}"
            ));
        } else if let Some(recurrence) = &recurrence
            && !recurrence.overlaps(start, end, start, end)
        {
            problems.push(format!(
                "the schedule has no occurrence between start ({}) and end ({})",
                rfc3339(start),
                rfc3339(end)
            ));
        }
        if request.kind != WindowKind::Emergency && end <= now {
            problems.push(format!(
                "the window ended before it was requested ({}); record work already done as \
                 an emergency window (kind = \"emergency\")",
                rfc3339(end)
            ));
        }
    }
    for (i, expected) in request.expected.iter().enumerate() {
        let set = [
            expected.hash.is_some(),
            expected.version.is_some(),
            expected.absent,
        ];
        if set.iter().filter(|b| **b).count() != 1 {
            problems.push(format!(
                "expected[{i}]: give exactly one of `hash`, `version` or `absent`"
            ));
        }
        if let Some(subjects) = &subjects
            && !subjects.covers(&expected.subject)
        {
            problems.push(format!(
                "expected[{i}]: subject `{}` is not covered by the window's subjects",
                expected.subject
            ));
        }
    }

    match (start, end) {
        (Some(start), Some(end)) if problems.is_empty() => Ok(Window {
            id: Uuid::now_v7(),
            ticket: request.ticket.trim().to_owned(),
            title: request.title.trim().to_owned(),
            kind: request.kind,
            status: WindowStatus::Requested,
            requester: requester.to_owned(),
            decided_by: None,
            decided_at: None,
            decision_comment: None,
            hosts: request.hosts.clone(),
            subjects: request.subjects.clone(),
            start,
            end,
            time_zone: request.time_zone.clone(),
            expected: request.expected.clone(),
            implementers: request.implementers.clone(),
            schedule: request.schedule.clone(),
            created_at: now,
            ended_at: None,
            ended_by: None,
        }),
        _ => Err(problems),
    }
}

fn text(problems: &mut Vec<String>, name: &str, value: &str, max: usize) {
    if value.trim().is_empty() {
        problems.push(format!("{name} is empty"));
    } else if value.chars().count() > max {
        problems.push(format!("{name} is longer than {max} characters"));
    } else if value.chars().any(char::is_control) {
        problems.push(format!("{name} contains control characters"));
    }
}

fn host_scope(problems: &mut Vec<String>, hosts: &HostScope) {
    if hosts.is_empty() {
        problems.push(
            "empty host scope: name hosts (`names`), host globs (`globs`) or `labels`".into(),
        );
    }
    for name in &hosts.names {
        if let Err(why) = check_hostname(name) {
            problems.push(format!("hosts.names: {why}"));
        }
    }
    for glob in &hosts.globs {
        if glob.is_empty() || GlobList::new(&[glob]).is_err() {
            problems.push(format!("hosts.globs: `{glob}` is not a valid glob"));
        }
    }
    for (key, value) in &hosts.labels {
        if key.is_empty() || value.is_empty() {
            problems.push("hosts.labels: label names and values must not be empty".into());
        }
    }
}

/// The most implementers a window may name: a window is one team's piece of work.
pub const MAX_IMPLEMENTERS: usize = 64;

/// Login user names as the agent reports them (from the host's passwd): 1 to 64 characters,
/// no spaces, control characters or `:`; each listed once.
fn implementers(problems: &mut Vec<String>, names: &[String]) {
    if names.len() > MAX_IMPLEMENTERS {
        problems.push(format!(
            "implementers: {} names, at most {MAX_IMPLEMENTERS}",
            names.len()
        ));
    }
    for (i, name) in names.iter().enumerate() {
        if name.is_empty() || name.chars().count() > 64 {
            problems.push(format!(
                "implementers[{i}]: `{name}` is not a login name (1 to 64 characters)"
            ));
        } else if name
            .chars()
            .any(|c| c.is_control() || c.is_whitespace() || c == ':')
        {
            problems.push(format!(
                "implementers[{i}]: {name:?} contains spaces, control characters or `:`"
            ));
        } else if names[..i].contains(name) {
            problems.push(format!("implementers[{i}]: `{name}` is listed twice"));
        }
    }
    // The approver is not known yet: the matcher flags changes the approver makes.
}

/// A host name as agents report it: 1 to 253 printable characters without spaces.
pub fn check_hostname(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 253 {
        return Err(format!("`{name}` is not a host name (1 to 253 characters)"));
    }
    if name.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(format!("{name:?} contains spaces or control characters"));
    }
    Ok(())
}

/// Subject globs grouped by namespace, compiled.
#[derive(Clone, Debug)]
pub struct SubjectGlobs(Vec<(String, GlobList)>);

impl SubjectGlobs {
    pub fn compile(patterns: &[String]) -> Result<SubjectGlobs, String> {
        let mut by_namespace: Vec<(String, Vec<&str>)> = Vec::new();
        for pattern in patterns {
            let (namespace, glob) = split_subject_glob(pattern)?;
            match by_namespace.iter_mut().find(|(ns, _)| ns == namespace) {
                Some((_, globs)) => globs.push(glob),
                None => by_namespace.push((namespace.to_owned(), vec![glob])),
            }
        }
        by_namespace
            .into_iter()
            .map(|(ns, globs)| {
                GlobList::new(&globs)
                    .map(|list| (ns, list))
                    .map_err(|err| format!("`{}` is not a valid glob: {}", err.pattern, err.reason))
            })
            .collect::<Result<_, _>>()
            .map(SubjectGlobs)
    }

    /// Whether `package:NAME` is covered (without building the key).
    pub fn covers_package(&self, name: &str) -> bool {
        self.0
            .iter()
            .any(|(ns, globs)| ns == "package" && globs.is_match(Path::new(name)))
    }

    /// Whether a subject key (`file:/etc/hosts`) is covered.
    pub fn covers(&self, subject: &str) -> bool {
        let Some((namespace, name)) = subject.split_once(':') else {
            return false;
        };
        self.0
            .iter()
            .any(|(ns, globs)| ns == namespace && globs.is_match(Path::new(name)))
    }
}

/// `file:/etc/nginx/**` → (`file`, `/etc/nginx/**`), with the checks people need.
fn split_subject_glob(pattern: &str) -> Result<(&str, &str), String> {
    let Some((namespace, glob)) = pattern.split_once(':') else {
        return Err(format!(
            "subject `{pattern}` has no namespace: write `file:{pattern}` for paths, or \
             `package:…`, `sysctl:…`, `port:…`, `user:…`, `module:…`"
        ));
    };
    let namespace_ok = namespace
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase())
        && namespace
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if !namespace_ok {
        return Err(format!(
            "subject `{pattern}`: `{namespace}` is not a namespace (lowercase letters)"
        ));
    }
    if glob.is_empty() {
        return Err(format!("subject `{pattern}` has an empty pattern"));
    }
    if namespace == "file" && !(glob.starts_with('/') || glob.starts_with("**")) {
        return Err(format!(
            "subject `{pattern}` would never match: file patterns match absolute paths, so \
             start with `/` or `**`"
        ));
    }
    Ok((namespace, glob))
}

fn subject_globs(problems: &mut Vec<String>, subjects: &[String]) -> Option<SubjectGlobs> {
    if subjects.is_empty() {
        problems.push(
            "empty subject scope: list subject globs such as `file:/etc/nginx/**` or `package:nginx*`"
                .into(),
        );
        return None;
    }
    let mut ok = true;
    for pattern in subjects {
        if let Err(why) = SubjectGlobs::compile(std::slice::from_ref(pattern)) {
            problems.push(format!("subjects: {why}"));
            ok = false;
        }
    }
    if !ok {
        return None;
    }
    SubjectGlobs::compile(subjects)
        .map_err(|why| problems.push(format!("subjects: {why}")))
        .ok()
}

/// A local time in `tz` (a DST gap moves forward, an overlap takes the earlier), or an
/// RFC 3339 instant with its own offset.
fn instant(tz: &TimeZone, text: &str) -> Result<Millis, String> {
    if let Ok(local) = text.parse::<DateTime>() {
        return tz
            .to_ambiguous_zoned(local)
            .compatible()
            .map(|zoned| zoned.timestamp().as_millisecond())
            .map_err(|err| format!("`{text}` cannot be placed in the time zone: {err}"));
    }
    crate::clock::parse_instant(text).map_err(|_| {
        format!(
            "`{text}` is not a date and time: write `2026-11-29T02:00` (local to time_zone) \
             or an RFC 3339 time such as `2026-11-29T01:00:00Z`"
        )
    })
}
