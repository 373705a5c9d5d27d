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
pub mod outbox;
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
use crate::store::{
    Alert, AlertWords, DeadLetter, DeliveryAttempt, DriftItem, LateEmergency, NewAlert, SilentHost,
    Store, StoreError, UntracedBurst,
};
use driftwatch_config::collector::{AlertSink as SinkConfig, SinkTarget};

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// How many due alerts one sink takes per round.
const ROUND_LIMIT: u32 = 100;
/// A delivery claim outlives its attempt's timeout by this much (recording it).
const CLAIM_MARGIN: Duration = Duration::from_secs(5);

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
    fn deliver<'a>(&'a self, alert: &'a Alert) -> BoxFuture<'a, Result<(), DeliveryError>>;
}

/// Why one attempt failed, and whether trying again can help.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeliveryError {
    /// For people and the log: what happened (the receiver's answer included).
    pub message: String,
    pub kind: FailureKind,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FailureKind {
    /// Down, overloaded, slow or unreachable: retried with backoff, not before
    /// `retry_after` when the receiver asked for a pause.
    Transient { retry_after: Option<Duration> },
    /// The receiver will never accept this alert (a 4xx other than 408 and 429): the
    /// delivery is dead-lettered and the sink goes on with the next alert.
    Permanent {
        status: Option<u16>,
        /// The start of the receiver's answer.
        response: String,
    },
}

impl DeliveryError {
    pub fn transient(message: impl Into<String>) -> Self {
        DeliveryError {
            message: message.into(),
            kind: FailureKind::Transient { retry_after: None },
        }
    }
}

impl From<String> for DeliveryError {
    fn from(message: String) -> Self {
        DeliveryError::transient(message)
    }
}

/// The longest pause a receiver's `Retry-After` can impose (the longest `retry_max_secs`).
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(86_400);

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
    /// Who claims deliveries (`Store::claim_delivery`): one id per process, so two
    /// collector nodes on one database never send one alert to one sink twice at once.
    holder: Uuid,
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
            holder: Uuid::now_v7(),
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

/// The words of the alerts the store raises in the background rounds (it calls them in the
/// transaction that finds what is due).
pub const WORDS: AlertWords = AlertWords {
    untraced: untraced_drift,
    silent: agent_silent,
    emergency: emergency_unapproved,
};

/// One alert per host and burst of untraced drift.
pub fn untraced_drift(burst: &UntracedBurst) -> NewAlert {
    let mut body = untraced_drift_body(burst.host_id, &burst.hostname, &burst.items, burst.held_ms);
    // Drift flagged inside a window names that window's ticket (syslog and Slack show it).
    for (item, listed) in burst
        .items
        .iter()
        .zip(body["items"].as_array_mut().into_iter().flatten())
    {
        if let Some(window_id) = item.window_id {
            listed["ticket"] = json!(burst.tickets.get(&window_id).cloned().flatten());
        }
    }
    NewAlert {
        kind: "untraced_drift".into(),
        host_id: Some(burst.host_id),
        body,
    }
}

/// A host not heard from for longer than the silence threshold.
pub fn agent_silent(host: &SilentHost) -> NewAlert {
    let hostname = &host.hostname;
    NewAlert {
        kind: "agent_silent".into(),
        host_id: Some(host.host_id),
        body: json!({
            "kind": "agent_silent",
            "host": { "id": host.host_id, "hostname": hostname },
            "summary": format!(
                "no heartbeat from {hostname} for more than {} s",
                host.silent_after_ms / 1000
            ),
            "last_seen_at": host.last_seen_at.map(rfc3339),
        }),
    }
}

/// An emergency window still not approved past its deadline.
pub fn emergency_unapproved(late: &LateEmergency) -> NewAlert {
    let LateEmergency {
        ticket, requester, ..
    } = late;
    NewAlert {
        kind: "emergency_unapproved".into(),
        host_id: None,
        body: json!({
            "kind": "emergency_unapproved",
            "window_id": late.window_id,
            "ticket": ticket,
            "requester": requester,
            "recorded_at": rfc3339(late.recorded_at),
            "summary": format!(
                "emergency change {ticket} (recorded by {requester}) is still not approved after {} h",
                late.deadline_ms / 3_600_000
            ),
        }),
    }
}

/// The body of an untraced-drift alert: one host, every item of the burst.
fn untraced_drift_body(host_id: Uuid, hostname: &str, items: &[DriftItem], held_ms: i64) -> Value {
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
        let (store, channel, names, clock, holder) = (
            store.clone(),
            Arc::clone(channel),
            names.clone(),
            Arc::clone(&clock),
            sinks.holder,
        );
        rounds.spawn(
            async move { deliver_to(&store, &channel, names, clock.as_ref(), holder).await },
        );
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
    holder: Uuid,
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
        // Another node may be sending it now, or have sent it since the list was read.
        let claimed_at = clock.now();
        let until = claimed_at + (timeout + CLAIM_MARGIN).as_millis() as Millis;
        if !store
            .claim_delivery(alert.id, name.clone(), holder, claimed_at, until)
            .await?
        {
            continue;
        }
        let attempt_started = std::time::Instant::now();
        let outcome = tokio::time::timeout(timeout, channel.sink.deliver(&alert))
            .await
            .unwrap_or_else(|_| {
                Err(DeliveryError::transient(format!(
                    "no answer within {} s",
                    timeout.as_secs()
                )))
            });
        metrics::histogram!(crate::telemetry::ALERT_DELIVERY_SECONDS, "sink" => name.clone())
            .record(attempt_started.elapsed().as_secs_f64());
        let at = clock.now();
        let (next_attempt_at, dead_letter) = match &outcome {
            Ok(()) => (at, None),
            Err(DeliveryError {
                kind: FailureKind::Permanent { status, response },
                ..
            }) => (
                at,
                Some(DeadLetter {
                    at,
                    status: *status,
                    response: response.clone(),
                }),
            ),
            Err(DeliveryError {
                kind: FailureKind::Transient { retry_after },
                ..
            }) => {
                let random = getrandom::u64().unwrap_or(u64::from(alert.id.as_u128() as u32));
                let backoff = backoff::retry_delay(failures + 1, channel.retry_max, random);
                // A receiver that asked for a pause gets at least that (bounded).
                let wait =
                    retry_after.map_or(backoff, |asked| backoff.max(asked.min(MAX_RETRY_AFTER)));
                (at + wait.as_millis() as Millis, None)
            }
        };
        let error = outcome.as_ref().err().map(|e| e.message.clone());
        let done = store
            .record_delivery(DeliveryAttempt {
                alert_id: alert.id,
                sink: name.clone(),
                at,
                error: error.clone(),
                next_attempt_at,
                sinks: names.clone(),
                dead_letter: dead_letter.clone(),
            })
            .await?;
        match (error, dead_letter) {
            (None, _) => {
                metrics::counter!("driftwatch_alert_deliveries_total", "sink" => name.clone(), "outcome" => "delivered")
                    .increment(1);
                metrics::histogram!(crate::telemetry::ALERT_DELIVERY_DELAY_SECONDS, "sink" => name.clone())
                    .record((at - alert.created_at).max(0) as f64 / 1000.0);
                if done {
                    completed += 1;
                    metrics::counter!("driftwatch_alerts_delivered_total").increment(1);
                }
            }
            (Some(error), Some(_)) => {
                // Refused for good: set aside for an admin; the next alert is not held back.
                metrics::counter!("driftwatch_alert_deliveries_total", "sink" => name.clone(), "outcome" => "dead_letter")
                    .increment(1);
                metrics::counter!("driftwatch_alert_delivery_failures_total").increment(1);
                tracing::error!(
                    alert = %alert.id,
                    sink = %name,
                    attempt = failures + 1,
                    error = %driftwatch_common::pathbytes::Shown(&error),
                    "alert delivery refused for good; dead-lettered (driftctl alerts dead-letters)"
                );
            }
            (Some(error), None) => {
                metrics::counter!("driftwatch_alert_deliveries_total", "sink" => name.clone(), "outcome" => "failed")
                    .increment(1);
                metrics::counter!("driftwatch_alert_delivery_failures_total").increment(1);
                tracing::warn!(
                    alert = %alert.id,
                    sink = %name,
                    attempt = failures + 1,
                    retry_in_ms = next_attempt_at - at,
                    error = %driftwatch_common::pathbytes::Shown(&error),
                    "alert delivery failed; will retry"
                );
                *channel.paused_until.lock().expect("pause lock") = next_attempt_at;
                break;
            }
        }
    }
    Ok(completed)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use driftwatch_common::api::v1::{AgentHealth, Inventory};

    use std::collections::BTreeMap;

    use super::*;
    use crate::clock::ManualClock;
    use crate::store::{DeliveryState, Dropped, HeartbeatRecord, NewAlert, SqliteStore};

    const T0: Millis = 1_795_428_000_000;

    /// A sink that fails its first `failures` attempts, counting them.
    struct Flaky {
        name: &'static str,
        failures: usize,
        tried: AtomicUsize,
    }

    impl AlertSink for Flaky {
        fn name(&self) -> &str {
            self.name
        }
        fn describe(&self) -> Value {
            json!({ "type": "test" })
        }
        fn deliver<'a>(&'a self, _alert: &'a Alert) -> BoxFuture<'a, Result<(), DeliveryError>> {
            let n = self.tried.fetch_add(1, Ordering::SeqCst);
            let outcome = if n < self.failures {
                Err(format!("down ({n})").into())
            } else {
                Ok(())
            };
            Box::pin(async move { outcome })
        }
    }

    fn flaky(name: &'static str, failures: usize) -> Arc<Flaky> {
        Arc::new(Flaky {
            name,
            failures,
            tried: AtomicUsize::new(0),
        })
    }

    /// A store with one enrolled host and `count` health alerts.
    async fn store_with_alerts(count: usize) -> SqliteStore {
        let store = SqliteStore::open_in_memory().unwrap();
        let host = crate::store::conformance_evidence::enroll(&store, "web-1", 9).await;
        for i in 0..count {
            let record = HeartbeatRecord {
                host_id: host.id,
                received_at: T0 + i as Millis,
                skew_ms: 0,
                inventory: Inventory::default(),
                health: AgentHealth::default(),
                reported_seq: 0,
                results: Vec::new(),
            };
            let alert = NewAlert {
                kind: "agent_health".into(),
                host_id: Some(host.id),
                body: json!({ "summary": format!("alert {i}") }),
            };
            store.heartbeat(record, vec![alert]).await.unwrap();
        }
        store
    }

    #[tokio::test]
    async fn a_failing_sink_backs_off_alone_and_nothing_is_sent_twice() {
        let store = store_with_alerts(2).await;
        let clock = ManualClock::at(T0 + 10);
        let (good, bad) = (flaky("good", 0), flaky("bad", 2));
        let sinks = Sinks::new(vec![
            (good.clone() as Arc<dyn AlertSink>, Duration::from_secs(60)),
            (bad.clone() as Arc<dyn AlertSink>, Duration::from_secs(60)),
        ]);
        let round = || deliver_pending(&store, &sinks, Arc::new(clock.clone()));

        // Round 1: the good sink delivers both; the bad one fails the first and pauses.
        assert_eq!(round().await.unwrap(), 0);
        assert_eq!(good.tried.load(Ordering::SeqCst), 2);
        assert_eq!(
            bad.tried.load(Ordering::SeqCst),
            1,
            "stops at its first failure"
        );
        // Within the backoff (at least 500 ms after the first failure): not tried.
        clock.set(clock.now() + 400);
        round().await.unwrap();
        assert_eq!(bad.tried.load(Ordering::SeqCst), 1, "paused");
        // Past the longest first wait (1 s): the second failure, a longer wait.
        clock.set(clock.now() + 1_000);
        round().await.unwrap();
        assert_eq!(bad.tried.load(Ordering::SeqCst), 2);
        let listed = store.alerts(10).await.unwrap();
        let oldest = listed.last().unwrap();
        let bad_state = oldest.deliveries.iter().find(|d| d.sink == "bad").unwrap();
        assert_eq!(
            (
                bad_state.state,
                bad_state.attempts,
                bad_state.last_error.as_deref()
            ),
            (DeliveryState::Failing, 2, Some("down (1)"))
        );
        let wait = bad_state.next_attempt_at.unwrap() - bad_state.last_attempt_at.unwrap();
        assert!((1_000..=2_000).contains(&wait), "second wait {wait} ms");
        // After it: both alerts go out; the good sink is never asked again.
        clock.set(clock.now() + 2_000);
        assert_eq!(round().await.unwrap(), 2);
        assert_eq!(bad.tried.load(Ordering::SeqCst), 4);
        assert_eq!(good.tried.load(Ordering::SeqCst), 2);
        assert!(store.undelivered_alerts(10).await.unwrap().is_empty());
        clock.set(clock.now() + 600_000);
        round().await.unwrap();
        assert_eq!(
            (
                good.tried.load(Ordering::SeqCst),
                bad.tried.load(Ordering::SeqCst)
            ),
            (2, 4)
        );
    }

    /// A receiver that refuses `alert 0` for good until `fixed`, and asks for a pause of
    /// `pause` on `alert 1` the first time.
    struct Picky {
        fixed: AtomicBool,
        tried: Mutex<Vec<String>>,
        pause: Duration,
    }

    impl AlertSink for Picky {
        fn name(&self) -> &str {
            "picky"
        }
        fn describe(&self) -> Value {
            json!({ "type": "test" })
        }
        fn deliver<'a>(&'a self, alert: &'a Alert) -> BoxFuture<'a, Result<(), DeliveryError>> {
            let summary = alert.body["summary"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let mut tried = self.tried.lock().unwrap();
            let first = !tried.contains(&summary);
            tried.push(summary.clone());
            let outcome = match summary.as_str() {
                "alert 0" if !self.fixed.load(Ordering::SeqCst) => Err(DeliveryError {
                    message: "answered HTTP 400: invalid_blocks".into(),
                    kind: FailureKind::Permanent {
                        status: Some(400),
                        response: "invalid_blocks".into(),
                    },
                }),
                "alert 1" if first => Err(DeliveryError {
                    message: "answered HTTP 429".into(),
                    kind: FailureKind::Transient {
                        retry_after: Some(self.pause),
                    },
                }),
                _ => Ok(()),
            };
            Box::pin(async move { outcome })
        }
    }

    fn audit_entry(action: &str) -> crate::audit::NewAudit {
        crate::audit::NewAudit::new(T0, "root", action, "alert", json!({}))
    }

    #[tokio::test]
    async fn a_refused_alert_is_dead_lettered_and_the_next_one_still_goes_out() {
        let store = store_with_alerts(3).await;
        let clock = ManualClock::at(T0 + 10);
        let picky = Arc::new(Picky {
            fixed: AtomicBool::new(false),
            tried: Mutex::new(Vec::new()),
            pause: Duration::from_secs(120),
        });
        let sinks = Sinks::new(vec![(
            picky.clone() as Arc<dyn AlertSink>,
            Duration::from_secs(5),
        )]);
        let round = || deliver_pending(&store, &sinks, Arc::new(clock.clone()));

        // Round 1: alert 0 refused for good, the sink goes on; alert 1 asks for a pause of
        // 120 s (longer than the 5 s backoff cap): the sink waits that long.
        assert_eq!(round().await.unwrap(), 0);
        assert_eq!(*picky.tried.lock().unwrap(), ["alert 0", "alert 1"]);
        let dead = store.dead_letters(10).await.unwrap();
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0].body["summary"], "alert 0");
        let delivery = &dead[0].deliveries[0];
        assert_eq!(delivery.state, DeliveryState::DeadLetter);
        let letter = delivery.dead_letter.as_ref().unwrap();
        assert_eq!(
            (letter.status, letter.response.as_str()),
            (Some(400), "invalid_blocks")
        );
        let listed = store.alerts(10).await.unwrap();
        let second = listed
            .iter()
            .find(|a| a.body["summary"] == "alert 1")
            .unwrap();
        let wait = second.deliveries[0].next_attempt_at.unwrap() - clock.now();
        assert!(wait >= 120_000, "Retry-After honoured: {wait} ms");
        let backlog = store.delivery_backlog(vec!["picky".into()]).await.unwrap();
        assert_eq!(
            (
                backlog[0].undelivered,
                backlog[0].failing,
                backlog[0].dead_letters
            ),
            (3, 1, 1)
        );

        // After the pause: alerts 1 and 2 go out; the dead letter is not tried again.
        clock.set(clock.now() + 121_000);
        assert_eq!(round().await.unwrap(), 2);
        assert_eq!(picky.tried.lock().unwrap().len(), 4);
        clock.set(clock.now() + 600_000);
        round().await.unwrap();
        assert_eq!(picky.tried.lock().unwrap().len(), 4, "a dead letter waits");

        // An admin retries once the receiver is fixed: delivered at the next round.
        picky.fixed.store(true, Ordering::SeqCst);
        let id = dead[0].id;
        let retried = store
            .retry_dead_letter(
                id,
                "picky".into(),
                clock.now(),
                audit_entry("alert.retried"),
            )
            .await
            .unwrap();
        assert_eq!(retried.deliveries[0].state, DeliveryState::Failing);
        let again = store
            .retry_dead_letter(
                id,
                "picky".into(),
                clock.now(),
                audit_entry("alert.retried"),
            )
            .await;
        assert!(matches!(again, Err(StoreError::Conflict(_))), "{again:?}");
        assert_eq!(round().await.unwrap(), 1);
        assert!(store.undelivered_alerts(10).await.unwrap().is_empty());
        assert!(store.dead_letters(10).await.unwrap().is_empty());
        let (log, _) = store.audit_log().await.unwrap();
        assert_eq!(
            log.iter().filter(|e| e.action == "alert.retried").count(),
            1,
            "the refused retry wrote nothing"
        );
    }

    /// A receiver that refuses everything for good (a rotated credential: 401) until fixed.
    struct Refusing(AtomicBool);

    impl AlertSink for Refusing {
        fn name(&self) -> &str {
            "hook"
        }
        fn describe(&self) -> Value {
            json!({ "type": "test" })
        }
        fn deliver<'a>(&'a self, _alert: &'a Alert) -> BoxFuture<'a, Result<(), DeliveryError>> {
            let outcome = if self.0.load(Ordering::SeqCst) {
                Ok(())
            } else {
                Err(DeliveryError {
                    message: "answered HTTP 401".into(),
                    kind: FailureKind::Permanent {
                        status: Some(401),
                        response: String::new(),
                    },
                })
            };
            Box::pin(async move { outcome })
        }
    }

    #[tokio::test]
    async fn every_dead_letter_of_a_sink_is_retried_at_once_with_one_audit_entry() {
        let store = store_with_alerts(3).await;
        let clock = ManualClock::at(T0 + 10);
        let refusing = Arc::new(Refusing(AtomicBool::new(false)));
        let sinks = Sinks::new(vec![(
            refusing.clone() as Arc<dyn AlertSink>,
            Duration::from_secs(5),
        )]);
        let round = || deliver_pending(&store, &sinks, Arc::new(clock.clone()));
        assert_eq!(round().await.unwrap(), 0);
        assert_eq!(store.dead_letters(10).await.unwrap().len(), 3);
        refusing.0.store(true, Ordering::SeqCst);
        let retried = store
            .retry_dead_letters("hook".into(), clock.now(), audit_entry("alert.retried"))
            .await
            .unwrap();
        assert_eq!(retried, 3);
        assert_eq!(round().await.unwrap(), 3);
        assert!(store.undelivered_alerts(10).await.unwrap().is_empty());
        let none = store
            .retry_dead_letters("hook".into(), clock.now(), audit_entry("alert.retried"))
            .await
            .unwrap();
        assert_eq!(none, 0);
        let (log, _) = store.audit_log().await.unwrap();
        let entries: Vec<_> = log.iter().filter(|e| e.action == "alert.retried").collect();
        assert_eq!(entries.len(), 1, "nothing retried: no entry");
        assert!(
            entries[0].details.contains("\"retried\":3"),
            "{}",
            entries[0].details
        );
    }

    #[tokio::test]
    async fn a_dropped_dead_letter_is_owed_no_more() {
        let store = store_with_alerts(1).await;
        let clock = ManualClock::at(T0 + 10);
        let picky = Arc::new(Picky {
            fixed: AtomicBool::new(false),
            tried: Mutex::new(Vec::new()),
            pause: Duration::ZERO,
        });
        let sinks = Sinks::new(vec![(
            picky.clone() as Arc<dyn AlertSink>,
            Duration::from_secs(5),
        )]);
        deliver_pending(&store, &sinks, Arc::new(clock.clone()))
            .await
            .unwrap();
        let id = store.dead_letters(10).await.unwrap()[0].id;
        let missing = store
            .drop_dead_letter(
                id,
                "other".into(),
                Dropped {
                    at: T0 + 20,
                    by: "root".into(),
                    reason: "x".into(),
                },
                vec!["picky".into()],
                audit_entry("alert.dropped"),
            )
            .await;
        assert!(
            matches!(missing, Err(StoreError::NotFound(_))),
            "{missing:?}"
        );
        let dropped = store
            .drop_dead_letter(
                id,
                "picky".into(),
                Dropped {
                    at: T0 + 20,
                    by: "root".into(),
                    reason: "payload bug, fixed in 0.2".into(),
                },
                vec!["picky".into()],
                audit_entry("alert.dropped"),
            )
            .await
            .unwrap();
        assert_eq!(
            dropped.delivered_at,
            Some(T0 + 20),
            "no sink owes it any more"
        );
        let delivery = &dropped.deliveries[0];
        assert_eq!(delivery.state, DeliveryState::Dropped);
        assert_eq!(
            delivery.dropped.as_ref().unwrap().reason,
            "payload bug, fixed in 0.2"
        );
        assert_eq!(delivery.dead_letter.as_ref().unwrap().status, Some(400));
        assert!(store.dead_letters(10).await.unwrap().is_empty());
        let backlog = store.delivery_backlog(vec!["picky".into()]).await.unwrap();
        assert_eq!((backlog[0].undelivered, backlog[0].dead_letters), (0, 0));
    }

    #[test]
    fn the_description_is_secret_free_and_the_digest_follows_every_setting() {
        let config = |url: &str, retry: u64| {
            vec![SinkConfig {
                name: "hook".into(),
                retry_max: Duration::from_secs(retry),
                target: SinkTarget::Webhook(driftwatch_config::collector::Webhook {
                    url: url.into(),
                    format: driftwatch_config::collector::WebhookFormat::Slack,
                    ca_file: None,
                    secret_file: None,
                    secret_header: None,
                    signing_secret_file: None,
                    timeout: Duration::from_secs(5),
                }),
            }]
        };
        let describe = |url: &str, retry: u64| {
            Sinks::from_config(&config(url, retry))
                .unwrap()
                .description()
        };
        let (digest, described) = describe("https://hooks.example/T0/B0/token", 60);
        assert_eq!(digest.len(), 64);
        assert_eq!(described[0]["name"], "hook");
        assert_eq!(described[0]["format"], "slack");
        assert_eq!(described[0]["retry_max_secs"], 60);
        assert!(!described.to_string().contains("token"), "{described}");
        assert_eq!(describe("https://hooks.example/T0/B0/token", 60).0, digest);
        assert_ne!(describe("https://hooks.example/T0/B0/other", 60).0, digest);
        assert_ne!(describe("https://hooks.example/T0/B0/token", 61).0, digest);
        assert_ne!(Sinks::none().description().0, digest);
    }

    fn item(subject: &str, reason: &str, window_id: Option<Uuid>) -> DriftItem {
        DriftItem {
            id: Uuid::now_v7(),
            host_id: Uuid::from_u128(1),
            hostname: "web-1".into(),
            subject: subject.into(),
            status: crate::drift::DriftStatus::Open,
            reason: Some(reason.into()),
            window_id,
            opened_at: T0,
            untraced_since: Some(T0),
            events: 1,
            last_event_id: Uuid::nil(),
            last_event_at: T0,
            alerted_at: None,
            resolution: None,
            updated_at: T0,
        }
    }

    #[test]
    fn an_untraced_burst_is_summed_up_and_names_the_tickets_of_its_windows() {
        let known = Uuid::from_u128(7);
        let gone = Uuid::from_u128(8);
        let burst = UntracedBurst {
            host_id: Uuid::from_u128(1),
            hostname: "web-1".into(),
            items: vec![
                item("file:/etc/hosts", "untraced", None),
                item("package:nginx", "wrong_implementer", Some(known)),
                item("user:deploy", "wrong_implementer", Some(gone)),
            ],
            tickets: BTreeMap::from([(known, Some("CHG-7".into())), (gone, None)]),
            held_ms: 300_000,
        };
        let alert = (WORDS.untraced)(&burst);
        assert_eq!(
            (alert.kind.as_str(), alert.host_id),
            ("untraced_drift", Some(burst.host_id))
        );
        assert_eq!(
            alert.body["summary"],
            "3 changes on web-1 need review (untraced, or flagged inside a window)"
        );
        assert_eq!(alert.body["held_secs"], 300);
        let items = alert.body["items"].as_array().unwrap();
        // Only items flagged inside a window carry a ticket (null when the window is gone).
        assert!(items[0].get("ticket").is_none());
        assert_eq!(items[1]["ticket"], "CHG-7");
        assert!(items[2]["ticket"].is_null() && items[2].get("ticket").is_some());

        let one = UntracedBurst {
            items: vec![item("file:/etc/hosts", "untraced", None)],
            tickets: BTreeMap::new(),
            ..burst
        };
        assert_eq!(
            (WORDS.untraced)(&one).body["summary"],
            "untraced change on web-1: file:/etc/hosts"
        );
    }

    #[test]
    fn silent_hosts_and_late_emergencies_say_what_is_wrong() {
        let silent = (WORDS.silent)(&SilentHost {
            host_id: Uuid::from_u128(1),
            hostname: "web-1".into(),
            last_seen_at: None,
            silent_after_ms: 300_000,
        });
        assert_eq!(silent.kind, "agent_silent");
        assert_eq!(
            silent.body["summary"],
            "no heartbeat from web-1 for more than 300 s"
        );
        assert!(silent.body["last_seen_at"].is_null());

        let late = (WORDS.emergency)(&LateEmergency {
            window_id: Uuid::from_u128(7),
            ticket: "CHG-9".into(),
            requester: "bob".into(),
            recorded_at: T0,
            deadline_ms: 4 * 3_600_000,
        });
        assert_eq!(
            (late.kind.as_str(), late.host_id),
            ("emergency_unapproved", None)
        );
        assert_eq!(
            late.body["summary"],
            "emergency change CHG-9 (recorded by bob) is still not approved after 4 h"
        );
        assert_eq!(late.body["recorded_at"], rfc3339(T0));
    }
}
