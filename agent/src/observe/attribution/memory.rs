//! The last process seen per path and operation, bounded in memory.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use driftwatch_common::api::v1::Actor;

use super::Operation;

/// Bound on remembered paths; past it, expired entries go, then the older half.
const MAX_PATHS: usize = 50_000;

#[derive(Default)]
pub struct Memory {
    paths: HashMap<PathBuf, Vec<Seen>>,
}

struct Seen {
    operation: Operation,
    actor: Actor,
    at: Instant,
    /// The operation was on a directory: it also explains drift below it
    /// (`mv dir`, `rm -r dir` after the directory's own handle went stale).
    on_directory: bool,
}

impl Memory {
    /// Records that `actor` did `operation` on `path` at `now` (replacing the
    /// previous process seen doing that operation there).
    pub fn remember(
        &mut self,
        path: PathBuf,
        operation: Operation,
        actor: Actor,
        on_directory: bool,
        now: Instant,
        keep: Duration,
    ) {
        if self.paths.len() >= MAX_PATHS && !self.paths.contains_key(&path) {
            self.make_room(now, keep);
        }
        let seen = Seen {
            operation,
            actor,
            at: now,
            on_directory,
        };
        let history = self.paths.entry(path).or_default();
        match history.iter_mut().find(|s| s.operation == operation) {
            Some(slot) => *slot = seen,
            None => history.push(seen),
        }
    }

    /// Drops what has expired; if that is not enough, the older half, so a
    /// flood of events costs amortized constant time per event.
    fn make_room(&mut self, now: Instant, keep: Duration) {
        let newest = |history: &Vec<Seen>| history.iter().map(|s| s.at).max();
        self.paths.retain(|_, history| {
            newest(history).is_some_and(|at| now.saturating_duration_since(at) <= keep)
        });
        if self.paths.len() >= MAX_PATHS * 3 / 4 {
            let mut times: Vec<Instant> = self.paths.values().filter_map(newest).collect();
            let middle = times.len() / 2;
            let (_, median, _) = times.select_nth_unstable(middle);
            let median = *median;
            self.paths
                .retain(|_, history| newest(history).is_some_and(|at| at > median));
        }
    }

    /// The most recent of `wanted` operations on `path` within `within`; if
    /// there is none, the closest ancestor directory that was removed or
    /// renamed (which took `path` with it).
    pub fn explaining(
        &self,
        path: &Path,
        wanted: &[Operation],
        now: Instant,
        within: Duration,
    ) -> Option<Actor> {
        let fresh = |seen: &&Seen| now.saturating_duration_since(seen.at) <= within;
        let own = self.paths.get(path).and_then(|history| {
            history
                .iter()
                .filter(fresh)
                .filter(|s| wanted.contains(&s.operation))
                .max_by_key(|s| s.at)
        });
        if let Some(seen) = own {
            return Some(seen.actor.clone());
        }
        let moves_subtree = |op: &Operation| {
            matches!(
                op,
                Operation::Delete | Operation::MovedFrom | Operation::MovedTo
            )
        };
        path.ancestors()
            .skip(1)
            .find_map(|ancestor| {
                self.paths.get(ancestor)?.iter().filter(fresh).find(|s| {
                    s.on_directory && moves_subtree(&s.operation) && wanted.contains(&s.operation)
                })
            })
            .map(|seen| seen.actor.clone())
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.paths.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn actor(pid: u32) -> Actor {
        Actor {
            source: "fanotify".into(),
            pid: Some(pid),
            ..Actor::default()
        }
    }

    const KEEP: Duration = Duration::from_secs(120);

    #[test]
    fn the_most_recent_explaining_operation_wins() {
        let mut memory = Memory::default();
        let t0 = Instant::now();
        let file = PathBuf::from("/etc/app.conf");
        memory.remember(file.clone(), Operation::Write, actor(1), false, t0, KEEP);
        memory.remember(
            file.clone(),
            Operation::Attrib,
            actor(2),
            false,
            t0 + Duration::from_secs(1),
            KEEP,
        );
        memory.remember(
            file.clone(),
            Operation::MovedTo,
            actor(3),
            false,
            t0 + Duration::from_secs(2),
            KEEP,
        );
        let now = t0 + Duration::from_secs(3);
        let content = [Operation::Write, Operation::MovedTo];
        assert_eq!(
            memory.explaining(&file, &content, now, KEEP).unwrap().pid,
            Some(3)
        );
        assert_eq!(
            memory
                .explaining(&file, &[Operation::Attrib], now, KEEP)
                .unwrap()
                .pid,
            Some(2)
        );
        assert_eq!(
            memory.explaining(&file, &[Operation::Delete], now, KEEP),
            None
        );
        // A newer write replaces the older one of the same operation.
        memory.remember(
            file.clone(),
            Operation::Write,
            actor(4),
            false,
            t0 + Duration::from_secs(4),
            KEEP,
        );
        let later = t0 + Duration::from_secs(5);
        assert_eq!(
            memory.explaining(&file, &content, later, KEEP).unwrap().pid,
            Some(4)
        );
        // Forgotten after `within`.
        let too_late = t0 + Duration::from_secs(200);
        assert_eq!(memory.explaining(&file, &content, too_late, KEEP), None);
    }

    #[test]
    fn a_removed_or_renamed_directory_explains_its_contents() {
        let mut memory = Memory::default();
        let now = Instant::now();
        memory.remember(
            "/srv/app".into(),
            Operation::MovedFrom,
            actor(7),
            true,
            now,
            KEEP,
        );
        memory.remember(
            "/srv/other".into(),
            Operation::Attrib,
            actor(8),
            true,
            now,
            KEEP,
        );
        let inside = Path::new("/srv/app/conf/a.conf");
        let removed = [Operation::Delete, Operation::MovedFrom];
        assert_eq!(
            memory.explaining(inside, &removed, now, KEEP).unwrap().pid,
            Some(7)
        );
        // A chmod of a directory does not explain what happens inside it.
        let elsewhere = Path::new("/srv/other/a.conf");
        assert_eq!(
            memory.explaining(elsewhere, &[Operation::Attrib], now, KEEP),
            None
        );
        // A file's own operation comes first.
        memory.remember(inside.into(), Operation::Delete, actor(9), false, now, KEEP);
        assert_eq!(
            memory.explaining(inside, &removed, now, KEEP).unwrap().pid,
            Some(9)
        );
    }

    #[test]
    fn memory_stays_bounded_under_a_flood() {
        let mut memory = Memory::default();
        let start = Instant::now();
        for i in 0..(MAX_PATHS as u64 * 2) {
            let at = start + Duration::from_micros(i);
            memory.remember(
                format!("/f/{i}").into(),
                Operation::Create,
                actor(1),
                false,
                at,
                KEEP,
            );
            assert!(memory.len() <= MAX_PATHS);
        }
        // The newest survive.
        let last = format!("/f/{}", MAX_PATHS as u64 * 2 - 1);
        let now = start + Duration::from_secs(1);
        assert!(
            memory
                .explaining(Path::new(&last), &[Operation::Create], now, KEEP)
                .is_some()
        );
    }
}
