//! The audit and evidence operations: signed checkpoints (periodic and at every export),
//! verification anchored with the collector's key and checkpoints, the public key, sealed
//! evidence documents, the log in its exact stored form for offline verifiers, exports and
//! window bundles.
//!
//! Who: auditors, security analysts and admins export periods and fetch any window's
//! bundle. A change manager fetches the bundle of a window they requested, approved
//! (or rejected) or closed/cancelled, to attach it to their ticket; not other windows'.
//! Agents never. Every export and bundle fetch is an audit entry (`report.exported`,
//! `window.evidence_exported`) written with the read, so a refused request leaves none.

use crate::audit::ops::{Anchor, Checked, EntriesView, TAMPERED_KIND};
use crate::audit::signing::PublicKeyView;
use crate::audit::{Anchors, AuditEntry, Checkpoint, GENESIS, verify_anchored};
use crate::audit::{decisions, evidence};
use crate::reports::export::Export;
use crate::reports::ops::{BundleParams, ExportParams, parse_export};
use crate::reports::{BundleFormat, ExportFormat, bundle, export};
use crate::store::{ExportQuery, HostEvent};

use serde_json::json;
use uuid::Uuid;

use crate::audit::{NewAudit, VerifyReport};
use crate::clock::rfc3339;
use crate::identity::{Principal, Role};
use crate::store::{DriftItem, Store};
use crate::windows::Window;

use super::{App, Error, Limit, Result, require};

/// Roles that export periods and fetch any window's bundle.
pub const EXPORT_ROLES: [Role; 3] = [Role::Auditor, Role::Security, Role::Admin];

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

    /// The log checked with the collector's key and the checkpoints it kept.
    pub async fn verify_audit(&self, actor: &Principal) -> Result<VerifyReport> {
        require(actor, &Role::PEOPLE, "verifying the audit log")?;
        Ok(self.verify_audit_log(&[]).await?.0)
    }

    /// At an export: a checkpoint of the head (which now holds the export's own entry),
    /// the log verified with it, the decisions of `windows` and `drift` checked against
    /// their entries, and each event's decision against its seal: a record that disagrees
    /// makes the report fail.
    async fn verified_evidence(
        &self,
        windows: &[&Window],
        drift: &[&DriftItem],
        events: &[HostEvent],
    ) -> Result<VerifyReport> {
        let checked = self.checkpoint_audit().await?;
        let mut report = checked.report;
        report.add_findings(evidence::check(&checked.entries, windows, drift));
        if let Some(key) = self.decision_key() {
            report.add_findings(decisions::check(&key, events.iter().map(|e| &e.stored)));
        }
        report.checkpoint = checked.checkpoint;
        Ok(report)
    }

    /// The evidence of a period, audited.
    pub async fn export(
        &self,
        actor: &Principal,
        params: &ExportParams,
    ) -> Result<(Export, ExportFormat)> {
        require(actor, &EXPORT_ROLES, "exporting evidence")?;
        let (request, format) = parse_export(params).map_err(Error::BadRequest)?;
        let now = self.now();
        let audit = NewAudit::new(
            now,
            &actor.name,
            "report.exported",
            "report:export",
            json!({
                "from": rfc3339(request.from), "to": rfc3339(request.to),
                "host": request.host, "format": format.to_string(),
                "sample": request.sample.map(|s| s.0), "seed": request.sample.map(|s| s.1),
            }),
        );
        let records = self
            .store
            .export_records(
                ExportQuery {
                    from: request.from,
                    to: request.to,
                    hostname: request.host.clone(),
                    max_rows: self.settings.max_export_rows,
                },
                audit,
            )
            .await?;
        let verification = self
            .verified_evidence(
                &records.windows.values().collect::<Vec<_>>(),
                &records.drift.values().collect::<Vec<_>>(),
                &records.events,
            )
            .await?;
        tracing::info!(by = %driftwatch_common::pathbytes::Shown(&actor.name), rows = records.events.len(), %format, "evidence exported");
        Ok((
            export::build(&request, &records, verification, &actor.name, now),
            format,
        ))
    }

    /// The close-out bundle of window `id`, audited.
    pub async fn window_evidence(
        &self,
        actor: &Principal,
        id: Uuid,
        params: &BundleParams,
    ) -> Result<(bundle::Bundle, BundleFormat)> {
        let roles = [
            Role::Auditor,
            Role::Security,
            Role::Admin,
            Role::ChangeManager,
        ];
        require(actor, &roles, "fetching a window's evidence")?;
        let format = match params.format.as_deref() {
            None => BundleFormat::Json,
            Some(text) => text
                .parse()
                .map_err(|why| Error::BadRequest(format!("format: {why}")))?,
        };
        let window = self.store.window(id).await?;
        if actor.role == Role::ChangeManager {
            let involved = [
                Some(&window.requester),
                window.decided_by.as_ref(),
                window.ended_by.as_ref(),
            ]
            .into_iter()
            .flatten()
            .any(|name| crate::people::same_person(name, &actor.name));
            if !involved {
                return Err(Error::Forbidden(format!(
                    "a change manager fetches the evidence of windows they requested, decided \
                     or closed; {} is not one of them for window {id} (ask an auditor)",
                    actor.name
                )));
            }
        }
        let now = self.now();
        let audit = NewAudit::new(
            now,
            &actor.name,
            "window.evidence_exported",
            format!("window:{id}"),
            json!({ "ticket": window.ticket, "format": format.to_string() }),
        );
        let records = self
            .store
            .window_records(id, self.settings.max_export_rows, audit)
            .await?;
        let verification = self
            .verified_evidence(
                &[&window],
                &records.drift.iter().collect::<Vec<_>>(),
                &records.events,
            )
            .await?;
        Ok((
            bundle::build(&window, &records, verification, &actor.name, now),
            format,
        ))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::alerts::Sinks;
    use crate::app::Settings;
    use crate::audit::AuditKey;
    use crate::audit::NewAudit;
    use crate::clock::ManualClock;
    use crate::clock::Millis;
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
