//! Alerts, the dead-letter queue and the configured sinks.

use serde_json::json;
use uuid::Uuid;

use crate::audit::NewAudit;

use crate::identity::{Principal, Role};
use crate::store::{Alert, DeliveryState, SinkDelivery, Store};
use driftwatch_common::pathbytes::Shown;

use super::{App, Error, Limit, Result, require};

impl<S: Store> App<S> {
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
}
