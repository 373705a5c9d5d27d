//! The daemon (`driftwatch-agent run`).
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
