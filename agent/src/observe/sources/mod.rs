//! State beyond files: installed packages, kernel parameters, loaded modules,
//! listening ports, users and groups.
//!
//! Each source is a small module behind [`StateSource`]: it reads the
//! system's own record (dpkg's status file, /proc/sys, /proc/modules,
//! /proc/net, /etc/passwd...) and returns one [`Fields`] map per subject key
//! (`package:openssh-server`, `sysctl:net.ipv4.ip_forward`, `module:br_netfilter`,
//! `port:tcp/22`, `user:deploy`, `group:sudo`). [`diff_states`] compares two
//! collections and describes each change in words people use
//! ("user eve added with uid 0"). Sources only read.
//!
//! `packages.rs` (dpkg status, rpm), `sysctl.rs` (security-relevant keys plus every
//! key the host's sysctl.d sets), `modules.rs` (/proc/modules), `ports.rs`
//! (listening sockets from /proc/net, owner from /proc/PID/fd), `users.rs` (passwd,
//! group); `poll.rs` collects them for the daemon. A facility missing on a host is
//! [`SourceError::Unavailable`]. A field a source could not read (a port's owner
//! without CAP_SYS_PTRACE, a `net.*` parameter read in a network namespace of the
//! agent's own) is dropped and named in the reserved field `!unreadable`:
//! [`diff_states`] never compares it, and `unreadable_note` reports it as coverage
//! (invariant 9). Ports in a network namespace other than PID 1's are unavailable.

pub mod modules;
pub mod packages;
pub mod poll;
pub mod ports;
pub mod sysctl;
pub mod users;

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use driftwatch_common::api::v1::{ChangeKind, SubjectKey};
use driftwatch_config::SourceSettings;

/// The fields of one subject's state, e.g. `{"version": "1:9.2p1-2", "arch": "amd64"}`.
pub type Fields = BTreeMap<String, String>;

/// Every subject a source tracks, by key.
pub type Collection = BTreeMap<SubjectKey, Fields>;

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The facility does not exist on this host (no dpkg, no /proc/modules...).
    #[error("{source_name}: not available on this host ({reason})")]
    Unavailable {
        source_name: &'static str,
        reason: String,
    },
    #[error("{source_name}: cannot read {path}: {cause}")]
    Read {
        source_name: &'static str,
        path: PathBuf,
        cause: io::Error,
    },
}

/// One kind of system state.
pub trait StateSource: Send + Sync {
    /// The subject namespace, also the source's name in the policy.
    fn namespace(&self) -> &'static str;
    /// The current state of every subject this source tracks.
    fn collect(&self) -> Result<Collection, SourceError>;
}

/// Every source, reading the system below `root` (`/` for this host; a
/// mounted image or container root file system otherwise). The order is the
/// report order.
pub fn all_sources(root: &Path) -> Vec<Box<dyn StateSource>> {
    vec![
        Box::new(packages::Packages::at(root)),
        Box::new(sysctl::Sysctl::at(root)),
        Box::new(modules::Modules::at(root)),
        Box::new(ports::Ports::at(root)),
        Box::new(users::Accounts::at(root)),
    ]
}

/// The sources a policy's `[sources]` section enables.
pub fn configured(settings: &SourceSettings) -> Vec<Box<dyn StateSource>> {
    all_sources(&settings.root)
        .into_iter()
        .filter(|source| {
            settings
                .enabled
                .iter()
                .any(|name| name == source.namespace())
        })
        .collect()
}

/// The subject namespaces a source reports (accounts report users and groups).
pub fn namespaces_of(source: &dyn StateSource) -> &'static [&'static str] {
    match source.namespace() {
        "user" => &["user", "group"],
        "package" => &["package"],
        "sysctl" => &["sysctl"],
        "module" => &["module"],
        _ => &["port"],
    }
}

/// A reserved field: the names (comma-separated) of the fields a source could
/// not read for this subject, e.g. a port's `process` when the agent may not
/// look at other processes' file descriptors (no CAP_SYS_PTRACE). Sources pick
/// field names, the host does not, so no observed value can pose as this marker.
pub const UNREADABLE: &str = "!unreadable";

/// Marks `field` of a subject as not readable by the agent (and drops its value).
pub fn mark_unreadable(fields: &mut Fields, field: &str) {
    fields.remove(field);
    let mut names = unreadable_fields(fields);
    names.insert(field.to_owned());
    let joined = names.into_iter().collect::<Vec<_>>().join(",");
    fields.insert(UNREADABLE.to_owned(), joined);
}

/// The fields a source could not read for this subject.
pub fn unreadable_fields(fields: &Fields) -> std::collections::BTreeSet<String> {
    fields
        .get(UNREADABLE)
        .map(|names| names.split(',').map(str::to_owned).collect())
        .unwrap_or_default()
}

/// A coverage note for the subjects of `collection` with unreadable fields
/// (invariant I9: what the agent cannot see is not compared, and says so).
pub fn unreadable_note(source_name: &str, collection: &Collection) -> Option<String> {
    let blind: Vec<String> = collection
        .iter()
        .filter(|(_, fields)| fields.contains_key(UNREADABLE))
        .map(|(subject, fields)| {
            let names = unreadable_fields(fields).into_iter().collect::<Vec<_>>();
            format!("{subject} ({})", names.join(", "))
        })
        .collect();
    if blind.is_empty() {
        return None;
    }
    const SHOWN: usize = 5;
    let more = match blind.len().saturating_sub(SHOWN) {
        0 => String::new(),
        n => format!(" and {n} more"),
    };
    Some(format!(
        "{source_name}: some fields are not readable by the agent here (its sandbox or a missing \
         capability) and are not compared: {}{more}",
        blind[..blind.len().min(SHOWN)].join(", ")
    ))
}

/// What collecting every enabled source gave.
#[derive(Debug, Default)]
pub struct Collected {
    pub state: Collection,
    /// Namespaces whose source answered: only these can be compared.
    pub namespaces: Vec<&'static str>,
    /// Sources that do not exist on this host (not an error: nothing to track).
    pub unavailable: Vec<String>,
    /// Sources that failed to read: their subjects are unverified.
    pub errors: Vec<String>,
}

impl Collected {
    /// Whether a subject belongs to a source that answered.
    pub fn covers(&self, subject: &SubjectKey) -> bool {
        self.namespaces.contains(&subject.namespace())
    }
}

/// Collects every source in `sources`; one failing source never stops the others.
pub fn collect_all(sources: &[Box<dyn StateSource>]) -> Collected {
    let mut collected = Collected::default();
    for source in sources {
        match source.collect() {
            Ok(state) => {
                if let Some(note) = unreadable_note(source.namespace(), &state) {
                    collected.unavailable.push(note);
                }
                collected.state.extend(state);
                collected.namespaces.extend(namespaces_of(source.as_ref()));
            }
            Err(err @ SourceError::Unavailable { .. }) => {
                collected.unavailable.push(err.to_string())
            }
            Err(err) => collected.errors.push(err.to_string()),
        }
    }
    collected
}

/// Reads a file for a source, turning "missing" into [`SourceError::Unavailable`].
fn read_text(source_name: &'static str, path: &Path) -> Result<String, SourceError> {
    std::fs::read(path)
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .map_err(|cause| {
            if cause.kind() == io::ErrorKind::NotFound {
                SourceError::Unavailable {
                    source_name,
                    reason: format!("{} does not exist", path.display()),
                }
            } else {
                SourceError::Read {
                    source_name,
                    path: path.to_owned(),
                    cause,
                }
            }
        })
}

/// `relative` (an absolute system path such as `/etc/passwd`) under `root`.
fn under(root: &Path, relative: &str) -> PathBuf {
    root.join(relative.trim_start_matches('/'))
}

fn key(namespace: &str, name: &str) -> SubjectKey {
    SubjectKey(format!("{namespace}:{name}"))
}

/// One difference between two collections.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct StateChange {
    pub subject: SubjectKey,
    /// `Added`, `Removed` or `Content` (some fields differ).
    pub kind: ChangeKind,
    /// Names of the fields that differ (empty for added and removed).
    pub changed: Vec<String>,
    pub before: Option<Fields>,
    pub after: Option<Fields>,
    /// The change in words, e.g. "user eve added with uid 0".
    pub summary: String,
}

impl StateChange {
    /// `added`, `removed` or `changed`, for people.
    pub fn kind_name(&self) -> &'static str {
        match self.kind {
            ChangeKind::Added => "added",
            ChangeKind::Removed => "removed",
            _ => "changed",
        }
    }
}

/// Every difference between `before` (the baseline) and `after`, in key order.
pub fn diff_states(before: &Collection, after: &Collection) -> Vec<StateChange> {
    let mut changes = Vec::new();
    for (subject, old) in before {
        match after.get(subject) {
            None => changes.push(change(subject, ChangeKind::Removed, Some(old), None)),
            Some(new) if !comparable_changes(old, new).is_empty() => {
                changes.push(change(subject, ChangeKind::Content, Some(old), Some(new)))
            }
            Some(_) => {}
        }
    }
    for (subject, new) in after {
        if !before.contains_key(subject) {
            changes.push(change(subject, ChangeKind::Added, None, Some(new)));
        }
    }
    changes.sort_by(|a, b| a.subject.cmp(&b.subject));
    changes
}

fn change(
    subject: &SubjectKey,
    kind: ChangeKind,
    before: Option<&Fields>,
    after: Option<&Fields>,
) -> StateChange {
    let changed = match (before, after) {
        (Some(old), Some(new)) => comparable_changes(old, new),
        _ => Vec::new(),
    };
    let summary = describe(subject, kind, before, after, &changed);
    StateChange {
        subject: subject.clone(),
        kind,
        changed,
        before: before.cloned(),
        after: after.cloned(),
        summary,
    }
}

/// The fields that differ, leaving out those either side could not read: a
/// blind spot is coverage, never drift (I9).
fn comparable_changes(old: &Fields, new: &Fields) -> Vec<String> {
    let mut blind = unreadable_fields(old);
    blind.extend(unreadable_fields(new));
    old.keys()
        .chain(new.keys())
        .filter(|field| *field != UNREADABLE && !blind.contains(*field))
        .filter(|field| old.get(*field) != new.get(*field))
        .cloned()
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect()
}

/// Words for a change. Users get their own phrasing, because "uid 0" is what
/// a reader must not miss.
fn describe(
    subject: &SubjectKey,
    kind: ChangeKind,
    before: Option<&Fields>,
    after: Option<&Fields>,
    changed: &[String],
) -> String {
    let (namespace, name) = (subject.namespace(), subject.name());
    match namespace {
        "user" => return users::describe_user(name, kind, before, after, changed),
        "group" => return users::describe_group(name, kind, before, after),
        _ => {}
    }
    let field_list = |fields: Option<&Fields>| {
        fields
            .map(|f| {
                f.iter()
                    .map(|(k, v)| format!("{k} {v}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default()
    };
    match kind {
        ChangeKind::Added => format!("{namespace} {name} added ({})", field_list(after)),
        ChangeKind::Removed => format!("{namespace} {name} removed (was {})", field_list(before)),
        _ => {
            let parts: Vec<String> = changed
                .iter()
                .map(|field| {
                    let get = |f: Option<&Fields>| {
                        f.and_then(|f| f.get(field))
                            .map_or("-", String::as_str)
                            .to_owned()
                    };
                    format!("{field} {} -> {}", get(before), get(after))
                })
                .collect();
            format!("{namespace} {name}: {}", parts.join(", "))
        }
    }
}

/// Builds a [`Fields`] map from pairs.
pub fn fields<const N: usize>(pairs: [(&str, &str); N]) -> Fields {
    pairs
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collection(entries: &[(&str, Fields)]) -> Collection {
        entries
            .iter()
            .map(|(k, f)| (SubjectKey((*k).to_owned()), f.clone()))
            .collect()
    }

    #[test]
    fn diff_names_added_removed_and_changed_fields() {
        let before = collection(&[
            (
                "package:nginx",
                fields([("version", "1.22.1-9"), ("arch", "amd64")]),
            ),
            (
                "package:telnet",
                fields([("version", "0.17"), ("arch", "amd64")]),
            ),
        ]);
        let after = collection(&[
            (
                "package:nginx",
                fields([("version", "1.24.0-1"), ("arch", "amd64")]),
            ),
            (
                "package:netcat",
                fields([("version", "1.10"), ("arch", "amd64")]),
            ),
        ]);
        let changes = diff_states(&before, &after);
        let summary: Vec<(&str, ChangeKind, &str)> = changes
            .iter()
            .map(|c| (c.subject.0.as_str(), c.kind, c.summary.as_str()))
            .collect();
        assert_eq!(
            summary,
            [
                (
                    "package:netcat",
                    ChangeKind::Added,
                    "package netcat added (arch amd64, version 1.10)"
                ),
                (
                    "package:nginx",
                    ChangeKind::Content,
                    "package nginx: version 1.22.1-9 -> 1.24.0-1"
                ),
                (
                    "package:telnet",
                    ChangeKind::Removed,
                    "package telnet removed (was arch amd64, version 0.17)"
                ),
            ]
        );
        assert_eq!(changes[1].changed, ["version"]);
    }

    #[test]
    fn every_default_source_collects_or_says_why_not() {
        for source in all_sources(Path::new("/")) {
            match source.collect() {
                Ok(collection) => assert!(
                    collection
                        .keys()
                        .all(|k| k.0.starts_with(source.namespace()) || k.namespace() == "group"),
                    "{}",
                    source.namespace()
                ),
                Err(SourceError::Unavailable { .. }) => {}
                Err(err) => panic!("{err}"),
            }
        }
    }

    #[test]
    fn a_field_the_agent_cannot_read_is_coverage_not_drift() {
        let baseline = collection(&[(
            "port:tcp/22",
            fields([("addresses", "0.0.0.0"), ("process", "sshd"), ("uid", "0")]),
        )]);
        let mut blind = fields([("addresses", "0.0.0.0"), ("process", "sshd"), ("uid", "0")]);
        mark_unreadable(&mut blind, "process");
        assert!(!blind.contains_key("process"));
        let now = collection(&[("port:tcp/22", blind.clone())]);
        assert!(diff_states(&baseline, &now).is_empty());
        // ...either way round: a baseline taken without the capability.
        assert!(diff_states(&now, &baseline).is_empty());
        let note = unreadable_note("port", &now).expect("a coverage note");
        assert!(note.contains("port:tcp/22 (process)"), "{note}");
        assert_eq!(unreadable_note("port", &baseline), None);
        // What the agent can still read is still compared.
        blind.insert("addresses".into(), "0.0.0.0,::".into());
        let moved = collection(&[("port:tcp/22", blind)]);
        let changes = diff_states(&baseline, &moved);
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].changed, ["addresses"]);
    }

    #[test]
    fn collect_all_reports_unreadable_fields_as_unavailable() {
        struct Blind;
        impl StateSource for Blind {
            fn namespace(&self) -> &'static str {
                "port"
            }
            fn collect(&self) -> Result<Collection, SourceError> {
                let mut f = fields([("uid", "0")]);
                mark_unreadable(&mut f, "process");
                Ok(collection(&[("port:tcp/80", f)]))
            }
        }
        let collected = collect_all(&[Box::new(Blind) as Box<dyn StateSource>]);
        assert_eq!(collected.namespaces, ["port"]);
        assert_eq!(
            collected.unavailable.len(),
            1,
            "{:?}",
            collected.unavailable
        );
        assert!(collected.errors.is_empty());
    }

    #[test]
    fn identical_collections_have_no_changes() {
        let both = collection(&[("sysctl:net.ipv4.ip_forward", fields([("value", "0")]))]);
        assert!(diff_states(&both, &both.clone()).is_empty());
    }
}
