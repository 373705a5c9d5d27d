//! `driftwatch-collector`: the central service and its offline administration.

use driftwatch_common::pathbytes::Shown;
use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{CommandFactory, Parser, Subcommand};
use driftwatch_collector::app::{App, Settings};
use driftwatch_collector::audit::VerifyReport;
use driftwatch_collector::clock::SystemClock;
use driftwatch_collector::identity::Role;
use driftwatch_collector::store::{PostgresStore, SqliteStore, Store, StoreError};
use driftwatch_collector::{alerts, audit, reload, serve};
use driftwatch_common::logging::{ConfigRefused, EXIT_CONFIG, LogFormat, LogOutput};
use driftwatch_config::collector::CollectorConfig;
use driftwatch_config::collector::DEFAULT_COLLECTOR_CONFIG_PATH;
use driftwatch_config::collector::{PostgresSettings, StoreSettings};

/// Exit codes.
const EXIT_OK: u8 = 0;
const EXIT_AUDIT_BROKEN: u8 = 1;
const EXIT_ERROR: u8 = 2;
// EXIT_CONFIG (78): the configuration was refused; the unit does not restart on it.

#[derive(Parser)]
#[command(
    name = "driftwatch-collector",
    version,
    about = "The driftwatch collector: ingests drift from agents, matches it against approved \
             change windows and alerts on what no approval covers",
    after_help = "Exit codes: 0 success, 1 `audit verify` found the audit log altered, 2 error,\n\
                  78 the configuration was refused (every problem with file, line and key; \
                  nothing was started or written).\n\
                  Logs go to stderr; DRIFTWATCH_LOG sets the filter (e.g. `debug`). Under \
                  systemd's journal (JOURNAL_STREAM) lines carry a priority and no timestamp.\n\
                  `serve` reloads the TLS certificate, key and client CA on SIGHUP; other \
                  changed settings are logged as needing a restart, and a refused file keeps \
                  the running configuration."
)]
struct Cli {
    /// The configuration file.
    #[arg(
        long,
        global = true,
        env = "DRIFTWATCH_COLLECTOR_CONFIG",
        default_value = DEFAULT_COLLECTOR_CONFIG_PATH
    )]
    config: PathBuf,
    /// Log line format on stderr, fatal errors included.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the service until SIGTERM or SIGINT.
    Serve {
        /// Listen here instead of the file's `listen` (port 0 picks a free port).
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Write the address actually listened on to this file once listening.
        #[arg(long)]
        port_file: Option<PathBuf>,
        /// Deprecated: `--log-format json`.
        #[arg(long, hide = true)]
        log_json: bool,
    },
    /// Check the configuration file and print every problem with its place; with TLS, also
    /// load the certificate, key and client CA (what a reload would load).
    ValidateConfig,
    /// API tokens, offline (for the first admin token, or when the API is down).
    #[command(subcommand)]
    Token(TokenCommand),
    /// The audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Copy the database consistently while `serve` runs (SQLite's online backup API) into
    /// FILE (0600), checked with SQLite's integrity check before it takes FILE's name, and
    /// recorded in the audit log. Run it as the collector's user. The audit signing key is
    /// not in the copy: keep it as well (see the README's operations section).
    Backup {
        /// The copy; refused if it exists, unless --force.
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// Replace FILE if it exists.
        #[arg(long)]
        force: bool,
    },
    /// Copy this collector's SQLite database (the one the configuration names) into an
    /// empty PostgreSQL database, table by table in id order, then verify the audit log
    /// there and print each table's rows on both sides. Stop `serve` first; afterwards set
    /// `[store] backend = "postgres"` and start it on the new database.
    MigrateStore(MigrateStoreArgs),
}

/// `migrate-store`: where to (the keys of `[store]` for PostgreSQL).
#[derive(clap::Args)]
struct MigrateStoreArgs {
    /// The empty database: postgres://USER@HOST:PORT/DATABASE (no password in it;
    /// `?host=/run/postgresql` for a Unix socket).
    #[arg(long, value_name = "URL")]
    to: String,
    /// A file holding the password alone (a trailing newline is ignored).
    #[arg(long, value_name = "FILE")]
    password_file: Option<PathBuf>,
    /// TLS to the database: disable (a Unix socket or loopback), require, or verify-full
    /// (the default, with --ca-file).
    #[arg(long, value_name = "MODE", default_value = "verify-full")]
    tls: String,
    /// The CA certificate(s) that sign the server's certificate (for verify-full).
    #[arg(long, value_name = "FILE")]
    ca_file: Option<PathBuf>,
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Issue a token and print it on stdout (it is shown this once).
    Create {
        /// admin, change-manager, security or auditor.
        #[arg(long)]
        role: Role,
        /// The person it is for (created if no person has that name); everything done
        /// with the token is recorded as theirs. `--name` is the old spelling.
        #[arg(long, alias = "name")]
        person: String,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Check the hash chain, every entry's signature and the checkpoints (exit code 1 if
    /// the log was altered). Only checkpoints kept outside the database (--checkpoints)
    /// prove that nothing was removed from the end, and that nothing they cover was
    /// rewritten even by someone holding the key.
    Verify {
        /// Signed checkpoints kept elsewhere: JSON lines as the jsonl alert sink writes
        /// them (other alerts are skipped), or what `driftctl audit checkpoints` prints.
        #[arg(long, value_name = "FILE")]
        checkpoints: Option<PathBuf>,
        /// The public key (64 hex digits, or a file holding it or the API's JSON); default:
        /// derived from the signing key the configuration names.
        #[arg(long, value_name = "KEY")]
        public_key: Option<String>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Create the signing key named by `[audit] signing_key_file` (0600; refuses to
    /// replace one) and print its public key.
    Keygen,
    /// Print the public key of the signing key, for verifiers.
    PublicKey {
        /// Print {"algorithm", "public_key", "key_id"}.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    // The packaging build's `driftwatch-collector generate-docs DIR`: read before clap
    // (and any configuration), so it stays out of the documented interface.
    if let Some(dir) = driftwatch_common::cli_docs::requested_dir(std::env::args_os()) {
        return match driftwatch_common::cli_docs::write(Cli::command(), "8", &dir) {
            Ok(()) => ExitCode::from(EXIT_OK),
            Err(err) => {
                eprintln!("driftwatch-collector: error: {err:#}");
                ExitCode::from(EXIT_ERROR)
            }
        };
    }
    let cli = Cli::parse();
    let deprecated_json = matches!(cli.command, Command::Serve { log_json: true, .. });
    let format = if deprecated_json {
        LogFormat::Json
    } else {
        cli.log_format
    };
    let log = LogOutput::detect(format);
    let filter = tracing_subscriber::EnvFilter::try_from_env("DRIFTWATCH_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    log.init_tracing(filter);
    if deprecated_json {
        tracing::warn!("`serve --log-json` is deprecated: use `--log-format json`");
    }
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            log.fatal(
                "driftwatch_collector",
                "driftwatch-collector: ",
                &format!("{err:#}"),
            );
            let refused = err.chain().any(|cause| cause.is::<ConfigRefused>());
            ExitCode::from(if refused { EXIT_CONFIG } else { EXIT_ERROR })
        }
    }
}

/// `why` as a refused configuration (exit 78).
fn refused(why: impl std::fmt::Display) -> anyhow::Error {
    anyhow::Error::new(ConfigRefused(why.to_string()))
}

fn run(cli: Cli) -> anyhow::Result<u8> {
    let config = load_config(&cli.config)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    match cli.command {
        Command::ValidateConfig => {
            // What a reload would load too: `ExecReload=` runs this before the SIGHUP.
            serve::LiveTls::for_transport(&config.transport, config.tls_client_ca.as_deref())
                .map_err(|err| refused(format!("{}: {err:#}", config.source.display())))?;
            println!("{}: ok", config.source.display());
            Ok(EXIT_OK)
        }
        Command::Serve {
            listen, port_file, ..
        } => runtime.block_on(serve_command(config, cli.config, listen, port_file)),
        Command::Token(TokenCommand::Create { role, person }) => {
            runtime.block_on(token_create(&config, role, &person))
        }
        Command::Audit(AuditCommand::Verify {
            checkpoints,
            public_key,
            json,
        }) => runtime.block_on(audit_verify(
            &config,
            checkpoints.as_deref(),
            public_key.as_deref(),
            json,
        )),
        Command::Backup { file, force } => runtime.block_on(backup(&config, &file, force)),
        Command::MigrateStore(args) => runtime.block_on(migrate_store(&config, &args)),
        Command::Audit(AuditCommand::Keygen) => {
            let path = config.audit_key_path();
            let key = audit::key_file::generate(&path).map_err(|why| anyhow::anyhow!(why))?;
            println!("{}", key.public().hex());
            eprintln!(
                "created the audit signing key {} (key id {}); keep a copy of the public key \
                 where evidence is verified",
                path.display(),
                key.public().key_id
            );
            Ok(EXIT_OK)
        }
        Command::Audit(AuditCommand::PublicKey { json }) => {
            let (key, source) = audit::key_file::load(&config.audit_key_path(), false)
                .map_err(|why| anyhow::anyhow!(why))?;
            if json {
                println!("{}", serde_json::to_string(&key.public().view())?);
            } else {
                println!("{}", key.public().hex());
                eprintln!("key id {} ({source})", key.public().key_id);
            }
            Ok(EXIT_OK)
        }
    }
}

fn load_config(path: &Path) -> anyhow::Result<CollectorConfig> {
    CollectorConfig::load(path).map_err(|errors| {
        refused(format!(
            "invalid configuration ({} problem{}):\n{errors}",
            errors.0.len(),
            if errors.0.len() == 1 { "" } else { "s" }
        ))
    })
}

/// Opens (creating the state directory, 0700, if needed) the SQLite database.
fn open_store(config: &CollectorConfig) -> anyhow::Result<SqliteStore> {
    if !config.state_dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&config.state_dir)
            .with_context(|| format!("cannot create {}", config.state_dir.display()))?;
    }
    let path = config.db_path();
    SqliteStore::open(&path).with_context(|| format!("cannot open the database {}", path.display()))
}

/// Connects to the PostgreSQL database of `[store]` and migrates it. A password or CA
/// file that cannot be used is the configuration's fault (exit 78).
async fn open_postgres(settings: &PostgresSettings) -> anyhow::Result<PostgresStore> {
    let store = PostgresStore::configure(settings).map_err(|err| refused(format!("{err}")))?;
    store
        .migrate()
        .await
        .map_err(|err| anyhow::anyhow!("cannot open the PostgreSQL store: {err}"))?;
    Ok(store)
}

/// What the service needs of a backend beyond [`Store`]: the audit key and a clean close.
trait Backend: Store {
    fn set_key(
        &self,
        key: Arc<audit::AuditKey>,
    ) -> impl std::future::Future<Output = Result<(), StoreError>> + Send;
    fn close(&self);
    /// Where the records are, for the log.
    fn describe(config: &CollectorConfig) -> String;
}

impl Backend for SqliteStore {
    fn set_key(
        &self,
        key: Arc<audit::AuditKey>,
    ) -> impl std::future::Future<Output = Result<(), StoreError>> + Send {
        self.set_audit_key(key)
    }
    fn close(&self) {
        SqliteStore::close(self);
    }
    fn describe(config: &CollectorConfig) -> String {
        config.db_path().display().to_string()
    }
}

impl Backend for PostgresStore {
    fn set_key(
        &self,
        key: Arc<audit::AuditKey>,
    ) -> impl std::future::Future<Output = Result<(), StoreError>> + Send {
        self.set_audit_key(key)
    }
    fn close(&self) {
        PostgresStore::close(self);
    }
    fn describe(config: &CollectorConfig) -> String {
        match &config.store {
            // The URL holds no password (refused by the configuration).
            StoreSettings::Postgres(pg) => pg.url.clone(),
            StoreSettings::Sqlite => "postgres".into(),
        }
    }
}

/// The service's operations, with the audit signing key (created on first use): every
/// audit entry written from here on is signed.
async fn app<S: Backend>(
    config: &CollectorConfig,
    store: S,
    sinks: alerts::Sinks,
) -> anyhow::Result<Arc<App<S>>> {
    let (key, source) = audit::key_file::load(&config.audit_key_path(), true)
        .map_err(|why| anyhow::anyhow!(why))?;
    tracing::info!(key_id = %key.public().key_id, %source, "audit signing key loaded");
    let key = Arc::new(key);
    store
        .set_key(Arc::clone(&key))
        .await
        .context("cannot hand the audit key to the database")?;
    let app = App::new(store, Settings::from(config), Arc::new(SystemClock), sinks)
        .await
        .context("cannot load the change windows")?
        .with_audit_key(key, config.audit.checkpoint_interval)
        .with_retention(config.retention.clone())
        .with_dashboard(driftwatch_collector::app::DashboardSettings::new(
            &config.dashboard,
            matches!(
                config.transport,
                driftwatch_config::collector::Transport::Tls { .. }
            ),
        ));
    Ok(Arc::new(app))
}

async fn serve_command(
    config: CollectorConfig,
    config_path: PathBuf,
    listen: Option<SocketAddr>,
    port_file: Option<PathBuf>,
) -> anyhow::Result<u8> {
    // From here on SIGHUP reloads instead of ending the process (a logrotate postrotate).
    let hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .context("cannot handle SIGHUP")?;
    let addr = listen.unwrap_or(config.listen);
    if let Err(why) = config.check_listen(addr) {
        return Err(refused(why));
    }
    // Sinks and TLS files first: a missing secret, CA, certificate or key stops the start
    // before anything is written.
    let sinks = alerts::Sinks::from_config(&config.alerts).map_err(refused)?;
    let tls = serve::LiveTls::for_transport(&config.transport, config.tls_client_ca.as_deref())
        .map_err(|err| refused(format!("{err:#}")))?;
    match config.store.clone() {
        StoreSettings::Sqlite => {
            let store = open_store(&config)?;
            serve_with(
                config,
                config_path,
                addr,
                port_file,
                hangups,
                sinks,
                tls,
                store,
            )
            .await
        }
        StoreSettings::Postgres(settings) => {
            let store = open_postgres(&settings).await?;
            serve_with(
                config,
                config_path,
                addr,
                port_file,
                hangups,
                sinks,
                tls,
                store,
            )
            .await
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn serve_with<S: Backend>(
    config: CollectorConfig,
    config_path: PathBuf,
    addr: SocketAddr,
    port_file: Option<PathBuf>,
    mut hangups: tokio::signal::unix::Signal,
    sinks: alerts::Sinks,
    tls: Option<Arc<serve::LiveTls>>,
    store: S,
) -> anyhow::Result<u8> {
    let app = app(&config, store.clone(), sinks).await?;
    if app
        .note_alert_sinks(&config.source)
        .await
        .map_err(|err| anyhow::anyhow!("cannot record the alert configuration: {err}"))?
    {
        tracing::info!("alert sinks changed since the last start: recorded in the audit log");
    }
    let listener = TcpListener::bind(addr).with_context(|| format!("cannot listen on {addr}"))?;
    let bound = listener
        .local_addr()
        .context("cannot read the bound address")?;
    if let Some(port_file) = &port_file {
        write_atomically(port_file, format!("{bound}\n").as_bytes())
            .with_context(|| format!("cannot write {}", port_file.display()))?;
    }
    let metrics_listener = match config.metrics.listen {
        None => None,
        Some(metrics_addr) => {
            if let Err(why) = config.check_listen(metrics_addr) {
                return Err(refused(format!("metrics.listen: {why}")));
            }
            let listener = TcpListener::bind(metrics_addr)
                .with_context(|| format!("cannot listen on {metrics_addr} (metrics.listen)"))?;
            let bound = listener
                .local_addr()
                .context("cannot read the bound metrics address")?;
            tracing::info!(address = %bound, "metrics listening");
            Some(listener)
        }
    };
    let scheme = match config.transport {
        driftwatch_config::collector::Transport::Tls { .. } => "https",
        driftwatch_config::collector::Transport::PlainHttp => "http",
    };
    tracing::info!(address = %bound, url = %format!("{scheme}://{bound}"), db = %S::describe(&config), "listening");
    // Under systemd (Type=notify); a no-op elsewhere.
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
    let stop = async {
        stop_signal().await;
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    };
    let options = serve::ServeOptions {
        transport: config.transport.clone(),
        client_ca: config.tls_client_ca.clone(),
    };
    let reloading = {
        let tls = tls.clone();
        tokio::spawn(async move {
            while hangups.recv().await.is_some() {
                let _ = sd_notify::notify(&[sd_notify::NotifyState::Reloading]);
                tracing::info!(config = %config_path.display(), "SIGHUP: reloading the configuration");
                reload::reload(&config_path, &config, tls.as_deref());
                let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
            }
        })
    };
    let outcome = serve::serve_live(app, &options, tls, listener, metrics_listener, stop).await;
    reloading.abort();
    store.close();
    tracing::info!("stopped");
    outcome.map(|()| EXIT_OK)
}

/// Completes on SIGTERM or SIGINT.
async fn stop_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(term) => term,
        Err(err) => {
            tracing::error!(error = %err, "cannot listen for SIGTERM; stop with SIGINT");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut temp = path.as_os_str().to_owned();
    temp.push(".tmp");
    let temp = PathBuf::from(temp);
    let mut file = std::fs::File::create(&temp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&temp, path)
}

async fn backup(config: &CollectorConfig, file: &Path, force: bool) -> anyhow::Result<u8> {
    let actor = format!("local:{}", local_user());
    let done = driftwatch_collector::backup::backup(config, file, force, &actor).await?;
    println!(
        "{}: ok, {} bytes, sha256 {}, schema version {}, audit log of {} entries (head {})",
        Shown(&done.file.display().to_string()),
        done.bytes,
        done.sha256,
        done.schema_version,
        done.audit_entries,
        done.audit_head,
    );
    match done.recorded {
        Ok(seq) => eprintln!("recorded in the audit log as entry {seq}"),
        Err(why) => eprintln!(
            "warning: the copy is made but NOT recorded in the audit log: {why} (an entry \
             must be signed; run the backup where the collector's signing key is readable)"
        ),
    }
    Ok(EXIT_OK)
}

async fn token_create(config: &CollectorConfig, role: Role, person: &str) -> anyhow::Result<u8> {
    match &config.store {
        StoreSettings::Sqlite => token_create_with(config, role, person, open_store(config)?).await,
        StoreSettings::Postgres(settings) => {
            let store = open_postgres(settings).await?;
            token_create_with(config, role, person, store).await
        }
    }
}

async fn token_create_with<S: Backend>(
    config: &CollectorConfig,
    role: Role,
    person: &str,
    store: S,
) -> anyhow::Result<u8> {
    // No alert goes out from here: the sinks (and their secrets) are not needed.
    let app = app(config, store.clone(), alerts::Sinks::none()).await?;
    let actor = format!("local:{}", local_user());
    let created = app.create_token_offline(&actor, person, role).await;
    store.close();
    let issued = created.map_err(|err| anyhow::anyhow!("{err}"))?;
    println!("{}", issued.text);
    let record = &issued.record;
    eprintln!(
        "created a token with role {} for {}{} (id {}); it is shown only now, keep it secret",
        record.role,
        Shown(&record.name),
        if issued.person_created {
            " (new person)"
        } else {
            ""
        },
        record.id
    );
    Ok(EXIT_OK)
}

/// Who runs this command, for the audit log: the login name if the environment has one,
/// else the uid.
fn local_user() -> String {
    ["SUDO_USER", "USER", "LOGNAME"]
        .iter()
        .find_map(|var| std::env::var(var).ok().filter(|v| !v.is_empty()))
        .or_else(|| {
            let status = std::fs::read_to_string("/proc/self/status").ok()?;
            let uid = status.lines().find_map(|l| l.strip_prefix("Uid:"))?;
            Some(format!("uid {}", uid.split_whitespace().next()?))
        })
        .unwrap_or_else(|| "unknown".to_owned())
}

async fn audit_verify(
    config: &CollectorConfig,
    checkpoints: Option<&Path>,
    public_key: Option<&str>,
    json: bool,
) -> anyhow::Result<u8> {
    let key = match public_key {
        Some(text) => audit::key_file::read_public_key(text).map_err(|why| anyhow::anyhow!(why))?,
        None => {
            let (key, _) =
                audit::key_file::load(&config.audit_key_path(), false).map_err(|why| {
                    anyhow::anyhow!("{why}; or name the public key with --public-key KEY")
                })?;
            key.public().clone()
        }
    };
    let held = match checkpoints {
        None => Vec::new(),
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            audit::signing::parse_checkpoints(&text)
                .map_err(|why| anyhow::anyhow!("{}: {why}", path.display()))?
        }
    };
    let (log, stored) = match &config.store {
        StoreSettings::Sqlite => {
            let path = config.db_path();
            let store = SqliteStore::open_read_only(&path)
                .with_context(|| format!("cannot open the database {}", path.display()))?;
            let read = (store.audit_log().await, store.audit_checkpoints().await);
            store.close();
            read
        }
        StoreSettings::Postgres(settings) => {
            let store = open_postgres(settings).await?;
            let read = (store.audit_log().await, store.audit_checkpoints().await);
            store.close();
            read
        }
    };
    let (entries, head) = log.context("cannot read the audit log")?;
    let stored = stored.context("cannot read the checkpoints")?;
    let report = audit::verify_anchored(
        &entries,
        head,
        audit::Anchors {
            key: Some(&key),
            held: &held,
            stored: &stored,
        },
    );
    print_report(&report, json);
    Ok(if report.ok {
        EXIT_OK
    } else {
        EXIT_AUDIT_BROKEN
    })
}

/// `migrate-store` (issue 10): copy, verify the audit log on the PostgreSQL side with the
/// same check as `audit verify`, print the counts.
async fn migrate_store(config: &CollectorConfig, args: &MigrateStoreArgs) -> anyhow::Result<u8> {
    use driftwatch_config::collector::PostgresTls;
    if !matches!(config.store, StoreSettings::Sqlite) {
        return Err(anyhow::anyhow!(
            "{} already names a PostgreSQL store: migrate-store copies the SQLite database of \
             a collector whose [store] backend is sqlite",
            config.source.display()
        ));
    }
    let tls = match (args.tls.as_str(), &args.ca_file) {
        ("disable", None) => PostgresTls::Disable,
        ("require", None) => PostgresTls::Require,
        ("verify-full", Some(ca_file)) => PostgresTls::VerifyFull {
            ca_file: ca_file.clone(),
        },
        ("verify-full", None) => {
            return Err(anyhow::anyhow!(
                "--tls verify-full (the default) needs --ca-file; --tls disable for a Unix \
                 socket or loopback"
            ));
        }
        ("disable" | "require", Some(_)) => {
            return Err(anyhow::anyhow!(
                "--ca-file goes with --tls verify-full only"
            ));
        }
        (other, _) => {
            return Err(anyhow::anyhow!(
                "--tls {other:?}: expected disable, require or verify-full"
            ));
        }
    };
    driftwatch_config::collector::check_url(&args.to)
        .map_err(|why| anyhow::anyhow!("--to {why}"))?;
    let settings = PostgresSettings {
        url: args.to.clone(),
        password_file: args.password_file.clone(),
        pool_size: 2,
        tls,
    };
    // The key that signed the log verifies it on the other side (checked before copying).
    let (key, _) = audit::key_file::load(&config.audit_key_path(), false)
        .map_err(|why| anyhow::anyhow!("{why}: the audit log is verified after the copy"))?;
    let source = config.db_path();
    if !source.exists() {
        return Err(anyhow::anyhow!(
            "{} does not exist: nothing to copy",
            source.display()
        ));
    }
    let migrated =
        driftwatch_collector::store::migrate::migrate(&source, &settings, |table, rows| {
            if rows % 100_000 == 0 {
                eprintln!("{table}: {rows} rows copied");
            }
        })
        .await
        .map_err(|err| anyhow::anyhow!("migrate-store: {err}"))?;
    println!("{:<20} {:>12} {:>12}", "table", "sqlite", "postgres");
    for table in &migrated.tables {
        println!(
            "{:<20} {:>12} {:>12}",
            table.table, table.sqlite, table.postgres
        );
    }
    for table in &migrated.postgres_only {
        println!("{table:<20} {:>12} {:>12}", "-", "(postgres only)");
    }
    let store = open_postgres(&settings).await?;
    let read = (store.audit_log().await, store.audit_checkpoints().await);
    store.close();
    let (entries, head) = read.0.context("cannot read the copied audit log")?;
    let stored = read.1.context("cannot read the copied checkpoints")?;
    let report = audit::verify_anchored(
        &entries,
        head,
        audit::Anchors {
            key: Some(key.public()),
            held: &[],
            stored: &stored,
        },
    );
    print_report(&report, false);
    if !report.ok {
        eprintln!(
            "the copied audit log does NOT verify: keep using the SQLite collector and \
             investigate (`audit verify` on it)"
        );
        return Ok(EXIT_AUDIT_BROKEN);
    }
    eprintln!(
        "copied into {}: set [store] backend = \"postgres\" with this url and start the \
         collector; keep {} until it runs",
        Shown(&args.to),
        Shown(&source.display().to_string())
    );
    Ok(EXIT_OK)
}

fn print_report(report: &VerifyReport, json: bool) {
    if json {
        let text = serde_json::to_string_pretty(report).expect("reports serialize");
        println!("{text}");
        return;
    }
    for line in report.text_lines() {
        println!("{}", driftwatch_common::pathbytes::escape_text(&line));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_argument_and_subcommand_has_help_text() {
        Cli::command().debug_assert();
        assert_eq!(
            driftwatch_common::cli_docs::missing_help(Cli::command()),
            Vec::<String>::new()
        );
    }
}
