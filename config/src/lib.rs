//! Typed configuration for driftwatch (see `agent`).

pub mod agent;
pub mod error;
mod span;

pub use agent::{AgentConfig, Rule, ScanSettings, SnapshotSettings};
pub use error::{ConfigError, ConfigErrors};
