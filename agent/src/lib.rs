//! The driftwatch agent, two products on one core:
//!
//! - standalone, an integrity checker like AIDE: `baseline init` records every
//!   subject, `check` compares the host with that sealed baseline
//!   ([`baseline`]);
//! - as a daemon (`run`), the same comparison on every settled inotify batch,
//!   scan and poll of the state sources, turned into drift events that are
//!   spooled and delivered to a collector ([`daemon`]).
//!
//! Both read the host through [`observe`] (the walk and the reading of a
//! subject, state sources, attribution, package provenance, secret masking,
//! what the agent's own sandbox hides); [`cli`] is the command line that wires
//! them together for `main.rs`. [`clock`] is shared by all.

pub mod baseline;
pub mod cli;
pub mod clock;
pub mod daemon;
pub mod observe;

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
