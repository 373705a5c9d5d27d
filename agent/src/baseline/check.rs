//! Comparing what is on disk with the baseline.
//!
//! A quick check trusts `lstat`: a subject whose identity, size, mtime and
//! ctime are unchanged needs no re-read (every write, chmod, chown or xattr
//! change moves ctime). Everything else, and everything in a paranoid check,
//! is re-read and compared attribute by attribute under its rule's group.
//!
//! Baseline entries the walk did not see become `removed`, unless they lie under a
//! directory that could not be listed (then an error: nothing unseen is called
//! removed) or the policy no longer covers them (counted, not drift). The daemon
//! runs the same comparison limited to a scope ([`run_check_with`]) and looks at
//! single paths again ([`observe_path`]).

use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use driftwatch_common::attrs::Attribute;
use driftwatch_common::hash::ContentHash;
use driftwatch_common::pathbytes::PathBytes;
use driftwatch_common::state::{FileKind, FileState};
use driftwatch_config::Rule;
use serde::Serialize;

use crate::baseline::store::{Baseline, Record};
use crate::cli::progress::Progress;
use crate::observe::scan::read::{ReadOutcome, ReadPlan, read_subject, stat_state};
use crate::observe::scan::throttle::Throttle;
use crate::observe::scan::{Policy, ScanError, ScanEvent, ScopeEntry, Subject};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DriftKind {
    Added,
    Removed,
    /// Content, type or link target changed.
    Content,
    /// Only metadata (mode, owner, xattrs...) changed.
    Attributes,
}

impl DriftKind {
    pub fn name(self) -> &'static str {
        match self {
            DriftKind::Added => "added",
            DriftKind::Removed => "removed",
            DriftKind::Content => "content",
            DriftKind::Attributes => "attributes",
        }
    }
}

/// One difference between a subject and its baseline.
#[derive(Debug, Serialize)]
pub struct Drift {
    pub path: PathBytes,
    pub kind: DriftKind,
    /// Which attributes differ (empty for added and removed).
    pub changed: Vec<Attribute>,
    pub before: Option<FileState>,
    pub after: Option<FileState>,
    /// Unified diff of a text file's content, when both sides have a snapshot.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diff: Option<String>,
    /// The new state as it would be recorded if accepted.
    #[serde(skip)]
    pub new_record: Option<Record>,
    #[serde(skip)]
    pub new_snapshot: Option<Vec<u8>>,
}

/// What a check found.
#[derive(Debug, Default)]
pub struct Findings {
    pub drifts: Vec<Drift>,
    pub errors: Vec<ScanError>,
    /// Subjects compared (seen on disk and in scope).
    pub entries: u64,
    /// Baseline entries the current policy no longer covers (not drift).
    pub out_of_policy: u64,
}

/// Settings of one check run.
pub struct CheckMode {
    /// Re-read and re-hash every subject, ignoring `lstat` shortcuts.
    pub paranoid: bool,
}

/// What the daemon adds to a check: a limited scope, I/O throttling and a way to stop.
#[derive(Clone, Debug, Default)]
pub struct CheckOptions {
    /// Only these paths and subtrees (`None`: the whole policy). Baseline
    /// entries outside the scope are not looked at, so never called removed.
    pub scope: Option<Vec<ScopeEntry>>,
    /// Limits the rate at which content is read.
    pub throttle: Option<Arc<Throttle>>,
    /// Set to abandon the check: it then fails with `Interrupted` and its
    /// partial findings are never returned (nothing unseen is called removed).
    pub stop: Option<Arc<AtomicBool>>,
}

impl CheckOptions {
    fn stopped(&self) -> bool {
        self.stop
            .as_ref()
            .is_some_and(|s| s.load(Ordering::Relaxed))
    }
}

/// Scans the policy and compares every subject with `baseline`.
pub fn run_check(
    policy: &Policy<'_>,
    baseline: &Baseline,
    mode: &CheckMode,
    progress: &Progress,
) -> std::io::Result<Findings> {
    run_check_with(policy, baseline, mode, &CheckOptions::default(), progress)
}

/// [`run_check`] with the daemon's options (scope, throttle, stop).
pub fn run_check_with(
    policy: &Policy<'_>,
    baseline: &Baseline,
    mode: &CheckMode,
    options: &CheckOptions,
    progress: &Progress,
) -> std::io::Result<Findings> {
    let seen: Vec<AtomicBool> = (0..baseline.len())
        .map(|_| AtomicBool::new(false))
        .collect();
    let mut findings = Findings::default();
    let mut incomplete: Vec<PathBytes> = Vec::new();
    let inspect = |subject: Subject<'_>| {
        if options.stopped() {
            return None;
        }
        let plan_for =
            |record: Option<&Record>| read_plan(policy, subject.rule, subject.path, record);
        let inspection = inspect_subject(&subject, baseline, &seen, mode, plan_for);
        if let Some(bytes) = inspection.bytes_read {
            progress.add_bytes(bytes);
            if let Some(throttle) = &options.throttle {
                throttle.consume(bytes);
            }
        }
        // Only what is worth reporting leaves the worker.
        (inspection.drift.is_some() || !inspection.errors.is_empty()).then_some(inspection)
    };
    let entries_before = progress.entries();
    let scope = options.scope.as_deref();
    policy.scan_scoped(scope, progress, inspect, |event| match event {
        ScanEvent::Item(inspection) => {
            findings.drifts.extend(inspection.drift);
            findings.errors.extend(inspection.errors);
        }
        ScanEvent::Error(error) => findings.errors.push(error),
        ScanEvent::Incomplete(path) => incomplete.push(path),
    })?;
    if options.stopped() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::Interrupted,
            "check stopped before it completed",
        ));
    }
    findings.entries = progress.entries() - entries_before;

    let in_scope: Box<dyn Iterator<Item = usize>> = match scope {
        None => Box::new(0..baseline.len()),
        Some(scope) => Box::new(scope.iter().flat_map(|entry| {
            let bytes = entry.path.as_os_str().as_bytes();
            let below = if entry.subtree {
                baseline.range_below(bytes)
            } else {
                0..0
            };
            baseline.find(bytes).into_iter().chain(below)
        })),
    };
    for index in in_scope {
        // Marking as seen also keeps an entry in two overlapping scope parts from coming out twice.
        if seen[index].swap(true, Ordering::Relaxed) {
            continue;
        }
        let path = baseline.path_bytes(index);
        if incomplete.contains(&path) && findings.errors.iter().any(|e| e.path == path) {
            // Not looked at, and already reported with its own reason (the sandbox hides it).
            continue;
        }
        if incomplete.iter().any(|dir| is_within(&path, dir)) {
            findings.errors.push(ScanError {
                path,
                message: "not checked: a directory above it could not be read".into(),
            });
        } else if policy.rule_for(path.as_path()).is_none() {
            findings.out_of_policy += 1;
        } else {
            match baseline.record(index) {
                Ok(record) => findings.drifts.push(Drift {
                    path,
                    kind: DriftKind::Removed,
                    changed: Vec::new(),
                    before: Some(record.state),
                    after: None,
                    diff: None,
                    new_record: None,
                    new_snapshot: None,
                }),
                Err(err) => findings.errors.push(ScanError {
                    path,
                    message: unreadable_record(&err),
                }),
            }
        }
    }
    findings.drifts.sort_by(|a, b| a.path.cmp(&b.path));
    findings.errors.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(findings)
}

/// What a fresh look at one path found, compared with the baseline.
#[derive(Debug)]
pub enum Observed {
    /// The subject differs from its baseline (added, removed, changed).
    Drift(Box<Drift>),
    /// The subject is in its baseline state; `None` when it is absent and
    /// not in the baseline either.
    Clean(Option<FileState>),
    /// It could not be read well enough to compare (the reason).
    Unreadable(String),
    /// No rule of the policy records this path.
    NotCovered,
}

/// A subject whose baseline record could not be read is not compared, and says why.
fn unreadable_record(err: &std::io::Error) -> String {
    format!("not checked: its baseline record could not be read ({err})")
}

/// Reads one path now (all of it, no `lstat` shortcut) and compares it with
/// the baseline, exactly as a check does.
pub fn observe_path(policy: &Policy<'_>, baseline: &Baseline, path: &Path) -> Observed {
    let Some(rule) = policy.rule_for(path) else {
        return Observed::NotCovered;
    };
    let bytes = PathBytes(path.as_os_str().as_bytes().to_vec());
    let record = match baseline.get(bytes.as_bytes()) {
        Ok(record) => record,
        Err(err) => return Observed::Unreadable(unreadable_record(&err)),
    };
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            return match record {
                None => Observed::Clean(None),
                Some(record) => Observed::Drift(Box::new(Drift {
                    path: bytes,
                    kind: DriftKind::Removed,
                    changed: Vec::new(),
                    before: Some(record.state),
                    after: None,
                    diff: None,
                    new_record: None,
                    new_snapshot: None,
                })),
            };
        }
        Err(err) => return Observed::Unreadable(err.to_string()),
    };
    let plan = read_plan(policy, rule, path, record.as_ref());
    let outcome = read_subject(path, &meta, &plan);
    if !outcome.errors.is_empty() {
        return Observed::Unreadable(outcome.errors.join("; "));
    }
    let state = outcome.state.clone();
    match compare(bytes, record.as_ref(), outcome, rule) {
        Some(drift) => Observed::Drift(Box::new(drift)),
        None => Observed::Clean(Some(state)),
    }
}

/// What one worker learned about one subject.
struct Inspection {
    drift: Option<Drift>,
    errors: Vec<ScanError>,
    bytes_read: Option<u64>,
}

fn inspect_subject(
    subject: &Subject<'_>,
    baseline: &Baseline,
    seen: &[AtomicBool],
    mode: &CheckMode,
    plan_for: impl Fn(Option<&Record>) -> ReadPlan,
) -> Inspection {
    let path_bytes = subject.path.as_os_str().as_bytes();
    let index = baseline.find(path_bytes);
    if let Some(index) = index {
        seen[index].store(true, Ordering::Relaxed);
        let now = stat_state(&subject.meta).stat_key();
        if !mode.paranoid && baseline.unchanged(index, &now) {
            return Inspection {
                drift: None,
                errors: Vec::new(),
                bytes_read: None,
            };
        }
    }
    let record = match index.map(|index| baseline.record(index)).transpose() {
        Ok(record) => record,
        Err(err) => {
            return Inspection {
                drift: None,
                errors: vec![ScanError {
                    path: PathBytes(path_bytes.to_vec()),
                    message: unreadable_record(&err),
                }],
                bytes_read: None,
            };
        }
    };
    let record = record.as_ref();
    let plan = plan_for(record);
    let outcome = read_subject(subject.path, &subject.meta, &plan);
    let bytes_read = outcome.state.content_hash.map(|_| outcome.state.size);
    let path = PathBytes(path_bytes.to_vec());
    let errors = outcome
        .errors
        .iter()
        .map(|message| ScanError {
            path: path.clone(),
            message: message.clone(),
        })
        .collect();
    let drift = compare(path, record, outcome, subject.rule);
    Inspection {
        drift,
        errors,
        bytes_read,
    }
}

/// How to read a subject: its rule's attributes, a snapshot unless the path
/// is a secret, and the prefix to verify for a `growing` file.
pub fn read_plan(
    policy: &Policy<'_>,
    rule: &Rule,
    path: &std::path::Path,
    record: Option<&Record>,
) -> ReadPlan {
    let snapshots = &policy.config().snapshots;
    let snapshot_max = if snapshots.allows(path) {
        snapshots.max_bytes
    } else {
        0
    };
    let prefix_len = record
        .filter(|r| rule.attributes.contains(Attribute::Growing) && r.state.kind == FileKind::File)
        .map(|r| r.state.size);
    ReadPlan {
        attributes: rule.attributes,
        snapshot_max,
        prefix_len,
    }
}

/// The drift (if any) between a baseline record and what was just read.
fn compare(
    path: PathBytes,
    record: Option<&Record>,
    outcome: ReadOutcome,
    rule: &Rule,
) -> Option<Drift> {
    let new_record = Record {
        error: (!outcome.errors.is_empty()).then(|| outcome.errors.join("; ")),
        state: outcome.state,
    };
    let (kind, changed, before) = match record {
        None => (DriftKind::Added, Vec::new(), None),
        Some(record) => {
            let changed = FileState::changed_attributes(
                &record.state,
                &new_record.state,
                rule.attributes,
                outcome.prefix_hash,
            );
            if changed.is_empty() {
                return None;
            }
            (classify(&changed), changed, Some(record.state.clone()))
        }
    };
    Some(Drift {
        path,
        kind,
        changed,
        before,
        after: Some(new_record.state.clone()),
        diff: None,
        new_record: Some(new_record),
        new_snapshot: outcome.snapshot,
    })
}

fn classify(changed: &[Attribute]) -> DriftKind {
    let content = [
        Attribute::Hash,
        Attribute::Growing,
        Attribute::Type,
        Attribute::LinkTarget,
    ];
    if changed.iter().any(|a| content.contains(a)) {
        DriftKind::Content
    } else {
        DriftKind::Attributes
    }
}

/// True if `path` is `dir` or below it.
pub fn is_within(path: &PathBytes, dir: &PathBytes) -> bool {
    path.as_path().starts_with(dir.as_path())
}

/// A bounded unified diff between two snapshots.
pub fn unified_diff(path: &PathBytes, before: &[u8], after: &[u8]) -> Option<String> {
    const MAX_DIFF_BYTES: usize = 16 * 1024;
    let before = std::str::from_utf8(before).ok()?;
    let after = std::str::from_utf8(after).ok()?;
    let name = path.to_string();
    let diff = similar::TextDiff::from_lines(before, after);
    let mut text = diff
        .unified_diff()
        .context_radius(3)
        .header(&format!("{name} (baseline)"), &format!("{name} (now)"))
        .to_string();
    if text.len() > MAX_DIFF_BYTES {
        let mut cut = MAX_DIFF_BYTES;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push_str("\n[diff truncated]\n");
    }
    Some(text)
}

/// A short, stable fingerprint for display.
pub fn short_hash(hash: &ContentHash) -> String {
    hash.to_hex()[..16].to_owned()
}

#[cfg(test)]
mod tests;
