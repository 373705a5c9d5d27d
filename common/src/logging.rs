//! How the binaries write logs and fatal errors on stderr (feature `logging`).
//!
//! - `--log-format text|json` ([`LogFormat`]) is the same flag on every binary; fatal errors
//!   honour it too ([`LogOutput::fatal`]): one JSON line under `json`.
//! - Under systemd, stderr is a journal stream and the service manager says so in
//!   `JOURNAL_STREAM=<device>:<inode>` ([`stderr_is_journal`]). Then lines carry no
//!   timestamp of ours (journald stamps each entry) and start with the sd-daemon priority
//!   prefix `<N>` ([`priority`]), which journald parses and strips, so `journalctl -p err`
//!   finds our errors. The prefix rather than `tracing-journald`: the same stderr stream in
//!   every case (a unit, a pipe, a terminal), no socket to reach from inside a sandbox, and
//!   fatal errors printed before or without a subscriber get a priority the same way.
//! - A journal stream turns every line into its own entry, so a multi-line message would
//!   become entries after the first without context: every line of an event gets the
//!   event's priority, and fatal errors become one line.
//! - [`ConfigRefused`] marks an error as a refused configuration: the binaries exit
//!   [`EXIT_CONFIG`] (78, `EX_CONFIG`), which the units name in `RestartPreventExitStatus=`.

use std::fmt;
use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::MetadataExt;

use tracing::{Level, Metadata};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry};

/// `EX_CONFIG` from sysexits.h: the configuration was refused. systemd units list it in
/// `RestartPreventExitStatus=`: restarting cannot fix a file a person must fix.
pub const EXIT_CONFIG: u8 = 78;

/// The format of log lines and fatal errors on stderr.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// An error meaning "the configuration was refused": nothing was started or written, and a
/// person must fix the file. Binaries map it (anywhere in an error's chain) to
/// [`EXIT_CONFIG`].
#[derive(Debug)]
pub struct ConfigRefused(pub String);

impl fmt::Display for ConfigRefused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigRefused {}

/// Whether `error` or one of its causes is a [`ConfigRefused`].
pub fn is_config_refused(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(error);
    while let Some(current) = cause {
        if current.is::<ConfigRefused>() {
            return true;
        }
        cause = current.source();
    }
    false
}

/// The syslog priority journald files a line of `level` under: err, warning, info, debug.
pub fn priority(level: Level) -> u8 {
    match level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        Level::DEBUG | Level::TRACE => 7,
    }
}

/// `JOURNAL_STREAM`'s value names the file `fd` is open on (`<device>:<inode>`, decimal).
pub fn is_journal_stream(value: &str, fd: BorrowedFd<'_>) -> bool {
    let Some((device, inode)) = value.trim().split_once(':') else {
        return false;
    };
    let (Ok(device), Ok(inode)) = (device.parse::<u64>(), inode.parse::<u64>()) else {
        return false;
    };
    // A duplicate of the descriptor shares its open file: fstat without unsafe code.
    let Ok(owned) = fd.try_clone_to_owned() else {
        return false;
    };
    match std::fs::File::from(owned).metadata() {
        Ok(meta) => meta.dev() == device && meta.ino() == inode,
        Err(_) => false,
    }
}

/// stderr is the journal: systemd set `JOURNAL_STREAM` and stderr is still that stream (not
/// redirected by a shell script in between).
pub fn stderr_is_journal() -> bool {
    std::env::var("JOURNAL_STREAM")
        .is_ok_and(|value| is_journal_stream(&value, std::io::stderr().as_fd()))
}

/// Where and how this process writes its logs and fatal errors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogOutput {
    pub format: LogFormat,
    /// stderr is a journal stream: no own timestamps, `<N>` priority prefixes.
    pub journal: bool,
}

impl LogOutput {
    /// `format`, with the journal detected from `JOURNAL_STREAM`.
    pub fn detect(format: LogFormat) -> LogOutput {
        LogOutput {
            format,
            journal: stderr_is_journal(),
        }
    }

    /// Installs the process-wide tracing subscriber writing to stderr, filtered by
    /// `filter`. A second call leaves the first subscriber in place.
    pub fn init_tracing(&self, filter: EnvFilter) {
        let ansi = !self.journal && std::io::IsTerminal::is_terminal(&std::io::stderr());
        let base = tracing_subscriber::fmt::layer::<Registry>().with_ansi(ansi);
        let layer: Box<dyn Layer<Registry> + Send + Sync> = match (self.format, self.journal) {
            (LogFormat::Text, false) => base.with_writer(std::io::stderr).boxed(),
            (LogFormat::Json, false) => base.json().with_writer(std::io::stderr).boxed(),
            (LogFormat::Text, true) => base.without_time().with_writer(JournalWriter).boxed(),
            (LogFormat::Json, true) => base
                .json()
                .without_time()
                .with_writer(JournalWriter)
                .boxed(),
        };
        let _ = tracing_subscriber::registry()
            .with(layer)
            .with(filter)
            .try_init();
    }

    /// Prints a fatal error on stderr, as [`LogOutput::fatal_line`] shapes it.
    pub fn fatal(&self, target: &str, prefix: &str, message: &str) {
        let line = self.fatal_line(target, prefix, message);
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }

    /// A fatal error as printed: under `json` one JSON object in the shape of the JSON log
    /// lines (level `ERROR`); in the journal one line with the err priority; on a terminal or
    /// a file `{prefix}error: {message}` as is (a list of problems stays a list). `target`
    /// names the binary (the JSON `target`); `prefix` starts the text form, e.g.
    /// `"driftctl: "`. Ends with a newline.
    pub fn fatal_line(&self, target: &str, prefix: &str, message: &str) -> String {
        match self.format {
            LogFormat::Json => {
                let mut object = serde_json::Map::new();
                if !self.journal {
                    let now = time::OffsetDateTime::now_utc()
                        .format(&time::format_description::well_known::Rfc3339)
                        .unwrap_or_default();
                    object.insert("timestamp".into(), now.into());
                }
                object.insert("level".into(), "ERROR".into());
                object.insert(
                    "fields".into(),
                    serde_json::json!({ "message": one_line(message) }),
                );
                object.insert("target".into(), target.into());
                let line = serde_json::Value::Object(object).to_string();
                if self.journal {
                    format!("<{}>{line}\n", priority(Level::ERROR))
                } else {
                    format!("{line}\n")
                }
            }
            LogFormat::Text if self.journal => {
                format!(
                    "<{}>{prefix}error: {}\n",
                    priority(Level::ERROR),
                    one_line(message)
                )
            }
            LogFormat::Text => format!("{prefix}error: {message}\n"),
        }
    }
}

/// A multi-line message as one line: lines joined with `; ` (after a line ending in `:`,
/// a space).
pub fn one_line(message: &str) -> String {
    let mut joined = String::with_capacity(message.len());
    for line in message.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if !joined.is_empty() {
            joined.push_str(if joined.ends_with(':') { " " } else { "; " });
        }
        joined.push_str(line);
    }
    joined
}

/// Gives every line of an event the event's priority prefix (journal streams).
struct JournalWriter;

impl<'a> MakeWriter<'a> for JournalWriter {
    type Writer = PrefixedLines;

    fn make_writer(&'a self) -> PrefixedLines {
        PrefixedLines::new(priority(Level::INFO))
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> PrefixedLines {
        PrefixedLines::new(priority(*meta.level()))
    }
}

/// Collects one event's text and writes it, each line prefixed, in one write when dropped.
struct PrefixedLines {
    priority: u8,
    buffer: Vec<u8>,
}

impl PrefixedLines {
    fn new(priority: u8) -> PrefixedLines {
        PrefixedLines {
            priority,
            buffer: Vec::with_capacity(256),
        }
    }

    fn prefixed(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.buffer.len() + 8);
        for line in self.buffer.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            out.extend_from_slice(format!("<{}>", self.priority).as_bytes());
            out.extend_from_slice(line);
            out.push(b'\n');
        }
        out
    }
}

impl Write for PrefixedLines {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.buffer.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for PrefixedLines {
    fn drop(&mut self) {
        if !self.buffer.is_empty() {
            let _ = std::io::stderr().lock().write_all(&self.prefixed());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_map_to_syslog_priorities() {
        assert_eq!(priority(Level::ERROR), 3);
        assert_eq!(priority(Level::WARN), 4);
        assert_eq!(priority(Level::INFO), 6);
        assert_eq!(priority(Level::DEBUG), 7);
        assert_eq!(priority(Level::TRACE), 7);
    }

    #[test]
    fn journal_stream_must_name_the_descriptors_file() {
        let file = tempfile::tempfile().unwrap();
        let other = tempfile::tempfile().unwrap();
        let meta = file.metadata().unwrap();
        let value = format!("{}:{}", meta.dev(), meta.ino());
        assert!(is_journal_stream(&value, file.as_fd()));
        assert!(is_journal_stream(&format!("{value}\n"), file.as_fd()));
        // Another file (stderr redirected away from the journal), or garbage.
        assert!(!is_journal_stream(&value, other.as_fd()));
        assert!(!is_journal_stream(
            &format!("{}:{}", meta.dev(), meta.ino() + 1),
            file.as_fd()
        ));
        for bad in ["", ":", "12", "a:b", "1:2:3", "-1:5"] {
            assert!(!is_journal_stream(bad, file.as_fd()), "{bad:?}");
        }
    }

    #[test]
    fn every_line_of_an_event_carries_its_priority() {
        let mut lines = PrefixedLines::new(3);
        lines.write_all(b"ERROR first\n  second\n\n").unwrap();
        assert_eq!(lines.prefixed(), b"<3>ERROR first\n<3>  second\n");
        lines.buffer.clear();
    }

    #[test]
    fn a_fatal_error_is_one_line_in_the_journal_and_under_json() {
        let message =
            "invalid configuration (2 problems):\nf.toml:1:2: a: bad\nf.toml:3:4: b: worse";
        let text = LogOutput {
            format: LogFormat::Text,
            journal: false,
        };
        assert_eq!(
            text.fatal_line("x", "x: ", message),
            format!("x: error: {message}\n")
        );
        let journal = LogOutput {
            journal: true,
            ..text
        };
        assert_eq!(
            journal.fatal_line("x", "", message),
            "<3>error: invalid configuration (2 problems): f.toml:1:2: a: bad; f.toml:3:4: b: worse\n"
        );
        for journal in [false, true] {
            let json = LogOutput {
                format: LogFormat::Json,
                journal,
            };
            let line = json.fatal_line("driftwatch_agent", "", message);
            assert_eq!(line.lines().count(), 1, "{line}");
            let body = line.trim_end().trim_start_matches("<3>");
            assert_eq!(line.starts_with("<3>"), journal, "{line}");
            let value: serde_json::Value = serde_json::from_str(body).unwrap();
            assert_eq!(value["level"], "ERROR");
            assert_eq!(value["target"], "driftwatch_agent");
            assert_eq!(value["timestamp"].is_string(), !journal, "{value}");
            assert!(
                value["fields"]["message"]
                    .as_str()
                    .unwrap()
                    .ends_with("a: bad; f.toml:3:4: b: worse")
            );
        }
    }

    #[test]
    fn config_refusal_is_found_in_a_chain() {
        #[derive(Debug)]
        struct Outer(ConfigRefused);
        impl fmt::Display for Outer {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("cannot start")
            }
        }
        impl std::error::Error for Outer {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        assert!(is_config_refused(&Outer(ConfigRefused("x".into()))));
        assert!(!is_config_refused(&std::io::Error::other("x")));
    }
}
