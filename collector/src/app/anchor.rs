//! `App`'s side of the anchored baseline: feeds `crate::anchor` what enrollments,
//! heartbeats and re-baseline events say, and stores its judgements with their alerts.

use driftwatch_common::api::v1::{BaselineAnchor, CommandOutcome, DriftEvent, Heartbeat};
use serde_json::json;
use uuid::Uuid;

use super::{App, Result};
use crate::anchor::{self, AnchorState, Judgement, Problem};
use crate::clock::Millis;
use crate::store::{AnchorChange, Host, NewAlert, Store, StoreError};

impl<S: Store> App<S> {
    /// The root a host reported at enrollment becomes its first expected root.
    pub(super) async fn anchor_enrollment(
        &self,
        host: &Host,
        baseline: &BaselineAnchor,
        now: Millis,
    ) -> Result<()> {
        let judged = anchor::at_enrollment(baseline, now);
        self.save_judgement(host, AnchorState::default(), judged, None, now)
            .await
            .map(drop)
    }

    /// Judges the root a heartbeat reports (after the accepts it says were applied).
    pub(super) async fn anchor_heartbeat(
        &self,
        host: &Host,
        heartbeat: &Heartbeat,
        now: Millis,
    ) -> Result<()> {
        let applied: Vec<(Uuid, &BaselineAnchor)> = heartbeat
            .results
            .iter()
            .filter_map(|r| match (&r.outcome, &r.baseline) {
                (CommandOutcome::Applied, Some(b)) => Some((r.command_id, b)),
                _ => None,
            })
            .collect();
        if applied.is_empty() && heartbeat.baseline.is_none() {
            return Ok(());
        }
        let view = self
            .store
            .anchor(
                host.id,
                heartbeat.baseline.iter().map(|b| b.root).collect(),
                applied.iter().map(|(id, _)| *id).collect(),
            )
            .await?;
        let beat = anchor::Beat {
            // Only accepts this collector issued to this host and has not seen answered.
            applied: applied
                .into_iter()
                .filter(|(id, _)| view.pending_commands.contains(id))
                .collect(),
            reported: heartbeat.baseline.as_ref(),
            reported_known: !view.known_roots.is_empty(),
            events_outstanding: heartbeat.last_seq > host.stored_seq,
            now,
        };
        let judged = anchor::on_heartbeat(&view.state, &beat);
        // Judged on a stale state (a re-baseline event moved it meanwhile): the next
        // heartbeat judges again.
        self.save_judgement(host, view.state, judged, heartbeat.baseline.as_ref(), now)
            .await
            .map(drop)
    }

    /// Re-baseline events just stored move the expected root (once per event).
    pub(super) async fn anchor_rebaselines(
        &self,
        host: &Host,
        events: &[DriftEvent],
        now: Millis,
    ) -> Result<()> {
        for rebaseline in events.iter().filter_map(anchor::rebaseline_of) {
            // A heartbeat may move the state between reading and saving: judge again.
            for _ in 0..5 {
                let view = self
                    .store
                    .anchor(
                        host.id,
                        rebaseline.from.iter().map(|b| b.root).collect(),
                        Vec::new(),
                    )
                    .await?;
                let judged = anchor::on_rebaseline(
                    &view.state,
                    &rebaseline,
                    !view.known_roots.is_empty(),
                    now,
                );
                if self
                    .save_judgement(host, view.state, judged, rebaseline.from.as_ref(), now)
                    .await?
                {
                    break;
                }
            }
        }
        Ok(())
    }

    async fn save_judgement(
        &self,
        host: &Host,
        before: AnchorState,
        judged: Judgement,
        reported: Option<&BaselineAnchor>,
        now: Millis,
    ) -> Result<bool> {
        if !judged.changes(&before) {
            return Ok(true);
        }
        let alert = judged
            .alert
            .map(|problem| alert(host, problem, before.expected.as_ref(), reported));
        if let Some(problem) = judged.alert {
            metrics::counter!("driftwatch_baseline_anchor_alerts_total", "problem" => problem.name())
                .increment(1);
            tracing::warn!(host = %host.id, hostname = %host.hostname, problem = problem.name(), "baseline differs from the one the collector expects");
        }
        let change = AnchorChange {
            host_id: host.id,
            judged: before,
            state: judged.state,
            moved: judged.moved,
            alert,
            at: now,
        };
        match self.store.save_anchor(change).await {
            Ok(_) => Ok(true),
            Err(StoreError::Conflict(why)) => {
                tracing::debug!(host = %host.id, %why, "baseline anchor judged on a stale state");
                Ok(false)
            }
            Err(err) => Err(err.into()),
        }
    }
}

fn alert(
    host: &Host,
    problem: Problem,
    expected: Option<&anchor::Expected>,
    reported: Option<&BaselineAnchor>,
) -> NewAlert {
    NewAlert {
        kind: "baseline_anchor".into(),
        host_id: Some(host.id),
        body: json!({
            "kind": "baseline_anchor",
            "host": { "id": host.id, "hostname": host.hostname },
            "problem": problem.name(),
            "summary": anchor::summary(problem, &host.hostname),
            "expected": expected,
            "reported": reported,
        }),
    }
}
