//! What driftwatch records about a file-system subject, and how two records differ.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::attrs::{Attribute, AttributeSet};
use crate::hash::ContentHash;
use crate::pathbytes::PathBytes;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileKind {
    File,
    Dir,
    Symlink,
    Fifo,
    Socket,
    CharDevice,
    BlockDevice,
}

impl FileKind {
    pub fn name(self) -> &'static str {
        match self {
            FileKind::File => "file",
            FileKind::Dir => "dir",
            FileKind::Symlink => "symlink",
            FileKind::Fifo => "fifo",
            FileKind::Socket => "socket",
            FileKind::CharDevice => "char_device",
            FileKind::BlockDevice => "block_device",
        }
    }

    pub fn is_device(self) -> bool {
        matches!(self, FileKind::CharDevice | FileKind::BlockDevice)
    }
}

impl fmt::Display for FileKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Extended attributes: the names (to say which changed) and one digest over
/// every name and value (values can be large and are not kept).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Xattrs {
    pub names: Vec<PathBytes>,
    pub digest: ContentHash,
}

impl Xattrs {
    /// Builds the record from `(name, value)` pairs in any order.
    pub fn from_pairs(mut pairs: Vec<(Vec<u8>, Vec<u8>)>) -> Self {
        pairs.sort();
        let mut hasher = blake3::Hasher::new();
        for (name, value) in &pairs {
            // Length prefixes keep ("ab","c") and ("a","bc") apart.
            hasher.update(&(name.len() as u64).to_le_bytes());
            hasher.update(name);
            hasher.update(&(value.len() as u64).to_le_bytes());
            hasher.update(value);
        }
        Xattrs {
            names: pairs.into_iter().map(|(name, _)| PathBytes(name)).collect(),
            digest: hasher.finalize().into(),
        }
    }
}

/// The part of a state that tells whether a subject needs re-reading: the
/// kernel updates ctime for every write, chmod, chown, link or xattr change,
/// and a replaced file has another inode, so an equal key means nothing moved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StatKey {
    pub kind: FileKind,
    pub size: u64,
    pub mtime_ns: i64,
    pub ctime_ns: i64,
    pub inode: u64,
    pub device: u64,
}

impl StatKey {
    /// 128 bits of BLAKE3 over the key: what a baseline keeps in memory per subject
    /// instead of the 48-byte key. Equal digests mean equal keys (a second preimage of
    /// 128-bit BLAKE3 is out of reach, so a changed file cannot be made to look unchanged).
    pub fn digest(&self) -> [u8; 16] {
        let mut bytes = [0u8; 41];
        bytes[0] = self.kind as u8;
        for (slot, value) in bytes[1..].chunks_exact_mut(8).zip([
            self.size,
            self.mtime_ns as u64,
            self.ctime_ns as u64,
            self.inode,
            self.device,
        ]) {
            slot.copy_from_slice(&value.to_le_bytes());
        }
        let hash = blake3::hash(&bytes);
        hash.as_bytes()[..16]
            .try_into()
            .expect("16 of BLAKE3's 32 bytes")
    }
}

/// The recorded state of one file-system subject (`lstat` plus what was read).
///
/// Optional fields are `None` when they do not apply (no hash for a
/// directory) or were not read (the policy's attribute set does not need
/// the content, or reading failed).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileState {
    pub kind: FileKind,
    /// Permission bits including setuid, setgid and sticky (`st_mode & 0o7777`).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    /// Modification time, nanoseconds since the Unix epoch.
    pub mtime_ns: i64,
    /// Status change time, nanoseconds since the Unix epoch.
    pub ctime_ns: i64,
    pub inode: u64,
    pub device: u64,
    pub nlink: u64,
    /// Device number of a device node.
    pub rdev: Option<u64>,
    pub link_target: Option<PathBytes>,
    pub content_hash: Option<ContentHash>,
    pub xattrs: Option<Xattrs>,
}

impl FileState {
    /// What `lstat` says about identity, size and times.
    pub fn stat_key(&self) -> StatKey {
        StatKey {
            kind: self.kind,
            size: self.size,
            mtime_ns: self.mtime_ns,
            ctime_ns: self.ctime_ns,
            inode: self.inode,
            device: self.device,
        }
    }

    /// True when nothing that a write, chmod, chown, xattr change or replacement
    /// can touch has moved (see [`StatKey`]).
    pub fn same_stat(&self, other: &FileState) -> bool {
        self.stat_key() == other.stat_key()
    }

    /// The attributes in `set` that differ between `before` (the baseline) and `after`.
    ///
    /// For [`Attribute::Growing`], `after_prefix_hash` is the hash of the first
    /// `before.size` bytes of the current content: the file passes if it did not
    /// shrink and that prefix still hashes to the baseline's content hash.
    /// A hash that could not be read on either side is not a difference (the
    /// caller reports the read error instead).
    pub fn changed_attributes(
        before: &FileState,
        after: &FileState,
        set: AttributeSet,
        after_prefix_hash: Option<ContentHash>,
    ) -> Vec<Attribute> {
        set.iter()
            .filter(|&attr| match attr {
                Attribute::Type => before.kind != after.kind,
                Attribute::Mode => before.mode != after.mode,
                Attribute::Uid => before.uid != after.uid,
                Attribute::Gid => before.gid != after.gid,
                Attribute::Size => before.size != after.size,
                Attribute::Growing => {
                    before.kind == FileKind::File
                        && after.kind == FileKind::File
                        && (after.size < before.size
                            || both_known_and_differ(&before.content_hash, &after_prefix_hash))
                }
                Attribute::Mtime => before.mtime_ns != after.mtime_ns,
                Attribute::Ctime => before.ctime_ns != after.ctime_ns,
                Attribute::Inode => before.inode != after.inode,
                Attribute::Device => before.device != after.device,
                Attribute::Nlink => before.nlink != after.nlink,
                Attribute::Hash => both_known_and_differ(&before.content_hash, &after.content_hash),
                Attribute::Xattrs => {
                    before.xattrs.as_ref().map(|x| x.digest)
                        != after.xattrs.as_ref().map(|x| x.digest)
                        && before.xattrs.is_some()
                        && after.xattrs.is_some()
                }
                Attribute::LinkTarget => before.link_target != after.link_target,
                Attribute::Rdev => before.rdev != after.rdev,
            })
            .collect()
    }
}

fn both_known_and_differ<T: PartialEq>(a: &Option<T>, b: &Option<T>) -> bool {
    matches!((a, b), (Some(a), Some(b)) if a != b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_field_of_a_stat_key_moves_its_digest() {
        let key = StatKey {
            kind: FileKind::File,
            size: 10,
            mtime_ns: 1,
            ctime_ns: 2,
            inode: 3,
            device: 4,
        };
        let variants = [
            StatKey {
                kind: FileKind::Dir,
                ..key
            },
            StatKey { size: 11, ..key },
            StatKey {
                mtime_ns: -1,
                ..key
            },
            StatKey { ctime_ns: 3, ..key },
            StatKey { inode: 4, ..key },
            StatKey { device: 5, ..key },
        ];
        assert_eq!(key.digest(), { key }.digest());
        for other in variants {
            assert_ne!(key.digest(), other.digest(), "{other:?}");
        }
    }

    fn file(size: u64, hash: &[u8]) -> FileState {
        FileState {
            kind: FileKind::File,
            mode: 0o644,
            uid: 0,
            gid: 0,
            size,
            mtime_ns: 1,
            ctime_ns: 1,
            inode: 7,
            device: 1,
            nlink: 1,
            rdev: None,
            link_target: None,
            content_hash: Some(ContentHash::of(hash)),
            xattrs: Some(Xattrs::from_pairs(vec![])),
        }
    }

    fn changed(before: &FileState, after: &FileState, group: &str) -> Vec<Attribute> {
        let set = AttributeSet::builtin(group).unwrap();
        FileState::changed_attributes(before, after, set, None)
    }

    #[test]
    fn content_change_reports_size_and_hash() {
        let before = file(5, b"hello");
        let after = FileState {
            mtime_ns: 2,
            ..file(6, b"hello!")
        };
        assert_eq!(
            changed(&before, &after, "content"),
            [Attribute::Size, Attribute::Hash]
        );
        // Times are only compared by the `full` group.
        assert!(changed(&before, &after, "full").contains(&Attribute::Mtime));
        assert!(changed(&before, &after, "permissions").is_empty());
    }

    #[test]
    fn mode_and_owner_changes_are_named() {
        let before = file(5, b"hello");
        let after = FileState {
            mode: 0o4755,
            uid: 1000,
            ..before.clone()
        };
        assert_eq!(
            changed(&before, &after, "permissions"),
            [Attribute::Mode, Attribute::Uid]
        );
    }

    #[test]
    fn growing_accepts_appends_and_rejects_rewrites_and_shrinks() {
        let set = AttributeSet::builtin("growing").unwrap();
        let before = file(5, b"hello");
        let appended = file(11, b"hello world");
        let intact = Some(ContentHash::of(b"hello"));
        let rewritten = Some(ContentHash::of(b"HELLO"));
        assert!(FileState::changed_attributes(&before, &appended, set, intact).is_empty());
        assert_eq!(
            FileState::changed_attributes(&before, &appended, set, rewritten),
            [Attribute::Growing]
        );
        let shrunk = file(2, b"he");
        assert_eq!(
            FileState::changed_attributes(&before, &shrunk, set, None),
            [Attribute::Growing]
        );
    }

    #[test]
    fn unreadable_content_is_not_a_difference() {
        let before = file(5, b"hello");
        let after = FileState {
            content_hash: None,
            ..before.clone()
        };
        assert!(changed(&before, &after, "content").is_empty());
    }

    #[test]
    fn xattr_digest_depends_on_names_and_values() {
        let a = Xattrs::from_pairs(vec![(b"user.a".to_vec(), b"1".to_vec())]);
        let b = Xattrs::from_pairs(vec![(b"user.a".to_vec(), b"2".to_vec())]);
        let a_again = Xattrs::from_pairs(vec![(b"user.a".to_vec(), b"1".to_vec())]);
        assert_ne!(a.digest, b.digest);
        assert_eq!(a, a_again);
    }

    #[test]
    fn same_stat_sees_ctime() {
        let before = file(5, b"hello");
        let chmodded = FileState {
            ctime_ns: 9,
            ..before.clone()
        };
        assert!(before.same_stat(&before.clone()));
        assert!(!before.same_stat(&chmodded));
    }
}
