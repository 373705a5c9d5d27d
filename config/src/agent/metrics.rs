//! `[metrics]` of the agent: its own Prometheus metrics, off by default.
//!
//! ```toml
//! [metrics]
//! listen = "127.0.0.1:9465"       # serve /metrics here (plain HTTP: keep it on loopback
//!                                 # or a management network); default: not served
//! textfile = "/var/lib/prometheus/node-exporter/driftwatch.prom"
//!                                 # write them for node_exporter's textfile collector
//!                                 # (atomically, every textfile_interval_secs); default: not written
//! textfile_interval_secs = 15     # 1..=3600
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::diagnostics::Diagnostics;

/// `metrics.textfile_interval_secs` when the file does not set it.
pub const DEFAULT_TEXTFILE_INTERVAL_SECS: u64 = 15;

/// Where the agent's own metrics go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetricsSettings {
    /// Serve `/metrics` on this address; `None`: not served.
    pub listen: Option<SocketAddr>,
    /// Write the metrics to this file for node_exporter; `None`: not written.
    pub textfile: Option<PathBuf>,
    pub textfile_interval: Duration,
}

impl Default for MetricsSettings {
    fn default() -> Self {
        MetricsSettings {
            listen: None,
            textfile: None,
            textfile_interval: Duration::from_secs(DEFAULT_TEXTFILE_INTERVAL_SECS),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct MetricsToml {
    pub listen: Option<Spanned<String>>,
    pub textfile: Option<Spanned<String>>,
    pub textfile_interval_secs: Option<Spanned<i64>>,
}

pub(super) fn compile(raw: &MetricsToml, diag: &mut Diagnostics<'_>) -> MetricsSettings {
    let listen = raw
        .listen
        .as_ref()
        .and_then(|text| match text.get_ref().parse::<SocketAddr>() {
            Ok(addr) => Some(addr),
            Err(_) => {
                diag.at(
                    text.span(),
                    "metrics.listen",
                    format!(
                        "expected an IP address and port such as `127.0.0.1:9465`, got `{}`",
                        text.get_ref()
                    ),
                );
                None
            }
        });
    let textfile = raw
        .textfile
        .as_ref()
        .and_then(|text| match check_textfile(text.get_ref()) {
            Ok(path) => Some(path),
            Err(why) => {
                diag.at(text.span(), "metrics.textfile", why);
                None
            }
        });
    let interval = diag.between_or(
        raw.textfile_interval_secs.as_ref(),
        "metrics.textfile_interval_secs",
        1,
        3600,
        DEFAULT_TEXTFILE_INTERVAL_SECS,
        "seconds between rewrites of the textfile",
    );
    MetricsSettings {
        listen,
        textfile,
        textfile_interval: Duration::from_secs(interval),
    }
}

/// node_exporter reads only `*.prom` files in its directory; the temporary file the
/// agent renames into place is `<name>.tmp` beside it, which it ignores.
fn check_textfile(path: &str) -> Result<PathBuf, String> {
    if !path.starts_with('/') || path.contains('\0') {
        return Err(format!("must be an absolute path, got `{path}`"));
    }
    let path: PathBuf = Path::new(path).components().collect();
    if path.extension().is_none_or(|ext| ext != "prom") || path.file_stem().is_none() {
        return Err(format!(
            "must end in `.prom` (node_exporter's textfile collector reads only those), got `{}`",
            path.display()
        ));
    }
    Ok(path)
}
