//! `driftwatch-collector backup FILE`: a consistent online copy of the database.
//!
//! The copy goes to a temporary file beside FILE, is checked on its own
//! ([`crate::store::sqlite::check_copy`]), and only then takes FILE's name, so FILE is either
//! a whole checked copy or untouched. The backup is then recorded in the live audit log (the
//! copy cannot hold the record of itself), signed like every entry, where the signing key is
//! readable.

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use driftwatch_config::collector::CollectorConfig;

use crate::audit;
use crate::clock::{Clock, SystemClock};
use crate::store::SqliteStore;

/// What a finished backup holds, and whether the audit log records it.
pub struct Backup {
    pub file: PathBuf,
    pub bytes: u64,
    /// Hex SHA-256 of the file as written.
    pub sha256: String,
    pub schema_version: i64,
    pub audit_entries: u64,
    /// Hex hash of the copy's last audit entry, `none` for an empty log.
    pub audit_head: String,
    /// The audit entry's sequence number, or why the backup is not recorded.
    pub recorded: Result<u64, String>,
}

/// Copies the database of `config` into `file` (refused when it exists, unless `force`);
/// `actor` is who runs it, for the audit entry.
pub async fn backup(
    config: &CollectorConfig,
    file: &Path,
    force: bool,
    actor: &str,
) -> anyhow::Result<Backup> {
    if let driftwatch_config::collector::StoreSettings::Postgres(_) = config.store {
        bail!(
            "`backup` copies the SQLite database; this collector's store is PostgreSQL \
             ([store] backend = \"postgres\" in {}): back it up with PostgreSQL's own tools, \
             e.g. `pg_dump --format=custom --file=FILE DATABASE` (consistent while the \
             collectors run), or continuous archiving and a replica",
            config.source.display()
        );
    }
    let db = config.db_path();
    if !db.is_file() {
        bail!(
            "there is no database {} to back up (state_dir in {})",
            db.display(),
            config.source.display()
        );
    }
    let target =
        std::path::absolute(file).with_context(|| format!("cannot resolve {}", file.display()))?;
    let (Some(parent), Some(name)) = (target.parent(), target.file_name()) else {
        bail!("{} is not a file name", target.display());
    };
    let parent = parent
        .canonicalize()
        .with_context(|| format!("cannot use the directory {}", parent.display()))?;
    let target = parent.join(name);
    let live = db
        .canonicalize()
        .with_context(|| format!("cannot resolve {}", db.display()))?;
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let mut busy = live.clone().into_os_string();
        busy.push(suffix);
        if target == Path::new(&busy) {
            bail!(
                "{} is the live database's own file: back up to another file",
                target.display()
            );
        }
    }
    if !force && target.symlink_metadata().is_ok() {
        bail!(
            "{} exists: choose a new file, or --force to replace it",
            target.display()
        );
    }

    let source = SqliteStore::open_read_only(&db)
        .with_context(|| format!("cannot open the database {}", db.display()))?;
    let temp = tempfile::Builder::new()
        .prefix(&format!(".{}.", name.to_string_lossy()))
        .suffix(".tmp")
        .permissions(std::fs::Permissions::from_mode(0o600))
        .tempfile_in(&parent)
        .with_context(|| format!("cannot create a temporary file in {}", parent.display()))?;
    // Removed on every early return below; SQLite opens it by name.
    let temp = temp.into_temp_path();
    let copied = source.backup_into(temp.to_path_buf()).await;
    source.close();
    copied.with_context(|| format!("cannot copy {}", db.display()))?;
    let facts = crate::store::sqlite::check_copy(&temp)
        .context("the copy failed its check; FILE was not written")?;
    std::fs::set_permissions(&temp, std::fs::Permissions::from_mode(0o600))
        .context("cannot make the copy 0600")?;
    let (bytes, sha256) = file_digest(&temp)?;
    std::fs::File::open(&temp)
        .and_then(|f| f.sync_all())
        .context("cannot flush the copy to disk")?;
    let placed = if force {
        temp.persist(&target).map_err(|e| e.error)
    } else {
        temp.persist_noclobber(&target).map_err(|e| e.error)
    };
    placed.with_context(|| {
        format!(
            "cannot name the copy {} (it exists, or the directory refuses it)",
            target.display()
        )
    })?;
    std::fs::File::open(&parent)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("cannot flush the directory {}", parent.display()))?;

    let audit_head = facts
        .audit_head
        .as_ref()
        .map_or_else(|| "none".to_owned(), |h| crate::identity::hex(&h.hash));
    let mut backup = Backup {
        file: target,
        bytes,
        sha256,
        schema_version: facts.schema_version,
        audit_entries: facts.audit_entries,
        audit_head,
        recorded: Err(String::new()),
    };
    backup.recorded = record(config, &db, actor, &backup).await?;
    Ok(backup)
}

/// Writes the `collector.backup` entry into the live log. An unreadable signing key is not
/// an error (the copy is made): it is the reason the backup is not recorded.
async fn record(
    config: &CollectorConfig,
    db: &Path,
    actor: &str,
    backup: &Backup,
) -> anyhow::Result<Result<u64, String>> {
    let key = match audit::key_file::load(&config.audit_key_path(), false) {
        Ok((key, _)) => key,
        Err(why) => return Ok(Err(why.to_string())),
    };
    let entry = audit::NewAudit::new(
        SystemClock.now(),
        actor.to_owned(),
        "collector.backup",
        format!("backup:{}", backup.file.display()),
        serde_json::json!({
            "file": backup.file.display().to_string(),
            "bytes": backup.bytes,
            "sha256": backup.sha256,
            "schema_version": backup.schema_version,
            "audit_entries": backup.audit_entries,
            "audit_head": backup.audit_head,
        }),
    );
    let store = SqliteStore::open(db)
        .with_context(|| format!("cannot open the database {}", db.display()))?;
    let recorded = store.append_signed_audit(Arc::new(key), entry).await;
    store.close();
    let seq = recorded.context("the copy is made, but cannot record it in the audit log")?;
    Ok(Ok(seq))
}

/// Size and SHA-256 (hex) of a file.
fn file_digest(path: &Path) -> anyhow::Result<(u64, String)> {
    use sha2::Digest;
    let mut file =
        std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut hasher = sha2::Sha256::new();
    let mut buffer = vec![0u8; 1 << 16];
    let mut bytes = 0u64;
    loop {
        let n = file
            .read(&mut buffer)
            .with_context(|| format!("cannot read {}", path.display()))?;
        if n == 0 {
            break;
        }
        bytes += n as u64;
        hasher.update(&buffer[..n]);
    }
    Ok((bytes, crate::identity::hex(&hasher.finalize())))
}
