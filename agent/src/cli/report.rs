//! Output for people (text) and machines (`--json`).
//!
//! Paths are printed through [`PathBytes`]'s escaping, so a hostile file
//! name cannot inject terminal escapes or fake lines.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use driftwatch_common::attrs::Attribute;
use driftwatch_common::pathbytes::PathBytes;
use driftwatch_common::state::FileState;
use driftwatch_config::{AgentConfig, ConfigErrors};
use serde::Serialize;
use serde_json::json;

use crate::baseline::check::{Drift, DriftKind, Findings, short_hash};
use crate::baseline::store::{Baseline, HistoryEntry, Record};
use crate::cli::progress::format_bytes;
use crate::clock::format_ns;
use crate::observe::scan::ScanError;
use crate::observe::sources::StateChange;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
}

/// What the state sources (packages, sysctl...) showed.
#[derive(Debug, Default)]
pub struct StateFindings {
    pub changes: Vec<StateChange>,
    /// Sources that do not exist on this host.
    pub unavailable: Vec<String>,
    /// Sources that failed: their subjects were not checked.
    pub errors: Vec<String>,
}

pub struct InitReport {
    pub db: PathBuf,
    pub entries: u64,
    pub state_subjects: usize,
    pub state: StateFindings,
    pub bytes_hashed: u64,
    pub seconds: f64,
    pub replaced: Option<String>,
    pub errors: Vec<ScanError>,
    pub snapshots: SnapshotReport,
}

/// What init kept for diffs and what its budget left out.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct SnapshotReport {
    pub totals: crate::baseline::store::SnapshotTotals,
    pub budget: crate::baseline::budget::BudgetOutcome,
    /// `snapshots.max_bytes`: the largest file that gets one.
    pub max_bytes: u64,
}

impl SnapshotReport {
    /// The line saying what was left out, when the budget left anything out.
    pub fn left_out_note(&self) -> Option<String> {
        let budget = &self.budget;
        (budget.left_out_files > 0).then(|| {
            format!(
                "snapshots: the budget of {} (--snapshot-budget) was used up; {} more files of \
                 at most {} ({}) have no snapshot: their content drift is reported without a \
                 diff (configuration paths such as /etc and *.conf always keep theirs)",
                format_bytes(budget.budget.unwrap_or(0)),
                budget.left_out_files,
                format_bytes(self.max_bytes),
                format_bytes(budget.left_out_bytes),
            )
        })
    }
}

pub struct CheckReport {
    pub db: PathBuf,
    pub baseline_created_at: String,
    pub policy_changed: bool,
    pub full_hash: bool,
    pub seconds: f64,
    pub findings: Findings,
    pub state: StateFindings,
}

fn print_json(value: &impl Serialize) -> io::Result<()> {
    let mut out = io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value).map_err(io::Error::other)?;
    writeln!(out)
}

pub fn print_init(report: &InitReport, format: Format) -> io::Result<()> {
    if format == Format::Json {
        return print_json(&json!({
            "db": report.db,
            "entries": report.entries,
            "bytes_hashed": report.bytes_hashed,
            "seconds": report.seconds,
            "replaced": report.replaced,
            "errors": report.errors,
            "state_subjects": report.state_subjects,
            "snapshots": {
                "subjects": report.snapshots.totals.subjects,
                "contents": report.snapshots.totals.contents,
                "stored_bytes": report.snapshots.totals.stored_bytes,
                "budget": report.snapshots.budget.budget,
                "left_out_files": report.snapshots.budget.left_out_files,
                "left_out_bytes": report.snapshots.budget.left_out_bytes,
            },
            "sources_unavailable": report.state.unavailable,
            "source_errors": report.state.errors,
        }));
    }
    let mut out = io::stdout().lock();
    writeln!(
        out,
        "baseline created: {} entries, {} hashed in {:.2}s -> {}",
        report.entries,
        format_bytes(report.bytes_hashed),
        report.seconds,
        report.db.display()
    )?;
    let totals = &report.snapshots.totals;
    if totals.subjects > 0 {
        writeln!(
            out,
            "snapshots: {} files kept for diffs ({} distinct, {} compressed)",
            totals.subjects,
            totals.contents,
            format_bytes(totals.stored_bytes)
        )?;
    }
    if let Some(note) = report.snapshots.left_out_note() {
        writeln!(out, "{note}")?;
    }
    if report.state_subjects > 0 {
        writeln!(
            out,
            "state: {} subjects (packages, kernel parameters, modules, ports, accounts)",
            report.state_subjects
        )?;
    }
    if let Some(replaced) = &report.replaced {
        writeln!(
            out,
            "replaced {replaced} (recorded in the baseline history)"
        )?;
    }
    write_state_notes(&mut out, &report.state)?;
    write_errors(&mut out, &report.errors)
}

fn write_state_notes(out: &mut impl Write, state: &StateFindings) -> io::Result<()> {
    for note in &state.unavailable {
        writeln!(out, "note: {note}")?;
    }
    for error in &state.errors {
        writeln!(out, "error: {error} (its subjects were not checked)")?;
    }
    Ok(())
}

fn count(drifts: &[Drift], kind: DriftKind) -> usize {
    drifts.iter().filter(|d| d.kind == kind).count()
}

pub fn print_check(report: &CheckReport, format: Format) -> io::Result<()> {
    let findings = &report.findings;
    let drifts = &findings.drifts;
    if format == Format::Json {
        return print_json(&json!({
            "baseline": { "db": report.db, "created_at": report.baseline_created_at },
            "policy_changed": report.policy_changed,
            "full_hash": report.full_hash,
            "seconds": report.seconds,
            "summary": {
                "entries": findings.entries,
                "drifts": drifts.len(),
                "added": count(drifts, DriftKind::Added),
                "removed": count(drifts, DriftKind::Removed),
                "content": count(drifts, DriftKind::Content),
                "attributes": count(drifts, DriftKind::Attributes),
                "errors": findings.errors.len(),
                "out_of_policy": findings.out_of_policy,
                "state_drifts": report.state.changes.len(),
            },
            "drifts": drifts,
            "errors": findings.errors,
            "state_drifts": report.state.changes,
            "sources_unavailable": report.state.unavailable,
            "source_errors": report.state.errors,
        }));
    }
    let mut out = io::stdout().lock();
    if report.policy_changed {
        writeln!(
            out,
            "note: the policy changed since this baseline was made; expect added/removed subjects \
             (re-initialise with `baseline init --force` once reviewed)"
        )?;
    }
    for drift in drifts {
        write_drift(&mut out, drift)?;
    }
    if findings.out_of_policy > 0 {
        writeln!(
            out,
            "note: {} baseline entries are no longer covered by the policy (not drift)",
            findings.out_of_policy
        )?;
    }
    for change in &report.state.changes {
        writeln!(out, "{:<11} {}", change.kind_name(), change.summary)?;
    }
    write_state_notes(&mut out, &report.state)?;
    write_errors(&mut out, &findings.errors)?;
    let mut verdict = if drifts.is_empty() {
        "no drift".to_owned()
    } else {
        format!(
            "{} drift(s): {} added, {} removed, {} content, {} attributes",
            drifts.len(),
            count(drifts, DriftKind::Added),
            count(drifts, DriftKind::Removed),
            count(drifts, DriftKind::Content),
            count(drifts, DriftKind::Attributes)
        )
    };
    let state_changes = report.state.changes.len();
    if state_changes > 0 {
        verdict = if drifts.is_empty() {
            format!("{state_changes} state change(s)")
        } else {
            format!("{verdict}; {state_changes} state change(s)")
        };
    }
    writeln!(
        out,
        "{verdict} in {} entries ({} check, {:.2}s; baseline of {})",
        findings.entries,
        if report.full_hash {
            "full re-hash"
        } else {
            "metadata"
        },
        report.seconds,
        report.baseline_created_at
    )
}

fn write_drift(out: &mut impl Write, drift: &Drift) -> io::Result<()> {
    let label = drift.kind.name();
    match (drift.kind, &drift.before, &drift.after) {
        (DriftKind::Added, _, Some(after)) => {
            writeln!(out, "{label:<11} {} ({})", drift.path, describe(after))?
        }
        (DriftKind::Removed, Some(before), _) => {
            writeln!(out, "{label:<11} {} (was {})", drift.path, describe(before))?
        }
        (_, Some(before), Some(after)) => {
            writeln!(out, "{label:<11} {}", drift.path)?;
            for attr in &drift.changed {
                writeln!(
                    out,
                    "              {attr}: {} -> {}",
                    attribute_value(before, *attr),
                    attribute_value(after, *attr)
                )?;
            }
        }
        _ => writeln!(out, "{label:<11} {}", drift.path)?,
    }
    if let Some(diff) = &drift.diff {
        for line in diff.lines() {
            writeln!(out, "              {}", terminal_safe(line))?;
        }
    }
    Ok(())
}

/// File content for a terminal: control characters (a line's own escape
/// sequences, carriage returns) shown as `\xNN`, everything else as is.
fn terminal_safe(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    for ch in line.chars() {
        if ch.is_control() && ch != '\t' {
            let mut buf = [0u8; 4];
            for byte in ch.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("\\x{byte:02x}"));
            }
        } else {
            out.push(ch);
        }
    }
    out
}

/// One line about a subject: type, mode, owner and size or hash.
fn describe(state: &FileState) -> String {
    let mut text = format!(
        "{} {:04o} {}:{}",
        state.kind, state.mode, state.uid, state.gid
    );
    if let Some(target) = &state.link_target {
        text.push_str(&format!(" -> {target}"));
    }
    if let Some(hash) = &state.content_hash {
        text.push_str(&format!(
            ", {} bytes, blake3 {}",
            state.size,
            short_hash(hash)
        ));
    }
    text
}

fn attribute_value(state: &FileState, attr: Attribute) -> String {
    let or_none = |value: Option<String>| value.unwrap_or_else(|| "-".into());
    match attr {
        Attribute::Type => state.kind.to_string(),
        Attribute::Mode => format!("{:04o}", state.mode),
        Attribute::Uid => state.uid.to_string(),
        Attribute::Gid => state.gid.to_string(),
        Attribute::Size | Attribute::Growing => format!("{} bytes", state.size),
        Attribute::Mtime => format_ns(state.mtime_ns),
        Attribute::Ctime => format_ns(state.ctime_ns),
        Attribute::Inode => state.inode.to_string(),
        Attribute::Device => state.device.to_string(),
        Attribute::Nlink => state.nlink.to_string(),
        Attribute::Hash => or_none(state.content_hash.as_ref().map(short_hash)),
        Attribute::Xattrs => or_none(state.xattrs.as_ref().map(|x| {
            let names: Vec<String> = x.names.iter().map(ToString::to_string).collect();
            format!("[{}] {}", names.join(", "), short_hash(&x.digest))
        })),
        Attribute::LinkTarget => or_none(state.link_target.as_ref().map(ToString::to_string)),
        Attribute::Rdev => or_none(
            state
                .rdev
                .map(|r| format!("{}:{}", libc::major(r), libc::minor(r))),
        ),
    }
}

fn write_errors(out: &mut impl Write, errors: &[ScanError]) -> io::Result<()> {
    if errors.is_empty() {
        return Ok(());
    }
    writeln!(out, "{} subject(s) could not be fully read:", errors.len())?;
    for error in errors {
        writeln!(out, "  {}: {}", error.path, error.message)?;
    }
    Ok(())
}

pub fn print_record(
    path: &PathBytes,
    record: &Record,
    has_snapshot: bool,
    format: Format,
) -> io::Result<()> {
    if format == Format::Json {
        return print_json(&json!({
            "path": path,
            "state": record.state,
            "error": record.error,
            "snapshot": has_snapshot,
        }));
    }
    let mut out = io::stdout().lock();
    let state = &record.state;
    writeln!(out, "{path}")?;
    for attr in [
        Attribute::Type,
        Attribute::Mode,
        Attribute::Uid,
        Attribute::Gid,
        Attribute::Size,
        Attribute::Mtime,
        Attribute::Ctime,
        Attribute::Inode,
        Attribute::Device,
        Attribute::Nlink,
    ] {
        writeln!(
            out,
            "  {:<12} {}",
            attr.name(),
            attribute_value(state, attr)
        )?;
    }
    if let Some(hash) = &state.content_hash {
        writeln!(out, "  {:<12} {hash}", "blake3")?;
    }
    for attr in [Attribute::LinkTarget, Attribute::Rdev, Attribute::Xattrs] {
        let value = attribute_value(state, attr);
        if value != "-" {
            writeln!(out, "  {:<12} {value}", attr.name())?;
        }
    }
    writeln!(
        out,
        "  {:<12} {}",
        "snapshot",
        if has_snapshot {
            "kept (diffs available)"
        } else {
            "none"
        }
    )?;
    if let Some(error) = &record.error {
        writeln!(out, "  {:<12} {error}", "error")?;
    }
    Ok(())
}

pub fn print_summary(
    db: &Path,
    baseline: &Baseline,
    history: &[HistoryEntry],
    policy_changed: bool,
    format: Format,
) -> io::Result<()> {
    if format == Format::Json {
        return print_json(&json!({
            "db": db,
            "created_at": baseline.meta.created_at,
            "entries": baseline.len(),
            "policy_digest": baseline.meta.policy_digest,
            "policy_changed": policy_changed,
            "last_full_hash_at": baseline.meta.last_full_hash_at,
            "integrity": "verified",
            "anchor": baseline.anchor().root,
            "history": history,
        }));
    }
    let mut out = io::stdout().lock();
    writeln!(out, "baseline     {}", db.display())?;
    writeln!(out, "integrity    verified")?;
    // What the collector compares with the root it expects for this host.
    writeln!(out, "anchor       {}", baseline.anchor().root)?;
    writeln!(out, "created      {}", baseline.meta.created_at)?;
    writeln!(out, "entries      {}", baseline.len())?;
    writeln!(out, "full hash    {}", baseline.meta.last_full_hash_at)?;
    writeln!(
        out,
        "policy       {}{}",
        baseline.meta.policy_digest,
        if policy_changed {
            " (the current policy differs)"
        } else {
            ""
        }
    )?;
    writeln!(out, "history:")?;
    for entry in history {
        writeln!(
            out,
            "  {} {:<7} by {}: {}",
            entry.at, entry.action, entry.actor, entry.detail
        )?;
    }
    Ok(())
}

pub fn print_accept(
    scopes: &[String],
    accepted: &[Drift],
    accepted_state: &[StateChange],
    format: Format,
) -> io::Result<()> {
    if format == Format::Json {
        return print_json(&json!({
            "scopes": scopes,
            "accepted": accepted,
            "accepted_state": accepted_state,
        }));
    }
    let mut out = io::stdout().lock();
    if accepted.is_empty() && accepted_state.is_empty() {
        return writeln!(
            out,
            "nothing to accept: no drift at or below {}",
            scopes.join(", ")
        );
    }
    for drift in accepted {
        writeln!(out, "accepted {:<11} {}", drift.kind.name(), drift.path)?;
    }
    for change in accepted_state {
        writeln!(
            out,
            "accepted {:<11} {}",
            change.kind_name(),
            change.subject
        )?;
    }
    writeln!(
        out,
        "{} subject(s) accepted into the baseline (recorded in its history)",
        accepted.len() + accepted_state.len()
    )
}

pub fn print_valid_config(config: &AgentConfig, format: Format) -> io::Result<()> {
    if format == Format::Json {
        return print_json(&json!({
            "file": config.source,
            "valid": true,
            "rules": config.rules.len(),
            "state_dir": config.state_dir,
        }));
    }
    writeln!(
        io::stdout().lock(),
        "{}: ok ({} rules, state in {})",
        config.source.display(),
        config.rules.len(),
        config.state_dir.display()
    )
}

pub fn print_config_errors(path: &Path, errors: &ConfigErrors, format: Format) -> io::Result<()> {
    if format == Format::Json {
        let list: Vec<_> = errors
            .0
            .iter()
            .map(|e| json!({ "file": e.file, "line": e.line, "column": e.column, "key": e.key, "message": e.message }))
            .collect();
        return print_json(&json!({ "file": path, "valid": false, "errors": list }));
    }
    let mut err = io::stderr().lock();
    // In the journal (`ExecReload=` validates first), one line with the err priority.
    if driftwatch_common::logging::stderr_is_journal() {
        let problems: Vec<String> = errors.0.iter().map(ToString::to_string).collect();
        return writeln!(
            err,
            "<3>error: {}: {} error(s): {}",
            path.display(),
            errors.0.len(),
            problems.join("; ")
        );
    }
    for error in &errors.0 {
        writeln!(err, "error: {error}")?;
    }
    writeln!(err, "{}: {} error(s)", path.display(), errors.0.len())
}

#[cfg(test)]
mod tests {
    use super::{SnapshotReport, terminal_safe};
    use crate::baseline::budget::BudgetOutcome;

    #[test]
    fn the_budget_note_says_what_was_left_out_and_how_to_change_it() {
        let mut report = SnapshotReport {
            max_bytes: 64 << 10,
            budget: BudgetOutcome {
                budget: Some(8 << 20),
                used: 8 << 20,
                left_out_files: 0,
                left_out_bytes: 0,
            },
            ..SnapshotReport::default()
        };
        assert_eq!(
            report.left_out_note(),
            None,
            "nothing left out, nothing said"
        );
        report.budget.left_out_files = 1234;
        report.budget.left_out_bytes = 300 << 20;
        let note = report.left_out_note().unwrap();
        for part in [
            "budget of 8.0 MiB",
            "--snapshot-budget",
            "1234 more files of at most 64.0 KiB (300.0 MiB)",
            "without a diff",
        ] {
            assert!(note.contains(part), "{part:?} missing from {note}");
        }
    }

    #[test]
    fn terminal_safe_escapes_control_characters_only() {
        assert_eq!(terminal_safe("dir = C:\\temp\tx"), "dir = C:\\temp\tx");
        assert_eq!(terminal_safe("\x1b[2Jgone\r"), "\\x1b[2Jgone\\x0d");
    }
}
