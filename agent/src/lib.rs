//! The driftwatch agent: baselines and integrity checks of a host's files
//! (standalone, like AIDE), the foundation of the real-time daemon.
//!
//! Data flow: [`scan`] walks the policy's rules and reads each subject ->
//! [`check`] compares with the verified baseline from [`store`] ->
//! [`report`] prints drift for people (text) and machines (JSON).
//! [`commands`] wires these into the CLI in `main.rs`.

pub mod attribution;
pub mod check;
pub mod clock;
pub mod commands;
pub mod daemon;
pub mod detect;
pub mod engine;
pub mod enroll;
pub mod events;
pub mod heartbeat;
pub mod metrics;
pub mod progress;
pub mod provenance;
pub mod rebaseline;
pub mod redact;
pub mod report;
pub mod sandbox;
pub mod scan;
pub mod ship;
pub mod sources;
pub mod spool;
pub mod status;
pub mod store;
pub mod watch;

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
