//! The request and answer bodies of the people-facing API (the agent-facing ones are
//! `driftwatch_common::api::v1`). Times are RFC 3339 strings in UTC; `driftctl` reads the
//! same types.

use std::collections::BTreeMap;

use driftwatch_common::api::v1::{AgentHealth, DriftEvent, Inventory};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::api::error::ApiError;
use crate::clock::{Millis, rfc3339};
use crate::drift::{DriftStatus, ResolutionCategory};
use crate::identity::Role;
use crate::matcher::Outcome;
use crate::store::{Alert, DeliveryState, DriftItem, Host, StoredEvent, TokenRecord};
use crate::windows::schedule::Schedule;
use crate::windows::{ExpectedState, HostScope, Window, WindowKind, WindowStatus};

fn time(millis: Millis) -> String {
    rfc3339(millis)
}

fn opt_time(millis: Option<Millis>) -> Option<String> {
    millis.map(rfc3339)
}

/// `POST /api/v1/tokens`: a token for `person` (created when no person has that name;
/// `name` is accepted as the old spelling of `person`).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    #[serde(alias = "name")]
    pub person: String,
    pub role: Role,
}

/// A token just issued: `token` is shown this once.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct IssuedToken {
    pub id: Uuid,
    /// The person's name.
    pub name: String,
    pub role: Role,
    pub token: String,
    #[serde(default)]
    pub person_id: Option<Uuid>,
    /// Whether the person was created for this token.
    #[serde(default)]
    pub person_created: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TokenView {
    pub id: Uuid,
    pub name: String,
    pub role: Role,
    pub host_id: Option<Uuid>,
    pub created_at: String,
    pub created_by: String,
    pub revoked_at: Option<String>,
    /// The person it belongs to (people's tokens).
    #[serde(default)]
    pub person: Option<String>,
    #[serde(default)]
    pub person_id: Option<Uuid>,
    /// The token that issued it (none: offline bootstrap or enrollment).
    #[serde(default)]
    pub created_by_token: Option<Uuid>,
}

impl From<&TokenRecord> for TokenView {
    fn from(t: &TokenRecord) -> Self {
        TokenView {
            id: t.id,
            name: t.name.clone(),
            role: t.role,
            host_id: t.host_id,
            created_at: time(t.created_at),
            created_by: t.created_by.clone(),
            revoked_at: opt_time(t.revoked_at),
            person: t.person.clone(),
            person_id: t.person_id,
            created_by_token: t.created_by_token,
        }
    }
}

/// `POST /api/v1/people`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreatePerson {
    pub name: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PersonView {
    pub id: Uuid,
    pub name: String,
    pub created_at: String,
    pub created_by: String,
}

impl From<&crate::people::Person> for PersonView {
    fn from(p: &crate::people::Person) -> Self {
        PersonView {
            id: p.id,
            name: p.name.clone(),
            created_at: time(p.created_at),
            created_by: p.created_by.clone(),
        }
    }
}

/// `POST /api/v1/enrollment-tokens`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateEnrollmentToken {
    /// Default 3600 (an hour); at most a week.
    #[serde(default)]
    pub ttl_secs: Option<u64>,
    /// Hosts that may enroll with it; default 1.
    #[serde(default)]
    pub uses: Option<u32>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct IssuedEnrollmentToken {
    pub id: Uuid,
    pub token: String,
    pub expires_at: String,
    pub uses: u32,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct HostView {
    pub id: Uuid,
    pub hostname: String,
    pub labels: BTreeMap<String, String>,
    pub agent_version: String,
    pub enrolled_at: String,
    pub last_seen_at: Option<String>,
    pub silent: bool,
    pub skew_ms: i64,
    pub inventory: Option<Inventory>,
    pub health: Option<AgentHealth>,
    pub reported_seq: u64,
    pub stored_seq: u64,
    /// `authenticated`: events carry MACs from the forward-secure chain key issued at
    /// enrollment. `unauthenticated`: enrolled before chain keys; only hash-chained, so
    /// root on the host can delete or edit spooled events unseen. Enroll it again.
    #[serde(default)]
    pub chain: String,
}

impl HostView {
    pub fn new(h: &Host, now: Millis, silent_after_ms: i64) -> Self {
        HostView {
            id: h.id,
            hostname: h.hostname.clone(),
            labels: h.labels.clone(),
            agent_version: h.agent_version.clone(),
            enrolled_at: time(h.enrolled_at),
            last_seen_at: opt_time(h.last_seen_at),
            silent: h.last_seen_at.unwrap_or(h.enrolled_at) < now - silent_after_ms,
            skew_ms: h.skew_ms,
            inventory: h.inventory.clone(),
            health: h.health.clone(),
            reported_seq: h.reported_seq,
            stored_seq: h.stored_seq,
            chain: if h.chain_keyed {
                "authenticated"
            } else {
                "unauthenticated"
            }
            .into(),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WindowView {
    pub id: Uuid,
    pub ticket: String,
    pub title: String,
    pub kind: WindowKind,
    pub status: WindowStatus,
    pub requester: String,
    pub decided_by: Option<String>,
    pub decided_at: Option<String>,
    pub decision_comment: Option<String>,
    pub hosts: HostScope,
    pub subjects: Vec<String>,
    pub start: String,
    pub end: String,
    pub time_zone: String,
    /// Start and end in the window's time zone, with their offsets.
    pub start_local: String,
    pub end_local: String,
    pub expected: Vec<ExpectedState>,
    /// Login users allowed to make the change (empty: anyone but the approver).
    pub implementers: Vec<String>,
    /// Recurring standard windows: the occurrences, between `start` and `end`.
    pub schedule: Option<Schedule>,
    pub created_at: String,
    pub ended_at: Option<String>,
    pub ended_by: Option<String>,
}

impl From<&Window> for WindowView {
    fn from(w: &Window) -> Self {
        let local = |millis: Millis| {
            jiff::Timestamp::from_millisecond(millis)
                .ok()
                .and_then(|t| {
                    Some(
                        t.in_tz(&w.time_zone)
                            .ok()?
                            .strftime("%Y-%m-%dT%H:%M%:z")
                            .to_string(),
                    )
                })
                .unwrap_or_else(|| rfc3339(millis))
        };
        WindowView {
            id: w.id,
            ticket: w.ticket.clone(),
            title: w.title.clone(),
            kind: w.kind,
            status: w.status,
            requester: w.requester.clone(),
            decided_by: w.decided_by.clone(),
            decided_at: opt_time(w.decided_at),
            decision_comment: w.decision_comment.clone(),
            hosts: w.hosts.clone(),
            subjects: w.subjects.clone(),
            start: time(w.start),
            end: time(w.end),
            time_zone: w.time_zone.clone(),
            start_local: local(w.start),
            end_local: local(w.end),
            expected: w.expected.clone(),
            implementers: w.implementers.clone(),
            schedule: w.schedule.clone(),
            created_at: time(w.created_at),
            ended_at: opt_time(w.ended_at),
            ended_by: w.ended_by.clone(),
        }
    }
}

/// `POST /api/v1/windows/{id}/{approve,reject,cancel,close}`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecideWindow {
    #[serde(default)]
    pub comment: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DecisionView {
    pub window: WindowView,
    /// After an approval: events and drift items covered after the fact.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events_covered: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drift_authorized: Option<u32>,
    /// After a close-out: drift accepted and baseline-accept commands queued for agents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drift_accepted: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commands_queued: Option<u32>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ResolutionView {
    pub category: ResolutionCategory,
    pub comment: String,
    pub ticket: Option<String>,
    pub by: String,
    pub at: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DriftView {
    pub id: Uuid,
    pub host_id: Uuid,
    pub hostname: String,
    pub subject: String,
    pub status: DriftStatus,
    pub reason: Option<String>,
    pub window_id: Option<Uuid>,
    pub opened_at: String,
    pub untraced_since: Option<String>,
    pub events: u32,
    pub last_event_id: Uuid,
    pub last_event_at: String,
    pub alerted_at: Option<String>,
    pub resolution: Option<ResolutionView>,
    pub updated_at: String,
}

impl From<&DriftItem> for DriftView {
    fn from(d: &DriftItem) -> Self {
        DriftView {
            id: d.id,
            host_id: d.host_id,
            hostname: d.hostname.clone(),
            subject: d.subject.clone(),
            status: d.status,
            reason: d.reason.clone(),
            window_id: d.window_id,
            opened_at: time(d.opened_at),
            untraced_since: opt_time(d.untraced_since),
            events: d.events,
            last_event_id: d.last_event_id,
            last_event_at: time(d.last_event_at),
            alerted_at: opt_time(d.alerted_at),
            resolution: d.resolution.as_ref().map(|r| ResolutionView {
                category: r.category,
                comment: r.comment.clone(),
                ticket: r.ticket.clone(),
                by: r.by.clone(),
                at: time(r.at),
            }),
            updated_at: time(d.updated_at),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EventView {
    pub event: DriftEvent,
    pub received_at: String,
    /// The agent's time corrected by its measured clock skew, moved inside the spool
    /// bounds (never a time the collector can disprove).
    pub event_time: String,
    pub outcome: Outcome,
    pub chain: String,
    /// When the event reached the agent's spool, on the collector's clock: authorization
    /// needs a window covering all of it.
    #[serde(default)]
    pub spooled_after: String,
    #[serde(default)]
    pub spooled_before: String,
    /// `consistent`; `before_bounds` / `after_bounds`: `event.observed_at` is false.
    #[serde(default)]
    pub clock_claim: String,
    /// A window covering the host and subject that was open during part of the spool
    /// interval only: "spool time not provably inside the window".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_provably_in: Option<uuid::Uuid>,
}

impl From<&StoredEvent> for EventView {
    fn from(e: &StoredEvent) -> Self {
        EventView {
            event: e.event.clone(),
            received_at: time(e.received_at),
            event_time: time(e.event_time),
            outcome: e.outcome.clone(),
            chain: e.chain.clone(),
            spooled_after: time(e.spool.spooled_after),
            spooled_before: time(e.spool.spooled_before),
            clock_claim: e.spool.clock_claim.name().to_owned(),
            not_provably_in: e.spool.not_provably_in,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DriftDetail {
    pub drift: DriftView,
    /// The latest [`MAX_DRIFT_DETAIL_EVENTS`] events, oldest first.
    pub events: Vec<EventView>,
    /// Earlier events left out (a host can report any number on one subject).
    #[serde(default)]
    pub events_omitted: usize,
}

/// One status change of a drift item (`GET /api/v1/drift/{id}/detail`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DriftChangeView {
    pub at: String,
    /// Absent: the item was opened.
    pub from: Option<DriftStatus>,
    pub to: DriftStatus,
    pub by: String,
    pub reason: String,
}

/// `GET /api/v1/drift/{id}/detail`: [`crate::detail::DriftDetail`] with the API's times.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DriftDetailView {
    pub drift: DriftView,
    /// The latest events, oldest first; `events_omitted` counts earlier ones.
    pub events: Vec<EventView>,
    #[serde(default)]
    pub events_omitted: usize,
    /// Its status changes, oldest first.
    pub history: Vec<DriftChangeView>,
    /// The other drift of the same host and subject, newest first.
    pub timeline: Vec<DriftView>,
    /// Why no window covered it.
    pub explanation: crate::detail::Explanation,
}

impl From<&crate::detail::DriftDetail> for DriftDetailView {
    fn from(d: &crate::detail::DriftDetail) -> Self {
        DriftDetailView {
            drift: DriftView::from(&d.item),
            events: d.events.iter().map(EventView::from).collect(),
            events_omitted: d.events_omitted,
            history: d
                .history
                .iter()
                .map(|h| DriftChangeView {
                    at: time(h.at),
                    from: h.from,
                    to: h.to,
                    by: h.by.clone(),
                    reason: h.reason.clone(),
                })
                .collect(),
            timeline: d.timeline.iter().map(DriftView::from).collect(),
            explanation: d.explanation.clone(),
        }
    }
}

/// Most events one `GET /api/v1/drift/{id}` shows (each bounded by
/// `driftwatch_common::limits`); earlier ones are counted in `events_omitted`.
pub const MAX_DRIFT_DETAIL_EVENTS: usize = 1_000;

/// `POST /api/v1/drift/{id}/resolve` is [`crate::app::ResolveRequest`].
pub use crate::app::ResolveRequest as ResolveDrift;

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DriftQuery {
    pub status: Option<DriftStatus>,
    pub host: Option<Uuid>,
    pub window: Option<Uuid>,
    pub limit: Option<u32>,
    /// The `Next-Cursor` of the previous page (issue 10).
    pub cursor: Option<String>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowQuery {
    pub status: Option<WindowStatus>,
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitQuery {
    pub limit: Option<u32>,
}

/// `GET /api/v1/audit`: entries after `after` (a seq), at most `limit` of them, in order.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    pub after: Option<u64>,
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

/// Most audit entries one `GET /api/v1/audit` returns (also the default): page with `after`.
pub const MAX_AUDIT_LIMIT: u32 = 10_000;

/// Most drift items one `GET /api/v1/drift` returns (each item's fields are bounded by
/// `driftwatch_common::limits`, so the answer is bounded too); the default is the same.
pub const MAX_DRIFT_LIMIT: u32 = 1_000;
/// Most alerts one `GET /api/v1/alerts` returns; the default is 100.
pub const MAX_ALERTS_LIMIT: u32 = 10_000;
pub const DEFAULT_ALERTS_LIMIT: u32 = 100;

// Listings with a cursor (issue 10).

/// `GET /api/v1/hosts`: a page of hosts by name.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PageQuery {
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

/// Most hosts one `GET /api/v1/hosts` returns (also the default).
pub const MAX_HOSTS_LIMIT: u32 = 1_000;
/// Most windows one `GET /api/v1/windows` returns (also the default).
pub const MAX_WINDOWS_LIMIT: u32 = 1_000;
/// The response header that carries the cursor of the next page; absent on the last page.
/// The body stays the JSON array it always was, so clients that predate paging keep
/// working and read the first page (a `limit` above a listing's maximum is a 400 naming
/// it, never clamped).
pub const NEXT_CURSOR: &str = "next-cursor";

/// A page as the API answers it: the items, and `Next-Cursor` when the listing goes on.
pub fn paged<T: Serialize>(items: Vec<T>, next: Option<String>) -> axum::response::Response {
    use axum::response::IntoResponse;
    let mut response = axum::Json(items).into_response();
    if let Some(value) = next.and_then(|n| axum::http::HeaderValue::from_str(&n).ok()) {
        response.headers_mut().insert(NEXT_CURSOR, value);
    }
    response
}

/// A listing's `limit`: `default` when unset; 0 or above `max` is refused (never clamped,
/// so a caller never mistakes a cut listing for the whole).
pub fn listing_limit(limit: Option<u32>, default: u32, max: u32) -> Result<u32, ApiError> {
    Ok(crate::app::Limit {
        asked: limit,
        default,
        max,
    }
    .checked()?)
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AlertView {
    pub id: Uuid,
    pub kind: String,
    pub host_id: Option<Uuid>,
    pub created_at: String,
    pub delivered_at: Option<String>,
    pub attempts: u32,
    pub last_error: Option<String>,
    /// Per configured sink (and any earlier sink that tried it), by name.
    #[serde(default)]
    pub deliveries: Vec<DeliveryView>,
    pub body: serde_json::Value,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DeliveryView {
    pub sink: String,
    /// `pending`, `delivered` or `failing`.
    pub state: DeliveryState,
    pub attempts: u32,
    pub last_error: Option<String>,
    pub last_attempt_at: Option<String>,
    pub next_attempt_at: Option<String>,
    pub delivered_at: Option<String>,
    /// When the state is `dead_letter` or `dropped`: the receiver's refusal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_letter: Option<DeadLetterView>,
    /// When the state is `dropped`: who gave up on it, when and why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dropped: Option<DroppedView>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DeadLetterView {
    pub at: String,
    /// The receiver's HTTP status, when it has one.
    pub status: Option<u16>,
    /// The start of the receiver's answer (at most 1 KiB).
    pub response: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DroppedView {
    pub at: String,
    pub by: String,
    pub reason: String,
}

/// `POST /api/v1/alerts/{id}/retry`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryDelivery {
    pub sink: String,
}

/// `POST /api/v1/alerts/dead-letters/retry`: how many dead letters are due again.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RetriedView {
    pub retried: u32,
}

/// `POST /api/v1/alerts/{id}/drop`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DropDelivery {
    pub sink: String,
    pub reason: String,
}

impl From<&Alert> for AlertView {
    fn from(a: &Alert) -> Self {
        AlertView {
            id: a.id,
            kind: a.kind.clone(),
            host_id: a.host_id,
            created_at: time(a.created_at),
            delivered_at: opt_time(a.delivered_at),
            attempts: a.attempts,
            last_error: a.last_error.clone(),
            deliveries: a
                .deliveries
                .iter()
                .map(|d| DeliveryView {
                    sink: d.sink.clone(),
                    state: d.state,
                    attempts: d.attempts,
                    last_error: d.last_error.clone(),
                    last_attempt_at: opt_time(d.last_attempt_at),
                    next_attempt_at: opt_time(d.next_attempt_at),
                    delivered_at: opt_time(d.delivered_at),
                    dead_letter: d.dead_letter.as_ref().map(|dead| DeadLetterView {
                        at: time(dead.at),
                        status: dead.status,
                        response: dead.response.clone(),
                    }),
                    dropped: d.dropped.as_ref().map(|dropped| DroppedView {
                        at: time(dropped.at),
                        by: dropped.by.clone(),
                        reason: dropped.reason.clone(),
                    }),
                })
                .collect(),
            body: a.body.clone(),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AuditEntryView {
    pub seq: u64,
    pub at: String,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub details: serde_json::Value,
    pub hash: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Status {
    pub status: String,
}
