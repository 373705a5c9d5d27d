//! Drift items and their history, and the untraced-drift alerts they raise. The rules are
//! `crate::drift`'s; the alert's words come through the [`AlertWords`] callback.

use std::collections::BTreeMap;

use tokio_postgres::Row;
use uuid::Uuid;

use super::Tx;
use super::alerts::insert_alert;
use super::audit;
use super::rows::{json, named, opt_from_json};
use crate::audit::{AuditKey, NewAudit};
use crate::clock::Millis;
use crate::drift::{self, DriftStatus};
use crate::store::{
    AlertWords, DriftChange, DriftChanges, DriftFilter, DriftItem, DriftRecord, OpenDriftQuery,
    Resolution, Result, StatusChange, StoreError, UntracedBurst,
};

pub const COLUMNS: &str = "d.id, d.host_id, h.hostname, d.subject, d.status, d.reason, \
                           d.window_id, d.opened_at, d.untraced_since, d.events, \
                           d.last_event_id, d.last_event_at, d.alerted_at, d.resolution, \
                           d.updated_at";

pub fn row(r: &Row) -> Result<DriftItem> {
    row_at(r, 0)
}

/// A drift item from the columns of [`COLUMNS`] starting at `at`.
pub fn row_at(r: &Row, at: usize) -> Result<DriftItem> {
    Ok(DriftItem {
        id: r.get(at),
        host_id: r.get(at + 1),
        hostname: r.get(at + 2),
        subject: r.get(at + 3),
        status: named(r.get::<_, &str>(at + 4))?,
        reason: r.get(at + 5),
        window_id: r.get(at + 6),
        opened_at: r.get(at + 7),
        untraced_since: r.get(at + 8),
        events: r.get::<_, i64>(at + 9) as u32,
        last_event_id: r.get(at + 10),
        last_event_at: r.get(at + 11),
        alerted_at: r.get(at + 12),
        resolution: opt_from_json(r.get(at + 13))?,
        updated_at: r.get(at + 14),
    })
}

pub async fn list(tx: &Tx<'_>, filter: &DriftFilter) -> Result<Vec<DriftItem>> {
    let rows = tx
        .query(
            &format!(
                "SELECT {COLUMNS} FROM drift d JOIN hosts h ON h.id = d.host_id
                 WHERE ($1::text IS NULL OR d.status = $1) AND ($2::uuid IS NULL OR d.host_id = $2)
                   AND ($3::uuid IS NULL OR d.window_id = $3)
                 ORDER BY d.opened_at DESC, d.id DESC LIMIT $4"
            ),
            &[
                &filter.status.map(|s| s.name()),
                &filter.host_id,
                &filter.window_id,
                &i64::from(filter.limit.unwrap_or(1000)),
            ],
        )
        .await?;
    rows.iter().map(row).collect()
}

/// Open drift for the untraced inbox: host name and subject containing the texts given,
/// reason among those given (NULL: any), newest first.
pub async fn open_matching(tx: &Tx<'_>, query: &OpenDriftQuery) -> Result<Vec<DriftItem>> {
    let rows = tx
        .query(
            &format!(
                "SELECT {COLUMNS} FROM drift d JOIN hosts h ON h.id = d.host_id
                 WHERE d.status = 'open'
                   AND ($1::text = '' OR strpos(h.hostname, $1) > 0)
                   AND ($2::text = '' OR strpos(d.subject, $2) > 0)
                   AND ($3::text[] IS NULL OR coalesce(d.reason, 'untraced') = ANY($3))
                 ORDER BY d.opened_at DESC, d.id DESC LIMIT $4"
            ),
            &[
                &query.host,
                &query.subject,
                &query.reasons,
                &i64::from(query.limit),
            ],
        )
        .await?;
    rows.iter().map(row).collect()
}

/// A page of drift in listing order (newest opened first) after the key `after` (issue 10:
/// keyset paging on `(opened_at, id)`; only the filters given become conditions, so an index
/// on them serves the order).
pub async fn page(
    tx: &Tx<'_>,
    filter: &DriftFilter,
    after: Option<(Millis, Uuid)>,
) -> Result<Vec<DriftItem>> {
    let mut sql =
        format!("SELECT {COLUMNS} FROM drift d JOIN hosts h ON h.id = d.host_id WHERE true");
    let mut args: Vec<Box<dyn tokio_postgres::types::ToSql + Sync + Send>> = Vec::new();
    if let Some(status) = filter.status {
        args.push(Box::new(status.name()));
        sql.push_str(&format!(" AND d.status = ${}", args.len()));
    }
    if let Some(host) = filter.host_id {
        args.push(Box::new(host));
        sql.push_str(&format!(" AND d.host_id = ${}", args.len()));
    }
    if let Some(window) = filter.window_id {
        args.push(Box::new(window));
        sql.push_str(&format!(" AND d.window_id = ${}", args.len()));
    }
    if let Some((at, last)) = after {
        args.push(Box::new(at));
        args.push(Box::new(last));
        sql.push_str(&format!(
            " AND (d.opened_at, d.id) < (${}, ${})",
            args.len() - 1,
            args.len()
        ));
    }
    args.push(Box::new(i64::from(filter.limit.unwrap_or(1000))));
    sql.push_str(&format!(
        " ORDER BY d.opened_at DESC, d.id DESC LIMIT ${}",
        args.len()
    ));
    let refs: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = args
        .iter()
        .map(|a| &**a as &(dyn tokio_postgres::types::ToSql + Sync))
        .collect();
    let rows = tx.query(&sql, &refs).await?;
    rows.iter().map(row).collect()
}

pub async fn get(tx: &Tx<'_>, drift_id: Uuid) -> Result<DriftItem> {
    let found = tx
        .query_opt(
            &format!(
                "SELECT {COLUMNS} FROM drift d JOIN hosts h ON h.id = d.host_id WHERE d.id = $1"
            ),
            &[&drift_id],
        )
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("no drift item {drift_id}")))?;
    row(&found)
}

/// A drift item with its events, history and the other items of its host and subject.
pub async fn record(tx: &Tx<'_>, drift_id: Uuid, timeline_limit: u32) -> Result<DriftRecord> {
    let item = get(tx, drift_id).await?;
    let events = super::ingest::events_of(tx, drift_id).await?;
    let history = tx
        .query(
            "SELECT at, from_status, to_status, by, reason FROM drift_history
             WHERE drift_id = $1 ORDER BY id",
            &[&drift_id],
        )
        .await?
        .iter()
        .map(|r| {
            Ok(StatusChange {
                at: r.get(0),
                from: r.get::<_, Option<&str>>(1).map(named).transpose()?,
                to: named(r.get::<_, &str>(2))?,
                by: r.get(3),
                reason: r.get(4),
            })
        })
        .collect::<Result<_>>()?;
    let timeline = tx
        .query(
            &format!(
                "SELECT {COLUMNS} FROM drift d JOIN hosts h ON h.id = d.host_id
                 WHERE d.host_id = $1 AND d.subject = $2 AND d.id != $3
                 ORDER BY d.opened_at DESC, d.id DESC LIMIT $4"
            ),
            &[
                &item.host_id,
                &item.subject,
                &drift_id,
                &i64::from(timeline_limit),
            ],
        )
        .await?
        .iter()
        .map(row)
        .collect::<Result<_>>()?;
    Ok(DriftRecord {
        item,
        events,
        history,
        timeline,
    })
}

/// The history rows numbered above `after` (the live stream's cursor), and the head: the
/// highest number committed (`drift_history_head`, which retention never lowers). Run in a
/// REPEATABLE READ transaction, so both come from one snapshot.
pub async fn changes(tx: &Tx<'_>, after: i64, limit: u32) -> Result<DriftChanges> {
    let head: i64 = tx
        .query_one("SELECT last FROM drift_history_head", &[])
        .await?
        .get(0);
    let rows = tx
        .query(
            "SELECT dh.id, dh.drift_id, d.host_id, h.hostname, d.subject, dh.at, dh.from_status,
                    dh.to_status, dh.by, dh.reason, d.reason
             FROM drift_history dh JOIN drift d ON d.id = dh.drift_id
                  JOIN hosts h ON h.id = d.host_id
             WHERE dh.id > $1 ORDER BY dh.id LIMIT $2",
            &[&after, &i64::from(limit)],
        )
        .await?;
    let changes = rows
        .iter()
        .map(|r| {
            Ok(DriftChange {
                seq: r.get(0),
                drift_id: r.get(1),
                host_id: r.get(2),
                hostname: r.get(3),
                subject: r.get(4),
                at: r.get(5),
                from: r.get::<_, Option<&str>>(6).map(named).transpose()?,
                to: named(r.get::<_, &str>(7))?,
                by: r.get(8),
                reason: r.get(9),
                review_reason: r.get(10),
            })
        })
        .collect::<Result<_>>()?;
    Ok(DriftChanges { changes, head })
}

pub async fn resolve(
    tx: &Tx<'_>,
    key: Option<&AuditKey>,
    drift_id: Uuid,
    resolution: &Resolution,
    audit: &NewAudit,
) -> Result<DriftItem> {
    lock_history(tx).await?;
    // Locked: an ingest on another node cannot move it between the check and the write.
    tx.execute("SELECT 1 FROM drift WHERE id = $1 FOR UPDATE", &[&drift_id])
        .await?;
    let item = get(tx, drift_id).await?;
    // The rule is the pure module's; the store checks it in the write's transaction.
    drift::check_resolvable(item.status)
        .map_err(|why| StoreError::Conflict(format!("drift item {drift_id} is {why}")))?;
    // A person looked at it: no alert is due any more.
    tx.execute(
        "UPDATE drift SET status = 'resolved', resolution = $2, needs_alert = false,
                updated_at = $3
         WHERE id = $1",
        &[&drift_id, &json(resolution), &resolution.at],
    )
    .await?;
    history(
        tx,
        drift_id,
        resolution.at,
        Some(DriftStatus::Open),
        DriftStatus::Resolved,
        &resolution.by,
        resolution.category.name(),
    )
    .await?;
    audit::append(tx, key, audit).await?;
    get(tx, drift_id).await
}

/// The transaction-scoped advisory lock every transaction that may write `drift_history`
/// takes before anything else ("DWHISTRY"): history numbers are then handed out and
/// committed one transaction after the other, so a reader never sees number `n + 1` before
/// `n` (the live stream's cursor, `crate::live`). Taken first, before any row lock, so it
/// cannot close a cycle of waits with the row locks (a host's row, its drift, the audit
/// head) the same transactions take after it. The price: such transactions (ingest,
/// resolving, closing a window, a review) are serialized across the cluster.
pub const HISTORY_LOCK: i64 = 0x4457_4849_5354_5259;

/// Takes [`HISTORY_LOCK`]: the first statement of a transaction that may write history.
pub async fn lock_history(tx: &Tx<'_>) -> Result<()> {
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&HISTORY_LOCK])
        .await?;
    Ok(())
}

pub async fn history(
    tx: &Tx<'_>,
    drift_id: Uuid,
    at: Millis,
    from: Option<DriftStatus>,
    to: DriftStatus,
    by: &str,
    reason: &str,
) -> Result<()> {
    // Already held when the transaction took it first, as it must; taking it again is free.
    lock_history(tx).await?;
    // The number comes from the head row (not a sequence, whose numbers are visible before
    // the commit that uses them): the row's new value commits with the history row.
    tx.execute(
        "WITH n AS (UPDATE drift_history_head SET last = last + 1 RETURNING last)
         INSERT INTO drift_history (id, drift_id, at, from_status, to_status, by, reason)
         SELECT n.last, $1::uuid, $2::bigint, $3::text, $4::text, $5::text, $6::text FROM n",
        &[
            &drift_id,
            &at,
            &from.map(|s| s.name()),
            &to.name(),
            &by,
            &reason,
        ],
    )
    .await?;
    Ok(())
}

/// Untraced drift held long enough becomes alerts: for each host, the oldest due item and
/// every not yet alerted item first seen within `burst_ms` of it go into one alert. Each
/// host's due items are locked (another node's round skips the hosts this one holds), so
/// a burst is alerted once across the cluster.
pub async fn raise_due(
    tx: &Tx<'_>,
    now: Millis,
    hold_ms: i64,
    burst_ms: i64,
    words: AlertWords,
) -> Result<u32> {
    let due = tx
        .query(
            "SELECT host_id, min(untraced_since) FROM drift
             WHERE needs_alert AND untraced_since <= $1 GROUP BY host_id",
            &[&(now - hold_ms)],
        )
        .await?;
    let mut raised = 0;
    for due in due {
        let host_id: Uuid = due.get(0);
        let oldest: Millis = due.get(1);
        let locked = tx
            .query(
                "SELECT id FROM drift WHERE host_id = $1 AND needs_alert AND untraced_since <= $2
                 FOR UPDATE SKIP LOCKED",
                &[&host_id, &(oldest + burst_ms)],
            )
            .await?;
        let locked: Vec<Uuid> = locked.iter().map(|r| r.get(0)).collect();
        let rows = tx
            .query(
                &format!(
                    "SELECT {COLUMNS} FROM drift d JOIN hosts h ON h.id = d.host_id
                     WHERE d.id = ANY($1) AND d.needs_alert
                     ORDER BY d.untraced_since, d.id"
                ),
                &[&locked],
            )
            .await?;
        let items = rows.iter().map(row).collect::<Result<Vec<_>>>()?;
        let Some(first) = items.first() else {
            continue;
        };
        let held_from = first.untraced_since.unwrap_or(oldest);
        let mut tickets = BTreeMap::new();
        for window_id in items.iter().filter_map(|item| item.window_id) {
            let ticket = tx
                .query_opt("SELECT ticket FROM windows WHERE id = $1", &[&window_id])
                .await?
                .map(|r| r.get::<_, String>(0));
            tickets.insert(window_id, ticket);
        }
        let burst = UntracedBurst {
            host_id,
            hostname: first.hostname.clone(),
            items,
            tickets,
            held_ms: now - held_from,
        };
        let alert_id = insert_alert(tx, &(words.untraced)(&burst), now).await?;
        let ids: Vec<Uuid> = burst.items.iter().map(|item| item.id).collect();
        tx.execute(
            "UPDATE drift SET needs_alert = false, alerted_at = $2, alert_id = $3
             WHERE id = ANY($1)",
            &[&ids, &now, &alert_id],
        )
        .await?;
        raised += 1;
    }
    Ok(raised)
}
