//! Comparing what is on disk with the baseline.
//!
//! A quick check trusts `lstat`: a subject whose identity, size, mtime and
//! ctime are unchanged needs no re-read (every write, chmod, chown or xattr
//! change moves ctime). Everything else, and everything in a paranoid check,
//! is re-read and compared attribute by attribute under its rule's group.

use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::{AtomicBool, Ordering};

use driftwatch_common::attrs::Attribute;
use driftwatch_common::hash::ContentHash;
use driftwatch_common::pathbytes::PathBytes;
use driftwatch_common::state::{FileKind, FileState};
use driftwatch_config::Rule;
use serde::Serialize;

use crate::progress::Progress;
use crate::scan::read::{ReadOutcome, ReadPlan, read_subject, stat_state};
use crate::scan::{Policy, ScanError, ScanEvent, Subject};
use crate::store::{Baseline, Record};

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

/// Scans the policy and compares every subject with `baseline`.
pub fn run_check(
    policy: &Policy<'_>,
    baseline: &Baseline,
    mode: &CheckMode,
    progress: &Progress,
) -> std::io::Result<Findings> {
    let seen: Vec<AtomicBool> = (0..baseline.len())
        .map(|_| AtomicBool::new(false))
        .collect();
    let mut findings = Findings::default();
    let mut incomplete: Vec<PathBytes> = Vec::new();
    let inspect = |subject: Subject<'_>| {
        let plan_for =
            |record: Option<&Record>| read_plan(policy, subject.rule, subject.path, record);
        let inspection = inspect_subject(&subject, baseline, &seen, mode, plan_for);
        if let Some(bytes) = inspection.bytes_read {
            progress.add_bytes(bytes);
        }
        // Only what is worth reporting leaves the worker.
        (inspection.drift.is_some() || !inspection.errors.is_empty()).then_some(inspection)
    };
    let entries_before = progress.entries();
    policy.scan(progress, inspect, |event| match event {
        ScanEvent::Item(inspection) => {
            findings.drifts.extend(inspection.drift);
            findings.errors.extend(inspection.errors);
        }
        ScanEvent::Error(error) => findings.errors.push(error),
        ScanEvent::Incomplete(path) => incomplete.push(path),
    })?;
    findings.entries = progress.entries() - entries_before;

    for (index, seen) in seen.iter().enumerate() {
        if seen.load(Ordering::Relaxed) {
            continue;
        }
        let path = baseline.path_bytes(index);
        if incomplete.iter().any(|dir| is_within(&path, dir)) {
            findings.errors.push(ScanError {
                path,
                message: "not checked: a directory above it could not be read".into(),
            });
        } else if policy.rule_for(path.as_path()).is_none() {
            findings.out_of_policy += 1;
        } else {
            findings.drifts.push(Drift {
                path,
                kind: DriftKind::Removed,
                changed: Vec::new(),
                before: Some(baseline.record(index).state),
                after: None,
                diff: None,
                new_record: None,
                new_snapshot: None,
            });
        }
    }
    findings.drifts.sort_by(|a, b| a.path.cmp(&b.path));
    findings.errors.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(findings)
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
    let record = index.map(|index| baseline.record(index));
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
