//! `driftwatch-collector migrate-store` (issue 10, "moving up"): copies a SQLite collector
//! into an empty PostgreSQL database.
//!
//! Not a `Store` operation (it moves rows, not records): the SQLite file is read in one read
//! transaction (a consistent snapshot even if a collector still ran), each table in rowid
//! order (its id order) in batches of keyset reads (`rowid > last`), and written into the
//! PostgreSQL schema the collector migrates to, in one transaction: a failure leaves the
//! target as it was. The target must be empty: every table both schemas share holds no
//! row, else nothing is copied. Values take the PostgreSQL column's type (`uuid` from
//! SQLite's text, `jsonb` from its JSON text, `boolean` from 0/1, `bytea` from blobs); a
//! value that does not fit is an error naming table, row and column, never a silent cast.
//! Identities and counters continue where SQLite's stopped: `drift_history_head` takes
//! SQLite's AUTOINCREMENT high-water mark (the live stream's cursor is never handed out
//! twice), identity columns' sequences their highest id.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use driftwatch_config::collector::PostgresSettings;
use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, OpenFlags};
use tokio_postgres::types::ToSql;
use uuid::Uuid;

use super::{PostgresStore, Result, SqliteStore, StoreError};

/// Tables copied first, in this order (references point backwards); any other shared table
/// follows by name.
const ORDER: &[&str] = &[
    "meta",
    "people",
    "tokens",
    "enrollment_tokens",
    "hosts",
    "windows",
    "drift",
    "events",
    "drift_history",
    "commands",
    "alerts",
    "alert_deliveries",
    "audit",
    "audit_checkpoints",
    "spool_marks",
    "baseline_anchors",
    "baseline_roots",
    "web_sessions",
];

/// PostgreSQL's bookkeeping, never copied nor counted: the schema version and the history
/// counter (set from SQLite's high-water mark).
const POSTGRES_ONLY: &[&str] = &["driftwatch_schema", "drift_history_head"];

/// Most rows one INSERT carries (and one SQLite read returns).
pub const BATCH_ROWS: usize = 1_000;
/// PostgreSQL's limit of bind parameters per statement.
const MAX_PARAMS: usize = 65_535;

/// One table's rows on each side after the copy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableCount {
    pub table: String,
    pub sqlite: u64,
    pub postgres: u64,
}

/// What `migrate` did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Migrated {
    /// Every shared table, in copy order.
    pub tables: Vec<TableCount>,
    /// Tables only the PostgreSQL schema has (left as its migrations made them).
    pub postgres_only: Vec<String>,
}

impl Migrated {
    /// Every table holds as many rows on both sides.
    pub fn counts_agree(&self) -> bool {
        self.tables.iter().all(|t| t.sqlite == t.postgres)
    }
}

/// A PostgreSQL column: its name and type (`information_schema.columns.data_type`).
#[derive(Clone, Debug)]
struct PgColumn {
    name: String,
    data_type: String,
    identity: bool,
}

/// Copies the SQLite database at `sqlite` into the (migrated, empty) PostgreSQL database of
/// `target`. `progress` hears each table with the rows copied so far.
pub async fn migrate(
    sqlite: &Path,
    target: &PostgresSettings,
    mut progress: impl FnMut(&str, u64),
) -> Result<Migrated> {
    // Refuses a file that is not a collector's or whose schema is not this binary's.
    SqliteStore::open_read_only(sqlite)?.close();
    let mut source = Connection::open_with_flags(
        sqlite,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|err| StoreError::other(format!("cannot open {}: {err}", sqlite.display())))?;
    source
        .busy_timeout(std::time::Duration::from_secs(10))
        .map_err(StoreError::other)?;
    let snapshot = source.transaction().map_err(StoreError::other)?;
    // A read transaction begins at its first read: this one.
    let sqlite_tables = sqlite_tables(&snapshot)?;

    let store = PostgresStore::configure(target)?;
    store.migrate().await?;
    let mut client = store.client().await?;
    let tx = client.transaction().await?;
    let pg_tables = pg_tables(&tx).await?;

    let missing: Vec<&String> = sqlite_tables
        .iter()
        .filter(|t| !pg_tables.contains(*t))
        .collect();
    if !missing.is_empty() {
        return Err(StoreError::other(format!(
            "the PostgreSQL schema has no table {}: this collector cannot copy it",
            join(&missing)
        )));
    }
    let mut tables: Vec<String> = ORDER
        .iter()
        .filter(|t| sqlite_tables.contains(**t))
        .map(|t| (*t).to_owned())
        .collect();
    tables.extend(
        sqlite_tables
            .iter()
            .filter(|t| !ORDER.contains(&t.as_str()))
            .cloned(),
    );
    let postgres_only: Vec<String> = pg_tables
        .iter()
        .filter(|t| !sqlite_tables.contains(*t) && !POSTGRES_ONLY.contains(&t.as_str()))
        .cloned()
        .collect();

    // Refuse a target that holds anything.
    let mut not_empty = Vec::new();
    for table in &tables {
        let rows: i64 = tx
            .query_one(&format!("SELECT count(*) FROM {}", ident(table)), &[])
            .await?
            .get(0);
        if rows > 0 {
            not_empty.push(format!("{table} ({rows} rows)"));
        }
    }
    if !not_empty.is_empty() {
        return Err(StoreError::Conflict(format!(
            "the PostgreSQL database is not empty: {}; migrate-store copies into an empty \
             database only (create a new one, or drop this one's tables)",
            not_empty.join(", ")
        )));
    }

    let mut counts = Vec::new();
    for table in &tables {
        let pg_columns = pg_columns(&tx, table).await?;
        let sqlite_columns = sqlite_columns(&snapshot, table)?;
        let by_name: BTreeMap<&str, &PgColumn> =
            pg_columns.iter().map(|c| (c.name.as_str(), c)).collect();
        let mut columns = Vec::new();
        for name in &sqlite_columns {
            let column = by_name.get(name.as_str()).ok_or_else(|| {
                StoreError::other(format!(
                    "the PostgreSQL table {table} has no column {name}: this collector \
                     cannot copy it"
                ))
            })?;
            columns.push((*column).clone());
        }
        let identity = columns.iter().any(|c| c.identity);
        let per_batch = BATCH_ROWS.min(MAX_PARAMS / columns.len().max(1)).max(1);
        let list = columns
            .iter()
            .map(|c| ident(&c.name))
            .collect::<Vec<_>>()
            .join(", ");
        let select = format!(
            "SELECT rowid, {list} FROM {} WHERE rowid > ?1 ORDER BY rowid LIMIT ?2",
            ident(table)
        );
        let mut after = i64::MIN;
        let mut copied = 0u64;
        loop {
            let (rows, last) = read_batch(&snapshot, &select, after, per_batch, columns.len())
                .map_err(|err| StoreError::other(format!("cannot read {table}: {err}")))?;
            if rows.is_empty() {
                break;
            }
            after = last;
            let mut params: Vec<Box<dyn ToSql + Sync + Send>> =
                Vec::with_capacity(rows.len() * columns.len());
            for (rowid, row) in &rows {
                for (value, column) in row.iter().zip(&columns) {
                    let param = convert(value, &column.data_type).map_err(|why| {
                        StoreError::other(format!(
                            "{table} row {rowid}, column {}: {why}",
                            column.name
                        ))
                    })?;
                    params.push(param);
                }
            }
            let sql = insert_sql(table, &list, identity, rows.len(), columns.len());
            let refs: Vec<&(dyn ToSql + Sync)> =
                params.iter().map(|p| &**p as &(dyn ToSql + Sync)).collect();
            tx.execute(&sql, &refs)
                .await
                .map_err(|err| StoreError::other(format!("cannot write {table}: {err}")))?;
            copied += rows.len() as u64;
            progress(table, copied);
        }
        // Identities continue after the highest id copied.
        for column in columns.iter().filter(|c| c.identity) {
            tx.execute(
                &format!(
                    "SELECT setval(pg_get_serial_sequence($1, $2), \
                     greatest((SELECT max({}) FROM {}), 1), \
                     (SELECT max({}) FROM {}) IS NOT NULL)",
                    ident(&column.name),
                    ident(table),
                    ident(&column.name),
                    ident(table)
                ),
                &[table, &column.name],
            )
            .await?;
        }
        counts.push(TableCount {
            table: table.clone(),
            sqlite: 0,
            postgres: 0,
        });
    }

    // The live stream's counter: the highest history id SQLite ever handed out.
    if pg_tables.contains("drift_history_head") && sqlite_tables.contains("drift_history") {
        let high: i64 = snapshot
            .query_row(
                "SELECT max(coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'drift_history'), 0),
                            coalesce((SELECT max(id) FROM drift_history), 0))",
                [],
                |r| r.get(0),
            )
            .map_err(StoreError::other)?;
        tx.execute(
            "UPDATE drift_history_head SET last = greatest(last, $1)",
            &[&high],
        )
        .await?;
    }

    for count in &mut counts {
        count.sqlite = snapshot
            .query_row(
                &format!("SELECT count(*) FROM {}", ident(&count.table)),
                [],
                |r| r.get::<_, i64>(0),
            )
            .map_err(StoreError::other)? as u64;
        count.postgres = tx
            .query_one(
                &format!("SELECT count(*) FROM {}", ident(&count.table)),
                &[],
            )
            .await?
            .get::<_, i64>(0) as u64;
    }
    let migrated = Migrated {
        tables: counts,
        postgres_only,
    };
    if !migrated.counts_agree() {
        let differ: Vec<String> = migrated
            .tables
            .iter()
            .filter(|t| t.sqlite != t.postgres)
            .map(|t| format!("{} ({} vs {})", t.table, t.sqlite, t.postgres))
            .collect();
        return Err(StoreError::other(format!(
            "the copy's counts differ, nothing was committed: {}",
            differ.join(", ")
        )));
    }
    tx.commit().await?;
    drop(snapshot);
    store.close();
    Ok(migrated)
}

fn join(names: &[&String]) -> String {
    names
        .iter()
        .map(|n| n.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// A table or column name as an SQL identifier (names come from the schemas, quoted anyway).
fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn insert_sql(table: &str, list: &str, identity: bool, rows: usize, columns: usize) -> String {
    let mut sql = format!("INSERT INTO {} ({list}) ", ident(table));
    if identity {
        sql.push_str("OVERRIDING SYSTEM VALUE ");
    }
    sql.push_str("VALUES ");
    let mut n = 1;
    for row in 0..rows {
        if row > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        for column in 0..columns {
            if column > 0 {
                sql.push_str(", ");
            }
            sql.push_str(&format!("${n}"));
            n += 1;
        }
        sql.push(')');
    }
    sql
}

type Batch = Vec<(i64, Vec<SqlValue>)>;

fn read_batch(
    conn: &Connection,
    select: &str,
    after: i64,
    limit: usize,
    columns: usize,
) -> rusqlite::Result<(Batch, i64)> {
    let mut stmt = conn.prepare_cached(select)?;
    let mut rows = stmt.query(rusqlite::params![after, limit as i64])?;
    let mut batch = Vec::with_capacity(limit);
    let mut last = after;
    while let Some(row) = rows.next()? {
        let rowid: i64 = row.get(0)?;
        let mut values = Vec::with_capacity(columns);
        for i in 0..columns {
            values.push(row.get::<_, SqlValue>(i + 1)?);
        }
        last = rowid;
        batch.push((rowid, values));
    }
    Ok((batch, last))
}

fn sqlite_tables(conn: &Connection) -> Result<BTreeSet<String>> {
    let mut stmt = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
        .map_err(StoreError::other)?;
    let names = stmt
        .query_map([], |r| r.get::<_, String>(0))
        .map_err(StoreError::other)?
        .collect::<rusqlite::Result<BTreeSet<String>>>()
        .map_err(StoreError::other)?;
    Ok(names)
}

fn sqlite_columns(conn: &Connection, table: &str) -> Result<Vec<String>> {
    let mut stmt = conn
        .prepare(&format!("PRAGMA table_info({})", ident(table)))
        .map_err(StoreError::other)?;
    let names = stmt
        .query_map([], |r| r.get::<_, String>(1))
        .map_err(StoreError::other)?
        .collect::<rusqlite::Result<Vec<String>>>()
        .map_err(StoreError::other)?;
    Ok(names)
}

async fn pg_tables(tx: &tokio_postgres::Transaction<'_>) -> Result<BTreeSet<String>> {
    let rows = tx
        .query(
            "SELECT table_name::text FROM information_schema.tables
             WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'",
            &[],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get::<_, String>(0)).collect())
}

async fn pg_columns(tx: &tokio_postgres::Transaction<'_>, table: &str) -> Result<Vec<PgColumn>> {
    let rows = tx
        .query(
            "SELECT column_name::text, data_type::text, is_identity::text
             FROM information_schema.columns
             WHERE table_schema = current_schema() AND table_name = $1
             ORDER BY ordinal_position",
            &[&table],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| PgColumn {
            name: r.get(0),
            data_type: r.get(1),
            identity: r.get::<_, String>(2) == "YES",
        })
        .collect())
}

/// A SQLite value as the parameter a PostgreSQL column of `data_type` takes.
fn convert(value: &SqlValue, data_type: &str) -> Result<Box<dyn ToSql + Sync + Send>, String> {
    let kind = match value {
        SqlValue::Null => "null",
        SqlValue::Integer(_) => "integer",
        SqlValue::Real(_) => "real",
        SqlValue::Text(_) => "text",
        SqlValue::Blob(_) => "blob",
    };
    let mismatch = || format!("a SQLite {kind} does not fit PostgreSQL's {data_type}");
    Ok(match data_type {
        "uuid" => Box::new(match value {
            SqlValue::Null => None,
            SqlValue::Text(text) => Some(
                Uuid::parse_str(text).map_err(|err| format!("{text:?} is not a uuid: {err}"))?,
            ),
            SqlValue::Blob(bytes) => {
                Some(Uuid::from_slice(bytes).map_err(|err| format!("not a uuid: {err}"))?)
            }
            _ => return Err(mismatch()),
        }),
        "bigint" => Box::new(match value {
            SqlValue::Null => None,
            SqlValue::Integer(n) => Some(*n),
            _ => return Err(mismatch()),
        }),
        "integer" => Box::new(match value {
            SqlValue::Null => None,
            SqlValue::Integer(n) => {
                Some(i32::try_from(*n).map_err(|_| format!("{n} does not fit an integer"))?)
            }
            _ => return Err(mismatch()),
        }),
        "boolean" => Box::new(match value {
            SqlValue::Null => None,
            SqlValue::Integer(0) => Some(false),
            SqlValue::Integer(1) => Some(true),
            SqlValue::Integer(n) => return Err(format!("{n} is not a boolean (0 or 1)")),
            _ => return Err(mismatch()),
        }),
        "bytea" => Box::new(match value {
            SqlValue::Null => None,
            SqlValue::Blob(bytes) => Some(bytes.clone()),
            SqlValue::Text(text) => Some(text.as_bytes().to_vec()),
            _ => return Err(mismatch()),
        }),
        "jsonb" | "json" => Box::new(match value {
            SqlValue::Null => None,
            SqlValue::Text(text) => Some(
                serde_json::from_str::<serde_json::Value>(text)
                    .map_err(|err| format!("not JSON: {err}"))?,
            ),
            _ => return Err(mismatch()),
        }),
        "text" | "character varying" => Box::new(match value {
            SqlValue::Null => None,
            SqlValue::Text(text) => Some(text.clone()),
            _ => return Err(mismatch()),
        }),
        other => return Err(format!("PostgreSQL type {other} is not supported yet")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_postgres::types::Type;

    fn sql_text(param: &(dyn ToSql + Sync + Send), ty: &Type) -> Vec<u8> {
        let mut out = bytes_mut();
        let _ = param.to_sql_checked(ty, &mut out).expect("encodes");
        out.to_vec()
    }

    fn bytes_mut() -> tokio_postgres::types::private::BytesMut {
        tokio_postgres::types::private::BytesMut::new()
    }

    #[test]
    fn values_take_the_postgres_column_type() {
        let id = Uuid::now_v7();
        let uuid = convert(&SqlValue::Text(id.hyphenated().to_string()), "uuid").unwrap();
        assert_eq!(sql_text(&*uuid, &Type::UUID), id.as_bytes().to_vec());
        let yes = convert(&SqlValue::Integer(1), "boolean").unwrap();
        assert_eq!(sql_text(&*yes, &Type::BOOL), vec![1]);
        let n = convert(&SqlValue::Integer(1 << 40), "bigint").unwrap();
        assert_eq!(
            sql_text(&*n, &Type::INT8),
            (1i64 << 40).to_be_bytes().to_vec()
        );
        let json = convert(&SqlValue::Text(r#"{"a":[1,2]}"#.into()), "jsonb").unwrap();
        // jsonb's binary format: version 1, then the text.
        assert_eq!(
            sql_text(&*json, &Type::JSONB),
            b"\x01{\"a\":[1,2]}".to_vec()
        );
        let blob = convert(&SqlValue::Blob(vec![0, 255]), "bytea").unwrap();
        assert_eq!(sql_text(&*blob, &Type::BYTEA), vec![0, 255]);
        // NULL stays NULL whatever the type.
        for ty in [
            "uuid", "bigint", "integer", "boolean", "bytea", "jsonb", "text",
        ] {
            let null = convert(&SqlValue::Null, ty).unwrap();
            let mut out = bytes_mut();
            let pg = match ty {
                "uuid" => Type::UUID,
                "bigint" => Type::INT8,
                "integer" => Type::INT4,
                "boolean" => Type::BOOL,
                "bytea" => Type::BYTEA,
                "jsonb" => Type::JSONB,
                _ => Type::TEXT,
            };
            assert!(matches!(
                null.to_sql_checked(&pg, &mut out).unwrap(),
                tokio_postgres::types::IsNull::Yes
            ));
        }
    }

    #[test]
    fn a_value_that_does_not_fit_is_refused_with_the_reason() {
        let err = convert(&SqlValue::Text("not-a-uuid".into()), "uuid")
            .err()
            .unwrap();
        assert!(err.contains("is not a uuid"), "{err}");
        let err = convert(&SqlValue::Integer(2), "boolean").err().unwrap();
        assert!(err.contains("not a boolean"), "{err}");
        let err = convert(&SqlValue::Integer(1 << 40), "integer")
            .err()
            .unwrap();
        assert!(err.contains("does not fit"), "{err}");
        let err = convert(&SqlValue::Text("{".into()), "jsonb").err().unwrap();
        assert!(err.contains("not JSON"), "{err}");
        let err = convert(&SqlValue::Real(1.5), "bigint").err().unwrap();
        assert!(err.contains("real does not fit"), "{err}");
        let err = convert(&SqlValue::Text("x".into()), "numeric")
            .err()
            .unwrap();
        assert!(err.contains("not supported yet"), "{err}");
    }

    #[test]
    fn inserts_number_every_parameter_once() {
        let sql = insert_sql("audit_checkpoints", "\"id\", \"body\"", true, 2, 2);
        assert_eq!(
            sql,
            "INSERT INTO \"audit_checkpoints\" (\"id\", \"body\") OVERRIDING SYSTEM VALUE \
             VALUES ($1, $2), ($3, $4)"
        );
    }

    #[test]
    fn every_table_sqlite_creates_is_in_the_copy_order() {
        // A new SQLite table must be placed in `ORDER` (after what it references).
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.db");
        SqliteStore::open(&path).unwrap().close();
        let conn = Connection::open(&path).unwrap();
        for table in sqlite_tables(&conn).unwrap() {
            assert!(ORDER.contains(&table.as_str()), "{table} is not in ORDER");
        }
    }
}
