//! The driftwatch collector: it knows what was approved, sees what changed, and tells
//! security only about the changes no approval covers.
//!
//! - [`api`]: the HTTP API (axum) under `/api/v1`, plus `/healthz`, `/readyz`, `/metrics`.
//! - [`app`]: the operations behind it (ingest, windows, drift, tokens), over a [`store::Store`].
//! - [`store`]: persistence behind a trait; SQLite today.
//! - [`matcher`], [`windows`], [`drift`], [`chain`], [`coverage`]: the pure rules.
//! - [`alerts`], [`audit`]: the outbox and its sinks; the hash-chained audit trail.
//! - [`serve`], [`guard`]: the accept loop (timeouts, connection cap, client certificates)
//!   and the throttling of failed authentication.

pub mod alerts;
pub mod anchor;
pub mod api;
pub mod app;
pub mod audit;
pub mod backup;
pub mod chain;
pub mod clock;
pub mod coverage;
pub mod detail;
pub mod drift;
pub mod guard;
pub mod identity;
pub mod live;
pub mod matcher;
pub mod paging;
pub mod people;
pub mod reload;
pub mod reports;
pub mod retention;
pub mod serve;
pub mod spool_time;
pub mod store;
pub mod telemetry;
pub mod windows;
// The web console under /ui/ (issue 11).
pub mod web;
