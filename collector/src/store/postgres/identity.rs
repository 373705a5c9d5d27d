//! Tokens, people, enrollment and hosts.

use driftwatch_common::chain_key::ChainKey;
use tokio_postgres::Row;
use uuid::Uuid;

use super::Tx;
use super::audit;
use super::rows::{digest, from_json, json, named, opt_from_json, unseq};
use crate::audit::{AuditKey, NewAudit};
use crate::clock::Millis;
use crate::identity::constant_time_eq;
use crate::people::Person;
use crate::store::{EnrollmentTokenRecord, Host, Result, StoreError, TokenRecord};

const TOKEN_SELECT: &str = "SELECT t.id, t.name, t.role, t.host_id, t.digest, t.created_at, \
     t.created_by, t.revoked_at, t.person_id, t.created_by_token, p.name \
     FROM tokens t LEFT JOIN people p ON p.id = t.person_id";

fn token_row(r: &Row) -> Result<TokenRecord> {
    Ok(TokenRecord {
        id: r.get(0),
        name: r.get(1),
        role: named(r.get::<_, &str>(2))?,
        host_id: r.get(3),
        digest: digest(r.get(4))?,
        created_at: r.get(5),
        created_by: r.get(6),
        revoked_at: r.get(7),
        person_id: r.get(8),
        created_by_token: r.get(9),
        person: r.get(10),
    })
}

async fn write_token(tx: &Tx<'_>, token: &TokenRecord) -> Result<()> {
    tx.execute(
        "INSERT INTO tokens (id, name, role, host_id, digest, created_at, created_by,
                             revoked_at, person_id, created_by_token)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        &[
            &token.id,
            &token.name,
            &token.role.name(),
            &token.host_id,
            &&token.digest[..],
            &token.created_at,
            &token.created_by,
            &token.revoked_at,
            &token.person_id,
            &token.created_by_token,
        ],
    )
    .await?;
    Ok(())
}

pub async fn people(tx: &Tx<'_>) -> Result<Vec<Person>> {
    let rows = tx
        .query(
            "SELECT id, name, canonical, confusable_key, created_at, created_by FROM people
             ORDER BY name, id",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| Person {
            id: r.get(0),
            name: r.get(1),
            canonical: r.get(2),
            key: r.get(3),
            created_at: r.get(4),
            created_by: r.get(5),
        })
        .collect())
}

/// Records a person; a name (or skeleton) already taken is a `Conflict` naming its holder.
/// Two nodes recording colliding people at once: the unique indexes refuse the second.
pub async fn insert_person(tx: &Tx<'_>, person: &Person) -> Result<()> {
    let taken = tx
        .query_opt(
            "SELECT name FROM people WHERE canonical = $1 OR confusable_key = $2",
            &[&person.canonical, &person.key],
        )
        .await?;
    if let Some(row) = taken {
        let name: String = row.get(0);
        return Err(StoreError::Conflict(format!(
            "person `{}` collides with the existing person `{name}`",
            person.name
        )));
    }
    tx.execute(
        "INSERT INTO people (id, name, canonical, confusable_key, created_at, created_by)
         VALUES ($1, $2, $3, $4, $5, $6)",
        &[
            &person.id,
            &person.name,
            &person.canonical,
            &person.key,
            &person.created_at,
            &person.created_by,
        ],
    )
    .await
    .map_err(|err| {
        if err.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION) {
            StoreError::Conflict(format!(
                "person `{}` collides with a person recorded at the same time",
                person.name
            ))
        } else {
            err.into()
        }
    })?;
    Ok(())
}

pub async fn set_owners(tx: &Tx<'_>, owners: &[(Uuid, Uuid)]) -> Result<()> {
    for (token, person) in owners {
        tx.execute(
            "UPDATE tokens SET person_id = $2 WHERE id = $1 AND person_id IS NULL",
            &[token, person],
        )
        .await?;
    }
    Ok(())
}

/// The token and the chain of tokens that issued it (bounded: a cycle cannot be written,
/// but a database edited by hand could hold one).
pub async fn token_lineage(tx: &Tx<'_>, token_id: Uuid) -> Result<Vec<TokenRecord>> {
    let mut chain = vec![token(tx, token_id).await?];
    while let Some(parent) = chain.last().and_then(|t| t.created_by_token) {
        if chain.len() > 1000 || chain.iter().any(|t| t.id == parent) {
            break;
        }
        match token(tx, parent).await {
            Ok(record) => chain.push(record),
            Err(StoreError::NotFound(_)) => break,
            Err(err) => return Err(err),
        }
    }
    Ok(chain)
}

pub async fn insert_token(
    tx: &Tx<'_>,
    key: Option<&AuditKey>,
    token: &TokenRecord,
    audit: &NewAudit,
) -> Result<()> {
    write_token(tx, token).await?;
    audit::append(tx, key, audit).await?;
    Ok(())
}

pub async fn token(tx: &Tx<'_>, token_id: Uuid) -> Result<TokenRecord> {
    let row = tx
        .query_opt(&format!("{TOKEN_SELECT} WHERE t.id = $1"), &[&token_id])
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("no token {token_id}")))?;
    token_row(&row)
}

pub async fn tokens(tx: &Tx<'_>) -> Result<Vec<TokenRecord>> {
    let rows = tx
        .query(&format!("{TOKEN_SELECT} ORDER BY t.created_at, t.id"), &[])
        .await?;
    rows.iter().map(token_row).collect()
}

pub async fn revoke_token(
    tx: &Tx<'_>,
    key: Option<&AuditKey>,
    token_id: Uuid,
    at: Millis,
    audit: &NewAudit,
) -> Result<TokenRecord> {
    // Locked: two nodes revoking at once, the second sees the first's revocation.
    tx.execute(
        "SELECT 1 FROM tokens WHERE id = $1 FOR UPDATE",
        &[&token_id],
    )
    .await?;
    let mut record = token(tx, token_id).await?;
    if record.revoked_at.is_some() {
        return Err(StoreError::Conflict(format!(
            "token {token_id} is already revoked"
        )));
    }
    tx.execute(
        "UPDATE tokens SET revoked_at = $2 WHERE id = $1",
        &[&token_id, &at],
    )
    .await?;
    audit::append(tx, key, audit).await?;
    record.revoked_at = Some(at);
    Ok(record)
}

pub async fn insert_enrollment_token(
    tx: &Tx<'_>,
    key: Option<&AuditKey>,
    token: &EnrollmentTokenRecord,
    audit: &NewAudit,
) -> Result<()> {
    tx.execute(
        "INSERT INTO enrollment_tokens (id, digest, created_by, created_at, expires_at, uses_left)
         VALUES ($1, $2, $3, $4, $5, $6)",
        &[
            &token.id,
            &&token.digest[..],
            &token.created_by,
            &token.created_at,
            &token.expires_at,
            &i64::from(token.uses_left),
        ],
    )
    .await?;
    audit::append(tx, key, audit).await?;
    Ok(())
}

#[allow(clippy::too_many_arguments)]
pub async fn enroll(
    tx: &Tx<'_>,
    key: Option<&AuditKey>,
    token_id: Uuid,
    presented: &[u8; 32],
    host: &Host,
    credential: &TokenRecord,
    chain_key: Option<&ChainKey>,
    audit: &NewAudit,
) -> Result<()> {
    // Locked: the last use of a token is spent once across nodes.
    let found = tx
        .query_opt(
            "SELECT digest, expires_at, uses_left FROM enrollment_tokens WHERE id = $1 FOR UPDATE",
            &[&token_id],
        )
        .await?;
    // One answer for every failure, so a caller learns nothing about which tokens exist.
    let refused = || StoreError::NotFound("enrollment token is invalid, expired or used up".into());
    let Some(found) = found else {
        return Err(refused());
    };
    let stored = digest(found.get(0))?;
    let expires_at: Millis = found.get(1);
    let uses_left: i64 = found.get(2);
    if !constant_time_eq(&stored, presented) || expires_at <= host.enrolled_at || uses_left <= 0 {
        return Err(refused());
    }
    tx.execute(
        "UPDATE enrollment_tokens SET uses_left = uses_left - 1 WHERE id = $1",
        &[&token_id],
    )
    .await?;
    let key_bytes = chain_key.map(|k| k.as_bytes().to_vec());
    let key_seq = chain_key.map(|_| 1_i64);
    // Sequence number 1 is both the lowest not yet received and the next.
    tx.execute(
        "INSERT INTO hosts (id, hostname, labels, agent_version, enrolled_at, chain_hash,
                            chain_key_floor_seq, chain_key_floor, chain_key_next_seq, chain_key_next)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $7, $8)",
        &[
            &host.id,
            &host.hostname,
            &json(&host.labels),
            &host.agent_version,
            &host.enrolled_at,
            &&driftwatch_common::api::v1::DriftEvent::GENESIS.0[..],
            &key_seq,
            &key_bytes,
        ],
    )
    .await?;
    write_token(tx, credential).await?;
    audit::append(tx, key, audit).await?;
    Ok(())
}

/// The columns [`host_row`] reads, for a table aliased `h`.
pub const HOST_COLUMNS: &str = "h.id, h.hostname, h.labels, h.agent_version, h.enrolled_at, \
     h.last_seen_at, h.skew_ms, h.inventory, h.health, h.reported_seq, h.chain_seq, \
     h.chain_key_next IS NOT NULL";

/// A host from the columns of [`HOST_COLUMNS`] starting at `at`.
pub fn host_row_at(r: &Row, at: usize) -> Result<Host> {
    Ok(Host {
        id: r.get(at),
        hostname: r.get(at + 1),
        labels: from_json(r.get(at + 2))?,
        agent_version: r.get(at + 3),
        enrolled_at: r.get(at + 4),
        last_seen_at: r.get(at + 5),
        skew_ms: r.get(at + 6),
        inventory: opt_from_json(r.get(at + 7))?,
        health: opt_from_json(r.get(at + 8))?,
        reported_seq: unseq(r.get(at + 9)),
        stored_seq: unseq(r.get(at + 10)),
        chain_keyed: r.get(at + 11),
    })
}

pub async fn host(tx: &Tx<'_>, host_id: Uuid) -> Result<Host> {
    let row = tx
        .query_opt(
            &format!("SELECT {HOST_COLUMNS} FROM hosts h WHERE h.id = $1"),
            &[&host_id],
        )
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("no host {host_id}")))?;
    host_row_at(&row, 0)
}

pub async fn hosts(tx: &Tx<'_>) -> Result<Vec<Host>> {
    let rows = tx
        .query(
            &format!("SELECT {HOST_COLUMNS} FROM hosts h ORDER BY h.hostname, h.id"),
            &[],
        )
        .await?;
    rows.iter().map(|r| host_row_at(r, 0)).collect()
}

/// A page of hosts in listing order (hostname, then id) after the key `after` (issue 10).
pub async fn hosts_page(
    tx: &Tx<'_>,
    after: Option<(String, Uuid)>,
    limit: u32,
) -> Result<Vec<Host>> {
    let (name, last) = after.map_or((None, None), |(name, last)| (Some(name), Some(last)));
    let rows = tx
        .query(
            &format!(
                "SELECT {HOST_COLUMNS} FROM hosts h
                 WHERE $1::text IS NULL OR (h.hostname, h.id) > ($1, $2::uuid)
                 ORDER BY h.hostname, h.id LIMIT $3"
            ),
            &[&name, &last, &i64::from(limit)],
        )
        .await?;
    rows.iter().map(|r| host_row_at(r, 0)).collect()
}
