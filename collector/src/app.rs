//! The collector's operations, between the HTTP handlers and the store: authentication,
//! ingest with matching, heartbeats, change windows, drift resolution, the alert round.
//! Handlers stay thin (decode, call one of these, encode); every rule lives here or in the
//! pure modules it calls.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use driftwatch_common::api::v1::{
    EnrollRequest, EnrollResponse, EventBatch, Heartbeat, HeartbeatResponse, IngestAck,
};
use driftwatch_common::limits;
use driftwatch_config::collector::CollectorConfig;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::RwLock;
use uuid::Uuid;

use crate::alerts::{self, Sinks};
use crate::audit::{self, NewAudit, VerifyReport};
use crate::clock::{Clock, Millis, from_offset, rfc3339};
use crate::drift::ResolutionCategory;
use crate::identity::{self, Principal, Role, TokenKind};
use crate::matcher::{self, EventFacts, HostFacts, Outcome, WindowIndex};
use crate::store::{
    Alert, CloseOutcome, Decided, DeliveryState, DriftFilter, DriftItem, EnrollmentTokenRecord,
    HeartbeatRecord, Host, NewAlert, Resolution, ReviewOutcome, SinkDelivery, Store, StoreError,
    StoredEvent, TokenRecord,
};
use crate::windows::lifecycle::{self, Action, Refusal};
use crate::windows::validate::{self, WindowRequest};
use crate::windows::{Window, WindowStatus};

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

/// Longest enrollment token lifetime (a week) and most uses.
pub const MAX_ENROLLMENT_TTL_SECS: u64 = 7 * 86_400;
pub const MAX_ENROLLMENT_USES: u32 = 10_000;

pub struct App<S: Store> {
    pub store: S,
    pub settings: Settings,
    pub clock: Arc<dyn Clock>,
    sinks: Sinks,
    /// Approved windows. Ingest holds it for reading from matching to commit; a window
    /// decision holds it for writing while it rebuilds and re-evaluates, so no event is
    /// matched against a stale index and then missed by the re-evaluation.
    index: RwLock<Arc<WindowIndex>>,
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
        let index = build_index(&store).await?;
        Ok(App {
            store,
            settings,
            clock,
            sinks,
            index: RwLock::new(Arc::new(index)),
        })
    }

    pub fn now(&self) -> Millis {
        self.clock.now()
    }

    // ----- identity -----

    /// The principal a bearer token belongs to; every failure reads the same.
    pub async fn authenticate(&self, token: &str) -> Result<Principal> {
        let invalid = || Error::Unauthorized("invalid or revoked token".into());
        let id = identity::parse(token, TokenKind::Api)
            .or_else(|| identity::parse(token, TokenKind::Agent))
            .ok_or_else(invalid)?;
        let record = match self.store.token(id).await {
            Ok(record) => record,
            Err(StoreError::NotFound(_)) => return Err(invalid()),
            Err(err) => return Err(err.into()),
        };
        if !identity::constant_time_eq(&record.digest, &identity::digest(token))
            || record.revoked_at.is_some()
        {
            return Err(invalid());
        }
        Ok(Principal {
            token_id: record.id,
            name: record.name,
            role: record.role,
            host_id: record.host_id,
        })
    }

    /// Issues a token for a person; the text is returned once and never stored.
    pub async fn create_token(
        &self,
        actor: &str,
        name: &str,
        role: Role,
    ) -> Result<(TokenRecord, String)> {
        check_name("name", name)?;
        if role == Role::Agent {
            return Err(Error::BadRequest(
                "agent credentials are issued by enrollment (POST /api/v1/enroll), not here".into(),
            ));
        }
        let minted = identity::mint(TokenKind::Api);
        let record = TokenRecord {
            id: minted.id,
            name: name.to_owned(),
            role,
            host_id: None,
            digest: minted.digest,
            created_at: self.now(),
            created_by: actor.to_owned(),
            revoked_at: None,
        };
        let audit = NewAudit::new(
            record.created_at,
            actor,
            "token.created",
            format!("token:{}", record.id),
            json!({ "name": name, "role": role }),
        );
        self.store.insert_token(record.clone(), audit).await?;
        Ok((record, minted.text))
    }

    pub async fn revoke_token(&self, actor: &Principal, id: Uuid) -> Result<TokenRecord> {
        require(actor, &[Role::Admin], "revoking a token")?;
        let now = self.now();
        let audit = NewAudit::new(
            now,
            &actor.name,
            "token.revoked",
            format!("token:{id}"),
            json!({}),
        );
        Ok(self.store.revoke_token(id, now, audit).await?)
    }

    pub async fn create_enrollment_token(
        &self,
        actor: &Principal,
        ttl_secs: u64,
        uses: u32,
    ) -> Result<(EnrollmentTokenRecord, String)> {
        require(actor, &[Role::Admin], "creating enrollment tokens")?;
        if ttl_secs == 0 || ttl_secs > MAX_ENROLLMENT_TTL_SECS {
            return Err(Error::BadRequest(format!(
                "ttl_secs must be between 1 and {MAX_ENROLLMENT_TTL_SECS} (a week), got {ttl_secs}"
            )));
        }
        if uses == 0 || uses > MAX_ENROLLMENT_USES {
            return Err(Error::BadRequest(format!(
                "uses must be between 1 and {MAX_ENROLLMENT_USES}, got {uses}"
            )));
        }
        let minted = identity::mint(TokenKind::Enrollment);
        let now = self.now();
        let record = EnrollmentTokenRecord {
            id: minted.id,
            digest: minted.digest,
            created_by: actor.name.clone(),
            created_at: now,
            expires_at: now + (ttl_secs as i64) * 1000,
            uses_left: uses,
        };
        let audit = NewAudit::new(
            now,
            &actor.name,
            "enrollment_token.created",
            format!("enrollment_token:{}", record.id),
            json!({ "expires_at": rfc3339(record.expires_at), "uses": uses }),
        );
        self.store
            .insert_enrollment_token(record.clone(), audit)
            .await?;
        Ok((record, minted.text))
    }

    /// Spends an enrollment token and mints the host's own credential.
    pub async fn enroll(&self, request: EnrollRequest) -> Result<EnrollResponse> {
        let refused =
            || Error::Unauthorized("enrollment token is invalid, expired or used up".into());
        let token_id =
            identity::parse(&request.token, TokenKind::Enrollment).ok_or_else(refused)?;
        validate::check_hostname(&request.hostname)
            .map_err(|why| Error::BadRequest(format!("hostname: {why}")))?;
        refuse_oversized(limits::check_enroll(&request), "nothing was enrolled")?;
        check_name("agent_version", &request.agent_version)?;
        for (key, value) in &request.labels {
            if key.is_empty() || key.len() > 128 || value.len() > 512 {
                return Err(Error::BadRequest(
                    "labels: names must be 1 to 128 characters and values at most 512".into(),
                ));
            }
        }
        let now = self.now();
        let host = Host {
            id: Uuid::now_v7(),
            hostname: request.hostname.clone(),
            labels: request.labels.clone(),
            agent_version: request.agent_version.clone(),
            enrolled_at: now,
            last_seen_at: None,
            skew_ms: 0,
            inventory: None,
            health: None,
            reported_seq: 0,
            stored_seq: 0,
        };
        let minted = identity::mint(TokenKind::Agent);
        let credential = TokenRecord {
            id: minted.id,
            name: request.hostname.clone(),
            role: Role::Agent,
            host_id: Some(host.id),
            digest: minted.digest,
            created_at: now,
            created_by: format!("enrollment_token:{token_id}"),
            revoked_at: None,
        };
        let audit = NewAudit::new(
            now,
            format!("enrollment_token:{token_id}"),
            "host.enrolled",
            format!("host:{}", host.id),
            json!({ "hostname": host.hostname, "labels": host.labels, "credential": credential.id }),
        );
        match self
            .store
            .enroll(
                token_id,
                identity::digest(&request.token),
                host.clone(),
                credential,
                audit,
            )
            .await
        {
            Ok(()) => {}
            Err(StoreError::NotFound(_)) => return Err(refused()),
            Err(err) => return Err(err.into()),
        }
        tracing::info!(host = %host.id, hostname = %host.hostname, "host enrolled");
        Ok(EnrollResponse {
            host_id: host.id,
            credential: minted.text,
        })
    }

    // ----- agents -----

    pub async fn ingest(&self, agent: &Principal, batch: EventBatch) -> Result<IngestAck> {
        let host_id = agent_host(agent, "report events")?;
        let oversized: Vec<_> = batch
            .events
            .iter()
            .enumerate()
            .flat_map(|(i, event)| limits::check_event(event, i))
            .collect();
        refuse_oversized(oversized, "nothing was stored")?;
        let mut problems = Vec::new();
        for (i, event) in batch.events.iter().enumerate() {
            if event.host_id != host_id {
                return Err(Error::Forbidden(format!(
                    "events[{i}] is for host {} but this credential belongs to host {host_id}; \
                     nothing was stored",
                    event.host_id
                )));
            }
            if event.seq == 0 || event.seq > i64::MAX as u64 {
                problems.push(format!("events[{i}].seq must be between 1 and 2^63-1"));
            }
            if event.subject.namespace().is_empty() || event.subject.name().is_empty() {
                problems.push(format!(
                    "events[{i}].subject `{}` is not `namespace:name`",
                    event.subject
                ));
            }
        }
        if !problems.is_empty() {
            return Err(Error::BadRequest(format!(
                "{}; nothing was stored",
                problems.join("; ")
            )));
        }
        let host = self.store.host(host_id).await?;
        let received_at = self.now();
        let index = self.index.read().await;
        let decided: Vec<Decided> = batch
            .events
            .into_iter()
            .map(|event| {
                let started = Instant::now();
                let observed_at = from_offset(event.observed_at);
                let outcome = matcher::match_event(
                    &index,
                    host_facts(&host),
                    EventFacts {
                        subject: &event.subject.0,
                        kind: event.kind,
                        after: event.after.as_ref(),
                        observed_at,
                        actor: event.actor.as_ref(),
                        provenance: event.provenance.as_ref(),
                    },
                    self.settings.tolerance_ms,
                );
                metrics::histogram!("driftwatch_match_seconds")
                    .record(started.elapsed().as_secs_f64());
                Decided {
                    event_time: observed_at.saturating_sub(host.skew_ms),
                    event,
                    outcome,
                }
            })
            .collect();
        let untraced = decided.iter().filter(|d| d.outcome.needs_review()).count();
        let outcome = self.store.ingest(host_id, decided, received_at).await?;
        drop(index);

        metrics::counter!("driftwatch_events_ingested_total", "result" => "accepted")
            .increment(outcome.accepted.into());
        metrics::counter!("driftwatch_events_ingested_total", "result" => "duplicate")
            .increment(outcome.duplicates.into());
        if !outcome.chain_problems.is_empty() {
            metrics::counter!("driftwatch_chain_alerts_total")
                .increment(outcome.chain_problems.len() as u64);
            tracing::warn!(host = %host_id, problems = outcome.chain_problems.len(), "event chain broken");
        }
        tracing::debug!(host = %host_id, accepted = outcome.accepted, duplicates = outcome.duplicates, untraced, "batch ingested");
        Ok(IngestAck {
            accepted: outcome.accepted,
            duplicates: outcome.duplicates,
            last_seq: outcome.last_seq,
        })
    }

    pub async fn heartbeat(
        &self,
        agent: &Principal,
        heartbeat: Heartbeat,
    ) -> Result<HeartbeatResponse> {
        let host_id = agent_host(agent, "send heartbeats")?;
        refuse_oversized(limits::check_heartbeat(&heartbeat), "nothing was recorded")?;
        if heartbeat.host_id != host_id {
            return Err(Error::Forbidden(format!(
                "heartbeat is for host {} but this credential belongs to host {host_id}",
                heartbeat.host_id
            )));
        }
        let before = self.store.host(host_id).await?;
        let now = self.now();
        let skew_ms = from_offset(heartbeat.sent_at) - now;
        let mut alerts = Vec::new();
        let was = before.health.clone().unwrap_or_default();
        let mut raise = |problem: &str, summary: String| {
            alerts.push(NewAlert {
                kind: "agent_health".into(),
                host_id: Some(host_id),
                body: json!({
                    "kind": "agent_health",
                    "host": { "id": host_id, "hostname": before.hostname },
                    "problem": problem,
                    "summary": summary,
                }),
            });
        };
        if heartbeat.health.baseline_tampered && !was.baseline_tampered {
            raise(
                "baseline_tampered",
                format!(
                    "the baseline on {} failed its integrity check",
                    before.hostname
                ),
            );
        }
        if heartbeat.health.spool_full && !was.spool_full {
            raise(
                "spool_full",
                format!(
                    "the event spool on {} is full: events are held back",
                    before.hostname
                ),
            );
        }
        let lost = crate::coverage::losses(
            before.health.as_ref().map(|h| &h.coverage),
            &heartbeat.health.coverage,
        );
        if !lost.is_empty() {
            raise(
                "coverage_lost",
                format!("blind spots on {}: {}", before.hostname, lost.join("; ")),
            );
        }
        let tolerance = self.settings.tolerance_ms;
        if skew_ms.abs() > tolerance && before.skew_ms.abs() <= tolerance {
            raise(
                "clock_skew",
                format!(
                    "the clock of {} is off by {} s (tolerance {} s)",
                    before.hostname,
                    skew_ms / 1000,
                    tolerance / 1000
                ),
            );
        }
        let commands = self
            .store
            .heartbeat(
                HeartbeatRecord {
                    host_id,
                    received_at: now,
                    skew_ms,
                    inventory: heartbeat.inventory,
                    health: heartbeat.health,
                    reported_seq: heartbeat.last_seq,
                    results: heartbeat.results,
                },
                alerts,
            )
            .await?;
        let server_time =
            time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(now) * 1_000_000)
                .map_err(|err| Error::Store(StoreError::other(err)))?;
        Ok(HeartbeatResponse {
            server_time,
            commands,
        })
    }

    // ----- change windows -----

    pub async fn create_window(
        &self,
        actor: &Principal,
        request: &WindowRequest,
    ) -> Result<Window> {
        require(
            actor,
            &lifecycle::WINDOW_ROLES,
            "requesting a change window",
        )?;
        let now = self.now();
        let window = validate::validate(request, &actor.name, now)
            .map_err(|problems| Error::BadRequest(problems.join("; ")))?;
        let audit = NewAudit::new(
            now,
            &actor.name,
            "window.requested",
            format!("window:{}", window.id),
            json!({
                "ticket": window.ticket, "kind": window.kind, "hosts": window.hosts,
                "subjects": window.subjects, "start": rfc3339(window.start),
                "end": rfc3339(window.end), "time_zone": window.time_zone,
                "expected": window.expected, "implementers": window.implementers,
                "schedule": window.schedule,
            }),
        );
        self.store.insert_window(window.clone(), audit).await?;
        tracing::info!(window = %window.id, ticket = %window.ticket, by = %actor.name, "window requested");
        Ok(window)
    }

    /// Approves, rejects, cancels or closes a window. Approval re-evaluates the untraced
    /// drift the window covers; closing accepts its authorized drift.
    pub async fn decide(
        &self,
        actor: &Principal,
        id: Uuid,
        action: Action,
        comment: Option<String>,
    ) -> Result<Decision> {
        let comment = comment
            .map(|c| c.trim().to_owned())
            .filter(|c| !c.is_empty());
        if action == Action::Reject && comment.is_none() {
            return Err(Error::BadRequest(
                "a rejection needs a comment saying why".into(),
            ));
        }
        // Held for writing: matching waits until the index reflects this decision.
        let mut index = self.index.write().await;
        let window = self.store.window(id).await?;
        lifecycle::check(&window, action, actor).map_err(|refusal| match refusal {
            Refusal::Forbidden(why) => Error::Forbidden(why),
            Refusal::Conflict(why) => Error::Conflict(why),
        })?;
        let now = self.now();
        let mut updated = window.clone();
        updated.status = action.outcome();
        match action {
            Action::Approve | Action::Reject => {
                updated.decided_by = Some(actor.name.clone());
                updated.decided_at = Some(now);
                updated.decision_comment = comment.clone();
            }
            Action::Cancel | Action::Close => {
                updated.ended_at = Some(now);
                updated.ended_by = Some(actor.name.clone());
            }
        }
        let audit = NewAudit::new(
            now,
            &actor.name,
            &format!("window.{}", action.outcome()),
            format!("window:{id}"),
            json!({ "ticket": window.ticket, "comment": comment, "requester": window.requester }),
        );
        let mut decision = Decision {
            window: updated.clone(),
            review: None,
            close: None,
        };
        if action == Action::Close {
            decision.close = Some(self.store.close_window(updated.clone(), audit).await?);
        } else {
            self.store
                .update_window(updated.clone(), window.status, audit)
                .await?;
        }
        if window.was_approved() || updated.was_approved() {
            *index = Arc::new(index.updated(&updated).map_err(|(id, why)| {
                Error::Store(StoreError::other(format!(
                    "window {id} does not compile: {why}"
                )))
            })?);
        }
        if action == Action::Approve {
            decision.review = Some(self.reevaluate(&updated, &actor.name).await?);
        }
        drop(index);
        tracing::info!(window = %id, action = %action, by = %actor.name, "window decided");
        Ok(decision)
    }

    /// After-the-fact coverage: events that needed review and that `window` authorizes.
    async fn reevaluate(&self, window: &Window, by: &str) -> Result<ReviewOutcome> {
        let tolerance = self.settings.tolerance_ms;
        let single = WindowIndex::build(std::slice::from_ref(window))
            .map_err(|(_, why)| Error::Store(StoreError::other(why)))?;
        let candidates = self
            .store
            .review_candidates(window.start - tolerance, window.effective_end() + tolerance)
            .await?;
        let decisions: Vec<(Uuid, Outcome)> = candidates
            .iter()
            .filter_map(|c| {
                // `event_time` is already corrected for the host's skew.
                let outcome = matcher::match_event(
                    &single,
                    HostFacts {
                        skew_ms: 0,
                        ..host_facts(&c.host)
                    },
                    EventFacts {
                        subject: &c.event.subject.0,
                        kind: c.event.kind,
                        after: c.event.after.as_ref(),
                        observed_at: c.event_time,
                        actor: c.event.actor.as_ref(),
                        provenance: c.event.provenance.as_ref(),
                    },
                    tolerance,
                );
                matches!(outcome, Outcome::Authorized { .. }).then_some((c.event.id, outcome))
            })
            .collect();
        if decisions.is_empty() {
            return Ok(ReviewOutcome::default());
        }
        let outcome = self
            .store
            .apply_review(window.id, decisions, self.now(), by.to_owned())
            .await?;
        tracing::info!(window = %window.id, events = outcome.events, drift = outcome.drift_authorized, "untraced drift covered after the fact");
        Ok(outcome)
    }

    pub async fn window(&self, id: Uuid) -> Result<Window> {
        Ok(self.store.window(id).await?)
    }

    pub async fn windows(&self, status: Option<WindowStatus>) -> Result<Vec<Window>> {
        Ok(self.store.windows(status).await?)
    }

    // ----- drift -----

    pub async fn drift_items(&self, filter: DriftFilter) -> Result<Vec<DriftItem>> {
        Ok(self.store.drift_items(filter).await?)
    }

    pub async fn drift_item(&self, id: Uuid) -> Result<(DriftItem, Vec<StoredEvent>)> {
        let item = self.store.drift_item(id).await?;
        let events = self.store.events(id).await?;
        Ok((item, events))
    }

    pub async fn resolve(
        &self,
        actor: &Principal,
        id: Uuid,
        request: ResolveRequest,
    ) -> Result<DriftItem> {
        require(actor, &[Role::Security], "resolving drift")?;
        let comment = request.comment.trim();
        if comment.is_empty() {
            return Err(Error::BadRequest(
                "comment is empty: say what was found".into(),
            ));
        }
        let ticket = request
            .ticket
            .map(|t| t.trim().to_owned())
            .filter(|t| !t.is_empty());
        match request.category {
            ResolutionCategory::Restored => {
                return Err(Error::BadRequest(
                    "`restored` is recorded by the collector when an agent reports it; choose \
                     confirmed_unauthorized, emergency_change or false_positive"
                        .into(),
                ));
            }
            ResolutionCategory::EmergencyChange if ticket.is_none() => {
                return Err(Error::BadRequest(
                    "an emergency_change resolution names its ticket (`ticket`)".into(),
                ));
            }
            _ => {}
        }
        let now = self.now();
        let resolution = Resolution {
            category: request.category,
            comment: comment.to_owned(),
            ticket,
            by: actor.name.clone(),
            at: now,
        };
        let audit = NewAudit::new(
            now,
            &actor.name,
            "drift.resolved",
            format!("drift:{id}"),
            json!({ "category": resolution.category, "comment": resolution.comment, "ticket": resolution.ticket }),
        );
        Ok(self.store.resolve_drift(id, resolution, audit).await?)
    }

    // ----- audit, alerts, health -----

    pub async fn verify_audit(&self) -> Result<VerifyReport> {
        let (entries, head) = self.store.audit_log().await?;
        Ok(audit::verify(&entries, head))
    }

    /// One round of the background work: alerts due after their hold, newly silent agents,
    /// delivery of the outbox.
    pub async fn tick(&self) -> Result<()> {
        let now = self.now();
        let raised = self
            .store
            .raise_due_alerts(now, self.settings.hold_ms, self.settings.burst_ms)
            .await?;
        let silent = self
            .store
            .raise_silent_alerts(now, self.settings.silent_after_ms)
            .await?;
        let emergency = self
            .store
            .raise_emergency_alerts(now, self.settings.emergency_approval_ms)
            .await?;
        if raised + silent + emergency > 0 {
            tracing::info!(untraced = raised, silent, emergency, "alerts raised");
        }
        alerts::deliver_pending(&self.store, &self.sinks, Arc::clone(&self.clock)).await?;
        Ok(())
    }

    /// Audits the alert sinks of the configuration `source` when they differ from the last
    /// start's: who edited the file is not known, which file is. The entry holds a digest
    /// and a secret-free description (secret files by name, webhook URLs without path).
    pub async fn note_alert_sinks(&self, source: &std::path::Path) -> Result<bool> {
        let (digest, described) = self.sinks.description();
        let audit = NewAudit::new(
            self.now(),
            format!("config file {}", source.display()),
            "config.alert_sinks",
            "alert_sinks",
            json!({ "digest": digest, "sinks": described }),
        );
        Ok(self
            .store
            .note_config("alert_sinks".into(), digest, audit)
            .await?)
    }

    /// Recent alerts with their delivery per configured sink (a sink that has not tried
    /// an undelivered alert yet shows as pending).
    pub async fn alerts(&self, limit: u32) -> Result<Vec<Alert>> {
        let mut alerts = self.store.alerts(limit).await?;
        for alert in alerts.iter_mut().filter(|a| a.delivered_at.is_none()) {
            for name in self.sinks.names() {
                if !alert.deliveries.iter().any(|d| d.sink == name) {
                    alert.deliveries.push(SinkDelivery {
                        sink: name,
                        state: DeliveryState::Pending,
                        attempts: 0,
                        last_error: None,
                        last_attempt_at: None,
                        next_attempt_at: None,
                        delivered_at: None,
                    });
                }
            }
            alert.deliveries.sort_by(|a, b| a.sink.cmp(&b.sink));
        }
        Ok(alerts)
    }

    /// Sets the gauges `/metrics` shows.
    pub async fn refresh_gauges(&self) -> Result<()> {
        let stats = self
            .store
            .stats(self.now(), self.settings.silent_after_ms)
            .await?;
        metrics::gauge!("driftwatch_drift_open").set(stats.open_drift as f64);
        metrics::gauge!("driftwatch_agents").set(stats.hosts as f64);
        metrics::gauge!("driftwatch_agents_silent").set(stats.silent_hosts as f64);
        metrics::gauge!("driftwatch_alerts_undelivered").set(stats.undelivered_alerts as f64);
        for backlog in self.store.delivery_backlog(self.sinks.names()).await? {
            metrics::gauge!("driftwatch_alert_deliveries_pending", "sink" => backlog.sink.clone())
                .set(backlog.undelivered as f64);
            metrics::gauge!("driftwatch_alert_deliveries_failing", "sink" => backlog.sink)
                .set(backlog.failing as f64);
        }
        metrics::gauge!("driftwatch_windows_indexed").set(self.index.read().await.len() as f64);
        Ok(())
    }
}

/// The outcome of a window decision.
#[derive(Clone, Debug)]
pub struct Decision {
    pub window: Window,
    /// Approval: drift covered after the fact.
    pub review: Option<ReviewOutcome>,
    /// Close-out: drift accepted, commands queued.
    pub close: Option<CloseOutcome>,
}

/// `POST /api/v1/drift/{id}/resolve`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResolveRequest {
    pub category: ResolutionCategory,
    pub comment: String,
    #[serde(default)]
    pub ticket: Option<String>,
}

async fn build_index<S: Store>(store: &S) -> Result<WindowIndex> {
    let windows = store.windows(None).await?;
    WindowIndex::build(&windows).map_err(|(id, why)| {
        Error::Store(StoreError::other(format!(
            "stored window {id} does not compile: {why}"
        )))
    })
}

fn host_facts(host: &Host) -> HostFacts<'_> {
    HostFacts {
        hostname: &host.hostname,
        labels: &host.labels,
        skew_ms: host.skew_ms,
    }
}

/// Fails unless `actor` has one of `roles`.
pub fn require(actor: &Principal, roles: &[Role], doing: &str) -> Result<()> {
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
