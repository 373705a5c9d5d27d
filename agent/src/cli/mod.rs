//! The command line: commands, report, progress, the local re-baseline guard.
pub mod commands;
pub mod progress;
pub mod rebaseline;
pub mod report;
