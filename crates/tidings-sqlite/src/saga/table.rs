//! The saga table `tidings_saga_instances` and the statements on it: create, load, the
//! optimistic-concurrency writes, listing. Created by the store itself (`CREATE TABLE IF
//! NOT EXISTS`), so it lives in whichever SQLite database the saga's transaction runs on —
//! the transport's file, or a service's own database beside its outbox table.

use chrono::{DateTime, TimeZone, Utc};
use sqlx::sqlite::{SqliteConnection, SqliteRow};
use sqlx::{Row, SqlitePool};
use tidings_core::saga::store::conflict;
use tidings_core::saga::{SagaMeta, SagaQuery, SagaRecord, SagaStatus, SagaSummary, Write};

use crate::error::{Result, SqliteError};

/// The table (and, for a database that is not the transport's, its inbox table, with the
/// transport's shape).
pub(crate) const DDL: &str = "
CREATE TABLE IF NOT EXISTS tidings_saga_instances (
    saga TEXT NOT NULL,
    key TEXT NOT NULL,
    state TEXT NOT NULL,
    data TEXT NOT NULL,
    version INTEGER NOT NULL,
    status TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    completed_at INTEGER,
    meta TEXT NOT NULL,
    PRIMARY KEY (saga, key)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS tidings_saga_instances_state
    ON tidings_saga_instances (saga, state, updated_at);
CREATE INDEX IF NOT EXISTS tidings_saga_instances_updated
    ON tidings_saga_instances (updated_at);
CREATE TABLE IF NOT EXISTS tidings_inbox (
    endpoint TEXT NOT NULL,
    message_id TEXT NOT NULL,
    processed_at INTEGER NOT NULL,
    PRIMARY KEY (endpoint, message_id)
) WITHOUT ROWID;
";

macro_rules! columns {
    () => {
        "saga, key, state, data, version, status, created_at, updated_at, completed_at, meta"
    };
}

fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn at(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

fn corrupt(what: &str, e: impl std::fmt::Display) -> SqliteError {
    SqliteError::Config(format!("saga table: {what}: {e}"))
}

fn record(row: &SqliteRow) -> Result<SagaRecord> {
    let data: String = row.try_get("data")?;
    let meta: String = row.try_get("meta")?;
    let status: String = row.try_get("status")?;
    let meta: SagaMeta = serde_json::from_str(&meta)?;
    Ok(SagaRecord {
        saga: row.try_get("saga")?,
        key: row.try_get("key")?,
        state: row.try_get("state")?,
        data: serde_json::from_str(&data)?,
        version: row.try_get("version")?,
        status: SagaStatus::parse(&status).ok_or_else(|| corrupt("status", status))?,
        created_at: at(row.try_get("created_at")?),
        updated_at: at(row.try_get("updated_at")?),
        completed_at: row.try_get::<Option<i64>, _>("completed_at")?.map(at),
        compensations: meta.compensations,
        timeouts: meta.timeouts,
    })
}

/// The record of `(saga, key)` in `conn`'s transaction.
pub(crate) async fn load(
    conn: &mut SqliteConnection,
    saga: &str,
    key: &str,
) -> Result<Option<SagaRecord>> {
    let sql = concat!(
        "SELECT ",
        columns!(),
        " FROM tidings_saga_instances WHERE saga = ? AND key = ?"
    );
    let row = sqlx::query(sql)
        .bind(saga)
        .bind(key)
        .fetch_optional(conn)
        .await?;
    row.as_ref().map(record).transpose()
}

async fn version(conn: &mut SqliteConnection, saga: &str, key: &str) -> Result<Option<i64>> {
    Ok(
        sqlx::query_scalar("SELECT version FROM tidings_saga_instances WHERE saga = ? AND key = ?")
            .bind(saga)
            .bind(key)
            .fetch_optional(conn)
            .await?,
    )
}

/// Applies `write`; `Ok(Err(conflict))` if the version is not the one the step read.
pub(crate) async fn apply(
    conn: &mut SqliteConnection,
    saga: &str,
    write: &Write,
) -> Result<std::result::Result<(), tidings_core::Error>> {
    let json = |v: &serde_json::Value| serde_json::to_string(v);
    let meta = |r: &SagaRecord| serde_json::to_string(&r.meta());
    let (n, key) = match write {
        Write::Nothing => return Ok(Ok(())),
        Write::Insert(r) => {
            let sql = concat!(
                "INSERT INTO tidings_saga_instances (",
                columns!(),
                ") VALUES (?, ?, ?, ?, 1, ?, ?, ?, ?, ?) ON CONFLICT (saga, key) DO NOTHING"
            );
            let n = sqlx::query(sql)
                .bind(saga)
                .bind(&r.key)
                .bind(&r.state)
                .bind(json(&r.data)?)
                .bind(r.status.as_str())
                .bind(ms(r.created_at))
                .bind(ms(r.updated_at))
                .bind(r.completed_at.map(ms))
                .bind(meta(r)?)
                .execute(&mut *conn)
                .await?
                .rows_affected();
            (n, &r.key)
        }
        Write::Update(r) => {
            let n = sqlx::query(
                "UPDATE tidings_saga_instances SET state = ?, data = ?, version = version + 1, \
                 status = ?, updated_at = ?, completed_at = ?, meta = ? \
                 WHERE saga = ? AND key = ? AND version = ?",
            )
            .bind(&r.state)
            .bind(json(&r.data)?)
            .bind(r.status.as_str())
            .bind(ms(r.updated_at))
            .bind(r.completed_at.map(ms))
            .bind(meta(r)?)
            .bind(saga)
            .bind(&r.key)
            .bind(r.version)
            .execute(&mut *conn)
            .await?
            .rows_affected();
            (n, &r.key)
        }
        Write::Delete { key, expected } => {
            let n = sqlx::query(
                "DELETE FROM tidings_saga_instances WHERE saga = ? AND key = ? AND version = ?",
            )
            .bind(saga)
            .bind(key)
            .bind(expected)
            .execute(&mut *conn)
            .await?
            .rows_affected();
            (n, key)
        }
    };
    if n == 1 {
        return Ok(Ok(()));
    }
    let found = version(conn, saga, key).await?;
    Ok(Err(conflict(saga, write, found)))
}

/// Sagas matching `q`, least recently updated first.
pub(crate) async fn list(pool: &SqlitePool, q: &SagaQuery) -> Result<Vec<SagaSummary>> {
    let sql = concat!(
        "SELECT ",
        columns!(),
        " FROM tidings_saga_instances \
         WHERE (?1 IS NULL OR saga = ?1) AND (?2 IS NULL OR state = ?2) \
           AND (?3 IS NULL OR status = ?3) AND (?4 IS NULL OR updated_at < ?4) \
         ORDER BY updated_at, saga, key LIMIT ?5 OFFSET ?6"
    );
    let rows = sqlx::query(sql)
        .bind(&q.saga)
        .bind(&q.state)
        .bind(q.status.map(|s| s.as_str()))
        .bind(q.updated_before.map(ms))
        .bind(i64::try_from(q.limit()).unwrap_or(i64::MAX))
        .bind(i64::try_from(q.offset).unwrap_or(i64::MAX))
        .fetch_all(pool)
        .await?;
    rows.iter()
        .map(|r| record(r).map(|r| SagaSummary::of(&r)))
        .collect()
}

/// One saga.
pub(crate) async fn show(pool: &SqlitePool, saga: &str, key: &str) -> Result<Option<SagaRecord>> {
    let mut conn = pool.acquire().await?;
    load(&mut conn, saga, key).await
}

/// Deletes sagas of `saga` completed before `before`; returns how many.
pub(crate) async fn sweep(
    conn: &mut SqliteConnection,
    saga: &str,
    before: DateTime<Utc>,
) -> Result<u64> {
    Ok(sqlx::query(
        "DELETE FROM tidings_saga_instances WHERE saga = ? AND status = 'completed' \
         AND completed_at < ?",
    )
    .bind(saga)
    .bind(ms(before))
    .execute(conn)
    .await?
    .rows_affected())
}
