//! Reading one subject's state: metadata, link target, extended attributes,
//! and (for regular files whose policy needs it) the content hash.
//!
//! The agent only reads (invariant 6): files are opened read-only with
//! O_NOFOLLOW (a symlink swapped in is not followed), O_NONBLOCK (a FIFO
//! swapped in cannot hang the scan) and O_NOATIME where permitted.
//!
//! For regular files: the BLAKE3 hash (multi-threaded for large files), a snapshot
//! of small text files (for diffs), and the prefix hash a `growing` rule needs. A
//! file that changes while it is being read is read again.

use std::cell::RefCell;
use std::fs::{self, File, Metadata};
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::Path;

use driftwatch_common::attrs::{Attribute, AttributeSet};
use driftwatch_common::hash::ContentHash;
use driftwatch_common::pathbytes::PathBytes;
use driftwatch_common::state::{FileKind, FileState, Xattrs};

/// Files at least this large are hashed with BLAKE3's multi-threaded mode.
const PARALLEL_HASH_MIN: u64 = 4 << 20;
const READ_BUF: usize = 1 << 20;
/// A file that keeps changing while read is given up on after this many tries.
const READ_ATTEMPTS: usize = 3;

/// What to read beyond `lstat`.
#[derive(Clone, Copy, Debug)]
pub struct ReadPlan {
    pub attributes: AttributeSet,
    /// Keep the content when the file is text of at most this many bytes (0 = never).
    pub snapshot_max: u64,
    /// Also hash the first N bytes (the baseline size of a `growing` file).
    pub prefix_len: Option<u64>,
}

/// The result of reading one subject.
#[derive(Debug)]
pub struct ReadOutcome {
    pub state: FileState,
    pub snapshot: Option<Vec<u8>>,
    pub prefix_hash: Option<ContentHash>,
    /// Problems reading parts of the state (the rest is still recorded).
    pub errors: Vec<String>,
}

/// The state `lstat` alone gives: enough to tell whether anything moved.
pub fn stat_state(meta: &Metadata) -> FileState {
    let file_type = meta.file_type();
    let kind = if file_type.is_file() {
        FileKind::File
    } else if file_type.is_dir() {
        FileKind::Dir
    } else if file_type.is_symlink() {
        FileKind::Symlink
    } else if file_type.is_fifo() {
        FileKind::Fifo
    } else if file_type.is_socket() {
        FileKind::Socket
    } else if file_type.is_char_device() {
        FileKind::CharDevice
    } else {
        FileKind::BlockDevice
    };
    FileState {
        kind,
        mode: meta.mode() & 0o7777,
        uid: meta.uid(),
        gid: meta.gid(),
        size: meta.size(),
        mtime_ns: meta.mtime() * 1_000_000_000 + meta.mtime_nsec(),
        ctime_ns: meta.ctime() * 1_000_000_000 + meta.ctime_nsec(),
        inode: meta.ino(),
        device: meta.dev(),
        nlink: meta.nlink(),
        rdev: kind.is_device().then(|| meta.rdev()),
        link_target: None,
        content_hash: None,
        xattrs: None,
    }
}

/// Reads everything `plan` asks for about `path`, whose `lstat` gave `meta`.
pub fn read_subject(path: &Path, meta: &Metadata, plan: &ReadPlan) -> ReadOutcome {
    let mut outcome = ReadOutcome {
        state: stat_state(meta),
        snapshot: None,
        prefix_hash: None,
        errors: Vec::new(),
    };
    if outcome.state.kind == FileKind::Symlink {
        match fs::read_link(path) {
            Ok(target) => outcome.state.link_target = Some(PathBytes::from(target)),
            Err(err) => outcome
                .errors
                .push(format!("cannot read link target: {err}")),
        }
    }
    if plan.attributes.contains(Attribute::Xattrs) {
        match read_xattrs(path) {
            Ok(xattrs) => outcome.state.xattrs = Some(xattrs),
            Err(err) => outcome
                .errors
                .push(format!("cannot read extended attributes: {err}")),
        }
    }
    if outcome.state.kind == FileKind::File && plan.attributes.reads_content() {
        match hash_file(path, plan) {
            Ok(content) => {
                // Report the state the content belongs to, which may be newer than the walk's lstat.
                let xattrs = outcome.state.xattrs.take();
                outcome.state = content.state;
                outcome.state.xattrs = xattrs;
                outcome.snapshot = content.snapshot;
                outcome.prefix_hash = content.prefix_hash;
            }
            Err(err) => outcome.errors.push(format!("cannot read content: {err}")),
        }
    }
    outcome
}

fn read_xattrs(path: &Path) -> io::Result<Xattrs> {
    let mut pairs = Vec::new();
    // xattr::list and xattr::get do not follow symlinks.
    let names = match xattr::list(path) {
        Ok(names) => names,
        // A filesystem without extended attributes: the subject has none.
        Err(err) if err.raw_os_error() == Some(libc::EOPNOTSUPP) => {
            return Ok(Xattrs::from_pairs(pairs));
        }
        Err(err) => return Err(err),
    };
    for name in names {
        let value = match xattr::get(path, &name) {
            Ok(value) => value.unwrap_or_default(),
            // Removed between list and get: it is simply not there any more.
            Err(err) if err.raw_os_error() == Some(libc::ENODATA) => continue,
            Err(err) => return Err(err),
        };
        pairs.push((name.into_encoded_bytes(), value));
    }
    Ok(Xattrs::from_pairs(pairs))
}

struct ContentRead {
    state: FileState,
    snapshot: Option<Vec<u8>>,
    prefix_hash: Option<ContentHash>,
}

thread_local! {
    /// One read buffer per worker thread. It is taken out while in use, not
    /// borrowed: BLAKE3's multi-threaded hashing lets this thread run another
    /// subject's read while it waits, and that read needs a buffer too.
    static BUFFER: RefCell<Option<Vec<u8>>> = const { RefCell::new(None) };
}

fn with_read_buffer<R>(f: impl FnOnce(&mut [u8]) -> R) -> R {
    let mut buf = BUFFER
        .with_borrow_mut(Option::take)
        .unwrap_or_else(|| vec![0; READ_BUF]);
    let result = f(&mut buf);
    BUFFER.with_borrow_mut(|slot| *slot = Some(buf));
    result
}

/// Hashes a regular file, retrying if it changes while being read. The
/// returned state is the opened file's own (fstat), so hash and metadata agree.
fn hash_file(path: &Path, plan: &ReadPlan) -> io::Result<ContentRead> {
    for _ in 0..READ_ATTEMPTS {
        let mut file = open_for_reading(path)?;
        let before = stat_state(&file.metadata()?);
        if before.kind != FileKind::File {
            return Err(io::Error::other(format!(
                "replaced by a {} while being scanned",
                before.kind
            )));
        }
        let content = with_read_buffer(|buf| read_content(&mut file, &before, plan, buf))?;
        let after = stat_state(&file.metadata()?);
        if after.same_stat(&before) && content.state.size == before.size {
            return Ok(content);
        }
    }
    Err(io::Error::other(format!(
        "kept changing while being read ({READ_ATTEMPTS} attempts)"
    )))
}

fn open_for_reading(path: &Path) -> io::Result<File> {
    let open = |extra: i32| {
        fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | extra)
            .open(path)
    };
    match open(libc::O_NOATIME) {
        // O_NOATIME is only allowed to the file's owner (or with CAP_FOWNER).
        Err(err) if err.raw_os_error() == Some(libc::EPERM) => open(0),
        other => other,
    }
}

fn read_content(
    file: &mut File,
    stat: &FileState,
    plan: &ReadPlan,
    buf: &mut [u8],
) -> io::Result<ContentRead> {
    let mut hasher = blake3::Hasher::new();
    let mut prefix_hasher = plan.prefix_len.map(|_| blake3::Hasher::new());
    let prefix_len = plan.prefix_len.unwrap_or(0);
    let keep_snapshot = plan.snapshot_max > 0 && stat.size <= plan.snapshot_max;
    let mut snapshot = Vec::new();
    let parallel = stat.size >= PARALLEL_HASH_MIN;
    let mut total: u64 = 0;
    loop {
        // At the size fstat gave, stop without the read that would return 0: one syscall
        // less per file. Had the file grown meanwhile, the caller's second fstat sees it
        // (size or mtime) and reads it again.
        if total == stat.size && total > 0 {
            break;
        }
        let n = match file.read(buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(err),
        };
        let chunk = &buf[..n];
        if parallel {
            hasher.update_rayon(chunk);
        } else {
            hasher.update(chunk);
        }
        if let Some(prefix) = prefix_hasher.as_mut()
            && total < prefix_len
        {
            let take = (prefix_len - total).min(n as u64) as usize;
            prefix.update(&chunk[..take]);
        }
        if keep_snapshot && total + n as u64 <= plan.snapshot_max {
            snapshot.extend_from_slice(chunk);
        }
        total += n as u64;
    }
    let mut state = stat.clone();
    // The bytes actually read are the truth; a mismatch with fstat is caught by the caller.
    state.size = total;
    state.content_hash = Some(hasher.finalize().into());
    let snapshot =
        (keep_snapshot && total <= plan.snapshot_max && is_text(&snapshot)).then_some(snapshot);
    let prefix_hash = prefix_hasher
        .filter(|_| total >= prefix_len)
        .map(|h| h.finalize().into());
    Ok(ContentRead {
        state,
        snapshot,
        prefix_hash,
    })
}

/// Text worth diffing: valid UTF-8 without NUL bytes.
fn is_text(bytes: &[u8]) -> bool {
    !bytes.contains(&0) && std::str::from_utf8(bytes).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn plan(group: &str) -> ReadPlan {
        ReadPlan {
            attributes: AttributeSet::builtin(group).unwrap(),
            snapshot_max: 1024,
            prefix_len: None,
        }
    }

    fn read(path: &Path, plan: &ReadPlan) -> ReadOutcome {
        read_subject(path, &fs::symlink_metadata(path).unwrap(), plan)
    }

    #[test]
    fn hashes_content_and_keeps_text_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.conf");
        fs::write(&path, "key = value\n").unwrap();
        let outcome = read(&path, &plan("content"));
        assert!(outcome.errors.is_empty(), "{:?}", outcome.errors);
        assert_eq!(
            outcome.state.content_hash,
            Some(ContentHash::of(b"key = value\n"))
        );
        assert_eq!(outcome.snapshot.as_deref(), Some(&b"key = value\n"[..]));
        assert_eq!(outcome.state.size, 12);
    }

    #[test]
    fn binary_and_large_files_get_no_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let binary = dir.path().join("bin");
        fs::write(&binary, b"\x7fELF\0\0").unwrap();
        assert!(read(&binary, &plan("content")).snapshot.is_none());
        let large = dir.path().join("large");
        fs::write(&large, "x".repeat(2048)).unwrap();
        let outcome = read(&large, &plan("content"));
        assert!(outcome.snapshot.is_none());
        assert!(outcome.state.content_hash.is_some());
    }

    #[test]
    fn large_files_hash_like_small_ones() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big");
        let data: Vec<u8> = (0..(PARALLEL_HASH_MIN as usize + 12345))
            .map(|i| (i % 251) as u8)
            .collect();
        fs::write(&path, &data).unwrap();
        let outcome = read(&path, &plan("content"));
        assert_eq!(outcome.state.content_hash, Some(ContentHash::of(&data)));
    }

    #[test]
    fn many_large_files_hash_concurrently() {
        // Multi-threaded hashing of one file lets a worker pick up another
        // file meanwhile; both need a read buffer (this once panicked).
        let dir = tempfile::tempdir().unwrap();
        let size = PARALLEL_HASH_MIN as usize + 1;
        let paths: Vec<_> = (0..8u8)
            .map(|i| {
                let path = dir.path().join(format!("big{i}"));
                fs::write(&path, vec![i; size]).unwrap();
                path
            })
            .collect();
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        pool.install(|| {
            use rayon::prelude::*;
            paths.par_iter().enumerate().for_each(|(i, path)| {
                let outcome = read(path, &plan("content"));
                assert_eq!(
                    outcome.state.content_hash,
                    Some(ContentHash::of(&vec![i as u8; size]))
                );
            });
        });
    }

    #[test]
    fn permissions_group_does_not_read_content() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        fs::write(&path, "x").unwrap();
        let outcome = read(&path, &plan("permissions"));
        assert_eq!(outcome.state.content_hash, None);
        assert!(outcome.snapshot.is_none());
    }

    #[test]
    fn prefix_hash_covers_the_old_length() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        fs::write(&path, "line1\nline2\n").unwrap();
        let plan = ReadPlan {
            prefix_len: Some(6),
            ..plan("growing")
        };
        assert_eq!(
            read(&path, &plan).prefix_hash,
            Some(ContentHash::of(b"line1\n"))
        );
    }

    #[test]
    fn symlinks_record_their_target_and_are_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink("/etc/passwd", &link).unwrap();
        let outcome = read(&link, &plan("content"));
        assert_eq!(outcome.state.kind, FileKind::Symlink);
        assert_eq!(
            outcome.state.link_target,
            Some(PathBytes(b"/etc/passwd".to_vec()))
        );
        assert_eq!(outcome.state.content_hash, None);
    }

    #[test]
    fn fifos_are_recorded_but_never_opened() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        let status = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(status.success());
        // Opening a FIFO for reading without a writer would block this test forever.
        let outcome = read(&fifo, &plan("content"));
        assert_eq!(outcome.state.kind, FileKind::Fifo);
        assert_eq!(outcome.state.content_hash, None);
    }

    #[test]
    fn unreadable_content_is_an_error_not_a_hash() {
        if is_root() {
            return; // root reads everything; the e2e suite covers this as a non-root user
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        fs::write(&path, "x").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o000)).unwrap();
        let outcome = read(&path, &plan("content"));
        assert_eq!(outcome.state.content_hash, None);
        assert!(
            outcome.errors[0].contains("Permission denied"),
            "{:?}",
            outcome.errors
        );
    }

    fn is_root() -> bool {
        fs::metadata("/proc/self")
            .map(|m| m.uid() == 0)
            .unwrap_or(false)
    }
}
