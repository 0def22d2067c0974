//! The saga table `tidings_saga_instances` and the statements on it: create, load, the
//! optimistic-concurrency writes, listing. Created by the store itself (`CREATE TABLE IF
//! NOT EXISTS`) in the transport's schema, or in a pool's `search_path` schema (beside its
//! outbox table, with an inbox table of the transport's shape).

use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use sqlx::{AssertSqlSafe, PgConnection, PgPool, Row};
use tidings_core::saga::store::conflict;
use tidings_core::saga::{SagaMeta, SagaQuery, SagaRecord, SagaStatus, SagaSummary, Write};

use crate::error::PgError;

type Result<T> = std::result::Result<T, PgError>;

/// The DDL for tables qualified by `prefix` (`"schema."` or `""`); `with_inbox` adds an
/// inbox table of the transport's shape (for the pool mode).
pub(crate) fn ddl(prefix: &str, with_inbox: bool) -> String {
    let mut sql = format!(
        "CREATE TABLE IF NOT EXISTS {prefix}tidings_saga_instances (
    saga TEXT NOT NULL,
    key TEXT NOT NULL,
    state TEXT NOT NULL,
    data JSONB NOT NULL,
    version BIGINT NOT NULL,
    status TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL,
    completed_at TIMESTAMPTZ,
    meta JSONB NOT NULL,
    PRIMARY KEY (saga, key)
);
CREATE INDEX IF NOT EXISTS tidings_saga_instances_state
    ON {prefix}tidings_saga_instances (saga, state, updated_at);
CREATE INDEX IF NOT EXISTS tidings_saga_instances_updated
    ON {prefix}tidings_saga_instances (updated_at);
"
    );
    if with_inbox {
        sql.push_str(&format!(
            "CREATE TABLE IF NOT EXISTS {prefix}inbox (
    message_id UUID NOT NULL,
    endpoint TEXT NOT NULL,
    processed_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (message_id, endpoint)
);
"
        ));
    }
    sql
}

const COLUMNS: &str =
    "saga, key, state, data, version, status, created_at, updated_at, completed_at, meta";

fn corrupt(what: &str, e: impl std::fmt::Display) -> PgError {
    PgError::Corrupt(format!("saga table: {what}: {e}"))
}

fn record(row: &PgRow) -> Result<SagaRecord> {
    let get = |e| PgError::db("saga decode")(e);
    let meta: serde_json::Value = row.try_get("meta").map_err(get)?;
    let status: String = row.try_get("status").map_err(get)?;
    let meta: SagaMeta = serde_json::from_value(meta).map_err(|e| corrupt("meta", e))?;
    Ok(SagaRecord {
        saga: row.try_get("saga").map_err(get)?,
        key: row.try_get("key").map_err(get)?,
        state: row.try_get("state").map_err(get)?,
        data: row.try_get("data").map_err(get)?,
        version: row.try_get("version").map_err(get)?,
        status: SagaStatus::parse(&status).ok_or_else(|| corrupt("status", &status))?,
        created_at: row.try_get("created_at").map_err(get)?,
        updated_at: row.try_get("updated_at").map_err(get)?,
        completed_at: row.try_get("completed_at").map_err(get)?,
        compensations: meta.compensations,
        timeouts: meta.timeouts,
    })
}

/// The record of `(saga, key)` as `conn`'s transaction sees it.
pub(crate) async fn load(
    conn: &mut PgConnection,
    prefix: &str,
    saga: &str,
    key: &str,
) -> Result<Option<SagaRecord>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM {prefix}tidings_saga_instances WHERE saga = $1 AND key = $2"
    );
    let row = sqlx::query(AssertSqlSafe(sql))
        .bind(saga)
        .bind(key)
        .fetch_optional(conn)
        .await
        .map_err(PgError::db("saga load"))?;
    row.as_ref().map(record).transpose()
}

async fn version(
    conn: &mut PgConnection,
    prefix: &str,
    saga: &str,
    key: &str,
) -> Result<Option<i64>> {
    let sql =
        format!("SELECT version FROM {prefix}tidings_saga_instances WHERE saga = $1 AND key = $2");
    sqlx::query_scalar(AssertSqlSafe(sql))
        .bind(saga)
        .bind(key)
        .fetch_optional(conn)
        .await
        .map_err(PgError::db("saga version"))
}

fn meta(r: &SagaRecord) -> Result<serde_json::Value> {
    serde_json::to_value(r.meta()).map_err(|e| corrupt("meta", e))
}

/// Applies `write`; `Ok(Err(conflict))` if the version is not the one the step read.
pub(crate) async fn apply(
    conn: &mut PgConnection,
    prefix: &str,
    saga: &str,
    write: &Write,
) -> Result<std::result::Result<(), tidings_core::Error>> {
    let t = format!("{prefix}tidings_saga_instances");
    let (done, key) = match write {
        Write::Nothing => return Ok(Ok(())),
        Write::Insert(r) => {
            let sql = format!(
                "INSERT INTO {t} ({COLUMNS}) VALUES ($1, $2, $3, $4, 1, $5, $6, $7, $8, $9) \
                 ON CONFLICT (saga, key) DO NOTHING"
            );
            let done = sqlx::query(AssertSqlSafe(sql))
                .bind(saga)
                .bind(&r.key)
                .bind(&r.state)
                .bind(&r.data)
                .bind(r.status.as_str())
                .bind(r.created_at)
                .bind(r.updated_at)
                .bind(r.completed_at)
                .bind(meta(r)?)
                .execute(&mut *conn)
                .await;
            (done, &r.key)
        }
        Write::Update(r) => {
            let sql = format!(
                "UPDATE {t} SET state = $1, data = $2, version = version + 1, status = $3, \
                 updated_at = $4, completed_at = $5, meta = $6 \
                 WHERE saga = $7 AND key = $8 AND version = $9"
            );
            let done = sqlx::query(AssertSqlSafe(sql))
                .bind(&r.state)
                .bind(&r.data)
                .bind(r.status.as_str())
                .bind(r.updated_at)
                .bind(r.completed_at)
                .bind(meta(r)?)
                .bind(saga)
                .bind(&r.key)
                .bind(r.version)
                .execute(&mut *conn)
                .await;
            (done, &r.key)
        }
        Write::Delete { key, expected } => {
            let sql = format!("DELETE FROM {t} WHERE saga = $1 AND key = $2 AND version = $3");
            let done = sqlx::query(AssertSqlSafe(sql))
                .bind(saga)
                .bind(key)
                .bind(expected)
                .execute(&mut *conn)
                .await;
            (done, key)
        }
    };
    if done.map_err(PgError::db("saga write"))?.rows_affected() == 1 {
        return Ok(Ok(()));
    }
    let found = version(conn, prefix, saga, key).await?;
    Ok(Err(conflict(saga, write, found)))
}

/// Sagas matching `q`, least recently updated first.
pub(crate) async fn list(pool: &PgPool, prefix: &str, q: &SagaQuery) -> Result<Vec<SagaSummary>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM {prefix}tidings_saga_instances \
         WHERE ($1::text IS NULL OR saga = $1) AND ($2::text IS NULL OR state = $2) \
           AND ($3::text IS NULL OR status = $3) \
           AND ($4::timestamptz IS NULL OR updated_at < $4) \
         ORDER BY updated_at, saga, key LIMIT $5 OFFSET $6"
    );
    let rows = sqlx::query(AssertSqlSafe(sql))
        .bind(&q.saga)
        .bind(&q.state)
        .bind(q.status.map(|s| s.as_str()))
        .bind(q.updated_before)
        .bind(i64::try_from(q.limit()).unwrap_or(i64::MAX))
        .bind(i64::try_from(q.offset).unwrap_or(i64::MAX))
        .fetch_all(pool)
        .await
        .map_err(PgError::db("saga list"))?;
    rows.iter()
        .map(|r| record(r).map(|r| SagaSummary::of(&r)))
        .collect()
}

/// One saga.
pub(crate) async fn show(
    pool: &PgPool,
    prefix: &str,
    saga: &str,
    key: &str,
) -> Result<Option<SagaRecord>> {
    let mut conn = pool.acquire().await.map_err(PgError::db("acquire"))?;
    load(&mut conn, prefix, saga, key).await
}

/// Deletes sagas of `saga` completed before `before`; returns how many.
pub(crate) async fn sweep(
    pool: &PgPool,
    prefix: &str,
    saga: &str,
    before: DateTime<Utc>,
) -> Result<u64> {
    let sql = format!(
        "DELETE FROM {prefix}tidings_saga_instances WHERE saga = $1 AND status = 'completed' \
         AND completed_at < $2"
    );
    Ok(sqlx::query(AssertSqlSafe(sql))
        .bind(saga)
        .bind(before)
        .execute(pool)
        .await
        .map_err(PgError::db("saga sweep"))?
        .rows_affected())
}
