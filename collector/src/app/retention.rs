//! The retention round of [`App`]: at the first background round, then every
//! `[retention] interval_secs`, the store prunes what the configuration no longer keeps
//! (`crate::retention`) and records it in the audit log.

use std::sync::Mutex;

use driftwatch_config::collector::Retention;

use super::{App, Result};
use crate::clock::Millis;
use crate::retention;
use crate::store::Store;

/// The configuration and when the round last ran (in memory: a restart prunes at once).
pub(super) struct Round {
    retention: Retention,
    last: Mutex<Option<Millis>>,
}

impl<S: Store> App<S> {
    /// Prunes by `retention` in the background rounds; without it (or with a retention
    /// that keeps everything) nothing is ever pruned.
    pub fn with_retention(mut self, retention: Retention) -> Self {
        self.retention = Some(Round {
            retention,
            last: Mutex::new(None),
        });
        self
    }

    /// One prune if the round is due; the counts (zero when nothing was due or left).
    pub(crate) async fn prune_if_due(&self) -> Result<retention::PruneCounts> {
        let Some(round) = &self.retention else {
            return Ok(retention::PruneCounts::default());
        };
        let now = self.now();
        {
            let mut last = round.last.lock().expect("retention lock");
            if !retention::due(*last, now, round.retention.interval) {
                return Ok(retention::PruneCounts::default());
            }
            *last = Some(now);
        }
        let Some(plan) = retention::plan(&round.retention, now) else {
            return Ok(retention::PruneCounts::default());
        };
        // Batch after batch (each its own transaction and audit entry), so ingest never
        // waits for more than one.
        let mut counts = retention::PruneCounts::default();
        loop {
            let batch = self.store.prune(plan, now).await?;
            counts += batch;
            if !retention::more_left(&batch) {
                break;
            }
            tokio::task::yield_now().await;
        }
        if counts.total() > 0 {
            tracing::info!(
                drift = counts.drift,
                events = counts.events,
                alerts = counts.alerts,
                "retention pruned old records (recorded in the audit log)"
            );
        }
        Ok(counts)
    }
}
