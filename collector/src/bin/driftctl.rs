//! `driftctl`: the command line for people, over the collector's API.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use clap::{Args, Parser, Subcommand};
use driftwatch_collector::api::model::{
    AlertView, AuditEntryView, CreateEnrollmentToken, CreateToken, DecideWindow, DecisionView,
    DriftDetail, DriftView, HostView, IssuedEnrollmentToken, IssuedToken, ResolveDrift, TokenView,
    WindowView,
};
use driftwatch_collector::audit::VerifyReport;
use driftwatch_collector::drift::{DriftStatus, ResolutionCategory};
use driftwatch_collector::identity::Role;
use driftwatch_collector::windows::schedule::Schedule;
use driftwatch_collector::windows::validate::WindowRequest;
use driftwatch_collector::windows::{ExpectedState, HostScope, WindowKind, WindowStatus};
use driftwatch_common::api::v1::ApiErrorBody;
use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use uuid::Uuid;

const EXIT_OK: u8 = 0;
const EXIT_AUDIT_BROKEN: u8 = 1;
const EXIT_ERROR: u8 = 2;

#[derive(Parser)]
#[command(
    name = "driftctl",
    version,
    about = "Change windows, drift and the audit trail of a driftwatch collector",
    after_help = "The token comes from --token-file or DRIFTWATCH_TOKEN.\n\
                  Exit codes: 0 success, 1 `audit verify` found the audit log altered, 2 error."
)]
struct Cli {
    /// The collector's base URL.
    #[arg(
        long,
        global = true,
        env = "DRIFTWATCH_URL",
        default_value = "http://127.0.0.1:8443"
    )]
    url: String,
    /// A file holding the API token (else DRIFTWATCH_TOKEN).
    #[arg(long, global = true)]
    token_file: Option<PathBuf>,
    /// Trust only this CA (PEM) for the collector's certificate.
    #[arg(long, global = true)]
    ca_cert: Option<PathBuf>,
    /// Print the collector's JSON answer instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Change windows: request, decide, list, evidence bundles.
    #[command(subcommand, alias = "window")]
    Windows(WindowsCommand),
    /// Evidence exports for auditors.
    #[command(subcommand, alias = "reports")]
    Report(ReportCommand),
    /// Drift: list, show, resolve.
    #[command(subcommand)]
    Drift(DriftCommand),
    /// The audit trail.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Enrollment tokens for agents (admin).
    #[command(subcommand, name = "enrollment-token")]
    EnrollmentToken(EnrollmentCommand),
    /// API tokens for people (admin).
    #[command(subcommand)]
    Token(TokenCommand),
    /// Enrolled hosts and whether they are silent.
    Hosts,
    /// Recent alerts and their delivery.
    Alerts {
        #[arg(long, default_value_t = 50)]
        limit: u32,
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
    Show { id: Uuid },
    /// Approve a window requested by someone else; covers past untraced drift it spans.
    Approve {
        id: Uuid,
        #[arg(long)]
        comment: Option<String>,
    },
    /// Reject a window requested by someone else.
    Reject {
        id: Uuid,
        /// Why (required).
        #[arg(long)]
        comment: String,
    },
    /// Withdraw a requested window, or end an approved one early.
    Cancel {
        id: Uuid,
        #[arg(long)]
        comment: Option<String>,
    },
    /// Close out an approved window: accept its authorized drift as the new baseline.
    Close {
        id: Uuid,
        #[arg(long)]
        comment: Option<String>,
    },
    /// The close-out evidence bundle of a window, to attach to its ticket (auditor,
    /// security, admin; a change manager for windows they requested, decided or closed).
    Evidence {
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
        #[arg(long)]
        host: Option<Uuid>,
        #[arg(long)]
        window: Option<Uuid>,
    },
    /// Show one drift item with its events.
    Show { id: Uuid },
    /// Resolve open (untraced) drift (security).
    Resolve {
        id: Uuid,
        /// confirmed_unauthorized, emergency_change or false_positive.
        #[arg(long)]
        category: String,
        #[arg(long)]
        comment: String,
        /// The ticket of a retroactively approved emergency change.
        #[arg(long)]
        ticket: Option<String>,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Check the audit log's hash chain end to end (exit code 1 if altered).
    Verify,
    /// Print the audit log.
    Log,
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
enum TokenCommand {
    /// Issue a token for a person; print it (shown once).
    Create {
        #[arg(long)]
        name: String,
        /// admin, change-manager, security or auditor.
        #[arg(long)]
        role: Role,
    },
    List,
    Revoke {
        id: Uuid,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("driftctl: error: cannot start: {err}");
            return ExitCode::from(EXIT_ERROR);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            eprintln!("driftctl: error: {err:#}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}

struct Client {
    http: reqwest::Client,
    url: String,
    token: String,
    json: bool,
}

impl Client {
    fn new(cli: &Cli) -> anyhow::Result<Client> {
        let token = match &cli.token_file {
            Some(path) => std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the token file {}", path.display()))?,
            None => std::env::var("DRIFTWATCH_TOKEN")
                .map_err(|_| anyhow!("no token: set DRIFTWATCH_TOKEN or pass --token-file"))?,
        };
        let mut builder = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .connect_timeout(Duration::from_secs(10));
        if let Some(ca) = &cli.ca_cert {
            let pem = std::fs::read(ca)
                .with_context(|| format!("cannot read the CA certificate {}", ca.display()))?;
            let cert = reqwest::Certificate::from_pem(&pem)
                .with_context(|| format!("{} is not a PEM certificate", ca.display()))?;
            builder = builder.tls_certs_only([cert]);
        }
        Ok(Client {
            http: builder.build().context("cannot build the HTTP client")?,
            url: cli.url.trim_end_matches('/').to_owned(),
            token: token.trim().to_owned(),
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
        let url = format!("{}{path}", self.url);
        let mut request = self
            .http
            .request(method.clone(), &url)
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("cannot reach the collector at {}", self.url))?;
        let status = response.status();
        let text = response
            .text()
            .await
            .context("cannot read the collector's answer")?;
        if status.is_success() {
            return Ok(text);
        }
        let detail = serde_json::from_str::<ApiErrorBody>(&text)
            .map(|body| format!("{}: {}", body.error.code, body.error.message))
            .unwrap_or_else(|_| text.trim().to_owned());
        let hint = match status {
            StatusCode::UNAUTHORIZED => " (check DRIFTWATCH_TOKEN or --token-file)",
            _ => "",
        };
        bail!("{method} {path}: {status}: {detail}{hint}")
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
            println!("{}", serde_json::to_string_pretty(&value)?);
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

    /// Prints text output unless --json already printed the answer.
    fn say(&self, text: impl AsRef<str>) {
        if !self.json {
            println!("{}", text.as_ref());
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
        Command::Audit(AuditCommand::Verify) => {
            let report: VerifyReport = client.get("/api/v1/audit/verify").await?;
            if report.ok {
                client.say(format!(
                    "audit log intact: {} entries, head {}",
                    report.entries, report.head_hash
                ));
                Ok(EXIT_OK)
            } else {
                client.say(format!(
                    "audit log ALTERED: {} problem(s) in {} entries",
                    report.findings.len(),
                    report.entries
                ));
                for finding in &report.findings {
                    client.say(format!("  entry {}: {}", finding.seq, finding.problem));
                }
                Ok(EXIT_AUDIT_BROKEN)
            }
        }
        Command::Audit(AuditCommand::Log) => {
            // Paged: the collector answers at most 10,000 entries at a time.
            let mut entries: Vec<AuditEntryView> = Vec::new();
            loop {
                let after = entries.last().map_or(0, |e| e.seq);
                let page: Vec<AuditEntryView> = client
                    .get(&format!("/api/v1/audit?after={after}&limit=10000"))
                    .await?;
                let done = page.len() < 10_000;
                entries.extend(page);
                if done {
                    break;
                }
            }
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
        Command::Token(TokenCommand::Create { name, role }) => {
            let issued: IssuedToken = client
                .post("/api/v1/tokens", &CreateToken { name, role })
                .await?;
            client.say(&issued.token);
            if !client.json {
                eprintln!(
                    "token {} with role {} for {}; shown only now",
                    issued.id, issued.role, issued.name
                );
            }
            Ok(EXIT_OK)
        }
        Command::Token(TokenCommand::List) => {
            let tokens: Vec<TokenView> = client.get("/api/v1/tokens").await?;
            client.list(&tokens, |t| {
                let state = t
                    .revoked_at
                    .as_deref()
                    .map_or("active".to_owned(), |at| format!("revoked {at}"));
                format!("{}  {:<14} {:<20} {}", t.id, t.role, t.name, state)
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
        Command::Hosts => {
            let hosts: Vec<HostView> = client.get("/api/v1/hosts").await?;
            client.list(&hosts, |h| {
                let seen = h.last_seen_at.as_deref().unwrap_or("never");
                let silent = if h.silent { "  SILENT" } else { "" };
                format!(
                    "{}  {:<24} last heartbeat {seen}, skew {} ms{silent}",
                    h.id, h.hostname, h.skew_ms
                )
            });
            Ok(EXIT_OK)
        }
        Command::Alerts { limit } => {
            let alerts: Vec<AlertView> =
                client.get(&format!("/api/v1/alerts?limit={limit}")).await?;
            client.list(&alerts, |a| {
                let delivery = a.delivered_at.as_deref().map_or_else(
                    || {
                        // Which sink holds it back, and why.
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
            });
            Ok(EXIT_OK)
        }
    }
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

/// Writes a document to `output`, or to standard output.
fn deliver(body: &str, output: Option<&std::path::Path>) -> anyhow::Result<u8> {
    match output {
        Some(path) => {
            std::fs::write(path, body)
                .with_context(|| format!("cannot write {}", path.display()))?;
            eprintln!("wrote {} ({} bytes)", path.display(), body.len());
        }
        None => print!("{body}"),
    }
    Ok(EXIT_OK)
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
            let request = window_request(*args)?;
            let window: WindowView = client.post("/api/v1/windows", &request).await?;
            client.say(show(&window));
            client.say(format!(
                "next: another change manager runs `driftctl windows approve {}`",
                window.id
            ));
        }
        WindowsCommand::List { status } => {
            let query = status.map(|s| format!("?status={s}")).unwrap_or_default();
            let windows: Vec<WindowView> = client.get(&format!("/api/v1/windows{query}")).await?;
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
            let items: Vec<DriftView> = client.get(&path).await?;
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
                    "  seq {:<6} {:<10} {}  {}  chain {}",
                    e.event.seq,
                    serde_json::to_string(&e.event.kind)?.trim_matches('"'),
                    e.event_time,
                    e.outcome.name(),
                    e.chain
                ));
            }
        }
        DriftCommand::Resolve {
            id,
            category,
            comment,
            ticket,
        } => {
            let category: ResolutionCategory = serde_json::from_value(serde_json::Value::String(category.clone()))
                .map_err(|_| anyhow!("--category `{category}`: expected confirmed_unauthorized, emergency_change or false_positive"))?;
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

#[cfg(test)]
mod tests {
    use super::parse_schedule;

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
