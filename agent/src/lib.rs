//! The driftwatch agent: baselines and integrity checks of a host's files
//! (standalone, like AIDE), the foundation of the real-time daemon.
//!
//! Data flow: [`scan`] walks the policy's rules and reads each subject ->
//! [`check`] compares with the verified baseline from [`store`] ->
//! [`report`] prints drift for people (text) and machines (JSON).
//! [`commands`] wires these into the CLI in `main.rs`.

pub mod baseline;
pub mod cli;
pub mod clock;
pub mod daemon;
pub mod observe;

// Old flat paths, kept only for this move commit; the next commit uses the new ones.
pub use baseline::{check, store};
pub use cli::{commands, progress, rebaseline, report};
pub use daemon::{detect, engine, enroll, events, heartbeat, metrics, ship, spool, status, watch};
pub use observe::{attribution, provenance, redact, sandbox, scan, sources};

/// Process exit codes, documented in `--help` and the README.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// No drift; every subject was checked.
    Clean = 0,
    /// Drift was found.
    Drift = 1,
    /// The command failed (bad config, no baseline, I/O error...); nothing was compared.
    Error = 2,
    /// No drift found, but some subjects could not be read or checked.
    Incomplete = 3,
    /// The baseline failed its integrity check: it was modified outside driftwatch.
    Integrity = 4,
    /// The configuration was refused (`EX_CONFIG`): nothing was done. The unit does not
    /// restart on it (`RestartPreventExitStatus=78`): a person must fix the file.
    Config = 78,
}
