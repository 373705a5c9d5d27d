//! The agent's configuration: where state lives, how to scan, and the policy rules.
//!
//! # The file: `/etc/driftwatch/agent.toml`
//!
//! ```toml
//! # Directory holding baseline.db and baseline.key (absolute). Default "/var/lib/driftwatch".
//! state_dir = "/var/lib/driftwatch"
//!
//! [scan]
//! workers = 0                        # 0 = one per core; at most 256
//! full_rehash_interval_hours = 168   # 0 = never; default 168 (weekly)
//!
//! [snapshots]
//! max_bytes = 65536                  # default 65536; 0 disables; at most 16 MiB
//! exclude = ["/etc/shadow", "**/*.key"]   # default: DEFAULT_SNAPSHOT_EXCLUDE; a list here replaces it
//! secret_keys = ["pass", "token"]    # regexes masking values in diffs; default: DEFAULT_SECRET_KEYS; [] = none
//!
//! [groups]                           # custom attribute groups: name = [attribute names]
//! strict = ["type", "mode", "uid", "gid", "size", "hash", "xattrs", "inode"]
//!
//! [[rule]]                           # at least one
//! path = "/etc"                      # required, absolute
//! group = "content"                  # default "content"; a built-in group or a [groups] name
//! recurse = true                     # default true
//! one_filesystem = true              # default true
//! include = []                       # default empty = everything
//! exclude = ["/etc/mtab", "**/*.swp"]  # default empty
//! ```
//!
//! Every table and key is optional except `[[rule]]` and its `path`; unknown keys are errors.
//! Rule paths are normalised (`//` collapsed, `.` components and a trailing `/` dropped) and
//! must be unique; `..` is rejected. Globs match whole absolute paths, so they start with `/`
//! or `**` (`**/*.swp`, not `*.swp`); `*` stays within one path segment.
//!
//! # Errors
//!
//! Loading reports every problem it finds, not just the first: each [`ConfigError`] names the
//! file, the 1-based line and column of the offending text and its dotted key with 0-based
//! indexes (`rule[2].exclude[0]`). A TOML syntax error or a value of the wrong type stops
//! reading before the semantic checks, so those come alone (syntax errors all together).
//!
//! [`ConfigError`]: crate::error::ConfigError

mod compile;
pub mod daemon;
pub mod metrics;
mod raw;
#[cfg(test)]
mod tests;

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use driftwatch_common::attrs::AttributeSet;
use driftwatch_common::hash::ContentHash;
use driftwatch_common::pattern::GlobList;

use crate::error::{ConfigError, ConfigErrors};

/// The shipped default policy (also installed by packaging as /etc/driftwatch/agent.toml).
pub const DEFAULT_AGENT_TOML: &str = include_str!("../examples/agent.toml");

/// `state_dir` when the file does not set it.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/driftwatch";

/// `scan.full_rehash_interval_hours` when the file does not set it (weekly).
pub const DEFAULT_FULL_REHASH_INTERVAL_HOURS: u64 = 168;

/// Largest `scan.full_rehash_interval_hours` accepted (ten years; use 0 for never).
pub const MAX_FULL_REHASH_INTERVAL_HOURS: u64 = 87_600;

/// Largest `scan.workers` accepted.
pub const MAX_WORKERS: usize = 256;

/// `snapshots.max_bytes` when the file does not set it.
pub const DEFAULT_SNAPSHOT_MAX_BYTES: u64 = 64 * 1024;

/// Largest `snapshots.max_bytes` accepted (16 MiB).
pub const MAX_SNAPSHOT_BYTES: u64 = 16 * 1024 * 1024;

/// The snapshot budget of ad-hoc use (`--path`, no policy): total compressed bytes of the
/// snapshots kept outside [`CONFIG_LIKE_SNAPSHOTS`] (see [`SnapshotSettings::budget`]).
pub const DEFAULT_ADHOC_SNAPSHOT_BUDGET: u64 = 8 * 1024 * 1024;

/// Paths whose snapshots a budget never leaves out: configuration, where a diff is what a
/// reviewer needs. Everything else shares the budget.
pub const CONFIG_LIKE_SNAPSHOTS: &[&str] =
    &["/etc/**", "**/*.conf", "**/*.cnf", "**/*.cfg", "**/*.ini"];

/// `snapshots.exclude` when the file does not set it: files whose content is secret, so no
/// diff of them is ever stored or sent (their hash still detects a change).
pub const DEFAULT_SNAPSHOT_EXCLUDE: &[&str] = &[
    // Password hashes and their backups.
    "/etc/shadow",
    "/etc/shadow-",
    "/etc/gshadow",
    "/etc/gshadow-",
    "/etc/security/opasswd",
    // Private keys and key stores.
    "/etc/ssh/ssh_host_*_key",
    "**/.ssh/id_*",
    "**/*.key",
    "**/*.pem",
    "**/*.p12",
    "**/*.pfx",
    "**/*.jks",
    "**/*.keytab",
    "/etc/ssl/private/**",
    "/etc/pki/tls/private/**",
    // Shared secrets, pre-shared keys and service passwords.
    "/etc/ipsec.secrets",
    "/etc/ppp/*-secrets",
    "/etc/wireguard/**",
    "/etc/wpa_supplicant/**",
    "/etc/NetworkManager/system-connections/**",
    "/etc/credstore/**",
    "/etc/credstore.encrypted/**",
    "/etc/chrony.keys",
    "/etc/chrony/chrony.keys",
    "/etc/snmp/snmpd.conf",
    "/etc/sssd/sssd.conf",
    "/etc/mysql/debian.cnf",
    "/etc/postfix/sasl_passwd*",
    "/boot/grub*/user.cfg",
    "**/.pgpass",
    "**/.netrc",
    "**/.my.cnf",
    // Our own enrolment credentials.
    "/etc/driftwatch/*.token",
];

/// `snapshots.secret_keys` when the file does not set it: regular expressions matched
/// (case-insensitively) within the key of a `key = value` / `key: value` / `key value` line
/// of a diff. The value of a matching key is masked with a keyed fingerprint before the diff
/// leaves the host; switches (`yes`/`no`), small numbers and paths stay readable.
pub const DEFAULT_SECRET_KEYS: &[&str] = &[
    "pass",
    "secret",
    "token",
    "key",
    "credential",
    "auth",
    "cookie",
    "private",
    "salt",
];

/// `AgentConfig::source` of [`AgentConfig::default_policy`].
const BUILT_IN_SOURCE: &str = "<built-in default>";
/// `AgentConfig::source` of [`AgentConfig::adhoc`].
const COMMAND_LINE_SOURCE: &str = "<command line>";

#[derive(Clone, Debug)]
pub struct AgentConfig {
    /// Where the configuration came from, for messages.
    pub source: PathBuf,
    /// Directory holding `baseline.db` and its key `baseline.key`.
    pub state_dir: PathBuf,
    pub scan: ScanSettings,
    pub snapshots: SnapshotSettings,
    pub sources: SourceSettings,
    /// Rules in file order; rule paths are unique.
    pub rules: Vec<Rule>,
    /// What `driftwatch-agent run` needs beyond the policy (see [`daemon`]).
    pub daemon: daemon::DaemonSettings,
    /// `[metrics]`: the agent's own metrics (see [`metrics`]); off by default.
    pub metrics: metrics::MetricsSettings,
}

/// The state sources the agent knows, by policy name.
pub const SOURCE_NAMES: [&str; 5] = ["package", "sysctl", "module", "port", "user"];
/// `sources.interval_secs` when the file does not set it.
pub const DEFAULT_SOURCES_INTERVAL_SECS: u64 = 300;
/// Largest `sources.interval_secs` accepted (a day).
pub const MAX_SOURCES_INTERVAL_SECS: u64 = 86_400;

/// State beyond files (`[sources]`): which sources are baselined and checked.
#[derive(Clone, Debug)]
pub struct SourceSettings {
    /// Names from [`SOURCE_NAMES`], each once, in file order (all by default).
    pub enabled: Vec<String>,
    /// How often the daemon polls them.
    pub interval: Duration,
    /// The system they read: `/` for this host, or a mounted image or container root.
    pub root: PathBuf,
}

impl SourceSettings {
    /// No sources: ad-hoc checks of one tree.
    pub fn none() -> Self {
        SourceSettings {
            enabled: Vec::new(),
            interval: Duration::from_secs(DEFAULT_SOURCES_INTERVAL_SECS),
            root: PathBuf::from("/"),
        }
    }
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
    /// When non-empty, only paths matching one of these are snapshotted
    /// (configuration, not every text file under /usr).
    pub include: GlobList,
    /// Paths never snapshotted (secrets).
    pub exclude: GlobList,
    /// Regular expressions for keys whose values are masked in diffs (each compiles alone).
    pub secret_keys: Vec<String>,
    /// Total compressed bytes of the snapshots kept for paths outside [`Self::config_like`]
    /// (`None`: no limit, the policy's include and exclude lists decide alone). Ad-hoc use
    /// has [`DEFAULT_ADHOC_SNAPSHOT_BUDGET`]; `baseline init --snapshot-budget` sets it.
    /// Not part of the policy digest: it decides which diffs can be shown, not what is checked.
    pub budget: Option<u64>,
    /// Paths exempt from the budget ([`CONFIG_LIKE_SNAPSHOTS`]).
    pub config_like: GlobList,
}

impl SnapshotSettings {
    /// Whether the content of `path` may be kept for diffs (size aside).
    pub fn allows(&self, path: &Path) -> bool {
        self.max_bytes > 0
            && (self.include.is_empty() || self.include.is_match(path))
            && !self.exclude.is_match(path)
    }

    /// Whether a snapshot of `path` counts against [`Self::budget`] (false: always kept).
    pub fn budgeted(&self, path: &Path) -> bool {
        self.budget.is_some() && !self.config_like.is_match(path)
    }
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

impl Default for ScanSettings {
    /// One worker per core, the weekly full re-hash.
    fn default() -> Self {
        ScanSettings {
            workers: workers_per_core(),
            full_rehash_interval: rehash_interval(DEFAULT_FULL_REHASH_INTERVAL_HOURS),
        }
    }
}

impl Default for SnapshotSettings {
    /// [`DEFAULT_SNAPSHOT_MAX_BYTES`] and [`DEFAULT_SNAPSHOT_EXCLUDE`].
    fn default() -> Self {
        SnapshotSettings {
            max_bytes: DEFAULT_SNAPSHOT_MAX_BYTES,
            include: GlobList::empty(),
            exclude: GlobList::new(DEFAULT_SNAPSHOT_EXCLUDE)
                .expect("the built-in snapshot exclude list compiles (unit-tested)"),
            secret_keys: DEFAULT_SECRET_KEYS
                .iter()
                .map(|&key| key.to_owned())
                .collect(),
            budget: None,
            config_like: GlobList::new(CONFIG_LIKE_SNAPSHOTS)
                .expect("the built-in configuration globs compile (unit-tested)"),
        }
    }
}

impl AgentConfig {
    /// Reads and validates a file, reporting every problem with file, line, column and key.
    pub fn load(path: &Path) -> Result<AgentConfig, ConfigErrors> {
        let bytes = std::fs::read(path).map_err(|err| {
            ConfigErrors(vec![ConfigError {
                file: path.to_path_buf(),
                line: None,
                column: None,
                key: None,
                message: format!(
                    "cannot read the file: {}",
                    lowercase_first(&err.to_string())
                ),
            }])
        })?;
        let text = String::from_utf8(bytes).map_err(|err| {
            let valid = &err.as_bytes()[..err.utf8_error().valid_up_to()];
            let valid = std::str::from_utf8(valid).expect("valid_up_to marks valid utf-8");
            let (line, column) = crate::span::Locator::new(valid).position(valid.len());
            ConfigErrors(vec![ConfigError {
                file: path.to_path_buf(),
                line: Some(line),
                column: Some(column),
                key: None,
                message: "invalid utf-8: a TOML file must be utf-8 encoded".to_owned(),
            }])
        })?;
        Self::from_toml(&text, path)
    }

    /// Validates TOML text; `source` names it in errors.
    pub fn from_toml(text: &str, source: &Path) -> Result<AgentConfig, ConfigErrors> {
        compile::from_toml(text, source)
    }

    /// The shipped default policy ([`DEFAULT_AGENT_TOML`]).
    ///
    /// # Panics
    ///
    /// Only if the shipped file were invalid, which a unit test rules out.
    pub fn default_policy() -> AgentConfig {
        match Self::from_toml(DEFAULT_AGENT_TOML, Path::new(BUILT_IN_SOURCE)) {
            Ok(config) => config,
            Err(errors) => panic!("the built-in default policy is invalid:\n{errors}"),
        }
    }

    /// A one-rule policy for ad-hoc use: the built-in `content` group on `path`,
    /// recursive, staying on one filesystem, with the default snapshot settings and the
    /// ad-hoc snapshot budget ([`DEFAULT_ADHOC_SNAPSHOT_BUDGET`]).
    ///
    /// `path` should be absolute and canonical; it is normalised lexically
    /// (`//`, `.` and a trailing `/` removed) but otherwise taken as given.
    pub fn adhoc(path: &Path) -> AgentConfig {
        AgentConfig {
            source: PathBuf::from(COMMAND_LINE_SOURCE),
            state_dir: PathBuf::from(DEFAULT_STATE_DIR),
            scan: ScanSettings::default(),
            snapshots: SnapshotSettings {
                budget: Some(DEFAULT_ADHOC_SNAPSHOT_BUDGET),
                ..SnapshotSettings::default()
            },
            sources: SourceSettings::none(),
            daemon: daemon::DaemonSettings::default(),
            metrics: metrics::MetricsSettings::default(),
            rules: vec![Rule {
                path: path.components().collect(),
                group: "content".to_owned(),
                attributes: AttributeSet::builtin("content").expect("`content` is built in"),
                recurse: true,
                one_filesystem: true,
                include: GlobList::empty(),
                exclude: GlobList::empty(),
            }],
        }
    }

    /// A stable digest of everything that decides what is recorded (rules and
    /// snapshot settings, not workers or state_dir), so a baseline can tell
    /// when the policy changed since it was made.
    ///
    /// Canonical: rule order and pattern order do not matter (they do not change what
    /// is recorded), nor does a group's name, only its attributes.
    pub fn policy_digest(&self) -> ContentHash {
        let mut digest = Digest(blake3::Hasher::new_derive_key(
            "driftwatch agent policy digest v1",
        ));
        let mut rules: Vec<&Rule> = self.rules.iter().collect();
        rules.sort_by(|a, b| {
            a.path
                .as_os_str()
                .as_bytes()
                .cmp(b.path.as_os_str().as_bytes())
        });
        digest.len(rules.len());
        for rule in rules {
            digest.bytes(rule.path.as_os_str().as_bytes());
            digest.bytes(rule.attributes.to_string().as_bytes());
            digest.flag(rule.recurse);
            digest.flag(rule.one_filesystem);
            digest.patterns(&rule.include);
            digest.patterns(&rule.exclude);
        }
        digest.0.update(&self.snapshots.max_bytes.to_le_bytes());
        digest.patterns(&self.snapshots.include);
        digest.patterns(&self.snapshots.exclude);
        for source in &self.sources.enabled {
            digest.bytes(source.as_bytes());
        }
        digest.bytes(self.sources.root.as_os_str().as_bytes());
        ContentHash::from(digest.0.finalize())
    }
}

/// Length-prefixed fields, so no two different policies serialise to the same bytes.
struct Digest(blake3::Hasher);

impl Digest {
    fn len(&mut self, len: usize) {
        self.0.update(&(len as u64).to_le_bytes());
    }

    fn bytes(&mut self, bytes: &[u8]) {
        self.len(bytes.len());
        self.0.update(bytes);
    }

    fn flag(&mut self, flag: bool) {
        self.0.update(&[u8::from(flag)]);
    }

    fn patterns(&mut self, globs: &GlobList) {
        let mut patterns: Vec<&str> = globs.patterns().iter().map(String::as_str).collect();
        patterns.sort_unstable();
        patterns.dedup();
        self.len(patterns.len());
        for pattern in patterns {
            self.bytes(pattern.as_bytes());
        }
    }
}

fn workers_per_core() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

fn rehash_interval(hours: u64) -> Option<Duration> {
    (hours > 0).then(|| Duration::from_secs(hours * 3600))
}

fn lowercase_first(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}
