//! The live drift stream's rules (pure): the durable cursor, where a (re)connecting stream
//! starts, what one change looks like on the wire, and the server-sent events parser
//! `driftctl watch` reads it with.
//!
//! The cursor is the drift history row's number (`Store::drift_changes`, SQLite migration
//! 13: AUTOINCREMENT, so a number is never handed out twice, even after retention deleted
//! rows). It lives in the database, not in the process: a client resumes with
//! `Last-Event-ID` after a dropped connection, a collector restart, or on another collector
//! of the same database. The in-process notification (`app/live.rs`) only wakes streams;
//! each stream reads from the store after its own cursor, so nothing depends on it.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::drift::DriftStatus;
use crate::store::{DriftChange, DriftChanges};

/// Most changes replayed to a client that reconnects; further behind, it gets a `reset`.
pub const MAX_REPLAY: u32 = 1000;
/// Changes read from the store at once while following.
pub const PAGE: u32 = 200;
/// The SSE `event:` of a drift change.
pub const EVENT_DRIFT: &str = "drift";
/// The SSE `event:` telling the client it missed too much (or its cursor is unknown):
/// reload the listing; the stream goes on from the `id` it carries.
pub const EVENT_RESET: &str = "reset";
/// The SSE `event:` sent just before a stream ends because the collector stops.
pub const EVENT_BYE: &str = "bye";
/// The SSE `event:` a stream opened without a cursor starts with: its `id` is the head,
/// so a client that reconnects before any change came resumes from there (nothing made
/// while it was away is missed).
pub const EVENT_READY: &str = "ready";

/// Parses a `Last-Event-ID` (a cursor this collector gave out). Empty means none.
pub fn parse_cursor(text: &str) -> Result<Option<i64>, String> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    if !text.bytes().all(|b| b.is_ascii_digit()) || text.len() > 19 {
        return Err(format!(
            "Last-Event-ID must be a stream cursor (a number this collector sent as an event's \
             id), got `{}`",
            driftwatch_common::pathbytes::escape_text(&text.chars().take(40).collect::<String>())
        ));
    }
    text.parse::<i64>()
        .map(Some)
        .map_err(|_| format!("Last-Event-ID `{text}` is out of range"))
}

/// Where a stream starts, from the client's cursor and the first read after it (made with
/// a limit of `MAX_REPLAY + 1`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Start {
    /// Replay these, then follow after the last (or after `from` when there are none).
    Replay {
        from: i64,
        changes: Vec<DriftChange>,
    },
    /// Tell the client to reload, then follow after `head`.
    Reset { head: i64, why: &'static str },
}

pub fn start(resume: Option<i64>, first: DriftChanges) -> Start {
    match resume {
        // A new client: only what happens from now on.
        None => Start::Replay {
            from: first.head,
            changes: Vec::new(),
        },
        Some(cursor) if cursor > first.head => Start::Reset {
            head: first.head,
            why: "unknown_cursor",
        },
        Some(_) if first.changes.len() > MAX_REPLAY as usize => Start::Reset {
            head: first.head,
            why: "too_far_behind",
        },
        Some(cursor) => Start::Replay {
            from: cursor,
            changes: first.changes,
        },
    }
}

/// What a drift change did, in one word.
pub fn kind(from: Option<DriftStatus>, to: DriftStatus) -> &'static str {
    match (from, to) {
        (None, _) => "opened",
        // A further change of an item still needing review (`drift::records_history`).
        (Some(from), to) if from == to => "changed",
        (Some(_), DriftStatus::Open) => "reopened",
        (Some(_), DriftStatus::Authorized) => "authorized",
        (Some(_), DriftStatus::Resolved) => "resolved",
        (Some(_), DriftStatus::Accepted) => "accepted",
    }
}

/// The `data:` of a `drift` event (JSON).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeView {
    /// The cursor (the event's `id:` too).
    pub seq: i64,
    /// `opened`, `reopened`, `changed` (changed again, same status), `authorized`,
    /// `resolved`, `accepted` ([`kind`]).
    pub kind: String,
    pub drift_id: Uuid,
    pub host_id: Uuid,
    pub hostname: String,
    pub subject: String,
    /// When the collector recorded the change (RFC 3339).
    pub at: String,
    pub from: Option<DriftStatus>,
    pub to: DriftStatus,
    /// Open because no window covers it (`untraced`) or flagged (another review outcome).
    pub untraced: bool,
    pub flagged: bool,
    pub by: String,
    pub reason: String,
    /// The item's review reason now (`DriftItem::reason`).
    pub review_reason: Option<String>,
}

impl From<&DriftChange> for ChangeView {
    fn from(c: &DriftChange) -> Self {
        let open = c.to == DriftStatus::Open;
        let untraced = open && c.review_reason.as_deref().is_none_or(|r| r == "untraced");
        ChangeView {
            seq: c.seq,
            kind: kind(c.from, c.to).into(),
            drift_id: c.drift_id,
            host_id: c.host_id,
            hostname: c.hostname.clone(),
            subject: c.subject.clone(),
            at: crate::clock::rfc3339(c.at),
            from: c.from,
            to: c.to,
            untraced,
            flagged: open && !untraced,
            by: c.by.clone(),
            reason: c.reason.clone(),
            review_reason: c.review_reason.clone(),
        }
    }
}

impl ChangeView {
    /// Whether it is about drift that needs a person (what `driftctl watch` shows by
    /// default): it opened or reopened for review, or left review.
    pub fn about_review(&self) -> bool {
        self.to == DriftStatus::Open || self.from == Some(DriftStatus::Open)
    }
}

/// The `data:` of a `ready` event (JSON).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadyView {
    /// The stream follows after this cursor (the event's `id:` too).
    pub head: i64,
}

/// The `data:` of a `reset` event (JSON).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResetView {
    /// The stream goes on after this cursor (the event's `id:` too).
    pub head: i64,
    /// `too_far_behind` (more than [`MAX_REPLAY`] changes missed) or `unknown_cursor`.
    pub reason: String,
}

pub mod sse {
    //! A server-sent events parser (the WHATWG `text/event-stream` rules: lines end in
    //! CRLF, LF or CR; `:` starts a comment; `data` lines join with LF; a blank line
    //! dispatches; an `id` with NUL is ignored; one leading space after the colon is
    //! dropped), fed with bytes as they arrive, bounded in memory.

    /// One dispatched event.
    #[derive(Clone, Debug, PartialEq, Eq, Default)]
    pub struct Event {
        /// `message` when the server named none.
        pub event: String,
        pub data: String,
        /// The last event id seen so far on this stream (the spec's rule: it carries over).
        pub id: Option<String>,
    }

    /// Largest line or event accepted, so a hostile server cannot make the client grow.
    pub const MAX_EVENT_BYTES: usize = 1 << 20;

    #[derive(Debug, Default)]
    pub struct Parser {
        line: Vec<u8>,
        /// The previous byte was a CR (a following LF belongs to the same line end).
        after_cr: bool,
        started: bool,
        event: String,
        data: String,
        has_data: bool,
        last_id: Option<String>,
        /// Comment lines seen (heartbeats), for tests and liveness.
        pub comments: u64,
    }

    impl Parser {
        pub fn new() -> Self {
            Parser::default()
        }

        /// The last id seen (what to send as `Last-Event-ID` when reconnecting).
        pub fn last_id(&self) -> Option<&str> {
            self.last_id.as_deref()
        }

        /// Feeds bytes; returns the events they completed.
        pub fn feed(&mut self, bytes: &[u8]) -> Result<Vec<Event>, String> {
            let mut out = Vec::new();
            for &b in bytes {
                if self.after_cr {
                    self.after_cr = false;
                    if b == b'\n' {
                        continue;
                    }
                }
                match b {
                    b'\n' => self.end_line(&mut out)?,
                    b'\r' => {
                        self.after_cr = true;
                        self.end_line(&mut out)?;
                    }
                    _ => {
                        if self.line.len() >= MAX_EVENT_BYTES {
                            return Err(format!(
                                "an event stream line is longer than {MAX_EVENT_BYTES} bytes"
                            ));
                        }
                        self.line.push(b);
                    }
                }
            }
            Ok(out)
        }

        fn end_line(&mut self, out: &mut Vec<Event>) -> Result<(), String> {
            let mut line = std::mem::take(&mut self.line);
            if !self.started {
                self.started = true;
                if line.starts_with("\u{feff}".as_bytes()) {
                    line.drain(..3);
                }
            }
            let line = String::from_utf8_lossy(&line);
            if line.is_empty() {
                self.dispatch(out);
                return Ok(());
            }
            if line.starts_with(':') {
                self.comments += 1;
                return Ok(());
            }
            let (field, value) = match line.split_once(':') {
                Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
                None => (&*line, ""),
            };
            match field {
                "event" => self.event = value.to_owned(),
                "data" => {
                    if self.data.len() + value.len() + 1 > MAX_EVENT_BYTES {
                        return Err(format!(
                            "an event's data is longer than {MAX_EVENT_BYTES} bytes"
                        ));
                    }
                    self.data.push_str(value);
                    self.data.push('\n');
                    self.has_data = true;
                }
                "id" if !value.contains('\0') => self.last_id = Some(value.to_owned()),
                // `retry` and unknown fields: ignored.
                _ => {}
            }
            Ok(())
        }

        fn dispatch(&mut self, out: &mut Vec<Event>) {
            let event = std::mem::take(&mut self.event);
            if !std::mem::take(&mut self.has_data) {
                self.data.clear();
                return;
            }
            let mut data = std::mem::take(&mut self.data);
            data.pop();
            out.push(Event {
                event: if event.is_empty() {
                    "message".into()
                } else {
                    event
                },
                data,
                id: self.last_id.clone(),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::sse::{Event, Parser};
    use super::*;

    fn change(seq: i64) -> DriftChange {
        DriftChange {
            seq,
            drift_id: Uuid::nil(),
            host_id: Uuid::nil(),
            hostname: "web-1".into(),
            subject: "/etc/motd".into(),
            at: 1_800_000_000_000,
            from: None,
            to: DriftStatus::Open,
            by: "collector".into(),
            reason: "event x (untraced)".into(),
            review_reason: Some("untraced".into()),
        }
    }

    #[test]
    fn cursors_are_numbers_and_bad_ones_are_refused_clearly() {
        assert_eq!(parse_cursor(""), Ok(None));
        assert_eq!(parse_cursor(" 42 "), Ok(Some(42)));
        assert_eq!(parse_cursor("0"), Ok(Some(0)));
        for bad in ["-1", "4x", "1e3", "99999999999999999999", "\u{1b}[31m"] {
            let err = parse_cursor(bad).unwrap_err();
            assert!(err.contains("Last-Event-ID"), "{bad}: {err}");
            assert!(!err.contains('\u{1b}'), "escaped: {err}");
        }
    }

    #[test]
    fn a_new_client_follows_from_the_head_without_replay() {
        let first = DriftChanges {
            changes: vec![change(1), change(2)],
            head: 2,
        };
        assert_eq!(
            start(None, first),
            Start::Replay {
                from: 2,
                changes: vec![]
            }
        );
    }

    #[test]
    fn a_resuming_client_gets_what_came_after_its_cursor() {
        let first = DriftChanges {
            changes: vec![change(6), change(7)],
            head: 7,
        };
        assert_eq!(
            start(Some(5), first.clone()),
            Start::Replay {
                from: 5,
                changes: first.changes
            }
        );
    }

    #[test]
    fn too_far_behind_or_an_unknown_cursor_is_a_reset_to_the_head() {
        let many = DriftChanges {
            changes: (1..=i64::from(MAX_REPLAY) + 1).map(change).collect(),
            head: 5000,
        };
        assert_eq!(
            start(Some(0), many),
            Start::Reset {
                head: 5000,
                why: "too_far_behind"
            }
        );
        // A cursor from the future (a database restored from an older backup).
        let ahead = DriftChanges {
            changes: vec![],
            head: 10,
        };
        assert_eq!(
            start(Some(11), ahead),
            Start::Reset {
                head: 10,
                why: "unknown_cursor"
            }
        );
    }

    #[test]
    fn views_say_untraced_flagged_and_kind() {
        let view = ChangeView::from(&change(3));
        assert_eq!(view.kind, "opened");
        assert!(view.untraced && !view.flagged && view.about_review());
        let mut flagged = change(4);
        flagged.review_reason = Some("made_by_approver".into());
        let view = ChangeView::from(&flagged);
        assert!(!view.untraced && view.flagged);
        let mut resolved = change(5);
        resolved.from = Some(DriftStatus::Open);
        resolved.to = DriftStatus::Resolved;
        let view = ChangeView::from(&resolved);
        assert_eq!(view.kind, "resolved");
        assert!(!view.untraced && !view.flagged && view.about_review());
        let mut accepted = change(6);
        accepted.from = Some(DriftStatus::Authorized);
        accepted.to = DriftStatus::Accepted;
        assert!(!ChangeView::from(&accepted).about_review());
    }

    #[test]
    fn the_parser_follows_the_event_stream_rules() {
        let mut parser = Parser::new();
        let events = parser
            .feed(
                b"\xef\xbb\xbf: hello\n\nid: 7\nevent: drift\ndata: {\"a\":\ndata:1}\n\n\
                  data: no id or type\r\n\r\nid\ndata: x\rdata:  two spaces\r\r",
            )
            .unwrap();
        assert_eq!(
            events,
            vec![
                Event {
                    event: "drift".into(),
                    data: "{\"a\":\n1}".into(),
                    id: Some("7".into())
                },
                Event {
                    event: "message".into(),
                    data: "no id or type".into(),
                    id: Some("7".into())
                },
                Event {
                    event: "message".into(),
                    data: "x\n two spaces".into(),
                    id: Some(String::new())
                },
            ]
        );
        assert_eq!(parser.comments, 1);
    }

    #[test]
    fn the_parser_takes_bytes_in_any_split_and_needs_data_to_dispatch() {
        let stream = b"id: 1\nevent: drift\ndata: a\r\n\r\nevent: x\n\nid: 2\ndata: b\n\n";
        let whole = Parser::new().feed(stream).unwrap();
        let mut split = Parser::new();
        let mut events = Vec::new();
        for byte in stream.chunks(1) {
            events.extend(split.feed(byte).unwrap());
        }
        assert_eq!(events, whole);
        assert_eq!(events.len(), 2, "the event without data is not dispatched");
        assert_eq!(split.last_id(), Some("2"));
        assert_eq!(events[1].event, "message", "the type does not carry over");
    }

    #[test]
    fn the_parser_refuses_an_endless_line() {
        let mut parser = Parser::new();
        let chunk = vec![b'a'; 64 * 1024];
        let mut failed = None;
        for _ in 0..20 {
            if let Err(err) = parser.feed(&chunk) {
                failed = Some(err);
                break;
            }
        }
        assert!(failed.unwrap().contains("longer than"));
    }
}
