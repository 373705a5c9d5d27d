//! Conversions between SQLite values and the store's types.

use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ValueRef};
use serde::Serialize;
use serde::de::DeserializeOwned;
use uuid::Uuid;

/// A UUID stored as its hyphenated text.
pub struct Id(pub Uuid);

impl FromSql for Id {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        let text = value.as_str()?;
        Uuid::try_parse(text)
            .map(Id)
            .map_err(|err| FromSqlError::Other(Box::new(err)))
    }
}

pub fn id(uuid: Uuid) -> String {
    uuid.hyphenated().to_string()
}

pub fn opt_id(uuid: Option<Uuid>) -> Option<String> {
    uuid.map(id)
}

/// A value stored as JSON text.
pub struct Json<T>(pub T);

impl<T: DeserializeOwned> FromSql for Json<T> {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        let text = value.as_str()?;
        serde_json::from_str(text)
            .map(Json)
            .map_err(|err| FromSqlError::Other(Box::new(err)))
    }
}

pub fn json<T: Serialize + ?Sized>(value: &T) -> String {
    serde_json::to_string(value).expect("store values always serialize")
}

/// A 32-byte digest stored as a blob.
pub struct Digest(pub [u8; 32]);

impl FromSql for Digest {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        let bytes = value.as_blob()?;
        <[u8; 32]>::try_from(bytes)
            .map(Digest)
            .map_err(|_| FromSqlError::InvalidBlobSize {
                expected_size: 32,
                blob_size: bytes.len(),
            })
    }
}

/// An enum stored by its name (`FromStr`).
pub struct Named<T>(pub T);

impl<T: std::str::FromStr<Err = String>> FromSql for Named<T> {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        value
            .as_str()?
            .parse()
            .map(Named)
            .map_err(|err: String| FromSqlError::Other(err.into()))
    }
}

/// Sequence numbers are `u64` on the wire and `i64` in SQLite; beyond `i64::MAX` is refused
/// at the API.
pub fn seq(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}
