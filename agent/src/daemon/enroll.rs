//! Enrollment: `driftwatch-agent enroll --collector URL --token T` exchanges
//! a one-time enrollment token for this agent's own credential and host id,
//! stored 0600 in the credential file (default `state_dir/credential.json`).
//! Events already spooled are then stamped with the new host id and MAC'd with the
//! forward-secure chain key that came with it, which is kept in the spool only.
//!
//! The chain key from the collector's answer goes into the spool before the
//! credential file is written; the request carries the baseline's anchor.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use driftwatch_common::api::v1::{EnrollRequest, EnrollResponse};
use driftwatch_config::AgentConfig;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::Exit;
use crate::daemon::ship::{Client, ShipError};
use crate::daemon::spool::{self, Spool};

/// What enrollment leaves on disk.
#[derive(Clone, Serialize, Deserialize)]
pub struct Credential {
    pub host_id: Uuid,
    /// The bearer token: it can only report and read this agent's commands.
    pub credential: String,
    /// The collector it was issued by.
    pub collector_url: String,
    #[serde(with = "time::serde::rfc3339")]
    pub enrolled_at: OffsetDateTime,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secret itself.
        f.debug_struct("Credential")
            .field("host_id", &self.host_id)
            .field("collector_url", &self.collector_url)
            .finish_non_exhaustive()
    }
}

impl Credential {
    /// Reads the credential file; `None` when the agent is not enrolled.
    pub fn read(path: &Path) -> anyhow::Result<Option<Credential>> {
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(err) => {
                return Err(err).with_context(|| format!("cannot read {}", path.display()));
            }
        };
        let credential = serde_json::from_slice(&bytes).with_context(|| {
            format!(
                "{} is not a driftwatch credential file: enroll again",
                path.display()
            )
        })?;
        Ok(Some(credential))
    }

    /// Writes the file atomically, readable by its owner only.
    pub fn write(&self, path: &Path) -> anyhow::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".new");
        let tmp = PathBuf::from(tmp);
        let _ = std::fs::remove_file(&tmp);
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .with_context(|| format!("cannot create {}", tmp.display()))?;
        let json = serde_json::to_vec_pretty(self).expect("credentials always serialize");
        file.write_all(&json)
            .and_then(|()| file.sync_all())
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        std::fs::rename(&tmp, path)
            .with_context(|| format!("cannot move the credential to {}", path.display()))?;
        Ok(())
    }
}

use std::os::unix::fs::DirBuilderExt;

/// The baseline's anchor, so the collector knows it from the start (none yet: `None`,
/// and the collector takes the first heartbeat's). A baseline that does not verify is
/// an error: enrolling would anchor a tampered baseline.
fn baseline_at_enrollment(
    state_dir: &Path,
) -> anyhow::Result<Option<driftwatch_common::api::v1::BaselineAnchor>> {
    let paths = crate::baseline::store::StorePaths::in_state_dir(state_dir);
    if !paths.db.exists() {
        return Ok(None);
    }
    let store = crate::baseline::store::BaselineStore::open(&paths)?;
    Ok(Some(store.load()?.anchor()))
}

/// What `enroll` was asked.
pub struct EnrollArgs {
    pub collector: Option<String>,
    pub token: String,
    pub labels: Vec<(String, String)>,
    /// Replace an existing enrollment.
    pub force: bool,
}

/// `driftwatch-agent enroll`.
pub async fn enroll(config: &AgentConfig, args: EnrollArgs) -> anyhow::Result<Exit> {
    let url = match (&args.collector, &config.daemon.collector.url) {
        (Some(url), _) => driftwatch_config::agent::daemon::check_url(url)
            .map_err(|why| anyhow::anyhow!("--collector {why}"))?,
        (None, Some(url)) => url.clone(),
        (None, None) => {
            bail!(
                "no collector URL: pass --collector URL or set [collector] url in the configuration"
            )
        }
    };
    if args.token.trim().is_empty() {
        bail!("the enrollment token is empty");
    }
    let path = config.daemon.credential_file(&config.state_dir);
    if let Some(existing) = Credential::read(&path)?
        && !args.force
    {
        bail!(
            "this agent is already enrolled as host {} with {} ({}): pass --force to enroll again",
            existing.host_id,
            existing.collector_url,
            path.display()
        );
    }
    if crate::daemon::status::daemon_running(&config.state_dir) {
        bail!(
            "the agent daemon is running: stop it before enrolling (systemctl stop driftwatch-agent)"
        );
    }
    let hostname = sysinfo::System::host_name().unwrap_or_else(|_| "unknown".into());
    let request = EnrollRequest {
        token: args.token,
        hostname: hostname.clone(),
        labels: args.labels.into_iter().collect(),
        agent_version: env!("CARGO_PKG_VERSION").to_owned(),
        baseline: baseline_at_enrollment(&config.state_dir)?,
    };
    let client = Client::new(&config.daemon.collector, &url, None)?;
    let body = serde_json::to_vec(&request).expect("requests always serialize");
    let response: EnrollResponse = match client.post("enroll", body, false).await {
        Ok(response) => response,
        Err(ShipError::Status { status, message }) if status == 401 || status == 403 => {
            bail!(
                "the collector refused the enrollment token ({status}: {message}); ask for a new one"
            )
        }
        Err(err) => return Err(err).context("enrollment failed"),
    };
    let credential = Credential {
        host_id: response.host_id,
        credential: response.credential,
        collector_url: url.clone(),
        enrolled_at: OffsetDateTime::now_utc(),
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&config.state_dir)
        .with_context(|| format!("cannot create {}", config.state_dir.display()))?;
    // The chain key goes into the spool only (it is ratcheted there, the old key erased),
    // never beside the credential; the spool first, so a credential never names a host
    // whose key was not kept.
    let mut spool = Spool::open(&config.state_dir.join(spool::FILE_NAME))?;
    let keyed = response.chain_key.is_some();
    let restamped = spool.adopt_identity(credential.host_id, response.chain_key)?;
    credential.write(&path)?;
    if !keyed {
        eprintln!(
            "warning: the collector issued no chain key (an older collector): events from this \
             host are hash-chained but not authenticated"
        );
    }
    println!(
        "enrolled {hostname} with {url} as host {}\ncredential: {} (0600)",
        credential.host_id,
        path.display()
    );
    if restamped > 0 {
        println!("{restamped} event(s) already spooled will be delivered as this host");
    }
    println!("next: start the agent (systemctl start driftwatch-agent, or driftwatch-agent run)");
    Ok(Exit::Clean)
}
