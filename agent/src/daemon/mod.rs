//! The daemon (`driftwatch-agent run`): the same comparison as `check`, run
//! on every settled inotify batch, on scans and on polls of the state
//! sources, turned into drift events that are spooled and delivered to the
//! collector.
//!
//! - [`supervisor`]: lock, verified baseline, a generation of tasks, SIGHUP
//!   reload, clean stop, systemd readiness and watchdog.
//! - [`engine`]: the detector thread, the one funnel every observation goes
//!   through (watch batches, scans, polls, baseline-accept commands).
//! - [`detect`] (pure): the one decision for files and state subjects
//!   (report once per state, `restored`), and the reported state.
//! - [`events`]: decided events and their wire form once stamped.
//! - [`watch`]: inotify watches and the coalescer of notifications.
//! - [`spool`]: the durable, hash-chained, MAC'd outbox and the reported state.
//! - [`ship`]: delivery to the collector, deleted only when acknowledged.
//! - [`heartbeat`]: liveness, inventory, health, coverage, commands.
//! - [`enroll`]: exchanging an enrollment token for a credential.
//! - [`status`]: `status.json` and `driftwatch-agent status`.
//! - [`metrics`]: the agent's own Prometheus metrics (opt-in).
//!
//! Dependencies go one way: the engine uses the watch, the spool and
//! [`detect`]; the watch hands over its own [`watch::coalesce::Batch`], the
//! shipper and heartbeats send the engine messages.

pub mod detect;
pub mod engine;
pub mod enroll;
pub mod events;
pub mod heartbeat;
pub mod metrics;
pub mod ship;
pub mod spool;
pub mod status;
pub mod supervisor;
pub mod watch;

pub use supervisor::run;
