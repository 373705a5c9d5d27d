//! `[store]`: where the collector keeps its records. SQLite (the default: one file in
//! `state_dir`) or PostgreSQL, for fleets that outgrow one node. No secret is written in
//! the file: the database password comes from `password_file`, and a URL holding one is
//! refused.

use std::path::PathBuf;

use serde::Deserialize;
use toml::Spanned;

use crate::diagnostics::Diagnostics;

pub const DEFAULT_POOL_SIZE: u64 = 16;
pub const MAX_POOL_SIZE: u64 = 1_000;

/// Which backend, with its settings.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum StoreSettings {
    /// `collector.db` in `state_dir`.
    #[default]
    Sqlite,
    Postgres(PostgresSettings),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PostgresSettings {
    /// `postgres://user@host:port/database` (no password; `?host=/dir` for a Unix socket).
    pub url: String,
    /// The password, alone in a file (a trailing newline is ignored); none: the server
    /// needs none (peer or certificate authentication).
    pub password_file: Option<PathBuf>,
    /// Most connections this node holds.
    pub pool_size: u32,
    pub tls: PostgresTls,
}

/// Like libpq's `sslmode`, the three modes that mean something.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PostgresTls {
    /// Plain TCP or a Unix socket (a database on this machine).
    Disable,
    /// Encrypted, the server's certificate not checked (protects against a passive
    /// listener only).
    Require,
    /// Encrypted, the certificate checked against `ca_file` and the URL's host name.
    VerifyFull { ca_file: PathBuf },
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct StoreToml {
    pub backend: Option<Spanned<String>>,
    pub url: Option<Spanned<String>>,
    pub password_file: Option<Spanned<String>>,
    pub pool_size: Option<Spanned<i64>>,
    pub tls: Option<Spanned<String>>,
    pub ca_file: Option<Spanned<String>>,
}

pub(super) fn compile_store(raw: Option<&StoreToml>, diag: &mut Diagnostics<'_>) -> StoreSettings {
    let Some(raw) = raw else {
        return StoreSettings::Sqlite;
    };
    let backend = raw
        .backend
        .as_ref()
        .map_or("sqlite", |b| b.get_ref().as_str());
    match backend {
        "sqlite" => {
            let postgres_only = [
                (raw.url.as_ref().map(Spanned::span), "url"),
                (
                    raw.password_file.as_ref().map(Spanned::span),
                    "password_file",
                ),
                (raw.pool_size.as_ref().map(Spanned::span), "pool_size"),
                (raw.tls.as_ref().map(Spanned::span), "tls"),
                (raw.ca_file.as_ref().map(Spanned::span), "ca_file"),
            ];
            for (span, key) in postgres_only {
                if let Some(span) = span {
                    diag.at(
                        span,
                        format!("store.{key}"),
                        "applies only to backend = \"postgres\" (SQLite keeps collector.db in state_dir)",
                    );
                }
            }
            StoreSettings::Sqlite
        }
        "postgres" => StoreSettings::Postgres(compile_postgres(raw, diag)),
        other => {
            let span = raw.backend.as_ref().map(Spanned::span).unwrap_or_default();
            diag.at(
                span,
                "store.backend",
                format!("must be \"sqlite\" or \"postgres\", got `{other}`"),
            );
            StoreSettings::Sqlite
        }
    }
}

fn compile_postgres(raw: &StoreToml, diag: &mut Diagnostics<'_>) -> PostgresSettings {
    let url = match &raw.url {
        None => {
            diag.unplaced(
                "store.url",
                "backend = \"postgres\" needs url = \"postgres://USER@HOST:PORT/DATABASE\"",
            );
            String::new()
        }
        Some(url) => {
            if let Err(why) = check_url(url.get_ref()) {
                diag.at(url.span(), "store.url", why);
            }
            url.get_ref().clone()
        }
    };
    let password_file = raw
        .password_file
        .as_ref()
        .map(|path| diag.absolute(path, "store.password_file"));
    let pool_size = diag.between_or(
        raw.pool_size.as_ref(),
        "store.pool_size",
        1,
        MAX_POOL_SIZE,
        DEFAULT_POOL_SIZE,
        "connections this node holds",
    ) as u32;
    let ca_file = raw
        .ca_file
        .as_ref()
        .map(|path| diag.absolute(path, "store.ca_file"));
    let mode = raw
        .tls
        .as_ref()
        .map_or("verify-full", |t| t.get_ref().as_str());
    let tls_span = raw.tls.as_ref().map(Spanned::span);
    let tls = match mode {
        "disable" | "require" => {
            if let Some(ca) = &raw.ca_file {
                diag.at(
                    ca.span(),
                    "store.ca_file",
                    format!("applies only to tls = \"verify-full\" (tls is \"{mode}\")"),
                );
            }
            if mode == "disable" {
                PostgresTls::Disable
            } else {
                PostgresTls::Require
            }
        }
        "verify-full" => match ca_file {
            Some(ca_file) => PostgresTls::VerifyFull { ca_file },
            None => {
                let message = "tls = \"verify-full\" (the default) needs ca_file, the CA \
                               that signed the database server's certificate; for a database \
                               on this machine set tls = \"disable\"";
                match tls_span {
                    Some(span) => diag.at(span, "store.ca_file", message),
                    None => diag.unplaced("store.ca_file", message),
                }
                PostgresTls::Disable
            }
        },
        other => {
            diag.at(
                tls_span.unwrap_or_default(),
                "store.tls",
                format!("must be \"disable\", \"require\" or \"verify-full\", got `{other}`"),
            );
            PostgresTls::Disable
        }
    };
    PostgresSettings {
        url,
        password_file,
        pool_size,
        tls,
    }
}

/// A `postgres://` or `postgresql://` URL without a password, and without the settings
/// this file gives its own keys to.
pub fn check_url(url: &str) -> Result<(), String> {
    let rest = url
        .strip_prefix("postgres://")
        .or_else(|| url.strip_prefix("postgresql://"))
        .ok_or_else(|| {
            "must start with postgres:// or postgresql:// (postgres://USER@HOST:PORT/DATABASE)"
                .to_owned()
        })?;
    let authority = rest.split(['/', '?']).next().unwrap_or("");
    if let Some((userinfo, _)) = authority.rsplit_once('@')
        && userinfo.contains(':')
    {
        return Err(
            "must not contain a password (USER:PASSWORD@): put it alone in password_file".into(),
        );
    }
    if let Some((_, query)) = rest.split_once('?') {
        for pair in query.split('&') {
            let name = pair.split('=').next().unwrap_or("");
            match name {
                "password" => {
                    return Err(
                        "must not contain a password (password=): put it alone in password_file"
                            .into(),
                    );
                }
                "sslmode" | "sslrootcert" | "sslcert" | "sslkey" => {
                    return Err(format!(
                        "must not set `{name}`: TLS is set by [store] tls and ca_file"
                    ));
                }
                _ => {}
            }
        }
    }
    if authority.is_empty() && !rest.contains("host=") {
        return Err(
            "names no host (postgres://USER@HOST:PORT/DATABASE, or ?host=/socket/dir)".into(),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::collector::CollectorConfig;

    fn parse(store: &str) -> Result<CollectorConfig, crate::error::ConfigErrors> {
        CollectorConfig::from_toml(
            &format!("plain_http = true\n[store]\n{store}"),
            Path::new("/etc/driftwatch/collector.toml"),
        )
    }

    #[test]
    fn sqlite_is_the_default_and_takes_no_postgres_key() {
        let config = CollectorConfig::from_toml(
            "plain_http = true\n",
            Path::new("/etc/driftwatch/collector.toml"),
        )
        .unwrap();
        assert_eq!(config.store, StoreSettings::Sqlite);
        let text = parse("backend = \"sqlite\"\npool_size = 4\n")
            .unwrap_err()
            .to_string();
        assert!(
            text.contains("store.pool_size") && text.contains("only to backend"),
            "{text}"
        );
    }

    #[test]
    fn postgres_settings_are_read() {
        let config = parse(
            "backend = \"postgres\"\nurl = \"postgres://dw@db.internal:5432/driftwatch\"\n\
             password_file = \"/etc/driftwatch/pg.pass\"\npool_size = 8\n\
             tls = \"verify-full\"\nca_file = \"/etc/driftwatch/pg-ca.pem\"\n",
        )
        .unwrap();
        assert_eq!(
            config.store,
            StoreSettings::Postgres(PostgresSettings {
                url: "postgres://dw@db.internal:5432/driftwatch".into(),
                password_file: Some("/etc/driftwatch/pg.pass".into()),
                pool_size: 8,
                tls: PostgresTls::VerifyFull {
                    ca_file: "/etc/driftwatch/pg-ca.pem".into()
                },
            })
        );
        let local = parse(
            "backend = \"postgres\"\nurl = \"postgresql://dw@/driftwatch?host=/run/postgresql\"\ntls = \"disable\"\n",
        )
        .unwrap();
        let StoreSettings::Postgres(local) = local.store else {
            panic!("postgres")
        };
        assert_eq!((local.pool_size, local.tls), (16, PostgresTls::Disable));
    }

    #[test]
    fn a_password_in_the_url_is_refused_with_its_place() {
        for url in [
            "postgres://dw:hunter2@db:5432/driftwatch",
            "postgres://dw@db/driftwatch?password=hunter2",
        ] {
            let text = parse(&format!(
                "backend = \"postgres\"\nurl = \"{url}\"\ntls = \"disable\"\n"
            ))
            .unwrap_err()
            .to_string();
            assert!(
                text.contains("collector.toml:4:")
                    && text.contains("store.url")
                    && text.contains("password_file"),
                "{text}"
            );
            assert!(
                !text.contains("hunter2"),
                "the password is not echoed: {text}"
            );
        }
    }

    #[test]
    fn bad_values_are_named() {
        let cases = [
            (
                "backend = \"mysql\"\n",
                "must be \"sqlite\" or \"postgres\"",
            ),
            ("backend = \"postgres\"\ntls = \"disable\"\n", "needs url"),
            (
                "backend = \"postgres\"\nurl = \"mysql://db/x\"\ntls = \"disable\"\n",
                "postgres://",
            ),
            (
                "backend = \"postgres\"\nurl = \"postgres://dw@db/x?sslmode=disable\"\ntls = \"disable\"\n",
                "`sslmode`",
            ),
            (
                "backend = \"postgres\"\nurl = \"postgres://dw@db/x\"\n",
                "needs ca_file",
            ),
            (
                "backend = \"postgres\"\nurl = \"postgres://dw@db/x\"\ntls = \"prefer\"\n",
                "\"disable\", \"require\" or \"verify-full\"",
            ),
            (
                "backend = \"postgres\"\nurl = \"postgres://dw@db/x\"\ntls = \"disable\"\npool_size = 0\n",
                "store.pool_size",
            ),
            (
                "backend = \"postgres\"\nurl = \"postgres://dw@db/x\"\ntls = \"disable\"\npassword_file = \"pg.pass\"\n",
                "absolute path",
            ),
            (
                "backend = \"postgres\"\nurl = \"postgres://dw@db/x\"\ntls = \"require\"\nca_file = \"/ca.pem\"\n",
                "only to tls = \"verify-full\"",
            ),
        ];
        for (store, expected) in cases {
            let text = parse(store).unwrap_err().to_string();
            assert!(text.contains(expected), "{store}: {text}");
        }
    }
}
