use serde::{Deserialize, Serialize};

use super::signing::{Checkpoint, PublicKey};
use super::{AuditEntry, AuditHead, GENESIS, entry_hash};
use crate::identity::hex;

/// The outcome of checking the whole chain.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyReport {
    /// No problem was found. What that proves is in `assurance`: without checkpoints held
    /// outside the database it does not prove the log complete.
    pub ok: bool,
    pub entries: u64,
    /// The last entry's hash (hex): keep it elsewhere to detect a rewrite of everything.
    pub head_hash: String,
    pub findings: Vec<Finding>,
    /// The key entries and checkpoints were checked with (none: signatures not checked).
    #[serde(default)]
    pub key_id: Option<String>,
    /// Entries whose signature verified.
    #[serde(default)]
    pub signed_entries: u64,
    /// Valid checkpoints the verifier brought (held outside the database).
    #[serde(default)]
    pub checkpoints_held: u64,
    /// Valid checkpoints found in the database itself.
    #[serde(default)]
    pub checkpoints_stored: u64,
    /// The log is proven unchanged up to this entry by a held checkpoint.
    #[serde(default)]
    pub anchored_through: Option<u64>,
    /// One sentence: what this verification proves and what it cannot.
    #[serde(default)]
    pub assurance: String,
    /// The checkpoint signed for this export (evidence only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<Checkpoint>,
    /// Prunes by retention that the log records (`retention.pruned`): records absent since
    /// are explained by these, not by tampering. The log itself is never pruned.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pruned: Vec<crate::retention::Pruned>,
}

impl VerifyReport {
    /// Adds problems found outside the chain (evidence that disagrees with it).
    pub fn add_findings(&mut self, findings: Vec<Finding>) {
        if findings.is_empty() {
            return;
        }
        self.findings.extend(findings);
        self.ok = false;
        self.assurance = format!(
            "ALTERED: {} problem(s); the records or the log cannot be trusted",
            self.findings.len()
        );
    }

    /// The report for a person: the verdict, then what it proves or each problem.
    pub fn text_lines(&self) -> Vec<String> {
        let mut lines = self.verdict_lines();
        lines.extend(
            self.pruned
                .iter()
                .map(|p| format!("  entry {} ({}): {}", p.seq, p.at, p.what)),
        );
        lines
    }

    fn verdict_lines(&self) -> Vec<String> {
        if self.ok {
            vec![
                format!(
                    "audit log: no problem found in {} entries, head {}",
                    self.entries, self.head_hash
                ),
                format!("  {}", self.assurance),
            ]
        } else {
            let verdict = format!(
                "audit log ALTERED: {} problem(s) in {} entries",
                self.findings.len(),
                self.entries
            );
            std::iter::once(verdict)
                .chain(
                    self.findings
                        .iter()
                        .map(|f| format!("  entry {}: {}", f.seq, f.problem)),
                )
                .collect()
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    /// The entry where the chain breaks (0 for the recorded head).
    pub seq: u64,
    pub problem: String,
}

/// What a verifier holds besides the log: the public key, the checkpoints it kept outside
/// the database (`held`), and those the database itself lists (`stored`, which whoever
/// edits the database can delete, but not forge).
#[derive(Clone, Copy, Debug, Default)]
pub struct Anchors<'a> {
    pub key: Option<&'a PublicKey>,
    pub held: &'a [Checkpoint],
    pub stored: &'a [Checkpoint],
}

/// Checks `entries` (in storage order by sequence number) against `head`, unanchored.
pub fn verify(entries: &[AuditEntry], head: Option<AuditHead>) -> VerifyReport {
    verify_anchored(entries, head, Anchors::default())
}

/// Checks the chain, then with a key every entry's signature and every checkpoint: each
/// must verify, and the log must still hold each checkpointed head at its position.
pub fn verify_anchored(
    entries: &[AuditEntry],
    head: Option<AuditHead>,
    anchors: Anchors<'_>,
) -> VerifyReport {
    let mut findings = chain_findings(entries, head);
    let last = entries.last().map(|e| AuditHead {
        seq: e.seq,
        hash: e.hash,
    });
    let mut report = VerifyReport {
        entries: entries.len() as u64,
        head_hash: hex(&last.map_or(GENESIS, |h| h.hash)),
        ..VerifyReport::default()
    };
    if let Some(key) = anchors.key {
        report.key_id = Some(key.key_id.clone());
        let mut covered_by_stored = 0;
        for (held, list) in [(true, anchors.held), (false, anchors.stored)] {
            for checkpoint in list {
                let place = if held {
                    "held checkpoint"
                } else {
                    "checkpoint in the database"
                };
                // Another key's checkpoint in the database vouches for nothing and hides
                // nothing (it is skipped); one the verifier brought is a finding.
                if !held && checkpoint.key_id != key.key_id {
                    continue;
                }
                if let Err(why) = key.verify_checkpoint(checkpoint) {
                    findings.push(Finding {
                        seq: checkpoint.entries,
                        problem: format!(
                            "{place} of entry {} at {}: {why}",
                            checkpoint.entries, checkpoint.at
                        ),
                    });
                    continue;
                }
                match still_holds(entries, checkpoint) {
                    Err(problem) => findings.push(Finding {
                        seq: checkpoint.entries,
                        problem: format!("{place} signed at {}: {problem}", checkpoint.at),
                    }),
                    Ok(()) if held => {
                        report.checkpoints_held += 1;
                        report.anchored_through =
                            report.anchored_through.max(Some(checkpoint.entries));
                    }
                    Ok(()) => {
                        report.checkpoints_stored += 1;
                        covered_by_stored = covered_by_stored.max(checkpoint.entries);
                    }
                }
            }
        }
        let covered = report.anchored_through.unwrap_or(0).max(covered_by_stored);
        for entry in entries {
            match &entry.signature {
                Some(signature) if key.verify_entry(&entry.hash, signature) => {
                    report.signed_entries += 1;
                }
                Some(_) => findings.push(Finding {
                    seq: entry.seq,
                    problem: "its signature does not verify with the collector's key: the \
                              entry was forged or rewritten"
                        .into(),
                }),
                None if entry.seq > covered => findings.push(Finding {
                    seq: entry.seq,
                    problem: "not signed, and no checkpoint covers it: the entry was added \
                              without the collector's key (forged)"
                        .into(),
                }),
                // Written before entries were signed, and vouched for by a checkpoint.
                None => {}
            }
        }
    }
    report.ok = findings.is_empty();
    report.findings = findings;
    report.assurance = assurance(&report, anchors);
    report.pruned = crate::retention::pruned(entries);
    report
}

/// Whether the log still holds `checkpoint`'s head at its position.
fn still_holds(entries: &[AuditEntry], checkpoint: &Checkpoint) -> Result<(), String> {
    if checkpoint.entries == 0 {
        return Ok(());
    }
    let Ok(at) = entries.binary_search_by_key(&checkpoint.entries, |e| e.seq) else {
        let last = entries.last().map_or(0, |e| e.seq);
        return Err(if last < checkpoint.entries {
            format!(
                "it vouches for {} entries but the log ends at entry {last}: entries were \
                 removed (truncated or wiped)",
                checkpoint.entries
            )
        } else {
            format!(
                "entry {} is missing from the log: entries were deleted",
                checkpoint.entries
            )
        });
    };
    if checkpoint.head() != Some(entries[at].hash) {
        return Err(format!(
            "entry {} is no longer the entry that was checkpointed: the log was rewritten",
            checkpoint.entries
        ));
    }
    Ok(())
}

fn assurance(report: &VerifyReport, anchors: Anchors<'_>) -> String {
    if !report.ok {
        return format!(
            "ALTERED: {} problem(s); the log cannot be trusted from the first one on",
            report.findings.len()
        );
    }
    let Some(key_id) = &report.key_id else {
        return format!(
            "the hash chain of {} entries is consistent with itself; NOT proven intact: \
             without the collector's public key and checkpoints held outside the database, \
             a rewritten, truncated or wiped log reads the same",
            report.entries
        );
    };
    match report.anchored_through {
        Some(through) => {
            let later = report.entries.saturating_sub(through);
            format!(
                "entries 1 to {through} are exactly those of {} signed checkpoint(s) held \
                 outside the database; {} (entries removed after the latest checkpoint \
                 would not show until the next one)",
                report.checkpoints_held,
                if later == 0 {
                    "no entry follows the latest".to_owned()
                } else {
                    format!("the {later} later entries are chained and signed by key {key_id}")
                }
            )
        }
        None if anchors.held.is_empty() => format!(
            "every entry is chained and signed by key {key_id}, so none was edited or forged \
             without that key; NOT proven complete: without checkpoints held outside the \
             database (--checkpoints FILE), entries removed from the end, or a wiped log, \
             cannot be detected"
        ),
        None => format!(
            "every entry is chained and signed by key {key_id}; the held checkpoints are all \
             of an empty log"
        ),
    }
}

fn chain_findings(entries: &[AuditEntry], head: Option<AuditHead>) -> Vec<Finding> {
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
    findings
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
                signature: None,
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

    mod anchored {
        use super::*;
        use crate::audit::AuditKey;

        fn signed(n: u64, key: &AuditKey) -> Vec<AuditEntry> {
            let (mut entries, _) = chain(n);
            for e in &mut entries {
                e.signature = Some(key.sign_entry(&e.hash));
            }
            entries
        }

        fn head_of(entries: &[AuditEntry]) -> Option<AuditHead> {
            entries.last().map(|e| AuditHead {
                seq: e.seq,
                hash: e.hash,
            })
        }

        /// Re-links every entry from `from` on, as someone with the database but not the
        /// key would after an edit.
        fn relink(entries: &mut [AuditEntry], from: usize) {
            for i in from..entries.len() {
                let prev = if i == 0 { GENESIS } else { entries[i - 1].hash };
                let e = &mut entries[i];
                e.prev_hash = prev;
                e.hash = entry_hash(
                    &prev, e.seq, e.at, &e.actor, &e.action, &e.target, &e.details,
                );
            }
        }

        fn check(entries: &[AuditEntry], key: &AuditKey, held: &[Checkpoint]) -> VerifyReport {
            verify_anchored(
                entries,
                head_of(entries),
                Anchors {
                    key: Some(key.public()),
                    held,
                    stored: &[],
                },
            )
        }

        #[test]
        fn an_untouched_log_is_anchored_through_the_checkpoint() {
            let key = AuditKey::from_seed([1; 32]);
            let entries = signed(5, &key);
            let cp = key.checkpoint(3, entries[2].hash, "t".into());
            let report = check(&entries, &key, std::slice::from_ref(&cp));
            assert!(report.ok, "{report:?}");
            assert_eq!(
                (
                    report.signed_entries,
                    report.checkpoints_held,
                    report.anchored_through
                ),
                (5, 1, Some(3))
            );
            assert!(
                report.assurance.contains("entries 1 to 3"),
                "{}",
                report.assurance
            );
            // Without checkpoints: signed, but not proven complete.
            let bare = check(&entries, &key, &[]);
            assert!(
                bare.ok && bare.assurance.contains("NOT proven complete"),
                "{bare:?}"
            );
            // Without the key: nothing but the chain.
            let chain_only = verify(&entries, head_of(&entries));
            assert!(chain_only.assurance.contains("NOT proven intact"));
        }

        #[test]
        fn each_database_attack_after_a_checkpoint_is_caught() {
            let key = AuditKey::from_seed([2; 32]);
            let entries = signed(5, &key);
            let cp = key.checkpoint(4, entries[3].hash, "t".into());
            let held = std::slice::from_ref(&cp);

            let mut rewritten = entries.clone();
            rewritten[1].actor = "mallory".into();
            relink(&mut rewritten, 1);
            let report = check(&rewritten, &key, held);
            assert!(!report.ok);
            assert!(
                report
                    .findings
                    .iter()
                    .any(|f| f.problem.contains("rewritten")),
                "{report:?}"
            );

            let truncated = &entries[..2];
            let report = check(truncated, &key, held);
            assert!(
                report
                    .findings
                    .iter()
                    .any(|f| f.problem.contains("truncated or wiped"))
            );

            let report = check(&[], &key, held);
            assert!(!report.ok && report.findings[0].problem.contains("log ends at entry 0"));

            let mut forged = entries.clone();
            let mut extra = forged[4].clone();
            extra.seq = 6;
            extra.actor = "mallory".into();
            extra.signature = None;
            forged.push(extra);
            relink(&mut forged, 5);
            let report = check(&forged, &key, held);
            assert_eq!(report.findings.len(), 1, "{report:?}");
            assert_eq!(report.findings[0].seq, 6);
            assert!(report.findings[0].problem.contains("forged"));

            // Signed with another key: neither the entry nor a checkpoint passes.
            let other = AuditKey::from_seed([3; 32]);
            forged[5].signature = Some(other.sign_entry(&forged[5].hash));
            assert!(!check(&forged, &key, held).ok);
            let foreign = other.checkpoint(4, entries[3].hash, "t".into());
            let report = check(&entries, &key, &[foreign]);
            assert!(
                report.findings[0]
                    .problem
                    .contains("not by this collector's key")
            );
        }

        #[test]
        fn unsigned_entries_from_before_signing_pass_only_under_a_checkpoint() {
            let key = AuditKey::from_seed([4; 32]);
            let mut entries = signed(4, &key);
            entries[0].signature = None;
            entries[1].signature = None;
            let stored = [key.checkpoint(2, entries[1].hash, "t".into())];
            let with = verify_anchored(
                &entries,
                head_of(&entries),
                Anchors {
                    key: Some(key.public()),
                    held: &[],
                    stored: &stored,
                },
            );
            assert!(with.ok, "{with:?}");
            assert_eq!(with.checkpoints_stored, 1);
            let without = check(&entries, &key, &[]);
            assert_eq!(without.findings.len(), 2, "{without:?}");
        }
    }
}
