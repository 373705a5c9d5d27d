//! The audit trail: every human action (and every agent credential issued), appended to a
//! hash chain in the same transaction as the action itself (I5).
//!
//! Entry `n` stores `hash_n = SHA-256(hash_{n-1} ‖ n ‖ at ‖ actor ‖ action ‖ target ‖
//! details)` (fields length-prefixed, `hash_0` = 32 zero bytes). [`verify`] recomputes the
//! chain: an edited entry breaks its own hash, a deleted or reordered one breaks the
//! sequence or the link to its predecessor, and a truncated tail no longer matches the
//! head recorded beside the chain.
//!
//! Someone able to edit the database can rewrite the chain and the head too, so the chain
//! is anchored outside it ([`signing`]): the collector's Ed25519 key (a file or systemd
//! credential, [`key_file`]) signs every entry's hash and, periodically and at every export,
//! a checkpoint (entries, head, time) that goes to the alert sinks. [`verify_anchored`]
//! with the public key and checkpoints kept elsewhere detects a rewrite, a truncation, a
//! wipe or a forged entry made after a checkpoint. [`evidence`] checks the decisions that
//! evidence reports (window and drift records) against the entries that recorded them.

mod chain;
pub mod decisions;
pub mod evidence;
pub mod key_file;
pub mod ops;
pub mod signing;
mod verify;

use serde::{Deserialize, Serialize};

pub use chain::{GENESIS, entry_hash};
pub use signing::{AuditKey, CHECKPOINT_KIND, Checkpoint, PublicKey, Seal};
pub use verify::{Anchors, Finding, VerifyReport, verify, verify_anchored};

use crate::clock::Millis;

/// An action to record (the store assigns the sequence number and the hashes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewAudit {
    pub at: Millis,
    /// The person (token name) or, for enrollment, the enrollment token.
    pub actor: String,
    /// `token.created`, `window.approved`, `drift.resolved`...
    pub action: String,
    /// What it was done to (`window:<id>`, `token:<id>`).
    pub target: String,
    pub details: serde_json::Value,
}

impl NewAudit {
    pub fn new(
        at: Millis,
        actor: impl Into<String>,
        action: &str,
        target: impl Into<String>,
        details: serde_json::Value,
    ) -> Self {
        NewAudit {
            at,
            actor: actor.into(),
            action: action.to_owned(),
            target: target.into(),
            details,
        }
    }
}

/// One stored entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub seq: u64,
    pub at: Millis,
    pub actor: String,
    pub action: String,
    pub target: String,
    /// JSON text exactly as hashed.
    pub details: String,
    pub prev_hash: [u8; 32],
    pub hash: [u8; 32],
    /// Ed25519 over the hash by the collector's key (`None`: written before entries were
    /// signed; then only a checkpoint vouches for it).
    #[serde(default)]
    pub signature: Option<Vec<u8>>,
}

/// The last entry, as recorded beside the chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AuditHead {
    pub seq: u64,
    pub hash: [u8; 32],
}
