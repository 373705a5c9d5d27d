//! The background round, readiness and the `/metrics` exposition.

use std::sync::Arc;

use crate::alerts::{self};

use crate::identity::{Principal, Role};
use crate::store::Store;

use super::{App, Error, Result, require};

/// The lease of the background rounds that must run once across the collector nodes of
/// one database (`Store::take_lease`).
const ROUNDS_LEASE: &str = "background-rounds";
/// How long the lease lasts unless its node renews it (every round, each second): a
/// killed node's rounds pass on to another node within this.
const ROUNDS_LEASE_MS: i64 = 10_000;

impl<S: Store> App<S> {
    /// One round of the background work: alerts due after their hold, newly silent agents,
    /// late emergencies, retention and audit checkpoints on the node holding the rounds'
    /// lease (one across the collector nodes of a database); on every node, session
    /// cleanup and delivery of the outbox (each delivery claimed first).
    pub async fn tick(&self) -> Result<()> {
        let now = self.now();
        let leading = self
            .store
            .take_lease(ROUNDS_LEASE.into(), self.node, ROUNDS_LEASE_MS)
            .await?;
        if leading {
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
        }
        self.prune_sessions().await?;
        alerts::deliver_pending(&self.store, &self.sinks, Arc::clone(&self.clock)).await?;
        Ok(())
    }

    /// Whether the database answers (`/readyz`, no caller: a probe).
    pub async fn database_answers(&self) -> Result<()> {
        Ok(self.store.ping().await?)
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
