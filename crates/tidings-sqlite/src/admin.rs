//! The SQL of the rare operations: declaring and deleting queues, stats, and listing,
//! replaying and purging dead letters.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::sqlite::{SqliteConnection, SqliteRow};
use sqlx::{Row, SqliteExecutor};
use tidings_core::envelope::headers;
use tidings_core::transport::{DeadLetter, DeadLetterQuery, QueueStats, Topology};
use tidings_core::Envelope;

use crate::error::{Result, SqliteError};
use crate::schema::now_ms;
use crate::store::{insert_rows, NewRow};

/// Creates queues and subscriptions (idempotent) and bumps the topology counter.
pub(crate) async fn declare(conn: &mut SqliteConnection, topology: &Topology) -> Result<()> {
    for q in &topology.queues {
        sqlx::query(
            "INSERT INTO tidings_queues (name, ordered, temporary, created_at) VALUES (?, ?, ?, ?) \
             ON CONFLICT (name) DO UPDATE SET ordered = MAX(ordered, excluded.ordered)",
        )
        .bind(&q.name)
        .bind(q.ordered)
        .bind(q.temporary)
        .bind(now_ms())
        .execute(&mut *conn)
        .await?;
        for t in &q.subscriptions {
            sqlx::query(
                "INSERT OR IGNORE INTO tidings_subscriptions (message_type, queue) VALUES (?, ?)",
            )
            .bind(t)
            .bind(&q.name)
            .execute(&mut *conn)
            .await?;
        }
    }
    sqlx::query("UPDATE tidings_schema SET topology_gen = topology_gen + 1 WHERE id = 1")
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Deletes a queue with its messages, dead letters, parked keys and subscriptions (a
/// missing queue is fine), and bumps the topology counter so every process's writer stops
/// routing to it.
pub(crate) async fn delete_queue(conn: &mut SqliteConnection, queue: &str) -> Result<()> {
    for sql in [
        "DELETE FROM tidings_messages WHERE queue = ?",
        "DELETE FROM tidings_dead_letters WHERE queue = ?",
        "DELETE FROM tidings_parked WHERE queue = ?",
        "DELETE FROM tidings_subscriptions WHERE queue = ?",
        "DELETE FROM tidings_queues WHERE name = ?",
    ] {
        sqlx::query(sql).bind(queue).execute(&mut *conn).await?;
    }
    sqlx::query("UPDATE tidings_schema SET topology_gen = topology_gen + 1 WHERE id = 1")
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Depth and friends of every declared queue.
pub(crate) async fn stats<'e>(ex: impl SqliteExecutor<'e>) -> Result<Vec<QueueStats>> {
    let now = now_ms();
    let rows = sqlx::query(
        "SELECT q.name, \
         (SELECT COUNT(*) FROM tidings_messages m WHERE m.queue = q.name AND m.visible_at <= ?1 \
            AND (m.lease_until IS NULL OR m.lease_until <= ?1)), \
         (SELECT COUNT(*) FROM tidings_messages m WHERE m.queue = q.name \
            AND m.lease_token IS NOT NULL AND COALESCE(m.lease_until, m.visible_at) > ?1), \
         (SELECT COUNT(*) FROM tidings_messages m WHERE m.queue = q.name AND m.visible_at > ?1 \
            AND m.lease_token IS NULL), \
         (SELECT MIN(sent_at) FROM tidings_messages m WHERE m.queue = q.name \
            AND m.lease_token IS NULL), \
         (SELECT COUNT(*) FROM tidings_dead_letters d WHERE d.queue = q.name), \
         (SELECT COUNT(*) FROM tidings_parked p WHERE p.queue = q.name) \
         FROM tidings_queues q ORDER BY q.name",
    )
    .bind(now)
    .fetch_all(ex)
    .await?;
    rows.into_iter()
        .map(|r| {
            let oldest: Option<i64> = r.try_get(4)?;
            Ok(QueueStats {
                queue: r.try_get(0)?,
                ready: r.try_get::<i64, _>(1)? as u64,
                in_flight: Some(r.try_get::<i64, _>(2)? as u64),
                scheduled: Some(r.try_get::<i64, _>(3)? as u64),
                oldest_age: oldest.map(|t| Duration::from_millis((now - t).max(0) as u64)),
                error_depth: r.try_get::<i64, _>(5)? as u64,
                parked_keys: Some(r.try_get::<i64, _>(6)? as u64),
            })
        })
        .collect()
}

/// A dead letter with its row id.
pub(crate) struct DeadEntry {
    pub(crate) id: i64,
    pub(crate) letter: DeadLetter,
}

fn decode(r: &SqliteRow) -> Result<DeadEntry> {
    let us: i64 = r.try_get(2)?;
    let bytes: Vec<u8> = r.try_get(3)?;
    Ok(DeadEntry {
        id: r.try_get(0)?,
        letter: DeadLetter {
            queue: r.try_get(1)?,
            envelope: crate::store::decode(&bytes)?,
            dead_lettered_at: DateTime::<Utc>::from_timestamp_micros(us).unwrap_or_default(),
        },
    })
}

/// Dead letters matching `query`, oldest first.
pub(crate) async fn find<'e>(
    ex: impl SqliteExecutor<'e>,
    query: &DeadLetterQuery,
) -> Result<Vec<DeadEntry>> {
    let rows = sqlx::query(
        "SELECT id, queue, dead_lettered_at, envelope FROM tidings_dead_letters \
         WHERE (?1 IS NULL OR queue = ?1) AND (?2 IS NULL OR message_type = ?2) \
         AND (?3 IS NULL OR reason = ?3) AND (?4 IS NULL OR dead_lettered_at >= ?4) \
         ORDER BY dead_lettered_at, id",
    )
    .bind(&query.queue)
    .bind(&query.message_type)
    .bind(&query.reason)
    .bind(query.since.map(|t| t.timestamp_micros()))
    .fetch_all(ex)
    .await?;
    let mut out = Vec::new();
    for r in &rows {
        let e = decode(r)?;
        if query.matches(&e.letter) {
            out.push(e);
            if query.limit > 0 && out.len() >= query.limit {
                break;
            }
        }
    }
    Ok(out)
}

/// Deletes dead letters and unparks their keys.
async fn take(conn: &mut SqliteConnection, entries: &[DeadEntry]) -> Result<()> {
    for e in entries {
        sqlx::query("DELETE FROM tidings_dead_letters WHERE id = ?")
            .bind(e.id)
            .execute(&mut *conn)
            .await?;
        if let Some(k) = &e.letter.envelope.partition_key {
            sqlx::query("DELETE FROM tidings_parked WHERE queue = ? AND partition_key = ?")
                .bind(&e.letter.queue)
                .bind(k)
                .execute(&mut *conn)
                .await?;
        }
    }
    Ok(())
}

/// Moves matching dead letters back (to their queue or `to`), marked replayed, in their
/// original place (same row id, so per-key order holds).
pub(crate) async fn replay(
    conn: &mut SqliteConnection,
    query: &DeadLetterQuery,
    to: Option<&str>,
) -> Result<u64> {
    if let Some(to) = to {
        let found = sqlx::query("SELECT 1 FROM tidings_queues WHERE name = ?")
            .bind(to)
            .fetch_optional(&mut *conn)
            .await?;
        if found.is_none() {
            return Err(SqliteError::UnknownQueue(to.to_string()));
        }
    }
    let entries = find(&mut *conn, query).await?;
    take(conn, &entries).await?;
    let now = now_ms();
    let mut rows = Vec::with_capacity(entries.len());
    for e in &entries {
        let mut env: Envelope = e.letter.envelope.clone();
        let count: u32 = env
            .header(headers::REPLAYED)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        env.headers
            .insert(headers::REPLAYED.into(), (count + 1).to_string());
        rows.push(NewRow {
            id: Some(e.id),
            queue: to.unwrap_or(&e.letter.queue).to_string(),
            message_id: env.id.to_string(),
            partition_key: env.partition_key.clone(),
            visible_at: now,
            sent_at: env.sent_at.timestamp_millis(),
            envelope: crate::store::encode(&env)?,
        });
    }
    for r in &rows {
        insert_rows(conn, std::slice::from_ref(r)).await?;
    }
    Ok(entries.len() as u64)
}

/// Deletes matching dead letters; unparks their keys.
pub(crate) async fn purge(conn: &mut SqliteConnection, query: &DeadLetterQuery) -> Result<u64> {
    let entries = find(&mut *conn, query).await?;
    take(conn, &entries).await?;
    Ok(entries.len() as u64)
}
