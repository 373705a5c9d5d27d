//! Alerts: what they say, and getting them out.
//!
//! Alerts are recorded in the store first (the outbox), in the transaction that raised
//! them; [`deliver_pending`] then hands each to every sink. Delivery state is kept per
//! alert and sink (`alert_deliveries`): a sink that fails backs off alone
//! ([`backoff::retry_delay`]) and does not hold the others back, a sink never sends an
//! alert it has delivered, and an alert counts as delivered once every sink has it. Sinks:
//! JSON-lines files ([`jsonl`]), webhooks with a generic or a Slack payload ([`webhook`]),
//! RFC 5424 syslog over UDP or TCP ([`syslog`]).

pub mod backoff;
mod jsonl;
pub mod syslog;
pub mod webhook;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use uuid::Uuid;

pub use jsonl::JsonLines;
pub use syslog::Syslog;
pub use webhook::Webhook;

use crate::clock::{Clock, Millis, rfc3339};
use crate::store::{Alert, DeliveryAttempt, DriftItem, Store, StoreError};
use driftwatch_config::collector::{AlertSink as SinkConfig, SinkTarget};

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// How many due alerts one sink takes per round.
const ROUND_LIMIT: u32 = 100;

/// Somewhere alerts go.
pub trait AlertSink: Send + Sync + 'static {
    /// The configured name, unique among the sinks; delivery state is kept under it.
    fn name(&self) -> &str;
    /// The settings, secret-free: what the audit log records.
    fn describe(&self) -> Value;
    /// Settings that must change the configuration digest but stay out of the audit
    /// details (a webhook URL's path may hold a token).
    fn digest_extra(&self) -> String {
        String::new()
    }
    /// How long one attempt may take before it counts as failed.
    fn timeout(&self) -> Duration {
        Duration::from_secs(30)
    }
    fn deliver<'a>(&'a self, alert: &'a Alert) -> BoxFuture<'a, Result<(), String>>;
}

/// One configured sink and its in-memory pause (the persisted state is in the store).
struct Channel {
    sink: Arc<dyn AlertSink>,
    retry_max: Duration,
    /// After a failure, nothing is sent to this sink before then.
    paused_until: Mutex<Millis>,
}

/// The sinks of the configuration.
pub struct Sinks {
    channels: Vec<Arc<Channel>>,
    /// Whether alerts held only by sinks no longer configured were settled since start.
    settled: AtomicBool,
}

impl Sinks {
    /// Builds every sink; reads CA and secret files, so a missing one stops the start.
    pub fn from_config(configs: &[SinkConfig]) -> Result<Sinks, String> {
        let mut sinks = Vec::new();
        for config in configs {
            let sink: Arc<dyn AlertSink> = match &config.target {
                SinkTarget::JsonLines { path } => {
                    Arc::new(JsonLines::new(config.name.clone(), path.clone()))
                }
                SinkTarget::Webhook(hook) => {
                    Arc::new(Webhook::new(config.name.clone(), hook.clone())?)
                }
                SinkTarget::Syslog(syslog) => {
                    Arc::new(Syslog::new(config.name.clone(), syslog.clone()))
                }
            };
            sinks.push((sink, config.retry_max));
        }
        Ok(Sinks::new(sinks))
    }

    /// Sinks with their longest retry wait.
    pub fn new(sinks: Vec<(Arc<dyn AlertSink>, Duration)>) -> Sinks {
        Sinks {
            channels: sinks
                .into_iter()
                .map(|(sink, retry_max)| {
                    Arc::new(Channel {
                        sink,
                        retry_max,
                        paused_until: Mutex::new(Millis::MIN),
                    })
                })
                .collect(),
            settled: AtomicBool::new(false),
        }
    }

    /// No sink: alerts are recorded and listed by the API only.
    pub fn none() -> Sinks {
        Sinks::new(Vec::new())
    }

    pub fn names(&self) -> Vec<String> {
        self.channels
            .iter()
            .map(|c| c.sink.name().to_owned())
            .collect()
    }

    /// A digest of the whole sink configuration and its secret-free description, for the
    /// audit log. Secrets are never read into either (only their file names).
    pub fn description(&self) -> (String, Value) {
        let described: Vec<Value> = self
            .channels
            .iter()
            .map(|c| {
                let mut value = c.sink.describe();
                if let Some(object) = value.as_object_mut() {
                    object.insert("name".into(), c.sink.name().into());
                    object.insert("retry_max_secs".into(), c.retry_max.as_secs().into());
                }
                value
            })
            .collect();
        let mut hasher = Sha256::new();
        for (value, channel) in described.iter().zip(&self.channels) {
            hasher.update(value.to_string().as_bytes());
            hasher.update([0]);
            hasher.update(channel.sink.digest_extra().as_bytes());
            hasher.update([0]);
        }
        (
            crate::identity::hex(&hasher.finalize()),
            Value::Array(described),
        )
    }
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
        [one] => format!("untraced change on {hostname}: {}", one.subject),
        many => format!("{} untraced changes on {hostname}", many.len()),
    };
    json!({
        "kind": "untraced_drift",
        "host": { "id": host_id, "hostname": hostname },
        "summary": summary,
        "held_secs": held_ms / 1000,
        "items": listed,
    })
}

/// One round of delivery: every sink, concurrently, takes the alerts it owes that are due
/// (oldest first) until one fails; that failure is recorded with its next attempt time and
/// the sink pauses until then. Returns how many alerts became delivered to every sink.
pub async fn deliver_pending<S: Store>(
    store: &S,
    sinks: &Sinks,
    clock: Arc<dyn Clock>,
) -> Result<u32, StoreError> {
    let names = sinks.names();
    // Without any sink an alert is done once recorded (the API lists it), as every round.
    let unsettled = if sinks.channels.is_empty() {
        !store.undelivered_alerts(1).await?.is_empty()
    } else {
        !sinks.settled.swap(true, Ordering::SeqCst)
    };
    if unsettled {
        let settled = store.settle_alerts(names.clone(), clock.now()).await?;
        if settled > 0 && !names.is_empty() {
            tracing::info!(
                settled,
                "alerts no configured sink still owes are delivered"
            );
        }
    }
    let mut rounds = tokio::task::JoinSet::new();
    for channel in &sinks.channels {
        let (store, channel, names, clock) = (
            store.clone(),
            Arc::clone(channel),
            names.clone(),
            Arc::clone(&clock),
        );
        rounds.spawn(async move { deliver_to(&store, &channel, names, clock.as_ref()).await });
    }
    let mut completed = 0;
    let mut failure = None;
    while let Some(joined) = rounds.join_next().await {
        match joined {
            Ok(Ok(n)) => completed += n,
            Ok(Err(err)) => failure = Some(err),
            Err(err) => failure = Some(StoreError::other(format!("delivery task failed: {err}"))),
        }
    }
    match failure {
        Some(err) => Err(err),
        None => Ok(completed),
    }
}

async fn deliver_to<S: Store>(
    store: &S,
    channel: &Channel,
    names: Vec<String>,
    clock: &dyn Clock,
) -> Result<u32, StoreError> {
    let name = channel.sink.name().to_owned();
    let now = clock.now();
    if now < *channel.paused_until.lock().expect("pause lock") {
        return Ok(0);
    }
    let mut completed = 0;
    for alert in store.due_deliveries(name.clone(), now, ROUND_LIMIT).await? {
        // A sink stops trying an alert once delivered: every earlier attempt failed.
        let failures = alert.deliveries.first().map_or(0, |d| d.attempts);
        let timeout = channel.sink.timeout() + Duration::from_secs(1);
        let outcome = tokio::time::timeout(timeout, channel.sink.deliver(&alert))
            .await
            .unwrap_or_else(|_| Err(format!("no answer within {} s", timeout.as_secs())));
        let at = clock.now();
        let (error, next_attempt_at) = match &outcome {
            Ok(()) => (None, at),
            Err(error) => {
                let random = getrandom::u64().unwrap_or(u64::from(alert.id.as_u128() as u32));
                let wait = backoff::retry_delay(failures + 1, channel.retry_max, random);
                (Some(error.clone()), at + wait.as_millis() as Millis)
            }
        };
        let done = store
            .record_delivery(DeliveryAttempt {
                alert_id: alert.id,
                sink: name.clone(),
                at,
                error: error.clone(),
                next_attempt_at,
                sinks: names.clone(),
            })
            .await?;
        match error {
            None => {
                metrics::counter!("driftwatch_alert_deliveries_total", "sink" => name.clone(), "outcome" => "delivered")
                    .increment(1);
                if done {
                    completed += 1;
                    metrics::counter!("driftwatch_alerts_delivered_total").increment(1);
                }
            }
            Some(error) => {
                metrics::counter!("driftwatch_alert_deliveries_total", "sink" => name.clone(), "outcome" => "failed")
                    .increment(1);
                metrics::counter!("driftwatch_alert_delivery_failures_total").increment(1);
                tracing::warn!(
                    alert = %alert.id,
                    sink = %name,
                    attempt = failures + 1,
                    retry_in_ms = next_attempt_at - at,
                    error = %error,
                    "alert delivery failed; will retry"
                );
                *channel.paused_until.lock().expect("pause lock") = next_attempt_at;
                break;
            }
        }
    }
    Ok(completed)
}
