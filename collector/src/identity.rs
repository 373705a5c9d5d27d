//! API tokens: roles, how tokens look, and how they are checked.
//!
//! A token is `dw<kind>_<id>_<secret>`: the id (32 hex digits) finds the record, the secret
//! (256 random bits, 64 hex digits) proves possession. Only SHA-256 of the whole token is
//! stored, and it is compared in constant time. Tokens are random and long, so a fast hash
//! is enough (no password stretching needed).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Issues tokens and enrollment tokens.
    Admin,
    /// Requests, approves (others' requests), closes change windows.
    ChangeManager,
    /// Resolves untraced drift.
    Security,
    /// Reads everything, changes nothing.
    Auditor,
    /// A host's agent: reports events and heartbeats, nothing else.
    Agent,
    /// A metrics scraper: reads `/metrics`, nothing else.
    Metrics,
}

impl Role {
    pub const ALL: [Role; 6] = [
        Role::Admin,
        Role::ChangeManager,
        Role::Security,
        Role::Auditor,
        Role::Agent,
        Role::Metrics,
    ];
    /// Roles that may read `/metrics` when it requires a token.
    pub const METRICS_READERS: [Role; 3] = [Role::Metrics, Role::Admin, Role::Auditor];
    /// Roles of people (every role but `agent`): they may read the collector's records.
    pub const PEOPLE: [Role; 4] = [
        Role::Admin,
        Role::ChangeManager,
        Role::Security,
        Role::Auditor,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::ChangeManager => "change-manager",
            Role::Security => "security",
            Role::Auditor => "auditor",
            Role::Agent => "agent",
            Role::Metrics => "metrics",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|role| role.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Role::ALL.iter().map(|r| r.name()).collect();
                format!("unknown role `{s}`, expected one of {}", names.join(", "))
            })
    }
}

/// What a token is for; the letter after `dw` in the token text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenKind {
    /// A person's API token (`dwt_`).
    Api,
    /// An agent's credential (`dwa_`).
    Agent,
    /// An enrollment token (`dwe_`).
    Enrollment,
}

impl TokenKind {
    fn prefix(self) -> &'static str {
        match self {
            TokenKind::Api => "dwt",
            TokenKind::Agent => "dwa",
            TokenKind::Enrollment => "dwe",
        }
    }
}

/// A freshly minted token: the text is shown once, only the digest is kept.
pub struct NewToken {
    pub id: Uuid,
    pub text: String,
    pub digest: [u8; 32],
}

impl fmt::Debug for NewToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewToken")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// Mints a token of `kind` from 256 bits of operating-system randomness.
///
/// # Panics
///
/// If the operating system has no randomness to give (nothing safe can be done then).
pub fn mint(kind: TokenKind) -> NewToken {
    let id = Uuid::now_v7();
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret).expect("the operating system provides randomness");
    let text = format!("{}_{}_{}", kind.prefix(), id.simple(), hex(&secret));
    let digest = digest(&text);
    NewToken { id, text, digest }
}

/// The id a token names, if it is shaped like one of `kind`. Says nothing about validity.
pub fn parse(text: &str, kind: TokenKind) -> Option<Uuid> {
    let mut parts = text.splitn(3, '_');
    let (prefix, id, secret) = (parts.next()?, parts.next()?, parts.next()?);
    if prefix != kind.prefix() || secret.len() != 64 || id.len() != 32 {
        return None;
    }
    Uuid::try_parse(id).ok()
}

/// SHA-256 of the token text.
pub fn digest(text: &str) -> [u8; 32] {
    Sha256::digest(text.as_bytes()).into()
}

/// Equality that takes the same time wherever the first difference is.
pub fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Who is calling: the token's record, once verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    pub token_id: Uuid,
    /// The person (or, for agents, the host name) the token was issued to.
    pub name: String,
    pub role: Role,
    /// For agent credentials: the host it reports for.
    pub host_id: Option<Uuid>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minted_tokens_parse_and_verify() {
        let token = mint(TokenKind::Api);
        assert!(token.text.starts_with("dwt_"));
        assert_eq!(parse(&token.text, TokenKind::Api), Some(token.id));
        assert_eq!(parse(&token.text, TokenKind::Agent), None);
        assert!(constant_time_eq(&digest(&token.text), &token.digest));
        let other = mint(TokenKind::Api);
        assert!(!constant_time_eq(&other.digest, &token.digest));
        assert_ne!(other.text, token.text);
    }

    #[test]
    fn malformed_tokens_name_no_id() {
        for text in ["", "dwt", "dwt__", "dwt_xyz_abc", "Bearer dwt_1_2"] {
            assert_eq!(parse(text, TokenKind::Api), None, "{text}");
        }
    }

    #[test]
    fn roles_round_trip_by_name() {
        for role in Role::ALL {
            assert_eq!(role.name().parse::<Role>().unwrap(), role);
            assert_eq!(
                serde_json::to_string(&role).unwrap(),
                format!("\"{}\"", role.name())
            );
        }
        assert!(
            "root"
                .parse::<Role>()
                .unwrap_err()
                .contains("change-manager")
        );
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let token = mint(TokenKind::Enrollment);
        assert!(!format!("{token:?}").contains(&token.text));
    }
}
