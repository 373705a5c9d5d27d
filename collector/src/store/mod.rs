//! Persistence behind a trait: SQLite (`sqlite/`, one node) and PostgreSQL (`postgres/`,
//! fleets that outgrow one node). Each method is one transaction: it commits entirely or changes nothing.
//! Methods that record a human action take the [`NewAudit`] entry and append it in the same
//! transaction (I5). No backend type (rusqlite, sqlx) appears in this interface.
//!
//! A backend holds no rule and no word a person reads: those are the pure modules'
//! (`drift.rs`, `chain.rs`, `alerts/`), so a second backend copies none. Where a rule needs
//! what only the transaction sees, the backend calls the pure function on the rows it read
//! and writes what it decided (`drift::step`, `drift::hold_change`, `drift::after_covered`,
//! `drift::check_resolvable`, `chain::alert_body`). The alerts of the background rounds are
//! worded through a narrow typed callback, [`AlertWords`] (`alerts::WORDS`), rather than
//! split into a read call and a write call: finding what is due, raising its alert and
//! marking it alerted stay one transaction, so nothing can change in between (a concurrent
//! ingest, later a second node). Nothing in `store/` imports `alerts/`.

pub mod conformance;
pub mod conformance_anchor;
pub mod conformance_chain;
pub mod conformance_detail;
pub mod conformance_evidence;
pub mod conformance_inbox;
pub mod conformance_live;
pub mod conformance_pages;
pub mod conformance_people;
pub mod conformance_retention;
pub mod conformance_sessions;
pub mod migrate;
pub mod postgres;
pub mod sqlite;

use std::collections::BTreeMap;
use std::future::Future;

use driftwatch_common::api::v1::{
    AgentCommand, AgentHealth, CommandOutcome, CommandResult, DriftEvent, Inventory, SubjectState,
};
use driftwatch_common::chain_key::ChainKey;
use driftwatch_common::hash::ContentHash;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::anchor::{AnchorState, Expected};
use crate::audit::{AuditEntry, AuditHead, Checkpoint, NewAudit};
use crate::chain::ChainProblem;
use crate::clock::Millis;
use crate::drift::{DriftStatus, ResolutionCategory};
use crate::identity::Role;
use crate::matcher::Outcome;
use crate::people::Person;
use crate::spool_time::{SpoolBounds, SpoolMark, SpoolTime};
use crate::windows::{Window, WindowStatus};

pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0}")]
    NotFound(String),
    /// The record is not in the state the change expects (changed concurrently, or a rule).
    #[error("{0}")]
    Conflict(String),
    /// The answer would exceed a configured bound (nothing was written).
    #[error("{0}")]
    TooLarge(String),
    #[error("store failure: {0}")]
    Other(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl StoreError {
    pub fn other(err: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        StoreError::Other(err.into())
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// An API token or agent credential (only its digest is kept).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenRecord {
    pub id: Uuid,
    pub name: String,
    pub role: Role,
    /// For agent credentials: the host they report for.
    pub host_id: Option<Uuid>,
    pub digest: [u8; 32],
    pub created_at: Millis,
    pub created_by: String,
    pub revoked_at: Option<Millis>,
    /// The person a person's token belongs to (none for agent credentials, and for
    /// tokens issued before people existed until the collector's next start adopts them).
    pub person_id: Option<Uuid>,
    /// That person's name (read from the person record; not written).
    pub person: Option<String>,
    /// The token whose holder issued this one (none: offline, or by enrollment).
    pub created_by_token: Option<Uuid>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnrollmentTokenRecord {
    pub id: Uuid,
    pub digest: [u8; 32],
    pub created_by: String,
    pub created_at: Millis,
    pub expires_at: Millis,
    pub uses_left: u32,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Host {
    pub id: Uuid,
    pub hostname: String,
    pub labels: BTreeMap<String, String>,
    pub agent_version: String,
    pub enrolled_at: Millis,
    pub last_seen_at: Option<Millis>,
    /// Agent clock minus collector clock at the last heartbeat.
    pub skew_ms: i64,
    pub inventory: Option<Inventory>,
    pub health: Option<AgentHealth>,
    /// The last sequence number the agent said it emitted.
    pub reported_seq: u64,
    /// The last sequence number stored.
    pub stored_seq: u64,
    /// The host was enrolled with a chain key: its events are authenticated (false for
    /// hosts enrolled before chain keys existed: "chain unauthenticated").
    #[serde(default)]
    pub chain_keyed: bool,
}

/// An event and the matcher's decision on it.
#[derive(Clone, Debug)]
pub struct Decided {
    pub event: DriftEvent,
    pub outcome: Outcome,
    /// Agent time corrected by the host's measured skew, moved inside the spool bounds.
    pub event_time: Millis,
    /// When the collector can prove it was spooled, and whether the agent's claim agrees.
    pub spool: SpoolTime,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IngestOutcome {
    pub accepted: u32,
    pub duplicates: u32,
    pub last_seq: u64,
    pub chain_problems: Vec<ChainProblem>,
    /// Events refused as forgeries (not stored; each is among `chain_problems`).
    pub rejected: u32,
    /// Accepted events whose `observed_at` lies outside their spool bounds.
    pub false_claims: u32,
}

/// A stored event with what the collector decided about it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StoredEvent {
    pub event: DriftEvent,
    pub received_at: Millis,
    pub event_time: Millis,
    pub outcome: Outcome,
    /// `ok`, `gap`, `fork`, `late`, `conflict`, `splice`; `unauthenticated` for an event
    /// that extends the chain of a host without a chain key.
    pub chain: String,
    pub drift_id: Option<Uuid>,
    /// Spool bounds on the collector's clock and the verdict on the agent's claim (events
    /// stored before bounds existed: from the host's enrollment to their arrival).
    #[serde(default)]
    pub spool: SpoolTime,
    /// The collector's seal over its decision (`audit::decisions`), checked by evidence.
    #[serde(skip)]
    pub decision_mac: Option<[u8; 32]>,
}

/// An event waiting for review that a newly approved window may cover.
#[derive(Clone, Debug)]
pub struct ReviewCandidate {
    pub event: DriftEvent,
    pub event_time: Millis,
    pub host: Host,
    /// When it can have been spooled: what a window must cover.
    pub spooled: SpoolBounds,
}

#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ReviewOutcome {
    pub events: u32,
    pub drift_authorized: u32,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resolution {
    pub category: ResolutionCategory,
    pub comment: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket: Option<String>,
    pub by: String,
    pub at: Millis,
}

/// Untraced (or otherwise changed) state of one subject on one host.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DriftItem {
    pub id: Uuid,
    pub host_id: Uuid,
    pub hostname: String,
    pub subject: String,
    pub status: DriftStatus,
    /// Why it needs review: one of `matcher::REVIEW_OUTCOMES`, or `drift::RESTORE_MISMATCH`
    /// (none when authorized).
    pub reason: Option<String>,
    pub window_id: Option<Uuid>,
    pub opened_at: Millis,
    /// When it last started needing review (the hold counts from here).
    pub untraced_since: Option<Millis>,
    pub events: u32,
    pub last_event_id: Uuid,
    pub last_event_at: Millis,
    pub alerted_at: Option<Millis>,
    pub resolution: Option<Resolution>,
    pub updated_at: Millis,
}

/// One change of a drift item's status, as recorded with it (`drift_history`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusChange {
    pub at: Millis,
    /// None: the item was opened.
    pub from: Option<DriftStatus>,
    pub to: DriftStatus,
    /// The person, or `collector` for the collector's own steps.
    pub by: String,
    /// Why, in the recorder's words (a resolution's category, "covered after the fact by
    /// window …", "close-out of window …").
    pub reason: String,
}

/// A drift item with what its detail shows, read in one transaction.
#[derive(Clone, Debug, PartialEq)]
pub struct DriftRecord {
    pub item: DriftItem,
    /// Every event, oldest first.
    pub events: Vec<StoredEvent>,
    /// Its status changes, oldest first.
    pub history: Vec<StatusChange>,
    /// The other drift items of the same host and subject, newest first, at most the
    /// limit asked for.
    pub timeline: Vec<DriftItem>,
}

#[derive(Clone, Debug, Default)]
pub struct DriftFilter {
    pub status: Option<DriftStatus>,
    pub host_id: Option<Uuid>,
    pub window_id: Option<Uuid>,
    pub limit: Option<u32>,
}

// The untraced inbox's read (issue 11, the console measured).

/// Which open drift the inbox reads: filtered in the store, so that a filter finds the
/// matching items among all open drift, not only among the newest read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OpenDriftQuery {
    /// Host names containing this text (case as given); empty: any.
    pub host: String,
    /// Subjects containing this text; empty: any.
    pub subject: String,
    /// Review reasons kept (an item without one counts as `untraced`); `None`: any,
    /// an empty list: none.
    pub reasons: Option<Vec<String>>,
    /// Most items returned, newest first (by when opened).
    pub limit: u32,
}

// Live drift stream (issue 11, `crate::live`).

/// One change of a drift item's status (a row of its history), numbered by a sequence
/// that only grows and never hands a number out twice: the live stream's durable cursor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DriftChange {
    pub seq: i64,
    pub drift_id: Uuid,
    pub host_id: Uuid,
    pub hostname: String,
    pub subject: String,
    pub at: Millis,
    /// `None`: the item was opened by this change.
    pub from: Option<DriftStatus>,
    pub to: DriftStatus,
    pub by: String,
    /// The history line's reason.
    pub reason: String,
    /// The item's current review reason (`DriftItem::reason`).
    pub review_reason: Option<String>,
}

/// [`Store::drift_changes`]: the changes asked for and the highest number handed out yet.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct DriftChanges {
    pub changes: Vec<DriftChange>,
    pub head: i64,
}

#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct CloseOutcome {
    pub accepted: u32,
    pub commands: u32,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    pub id: Uuid,
    /// `untraced_drift`, `chain`, `agent_silent`, `agent_health`, `emergency_unapproved`,
    /// `baseline_anchor`.
    pub kind: String,
    pub host_id: Option<Uuid>,
    pub created_at: Millis,
    pub body: serde_json::Value,
    /// When every configured sink had it.
    pub delivered_at: Option<Millis>,
    /// Attempts over all sinks.
    pub attempts: u32,
    /// The last error of any sink.
    pub last_error: Option<String>,
    /// Per sink that has tried it (listings only; empty in `due_deliveries`).
    #[serde(default)]
    pub deliveries: Vec<SinkDelivery>,
}

/// One sink's delivery of one alert.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SinkDelivery {
    pub sink: String,
    pub state: DeliveryState,
    pub attempts: u32,
    pub last_error: Option<String>,
    pub last_attempt_at: Option<Millis>,
    /// When a failing delivery is tried again.
    pub next_attempt_at: Option<Millis>,
    pub delivered_at: Option<Millis>,
    /// Set when the receiver refused the alert for good (until an admin retries it).
    #[serde(default)]
    pub dead_letter: Option<DeadLetter>,
    /// Set when an admin dropped the dead-lettered delivery.
    #[serde(default)]
    pub dropped: Option<Dropped>,
}

/// A receiver's answer that will never change (a 4xx other than 408 and 429): the
/// delivery stops and waits for an admin.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    pub at: Millis,
    /// The receiver's HTTP status, when it has one.
    pub status: Option<u16>,
    /// The start of the receiver's answer (bounded by the sink).
    pub response: String,
}

/// An admin gave up on a dead-lettered delivery: the sink no longer owes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dropped {
    pub at: Millis,
    pub by: String,
    pub reason: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    /// Not tried yet.
    Pending,
    Delivered,
    /// Tried and failed; retried with backoff.
    Failing,
    /// Refused for good by the receiver; not tried again unless an admin retries it.
    DeadLetter,
    /// A dead letter an admin dropped (with a reason); the sink owes it no more.
    Dropped,
}

/// The outcome of one delivery attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeliveryAttempt {
    pub alert_id: Uuid,
    pub sink: String,
    pub at: Millis,
    /// None: delivered.
    pub error: Option<String>,
    /// For a failure: when to try again.
    pub next_attempt_at: Millis,
    /// Every configured sink: the alert is done when all of them delivered it.
    pub sinks: Vec<String>,
    /// A permanent refusal: the delivery is dead-lettered (`error` holds the message).
    pub dead_letter: Option<DeadLetter>,
}

/// What one sink still owes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SinkBacklog {
    pub sink: String,
    /// Alerts this sink has not delivered (failing ones included).
    pub undelivered: u64,
    /// Of those, the ones whose last attempt failed.
    pub failing: u64,
    /// Of those, the dead letters (refused for good, waiting for an admin).
    pub dead_letters: u64,
}

/// Figures for metrics and readiness.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    pub hosts: u64,
    pub silent_hosts: u64,
    pub open_drift: u64,
    pub undelivered_alerts: u64,
    /// Since when the oldest open untraced drift item waits for a person.
    #[serde(default)]
    pub oldest_untraced_since: Option<Millis>,
}

/// What a heartbeat changes on its host.
#[derive(Clone, Debug)]
pub struct HeartbeatRecord {
    pub host_id: Uuid,
    pub received_at: Millis,
    pub skew_ms: i64,
    pub inventory: Inventory,
    pub health: AgentHealth,
    pub reported_seq: u64,
    pub results: Vec<CommandResult>,
}

/// Alerts decided by the caller, recorded with the change that raised them.
#[derive(Clone, Debug, PartialEq)]
pub struct NewAlert {
    pub kind: String,
    pub host_id: Option<Uuid>,
    pub body: serde_json::Value,
}

/// A burst of untraced drift on one host the hold released: what its alert is about.
#[derive(Clone, Debug, PartialEq)]
pub struct UntracedBurst {
    pub host_id: Uuid,
    pub hostname: String,
    /// The oldest due item and every one first seen within the burst after it.
    pub items: Vec<DriftItem>,
    /// The ticket of each window an item names (`None`: the window is not stored).
    pub tickets: BTreeMap<Uuid, Option<String>>,
    /// How long the oldest item was held.
    pub held_ms: i64,
}

/// A host not heard from for `silent_after_ms`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SilentHost {
    pub host_id: Uuid,
    pub hostname: String,
    pub last_seen_at: Option<Millis>,
    pub silent_after_ms: i64,
}

/// An emergency window still requested `deadline_ms` after it was recorded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LateEmergency {
    pub window_id: Uuid,
    pub ticket: String,
    pub requester: String,
    pub recorded_at: Millis,
    pub deadline_ms: i64,
}

/// The words of the alerts the background rounds raise, given by the rules
/// (`alerts::WORDS`). The store calls them inside the transaction that finds what is due
/// and marks it alerted, so that finding and raising stay one step (a second node or a
/// concurrent ingest cannot slip between them) while the store holds no wording.
#[derive(Clone, Copy, Debug)]
pub struct AlertWords {
    pub untraced: fn(&UntracedBurst) -> NewAlert,
    pub silent: fn(&SilentHost) -> NewAlert,
    pub emergency: fn(&LateEmergency) -> NewAlert,
}

/// The drift of a period, for an evidence export: `from` inclusive, `to` exclusive, on the
/// event's corrected time; optionally of the hosts with one name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExportQuery {
    pub from: Millis,
    pub to: Millis,
    pub hostname: Option<String>,
    /// More events than this: [`StoreError::TooLarge`], nothing written.
    pub max_rows: u32,
}

/// A stored event and the name of its host.
#[derive(Clone, Debug, PartialEq)]
pub struct HostEvent {
    pub hostname: String,
    pub stored: StoredEvent,
}

/// The events of a period with the drift items and windows they name.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ExportRecords {
    /// By corrected event time, then id.
    pub events: Vec<HostEvent>,
    pub drift: BTreeMap<Uuid, DriftItem>,
    pub windows: BTreeMap<Uuid, Window>,
}

/// A baseline-accept command queued by a close-out, and what the agent answered.
#[derive(Clone, Debug, PartialEq)]
pub struct CloseOutCommand {
    pub id: Uuid,
    pub host_id: Uuid,
    pub hostname: String,
    pub drift_id: Uuid,
    pub subject: String,
    /// The reviewed state the agent takes as baseline (`None`: the subject is gone).
    pub state: Option<SubjectState>,
    pub created_at: Millis,
    /// `pending`, `applied`, `mismatch` or `failed`.
    pub status: String,
    pub result: Option<CommandOutcome>,
    pub result_at: Option<Millis>,
}

/// Everything recorded against one window: the events it authorized or flagged (in window,
/// unexpected state), its drift items and its close-out commands.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WindowRecords {
    pub events: Vec<HostEvent>,
    pub drift: Vec<DriftItem>,
    pub commands: Vec<CloseOutCommand>,
}

/// What the store knows about a host's anchored baseline (`crate::anchor`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AnchorView {
    pub state: AnchorState,
    /// Of the roots asked about, those this host was expected to run on at some time.
    pub known_roots: Vec<ContentHash>,
    /// Of the commands asked about, those still pending for this host.
    pub pending_commands: Vec<Uuid>,
}

/// A judgement to store (`crate::anchor::Judgement`), made on the state `judged`.
#[derive(Clone, Debug, PartialEq)]
pub struct AnchorChange {
    pub host_id: Uuid,
    pub judged: AnchorState,
    pub state: AnchorState,
    /// Roots newly expected, appended to the host's root history.
    pub moved: Vec<Expected>,
    pub alert: Option<NewAlert>,
    pub at: Millis,
}

// --- Web console sessions (issue 11, `crate::web`) ---

/// A signed-in web console session. Only the SHA-256 of its random id is kept, so a copy of
/// the database cannot be replayed as a cookie; the session acts through its token, read
/// again at each request (a revoked token ends its sessions' use).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebSession {
    pub digest: [u8; 32],
    pub token_id: Uuid,
    pub created_at: Millis,
    /// The absolute end (`[dashboard] session_ttl_secs` after sign-in).
    pub expires_at: Millis,
    /// Last request through it (the idle timeout counts from here).
    pub last_used_at: Millis,
    /// Signed out or ended for expiry.
    pub ended_at: Option<Millis>,
}

pub trait Store: Clone + Send + Sync + 'static {
    fn ping(&self) -> impl Future<Output = Result<()>> + Send;

    // Identity.
    fn insert_token(
        &self,
        token: TokenRecord,
        audit: NewAudit,
    ) -> impl Future<Output = Result<()>> + Send;
    fn token(&self, id: Uuid) -> impl Future<Output = Result<TokenRecord>> + Send;
    fn tokens(&self) -> impl Future<Output = Result<Vec<TokenRecord>>> + Send;
    fn revoke_token(
        &self,
        id: Uuid,
        at: Millis,
        audit: NewAudit,
    ) -> impl Future<Output = Result<TokenRecord>> + Send;
    /// People, by name.
    fn people(&self) -> impl Future<Output = Result<Vec<Person>>> + Send;
    /// Records a person (`Conflict` when the name or its skeleton is taken).
    fn insert_person(
        &self,
        person: Person,
        audit: NewAudit,
    ) -> impl Future<Output = Result<()>> + Send;
    /// Issues a person's token, first recording `new_person` (with its audit entry) when
    /// given; one transaction.
    fn insert_person_token(
        &self,
        new_person: Option<(Person, NewAudit)>,
        token: TokenRecord,
        audit: NewAudit,
    ) -> impl Future<Output = Result<()>> + Send;
    /// The token `id`, then the token that issued it, and so on back to one issued offline.
    fn token_lineage(&self, id: Uuid) -> impl Future<Output = Result<Vec<TokenRecord>>> + Send;
    /// Gives tokens issued before people existed their person: records `new_people`, sets
    /// each `(token, person)` of `owners` and appends `audits`; one transaction.
    fn adopt_tokens(
        &self,
        new_people: Vec<Person>,
        owners: Vec<(Uuid, Uuid)>,
        audits: Vec<NewAudit>,
    ) -> impl Future<Output = Result<()>> + Send;
    fn insert_enrollment_token(
        &self,
        token: EnrollmentTokenRecord,
        audit: NewAudit,
    ) -> impl Future<Output = Result<()>> + Send;
    /// Spends one use of the enrollment token `token_id` (its digest must be `digest`,
    /// unexpired at `host.enrolled_at`) and records the host with its credential and the
    /// chain key of its sequence number 1 (`None`: its chain stays unauthenticated).
    fn enroll(
        &self,
        token_id: Uuid,
        digest: [u8; 32],
        host: Host,
        credential: TokenRecord,
        chain_key: Option<ChainKey>,
        audit: NewAudit,
    ) -> impl Future<Output = Result<()>> + Send;

    // Hosts and their reports.
    fn host(&self, id: Uuid) -> impl Future<Output = Result<Host>> + Send;
    fn hosts(&self) -> impl Future<Output = Result<Vec<Host>>> + Send;
    /// Stores events of one host, idempotently (a known id with the same content is a
    /// duplicate), checks the hash chain and moves the drift items. All or nothing.
    fn ingest(
        &self,
        host_id: Uuid,
        events: Vec<Decided>,
        received_at: Millis,
    ) -> impl Future<Output = Result<IngestOutcome>> + Send;
    fn events(&self, drift_id: Uuid) -> impl Future<Output = Result<Vec<StoredEvent>>> + Send;
    /// The host's heartbeat marks (arrival, reported seq) still kept to bound its events.
    fn spool_marks(&self, host_id: Uuid) -> impl Future<Output = Result<Vec<SpoolMark>>> + Send;
    /// Records `alert` (a false clock claim) unless one of its kind was raised for its host
    /// less than `burst_ms` before `at`: one per host and burst. Returns whether it was.
    fn raise_clock_alert(
        &self,
        alert: NewAlert,
        at: Millis,
        burst_ms: i64,
    ) -> impl Future<Output = Result<bool>> + Send;
    /// Records a heartbeat (and its spool mark, pruning those that can no longer bound an
    /// event: `spool_time::retained`) and returns the host's pending commands.
    fn heartbeat(
        &self,
        record: HeartbeatRecord,
        alerts: Vec<NewAlert>,
    ) -> impl Future<Output = Result<Vec<AgentCommand>>> + Send;

    /// The host's anchored baseline; which of `roots` it was expected to run on before;
    /// which of `commands` are its pending commands.
    fn anchor(
        &self,
        host_id: Uuid,
        roots: Vec<ContentHash>,
        commands: Vec<Uuid>,
    ) -> impl Future<Output = Result<AnchorView>> + Send;
    /// Stores a judgement with its alert, if the stored state is still `change.judged`
    /// (else `Conflict`, nothing written) and no root in `change.moved` was recorded from
    /// the same source before (then `Ok(false)`, nothing written: a retry).
    fn save_anchor(&self, change: AnchorChange) -> impl Future<Output = Result<bool>> + Send;

    // Change windows.
    fn insert_window(
        &self,
        window: Window,
        audit: NewAudit,
    ) -> impl Future<Output = Result<()>> + Send;
    fn window(&self, id: Uuid) -> impl Future<Output = Result<Window>> + Send;
    fn windows(
        &self,
        status: Option<WindowStatus>,
    ) -> impl Future<Output = Result<Vec<Window>>> + Send;
    /// Saves a decision on a window that must still be in status `from` (else `Conflict`).
    fn update_window(
        &self,
        window: Window,
        from: WindowStatus,
        audit: NewAudit,
    ) -> impl Future<Output = Result<()>> + Send;
    /// Closes an approved window: its authorized drift becomes accepted and each host gets
    /// a baseline-accept command naming the reviewed state.
    fn close_window(
        &self,
        window: Window,
        audit: NewAudit,
    ) -> impl Future<Output = Result<CloseOutcome>> + Send;
    /// Events still needing review whose spool bounds (and so corrected time) lie in
    /// `[from, to]`.
    fn review_candidates(
        &self,
        from: Millis,
        to: Millis,
    ) -> impl Future<Output = Result<Vec<ReviewCandidate>>> + Send;
    /// Re-decides events after `window_id` was approved; open drift none of whose events
    /// needs review any longer becomes authorized, with a history record.
    fn apply_review(
        &self,
        window_id: Uuid,
        decisions: Vec<(Uuid, Outcome)>,
        at: Millis,
        by: String,
    ) -> impl Future<Output = Result<ReviewOutcome>> + Send;

    // Drift.
    fn drift_items(
        &self,
        filter: DriftFilter,
    ) -> impl Future<Output = Result<Vec<DriftItem>>> + Send;
    fn drift_item(&self, id: Uuid) -> impl Future<Output = Result<DriftItem>> + Send;
    /// A drift item, its events, its history and at most `timeline_limit` other items of
    /// its host and subject (newest first), in one transaction (issue 11, drift detail).
    fn drift_record(
        &self,
        id: Uuid,
        timeline_limit: u32,
    ) -> impl Future<Output = Result<DriftRecord>> + Send;
    /// Resolves open drift (anything else is a `Conflict`).
    fn resolve_drift(
        &self,
        id: Uuid,
        resolution: Resolution,
        audit: NewAudit,
    ) -> impl Future<Output = Result<DriftItem>> + Send;

    // Alerts.
    /// Turns open drift held for `hold_ms` into alerts, one per host and burst.
    fn raise_due_alerts(
        &self,
        now: Millis,
        hold_ms: i64,
        burst_ms: i64,
        words: AlertWords,
    ) -> impl Future<Output = Result<u32>> + Send;
    /// One alert per host that went silent (no heartbeat for `silent_after_ms`).
    fn raise_silent_alerts(
        &self,
        now: Millis,
        silent_after_ms: i64,
        words: AlertWords,
    ) -> impl Future<Output = Result<u32>> + Send;
    /// One alert per emergency window still requested `deadline_ms` after it was recorded.
    fn raise_emergency_alerts(
        &self,
        now: Millis,
        deadline_ms: i64,
        words: AlertWords,
    ) -> impl Future<Output = Result<u32>> + Send;
    /// Alerts not yet delivered to every sink, oldest first.
    fn undelivered_alerts(&self, limit: u32) -> impl Future<Output = Result<Vec<Alert>>> + Send;
    /// Alerts `sink` has not delivered and may try at `now` (never tried, or its backoff
    /// has passed), oldest first.
    fn due_deliveries(
        &self,
        sink: String,
        now: Millis,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<Alert>>> + Send;
    /// Records one sink's attempt; the alert counts as delivered once every sink in
    /// `attempt.sinks` has delivered it. Returns whether that happened now.
    fn record_delivery(
        &self,
        attempt: DeliveryAttempt,
    ) -> impl Future<Output = Result<bool>> + Send;
    /// Marks delivered the alerts every sink in `sinks` has delivered (after a sink was
    /// removed from the configuration; with no sinks, every alert). Returns how many.
    fn settle_alerts(
        &self,
        sinks: Vec<String>,
        at: Millis,
    ) -> impl Future<Output = Result<u32>> + Send;
    /// Per sink, what it has not delivered yet.
    fn delivery_backlog(
        &self,
        sinks: Vec<String>,
    ) -> impl Future<Output = Result<Vec<SinkBacklog>>> + Send;
    fn alerts(&self, limit: u32) -> impl Future<Output = Result<Vec<Alert>>> + Send;
    /// Alerts with a dead-lettered delivery no admin has dropped, oldest first, with their
    /// deliveries.
    fn dead_letters(&self, limit: u32) -> impl Future<Output = Result<Vec<Alert>>> + Send;
    /// Makes a dead-lettered delivery due again at `at` and appends `audit`, in one
    /// transaction (`NotFound` without that delivery, `Conflict` unless it is dead-lettered).
    fn retry_dead_letter(
        &self,
        alert_id: Uuid,
        sink: String,
        at: Millis,
        audit: NewAudit,
    ) -> impl Future<Output = Result<Alert>> + Send;
    /// Makes every dead letter of `sink` due again at `at` and appends `audit` (which the
    /// caller words with the count it expects), in one transaction; returns how many.
    fn retry_dead_letters(
        &self,
        sink: String,
        at: Millis,
        audit: NewAudit,
    ) -> impl Future<Output = Result<u32>> + Send;
    /// Drops a dead-lettered delivery and appends `audit`, in one transaction; the alert
    /// counts as delivered once every sink in `sinks` has delivered or dropped it.
    fn drop_dead_letter(
        &self,
        alert_id: Uuid,
        sink: String,
        dropped: Dropped,
        sinks: Vec<String>,
        audit: NewAudit,
    ) -> impl Future<Output = Result<Alert>> + Send;

    /// Records a configuration value under `key`; when it differs from the last one
    /// recorded, appends `audit` in the same transaction. Returns whether it changed.
    fn note_config(
        &self,
        key: String,
        value: String,
        audit: NewAudit,
    ) -> impl Future<Output = Result<bool>> + Send;

    // Audit trail.
    fn audit_log(
        &self,
    ) -> impl Future<Output = Result<(Vec<AuditEntry>, Option<AuditHead>)>> + Send;
    /// The recorded head alone (cheap: for checkpoints).
    fn audit_head(&self) -> impl Future<Output = Result<Option<AuditHead>>> + Send;
    /// Keeps a signed checkpoint and queues it as an alert (kind `audit_checkpoint`) for
    /// every sink, in one transaction.
    fn insert_checkpoint(
        &self,
        checkpoint: Checkpoint,
        at: Millis,
    ) -> impl Future<Output = Result<()>> + Send;
    /// Every checkpoint kept, oldest first.
    fn audit_checkpoints(&self) -> impl Future<Output = Result<Vec<Checkpoint>>> + Send;
    /// Queues an alert raised outside ingest and heartbeats (an altered audit log).
    fn insert_alert(&self, alert: NewAlert, at: Millis) -> impl Future<Output = Result<()>> + Send;

    fn stats(
        &self,
        now: Millis,
        silent_after_ms: i64,
    ) -> impl Future<Output = Result<Stats>> + Send;

    // Evidence for auditors (`crate::reports`). Both record the export in the audit log
    // in the same transaction, and both refuse more than `max_rows` events (TooLarge).
    fn export_records(
        &self,
        query: ExportQuery,
        audit: NewAudit,
    ) -> impl Future<Output = Result<ExportRecords>> + Send;
    fn window_records(
        &self,
        window_id: Uuid,
        max_rows: u32,
        audit: NewAudit,
    ) -> impl Future<Output = Result<WindowRecords>> + Send;

    /// Retention (`crate::retention`): removes what `plan` names, at most
    /// `retention::PRUNE_BATCH` drift items and as many alerts, and, when a row went,
    /// appends the `retention.pruned` entry with the counts, in one transaction. Never
    /// touches the audit log.
    fn prune(
        &self,
        plan: crate::retention::PrunePlan,
        at: Millis,
    ) -> impl Future<Output = Result<crate::retention::PruneCounts>> + Send;

    // --- Web console sessions (issue 11) ---

    /// Records a new session and its sign-in audit entry.
    fn insert_session(
        &self,
        session: WebSession,
        audit: NewAudit,
    ) -> impl Future<Output = Result<()>> + Send;
    /// The session with this digest as it was, and its use at `now` recorded
    /// (`last_used_at`) when it has not ended; `None` when there is none.
    fn use_session(
        &self,
        digest: [u8; 32],
        now: Millis,
    ) -> impl Future<Output = Result<Option<WebSession>>> + Send;
    /// Ends a session (sign-out, with its audit entry; expiry, without). Ending one that has
    /// already ended changes nothing and appends no entry.
    fn end_session(
        &self,
        digest: [u8; 32],
        at: Millis,
        audit: Option<NewAudit>,
    ) -> impl Future<Output = Result<bool>> + Send;
    /// Deletes sessions that ended, expired before `expired_before` or were last used
    /// before `idle_before`; how many.
    fn prune_sessions(
        &self,
        expired_before: Millis,
        idle_before: Millis,
    ) -> impl Future<Output = Result<u32>> + Send;
    /// Stored events by id (those not found are left out), for screens that show the
    /// latest state of many drift items at once.
    fn events_by_id(&self, ids: Vec<Uuid>)
    -> impl Future<Output = Result<Vec<StoredEvent>>> + Send;

    // Live drift stream (issue 11).
    /// The drift changes numbered above `after`, oldest first, at most `limit` (0: none),
    /// and the highest number handed out so far, in one read. Numbers only grow, in commit
    /// order, and survive retention and restarts (`crate::live`).
    fn drift_changes(
        &self,
        after: i64,
        limit: u32,
    ) -> impl Future<Output = Result<DriftChanges>> + Send;

    // The untraced inbox (issue 11, the console measured).
    /// Open drift items matching `query`, newest first, at most `query.limit`.
    fn open_drift(
        &self,
        query: OpenDriftQuery,
    ) -> impl Future<Output = Result<Vec<DriftItem>>> + Send;

    // Listings with a cursor (issue 10): keyset pages, never OFFSET. Each reads at most
    // the limit asked for (the caller asks one more to learn whether there is more).
    /// Drift in listing order (newest opened first) after `(opened_at, id)`, at most
    /// `filter.limit`.
    fn drift_page(
        &self,
        filter: DriftFilter,
        after: Option<(Millis, Uuid)>,
    ) -> impl Future<Output = Result<Vec<DriftItem>>> + Send;
    /// Hosts in listing order (hostname, then id) after `(hostname, id)`.
    fn hosts_page(
        &self,
        after: Option<(String, Uuid)>,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<Host>>> + Send;
    /// Windows in listing order (start, then id) after `(start_at, id)`.
    fn windows_page(
        &self,
        status: Option<WindowStatus>,
        after: Option<(Millis, Uuid)>,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<Window>>> + Send;
    /// Audit entries after `after` (a seq), in order.
    fn audit_page(
        &self,
        after: u64,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<AuditEntry>>> + Send;

    // Several collector nodes on one database (issue 10). A store only one node writes
    // (SQLite) answers as if no other node existed.
    /// The version of the stored windows: it moves in the transaction of every window
    /// change, so a matcher index built at another version is stale.
    fn windows_version(&self) -> impl Future<Output = Result<i64>> + Send;
    /// [`Store::ingest`] if the windows are still at `windows_version`, checked in the
    /// batch's transaction (a window change waits for it, or it waits for the change);
    /// otherwise nothing is written and the events come back to be matched again.
    fn ingest_at(
        &self,
        host_id: Uuid,
        events: Vec<Decided>,
        received_at: Millis,
        windows_version: i64,
    ) -> impl Future<Output = Result<Ingested>> + Send;
    /// Takes or renews the lease `name` for `holder` for `ttl_ms` (on the database's
    /// clock): true when `holder` holds it now (it was free, expired or already its own).
    fn take_lease(
        &self,
        name: String,
        holder: Uuid,
        ttl_ms: i64,
    ) -> impl Future<Output = Result<bool>> + Send;
    /// Claims `sink`'s delivery of `alert_id` for `holder` until `until`: true when the
    /// delivery is still owed and due at `now` and no other holder's claim is running.
    /// Recording the attempt ([`Store::record_delivery`]) ends the claim.
    fn claim_delivery(
        &self,
        alert_id: Uuid,
        sink: String,
        holder: Uuid,
        now: Millis,
        until: Millis,
    ) -> impl Future<Output = Result<bool>> + Send;
    /// Returns when another node may have changed a window (a hint: nothing depends on it
    /// arriving, [`Store::ingest_at`] checks) or after `timeout`.
    fn windows_hint(&self, timeout: std::time::Duration) -> impl Future<Output = ()> + Send;
}

/// What [`Store::ingest_at`] did.
#[derive(Debug)]
pub enum Ingested {
    Stored(IngestOutcome),
    /// The windows moved since the index the events were matched with: nothing written.
    StaleWindows(Vec<Decided>),
}
