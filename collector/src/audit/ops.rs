//! What the audit operations of `App` (`app/evidence.rs`) hold and return: the signing key
//! with its last checkpoint, one checkpoint attempt's findings, and the log in its exact
//! stored form for offline verifiers.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::signing::unhex;
use super::{AuditEntry, AuditHead, AuditKey, Checkpoint, VerifyReport};

use crate::clock::Millis;
use crate::identity::hex;

/// The alert kind raised when the collector finds its own log altered.
pub const TAMPERED_KIND: &str = "audit_tampered";

/// The collector's signing key and when it last signed a checkpoint (fields read by
/// `app/evidence.rs`).
pub struct Anchor {
    pub(crate) key: Arc<AuditKey>,
    pub(crate) interval_ms: i64,
    /// `(signed at, entries)` of the last checkpoint this process signed.
    pub(crate) last: Mutex<Option<(Millis, u64)>>,
    /// That checkpoint itself: held in memory, where editing the database cannot reach it,
    /// so the next checkpoint is only signed over a log that still holds it.
    pub(crate) signed: Mutex<Option<Checkpoint>>,
    /// The findings last alerted, so one alteration raises one alert.
    pub(crate) alerted: Mutex<Vec<String>>,
}

impl Anchor {
    /// The key that seals event decisions (`super::decisions`).
    pub fn decision_key(&self) -> [u8; 32] {
        self.key.decision_key()
    }

    pub fn new(key: Arc<AuditKey>, interval: Duration) -> Anchor {
        Anchor {
            key,
            interval_ms: i64::try_from(interval.as_millis()).unwrap_or(i64::MAX),
            last: Mutex::new(None),
            signed: Mutex::new(None),
            alerted: Mutex::new(Vec::new()),
        }
    }
}

/// What one checkpoint attempt found: the log as read, its verification, and the
/// checkpoint signed over it (`None`: no key, or the log is altered and none was signed).
pub struct Checked {
    pub checkpoint: Option<Checkpoint>,
    pub report: VerifyReport,
    pub entries: Vec<AuditEntry>,
}

/// `GET /api/v1/audit/entries`: the log exactly as stored (details as the hashed text,
/// hashes and signatures in hex) and the recorded head, so that `driftctl` verifies it
/// itself instead of trusting the collector's verdict.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EntriesView {
    pub entries: Vec<RawEntry>,
    /// `(seq, hash)` of the head recorded beside the chain.
    pub head: Option<(u64, String)>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RawEntry {
    pub seq: u64,
    /// Milliseconds since the epoch, as hashed.
    pub at_ms: Millis,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub details: String,
    pub prev_hash: String,
    pub hash: String,
    pub signature: Option<String>,
}

impl EntriesView {
    pub fn new(entries: &[AuditEntry], head: Option<AuditHead>) -> EntriesView {
        EntriesView {
            entries: entries
                .iter()
                .map(|e| RawEntry {
                    seq: e.seq,
                    at_ms: e.at,
                    actor: e.actor.clone(),
                    action: e.action.clone(),
                    target: e.target.clone(),
                    details: e.details.clone(),
                    prev_hash: hex(&e.prev_hash),
                    hash: hex(&e.hash),
                    signature: e.signature.as_deref().map(hex),
                })
                .collect(),
            head: head.map(|h| (h.seq, hex(&h.hash))),
        }
    }

    /// Back to entries; a malformed hash becomes one no chain produces (so it is reported).
    pub fn into_log(self) -> (Vec<AuditEntry>, Option<AuditHead>) {
        let hash = |text: &str| -> [u8; 32] {
            unhex(text)
                .and_then(|b| b.try_into().ok())
                .unwrap_or([0xff; 32])
        };
        let entries = self
            .entries
            .into_iter()
            .map(|e| AuditEntry {
                seq: e.seq,
                at: e.at_ms,
                actor: e.actor,
                action: e.action,
                target: e.target,
                details: e.details,
                prev_hash: hash(&e.prev_hash),
                hash: hash(&e.hash),
                signature: e.signature.map(|s| unhex(&s).unwrap_or_default()),
            })
            .collect();
        let head = self.head.map(|(seq, h)| AuditHead {
            seq,
            hash: hash(&h),
        });
        (entries, head)
    }
}
