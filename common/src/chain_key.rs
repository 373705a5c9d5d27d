//! The forward-secure key that authenticates an agent's events (Bellare–Yee, Schneier–Kelsey).
//!
//! The collector issues a random 32-byte key at enrollment: the key of sequence number 1.
//! Event `n` carries `mac = BLAKE3-keyed(K_n, 0x01 || canonical JSON)`; then the agent
//! replaces `K_n` with `K_{n+1} = BLAKE3-keyed(K_n, 0x00 || RATCHET_LABEL)` and erases
//! `K_n`. The step is one-way, so whoever reads the host's key at sequence `n` cannot MAC
//! (forge, edit or re-link) any event numbered below `n`; the collector, which kept an
//! earlier key, derives forward to verify. The leading byte separates the two uses of a key.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use zeroize::Zeroize;

const RATCHET_LABEL: &[u8] = b"\x00driftwatch event chain key ratchet v1";
const MAC_DOMAIN: &[u8] = b"\x01";

/// The key of one sequence number. Wiped from memory when dropped; never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct ChainKey([u8; 32]);

impl Drop for ChainKey {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl ChainKey {
    pub fn from_bytes(bytes: [u8; 32]) -> ChainKey {
        ChainKey(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// `K_{n+1}` from `K_n`.
    pub fn next(&self) -> ChainKey {
        let mut hasher = blake3::Hasher::new_keyed(&self.0);
        hasher.update(RATCHET_LABEL);
        ChainKey(*hasher.finalize().as_bytes())
    }

    /// Replaces this key with the next one; the old bytes are overwritten in place.
    pub fn advance(&mut self) {
        let next = self.next();
        self.0 = next.0;
    }

    /// The key `steps` sequence numbers further on.
    pub fn forward(&self, steps: u64) -> ChainKey {
        let mut key = self.clone();
        for _ in 0..steps {
            key.advance();
        }
        key
    }

    /// The MAC of an event's canonical bytes, given in pieces (see
    /// [`crate::api::v1::DriftEvent::encode`]).
    pub fn mac(&self, canonical: &[&[u8]]) -> Mac {
        let mut hasher = blake3::Hasher::new_keyed(&self.0);
        hasher.update(MAC_DOMAIN);
        for piece in canonical {
            hasher.update(piece);
        }
        Mac(hasher.finalize())
    }

    pub fn to_hex(&self) -> String {
        blake3::Hash::from_bytes(self.0).to_hex().to_string()
    }
}

impl fmt::Debug for ChainKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ChainKey(..)")
    }
}

#[derive(Debug, thiserror::Error)]
#[error("invalid chain key: expected 64 hex digits")]
pub struct ParseKeyError;

impl FromStr for ChainKey {
    type Err = ParseKeyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        blake3::Hash::from_hex(s)
            .map(|hash| ChainKey(*hash.as_bytes()))
            .map_err(|_| ParseKeyError)
    }
}

impl Serialize for ChainKey {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for ChainKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// An event's authentication tag, hex in JSON. Compared in constant time.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Mac(blake3::Hash);

impl Mac {
    pub fn from_bytes(bytes: [u8; 32]) -> Mac {
        Mac(blake3::Hash::from_bytes(bytes))
    }

    pub fn to_hex(&self) -> String {
        self.0.to_hex().to_string()
    }
}

impl fmt::Debug for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Mac({})", self.to_hex())
    }
}

impl Serialize for Mac {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for Mac {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        blake3::Hash::from_hex(&text)
            .map(Mac)
            .map_err(|_| serde::de::Error::custom("invalid mac: expected 64 hex digits"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ratchet_is_deterministic_and_moves() {
        let first = ChainKey::from_bytes([7; 32]);
        let second = first.next();
        assert_ne!(first, second);
        assert_eq!(second, ChainKey::from_bytes([7; 32]).next());
        let mut moved = first.clone();
        moved.advance();
        assert_eq!(moved, second);
        assert_eq!(first.forward(0), first);
        assert_eq!(first.forward(3), second.next().next());
    }

    #[test]
    fn a_mac_depends_on_key_and_every_byte() {
        let key = ChainKey::from_bytes([1; 32]);
        let mac = key.mac(&[b"{\"seq\":1", b"}"]);
        assert_eq!(mac, key.mac(&[b"{\"seq\":1}"]), "pieces are one message");
        assert_ne!(mac, key.mac(&[b"{\"seq\":2}"]));
        assert_ne!(mac, key.next().mac(&[b"{\"seq\":1}"]));
        // The ratchet step is not a MAC anyone could present: the domains differ.
        assert_ne!(
            key.next().as_bytes(),
            key.mac(&[&RATCHET_LABEL[1..]]).0.as_bytes()
        );
    }

    #[test]
    fn keys_and_macs_are_hex_and_keys_never_print() {
        let key = ChainKey::from_bytes([0xab; 32]);
        let json = serde_json::to_string(&key).unwrap();
        assert_eq!(json, format!("\"{}\"", "ab".repeat(32)));
        assert_eq!(serde_json::from_str::<ChainKey>(&json).unwrap(), key);
        assert_eq!(format!("{key:?}"), "ChainKey(..)");
        assert!("ab".parse::<ChainKey>().is_err());
        let mac = key.mac(&[b"x"]);
        let back: Mac = serde_json::from_str(&serde_json::to_string(&mac).unwrap()).unwrap();
        assert_eq!(back, mac);
    }
}
