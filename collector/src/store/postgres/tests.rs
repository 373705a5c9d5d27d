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
        let name = format!("dw_test_{}", Uuid::new_v4().simple());
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

    pub async fn drop_database(self, store: Option<PostgresStore>) {
        if let Some(store) = store {
            store.close();
        }
        let client = connect(&self.admin).await;
        client
            .batch_execute(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name))
            .await
            .expect("drop the test database");
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
            db.drop_database(Some(store)).await;
        }
    };
}

story!(postgres_passes_the_store_story, crate::store::conformance::story);
story!(postgres_passes_the_people_story, crate::store::conformance_people::story);
story!(postgres_keeps_spool_marks_and_bounds, crate::store::conformance::clock_story);
story!(postgres_keeps_anchored_baselines, crate::store::conformance_anchor::story);
story!(postgres_passes_the_chain_story, crate::store::conformance_chain::story);
story!(postgres_passes_the_evidence_story, crate::store::conformance_evidence::story);
story!(postgres_passes_the_retention_story, crate::store::conformance_retention::story);

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
    assert_eq!(with_database("postgres://pg@db", "dw_1"), "postgres://pg@db/dw_1");
}
