//! `driftwatch-agent`: the host agent's command-line interface.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, CommandFactory, Parser, Subcommand};
use driftwatch_agent::Exit;
use driftwatch_agent::baseline::store::StorePaths;
use driftwatch_agent::cli::commands::{self, Output, Target};
use driftwatch_agent::cli::report::Format;
use driftwatch_common::logging::{ConfigRefused, LogFormat, LogOutput};
use driftwatch_config::AgentConfig;

const EXIT_CODES: &str = "\
Exit codes:
  0  no drift: every subject matches the baseline
  1  drift found
  2  error: nothing was compared (no baseline, I/O failure...)
  3  no drift found, but some subjects could not be read or checked
  4  the baseline failed its integrity check (modified outside driftwatch)
 78  the configuration was refused (each problem with file, line and key): nothing was done";

/// Detects configuration drift and unauthorized change on this host.
#[derive(Parser)]
#[command(name = "driftwatch-agent", version, after_help = EXIT_CODES)]
struct Cli {
    /// Agent configuration file (policy and state directory).
    #[arg(
        long,
        global = true,
        env = "DRIFTWATCH_CONFIG",
        default_value = "/etc/driftwatch/agent.toml"
    )]
    config: PathBuf,

    /// Log filter (error, warn, info, debug, trace, or a tracing directive).
    #[arg(long, global = true, env = "DRIFTWATCH_LOG", default_value = "info")]
    log_level: String,

    /// Log line format on stderr, fatal errors included (under systemd's journal: no
    /// timestamp of our own and a priority per line).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create, inspect or update the baseline (the approved state of every subject).
    #[command(subcommand)]
    Baseline(BaselineCommand),
    /// Compare the host with its baseline and report every drift.
    #[command(after_help = EXIT_CODES)]
    Check {
        #[command(flatten)]
        target: TargetArgs,
        /// Re-read and re-hash every file instead of trusting unchanged metadata.
        #[arg(long)]
        paranoid: bool,
        #[command(flatten)]
        scan: ScanArgs,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Check a configuration file and report every problem, without running anything.
    #[command(after_help = EXIT_CODES)]
    ValidateConfig {
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Run the agent daemon: watch the policy in real time, scan periodically, spool drift
    /// events and deliver them to the collector (the systemd service runs this).
    #[command(after_help = RUN_EXIT_CODES)]
    Run,
    /// Enroll this host with a collector: exchange a one-time token for the agent's credential.
    #[command(after_help = ENROLL_EXIT_CODES)]
    Enroll {
        /// The collector's URL (default: [collector] url of the configuration).
        #[arg(long, value_name = "URL")]
        collector: Option<String>,
        /// The one-time enrollment token (or use --token-file, or $DRIFTWATCH_ENROLL_TOKEN).
        #[arg(long, env = "DRIFTWATCH_ENROLL_TOKEN", hide_env_values = true)]
        token: Option<String>,
        /// Read the token from this file (keeps it out of the process list).
        #[arg(long, value_name = "FILE", conflicts_with = "token")]
        token_file: Option<PathBuf>,
        /// A label for the collector's host scopes, KEY=VALUE (repeatable).
        #[arg(long = "label", value_name = "KEY=VALUE", value_parser = parse_label)]
        labels: Vec<(String, String)>,
        /// Replace an existing enrollment.
        #[arg(long)]
        force: bool,
    },
    /// Show the running daemon's state: readiness, spool, delivery, coverage, problems.
    #[command(after_help = STATUS_EXIT_CODES)]
    Status {
        #[command(flatten)]
        output: OutputArgs,
    },
}

const RUN_EXIT_CODES: &str = "\
Exit codes:
  0  stopped cleanly (SIGTERM or SIGINT); undelivered events stay in the spool
  2  error: could not start (no baseline, another agent running...)
  4  the baseline failed its integrity check (modified outside driftwatch): not started
 78  the configuration was refused: not started, and systemd does not restart it
SIGHUP reloads the configuration; a refused file keeps the running one (error logged).";

const ENROLL_EXIT_CODES: &str = "\
Exit codes:
  0  enrolled: the credential is stored (0600) in the state directory
  2  error: nothing was stored (collector unreachable, token refused or used, already enrolled...)
 78  the configuration was refused: nothing was stored";

const STATUS_EXIT_CODES: &str = "\
Exit codes:
  0  the daemon runs and reports no problem
  2  the daemon is not running (or its state cannot be read)
  3  the daemon runs, with problems (spool full, delivery failing, unwatched subtrees...)
 78  the configuration was refused";

/// `--snapshot-budget`: a size, or no limit.
#[derive(Clone, Copy, Debug)]
struct Budget(Option<u64>);

fn parse_budget(text: &str) -> Result<Budget, String> {
    if text == "unlimited" {
        return Ok(Budget(None));
    }
    let (digits, unit) = match text.char_indices().last() {
        Some((at, 'K' | 'k')) => (&text[..at], 1u64 << 10),
        Some((at, 'M' | 'm')) => (&text[..at], 1 << 20),
        Some((at, 'G' | 'g')) => (&text[..at], 1 << 30),
        _ => (text, 1),
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(unit))
        .map(|bytes| Budget(Some(bytes)))
        .ok_or_else(|| {
            format!("expected a size such as 8M, 65536 or 1G, or `unlimited`; got `{text}`")
        })
}

fn parse_label(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
        _ => Err(format!("expected KEY=VALUE, got `{text}`")),
    }
}

#[derive(Subcommand)]
enum BaselineCommand {
    /// Record the current state of every subject of the policy as the baseline.
    #[command(after_help = EXIT_CODES)]
    Init {
        #[command(flatten)]
        target: TargetArgs,
        /// Replace an existing baseline (the replacement is recorded in its history).
        #[arg(long)]
        force: bool,
        /// Total compressed size of the content snapshots kept for diffs outside
        /// configuration paths (/etc, *.conf, *.cnf, *.cfg, *.ini, always kept): BYTES with
        /// an optional K, M or G suffix, or `unlimited`. Default: 8M with --path, unlimited
        /// with a policy. Each MiB holds the snapshots of about 5 MiB of text; content drift
        /// of a file left out is reported without a diff.
        #[arg(long, value_name = "SIZE", value_parser = parse_budget)]
        snapshot_budget: Option<Budget>,
        #[command(flatten)]
        scan: ScanArgs,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Show one subject's baseline record, or without PATH a summary and the history.
    #[command(after_help = EXIT_CODES)]
    Show {
        /// The subject to show.
        #[arg(value_name = "PATH")]
        subject: Option<PathBuf>,
        #[command(flatten)]
        target: TargetArgs,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Accept the current state of the drifted subjects at or below each PATH as
    /// their new baseline; recorded in the baseline history with the reason.
    #[command(after_help = EXIT_CODES)]
    Accept {
        /// Paths (a directory accepts the drift below it) or state subjects such as
        /// `package:nginx` (`package:` accepts every package change).
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Why the change is accepted, e.g. a change ticket.
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        target: TargetArgs,
        #[command(flatten)]
        output: OutputArgs,
    },
}

/// Ad-hoc use without a configuration file.
#[derive(Args)]
struct TargetArgs {
    /// Apply the built-in `content` rule to this tree instead of the configured policy.
    #[arg(long, value_name = "DIR")]
    path: Option<PathBuf>,
    /// Baseline database file (its key is kept beside it as FILE.key).
    #[arg(long, value_name = "FILE")]
    db: Option<PathBuf>,
}

#[derive(Args)]
struct ScanArgs {
    /// Threads that walk and hash (default: the configuration's, normally one per core).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=256))]
    workers: Option<u16>,
}

#[derive(Args)]
struct OutputArgs {
    /// Machine-readable JSON on stdout.
    #[arg(long)]
    json: bool,
    /// No progress display.
    #[arg(long, short)]
    quiet: bool,
}

impl OutputArgs {
    fn output(&self) -> Output {
        Output {
            format: if self.json {
                Format::Json
            } else {
                Format::Text
            },
            progress: !self.quiet,
        }
    }
}

fn main() -> ExitCode {
    // The packaging build's `driftwatch-agent generate-docs DIR`: read before clap, so it
    // stays out of the documented interface (pages and completions).
    if let Some(dir) = driftwatch_common::cli_docs::requested_dir(std::env::args_os()) {
        return match driftwatch_common::cli_docs::write(Cli::command(), "8", &dir) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("error: {err:#}");
                ExitCode::from(Exit::Error as u8)
            }
        };
    }
    let cli = Cli::parse();
    let log = LogOutput::detect(cli.log_format);
    if let Err(err) = init_logging(&cli.log_level, log) {
        log.fatal(LOG_TARGET, "", &format!("{err:#}"));
        return ExitCode::from(Exit::Error as u8);
    }
    let exit = match run(&cli) {
        Ok(exit) => exit,
        // A reader that went away (`check | head`) is not worth an error message.
        Err(err) if is_broken_pipe(&err) => Exit::Error,
        Err(err) => {
            log.fatal(LOG_TARGET, "", &format!("{err:#}"));
            commands::exit_for_error(&err)
        }
    };
    ExitCode::from(exit as u8)
}

fn run(cli: &Cli) -> anyhow::Result<Exit> {
    match &cli.command {
        Command::Baseline(BaselineCommand::Init {
            target,
            force,
            snapshot_budget,
            scan,
            output,
        }) => {
            let mut target = resolve(cli, target, scan.workers)?;
            if let Some(Budget(budget)) = snapshot_budget {
                target.config.snapshots.budget = *budget;
            }
            commands::init(&target, *force, output.output())
        }
        Command::Baseline(BaselineCommand::Show {
            subject,
            target,
            output,
        }) => commands::show(
            &resolve(cli, target, None)?,
            subject.as_deref(),
            output.output(),
        ),
        Command::Baseline(BaselineCommand::Accept {
            paths,
            reason,
            target,
            output,
        }) => commands::accept(&resolve(cli, target, None)?, paths, reason, output.output()),
        Command::Check {
            target,
            paranoid,
            scan,
            output,
        } => commands::check(
            &resolve(cli, target, scan.workers)?,
            *paranoid,
            output.output(),
        ),
        Command::ValidateConfig { output } => {
            commands::validate_config(&cli.config, output.output())
        }
        Command::Run => driftwatch_agent::daemon::run(&cli.config, load_config(&cli.config)?),
        Command::Enroll {
            collector,
            token,
            token_file,
            labels,
            force,
        } => {
            let token = match (token, token_file) {
                (Some(token), _) => token.clone(),
                (None, Some(file)) => std::fs::read_to_string(file)
                    .with_context(|| format!("cannot read --token-file {}", file.display()))?
                    .trim()
                    .to_owned(),
                (None, None) => bail!("enrollment needs a token: --token T or --token-file FILE"),
            };
            let config = load_config(&cli.config)?;
            let args = driftwatch_agent::daemon::enroll::EnrollArgs {
                collector: collector.clone(),
                token,
                labels: labels.clone(),
                force: *force,
            };
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("cannot start the async runtime")?
                .block_on(driftwatch_agent::daemon::enroll::enroll(&config, args))
        }
        Command::Status { output } => {
            let config = load_config(&cli.config)?;
            driftwatch_agent::daemon::status::print(&config.state_dir, output.output().format)
        }
    }
}

/// The man pages (section 8: a daemon and administration tool) and completions, from
/// this parser.
fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain()
        .filter_map(|cause| cause.downcast_ref::<std::io::Error>())
        .any(|io_err| io_err.kind() == std::io::ErrorKind::BrokenPipe)
}

/// The policy and baseline a command works on: the configuration file's,
/// or an ad-hoc tree and database from `--path` and `--db`.
fn resolve(cli: &Cli, args: &TargetArgs, workers: Option<u16>) -> anyhow::Result<Target> {
    let mut config = match &args.path {
        Some(dir) => {
            let dir = std::fs::canonicalize(dir)
                .with_context(|| format!("cannot use --path {}", dir.display()))?;
            AgentConfig::adhoc(&dir)
        }
        None => load_config(&cli.config)?,
    };
    if let Some(workers) = workers {
        config.scan.workers = usize::from(workers);
    }
    let store = match (&args.db, &args.path) {
        (Some(db), _) => StorePaths::for_db(db),
        (None, Some(_)) => bail!("--path needs --db FILE: where to keep the baseline of that tree"),
        (None, None) => StorePaths::in_state_dir(&config.state_dir),
    };
    Ok(Target { config, store })
}

/// Fatal errors' `target` under `--log-format json`, as the log lines name this crate.
const LOG_TARGET: &str = "driftwatch_agent";

/// The configuration, or a [`ConfigRefused`] error (exit 78) listing every problem.
fn load_config(path: &Path) -> anyhow::Result<AgentConfig> {
    AgentConfig::load(path).map_err(|errors| {
        anyhow::Error::new(ConfigRefused(format!(
            "{errors}\n(fix the configuration, or use `--path DIR --db FILE` to check one tree without one)"
        )))
    })
}

fn init_logging(filter: &str, log: LogOutput) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .with_context(|| format!("invalid --log-level `{filter}`"))?;
    log.init_tracing(filter);
    Ok(())
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

    #[test]
    fn snapshot_budget_takes_sizes_and_unlimited_and_refuses_the_rest() {
        assert_eq!(parse_budget("8M").unwrap().0, Some(8 << 20));
        assert_eq!(parse_budget("65536").unwrap().0, Some(65536));
        assert_eq!(parse_budget("1g").unwrap().0, Some(1 << 30));
        assert_eq!(parse_budget("0").unwrap().0, Some(0));
        assert_eq!(parse_budget("unlimited").unwrap().0, None);
        for bad in ["", "M", "8 M", "-1", "8T", "99999999999G"] {
            let err = parse_budget(bad).unwrap_err();
            assert!(err.contains("expected a size"), "{bad}: {err}");
        }
    }
}
