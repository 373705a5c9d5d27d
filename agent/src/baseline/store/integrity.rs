//! The keyed integrity root of a baseline (invariant 6).
//!
//! The root is a keyed BLAKE3 over three digests: every entry in path order,
//! every history row in id order, and the meta values. Anyone who edits,
//! adds, deletes or reorders a row without the key changes a digest and the
//! root no longer matches. The key is 32 random bytes in a 0600 file created
//! at init. (An attacker who can read the key, i.e. root on the host, can
//! forge a baseline; the collector anchors the unkeyed [`anchor`] it reports and
//! alerts when it changes without a decision the collector knows of.)

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use driftwatch_common::hash::ContentHash;

use super::{Meta, StoreError};

pub struct Key([u8; 32]);

impl Key {
    pub fn generate() -> Key {
        let mut bytes = [0u8; 32];
        fs::File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut bytes))
            .expect("/dev/urandom is readable on Linux");
        Key(bytes)
    }

    pub fn read(path: &Path) -> Result<Key, StoreError> {
        let text = match fs::read_to_string(path) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                return Err(StoreError::KeyMissing {
                    key: path.to_owned(),
                });
            }
            Err(source) => {
                return Err(StoreError::Io {
                    path: path.to_owned(),
                    cause: source,
                });
            }
        };
        let invalid = |reason: &str| StoreError::KeyInvalid {
            key: path.to_owned(),
            reason: reason.to_owned(),
        };
        let hash: ContentHash = text
            .trim()
            .parse()
            .map_err(|_| invalid("expected 64 hex digits"))?;
        if let Ok(meta) = fs::metadata(path)
            && meta.permissions().mode() & 0o077 != 0
        {
            tracing::warn!(
                key = %path.display(),
                mode = format!("{:o}", meta.permissions().mode() & 0o7777),
                "baseline key is readable by other users; it should be mode 0600"
            );
        }
        Ok(Key(hash.0))
    }

    /// Writes the key to a fresh 0600 file beside `final_path` and returns its path.
    pub fn write_new(&self, final_path: &Path) -> Result<PathBuf, StoreError> {
        let mut name = final_path.as_os_str().to_owned();
        name.push(format!(".new-{}", std::process::id()));
        let tmp = PathBuf::from(name);
        let _ = fs::remove_file(&tmp);
        let written = (|| {
            let mut file = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)?;
            writeln!(file, "{}", ContentHash(self.0))?;
            file.sync_all()
        })();
        if let Err(cause) = written {
            let _ = fs::remove_file(&tmp);
            return Err(StoreError::Io { path: tmp, cause });
        }
        Ok(tmp)
    }

    /// `state` is the digest of the state entries, `None` when there are none
    /// (so baselines made before state sources existed still verify).
    /// An independent key for `purpose` (BLAKE3 key derivation).
    pub fn derive(&self, purpose: &str) -> [u8; 32] {
        blake3::derive_key(&format!("driftwatch {purpose} v1"), &self.0)
    }

    pub fn root(
        &self,
        entries: &ContentHash,
        history: &ContentHash,
        state: Option<&ContentHash>,
        meta: &Meta,
    ) -> ContentHash {
        let mut hasher = blake3::Hasher::new_keyed(&self.0);
        hasher.update(b"driftwatch baseline root v1\0");
        hasher.update(&entries.0);
        hasher.update(&history.0);
        if let Some(state) = state {
            hasher.update(b"state\0");
            hasher.update(&state.0);
        }
        for value in [
            &meta.created_at,
            &meta.policy_digest,
            &meta.last_full_hash_at,
        ] {
            add_field(&mut hasher, value.as_bytes());
        }
        hasher.finalize().into()
    }
}

/// The baseline's root as reported to the collector, which anchors it (issue 8): an unkeyed
/// BLAKE3 over the same digests as the keyed root (every entry, every history row, the
/// state entries) and the baseline's creation time and policy digest, but NOT the time of
/// the last full re-hash, which `check` re-seals without any decision (a paranoid check
/// must not look like an edit). Unkeyed so anyone holding the database can recompute it;
/// it changes with any entry, state entry or history row, so a replaced baseline, an
/// older copy (fewer history rows) or an edit made with the key all give another root.
pub fn anchor(
    entries: &ContentHash,
    history: &ContentHash,
    state: Option<&ContentHash>,
    meta: &Meta,
) -> ContentHash {
    let mut hasher = blake3::Hasher::new_derive_key("driftwatch baseline anchor v1");
    hasher.update(&entries.0);
    hasher.update(&history.0);
    match state {
        Some(state) => {
            hasher.update(b"state\0");
            hasher.update(&state.0);
        }
        None => {
            hasher.update(b"nostate\0");
        }
    }
    add_field(&mut hasher, meta.created_at.as_bytes());
    add_field(&mut hasher, meta.policy_digest.as_bytes());
    hasher.finalize().into()
}

/// Unkeyed digest over a stream of rows; the key enters only at the root.
pub struct RootHasher(blake3::Hasher);

impl RootHasher {
    pub fn entries() -> Self {
        RootHasher(blake3::Hasher::new_derive_key(
            "driftwatch baseline entries v1",
        ))
    }

    pub fn state() -> Self {
        RootHasher(blake3::Hasher::new_derive_key(
            "driftwatch baseline state v1",
        ))
    }

    pub fn history() -> Self {
        RootHasher(blake3::Hasher::new_derive_key(
            "driftwatch baseline history v1",
        ))
    }

    pub fn add(&mut self, path: &[u8], record: &[u8]) {
        add_field(&mut self.0, path);
        add_field(&mut self.0, record);
    }

    pub fn add_history(&mut self, id: i64, fields: &[String; 4]) {
        self.0.update(&id.to_le_bytes());
        for field in fields {
            add_field(&mut self.0, field.as_bytes());
        }
    }

    pub fn finish(self) -> ContentHash {
        self.0.finalize().into()
    }
}

/// Length-prefixed, so field boundaries cannot be shifted.
fn add_field(hasher: &mut blake3::Hasher, bytes: &[u8]) {
    hasher.update(&(bytes.len() as u64).to_le_bytes());
    hasher.update(bytes);
}
