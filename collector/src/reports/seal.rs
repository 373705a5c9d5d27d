//! Evidence documents carry an Ed25519 signature over their exact bytes, checked offline
//! with the collector's public key alone (`driftctl verify FILE --public-key KEY`). Pure.
//!
//! - JSON (an export, a bundle): the signed document is the object without its last
//!   member, `"signature": {"algorithm", "key_id", "value"}`, which is spliced in before
//!   the closing brace, so the file stays one JSON object.
//! - Text (CSV, Markdown, HTML): a last line `# driftwatch-signature ed25519 key_id=…
//!   value=…` (CSV) or `<!-- driftwatch-signature ed25519 key_id=… value=… -->` (Markdown,
//!   HTML) signs every byte before it.

use crate::audit::{AuditKey, PublicKey, Seal};

const JSON_MEMBER: &str = ",\"signature\":{";
const TEXT_MARKER: &str = "driftwatch-signature ed25519 ";

/// How a document carries its signature.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DocKind {
    Json,
    /// A `#` comment line.
    Csv,
    /// An HTML comment (Markdown, HTML).
    Markup,
}

/// `body` with its signature.
pub fn seal(key: &AuditKey, body: String, kind: DocKind) -> String {
    if kind == DocKind::Json {
        let Some(stripped) = body.trim_end().strip_suffix('}') else {
            return body;
        };
        let seal = key.seal(body.as_bytes());
        format!(
            "{stripped}{JSON_MEMBER}\"algorithm\":\"{}\",\"key_id\":\"{}\",\"value\":\"{}\"}}}}",
            seal.algorithm, seal.key_id, seal.value
        )
    } else {
        let mut body = body;
        if !body.is_empty() && !body.ends_with('\n') {
            body.push('\n');
        }
        let seal = key.seal(body.as_bytes());
        let fields = format!("{TEXT_MARKER}key_id={} value={}", seal.key_id, seal.value);
        if kind == DocKind::Csv {
            format!("{body}# {fields}\n")
        } else {
            format!("{body}<!-- {fields} -->\n")
        }
    }
}

/// The signed bytes of `document` and its seal.
pub fn open(document: &str) -> Result<(String, Seal), String> {
    let trimmed = document.trim_end();
    if trimmed.starts_with('{') {
        let at = trimmed.rfind(JSON_MEMBER).ok_or(
            "the document carries no signature (no `signature` member): it was not produced by \
             a collector with a signing key, or the signature was removed",
        )?;
        let member = &trimmed[at + 1..trimmed.len() - 1];
        let member = member
            .strip_prefix("\"signature\":")
            .ok_or("malformed signature member")?;
        let seal: Seal = serde_json::from_str(member)
            .map_err(|err| format!("the signature member is malformed: {err}"))?;
        return Ok((format!("{}}}", &trimmed[..at]), seal));
    }
    let at = document.rfind(TEXT_MARKER).ok_or(
        "the document carries no signature line: it was not produced by a collector with a \
         signing key, or the signature was removed",
    )?;
    let line_start = document[..at].rfind('\n').map_or(0, |n| n + 1);
    let fields: Vec<&str> = document[at + TEXT_MARKER.len()..]
        .split_whitespace()
        .collect();
    let value = |name: &str| {
        fields
            .iter()
            .find_map(|f| f.strip_prefix(name))
            .map(str::to_owned)
            .ok_or_else(|| format!("the signature line lacks `{name}`"))
    };
    let seal = Seal {
        algorithm: "ed25519".into(),
        key_id: value("key_id=")?,
        value: value("value=")?,
    };
    Ok((document[..line_start].to_owned(), seal))
}

/// Checks `document` against `key`.
pub fn verify(document: &str, key: &PublicKey) -> Result<Seal, String> {
    let (signed, seal) = open(document)?;
    key.verify_seal(signed.as_bytes(), &seal)?;
    Ok(seal)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_format_verifies_and_a_one_byte_edit_fails() {
        let key = AuditKey::from_seed([7; 32]);
        for (body, kind) in [
            (
                "{\"content\":{\"a\":1},\"content_sha256\":\"ab\"}",
                DocKind::Json,
            ),
            (
                "# exported\r\n\r\nevent_id,host\r\nx,web-1\r\n",
                DocKind::Csv,
            ),
            (
                "# Change window CHG-1\n\nApproved by: alice\n",
                DocKind::Markup,
            ),
            ("<!DOCTYPE html><html></html>", DocKind::Markup),
        ] {
            let json = kind == DocKind::Json;
            let sealed = seal(&key, body.to_owned(), kind);
            assert_eq!(
                verify(&sealed, key.public()).unwrap().key_id,
                key.public().key_id
            );
            if json {
                let value: serde_json::Value = serde_json::from_str(&sealed).unwrap();
                assert_eq!(value["signature"]["algorithm"], "ed25519");
            }
            // Any one byte of the signed part changed: refused.
            let mut bytes = sealed.clone().into_bytes();
            bytes[3] ^= 0x01;
            let edited = String::from_utf8(bytes).unwrap();
            assert_ne!(edited, sealed);
            let err = verify(&edited, key.public()).unwrap_err();
            assert!(err.contains("altered"), "{err}");
            let other = AuditKey::from_seed([8; 32]);
            assert!(
                verify(&sealed, other.public())
                    .unwrap_err()
                    .contains("not by the given key")
            );
            assert!(
                verify(body, key.public())
                    .unwrap_err()
                    .contains("no signature")
            );
        }
    }
}
