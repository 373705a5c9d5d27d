//! Pruning by retention: deletes only, then the audit entry, in the caller's transaction.

use rusqlite::{Connection, params};

use super::audit;
use crate::clock::Millis;
use crate::retention::{self, PRUNE_BATCH, PruneCounts, PrunePlan};
use crate::store::Result;

/// Drift items that may go: closed for good, unchanged since before the cut-off, and with
/// no command still waiting for an agent.
/// At most `?2` of them, the same ones in each statement of the transaction (by id).
const PRUNABLE_DRIFT: &str = "SELECT id FROM drift
     WHERE status IN ('resolved', 'accepted') AND updated_at < ?1
       AND NOT EXISTS (SELECT 1 FROM commands c WHERE c.drift_id = drift.id AND c.status = 'pending')
     ORDER BY id LIMIT ?2";

pub fn prune(conn: &Connection, plan: &PrunePlan, at: Millis) -> Result<PruneCounts> {
    let mut counts = PruneCounts::default();
    if let Some(before) = plan.resolved_drift_before {
        let count = |sql: &str| -> Result<u64> {
            Ok(conn.execute(
                &sql.replace("{DRIFT}", PRUNABLE_DRIFT),
                params![before, PRUNE_BATCH],
            )? as u64)
        };
        counts.events = count("DELETE FROM events WHERE drift_id IN ({DRIFT})")?;
        counts.drift_history = count("DELETE FROM drift_history WHERE drift_id IN ({DRIFT})")?;
        counts.commands = count("DELETE FROM commands WHERE drift_id IN ({DRIFT})")?;
        counts.drift = count("DELETE FROM drift WHERE id IN ({DRIFT})")?;
    }
    if let Some(before) = plan.delivered_alerts_before {
        const DELIVERED: &str = "SELECT id FROM alerts
             WHERE delivered_at IS NOT NULL AND delivered_at < ?1 ORDER BY id LIMIT ?2";
        counts.alert_deliveries = conn.execute(
            &format!("DELETE FROM alert_deliveries WHERE alert_id IN ({DELIVERED})"),
            params![before, PRUNE_BATCH],
        )? as u64;
        counts.alerts = conn.execute(
            &format!("DELETE FROM alerts WHERE id IN ({DELIVERED})"),
            params![before, PRUNE_BATCH],
        )? as u64;
    }
    if counts.total() > 0 {
        audit::append(conn, &retention::audit_entry(plan, &counts, at))?;
    }
    Ok(counts)
}
