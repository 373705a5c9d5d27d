//! The conformance stories against a real PostgreSQL server, each in a database of its
//! own (a random name, dropped after). The server: `DRIFTWATCH_TEST_POSTGRES_URL`, a role
//! that may create databases (`scripts/test-postgres.sh start DIR` prints it). Without it
//! these tests say so and pass, unless `DRIFTWATCH_REQUIRE_POSTGRES=1` (CI), then they fail.

use std::str::FromStr;

use driftwatch_config::collector::{PostgresSettings, PostgresTls};

use super::*;

pub const URL_VAR: &str = "DRIFTWATCH_TEST_POSTGRES_URL";
pub const REQUIRE_VAR: &str = "DRIFTWATCH_REQUIRE_POSTGRES";

/// A fresh database on the test server, dropped when this is dropped.
pub struct TestDatabase {
    admin: tokio_postgres::Config,
    pub name: String,
    pub settings: PostgresSettings,
}

impl TestDatabase {
    /// `None` (after saying why) when no server is configured and none is required.
    pub async fn create(test: &str) -> Option<TestDatabase> {
        let Ok(url) = std::env::var(URL_VAR) else {
            if std::env::var(REQUIRE_VAR).is_ok_and(|v| v == "1") {
                panic!("{test}: {REQUIRE_VAR}=1 but {URL_VAR} is not set");
            }
            eprintln!(
                "SKIPPED {test}: needs PostgreSQL; set {URL_VAR} \
                 (eval \"$(scripts/test-postgres.sh start /tmp/dw-pg)\")"
            );
            return None;
        };
        let admin = tokio_postgres::Config::from_str(&url).expect("a valid test URL");
        let name = format!("dw_test_{}", Uuid::now_v7().simple());
        let client = connect(&admin).await;
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .expect("create the test database");
        let settings = PostgresSettings {
            url: with_database(&url, &name),
            password_file: None,
            pool_size: 4,
            tls: PostgresTls::Disable,
        };
        Some(TestDatabase {
            admin,
            name,
            settings,
        })
    }

    pub async fn open(&self) -> PostgresStore {
        PostgresStore::open(&self.settings)
            .await
            .expect("open the test database")
    }

    /// A connection to the test database itself, to look or tamper.
    pub async fn client(&self) -> tokio_postgres::Client {
        let mut config = self.admin.clone();
        config.dbname(&self.name);
        connect(&config).await
    }
}

/// Dropped even when the test panics: on a thread of its own with its own runtime, since
/// the test's runtime may be the one unwinding.
impl Drop for TestDatabase {
    fn drop(&mut self) {
        let admin = self.admin.clone();
        let name = self.name.clone();
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            runtime.block_on(async {
                let client = connect(&admin).await;
                client
                    .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .await
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("could not drop the test database {}", self.name);
        }
    }
}

async fn connect(config: &tokio_postgres::Config) -> tokio_postgres::Client {
    let (client, connection) = config
        .connect(tokio_postgres::NoTls)
        .await
        .expect("connect to the test server");
    tokio::spawn(connection);
    client
}

/// `url` naming database `name` instead of its own.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let authority_end = base[scheme_end..]
        .find('/')
        .map_or(base.len(), |i| scheme_end + i);
    let mut out = format!("{}/{name}", &base[..authority_end]);
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    out
}

/// Runs `story` on a store in a fresh database.
macro_rules! story {
    ($name:ident, $story:path) => {
        #[tokio::test]
        async fn $name() {
            let Some(db) = TestDatabase::create(stringify!($name)).await else {
                return;
            };
            let store = db.open().await;
            $story(store.clone()).await;
            store.close();
        }
    };
}

story!(
    postgres_passes_the_store_story,
    crate::store::conformance::story
);
story!(
    postgres_passes_the_people_story,
    crate::store::conformance_people::story
);
story!(
    postgres_keeps_spool_marks_and_bounds,
    crate::store::conformance::clock_story
);
story!(
    postgres_keeps_anchored_baselines,
    crate::store::conformance_anchor::story
);
story!(
    postgres_passes_the_chain_story,
    crate::store::conformance_chain::story
);
story!(
    postgres_passes_the_evidence_story,
    crate::store::conformance_evidence::story
);
story!(
    postgres_passes_the_retention_story,
    crate::store::conformance_retention::story
);

#[test]
fn a_url_is_pointed_at_another_database() {
    assert_eq!(
        with_database("postgres://pg@/postgres?host=/tmp/x", "dw_1"),
        "postgres://pg@/dw_1?host=/tmp/x"
    );
    assert_eq!(
        with_database("postgres://pg@db:5432/postgres", "dw_1"),
        "postgres://pg@db:5432/dw_1"
    );
    assert_eq!(
        with_database("postgres://pg@db", "dw_1"),
        "postgres://pg@db/dw_1"
    );
}

#[tokio::test]
async fn two_nodes_starting_together_migrate_once() {
    let Some(db) = TestDatabase::create("two_nodes_starting_together_migrate_once").await else {
        return;
    };
    let (a, b) = tokio::join!(
        PostgresStore::open(&db.settings),
        PostgresStore::open(&db.settings)
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    a.ping().await.unwrap();
    b.ping().await.unwrap();
    let client = db.client().await;
    let version: i64 = client
        .query_one("SELECT version FROM driftwatch_schema", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(version, migrations::MIGRATIONS.len() as i64);
    let rows: i64 = client
        .query_one("SELECT count(*) FROM driftwatch_schema", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows, 1, "one version row");
    a.close();
    b.close();
    // A third start finds nothing to do.
    PostgresStore::open(&db.settings).await.unwrap().close();
}

#[tokio::test]
async fn newer_and_foreign_databases_are_refused() {
    let Some(db) = TestDatabase::create("newer_and_foreign_databases_are_refused").await else {
        return;
    };
    PostgresStore::open(&db.settings).await.unwrap().close();
    let client = db.client().await;
    client
        .batch_execute("UPDATE driftwatch_schema SET version = 99")
        .await
        .unwrap();
    let err = PostgresStore::open(&db.settings)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("schema version 99, newer than this collector knows"),
        "{err}"
    );

    let Some(foreign) = TestDatabase::create("newer_and_foreign_databases_are_refused").await
    else {
        return;
    };
    foreign
        .client()
        .await
        .batch_execute("CREATE TABLE orders (id int)")
        .await
        .unwrap();
    let err = PostgresStore::open(&foreign.settings)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("not a driftwatch collector's"), "{err}");
}

#[tokio::test]
async fn the_audit_table_refuses_edits() {
    let Some(db) = TestDatabase::create("the_audit_table_refuses_edits").await else {
        return;
    };
    let store = db.open().await;
    store
        .note_config(
            "sinks".into(),
            "a".into(),
            NewAudit::new(1, "alice", "config.changed", "sinks", serde_json::json!({})),
        )
        .await
        .unwrap();
    let client = db.client().await;
    for attack in [
        "UPDATE audit SET actor = 'mallory'",
        "DELETE FROM audit",
        "TRUNCATE audit",
    ] {
        let err = client.batch_execute(attack).await.unwrap_err();
        let text = format!("{err:?}");
        assert!(text.contains("append-only"), "{attack}: {text}");
    }
    let (log, _) = store.audit_log().await.unwrap();
    assert_eq!(log[0].actor, "alice");
    store.close();
}

/// Two nodes (two pools) appending at once: one chain, every entry linked to the one
/// before it, no number taken twice.
#[tokio::test]
async fn concurrent_appends_from_two_nodes_keep_one_audit_chain() {
    let Some(db) =
        TestDatabase::create("concurrent_appends_from_two_nodes_keep_one_audit_chain").await
    else {
        return;
    };
    let a = db.open().await;
    let b = db.open().await;
    let mut tasks = Vec::new();
    for n in 0..40 {
        let node = if n % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            node.note_config(
                format!("key{n}"),
                "v".into(),
                NewAudit::new(
                    n,
                    "alice",
                    "config.changed",
                    "x",
                    serde_json::json!({ "n": n }),
                ),
            )
            .await
        }));
    }
    for task in tasks {
        assert!(task.await.unwrap().unwrap());
    }
    let (log, head) = a.audit_log().await.unwrap();
    assert_eq!(log.len(), 40);
    let report = crate::audit::verify_anchored(
        &log,
        head,
        crate::audit::Anchors {
            key: None,
            held: &[],
            stored: &[],
        },
    );
    assert!(report.ok, "{:?}", report.text_lines());
    a.close();
    b.close();
}

/// Two nodes ingesting batches of one agent at once: the host row lock orders them, so the
/// chain is checked in order and nothing is lost or called a fork.
#[tokio::test]
async fn concurrent_ingest_of_one_agent_on_two_nodes_checks_its_chain_in_order() {
    use crate::store::conformance_evidence::{enroll, event};
    let Some(db) = TestDatabase::create(
        "concurrent_ingest_of_one_agent_on_two_nodes_checks_its_chain_in_order",
    )
    .await
    else {
        return;
    };
    let a = db.open().await;
    let b = db.open().await;
    let host = enroll(&a, "web-1", 1).await;
    // 40 events chained, in batches of 2 sent alternately to the two nodes, each batch
    // sent once its predecessor was sent (like an agent's spool), without waiting for the
    // answer.
    let mut events: Vec<driftwatch_common::api::v1::DriftEvent> = Vec::new();
    for n in 0..40 {
        let next = event(
            host.id,
            events.last(),
            &format!("/etc/f{n}"),
            1_800_000_000_000 + n,
        );
        events.push(next);
    }
    let decided: Vec<Decided> = events
        .iter()
        .map(|event| Decided {
            event: event.clone(),
            outcome: Outcome::Untraced,
            event_time: 1_800_000_000_000,
            spool: crate::spool_time::SpoolTime::default(),
        })
        .collect();
    let mut tasks = Vec::new();
    for (n, batch) in decided.chunks(2).enumerate() {
        let node = if n % 2 == 0 { a.clone() } else { b.clone() };
        let batch = batch.to_vec();
        // Also each batch twice, on both nodes: a retry racing the original.
        let other = if n % 2 == 0 { b.clone() } else { a.clone() };
        let again = batch.clone();
        tasks.push(tokio::spawn(async move {
            node.ingest(host.id, batch, 1_800_000_001_000).await
        }));
        tasks.push(tokio::spawn(async move {
            other.ingest(host.id, again, 1_800_000_001_000).await
        }));
    }
    let mut accepted = 0;
    let mut duplicates = 0;
    for task in tasks {
        let outcome = task.await.unwrap().unwrap();
        accepted += outcome.accepted;
        duplicates += outcome.duplicates;
    }
    assert_eq!((accepted, duplicates), (40, 40), "every event stored once");
    let stored = a.host(host.id).await.unwrap();
    assert_eq!(stored.stored_seq, 40);
    let client = db.client().await;
    let rows: i64 = client
        .query_one("SELECT count(*) FROM events", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows, 40);
    let forks: i64 = client
        .query_one(
            "SELECT count(*) FROM events WHERE chain NOT IN ('ok', 'gap', 'late')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        forks, 0,
        "no fork, conflict or splice between the two nodes"
    );
    a.close();
    b.close();
}

story!(
    postgres_passes_the_sessions_story,
    crate::store::conformance_sessions::story
);
story!(
    postgres_reads_a_drift_record,
    crate::store::conformance_detail::story
);
story!(
    postgres_reads_the_inbox_filtered,
    crate::store::conformance_inbox::story
);
story!(
    postgres_keeps_the_live_cursor,
    crate::store::conformance_live::story
);
story!(
    postgres_pages_its_listings,
    crate::store::conformance_pages::story
);

/// `migrate-store` (issue 10): a SQLite collector's records, copied, read the same through
/// the PostgreSQL store; the audit log keeps its chain and head; the live cursor goes on
/// after SQLite's; a second copy into the now full database is refused and changes nothing.
#[tokio::test]
async fn migrate_store_copies_a_sqlite_collector_and_refuses_a_full_target() {
    let Some(db) = TestDatabase::create("migrate_store").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("collector.db");
    let sqlite = SqliteStore::open(&path).unwrap();
    crate::store::conformance_pages::story(sqlite.clone()).await;
    let log = sqlite.audit_log().await.unwrap();
    let drift = sqlite.drift_items(DriftFilter::default()).await.unwrap();
    let hosts = sqlite.hosts().await.unwrap();
    let windows = sqlite.windows(None).await.unwrap();
    let changes = sqlite.drift_changes(0, 100).await.unwrap();
    let mut events = Vec::new();
    for item in &drift {
        events.push(sqlite.events(item.id).await.unwrap());
    }
    sqlite.close();

    let mut seen = Vec::new();
    let migrated = crate::store::migrate::migrate(&path, &db.settings, |table, rows| {
        seen.push((table.to_owned(), rows));
    })
    .await
    .unwrap();
    assert!(migrated.counts_agree(), "{migrated:?}");
    let count = |table: &str| {
        migrated
            .tables
            .iter()
            .find(|t| t.table == table)
            .map(|t| t.postgres)
    };
    assert_eq!(count("hosts"), Some(5));
    assert_eq!(count("events"), Some(5));
    assert_eq!(count("drift"), Some(5));
    assert_eq!(count("windows"), Some(4));
    assert_eq!(count("audit"), Some(log.0.len() as u64));
    assert!(
        seen.iter().any(|(t, n)| t == "events" && *n == 5),
        "{seen:?}"
    );

    let pg = db.open().await;
    assert_eq!(
        pg.audit_log().await.unwrap(),
        log,
        "the same chain and head"
    );
    assert_eq!(pg.drift_items(DriftFilter::default()).await.unwrap(), drift);
    assert_eq!(pg.hosts().await.unwrap(), hosts);
    assert_eq!(pg.windows(None).await.unwrap(), windows);
    for (item, events) in drift.iter().zip(&events) {
        assert_eq!(&pg.events(item.id).await.unwrap(), events);
    }
    let copied = pg.drift_changes(0, 100).await.unwrap();
    assert_eq!(copied, changes, "the live cursor's numbers are kept");

    // The copy is a working store: a new audit entry extends the copied chain.
    let before = pg.audit_head().await.unwrap().unwrap();
    pg.note_config(
        "sinks".into(),
        "jsonl".into(),
        crate::audit::NewAudit::new(0, "test", "config.changed", "config", serde_json::json!({})),
    )
    .await
    .unwrap();
    let after = pg.audit_head().await.unwrap().unwrap();
    assert_eq!(after.seq, before.seq + 1);
    let (entries, head) = pg.audit_log().await.unwrap();
    let report = crate::audit::verify_anchored(
        &entries,
        head,
        crate::audit::Anchors {
            key: None,
            held: &[],
            stored: &[],
        },
    );
    assert!(report.ok, "the chain verifies on PostgreSQL: {report:?}");
    pg.close();

    let refused = crate::store::migrate::migrate(&path, &db.settings, |_, _| {})
        .await
        .unwrap_err();
    assert!(
        matches!(&refused, StoreError::Conflict(why) if why.contains("not empty") && why.contains("audit")),
        "{refused}"
    );
    let pg = db.open().await;
    assert_eq!(pg.hosts().await.unwrap(), hosts, "nothing changed");
    assert_eq!(pg.audit_log().await.unwrap().0.len(), log.0.len() + 1);
    pg.close();
}

/// The live stream's cursor under two writers on two nodes: a reader following it with
/// `drift_changes` never passes a number that commits later (`drift::HISTORY_LOCK`), so at
/// the end every number stored is one the reader saw, each once, in order.
#[tokio::test]
async fn two_writers_never_commit_a_number_the_reader_passed() {
    use crate::store::conformance_evidence::{enroll, event};
    let Some(db) =
        TestDatabase::create("two_writers_never_commit_a_number_the_reader_passed").await
    else {
        return;
    };
    let a = db.open().await;
    let b = db.open().await;
    const PER_WRITER: i64 = 60;
    let mut writers = Vec::new();
    for (n, node) in [a.clone(), b.clone()].into_iter().enumerate() {
        let host = enroll(&node, &format!("web-{n}"), 10 + n as u8).await;
        writers.push(tokio::spawn(async move {
            let mut last: Option<driftwatch_common::api::v1::DriftEvent> = None;
            for i in 0..PER_WRITER {
                let next = event(
                    host.id,
                    last.as_ref(),
                    &format!("/etc/f{i}"),
                    1_800_000_000_000 + i,
                );
                let decided = Decided {
                    event: next.clone(),
                    outcome: Outcome::Untraced,
                    event_time: 1_800_000_000_000 + i,
                    spool: crate::spool_time::SpoolTime::default(),
                };
                node.ingest(host.id, vec![decided], 1_800_000_001_000 + i)
                    .await
                    .unwrap();
                last = Some(next);
            }
        }));
    }
    // The reader follows the cursor while both write, on a third pool.
    let reader = db.open().await;
    let mut seen = Vec::new();
    let mut cursor = 0;
    loop {
        let done = writers.iter().all(|w| w.is_finished());
        let page = reader.drift_changes(cursor, 7).await.unwrap();
        for change in &page.changes {
            assert!(
                change.seq > cursor,
                "numbers only grow: {change:?} after {cursor}"
            );
            assert!(change.seq <= page.head, "the head covers what it read");
            cursor = change.seq;
            seen.push(change.seq);
        }
        if done && page.changes.is_empty() {
            break;
        }
        tokio::task::yield_now().await;
    }
    for writer in writers {
        writer.await.unwrap();
    }
    let all = reader.drift_changes(0, 10_000).await.unwrap();
    let stored: Vec<i64> = all.changes.iter().map(|c| c.seq).collect();
    assert_eq!(
        stored.len(),
        2 * PER_WRITER as usize,
        "each event opened drift"
    );
    assert_eq!(
        seen, stored,
        "the reader saw every number stored, once and in order (none committed behind it)"
    );
    assert_eq!(all.head, *stored.last().unwrap());
    a.close();
    b.close();
    reader.close();
}

/// While a transaction holds the history lock, another node's ingest waits for it instead
/// of taking a number that would commit out of order; readers are not held up.
#[tokio::test]
async fn ingest_waits_for_the_history_lock_and_readers_do_not() {
    use crate::store::conformance_evidence::{enroll, event};
    let Some(db) =
        TestDatabase::create("ingest_waits_for_the_history_lock_and_readers_do_not").await
    else {
        return;
    };
    let store = db.open().await;
    let host = enroll(&store, "web-1", 3).await;
    let mut holder = db.client().await;
    let held = holder.transaction().await.unwrap();
    held.execute(
        "SELECT pg_advisory_xact_lock($1)",
        &[&super::drift::HISTORY_LOCK],
    )
    .await
    .unwrap();
    let first = event(host.id, None, "/etc/a", 1_800_000_000_000);
    let node = store.clone();
    let ingest = tokio::spawn(async move {
        node.ingest(
            host.id,
            vec![Decided {
                event: first,
                outcome: Outcome::Untraced,
                event_time: 1_800_000_000_000,
                spool: crate::spool_time::SpoolTime::default(),
            }],
            1_800_000_001_000,
        )
        .await
    });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(
        !ingest.is_finished(),
        "the ingest waits for the history lock"
    );
    let before = store.drift_changes(0, 10).await.unwrap();
    assert_eq!(before, DriftChanges::default(), "readers answer meanwhile");
    held.rollback().await.unwrap();
    let outcome = ingest.await.unwrap().unwrap();
    assert_eq!(outcome.accepted, 1);
    let after = store.drift_changes(0, 10).await.unwrap();
    assert_eq!((after.changes.len(), after.head), (1, 1));
    store.close();
}

/// A database of schema 1 whose history ids went up to 5 and whose rows retention deleted:
/// migration 2 starts the head there, so no number is handed out a second time.
#[tokio::test]
async fn the_history_head_starts_above_every_id_schema_1_handed_out() {
    use crate::store::conformance_evidence::{enroll, event};
    let Some(db) =
        TestDatabase::create("the_history_head_starts_above_every_id_schema_1_handed_out").await
    else {
        return;
    };
    let client = db.client().await;
    client
        .batch_execute(&format!(
            "CREATE TABLE driftwatch_schema (version bigint NOT NULL);
             INSERT INTO driftwatch_schema (version) VALUES (1);
             {}
             SELECT nextval('drift_history_id_seq') FROM generate_series(1, 5);",
            super::migrations::MIGRATIONS[0]
        ))
        .await
        .unwrap();
    let store = db.open().await;
    let head = store.drift_changes(0, 10).await.unwrap();
    assert_eq!(
        head,
        DriftChanges {
            changes: vec![],
            head: 5
        }
    );
    let host = enroll(&store, "web-1", 5).await;
    let first = event(host.id, None, "/etc/a", 1_800_000_000_000);
    store
        .ingest(
            host.id,
            vec![Decided {
                event: first,
                outcome: Outcome::Untraced,
                event_time: 1_800_000_000_000,
                spool: crate::spool_time::SpoolTime::default(),
            }],
            1_800_000_001_000,
        )
        .await
        .unwrap();
    let after = store.drift_changes(5, 10).await.unwrap();
    assert_eq!(after.changes.iter().map(|c| c.seq).collect::<Vec<_>>(), [6]);
    store.close();
}
