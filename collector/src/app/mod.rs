//! The collector's operations, between the HTTP handlers and the store: authentication,
//! ingest with matching, heartbeats, change windows, drift resolution, the alert round.
//! Handlers stay thin (decode, call one of these, encode); every rule lives here or in the
//! pure modules it calls.
//!
//! - `identity.rs`: authentication, people, API and enrollment tokens, revocation.
//! - `agents.rs`: enrollment, ingest with matching, heartbeats, the enrolled hosts.
//! - `anchor.rs`: the anchored baseline (`crate::anchor`) fed by enrollments and heartbeats.
//! - `windows.rs`: change windows, their decisions and the index ingest matches against.
//! - `drift.rs`: drift items and their resolution.
//! - `evidence.rs`: audit checkpoints and verification, sealed documents, exports, bundles.
//! - `alerts.rs`: alerts, the dead-letter queue, the configured sinks.
//! - `health.rs`: the background round, readiness, the `/metrics` exposition.
//! - `retention.rs`: the retention round.
//! - `sessions.rs`: the web console's sign-in, sessions and sign-out (`crate::web`).
//! - `live.rs`: the live drift stream (`crate::live`), woken after each drift commit.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::AtomicI64;
use std::time::Duration;

use driftwatch_common::limits;
use driftwatch_config::collector::CollectorConfig;
use tokio::sync::RwLock;
use uuid::Uuid;

use crate::alerts::Sinks;
use crate::audit;
use crate::clock::{Clock, Millis};
use crate::identity::{Principal, Role};
use crate::matcher::WindowIndex;
use crate::store::{Store, StoreError};
use windows::build_index;

/// What went wrong, by what the caller can do about it (the API maps these to statuses).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    /// A field over its documented maximum (`driftwatch_common::limits`).
    #[error("{0}")]
    FieldTooLarge(String),
    /// Busy for now (a capacity reached): 503 with Retry-After.
    #[error("{0}")]
    Unavailable(String),
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for Error {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::NotFound(message) => Error::NotFound(message),
            StoreError::Conflict(message) => Error::Conflict(message),
            StoreError::TooLarge(message) => Error::BadRequest(message),
            other => Error::Store(other),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

mod agents;
mod alerts;
mod anchor;
#[cfg(test)]
mod boundary_tests;
mod drift;
mod evidence;
mod health;
mod identity;
mod listings;
mod live;
mod retention;
mod sessions;
mod windows;

pub use drift::{RESOLVE_ROLES, ResolveRequest};
pub use evidence::EXPORT_ROLES;
pub use identity::{IssuedToken, MAX_ENROLLMENT_TTL_SECS, MAX_ENROLLMENT_USES};
pub use live::{DriftStream, LiveItem, OPEN_STREAMS};
pub use sessions::{CONSOLE_ROLES, DashboardSettings, SignedIn};
pub use windows::Decision;

/// The configuration values the operations need, in the units they use.
#[derive(Clone, Debug)]
pub struct Settings {
    pub hold_ms: i64,
    pub burst_ms: i64,
    pub tolerance_ms: i64,
    pub silent_after_ms: i64,
    pub emergency_approval_ms: i64,
    pub max_body_bytes: usize,
    /// Most events in one evidence export or bundle (`crate::reports`).
    pub max_export_rows: u32,
    /// Timeouts, connection cap, failed-authentication throttling (`crate::serve`,
    /// `crate::guard`).
    pub limits: driftwatch_config::collector::Limits,
    /// Whether `/metrics` needs a token.
    pub metrics: driftwatch_config::collector::MetricsAccess,
}

impl From<&CollectorConfig> for Settings {
    fn from(config: &CollectorConfig) -> Self {
        let ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        Settings {
            hold_ms: ms(config.hold),
            burst_ms: ms(config.burst),
            tolerance_ms: ms(config.clock_skew_tolerance),
            silent_after_ms: ms(config.silent_after),
            emergency_approval_ms: ms(config.emergency_approval),
            max_body_bytes: usize::try_from(config.max_body_bytes).unwrap_or(usize::MAX),
            max_export_rows: u32::try_from(config.max_export_rows).unwrap_or(u32::MAX),
            limits: config.limits.clone(),
            metrics: config.metrics.clone(),
        }
    }
}

/// A listing's `limit` as the caller asked for it, checked by the operation after the
/// caller's role: `default` when unset; 0 or above `max` is refused (never clamped, so a
/// caller never mistakes a cut listing for the whole).
#[derive(Clone, Copy, Debug)]
pub struct Limit {
    pub asked: Option<u32>,
    pub default: u32,
    pub max: u32,
}

impl Limit {
    pub fn checked(self) -> Result<u32> {
        match self.asked {
            None => Ok(self.default),
            Some(n) if (1..=self.max).contains(&n) => Ok(n),
            Some(n) => Err(Error::BadRequest(format!(
                "limit must be between 1 and {}, got {n}",
                self.max
            ))),
        }
    }
}

pub struct App<S: Store> {
    /// Private: handlers, `main` and tests go through `App`'s operations; only `app/`'s
    /// files reach the store.
    store: S,
    pub settings: Settings,
    pub clock: Arc<dyn Clock>,
    sinks: Sinks,
    /// Approved windows. Ingest holds it for reading from matching to commit; a window
    /// decision holds it for writing while it rebuilds and re-evaluates, so no event is
    /// matched against a stale index and then missed by the re-evaluation.
    index: RwLock<Arc<WindowIndex>>,
    /// The store's windows version `index` was built at (`Store::windows_version`):
    /// written only under `index`'s write lock. Another node's window change moves the
    /// store's; ingest then rebuilds before it stores anything (`app/windows.rs`).
    index_version: AtomicI64,
    /// This process among the collector nodes on one database: who holds the leases of
    /// the background rounds (`app/health.rs`).
    node: Uuid,
    /// The audit signing key (`crate::audit::ops`); `None` in tests of the operations alone.
    audit_anchor: Option<crate::audit::ops::Anchor>,
    /// `[retention]` and when its round last ran (`app/retention.rs`); `None`: keep all.
    retention: Option<retention::Round>,
    /// `[dashboard]` and whether cookies are marked Secure (`app/sessions.rs`).
    dashboard: DashboardSettings,
    /// The live drift streams (`app/live.rs`).
    live: live::Live,
}

impl<S: Store> App<S> {
    pub async fn new(
        store: S,
        settings: Settings,
        clock: Arc<dyn Clock>,
        sinks: Sinks,
    ) -> Result<Self> {
        // Metrics recorded before the recorder exists are lost: install it first.
        crate::telemetry::prometheus();
        // The version first: a change between the two reads only rebuilds once more.
        let index_version = store.windows_version().await?;
        let index = build_index(&store).await?;
        let settings_limits = settings.limits.clone();
        let app = App {
            store,
            settings,
            clock,
            sinks,
            index: RwLock::new(Arc::new(index)),
            index_version: AtomicI64::new(index_version),
            node: Uuid::now_v7(),
            audit_anchor: None,
            retention: None,
            dashboard: DashboardSettings::default(),
            live: live::Live::new(&settings_limits),
        };
        app.adopt_legacy_tokens().await?;
        Ok(app)
    }

    /// Signs audit checkpoints with `key`, one every `interval` while the head moves (the
    /// store signs the entries themselves: `SqliteStore::set_audit_key`).
    pub fn with_audit_key(mut self, key: Arc<audit::AuditKey>, interval: Duration) -> Self {
        self.audit_anchor = Some(crate::audit::ops::Anchor::new(key, interval));
        self
    }

    pub fn now(&self) -> Millis {
        self.clock.now()
    }
}

/// Fails unless `actor` has one of `roles`.
fn require(actor: &Principal, roles: &[Role], doing: &str) -> Result<()> {
    if roles.contains(&actor.role) {
        return Ok(());
    }
    let names: Vec<&str> = roles.iter().map(|r| r.name()).collect();
    Err(Error::Forbidden(format!(
        "{doing} needs the {} role; {} has role {}",
        names.join(" or "),
        actor.name,
        actor.role
    )))
}

fn agent_host(agent: &Principal, doing: &str) -> Result<Uuid> {
    match (agent.role, agent.host_id) {
        (Role::Agent, Some(host_id)) => Ok(host_id),
        _ => Err(Error::Forbidden(format!(
            "only agent credentials {doing}; {} has role {}",
            agent.name, agent.role
        ))),
    }
}

/// Refuses a request holding any field over its maximum, naming each.
fn refuse_oversized(found: Vec<limits::TooLarge>, outcome: &str) -> Result<()> {
    if found.is_empty() {
        return Ok(());
    }
    let shown: Vec<String> = found.iter().take(10).map(ToString::to_string).collect();
    let more = match found.len() {
        n if n > 10 => format!(" (and {} more)", n - 10),
        _ => String::new(),
    };
    Err(Error::FieldTooLarge(format!(
        "{}{more}; {outcome}",
        shown.join("; ")
    )))
}

fn check_name(field: &str, value: &str) -> Result<()> {
    if value.trim().is_empty() || value.chars().count() > 128 || value.chars().any(char::is_control)
    {
        return Err(Error::BadRequest(format!(
            "{field} must be 1 to 128 characters without control characters"
        )));
    }
    Ok(())
}

/// Labels of a host as `key=value` pairs, for people.
pub fn labels_text(labels: &BTreeMap<String, String>) -> String {
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}
