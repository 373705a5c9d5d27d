//! The audit operations of [`App`]: signed checkpoints (periodic and at every export),
//! verification anchored with the collector's key and checkpoints, the public key, sealed
//! evidence documents, and the log in its exact stored form for offline verifiers.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::signing::{PublicKeyView, unhex};
use super::{
    Anchors, AuditEntry, AuditHead, AuditKey, Checkpoint, GENESIS, VerifyReport, verify_anchored,
};
use crate::app::{App, Limit, Result, require};
use crate::clock::{Millis, rfc3339};
use crate::identity::{Principal, Role, hex};
use crate::store::Store;

/// The alert kind raised when the collector finds its own log altered.
pub const TAMPERED_KIND: &str = "audit_tampered";

/// The collector's signing key and when it last signed a checkpoint.
pub struct Anchor {
    key: Arc<AuditKey>,
    interval_ms: i64,
    /// `(signed at, entries)` of the last checkpoint this process signed.
    last: Mutex<Option<(Millis, u64)>>,
    /// That checkpoint itself: held in memory, where editing the database cannot reach it,
    /// so the next checkpoint is only signed over a log that still holds it.
    signed: Mutex<Option<Checkpoint>>,
    /// The findings last alerted, so one alteration raises one alert.
    alerted: Mutex<Vec<String>>,
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

impl<S: Store> App<S> {
    /// The key that seals event decisions, when this collector has a signing key.
    pub(crate) fn decision_key(&self) -> Option<[u8; 32]> {
        self.audit_anchor.as_ref().map(Anchor::decision_key)
    }

    fn anchor(&self) -> Option<&Anchor> {
        self.audit_anchor.as_ref()
    }

    /// The public key of the audit trail (none when the collector runs without a key).
    pub fn audit_public_key(&self, actor: &Principal) -> Result<Option<PublicKeyView>> {
        require(actor, &Role::PEOPLE, "reading the audit public key")?;
        Ok(self.anchor().map(|a| a.key.public().view()))
    }

    /// Verifies the log (with the key, the kept checkpoints and the last one this process
    /// signed), then signs a checkpoint of the head it verified, keeps it and queues it for
    /// every alert sink. An altered log gets no checkpoint, so a rewrite is never vouched
    /// for; an `audit_tampered` alert goes out instead.
    pub(crate) async fn checkpoint_audit(&self) -> Result<Checked> {
        self.checkpoint_checked(false).await
    }

    /// `legacy`: the log's unsigned entries predate signing (the first start with a key).
    async fn checkpoint_checked(&self, legacy: bool) -> Result<Checked> {
        let (report, entries) = self.verify_audit_log(&[]).await?;
        let Some(anchor) = self.anchor() else {
            return Ok(Checked {
                checkpoint: None,
                report,
                entries,
            });
        };
        let unsigned_only = report
            .findings
            .iter()
            .all(|f| f.problem.starts_with("not signed"));
        // History from before signing is the one alteration-free reason for findings.
        let vouchable = report.ok || (legacy && unsigned_only);
        if !vouchable {
            self.alert_tampered(anchor, &report).await?;
            return Ok(Checked {
                checkpoint: None,
                report,
                entries,
            });
        }
        let (count, hash) = entries.last().map_or((0, GENESIS), |e| (e.seq, e.hash));
        let now = self.now();
        let checkpoint = anchor.key.checkpoint(count, hash, rfc3339(now));
        self.store
            .insert_checkpoint(checkpoint.clone(), now)
            .await?;
        *anchor.last.lock().expect("checkpoint lock") = Some((now, count));
        *anchor.signed.lock().expect("checkpoint lock") = Some(checkpoint.clone());
        tracing::info!(entries = count, head = %checkpoint.head_hash, "audit checkpoint signed");
        Ok(Checked {
            checkpoint: Some(checkpoint),
            report,
            entries,
        })
    }

    async fn alert_tampered(&self, anchor: &Anchor, report: &VerifyReport) -> Result<()> {
        let problems: Vec<String> = report
            .findings
            .iter()
            .map(|f| format!("entry {}: {}", f.seq, f.problem))
            .collect();
        tracing::error!(problems = problems.len(), first = %problems.first().map_or("", |p| p.as_str()), "the audit log was altered; no checkpoint signed");
        {
            let mut alerted = anchor.alerted.lock().expect("checkpoint lock");
            if *alerted == problems {
                return Ok(());
            }
            alerted.clone_from(&problems);
        }
        let body = serde_json::json!({
            "kind": TAMPERED_KIND,
            "summary": format!(
                "audit log altered: {} problem(s); first: {}",
                problems.len(),
                problems.first().map_or("", |p| p.as_str())
            ),
            "entries": report.entries,
            "head_hash": report.head_hash,
            "problems": problems.iter().take(20).collect::<Vec<_>>(),
        });
        self.store
            .insert_alert(
                crate::store::NewAlert {
                    kind: TAMPERED_KIND.into(),
                    host_id: None,
                    body,
                },
                self.now(),
            )
            .await?;
        Ok(())
    }

    /// A checkpoint when the interval has passed and the head moved since the last one.
    /// At the first round, one at once only if the log starts with unsigned entries
    /// (written before entries were signed) that no checkpoint covers yet, so they get
    /// anchored; unsigned entries after signed ones are forgeries, not history.
    pub(crate) async fn checkpoint_audit_if_due(&self) -> Result<Option<Checkpoint>> {
        let Some(anchor) = self.anchor() else {
            return Ok(None);
        };
        let last = *anchor.last.lock().expect("checkpoint lock");
        match last {
            Some((at, signed)) => {
                let entries = self.store.audit_head().await?.map_or(0, |h| h.seq);
                if signed == entries || self.now() - at < anchor.interval_ms {
                    return Ok(None);
                }
                Ok(self.checkpoint_audit().await?.checkpoint)
            }
            None => {
                let (log, _) = self.store.audit_log().await?;
                let covered = self
                    .store
                    .audit_checkpoints()
                    .await?
                    .iter()
                    .filter(|k| anchor.key.public().verify_checkpoint(k).is_ok())
                    .map(|k| k.entries)
                    .max();
                let first_signed = log
                    .iter()
                    .position(|e| e.signature.is_some())
                    .unwrap_or(log.len());
                let unsigned_prefix = log[first_signed..].iter().all(|e| e.signature.is_some());
                let unanchored = log
                    .iter()
                    .any(|e| e.signature.is_none() && e.seq > covered.unwrap_or(0));
                *anchor.last.lock().expect("checkpoint lock") =
                    Some((self.now(), covered.unwrap_or(0)));
                if !unanchored {
                    return Ok(None);
                }
                // History from before signing, never checkpointed: anchor it now. Anything
                // else unsigned is found by the verification and alerted.
                let legacy = covered.is_none() && unsigned_prefix;
                Ok(self.checkpoint_checked(legacy).await?.checkpoint)
            }
        }
    }

    /// The checkpoints the database keeps (verifiers should keep their own copies, from a
    /// sink: whoever edits the database can delete these, though not forge them).
    pub async fn audit_checkpoints(&self, actor: &Principal) -> Result<Vec<Checkpoint>> {
        require(actor, &Role::PEOPLE, "reading the audit checkpoints")?;
        Ok(self.store.audit_checkpoints().await?)
    }

    /// At most `limit` entries after number `after`, oldest first (`GET /api/v1/audit`).
    pub async fn audit_log_page(
        &self,
        actor: &Principal,
        after: u64,
        limit: Limit,
    ) -> Result<Vec<AuditEntry>> {
        require(actor, &Role::PEOPLE, "reading the audit log")?;
        let limit = limit.checked()? as usize;
        let (entries, _) = self.store.audit_log().await?;
        Ok(entries
            .into_iter()
            .filter(|e| e.seq > after)
            .take(limit)
            .collect())
    }

    /// The log as stored, for offline verification.
    pub async fn audit_entries(&self, actor: &Principal) -> Result<EntriesView> {
        require(actor, &Role::PEOPLE, "reading the audit log")?;
        let (entries, head) = self.store.audit_log().await?;
        Ok(EntriesView::new(&entries, head))
    }

    /// Verifies the log with the collector's key, its kept checkpoints and `held` ones;
    /// returns the entries too, for the checks of evidence against them.
    pub(crate) async fn verify_audit_log(
        &self,
        held: &[Checkpoint],
    ) -> Result<(VerifyReport, Vec<AuditEntry>)> {
        let (entries, head) = self.store.audit_log().await?;
        let mut stored = self.store.audit_checkpoints().await?;
        // The last checkpoint this process signed, from memory: deleting it from the
        // database does not make the log pass.
        stored.extend(
            self.anchor()
                .and_then(|a| a.signed.lock().expect("checkpoint lock").clone()),
        );
        let report = verify_anchored(
            &entries,
            head,
            Anchors {
                key: self.anchor().map(|a| a.key.public()),
                held,
                stored: &stored,
            },
        );
        Ok((report, entries))
    }

    /// `body` with its signature: for JSON, a last member `"signature"` over every byte of
    /// the document without it; for text formats, a last line over every byte before it.
    /// Without a key (tests of the operations alone) the document goes out unsigned, and
    /// `driftctl verify` refuses it.
    pub fn seal_document(&self, body: String, kind: crate::reports::seal::DocKind) -> String {
        match self.anchor() {
            Some(anchor) => crate::reports::seal::seal(&anchor.key, body, kind),
            None => body,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::Sinks;
    use crate::app::Settings;
    use crate::audit::NewAudit;
    use crate::clock::ManualClock;
    use crate::store::SqliteStore;

    const T0: Millis = 1_795_428_000_000;

    fn settings() -> Settings {
        Settings {
            hold_ms: 1,
            burst_ms: 1,
            tolerance_ms: 1,
            silent_after_ms: 60_000,
            emergency_approval_ms: 60_000,
            max_body_bytes: 1 << 16,
            max_export_rows: 10,
            limits: Default::default(),
            metrics: Default::default(),
        }
    }

    async fn note(store: &SqliteStore, n: u32) {
        let audit = NewAudit::new(T0, "ops", "config.test", "x", serde_json::json!({ "n": n }));
        store
            .note_config("k".into(), n.to_string(), audit)
            .await
            .unwrap();
    }

    async fn app(store: &SqliteStore, key: &Arc<AuditKey>) -> App<SqliteStore> {
        store.set_audit_key(Arc::clone(key)).await.unwrap();
        App::new(
            store.clone(),
            settings(),
            Arc::new(ManualClock::at(T0)),
            Sinks::none(),
        )
        .await
        .unwrap()
        .with_audit_key(Arc::clone(key), Duration::from_secs(3600))
    }

    #[tokio::test]
    async fn history_from_before_signing_is_anchored_at_the_first_round() {
        let store = SqliteStore::open_in_memory().unwrap();
        note(&store, 1).await;
        note(&store, 2).await;
        let key = Arc::new(AuditKey::from_seed([1; 32]));
        let app = app(&store, &key).await;
        note(&store, 3).await;
        let checkpoint = app.checkpoint_audit_if_due().await.unwrap().unwrap();
        assert_eq!(checkpoint.entries, 3);
        assert!(app.verify_audit_log(&[]).await.unwrap().0.ok);
        // Nothing moved: no second one, even when due.
        assert!(app.checkpoint_audit_if_due().await.unwrap().is_none());
    }

    #[tokio::test]
    async fn an_unsigned_entry_after_signed_ones_is_alerted_not_vouched_for() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("collector.db");
        let store = SqliteStore::open(&path).unwrap();
        let key = Arc::new(AuditKey::from_seed([2; 32]));
        let app = app(&store, &key).await;
        note(&store, 1).await;
        note(&store, 2).await;
        // Entry 2 as someone without the key leaves it: unsigned.
        let raw = rusqlite::Connection::open(&path).unwrap();
        raw.execute_batch(
            "DROP TRIGGER audit_no_update; UPDATE audit SET signature = NULL WHERE seq = 2;",
        )
        .unwrap();
        drop(raw);
        assert!(app.checkpoint_audit_if_due().await.unwrap().is_none());
        let alerts = store.alerts(10).await.unwrap();
        assert_eq!(alerts.len(), 1, "{alerts:?}");
        assert_eq!(alerts[0].kind, TAMPERED_KIND);
        assert!(store.audit_checkpoints().await.unwrap().is_empty());
        // The same alteration is alerted once.
        let checked = app.checkpoint_audit().await.unwrap();
        assert!(checked.checkpoint.is_none() && !checked.report.ok);
        assert_eq!(store.alerts(10).await.unwrap().len(), 1);
        store.close();
    }
}
