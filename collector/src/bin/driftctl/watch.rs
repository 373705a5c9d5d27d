//! `driftctl watch`: the live drift stream (`GET /api/v1/drift/stream`) in the terminal.
//! Reads the body as it arrives through `live::sse::Parser`, prints one line per change
//! (every host or person supplied string through `escape_text`), remembers the last event
//! id and reconnects with it as `Last-Event-ID` when the connection drops, the collector
//! restarts or nothing (not even a heartbeat) arrived for `--stall-secs`. A refusal (401,
//! 403, 400) ends it with that refusal's exit code; Ctrl-C ends it with 0; a closed pipe
//! ends it by SIGPIPE like every other command.

use std::time::Duration;

use clap::Args;
use driftwatch_collector::live::sse::Parser;
use driftwatch_collector::live::{
    self, ChangeView, EVENT_BYE, EVENT_DRIFT, EVENT_READY, EVENT_RESET, ResetView,
};
use driftwatch_common::api::v1::ApiErrorBody;
use driftwatch_common::pathbytes::escape_text;
use reqwest::StatusCode;

use super::exit::Failure;
use super::{Client, EXIT_OK, error_chain, json_for_terminal};

#[derive(Args)]
pub struct WatchArgs {
    /// Every drift change, authorized and accepted drift too (default: drift that needs
    /// review: opened or reopened untraced or flagged, and how it left review).
    #[arg(long)]
    all: bool,
    /// Start after this cursor (an event's `seq`, as --json prints it) instead of now.
    #[arg(long, value_name = "SEQ")]
    after: Option<u64>,
    /// Reconnect when nothing, not even a heartbeat, arrived for this many seconds.
    #[arg(long, default_value_t = 60, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..=3600))]
    stall_secs: u64,
    /// Stop after printing this many changes.
    #[arg(long, value_name = "N")]
    count: Option<u64>,
}

/// Longest wait between two reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// How one connection ended.
enum Ended {
    /// `--count` changes printed.
    Done,
    /// The collector closed the stream (`bye` or end of body), or it stalled: reconnect.
    Lost(String),
}

pub async fn watch(client: &Client, args: WatchArgs) -> anyhow::Result<u8> {
    let mut cursor = match args.after {
        Some(after) => Some(
            i64::try_from(after).map_err(|_| Failure::Usage.error("--after is out of range"))?,
        ),
        None => None,
    };
    let mut printed = 0u64;
    let mut backoff = Duration::from_secs(1);
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    loop {
        let outcome = tokio::select! {
            _ = &mut interrupted => return Ok(EXIT_OK),
            outcome = follow(client, &args, &mut cursor, &mut printed, &mut backoff) => outcome,
        };
        let why = match outcome {
            Ok(Ended::Done) => return Ok(EXIT_OK),
            Ok(Ended::Lost(why)) => why,
            Err(Retry { why, after }) => {
                if let Some(after) = after {
                    backoff = after;
                }
                why
            }
        };
        eprintln!(
            "driftctl: {}; reconnecting in {} s",
            escape_text(&why),
            backoff.as_secs()
        );
        tokio::select! {
            _ = &mut interrupted => return Ok(EXIT_OK),
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// A connection that failed in a way worth retrying (unreachable, 5xx, 503 full).
struct Retry {
    why: String,
    after: Option<Duration>,
}

/// One connection: returns how it ended, or a retryable failure as `Err(Retry)`; a refusal
/// ends the process with its exit code ([`refuse`]).
async fn follow(
    client: &Client,
    args: &WatchArgs,
    cursor: &mut Option<i64>,
    printed: &mut u64,
    backoff: &mut Duration,
) -> Result<Ended, Retry> {
    let url = format!("{}/api/v1/drift/stream", client.url);
    let mut request = client
        .stream_http
        .get(&url)
        .bearer_auth(&client.token)
        .header(reqwest::header::ACCEPT, "text/event-stream");
    if let Some(cursor) = cursor {
        request = request.header("Last-Event-ID", cursor.to_string());
    }
    let mut response = request.send().await.map_err(|err| Retry {
        why: format!(
            "cannot reach the collector at {}: {}",
            client.url,
            error_chain(&err)
        ),
        after: None,
    })?;
    let status = response.status();
    if status != StatusCode::OK {
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(|secs| Duration::from_secs(secs.clamp(1, 300)));
        let text = response.text().await.unwrap_or_default();
        let detail = serde_json::from_str::<ApiErrorBody>(&text)
            .map(|body| format!("{}: {}", body.error.code, body.error.message))
            .unwrap_or_else(|_| text.trim().chars().take(200).collect());
        let message = format!("GET /api/v1/drift/stream: {status}: {detail}");
        if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
            return Err(Retry {
                why: message,
                after: retry_after,
            });
        }
        // A refusal does not get better by retrying: end with its exit code.
        refuse(Failure::for_status(status).error(message));
    }
    *backoff = Duration::from_secs(1);
    let mut parser = Parser::new();
    let stall = Duration::from_secs(args.stall_secs);
    loop {
        let chunk = match tokio::time::timeout(stall, response.chunk()).await {
            Err(_) => {
                return Ok(Ended::Lost(format!(
                    "nothing from the collector for {} s",
                    stall.as_secs()
                )));
            }
            Ok(Err(err)) => {
                return Ok(Ended::Lost(format!(
                    "the stream broke: {}",
                    error_chain(&err)
                )));
            }
            Ok(Ok(None)) => return Ok(Ended::Lost("the collector closed the stream".into())),
            Ok(Ok(Some(chunk))) => chunk,
        };
        let events = match parser.feed(&chunk) {
            Ok(events) => events,
            Err(why) => refuse(Failure::ServerFailed.error(why)),
        };
        for event in events {
            if let Some(id) = event.id.as_deref()
                && let Ok(Some(seq)) = live::parse_cursor(id)
            {
                *cursor = Some(seq);
            }
            match event.event.as_str() {
                EVENT_DRIFT => {
                    let view: ChangeView = match serde_json::from_str(&event.data) {
                        Ok(view) => view,
                        Err(err) => {
                            eprintln!(
                                "driftctl: skipped an event that is not a drift change: {err}"
                            );
                            continue;
                        }
                    };
                    if !args.all && !view.about_review() {
                        continue;
                    }
                    print_change(client.json, &view, &event.data);
                    *printed += 1;
                    if args.count.is_some_and(|count| *printed >= count) {
                        return Ok(Ended::Done);
                    }
                }
                EVENT_RESET => {
                    let reason = serde_json::from_str::<ResetView>(&event.data)
                        .map(|r| r.reason)
                        .unwrap_or_default();
                    eprintln!(
                        "driftctl: the collector could not replay what was missed ({}); \
                         `driftctl drift list --status open` shows all open drift",
                        escape_text(&reason)
                    );
                }
                EVENT_BYE => return Ok(Ended::Lost("the collector is stopping".into())),
                EVENT_READY => {}
                _ => {}
            }
        }
    }
}

/// Ends the process with `err`'s exit code (a refusal: 400, 401, 403...).
fn refuse(err: anyhow::Error) -> ! {
    let code = super::exit::code_for(&err);
    eprintln!("driftctl: {}", escape_text(&format!("{err:#}")));
    std::process::exit(i32::from(code))
}

/// One line per change: time, host, subject, status (who, for a decision); or the JSON.
fn print_change(json: bool, view: &ChangeView, data: &str) {
    if json {
        println!("{}", json_for_terminal(data));
        return;
    }
    println!("{}", escape_text(&line(view)));
}

pub fn line(view: &ChangeView) -> String {
    let status = match view.kind.as_str() {
        "opened" | "reopened" | "changed" if view.untraced => format!("{} untraced", view.kind),
        "opened" | "reopened" | "changed" if view.flagged => format!(
            "{} flagged ({})",
            view.kind,
            view.review_reason.as_deref().unwrap_or("review")
        ),
        "opened" | "reopened" | "changed" => format!("{} {}", view.kind, view.to),
        _ => format!("{} by {}", view.kind, view.by),
    };
    format!(
        "{}  {}  {}  {}",
        view.at, view.hostname, view.subject, status
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use driftwatch_collector::drift::DriftStatus;
    use uuid::Uuid;

    fn view(subject: &str) -> ChangeView {
        ChangeView {
            seq: 1,
            kind: "opened".into(),
            drift_id: Uuid::nil(),
            host_id: Uuid::nil(),
            hostname: "web-1".into(),
            subject: subject.into(),
            at: "2027-01-15T10:00:00Z".into(),
            from: None,
            to: DriftStatus::Open,
            untraced: true,
            flagged: false,
            by: "collector".into(),
            reason: "x".into(),
            review_reason: Some("untraced".into()),
        }
    }

    #[test]
    fn a_line_says_time_host_subject_and_status() {
        assert_eq!(
            line(&view("/etc/motd")),
            "2027-01-15T10:00:00Z  web-1  /etc/motd  opened untraced"
        );
        let mut resolved = view("/etc/motd");
        resolved.kind = "resolved".into();
        resolved.by = "eve".into();
        resolved.untraced = false;
        assert!(line(&resolved).ends_with("resolved by eve"));
    }

    #[test]
    fn hostile_subjects_reach_the_terminal_escaped() {
        let shown = escape_text(&line(&view("/etc/\u{1b}]0;pwned\u{7}\u{202e}txt.sh\nfake")));
        assert!(
            !shown.chars().any(|c| c.is_control() || c == '\u{202e}'),
            "{shown:?}"
        );
        assert!(shown.contains("\\x1b"), "{shown}");
    }
}
