//! `driftwatch-collector` on the PostgreSQL store (`[store] backend = "postgres"`), through
//! the real binaries: an agent enrolls and reports, an approved window authorizes its
//! change, an untraced change is listed as drift, and the audit log verifies, all kept in
//! a database of its own on the test server (`DRIFTWATCH_TEST_POSTGRES_URL`, from
//! `scripts/test-postgres.sh start DIR`; CI sets `DRIFTWATCH_REQUIRE_POSTGRES=1`).

use std::process::Command;

use driftwatch_common::api::v1::DriftEvent;
use driftwatch_tests::collector::{Collector, FakeAgent};
use driftwatch_tests::skip_unless_required;
use serde_json::Value;

const URL_VAR: &str = "DRIFTWATCH_TEST_POSTGRES_URL";

/// A database created for one test with `psql`, dropped when this is dropped.
pub(crate) struct Database {
    admin_url: String,
    name: String,
}

impl Database {
    pub(crate) fn create() -> Option<Database> {
        let Ok(admin_url) = std::env::var(URL_VAR) else {
            skip_unless_required(
                "DRIFTWATCH_REQUIRE_POSTGRES",
                &format!(
                    "the PostgreSQL e2e test needs a server: set {URL_VAR} \
                     (eval \"$(scripts/test-postgres.sh start /tmp/dw-pg)\")"
                ),
            );
            return None;
        };
        let name = format!("dw_e2e_{}", uuid::Uuid::now_v7().simple());
        let database = Database { admin_url, name };
        database.psql(
            &database.admin_url,
            &format!("CREATE DATABASE {}", database.name),
        );
        Some(database)
    }

    /// The server's URL naming this database instead.
    pub(crate) fn url(&self) -> String {
        let (base, query) = self
            .admin_url
            .split_once('?')
            .map_or((self.admin_url.as_str(), None), |(b, q)| (b, Some(q)));
        let authority_end = base[base.find("://").map_or(0, |i| i + 3)..]
            .find('/')
            .map_or(base.len(), |i| base.find("://").map_or(0, |s| s + 3) + i);
        let mut url = format!("{}/{}", &base[..authority_end], self.name);
        if let Some(query) = query {
            url.push('?');
            url.push_str(query);
        }
        url
    }

    /// Runs `sql` through `psql` on `url`; returns its unaligned output.
    #[track_caller]
    pub(crate) fn psql(&self, url: &str, sql: &str) -> String {
        let out = Command::new("psql")
            .args([
                "--no-psqlrc",
                "--quiet",
                "--tuples-only",
                "--no-align",
                "--set=ON_ERROR_STOP=1",
            ])
            .arg(url)
            .args(["--command", sql])
            .output()
            .expect("run psql (Debian's postgresql-client)");
        assert!(
            out.status.success(),
            "psql {sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        let _ = Command::new("psql")
            .args(["--no-psqlrc", "--quiet"])
            .arg(&self.admin_url)
            .args([
                "--command",
                &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
            ])
            .output();
    }
}

fn in_minutes(minutes: i64) -> String {
    let at = time::OffsetDateTime::now_utc() + time::Duration::minutes(minutes);
    at.format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

fn drift_of(collector: &Collector, token: &str, subject: &str) -> Value {
    let drift = collector.get("/api/v1/drift", token).expect(200);
    drift
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["subject"] == subject)
        .unwrap_or_else(|| panic!("no drift on {subject}: {drift:#}"))
        .clone()
}

#[test]
fn a_collector_on_postgres_matches_lists_and_audits() {
    let Some(db) = Database::create() else {
        return;
    };
    let collector = Collector::start(&format!(
        "[store]\nbackend = \"postgres\"\nurl = \"{}\"\ntls = \"disable\"\npool_size = 4\n",
        db.url()
    ));
    let admin = collector.token("admin", "root");
    let token = |name: &str, role: &str| {
        let run = collector.driftctl(&admin, &["token", "create", "--name", name, "--role", role]);
        run.expect(0);
        run.stdout.trim().to_owned()
    };
    let alice = token("alice", "change-manager");
    let bob = token("bob", "change-manager");
    let eve = token("eve", "security");

    let web = FakeAgent::enroll(&collector, &admin, "web-1");
    let created = collector.driftctl(
        &alice,
        &[
            "--json",
            "windows",
            "create",
            "--title",
            "nginx upgrade",
            "--ticket",
            "CHG-42",
            "--host",
            "web-1",
            "--subject",
            "file:/etc/nginx/**",
            "--start",
            &in_minutes(-5),
            "--end",
            &in_minutes(55),
        ],
    );
    created.expect(0);
    let window_id = created.json()["id"].as_str().unwrap().to_owned();
    collector
        .driftctl(&bob, &["windows", "approve", &window_id])
        .expect(0)
        .stdout_has("is approved");

    let covered: DriftEvent = web.event("file:/etc/nginx/nginx.conf", "2");
    let untraced: DriftEvent = web.event("file:/etc/ssh/sshd_config", "2");
    let ack = web
        .report(&collector, &[covered.clone(), untraced.clone()])
        .expect(200);
    assert_eq!(ack["accepted"], 2, "{ack:#}");
    // A retry of the same batch is idempotent.
    let again = web.report(&collector, &[covered, untraced]).expect(200);
    assert_eq!(again["duplicates"], 2, "{again:#}");

    let authorized = drift_of(&collector, &eve, "file:/etc/nginx/nginx.conf");
    assert_eq!(authorized["status"], "authorized", "{authorized:#}");
    assert_eq!(authorized["window_id"], window_id.as_str());
    let open = drift_of(&collector, &eve, "file:/etc/ssh/sshd_config");
    assert_eq!(open["status"], "open", "{open:#}");
    assert_eq!(open["reason"], "untraced");
    let listed = collector
        .driftctl(&eve, &["drift", "list", "--status", "open"])
        .expect(0)
        .stdout
        .clone();
    assert!(
        listed.contains("sshd_config") && !listed.contains("nginx.conf"),
        "{listed}"
    );

    // The records are in PostgreSQL, not in a SQLite file beside the configuration.
    assert!(
        !collector.db().exists(),
        "no collector.db with backend = postgres"
    );
    assert_eq!(db.psql(&db.url(), "SELECT count(*) FROM events"), "2");
    let entries: u64 = db
        .psql(&db.url(), "SELECT count(*) FROM audit")
        .parse()
        .unwrap();
    assert!(
        entries >= 6,
        "tokens, enrollment and the approval are audited: {entries}"
    );

    // The audit log verifies, through the API and offline against the same database.
    collector.driftctl(&admin, &["audit", "verify"]).expect(0);
    collector.cli(&["audit", "verify"]).expect(0);
    // `backup` is SQLite's: refused with the way to do it.
    let copy = collector.dir().join("copy.db");
    let backup = collector.cli(&["backup", copy.to_str().unwrap()]);
    assert_ne!(backup.code(), 0);
    backup.stderr_has("pg_dump");
    assert!(!copy.exists());
}

/// `migrate-store` (issue 10): a SQLite collector with real records (enrollment, an
/// approved window, authorized and untraced drift, a resolution, audit entries) is copied
/// into an empty PostgreSQL database; the collector started on it lists the same drift,
/// its audit log verifies (API and offline), the agent's chain goes on; a second copy into
/// the now full database is refused.
#[test]
fn a_sqlite_collector_moves_to_postgres_with_its_records_and_its_audit_log() {
    let Some(db) = Database::create() else {
        return;
    };
    let mut collector = Collector::start("");
    let admin = collector.token("admin", "root");
    let token = |name: &str, role: &str| {
        let run = collector.driftctl(&admin, &["token", "create", "--name", name, "--role", role]);
        run.expect(0);
        run.stdout.trim().to_owned()
    };
    let alice = token("alice", "change-manager");
    let bob = token("bob", "change-manager");
    let eve = token("eve", "security");
    let web = FakeAgent::enroll(&collector, &admin, "web-1");
    let created = collector.driftctl(
        &alice,
        &[
            "--json",
            "windows",
            "create",
            "--title",
            "nginx upgrade",
            "--ticket",
            "CHG-7",
            "--host",
            "web-1",
            "--subject",
            "file:/etc/nginx/**",
            "--start",
            &in_minutes(-5),
            "--end",
            &in_minutes(55),
        ],
    );
    created.expect(0);
    let window_id = created.json()["id"].as_str().unwrap().to_owned();
    collector
        .driftctl(&bob, &["windows", "approve", &window_id])
        .expect(0);
    let covered = web.event("file:/etc/nginx/nginx.conf", "2");
    let untraced = web.event("file:/etc/ssh/sshd_config", "2");
    let cron = web.event("file:/etc/cron.d/backdoor", "2");
    let ack = web
        .report(&collector, &[covered, untraced, cron])
        .expect(200);
    assert_eq!(ack["accepted"], 3, "{ack:#}");
    let sshd = drift_of(&collector, &eve, "file:/etc/ssh/sshd_config");
    collector
        .driftctl(
            &eve,
            &[
                "drift",
                "resolve",
                sshd["id"].as_str().unwrap(),
                "--category",
                "false_positive",
                "--comment",
                "a test of the migration",
            ],
        )
        .expect(0);
    let drift_before = collector.get("/api/v1/drift", &eve).expect(200);
    let hosts_before = collector.get("/api/v1/hosts", &eve).expect(200);
    let audit_before = collector.get("/api/v1/audit", &eve).expect(200);
    let (code, log) = collector.stop();
    assert_eq!(code, Some(0), "{log}");

    // Refused without TLS settings that make sense, before anything is written.
    collector
        .cli(&["migrate-store", "--to", &db.url()])
        .expect(2)
        .stderr_has("--ca-file");
    let copied = collector.cli(&["migrate-store", "--to", &db.url(), "--tls", "disable"]);
    copied.expect(0);
    let line = |table: &str| -> Vec<String> {
        copied
            .stdout
            .lines()
            .find(|l| l.split_whitespace().next() == Some(table))
            .unwrap_or_else(|| panic!("no {table} line:\n{}", copied.stdout))
            .split_whitespace()
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(line("events")[1..], ["3", "3"], "{}", copied.stdout);
    assert_eq!(line("drift")[1..], ["3", "3"], "{}", copied.stdout);
    assert_eq!(line("windows")[1..], ["1", "1"], "{}", copied.stdout);
    let audited = audit_before.as_array().unwrap().len().to_string();
    assert_eq!(line("audit")[1..], [audited.as_str(), audited.as_str()]);
    assert!(copied.stdout.contains("ok"), "{}", copied.stdout);
    assert_eq!(db.psql(&db.url(), "SELECT count(*) FROM events"), "3");

    // Once is enough: the target now holds records.
    collector
        .cli(&["migrate-store", "--to", &db.url(), "--tls", "disable"])
        .expect(2)
        .stderr_has("not empty");
    assert_eq!(db.psql(&db.url(), "SELECT count(*) FROM events"), "3");

    // The collector on PostgreSQL: same records, the log verifies, the chain goes on.
    let config = std::fs::read_to_string(collector.config()).unwrap();
    std::fs::write(
        collector.config(),
        format!(
            "{config}\n[store]\nbackend = \"postgres\"\nurl = \"{}\"\ntls = \"disable\"\n",
            db.url()
        ),
    )
    .unwrap();
    collector.restart();
    // The same drift; an item not yet alerted before the move may have been alerted since
    // by the collector now running on PostgreSQL (its hold is one second): only that may
    // differ.
    let mut drift_after = collector.get("/api/v1/drift", &eve).expect(200);
    for (after, before) in drift_after
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .zip(drift_before.as_array().unwrap())
    {
        if before["alerted_at"].is_null() {
            after["alerted_at"] = Value::Null;
        }
    }
    assert_eq!(drift_after, drift_before);
    let hosts_after = collector.get("/api/v1/hosts", &eve).expect(200);
    assert_eq!(hosts_after[0]["id"], hosts_before[0]["id"]);
    assert_eq!(hosts_after[0]["hostname"], "web-1");
    let audit_after = collector.get("/api/v1/audit", &eve).expect(200);
    assert_eq!(
        audit_after.as_array().unwrap()[..audit_before.as_array().unwrap().len()],
        audit_before.as_array().unwrap()[..],
        "the copied entries, unchanged"
    );
    collector.driftctl(&admin, &["audit", "verify"]).expect(0);
    collector.cli(&["audit", "verify"]).expect(0);
    let next = web.event("file:/etc/nginx/nginx.conf", "3");
    let ack = web.report(&collector, &[next]).expect(200);
    assert_eq!(ack["accepted"], 1, "{ack:#}");
    assert!(
        ack.get("rejected").is_none(),
        "the chain continues: {ack:#}"
    );
    assert_eq!(ack["last_seq"], 4, "{ack:#}");
    assert_eq!(db.psql(&db.url(), "SELECT count(*) FROM events"), "4");
}
