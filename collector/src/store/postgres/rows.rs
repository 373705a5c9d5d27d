//! Conversions between PostgreSQL values and the store's types.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::store::{Result, StoreError};

/// A value as `jsonb`.
pub fn json<T: Serialize + ?Sized>(value: &T) -> serde_json::Value {
    serde_json::to_value(value).expect("store values always serialize")
}

/// A `jsonb` value as the store's type.
pub fn from_json<T: DeserializeOwned>(value: serde_json::Value) -> Result<T> {
    serde_json::from_value(value).map_err(StoreError::other)
}

pub fn opt_from_json<T: DeserializeOwned>(value: Option<serde_json::Value>) -> Result<Option<T>> {
    value.map(from_json).transpose()
}

/// A 32-byte digest from `bytea`.
pub fn digest(bytes: &[u8]) -> Result<[u8; 32]> {
    <[u8; 32]>::try_from(bytes).map_err(|_| {
        StoreError::other(format!("a stored digest has {} bytes, not 32", bytes.len()))
    })
}

/// An enum stored by its name (`FromStr`).
pub fn named<T: std::str::FromStr<Err = String>>(text: &str) -> Result<T> {
    text.parse().map_err(StoreError::other)
}

/// Sequence numbers are `u64` on the wire and `bigint` here; beyond `i64::MAX` is refused
/// at the API.
pub fn seq(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

pub fn unseq(value: i64) -> u64 {
    value.max(0) as u64
}
