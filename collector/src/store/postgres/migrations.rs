//! The PostgreSQL schema, as an append-only list of its own (not SQLite's): entry `n` moves
//! a database from version `n` to `n + 1` (`driftwatch_schema.version`). Never edit an
//! entry that has shipped; add one. Types that fit the engine: millisecond times as
//! `bigint`, ids as `uuid`, digests and keys as `bytea`, structured values as `jsonb`;
//! text whose exact bytes are hashed or signed (audit details, checkpoints) stays `text`.
//!
//! Entry 1 is SQLite's schema as of its migration 12, in one step.

pub const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE meta (
    key text PRIMARY KEY,
    value bytea NOT NULL
);

CREATE TABLE people (
    id uuid PRIMARY KEY,
    name text NOT NULL,
    canonical text NOT NULL UNIQUE,
    confusable_key text NOT NULL UNIQUE,
    created_at bigint NOT NULL,
    created_by text NOT NULL
);

CREATE TABLE tokens (
    id uuid PRIMARY KEY,
    name text NOT NULL,
    role text NOT NULL,
    host_id uuid,
    digest bytea NOT NULL,
    created_at bigint NOT NULL,
    created_by text NOT NULL,
    revoked_at bigint,
    person_id uuid REFERENCES people(id),
    created_by_token uuid
);

CREATE TABLE enrollment_tokens (
    id uuid PRIMARY KEY,
    digest bytea NOT NULL,
    created_by text NOT NULL,
    created_at bigint NOT NULL,
    expires_at bigint NOT NULL,
    uses_left bigint NOT NULL
);

CREATE TABLE hosts (
    id uuid PRIMARY KEY,
    hostname text NOT NULL,
    labels jsonb NOT NULL,
    agent_version text NOT NULL,
    enrolled_at bigint NOT NULL,
    last_seen_at bigint,
    skew_ms bigint NOT NULL DEFAULT 0,
    inventory jsonb,
    health jsonb,
    reported_seq bigint NOT NULL DEFAULT 0,
    chain_seq bigint NOT NULL DEFAULT 0,
    chain_hash bytea NOT NULL,
    silent_alerted boolean NOT NULL DEFAULT false,
    chain_key_floor_seq bigint,
    chain_key_floor bytea,
    chain_key_next_seq bigint,
    chain_key_next bytea
);
CREATE INDEX hosts_hostname ON hosts(hostname);

CREATE TABLE events (
    id uuid PRIMARY KEY,
    host_id uuid NOT NULL REFERENCES hosts(id),
    seq bigint NOT NULL,
    chain_hash bytea NOT NULL,
    chain text NOT NULL,
    subject text NOT NULL,
    kind text NOT NULL,
    observed_at bigint NOT NULL,
    event_time bigint NOT NULL,
    received_at bigint NOT NULL,
    outcome text NOT NULL,
    decision jsonb NOT NULL,
    window_id uuid,
    drift_id uuid,
    body jsonb NOT NULL,
    spooled_after bigint,
    spooled_before bigint,
    spool jsonb,
    decision_mac bytea
);
CREATE INDEX events_host_seq ON events(host_id, seq);
CREATE INDEX events_drift ON events(drift_id);
CREATE INDEX events_time ON events(event_time);
CREATE INDEX events_window ON events(window_id) WHERE window_id IS NOT NULL;
CREATE INDEX events_review ON events(event_time) WHERE outcome IN ('untraced', 'unexpected_state', 'wrong_implementer', 'made_by_approver', 'actor_unknown', 'package_mismatch');
CREATE INDEX events_unsealed ON events(id) WHERE decision_mac IS NULL;

CREATE TABLE windows (
    id uuid PRIMARY KEY,
    ticket text NOT NULL,
    title text NOT NULL,
    kind text NOT NULL,
    status text NOT NULL,
    requester text NOT NULL,
    decided_by text,
    decided_at bigint,
    decision_comment text,
    hosts jsonb NOT NULL,
    subjects jsonb NOT NULL,
    start_at bigint NOT NULL,
    end_at bigint NOT NULL,
    time_zone text NOT NULL,
    expected jsonb NOT NULL,
    created_at bigint NOT NULL,
    ended_at bigint,
    ended_by text,
    deadline_alerted_at bigint,
    implementers jsonb NOT NULL DEFAULT '[]',
    schedule jsonb
);
CREATE INDEX windows_status ON windows(status);

CREATE TABLE drift (
    id uuid PRIMARY KEY,
    host_id uuid NOT NULL REFERENCES hosts(id),
    subject text NOT NULL,
    status text NOT NULL,
    reason text,
    window_id uuid,
    opened_at bigint NOT NULL,
    untraced_since bigint,
    needs_alert boolean NOT NULL DEFAULT false,
    events bigint NOT NULL,
    last_event_id uuid NOT NULL,
    last_event_at bigint NOT NULL,
    alerted_at bigint,
    alert_id uuid,
    resolution jsonb,
    updated_at bigint NOT NULL
);
CREATE UNIQUE INDEX drift_active ON drift(host_id, subject) WHERE status IN ('open', 'authorized');
CREATE INDEX drift_due ON drift(untraced_since) WHERE needs_alert;
CREATE INDEX drift_window ON drift(window_id);

CREATE TABLE drift_history (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    drift_id uuid NOT NULL REFERENCES drift(id),
    at bigint NOT NULL,
    from_status text,
    to_status text NOT NULL,
    by text NOT NULL,
    reason text NOT NULL
);
CREATE INDEX drift_history_drift ON drift_history(drift_id);

CREATE TABLE commands (
    id uuid PRIMARY KEY,
    host_id uuid NOT NULL REFERENCES hosts(id),
    drift_id uuid NOT NULL REFERENCES drift(id),
    window_id uuid,
    body jsonb NOT NULL,
    created_at bigint NOT NULL,
    status text NOT NULL,
    result jsonb,
    result_at bigint
);
CREATE INDEX commands_pending ON commands(host_id) WHERE status = 'pending';

CREATE TABLE alerts (
    id uuid PRIMARY KEY,
    kind text NOT NULL,
    host_id uuid,
    created_at bigint NOT NULL,
    body jsonb NOT NULL,
    delivered_at bigint,
    attempts bigint NOT NULL DEFAULT 0,
    last_error text
);
CREATE INDEX alerts_undelivered ON alerts(created_at) WHERE delivered_at IS NULL;
CREATE INDEX alerts_kind_host ON alerts(kind, host_id, created_at);

CREATE TABLE alert_deliveries (
    alert_id uuid NOT NULL REFERENCES alerts(id),
    sink text NOT NULL,
    attempts bigint NOT NULL DEFAULT 0,
    last_error text,
    last_attempt_at bigint,
    next_attempt_at bigint NOT NULL,
    delivered_at bigint,
    dead_lettered_at bigint,
    response_status integer,
    response_body text,
    dropped_at bigint,
    dropped_by text,
    drop_reason text,
    PRIMARY KEY (alert_id, sink)
);
CREATE INDEX alert_deliveries_dead ON alert_deliveries(dead_lettered_at)
    WHERE dead_lettered_at IS NOT NULL AND dropped_at IS NULL;

CREATE TABLE audit (
    seq bigint PRIMARY KEY,
    at bigint NOT NULL,
    actor text NOT NULL,
    action text NOT NULL,
    target text NOT NULL,
    details text NOT NULL,
    prev_hash bytea NOT NULL,
    hash bytea NOT NULL,
    signature bytea
);
-- Append-only by construction; a superuser can still drop these, which `audit verify`
-- detects.
CREATE FUNCTION audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'the audit log is append-only'; END $$;
CREATE TRIGGER audit_no_change BEFORE UPDATE OR DELETE ON audit
    FOR EACH ROW EXECUTE FUNCTION audit_append_only();
CREATE TRIGGER audit_no_truncate BEFORE TRUNCATE ON audit
    FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only();

CREATE TABLE audit_checkpoints (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    entries bigint NOT NULL,
    created_at bigint NOT NULL,
    body text NOT NULL
);

CREATE TABLE spool_marks (
    host_id uuid NOT NULL REFERENCES hosts(id),
    received_at bigint NOT NULL,
    last_seq bigint NOT NULL
);
CREATE INDEX spool_marks_host ON spool_marks(host_id, received_at);

CREATE TABLE baseline_anchors (
    host_id uuid PRIMARY KEY REFERENCES hosts(id),
    state jsonb NOT NULL,
    updated_at bigint NOT NULL
);
CREATE TABLE baseline_roots (
    host_id uuid NOT NULL REFERENCES hosts(id),
    root bytea NOT NULL,
    created_at text NOT NULL,
    source text NOT NULL,
    at bigint NOT NULL
);
CREATE INDEX baseline_roots_root ON baseline_roots(host_id, root);
CREATE UNIQUE INDEX baseline_roots_source ON baseline_roots(host_id, source);
"#,
    // 2 (issue 11 and 10: the console, the drift detail and the live stream). Signed-in
    // sessions by the SHA-256 of their random id. The history row's id becomes the live
    // stream's durable cursor: numbered from `drift_history_head` (one row, bumped by every
    // history write under the `drift::HISTORY_LOCK`), so numbers are handed out in commit
    // order and the head a reader sees is committed; it starts at the highest id the
    // identity column ever gave, so none is handed out twice after retention.
    r#"
CREATE TABLE web_sessions (
    digest bytea PRIMARY KEY,
    token_id uuid NOT NULL REFERENCES tokens(id),
    created_at bigint NOT NULL,
    expires_at bigint NOT NULL,
    last_used_at bigint NOT NULL,
    ended_at bigint
);
CREATE INDEX web_sessions_expiry ON web_sessions(expires_at);

CREATE TABLE drift_history_head (
    one boolean PRIMARY KEY DEFAULT true CHECK (one),
    last bigint NOT NULL
);
INSERT INTO drift_history_head (last)
    SELECT greatest(
        coalesce((SELECT max(id) FROM drift_history), 0),
        coalesce((SELECT last_value FROM pg_sequences
                  WHERE schemaname = current_schema()
                    AND sequencename = 'drift_history_id_seq'), 0));
ALTER TABLE drift_history ALTER COLUMN id DROP IDENTITY;

DROP INDEX drift_history_drift;
CREATE INDEX drift_history_drift ON drift_history(drift_id, id);
CREATE INDEX drift_host_subject ON drift(host_id, subject, opened_at);
"#,
    // 3 (issue 10, listings with a cursor; issue 11, the console measured): each listing's
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
    // 4 (issue 10): several collector nodes on one database (`cluster.rs`): the windows'
    // version each node's matcher index is checked against, the leases of the background
    // rounds, and the claims of alert deliveries.
    r#"
CREATE TABLE windows_version (
    one boolean PRIMARY KEY DEFAULT true CHECK (one),
    version bigint NOT NULL
);
INSERT INTO windows_version (version) VALUES (1);

CREATE TABLE leases (
    name text PRIMARY KEY,
    holder uuid NOT NULL,
    expires_at bigint NOT NULL
);

CREATE TABLE delivery_claims (
    alert_id uuid NOT NULL REFERENCES alerts(id) ON DELETE CASCADE,
    sink text NOT NULL,
    holder uuid NOT NULL,
    claimed_until bigint NOT NULL,
    PRIMARY KEY (alert_id, sink)
);
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
        let list = crate::matcher::REVIEW_OUTCOMES
            .map(|name| format!("'{name}'"))
            .join(", ");
        assert!(
            last.contains(&format!("WHERE outcome IN ({list});")),
            "the latest events_review index must list {list}"
        );
    }
}
