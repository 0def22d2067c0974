//! Operations on queues as a whole: stats, deleting a queue, and listing, replaying and
//! purging dead letters (rows whose `dead_of` names the queue they failed in).

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};
use tidings_core::envelope::headers;
use tidings_core::transport::{error_queue_name, DeadLetter, DeadLetterQuery, QueueStats};
use tidings_core::{Envelope, Error, Result};

use crate::error::PgError;
use crate::transport::Shared;

fn count(r: &PgRow, i: usize) -> std::result::Result<u64, PgError> {
    let n: i64 = r.try_get(i).map_err(PgError::db("stats"))?;
    Ok(u64::try_from(n).unwrap_or(0))
}

pub(crate) async fn stats(shared: &Shared) -> Result<Vec<QueueStats>> {
    let rows = sqlx::query(shared.sql.stats.sql())
        .fetch_all(&shared.pool)
        .await
        .map_err(PgError::db("stats"))?;
    let stats = rows.iter().map(|r| {
        let oldest: Option<f64> = r.try_get(4).map_err(PgError::db("stats"))?;
        Ok(QueueStats {
            queue: r.try_get(0).map_err(PgError::db("stats"))?,
            ready: count(r, 1)?,
            in_flight: Some(count(r, 2)?),
            scheduled: Some(count(r, 3)?),
            oldest_age: oldest.map(|s| Duration::from_secs_f64(s.max(0.0))),
            error_depth: count(r, 5)?,
            parked_keys: Some(count(r, 6)?),
        })
    });
    Ok(stats.collect::<std::result::Result<_, PgError>>()?)
}

/// Deletes `queue`, its error queue, their rows, parked keys and subscriptions in one
/// statement (a missing queue is fine).
pub(crate) async fn delete_queue(shared: &Shared, queue: &str) -> Result<()> {
    sqlx::query(shared.sql.delete_queue.sql())
        .bind(queue)
        .bind(error_queue_name(queue))
        .execute(&shared.pool)
        .await
        .map_err(PgError::db("delete queue"))?;
    Ok(())
}

/// A dead letter row: error queue, seq, and what the caller sees.
struct DeadRow {
    error_queue: String,
    seq: i64,
    dl: DeadLetter,
}

async fn select(
    shared: &Shared,
    conn: &mut PgConnection,
    query: &DeadLetterQuery,
    lock: bool,
) -> Result<Vec<DeadRow>> {
    let stmt = if lock {
        &shared.sql.dead_letters_lock
    } else {
        &shared.sql.dead_letters
    };
    let limit = (query.limit > 0).then(|| i64::try_from(query.limit).unwrap_or(i64::MAX));
    let rows = sqlx::query(stmt.sql())
        .bind(query.queue.as_deref())
        .bind(query.message_type.as_deref())
        .bind(query.reason.as_deref())
        .bind(query.since)
        .bind(&query.ids)
        .bind(limit)
        .fetch_all(conn)
        .await
        .map_err(PgError::db("list dead letters"))?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let col = PgError::db("list dead letters");
        let blob: Vec<u8> = r.try_get(4).map_err(col)?;
        let envelope = Envelope::from_json(&blob)
            .map_err(|e| Error::from(PgError::Corrupt(format!("dead letter envelope: {e}"))))?;
        let col = || PgError::db("list dead letters");
        let dl = DeadLetter {
            queue: r.try_get(2).map_err(col())?,
            envelope,
            dead_lettered_at: r.try_get::<DateTime<Utc>, _>(3).map_err(col())?,
        };
        if query.matches(&dl) {
            out.push(DeadRow {
                seq: r.try_get(0).map_err(col())?,
                error_queue: r.try_get(1).map_err(col())?,
                dl,
            });
        }
    }
    Ok(out)
}

pub(crate) async fn dead_letters(
    shared: &Shared,
    query: &DeadLetterQuery,
) -> Result<Vec<DeadLetter>> {
    let mut conn = shared
        .pool
        .acquire()
        .await
        .map_err(PgError::db("acquire"))?;
    Ok(select(shared, &mut conn, query, false)
        .await?
        .into_iter()
        .map(|r| r.dl)
        .collect())
}

/// Unparks the keys of `rows` on their original queues.
async fn unpark(shared: &Shared, conn: &mut PgConnection, rows: &[DeadRow]) -> Result<()> {
    let (queues, keys): (Vec<String>, Vec<String>) = rows
        .iter()
        .filter_map(|r| {
            r.dl.envelope
                .partition_key
                .clone()
                .map(|k| (r.dl.queue.clone(), k))
        })
        .unzip();
    if queues.is_empty() {
        return Ok(());
    }
    sqlx::query(shared.sql.unpark.sql())
        .bind(&queues)
        .bind(&keys)
        .execute(conn)
        .await
        .map_err(PgError::db("unpark"))?;
    Ok(())
}

pub(crate) async fn replay(
    shared: &Shared,
    query: &DeadLetterQuery,
    to: Option<&str>,
) -> Result<u64> {
    let mut tx = shared.pool.begin().await.map_err(PgError::db("replay"))?;
    if let Some(to) = to {
        shared.ensure_queues(&mut tx, &[to.to_string()]).await?;
    }
    let rows = select(shared, &mut tx, query, true).await?;
    let n = rows.len();
    let mut queues = Vec::with_capacity(n);
    let mut seqs = Vec::with_capacity(n);
    let mut targets = Vec::with_capacity(n);
    let mut blobs = Vec::with_capacity(n);
    for r in &rows {
        let mut env = r.dl.envelope.clone();
        let replays: u32 = env
            .header(headers::REPLAYED)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        env.headers
            .insert(headers::REPLAYED.into(), (replays + 1).to_string());
        queues.push(r.error_queue.clone());
        seqs.push(r.seq);
        targets.push(to.unwrap_or(&r.dl.queue).to_string());
        blobs.push(env.to_json()?);
    }
    if n > 0 {
        sqlx::query(shared.sql.replay.sql())
            .bind(&queues)
            .bind(&seqs)
            .bind(&targets)
            .bind(&blobs)
            .bind(&shared.sql.channel)
            .execute(&mut *tx)
            .await
            .map_err(PgError::db("replay"))?;
        unpark(shared, &mut tx, &rows).await?;
    }
    tx.commit().await.map_err(PgError::db("replay"))?;
    for t in &targets {
        shared.wake.notify(t);
    }
    Ok(n as u64)
}

pub(crate) async fn purge(shared: &Shared, query: &DeadLetterQuery) -> Result<u64> {
    let mut tx = shared.pool.begin().await.map_err(PgError::db("purge"))?;
    let rows = select(shared, &mut tx, query, true).await?;
    if !rows.is_empty() {
        let queues: Vec<&str> = rows.iter().map(|r| r.error_queue.as_str()).collect();
        let seqs: Vec<i64> = rows.iter().map(|r| r.seq).collect();
        sqlx::query(shared.sql.purge.sql())
            .bind(&queues)
            .bind(&seqs)
            .execute(&mut *tx)
            .await
            .map_err(PgError::db("purge"))?;
        unpark(shared, &mut tx, &rows).await?;
    }
    tx.commit().await.map_err(PgError::db("purge"))?;
    let mut woken: Vec<&str> = rows.iter().map(|r| r.dl.queue.as_str()).collect();
    woken.dedup();
    for q in woken {
        shared.wake.notify(q);
    }
    Ok(rows.len() as u64)
}
