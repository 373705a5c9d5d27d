//! Alerts: what they say, and getting them out.
//!
//! Alerts are recorded in the store first (the outbox), in the transaction that raised
//! them; [`deliver_pending`] then hands each to every sink and marks it delivered, retrying
//! on the next round if a sink failed. Sinks: JSON-lines files for now.

mod jsonl;

use std::sync::Arc;

use serde_json::{Value, json};
use uuid::Uuid;

pub use jsonl::JsonLines;

use crate::clock::{Clock, rfc3339};
use crate::store::{Alert, DriftItem, Store, StoreError};
use driftwatch_config::collector::AlertSink as SinkConfig;

/// Somewhere alerts go. Delivery is blocking I/O: it runs on the blocking pool.
pub trait AlertSink: Send + Sync + 'static {
    fn name(&self) -> String;
    fn deliver(&self, alert: &Alert) -> Result<(), String>;
}

/// The sinks of the configuration.
pub fn sinks(configs: &[SinkConfig]) -> Vec<Arc<dyn AlertSink>> {
    configs
        .iter()
        .map(|config| match config {
            SinkConfig::JsonLines { path } => {
                Arc::new(JsonLines::new(path.clone())) as Arc<dyn AlertSink>
            }
        })
        .collect()
}

/// The body of an untraced-drift alert: one host, every item of the burst.
pub fn untraced_drift_body(
    host_id: Uuid,
    hostname: &str,
    items: &[DriftItem],
    held_ms: i64,
) -> Value {
    let listed: Vec<Value> = items
        .iter()
        .map(|item| {
            json!({
                "drift_id": item.id,
                "subject": item.subject,
                "status": item.status,
                "reason": item.reason,
                "window_id": item.window_id,
                "first_seen_at": item.untraced_since.map(rfc3339),
                "last_event_at": rfc3339(item.last_event_at),
                "events": item.events,
            })
        })
        .collect();
    let summary = match items {
        [one] => match one.reason.as_deref() {
            // Flagged inside a window (wrong implementer, made by the approver...): say so.
            Some(reason) if reason != "untraced" => {
                format!("change on {hostname} flagged {reason}: {}", one.subject)
            }
            _ => format!("untraced change on {hostname}: {}", one.subject),
        },
        many if many.iter().all(|i| i.reason.as_deref() == Some("untraced")) => {
            format!("{} untraced changes on {hostname}", many.len())
        }
        many => format!(
            "{} changes on {hostname} need review (untraced, or flagged inside a window)",
            many.len()
        ),
    };
    json!({
        "kind": "untraced_drift",
        "host": { "id": host_id, "hostname": hostname },
        "summary": summary,
        "held_secs": held_ms / 1000,
        "items": listed,
    })
}

/// Delivers undelivered alerts, oldest first; stops at the first failure (the next round
/// retries it). Returns how many were delivered.
pub async fn deliver_pending<S: Store>(
    store: &S,
    sinks: &[Arc<dyn AlertSink>],
    clock: &dyn Clock,
) -> Result<u32, StoreError> {
    let mut delivered = 0;
    for alert in store.undelivered_alerts(100).await? {
        let mut failure = None;
        for sink in sinks {
            let (sink, copy) = (Arc::clone(sink), alert.clone());
            let outcome = tokio::task::spawn_blocking(move || sink.deliver(&copy))
                .await
                .unwrap_or_else(|err| Err(format!("delivery task failed: {err}")));
            if let Err(err) = outcome {
                failure = Some(err);
                break;
            }
        }
        store
            .mark_alert(alert.id, clock.now(), failure.clone())
            .await?;
        match failure {
            None => {
                delivered += 1;
                metrics::counter!("driftwatch_alerts_delivered_total").increment(1);
            }
            Some(error) => {
                metrics::counter!("driftwatch_alert_delivery_failures_total").increment(1);
                tracing::warn!(alert = %alert.id, error = %error, "alert delivery failed; will retry");
                break;
            }
        }
    }
    Ok(delivered)
}
