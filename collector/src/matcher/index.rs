//! Approved windows indexed by host and time, so that matching an event looks at the few
//! windows that could cover it rather than all of them.
//!
//! Windows are filed under each host name they list, under the first of their labels, and
//! (when they use host globs) in one list checked against the host name. Each list is
//! sorted by start; with the longest window of the list `L`, the windows that may cover
//! time `t` start in `[t - L, t]`, found by binary search.
//!
//! Recurring standard windows are filed the same way in lists of their own, by their
//! validity period (up to a year): kept apart, they do not widen `L` for the one-off
//! windows. Their occurrences are not expanded: a candidate is tested arithmetically
//! ([`Recurrence::overlaps`] looks at the two or three local dates that could hold an
//! occurrence containing `t`). A recurring window's list entry is therefore a candidate
//! for every event of its hosts during its validity, which is fine because standard
//! windows are a small catalogue of routine changes, not thousands per host.

use std::collections::HashMap;
use std::sync::Arc;

use driftwatch_common::pattern::GlobList;
use uuid::Uuid;

use super::HostFacts;
use super::decide::{Ending, Miss, Opening};
use crate::clock::Millis;
use crate::spool_time::SpoolBounds;
use crate::windows::schedule::Recurrence;
use crate::windows::validate::SubjectGlobs;
use crate::windows::{ExpectedState, HostScope, Window, WindowStatus};

/// One approved window, compiled for matching.
#[derive(Debug)]
pub(super) struct Compiled {
    pub id: Uuid,
    pub start: Millis,
    /// The planned end (the tolerance may extend it).
    pub end: Millis,
    /// When it was closed or cancelled: nothing spooled later is covered, tolerance or not.
    pub ended_at: Option<Millis>,
    hosts: HostScope,
    host_globs: GlobList,
    pub subjects: SubjectGlobs,
    pub expected: Vec<ExpectedState>,
    pub implementers: Vec<String>,
    /// Who approved it: their own changes inside it are flagged.
    pub approver: Option<String>,
    /// Recurring: open only on its occurrences between `start` and `end`.
    recurrence: Option<Recurrence>,
    /// Its state; only a window that was approved authorizes ([`Window::was_approved`]).
    pub status: WindowStatus,
    pub approved: bool,
}

impl Compiled {
    /// The latest spool time it covers: the planned end plus the tolerance, never past
    /// its close or cancel time.
    pub(super) fn latest(&self, tolerance: Millis) -> Millis {
        let planned = self.end.saturating_add(tolerance);
        self.ended_at.map_or(planned, |ended| ended.min(planned))
    }

    /// Whether it is planned open at some time in `[from, to]` (closing is not looked at:
    /// a superset of the windows that cover or meet an interval).
    fn open_during(&self, from: Millis, to: Millis) -> bool {
        match &self.recurrence {
            None => self.start <= to && self.end >= from,
            Some(recurrence) => recurrence.overlaps(from, to, self.start, self.end),
        }
    }

    /// Whether it covers the whole of `spooled` (one occurrence of a recurring window),
    /// its start and planned end widened by `tolerance`, its close never.
    pub(super) fn contains(&self, spooled: SpoolBounds, tolerance: Millis) -> bool {
        if spooled.before > self.latest(tolerance) {
            return false;
        }
        match &self.recurrence {
            None => self.start.saturating_sub(tolerance) <= spooled.after,
            Some(recurrence) => recurrence.contains(
                spooled.after,
                spooled.before,
                self.start,
                self.end,
                tolerance,
            ),
        }
    }

    /// Whether it was open (widened by `tolerance`, never past its close) during some of
    /// `spooled`.
    pub(super) fn meets(&self, spooled: SpoolBounds, tolerance: Millis) -> bool {
        spooled.after <= self.latest(tolerance)
            && self.open_during(
                spooled.after.saturating_sub(tolerance),
                spooled.before.saturating_add(tolerance),
            )
    }

    /// Why `spooled` is outside it, for a window that neither contains nor meets it
    /// (`!contains && !meets`): after its end (its close or cancel, its planned end, or the
    /// nearest occurrence's end), or before its start (or the nearest occurrence's). The
    /// distances are between the spool interval and the window's own times, without the
    /// tolerance: what a person compares with the ticket.
    pub(super) fn time_miss(&self, spooled: SpoolBounds, tolerance: Millis) -> Miss {
        let after = |ended: Ending, at: Millis| Miss::After {
            ended,
            at,
            by_ms: spooled.after.saturating_sub(at).max(0),
        };
        let before = |opens: Opening, at: Millis| Miss::Before {
            opens,
            at,
            by_ms: at.saturating_sub(spooled.before).max(0),
        };
        // Closed or cancelled before its planned end: that is when it stopped covering.
        let (ended, end) = match self.ended_at {
            Some(at) if at < self.end => (
                match self.status {
                    WindowStatus::Cancelled => Ending::Cancelled,
                    _ => Ending::Closed,
                },
                at,
            ),
            _ => (Ending::PlannedEnd, self.end),
        };
        if spooled.after > self.latest(tolerance) {
            return after(ended, end);
        }
        let Some(recurrence) = &self.recurrence else {
            return before(Opening::Start, self.start);
        };
        if spooled.before.saturating_add(tolerance) < self.start {
            return before(Opening::Start, self.start);
        }
        match recurrence.nearest(spooled.after, spooled.before, self.start, end) {
            Some((_, closes)) if closes < spooled.after => after(Ending::Occurrence, closes),
            Some((opens, _)) => before(Opening::Occurrence, opens),
            None => Miss::NoOccurrence,
        }
    }

    pub(super) fn covers_host(&self, host: HostFacts<'_>) -> bool {
        self.hosts.names.iter().any(|name| name == host.hostname)
            || self
                .host_globs
                .is_match(std::path::Path::new(host.hostname))
            || (!self.hosts.labels.is_empty()
                && self
                    .hosts
                    .labels
                    .iter()
                    .all(|(k, v)| host.labels.get(k) == Some(v)))
    }
}

/// Windows sorted by start, with the longest duration among them.
#[derive(Debug, Default)]
struct TimeList {
    /// (start, index into `WindowIndex::windows`), sorted.
    entries: Vec<(Millis, usize)>,
    longest: Millis,
}

impl TimeList {
    fn push(&mut self, window: &Compiled, at: usize) {
        self.entries.push((window.start, at));
        self.longest = self.longest.max(window.end - window.start);
    }

    /// Indexes of windows starting in `[from - longest, to]`.
    fn starting_near(&self, from: Millis, to: Millis) -> impl Iterator<Item = usize> + '_ {
        let lo = self
            .entries
            .partition_point(|(start, _)| *start < from.saturating_sub(self.longest));
        let hi = self.entries.partition_point(|(start, _)| *start <= to);
        self.entries[lo..hi.max(lo)].iter().map(|(_, at)| *at)
    }
}

/// Lists of windows by the hosts they name.
#[derive(Debug, Default)]
struct HostLists {
    by_name: HashMap<String, TimeList>,
    /// label name → label value → windows whose first label it is.
    by_label: HashMap<String, HashMap<String, TimeList>>,
    by_glob: TimeList,
}

impl HostLists {
    fn file(&mut self, window: &Compiled, at: usize) {
        for name in &window.hosts.names {
            self.by_name
                .entry(name.clone())
                .or_default()
                .push(window, at);
        }
        if let Some((key, value)) = window.hosts.labels.iter().next() {
            self.by_label
                .entry(key.clone())
                .or_default()
                .entry(value.clone())
                .or_default()
                .push(window, at);
        }
        if !window.hosts.globs.is_empty() {
            self.by_glob.push(window, at);
        }
    }

    fn sort(&mut self) {
        for list in self
            .by_name
            .values_mut()
            .chain(self.by_label.values_mut().flat_map(|m| m.values_mut()))
            .chain(std::iter::once(&mut self.by_glob))
        {
            list.entries.sort_unstable();
        }
    }

    /// The lists that may hold windows covering `host`.
    fn for_host<'a>(&'a self, host: HostFacts<'a>) -> impl Iterator<Item = &'a TimeList> {
        self.by_name
            .get(host.hostname)
            .into_iter()
            .chain(
                host.labels
                    .iter()
                    .filter_map(|(k, v)| self.by_label.get(k)?.get(v)),
            )
            .chain(std::iter::once(&self.by_glob))
    }
}

#[derive(Debug, Default)]
pub struct WindowIndex {
    /// Sorted by id (creation order); shared between successive indexes.
    windows: Vec<Arc<Compiled>>,
    once: HostLists,
    recurring: HostLists,
}

pub(super) fn compile(window: &Window) -> Result<Arc<Compiled>, (Uuid, String)> {
    Ok(Arc::new(Compiled {
        id: window.id,
        start: window.start,
        end: window.end,
        ended_at: window.ended_at,
        hosts: window.hosts.clone(),
        host_globs: GlobList::new(&window.hosts.globs)
            .map_err(|err| (window.id, err.to_string()))?,
        subjects: SubjectGlobs::compile(&window.subjects).map_err(|e| (window.id, e))?,
        expected: window.expected.clone(),
        implementers: window.implementers.clone(),
        approver: window.decided_by.clone(),
        recurrence: window
            .schedule
            .as_ref()
            .map(|schedule| Recurrence::compile(schedule, &window.time_zone))
            .transpose()
            .map_err(|problems| (window.id, problems.join("; ")))?,
        status: window.status,
        approved: window.was_approved(),
    }))
}

impl WindowIndex {
    /// Indexes the windows that authorize (approved, or closed or cancelled after approval).
    /// A stored window whose patterns no longer compile is returned as an error with its id.
    pub fn build(windows: &[Window]) -> Result<WindowIndex, (Uuid, String)> {
        let compiled = windows
            .iter()
            .filter(|w| w.was_approved())
            .map(compile)
            .collect::<Result<_, _>>()?;
        Ok(Self::from_compiled(compiled))
    }

    /// This index with `window` as it is now (added, changed or dropped), reusing every
    /// other compiled window: a decision costs a sort, not a recompilation of every glob.
    pub fn updated(&self, window: &Window) -> Result<WindowIndex, (Uuid, String)> {
        let mut compiled: Vec<Arc<Compiled>> = self
            .windows
            .iter()
            .filter(|c| c.id != window.id)
            .cloned()
            .collect();
        if window.was_approved() {
            compiled.push(compile(window)?);
        }
        Ok(Self::from_compiled(compiled))
    }

    fn from_compiled(mut windows: Vec<Arc<Compiled>>) -> WindowIndex {
        // Earliest created first (UUIDv7 ids sort by creation), so ties resolve the same way.
        windows.sort_by_key(|w| w.id);
        let mut index = WindowIndex::default();
        for (at, window) in windows.iter().enumerate() {
            match window.recurrence {
                None => index.once.file(window, at),
                Some(_) => index.recurring.file(window, at),
            }
        }
        index.once.sort();
        index.recurring.sort();
        index.windows = windows;
        index
    }

    pub fn len(&self) -> usize {
        self.windows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.windows.is_empty()
    }

    /// Windows covering `host` open at some time of `spooled` ± `tolerance`, earliest
    /// created first.
    pub(super) fn candidates(
        &self,
        host: HostFacts<'_>,
        spooled: SpoolBounds,
        tolerance: Millis,
    ) -> impl Iterator<Item = &Compiled> {
        let (from, to) = (
            spooled.after.saturating_sub(tolerance),
            spooled.before.saturating_add(tolerance),
        );
        let mut found: Vec<usize> = Vec::new();
        for list in self
            .once
            .for_host(host)
            .chain(self.recurring.for_host(host))
        {
            found.extend(list.starting_near(from, to));
        }
        found.sort_unstable();
        found.dedup();
        found
            .into_iter()
            .map(|at| &*self.windows[at])
            // A recurring window's occurrences are tested once, by the matcher (`contains`).
            .filter(move |w| {
                (w.recurrence.is_some() || w.open_during(from, to)) && w.covers_host(host)
            })
    }
}
