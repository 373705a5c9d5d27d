//! The baseline's paths in memory: sorted, front-coded in blocks.
//!
//! Sorted paths of a tree share most of their bytes with the path before them
//! (`/usr/share/doc/libfoo/changelog.gz` follows `/usr/share/doc/libfoo/README`),
//! so each path is kept as the length of the prefix it shares with the previous one
//! and the bytes that differ. Every [`BLOCK`]th path is kept whole, so a lookup is
//! a binary search over block heads and then a decode of at most one block.
//!
//! On the generated `/usr`-like tree of 1,000,000 files (1.2M entries, paths of 107
//! bytes on average): 130 MB of path bytes plus a 4-byte offset per path before, about
//! 25 MB after, estimated from the sizes (the daemon's idle RSS, measured with the watch
//! table's cut: BENCHMARKS.md, "A million files").

/// Paths per block: the first is stored whole, a lookup decodes at most this many.
pub const BLOCK: usize = 16;

/// The arena is indexed with u32 to keep the block table small.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum PushError {
    #[error("more than 4 GiB of front-coded paths")]
    TooLarge,
    #[error("paths must come in ascending byte order without repeats")]
    Unsorted,
}

/// Byte strings in strictly ascending order, appended one at a time.
#[derive(Debug, Default)]
pub struct SortedPaths {
    /// Each path: LEB128 shared-prefix length, LEB128 suffix length, suffix bytes.
    bytes: Vec<u8>,
    /// Where each block's first path (shared length 0) starts in `bytes`.
    blocks: Vec<u32>,
    len: usize,
    /// The last path pushed (the next one is coded against it).
    last: Vec<u8>,
}

impl SortedPaths {
    /// Room for `bytes` encoded bytes (the sum of the paths' lengths is an upper bound
    /// that is rarely reached; [`SortedPaths::finish`] returns what was not used).
    pub fn with_capacity(bytes: usize) -> Self {
        SortedPaths {
            bytes: Vec::with_capacity(bytes),
            ..SortedPaths::default()
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends `path`, which must sort after every path already pushed.
    pub fn push(&mut self, path: &[u8]) -> Result<(), PushError> {
        if self.len > 0 && path <= self.last.as_slice() {
            return Err(PushError::Unsorted);
        }
        let shared = if self.len.is_multiple_of(BLOCK) {
            let start = u32::try_from(self.bytes.len()).map_err(|_| PushError::TooLarge)?;
            self.blocks.push(start);
            0
        } else {
            common_prefix(&self.last, path)
        };
        let suffix = &path[shared..];
        write_varint(&mut self.bytes, shared);
        write_varint(&mut self.bytes, suffix.len());
        self.bytes.extend_from_slice(suffix);
        u32::try_from(self.bytes.len()).map_err(|_| PushError::TooLarge)?;
        self.last.truncate(shared);
        self.last.extend_from_slice(suffix);
        self.len += 1;
        Ok(())
    }

    /// Frees spare capacity once every path is in.
    pub fn finish(&mut self) {
        self.bytes.shrink_to_fit();
        self.blocks.shrink_to_fit();
    }

    /// Heap bytes held (for the size test and the benchmark's notes).
    pub fn heap_bytes(&self) -> usize {
        self.bytes.capacity() + 4 * self.blocks.capacity() + self.last.capacity()
    }

    /// Writes the path at `index` into `out` (replacing its content).
    pub fn get_into(&self, index: usize, out: &mut Vec<u8>) {
        assert!(index < self.len, "path index {index} out of {}", self.len);
        out.clear();
        let mut pos = self.blocks[index / BLOCK] as usize;
        for _ in 0..=index % BLOCK {
            pos = self.decode_next(pos, out);
        }
    }

    /// The path at `index`.
    pub fn get(&self, index: usize) -> Vec<u8> {
        let mut out = Vec::new();
        self.get_into(index, &mut out);
        out
    }

    /// The first index whose path is not less than `key`, and whether it equals `key`.
    pub fn search(&self, key: &[u8]) -> (usize, bool) {
        // Blocks whose first path sorts before `key`; the answer is in the last of them
        // or is the first path of the next block.
        let before = self.blocks.partition_point(|&start| self.head(start) < key);
        if before == 0 {
            return (0, self.len > 0 && self.head(self.blocks[0]) == key);
        }
        let block = before - 1;
        let first = block * BLOCK;
        let end = (first + BLOCK).min(self.len);
        let mut pos = self.blocks[block] as usize;
        let mut path = Vec::new();
        for index in first..end {
            pos = self.decode_next(pos, &mut path);
            match path.as_slice().cmp(key) {
                std::cmp::Ordering::Less => {}
                std::cmp::Ordering::Equal => return (index, true),
                std::cmp::Ordering::Greater => return (index, false),
            }
        }
        // Every path of the block is smaller; the next block's head is not (or there is none).
        let equal = self
            .blocks
            .get(before)
            .is_some_and(|&s| self.head(s) == key);
        (end, equal)
    }

    /// The index of `key`, if present.
    pub fn find(&self, key: &[u8]) -> Option<usize> {
        match self.search(key) {
            (index, true) => Some(index),
            _ => None,
        }
    }

    /// The whole first path of the block starting at `start`.
    fn head(&self, start: u32) -> &[u8] {
        let (shared, pos) = read_varint(&self.bytes, start as usize);
        debug_assert_eq!(shared, 0, "a block starts with a whole path");
        let (len, pos) = read_varint(&self.bytes, pos);
        &self.bytes[pos..pos + len]
    }

    /// Applies the path coded at `pos` to `path` (the previous one); returns the next position.
    fn decode_next(&self, pos: usize, path: &mut Vec<u8>) -> usize {
        let (shared, pos) = read_varint(&self.bytes, pos);
        let (len, pos) = read_varint(&self.bytes, pos);
        path.truncate(shared);
        path.extend_from_slice(&self.bytes[pos..pos + len]);
        pos + len
    }
}

fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

fn write_varint(out: &mut Vec<u8>, mut value: usize) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Reads a LEB128 value written by [`write_varint`] (the arena is only ever written here).
fn read_varint(bytes: &[u8], mut pos: usize) -> (usize, usize) {
    let mut value = 0usize;
    let mut shift = 0;
    loop {
        let byte = bytes[pos];
        pos += 1;
        value |= usize::from(byte & 0x7f) << shift;
        if byte < 0x80 {
            return (value, pos);
        }
        shift += 7;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(paths: &[Vec<u8>]) -> SortedPaths {
        let mut sorted = SortedPaths::default();
        for path in paths {
            sorted.push(path).unwrap();
        }
        sorted.finish();
        sorted
    }

    /// A tree-like, sorted list: shared prefixes of every length, a 200-byte name (its
    /// lengths need two varint bytes), the empty path, bytes that are not UTF-8.
    fn tree_paths() -> Vec<Vec<u8>> {
        let mut paths: Vec<Vec<u8>> = vec![Vec::new(), b"/".to_vec(), b"/\xff\xfe".to_vec()];
        for a in ["etc", "usr", "usr-local", "var"] {
            paths.push(format!("/{a}").into_bytes());
            for b in 0..23 {
                paths.push(format!("/{a}/d{b:02}").into_bytes());
                for c in 0..(b % 7) {
                    paths.push(format!("/{a}/d{b:02}/file-{c}.conf").into_bytes());
                }
            }
        }
        paths.push(format!("/usr/{}", "n".repeat(200)).into_bytes());
        paths.sort();
        paths.dedup();
        paths
    }

    #[test]
    fn every_path_comes_back_and_is_found_at_its_index() {
        let paths = tree_paths();
        assert!(paths.len() > 5 * BLOCK);
        let sorted = build(&paths);
        assert_eq!(sorted.len(), paths.len());
        let mut buf = Vec::new();
        for (index, path) in paths.iter().enumerate() {
            sorted.get_into(index, &mut buf);
            assert_eq!(&buf, path, "index {index}");
            assert_eq!(sorted.find(path), Some(index), "{path:?}");
        }
    }

    #[test]
    fn search_gives_the_lower_bound_of_absent_keys() {
        let paths = tree_paths();
        let sorted = build(&paths);
        let mut probes: Vec<Vec<u8>> = paths.clone();
        for path in &paths {
            let mut longer = path.clone();
            longer.push(b'!');
            probes.push(longer);
            let mut shorter = path.clone();
            if shorter.pop().is_some() {
                probes.push(shorter);
            }
        }
        probes.push(b"\xff\xff".to_vec());
        for probe in probes {
            let expected = paths.partition_point(|p| *p < probe);
            let found = paths.get(expected) == Some(&probe);
            assert_eq!(sorted.search(&probe), (expected, found), "{probe:?}");
            assert_eq!(sorted.find(&probe).is_some(), found);
        }
    }

    #[test]
    fn an_empty_set_finds_nothing() {
        let sorted = SortedPaths::default();
        assert!(sorted.is_empty());
        assert_eq!(sorted.search(b"/a"), (0, false));
        assert_eq!(sorted.find(b""), None);
    }

    #[test]
    fn out_of_order_or_repeated_paths_are_refused() {
        let mut sorted = SortedPaths::default();
        sorted.push(b"/b").unwrap();
        assert_eq!(sorted.push(b"/a"), Err(PushError::Unsorted));
        assert_eq!(sorted.push(b"/b"), Err(PushError::Unsorted));
        sorted.push(b"/c").unwrap();
        assert_eq!(sorted.len(), 2);
        assert_eq!(sorted.get(1), b"/c");
    }

    #[test]
    fn a_tree_takes_a_fraction_of_its_path_bytes() {
        let mut paths = Vec::new();
        for dir in 0..200 {
            for file in 0..20 {
                paths.push(
                    format!("/srv/driftwatch/tree/share/doc/package-{dir:04}/file-{file:02}.txt")
                        .into_bytes(),
                );
            }
        }
        let whole: usize = paths.iter().map(Vec::len).sum();
        let sorted = build(&paths);
        assert!(
            sorted.heap_bytes() * 4 < whole,
            "{} of {whole} bytes",
            sorted.heap_bytes()
        );
    }
}
