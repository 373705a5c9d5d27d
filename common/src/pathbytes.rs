//! Byte-exact paths.
//!
//! Linux file names are bytes, not text: a name may be invalid UTF-8 or hold
//! newlines and terminal escape sequences. driftwatch keeps every path as its
//! exact bytes and shows it through one reversible escaping:
//!
//! - printable UTF-8 (other than `\`) is shown as is;
//! - `\` is shown as `\\`;
//! - every other byte (invalid UTF-8, control characters, DEL, and the UTF-8 bytes of
//!   the characters [`is_unsafe_char`] names) is shown as `\xNN`.
//!
//! So the text is safe to print on a terminal and [`unescape`] gives back the
//! original bytes exactly.
//!
//! [`escape_text`] (and [`Shown`], its `Display` form) is the same escaping for text that
//! already is text, such as a subject or an actor a host sent, on its way to a terminal,
//! a table or a log line: unsafe characters become `\xNN`, everything else (a backslash
//! too) stays, so a subject the agent already escaped reads the same.

use std::ffi::OsStr;
use std::fmt;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Characters that must never reach a terminal, a table or a log line raw: control
/// characters (C0, DEL, C1: cursor moves, screen clears, window titles, line breaks) and
/// the format characters that reorder or hide text (bidi marks, embeddings, overrides and
/// isolates; zero-width characters; line and paragraph separators).
pub fn is_unsafe_char(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061C}'
                | '\u{180E}'
                | '\u{200B}'..='\u{200F}'
                | '\u{2028}'..='\u{202E}'
                | '\u{2060}'..='\u{206F}'
                | '\u{FEFF}'
                | '\u{FFF9}'..='\u{FFFB}'
        )
}

/// Escapes path bytes for display and JSON (see the module docs).
pub fn escape(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for ch in chunk.valid().chars() {
            match ch {
                '\\' => out.push_str("\\\\"),
                c => push_char(&mut out, c),
            }
        }
        for &b in chunk.invalid() {
            push_hex_escape(&mut out, b);
        }
    }
    out
}

/// `text` safe for a terminal, a table cell or a log line: each unsafe character
/// ([`is_unsafe_char`]) as the `\xNN` escapes of its UTF-8 bytes, everything else as is
/// (see the module docs). Not reversible on its own (a literal `\x1b` reads the same);
/// the JSON form keeps the exact text.
pub fn escape_text(text: &str) -> String {
    if !text.chars().any(is_unsafe_char) {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        push_char(&mut out, c);
    }
    out
}

/// Shows a string through [`escape_text`]: `tracing::info!(subject = %Shown(&s))`.
#[derive(Clone, Copy, Debug)]
pub struct Shown<'a>(pub &'a str);

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.chars().any(is_unsafe_char) {
            f.write_str(&escape_text(self.0))
        } else {
            f.write_str(self.0)
        }
    }
}

/// One character: as is, or the `\xNN` escapes of its UTF-8 bytes when unsafe.
pub fn push_char(out: &mut String, c: char) {
    if is_unsafe_char(c) {
        let mut buf = [0u8; 4];
        for b in c.encode_utf8(&mut buf).bytes() {
            push_hex_escape(out, b);
        }
    } else {
        out.push(c);
    }
}

fn push_hex_escape(out: &mut String, byte: u8) {
    use fmt::Write;
    let _ = write!(out, "\\x{byte:02x}");
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum UnescapeError {
    #[error("backslash at end of path")]
    TrailingBackslash,
    #[error("invalid escape `\\{0}` (only `\\\\` and `\\xNN` are allowed)")]
    InvalidEscape(char),
    #[error("invalid hex digits in `\\x` escape")]
    InvalidHex,
}

/// Reverses [`escape`].
pub fn unescape(text: &str) -> Result<Vec<u8>, UnescapeError> {
    let mut out = Vec::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(ch) = chars.next() {
        if ch != '\\' {
            let mut buf = [0u8; 4];
            out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
            continue;
        }
        match chars.next() {
            None => return Err(UnescapeError::TrailingBackslash),
            Some('\\') => out.push(b'\\'),
            Some('x') => {
                let hex: String = chars.by_ref().take(2).collect();
                let byte = (hex.len() == 2)
                    .then(|| u8::from_str_radix(&hex, 16).ok())
                    .flatten()
                    .ok_or(UnescapeError::InvalidHex)?;
                out.push(byte);
            }
            Some(other) => return Err(UnescapeError::InvalidEscape(other)),
        }
    }
    Ok(out)
}

/// A path (or symlink target) kept as its exact bytes.
///
/// Serialized as raw bytes in binary formats and as escaped text in JSON.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct PathBytes(pub Vec<u8>);

impl PathBytes {
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    pub fn as_path(&self) -> &Path {
        Path::new(OsStr::from_bytes(&self.0))
    }

    pub fn into_path_buf(self) -> PathBuf {
        PathBuf::from(std::ffi::OsString::from_vec(self.0))
    }
}

use std::os::unix::ffi::OsStringExt;

impl From<&Path> for PathBytes {
    fn from(path: &Path) -> Self {
        PathBytes(path.as_os_str().as_bytes().to_vec())
    }
}

impl From<PathBuf> for PathBytes {
    fn from(path: PathBuf) -> Self {
        PathBytes(path.into_os_string().into_vec())
    }
}

impl fmt::Display for PathBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&escape(&self.0))
    }
}

impl fmt::Debug for PathBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", escape(&self.0))
    }
}

impl Serialize for PathBytes {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.serialize_str(&escape(&self.0))
        } else {
            serializer.serialize_bytes(&self.0)
        }
    }
}

impl<'de> Deserialize<'de> for PathBytes {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        if deserializer.is_human_readable() {
            let text = String::deserialize(deserializer)?;
            unescape(&text)
                .map(PathBytes)
                .map_err(serde::de::Error::custom)
        } else {
            let bytes: serde_bytes_compat::ByteBuf = Deserialize::deserialize(deserializer)?;
            Ok(PathBytes(bytes.0))
        }
    }
}

/// Accepts either a byte string or a sequence of bytes (what serde formats
/// produce for `serialize_bytes`), without pulling in the serde_bytes crate.
mod serde_bytes_compat {
    use serde::de::{Deserialize, Deserializer, SeqAccess, Visitor};
    use std::fmt;

    pub struct ByteBuf(pub Vec<u8>);

    impl<'de> Deserialize<'de> for ByteBuf {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            struct BytesVisitor;
            impl<'de> Visitor<'de> for BytesVisitor {
                type Value = ByteBuf;
                fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                    f.write_str("bytes")
                }
                fn visit_bytes<E>(self, v: &[u8]) -> Result<ByteBuf, E> {
                    Ok(ByteBuf(v.to_vec()))
                }
                fn visit_byte_buf<E>(self, v: Vec<u8>) -> Result<ByteBuf, E> {
                    Ok(ByteBuf(v))
                }
                fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<ByteBuf, A::Error> {
                    let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0));
                    while let Some(b) = seq.next_element()? {
                        out.push(b);
                    }
                    Ok(ByteBuf(out))
                }
            }
            deserializer.deserialize_byte_buf(BytesVisitor)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn plain_paths_are_unchanged() {
        assert_eq!(escape(b"/etc/ssh/sshd_config"), "/etc/ssh/sshd_config");
        assert_eq!(escape("/srv/café".as_bytes()), "/srv/café");
    }

    #[test]
    fn hostile_bytes_are_escaped() {
        assert_eq!(escape(b"/tmp/a\nb"), "/tmp/a\\x0ab");
        assert_eq!(escape(b"/tmp/\x1b[31mred"), "/tmp/\\x1b[31mred");
        assert_eq!(escape(b"/tmp/\xff\xfe"), "/tmp/\\xff\\xfe");
        assert_eq!(escape(b"C:\\x41"), "C:\\\\x41");
        assert_eq!(
            escape("/tmp/gpj.\u{202e}exe".as_bytes()),
            "/tmp/gpj.\\xe2\\x80\\xaeexe"
        );
        assert_eq!(escape("/tmp/\u{9b}x".as_bytes()), "/tmp/\\xc2\\x9bx");
    }

    #[test]
    fn text_is_escaped_for_terminals_and_keeps_backslashes() {
        let hostile = "a\x1b[2J\x1b]0;title\x07\rb\nforged\u{202e}c\u{2066}d\u{200b}e\u{7f}";
        let shown = escape_text(hostile);
        assert_eq!(
            shown,
            "a\\x1b[2J\\x1b]0;title\\x07\\x0db\\x0aforged\\xe2\\x80\\xaec\\xe2\\x81\\xa6d\\xe2\\x80\\x8be\\x7f"
        );
        assert!(!shown.chars().any(is_unsafe_char));
        assert_eq!(Shown(hostile).to_string(), shown);
        // Already escaped by the agent: shown the same, not doubled.
        assert_eq!(escape_text("file:/tmp/a\\x0ab"), "file:/tmp/a\\x0ab");
        assert_eq!(escape_text("café"), "café");
    }

    #[test]
    fn bad_escapes_are_rejected() {
        assert_eq!(unescape("a\\"), Err(UnescapeError::TrailingBackslash));
        assert_eq!(unescape("a\\n"), Err(UnescapeError::InvalidEscape('n')));
        assert_eq!(unescape("a\\xg1"), Err(UnescapeError::InvalidHex));
        assert_eq!(unescape("a\\x1"), Err(UnescapeError::InvalidHex));
    }

    #[test]
    fn json_uses_escaped_text() {
        let path = PathBytes(b"/srv/\xffname".to_vec());
        let json = serde_json::to_string(&path).unwrap();
        assert_eq!(json, r#""/srv/\\xffname""#);
        assert_eq!(serde_json::from_str::<PathBytes>(&json).unwrap(), path);
    }

    proptest! {
        #[test]
        fn escape_round_trips(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            prop_assert_eq!(unescape(&escape(&bytes)).unwrap(), bytes);
        }

        #[test]
        fn escaped_text_has_no_control_characters(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            prop_assert!(!escape(&bytes).chars().any(is_unsafe_char));
        }

        #[test]
        fn escaped_text_has_no_unsafe_characters(text in "\\PC*|[\\x00-\\x{9f}\\u{202a}-\\u{202e}\\u{2066}-\\u{2069}a]{0,16}") {
            prop_assert!(!escape_text(&text).chars().any(is_unsafe_char));
        }
    }
}
