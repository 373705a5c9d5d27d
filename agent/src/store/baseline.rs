//! The verified baseline in memory, laid out compactly.
//!
//! A check touches every entry but decodes almost none: it needs a path to
//! look up and a [`StatKey`] to compare with `lstat`. So paths and encoded
//! records live in two contiguous buffers, and each entry is two offsets and
//! the stat key's 16-byte digest (28 bytes plus the path and record bytes,
//! instead of a few hundred with one allocation per field). Records are
//! decoded on demand.

use driftwatch_common::pathbytes::PathBytes;
use driftwatch_common::state::StatKey;

use super::{Meta, Record};
use driftwatch_common::hash::ContentHash;

#[derive(Clone, Copy, Debug)]
struct Entry {
    path_start: u32,
    record_start: u32,
    /// [`StatKey::digest`]: only ever compared for equality.
    stat: [u8; 16],
    /// Part of the state could not be read at baseline time: always re-read.
    had_error: bool,
}

#[derive(Debug)]
pub struct Baseline {
    paths: Vec<u8>,
    records: Vec<u8>,
    entries: Vec<Entry>,
    pub meta: Meta,
    /// Digest of the entries, kept so the root can be re-sealed after a meta update.
    pub(super) entries_digest: ContentHash,
}

/// The arenas are indexed with u32 to keep entries small.
#[derive(Debug, thiserror::Error)]
#[error("baseline too large to load: more than 4 GiB of paths or records")]
pub struct TooLarge;

impl Baseline {
    pub(super) fn with_capacity(entries: usize, path_bytes: usize, record_bytes: usize) -> Self {
        Baseline {
            paths: Vec::with_capacity(path_bytes),
            records: Vec::with_capacity(record_bytes),
            entries: Vec::with_capacity(entries),
            meta: Meta::default(),
            entries_digest: ContentHash([0; 32]),
        }
    }

    /// Appends an entry; entries must come in ascending path order.
    pub(super) fn push(
        &mut self,
        path: &[u8],
        record_bytes: &[u8],
        record: &Record,
    ) -> Result<(), TooLarge> {
        debug_assert!(
            self.entries
                .last()
                .is_none_or(|_| self.path(self.len() - 1) < path)
        );
        let offset = |len: usize| u32::try_from(len).map_err(|_| TooLarge);
        let entry = Entry {
            path_start: offset(self.paths.len())?,
            record_start: offset(self.records.len())?,
            stat: record.state.stat_key().digest(),
            had_error: record.error.is_some(),
        };
        self.paths.extend_from_slice(path);
        self.records.extend_from_slice(record_bytes);
        offset(self.paths.len())?;
        offset(self.records.len())?;
        self.entries.push(entry);
        Ok(())
    }

    pub(super) fn shrink_to_fit(&mut self) {
        self.paths.shrink_to_fit();
        self.records.shrink_to_fit();
        self.entries.shrink_to_fit();
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn path(&self, index: usize) -> &[u8] {
        let start = self.entries[index].path_start as usize;
        let end = self
            .entries
            .get(index + 1)
            .map_or(self.paths.len(), |next| next.path_start as usize);
        &self.paths[start..end]
    }

    pub fn path_bytes(&self, index: usize) -> PathBytes {
        PathBytes(self.path(index).to_vec())
    }

    /// The index of `path`, if it is in the baseline.
    pub fn find(&self, path: &[u8]) -> Option<usize> {
        let (mut low, mut high) = (0, self.entries.len());
        while low < high {
            let mid = (low + high) / 2;
            match self.path(mid).cmp(path) {
                std::cmp::Ordering::Less => low = mid + 1,
                std::cmp::Ordering::Greater => high = mid,
                std::cmp::Ordering::Equal => return Some(mid),
            }
        }
        None
    }

    /// The indexes of the entries strictly below the directory `dir` (whose
    /// paths start with `dir/`): in byte order they are one contiguous run.
    pub fn range_below(&self, dir: &[u8]) -> std::ops::Range<usize> {
        let mut prefix = dir.to_vec();
        if !prefix.ends_with(b"/") {
            prefix.push(b'/');
        }
        // Every path starting with the prefix sorts before the prefix with its last byte ('/') incremented.
        let mut end = prefix.clone();
        *end.last_mut().expect("the prefix ends with '/'") += 1;
        self.lower_bound(&prefix)..self.lower_bound(&end)
    }

    /// The first index whose path is not less than `path`.
    fn lower_bound(&self, path: &[u8]) -> usize {
        let (mut low, mut high) = (0, self.entries.len());
        while low < high {
            let mid = (low + high) / 2;
            if self.path(mid) < path {
                low = mid + 1;
            } else {
                high = mid;
            }
        }
        low
    }

    /// True when `now` has the stat key recorded at `index` and the record
    /// was complete: the subject needs no re-read.
    pub fn unchanged(&self, index: usize, now: &StatKey) -> bool {
        let entry = &self.entries[index];
        !entry.had_error && entry.stat == now.digest()
    }

    /// Decodes the full record at `index`.
    pub fn record(&self, index: usize) -> Record {
        let start = self.entries[index].record_start as usize;
        let end = self
            .entries
            .get(index + 1)
            .map_or(self.records.len(), |next| next.record_start as usize);
        postcard::from_bytes(&self.records[start..end])
            .expect("records were decoded and verified when the baseline was loaded")
    }

    /// The record of `path`, if it is in the baseline.
    pub fn get(&self, path: &[u8]) -> Option<Record> {
        self.find(path).map(|index| self.record(index))
    }
}

#[cfg(test)]
mod size {
    /// The per-subject cost the daemon's idle RSS depends on (100k files: 2.8 MB).
    #[test]
    fn an_entry_stays_small() {
        assert!(std::mem::size_of::<super::Entry>() <= 28);
    }
}
