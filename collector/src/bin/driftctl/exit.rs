//! `driftctl`'s exit codes: what went wrong, for scripts. Sysexits where one fits (64, 65,
//! 69, 75, 76, 78); the collector's refusals are 8 and the last digit of the HTTP status.

use reqwest::StatusCode;

/// The table `--help` prints and README repeats.
pub const EXIT_CODES: &str = "\
Exit codes:
  0   success
  1   `audit verify`, `verify`: the audit log or document is altered, or disagrees with the log
  2   any other error (a local file, an answer driftctl cannot read)
  64  usage: a bad command line or argument value
  65  the collector refused the request as invalid (400, 413, 422, other 4xx)
  69  unreachable: connection refused or timed out, DNS or TLS failure
  75  try again later: too many requests or failed logins (429), unavailable (503)
  76  the collector failed (500 and other 5xx)
  78  configuration: the config file, URL, token (file) or CA file is missing, malformed
      or not private
  81  unauthorized (401): the token is wrong, revoked or expired
  83  forbidden (403): the token's role may not do this, or segregation of duties
  84  not found (404): no such window, drift item, token...
  89  conflict (409): already exists, or not in a state that allows this
Writing to a closed pipe (`driftctl drift list | head -3`) ends driftctl quietly by
SIGPIPE, as it does `cat` (a shell reports 141).";

/// Why a command failed, as far as scripts care.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    Usage,
    Invalid,
    Unreachable,
    TryLater,
    ServerFailed,
    Config,
    Unauthorized,
    Forbidden,
    NotFound,
    Conflict,
}

impl Failure {
    pub fn code(self) -> u8 {
        match self {
            Failure::Usage => 64,
            Failure::Invalid => 65,
            Failure::Unreachable => 69,
            Failure::TryLater => 75,
            Failure::ServerFailed => 76,
            Failure::Config => 78,
            Failure::Unauthorized => 81,
            Failure::Forbidden => 83,
            Failure::NotFound => 84,
            Failure::Conflict => 89,
        }
    }

    /// The failure an HTTP error status stands for.
    pub fn for_status(status: StatusCode) -> Failure {
        match status {
            StatusCode::UNAUTHORIZED => Failure::Unauthorized,
            StatusCode::FORBIDDEN => Failure::Forbidden,
            StatusCode::NOT_FOUND => Failure::NotFound,
            StatusCode::CONFLICT => Failure::Conflict,
            StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => Failure::TryLater,
            status if status.is_server_error() => Failure::ServerFailed,
            _ => Failure::Invalid,
        }
    }

    /// An error with this failure's exit code and `message`.
    pub fn error(self, message: impl Into<String>) -> anyhow::Error {
        anyhow::Error::new(Failed {
            failure: self,
            message: message.into(),
        })
    }
}

/// An error that carries its exit code through `anyhow` contexts.
#[derive(Debug)]
pub struct Failed {
    pub failure: Failure,
    message: String,
}

impl std::fmt::Display for Failed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failed {}

/// The exit code of a failed command: the innermost classified cause, else 2.
pub fn code_for(err: &anyhow::Error) -> u8 {
    err.chain()
        .filter_map(|cause| cause.downcast_ref::<Failed>())
        .last()
        .map_or(super::EXIT_ERROR, |failed| failed.failure.code())
}

/// Restores the default action of SIGPIPE, which Rust's runtime sets to "ignore": a write
/// to a closed pipe then ends the process quietly, as it does every Unix filter, instead
/// of `println!` panicking with a backtrace. One process-wide setting covers every write
/// to standard output or error, including clap's help and lines other subcommands add.
/// Sockets are unaffected: the standard library sends with MSG_NOSIGNAL, so a collector
/// that hangs up is still an error, not a signal.
#[allow(unsafe_code)]
pub fn die_quietly_on_closed_pipe() {
    // SAFETY: called first thing in `main`, before any thread exists; SIG_DFL installs no
    // handler code, so nothing runs in signal context.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn each_refusal_has_its_own_code() {
        let code = |status: u16| Failure::for_status(StatusCode::from_u16(status).unwrap()).code();
        let codes: Vec<u8> = [400, 401, 403, 404, 409, 413, 422, 405, 429, 500, 502, 503]
            .into_iter()
            .map(code)
            .collect();
        assert_eq!(codes, [65, 81, 83, 84, 89, 65, 65, 65, 75, 76, 76, 75]);
    }

    #[test]
    fn the_code_survives_context_and_unclassified_errors_are_2() {
        let err = Err::<(), _>(Failure::NotFound.error("GET /x: 404"))
            .context("while showing")
            .unwrap_err();
        assert_eq!(code_for(&err), 84);
        assert_eq!(format!("{err:#}"), "while showing: GET /x: 404");
        assert_eq!(code_for(&anyhow::anyhow!("disk on fire")), 2);
        // The innermost classified cause decides.
        let err = Err::<(), _>(Failure::Unreachable.error("refused"))
            .map_err(|e| Failure::Config.error(format!("{e:#}")))
            .unwrap_err();
        assert_eq!(code_for(&err), 78);
    }

    #[test]
    fn every_code_is_in_the_table() {
        use Failure::*;
        for failure in [
            Usage,
            Invalid,
            Unreachable,
            TryLater,
            ServerFailed,
            Config,
            Unauthorized,
            Forbidden,
            NotFound,
            Conflict,
        ] {
            let line = format!("\n  {:<3} ", failure.code());
            assert!(EXIT_CODES.contains(&line), "{failure:?} ({line:?})");
        }
    }
}
