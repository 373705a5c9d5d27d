//! The SQLite store: one file in WAL mode, one connection owned by one thread.
//!
//! Every call is a closure sent to that thread and answered over a oneshot channel, so no
//! blocking database work runs on the async executor, and writes are serialized without
//! `SQLITE_BUSY` retries. `synchronous = FULL`: an acknowledged batch survives power loss
//! (agents delete what the collector acknowledged, I1).

mod alerts;
mod anchor;
mod audit;
mod backup;
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
mod tests;
mod windows;

use std::path::Path;
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;

use driftwatch_common::api::v1::AgentCommand;
use rusqlite::{Connection, OpenFlags, Transaction, TransactionBehavior};
use tokio::sync::oneshot;
use uuid::Uuid;

pub use backup::{CopyFacts, check_copy};

use super::*;
use crate::audit::{AuditEntry, AuditHead, AuditKey, Checkpoint, NewAudit};
use crate::clock::Millis;
use crate::matcher::Outcome;
use crate::people::Person;
use crate::windows::{Window, WindowStatus};

/// A job for the database thread; `false` asks it to stop.
type Job = Box<dyn FnOnce(&mut Connection) -> bool + Send>;

#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    jobs: Mutex<Option<mpsc::Sender<Job>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SqliteStore")
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(err: rusqlite::Error) -> Self {
        StoreError::other(err)
    }
}

impl From<serde_json::Error> for StoreError {
    fn from(err: serde_json::Error) -> Self {
        StoreError::other(err)
    }
}

impl SqliteStore {
    /// Opens (creating if needed) and migrates the database at `path`.
    pub fn open(path: &Path) -> Result<SqliteStore> {
        let conn = Connection::open(path)?;
        Self::start(conn, true)
    }

    /// A private in-memory database (tests).
    pub fn open_in_memory() -> Result<SqliteStore> {
        Self::start(Connection::open_in_memory()?, true)
    }

    /// Opens an existing database without changing it (audit verification offline).
    pub fn open_read_only(path: &Path) -> Result<SqliteStore> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        Self::start(conn, false)
    }

    fn start(mut conn: Connection, writable: bool) -> Result<SqliteStore> {
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        if writable {
            conn.pragma_update(None, "journal_mode", "WAL")?;
            conn.pragma_update(None, "synchronous", "FULL")?;
        }
        conn.pragma_update(None, "foreign_keys", true)?;
        migrate(&mut conn, writable)?;

        let (sender, receiver) = mpsc::channel::<Job>();
        let thread = std::thread::Builder::new()
            .name("collector-db".into())
            .spawn(move || {
                while let Ok(job) = receiver.recv() {
                    // A panicking job drops its reply (the caller gets an error); keep serving.
                    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(&mut conn)))
                    {
                        Ok(true) => {}
                        Ok(false) => break,
                        Err(_) => tracing::error!("a database job panicked"),
                    }
                }
                // Dropping the connection checkpoints the WAL and closes the file.
            })
            .map_err(StoreError::other)?;
        Ok(SqliteStore {
            inner: Arc::new(Inner {
                jobs: Mutex::new(Some(sender)),
                thread: Mutex::new(Some(thread)),
            }),
        })
    }

    /// Finishes the queued jobs and closes the database; later calls fail.
    pub fn close(&self) {
        let sender = self.inner.jobs.lock().expect("jobs lock").take();
        if let Some(sender) = sender {
            let _ = sender.send(Box::new(|_| false));
        }
        let thread = self.inner.thread.lock().expect("thread lock").take();
        if let Some(thread) = thread {
            let _ = thread.join();
        }
    }

    /// Every audit entry appended from now on is signed with `key` (on the database
    /// thread, in the entry's own transaction), and every event decision sealed with a key
    /// derived from it (`audit::decisions`).
    pub async fn set_audit_key(&self, key: Arc<AuditKey>) -> Result<()> {
        self.call(move |conn| {
            let decision_key = key.decision_key();
            audit::set_signer(key);
            // Decisions stored before the key existed are sealed now: from here on, a
            // decision without a seal was edited outside the collector.
            let sealed = ingest::seal_unsealed_decisions(conn, &decision_key)?;
            if sealed > 0 {
                tracing::info!(
                    events = sealed,
                    "sealed the decisions of events stored before the signing key"
                );
            }
            Ok(())
        })
        .await
    }

    /// Runs `f` on the database thread.
    fn call<T, F>(&self, f: F) -> impl Future<Output = Result<T>> + Send + use<T, F>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job: Job = Box::new(move |conn| {
            let _ = reply.send(f(conn));
            true
        });
        let sent = match self.inner.jobs.lock().expect("jobs lock").as_ref() {
            Some(sender) => sender.send(job).is_ok(),
            None => false,
        };
        async move {
            if !sent {
                return Err(closed());
            }
            answer.await.map_err(|_| closed())?
        }
    }

    /// Runs `f` in an immediate (write-locking) transaction on the database thread.
    fn write<T, F>(&self, f: F) -> impl Future<Output = Result<T>> + Send + use<T, F>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction<'_>) -> Result<T> + Send + 'static,
    {
        self.call(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let value = f(&tx)?;
            tx.commit()?;
            Ok(value)
        })
    }
}

fn closed() -> StoreError {
    StoreError::other("the database is closed")
}

fn migrate(conn: &mut Connection, writable: bool) -> Result<()> {
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    let version = usize::try_from(version).unwrap_or(usize::MAX);
    let app_id: i32 = conn.pragma_query_value(None, "application_id", |r| r.get(0))?;
    let tables: i64 = conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))?;
    if app_id != migrations::APPLICATION_ID && (tables > 0 || version > 0) {
        return Err(StoreError::other(
            "this file is not a driftwatch collector database (wrong application id)",
        ));
    }
    if version > migrations::MIGRATIONS.len() {
        return Err(StoreError::other(format!(
            "the database has schema version {version}, newer than this collector knows ({}); \
             run a newer collector",
            migrations::MIGRATIONS.len()
        )));
    }
    if version == migrations::MIGRATIONS.len() {
        return Ok(());
    }
    if !writable {
        return Err(StoreError::other(format!(
            "the database has schema version {version}; start the collector once to migrate it"
        )));
    }
    let tx = conn.transaction_with_behavior(TransactionBehavior::Exclusive)?;
    for (at, migration) in migrations::MIGRATIONS.iter().enumerate().skip(version) {
        tx.execute_batch(migration)?;
        tx.pragma_update(None, "user_version", (at + 1) as i64)?;
    }
    tx.pragma_update(None, "application_id", migrations::APPLICATION_ID)?;
    tx.commit()?;
    Ok(())
}

impl Store for SqliteStore {
    fn ping(&self) -> impl Future<Output = Result<()>> + Send {
        self.call(|conn| {
            conn.query_row("SELECT 1", [], |_| Ok(()))?;
            Ok(())
        })
    }

    fn insert_token(
        &self,
        token: TokenRecord,
        audit: NewAudit,
    ) -> impl Future<Output = Result<()>> + Send {
        self.write(move |tx| identity::insert_token(tx, &token, &audit))
    }

    fn token(&self, id: Uuid) -> impl Future<Output = Result<TokenRecord>> + Send {
        self.call(move |conn| identity::token(conn, id))
    }

    fn tokens(&self) -> impl Future<Output = Result<Vec<TokenRecord>>> + Send {
        self.call(|conn| identity::tokens(conn))
    }

    fn revoke_token(
        &self,
        id: Uuid,
        at: Millis,
        audit: NewAudit,
    ) -> impl Future<Output = Result<TokenRecord>> + Send {
        self.write(move |tx| identity::revoke_token(tx, id, at, &audit))
    }

    fn people(&self) -> impl Future<Output = Result<Vec<Person>>> + Send {
        self.call(|conn| identity::people(conn))
    }

    fn insert_person(
        &self,
        person: Person,
        audit: NewAudit,
    ) -> impl Future<Output = Result<()>> + Send {
        self.write(move |tx| {
            identity::insert_person(tx, &person)?;
            audit::append(tx, &audit)?;
            Ok(())
        })
    }

    fn insert_person_token(
        &self,
        new_person: Option<(Person, NewAudit)>,
        token: TokenRecord,
        audit: NewAudit,
    ) -> impl Future<Output = Result<()>> + Send {
        self.write(move |tx| {
            if let Some((person, audit)) = &new_person {
                identity::insert_person(tx, person)?;
                audit::append(tx, audit)?;
            }
            identity::insert_token(tx, &token, &audit)
        })
    }

    fn token_lineage(&self, id: Uuid) -> impl Future<Output = Result<Vec<TokenRecord>>> + Send {
        self.call(move |conn| identity::token_lineage(conn, id))
    }

    fn adopt_tokens(
        &self,
        new_people: Vec<Person>,
        owners: Vec<(Uuid, Uuid)>,
        audits: Vec<NewAudit>,
    ) -> impl Future<Output = Result<()>> + Send {
        self.write(move |tx| {
            for person in &new_people {
                identity::insert_person(tx, person)?;
            }
            identity::set_owners(tx, &owners)?;
            for audit in &audits {
                audit::append(tx, audit)?;
            }
            Ok(())
        })
    }

    fn insert_enrollment_token(
        &self,
        token: EnrollmentTokenRecord,
        audit: NewAudit,
    ) -> impl Future<Output = Result<()>> + Send {
        self.write(move |tx| identity::insert_enrollment_token(tx, &token, &audit))
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
        self.write(move |tx| {
            identity::enroll(
                tx,
                token_id,
                &digest,
                &host,
                &credential,
                chain_key.as_ref(),
                &audit,
            )
        })
    }

    fn host(&self, id: Uuid) -> impl Future<Output = Result<Host>> + Send {
        self.call(move |conn| identity::host(conn, id))
    }

    fn hosts(&self) -> impl Future<Output = Result<Vec<Host>>> + Send {
        self.call(|conn| identity::hosts(conn))
    }

    fn ingest(
        &self,
        host_id: Uuid,
        events: Vec<Decided>,
        received_at: Millis,
    ) -> impl Future<Output = Result<IngestOutcome>> + Send {
        self.write(move |tx| ingest::ingest(tx, host_id, &events, received_at))
    }

    fn events(&self, drift_id: Uuid) -> impl Future<Output = Result<Vec<StoredEvent>>> + Send {
        self.call(move |conn| ingest::events_of(conn, drift_id))
    }

    fn spool_marks(&self, host_id: Uuid) -> impl Future<Output = Result<Vec<SpoolMark>>> + Send {
        self.call(move |conn| hosts::spool_marks(conn, host_id))
    }

    fn raise_clock_alert(
        &self,
        alert: NewAlert,
        at: Millis,
        burst_ms: i64,
    ) -> impl Future<Output = Result<bool>> + Send {
        self.write(move |tx| hosts::raise_clock_alert(tx, &alert, at, burst_ms))
    }

    fn heartbeat(
        &self,
        record: HeartbeatRecord,
        alerts: Vec<NewAlert>,
    ) -> impl Future<Output = Result<Vec<AgentCommand>>> + Send {
        self.write(move |tx| hosts::heartbeat(tx, &record, &alerts))
    }

    fn anchor(
        &self,
        host_id: Uuid,
        roots: Vec<ContentHash>,
        commands: Vec<Uuid>,
    ) -> impl Future<Output = Result<AnchorView>> + Send {
        self.call(move |conn| anchor::view(conn, host_id, &roots, &commands))
    }

    fn save_anchor(&self, change: AnchorChange) -> impl Future<Output = Result<bool>> + Send {
        self.write(move |tx| anchor::save(tx, &change))
    }

    fn insert_window(
        &self,
        window: Window,
        audit: NewAudit,
    ) -> impl Future<Output = Result<()>> + Send {
        self.write(move |tx| windows::insert(tx, &window, &audit))
    }

    fn window(&self, id: Uuid) -> impl Future<Output = Result<Window>> + Send {
        self.call(move |conn| windows::get(conn, id))
    }

    fn windows(
        &self,
        status: Option<WindowStatus>,
    ) -> impl Future<Output = Result<Vec<Window>>> + Send {
        self.call(move |conn| windows::list(conn, status))
    }

    fn update_window(
        &self,
        window: Window,
        from: WindowStatus,
        audit: NewAudit,
    ) -> impl Future<Output = Result<()>> + Send {
        self.write(move |tx| windows::update(tx, &window, from, &audit))
    }

    fn close_window(
        &self,
        window: Window,
        audit: NewAudit,
    ) -> impl Future<Output = Result<CloseOutcome>> + Send {
        self.write(move |tx| windows::close(tx, &window, &audit))
    }

    fn review_candidates(
        &self,
        from: Millis,
        to: Millis,
    ) -> impl Future<Output = Result<Vec<ReviewCandidate>>> + Send {
        self.call(move |conn| windows::review_candidates(conn, from, to))
    }

    fn apply_review(
        &self,
        window_id: Uuid,
        decisions: Vec<(Uuid, Outcome)>,
        at: Millis,
        by: String,
    ) -> impl Future<Output = Result<ReviewOutcome>> + Send {
        self.write(move |tx| windows::apply_review(tx, window_id, &decisions, at, &by))
    }

    fn drift_items(
        &self,
        filter: DriftFilter,
    ) -> impl Future<Output = Result<Vec<DriftItem>>> + Send {
        self.call(move |conn| drift::list(conn, &filter))
    }

    fn drift_item(&self, id: Uuid) -> impl Future<Output = Result<DriftItem>> + Send {
        self.call(move |conn| drift::get(conn, id))
    }

    fn drift_record(
        &self,
        id: Uuid,
        timeline_limit: u32,
    ) -> impl Future<Output = Result<DriftRecord>> + Send {
        // One read transaction: the item, its events and history agree with each other.
        self.call(move |conn| {
            let tx = conn.transaction()?;
            let record = drift::record(&tx, id, timeline_limit)?;
            tx.commit()?;
            Ok(record)
        })
    }

    fn resolve_drift(
        &self,
        id: Uuid,
        resolution: Resolution,
        audit: NewAudit,
    ) -> impl Future<Output = Result<DriftItem>> + Send {
        self.write(move |tx| drift::resolve(tx, id, &resolution, &audit))
    }

    fn raise_due_alerts(
        &self,
        now: Millis,
        hold_ms: i64,
        burst_ms: i64,
        words: AlertWords,
    ) -> impl Future<Output = Result<u32>> + Send {
        self.write(move |tx| drift::raise_due(tx, now, hold_ms, burst_ms, words))
    }

    fn raise_silent_alerts(
        &self,
        now: Millis,
        silent_after_ms: i64,
        words: AlertWords,
    ) -> impl Future<Output = Result<u32>> + Send {
        self.write(move |tx| hosts::raise_silent(tx, now, silent_after_ms, words))
    }

    fn raise_emergency_alerts(
        &self,
        now: Millis,
        deadline_ms: i64,
        words: AlertWords,
    ) -> impl Future<Output = Result<u32>> + Send {
        self.write(move |tx| windows::raise_emergency(tx, now, deadline_ms, words))
    }

    fn undelivered_alerts(&self, limit: u32) -> impl Future<Output = Result<Vec<Alert>>> + Send {
        self.call(move |conn| alerts::list(conn, true, limit))
    }

    fn due_deliveries(
        &self,
        sink: String,
        now: Millis,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<Alert>>> + Send {
        self.call(move |conn| alerts::due_for(conn, &sink, now, limit))
    }

    fn record_delivery(
        &self,
        attempt: DeliveryAttempt,
    ) -> impl Future<Output = Result<bool>> + Send {
        self.write(move |tx| alerts::record_delivery(tx, &attempt))
    }

    fn settle_alerts(
        &self,
        sinks: Vec<String>,
        at: Millis,
    ) -> impl Future<Output = Result<u32>> + Send {
        self.write(move |tx| alerts::settle(tx, &sinks, at))
    }

    fn delivery_backlog(
        &self,
        sinks: Vec<String>,
    ) -> impl Future<Output = Result<Vec<SinkBacklog>>> + Send {
        self.call(move |conn| alerts::backlog(conn, &sinks))
    }

    fn alerts(&self, limit: u32) -> impl Future<Output = Result<Vec<Alert>>> + Send {
        self.call(move |conn| alerts::list(conn, false, limit))
    }

    fn dead_letters(&self, limit: u32) -> impl Future<Output = Result<Vec<Alert>>> + Send {
        self.call(move |conn| alerts::dead_letters(conn, limit))
    }

    fn retry_dead_letter(
        &self,
        alert_id: Uuid,
        sink: String,
        at: Millis,
        audit: NewAudit,
    ) -> impl Future<Output = Result<Alert>> + Send {
        self.write(move |tx| {
            alerts::retry_dead_letter(tx, alert_id, &sink, at)?;
            audit::append(tx, &audit)?;
            alerts::get(tx, alert_id)
        })
    }

    fn retry_dead_letters(
        &self,
        sink: String,
        at: Millis,
        audit: NewAudit,
    ) -> impl Future<Output = Result<u32>> + Send {
        self.write(move |tx| {
            let retried = alerts::retry_dead_letters(tx, &sink, at)?;
            // The entry records how many; retrying nothing is not an action.
            if retried > 0 {
                let mut audit = audit;
                audit.details["retried"] = serde_json::json!(retried);
                audit::append(tx, &audit)?;
            }
            Ok(retried)
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
        self.write(move |tx| {
            alerts::drop_dead_letter(tx, alert_id, &sink, &dropped, &sinks)?;
            audit::append(tx, &audit)?;
            alerts::get(tx, alert_id)
        })
    }

    fn note_config(
        &self,
        key: String,
        value: String,
        audit: NewAudit,
    ) -> impl Future<Output = Result<bool>> + Send {
        self.write(move |tx| audit::note_config(tx, &key, &value, &audit))
    }

    fn audit_log(
        &self,
    ) -> impl Future<Output = Result<(Vec<AuditEntry>, Option<AuditHead>)>> + Send {
        self.call(|conn| audit::log(conn))
    }

    fn audit_head(&self) -> impl Future<Output = Result<Option<AuditHead>>> + Send {
        self.call(|conn| audit::head(conn))
    }

    fn insert_checkpoint(
        &self,
        checkpoint: Checkpoint,
        at: Millis,
    ) -> impl Future<Output = Result<()>> + Send {
        self.write(move |tx| audit::insert_checkpoint(tx, &checkpoint, at))
    }

    fn audit_checkpoints(&self) -> impl Future<Output = Result<Vec<Checkpoint>>> + Send {
        self.call(|conn| audit::checkpoints(conn))
    }

    fn insert_alert(&self, alert: NewAlert, at: Millis) -> impl Future<Output = Result<()>> + Send {
        self.write(move |tx| alerts::insert_alert(tx, &alert, at).map(|_| ()))
    }

    fn stats(
        &self,
        now: Millis,
        silent_after_ms: i64,
    ) -> impl Future<Output = Result<Stats>> + Send {
        self.call(move |conn| hosts::stats(conn, now, silent_after_ms))
    }

    fn export_records(
        &self,
        query: ExportQuery,
        audit: NewAudit,
    ) -> impl Future<Output = Result<ExportRecords>> + Send {
        self.write(move |tx| reports::export_records(tx, &query, &audit))
    }

    fn window_records(
        &self,
        window_id: Uuid,
        max_rows: u32,
        audit: NewAudit,
    ) -> impl Future<Output = Result<WindowRecords>> + Send {
        self.write(move |tx| reports::window_records(tx, window_id, max_rows, &audit))
    }

    fn prune(
        &self,
        plan: crate::retention::PrunePlan,
        at: Millis,
    ) -> impl Future<Output = Result<crate::retention::PruneCounts>> + Send {
        self.write(move |tx| retention::prune(tx, &plan, at))
    }

    // --- Web console sessions (issue 11) ---

    fn insert_session(
        &self,
        session: WebSession,
        audit: NewAudit,
    ) -> impl Future<Output = Result<()>> + Send {
        self.write(move |tx| sessions::insert(tx, &session, &audit))
    }

    fn use_session(
        &self,
        digest: [u8; 32],
        now: Millis,
    ) -> impl Future<Output = Result<Option<WebSession>>> + Send {
        self.write(move |tx| sessions::use_session(tx, &digest, now))
    }

    fn end_session(
        &self,
        digest: [u8; 32],
        at: Millis,
        audit: Option<NewAudit>,
    ) -> impl Future<Output = Result<bool>> + Send {
        self.write(move |tx| sessions::end(tx, &digest, at, audit.as_ref()))
    }

    fn prune_sessions(
        &self,
        expired_before: Millis,
        idle_before: Millis,
    ) -> impl Future<Output = Result<u32>> + Send {
        self.write(move |tx| sessions::prune(tx, expired_before, idle_before))
    }

    fn events_by_id(
        &self,
        ids: Vec<Uuid>,
    ) -> impl Future<Output = Result<Vec<StoredEvent>>> + Send {
        self.call(move |conn| ingest::events_by_id(conn, &ids))
    }

    fn drift_changes(
        &self,
        after: i64,
        limit: u32,
    ) -> impl Future<Output = Result<DriftChanges>> + Send {
        self.call(move |conn| {
            let tx = conn.transaction()?;
            let changes = drift::changes(&tx, after, limit)?;
            tx.commit()?;
            Ok(changes)
        })
    }

    fn open_drift(
        &self,
        query: OpenDriftQuery,
    ) -> impl Future<Output = Result<Vec<DriftItem>>> + Send {
        self.call(move |conn| drift::open_matching(conn, &query))
    }

    // Listings with a cursor (issue 10).
    fn drift_page(
        &self,
        filter: DriftFilter,
        after: Option<(Millis, Uuid)>,
    ) -> impl Future<Output = Result<Vec<DriftItem>>> + Send {
        self.call(move |conn| drift::page(conn, &filter, after))
    }

    fn hosts_page(
        &self,
        after: Option<(String, Uuid)>,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<Host>>> + Send {
        self.call(move |conn| identity::hosts_page(conn, after, limit))
    }

    fn windows_page(
        &self,
        status: Option<WindowStatus>,
        after: Option<(Millis, Uuid)>,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<Window>>> + Send {
        self.call(move |conn| windows::page(conn, status, after, limit))
    }

    fn audit_page(
        &self,
        after: u64,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<AuditEntry>>> + Send {
        self.call(move |conn| audit::page(conn, after, limit))
    }

    // One node writes a SQLite database: its index write lock orders window changes and
    // matching, so there is no other node to follow, no lease to share, no claim to race.
    fn windows_version(&self) -> impl Future<Output = Result<i64>> + Send {
        std::future::ready(Ok(0))
    }

    fn ingest_at(
        &self,
        host_id: Uuid,
        events: Vec<Decided>,
        received_at: Millis,
        _windows_version: i64,
    ) -> impl Future<Output = Result<Ingested>> + Send {
        let stored = self.ingest(host_id, events, received_at);
        async move { stored.await.map(Ingested::Stored) }
    }

    fn take_lease(
        &self,
        _name: String,
        _holder: Uuid,
        _ttl_ms: i64,
    ) -> impl Future<Output = Result<bool>> + Send {
        std::future::ready(Ok(true))
    }

    fn claim_delivery(
        &self,
        _alert_id: Uuid,
        _sink: String,
        _holder: Uuid,
        _now: Millis,
        _until: Millis,
    ) -> impl Future<Output = Result<bool>> + Send {
        std::future::ready(Ok(true))
    }

    fn windows_hint(&self, timeout: std::time::Duration) -> impl Future<Output = ()> + Send {
        tokio::time::sleep(timeout)
    }
}
