//! Wall-clock helpers (the agent's clock; the collector corrects for skew later).

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

pub fn now_rfc3339() -> String {
    OffsetDateTime::now_utc()
        .format(&Rfc3339)
        .expect("UTC timestamps always format as RFC 3339")
}

pub fn parse_rfc3339(text: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(text, &Rfc3339).ok()
}

/// Formats nanoseconds since the epoch as RFC 3339 (for file times).
pub fn format_ns(ns: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ns))
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| format!("{ns}ns"))
}

/// Who is running this command, for the baseline history: the login user
/// behind sudo where known, and the effective uid.
pub fn actor() -> String {
    let uid = std::fs::metadata("/proc/self").map(|m| std::os::unix::fs::MetadataExt::uid(&m));
    let user = std::env::var("SUDO_USER")
        .or_else(|_| std::env::var("USER"))
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown".into());
    match uid {
        Ok(uid) => format!("{user} (uid {uid})"),
        Err(_) => user,
    }
}
