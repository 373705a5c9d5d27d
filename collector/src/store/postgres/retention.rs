//! Pruning by retention: deletes only, then the audit entry, in the caller's transaction.

use super::Tx;
use super::audit;
use crate::audit::AuditKey;
use crate::clock::Millis;
use crate::retention::{self, PRUNE_BATCH, PruneCounts, PrunePlan};
use crate::store::Result;

/// Drift items that may go: closed for good, unchanged since before the cut-off, and with
/// no command still waiting for an agent. At most `$2` of them, the same ones in each
/// statement of the transaction (by id).
const PRUNABLE_DRIFT: &str = "SELECT id FROM drift
     WHERE status IN ('resolved', 'accepted') AND updated_at < $1
       AND NOT EXISTS (SELECT 1 FROM commands c WHERE c.drift_id = drift.id AND c.status = 'pending')
     ORDER BY id LIMIT $2";

pub async fn prune(
    tx: &Tx<'_>,
    key: Option<&AuditKey>,
    plan: &PrunePlan,
    at: Millis,
) -> Result<PruneCounts> {
    let mut counts = PruneCounts::default();
    let batch = i64::from(PRUNE_BATCH);
    if let Some(before) = plan.resolved_drift_before {
        for (table, column, counted) in [
            ("events", "drift_id", &mut counts.events),
            ("drift_history", "drift_id", &mut counts.drift_history),
            ("commands", "drift_id", &mut counts.commands),
            ("drift", "id", &mut counts.drift),
        ] {
            *counted = tx
                .execute(
                    &format!("DELETE FROM {table} WHERE {column} IN ({PRUNABLE_DRIFT})"),
                    &[&before, &batch],
                )
                .await?;
        }
    }
    if let Some(before) = plan.delivered_alerts_before {
        const DELIVERED: &str = "SELECT id FROM alerts
             WHERE delivered_at IS NOT NULL AND delivered_at < $1 ORDER BY id LIMIT $2";
        counts.alert_deliveries = tx
            .execute(
                &format!("DELETE FROM alert_deliveries WHERE alert_id IN ({DELIVERED})"),
                &[&before, &batch],
            )
            .await?;
        counts.alerts = tx
            .execute(
                &format!("DELETE FROM alerts WHERE id IN ({DELIVERED})"),
                &[&before, &batch],
            )
            .await?;
    }
    if counts.total() > 0 {
        audit::append(tx, key, &retention::audit_entry(plan, &counts, at)).await?;
    }
    Ok(counts)
}
