//! End-to-end tests: each module starts the real `driftwatch-agent` binary on temporary
//! trees (see the `driftwatch_tests` harness) and asserts on its output and exit code.
//! Build the binaries first: `cargo build --workspace --bins`.

mod alerts;
mod anchor;
mod attribution;
mod audit;
mod backup;
mod bad_input;
mod baseline;
// The web console in a real browser (issue 11).
mod browser;
mod churn;
mod cli;
mod clock;
mod collector;
mod config;
mod daemon;
mod daemon_sources;
mod docs;
mod drift;
mod driftctl;
mod evidence;
mod explain;
mod full_disk;
mod integrity;
mod limits;
// Live drift stream (issue 11).
mod live;
mod matching;
mod metrics;
mod mtls;
mod people;
mod permissions;
mod postgres;
// Several collector nodes on one PostgreSQL database (issue 10).
mod cluster;
mod retention;
mod service;
mod spool_chain;
mod state;
mod units;
