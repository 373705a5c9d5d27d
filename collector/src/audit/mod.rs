//! The audit trail: every human action (and every agent credential issued), appended to a
//! hash chain in the same transaction as the action itself (I5).
//!
//! Entry `n` stores `hash_n = SHA-256(hash_{n-1} ‖ n ‖ at ‖ actor ‖ action ‖ target ‖
//! details)` (fields length-prefixed, `hash_0` = 32 zero bytes). [`verify`] recomputes the
//! chain: an edited entry breaks its own hash, a deleted or reordered one breaks the
//! sequence or the link to its predecessor, and a truncated tail no longer matches the
//! head recorded beside the chain. Someone able to rewrite the whole database can rewrite
//! the head too; the verify result prints the head hash so it can be kept elsewhere.

mod chain;
mod verify;

use serde::{Deserialize, Serialize};

pub use chain::{GENESIS, entry_hash};
pub use verify::{Finding, VerifyReport, verify};

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
}

/// The last entry, as recorded beside the chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AuditHead {
    pub seq: u64,
    pub hash: [u8; 32],
}
