//! The SQL of the message path: inserting rows (send, outbox), resolving destinations,
//! claiming (with per-key order and parking), and settling. Every function takes a
//! connection already inside a transaction; the writer batches them.

use std::sync::OnceLock;

use sqlx::sqlite::SqliteConnection;
use sqlx::AssertSqlSafe;
use tidings_core::transport::{Destination, Outgoing};
use tidings_core::Envelope;

use crate::error::{Result, SqliteError};
use crate::schema::now_ms;

/// Encodes an envelope for the `envelope` columns (the compact stored form, see
/// [`Envelope::to_stored`]).
pub(crate) fn encode(env: &Envelope) -> Result<Vec<u8>> {
    env.to_stored().map_err(codec_error)
}

/// Decodes an `envelope` column: the compact stored form or JSON (older rows).
pub(crate) fn decode(bytes: &[u8]) -> Result<Envelope> {
    Envelope::from_stored(bytes).map_err(codec_error)
}

fn codec_error(e: tidings_core::Error) -> SqliteError {
    SqliteError::Serialization(<serde_json::Error as serde::de::Error>::custom(e))
}

/// A message row about to be inserted.
#[derive(Debug, Clone)]
pub(crate) struct NewRow {
    /// Keep this row id (a replay keeps its place); `None`: a new one.
    pub(crate) id: Option<i64>,
    pub(crate) queue: String,
    pub(crate) message_id: String,
    pub(crate) partition_key: Option<String>,
    pub(crate) visible_at: i64,
    pub(crate) sent_at: i64,
    pub(crate) envelope: Vec<u8>,
}

/// An outgoing message, encoded, destination not yet resolved.
#[derive(Debug, Clone)]
pub(crate) struct Prepared {
    pub(crate) destination: Destination,
    pub(crate) message_type: String,
    pub(crate) row: NewRow,
}

impl Prepared {
    /// Encodes an outgoing message (size already checked by the caller).
    pub(crate) fn new(out: &Outgoing) -> Result<Self> {
        let env = &out.envelope;
        let now = now_ms();
        Ok(Prepared {
            destination: out.destination.clone(),
            message_type: env.message_type.clone(),
            row: NewRow {
                id: None,
                queue: String::new(),
                message_id: env.id.to_string(),
                partition_key: env.partition_key.clone(),
                visible_at: env
                    .scheduled_for
                    .map_or(now, |t| t.timestamp_millis().max(now)),
                sent_at: env.sent_at.timestamp_millis(),
                envelope: encode(env)?,
            },
        })
    }
}

/// One row per destination queue of `p`: the queue itself, or every subscriber.
pub(crate) fn fan_out(p: &Prepared, targets: &[String], out: &mut Vec<NewRow>) {
    for q in targets {
        let mut row = p.row.clone();
        row.queue = q.clone();
        out.push(row);
    }
}

/// Resolves destinations by querying the tables (the outbox path; the writer caches).
pub(crate) async fn resolve(conn: &mut SqliteConnection, msgs: &[Prepared]) -> Result<Vec<NewRow>> {
    let mut rows = Vec::with_capacity(msgs.len());
    for p in msgs {
        let targets: Vec<String> = match &p.destination {
            Destination::Queue(q) => {
                let found = sqlx::query("SELECT 1 FROM tidings_queues WHERE name = ?")
                    .bind(q)
                    .fetch_optional(&mut *conn)
                    .await?;
                if found.is_none() {
                    return Err(SqliteError::UnknownQueue(q.clone()));
                }
                vec![q.clone()]
            }
            Destination::Topic => {
                sqlx::query_scalar("SELECT queue FROM tidings_subscriptions WHERE message_type = ?")
                    .bind(&p.message_type)
                    .fetch_all(&mut *conn)
                    .await?
            }
        };
        fan_out(p, &targets, &mut rows);
    }
    Ok(rows)
}

const INSERT_COLS: &str = "INSERT INTO tidings_messages \
    (id, queue, message_id, partition_key, visible_at, sent_at, envelope) VALUES ";
/// One row's insert (the writer's, statement prepared once and run per row).
pub(crate) const INSERT_ONE: &str = "INSERT INTO tidings_messages \
    (id, queue, message_id, partition_key, visible_at, sent_at, envelope) \
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)";
const MAX_CHUNK: usize = 128;

/// `INSERT ... VALUES (..),(..)` for `n` rows, `n` a power of two ≤ [`MAX_CHUNK`], so the
/// prepared-statement cache holds at most eight of them.
fn insert_sql(n: usize) -> &'static str {
    static SQL: OnceLock<Vec<String>> = OnceLock::new();
    let all = SQL.get_or_init(|| {
        (0..=MAX_CHUNK.trailing_zeros())
            .map(|p| {
                let rows = vec!["(?, ?, ?, ?, ?, ?, ?)"; 1 << p].join(", ");
                format!("{INSERT_COLS}{rows}")
            })
            .collect()
    });
    &all[n.trailing_zeros() as usize]
}

/// Inserts rows, in order, in chunks of power-of-two sizes.
pub(crate) async fn insert_rows(conn: &mut SqliteConnection, rows: &[NewRow]) -> Result<()> {
    let mut rest = rows;
    while !rest.is_empty() {
        let n = if rest.len() >= MAX_CHUNK {
            MAX_CHUNK
        } else {
            1 << (usize::BITS - 1 - rest.len().leading_zeros())
        };
        let (chunk, tail) = rest.split_at(n);
        let mut q = sqlx::query(AssertSqlSafe(insert_sql(n)));
        for r in chunk {
            q = q
                .bind(r.id)
                .bind(&r.queue)
                .bind(&r.message_id)
                .bind(&r.partition_key)
                .bind(r.visible_at)
                .bind(r.sent_at)
                .bind(&r.envelope);
        }
        q.execute(&mut *conn).await?;
        rest = tail;
    }
    Ok(())
}

/// A claimed row.
#[derive(Debug)]
pub(crate) struct Claimed {
    pub(crate) id: i64,
    pub(crate) delivery_count: i64,
    pub(crate) envelope: Vec<u8>,
}

// A claim sets the lease columns, which no index holds, so the row's entry in the ready
// index stays where it is: in-flight rows stay at the head of the index and each claim
// steps over them (at most the queue's in-flight count) instead of moving every claimed
// entry to the end (schema version 3).
pub(crate) const CLAIM_ANY: &str = "UPDATE tidings_messages \
    SET lease_token = ?1, lease_until = ?2, delivery_count = delivery_count + 1 \
    WHERE id IN (SELECT id FROM tidings_messages WHERE queue = ?3 AND visible_at <= ?4 \
                 AND (lease_until IS NULL OR lease_until <= ?4) \
                 ORDER BY visible_at, id LIMIT ?5) \
    RETURNING id, delivery_count, envelope";

// A keyed message is claimable only when it is the oldest row of its key in the queue
// (whatever that row's state: in flight, delayed, waiting) and its key is not parked.
pub(crate) const CLAIM_ORDERED: &str = "UPDATE tidings_messages \
    SET lease_token = ?1, lease_until = ?2, delivery_count = delivery_count + 1 \
    WHERE id IN (SELECT m.id FROM tidings_messages m WHERE m.queue = ?3 AND m.visible_at <= ?4 \
        AND (m.lease_until IS NULL OR m.lease_until <= ?4) \
        AND (m.partition_key IS NULL OR ( \
            NOT EXISTS (SELECT 1 FROM tidings_messages p WHERE p.queue = m.queue \
                        AND p.partition_key = m.partition_key AND p.id < m.id) \
            AND NOT EXISTS (SELECT 1 FROM tidings_parked k WHERE k.queue = m.queue \
                        AND k.partition_key = m.partition_key))) \
        ORDER BY m.visible_at, m.id LIMIT ?5) \
    RETURNING id, delivery_count, envelope";

/// What one claim asks for.
#[derive(Debug, Clone)]
pub(crate) struct ClaimSpec {
    pub(crate) queue: String,
    pub(crate) max: usize,
    pub(crate) lease_ms: i64,
    pub(crate) ordered: bool,
}

/// A fresh lease token.
pub(crate) fn new_token() -> i64 {
    (uuid::Uuid::new_v4().as_u64_pair().0 >> 1) as i64
}

/// A dead letter to write.
#[derive(Debug)]
pub(crate) struct DeadRow {
    pub(crate) id: i64,
    pub(crate) token: i64,
    pub(crate) queue: String,
    pub(crate) message_id: String,
    pub(crate) message_type: String,
    pub(crate) reason: Option<String>,
    pub(crate) partition_key: Option<String>,
    pub(crate) envelope: Vec<u8>,
    pub(crate) park: bool,
}

/// Moves a leased row to the error table (keeping its row id), parking its key if asked.
pub(crate) async fn dead_letter(conn: &mut SqliteConnection, d: &DeadRow) -> Result<()> {
    let deleted = sqlx::query("DELETE FROM tidings_messages WHERE id = ? AND lease_token = ?")
        .bind(d.id)
        .bind(d.token)
        .execute(&mut *conn)
        .await?
        .rows_affected();
    if deleted == 0 {
        // The lease ran out and someone else has it now: not ours to settle.
        return Ok(());
    }
    let now_us = chrono::Utc::now().timestamp_micros();
    sqlx::query(
        "INSERT OR REPLACE INTO tidings_dead_letters \
         (id, queue, message_id, message_type, reason, partition_key, dead_lettered_at, envelope) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(d.id)
    .bind(&d.queue)
    .bind(&d.message_id)
    .bind(&d.message_type)
    .bind(&d.reason)
    .bind(&d.partition_key)
    .bind(now_us)
    .bind(&d.envelope)
    .execute(&mut *conn)
    .await?;
    if let (true, Some(k)) = (d.park, &d.partition_key) {
        sqlx::query(
            "INSERT OR IGNORE INTO tidings_parked (queue, partition_key, parked_at) VALUES (?, ?, ?)",
        )
        .bind(&d.queue)
        .bind(k)
        .bind(now_ms())
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}
