//! Time as the collector sees it: milliseconds since the Unix epoch (UTC), behind a
//! [`Clock`] so tests can move it by hand.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use jiff::Timestamp;

/// Milliseconds since the Unix epoch, UTC.
pub type Millis = i64;

pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Millis;
}

/// The system's real-time clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Millis {
        Timestamp::now().as_millisecond()
    }
}

/// A clock that only moves when told (tests).
#[derive(Clone, Debug, Default)]
pub struct ManualClock(Arc<AtomicI64>);

impl ManualClock {
    pub fn at(millis: Millis) -> Self {
        ManualClock(Arc::new(AtomicI64::new(millis)))
    }

    pub fn set(&self, millis: Millis) {
        self.0.store(millis, Ordering::SeqCst);
    }

    pub fn advance_secs(&self, secs: i64) {
        self.0.fetch_add(secs * 1000, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Millis {
        self.0.load(Ordering::SeqCst)
    }
}

/// RFC 3339 in UTC (`2026-11-23T01:00:00Z`, milliseconds shown only when not zero).
pub fn rfc3339(millis: Millis) -> String {
    Timestamp::from_millisecond(millis)
        .map(|t| t.to_string())
        .unwrap_or_else(|_| format!("@{millis}ms"))
}

/// An agent timestamp from the wire, in milliseconds (saturating far outside ±292 million years).
pub fn from_offset(time: time::OffsetDateTime) -> Millis {
    let millis = time.unix_timestamp_nanos() / 1_000_000;
    millis.clamp(i64::MIN as i128, i64::MAX as i128) as i64
}

/// Parses an RFC 3339 instant (`2026-11-23T02:00:00+01:00`, `...Z`).
pub fn parse_instant(text: &str) -> Result<Millis, String> {
    text.parse::<Timestamp>()
        .map(Timestamp::as_millisecond)
        .map_err(|err| format!("`{text}` is not an RFC 3339 time with an offset: {err}"))
}

/// Serde for a [`Millis`] as RFC 3339 text (`#[serde(with = "crate::clock::as_rfc3339")]`),
/// for types people read and the API shows.
pub mod as_rfc3339 {
    use super::{Millis, parse_instant, rfc3339};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(at: &Millis, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&rfc3339(*at))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Millis, D::Error> {
        let text = String::deserialize(deserializer)?;
        parse_instant(&text).map_err(serde::de::Error::custom)
    }
}

/// [`as_rfc3339`] for an optional instant (`null` when absent).
pub mod as_opt_rfc3339 {
    use super::{Millis, parse_instant, rfc3339};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(at: &Option<Millis>, serializer: S) -> Result<S::Ok, S::Error> {
        match at {
            Some(at) => serializer.serialize_some(&rfc3339(*at)),
            None => serializer.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Millis>, D::Error> {
        Option::<String>::deserialize(deserializer)?
            .map(|text| parse_instant(&text).map_err(serde::de::Error::custom))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_and_parses_utc() {
        let t = parse_instant("2026-11-23T02:00:00+01:00").unwrap();
        assert_eq!(rfc3339(t), "2026-11-23T01:00:00Z");
        assert!(parse_instant("2026-11-23T02:00").is_err());
    }

    #[test]
    fn converts_wire_times() {
        let t = time::OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
        assert_eq!(from_offset(t), 1_700_000_000_000);
    }
}
