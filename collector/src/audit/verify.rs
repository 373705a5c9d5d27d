use serde::{Deserialize, Serialize};

use super::{AuditEntry, AuditHead, GENESIS, entry_hash};
use crate::identity::hex;

/// The outcome of checking the whole chain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyReport {
    pub ok: bool,
    pub entries: u64,
    /// The last entry's hash (hex): keep it elsewhere to detect a rewrite of everything.
    pub head_hash: String,
    pub findings: Vec<Finding>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    /// The entry where the chain breaks (0 for the recorded head).
    pub seq: u64,
    pub problem: String,
}

/// Checks `entries` (in storage order by sequence number) against `head`.
pub fn verify(entries: &[AuditEntry], head: Option<AuditHead>) -> VerifyReport {
    let mut findings = Vec::new();
    let mut prev = GENESIS;
    let mut expected_seq = 1;
    for entry in entries {
        if entry.seq != expected_seq {
            findings.push(Finding {
                seq: entry.seq,
                problem: format!(
                    "expected entry {expected_seq} here: entries were deleted or reordered"
                ),
            });
        }
        if entry.prev_hash != prev {
            findings.push(Finding {
                seq: entry.seq,
                problem: "does not link to the entry before it: an entry was deleted, \
                          inserted or reordered"
                    .into(),
            });
        }
        let recomputed = entry_hash(
            &entry.prev_hash,
            entry.seq,
            entry.at,
            &entry.actor,
            &entry.action,
            &entry.target,
            &entry.details,
        );
        if recomputed != entry.hash {
            findings.push(Finding {
                seq: entry.seq,
                problem: "content does not match its hash: the entry was edited".into(),
            });
        }
        prev = entry.hash;
        expected_seq = entry.seq + 1;
    }
    let last = entries.last().map(|e| AuditHead {
        seq: e.seq,
        hash: e.hash,
    });
    if last != head {
        let describe =
            |h: Option<AuditHead>| h.map_or("none".to_owned(), |h| format!("entry {}", h.seq));
        findings.push(Finding {
            seq: 0,
            problem: format!(
                "the chain ends at {} but the recorded head is {}: entries were removed \
                 from the end, or the head was altered",
                describe(last),
                describe(head)
            ),
        });
    }
    VerifyReport {
        ok: findings.is_empty(),
        entries: entries.len() as u64,
        head_hash: hex(&last.map_or(GENESIS, |h| h.hash)),
        findings,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(n: u64) -> (Vec<AuditEntry>, Option<AuditHead>) {
        let mut prev = GENESIS;
        let mut entries = Vec::new();
        for seq in 1..=n {
            let details = format!("{{\"n\":{seq}}}");
            let hash = entry_hash(
                &prev,
                seq,
                1000 * seq as i64,
                "alice",
                "window.approved",
                "window:x",
                &details,
            );
            entries.push(AuditEntry {
                seq,
                at: 1000 * seq as i64,
                actor: "alice".into(),
                action: "window.approved".into(),
                target: "window:x".into(),
                details,
                prev_hash: prev,
                hash,
            });
            prev = hash;
        }
        let head = entries.last().map(|e| AuditHead {
            seq: e.seq,
            hash: e.hash,
        });
        (entries, head)
    }

    fn problems(report: &VerifyReport) -> Vec<(u64, &str)> {
        report
            .findings
            .iter()
            .map(|f| (f.seq, f.problem.as_str()))
            .collect()
    }

    #[test]
    fn an_intact_chain_verifies() {
        let (entries, head) = chain(5);
        let report = verify(&entries, head);
        assert!(report.ok, "{report:?}");
        assert_eq!(report.entries, 5);
        assert_eq!(report.head_hash, hex(&entries[4].hash));
        assert!(verify(&[], None).ok);
    }

    #[test]
    fn an_edit_is_found_at_its_entry() {
        let (mut entries, head) = chain(5);
        entries[2].actor = "mallory".into();
        let report = verify(&entries, head);
        assert!(!report.ok);
        assert_eq!(problems(&report).len(), 1);
        assert_eq!(report.findings[0].seq, 3);
        assert!(report.findings[0].problem.contains("edited"));
    }

    #[test]
    fn an_edit_with_a_recomputed_hash_breaks_the_next_link() {
        let (mut entries, head) = chain(5);
        entries[2].details = "{}".into();
        let e = &entries[2];
        entries[2].hash = entry_hash(
            &e.prev_hash,
            e.seq,
            e.at,
            &e.actor,
            &e.action,
            &e.target,
            &e.details,
        );
        let report = verify(&entries, head);
        assert!(!report.ok);
        assert_eq!(report.findings[0].seq, 4);
        assert!(report.findings[0].problem.contains("does not link"));
    }

    #[test]
    fn deletions_and_reordering_are_found() {
        let (mut entries, head) = chain(5);
        entries.remove(1);
        let report = verify(&entries, head);
        assert!(!report.ok);
        assert_eq!(report.findings[0].seq, 3);
        assert!(report.findings[0].problem.contains("deleted or reordered"));

        let (mut entries, head) = chain(5);
        entries.swap(1, 2);
        assert!(!verify(&entries, head).ok);
    }

    #[test]
    fn a_truncated_tail_disagrees_with_the_head() {
        let (mut entries, head) = chain(5);
        entries.truncate(3);
        let report = verify(&entries, head);
        assert!(!report.ok);
        assert_eq!(problems(&report).len(), 1);
        assert_eq!(report.findings[0].seq, 0);
        assert!(
            report.findings[0]
                .problem
                .contains("ends at entry 3 but the recorded head is entry 5")
        );
    }
}
