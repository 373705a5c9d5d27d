//! Masking secrets in diffs before anything leaves the host.
//!
//! A line whose key looks secret (`password = hunter2`, `api_token: abc`,
//! `requirepass s3cret`) keeps its key and loses its value: the value is
//! replaced by a keyed fingerprint, so a reviewer sees *that* the database
//! password changed (and whether it changed back) without seeing it. The
//! fingerprint is keyed with a per-agent secret so low-entropy values cannot
//! be guessed offline from the collector's copy. Peers drop the whole diff;
//! we keep the useful part.
//!
//! The secret-looking keys are the policy's `snapshots.secret_keys`; switches,
//! small numbers and paths stay readable.

use regex::{Regex, RegexBuilder};

pub struct SecretMask {
    /// `(indent)(key)(separator)(value)` where the key matches a secret pattern;
    /// `None` when the policy lists no secret keys (nothing is masked).
    line: Option<Regex>,
    fingerprint_key: [u8; 32],
}

#[derive(Debug, thiserror::Error)]
#[error("invalid secret pattern: {0}")]
pub struct PatternError(#[from] regex::Error);

impl SecretMask {
    /// `patterns` are regular expressions matched within a line's key (the policy's
    /// `snapshots.secret_keys`, validated there one by one);
    /// `fingerprint_key` keys the fingerprints (derive it from an agent secret).
    pub fn new<S: AsRef<str>>(
        patterns: &[S],
        fingerprint_key: [u8; 32],
    ) -> Result<Self, PatternError> {
        if patterns.is_empty() {
            return Ok(SecretMask {
                line: None,
                fingerprint_key,
            });
        }
        let alternatives: Vec<String> = patterns
            .iter()
            .map(|p| format!("(?:{})", p.as_ref()))
            .collect();
        // The key is one token; the separator is `=`, `:` or whitespace; the
        // value is the rest of the line (a trailing comment is masked too: it
        // can hold the old value).
        let line = RegexBuilder::new(&format!(
            r#"^(\s*["']?[^\s=:"']*(?:{})[^\s=:"']*["']?)(\s*[=:]\s*|\s+)(\S.*)$"#,
            alternatives.join("|")
        ))
        .case_insensitive(true)
        .build()?;
        Ok(SecretMask {
            line: Some(line),
            fingerprint_key,
        })
    }

    /// One line of file content, masked if its key looks secret.
    pub fn mask_line(&self, line: &str) -> String {
        match self.line.as_ref().and_then(|regex| regex.captures(line)) {
            Some(caps) if !cannot_be_secret(&caps[3]) => {
                format!(
                    "{}{}«masked {}»",
                    &caps[1],
                    &caps[2],
                    self.fingerprint(&caps[3])
                )
            }
            _ => line.to_owned(),
        }
    }

    /// A unified diff with every content line passed through [`Self::mask_line`].
    pub fn mask_diff(&self, diff: &str) -> String {
        let mut out = String::with_capacity(diff.len());
        for line in diff.split_inclusive('\n') {
            let (body, newline) = match line.strip_suffix('\n') {
                Some(body) => (body, "\n"),
                None => (line, ""),
            };
            let is_header =
                body.starts_with("---") || body.starts_with("+++") || body.starts_with("@@");
            match body.chars().next() {
                Some(marker @ (' ' | '+' | '-')) if !is_header => {
                    out.push(marker);
                    out.push_str(&self.mask_line(&body[1..]));
                }
                _ => out.push_str(body),
            }
            out.push_str(newline);
        }
        out
    }

    fn fingerprint(&self, value: &str) -> String {
        let hash = blake3::keyed_hash(&self.fingerprint_key, value.trim().as_bytes());
        hash.to_hex()[..12].to_owned()
    }
}

/// Values that a secret-looking key can have without being a secret: a
/// switch (`PasswordAuthentication no` must stay readable), a small number,
/// or a file path (`HostKey /etc/ssh/ssh_host_ed25519_key`).
fn cannot_be_secret(value: &str) -> bool {
    let value = value
        .trim()
        .trim_end_matches([';', ','])
        .trim_matches(|c| c == '"' || c == '\'');
    let switch = [
        "yes", "no", "true", "false", "on", "off", "none", "enabled", "disabled",
    ]
    .iter()
    .any(|word| value.eq_ignore_ascii_case(word));
    let small_number = value.len() <= 5 && value.chars().all(|c| c.is_ascii_digit());
    let path = (value.starts_with('/') || value.starts_with("%h/") || value.starts_with(".ssh/"))
        && !value.contains(char::is_whitespace);
    switch || small_number || path
}

#[cfg(test)]
mod tests {
    use driftwatch_config::agent::DEFAULT_SECRET_KEYS;

    use super::*;

    fn mask() -> SecretMask {
        SecretMask::new(DEFAULT_SECRET_KEYS, [7; 32]).unwrap()
    }

    #[test]
    fn secret_values_are_replaced_keys_stay() {
        let mask = mask();
        for (line, kept) in [
            ("password = hunter2", "password = «masked "),
            ("  db_password: \"s3cret\"", "  db_password: «masked "),
            ("requirepass s3cret", "requirepass «masked "),
            ("API_TOKEN=abc123", "API_TOKEN=«masked "),
            ("\"client_secret\": \"xyz\",", "\"client_secret\": «masked "),
        ] {
            let masked = mask.mask_line(line);
            assert!(masked.starts_with(kept), "{line} -> {masked}");
            assert!(
                !masked.contains("hunter2")
                    && !masked.contains("s3cret")
                    && !masked.contains("abc123")
                    && !masked.contains("xyz")
            );
        }
    }

    #[test]
    fn ordinary_lines_are_untouched() {
        let mask = mask();
        for line in [
            "Port 22",
            "listen 80;",
            "# comment",
            "",
            "server_name example.org",
            "PasswordAuthentication yes",
            "PubkeyAuthentication no",
            "HostKey /etc/ssh/ssh_host_ed25519_key",
            "AuthorizedKeysFile .ssh/authorized_keys",
            "token_ttl = 3600",
        ] {
            assert_eq!(mask.mask_line(line), line);
        }
    }

    #[test]
    fn same_value_same_fingerprint_different_value_different() {
        let mask = mask();
        let a = mask.mask_line("password = one");
        assert_eq!(a, mask.mask_line("password = one"));
        assert_ne!(a, mask.mask_line("password = two"));
        let other_agent = SecretMask::new(DEFAULT_SECRET_KEYS, [8; 32]).unwrap();
        assert_ne!(
            a,
            other_agent.mask_line("password = one"),
            "fingerprints are keyed"
        );
    }

    #[test]
    fn diffs_keep_structure_and_lose_secrets() {
        let diff = "--- db.conf (baseline)\n+++ db.conf (now)\n@@ -1,2 +1,2 @@\n host = db1\n-password = old-secret\n+password = new-secret\n";
        let masked = mask().mask_diff(diff);
        assert!(masked.starts_with("--- db.conf (baseline)\n+++ db.conf (now)\n@@ -1,2 +1,2 @@\n host = db1\n-password = «masked "), "{masked}");
        assert!(
            !masked.contains("old-secret") && !masked.contains("new-secret"),
            "{masked}"
        );
        assert_eq!(masked.lines().count(), diff.lines().count());
    }

    #[test]
    fn the_policy_chooses_which_keys_are_secret() {
        // `snapshots.secret_keys = ["^db_", "apikey"]`: only those keys are masked.
        let mask = SecretMask::new(&["^db_", "apikey"], [7; 32]).unwrap();
        assert!(mask.mask_line("db_pass = hunter2").contains("«masked "));
        assert!(mask.mask_line("ApiKey: abc123").contains("«masked "));
        assert_eq!(mask.mask_line("password = visible"), "password = visible");
        assert_eq!(
            mask.mask_line("old_db_pass = visible"),
            "old_db_pass = visible"
        );
        // An empty list masks nothing (the policy's own choice).
        let none = SecretMask::new(&[] as &[&str], [7; 32]).unwrap();
        assert_eq!(none.mask_line("password = visible"), "password = visible");
    }

    #[test]
    fn bad_patterns_are_errors() {
        assert!(SecretMask::new(&["(unclosed"], [0; 32]).is_err());
    }
}
