//! The largest value an agent may send in each field of the wire format ([`crate::api::v1`]).
//!
//! The collector refuses a request holding a larger one (HTTP 413, `field_too_large`,
//! naming the field and its limit) and stores nothing from it; the agent shapes what it
//! sends with [`fit_event`] and [`fit_heartbeat`] so that it never sends what would be
//! refused (a refused batch would stall delivery). Lengths are bytes of UTF-8 (of the raw
//! bytes for paths kept as [`PathBytes`]).
//!
//! | field | maximum | what the agent does with a longer one |
//! |---|---|---|
//! | `subject` | [`MAX_SUBJECT_BYTES`] | keeps the start, then `…#` and the BLAKE3 of the whole key (unique, stable) |
//! | `diff` | [`MAX_DIFF_BYTES`] | cuts it and appends `[diff truncated]` |
//! | `summary` | [`MAX_SUMMARY_BYTES`] | cuts it and appends `…` |
//! | `changed` | [`MAX_LIST_ITEMS`] names of [`MAX_NAME_BYTES`] | keeps the first ones, then `… N more` |
//! | actor `source`, `comm`, `user`, `login_user`, `tty` | [`MAX_SHORT_TEXT_BYTES`] | cuts with `…` |
//! | actor `exe`, coverage `unwatched[]` | [`MAX_PATH_TEXT_BYTES`] | cuts with `…` |
//! | actor `reason`, coverage `detail`, command `message` | [`MAX_MESSAGE_BYTES`] | cuts with `…` |
//! | provenance `manager`, `package`, `version` | [`MAX_SHORT_TEXT_BYTES`] | cuts with `…` |
//! | state (`before`, `after`, `current`): fields | [`MAX_STATE_FIELDS`] names of [`MAX_NAME_BYTES`], values of [`MAX_STATE_VALUE_BYTES`] | cuts values with `…`, keeps the first fields (an accept then reads as a mismatch, never as a match) |
//! | state: `link_target` | [`MAX_LINK_TARGET_BYTES`] | (the kernel's own limit) |
//! | state: xattr names | [`MAX_LIST_ITEMS`] of [`MAX_NAME_BYTES`] | keeps the first ones (the digest still covers all) |
//! | enroll `hostname`, inventory `hostname` | [`MAX_HOSTNAME_BYTES`] | (refused at enrollment) |
//! | enroll `labels` | [`MAX_LABELS`] pairs, names of [`MAX_NAME_BYTES`], values of [`MAX_LABEL_VALUE_BYTES`] | (refused at enrollment) |
//! | `agent_version`, inventory `os`, `kernel` | [`MAX_SHORT_TEXT_BYTES`] | cuts with `…` |
//! | coverage `unwatched`, `sources`; heartbeat `results` | [`MAX_LIST_ITEMS`] | keeps the first ones |
//! | `baseline.created_at` (enroll, heartbeat, each result) | [`MAX_SHORT_TEXT_BYTES`] | (an RFC 3339 time: never longer) |

use std::fmt;

use crate::api::v1::{
    Actor, BaselineAnchor, CommandOutcome, DriftEvent, EnrollRequest, Heartbeat, SubjectKey,
    SubjectState,
};
use crate::hash::ContentHash;

pub const MAX_SUBJECT_BYTES: usize = 8 * 1024;
pub const MAX_DIFF_BYTES: usize = 64 * 1024;
pub const MAX_SUMMARY_BYTES: usize = 1024;
/// Attribute and field names, label names, state source names.
pub const MAX_NAME_BYTES: usize = 128;
pub const MAX_LIST_ITEMS: usize = 256;
pub const MAX_SHORT_TEXT_BYTES: usize = 256;
pub const MAX_PATH_TEXT_BYTES: usize = 4096;
pub const MAX_MESSAGE_BYTES: usize = 1024;
pub const MAX_STATE_FIELDS: usize = 64;
pub const MAX_STATE_VALUE_BYTES: usize = 4096;
/// PATH_MAX: a symlink's target cannot be longer on Linux.
pub const MAX_LINK_TARGET_BYTES: usize = 4096;
pub const MAX_HOSTNAME_BYTES: usize = 253;
pub const MAX_LABELS: usize = 64;
pub const MAX_LABEL_VALUE_BYTES: usize = 512;

/// One field over its limit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TooLarge {
    /// Where, as a path into the request: `events[3].diff`.
    pub field: String,
    pub size: usize,
    pub limit: usize,
    /// `bytes` or `items`.
    pub unit: &'static str,
}

impl fmt::Display for TooLarge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} holds {} {}, more than its maximum of {}",
            self.field, self.size, self.unit, self.limit
        )
    }
}

/// Where a field is, rendered only when it is reported (no allocation on the happy path).
#[derive(Clone, Copy)]
enum At<'a> {
    Root(&'a str),
    Index(&'a str, usize),
    Child(&'a At<'a>, &'a str),
}

impl fmt::Display for At<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            At::Root(name) => f.write_str(name),
            At::Index(name, i) => write!(f, "{name}[{i}]"),
            At::Child(At::Root(""), name) => f.write_str(name),
            At::Child(parent, name) => write!(f, "{parent}.{name}"),
        }
    }
}

/// Collects every field over its limit.
struct Check {
    found: Vec<TooLarge>,
}

impl Check {
    fn bytes(&mut self, field: impl FnOnce() -> String, size: usize, limit: usize) {
        if size > limit {
            self.found.push(TooLarge {
                field: field(),
                size,
                limit,
                unit: "bytes",
            });
        }
    }

    fn items(&mut self, field: impl FnOnce() -> String, size: usize, limit: usize) {
        if size > limit {
            self.found.push(TooLarge {
                field: field(),
                size,
                limit,
                unit: "items",
            });
        }
    }

    fn text(&mut self, at: At<'_>, name: &str, value: Option<&str>, limit: usize) {
        if let Some(value) = value {
            self.bytes(|| format!("{at}.{name}"), value.len(), limit);
        }
    }

    fn state(&mut self, at: At<'_>, state: Option<&SubjectState>) {
        match state {
            None => {}
            Some(SubjectState::Fields { fields }) => {
                self.items(|| format!("{at}.fields"), fields.len(), MAX_STATE_FIELDS);
                for (name, value) in fields {
                    self.bytes(
                        || format!("{at}.fields (a name)"),
                        name.len(),
                        MAX_NAME_BYTES,
                    );
                    self.bytes(
                        || format!("{at}.fields.{}", clip(name, MAX_NAME_BYTES)),
                        value.len(),
                        MAX_STATE_VALUE_BYTES,
                    );
                }
            }
            Some(SubjectState::File(file)) => {
                if let Some(target) = &file.link_target {
                    self.bytes(
                        || format!("{at}.link_target"),
                        target.as_bytes().len(),
                        MAX_LINK_TARGET_BYTES,
                    );
                }
                if let Some(xattrs) = &file.xattrs {
                    self.items(
                        || format!("{at}.xattrs.names"),
                        xattrs.names.len(),
                        MAX_LIST_ITEMS,
                    );
                    if let Some(long) = xattrs
                        .names
                        .iter()
                        .find(|n| n.as_bytes().len() > MAX_NAME_BYTES)
                    {
                        self.bytes(
                            || format!("{at}.xattrs.names (a name)"),
                            long.as_bytes().len(),
                            MAX_NAME_BYTES,
                        );
                    }
                }
            }
        }
    }

    fn actor(&mut self, at: At<'_>, actor: &Actor) {
        for (name, value) in [
            ("source", Some(actor.source.as_str())),
            ("comm", actor.comm.as_deref()),
            ("user", actor.user.as_deref()),
            ("login_user", actor.login_user.as_deref()),
            ("tty", actor.tty.as_deref()),
        ] {
            self.text(at, name, value, MAX_SHORT_TEXT_BYTES);
        }
        self.text(at, "exe", actor.exe.as_deref(), MAX_PATH_TEXT_BYTES);
        self.text(at, "reason", actor.reason.as_deref(), MAX_MESSAGE_BYTES);
    }

    fn baseline(&mut self, at: At<'_>, baseline: Option<&BaselineAnchor>) {
        if let Some(baseline) = baseline {
            let created_at = Some(baseline.created_at.as_str());
            self.text(at, "created_at", created_at, MAX_SHORT_TEXT_BYTES);
        }
    }
}

/// Every field of `event` over its limit, named as in `events[index]`.
pub fn check_event(event: &DriftEvent, index: usize) -> Vec<TooLarge> {
    let mut check = Check { found: Vec::new() };
    let at = At::Index("events", index);
    check.bytes(
        || format!("{at}.subject"),
        event.subject.0.len(),
        MAX_SUBJECT_BYTES,
    );
    check.items(
        || format!("{at}.changed"),
        event.changed.len(),
        MAX_LIST_ITEMS,
    );
    if let Some(long) = event.changed.iter().find(|c| c.len() > MAX_NAME_BYTES) {
        check.bytes(
            || format!("{at}.changed (a name)"),
            long.len(),
            MAX_NAME_BYTES,
        );
    }
    check.state(At::Child(&at, "before"), event.before.as_ref());
    check.state(At::Child(&at, "after"), event.after.as_ref());
    check.text(at, "diff", event.diff.as_deref(), MAX_DIFF_BYTES);
    check.text(at, "summary", event.summary.as_deref(), MAX_SUMMARY_BYTES);
    if let Some(actor) = &event.actor {
        check.actor(At::Child(&at, "actor"), actor);
    }
    if let Some(p) = &event.provenance {
        let at = At::Child(&at, "provenance");
        check.text(at, "manager", Some(&p.manager), MAX_SHORT_TEXT_BYTES);
        check.text(at, "package", Some(&p.package), MAX_SHORT_TEXT_BYTES);
        check.text(at, "version", Some(&p.version), MAX_SHORT_TEXT_BYTES);
    }
    check.found
}

/// Every field of a heartbeat over its limit.
pub fn check_heartbeat(heartbeat: &Heartbeat) -> Vec<TooLarge> {
    let mut check = Check { found: Vec::new() };
    let inventory = &heartbeat.inventory;
    let root = At::Root("");
    let inv = At::Child(&root, "inventory");
    check.text(
        inv,
        "hostname",
        Some(&inventory.hostname),
        MAX_HOSTNAME_BYTES,
    );
    check.text(inv, "os", Some(&inventory.os), MAX_SHORT_TEXT_BYTES);
    check.text(inv, "kernel", Some(&inventory.kernel), MAX_SHORT_TEXT_BYTES);
    let health = &heartbeat.health;
    check.text(
        At::Child(&root, "health"),
        "agent_version",
        Some(&health.agent_version),
        MAX_SHORT_TEXT_BYTES,
    );
    let coverage = &health.coverage;
    check.items(
        || "health.coverage.unwatched".into(),
        coverage.unwatched.len(),
        MAX_LIST_ITEMS,
    );
    if let Some(long) = coverage
        .unwatched
        .iter()
        .find(|u| u.len() > MAX_PATH_TEXT_BYTES)
    {
        check.bytes(
            || "health.coverage.unwatched (an entry)".into(),
            long.len(),
            MAX_PATH_TEXT_BYTES,
        );
    }
    check.text(
        At::Child(&root, "health.coverage"),
        "attribution_unavailable",
        coverage.attribution_unavailable.as_deref(),
        MAX_MESSAGE_BYTES,
    );
    check.items(
        || "health.coverage.sources".into(),
        coverage.sources.len(),
        MAX_LIST_ITEMS,
    );
    for (i, source) in coverage.sources.iter().enumerate() {
        let at = At::Index("health.coverage.sources", i);
        check.text(at, "name", Some(&source.name), MAX_NAME_BYTES);
        check.text(at, "detail", source.detail.as_deref(), MAX_MESSAGE_BYTES);
    }
    check.items(|| "results".into(), heartbeat.results.len(), MAX_LIST_ITEMS);
    for (i, result) in heartbeat.results.iter().enumerate() {
        let result_at = At::Index("results", i);
        let at = At::Child(&result_at, "outcome");
        match &result.outcome {
            CommandOutcome::Applied => {}
            CommandOutcome::Mismatch { current } => {
                check.state(At::Child(&at, "current"), current.as_ref())
            }
            CommandOutcome::Failed { message } => {
                check.text(at, "message", Some(message), MAX_MESSAGE_BYTES)
            }
        }
        check.baseline(At::Child(&result_at, "baseline"), result.baseline.as_ref());
    }
    check.baseline(At::Child(&root, "baseline"), heartbeat.baseline.as_ref());
    check.found
}

/// Every field of an enrollment request over its limit (the token is checked as a token).
pub fn check_enroll(request: &EnrollRequest) -> Vec<TooLarge> {
    let mut check = Check { found: Vec::new() };
    check.bytes(
        || "hostname".into(),
        request.hostname.len(),
        MAX_HOSTNAME_BYTES,
    );
    check.bytes(
        || "agent_version".into(),
        request.agent_version.len(),
        MAX_SHORT_TEXT_BYTES,
    );
    check.items(|| "labels".into(), request.labels.len(), MAX_LABELS);
    for (name, value) in &request.labels {
        check.bytes(|| "labels (a name)".into(), name.len(), MAX_NAME_BYTES);
        check.bytes(
            || format!("labels.{}", clip(name, MAX_NAME_BYTES)),
            value.len(),
            MAX_LABEL_VALUE_BYTES,
        );
    }
    check.baseline(At::Root("baseline"), request.baseline.as_ref());
    check.found
}

/// Shapes an event so that [`check_event`] finds nothing: the agent calls it before it
/// spools an event.
pub fn fit_event(event: &mut DriftEvent) {
    if event.subject.0.len() > MAX_SUBJECT_BYTES {
        event.subject = shorten_subject(&event.subject);
    }
    fit_list(&mut event.changed, MAX_NAME_BYTES);
    fit_state(event.before.as_mut());
    fit_state(event.after.as_mut());
    if let Some(diff) = &mut event.diff
        && diff.len() > MAX_DIFF_BYTES
    {
        const MARKER: &str = "\n[diff truncated]\n";
        cut(diff, MAX_DIFF_BYTES - MARKER.len());
        diff.push_str(MARKER);
    }
    if let Some(summary) = &mut event.summary {
        fit(summary, MAX_SUMMARY_BYTES);
    }
    if let Some(actor) = &mut event.actor {
        fit(&mut actor.source, MAX_SHORT_TEXT_BYTES);
        for value in [
            &mut actor.comm,
            &mut actor.user,
            &mut actor.login_user,
            &mut actor.tty,
        ]
        .into_iter()
        .flatten()
        {
            fit(value, MAX_SHORT_TEXT_BYTES);
        }
        if let Some(exe) = &mut actor.exe {
            fit(exe, MAX_PATH_TEXT_BYTES);
        }
        if let Some(reason) = &mut actor.reason {
            fit(reason, MAX_MESSAGE_BYTES);
        }
    }
    if let Some(p) = &mut event.provenance {
        for value in [&mut p.manager, &mut p.package, &mut p.version] {
            fit(value, MAX_SHORT_TEXT_BYTES);
        }
    }
}

/// Shapes a heartbeat so that [`check_heartbeat`] finds nothing.
pub fn fit_heartbeat(heartbeat: &mut Heartbeat) {
    let inventory = &mut heartbeat.inventory;
    fit(&mut inventory.hostname, MAX_HOSTNAME_BYTES);
    fit(&mut inventory.os, MAX_SHORT_TEXT_BYTES);
    fit(&mut inventory.kernel, MAX_SHORT_TEXT_BYTES);
    let health = &mut heartbeat.health;
    fit(&mut health.agent_version, MAX_SHORT_TEXT_BYTES);
    let coverage = &mut health.coverage;
    coverage.unwatched.truncate(MAX_LIST_ITEMS);
    for entry in &mut coverage.unwatched {
        fit(entry, MAX_PATH_TEXT_BYTES);
    }
    if let Some(why) = &mut coverage.attribution_unavailable {
        fit(why, MAX_MESSAGE_BYTES);
    }
    coverage.sources.truncate(MAX_LIST_ITEMS);
    for source in &mut coverage.sources {
        fit(&mut source.name, MAX_NAME_BYTES);
        if let Some(detail) = &mut source.detail {
            fit(detail, MAX_MESSAGE_BYTES);
        }
    }
    heartbeat.results.truncate(MAX_LIST_ITEMS);
    for result in &mut heartbeat.results {
        match &mut result.outcome {
            CommandOutcome::Applied => {}
            CommandOutcome::Mismatch { current } => fit_state(current.as_mut()),
            CommandOutcome::Failed { message } => fit(message, MAX_MESSAGE_BYTES),
        }
    }
}

/// A key too long to send: its start, `…#`, and the BLAKE3 of the whole key, so two long
/// keys never collide and the same key always shortens the same way.
pub fn shorten_subject(subject: &SubjectKey) -> SubjectKey {
    let digest = ContentHash::of(subject.0.as_bytes()).to_hex();
    let suffix = format!("…#{digest}");
    let mut text = subject.0.clone();
    cut(&mut text, MAX_SUBJECT_BYTES - suffix.len());
    text.push_str(&suffix);
    SubjectKey(text)
}

fn fit_state(state: Option<&mut SubjectState>) {
    match state {
        None => {}
        Some(SubjectState::Fields { fields }) => {
            while fields.len() > MAX_STATE_FIELDS {
                fields.pop_last();
            }
            let long: Vec<String> = fields
                .keys()
                .filter(|k| k.len() > MAX_NAME_BYTES)
                .cloned()
                .collect();
            for name in long {
                if let Some(value) = fields.remove(&name) {
                    let mut short = name;
                    fit(&mut short, MAX_NAME_BYTES);
                    fields.insert(short, value);
                }
            }
            for value in fields.values_mut() {
                fit(value, MAX_STATE_VALUE_BYTES);
            }
        }
        Some(SubjectState::File(file)) => {
            if let Some(xattrs) = &mut file.xattrs {
                xattrs
                    .names
                    .retain(|n| n.as_bytes().len() <= MAX_NAME_BYTES);
                xattrs.names.truncate(MAX_LIST_ITEMS);
            }
        }
    }
}

/// At most [`MAX_LIST_ITEMS`] names of at most `name_limit` bytes; the last says how many
/// were left out.
fn fit_list(list: &mut Vec<String>, name_limit: usize) {
    for name in list.iter_mut() {
        fit(name, name_limit);
    }
    if list.len() > MAX_LIST_ITEMS {
        let more = list.len() - (MAX_LIST_ITEMS - 1);
        list.truncate(MAX_LIST_ITEMS - 1);
        list.push(format!("… {more} more"));
    }
}

/// Cuts `text` to at most `limit` bytes, ending with `…` when it was cut.
pub fn fit(text: &mut String, limit: usize) {
    if text.len() > limit {
        cut(text, limit - '…'.len_utf8());
        text.push('…');
    }
}

fn cut(text: &mut String, limit: usize) {
    let mut at = limit.min(text.len());
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    text.truncate(at);
}

fn clip(text: &str, limit: usize) -> String {
    let mut text = text.to_owned();
    fit(&mut text, limit);
    text
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use time::OffsetDateTime;
    use uuid::Uuid;

    use super::*;
    use crate::api::v1::{ChangeKind, Provenance, SeenBy};

    fn event() -> DriftEvent {
        DriftEvent {
            id: Uuid::nil(),
            host_id: Uuid::nil(),
            seq: 1,
            prev_hash: DriftEvent::GENESIS,
            subject: SubjectKey::file(b"/etc/hosts"),
            kind: ChangeKind::Content,
            changed: vec!["content".into()],
            before: None,
            after: None,
            diff: None,
            summary: None,
            actor: None,
            seen_by: SeenBy::Watch,
            observed_at: OffsetDateTime::UNIX_EPOCH,
            provenance: None,
            related: None,
            mac: None,
        }
    }

    fn oversized() -> DriftEvent {
        let big = |n: usize| "é".repeat(n / 2 + 1);
        let mut e = event();
        e.subject = SubjectKey(format!("file:/{}", big(MAX_SUBJECT_BYTES)));
        e.changed = (0..MAX_LIST_ITEMS + 5).map(|i| format!("a{i}")).collect();
        e.after = Some(SubjectState::Fields {
            fields: BTreeMap::from([("version".into(), big(MAX_STATE_VALUE_BYTES))]),
        });
        e.diff = Some(big(MAX_DIFF_BYTES));
        e.summary = Some(big(MAX_SUMMARY_BYTES));
        e.actor = Some(Actor {
            source: "audit".into(),
            comm: Some(big(MAX_SHORT_TEXT_BYTES)),
            exe: Some(big(MAX_PATH_TEXT_BYTES)),
            reason: Some(big(MAX_MESSAGE_BYTES)),
            ..Actor::default()
        });
        e.provenance = Some(Provenance {
            manager: "dpkg".into(),
            package: big(MAX_SHORT_TEXT_BYTES),
            version: "1".into(),
            matches_package: true,
        });
        e
    }

    #[test]
    fn a_plain_event_is_within_every_limit() {
        assert!(check_event(&event(), 0).is_empty());
    }

    #[test]
    fn every_oversized_field_is_named_with_its_limit() {
        let found = check_event(&oversized(), 2);
        let fields: Vec<&str> = found.iter().map(|t| t.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "events[2].subject",
                "events[2].changed",
                "events[2].after.fields.version",
                "events[2].diff",
                "events[2].summary",
                "events[2].actor.comm",
                "events[2].actor.exe",
                "events[2].actor.reason",
                "events[2].provenance.package",
            ]
        );
        let diff = &found[3];
        assert_eq!((diff.limit, diff.unit), (MAX_DIFF_BYTES, "bytes"));
        assert!(diff.to_string().contains("more than its maximum of 65536"));
    }

    #[test]
    fn a_fitted_event_passes_and_keeps_markers() {
        let mut e = oversized();
        let long_subject = e.subject.clone();
        fit_event(&mut e);
        assert_eq!(check_event(&e, 0), Vec::new());
        assert!(e.diff.as_deref().unwrap().ends_with("[diff truncated]\n"));
        assert!(e.summary.as_deref().unwrap().ends_with('…'));
        assert_eq!(e.changed.len(), MAX_LIST_ITEMS);
        assert_eq!(e.changed.last().unwrap(), "… 6 more");
        // The shortened subject is stable, keeps its namespace and differs from another's.
        assert_eq!(e.subject, shorten_subject(&long_subject));
        assert_eq!(e.subject.namespace(), "file");
        let mut other = long_subject.clone();
        other.0.push('x');
        assert_ne!(shorten_subject(&other), e.subject);
        // Fitting what already fits changes nothing.
        let mut plain = event();
        fit_event(&mut plain);
        assert_eq!(plain, event());
    }

    #[test]
    fn oversized_enrollments_and_heartbeats_are_named() {
        let request = EnrollRequest {
            token: "t".into(),
            hostname: "h".repeat(300),
            labels: (0..70).map(|i| (format!("k{i}"), "v".into())).collect(),
            agent_version: "1".into(),
            baseline: Some(BaselineAnchor {
                root: ContentHash([0; 32]),
                created_at: "x".repeat(MAX_SHORT_TEXT_BYTES + 1),
            }),
        };
        let fields: Vec<String> = check_enroll(&request)
            .into_iter()
            .map(|t| t.field)
            .collect();
        assert_eq!(fields, ["hostname", "labels", "baseline.created_at"]);

        let mut heartbeat = Heartbeat {
            host_id: Uuid::nil(),
            sent_at: OffsetDateTime::UNIX_EPOCH,
            inventory: Default::default(),
            health: Default::default(),
            last_seq: 0,
            results: Vec::new(),
            baseline: None,
        };
        heartbeat.inventory.kernel = "k".repeat(MAX_SHORT_TEXT_BYTES + 1);
        heartbeat.health.coverage.unwatched = vec!["/x".into(); MAX_LIST_ITEMS + 1];
        let fields: Vec<String> = check_heartbeat(&heartbeat)
            .into_iter()
            .map(|t| t.field)
            .collect();
        assert_eq!(fields, ["inventory.kernel", "health.coverage.unwatched"]);
        fit_heartbeat(&mut heartbeat);
        assert!(check_heartbeat(&heartbeat).is_empty());
    }
}
