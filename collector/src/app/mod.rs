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
use driftwatch_common::chain_key::ChainKey;
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
use crate::people::{self, Clash, Merge, Person, PersonName};
use crate::spool_time::{self, Bounder, SpoolTime};
use crate::store::{
    Alert, CloseOutcome, Decided, DeliveryState, DriftFilter, DriftItem, EnrollmentTokenRecord,
    HeartbeatRecord, Host, NewAlert, Resolution, ReviewOutcome, SinkDelivery, Store, StoreError,
    StoredEvent, TokenRecord,
};
use crate::windows::lifecycle::{self, Action, Refusal};
use crate::windows::validate::{self, WindowRequest};
use crate::windows::{Window, WindowStatus};
use driftwatch_common::pathbytes::Shown;

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

mod anchor;
#[cfg(test)]
mod boundary_tests;
mod retention;

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

/// Longest enrollment token lifetime (a week) and most uses.
pub const MAX_ENROLLMENT_TTL_SECS: u64 = 7 * 86_400;
pub const MAX_ENROLLMENT_USES: u32 = 10_000;

pub struct App<S: Store> {
    /// Not `pub`: handlers, `main` and tests go through `App`'s operations. `pub(crate)`
    /// only for the `impl App` blocks still outside `app` (`audit/ops.rs`, `reports/ops.rs`)
    /// until they move under `app/`; `api_reaches_the_store_only_through_app` guards the rest.
    pub(crate) store: S,
    pub settings: Settings,
    pub clock: Arc<dyn Clock>,
    sinks: Sinks,
    /// Approved windows. Ingest holds it for reading from matching to commit; a window
    /// decision holds it for writing while it rebuilds and re-evaluates, so no event is
    /// matched against a stale index and then missed by the re-evaluation.
    index: RwLock<Arc<WindowIndex>>,
    /// The audit signing key (`crate::audit::ops`); `None` in tests of the operations alone.
    pub(crate) audit_anchor: Option<crate::audit::ops::Anchor>,
    /// `[retention]` and when its round last ran (`app/retention.rs`); `None`: keep all.
    retention: Option<retention::Round>,
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
        let app = App {
            store,
            settings,
            clock,
            sinks,
            index: RwLock::new(Arc::new(index)),
            audit_anchor: None,
            retention: None,
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
            // A person's token acts as the person (segregation of duties compares people).
            name: record.person.unwrap_or(record.name),
            role: record.role,
            host_id: record.host_id,
        })
    }

    /// Issues a token to `person` (created first when no person has that name) on behalf
    /// of the admin `actor`; the text is returned once and never stored.
    pub async fn create_token(
        &self,
        actor: &Principal,
        person: &str,
        role: Role,
    ) -> Result<IssuedToken> {
        require(actor, &[Role::Admin], "issuing tokens")?;
        self.issue_token(&actor.name, Some(actor.token_id), person, role)
            .await
    }

    /// The offline bootstrap (`driftwatch-collector token create`): `local` names who ran it.
    pub async fn create_token_offline(
        &self,
        local: &str,
        person: &str,
        role: Role,
    ) -> Result<IssuedToken> {
        self.issue_token(local, None, person, role).await
    }

    async fn issue_token(
        &self,
        actor: &str,
        actor_token: Option<Uuid>,
        person: &str,
        role: Role,
    ) -> Result<IssuedToken> {
        if role == Role::Agent {
            return Err(Error::BadRequest(
                "agent credentials are issued by enrollment (POST /api/v1/enroll), not here".into(),
            ));
        }
        let name = people::check_name(person).map_err(|e| Error::BadRequest(e.to_string()))?;
        let now = self.now();
        let known = self.store.people().await?;
        let (owner, new_person) = match people::clash(&name, &known) {
            Some(Clash::SameName(p)) => (p.clone(), None),
            Some(looks @ Clash::LooksLike(_)) => {
                return Err(Error::Conflict(looks.message(&name.display)));
            }
            None => {
                let created = self.new_person(actor, name, now);
                (created.0.clone(), Some(created))
            }
        };
        let minted = identity::mint(TokenKind::Api);
        let record = TokenRecord {
            id: minted.id,
            name: owner.name.clone(),
            role,
            host_id: None,
            digest: minted.digest,
            created_at: now,
            created_by: actor.to_owned(),
            revoked_at: None,
            person_id: Some(owner.id),
            person: Some(owner.name.clone()),
            created_by_token: actor_token,
        };
        let audit = NewAudit::new(
            now,
            actor,
            "token.created",
            format!("token:{}", record.id),
            json!({
                "name": owner.name, "person": owner.name, "person_id": owner.id, "role": role,
                "created_by_token": actor_token,
            }),
        );
        let person_created = new_person.is_some();
        self.store
            .insert_person_token(new_person, record.clone(), audit)
            .await?;
        tracing::info!(token = %record.id, person = %Shown(&owner.name), %role, by = %Shown(actor), person_created, "token issued");
        Ok(IssuedToken {
            record,
            text: minted.text,
            person_created,
        })
    }

    fn new_person(&self, actor: &str, name: PersonName, now: Millis) -> (Person, NewAudit) {
        let person = Person {
            id: Uuid::now_v7(),
            name: name.display,
            canonical: name.canonical,
            key: name.key,
            created_at: now,
            created_by: actor.to_owned(),
        };
        let audit = NewAudit::new(
            now,
            actor,
            "person.created",
            format!("person:{}", person.id),
            json!({ "name": person.name }),
        );
        (person, audit)
    }

    /// Records a person (admin). A name equal to an existing one once normalised, or that
    /// looks like one (confusable), is refused with a message naming that person.
    pub async fn create_person(&self, actor: &Principal, name: &str) -> Result<Person> {
        require(actor, &[Role::Admin], "creating people")?;
        let name = people::check_name(name).map_err(|e| Error::BadRequest(e.to_string()))?;
        let known = self.store.people().await?;
        if let Some(clash) = people::clash(&name, &known) {
            return Err(Error::Conflict(clash.message(&name.display)));
        }
        let (person, audit) = self.new_person(&actor.name, name, self.now());
        self.store.insert_person(person.clone(), audit).await?;
        tracing::info!(person = %Shown(&person.name), by = %Shown(&actor.name), "person created");
        Ok(person)
    }

    pub async fn people(&self, actor: &Principal) -> Result<Vec<Person>> {
        require(actor, &[Role::Admin, Role::Auditor], "listing people")?;
        Ok(self.store.people().await?)
    }

    pub async fn tokens(&self, actor: &Principal) -> Result<Vec<TokenRecord>> {
        require(actor, &[Role::Admin, Role::Auditor], "listing tokens")?;
        Ok(self.store.tokens().await?)
    }

    /// Gives every person's token issued before people existed a person, by its name;
    /// names that are one person once normalised (or confusable) share it, and each such
    /// merge is logged and audited. Runs at start; nothing to do is one query.
    async fn adopt_legacy_tokens(&self) -> Result<Vec<Merge>> {
        let mut legacy: Vec<TokenRecord> = self
            .store
            .tokens()
            .await?
            .into_iter()
            .filter(|t| t.role != Role::Agent && t.person_id.is_none())
            .collect();
        if legacy.is_empty() {
            return Ok(Vec::new());
        }
        legacy.sort_by_key(|t| (t.created_at, t.id));
        let known = self.store.people().await?;
        let names: Vec<(Uuid, String)> = legacy.iter().map(|t| (t.id, t.name.clone())).collect();
        let plan = people::adopt(&known, &names);
        let now = self.now();
        let actor = "migration";
        let mut audits = Vec::new();
        let created: Vec<Person> = plan
            .new_people
            .iter()
            .map(|name| {
                let (person, audit) = self.new_person(actor, name.clone(), now);
                audits.push(audit);
                person
            })
            .collect();
        let owners: Vec<(Uuid, Uuid)> = plan
            .owners
            .iter()
            .map(|(token, owner)| {
                let person = match owner {
                    people::Owner::Existing(id) => *id,
                    people::Owner::New(i) => created[*i].id,
                };
                (*token, person)
            })
            .collect();
        for (token, person) in &owners {
            audits.push(NewAudit::new(
                now,
                actor,
                "token.person_assigned",
                format!("token:{token}"),
                json!({ "person_id": person }),
            ));
        }
        for merge in &plan.merges {
            tracing::warn!(
                person = %Shown(&merge.person),
                names = %Shown(&merge.names.join("`, `")),
                "tokens issued under these names now belong to one person (the names are equal \
                 once case, whitespace and Unicode forms are normalised, or confusable): they \
                 cannot approve each other's windows; if they are different people, revoke \
                 the tokens and issue new ones to distinct names"
            );
            audits.push(NewAudit::new(
                now,
                actor,
                "person.names_merged",
                format!("person:{}", merge.person),
                json!({ "person": merge.person, "token_names": merge.names }),
            ));
        }
        self.store.adopt_tokens(created, owners, audits).await?;
        tracing::info!(
            tokens = legacy.len(),
            people = plan.new_people.len(),
            "tokens issued before people existed now belong to people"
        );
        Ok(plan.merges)
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
            chain_keyed: true,
        };
        let mut chain_key = [0u8; 32];
        getrandom::fill(&mut chain_key).expect("the operating system provides randomness");
        let chain_key = ChainKey::from_bytes(chain_key);
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
            person_id: None,
            person: None,
            created_by_token: None,
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
                Some(chain_key.clone()),
                audit,
            )
            .await
        {
            Ok(()) => {}
            Err(StoreError::NotFound(_)) => return Err(refused()),
            Err(err) => return Err(err.into()),
        }
        if let Some(baseline) = &request.baseline {
            self.anchor_enrollment(&host, baseline, now).await?;
        }
        tracing::info!(host = %host.id, hostname = %Shown(&host.hostname), "host enrolled");
        Ok(EnrollResponse {
            host_id: host.id,
            credential: minted.text,
            chain_key: Some(chain_key),
        })
    }

    // ----- agents -----

    pub async fn ingest(&self, agent: &Principal, batch: EventBatch) -> Result<IngestAck> {
        let host_id = agent_host(agent, "report events")?;
        let ingest_started = Instant::now();
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
        // An absurd `seq` is refused, never trusted.
        let problems = crate::chain::batch_sequence_problems(&batch.events, host.stored_seq);
        if !problems.is_empty() {
            tracing::warn!(host = %host_id, problems = %problems.join("; "), "batch refused: sequence numbers out of bounds");
            return Err(Error::BadRequest(format!(
                "{}; nothing was stored",
                problems.join("; ")
            )));
        }
        // When each event can have been spooled, from what this collector saw (one query
        // per batch): authorization rests on that, never on the agent's clock.
        let bounder = Bounder::new(self.store.spool_marks(host_id).await?, host.enrolled_at);
        let received_at = self.now();
        let tolerance = self.settings.tolerance_ms;
        // Local re-baselines move the anchored root once stored (rare: off the common path).
        let rebaselines: Vec<_> = batch
            .events
            .iter()
            .filter(|e| e.subject.0 == driftwatch_common::api::v1::BASELINE_SUBJECT)
            .cloned()
            .collect();
        let index = self.index.read().await;
        // Timed per batch: an `Instant` per event would tax the hot path.
        let matching_started = Instant::now();
        let decided: Vec<Decided> = batch
            .events
            .into_iter()
            .map(|event| {
                let observed_at = from_offset(event.observed_at);
                let spooled = bounder.bounds(event.seq, received_at);
                let judgement = matcher::judge(
                    &index,
                    host_facts(&host),
                    EventFacts {
                        subject: &event.subject.0,
                        kind: event.kind,
                        after: event.after.as_ref(),
                        spooled,
                        actor: event.actor.as_ref(),
                        provenance: event.provenance.as_ref(),
                    },
                    tolerance,
                );
                Decided {
                    event_time: spooled.clamp(observed_at.saturating_sub(host.skew_ms)),
                    spool: SpoolTime {
                        spooled_after: spooled.after,
                        spooled_before: spooled.before,
                        clock_claim: spool_time::check_claim(observed_at, spooled, tolerance),
                        not_provably_in: judgement.not_provably_in,
                    },
                    event,
                    outcome: judgement.outcome,
                }
            })
            .collect();
        metrics::histogram!(crate::telemetry::MATCH_SECONDS)
            .record(matching_started.elapsed().as_secs_f64());
        let untraced = decided.iter().filter(|d| d.outcome.needs_review()).count();
        let false_claim = clock_claim_alert(&host, &decided, tolerance);
        let outcome = self.store.ingest(host_id, decided, received_at).await?;
        drop(index);
        if let Some(alert) = false_claim.filter(|_| outcome.false_claims > 0) {
            metrics::counter!("driftwatch_clock_claims_false_total")
                .increment(u64::from(outcome.false_claims));
            tracing::warn!(host = %host_id, events = outcome.false_claims, "events claim times outside what the collector saw");
            self.store
                .raise_clock_alert(alert, received_at, self.settings.burst_ms)
                .await?;
        }
        // A re-baseline refused (a forgery, a conflict) was not stored: it moves nothing.
        let rebaselines: Vec<_> = rebaselines
            .into_iter()
            .filter(|e| !outcome.chain_problems.iter().any(|p| p.refused(e)))
            .collect();
        if !rebaselines.is_empty() {
            self.anchor_rebaselines(&host, &rebaselines, received_at)
                .await?;
        }

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
        if outcome.rejected > 0 {
            metrics::counter!("driftwatch_events_ingested_total", "result" => "forged")
                .increment(outcome.rejected.into());
        }
        metrics::histogram!(crate::telemetry::INGEST_SECONDS)
            .record(ingest_started.elapsed().as_secs_f64());
        Ok(IngestAck {
            accepted: outcome.accepted,
            duplicates: outcome.duplicates,
            last_seq: outcome.last_seq,
            rejected: outcome.rejected,
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
        // Before the results are recorded: an accept moves the anchor only while pending.
        self.anchor_heartbeat(&before, &heartbeat, now).await?;
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
            audit::evidence::request_details(&window),
        );
        self.store.insert_window(window.clone(), audit).await?;
        tracing::info!(window = %window.id, ticket = %Shown(&window.ticket), by = %Shown(&actor.name), "window requested");
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
        let issuers = match action {
            Action::Approve | Action::Reject => self.issuers(actor).await?,
            Action::Cancel | Action::Close => Vec::new(),
        };
        lifecycle::check(&window, action, actor, &issuers).map_err(|refusal| match refusal {
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
            json!({
                "ticket": window.ticket, "comment": comment, "requester": window.requester,
                // Which token decided, and who issued it (an admin who issues someone a
                // token can act as them: the log says so).
                "token": actor.token_id, "token_issuers": issuers,
            }),
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
        tracing::info!(window = %id, action = %action, by = %Shown(&actor.name), "window decided");
        Ok(decision)
    }

    /// Who issued `actor`'s token, and who issued that one, back to a token made offline:
    /// a requester among them cannot approve through it (the admin self-mint loophole).
    async fn issuers(&self, actor: &Principal) -> Result<Vec<String>> {
        let lineage = match self.store.token_lineage(actor.token_id).await {
            Ok(lineage) => lineage,
            // A principal made in-process (benchmarks), not from a stored token.
            Err(StoreError::NotFound(_)) => return Ok(Vec::new()),
            Err(err) => return Err(err.into()),
        };
        let mut names: Vec<String> = Vec::new();
        for (i, token) in lineage.iter().enumerate() {
            let mut add = |name: String| {
                if !names.contains(&name) {
                    names.push(name);
                }
            };
            if i > 0 {
                add(token.person.clone().unwrap_or_else(|| token.name.clone()));
            }
            add(token.created_by.clone());
        }
        Ok(names)
    }

    /// After-the-fact coverage: events that needed review and that `window` authorizes.
    async fn reevaluate(&self, window: &Window, by: &str) -> Result<ReviewOutcome> {
        let tolerance = self.settings.tolerance_ms;
        let single = WindowIndex::build(std::slice::from_ref(window))
            .map_err(|(_, why)| Error::Store(StoreError::other(why)))?;
        // Candidates are pre-selected by spool bounds within the widest span the window
        // can cover; the matcher applies the rule exactly (close time, occurrences).
        let candidates = self
            .store
            .review_candidates(window.start - tolerance, window.end + tolerance)
            .await?;
        let decisions: Vec<(Uuid, Outcome)> = candidates
            .iter()
            .filter_map(|c| {
                let outcome = matcher::match_event(
                    &single,
                    host_facts(&c.host),
                    EventFacts {
                        subject: &c.event.subject.0,
                        kind: c.event.kind,
                        after: c.event.after.as_ref(),
                        spooled: c.spooled,
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

    pub async fn window(&self, actor: &Principal, id: Uuid) -> Result<Window> {
        require(actor, &Role::PEOPLE, "reading windows")?;
        Ok(self.store.window(id).await?)
    }

    pub async fn windows(
        &self,
        actor: &Principal,
        status: Option<WindowStatus>,
    ) -> Result<Vec<Window>> {
        require(actor, &Role::PEOPLE, "reading windows")?;
        Ok(self.store.windows(status).await?)
    }

    // ----- drift -----

    pub async fn drift_items(
        &self,
        actor: &Principal,
        mut filter: DriftFilter,
        limit: Limit,
    ) -> Result<Vec<DriftItem>> {
        require(actor, &Role::PEOPLE, "reading drift")?;
        filter.limit = Some(limit.checked()?);
        Ok(self.store.drift_items(filter).await?)
    }

    pub async fn drift_item(
        &self,
        actor: &Principal,
        id: Uuid,
    ) -> Result<(DriftItem, Vec<StoredEvent>)> {
        require(actor, &Role::PEOPLE, "reading drift")?;
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

    /// The log checked with the collector's key and the checkpoints it kept.
    pub async fn verify_audit(&self, actor: &Principal) -> Result<VerifyReport> {
        require(actor, &Role::PEOPLE, "verifying the audit log")?;
        Ok(self.verify_audit_log(&[]).await?.0)
    }

    /// One round of the background work: alerts due after their hold, newly silent agents,
    /// delivery of the outbox.
    pub async fn tick(&self) -> Result<()> {
        let now = self.now();
        let raised = self
            .store
            .raise_due_alerts(
                now,
                self.settings.hold_ms,
                self.settings.burst_ms,
                crate::alerts::WORDS,
            )
            .await?;
        let silent = self
            .store
            .raise_silent_alerts(now, self.settings.silent_after_ms, crate::alerts::WORDS)
            .await?;
        let emergency = self
            .store
            .raise_emergency_alerts(
                now,
                self.settings.emergency_approval_ms,
                crate::alerts::WORDS,
            )
            .await?;
        if raised + silent + emergency > 0 {
            tracing::info!(untraced = raised, silent, emergency, "alerts raised");
        }
        self.prune_if_due().await?;
        self.checkpoint_audit_if_due().await?;
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
    pub async fn alerts(&self, actor: &Principal, limit: Limit) -> Result<Vec<Alert>> {
        require(actor, &Role::PEOPLE, "reading alerts")?;
        let limit = limit.checked()?;
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
                        dead_letter: None,
                        dropped: None,
                    });
                }
            }
            alert.deliveries.sort_by(|a, b| a.sink.cmp(&b.sink));
        }
        Ok(alerts)
    }

    /// Alerts a receiver refused for good (dead letters no admin has dropped), oldest first.
    pub async fn dead_letters(&self, actor: &Principal, limit: u32) -> Result<Vec<Alert>> {
        require(actor, &Role::PEOPLE, "reading dead letters")?;
        Ok(self.store.dead_letters(limit).await?)
    }

    /// An admin sends a dead-lettered delivery again (the receiver was fixed): due at once.
    pub async fn retry_dead_letter(
        &self,
        actor: &Principal,
        alert_id: Uuid,
        sink: &str,
    ) -> Result<Alert> {
        require(actor, &[Role::Admin], "retrying a dead-lettered alert")?;
        self.configured_sink(sink)?;
        let now = self.now();
        let audit = NewAudit::new(
            now,
            &actor.name,
            "alert.retried",
            format!("alert:{alert_id}"),
            json!({ "sink": sink }),
        );
        let alert = self
            .store
            .retry_dead_letter(alert_id, sink.to_owned(), now, audit)
            .await?;
        tracing::info!(alert = %alert_id, sink = %Shown(sink), by = %Shown(&actor.name), "dead-lettered alert queued again");
        Ok(alert)
    }

    /// An admin sends every dead letter of `sink` again (the receiver or its credentials
    /// were fixed, after refusing everything with 401 or 404); one audit entry with the
    /// count, none when there was nothing to retry.
    pub async fn retry_dead_letters(&self, actor: &Principal, sink: &str) -> Result<u32> {
        require(actor, &[Role::Admin], "retrying dead-lettered alerts")?;
        self.configured_sink(sink)?;
        let now = self.now();
        let audit = NewAudit::new(
            now,
            &actor.name,
            "alert.retried",
            format!("alert_sink:{sink}"),
            json!({ "sink": sink, "all": true }),
        );
        let retried = self
            .store
            .retry_dead_letters(sink.to_owned(), now, audit)
            .await?;
        tracing::info!(sink = %Shown(sink), retried, by = %Shown(&actor.name), "dead-lettered alerts queued again");
        Ok(retried)
    }

    /// An admin gives up on a dead-lettered delivery, saying why: that sink no longer
    /// owes the alert.
    pub async fn drop_dead_letter(
        &self,
        actor: &Principal,
        alert_id: Uuid,
        sink: &str,
        reason: &str,
    ) -> Result<Alert> {
        require(actor, &[Role::Admin], "dropping a dead-lettered alert")?;
        let reason = reason.trim();
        if reason.is_empty() || reason.chars().count() > 1000 {
            return Err(Error::BadRequest(
                "a reason of 1 to 1000 characters is required to drop a dead letter".into(),
            ));
        }
        let now = self.now();
        let audit = NewAudit::new(
            now,
            &actor.name,
            "alert.dropped",
            format!("alert:{alert_id}"),
            json!({ "sink": sink, "reason": reason }),
        );
        let dropped = crate::store::Dropped {
            at: now,
            by: actor.name.clone(),
            reason: reason.to_owned(),
        };
        let alert = self
            .store
            .drop_dead_letter(
                alert_id,
                sink.to_owned(),
                dropped,
                self.sinks.names(),
                audit,
            )
            .await?;
        tracing::info!(alert = %alert_id, sink = %Shown(sink), by = %Shown(&actor.name), "dead-lettered alert dropped");
        Ok(alert)
    }

    fn configured_sink(&self, sink: &str) -> Result<()> {
        let names = self.sinks.names();
        if names.iter().any(|n| n == sink) {
            return Ok(());
        }
        Err(Error::BadRequest(format!(
            "no alert sink `{}` is configured (configured: {})",
            Shown(sink),
            if names.is_empty() {
                "none".to_owned()
            } else {
                names.join(", ")
            }
        )))
    }

    /// The enrolled hosts, for people.
    pub async fn hosts(&self, actor: &Principal) -> Result<Vec<Host>> {
        require(actor, &Role::PEOPLE, "reading hosts")?;
        Ok(self.store.hosts().await?)
    }

    /// Whether the database answers (`/readyz`, no caller: a probe).
    pub async fn database_answers(&self) -> Result<()> {
        Ok(self.store.ping().await?)
    }

    /// Whether `id` names an issued token (revoked or not), so that only real token ids
    /// count toward a lockout (`api::extract`); asked after a failed authentication.
    pub async fn is_issued_token(&self, id: Uuid) -> bool {
        self.store.token(id).await.is_ok()
    }

    /// The `/metrics` exposition. `reader` is the caller when the configuration requires
    /// a token (`[metrics] require_token`); gauges and ages that cannot be read are
    /// logged and left out, so a scrape still answers.
    pub async fn metrics_exposition(&self, reader: Option<&Principal>) -> Result<String> {
        if self.settings.metrics.require_token {
            let reader = reader.ok_or_else(|| Error::Unauthorized("missing token".into()))?;
            require(reader, &Role::METRICS_READERS, "reading metrics")?;
        }
        if let Err(err) = self.refresh_gauges().await {
            tracing::warn!(error = %err, "cannot refresh the gauges");
        }
        let mut body = crate::telemetry::render();
        match self.heartbeat_age_metrics().await {
            Ok(text) => body.push_str(&text),
            Err(err) => tracing::warn!(error = %err, "cannot read the heartbeat ages"),
        }
        Ok(body)
    }

    /// Sets the gauges `/metrics` shows.
    async fn refresh_gauges(&self) -> Result<()> {
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
            metrics::gauge!("driftwatch_alert_deliveries_failing", "sink" => backlog.sink.clone())
                .set(backlog.failing as f64);
            metrics::gauge!("driftwatch_alert_dead_letters", "sink" => backlog.sink)
                .set(backlog.dead_letters as f64);
        }
        metrics::gauge!("driftwatch_windows_indexed").set(self.index.read().await.len() as f64);
        let untraced_age = stats
            .oldest_untraced_since
            .map_or(0.0, |since| (self.now() - since).max(0) as f64 / 1000.0);
        metrics::gauge!("driftwatch_drift_untraced_oldest_age_seconds").set(untraced_age);
        Ok(())
    }

    /// The per-host heartbeat ages, bounded by `[metrics] heartbeat_age_hosts`, as
    /// exposition text (`telemetry::heartbeat_age`).
    async fn heartbeat_age_metrics(&self) -> Result<String> {
        let hosts = self.store.hosts().await?;
        let seen: Vec<_> = hosts
            .iter()
            .map(|h| crate::telemetry::heartbeat_age::HostSeen {
                host_id: h.id.to_string(),
                hostname: &h.hostname,
                seen_at: h.last_seen_at.unwrap_or(h.enrolled_at),
            })
            .collect();
        Ok(crate::telemetry::heartbeat_age::exposition(
            &seen,
            self.now(),
            self.settings.metrics.heartbeat_age_hosts,
        ))
    }
}

/// A token just issued: its record and its text (shown once; no `Debug`, so it is never
/// logged by accident).
#[derive(Clone)]
pub struct IssuedToken {
    pub record: TokenRecord,
    pub text: String,
    /// Whether the person was created for it.
    pub person_created: bool,
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
    }
}

/// The alert for a batch whose events claim times their spool bounds disprove (`None`
/// when every claim agrees); raised once per host and burst.
fn clock_claim_alert(host: &Host, decided: &[Decided], tolerance: Millis) -> Option<NewAlert> {
    let false_claims: Vec<&Decided> = decided
        .iter()
        .filter(|d| d.spool.clock_claim.is_false())
        .collect();
    let first = false_claims.first()?;
    let claimed = from_offset(first.event.observed_at);
    let direction = match first.spool.clock_claim {
        spool_time::ClockClaim::AfterBounds => "its clock runs ahead or was set forward",
        // No heartbeat preceded it: the enrollment is the earliest the collector vouches for.
        _ if first.spool.spooled_after == host.enrolled_at => {
            "its clock runs behind or was set back, or the agent spooled it before it enrolled"
        }
        _ => "its clock runs behind or was set back",
    };
    let summary = format!(
        "{} event(s) from {} claim times the collector can disprove ({direction}; tolerance          {} s): event {} ({}) claims {} but reached the agent's spool between {} and {}, by          the collector's clock. Such events are judged on the collector's clock only.",
        false_claims.len(),
        host.hostname,
        tolerance / 1000,
        first.event.seq,
        first.event.subject,
        rfc3339(claimed),
        rfc3339(first.spool.spooled_after),
        rfc3339(first.spool.spooled_before),
    );
    let events: Vec<_> = false_claims
        .iter()
        .take(20)
        .map(|d| {
            json!({
                "event_id": d.event.id, "seq": d.event.seq, "subject": d.event.subject,
                "observed_at": rfc3339(from_offset(d.event.observed_at)),
                "spooled_after": rfc3339(d.spool.spooled_after),
                "spooled_before": rfc3339(d.spool.spooled_before),
                "clock_claim": d.spool.clock_claim, "outcome": d.outcome.name(),
            })
        })
        .collect();
    Some(NewAlert {
        kind: "clock_claim".into(),
        host_id: Some(host.id),
        body: json!({
            "kind": "clock_claim",
            "host": { "id": host.id, "hostname": host.hostname },
            "summary": summary,
            "events": events,
        }),
    })
}

/// Fails unless `actor` has one of `roles`.
pub(crate) fn require(actor: &Principal, roles: &[Role], doing: &str) -> Result<()> {
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
