//! Enqueueing: one `INSERT .. SELECT unnest(..)` for a whole batch, fanning published
//! events out through `subscriptions` and notifying the queues that got a message. The
//! outbox runs it on the caller's transaction; [`PostgresTransport::send`] checks and
//! encodes here, then hands the columns to the group-commit writer (`send_writer.rs`).
//!
//! [`PostgresTransport::send`]: tidings_core::transport::Transport::send

use std::ops::Range;

use chrono::{DateTime, Utc};
use sqlx::postgres::PgArguments;
use sqlx::query::Query;
use sqlx::{PgConnection, Postgres};
use tidings_core::transport::{check_sizes, Destination, Outgoing};
use tidings_core::{Error, Result};
use uuid::Uuid;

use crate::error::PgError;
use crate::schema::Sql;
use crate::transport::Shared;

/// A batch as column arrays (the binds of the `send` statement).
#[derive(Debug, Default)]
pub(crate) struct Columns {
    dest: Vec<Option<String>>,
    id: Vec<Uuid>,
    message_type: Vec<String>,
    partition_key: Vec<Option<String>>,
    visible_at: Vec<Option<DateTime<Utc>>>,
    sent_at: Vec<DateTime<Utc>>,
    envelope: Vec<Vec<u8>>,
}

impl Columns {
    /// Rows in the batch.
    pub(crate) fn len(&self) -> usize {
        self.id.len()
    }

    /// Moves `other`'s rows to the end of `self`.
    pub(crate) fn append(&mut self, mut other: Columns) {
        self.dest.append(&mut other.dest);
        self.id.append(&mut other.id);
        self.message_type.append(&mut other.message_type);
        self.partition_key.append(&mut other.partition_key);
        self.visible_at.append(&mut other.visible_at);
        self.sent_at.append(&mut other.sent_at);
        self.envelope.append(&mut other.envelope);
    }

    /// The `send` statement for rows `rows` (on a pool: its own transaction).
    pub(crate) fn insert<'q>(
        &'q self,
        sql: &'q Sql,
        rows: Range<usize>,
    ) -> Query<'q, Postgres, PgArguments> {
        sqlx::query(sql.send.sql())
            .bind(&self.dest[rows.clone()])
            .bind(&self.id[rows.clone()])
            .bind(&self.message_type[rows.clone()])
            .bind(&self.partition_key[rows.clone()])
            .bind(&self.visible_at[rows.clone()])
            .bind(&self.sent_at[rows.clone()])
            .bind(&self.envelope[rows])
            .bind(&sql.channel)
    }
}

/// Encodes `messages` as columns.
pub(crate) fn columns(messages: &[Outgoing]) -> Result<Columns> {
    let n = messages.len();
    let mut c = Columns {
        dest: Vec::with_capacity(n),
        id: Vec::with_capacity(n),
        message_type: Vec::with_capacity(n),
        partition_key: Vec::with_capacity(n),
        visible_at: Vec::with_capacity(n),
        sent_at: Vec::with_capacity(n),
        envelope: Vec::with_capacity(n),
    };
    for m in messages {
        let e = &m.envelope;
        c.dest.push(match &m.destination {
            Destination::Queue(q) => Some(q.clone()),
            Destination::Topic => None,
        });
        c.id.push(e.id);
        c.message_type.push(e.message_type.clone());
        c.partition_key.push(e.partition_key.clone());
        c.visible_at.push(e.scheduled_for);
        c.sent_at.push(e.sent_at);
        c.envelope.push(e.to_json()?);
    }
    Ok(c)
}

/// Checks sizes and destinations, then inserts `messages` on `conn` (a pooled connection
/// or the caller's transaction). Nothing is inserted if any check fails.
pub(crate) async fn enqueue(
    shared: &Shared,
    conn: &mut PgConnection,
    messages: &[Outgoing],
) -> Result<()> {
    if messages.is_empty() {
        return Ok(());
    }
    check_sizes(messages, shared.config.max_message_size)?;
    shared.ensure_queues(&mut *conn, &queues(messages)).await?;
    let c = columns(messages)?;
    c.insert(&shared.sql, 0..c.len())
        .execute(conn)
        .await
        .map_err(PgError::db("send"))?;
    Ok(())
}

/// The distinct queues `messages` are sent to directly (sorted).
pub(crate) fn queues(messages: &[Outgoing]) -> Vec<String> {
    let mut queues: Vec<String> = messages
        .iter()
        .filter_map(|m| match &m.destination {
            Destination::Queue(q) => Some(q.clone()),
            Destination::Topic => None,
        })
        .collect();
    queues.sort();
    queues.dedup();
    queues
}

/// Whether a failed send can be retried as a whole (the insert is idempotent per
/// `(queue, id)`, so a retry after an unknown outcome does not duplicate).
pub(crate) fn retryable(e: &Error) -> bool {
    e.is_retryable()
}
