//! SIGHUP: reload what can change while serving, say what cannot.
//!
//! Reloaded: the TLS certificate chain and key and `[tls] client_ca` (the files are read
//! again on every reload, so a renewed certificate at the same path is picked up). New
//! connections get the new setup; open ones keep theirs.
//!
//! Everything else (listen addresses, plain HTTP or TLS, the state directory, the matching
//! and alerting times, `[[alert]]` sinks, `[limits]`, `[metrics]`, `[audit]`) is fixed at
//! start: a reload that changes it logs which settings need a restart, and the running
//! values stay in force. A file that is refused changes nothing and is logged as an error.

use std::path::Path;

use driftwatch_common::logging::one_line;
use driftwatch_config::collector::{CollectorConfig, Transport};

use crate::serve::LiveTls;

/// What a reload did.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Applied; the settings named changed in the file but need a restart.
    Applied { needs_restart: Vec<&'static str> },
    /// The file (or a TLS file it names) was refused: the running configuration stays.
    Refused(String),
}

/// Loads `path` again and applies what can be applied to `tls`, comparing with `running`
/// (the configuration the process started with). Logs the outcome.
pub fn reload(path: &Path, running: &CollectorConfig, tls: Option<&LiveTls>) -> Outcome {
    let outcome = apply(path, running, tls);
    match &outcome {
        Outcome::Refused(why) => tracing::error!(
            config = %path.display(),
            "configuration reload refused, the running configuration stays in force: {why}"
        ),
        Outcome::Applied { needs_restart } => {
            tracing::info!(
                config = %path.display(),
                tls = tls.is_some(),
                "configuration reloaded{}",
                if tls.is_some() { " (TLS certificate, key and client CA read again)" } else { "" }
            );
            if !needs_restart.is_empty() {
                tracing::warn!(
                    config = %path.display(),
                    "changed settings need a restart, their running values stay in force: {}",
                    needs_restart.join(", ")
                );
            }
        }
    }
    outcome
}

fn apply(path: &Path, running: &CollectorConfig, tls: Option<&LiveTls>) -> Outcome {
    let new = match CollectorConfig::load(path) {
        Ok(new) => new,
        Err(errors) => return Outcome::Refused(one_line(&errors.to_string())),
    };
    if let (Some(live), Transport::Tls { cert, key }) = (tls, &new.transport)
        && let Err(err) = live.replace(cert, key, new.tls_client_ca.as_deref())
    {
        return Outcome::Refused(one_line(&format!("{err:#}")));
    }
    Outcome::Applied {
        needs_restart: needs_restart(running, &new),
    }
}

/// The settings that differ between `running` and `new` and are not reloaded, by their
/// name in the file.
pub fn needs_restart(running: &CollectorConfig, new: &CollectorConfig) -> Vec<&'static str> {
    let mut changed = Vec::new();
    let mut differs = |name: &'static str, different: bool| {
        if different {
            changed.push(name);
        }
    };
    differs("listen", running.listen != new.listen);
    differs(
        "plain_http / [tls]",
        matches!(running.transport, Transport::PlainHttp)
            != matches!(new.transport, Transport::PlainHttp),
    );
    differs(
        "allow_plain_http_on_network",
        running.allow_plain_http_on_network != new.allow_plain_http_on_network,
    );
    differs("state_dir", running.state_dir != new.state_dir);
    differs(
        "max_body_bytes",
        running.max_body_bytes != new.max_body_bytes,
    );
    differs(
        "max_export_rows",
        running.max_export_rows != new.max_export_rows,
    );
    differs("hold_secs", running.hold != new.hold);
    differs("burst_secs", running.burst != new.burst);
    differs(
        "clock_skew_tolerance_secs",
        running.clock_skew_tolerance != new.clock_skew_tolerance,
    );
    differs(
        "silent_after_secs",
        running.silent_after != new.silent_after,
    );
    differs(
        "emergency_approval_secs",
        running.emergency_approval != new.emergency_approval,
    );
    differs("[[alert]]", running.alerts != new.alerts);
    differs("[limits]", running.limits != new.limits);
    differs("[metrics]", running.metrics != new.metrics);
    differs("[audit]", running.audit != new.audit);
    differs("[store]", running.store != new.store);
    // A setting not named above (added later) is never ignored silently.
    if changed.is_empty() && fixed_part(running) != fixed_part(new) {
        changed.push("other settings");
    }
    changed
}

/// The configuration without what a reload applies (TLS files, client CA) or that is not a
/// setting (its source path), for the catch-all comparison.
fn fixed_part(config: &CollectorConfig) -> String {
    let mut fixed = config.clone();
    fixed.source = Default::default();
    fixed.tls_client_ca = None;
    if let Transport::Tls { cert, key } = &mut fixed.transport {
        *cert = Default::default();
        *key = Default::default();
    }
    format!("{fixed:?}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> CollectorConfig {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("collector.toml");
        std::fs::write(&path, text).unwrap();
        CollectorConfig::load(&path).unwrap()
    }

    const TLS: &str = "[tls]\ncert = \"/etc/a.crt\"\nkey = \"/etc/a.key\"\n";

    #[test]
    fn tls_files_and_client_ca_are_reloadable() {
        let running = config(TLS);
        let renewed = config(
            "[tls]\ncert = \"/etc/b.crt\"\nkey = \"/etc/b.key\"\nclient_ca = \"/etc/ca.pem\"\n",
        );
        assert_eq!(needs_restart(&running, &renewed), Vec::<&str>::new());
        assert_eq!(
            needs_restart(&running, &running.clone()),
            Vec::<&str>::new()
        );
    }

    #[test]
    fn fixed_settings_are_named() {
        let running = config(&format!("hold_secs = 60\n{TLS}"));
        let changed = config(&format!(
            "hold_secs = 30\nlisten = \"127.0.0.1:9000\"\n{TLS}\n[[alert]]\ntype = \"jsonl\"\npath = \"/tmp/a.jsonl\"\n"
        ));
        assert_eq!(
            needs_restart(&running, &changed),
            vec!["listen", "hold_secs", "[[alert]]"]
        );
        let plain = config("plain_http = true\n");
        assert!(needs_restart(&running, &plain).contains(&"plain_http / [tls]"));
    }
}
