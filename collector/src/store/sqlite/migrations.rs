//! The schema, as an append-only list: entry `n` moves a database from version `n` to
//! `n + 1` (`PRAGMA user_version`). Never edit an entry that has shipped; add one.

/// `PRAGMA application_id`: marks the file as a driftwatch collector database ("DWC1").
pub const APPLICATION_ID: i32 = 0x4457_4331;

pub const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE meta (
    key TEXT PRIMARY KEY,
    value BLOB NOT NULL
) STRICT;

CREATE TABLE tokens (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    role TEXT NOT NULL,
    host_id TEXT,
    digest BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    created_by TEXT NOT NULL,
    revoked_at INTEGER
) STRICT;

CREATE TABLE enrollment_tokens (
    id TEXT PRIMARY KEY,
    digest BLOB NOT NULL,
    created_by TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    uses_left INTEGER NOT NULL
) STRICT;

CREATE TABLE hosts (
    id TEXT PRIMARY KEY,
    hostname TEXT NOT NULL,
    labels TEXT NOT NULL,
    agent_version TEXT NOT NULL,
    enrolled_at INTEGER NOT NULL,
    last_seen_at INTEGER,
    skew_ms INTEGER NOT NULL DEFAULT 0,
    inventory TEXT,
    health TEXT,
    reported_seq INTEGER NOT NULL DEFAULT 0,
    chain_seq INTEGER NOT NULL DEFAULT 0,
    chain_hash BLOB NOT NULL,
    silent_alerted INTEGER NOT NULL DEFAULT 0
) STRICT;
CREATE INDEX hosts_hostname ON hosts(hostname);

CREATE TABLE events (
    id TEXT PRIMARY KEY,
    host_id TEXT NOT NULL REFERENCES hosts(id),
    seq INTEGER NOT NULL,
    chain_hash BLOB NOT NULL,
    chain TEXT NOT NULL,
    subject TEXT NOT NULL,
    kind TEXT NOT NULL,
    observed_at INTEGER NOT NULL,
    event_time INTEGER NOT NULL,
    received_at INTEGER NOT NULL,
    outcome TEXT NOT NULL,
    decision TEXT NOT NULL,
    window_id TEXT,
    drift_id TEXT,
    body TEXT NOT NULL
) STRICT;
CREATE INDEX events_host_seq ON events(host_id, seq);
CREATE INDEX events_drift ON events(drift_id);
CREATE INDEX events_review ON events(event_time) WHERE outcome IN ('untraced', 'unexpected_state');

CREATE TABLE windows (
    id TEXT PRIMARY KEY,
    ticket TEXT NOT NULL,
    title TEXT NOT NULL,
    kind TEXT NOT NULL,
    status TEXT NOT NULL,
    requester TEXT NOT NULL,
    decided_by TEXT,
    decided_at INTEGER,
    decision_comment TEXT,
    hosts TEXT NOT NULL,
    subjects TEXT NOT NULL,
    start_at INTEGER NOT NULL,
    end_at INTEGER NOT NULL,
    time_zone TEXT NOT NULL,
    expected TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    ended_at INTEGER,
    ended_by TEXT
) STRICT;
CREATE INDEX windows_status ON windows(status);

CREATE TABLE drift (
    id TEXT PRIMARY KEY,
    host_id TEXT NOT NULL REFERENCES hosts(id),
    subject TEXT NOT NULL,
    status TEXT NOT NULL,
    reason TEXT,
    window_id TEXT,
    opened_at INTEGER NOT NULL,
    untraced_since INTEGER,
    needs_alert INTEGER NOT NULL DEFAULT 0,
    events INTEGER NOT NULL,
    last_event_id TEXT NOT NULL,
    last_event_at INTEGER NOT NULL,
    alerted_at INTEGER,
    alert_id TEXT,
    resolution TEXT,
    updated_at INTEGER NOT NULL
) STRICT;
CREATE UNIQUE INDEX drift_active ON drift(host_id, subject) WHERE status IN ('open', 'authorized');
CREATE INDEX drift_due ON drift(untraced_since) WHERE needs_alert = 1;
CREATE INDEX drift_window ON drift(window_id);

CREATE TABLE drift_history (
    id INTEGER PRIMARY KEY,
    drift_id TEXT NOT NULL REFERENCES drift(id),
    at INTEGER NOT NULL,
    from_status TEXT,
    to_status TEXT NOT NULL,
    by TEXT NOT NULL,
    reason TEXT NOT NULL
) STRICT;

CREATE TABLE commands (
    id TEXT PRIMARY KEY,
    host_id TEXT NOT NULL REFERENCES hosts(id),
    drift_id TEXT NOT NULL REFERENCES drift(id),
    window_id TEXT,
    body TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    status TEXT NOT NULL,
    result TEXT,
    result_at INTEGER
) STRICT;
CREATE INDEX commands_pending ON commands(host_id) WHERE status = 'pending';

CREATE TABLE alerts (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    host_id TEXT,
    created_at INTEGER NOT NULL,
    body TEXT NOT NULL,
    delivered_at INTEGER,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT
) STRICT;
CREATE INDEX alerts_undelivered ON alerts(created_at) WHERE delivered_at IS NULL;

CREATE TABLE audit (
    seq INTEGER PRIMARY KEY,
    at INTEGER NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    details TEXT NOT NULL,
    prev_hash BLOB NOT NULL,
    hash BLOB NOT NULL
) STRICT;
-- Append-only by construction; raw SQL can still drop these, which `audit verify` detects.
CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
"#,
    // 2: emergency windows left unapproved past the deadline are alerted once.
    r#"
ALTER TABLE windows ADD COLUMN deadline_alerted_at INTEGER;
"#,
    // 3: delivery state per alert and sink, so that one failing sink neither blocks the
    // others nor makes them send twice. `alerts.delivered_at` is set once every configured
    // sink has delivered.
    r#"
CREATE TABLE alert_deliveries (
    alert_id TEXT NOT NULL REFERENCES alerts(id),
    sink TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    last_attempt_at INTEGER,
    next_attempt_at INTEGER NOT NULL,
    delivered_at INTEGER,
    PRIMARY KEY (alert_id, sink)
) STRICT;
"#,
    // 4: evidence exports read the events of a period and of a window without a full scan.
    r#"
CREATE INDEX events_time ON events(event_time);
CREATE INDEX events_window ON events(window_id) WHERE window_id IS NOT NULL;
"#,
    // 5: window implementers and schedules (recurring standard windows); the review index covers the actor outcomes (same list as
    // `matcher::REVIEW_OUTCOMES`, checked by a test).
    r#"
ALTER TABLE windows ADD COLUMN implementers TEXT NOT NULL DEFAULT '[]';
ALTER TABLE windows ADD COLUMN schedule TEXT;
DROP INDEX events_review;
CREATE INDEX events_review ON events(event_time) WHERE outcome IN ('untraced', 'unexpected_state', 'wrong_implementer', 'made_by_approver', 'actor_unknown', 'package_mismatch');
"#,
    // 6: people (segregation of duties by person, `crate::people`): every person's token
    // names one; names are unique once normalised and as confusable skeletons. Tokens
    // record the token that created them, so an approval can see who minted the approver's
    // token. Tokens issued before this get a person at start (`App::adopt_legacy_tokens`).
    r#"
CREATE TABLE people (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    canonical TEXT NOT NULL UNIQUE,
    confusable_key TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    created_by TEXT NOT NULL
) STRICT;
ALTER TABLE tokens ADD COLUMN person_id TEXT REFERENCES people(id);
ALTER TABLE tokens ADD COLUMN created_by_token TEXT;
"#,
    // 7: forward-secure chain keys (issue 8): the key of the lowest sequence number not yet
    // received and the key after the highest stored one (`chain::ChainKeys`). All NULL for a
    // host enrolled before chain keys: its chain is shown as unauthenticated.
    r#"
ALTER TABLE hosts ADD COLUMN chain_key_floor_seq INTEGER;
ALTER TABLE hosts ADD COLUMN chain_key_floor BLOB;
ALTER TABLE hosts ADD COLUMN chain_key_next_seq INTEGER;
ALTER TABLE hosts ADD COLUMN chain_key_next BLOB;
"#,
    // 8: authorization on the collector's clock. Heartbeat marks (arrival, reported
    // last seq) per host, pruned to those that can still bound an event; each event's
    // spool bounds and the verdict on its claimed time. Events stored before: bounded by
    // their host's enrollment and their arrival, all the collector can vouch for.
    r#"
CREATE TABLE spool_marks (
    host_id TEXT NOT NULL REFERENCES hosts(id),
    received_at INTEGER NOT NULL,
    last_seq INTEGER NOT NULL
) STRICT;
CREATE INDEX spool_marks_host ON spool_marks(host_id, received_at);
ALTER TABLE events ADD COLUMN spooled_after INTEGER;
ALTER TABLE events ADD COLUMN spooled_before INTEGER;
ALTER TABLE events ADD COLUMN spool TEXT;
UPDATE events SET spooled_before = received_at,
    spooled_after = (SELECT enrolled_at FROM hosts WHERE hosts.id = events.host_id);
"#,
    // 9: the audit trail anchored outside the database: each entry's Ed25519 signature
    // by the collector's key (NULL for entries written before), and the signed checkpoints
    // of the head (also sent to the alert sinks; verifiers keep their own copies).
    r#"
ALTER TABLE audit ADD COLUMN signature BLOB;
CREATE TABLE audit_checkpoints (
    id INTEGER PRIMARY KEY,
    entries INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    body TEXT NOT NULL
) STRICT;
"#,
    // 10: the baseline anchored at the collector (`anchor.rs`): per host, the root it is
    // expected to run on and a differing root reported (JSON `AnchorState`), and every root
    // it was ever expected to run on with what put it there (tells a rollback; dedupes
    // accepts and re-baseline events by source).
    r#"
CREATE TABLE baseline_anchors (
    host_id TEXT PRIMARY KEY REFERENCES hosts(id),
    state TEXT NOT NULL,
    updated_at INTEGER NOT NULL
) STRICT;
CREATE TABLE baseline_roots (
    host_id TEXT NOT NULL REFERENCES hosts(id),
    root BLOB NOT NULL,
    created_at TEXT NOT NULL,
    source TEXT NOT NULL,
    at INTEGER NOT NULL
) STRICT;
CREATE INDEX baseline_roots_root ON baseline_roots(host_id, root);
CREATE UNIQUE INDEX baseline_roots_source ON baseline_roots(host_id, source);
"#,
    // 11: each event's decision sealed with a key derived from the audit signing key
    // (`audit::decisions`); NULL until sealed (events stored before: sealed at the first
    // start with the key, found through a partial index so later starts read nothing).
    r#"
ALTER TABLE events ADD COLUMN decision_mac BLOB;
-- Finds what is still unsealed at start without reading every event (empty once sealed).
CREATE INDEX events_unsealed ON events(id) WHERE decision_mac IS NULL;
"#,
    // 12 (issue 9, alerts): dead letters. A receiver's permanent refusal (a 4xx other than
    // 408/429) stops that sink's delivery of the alert with the receiver's status and the
    // start of its answer, and the sink goes on with the next alert; an admin retries
    // (the columns cleared, due again) or drops it (who, when, why: the sink owes it no more).
    r#"
ALTER TABLE alert_deliveries ADD COLUMN dead_lettered_at INTEGER;
ALTER TABLE alert_deliveries ADD COLUMN response_status INTEGER;
ALTER TABLE alert_deliveries ADD COLUMN response_body TEXT;
ALTER TABLE alert_deliveries ADD COLUMN dropped_at INTEGER;
ALTER TABLE alert_deliveries ADD COLUMN dropped_by TEXT;
ALTER TABLE alert_deliveries ADD COLUMN drop_reason TEXT;
CREATE INDEX alert_deliveries_dead ON alert_deliveries(dead_lettered_at)
    WHERE dead_lettered_at IS NOT NULL AND dropped_at IS NULL;
"#,
    // 13 (issue 11, the web console): signed-in sessions, by the SHA-256 of their random id
    // (the cookie's value is never stored); each acts through its token.
    r#"
CREATE TABLE web_sessions (
    digest BLOB PRIMARY KEY,
    token_id TEXT NOT NULL REFERENCES tokens(id),
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    last_used_at INTEGER NOT NULL,
    ended_at INTEGER
) STRICT;
CREATE INDEX web_sessions_expiry ON web_sessions(expires_at);
"#,
    // 14 (issue 11, live drift stream): the history row's id is the stream's durable cursor
    // (`Last-Event-ID`), so it must never be handed out twice, even after retention deleted
    // the newest rows: AUTOINCREMENT (sqlite_sequence keeps the highest id ever used). The
    // table is rebuilt with the same columns and ids.
    r#"
CREATE TABLE drift_history_seq (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    drift_id TEXT NOT NULL REFERENCES drift(id),
    at INTEGER NOT NULL,
    from_status TEXT,
    to_status TEXT NOT NULL,
    by TEXT NOT NULL,
    reason TEXT NOT NULL
) STRICT;
INSERT INTO drift_history_seq (id, drift_id, at, from_status, to_status, by, reason)
    SELECT id, drift_id, at, from_status, to_status, by, reason FROM drift_history;
DROP TABLE drift_history;
ALTER TABLE drift_history_seq RENAME TO drift_history;
"#,
    // 15 (issue 11, drift detail): a drift item's history and the other drift of its
    // host and subject (the subject's timeline) are read per item, without a scan.
    r#"
CREATE INDEX drift_history_drift ON drift_history(drift_id, id);
CREATE INDEX drift_host_subject ON drift(host_id, subject, opened_at);
"#,
    // 16 (issue 10, listings with a cursor; issue 11, the console measured): each listing's
    // keyset (its order, after its filter) is an index, so a page costs its rows, not a
    // scan. Newest-first drift (the inbox, the overview, `GET /api/v1/drift`) walks
    // `drift_listing` backwards and stops at the limit: sorting every drift row took
    // about 110 ms with 110,000 items.
    r#"
CREATE INDEX drift_listing ON drift(opened_at, id);
CREATE INDEX drift_status_listing ON drift(status, opened_at, id);
CREATE INDEX drift_host_listing ON drift(host_id, opened_at, id);
CREATE INDEX drift_window_listing ON drift(window_id, opened_at, id);
CREATE INDEX hosts_listing ON hosts(hostname, id);
CREATE INDEX windows_listing ON windows(start_at, id);
CREATE INDEX windows_status_listing ON windows(status, start_at, id);
"#,
];

#[cfg(test)]
mod tests {
    #[test]
    fn the_review_index_lists_every_outcome_that_needs_review() {
        let last = super::MIGRATIONS
            .iter()
            .rev()
            .find(|m| m.contains("CREATE INDEX events_review"))
            .unwrap();
        let list = super::super::windows::review_outcomes();
        assert!(
            last.contains(&format!("WHERE outcome IN ({list});")),
            "the latest events_review index must list {list}"
        );
    }
}
