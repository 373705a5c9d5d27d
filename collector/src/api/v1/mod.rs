//! Handlers under `/api/v1`: decode, call one `App` operation, encode.

pub mod agents;
pub mod audit;
pub mod drift;
pub mod fleet;
pub mod reports;
pub mod tokens;
pub mod windows;
