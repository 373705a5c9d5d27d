//! `driftctl`: the command line for people, over the collector's API.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use clap::{Args, CommandFactory, Parser, Subcommand};
use driftwatch_collector::api::model::{
    AlertView, AuditEntryView, CreateEnrollmentToken, CreatePerson, CreateToken, DecideWindow,
    DecisionView, DriftDetail, DriftDetailView, DriftView, HostView, IssuedEnrollmentToken,
    IssuedToken, PersonView, ResolveDrift, TokenView, WindowView,
};
use driftwatch_collector::api::model::{DropDelivery, RetriedView, RetryDelivery};
use driftwatch_collector::audit::ops::EntriesView;
use driftwatch_collector::audit::signing::{PublicKeyView, parse_checkpoints};
use driftwatch_collector::audit::{Anchors, Checkpoint, PublicKey, VerifyReport, key_file};
use driftwatch_collector::drift::{DriftStatus, ResolutionCategory};
use driftwatch_collector::identity::Role;
use driftwatch_collector::reports::actor_text;
use driftwatch_collector::windows::schedule::Schedule;
use driftwatch_collector::windows::validate::WindowRequest;
use driftwatch_collector::windows::{ExpectedState, HostScope, WindowKind, WindowStatus};
use driftwatch_common::api::v1::ApiErrorBody;
use driftwatch_common::pathbytes::{escape_text, is_unsafe_char};
use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use uuid::Uuid;

#[path = "driftctl/exit.rs"]
mod exit;
#[path = "driftctl/settings.rs"]
mod settings;
// Live drift in the terminal (issue 11).
#[path = "driftctl/watch.rs"]
mod watch;

use exit::Failure;

const EXIT_OK: u8 = 0;
const EXIT_AUDIT_BROKEN: u8 = 1;
const EXIT_ERROR: u8 = 2;

#[derive(Parser)]
#[command(
    name = "driftctl",
    version,
    about = "Change windows, drift and the audit trail of a driftwatch collector",
    after_help = after_help()
)]
struct Cli {
    /// The collector's base URL [env: DRIFTWATCH_URL; else the config file's `url`; default:
    /// http://127.0.0.1:8443].
    #[arg(long, global = true)]
    url: Option<String>,
    /// A file holding the API token, yours and 0600 [env: DRIFTWATCH_TOKEN_FILE, or
    /// DRIFTWATCH_TOKEN holding the token itself; else the config file's `token_file`].
    #[arg(long, global = true, value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// Trust only this CA (PEM) for the collector's certificate [env: DRIFTWATCH_CA_CERT;
    /// else the config file's `ca_cert`; default: the system's roots].
    #[arg(long, global = true, value_name = "FILE")]
    ca_cert: Option<PathBuf>,
    /// driftctl's config file [env: DRIFTWATCH_CTL_CONFIG; default:
    /// $XDG_CONFIG_HOME/driftwatch/driftctl.toml, else ~/.config/driftwatch/driftctl.toml].
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Print the collector's JSON answer instead of text.
    #[arg(long, global = true)]
    json: bool,
    /// Format of error messages on stderr (json: one JSON object per line).
    #[arg(long, global = true, value_enum, default_value_t = driftwatch_common::logging::LogFormat::Text)]
    log_format: driftwatch_common::logging::LogFormat,
    #[command(subcommand)]
    command: Command,
}

/// `--help`'s closing text: where the settings come from, how text is shown, exit codes.
fn after_help() -> String {
    format!(
        "Settings: a flag beats its environment variable, which beats the config file, which \
         beats the default. The config file (TOML) may hold `url`, `token_file` (relative to \
         the file, or absolute) and `ca_cert`; it holds no token.\n\
         Text output shows control characters and bidi controls from hosts and people as \
         \\xNN; --json keeps exact strings (unsafe ones as \\u escapes).\n\n{}",
        exit::EXIT_CODES
    )
}

#[derive(Subcommand)]
enum Command {
    /// Change windows: request, decide, list, evidence bundles.
    #[command(subcommand, alias = "window")]
    Windows(WindowsCommand),
    /// Evidence exports for auditors.
    #[command(subcommand, alias = "reports")]
    Report(ReportCommand),
    /// Drift: list, show, history, explain, resolve.
    #[command(subcommand)]
    Drift(DriftCommand),
    /// The audit trail.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Enrollment tokens for agents (admin).
    #[command(subcommand, name = "enrollment-token")]
    EnrollmentToken(EnrollmentCommand),
    /// API tokens for people (admin).
    #[command(subcommand, alias = "tokens")]
    Token(TokenCommand),
    /// People: the persons tokens belong to (admin; auditors list).
    #[command(subcommand, alias = "person")]
    People(PeopleCommand),
    /// Enrolled hosts and whether they are silent.
    Hosts,
    /// Follow drift that needs review live, one line per change (time, host, subject,
    /// status); reconnects by itself and resumes where it stopped; Ctrl-C ends it.
    Watch(watch::WatchArgs),
    /// Recent alerts and their delivery; dead letters, retried or dropped (admin).
    #[command(args_conflicts_with_subcommands = true)]
    Alerts {
        /// How many of the most recent alerts to list.
        #[arg(long, default_value_t = 50)]
        limit: u32,
        #[command(subcommand)]
        command: Option<AlertsCommand>,
    },
    /// Check an evidence file (export or bundle, any format) offline: its signature with
    /// the collector's public key, and whether it reports its records consistent with the
    /// audit log (exit code 1 if not, or if it was altered).
    Verify {
        /// An export or bundle as fetched (json, csv, md or html).
        file: PathBuf,
        /// The collector's public key: 64 hex digits, or a file holding them (from
        /// `driftctl audit public-key` or `driftwatch-collector audit public-key`).
        #[arg(long, value_name = "KEY")]
        public_key: String,
    },
}

#[derive(Subcommand)]
enum WindowsCommand {
    /// Request a change window (someone else approves it).
    Create(Box<CreateWindow>),
    /// List windows.
    List {
        /// requested, approved, rejected, cancelled or closed.
        #[arg(long)]
        status: Option<WindowStatus>,
    },
    /// Show one window.
    Show {
        /// The window's id (from `windows list`).
        id: Uuid,
    },
    /// Approve a window requested by someone else; covers past untraced drift it spans.
    Approve {
        /// The window's id.
        id: Uuid,
        /// Why, for the audit trail (optional).
        #[arg(long)]
        comment: Option<String>,
    },
    /// Reject a window requested by someone else.
    Reject {
        /// The window's id.
        id: Uuid,
        /// Why (required).
        #[arg(long)]
        comment: String,
    },
    /// Withdraw a requested window, or end an approved one early.
    Cancel {
        /// The window's id.
        id: Uuid,
        /// Why, for the audit trail (optional).
        #[arg(long)]
        comment: Option<String>,
    },
    /// Close out an approved window: accept its authorized drift as the new baseline.
    Close {
        /// The window's id.
        id: Uuid,
        /// A note for the audit trail (optional).
        #[arg(long)]
        comment: Option<String>,
    },
    /// The close-out evidence bundle of a window, to attach to its ticket (auditor,
    /// security, admin; a change manager for windows they requested, decided or closed).
    Evidence {
        /// The window's id.
        id: Uuid,
        /// md (Markdown), html or json; all carry the same content digest.
        #[arg(long, default_value = "md", value_parser = ["md", "html", "json"])]
        format: String,
        /// Write to this file instead of standard output.
        #[arg(short = 'o', long)]
        output: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum ReportCommand {
    /// Every drift event of a period with its authorization evidence, summary figures and
    /// the audit log's verification (auditor, security, admin).
    #[command(
        after_help = "The sample: events sorted by SHA-256(\"<seed>:<event id>\"), the \
                            first N; the same seed and data give the same sample.\n\
                            CSV: `#` comment lines (period, audit log verification, figures), \
                            a blank line, then an RFC 4180 table."
    )]
    Export {
        /// Start of the period, inclusive (RFC 3339, e.g. 2026-01-01T00:00:00Z).
        #[arg(long)]
        from: String,
        /// End of the period, exclusive (RFC 3339).
        #[arg(long)]
        to: String,
        /// csv (RFC 4180 with `#` comment lines) or json; both signed.
        #[arg(long, default_value = "csv", value_parser = ["csv", "json"])]
        format: String,
        /// Only the hosts with this name.
        #[arg(long)]
        host: Option<String>,
        /// Rank a reproducible random sample of this many events (needs --seed).
        #[arg(long, requires = "seed")]
        sample: Option<u32>,
        /// The sample's seed (needs --sample).
        #[arg(long, requires = "sample")]
        seed: Option<u64>,
        /// Write to this file instead of standard output.
        #[arg(short = 'o', long)]
        output: Option<PathBuf>,
    },
}

#[derive(Args)]
struct CreateWindow {
    /// The change ticket (e.g. CHG-1042).
    #[arg(long)]
    ticket: String,
    /// A short description of the change.
    #[arg(long)]
    title: String,
    /// normal, standard or emergency (recorded after the fact).
    #[arg(long, default_value = "normal")]
    kind: WindowKind,
    /// A host name in scope (repeatable).
    #[arg(long = "host")]
    hosts: Vec<String>,
    /// A host name glob in scope, e.g. `web-*` (repeatable).
    #[arg(long = "host-glob")]
    host_globs: Vec<String>,
    /// A label hosts must carry, `key=value` (repeatable; all must match).
    #[arg(long = "label")]
    labels: Vec<String>,
    /// A subject glob, e.g. `file:/etc/nginx/**` or `package:nginx*` (repeatable).
    #[arg(long = "subject", required = true)]
    subjects: Vec<String>,
    /// Start: local time in --time-zone (`2026-11-29T02:00`) or RFC 3339.
    #[arg(long)]
    start: String,
    /// End: same forms as --start.
    #[arg(long)]
    end: String,
    /// IANA time zone of --start and --end.
    #[arg(long, default_value = "UTC")]
    time_zone: String,
    /// The approved end state of one subject: `SUBJECT=hash:HEX`, `SUBJECT=version:V` or
    /// `SUBJECT=absent` (repeatable).
    #[arg(long = "expect")]
    expected: Vec<String>,
    /// A login user allowed to make the change, as the agent reports it (repeatable).
    /// Without any, anyone but the approver may; with some, changes by others or by an
    /// unknown actor are flagged.
    #[arg(long = "implementer")]
    implementers: Vec<String>,
    /// A recurring standard window (--kind standard): `DAYS HH:MM-HH:MM` in --time-zone,
    /// e.g. `sun 02:00-04:00`, `sat,sun 23:00-01:00` or `daily 03:00-03:30`; --start and
    /// --end then bound the period the approval is valid for (at most a year).
    #[arg(long)]
    schedule: Option<String>,
}

#[derive(Subcommand)]
enum DriftCommand {
    /// List drift (newest first).
    List {
        /// open, authorized, resolved or accepted.
        #[arg(long)]
        status: Option<DriftStatus>,
        /// Only this host's drift (its id, from `driftctl hosts`).
        #[arg(long)]
        host: Option<Uuid>,
        /// Only the drift this window authorized (its id).
        #[arg(long)]
        window: Option<Uuid>,
    },
    /// Show one drift item with its events.
    Show {
        /// The drift item's id (from `drift list`).
        id: Uuid,
    },
    /// The drift item's history: its status changes (opened, authorized after the fact,
    /// resolved by whom and why), its events (who, how seen, package) and the other drift
    /// of the same host and subject.
    History {
        /// The drift item's id (from `drift list`).
        id: Uuid,
    },
    /// Why no window covered the item's latest changes: the candidate windows (any state,
    /// nearest in time first) and the matcher's reason for each (host out of scope,
    /// subject outside its globs, after it closed, before it opened, not approved, made by
    /// the approver, not an implementer...).
    Explain {
        /// The drift item's id (from `drift list`).
        id: Uuid,
    },
    /// Resolve open (untraced) drift (security).
    Resolve {
        /// The drift item's id.
        id: Uuid,
        /// confirmed_unauthorized, emergency_change or false_positive.
        #[arg(long)]
        category: String,
        /// Why: what was found (required, kept in the audit trail).
        #[arg(long)]
        comment: String,
        /// The ticket of a retroactively approved emergency change.
        #[arg(long)]
        ticket: Option<String>,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Fetch the audit log and check it here: the hash chain, every entry's signature, and
    /// the checkpoints (exit code 1 if altered). Only checkpoints you kept yourself
    /// (--checkpoints) prove that nothing was removed from the end, and that nothing they
    /// cover was rewritten even by someone holding the key.
    Verify {
        /// Signed checkpoints kept elsewhere: JSON lines as the jsonl alert sink writes
        /// them, or what `driftctl audit checkpoints` printed.
        #[arg(long, value_name = "FILE")]
        checkpoints: Option<PathBuf>,
        /// The collector's public key (64 hex digits or a file); default: asked from the
        /// collector, which only a pinned key makes independent of it.
        #[arg(long, value_name = "KEY")]
        public_key: Option<String>,
    },
    /// Print the audit log.
    Log,
    /// Print the signed checkpoints the collector keeps, one JSON object per line (a file
    /// `audit verify --checkpoints` reads).
    Checkpoints,
    /// Print the collector's audit public key.
    PublicKey,
}

#[derive(Subcommand)]
enum AlertsCommand {
    /// Recent alerts and their delivery (the default).
    List {
        /// How many of the most recent alerts to list.
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Deliveries a receiver refused for good (a 4xx other than 408 and 429), with its
    /// status and answer; the sink went on with the next alert.
    DeadLetters {
        /// How many alerts to list, oldest first.
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Send a dead-lettered alert to its sink again, e.g. once the receiver is fixed
    /// (admin; audited).
    Retry {
        /// The alert's id.
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        id: Option<Uuid>,
        /// The sink that refused it.
        #[arg(long)]
        sink: String,
        /// Every dead letter of the sink (after a rotated credential or a moved URL made
        /// it refuse everything).
        #[arg(long)]
        all: bool,
    },
    /// Give up on a dead-lettered alert for one sink, saying why (admin; audited).
    Drop {
        /// The alert's id.
        id: Uuid,
        /// The sink that refused it.
        #[arg(long)]
        sink: String,
        /// Why it is dropped (kept in the audit log).
        #[arg(long)]
        reason: String,
    },
}

#[derive(Subcommand)]
enum EnrollmentCommand {
    /// Issue an enrollment token; print it (shown once).
    Create {
        /// Lifetime in seconds (default an hour, at most a week).
        #[arg(long)]
        ttl_secs: Option<u64>,
        /// How many hosts may enroll with it (default 1).
        #[arg(long)]
        uses: Option<u32>,
    },
}

#[derive(Subcommand)]
enum PeopleCommand {
    /// Record a person. A name equal to an existing person's once normalised (case,
    /// whitespace, Unicode compatibility forms), or confusable with one, is refused.
    Create {
        /// The person's name, as it will appear in the audit trail.
        name: String,
    },
    /// List people and who recorded them.
    List,
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Issue a token for a person (created if no person has that name); print it (shown
    /// once). A person's tokens all act as that person.
    Create {
        /// The person it belongs to (`--name` is the old spelling).
        #[arg(long, alias = "name")]
        person: String,
        /// admin, change-manager, security or auditor.
        #[arg(long)]
        role: Role,
    },
    /// List tokens (never their secrets): role, person, state and issuer.
    List,
    /// Revoke a token: it stops working at once.
    Revoke {
        /// The token's id (from `token list`), not the token itself.
        id: Uuid,
    },
}

fn main() -> ExitCode {
    // The packaging build's `driftctl generate-docs DIR`: read before clap (and any token),
    // so it stays out of the documented interface (pages and completions).
    if let Some(dir) = driftwatch_common::cli_docs::requested_dir(std::env::args_os()) {
        return match driftwatch_common::cli_docs::write(Cli::command(), "1", &dir) {
            Ok(()) => ExitCode::from(EXIT_OK),
            Err(err) => {
                eprintln!("driftctl: error: {err:#}");
                ExitCode::from(EXIT_ERROR)
            }
        };
    }
    exit::die_quietly_on_closed_pipe();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            let _ = err.print();
            // --help and --version are answers, not errors.
            return ExitCode::from(if err.use_stderr() {
                Failure::Usage.code()
            } else {
                EXIT_OK
            });
        }
    };
    let log = driftwatch_common::logging::LogOutput::detect(cli.log_format);
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            log.fatal("driftctl", "driftctl: ", &format!("cannot start: {err}"));
            return ExitCode::from(EXIT_ERROR);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            log.fatal("driftctl", "driftctl: ", &escape_text(&format!("{err:#}")));
            ExitCode::from(exit::code_for(&err))
        }
    }
}

struct Client {
    http: reqwest::Client,
    /// Without the overall timeout: for the live stream (`watch`), which never ends.
    stream_http: reqwest::Client,
    url: String,
    token: String,
    json: bool,
}

impl Client {
    fn new(cli: &Cli) -> anyhow::Result<Client> {
        let settings = settings::resolve(settings::Overrides {
            config: cli.config.as_deref(),
            url: cli.url.as_deref(),
            token_file: cli.token_file.as_deref(),
            ca_cert: cli.ca_cert.as_deref(),
        })?;
        let mut builder = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .connect_timeout(Duration::from_secs(10));
        let mut stream_builder =
            reqwest::Client::builder().connect_timeout(Duration::from_secs(10));
        if let Some(ca) = &settings.ca_cert {
            let pem = std::fs::read(ca).map_err(|err| {
                Failure::Config.error(format!(
                    "cannot read the CA certificate {}: {err}",
                    ca.display()
                ))
            })?;
            // A bundle may hold several; text without any is a mistake, not "trust nothing".
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .ok()
                .filter(|certs| !certs.is_empty())
                .ok_or_else(|| {
                    Failure::Config.error(format!("{} is not a PEM certificate", ca.display()))
                })?;
            stream_builder = stream_builder.tls_certs_only(certs.clone());
            builder = builder.tls_certs_only(certs);
        }
        Ok(Client {
            http: builder.build().context("cannot build the HTTP client")?,
            stream_http: stream_builder
                .build()
                .context("cannot build the HTTP client")?,
            url: settings.url,
            token: settings.token,
            json: cli.json,
        })
    }

    /// Sends a request; returns the answer's JSON text, or the collector's error as an error.
    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&impl Serialize>,
    ) -> anyhow::Result<String> {
        Ok(self.exchange(method, path, body).await?.0)
    }

    /// A listing, page after page while the collector answers a `Next-Cursor` (issue 10);
    /// with --json, the whole listing printed as one array.
    async fn get_all<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<Vec<T>> {
        let mut values: Vec<serde_json::Value> = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let page_path = match &cursor {
                None => path.to_owned(),
                Some(cursor) => {
                    let sep = if path.contains('?') { '&' } else { '?' };
                    format!("{path}{sep}cursor={cursor}")
                }
            };
            let (text, next) = self.exchange(Method::GET, &page_path, None::<&()>).await?;
            let page: Vec<serde_json::Value> =
                serde_json::from_str(&text).context("unexpected answer from the collector")?;
            values.extend(page);
            // A cursor is hex; anything else is not followed into a URL.
            match next.filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_hexdigit())) {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        let all = serde_json::Value::Array(values);
        if self.json {
            println!(
                "{}",
                json_for_terminal(&serde_json::to_string_pretty(&all)?)
            );
        }
        serde_json::from_value(all).context("unexpected answer from the collector")
    }

    /// The answer's body and its `Next-Cursor`, or the error a failure means.
    async fn exchange(
        &self,
        method: Method,
        path: &str,
        body: Option<&impl Serialize>,
    ) -> anyhow::Result<(String, Option<String>)> {
        let url = format!("{}{path}", self.url);
        let mut request = self
            .http
            .request(method.clone(), &url)
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(|err| {
            let message = format!(
                "cannot reach the collector at {}: {}",
                self.url,
                error_chain(&err)
            );
            // A request that could not be built never left: not the network's fault.
            if err.is_builder() {
                anyhow!(message)
            } else {
                Failure::Unreachable.error(message)
            }
        })?;
        let status = response.status();
        let next = response
            .headers()
            .get("next-cursor")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let text = response.text().await.map_err(|err| {
            Failure::Unreachable.error(format!(
                "cannot read the collector's answer: {}",
                error_chain(&err)
            ))
        })?;
        if status.is_success() {
            return Ok((text, next));
        }
        let detail = serde_json::from_str::<ApiErrorBody>(&text)
            .map(|body| format!("{}: {}", body.error.code, body.error.message))
            .unwrap_or_else(|_| text.trim().to_owned());
        let hint = match status {
            StatusCode::UNAUTHORIZED => {
                " (check --token-file, DRIFTWATCH_TOKEN_FILE, DRIFTWATCH_TOKEN or the config file's token_file)"
            }
            _ => "",
        };
        Err(Failure::for_status(status).error(format!("{method} {path}: {status}: {detail}{hint}")))
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&impl Serialize>,
    ) -> anyhow::Result<T> {
        let text = self.send(method, path, body).await?;
        if self.json {
            let value: serde_json::Value =
                serde_json::from_str(&text).context("the collector's answer is not JSON")?;
            println!(
                "{}",
                json_for_terminal(&serde_json::to_string_pretty(&value)?)
            );
        }
        serde_json::from_str(&text).context("unexpected answer from the collector")
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        self.call(Method::GET, path, None::<&()>).await
    }

    async fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &impl Serialize,
    ) -> anyhow::Result<T> {
        self.call(Method::POST, path, Some(body)).await
    }

    /// Prints one line of text output unless --json already printed the answer. Every
    /// line goes through `escape_text`: subjects, actors, hostnames and comments come from
    /// hosts and people, and must not move the cursor, set a title, break a line or
    /// reverse text on the reader's terminal.
    fn say(&self, text: impl AsRef<str>) {
        if !self.json {
            println!("{}", escape_text(text.as_ref()));
        }
    }

    /// Prints one line per item, or `(none)`.
    fn list<T>(&self, items: &[T], line: impl Fn(&T) -> String) {
        if items.is_empty() {
            self.say("(none)");
        }
        for item in items {
            self.say(line(item));
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<u8> {
    // Offline: no collector, no token.
    if let Command::Verify { file, public_key } = &cli.command {
        return verify_document(file, public_key, cli.json);
    }
    let client = Client::new(&cli)?;
    match cli.command {
        Command::Windows(command) => windows(&client, command).await,
        Command::Report(ReportCommand::Export {
            from,
            to,
            format,
            host,
            sample,
            seed,
            output,
        }) => {
            let mut query = vec![
                format!("from={}", encode(&from)),
                format!("to={}", encode(&to)),
                format!("format={format}"),
            ];
            if let Some(host) = host {
                query.push(format!("host={}", encode(&host)));
            }
            if let (Some(sample), Some(seed)) = (sample, seed) {
                query.push(format!("sample={sample}&seed={seed}"));
            }
            let body = client
                .send(
                    Method::GET,
                    &format!("/api/v1/reports/export?{}", query.join("&")),
                    None::<&()>,
                )
                .await?;
            deliver(&body, output.as_deref())
        }
        Command::Drift(command) => drift(&client, command).await,
        Command::Audit(AuditCommand::Verify {
            checkpoints,
            public_key,
        }) => audit_verify(&client, checkpoints, public_key).await,
        Command::Audit(AuditCommand::Checkpoints) => {
            let text = client
                .send(Method::GET, "/api/v1/audit/checkpoints", None::<&()>)
                .await?;
            let checkpoints: Vec<Checkpoint> =
                serde_json::from_str(&text).context("unexpected answer from the collector")?;
            if client.json {
                println!("{text}");
            } else {
                for checkpoint in &checkpoints {
                    println!("{}", serde_json::to_string(checkpoint)?);
                }
            }
            Ok(EXIT_OK)
        }
        Command::Audit(AuditCommand::PublicKey) => {
            let key: PublicKeyView = client.get("/api/v1/audit/public-key").await?;
            client.say(&key.public_key);
            if !client.json {
                eprintln!("key id {}", key.key_id);
            }
            Ok(EXIT_OK)
        }
        Command::Audit(AuditCommand::Log) => {
            // Paged: the collector answers at most 10,000 entries at a time.
            let entries: Vec<AuditEntryView> = client.get_all("/api/v1/audit?limit=10000").await?;
            client.list(&entries, |e| {
                format!(
                    "{:>5}  {}  {:<16} {:<26} {}  {}",
                    e.seq, e.at, e.actor, e.action, e.target, e.details
                )
            });
            Ok(EXIT_OK)
        }
        Command::EnrollmentToken(EnrollmentCommand::Create { ttl_secs, uses }) => {
            let issued: IssuedEnrollmentToken = client
                .post(
                    "/api/v1/enrollment-tokens",
                    &CreateEnrollmentToken { ttl_secs, uses },
                )
                .await?;
            client.say(&issued.token);
            if !client.json {
                eprintln!(
                    "enrollment token {} for {} host(s), valid until {}; shown only now",
                    issued.id, issued.uses, issued.expires_at
                );
            }
            Ok(EXIT_OK)
        }
        Command::Token(TokenCommand::Create { person, role }) => {
            let issued: IssuedToken = client
                .post("/api/v1/tokens", &CreateToken { person, role })
                .await?;
            client.say(&issued.token);
            if !client.json {
                eprintln!(
                    "token {} with role {} for {}{}; shown only now",
                    issued.id,
                    issued.role,
                    escape_text(&issued.name),
                    if issued.person_created {
                        " (new person)"
                    } else {
                        ""
                    }
                );
            }
            Ok(EXIT_OK)
        }
        Command::People(PeopleCommand::Create { name }) => {
            let person: PersonView = client
                .post("/api/v1/people", &CreatePerson { name })
                .await?;
            client.say(format!("person {} ({})", person.name, person.id));
            Ok(EXIT_OK)
        }
        Command::People(PeopleCommand::List) => {
            let people: Vec<PersonView> = client.get("/api/v1/people").await?;
            client.list(&people, |p| {
                format!(
                    "{}  {:<24} created {} by {}",
                    p.id, p.name, p.created_at, p.created_by
                )
            });
            Ok(EXIT_OK)
        }
        Command::Token(TokenCommand::List) => {
            let tokens: Vec<TokenView> = client.get("/api/v1/tokens").await?;
            client.list(&tokens, |t| {
                let state = t
                    .revoked_at
                    .as_deref()
                    .map_or("active".to_owned(), |at| format!("revoked {at}"));
                let person = t.person.as_deref().unwrap_or(&t.name);
                let by = t.created_by_token.map_or(t.created_by.clone(), |token| {
                    format!("{} (token {token})", t.created_by)
                });
                format!(
                    "{}  {:<14} {:<20} {state}, issued by {by}",
                    t.id, t.role, person
                )
            });
            Ok(EXIT_OK)
        }
        Command::Token(TokenCommand::Revoke { id }) => {
            let token: TokenView = client
                .post(
                    &format!("/api/v1/tokens/{id}/revoke"),
                    &serde_json::json!({}),
                )
                .await?;
            client.say(format!("revoked token {} ({})", token.id, token.name));
            Ok(EXIT_OK)
        }
        Command::Watch(args) => watch::watch(&client, args).await,
        Command::Hosts => {
            let hosts: Vec<HostView> = client.get_all("/api/v1/hosts").await?;
            client.list(&hosts, |h| {
                let seen = h.last_seen_at.as_deref().unwrap_or("never");
                let silent = if h.silent { "  SILENT" } else { "" };
                // Hosts enrolled before chain keys: their spool can be edited unseen.
                let unkeyed = if h.chain == "unauthenticated" {
                    "  CHAIN UNAUTHENTICATED (enroll again)"
                } else {
                    ""
                };
                format!(
                    "{}  {:<24} last heartbeat {seen}, skew {} ms{silent}{unkeyed}",
                    h.id, h.hostname, h.skew_ms
                )
            });
            Ok(EXIT_OK)
        }
        Command::Verify { file, public_key } => verify_document(&file, &public_key, client.json),
        Command::Alerts {
            command: Some(command),
            ..
        } => alerts_command(&client, command).await,
        Command::Alerts {
            limit,
            command: None,
        } => alerts_command(&client, AlertsCommand::List { limit }).await,
    }
}

/// `driftctl alerts list|dead-letters|retry|drop`.
async fn alerts_command(client: &Client, command: AlertsCommand) -> anyhow::Result<u8> {
    match command {
        AlertsCommand::List { limit } => {
            let alerts: Vec<AlertView> =
                client.get(&format!("/api/v1/alerts?limit={limit}")).await?;
            client.list(&alerts, alert_line);
        }
        AlertsCommand::DeadLetters { limit } => {
            let alerts: Vec<AlertView> = client
                .get(&format!("/api/v1/alerts/dead-letters?limit={limit}"))
                .await?;
            if alerts.is_empty() {
                client.say("(none)");
            }
            for alert in &alerts {
                let summary = alert.body["summary"].as_str().unwrap_or("");
                client.say(format!(
                    "{}  {}  {:<15} {summary}",
                    alert.id, alert.created_at, alert.kind
                ));
                for delivery in &alert.deliveries {
                    let (Some(dead), None) = (&delivery.dead_letter, &delivery.dropped) else {
                        continue;
                    };
                    let status = dead
                        .status
                        .map_or("no status".to_owned(), |s| format!("HTTP {s}"));
                    client.say(format!(
                        "    sink {}: refused {} ({status}, {} attempts): {}",
                        delivery.sink,
                        dead.at,
                        delivery.attempts,
                        dead.response.trim()
                    ));
                }
            }
        }
        AlertsCommand::Retry { id: None, sink, .. } => {
            let retried: RetriedView = client
                .post(
                    "/api/v1/alerts/dead-letters/retry",
                    &RetryDelivery { sink: sink.clone() },
                )
                .await?;
            client.say(format!(
                "{} dead-lettered alert(s) queued again for sink {sink}",
                retried.retried
            ));
        }
        AlertsCommand::Retry {
            id: Some(id), sink, ..
        } => {
            let alert: AlertView = client
                .post(
                    &format!("/api/v1/alerts/{id}/retry"),
                    &RetryDelivery { sink: sink.clone() },
                )
                .await?;
            client.say(format!("alert {} queued again for sink {sink}", alert.id));
        }
        AlertsCommand::Drop { id, sink, reason } => {
            let alert: AlertView = client
                .post(
                    &format!("/api/v1/alerts/{id}/drop"),
                    &DropDelivery {
                        sink: sink.clone(),
                        reason,
                    },
                )
                .await?;
            client.say(format!("alert {} dropped for sink {sink}", alert.id));
        }
    }
    Ok(EXIT_OK)
}

/// One alert of `driftctl alerts list`: when, kind, summary, and which sink holds it back.
fn alert_line(a: &AlertView) -> String {
    let delivery = a.delivered_at.as_deref().map_or_else(
        || {
            let sinks: Vec<String> = a
                .deliveries
                .iter()
                .map(|d| {
                    let state = serde_json::to_value(d.state)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_owned))
                        .unwrap_or_default();
                    match &d.last_error {
                        Some(e) if d.delivered_at.is_none() => {
                            format!("{} {state} ({} attempts: {e})", d.sink, d.attempts)
                        }
                        _ => format!("{} {state}", d.sink),
                    }
                })
                .collect();
            format!("NOT DELIVERED: {}", sinks.join(", "))
        },
        |at| format!("delivered {at}"),
    );
    let summary = a.body["summary"].as_str().unwrap_or("");
    format!("{}  {:<15} {}  {delivery}", a.created_at, a.kind, summary)
}

/// An error and its causes, `: `-separated (reqwest keeps "connection refused" in a cause).
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut cause = err.source();
    while let Some(next) = cause {
        let next_text = next.to_string();
        if !text.contains(&next_text) {
            text = format!("{text}: {next_text}");
        }
        cause = next.source();
    }
    text
}

/// Percent-encodes a query value (everything but RFC 3986's unreserved characters).
fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Writes a document to `output`, or to standard output: exactly as received to a file or
/// a pipe; on a terminal with anything unsafe that got past the collector's escaping shown
/// escaped (JSON as `\u` escapes, so it still parses to the same values).
fn deliver(body: &str, output: Option<&std::path::Path>) -> anyhow::Result<u8> {
    use std::io::IsTerminal;
    match output {
        Some(path) => {
            std::fs::write(path, body)
                .with_context(|| format!("cannot write {}", path.display()))?;
            eprintln!("wrote {} ({} bytes)", path.display(), body.len());
        }
        None if std::io::stdout().is_terminal() => {
            if body.trim_start().starts_with(['{', '[']) {
                print!("{}", json_for_terminal(body));
            } else {
                let lines: Vec<String> = body
                    .split('\n')
                    .map(|l| {
                        let (line, cr) = l.strip_suffix('\r').map_or((l, ""), |l| (l, "\r"));
                        format!("{}{cr}", escape_text(line))
                    })
                    .collect();
                print!("{}", lines.join("\n"));
            }
        }
        None => print!("{body}"),
    }
    Ok(EXIT_OK)
}

/// JSON text with every unsafe character (DEL, C1 controls, bidi and zero-width
/// characters: JSON itself escapes only C0) written as a `\uXXXX` escape. Outside strings
/// JSON is ASCII, and a raw C0 character can only be layout whitespace, so this only
/// rewrites string contents, to the same values.
fn json_for_terminal(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        if is_unsafe_char(c) && !c.is_ascii_whitespace() {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        } else {
            out.push(c);
        }
    }
    out
}

async fn windows(client: &Client, command: WindowsCommand) -> anyhow::Result<u8> {
    let show = |w: &WindowView| {
        format!(
            "{}  {:<10} {:<9} {:<12} {} .. {} ({})  {}  requested by {}{}",
            w.id,
            w.status,
            w.kind,
            w.ticket,
            w.start_local,
            w.end_local,
            w.time_zone,
            w.title,
            w.requester,
            w.decided_by
                .as_deref()
                .map(|d| format!(", decided by {d}"))
                .unwrap_or_default()
        )
    };
    match command {
        WindowsCommand::Create(args) => {
            let request =
                window_request(*args).map_err(|err| Failure::Usage.error(format!("{err:#}")))?;
            let window: WindowView = client.post("/api/v1/windows", &request).await?;
            client.say(show(&window));
            client.say(format!(
                "next: another change manager runs `driftctl windows approve {}`",
                window.id
            ));
        }
        WindowsCommand::List { status } => {
            let query = status.map(|s| format!("?status={s}")).unwrap_or_default();
            let windows: Vec<WindowView> =
                client.get_all(&format!("/api/v1/windows{query}")).await?;
            client.list(&windows, show);
        }
        WindowsCommand::Show { id } => {
            let window: WindowView = client.get(&format!("/api/v1/windows/{id}")).await?;
            client.say(show(&window));
            client.say(format!(
                "  hosts: {}",
                serde_json::to_string(&window.hosts)?
            ));
            client.say(format!("  subjects: {}", window.subjects.join(", ")));
            if let Some(schedule) = &window.schedule {
                client.say(format!(
                    "  schedule: {schedule} ({}), valid {} to {}",
                    window.time_zone, window.start_local, window.end_local
                ));
            }
            if !window.implementers.is_empty() {
                client.say(format!(
                    "  implementers: {}",
                    window.implementers.join(", ")
                ));
            }
        }
        WindowsCommand::Approve { id, comment } => decide(client, id, "approve", comment).await?,
        WindowsCommand::Reject { id, comment } => {
            decide(client, id, "reject", Some(comment)).await?
        }
        WindowsCommand::Cancel { id, comment } => decide(client, id, "cancel", comment).await?,
        WindowsCommand::Close { id, comment } => decide(client, id, "close", comment).await?,
        WindowsCommand::Evidence { id, format, output } => {
            let body = client
                .send(
                    Method::GET,
                    &format!("/api/v1/windows/{id}/evidence?format={format}"),
                    None::<&()>,
                )
                .await?;
            return deliver(&body, output.as_deref());
        }
    }
    Ok(EXIT_OK)
}

async fn decide(
    client: &Client,
    id: Uuid,
    action: &str,
    comment: Option<String>,
) -> anyhow::Result<()> {
    let decision: DecisionView = client
        .post(
            &format!("/api/v1/windows/{id}/{action}"),
            &DecideWindow { comment },
        )
        .await?;
    client.say(format!(
        "window {} ({}) is {}",
        decision.window.id, decision.window.ticket, decision.window.status
    ));
    if let (Some(events @ 1..), Some(drift)) = (decision.events_covered, decision.drift_authorized)
    {
        client.say(format!(
            "covered after the fact: {events} event(s), {drift} drift item(s) now authorized"
        ));
    }
    if let (Some(accepted), Some(commands)) = (decision.drift_accepted, decision.commands_queued) {
        client.say(format!("close-out: {accepted} drift item(s) accepted, {commands} baseline command(s) queued for agents"));
    }
    Ok(())
}

fn window_request(args: CreateWindow) -> anyhow::Result<WindowRequest> {
    let labels = args
        .labels
        .iter()
        .map(|pair| {
            pair.split_once('=')
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .ok_or_else(|| anyhow!("--label `{pair}` is not `key=value`"))
        })
        .collect::<anyhow::Result<_>>()?;
    let expected = args
        .expected
        .iter()
        .map(|spec| parse_expect(spec))
        .collect::<anyhow::Result<_>>()?;
    Ok(WindowRequest {
        ticket: args.ticket,
        title: args.title,
        kind: args.kind,
        hosts: HostScope {
            names: args.hosts,
            globs: args.host_globs,
            labels,
        },
        subjects: args.subjects,
        start: args.start,
        end: args.end,
        time_zone: args.time_zone,
        expected,
        schedule: args.schedule.as_deref().map(parse_schedule).transpose()?,
        implementers: args.implementers,
    })
}

/// `sun 02:00-04:00` → weekdays, start and the duration between the two clock times (past
/// midnight when the end is earlier). The collector checks the days and times.
fn parse_schedule(text: &str) -> anyhow::Result<Schedule> {
    let usage = || {
        anyhow!(
            "--schedule `{text}` is not `DAYS HH:MM-HH:MM`, e.g. `sun 02:00-04:00` or \
             `mon,wed 22:00-02:00` (days: mon … sun, or daily)"
        )
    };
    let (days, times) = text.trim().split_once(' ').ok_or_else(usage)?;
    let (start, end) = times.trim().split_once('-').ok_or_else(usage)?;
    let minutes = |clock: &str| -> anyhow::Result<i64> {
        let (h, m) = clock.split_once(':').ok_or_else(usage)?;
        let (h, m): (i64, i64) = (h.parse()?, m.parse()?);
        if !(0..24).contains(&h) || !(0..60).contains(&m) {
            return Err(usage());
        }
        Ok(h * 60 + m)
    };
    let (from, to) = (
        minutes(start).map_err(|_| usage())?,
        minutes(end).map_err(|_| usage())?,
    );
    if from == to {
        bail!("--schedule `{text}`: the start and end times are the same");
    }
    let weekdays = if days == "daily" {
        ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
            .map(str::to_owned)
            .to_vec()
    } else {
        days.split(',').map(str::to_owned).collect()
    };
    Ok(Schedule {
        weekdays,
        start: start.to_owned(),
        duration_minutes: u32::try_from((to - from).rem_euclid(24 * 60))?,
    })
}

/// `SUBJECT=hash:HEX`, `SUBJECT=version:V`, `SUBJECT=absent` (the subject may contain `=`
/// only before the last one).
fn parse_expect(spec: &str) -> anyhow::Result<ExpectedState> {
    let (subject, state) = spec.rsplit_once('=').ok_or_else(|| {
        anyhow!("--expect `{spec}` is not SUBJECT=hash:HEX, SUBJECT=version:V or SUBJECT=absent")
    })?;
    let mut expected = ExpectedState {
        subject: subject.to_owned(),
        hash: None,
        version: None,
        absent: false,
    };
    if state == "absent" {
        expected.absent = true;
    } else if let Some(hash) = state.strip_prefix("hash:") {
        expected.hash = Some(
            hash.parse()
                .map_err(|_| anyhow!("--expect `{spec}`: not a 64-digit hex hash"))?,
        );
    } else if let Some(version) = state.strip_prefix("version:") {
        expected.version = Some(version.to_owned());
    } else {
        bail!("--expect `{spec}`: the state is hash:HEX, version:V or absent");
    }
    Ok(expected)
}

async fn drift(client: &Client, command: DriftCommand) -> anyhow::Result<u8> {
    let show = |d: &DriftView| {
        format!(
            "{}  {:<10} {:<24} {}  {} event(s), last {}{}",
            d.id,
            d.status,
            d.hostname,
            d.subject,
            d.events,
            d.last_event_at,
            d.reason
                .as_deref()
                .map(|r| format!(", {r}"))
                .unwrap_or_default()
        )
    };
    match command {
        DriftCommand::List {
            status,
            host,
            window,
        } => {
            let mut query = Vec::new();
            if let Some(status) = status {
                query.push(format!("status={status}"));
            }
            if let Some(host) = host {
                query.push(format!("host={host}"));
            }
            if let Some(window) = window {
                query.push(format!("window={window}"));
            }
            let path = if query.is_empty() {
                "/api/v1/drift".to_owned()
            } else {
                format!("/api/v1/drift?{}", query.join("&"))
            };
            let items: Vec<DriftView> = client.get_all(&path).await?;
            client.list(&items, show);
        }
        DriftCommand::Show { id } => {
            let detail: DriftDetail = client.get(&format!("/api/v1/drift/{id}")).await?;
            client.say(show(&detail.drift));
            if let Some(r) = &detail.drift.resolution {
                client.say(format!(
                    "  resolved {} by {}: {:?} {}",
                    r.at, r.by, r.category, r.comment
                ));
            }
            if detail.events_omitted > 0 {
                client.say(format!(
                    "  ({} earlier events not shown)",
                    detail.events_omitted
                ));
            }
            for e in &detail.events {
                client.say(format!(
                    "  seq {:<6} {:<10} {}  {}  chain {}  by {}",
                    e.event.seq,
                    serde_json::to_string(&e.event.kind)?.trim_matches('"'),
                    e.event_time,
                    e.outcome.name(),
                    e.chain,
                    actor_text(e.event.actor.as_ref())
                ));
                client.say(format!(
                    "         spooled between {} and {} (collector clock); claimed {}{}",
                    e.spooled_after,
                    e.spooled_before,
                    e.event
                        .observed_at
                        .format(&time::format_description::well_known::Rfc3339)
                        .unwrap_or_else(|_| e.event.observed_at.to_string()),
                    match e.clock_claim.as_str() {
                        "" | "consistent" => String::new(),
                        claim => format!(" — FALSE CLAIM ({claim}): clock tampered or skewed"),
                    }
                ));
                if let Some(window) = e.not_provably_in {
                    client.say(format!(
                        "         spool time not provably inside window {window}: it was open \
                         during part of that interval only"
                    ));
                }
            }
        }
        DriftCommand::History { id } => {
            let detail: DriftDetailView = client.get(&format!("/api/v1/drift/{id}/detail")).await?;
            drift_history(client, &detail, &show)?;
        }
        DriftCommand::Explain { id } => {
            let detail: DriftDetailView = client.get(&format!("/api/v1/drift/{id}/detail")).await?;
            drift_explain(client, &detail, &show);
        }
        DriftCommand::Resolve {
            id,
            category,
            comment,
            ticket,
        } => {
            let category: ResolutionCategory = serde_json::from_value(serde_json::Value::String(category.clone()))
                .map_err(|_| Failure::Usage.error(format!("--category `{category}`: expected confirmed_unauthorized, emergency_change or false_positive")))?;
            let item: DriftView = client
                .post(
                    &format!("/api/v1/drift/{id}/resolve"),
                    &ResolveDrift {
                        category,
                        comment,
                        ticket,
                    },
                )
                .await?;
            client.say(show(&item));
        }
    }
    Ok(EXIT_OK)
}

/// `driftctl drift history ID`: status changes, events, and the subject's timeline.
fn drift_history(
    client: &Client,
    detail: &DriftDetailView,
    show: &impl Fn(&DriftView) -> String,
) -> anyhow::Result<()> {
    let d = &detail.drift;
    client.say(show(d));
    client.say("history:");
    for h in &detail.history {
        let from = h.from.map_or("(new)".to_owned(), |f| f.to_string());
        client.say(format!(
            "  {}  {from} -> {}  by {}: {}",
            h.at, h.to, h.by, h.reason
        ));
    }
    if let Some(r) = &d.resolution {
        client.say(format!(
            "  resolution: {} by {} at {}: {}{}",
            serde_json::to_string(&r.category)?.trim_matches('"'),
            r.by,
            r.at,
            r.comment,
            r.ticket
                .as_deref()
                .map(|t| format!(" (ticket {t})"))
                .unwrap_or_default()
        ));
    }
    client.say("events:");
    if detail.events_omitted > 0 {
        client.say(format!(
            "  ({} earlier events not shown)",
            detail.events_omitted
        ));
    }
    for e in &detail.events {
        client.say(format!(
            "  seq {:<6} {:<10} {}  {}  seen by {}  by {}{}",
            e.event.seq,
            serde_json::to_string(&e.event.kind)?.trim_matches('"'),
            e.event_time,
            e.outcome.name(),
            serde_json::to_string(&e.event.seen_by)?.trim_matches('"'),
            actor_text(e.event.actor.as_ref()),
            e.event
                .actor
                .as_ref()
                .and_then(|a| a.tty.as_deref())
                .map(|tty| format!(" on {tty}"))
                .unwrap_or_default()
        ));
        if let Some(p) = &e.event.provenance {
            client.say(format!(
                "         package {} {} ({}): {}",
                p.package,
                p.version,
                p.manager,
                if p.matches_package {
                    "content as packaged"
                } else {
                    "content NOT as packaged"
                }
            ));
        }
        if let Some(summary) = &e.event.summary {
            client.say(format!("         {summary}"));
        }
    }
    client.say(format!(
        "timeline of {} on {} (other drift, newest first):",
        d.subject, d.hostname
    ));
    if detail.timeline.is_empty() {
        client.say("  (none)");
    }
    for t in &detail.timeline {
        client.say(format!("  {}", show(t)));
    }
    Ok(())
}

/// `driftctl drift explain ID`: each latest change and its candidate windows.
fn drift_explain(client: &Client, detail: &DriftDetailView, show: &impl Fn(&DriftView) -> String) {
    client.say(show(&detail.drift));
    let explanation = &detail.explanation;
    client.say(format!(
        "why no window covered it (windows as they are now; clock tolerance {} s):",
        explanation.tolerance_ms / 1000
    ));
    if explanation.events.is_empty() {
        client.say("  (no change that needs a window: only restores)");
    }
    for e in &explanation.events {
        client.say(format!(
            "event seq {}: {}, spooled between {} and {}, by {}",
            e.seq,
            e.outcome.name(),
            driftwatch_collector::clock::rfc3339(e.spooled_after),
            driftwatch_collector::clock::rfc3339(e.spooled_before),
            e.person.as_deref().unwrap_or("an unknown person")
        ));
        if e.candidates.is_empty() {
            client.say(
                "  no candidate window: none within a day of the change, and none for this \
                 host and subject",
            );
        }
        for c in &e.candidates {
            let w = &c.window;
            client.say(format!(
                "  {} \"{}\" ({}, {}, {}): {}",
                w.ticket, w.title, w.kind, w.status, w.id, c.says
            ));
        }
        if e.candidates_omitted > 0 {
            client.say(format!(
                "  ({} more candidate windows not shown)",
                e.candidates_omitted
            ));
        }
    }
    if explanation.events_not_explained > 0 {
        client.say(format!(
            "({} earlier changes not explained)",
            explanation.events_not_explained
        ));
    }
}

async fn audit_verify(
    client: &Client,
    checkpoints: Option<PathBuf>,
    public_key: Option<String>,
) -> anyhow::Result<u8> {
    let key = match &public_key {
        Some(arg) => key_file::read_public_key(arg).map_err(|why| anyhow!(why))?,
        None => {
            let view: PublicKeyView = serde_json::from_str(
                &client
                    .send(Method::GET, "/api/v1/audit/public-key", None::<&()>)
                    .await?,
            )
            .context("unexpected answer from the collector")?;
            eprintln!(
                "driftctl: the public key (id {}) was taken from the collector itself; pin it \
                 with --public-key for a verification that does not trust the collector",
                view.key_id
            );
            PublicKey::parse(&view.public_key).map_err(|why| anyhow!(why))?
        }
    };
    let held = match &checkpoints {
        None => Vec::new(),
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            parse_checkpoints(&text).map_err(|why| anyhow!("{}: {why}", path.display()))?
        }
    };
    let log: EntriesView = serde_json::from_str(
        &client
            .send(Method::GET, "/api/v1/audit/entries", None::<&()>)
            .await?,
    )
    .context("unexpected answer from the collector")?;
    let stored: Vec<Checkpoint> = serde_json::from_str(
        &client
            .send(Method::GET, "/api/v1/audit/checkpoints", None::<&()>)
            .await?,
    )
    .context("unexpected answer from the collector")?;
    let (entries, head) = log.into_log();
    let report = driftwatch_collector::audit::verify_anchored(
        &entries,
        head,
        Anchors {
            key: Some(&key),
            held: &held,
            stored: &stored,
        },
    );
    print_verify_report(client, &report)?;
    Ok(if report.ok {
        EXIT_OK
    } else {
        EXIT_AUDIT_BROKEN
    })
}

fn print_verify_report(client: &Client, report: &VerifyReport) -> anyhow::Result<()> {
    if client.json {
        println!("{}", serde_json::to_string_pretty(report)?);
    }
    for line in report.text_lines() {
        client.say(line);
    }
    Ok(())
}

/// `driftctl verify FILE --public-key KEY`: offline.
fn verify_document(file: &std::path::Path, key: &str, json: bool) -> anyhow::Result<u8> {
    let key = key_file::read_public_key(key).map_err(|why| anyhow!(why))?;
    let bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let text = String::from_utf8(bytes)
        .map_err(|_| anyhow!("{} is not UTF-8 text: not an evidence file", file.display()))?;
    let (signature, verdict) = match driftwatch_collector::reports::seal::verify(&text, &key) {
        Err(why) => (Err(why), None),
        Ok(seal) => (Ok(seal), evidence_verdict(&text)),
    };
    let ok = signature.is_ok() && verdict.as_ref().is_none_or(|v| v.is_empty());
    if json {
        println!(
            "{}",
            serde_json::json!({
                "ok": ok,
                "signature": signature.as_ref().map(|s| s.key_id.clone()).map_err(Clone::clone),
                "audit_problems": verdict,
            })
        );
    } else {
        match &signature {
            Ok(seal) => println!(
                "{}: signature valid (key {}): the file is exactly as the collector signed it",
                file.display(),
                seal.key_id
            ),
            Err(why) => println!("{}: signature INVALID: {why}", file.display()),
        }
        match &verdict {
            Some(problems) if !problems.is_empty() => {
                println!(
                    "{}: the evidence reports that its records DISAGREE with the audit log or \
                     that the log was altered:",
                    file.display()
                );
                for problem in problems {
                    println!("  {problem}");
                }
            }
            Some(_) => println!(
                "{}: its decisions agreed with the audit log when it was exported",
                file.display()
            ),
            None => {}
        }
    }
    Ok(if ok { EXIT_OK } else { EXIT_AUDIT_BROKEN })
}

/// The audit problems a signed document reports about itself (empty: none).
fn evidence_verdict(text: &str) -> Option<Vec<String>> {
    if let Ok(value) = serde_json::from_str::<serde_json::Value>(text) {
        let log = value
            .get("audit_log")
            .or_else(|| value.get("content").and_then(|c| c.get("audit_log")))?;
        if log.get("ok").and_then(|ok| ok.as_bool()) == Some(true) {
            return Some(Vec::new());
        }
        let problems = log
            .get("findings")
            .and_then(|f| f.as_array())
            .map(|findings| {
                findings
                    .iter()
                    .map(|f| {
                        format!(
                            "entry {}: {}",
                            f.get("seq").unwrap_or(&serde_json::Value::Null),
                            f.get("problem").and_then(|p| p.as_str()).unwrap_or("")
                        )
                    })
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();
        return Some(if problems.is_empty() {
            vec!["the audit log was reported altered".into()]
        } else {
            problems
        });
    }
    let warned = text.contains("WARNING: this evidence disagrees with the audit log");
    let altered = text
        .lines()
        .filter(|l| {
            l.starts_with("# audit log verification: ALTERED")
                || l.starts_with("# audit log entry ")
                // Markdown and HTML: the warning, then the audit section's problems.
                || (warned && (l.contains("WARNING: this evidence") || l.contains("ALTERED: ")))
        })
        .map(|l| l.trim_start_matches("# ").to_owned())
        .collect();
    Some(altered)
}

#[cfg(test)]
mod tests {
    use super::{json_for_terminal, parse_schedule};

    /// Every argument and subcommand a person can see says what it is for (hidden ones,
    /// such as a documentation generator, are exempt).
    #[test]
    fn every_argument_and_subcommand_has_help() {
        fn missing(command: &clap::Command, path: &str, out: &mut Vec<String>) {
            for arg in command.get_arguments().filter(|a| !a.is_hide_set()) {
                if arg.get_help().is_none() && arg.get_long_help().is_none() {
                    out.push(format!("{path} {}", arg.get_id()));
                }
            }
            for sub in command.get_subcommands().filter(|c| !c.is_hide_set()) {
                let sub_path = format!("{path} {}", sub.get_name());
                if sub.get_about().is_none() && sub.get_long_about().is_none() {
                    out.push(sub_path.clone());
                }
                missing(sub, &sub_path, out);
            }
        }
        // Not built: clap's own `help` subcommands and `--help` flags are not ours to check.
        let command = <super::Cli as clap::CommandFactory>::command();
        let mut out = Vec::new();
        missing(&command, "driftctl", &mut out);
        assert!(out.is_empty(), "without help text:\n{}", out.join("\n"));
    }

    #[test]
    fn json_for_a_terminal_escapes_what_json_leaves_raw_and_parses_the_same() {
        let value = serde_json::json!({"subject": "a\u{1b}[2J\u{9b}\u{202e}b\u{7f}\n"});
        let text = json_for_terminal(&serde_json::to_string_pretty(&value).unwrap());
        assert!(
            !text.contains(['\u{1b}', '\u{9b}', '\u{202e}', '\u{7f}']),
            "{text}"
        );
        assert!(
            text.contains("\\u202e") && text.contains("\\u009b"),
            "{text}"
        );
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&text).unwrap(),
            value
        );
    }

    #[test]
    fn schedules_read_days_and_a_clock_interval() {
        let sunday = parse_schedule("sun 02:00-04:00").unwrap();
        assert_eq!(
            (sunday.weekdays, sunday.start, sunday.duration_minutes),
            (vec!["sun".to_owned()], "02:00".to_owned(), 120)
        );
        let overnight = parse_schedule("sat,sun 23:00-01:00").unwrap();
        assert_eq!(overnight.weekdays, ["sat", "sun"]);
        assert_eq!(overnight.duration_minutes, 120);
        assert_eq!(
            parse_schedule("daily 03:00-03:30").unwrap().weekdays.len(),
            7
        );
        for bad in [
            "sun",
            "sun 02:00",
            "sun 2-4",
            "sun 25:00-26:00",
            "sun 02:00-02:00",
        ] {
            let err = parse_schedule(bad).unwrap_err().to_string();
            assert!(err.contains(&format!("`{bad}`")), "{bad}: {err}");
        }
    }
}
