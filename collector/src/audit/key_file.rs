//! Where the audit signing key lives: a systemd credential (`LoadCredential=` puts it in
//! `$CREDENTIALS_DIRECTORY`), else a 0600 file named in `collector.toml`, created on first
//! start (or by `driftwatch-collector audit keygen`). Never inside `collector.db`: whoever
//! can edit the database but not read this file cannot sign.
//!
//! The file holds the 32-byte Ed25519 seed as 64 hex digits and a newline.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use driftwatch_config::collector::AUDIT_KEY_CREDENTIAL;

use super::signing::{AuditKey, PublicKey, unhex};
use crate::identity::hex;

/// Where the key was found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeySource {
    File(PathBuf),
    Credential(PathBuf),
}

impl std::fmt::Display for KeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeySource::File(path) => write!(f, "key file {}", path.display()),
            KeySource::Credential(path) => write!(f, "systemd credential {}", path.display()),
        }
    }
}

/// The systemd credential, when the service was given one.
pub fn credential_path() -> Option<PathBuf> {
    let dir = std::env::var_os("CREDENTIALS_DIRECTORY").filter(|d| !d.is_empty())?;
    let path = Path::new(&dir).join(AUDIT_KEY_CREDENTIAL);
    path.is_file().then_some(path)
}

/// The credential if present, else the file at `path`, created (0600) when missing and
/// `create` is set.
pub fn load(path: &Path, create: bool) -> Result<(AuditKey, KeySource), String> {
    if let Some(credential) = credential_path() {
        let key = read_seed(&credential)?;
        return Ok((key, KeySource::Credential(credential)));
    }
    if create && !path.exists() {
        generate(path)?;
        tracing::info!(path = %path.display(), "created the audit signing key");
    }
    check_permissions(path)?;
    Ok((read_seed(path)?, KeySource::File(path.to_owned())))
}

/// Writes a new key to `path`; refuses to replace an existing file.
pub fn generate(path: &Path) -> Result<AuditKey, String> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|err| format!("no randomness for a key: {err}"))?;
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        fs::create_dir_all(dir).map_err(|err| format!("cannot create {}: {err}", dir.display()))?;
    }
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|err| match err.kind() {
            std::io::ErrorKind::AlreadyExists => format!(
                "{} already exists: a new key would orphan every checkpoint signed with it; \
                 move it away first if you mean to replace it",
                path.display()
            ),
            _ => format!("cannot create {}: {err}", path.display()),
        })?;
    file.write_all(format!("{}\n", hex(&seed)).as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|err| format!("cannot write {}: {err}", path.display()))?;
    Ok(AuditKey::from_seed(seed))
}

/// A key file readable or writable by group or others is refused: anyone who can read it
/// can sign checkpoints.
fn check_permissions(path: &Path) -> Result<(), String> {
    let meta = fs::metadata(path).map_err(|err| {
        format!(
            "cannot read the audit signing key {}: {err} (set [audit] signing_key_file, or \
             create one with `driftwatch-collector audit keygen`)",
            path.display()
        )
    })?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(format!(
            "the audit signing key {} has mode {mode:04o}: it must be readable by the collector \
             only (chmod 600 {})",
            path.display(),
            path.display()
        ));
    }
    Ok(())
}

/// A public key given on a command line: its hex digits, or a file holding them (or the
/// API's JSON).
pub fn read_public_key(arg: &str) -> Result<PublicKey, String> {
    let path = Path::new(arg);
    let text = if path.is_file() {
        fs::read_to_string(path).map_err(|err| format!("cannot read {}: {err}", path.display()))?
    } else {
        arg.to_owned()
    };
    PublicKey::parse(&text)
}

fn read_seed(path: &Path) -> Result<AuditKey, String> {
    let text = fs::read_to_string(path).map_err(|err| {
        format!(
            "cannot read the audit signing key {}: {err}",
            path.display()
        )
    })?;
    let seed: [u8; 32] = unhex(text.trim())
        .and_then(|bytes| bytes.try_into().ok())
        .ok_or_else(|| {
            format!(
                "{} is not an audit signing key (64 hex digits expected)",
                path.display()
            )
        })?;
    Ok(AuditKey::from_seed(seed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_created_once_then_read_back_and_never_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys/audit.key");
        let (created, source) = load(&path, true).unwrap();
        assert_eq!(source, KeySource::File(path.clone()));
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let (again, _) = load(&path, false).unwrap();
        assert_eq!(again.public(), created.public());
        let err = generate(&path).unwrap_err();
        assert!(err.contains("already exists"), "{err}");
    }

    #[test]
    fn loose_permissions_and_garbage_are_refused_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.key");
        generate(&path).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let err = load(&path, true).unwrap_err();
        assert!(
            err.contains("mode 0644") && err.contains("chmod 600"),
            "{err}"
        );
        fs::write(&path, "nope\n").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        assert!(load(&path, false).unwrap_err().contains("64 hex digits"));
        let missing = load(&dir.path().join("none"), false).unwrap_err();
        assert!(missing.contains("audit keygen"), "{missing}");
    }
}
