//! The standalone product, an integrity checker like AIDE: the baseline
//! (the approved state of every subject) and the check against it.
//!
//! - [`store`]: the sealed baseline database (entries, state subjects,
//!   history, keyed root and anchor), its compact in-memory form, migrations.
//! - [`budget`]: which content snapshots init keeps (configuration always, the rest
//!   within `--snapshot-budget`).
//! - [`check`]: the comparison of the host with the baseline (quick by
//!   `lstat`, paranoid by re-reading), also the daemon's comparison.
//!
//! Reading the host is [`crate::observe`]'s job; printing results is
//! [`crate::cli`]'s.

pub mod budget;
pub mod check;
pub mod store;
