use driftwatch_common::chain_key::ChainKey;
use rusqlite::{Connection, OptionalExtension, Row, params};
use uuid::Uuid;

use super::audit;
use super::rows::{Digest, Id, Json, Named, id, opt_id};
use crate::audit::NewAudit;
use crate::clock::Millis;
use crate::identity::constant_time_eq;
use crate::people::Person;
use crate::store::{EnrollmentTokenRecord, Host, Result, StoreError, TokenRecord};

const TOKEN_COLUMNS: &str = "id, name, role, host_id, digest, created_at, created_by, revoked_at, \
                             person_id, created_by_token";

/// The token columns (prefixed `t.`) and the person's name, from `tokens t LEFT JOIN people p`.
fn token_select() -> String {
    let columns: Vec<String> = TOKEN_COLUMNS
        .split(", ")
        .map(|c| format!("t.{}", c.trim()))
        .collect();
    format!(
        "SELECT {}, p.name FROM tokens t LEFT JOIN people p ON p.id = t.person_id",
        columns.join(", ")
    )
}

fn token_row(r: &Row<'_>) -> rusqlite::Result<TokenRecord> {
    Ok(TokenRecord {
        id: r.get::<_, Id>(0)?.0,
        name: r.get(1)?,
        role: r.get::<_, Named<_>>(2)?.0,
        host_id: r.get::<_, Option<Id>>(3)?.map(|i| i.0),
        digest: r.get::<_, Digest>(4)?.0,
        created_at: r.get(5)?,
        created_by: r.get(6)?,
        revoked_at: r.get(7)?,
        person_id: r.get::<_, Option<Id>>(8)?.map(|i| i.0),
        created_by_token: r.get::<_, Option<Id>>(9)?.map(|i| i.0),
        person: r.get(10)?,
    })
}

fn write_token(conn: &Connection, token: &TokenRecord) -> Result<()> {
    conn.execute(
        &format!(
            "INSERT INTO tokens ({TOKEN_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
        ),
        params![
            id(token.id),
            token.name,
            token.role.name(),
            opt_id(token.host_id),
            &token.digest[..],
            token.created_at,
            token.created_by,
            token.revoked_at,
            opt_id(token.person_id),
            opt_id(token.created_by_token)
        ],
    )?;
    Ok(())
}

fn person_row(r: &Row<'_>) -> rusqlite::Result<Person> {
    Ok(Person {
        id: r.get::<_, Id>(0)?.0,
        name: r.get(1)?,
        canonical: r.get(2)?,
        key: r.get(3)?,
        created_at: r.get(4)?,
        created_by: r.get(5)?,
    })
}

pub fn people(conn: &Connection) -> Result<Vec<Person>> {
    let mut stmt = conn.prepare(
        "SELECT id, name, canonical, confusable_key, created_at, created_by FROM people
         ORDER BY name, id",
    )?;
    let rows = stmt.query_map([], person_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Records a person; a name (or skeleton) already taken is a `Conflict` naming its holder.
pub fn insert_person(conn: &Connection, person: &Person) -> Result<()> {
    let taken: Option<String> = conn
        .query_row(
            "SELECT name FROM people WHERE canonical = ?1 OR confusable_key = ?2",
            params![person.canonical, person.key],
            |r| r.get(0),
        )
        .optional()?;
    if let Some(name) = taken {
        return Err(StoreError::Conflict(format!(
            "person `{}` collides with the existing person `{name}`",
            person.name
        )));
    }
    conn.execute(
        "INSERT INTO people (id, name, canonical, confusable_key, created_at, created_by)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            id(person.id),
            person.name,
            person.canonical,
            person.key,
            person.created_at,
            person.created_by
        ],
    )?;
    Ok(())
}

pub fn set_owners(conn: &Connection, owners: &[(Uuid, Uuid)]) -> Result<()> {
    let mut stmt =
        conn.prepare("UPDATE tokens SET person_id = ?2 WHERE id = ?1 AND person_id IS NULL")?;
    for (token, person) in owners {
        stmt.execute(params![id(*token), id(*person)])?;
    }
    Ok(())
}

/// The token and the chain of tokens that issued it (bounded: a cycle cannot be written,
/// but a database edited by hand could hold one).
pub fn token_lineage(conn: &Connection, token_id: Uuid) -> Result<Vec<TokenRecord>> {
    let mut chain = vec![token(conn, token_id)?];
    while let Some(parent) = chain.last().and_then(|t| t.created_by_token) {
        if chain.len() > 1000 || chain.iter().any(|t| t.id == parent) {
            break;
        }
        match token(conn, parent) {
            Ok(record) => chain.push(record),
            Err(StoreError::NotFound(_)) => break,
            Err(err) => return Err(err),
        }
    }
    Ok(chain)
}

pub fn insert_token(conn: &Connection, token: &TokenRecord, audit: &NewAudit) -> Result<()> {
    write_token(conn, token)?;
    audit::append(conn, audit)?;
    Ok(())
}

pub fn token(conn: &Connection, token_id: Uuid) -> Result<TokenRecord> {
    conn.query_row(
        &format!("{} WHERE t.id = ?1", token_select()),
        [id(token_id)],
        token_row,
    )
    .optional()?
    .ok_or_else(|| StoreError::NotFound(format!("no token {token_id}")))
}

pub fn tokens(conn: &Connection) -> Result<Vec<TokenRecord>> {
    let mut stmt = conn.prepare(&format!("{} ORDER BY t.created_at, t.id", token_select()))?;
    let rows = stmt.query_map([], token_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub fn revoke_token(
    conn: &Connection,
    token_id: Uuid,
    at: Millis,
    audit: &NewAudit,
) -> Result<TokenRecord> {
    let mut record = token(conn, token_id)?;
    if record.revoked_at.is_some() {
        return Err(StoreError::Conflict(format!(
            "token {token_id} is already revoked"
        )));
    }
    conn.execute(
        "UPDATE tokens SET revoked_at = ?2 WHERE id = ?1",
        params![id(token_id), at],
    )?;
    audit::append(conn, audit)?;
    record.revoked_at = Some(at);
    Ok(record)
}

pub fn insert_enrollment_token(
    conn: &Connection,
    token: &EnrollmentTokenRecord,
    audit: &NewAudit,
) -> Result<()> {
    conn.execute(
        "INSERT INTO enrollment_tokens (id, digest, created_by, created_at, expires_at, uses_left)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            id(token.id),
            &token.digest[..],
            token.created_by,
            token.created_at,
            token.expires_at,
            token.uses_left
        ],
    )?;
    audit::append(conn, audit)?;
    Ok(())
}

pub fn enroll(
    conn: &Connection,
    token_id: Uuid,
    digest: &[u8; 32],
    host: &Host,
    credential: &TokenRecord,
    chain_key: Option<&ChainKey>,
    audit: &NewAudit,
) -> Result<()> {
    let found: Option<(Digest, Millis, u32)> = conn
        .query_row(
            "SELECT digest, expires_at, uses_left FROM enrollment_tokens WHERE id = ?1",
            [id(token_id)],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?;
    // One answer for every failure, so a caller learns nothing about which tokens exist.
    let refused = || StoreError::NotFound("enrollment token is invalid, expired or used up".into());
    let Some((stored, expires_at, uses_left)) = found else {
        return Err(refused());
    };
    if !constant_time_eq(&stored.0, digest) || expires_at <= host.enrolled_at || uses_left == 0 {
        return Err(refused());
    }
    conn.execute(
        "UPDATE enrollment_tokens SET uses_left = uses_left - 1 WHERE id = ?1",
        [id(token_id)],
    )?;
    conn.execute(
        "INSERT INTO hosts (id, hostname, labels, agent_version, enrolled_at, chain_hash)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            id(host.id),
            host.hostname,
            super::rows::json(&host.labels),
            host.agent_version,
            host.enrolled_at,
            &driftwatch_common::api::v1::DriftEvent::GENESIS.0[..]
        ],
    )?;
    if let Some(key) = chain_key {
        // Sequence number 1 is both the lowest not yet received and the next.
        conn.execute(
            "UPDATE hosts SET chain_key_floor_seq = 1, chain_key_floor = ?2,
                    chain_key_next_seq = 1, chain_key_next = ?2
             WHERE id = ?1",
            params![id(host.id), &key.as_bytes()[..]],
        )?;
    }
    write_token(conn, credential)?;
    audit::append(conn, audit)?;
    Ok(())
}

const HOST_COLUMNS: &str = "id, hostname, labels, agent_version, enrolled_at, last_seen_at, \
                            skew_ms, inventory, health, reported_seq, chain_seq, \
                            chain_key_next IS NOT NULL";

pub fn host_row(r: &Row<'_>) -> rusqlite::Result<Host> {
    host_row_at(r, 0)
}

/// A host from the columns of [`HOST_COLUMNS`] starting at `at`.
pub fn host_row_at(r: &Row<'_>, at: usize) -> rusqlite::Result<Host> {
    Ok(Host {
        id: r.get::<_, Id>(at)?.0,
        hostname: r.get(at + 1)?,
        labels: r.get::<_, Json<_>>(at + 2)?.0,
        agent_version: r.get(at + 3)?,
        enrolled_at: r.get(at + 4)?,
        last_seen_at: r.get(at + 5)?,
        skew_ms: r.get(at + 6)?,
        inventory: r.get::<_, Option<Json<_>>>(at + 7)?.map(|j| j.0),
        health: r.get::<_, Option<Json<_>>>(at + 8)?.map(|j| j.0),
        reported_seq: r.get::<_, i64>(at + 9)? as u64,
        stored_seq: r.get::<_, i64>(at + 10)? as u64,
        chain_keyed: r.get(at + 11)?,
    })
}

/// The columns of [`host_row`], prefixed with a table alias.
pub fn host_columns(alias: &str) -> String {
    HOST_COLUMNS
        .split(", ")
        .map(|c| format!("{alias}.{}", c.trim()))
        .collect::<Vec<_>>()
        .join(", ")
}

pub fn host(conn: &Connection, host_id: Uuid) -> Result<Host> {
    conn.query_row(
        &format!("SELECT {HOST_COLUMNS} FROM hosts WHERE id = ?1"),
        [id(host_id)],
        host_row,
    )
    .optional()?
    .ok_or_else(|| StoreError::NotFound(format!("no host {host_id}")))
}

pub fn hosts(conn: &Connection) -> Result<Vec<Host>> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {HOST_COLUMNS} FROM hosts ORDER BY hostname, id"
    ))?;
    let rows = stmt.query_map([], host_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// A page of hosts in listing order (hostname, then id) after the key `after` (issue 10).
pub fn hosts_page(
    conn: &Connection,
    after: Option<(String, Uuid)>,
    limit: u32,
) -> Result<Vec<Host>> {
    let (name, last) = after.map_or((None, None), |(name, last)| (Some(name), Some(id(last))));
    let mut stmt = conn.prepare(&format!(
        "SELECT {HOST_COLUMNS} FROM hosts WHERE ?1 IS NULL OR (hostname, id) > (?1, ?2)
         ORDER BY hostname, id LIMIT ?3"
    ))?;
    let rows = stmt.query_map(params![name, last, i64::from(limit)], host_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}
