//! The detector: the one funnel every observation goes through.
//!
//! It runs on its own thread and owns the verified baseline, the spool's
//! writing connection, the reported state and the inotify watches, and
//! handles one message at a time, so events are numbered and chained in the
//! order they are decided and no two comparisons race:
//!
//! - a settled watch batch (`seen_by: watch`): new directories are watched
//!   first, then the batch's paths and subtrees are compared ([`run_check_with`]
//!   with a scope);
//! - a scan (startup, periodic, fallback, rescan after an overflow or once
//!   the spool has room again): the same comparison over the whole policy or
//!   the unwatched subtrees;
//! - a poll of the state sources (packages, sysctl...), collected off this
//!   thread by [`Poller`](crate::observe::sources::poll::Poller) and compared here
//!   with the baseline's state entries ([`state`]);
//! - a baseline-accept command from the collector.
//!
//! After each comparison, [`detect::decide_all`] against the reported state
//! ([`Reported`]) turns drift into events, and subjects with open drift that
//! are back in their baseline state into `restored` events, for files and
//! state subjects alike; all of them are committed to the spool in one
//! transaction with the new reported state (`Engine::commit`).
//!
//! A state source that failed, timed out or is unavailable leaves its subjects
//! unverified: coverage (`Coverage::sources`, `last_source_poll_at`, logged when
//! its condition changes), never drift or "removed". A baseline accept applies only
//! when the subject is now exactly in the reviewed state ([`same_reviewed_state`];
//! for a state subject, collected just before by the heartbeat task, off this
//! thread). `Engine::enrich` adds the masked diff, the actor and package
//! provenance before anything is committed.

use std::cell::RefCell;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use anyhow::Context;
use driftwatch_common::api::v1::{
    AgentCommand, ChangeKind, CommandOutcome, CommandResult, SeenBy, SubjectState,
};
use driftwatch_common::attrs::{Attribute, AttributeSet};
use driftwatch_common::pathbytes::PathBytes;
use driftwatch_common::state::{FileKind, FileState};
use driftwatch_config::AgentConfig;
use time::OffsetDateTime;
use tokio::sync::{Notify, mpsc, oneshot};
use tracing::{debug, error, info};

use crate::baseline::check::{
    CheckMode, CheckOptions, Drift, Observed, is_within, observe_path, read_plan, run_check_with,
    unified_diff,
};
use crate::baseline::store::{
    AcceptedChange, Baseline, BaselineStore, NewHistory, Record, StateCollection,
};
use crate::cli::progress::Progress;
use crate::daemon::detect::{Look, Remembers, Reported, Verdict, decide_all, same_state};
use crate::daemon::events::{Pending, file_subject_path, link_renames};
use crate::daemon::spool::{Committed, Limits, Spool, Spoolable};
use crate::daemon::status::{ScanRecord, StatusHandle};
use crate::daemon::watch::Watcher;
use crate::daemon::watch::coalesce::Batch;
use crate::observe::attribution::{Attribution, GapListener};
use crate::observe::provenance::{PackageDb, PackageRecords};
use crate::observe::redact::SecretMask;
use crate::observe::scan::read::read_subject;
use crate::observe::scan::throttle::Throttle;
use crate::observe::scan::{Policy, ScopeEntry};
use crate::observe::sources::poll::Poll;

/// Work for the detector.
pub enum EngineMsg {
    /// A settled batch from the watch.
    Batch(Batch),
    /// A scan; the reply says how it went.
    Scan {
        kind: ScanKind,
        reply: Option<oneshot::Sender<anyhow::Result<()>>>,
    },
    /// The state sources, just collected (off this thread).
    Sources { poll: Box<Poll>, seen_by: SeenBy },
    /// A command from the collector (delivered with a heartbeat response).
    /// `fresh_state`: for a state subject, its source collected just now.
    Command {
        command: Box<AgentCommand>,
        fresh_state: Option<Box<Poll>>,
        reply: oneshot::Sender<CommandResult>,
    },
    /// The shipper freed space in the spool.
    SpaceFreed,
}

impl From<Batch> for EngineMsg {
    fn from(batch: Batch) -> EngineMsg {
        EngineMsg::Batch(batch)
    }
}

/// A scan of the files. State sources are not scanned here: they are
/// collected off this thread and arrive as [`EngineMsg::Sources`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScanKind {
    /// At start: finds what changed while the agent was down.
    Startup,
    /// After a configuration reload.
    Reload,
    /// The periodic full scan.
    Periodic,
    /// The unwatched subtrees.
    Fallback,
    /// Everything, after lost notifications or once the spool has room again.
    Rescan,
}

impl ScanKind {
    fn name(self) -> &'static str {
        match self {
            ScanKind::Startup => "startup",
            ScanKind::Reload => "reload",
            ScanKind::Periodic => "periodic",
            ScanKind::Fallback => "fallback",
            ScanKind::Rescan => "rescan",
        }
    }

    pub fn seen_by(self) -> SeenBy {
        match self {
            ScanKind::Startup => SeenBy::Startup,
            _ => SeenBy::Scan,
        }
    }
}

/// What the detector needs, handed over by the supervisor.
pub struct Engine {
    config: AgentConfig,
    store: BaselineStore,
    baseline: Baseline,
    /// The baseline's state subjects (verified with it by `BaselineStore::load`).
    baseline_state: StateCollection,
    spool: Spool,
    /// Open drift on files and state subjects, as last reported.
    reported: Reported,
    watcher: Option<Watcher>,
    status: StatusHandle,
    /// Wakes the shipper when events were committed.
    shipped: Arc<Notify>,
    /// Set on shutdown: a long scan stops early (and reports nothing).
    stop: Arc<AtomicBool>,
    /// The spool refused events: rescan once there is room.
    rescan_when_space: bool,
    extras: Extras,
}

/// What enriches events beyond the comparison.
struct Extras {
    attribution: Attribution,
    /// The package manager's records (dpkg or rpm), reloaded after package changes. In a
    /// cell because `enrich` only reads the engine otherwise.
    provenance: RefCell<PackageRecords>,
    mask: SecretMask,
}

impl Extras {
    fn start(
        config: &AgentConfig,
        store: &BaselineStore,
        status: &StatusHandle,
    ) -> anyhow::Result<Extras> {
        let roots: Vec<_> = config.rules.iter().map(|rule| rule.path.clone()).collect();
        let provenance = PackageRecords::open(PackageDb::host());
        if let Some(err) = provenance.unavailable() {
            info!(reason = %err, "package provenance off");
        }
        let mask = SecretMask::new(
            &config.snapshots.secret_keys,
            store.derived_key("diff fingerprint"),
        )
        .context("building the secret mask for diffs")?;
        // Coverage lost later (queue overflow, listener stopped) shows in heartbeats and status.
        let status = status.clone();
        let on_gap_change: GapListener =
            Box::new(move |gap| status.update(|s| s.coverage.attribution_unavailable = gap));
        Ok(Extras {
            attribution: Attribution::start(&roots, Some(on_gap_change)),
            provenance: RefCell::new(provenance),
            mask,
        })
    }
}

impl Engine {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        config: AgentConfig,
        store: BaselineStore,
        baseline: Baseline,
        spool: Spool,
        watcher: Option<Watcher>,
        status: StatusHandle,
        shipped: Arc<Notify>,
        stop: Arc<AtomicBool>,
    ) -> anyhow::Result<Engine> {
        let reported = Reported::new(spool.reported()?, spool.reported_state()?);
        let baseline_state = store.state()?;
        let extras = Extras::start(&config, &store, &status)?;
        Ok(Engine {
            config,
            store,
            baseline,
            baseline_state,
            spool,
            reported,
            watcher,
            status,
            shipped,
            stop,
            rescan_when_space: false,
            extras,
        })
    }

    /// Why writers cannot be named, if they cannot (no CAP_SYS_ADMIN...).
    pub fn attribution_unavailable(&self) -> Option<&str> {
        self.extras.attribution.unavailable_reason()
    }

    /// Sets up the watches and runs the first scan; `ready` gets the outcome.
    /// Then handles messages until every sender is gone.
    pub fn run(
        mut self,
        first_scan: ScanKind,
        ready: oneshot::Sender<anyhow::Result<()>>,
        mut inbox: mpsc::Receiver<EngineMsg>,
    ) {
        let started = Instant::now();
        if let Some(watcher) = &mut self.watcher {
            // Watches first: a change during the scan is then seen by both, harmlessly.
            watcher.watch_policy(&Policy::new(&self.config));
            info!(
                directories = watcher.watch_count(),
                unwatched = watcher.unwatched().len(),
                seconds = started.elapsed().as_secs_f64(),
                "watching"
            );
        }
        self.publish_coverage();
        self.status
            .update(|s| s.phase = format!("{} scan", first_scan.name()));
        let outcome = self.scan(first_scan);
        let failed = outcome.is_err();
        let _ = ready.send(outcome);
        if failed {
            return;
        }
        while let Some(message) = inbox.blocking_recv() {
            if self.stop.load(std::sync::atomic::Ordering::Relaxed) {
                break;
            }
            self.run_message(message);
        }
        debug!("detector stopped");
    }

    /// Handles one message.
    fn run_message(&mut self, message: EngineMsg) {
        {
            match message {
                EngineMsg::Batch(batch) => {
                    if let Err(err) = self.batch(batch) {
                        error!(
                            error = format!("{err:#}"),
                            "comparing watched changes failed"
                        );
                    }
                }
                EngineMsg::Scan { kind, reply } => {
                    let result = self.scan(kind);
                    if let Err(err) = &result {
                        error!(
                            scan = kind.name(),
                            error = format!("{err:#}"),
                            "scan failed"
                        );
                    }
                    if let Some(reply) = reply {
                        let _ = reply.send(result);
                    }
                }
                EngineMsg::Sources { poll, seen_by } => {
                    if let Err(err) = self.sources(&poll, seen_by) {
                        error!(
                            error = format!("{err:#}"),
                            "comparing the state sources failed"
                        );
                    }
                }
                EngineMsg::Command {
                    command,
                    fresh_state,
                    reply,
                } => {
                    let _ = reply.send(self.command(*command, fresh_state.as_deref()));
                }
                EngineMsg::SpaceFreed => {
                    if self.rescan_when_space && self.has_room() {
                        info!("the spool has room again: rescanning for the changes held back");
                        self.rescan_when_space = false;
                        if let Err(err) = self.scan(ScanKind::Rescan) {
                            error!(error = format!("{err:#}"), "rescan failed");
                        }
                    }
                }
            }
        }
    }

    fn has_room(&self) -> bool {
        let limits = self.limits();
        self.spool.depth().is_ok_and(|d| {
            // Some headroom, so one rescan does not fill it again at once.
            d.events < limits.max_events - limits.max_events / 10
                && d.bytes < limits.max_bytes - limits.max_bytes / 10
        })
    }

    fn limits(&self) -> Limits {
        Limits {
            max_events: self.config.daemon.spool.max_events,
            max_bytes: self.config.daemon.spool.max_bytes,
        }
    }

    fn batch(&mut self, batch: Batch) -> anyhow::Result<()> {
        if batch.rescan {
            return self.scan(ScanKind::Rescan);
        }
        if let Some(watcher) = &mut self.watcher {
            // New directories are watched before they are walked: whatever
            // appears in them from now on is notified, what came before is walked.
            watcher.update(&Policy::new(&self.config), &batch.scope);
            self.publish_coverage();
        }
        let renames: Vec<(PathBytes, PathBytes)> = batch
            .renames
            .iter()
            .map(|(from, to)| {
                (
                    PathBytes::from(from.as_path()),
                    PathBytes::from(to.as_path()),
                )
            })
            .collect();
        self.compare(Some(batch.scope), SeenBy::Watch, &renames, false, None)?;
        Ok(())
    }

    fn scan(&mut self, kind: ScanKind) -> anyhow::Result<()> {
        let started = Instant::now();
        let scope = match kind {
            ScanKind::Fallback => match &mut self.watcher {
                // No watch at all: everything is scanned at the fallback interval.
                None => None,
                Some(watcher) => {
                    let scope = watcher.unwatched_scope();
                    if scope.is_empty() {
                        return Ok(());
                    }
                    // Watch what fits now, then scan all of it: what changed before
                    // a new watch existed is found by this scan, what changes after by the watch.
                    watcher.retry_unwatched(&Policy::new(&self.config));
                    self.publish_coverage();
                    Some(scope)
                }
            },
            _ => None,
        };
        let full_hash = matches!(kind, ScanKind::Periodic) && self.full_rehash_due();
        let throttle = match kind {
            ScanKind::Periodic | ScanKind::Fallback => self
                .config
                .daemon
                .scan_max_read_bytes_per_sec
                .map(|rate| Arc::new(Throttle::new(rate))),
            _ => None,
        };
        let summary = self.compare(scope.clone(), kind.seen_by(), &[], full_hash, throttle)?;
        if full_hash {
            self.store
                .record_full_hash(&mut self.baseline, &crate::clock::now_rfc3339())
                .context("recording the full re-hash in the baseline")?;
        }
        let seconds = started.elapsed().as_secs_f64();
        info!(
            scan = kind.name(),
            entries = summary.entries,
            events = summary.events,
            errors = summary.errors,
            full_hash,
            seconds,
            "scan finished"
        );
        let now = OffsetDateTime::now_utc();
        self.status.update(|s| {
            s.last_scan = Some(ScanRecord {
                kind: kind.name().to_owned(),
                finished_at: now,
                seconds,
                entries: summary.entries,
                events: summary.events,
                errors: summary.errors,
                full_hash,
            });
            if scope.is_none() {
                s.coverage.last_full_scan_at = Some(now);
                s.coverage.unreadable = summary.errors;
            }
        });
        Ok(())
    }

    fn full_rehash_due(&self) -> bool {
        let Some(interval) = self.config.scan.full_rehash_interval else {
            return false;
        };
        match crate::clock::parse_rfc3339(&self.baseline.meta.last_full_hash_at) {
            Some(last) => OffsetDateTime::now_utc() - last >= interval,
            None => true,
        }
    }

    /// Compares `scope` (everything when `None`) with the baseline and the
    /// reported state, and commits the resulting events.
    fn compare(
        &mut self,
        scope: Option<Vec<ScopeEntry>>,
        seen_by: SeenBy,
        renames: &[(PathBytes, PathBytes)],
        paranoid: bool,
        throttle: Option<Arc<Throttle>>,
    ) -> anyhow::Result<Summary> {
        let policy = Policy::new(&self.config);
        let options = CheckOptions {
            scope: scope.clone(),
            throttle,
            stop: Some(Arc::clone(&self.stop)),
        };
        let findings = run_check_with(
            &policy,
            &self.baseline,
            &CheckMode { paranoid },
            &options,
            &Progress::silent(),
        )
        .context("comparing with the baseline")?;

        // Every drift has a rule (the check compares covered subjects only).
        let differing = findings.drifts.iter().filter_map(|drift| {
            policy.rule_for(drift.path.as_path())?;
            Some((
                drift.path.clone(),
                drift.after.clone(),
                Found::Listed(drift),
            ))
        });
        // Open drift on subjects the comparison did not mention (clean, or
        // absent as in the baseline): look once more, closely.
        let look = |path: &PathBytes| {
            let in_scope = match &scope {
                None => true,
                Some(scope) => scope.iter().any(|e| e.covers(path.as_path())),
            };
            if !in_scope || findings.errors.iter().any(|e| is_within(path, &e.path)) {
                return Look::Unknown;
            }
            match observe_path(&policy, &self.baseline, path.as_path()) {
                Observed::Drift(drift) => Look::Differs {
                    now: drift.after.clone(),
                    event: Found::Again(drift),
                },
                Observed::Clean(now) => Look::Clean(now),
                Observed::Unreadable(why) => {
                    debug!(path = %path, error = %why, "open drift not re-checked: unreadable");
                    Look::Unknown
                }
                // The policy no longer covers it: nothing to say about it any more.
                Observed::NotCovered => Look::Unknown,
            }
        };
        let same = |path: &PathBytes, a: Option<&FileState>, b: Option<&FileState>| {
            let rule = policy
                .rule_for(path.as_path())
                .expect("decided subjects are covered");
            same_state(a, b, rule.attributes)
        };
        let mut pending: Vec<Pending> = decide_all(differing, self.reported.files(), look, same)
            .into_iter()
            .map(|verdict| match verdict {
                Verdict::Report(found) => Pending::drift(found.drift()),
                Verdict::Restored { key, last, now } => Pending::restored(key, last, now),
            })
            .collect();
        link_renames(&mut pending, renames);
        self.enrich(&mut pending);

        let summary = Summary {
            entries: findings.entries,
            events: self.commit(&pending, seen_by)?,
            errors: findings.errors.len() as u64,
        };
        for error in findings.errors.iter().take(20) {
            debug!(path = %error.path, error = %error.message, "unreadable");
        }
        Ok(summary)
    }

    /// Adds what the comparison itself does not know, before anything is
    /// committed: who made the change (fanotify, where available), whether a
    /// changed file still matches its package, and for text files a diff
    /// with secret values masked (no unmasked diff ever leaves the host).
    fn enrich(&self, pending: &mut [Pending]) {
        // Bounded wait: lets the attribution listener record the writers of these changes.
        self.extras.attribution.catch_up();
        for event in pending.iter_mut() {
            if event.kind == ChangeKind::Restored {
                continue;
            }
            let path = event.path.as_path();
            event.actor = Some(self.extras.attribution.actor_for(path, event.kind));
            let is_file = event
                .after
                .as_ref()
                .is_some_and(|s| s.kind == FileKind::File);
            if is_file {
                let mut records = self.extras.provenance.borrow_mut();
                event.provenance = records.verify(path).and_then(Result::ok);
            }
            if event.kind == ChangeKind::Content {
                event.diff = self.masked_diff(event);
            }
        }
    }

    fn masked_diff(&self, event: &Pending) -> Option<String> {
        let after = event.new_snapshot.as_deref()?;
        let before_hash = event.before.as_ref()?.content_hash?;
        let before = self
            .store
            .snapshot(event.path.as_bytes(), &before_hash)
            .ok()??;
        let diff = unified_diff(&event.path, &before, after)?;
        Some(self.extras.mask.mask_diff(&diff))
    }

    /// Commits events (files or state subjects) and remembers what was
    /// reported, the one place the reported state changes after a
    /// comparison; returns how many were committed.
    fn commit<E: Spoolable + Remembers>(
        &mut self,
        pending: &[E],
        seen_by: SeenBy,
    ) -> anyhow::Result<u64> {
        if pending.is_empty() {
            return Ok(0);
        }
        let committed = self.spool_commit(pending, seen_by)?;
        self.reported.remember(&pending[..committed.events.len()]);
        Ok(self.committed(committed, seen_by))
    }

    fn spool_commit<E: Spoolable>(
        &mut self,
        pending: &[E],
        seen_by: SeenBy,
    ) -> anyhow::Result<Committed> {
        self.spool
            .commit(pending, seen_by, OffsetDateTime::now_utc(), self.limits())
            .context("committing events to the spool")
    }

    /// Logs what a commit did and publishes it; returns how many events were committed.
    fn committed(&mut self, committed: Committed, seen_by: SeenBy) -> u64 {
        for event in &committed.events {
            debug!(
                seq = event.seq,
                subject = %event.subject,
                kind = ?event.kind,
                seen_by = ?event.seen_by,
                "drift event spooled"
            );
        }
        let count = committed.events.len() as u64;
        if count > 0 {
            let first = &committed.events[0];
            info!(
                events = count,
                seen_by = ?seen_by,
                first = %first.subject,
                kind = ?first.kind,
                last_seq = committed.depth.last_seq,
                "drift events spooled"
            );
            self.shipped.notify_one();
        }
        let full = committed.refused > 0;
        if full {
            error!(
                refused = committed.refused,
                spool_events = committed.depth.events,
                spool_bytes = committed.depth.bytes,
                "SPOOL FULL: new drift events are held back (not dropped): they will be found \
                 again by a rescan once the collector acknowledges older events; check delivery"
            );
            self.rescan_when_space = true;
        }
        let now = OffsetDateTime::now_utc();
        let open = self.open_drift();
        self.status.update(|s| {
            s.spool = committed.depth;
            s.spool_full = full;
            s.open_drift = open;
            s.events_spooled += count;
            if count > 0 {
                s.last_event_at = Some(now);
            }
        });
        count
    }

    /// Subjects (files and state) reported and not yet back in their baseline state.
    fn open_drift(&self) -> u64 {
        self.reported.open()
    }

    fn publish_coverage(&self) {
        let (watches, unwatched) = match &self.watcher {
            Some(w) => (w.watch_count() as u64, w.unwatched()),
            None => (
                0,
                self.config
                    .rules
                    .iter()
                    .map(|r| format!("{} (real-time watch disabled)", r.path.display()))
                    .collect(),
            ),
        };
        let open = self.open_drift();
        let entries = (self.baseline.len() + self.baseline_state.len()) as u64;
        let anchor = self.baseline.anchor();
        self.status.update(|s| {
            s.baseline = Some(anchor);
            s.watches = watches;
            s.coverage.unwatched = unwatched;
            s.open_drift = open;
            s.baseline_entries = entries;
        });
    }

    /// A collector command. Baseline acceptance applies only when the
    /// subject is now exactly in the reviewed state.
    fn command(&mut self, command: AgentCommand, fresh_state: Option<&Poll>) -> CommandResult {
        match command {
            AgentCommand::BaselineAccept {
                command_id,
                subject,
                state,
                window_id,
            } => {
                let outcome = if subject.namespace() == "file" {
                    self.accept(&subject, state.as_ref(), command_id, window_id)
                } else {
                    self.accept_state(&subject, state.as_ref(), fresh_state, command_id, window_id)
                };
                let outcome = outcome.unwrap_or_else(|err| CommandOutcome::Failed {
                    message: format!("{err:#}"),
                });
                info!(command = %command_id, subject = %subject, outcome = ?outcome_name(&outcome), "baseline-accept command");
                CommandResult {
                    command_id,
                    outcome,
                    // After an applied accept, the root the collector expects from now on.
                    baseline: Some(self.baseline.anchor()),
                }
            }
        }
    }

    fn accept(
        &mut self,
        subject: &driftwatch_common::api::v1::SubjectKey,
        named: Option<&SubjectState>,
        command_id: uuid::Uuid,
        window_id: Option<uuid::Uuid>,
    ) -> anyhow::Result<CommandOutcome> {
        let Some(path) = file_subject_path(subject) else {
            anyhow::bail!("`{subject}` is not a file subject with an absolute path");
        };
        let named = match named {
            None => None,
            Some(SubjectState::File(state)) => Some(state),
            Some(SubjectState::Fields { .. }) => {
                anyhow::bail!("`{subject}` is a file, but the accepted state is not a file state")
            }
        };
        let policy = Policy::new(&self.config);
        let Some(rule) = policy.rule_for(&path) else {
            anyhow::bail!("no rule of this host's policy covers {}", path.display());
        };
        let (current, snapshot) = match std::fs::symlink_metadata(&path) {
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => (None, None),
            Err(err) => anyhow::bail!("cannot read {}: {err}", path.display()),
            Ok(meta) => {
                let plan = read_plan(&policy, rule, &path, None);
                let outcome = read_subject(&path, &meta, &plan);
                if !outcome.errors.is_empty() {
                    anyhow::bail!(
                        "cannot read {}: {}",
                        path.display(),
                        outcome.errors.join("; ")
                    );
                }
                (Some(outcome.state), outcome.snapshot)
            }
        };
        if !same_reviewed_state(named, current.as_ref(), rule.attributes) {
            return Ok(CommandOutcome::Mismatch {
                current: current.map(SubjectState::File),
            });
        }
        let bytes = PathBytes::from(path.as_path());
        let detail = serde_json::json!({
            "reason": "change window close-out accepted at the collector",
            "command_id": command_id,
            "window_id": window_id,
            "subjects": [{
                "path": bytes,
                "kind": if current.is_some() { "present" } else { "absent" },
                "hash": current.as_ref().and_then(|s| s.content_hash),
            }],
        })
        .to_string();
        self.store.accept(
            &[AcceptedChange {
                path: bytes.clone(),
                record: current.map(|state| Record { state, error: None }),
                snapshot,
            }],
            NewHistory {
                action: "accept",
                actor: format!("collector (command {command_id})"),
                detail,
            },
        )?;
        self.baseline = self
            .store
            .load_lean()
            .context("re-loading the baseline after an accept")?;
        // The drift is now the baseline: nothing is open on the subject any more.
        self.spool.forget(&bytes)?;
        self.reported.forget_file(&bytes);
        self.publish_coverage();
        Ok(CommandOutcome::Applied)
    }
}

fn outcome_name(outcome: &CommandOutcome) -> &'static str {
    match outcome {
        CommandOutcome::Applied => "applied",
        CommandOutcome::Mismatch { .. } => "mismatch",
        CommandOutcome::Failed { .. } => "failed",
    }
}

/// Whether the subject is now in exactly the reviewed state, as far as its
/// rule compares states. Unlike drift detection, a side whose content hash
/// or extended attributes are unknown never matches: an acceptance must
/// name what it accepts.
pub fn same_reviewed_state(
    named: Option<&FileState>,
    current: Option<&FileState>,
    attributes: AttributeSet,
) -> bool {
    match (named, current) {
        (None, None) => true,
        (Some(named), Some(current)) => {
            let strict = |attr: Attribute| attributes.contains(attr);
            let content_known = named.kind != driftwatch_common::state::FileKind::File
                || !attributes.reads_content()
                || (named.content_hash.is_some() && named.content_hash == current.content_hash);
            let xattrs_known = !strict(Attribute::Xattrs)
                || (named.xattrs.is_some()
                    && named.xattrs.as_ref().map(|x| x.digest)
                        == current.xattrs.as_ref().map(|x| x.digest));
            named.kind == current.kind
                && FileState::changed_attributes(named, current, attributes, None).is_empty()
                && content_known
                && xattrs_known
        }
        _ => false,
    }
}

/// A drift to report, built into an event only once it is decided on.
enum Found<'a> {
    /// Listed by the comparison.
    Listed(&'a Drift),
    /// Found by looking once more at a subject with open drift.
    Again(Box<Drift>),
}

impl Found<'_> {
    fn drift(&self) -> &Drift {
        match self {
            Found::Listed(drift) => drift,
            Found::Again(drift) => drift,
        }
    }
}

#[derive(Debug, Default)]
struct Summary {
    entries: u64,
    events: u64,
    errors: u64,
}

/// Opens the verified baseline of a state directory (a tampered one is an error), its
/// records kept out of memory for the daemon's lifetime.
pub fn load_baseline(state_dir: &Path) -> anyhow::Result<(BaselineStore, Baseline)> {
    let paths = crate::baseline::store::StorePaths::in_state_dir(state_dir);
    let store = BaselineStore::open(&paths)?;
    let baseline = store.load_lean()?;
    Ok((store, baseline))
}

mod state;
#[cfg(test)]
mod tests;
