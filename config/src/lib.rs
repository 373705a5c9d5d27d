//! Typed configuration for driftwatch (see `agent`).

pub mod agent;
pub mod collector;
pub mod ctl;
mod diagnostics;
pub mod error;
mod span;

pub use agent::daemon::{
    CollectorSettings, DaemonSettings, HeartbeatSettings, SpoolSettings, WatchSettings,
};
pub use agent::{AgentConfig, Rule, ScanSettings, SnapshotSettings, SourceSettings};
pub use collector::{AlertSink, CollectorConfig, Transport};
pub use error::{ConfigError, ConfigErrors};
