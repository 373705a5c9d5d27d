//! The verified baseline in memory, laid out compactly.
//!
//! A check touches every entry but decodes almost none: it needs a path to
//! look up and a [`StatKey`] to compare with `lstat`. So paths are front-coded
//! ([`SortedPaths`]: the bytes each shares with the one before are not repeated),
//! encoded records live in one contiguous buffer (or file), and each entry is the
//! record's offset and the stat key's 16-byte digest (20 bytes plus about 20 of
//! path, instead of a few hundred with one allocation per field). The few entries
//! whose state could not be fully read are a sorted list of indexes. Records are
//! decoded on demand.

use std::borrow::Cow;
use std::io::Write as _;
use std::os::unix::fs::FileExt as _;

use driftwatch_common::pathbytes::PathBytes;
use driftwatch_common::state::StatKey;

use super::paths::{self, SortedPaths};
use super::{Meta, Record};
use driftwatch_common::hash::ContentHash;

#[derive(Clone, Copy, Debug)]
struct Entry {
    record_start: u32,
    /// [`StatKey::digest`]: only ever compared for equality.
    stat: [u8; 16],
}

/// Where the encoded records live. They are read only for subjects whose stat key
/// moved, so a long-running daemon need not keep them in memory.
#[derive(Debug)]
pub enum RecordArena {
    /// In memory: the commands that run once (check, accept).
    Memory(Vec<u8>),
    /// In an unnamed file (deleted at creation, so nothing else can open it by name, and
    /// gone with the process): the daemon, for which the records were the largest part of
    /// its memory at rest (10 MB for 100k files). The page cache keeps what is read often.
    File {
        file: std::fs::File,
        len: usize,
        /// Records not written yet while the baseline is being loaded.
        unwritten: Vec<u8>,
    },
}

impl RecordArena {
    /// An arena in an unnamed file in `dir` (the state directory: not a tmpfs in RAM).
    pub fn file_in(dir: &std::path::Path) -> std::io::Result<RecordArena> {
        Ok(RecordArena::File {
            file: tempfile::tempfile_in(dir)?,
            len: 0,
            unwritten: Vec::new(),
        })
    }

    fn len(&self) -> usize {
        match self {
            RecordArena::Memory(bytes) => bytes.len(),
            RecordArena::File { len, .. } => *len,
        }
    }

    fn append(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            RecordArena::Memory(buffer) => buffer.extend_from_slice(bytes),
            RecordArena::File {
                file,
                len,
                unwritten,
            } => {
                unwritten.extend_from_slice(bytes);
                *len += bytes.len();
                if unwritten.len() >= 1 << 20 {
                    file.write_all(unwritten)?;
                    unwritten.clear();
                }
            }
        }
        Ok(())
    }

    /// Writes what is left and frees the buffers' spare room.
    fn finish(&mut self) -> std::io::Result<()> {
        match self {
            RecordArena::Memory(buffer) => buffer.shrink_to_fit(),
            RecordArena::File {
                file, unwritten, ..
            } => {
                file.write_all(unwritten)?;
                *unwritten = Vec::new();
            }
        }
        Ok(())
    }

    fn read(&self, range: std::ops::Range<usize>) -> std::io::Result<Cow<'_, [u8]>> {
        match self {
            RecordArena::Memory(bytes) => Ok(Cow::Borrowed(&bytes[range])),
            RecordArena::File { file, .. } => {
                let mut bytes = vec![0; range.len()];
                file.read_exact_at(&mut bytes, range.start as u64)?;
                Ok(Cow::Owned(bytes))
            }
        }
    }
}

#[derive(Debug)]
pub struct Baseline {
    paths: SortedPaths,
    records: RecordArena,
    entries: Vec<Entry>,
    /// Indexes (ascending) of the entries part of whose state could not be read at
    /// baseline time: they are always re-read. Usually none.
    had_error: Vec<u32>,
    pub meta: Meta,
    /// Digest of the entries, kept so the root can be re-sealed after a meta update.
    pub(super) entries_digest: ContentHash,
    /// What the collector anchors: see [`super::integrity::anchor`].
    pub(super) anchor: ContentHash,
}

/// Why an entry could not be added while loading.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    /// The arenas are indexed with u32 to keep entries small.
    #[error("baseline too large to load: more than 4 GiB of paths or records")]
    TooLarge,
    /// The store hands entries over in its primary key's order; anything else is not its data.
    #[error("baseline entries out of order")]
    Unsorted,
    #[error("writing the baseline's records to their file: {0}")]
    Write(#[from] std::io::Error),
}

impl Baseline {
    /// An empty baseline; `records` is where the records go (sized here when in memory).
    pub(super) fn with_capacity(
        entries: usize,
        path_bytes: usize,
        record_bytes: usize,
        mut records: RecordArena,
    ) -> Self {
        if let RecordArena::Memory(buffer) = &mut records {
            buffer.reserve_exact(record_bytes);
        }
        Baseline {
            // Front coding needs a fraction of the paths' bytes (`finish` frees the rest).
            paths: SortedPaths::with_capacity(path_bytes / 3),
            records,
            entries: Vec::with_capacity(entries),
            had_error: Vec::new(),
            meta: Meta::default(),
            entries_digest: ContentHash([0; 32]),
            anchor: ContentHash([0; 32]),
        }
    }

    /// Appends an entry; entries must come in ascending path order.
    pub(super) fn push(
        &mut self,
        path: &[u8],
        record_bytes: &[u8],
        record: &Record,
    ) -> Result<(), PushError> {
        let offset = |len: usize| u32::try_from(len).map_err(|_| PushError::TooLarge);
        let index = offset(self.entries.len())?;
        let entry = Entry {
            record_start: offset(self.records.len())?,
            stat: record.state.stat_key().digest(),
        };
        self.paths.push(path).map_err(|err| match err {
            paths::PushError::TooLarge => PushError::TooLarge,
            paths::PushError::Unsorted => PushError::Unsorted,
        })?;
        self.records.append(record_bytes)?;
        offset(self.records.len())?;
        if record.error.is_some() {
            self.had_error.push(index);
        }
        self.entries.push(entry);
        Ok(())
    }

    #[cfg(test)]
    pub(super) fn records_arena(&self) -> &RecordArena {
        &self.records
    }

    /// Ends loading: the records are all written and spare capacity is freed.
    pub(super) fn finish(&mut self) -> std::io::Result<()> {
        self.paths.finish();
        self.entries.shrink_to_fit();
        self.had_error.shrink_to_fit();
        self.records.finish()
    }

    /// The root the collector anchors, with the creation time (as of the last load).
    pub fn anchor(&self) -> driftwatch_common::api::v1::BaselineAnchor {
        driftwatch_common::api::v1::BaselineAnchor {
            root: self.anchor,
            created_at: self.meta.created_at.clone(),
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The path of the entry at `index` (decoded: paths are front-coded).
    pub fn path(&self, index: usize) -> Vec<u8> {
        self.paths.get(index)
    }

    pub fn path_bytes(&self, index: usize) -> PathBytes {
        PathBytes(self.path(index))
    }

    /// The index of `path`, if it is in the baseline.
    pub fn find(&self, path: &[u8]) -> Option<usize> {
        self.paths.find(path)
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
        self.paths.search(path).0
    }

    /// True when `now` has the stat key recorded at `index` and the record
    /// was complete: the subject needs no re-read.
    pub fn unchanged(&self, index: usize, now: &StatKey) -> bool {
        self.entries[index].stat == now.digest()
            && self.had_error.binary_search(&(index as u32)).is_err()
    }

    /// Decodes the full record at `index`. Only reading the records' file can fail (an
    /// I/O error of the state directory's disk): the bytes were verified at load.
    pub fn record(&self, index: usize) -> std::io::Result<Record> {
        let start = self.entries[index].record_start as usize;
        let end = self
            .entries
            .get(index + 1)
            .map_or(self.records.len(), |next| next.record_start as usize);
        let bytes = self.records.read(start..end)?;
        postcard::from_bytes(&bytes).map_err(|err| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("the baseline's record file changed under the agent: {err}"),
            )
        })
    }

    /// The record of `path`, if it is in the baseline.
    pub fn get(&self, path: &[u8]) -> std::io::Result<Option<Record>> {
        self.find(path).map(|index| self.record(index)).transpose()
    }
}

#[cfg(test)]
mod size {
    /// The per-subject cost the daemon's idle RSS depends on (1M files: 20 MB).
    #[test]
    fn an_entry_stays_small() {
        assert!(std::mem::size_of::<super::Entry>() <= 20);
    }
}
