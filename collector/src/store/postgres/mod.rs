//! The PostgreSQL store, for fleets that outgrow one node: the same [`Store`] trait as
//! SQLite, files by aggregate like `sqlite/`, a pool of connections (`connect.rs`).
//!
//! Each method is one transaction on one pooled connection (READ COMMITTED). Where SQLite
//! relies on its single writer, this backend takes locks: ingest locks the host's row
//! (`SELECT ... FOR UPDATE`), so two nodes ingesting batches of one agent check its chain
//! in order; appending to the audit log takes a transaction-scoped advisory lock on the
//! log's head, so the log stays one chain; the background rounds lock the rows they mark.
//! Migrations (`migrations.rs`, a list of its own) run at start under a session advisory
//! lock, so two nodes starting together apply them once.

mod alerts;
mod anchor;
mod audit;
mod cluster;
#[cfg(test)]
mod cluster_tests;
mod connect;
mod drift;
mod hosts;
mod identity;
mod ingest;
mod migrations;
mod reports;
mod retention;
mod rows;
mod sessions;
#[cfg(test)]
pub(crate) mod tests;
mod windows;

use std::sync::{Arc, RwLock};

use deadpool_postgres::{Object, Pool};
use driftwatch_common::api::v1::AgentCommand;
use driftwatch_config::collector::PostgresSettings;
use uuid::Uuid;

use super::*;
use crate::audit::{AuditEntry, AuditHead, AuditKey, Checkpoint, NewAudit};
use crate::clock::Millis;
use crate::matcher::Outcome;
use crate::people::Person;
use crate::windows::{Window, WindowStatus};

/// The transaction every aggregate function works in.
pub(crate) type Tx<'a> = tokio_postgres::Transaction<'a>;

/// The session advisory lock held while migrating ("DWMIGRAT").
const MIGRATION_LOCK: i64 = 0x4457_4d49_4752_4154;

#[derive(Clone)]
pub struct PostgresStore {
    pool: Pool,
    /// Signs audit entries and seals event decisions once set (`set_audit_key`).
    key: Arc<RwLock<Option<Arc<AuditKey>>>>,
    /// Other nodes' window changes, heard on a connection of its own (`cluster.rs`).
    windows_heard: Arc<cluster::Heard>,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PostgresStore")
    }
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(err: tokio_postgres::Error) -> Self {
        StoreError::other(err)
    }
}

impl From<deadpool_postgres::PoolError> for StoreError {
    fn from(err: deadpool_postgres::PoolError) -> Self {
        StoreError::other(format!("cannot reach the database: {err}"))
    }
}

/// Runs `$body` in a transaction on a pooled connection, bound to `$tx`, with the store
/// (for its key) bound to `$s`; commits when it returns a value.
macro_rules! in_tx {
    ($store:expr, |$s:pat_param, $tx:ident| $body:block) => {{
        let store = $store.clone();
        async move {
            let mut client = store.client().await?;
            let $tx = client.transaction().await?;
            let value = {
                let $s = &store;
                $body
            };
            $tx.commit().await?;
            Ok::<_, StoreError>(value)
        }
    }};
}

impl PostgresStore {
    /// Connects with `settings` and brings the schema up to date (refusing a database whose
    /// schema is newer than this collector, or that is not a collector's).
    pub async fn open(settings: &PostgresSettings) -> Result<PostgresStore> {
        let store = PostgresStore::configure(settings)?;
        store.migrate().await?;
        Ok(store)
    }

    /// The store of `settings` with its files read (password, CA) and its pool built, no
    /// connection opened: what fails here is the configuration's fault.
    pub fn configure(settings: &PostgresSettings) -> Result<PostgresStore> {
        let (pool, connector) = connect::pool(settings)?;
        Ok(PostgresStore {
            pool,
            key: Arc::new(RwLock::new(None)),
            windows_heard: Arc::new(cluster::Heard::new(connector)),
        })
    }

    pub(crate) async fn client(&self) -> Result<Object> {
        Ok(self.pool.get().await?)
    }

    /// The audit signing key, once set.
    fn key(&self) -> Option<Arc<AuditKey>> {
        self.key.read().expect("key lock").clone()
    }

    /// Brings the schema up to date (see [`PostgresStore::open`]).
    pub async fn migrate(&self) -> Result<()> {
        let mut client = self.client().await?;
        // Session-scoped: released below, or when the connection dies with its node.
        client
            .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
            .await?;
        let result = migrate(&mut client).await;
        let unlocked = client
            .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
            .await;
        result?;
        unlocked?;
        Ok(())
    }

    /// Every audit entry appended from now on is signed with `key`, and every event
    /// decision sealed with a key derived from it (`audit::decisions`); decisions stored
    /// before are sealed now.
    pub async fn set_audit_key(&self, key: Arc<AuditKey>) -> Result<()> {
        let decision_key = key.decision_key();
        *self.key.write().expect("key lock") = Some(key);
        let sealed: u64 = in_tx!(self, |_, tx| {
            ingest::seal_unsealed_decisions(&tx, &decision_key).await?
        })
        .await?;
        if sealed > 0 {
            tracing::info!(
                events = sealed,
                "sealed the decisions of events stored before the signing key"
            );
        }
        Ok(())
    }

    /// Closes the pool: later calls fail.
    pub fn close(&self) {
        self.pool.close();
    }
}

/// Applies the migrations this database lacks, in one transaction.
async fn migrate(client: &mut Object) -> Result<()> {
    let tx = client.transaction().await?;
    let has_schema: bool = tx
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM information_schema.tables
                            WHERE table_schema = current_schema() AND table_name = 'driftwatch_schema')",
            &[],
        )
        .await?
        .get(0);
    let version = if has_schema {
        let version: i64 = tx
            .query_one("SELECT version FROM driftwatch_schema", &[])
            .await?
            .get(0);
        usize::try_from(version).unwrap_or(usize::MAX)
    } else {
        let tables: i64 = tx
            .query_one(
                "SELECT count(*) FROM information_schema.tables
                 WHERE table_schema = current_schema()",
                &[],
            )
            .await?
            .get(0);
        if tables > 0 {
            return Err(StoreError::other(
                "this database is not a driftwatch collector's (it has tables but no \
                 driftwatch_schema); give the collector a database of its own",
            ));
        }
        tx.batch_execute(
            "CREATE TABLE driftwatch_schema (version bigint NOT NULL);
             INSERT INTO driftwatch_schema (version) VALUES (0);",
        )
        .await?;
        0
    };
    let known = migrations::MIGRATIONS.len();
    if version > known {
        return Err(StoreError::other(format!(
            "the database has schema version {version}, newer than this collector knows \
             ({known}); run a newer collector"
        )));
    }
    for (at, migration) in migrations::MIGRATIONS.iter().enumerate().skip(version) {
        tx.batch_execute(migration).await?;
        tx.execute(
            "UPDATE driftwatch_schema SET version = $1",
            &[&((at + 1) as i64)],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

impl Store for PostgresStore {
    fn ping(&self) -> impl Future<Output = Result<()>> + Send {
        in_tx!(self, |_, tx| {
            tx.execute("SELECT 1", &[]).await?;
        })
    }

    fn insert_token(
        &self,
        token: TokenRecord,
        audit: NewAudit,
    ) -> impl Future<Output = Result<()>> + Send {
        in_tx!(self, |s, tx| {
            identity::insert_token(&tx, s.key().as_deref(), &token, &audit).await?
        })
    }

    fn token(&self, id: Uuid) -> impl Future<Output = Result<TokenRecord>> + Send {
        in_tx!(self, |_, tx| { identity::token(&tx, id).await? })
    }

    fn tokens(&self) -> impl Future<Output = Result<Vec<TokenRecord>>> + Send {
        in_tx!(self, |_, tx| { identity::tokens(&tx).await? })
    }

    fn revoke_token(
        &self,
        id: Uuid,
        at: Millis,
        audit: NewAudit,
    ) -> impl Future<Output = Result<TokenRecord>> + Send {
        in_tx!(self, |s, tx| {
            identity::revoke_token(&tx, s.key().as_deref(), id, at, &audit).await?
        })
    }

    fn people(&self) -> impl Future<Output = Result<Vec<Person>>> + Send {
        in_tx!(self, |_, tx| { identity::people(&tx).await? })
    }

    fn insert_person(
        &self,
        person: Person,
        audit: NewAudit,
    ) -> impl Future<Output = Result<()>> + Send {
        in_tx!(self, |s, tx| {
            identity::insert_person(&tx, &person).await?;
            audit::append(&tx, s.key().as_deref(), &audit).await?;
        })
    }

    fn insert_person_token(
        &self,
        new_person: Option<(Person, NewAudit)>,
        token: TokenRecord,
        audit: NewAudit,
    ) -> impl Future<Output = Result<()>> + Send {
        in_tx!(self, |s, tx| {
            let key = s.key();
            if let Some((person, audit)) = &new_person {
                identity::insert_person(&tx, person).await?;
                audit::append(&tx, key.as_deref(), audit).await?;
            }
            identity::insert_token(&tx, key.as_deref(), &token, &audit).await?
        })
    }

    fn token_lineage(&self, id: Uuid) -> impl Future<Output = Result<Vec<TokenRecord>>> + Send {
        in_tx!(self, |_, tx| { identity::token_lineage(&tx, id).await? })
    }

    fn adopt_tokens(
        &self,
        new_people: Vec<Person>,
        owners: Vec<(Uuid, Uuid)>,
        audits: Vec<NewAudit>,
    ) -> impl Future<Output = Result<()>> + Send {
        in_tx!(self, |s, tx| {
            let key = s.key();
            for person in &new_people {
                identity::insert_person(&tx, person).await?;
            }
            identity::set_owners(&tx, &owners).await?;
            for audit in &audits {
                audit::append(&tx, key.as_deref(), audit).await?;
            }
        })
    }

    fn insert_enrollment_token(
        &self,
        token: EnrollmentTokenRecord,
        audit: NewAudit,
    ) -> impl Future<Output = Result<()>> + Send {
        in_tx!(self, |s, tx| {
            identity::insert_enrollment_token(&tx, s.key().as_deref(), &token, &audit).await?
        })
    }

    fn enroll(
        &self,
        token_id: Uuid,
        digest: [u8; 32],
        host: Host,
        credential: TokenRecord,
        chain_key: Option<ChainKey>,
        audit: NewAudit,
    ) -> impl Future<Output = Result<()>> + Send {
        in_tx!(self, |s, tx| {
            identity::enroll(
                &tx,
                s.key().as_deref(),
                token_id,
                &digest,
                &host,
                &credential,
                chain_key.as_ref(),
                &audit,
            )
            .await?
        })
    }

    fn host(&self, id: Uuid) -> impl Future<Output = Result<Host>> + Send {
        in_tx!(self, |_, tx| { identity::host(&tx, id).await? })
    }

    fn hosts(&self) -> impl Future<Output = Result<Vec<Host>>> + Send {
        in_tx!(self, |_, tx| { identity::hosts(&tx).await? })
    }

    fn ingest(
        &self,
        host_id: Uuid,
        events: Vec<Decided>,
        received_at: Millis,
    ) -> impl Future<Output = Result<IngestOutcome>> + Send {
        in_tx!(self, |s, tx| {
            let decision_key = s.key().map(|key| key.decision_key());
            ingest::ingest(&tx, decision_key, host_id, &events, received_at).await?
        })
    }

    fn events(&self, drift_id: Uuid) -> impl Future<Output = Result<Vec<StoredEvent>>> + Send {
        in_tx!(self, |_, tx| { ingest::events_of(&tx, drift_id).await? })
    }

    fn spool_marks(&self, host_id: Uuid) -> impl Future<Output = Result<Vec<SpoolMark>>> + Send {
        in_tx!(self, |_, tx| { hosts::spool_marks(&tx, host_id).await? })
    }

    fn raise_clock_alert(
        &self,
        alert: NewAlert,
        at: Millis,
        burst_ms: i64,
    ) -> impl Future<Output = Result<bool>> + Send {
        in_tx!(self, |_, tx| {
            hosts::raise_clock_alert(&tx, &alert, at, burst_ms).await?
        })
    }

    fn heartbeat(
        &self,
        record: HeartbeatRecord,
        alerts: Vec<NewAlert>,
    ) -> impl Future<Output = Result<Vec<AgentCommand>>> + Send {
        in_tx!(self, |_, tx| {
            hosts::heartbeat(&tx, &record, &alerts).await?
        })
    }

    fn anchor(
        &self,
        host_id: Uuid,
        roots: Vec<ContentHash>,
        commands: Vec<Uuid>,
    ) -> impl Future<Output = Result<AnchorView>> + Send {
        in_tx!(self, |_, tx| {
            anchor::view(&tx, host_id, &roots, &commands).await?
        })
    }

    fn save_anchor(&self, change: AnchorChange) -> impl Future<Output = Result<bool>> + Send {
        in_tx!(self, |_, tx| { anchor::save(&tx, &change).await? })
    }

    fn insert_window(
        &self,
        window: Window,
        audit: NewAudit,
    ) -> impl Future<Output = Result<()>> + Send {
        in_tx!(self, |s, tx| {
            windows::insert(&tx, s.key().as_deref(), &window, &audit).await?
        })
    }

    fn window(&self, id: Uuid) -> impl Future<Output = Result<Window>> + Send {
        in_tx!(self, |_, tx| { windows::get(&tx, id).await? })
    }

    fn windows(
        &self,
        status: Option<WindowStatus>,
    ) -> impl Future<Output = Result<Vec<Window>>> + Send {
        in_tx!(self, |_, tx| { windows::list(&tx, status).await? })
    }

    fn update_window(
        &self,
        window: Window,
        from: WindowStatus,
        audit: NewAudit,
    ) -> impl Future<Output = Result<()>> + Send {
        in_tx!(self, |s, tx| {
            windows::update(&tx, s.key().as_deref(), &window, from, &audit).await?
        })
    }

    fn close_window(
        &self,
        window: Window,
        audit: NewAudit,
    ) -> impl Future<Output = Result<CloseOutcome>> + Send {
        in_tx!(self, |s, tx| {
            windows::close(&tx, s.key().as_deref(), &window, &audit).await?
        })
    }

    fn review_candidates(
        &self,
        from: Millis,
        to: Millis,
    ) -> impl Future<Output = Result<Vec<ReviewCandidate>>> + Send {
        in_tx!(self, |_, tx| {
            windows::review_candidates(&tx, from, to).await?
        })
    }

    fn apply_review(
        &self,
        window_id: Uuid,
        decisions: Vec<(Uuid, Outcome)>,
        at: Millis,
        by: String,
    ) -> impl Future<Output = Result<ReviewOutcome>> + Send {
        in_tx!(self, |s, tx| {
            let decision_key = s.key().map(|key| key.decision_key());
            windows::apply_review(&tx, decision_key, window_id, &decisions, at, &by).await?
        })
    }

    fn drift_items(
        &self,
        filter: DriftFilter,
    ) -> impl Future<Output = Result<Vec<DriftItem>>> + Send {
        in_tx!(self, |_, tx| { drift::list(&tx, &filter).await? })
    }

    fn drift_item(&self, id: Uuid) -> impl Future<Output = Result<DriftItem>> + Send {
        in_tx!(self, |_, tx| { drift::get(&tx, id).await? })
    }

    fn drift_record(
        &self,
        id: Uuid,
        timeline_limit: u32,
    ) -> impl Future<Output = Result<DriftRecord>> + Send {
        // One snapshot: the item, its events and history agree with each other.
        in_tx!(self, |_, tx| {
            repeatable_read(&tx).await?;
            drift::record(&tx, id, timeline_limit).await?
        })
    }

    fn resolve_drift(
        &self,
        id: Uuid,
        resolution: Resolution,
        audit: NewAudit,
    ) -> impl Future<Output = Result<DriftItem>> + Send {
        in_tx!(self, |s, tx| {
            drift::resolve(&tx, s.key().as_deref(), id, &resolution, &audit).await?
        })
    }

    fn raise_due_alerts(
        &self,
        now: Millis,
        hold_ms: i64,
        burst_ms: i64,
        words: AlertWords,
    ) -> impl Future<Output = Result<u32>> + Send {
        in_tx!(self, |_, tx| {
            drift::raise_due(&tx, now, hold_ms, burst_ms, words).await?
        })
    }

    fn raise_silent_alerts(
        &self,
        now: Millis,
        silent_after_ms: i64,
        words: AlertWords,
    ) -> impl Future<Output = Result<u32>> + Send {
        in_tx!(self, |_, tx| {
            hosts::raise_silent(&tx, now, silent_after_ms, words).await?
        })
    }

    fn raise_emergency_alerts(
        &self,
        now: Millis,
        deadline_ms: i64,
        words: AlertWords,
    ) -> impl Future<Output = Result<u32>> + Send {
        in_tx!(self, |_, tx| {
            windows::raise_emergency(&tx, now, deadline_ms, words).await?
        })
    }

    fn undelivered_alerts(&self, limit: u32) -> impl Future<Output = Result<Vec<Alert>>> + Send {
        in_tx!(self, |_, tx| { alerts::list(&tx, true, limit).await? })
    }

    fn due_deliveries(
        &self,
        sink: String,
        now: Millis,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<Alert>>> + Send {
        in_tx!(self, |_, tx| {
            alerts::due_for(&tx, &sink, now, limit).await?
        })
    }

    fn record_delivery(
        &self,
        attempt: DeliveryAttempt,
    ) -> impl Future<Output = Result<bool>> + Send {
        in_tx!(self, |_, tx| {
            alerts::record_delivery(&tx, &attempt).await?
        })
    }

    fn settle_alerts(
        &self,
        sinks: Vec<String>,
        at: Millis,
    ) -> impl Future<Output = Result<u32>> + Send {
        in_tx!(self, |_, tx| { alerts::settle(&tx, &sinks, at).await? })
    }

    fn delivery_backlog(
        &self,
        sinks: Vec<String>,
    ) -> impl Future<Output = Result<Vec<SinkBacklog>>> + Send {
        in_tx!(self, |_, tx| { alerts::backlog(&tx, &sinks).await? })
    }

    fn alerts(&self, limit: u32) -> impl Future<Output = Result<Vec<Alert>>> + Send {
        in_tx!(self, |_, tx| { alerts::list(&tx, false, limit).await? })
    }

    fn dead_letters(&self, limit: u32) -> impl Future<Output = Result<Vec<Alert>>> + Send {
        in_tx!(self, |_, tx| { alerts::dead_letters(&tx, limit).await? })
    }

    fn retry_dead_letter(
        &self,
        alert_id: Uuid,
        sink: String,
        at: Millis,
        audit: NewAudit,
    ) -> impl Future<Output = Result<Alert>> + Send {
        in_tx!(self, |s, tx| {
            alerts::retry_dead_letter(&tx, alert_id, &sink, at).await?;
            audit::append(&tx, s.key().as_deref(), &audit).await?;
            alerts::get(&tx, alert_id).await?
        })
    }

    fn retry_dead_letters(
        &self,
        sink: String,
        at: Millis,
        audit: NewAudit,
    ) -> impl Future<Output = Result<u32>> + Send {
        in_tx!(self, |s, tx| {
            let retried = alerts::retry_dead_letters(&tx, &sink, at).await?;
            // The entry records how many; retrying nothing is not an action.
            if retried > 0 {
                let mut audit = audit;
                audit.details["retried"] = serde_json::json!(retried);
                audit::append(&tx, s.key().as_deref(), &audit).await?;
            }
            retried
        })
    }

    fn drop_dead_letter(
        &self,
        alert_id: Uuid,
        sink: String,
        dropped: Dropped,
        sinks: Vec<String>,
        audit: NewAudit,
    ) -> impl Future<Output = Result<Alert>> + Send {
        in_tx!(self, |s, tx| {
            alerts::drop_dead_letter(&tx, alert_id, &sink, &dropped, &sinks).await?;
            audit::append(&tx, s.key().as_deref(), &audit).await?;
            alerts::get(&tx, alert_id).await?
        })
    }

    fn note_config(
        &self,
        key: String,
        value: String,
        audit: NewAudit,
    ) -> impl Future<Output = Result<bool>> + Send {
        in_tx!(self, |s, tx| {
            audit::note_config(&tx, s.key().as_deref(), &key, &value, &audit).await?
        })
    }

    fn audit_log(
        &self,
    ) -> impl Future<Output = Result<(Vec<AuditEntry>, Option<AuditHead>)>> + Send {
        in_tx!(self, |_, tx| { audit::log(&tx).await? })
    }

    fn audit_head(&self) -> impl Future<Output = Result<Option<AuditHead>>> + Send {
        in_tx!(self, |_, tx| { audit::head(&tx).await? })
    }

    fn insert_checkpoint(
        &self,
        checkpoint: Checkpoint,
        at: Millis,
    ) -> impl Future<Output = Result<()>> + Send {
        in_tx!(self, |_, tx| {
            audit::insert_checkpoint(&tx, &checkpoint, at).await?
        })
    }

    fn audit_checkpoints(&self) -> impl Future<Output = Result<Vec<Checkpoint>>> + Send {
        in_tx!(self, |_, tx| { audit::checkpoints(&tx).await? })
    }

    fn insert_alert(&self, alert: NewAlert, at: Millis) -> impl Future<Output = Result<()>> + Send {
        in_tx!(self, |_, tx| {
            alerts::insert_alert(&tx, &alert, at).await?;
        })
    }

    fn stats(
        &self,
        now: Millis,
        silent_after_ms: i64,
    ) -> impl Future<Output = Result<Stats>> + Send {
        in_tx!(self, |_, tx| {
            hosts::stats(&tx, now, silent_after_ms).await?
        })
    }

    fn export_records(
        &self,
        query: ExportQuery,
        audit: NewAudit,
    ) -> impl Future<Output = Result<ExportRecords>> + Send {
        in_tx!(self, |s, tx| {
            reports::export_records(&tx, s.key().as_deref(), &query, &audit).await?
        })
    }

    fn window_records(
        &self,
        window_id: Uuid,
        max_rows: u32,
        audit: NewAudit,
    ) -> impl Future<Output = Result<WindowRecords>> + Send {
        in_tx!(self, |s, tx| {
            reports::window_records(&tx, s.key().as_deref(), window_id, max_rows, &audit).await?
        })
    }

    fn prune(
        &self,
        plan: crate::retention::PrunePlan,
        at: Millis,
    ) -> impl Future<Output = Result<crate::retention::PruneCounts>> + Send {
        in_tx!(self, |s, tx| {
            retention::prune(&tx, s.key().as_deref(), &plan, at).await?
        })
    }

    // --- Web console sessions (issue 11) ---

    fn insert_session(
        &self,
        session: WebSession,
        audit: NewAudit,
    ) -> impl Future<Output = Result<()>> + Send {
        in_tx!(self, |s, tx| {
            sessions::insert(&tx, s.key().as_deref(), &session, &audit).await?
        })
    }

    fn use_session(
        &self,
        digest: [u8; 32],
        now: Millis,
    ) -> impl Future<Output = Result<Option<WebSession>>> + Send {
        in_tx!(self, |_, tx| {
            sessions::use_session(&tx, &digest, now).await?
        })
    }

    fn end_session(
        &self,
        digest: [u8; 32],
        at: Millis,
        audit: Option<NewAudit>,
    ) -> impl Future<Output = Result<bool>> + Send {
        in_tx!(self, |s, tx| {
            sessions::end(&tx, s.key().as_deref(), &digest, at, audit.as_ref()).await?
        })
    }

    fn prune_sessions(
        &self,
        expired_before: Millis,
        idle_before: Millis,
    ) -> impl Future<Output = Result<u32>> + Send {
        in_tx!(self, |_, tx| {
            sessions::prune(&tx, expired_before, idle_before).await?
        })
    }

    fn events_by_id(
        &self,
        ids: Vec<Uuid>,
    ) -> impl Future<Output = Result<Vec<StoredEvent>>> + Send {
        in_tx!(self, |_, tx| { ingest::events_by_id(&tx, &ids).await? })
    }

    fn drift_changes(
        &self,
        after: i64,
        limit: u32,
    ) -> impl Future<Output = Result<DriftChanges>> + Send {
        // One snapshot: the head is at least the last change read.
        in_tx!(self, |_, tx| {
            repeatable_read(&tx).await?;
            drift::changes(&tx, after, limit).await?
        })
    }

    fn open_drift(
        &self,
        query: OpenDriftQuery,
    ) -> impl Future<Output = Result<Vec<DriftItem>>> + Send {
        in_tx!(self, |_, tx| { drift::open_matching(&tx, &query).await? })
    }

    // Listings with a cursor (issue 10).
    fn drift_page(
        &self,
        filter: DriftFilter,
        after: Option<(Millis, Uuid)>,
    ) -> impl Future<Output = Result<Vec<DriftItem>>> + Send {
        in_tx!(self, |_, tx| { drift::page(&tx, &filter, after).await? })
    }

    fn hosts_page(
        &self,
        after: Option<(String, Uuid)>,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<Host>>> + Send {
        in_tx!(self, |_, tx| {
            identity::hosts_page(&tx, after, limit).await?
        })
    }

    fn windows_page(
        &self,
        status: Option<WindowStatus>,
        after: Option<(Millis, Uuid)>,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<Window>>> + Send {
        in_tx!(self, |_, tx| {
            windows::page(&tx, status, after, limit).await?
        })
    }

    fn audit_page(
        &self,
        after: u64,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<AuditEntry>>> + Send {
        in_tx!(self, |_, tx| { audit::page(&tx, after, limit).await? })
    }

    // Several nodes on one database: `cluster.rs`.
    fn windows_version(&self) -> impl Future<Output = Result<i64>> + Send {
        in_tx!(self, |_, tx| { cluster::windows_version(&tx).await? })
    }

    fn ingest_at(
        &self,
        host_id: Uuid,
        events: Vec<Decided>,
        received_at: Millis,
        windows_version: i64,
    ) -> impl Future<Output = Result<Ingested>> + Send {
        in_tx!(self, |s, tx| {
            if cluster::windows_moved(&tx, windows_version).await? {
                Ingested::StaleWindows(events)
            } else {
                let decision_key = s.key().map(|key| key.decision_key());
                Ingested::Stored(
                    ingest::ingest(&tx, decision_key, host_id, &events, received_at).await?,
                )
            }
        })
    }

    fn take_lease(
        &self,
        name: String,
        holder: Uuid,
        ttl_ms: i64,
    ) -> impl Future<Output = Result<bool>> + Send {
        in_tx!(self, |_, tx| {
            cluster::take_lease(&tx, &name, holder, ttl_ms).await?
        })
    }

    fn claim_delivery(
        &self,
        alert_id: Uuid,
        sink: String,
        holder: Uuid,
        now: Millis,
        until: Millis,
    ) -> impl Future<Output = Result<bool>> + Send {
        in_tx!(self, |_, tx| {
            cluster::claim_delivery(&tx, alert_id, &sink, holder, now, until).await?
        })
    }

    fn windows_hint(&self, timeout: std::time::Duration) -> impl Future<Output = ()> + Send {
        self.windows_heard.wait(&self.pool, timeout)
    }
}

/// Makes the transaction read one snapshot (its first statement).
async fn repeatable_read(tx: &Tx<'_>) -> Result<()> {
    tx.batch_execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .await?;
    Ok(())
}
