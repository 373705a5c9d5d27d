//! Several collector nodes on one database: what each node needs to know about the others.
//!
//! - The windows' version (`windows_version`, one row): every window change takes
//!   [`WINDOWS_LOCK`] exclusively, bumps the version and notifies [`WINDOWS_CHANNEL`] in its
//!   transaction; every ingest takes the lock shared and compares the version with the one
//!   its matcher index was built at. So a batch is either matched with an index that
//!   holds the change, or committed before the change (and then found by the approval's
//!   re-evaluation): no batch falls between. The notification only lets idle nodes
//!   rebuild early; nothing depends on it arriving.
//! - Leases (`leases`): a background round runs on the node holding its lease, renewed
//!   each round and expiring on the database's clock, so a killed node's lease passes on.
//! - Delivery claims (`delivery_claims`): a node claims one alert for one sink, for as long
//!   as one attempt may take, before sending it; recording the attempt ends the claim, and
//!   a dead node's claim runs out.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use uuid::Uuid;

use super::Tx;
use super::connect::Connector;
use crate::clock::Millis;
use crate::store::Result;

/// The transaction advisory lock on the windows ("DWWINDOW"): exclusive for a change,
/// shared for an ingest. Taken before [`super::drift::HISTORY_LOCK`].
pub const WINDOWS_LOCK: i64 = 0x4457_5749_4e44_4f57;

/// The channel a window change notifies (payload: empty).
pub const WINDOWS_CHANNEL: &str = "driftwatch_windows";

/// The first statement of a transaction that changes a window: waits for ingests in
/// flight, moves the version, and notifies the other nodes once committed.
pub async fn window_changes(tx: &Tx<'_>) -> Result<()> {
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&WINDOWS_LOCK])
        .await?;
    tx.execute("UPDATE windows_version SET version = version + 1", &[])
        .await?;
    tx.execute("SELECT pg_notify($1, '')", &[&WINDOWS_CHANNEL])
        .await?;
    Ok(())
}

pub async fn windows_version(tx: &Tx<'_>) -> Result<i64> {
    Ok(tx
        .query_one("SELECT version FROM windows_version", &[])
        .await?
        .get(0))
}

/// The first statement of an ingest: whether the windows moved from `indexed`. The lock
/// is taken by a statement of its own, so the version is read after any change that held
/// it has committed.
pub async fn windows_moved(tx: &Tx<'_>, indexed: i64) -> Result<bool> {
    tx.execute("SELECT pg_advisory_xact_lock_shared($1)", &[&WINDOWS_LOCK])
        .await?;
    Ok(windows_version(tx).await? != indexed)
}

pub async fn take_lease(tx: &Tx<'_>, name: &str, holder: Uuid, ttl_ms: i64) -> Result<bool> {
    let held = tx
        .query_opt(
            "WITH clock AS (SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint AS ms)
             INSERT INTO leases AS l (name, holder, expires_at)
                 SELECT $1, $2, clock.ms + $3 FROM clock
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder,
                                              expires_at = excluded.expires_at
                 WHERE l.holder = excluded.holder
                    OR l.expires_at <= (extract(epoch FROM clock_timestamp()) * 1000)::bigint
             RETURNING holder",
            &[&name, &holder, &ttl_ms],
        )
        .await?;
    Ok(held.is_some())
}

pub async fn claim_delivery(
    tx: &Tx<'_>,
    alert_id: Uuid,
    sink: &str,
    holder: Uuid,
    now: Millis,
    until: Millis,
) -> Result<bool> {
    // Waits for a claim being taken or ended by another node, then sees its outcome.
    let claimed = tx
        .query_opt(
            "INSERT INTO delivery_claims AS c (alert_id, sink, holder, claimed_until)
             VALUES ($1, $2, $3, $5)
             ON CONFLICT (alert_id, sink) DO UPDATE SET holder = excluded.holder,
                                                        claimed_until = excluded.claimed_until
                 WHERE c.holder = excluded.holder OR c.claimed_until <= $4
             RETURNING 1",
            &[&alert_id, &sink, &holder, &now, &until],
        )
        .await?;
    if claimed.is_none() {
        return Ok(false);
    }
    // A statement of its own: it sees what the node that held the claim recorded.
    let due = tx
        .query_opt(
            "SELECT 1 FROM alerts a
             LEFT JOIN alert_deliveries d ON d.alert_id = a.id AND d.sink = $2
             WHERE a.id = $1 AND a.delivered_at IS NULL AND d.delivered_at IS NULL
               AND d.dead_lettered_at IS NULL AND d.dropped_at IS NULL
               AND (d.next_attempt_at IS NULL OR d.next_attempt_at <= $3)",
            &[&alert_id, &sink, &now],
        )
        .await?;
    if due.is_none() {
        tx.execute(
            "DELETE FROM delivery_claims WHERE alert_id = $1 AND sink = $2",
            &[&alert_id, &sink],
        )
        .await?;
    }
    Ok(due.is_some())
}

/// Ends `sink`'s claim of `alert_id` (its attempt is recorded in the same transaction).
pub async fn end_claim(tx: &Tx<'_>, alert_id: Uuid, sink: &str) -> Result<()> {
    tx.execute(
        "DELETE FROM delivery_claims WHERE alert_id = $1 AND sink = $2",
        &[&alert_id, &sink],
    )
    .await?;
    Ok(())
}

/// Window changes heard from the other nodes (`LISTEN` on [`WINDOWS_CHANNEL`]), on a
/// connection opened at the first wait.
pub struct Heard {
    connector: Connector,
    started: AtomicBool,
    heard: Arc<tokio::sync::Notify>,
}

impl Heard {
    pub fn new(connector: Connector) -> Heard {
        Heard {
            connector,
            started: AtomicBool::new(false),
            heard: Arc::new(tokio::sync::Notify::new()),
        }
    }

    /// Until a window change is heard (or the listener reconnected: one may have been
    /// missed) or `timeout` passed. A hint only.
    pub fn wait(
        &self,
        pool: &deadpool_postgres::Pool,
        timeout: Duration,
    ) -> impl Future<Output = ()> + Send + use<> {
        if !self.started.swap(true, Ordering::SeqCst) {
            let (connector, heard, pool) = (
                self.connector.clone(),
                Arc::clone(&self.heard),
                pool.clone(),
            );
            tokio::spawn(async move {
                connector
                    .listen(
                        WINDOWS_CHANNEL,
                        move || heard.notify_one(),
                        move || !pool.is_closed(),
                    )
                    .await;
            });
        }
        let heard = Arc::clone(&self.heard);
        async move {
            let _ = tokio::time::timeout(timeout, heard.notified()).await;
        }
    }
}
