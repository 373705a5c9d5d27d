//! What agents do: enrollment, ingest with matching, heartbeats; the enrolled hosts.

use std::sync::atomic::Ordering;
use std::time::Instant;

use driftwatch_common::api::v1::{
    EnrollRequest, EnrollResponse, EventBatch, Heartbeat, HeartbeatResponse, IngestAck,
};
use driftwatch_common::chain_key::ChainKey;
use driftwatch_common::limits;
use serde_json::json;
use uuid::Uuid;

use crate::audit::NewAudit;
use crate::clock::{Millis, from_offset, rfc3339};
use crate::identity::{self, Principal, Role, TokenKind};
use crate::matcher::{self, EventFacts, HostFacts};
use crate::spool_time::{self, Bounder, SpoolTime};
use crate::store::{
    Decided, HeartbeatRecord, Host, Ingested, NewAlert, Store, StoreError, TokenRecord,
};
use crate::windows::validate::{self};
use driftwatch_common::pathbytes::Shown;

use super::{App, Error, Result, agent_host, check_name, refuse_oversized, require};

impl<S: Store> App<S> {
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
        let mut events = batch.events;
        // Matched with this node's index, stored only if no node changed a window since
        // it was built (checked in the batch's transaction); else rebuilt and matched again.
        let (index, outcome, untraced, false_claim) = loop {
            let index = self.index.read().await;
            let version = self.index_version.load(Ordering::SeqCst);
            // Timed per batch: an `Instant` per event would tax the hot path.
            let matching_started = Instant::now();
            let decided: Vec<Decided> = events
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
            match self
                .store
                .ingest_at(host_id, decided, received_at, version)
                .await?
            {
                Ingested::Stored(outcome) => break (index, outcome, untraced, false_claim),
                Ingested::StaleWindows(decided) => {
                    drop(index);
                    events = decided.into_iter().map(|d| d.event).collect();
                    self.follow_windows().await?;
                }
            }
        };
        drop(index);
        self.drift_changed();
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

    /// The enrolled hosts, for people.
    pub async fn hosts(&self, actor: &Principal) -> Result<Vec<Host>> {
        require(actor, &Role::PEOPLE, "reading hosts")?;
        Ok(self.store.hosts().await?)
    }
}

pub(super) fn host_facts(host: &Host) -> HostFacts<'_> {
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
