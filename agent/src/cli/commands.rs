//! The agent's commands: `baseline init|show|accept`, `check`, `validate-config`.
//!
//! Each wires scan, check, the store and the report; `main.rs` only parses
//! arguments and maps results to exit codes.

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail};
use driftwatch_common::pathbytes::PathBytes;
use driftwatch_config::AgentConfig;

use crate::Exit;
use crate::baseline::budget::SnapshotBudget;
use crate::baseline::check::{
    CheckMode, DriftKind, Findings, is_within, read_plan, run_check, unified_diff,
};
use crate::baseline::store::{
    AcceptedChange, AcceptedState, BaselineStore, BaselineWriter, HistoryEntry, Meta, NewHistory,
    Record, Snapshot, StoreError, StorePaths,
};
use crate::cli::progress::Progress;
use crate::cli::rebaseline::Guard;
use crate::cli::report::{self, CheckReport, Format, InitReport, SnapshotReport, StateFindings};
use crate::clock;
use crate::observe::scan::read::read_subject;
use crate::observe::scan::{Policy, ScanError, ScanEvent};
use crate::observe::sources;

/// What a command works on: a policy and the baseline that belongs to it.
pub struct Target {
    pub config: AgentConfig,
    pub store: StorePaths,
}

/// Output options shared by the commands.
#[derive(Clone, Copy)]
pub struct Output {
    pub format: Format,
    /// Show progress on long scans.
    pub progress: bool,
}

/// `baseline init`: records the current state of every subject as the baseline.
pub fn init(target: &Target, force: bool, output: Output) -> anyhow::Result<Exit> {
    let progress = Progress::start("baseline init", None, output.progress);
    let report = create_baseline(target, force, &progress);
    drop(progress);
    let report = report?;
    report::print_init(&report, output.format)?;
    Ok(
        if report.errors.is_empty() && report.state.errors.is_empty() {
            Exit::Clean
        } else {
            Exit::Incomplete
        },
    )
}

/// Scans the policy and writes a new, sealed baseline (replacing the old one only on success).
pub fn create_baseline(
    target: &Target,
    force: bool,
    progress: &Progress,
) -> anyhow::Result<InitReport> {
    let started = Instant::now();
    let mut guard = Guard::acquire(
        target,
        if force {
            "baseline init --force"
        } else {
            "baseline init"
        },
    )?;
    let policy = Policy::new(&target.config);
    let previous = force.then(|| previous_baseline(&target.store)).flatten();
    let replaced = previous.as_ref().map(|p| p.description.clone());
    let mut writer = BaselineWriter::create(&target.store, force)?;
    let mut errors = Vec::new();
    let mut entries = 0u64;
    let mut write_error = None;
    let settings = &target.config.snapshots;
    let budget = SnapshotBudget::new(settings.budget);
    let inspect = |subject: crate::observe::scan::Subject<'_>| {
        let mut plan = read_plan(&policy, subject.rule, subject.path, None);
        let budgeted = settings.budgeted(subject.path);
        // Once the budget is spent, content is hashed without being copied or compressed.
        let skipped = plan.snapshot_max > 0 && !budget.wants(budgeted);
        if skipped {
            plan.snapshot_max = 0;
        }
        let mut outcome = read_subject(subject.path, &subject.meta, &plan);
        if outcome.state.content_hash.is_some() {
            progress.add_bytes(outcome.state.size);
            if skipped && outcome.state.size <= settings.max_bytes {
                budget.left_out(outcome.state.size);
            }
        }
        // Compressed here, on the scan's workers, not on the thread that writes.
        let snapshot = outcome
            .snapshot
            .take()
            .zip(outcome.state.content_hash)
            .map(|(content, hash)| Snapshot::with_hash(hash, &content))
            .filter(|s| budget.admit(budgeted, &s.hash, s.raw_len, s.compressed.len() as u64));
        Some((PathBytes::from(subject.path), outcome, snapshot))
    };
    let scanned = policy.scan(progress, inspect, |event| match event {
        ScanEvent::Item((path, outcome, snapshot)) => {
            entries += 1;
            errors.extend(outcome.errors.iter().map(|message| ScanError {
                path: path.clone(),
                message: message.clone(),
            }));
            let record = Record {
                error: (!outcome.errors.is_empty()).then(|| outcome.errors.join("; ")),
                state: outcome.state,
            };
            if write_error.is_none()
                && let Err(err) = writer.insert(path.as_bytes(), &record, snapshot.as_ref())
            {
                write_error = Some(err);
            }
        }
        ScanEvent::Error(error) => errors.push(error),
        ScanEvent::Incomplete(_) => {}
    });
    let bytes_hashed = progress.bytes();
    let collected = sources::collect_all(&sources::configured(&target.config.sources));
    for (subject, fields) in &collected.state {
        if write_error.is_none()
            && let Err(err) = writer.insert_state(subject, fields)
        {
            write_error = Some(err);
        }
    }
    if let Some(err) = scanned
        .err()
        .map(anyhow::Error::from)
        .or(write_error.map(Into::into))
    {
        writer.abort();
        return Err(err.context("baseline init failed; any previous baseline is unchanged"));
    }

    let now = clock::now_rfc3339();
    let meta = Meta {
        created_at: now.clone(),
        policy_digest: target.config.policy_digest().to_hex(),
        last_full_hash_at: now,
    };
    let roots: Vec<String> = target
        .config
        .rules
        .iter()
        .map(|r| r.path.display().to_string())
        .collect();
    let mut detail = format!(
        "{entries} entries, {} state subjects, {} unreadable, policy {} ({}), rules: {}",
        collected.state.len(),
        errors.len() + collected.errors.len(),
        meta.policy_digest,
        target.config.source.display(),
        roots.join(" ")
    );
    if let Some(previous) = &replaced {
        detail.push_str(&format!("; replaced {previous}"));
    }
    let history = NewHistory {
        action: if replaced.is_some() { "reinit" } else { "init" },
        actor: clock::actor(),
        detail,
    };
    let action = history.action;
    let history_detail = history.detail.clone();
    let snapshot_totals = match writer.snapshot_totals() {
        Ok(totals) => totals,
        Err(err) => {
            writer.abort();
            return Err(anyhow::Error::from(err)
                .context("baseline init failed; any previous baseline is unchanged"));
        }
    };
    let (carried, before) = match previous {
        Some(p) => (p.history, p.anchor),
        None => (Vec::new(), Ok(None)),
    };
    writer
        .finish(&meta, &carried, &[history])
        .context("baseline init failed; any previous baseline is unchanged")?;
    if let Some(guard) = guard.as_mut().filter(|g| g.reports()) {
        let after = BaselineStore::open(&target.store)?.load()?.anchor();
        guard.report(before, after, action, &history_detail)?;
    }
    errors.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(InitReport {
        db: target.store.db.clone(),
        entries,
        bytes_hashed,
        seconds: started.elapsed().as_secs_f64(),
        replaced,
        errors,
        state_subjects: collected.state.len(),
        snapshots: SnapshotReport {
            totals: snapshot_totals,
            budget: budget.outcome(),
            max_bytes: settings.max_bytes,
        },
        state: StateFindings {
            changes: Vec::new(),
            unavailable: collected.unavailable,
            errors: collected.errors,
        },
    })
}

/// The baseline that `init --force` is about to replace.
struct PreviousBaseline {
    /// One line for the new baseline's history.
    description: String,
    /// Its history, carried over when it verifies (an unverifiable history is not evidence).
    history: Vec<HistoryEntry>,
    /// Its anchor for the collector, or why it has none it can vouch for.
    anchor: Result<Option<driftwatch_common::api::v1::BaselineAnchor>, String>,
}

fn previous_baseline(paths: &StorePaths) -> Option<PreviousBaseline> {
    if !paths.db.exists() {
        return None;
    }
    let verified =
        BaselineStore::open(paths).and_then(|store| Ok((store.load()?, store.history()?)));
    Some(match verified {
        Ok((baseline, history)) => PreviousBaseline {
            description: format!(
                "baseline created {} with {} entries",
                baseline.meta.created_at,
                baseline.len()
            ),
            history,
            anchor: Ok(Some(baseline.anchor())),
        },
        Err(err) => PreviousBaseline {
            description: format!(
                "a baseline that failed to load or verify, history dropped ({err})"
            ),
            history: Vec::new(),
            anchor: Err(format!("the replaced baseline did not verify: {err}")),
        },
    })
}

/// `check`: compares the current state with the baseline.
pub fn check(target: &Target, paranoid: bool, output: Output) -> anyhow::Result<Exit> {
    let started = Instant::now();
    let mut store = BaselineStore::open(&target.store)?;
    let mut baseline = store.load()?;
    let policy = Policy::new(&target.config);
    let policy_changed = baseline.meta.policy_digest != target.config.policy_digest().to_hex();
    let full_hash = paranoid || full_hash_due(&baseline.meta, &target.config);
    let progress = Progress::start("check", Some(baseline.len() as u64), output.progress);
    let mut findings = run_check(
        &policy,
        &baseline,
        &CheckMode {
            paranoid: full_hash,
        },
        &progress,
    )?;
    drop(progress);
    attach_diffs(&store, &baseline, &mut findings)?;
    let state = check_state(&store, &target.config)?;
    if full_hash {
        store.record_full_hash(&mut baseline, &clock::now_rfc3339())?;
    }
    let report = CheckReport {
        db: target.store.db.clone(),
        baseline_created_at: baseline.meta.created_at.clone(),
        policy_changed,
        full_hash,
        seconds: started.elapsed().as_secs_f64(),
        findings,
        state,
    };
    report::print_check(&report, output.format)?;
    let drifted = !report.findings.drifts.is_empty() || !report.state.changes.is_empty();
    let incomplete = !report.findings.errors.is_empty() || !report.state.errors.is_empty();
    Ok(if drifted {
        Exit::Drift
    } else if incomplete {
        Exit::Incomplete
    } else {
        Exit::Clean
    })
}

/// Compares the enabled state sources with their baseline. Subjects of a
/// source that could not be read now are left out (and the error reported),
/// not called removed.
fn check_state(store: &BaselineStore, config: &AgentConfig) -> anyhow::Result<StateFindings> {
    let collected = sources::collect_all(&sources::configured(&config.sources));
    let baselined: sources::Collection = store
        .state()?
        .into_iter()
        .filter(|(subject, _)| collected.covers(subject))
        .collect();
    Ok(StateFindings {
        changes: sources::diff_states(&baselined, &collected.state),
        unavailable: collected.unavailable,
        errors: collected.errors,
    })
}

fn full_hash_due(meta: &Meta, config: &AgentConfig) -> bool {
    let Some(interval) = config.scan.full_rehash_interval else {
        return false;
    };
    match clock::parse_rfc3339(&meta.last_full_hash_at) {
        Some(last) => time::OffsetDateTime::now_utc() - last >= interval,
        None => true,
    }
}

/// Adds a unified diff to content drift of text files that have snapshots.
fn attach_diffs(
    store: &BaselineStore,
    baseline: &crate::baseline::store::Baseline,
    findings: &mut Findings,
) -> anyhow::Result<()> {
    for drift in &mut findings.drifts {
        if drift.kind != DriftKind::Content {
            continue;
        }
        let (Some(after), Some(record)) =
            (&drift.new_snapshot, baseline.get(drift.path.as_bytes())?)
        else {
            continue;
        };
        let Some(before_hash) = record.state.content_hash else {
            continue;
        };
        if let Some(before) = store.snapshot(drift.path.as_bytes(), &before_hash)? {
            drift.diff = unified_diff(&drift.path, &before, after);
        }
    }
    Ok(())
}

/// `baseline show [PATH]`: one subject's baseline record, or a summary with the history.
pub fn show(target: &Target, path: Option<&Path>, output: Output) -> anyhow::Result<Exit> {
    let store = BaselineStore::open(&target.store)?;
    let baseline = store.load()?;
    match path {
        Some(path) => {
            let path = absolute(path)?;
            let bytes = path.as_os_str().as_bytes();
            let Some(record) = baseline.get(bytes)? else {
                bail!(
                    "{} is not in the baseline{}",
                    PathBytes::from(path.as_path()),
                    if Policy::new(&target.config).rule_for(&path).is_some() {
                        " (the policy covers it: it did not exist at init, or was accepted as removed)"
                    } else {
                        " (no rule of the policy covers it)"
                    }
                );
            };
            let has_snapshot = match record.state.content_hash {
                Some(hash) => store.snapshot(bytes, &hash)?.is_some(),
                None => false,
            };
            report::print_record(
                &PathBytes::from(path.as_path()),
                &record,
                has_snapshot,
                output.format,
            )?;
        }
        None => {
            let history = store.history()?;
            let policy_changed =
                baseline.meta.policy_digest != target.config.policy_digest().to_hex();
            report::print_summary(
                &target.store.db,
                &baseline,
                &history,
                policy_changed,
                output.format,
            )?;
        }
    }
    Ok(Exit::Clean)
}

/// `baseline accept PATH...`: takes the current state of the drifted subjects
/// at or below each PATH as their new baseline, recorded with a reason.
pub fn accept(
    target: &Target,
    subjects: &[PathBuf],
    reason: &str,
    output: Output,
) -> anyhow::Result<Exit> {
    if reason.trim().is_empty() {
        bail!("--reason must say why the change is accepted");
    }
    // `package:nginx` (or `package:` for every package) names state; anything else is a path.
    let (state_scopes, path_args): (Vec<&PathBuf>, Vec<&PathBuf>) = subjects
        .iter()
        .partition(|arg| arg.to_str().is_some_and(is_state_scope));
    let state_scopes: Vec<&str> = state_scopes.iter().filter_map(|s| s.to_str()).collect();
    let scopes: Vec<PathBytes> = path_args
        .iter()
        .map(|p| absolute(p).map(PathBytes::from))
        .collect::<anyhow::Result<_>>()?;
    let mut guard = Guard::acquire(target, "baseline accept")?;
    let mut store = BaselineStore::open(&target.store)?;
    let baseline = store.load()?;

    let accepted = if scopes.is_empty() {
        Vec::new()
    } else {
        accepted_file_drift(target, &baseline, &scopes, output)?
    };
    let accepted_state = if state_scopes.is_empty() {
        Vec::new()
    } else {
        let state = check_state(&store, &target.config)?;
        if let Some(error) = state.errors.first() {
            bail!("cannot accept state: {error}");
        }
        state
            .changes
            .into_iter()
            .filter(|c| {
                state_scopes
                    .iter()
                    .any(|scope| state_in_scope(&c.subject, scope))
            })
            .collect::<Vec<_>>()
    };

    if !accepted.is_empty() || !accepted_state.is_empty() {
        let files = accepted.iter().map(|d| {
            serde_json::json!({
                "path": d.path,
                "kind": d.kind.name(),
                "hash": d.after.as_ref().and_then(|s| s.content_hash),
            })
        });
        let states = accepted_state.iter().map(|c| {
            serde_json::json!({ "subject": c.subject, "kind": c.kind_name(), "fields": c.after })
        });
        let detail = serde_json::json!({
            "reason": reason,
            "subjects": files.chain(states).collect::<Vec<_>>(),
        })
        .to_string();
        let changes: Vec<AcceptedChange> = accepted
            .iter()
            .map(|drift| AcceptedChange {
                path: drift.path.clone(),
                record: drift.new_record.clone(),
                snapshot: drift.new_snapshot.clone(),
            })
            .collect();
        let states: Vec<AcceptedState> = accepted_state
            .iter()
            .map(|c| AcceptedState {
                subject: c.subject.clone(),
                fields: c.after.clone(),
            })
            .collect();
        store.accept_with_state(
            &changes,
            &states,
            NewHistory {
                action: "accept",
                actor: clock::actor(),
                detail: detail.clone(),
            },
        )?;
        if let Some(guard) = guard.as_mut().filter(|g| g.reports()) {
            let after = store.load()?.anchor();
            guard.report(Ok(Some(baseline.anchor())), after, "accept", &detail)?;
        }
    }
    let scope_names: Vec<String> = scopes
        .iter()
        .map(ToString::to_string)
        .chain(state_scopes.iter().map(|s| (*s).to_owned()))
        .collect();
    report::print_accept(&scope_names, &accepted, &accepted_state, output.format)?;
    Ok(Exit::Clean)
}

/// The file drift at or below `scopes`; refuses if any of it could not be read.
fn accepted_file_drift(
    target: &Target,
    baseline: &crate::baseline::store::Baseline,
    scopes: &[PathBytes],
    output: Output,
) -> anyhow::Result<Vec<crate::baseline::check::Drift>> {
    let policy = Policy::new(&target.config);
    let progress = Progress::start("accept", Some(baseline.len() as u64), output.progress);
    let findings = run_check(&policy, baseline, &CheckMode { paranoid: false }, &progress)?;
    drop(progress);
    let unverified: Vec<&ScanError> = findings
        .errors
        .iter()
        .filter(|e| {
            scopes
                .iter()
                .any(|scope| is_within(&e.path, scope) || is_within(scope, &e.path))
        })
        .collect();
    if let Some(first) = unverified.first() {
        bail!(
            "cannot accept: {} subject(s) in scope could not be read (first: {}: {}); fix access and retry",
            unverified.len(),
            first.path,
            first.message
        );
    }
    Ok(findings
        .drifts
        .into_iter()
        .filter(|d| scopes.iter().any(|scope| is_within(&d.path, scope)))
        .collect())
}

/// `package:nginx`, `sysctl:` ...: a known state namespace, a colon, maybe a name.
fn is_state_scope(arg: &str) -> bool {
    arg.split_once(':').is_some_and(|(namespace, _)| {
        ["package", "sysctl", "module", "port", "user", "group"].contains(&namespace)
    })
}

/// A scope ending in `:` covers its whole namespace; otherwise the exact subject.
fn state_in_scope(subject: &driftwatch_common::api::v1::SubjectKey, scope: &str) -> bool {
    if scope.ends_with(':') {
        subject.0.starts_with(scope)
    } else {
        subject.0 == scope
    }
}

/// `validate-config`: loads and validates a configuration file, running nothing.
pub fn validate_config(path: &Path, output: Output) -> anyhow::Result<Exit> {
    match AgentConfig::load(path) {
        Ok(config) => {
            report::print_valid_config(&config, output.format)?;
            Ok(Exit::Clean)
        }
        Err(errors) => {
            report::print_config_errors(path, &errors, output.format)?;
            Ok(Exit::Config)
        }
    }
}

/// Makes a user-supplied path absolute without resolving symlinks (the
/// subject may no longer exist, and a symlink is itself a subject).
pub fn absolute(path: &Path) -> anyhow::Result<PathBuf> {
    let joined =
        std::path::absolute(path).with_context(|| format!("cannot resolve {}", path.display()))?;
    // std::path::absolute keeps `..`; drop them lexically like the policy does.
    let mut normal = PathBuf::new();
    for component in joined.components() {
        match component {
            std::path::Component::ParentDir => {
                normal.pop();
            }
            std::path::Component::CurDir => {}
            other => normal.push(other),
        }
    }
    Ok(normal)
}

/// Maps an error to its exit code: integrity failures get their own.
pub fn exit_for_error(err: &anyhow::Error) -> Exit {
    if driftwatch_common::logging::is_config_refused(err.as_ref()) {
        return Exit::Config;
    }
    match err.downcast_ref::<StoreError>() {
        Some(store_err) if store_err.is_integrity_failure() => Exit::Integrity,
        _ => Exit::Error,
    }
}
