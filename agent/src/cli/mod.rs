//! The command line for people: what `main.rs` calls.
//!
//! - [`commands`]: one function per command (`baseline init|show|accept`,
//!   `check`, `validate-config`), wiring scan, check, store and report.
//! - [`report`]: text and JSON output, paths escaped.
//! - [`progress`]: a live line on a terminal, a log line every 10 s otherwise
//!   (also handed to the scan and the check).
//! - [`rebaseline`]: the guard of local baseline changes (refused while the
//!   daemon runs; spooled as drift on an enrolled host).

pub mod commands;
pub mod progress;
pub mod rebaseline;
pub mod report;
