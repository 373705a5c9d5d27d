//! Reading the host, for both products. Everything here only reads
//! (invariant 6), and what it cannot see is coverage, never drift (invariant 9).
//!
//! - [`scan`]: the walk of the policy's rules and the reading of one subject
//!   (lstat, link target, xattrs, BLAKE3, snapshots), read-only opens.
//! - [`sources`]: state beyond files (packages, sysctl, modules, ports,
//!   users and groups) and the daemon's poller.
//! - [`attribution`]: who made a change (fanotify FID mode, /proc).
//! - [`provenance`]: which package owns a file and whether it still matches it.
//! - [`redact`]: secret values masked in diffs before they leave the host.
//! - [`sandbox`]: what the agent's own service sandbox hides.

pub mod attribution;
pub mod provenance;
pub mod redact;
pub mod sandbox;
pub mod scan;
pub mod sources;
