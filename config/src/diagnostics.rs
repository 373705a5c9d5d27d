//! Collecting configuration errors with their place, shared by the agent's
//! and the collector's configuration: parse TOML (every syntax error, or the
//! first type error, located), then let the semantic checks add theirs.

use std::ops::Range;
use std::path::Path;

use serde::de::DeserializeOwned;
use toml::Spanned;
use toml::de::DeTable;

use crate::error::{ConfigError, ConfigErrors};
use crate::span::{Locator, key_at};

/// The errors found so far, and how to place them.
pub(crate) struct Diagnostics<'a> {
    file: &'a Path,
    locator: Locator<'a>,
    errors: Vec<ConfigError>,
}

/// Parses `text` into `T`. Syntax errors are all reported; serde stops at the
/// first type error, so that one comes alone. On success the diagnostics are
/// returned for the semantic checks to fill.
pub(crate) fn parse<'a, T: DeserializeOwned>(
    text: &'a str,
    source: &'a Path,
) -> Result<(T, Diagnostics<'a>), ConfigErrors> {
    let mut diag = Diagnostics {
        file: source,
        locator: Locator::new(text),
        errors: Vec::new(),
    };
    let (table, syntax_errors) = DeTable::parse_recoverable(text);
    if !syntax_errors.is_empty() {
        for err in &syntax_errors {
            let key = err.span().and_then(|span| key_at(table.get_ref(), &span));
            diag.toml_error(err, key, "syntax error: ");
            // The parser does not say which key is duplicated; its span is that key.
            if err.message() == "duplicate key"
                && let Some(name) = err.span().and_then(|span| text.get(span))
                && let Some(last) = diag.errors.last_mut()
            {
                last.message = format!("syntax error: duplicate key `{name}`");
            }
        }
        return Err(diag.finish());
    }
    match T::deserialize(toml::de::Deserializer::from(table)) {
        Ok(raw) => Ok((raw, diag)),
        Err(err) => {
            // The table was consumed; parse again (it parsed once, so it parses again) to name the key.
            let key = match (DeTable::parse(text), err.span()) {
                (Ok(table), Some(span)) => key_at(table.get_ref(), &span),
                _ => None,
            };
            diag.toml_error(&err, key, "");
            Err(diag.finish())
        }
    }
}

impl Diagnostics<'_> {
    /// An error at `span`, for `key`.
    pub(crate) fn at(
        &mut self,
        span: Range<usize>,
        key: impl Into<String>,
        message: impl Into<String>,
    ) {
        let (line, column) = self.locator.position(span.start);
        self.errors.push(ConfigError {
            file: self.file.to_path_buf(),
            line: Some(line),
            column: Some(column),
            key: Some(key.into()),
            message: message.into(),
        });
    }

    /// The 1-based line of a byte offset (to refer to another place in a message).
    pub(crate) fn line_of(&self, offset: usize) -> usize {
        self.locator.position(offset).0
    }

    /// An error with nothing in the file to point at (e.g. a missing table).
    pub(crate) fn unplaced(&mut self, key: &str, message: &str) {
        self.errors.push(ConfigError {
            file: self.file.to_path_buf(),
            line: None,
            column: None,
            key: Some(key.to_owned()),
            message: message.to_owned(),
        });
    }

    fn toml_error(&mut self, err: &toml::de::Error, key: Option<String>, prefix: &str) {
        let position = err.span().map(|span| self.locator.position(span.start));
        self.errors.push(ConfigError {
            file: self.file.to_path_buf(),
            line: position.map(|(line, _)| line),
            column: position.map(|(_, column)| column),
            key,
            message: format!("{prefix}{}", plain_type_names(err.message())),
        });
    }

    /// The value as `u64` when it lies in `min..=max`; otherwise reports it,
    /// with `note` (if any) saying what the number means.
    pub(crate) fn between(
        &mut self,
        value: &Spanned<i64>,
        key: &str,
        min: u64,
        max: u64,
        note: &str,
    ) -> Option<u64> {
        match u64::try_from(*value.get_ref()) {
            Ok(v) if (min..=max).contains(&v) => Some(v),
            _ => {
                let note = if note.is_empty() {
                    String::new()
                } else {
                    format!(" ({note})")
                };
                self.at(
                    value.span(),
                    key,
                    format!(
                        "must be between {min} and {max}{note}, got {}",
                        value.get_ref()
                    ),
                );
                None
            }
        }
    }

    /// [`Self::between`] for an optional key: `default` when unset or invalid.
    pub(crate) fn between_or(
        &mut self,
        value: Option<&Spanned<i64>>,
        key: &str,
        min: u64,
        max: u64,
        default: u64,
        note: &str,
    ) -> u64 {
        value.map_or(default, |v| {
            self.between(v, key, min, max, note).unwrap_or(default)
        })
    }

    /// `value` if no error was collected, else every error.
    pub(crate) fn result<T>(self, value: T) -> Result<T, ConfigErrors> {
        if self.errors.is_empty() {
            Ok(value)
        } else {
            Err(self.finish())
        }
    }

    /// All errors in file order; those without a place come last.
    fn finish(mut self) -> ConfigErrors {
        self.errors
            .sort_by_key(|e| (e.line.is_none(), e.line, e.column));
        ConfigErrors(self.errors)
    }
}

/// serde names Rust types ("expected i64", "expected struct ScanToml"); say it in TOML terms.
fn plain_type_names(message: &str) -> String {
    let mut message = message
        .replace("expected i64", "expected an integer")
        .replace("expected a sequence", "expected an array")
        .replace("expected a map", "expected a table");
    if let Some(at) = message.find("expected struct ") {
        let rest = &message[at + "expected struct ".len()..];
        let end = rest
            .find(|c: char| !(c.is_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        message = format!("{}expected a table{}", &message[..at], &rest[end..]);
    }
    message
}
