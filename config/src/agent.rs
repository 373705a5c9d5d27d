//! The agent's configuration: where state lives, how to scan, and the policy rules.
//!
//! PUBLIC API CONTRACT (the agent depends on exactly these items).

use std::path::{Path, PathBuf};
use std::time::Duration;

use driftwatch_common::attrs::AttributeSet;
use driftwatch_common::hash::ContentHash;
use driftwatch_common::pattern::GlobList;

use crate::error::ConfigErrors;

/// The shipped default policy (also installed by packaging as /etc/driftwatch/agent.toml).
pub const DEFAULT_AGENT_TOML: &str = include_str!("../examples/agent.toml");

#[derive(Clone, Debug)]
pub struct AgentConfig {
    /// Where the configuration came from, for messages.
    pub source: PathBuf,
    /// Directory holding `baseline.db` and its key `baseline.key`.
    pub state_dir: PathBuf,
    pub scan: ScanSettings,
    pub snapshots: SnapshotSettings,
    /// Rules in file order; rule paths are unique.
    pub rules: Vec<Rule>,
}

#[derive(Clone, Debug)]
pub struct ScanSettings {
    /// Threads that walk and hash; always >= 1 (0 in the file means one per core).
    pub workers: usize,
    /// `check` re-hashes all content when this much time passed since the last full hash; `None` = never.
    pub full_rehash_interval: Option<Duration>,
}

#[derive(Clone, Debug)]
pub struct SnapshotSettings {
    /// Text files up to this size get a content snapshot for diffs; 0 disables snapshots.
    pub max_bytes: u64,
    /// Paths never snapshotted (secrets).
    pub exclude: GlobList,
}

#[derive(Clone, Debug)]
pub struct Rule {
    /// Absolute, normalised (no trailing `/`, no `.` or `..` components, no `//`).
    pub path: PathBuf,
    /// The group name as written (`content`, `permissions`, a custom group...).
    pub group: String,
    pub attributes: AttributeSet,
    /// Descend into subdirectories; when false only the path and its direct entries are recorded.
    pub recurse: bool,
    /// Do not cross into other mounted filesystems.
    pub one_filesystem: bool,
    /// When non-empty, only entries matching one of these are recorded (directories are still descended).
    pub include: GlobList,
    /// Entries matching these are skipped; excluded directories are not descended.
    pub exclude: GlobList,
}

impl AgentConfig {
    /// Reads and validates a file, reporting every problem with file, line, column and key.
    pub fn load(path: &Path) -> Result<AgentConfig, ConfigErrors> {
        let _ = path;
        unimplemented!("being written")
    }

    /// Validates TOML text; `source` names it in errors.
    pub fn from_toml(text: &str, source: &Path) -> Result<AgentConfig, ConfigErrors> {
        let _ = (text, source);
        unimplemented!("being written")
    }

    /// The shipped default policy ([`DEFAULT_AGENT_TOML`]).
    pub fn default_policy() -> AgentConfig {
        unimplemented!("being written")
    }

    /// A one-rule policy for ad-hoc use: the built-in `content` group on `path`,
    /// recursive, staying on one filesystem, with the default snapshot settings.
    pub fn adhoc(path: &Path) -> AgentConfig {
        let _ = path;
        unimplemented!("being written")
    }

    /// A stable digest of everything that decides what is recorded (rules and
    /// snapshot settings, not workers or state_dir), so a baseline can tell
    /// when the policy changed since it was made.
    pub fn policy_digest(&self) -> ContentHash {
        unimplemented!("being written")
    }
}
