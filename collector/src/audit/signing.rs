//! The audit trail's anchor outside its database: one Ed25519 key (kept in a file or a
//! systemd credential, never in `collector.db`) signs every audit entry's hash, signed
//! checkpoints of the head, and evidence documents. Pure: the key's bytes come from
//! [`super::key_file`].
//!
//! Every signed message starts with its own domain string, so a signature of one kind can
//! never be replayed as another (an entry hash as a checkpoint, a document as an entry).

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::identity::hex;

const ENTRY_DOMAIN: &[u8] = b"driftwatch audit entry v1\0";
const CHECKPOINT_DOMAIN: &[u8] = b"driftwatch audit checkpoint v1\0";
const DOCUMENT_DOMAIN: &[u8] = b"driftwatch evidence v1\0";

/// The alert kind (and JSON `kind`) of a checkpoint.
pub const CHECKPOINT_KIND: &str = "audit_checkpoint";

/// The collector's signing key.
pub struct AuditKey {
    signing: SigningKey,
    public: PublicKey,
}

impl std::fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AuditKey({})", self.public.key_id)
    }
}

impl AuditKey {
    pub fn from_seed(seed: [u8; 32]) -> AuditKey {
        let signing = SigningKey::from_bytes(&seed);
        let public = PublicKey::new(signing.verifying_key());
        AuditKey { signing, public }
    }

    pub fn public(&self) -> &PublicKey {
        &self.public
    }

    /// The key that seals event decisions (`super::decisions`), derived one-way from the
    /// signing key's secret: whoever lacks the signing key cannot make it.
    pub fn decision_key(&self) -> [u8; 32] {
        blake3::derive_key(super::decisions::KEY_CONTEXT, &self.signing.to_bytes())
    }

    /// The signature of an audit entry's hash.
    pub fn sign_entry(&self, hash: &[u8; 32]) -> Vec<u8> {
        self.sign(&[ENTRY_DOMAIN, hash]).to_bytes().to_vec()
    }

    /// A signed statement that the log held `entries` entries, the last with `head_hash`.
    pub fn checkpoint(&self, entries: u64, head_hash: [u8; 32], at: String) -> Checkpoint {
        let mut checkpoint = Checkpoint {
            kind: CHECKPOINT_KIND.into(),
            entries,
            head_hash: hex(&head_hash),
            at,
            key_id: self.public.key_id.clone(),
            signature: String::new(),
            summary: String::new(),
        };
        let message = checkpoint_message(entries, &head_hash, &checkpoint.at);
        checkpoint.signature = hex(&self.sign(&[&message]).to_bytes());
        checkpoint.summary = format!(
            "audit checkpoint: entries={} head={} at={} key_id={} signature={}",
            checkpoint.entries,
            checkpoint.head_hash,
            checkpoint.at,
            checkpoint.key_id,
            checkpoint.signature
        );
        checkpoint
    }

    /// The signature of a document's exact bytes.
    pub fn seal(&self, document: &[u8]) -> Seal {
        Seal {
            algorithm: "ed25519".into(),
            key_id: self.public.key_id.clone(),
            value: hex(&self.sign(&[DOCUMENT_DOMAIN, document]).to_bytes()),
        }
    }

    fn sign(&self, parts: &[&[u8]]) -> Signature {
        self.signing.sign(&parts.concat())
    }
}

/// The key that checks what [`AuditKey`] signed; all a verifier needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicKey {
    verifying: VerifyingKey,
    /// The first 8 bytes of SHA-256 of the key, in hex: names the key in checkpoints and seals.
    pub key_id: String,
}

/// `GET /api/v1/audit/public-key` and `audit public-key --json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicKeyView {
    pub algorithm: String,
    /// 32 bytes, hex.
    pub public_key: String,
    pub key_id: String,
}

impl PublicKey {
    fn new(verifying: VerifyingKey) -> PublicKey {
        let digest = Sha256::digest(verifying.as_bytes());
        PublicKey {
            verifying,
            key_id: hex(&digest[..8]),
        }
    }

    /// 64 hex digits, or the JSON of [`PublicKeyView`] (what the API and `--json` print).
    pub fn parse(text: &str) -> Result<PublicKey, String> {
        let text = text.trim();
        let hex_text = if text.starts_with('{') {
            serde_json::from_str::<PublicKeyView>(text)
                .map_err(|err| format!("not a public key: {err}"))?
                .public_key
        } else {
            text.strip_prefix("ed25519:").unwrap_or(text).to_owned()
        };
        let bytes: [u8; 32] = unhex(&hex_text)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| {
                "not a public key: expected 64 hex digits (as `driftwatch-collector audit \
                 public-key` prints)"
                    .to_owned()
            })?;
        VerifyingKey::from_bytes(&bytes)
            .map(PublicKey::new)
            .map_err(|_| "not a valid Ed25519 public key".to_owned())
    }

    pub fn hex(&self) -> String {
        hex(self.verifying.as_bytes())
    }

    pub fn view(&self) -> PublicKeyView {
        PublicKeyView {
            algorithm: "ed25519".into(),
            public_key: self.hex(),
            key_id: self.key_id.clone(),
        }
    }

    pub fn verify_entry(&self, hash: &[u8; 32], signature: &[u8]) -> bool {
        self.verify(&[ENTRY_DOMAIN, hash], signature)
    }

    /// Whether `checkpoint` was signed by this key (its id and signature).
    pub fn verify_checkpoint(&self, checkpoint: &Checkpoint) -> Result<(), String> {
        if checkpoint.key_id != self.key_id {
            return Err(format!(
                "signed by key {}, not by this collector's key {}",
                checkpoint.key_id, self.key_id
            ));
        }
        let head = checkpoint
            .head()
            .ok_or("its head_hash is not 64 hex digits")?;
        let message = checkpoint_message(checkpoint.entries, &head, &checkpoint.at);
        let signature = unhex(&checkpoint.signature).unwrap_or_default();
        if self.verify(&[&message], &signature) {
            Ok(())
        } else {
            Err("its signature does not verify: forged or altered".into())
        }
    }

    /// Whether `seal` signs `document` with this key.
    pub fn verify_seal(&self, document: &[u8], seal: &Seal) -> Result<(), String> {
        if seal.key_id != self.key_id {
            return Err(format!(
                "signed by key {}, not by the given key {}",
                seal.key_id, self.key_id
            ));
        }
        let signature = unhex(&seal.value).unwrap_or_default();
        if self.verify(&[DOCUMENT_DOMAIN, document], &signature) {
            Ok(())
        } else {
            Err("the signature does not match the document: it was altered after signing".into())
        }
    }

    fn verify(&self, parts: &[&[u8]], signature: &[u8]) -> bool {
        let Ok(signature) = <[u8; 64]>::try_from(signature) else {
            return false;
        };
        self.verifying
            .verify(&parts.concat(), &Signature::from_bytes(&signature))
            .is_ok()
    }
}

/// A signed statement of the audit log's length and head, as sent to the alert sinks (the
/// JSON-lines sink writes exactly this object), kept in the database and returned by the API.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Always [`CHECKPOINT_KIND`].
    pub kind: String,
    /// How many entries the log held: the head is entry `entries`.
    pub entries: u64,
    /// The head entry's hash, hex (all zeros for an empty log).
    pub head_hash: String,
    /// When it was signed (RFC 3339), as signed.
    pub at: String,
    pub key_id: String,
    /// Ed25519 over the domain, `entries`, the head and `at`; hex.
    pub signature: String,
    /// Every field in one line, for syslog and people (not signed; not read back).
    #[serde(default)]
    pub summary: String,
}

impl Checkpoint {
    pub fn head(&self) -> Option<[u8; 32]> {
        unhex(&self.head_hash).and_then(|b| b.try_into().ok())
    }
}

fn checkpoint_message(entries: u64, head: &[u8; 32], at: &str) -> Vec<u8> {
    let mut message = CHECKPOINT_DOMAIN.to_vec();
    message.extend_from_slice(&entries.to_be_bytes());
    message.extend_from_slice(head);
    message.extend_from_slice(&(at.len() as u64).to_be_bytes());
    message.extend_from_slice(at.as_bytes());
    message
}

/// The checkpoints in `text`: JSON lines as the JSON-lines sink writes them (other alerts
/// on other lines are skipped), a JSON array as the API returns (checkpoints, or alerts
/// with their `body`), or webhook payloads (`{"version": 1, "alert": {"body": ...}}`) one
/// per line.
pub fn parse_checkpoints(text: &str) -> Result<Vec<Checkpoint>, String> {
    let values: Vec<serde_json::Value> = if text.trim_start().starts_with('[') {
        serde_json::from_str(text).map_err(|err| format!("not a JSON array: {err}"))?
    } else {
        text.lines()
            .enumerate()
            .filter(|(_, line)| !line.trim().is_empty())
            .map(|(n, line)| {
                serde_json::from_str(line)
                    .map_err(|err| format!("line {}: not a JSON object: {err}", n + 1))
            })
            .collect::<Result<_, _>>()?
    };
    let mut checkpoints = Vec::new();
    for value in values {
        // A webhook payload (`alert.body`), an alert of `GET /api/v1/alerts` (`body`), or
        // the checkpoint itself.
        let value = match (
            value.get("alert").and_then(|a| a.get("body")),
            value.get("body"),
        ) {
            (Some(body), _) | (None, Some(body)) => body.clone(),
            (None, None) => value,
        };
        if value.get("kind").and_then(|k| k.as_str()) != Some(CHECKPOINT_KIND) {
            continue;
        }
        let checkpoint: Checkpoint = serde_json::from_value(value)
            .map_err(|err| format!("a checkpoint lacks a field: {err}"))?;
        checkpoints.push(checkpoint);
    }
    Ok(checkpoints)
}

/// A document's signature.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seal {
    pub algorithm: String,
    pub key_id: String,
    /// Ed25519 over the domain and the document's bytes; hex.
    pub value: String,
}

pub fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || !text.is_ascii() {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> AuditKey {
        AuditKey::from_seed([n; 32])
    }

    #[test]
    fn entries_and_checkpoints_verify_only_with_their_key_and_content() {
        let (k, other) = (key(1), key(2));
        let sig = k.sign_entry(&[7; 32]);
        assert!(k.public().verify_entry(&[7; 32], &sig));
        assert!(!k.public().verify_entry(&[8; 32], &sig));
        assert!(!other.public().verify_entry(&[7; 32], &sig));
        assert!(!k.public().verify_entry(&[7; 32], &sig[..63]));

        let cp = k.checkpoint(5, [9; 32], "2026-12-07T02:00:00Z".into());
        assert_eq!(k.public().verify_checkpoint(&cp), Ok(()));
        let mut moved = cp.clone();
        moved.entries = 4;
        assert!(
            k.public()
                .verify_checkpoint(&moved)
                .unwrap_err()
                .contains("forged")
        );
        let mut later = cp.clone();
        later.at = "2026-12-07T03:00:00Z".into();
        assert!(k.public().verify_checkpoint(&later).is_err());
        let err = other.public().verify_checkpoint(&cp).unwrap_err();
        assert!(err.contains("not by this collector's key"), "{err}");
        // An entry signature is no checkpoint signature and the other way round.
        let mut swapped = cp.clone();
        swapped.signature = hex(&sig);
        assert!(k.public().verify_checkpoint(&swapped).is_err());
    }

    #[test]
    fn a_seal_fails_after_a_one_byte_edit() {
        let k = key(3);
        let seal = k.seal(b"{\"a\":1}");
        assert_eq!(k.public().verify_seal(b"{\"a\":1}", &seal), Ok(()));
        assert!(k.public().verify_seal(b"{\"a\":2}", &seal).is_err());
    }

    #[test]
    fn public_keys_parse_from_hex_and_json_and_refuse_the_rest() {
        let k = key(4);
        let parsed = PublicKey::parse(&format!("{}\n", k.public().hex())).unwrap();
        assert_eq!(&parsed, k.public());
        let json = serde_json::to_string(&k.public().view()).unwrap();
        assert_eq!(&PublicKey::parse(&json).unwrap(), k.public());
        assert!(
            PublicKey::parse("abcd")
                .unwrap_err()
                .contains("64 hex digits")
        );
        assert_eq!(k.public().key_id.len(), 16);
    }

    #[test]
    fn checkpoints_are_read_from_sink_lines_api_arrays_and_webhook_payloads() {
        let k = key(5);
        let cp = k.checkpoint(3, [1; 32], "2026-12-07T02:00:00Z".into());
        let line = serde_json::to_string(&cp).unwrap();
        let file = format!("{{\"kind\":\"untraced_drift\",\"summary\":\"x\"}}\n{line}\n\n");
        assert_eq!(parse_checkpoints(&file).unwrap(), vec![cp.clone()]);
        let array = serde_json::to_string(&vec![cp.clone(), cp.clone()]).unwrap();
        assert_eq!(parse_checkpoints(&array).unwrap().len(), 2);
        let hook = format!("{{\"version\":1,\"alert\":{{\"body\":{line}}}}}");
        assert_eq!(parse_checkpoints(&hook).unwrap(), vec![cp.clone()]);
        let alerts = format!("[{{\"kind\":\"audit_checkpoint\",\"body\":{line}}}]");
        assert_eq!(parse_checkpoints(&alerts).unwrap(), vec![cp]);
        assert!(
            parse_checkpoints("not json")
                .unwrap_err()
                .contains("line 1")
        );
    }
}
