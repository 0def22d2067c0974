//! Enqueueing: one `INSERT .. SELECT unnest(..)` for a whole batch, fanning published
//! events out through `subscriptions` and notifying the queues that got a message. Shared
//! by [`PostgresTransport::send`](tidings_core::transport::Transport::send) and the outbox
//! (which runs it on the caller's transaction).

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use tidings_core::transport::{check_sizes, Destination, Outgoing};
use tidings_core::{Error, Result};
use uuid::Uuid;

use crate::error::PgError;
use crate::transport::Shared;

/// The batch as column arrays.
struct Columns {
    dest: Vec<Option<String>>,
    id: Vec<Uuid>,
    message_type: Vec<String>,
    partition_key: Vec<Option<String>>,
    visible_at: Vec<Option<DateTime<Utc>>>,
    sent_at: Vec<DateTime<Utc>>,
    envelope: Vec<Vec<u8>>,
}

fn columns(messages: &[Outgoing]) -> Result<Columns> {
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
    let mut queues: Vec<String> = messages
        .iter()
        .filter_map(|m| match &m.destination {
            Destination::Queue(q) => Some(q.clone()),
            Destination::Topic => None,
        })
        .collect();
    queues.sort();
    queues.dedup();
    shared.ensure_queues(&mut *conn, &queues).await?;
    let c = columns(messages)?;
    sqlx::query(shared.sql.send.sql())
        .bind(&c.dest)
        .bind(&c.id)
        .bind(&c.message_type)
        .bind(&c.partition_key)
        .bind(&c.visible_at)
        .bind(&c.sent_at)
        .bind(&c.envelope)
        .bind(&shared.sql.channel)
        .execute(conn)
        .await
        .map_err(PgError::db("send"))?;
    Ok(())
}

/// Whether a failed send can be retried as a whole (the insert is idempotent per
/// `(queue, id)`, so a retry after an unknown outcome does not duplicate).
pub(crate) fn retryable(e: &Error) -> bool {
    e.is_retryable()
}
