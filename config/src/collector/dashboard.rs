//! `[dashboard]`: the web console's sessions (`collector/src/web/`). Every key is optional.

use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::diagnostics::Diagnostics;

pub const DEFAULT_SESSION_TTL_SECS: u64 = 8 * 3_600;
pub const MAX_SESSION_TTL_SECS: u64 = 7 * 86_400;
pub const DEFAULT_SESSION_IDLE_SECS: u64 = 30 * 60;

/// How long a signed-in session lasts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dashboard {
    /// A session ends this long after sign-in, whatever happens.
    pub session_ttl: Duration,
    /// A session unused for this long ends (at most `session_ttl`).
    pub session_idle: Duration,
}

impl Default for Dashboard {
    fn default() -> Self {
        Dashboard {
            session_ttl: Duration::from_secs(DEFAULT_SESSION_TTL_SECS),
            session_idle: Duration::from_secs(DEFAULT_SESSION_IDLE_SECS),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DashboardToml {
    pub session_ttl_secs: Option<Spanned<i64>>,
    pub session_idle_secs: Option<Spanned<i64>>,
}

pub(super) fn compile_dashboard(
    raw: Option<&DashboardToml>,
    diag: &mut Diagnostics<'_>,
) -> Dashboard {
    let Some(raw) = raw else {
        return Dashboard::default();
    };
    let ttl = diag.between_or(
        raw.session_ttl_secs.as_ref(),
        "dashboard.session_ttl_secs",
        60,
        MAX_SESSION_TTL_SECS,
        DEFAULT_SESSION_TTL_SECS,
        "",
    );
    let idle = diag.between_or(
        raw.session_idle_secs.as_ref(),
        "dashboard.session_idle_secs",
        60,
        MAX_SESSION_TTL_SECS,
        DEFAULT_SESSION_IDLE_SECS.min(ttl),
        "",
    );
    Dashboard {
        session_ttl: Duration::from_secs(ttl),
        session_idle: Duration::from_secs(idle.min(ttl)),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::collector::CollectorConfig;

    fn load(extra: &str) -> Result<CollectorConfig, String> {
        CollectorConfig::from_toml(
            &format!("plain_http = true\n{extra}"),
            Path::new("/etc/driftwatch/collector.toml"),
        )
        .map_err(|e| e.to_string())
    }

    #[test]
    fn sessions_default_to_eight_hours_and_half_an_hour_idle() {
        let config = load("").unwrap();
        assert_eq!(config.dashboard.session_ttl.as_secs(), 8 * 3600);
        assert_eq!(config.dashboard.session_idle.as_secs(), 1800);
    }

    #[test]
    fn idle_never_outlasts_the_session() {
        let config =
            load("[dashboard]\nsession_ttl_secs = 600\nsession_idle_secs = 3600\n").unwrap();
        assert_eq!(config.dashboard.session_ttl.as_secs(), 600);
        assert_eq!(config.dashboard.session_idle.as_secs(), 600);
    }

    #[test]
    fn a_ttl_out_of_range_names_its_key() {
        let err = load("[dashboard]\nsession_ttl_secs = 5\n").unwrap_err();
        assert!(err.contains("dashboard.session_ttl_secs"), "{err}");
    }
}
