//! Delivery: the shipper takes the oldest events from the spool in batches
//! (bounded in events and bytes; a short linger lets a burst travel
//! together), sends them gzip-compressed to `POST /api/v1/events` and deletes
//! them from the spool only when the collector acknowledges every one of
//! them. Any failure (unreachable, an error status, an answer it cannot read,
//! a partial acknowledgement) leaves the batch in the spool and retries it
//! after an exponential backoff with jitter. Duplicates after a retry are
//! harmless: event ids are unique and ingest is idempotent.
//!
//! `client.rs`: reqwest with the pinned CA, the client certificate and the Bearer
//! credential; `backoff.rs`: exponential backoff with jitter.

pub mod backoff;
pub mod client;

use std::sync::Arc;
use std::time::Duration;

use driftwatch_common::api::v1::IngestAck;
use driftwatch_config::CollectorSettings;
use time::OffsetDateTime;
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::daemon::engine::EngineMsg;
use crate::daemon::spool::{Spool, Spooled};
use crate::daemon::status::StatusHandle;
use backoff::Backoff;
pub use client::{Client, ShipError};

/// First retry pause; it doubles up to `collector.retry_max_secs`.
const RETRY_BASE: Duration = Duration::from_secs(1);
/// How long a shutdown may spend delivering what is left.
const FINAL_FLUSH: Duration = Duration::from_secs(5);

pub struct Shipper {
    /// `None`: no collector (or not enrolled): events wait in the spool.
    pub client: Option<Client>,
    pub spool: Spool,
    pub settings: CollectorSettings,
    pub status: StatusHandle,
    /// Rung by the detector when it committed events.
    pub wake: Arc<Notify>,
    /// Told when space was freed (it may be waiting to rescan).
    pub engine: mpsc::Sender<EngineMsg>,
}

enum Attempt {
    /// Nothing to send.
    Empty,
    Delivered,
    Failed,
}

impl Shipper {
    /// Delivers until `cancel`, then tries for a few seconds to deliver what is left.
    pub async fn run(mut self, cancel: CancellationToken) {
        let mut backoff = Backoff::new(RETRY_BASE, self.settings.retry_max);
        loop {
            match self.attempt().await {
                Attempt::Delivered => {
                    backoff.reset();
                    continue;
                }
                Attempt::Empty => {
                    tokio::select! {
                        _ = cancel.cancelled() => break,
                        _ = self.wake.notified() => {}
                        // The spool may also grow through another connection (enroll).
                        _ = tokio::time::sleep(Duration::from_secs(30)) => {}
                    }
                    // Let a burst of events join the batch.
                    if !self.settings.batch_linger.is_zero() {
                        tokio::select! {
                            _ = cancel.cancelled() => break,
                            _ = tokio::time::sleep(self.settings.batch_linger) => {}
                        }
                    }
                }
                Attempt::Failed => {
                    let pause = backoff.pause();
                    let retry_at = OffsetDateTime::now_utc() + pause;
                    self.status
                        .update(|s| s.delivery.next_retry_at = Some(retry_at));
                    tokio::select! {
                        _ = cancel.cancelled() => break,
                        _ = tokio::time::sleep(pause) => {}
                    }
                }
            }
        }
        self.final_flush().await;
    }

    /// On shutdown: deliver what can be delivered quickly; the rest stays spooled.
    async fn final_flush(&mut self) {
        if self.client.is_none() {
            return;
        }
        let flushed = tokio::time::timeout(FINAL_FLUSH, async {
            while let Attempt::Delivered = self.attempt().await {}
        })
        .await;
        let left = self.spool.depth().map(|d| d.events).unwrap_or_default();
        if flushed.is_err() || left > 0 {
            info!(events = left, "events left in the spool for the next start");
        }
    }

    async fn attempt(&mut self) -> Attempt {
        let (max_events, max_bytes) = (
            self.settings.batch_max_events,
            self.settings.batch_max_bytes,
        );
        let batch = match tokio::task::block_in_place(|| self.spool.peek(max_events, max_bytes)) {
            Ok(batch) if batch.is_empty() => return Attempt::Empty,
            Ok(batch) => batch,
            Err(err) => {
                error!(error = %err, "cannot read the spool");
                return Attempt::Failed;
            }
        };
        let Some(client) = &self.client else {
            // Not enrolled or no collector: the events wait, counted in the status.
            return Attempt::Empty;
        };
        let first = batch[0].seq;
        let last = batch[batch.len() - 1].seq;
        let result = client
            .post::<IngestAck>("events", batch_json(&batch), true)
            .await;
        let outcome = match result {
            Ok(ack)
                if ack.accepted as usize + ack.duplicates as usize + ack.rejected as usize
                    == batch.len() =>
            {
                if ack.rejected > 0 {
                    // The collector found them forged (edited in this spool): it has alerted.
                    error!(
                        rejected = ack.rejected,
                        "the collector refused events as forgeries (the spool was tampered with)"
                    );
                }
                Ok(ack)
            }
            Ok(ack) => Err(ShipError::BadAnswer(format!(
                "acknowledged {} + {} duplicate(s) + {} refused of {} events",
                ack.accepted,
                ack.duplicates,
                ack.rejected,
                batch.len()
            ))),
            Err(err) => Err(err),
        };
        match outcome {
            Ok(ack) => {
                let depth = match tokio::task::block_in_place(|| self.spool.ack(first, last)) {
                    Ok(depth) => depth,
                    Err(err) => {
                        // Delivered but not deleted: it is sent again later (a harmless duplicate).
                        error!(error = %err, "cannot delete acknowledged events from the spool");
                        return Attempt::Failed;
                    }
                };
                debug!(
                    first,
                    last,
                    accepted = ack.accepted,
                    duplicates = ack.duplicates,
                    "batch acknowledged"
                );
                let now = OffsetDateTime::now_utc();
                let was_full = self.status.snapshot().spool_full;
                self.status.update(|s| {
                    // The detector may have spooled more since `depth` was read: the last
                    // spooled seq only grows (heartbeats report it; a lower one would
                    // make the collector think later events were spooled after it).
                    let last_seq = s.spool.last_seq.max(depth.last_seq);
                    s.spool = depth;
                    s.spool.last_seq = last_seq;
                    s.delivery.batches_acked += 1;
                    // Duplicates were delivered too (an earlier ack was lost).
                    s.delivery.events_acked += u64::from(ack.accepted) + u64::from(ack.duplicates);
                    s.delivery.duplicates += u64::from(ack.duplicates);
                    s.delivery.last_ack_at = Some(now);
                    if s.delivery.consecutive_failures > 0 {
                        info!(
                            after_failures = s.delivery.consecutive_failures,
                            "delivery to the collector works again"
                        );
                    }
                    s.delivery.consecutive_failures = 0;
                    s.delivery.last_error = None;
                    s.delivery.next_retry_at = None;
                });
                if was_full {
                    let _ = self.engine.try_send(EngineMsg::SpaceFreed);
                }
                Attempt::Delivered
            }
            Err(err) => {
                let message = err.to_string();
                let failures = {
                    let mut failures = 0;
                    self.status.update(|s| {
                        s.delivery.consecutive_failures += 1;
                        s.delivery.failures_total += 1;
                        s.delivery.last_error = Some(message.clone());
                        failures = s.delivery.consecutive_failures;
                    });
                    failures
                };
                warn!(
                    error = %message,
                    attempt = failures,
                    events = batch.len(),
                    "delivery failed; the events stay in the spool and are retried"
                );
                Attempt::Failed
            }
        }
    }
}

/// `{"events":[...]}` from the spooled JSON, byte for byte as hashed.
pub fn batch_json(batch: &[Spooled]) -> Vec<u8> {
    let len = batch.iter().map(|s| s.body.len() + 1).sum::<usize>() + 16;
    let mut json = Vec::with_capacity(len);
    json.extend_from_slice(b"{\"events\":[");
    for (i, event) in batch.iter().enumerate() {
        if i > 0 {
            json.push(b',');
        }
        json.extend_from_slice(event.body.as_bytes());
    }
    json.extend_from_slice(b"]}");
    json
}

#[cfg(test)]
mod tests;
