use sha2::{Digest, Sha256};

use crate::clock::Millis;

/// `prev_hash` of the first entry.
pub const GENESIS: [u8; 32] = [0; 32];

/// The hash of one entry, over its predecessor's hash and every field (length-prefixed, so
/// no two different entries hash the same bytes).
pub fn entry_hash(
    prev: &[u8; 32],
    seq: u64,
    at: Millis,
    actor: &str,
    action: &str,
    target: &str,
    details: &str,
) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(b"driftwatch audit v1\0");
    hasher.update(prev);
    hasher.update(seq.to_be_bytes());
    hasher.update(at.to_be_bytes());
    for field in [actor, action, target, details] {
        hasher.update((field.len() as u64).to_be_bytes());
        hasher.update(field.as_bytes());
    }
    hasher.finalize().into()
}
