//! `[retention]`: how long the collector keeps delivered alerts and drift closed for good.
//! Every key is optional; without them everything is kept. The audit log is never pruned.

use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::diagnostics::Diagnostics;

/// Longest retention one may name (a hundred years).
pub const MAX_RETENTION_DAYS: u64 = 36_500;
pub const DEFAULT_PRUNE_INTERVAL_SECS: u64 = 3_600;
pub const MAX_PRUNE_INTERVAL_SECS: u64 = 86_400;

/// What is pruned after how long (`None`: kept for ever), and how often pruning runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Retention {
    /// Alerts delivered to every sink longer ago than this are removed.
    pub delivered_alerts: Option<Duration>,
    /// Resolved or accepted drift items unchanged for longer than this are removed, with
    /// their events, history and finished commands.
    pub resolved_drift: Option<Duration>,
    /// A prune round runs at start, then this often.
    pub interval: Duration,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            delivered_alerts: None,
            resolved_drift: None,
            interval: Duration::from_secs(DEFAULT_PRUNE_INTERVAL_SECS),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RetentionToml {
    pub delivered_alerts_days: Option<Spanned<i64>>,
    pub resolved_drift_days: Option<Spanned<i64>>,
    pub interval_secs: Option<Spanned<i64>>,
}

pub(super) fn compile_retention(
    raw: Option<&RetentionToml>,
    diag: &mut Diagnostics<'_>,
) -> Retention {
    let Some(raw) = raw else {
        return Retention::default();
    };
    let mut days = |value: &Option<Spanned<i64>>, key: &str| {
        value.as_ref().map(|v| {
            let days = diag
                .between(v, &format!("retention.{key}"), 1, MAX_RETENTION_DAYS, "")
                .unwrap_or(MAX_RETENTION_DAYS);
            Duration::from_secs(days * 86_400)
        })
    };
    let delivered_alerts = days(&raw.delivered_alerts_days, "delivered_alerts_days");
    let resolved_drift = days(&raw.resolved_drift_days, "resolved_drift_days");
    let interval = diag.between_or(
        raw.interval_secs.as_ref(),
        "retention.interval_secs",
        1,
        MAX_PRUNE_INTERVAL_SECS,
        DEFAULT_PRUNE_INTERVAL_SECS,
        "",
    );
    Retention {
        delivered_alerts,
        resolved_drift,
        interval: Duration::from_secs(interval),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::collector::CollectorConfig;

    fn parse(extra: &str) -> Result<CollectorConfig, crate::error::ConfigErrors> {
        CollectorConfig::from_toml(
            &format!("plain_http = true\n{extra}"),
            Path::new("/etc/driftwatch/collector.toml"),
        )
    }

    #[test]
    fn without_a_retention_table_everything_is_kept() {
        let config = parse("").unwrap();
        assert_eq!(config.retention, Retention::default());
        assert_eq!(config.retention.delivered_alerts, None);
        assert_eq!(config.retention.resolved_drift, None);
    }

    #[test]
    fn days_are_read_and_checked_with_their_place() {
        let config = parse(
            "[retention]\ndelivered_alerts_days = 90\nresolved_drift_days = 400\ninterval_secs = 60\n",
        )
        .unwrap();
        assert_eq!(
            config.retention.delivered_alerts,
            Some(Duration::from_secs(90 * 86_400))
        );
        assert_eq!(
            config.retention.resolved_drift,
            Some(Duration::from_secs(400 * 86_400))
        );
        assert_eq!(config.retention.interval, Duration::from_secs(60));

        let errors =
            parse("[retention]\nresolved_drift_days = 0\ninterval_secs = 0\nkeep_audit_days = 3\n")
                .unwrap_err();
        let text = errors.to_string();
        assert!(text.contains("keep_audit_days"), "{text}");
        let errors =
            parse("[retention]\nresolved_drift_days = 0\ninterval_secs = 0\n").unwrap_err();
        assert_eq!(errors.0.len(), 2, "{errors}");
        assert_eq!(
            errors.0[0].key.as_deref(),
            Some("retention.resolved_drift_days")
        );
        assert_eq!(errors.0[0].line, Some(3));
        assert_eq!(errors.0[1].key.as_deref(), Some("retention.interval_secs"));
    }
}
