//! Exactly-once effects on at-least-once delivery.
//!
//! - [`transactional`] wraps a closure into a [`Handler`]: it gets a transaction in which
//!   the inbox row `(message id, endpoint)`, its business writes and its outgoing messages
//!   (through an [`Outbox`](crate::Outbox)) commit together; the consumer acks the delivery
//!   after that commit. A duplicate delivery finds the inbox row and returns `Ok` without
//!   running the closure.
//! - [`SqliteInbox`] is the plain dedup store (`try_record`), also usable as the core
//!   pipeline's [`InboxStore`].
//!
//! Inbox rows older than [`SqliteConfig::inbox_retention`](crate::SqliteConfig) are deleted
//! by a background sweeper (or [`SqliteTransport::sweep_inbox`]).

use std::future::Future;

use async_trait::async_trait;
use sqlx::sqlite::SqliteConnection;
use sqlx::{Sqlite, Transaction};
use tidings_core::pipeline::inbox::InboxStore;
use tidings_core::{ConsumeContext, ErrorKind, Handler, HandlerError, Message};
use uuid::Uuid;

use crate::error::SqliteError;
use crate::schema::now_ms;
use crate::transport::SqliteTransport;

/// A transaction of the transport's pool, handed to a transactional handler and back.
pub type Tx = Transaction<'static, Sqlite>;

/// Records `(message_id, endpoint)` in `conn`'s transaction; `false` if it was there already.
pub async fn record_in(
    conn: &mut SqliteConnection,
    message_id: Uuid,
    endpoint: &str,
) -> Result<bool, SqliteError> {
    let n = sqlx::query(
        "INSERT OR IGNORE INTO tidings_inbox (endpoint, message_id, processed_at) VALUES (?, ?, ?)",
    )
    .bind(endpoint)
    .bind(message_id.to_string())
    .bind(now_ms())
    .execute(conn)
    .await?
    .rows_affected();
    Ok(n == 1)
}

/// The inbox table as a dedup store.
#[derive(Debug, Clone)]
pub struct SqliteInbox {
    transport: SqliteTransport,
}

impl SqliteInbox {
    /// The inbox of `transport`'s database.
    pub fn new(transport: SqliteTransport) -> Self {
        SqliteInbox { transport }
    }

    /// Records `(message_id, endpoint)`; `true` if it is new (handle it), `false` if it was
    /// recorded before (a duplicate).
    pub async fn try_record(&self, message_id: Uuid, endpoint: &str) -> Result<bool, SqliteError> {
        let endpoint = endpoint.to_string();
        self.transport
            .inner
            .writer
            .exclusive(move |conn| {
                Box::pin(async move { record_in(conn, message_id, &endpoint).await })
            })
            .await
    }

    /// Whether `(message_id, endpoint)` is recorded.
    pub async fn contains(&self, message_id: Uuid, endpoint: &str) -> Result<bool, SqliteError> {
        let found =
            sqlx::query("SELECT 1 FROM tidings_inbox WHERE endpoint = ? AND message_id = ?")
                .bind(endpoint)
                .bind(message_id.to_string())
                .fetch_optional(self.transport.pool())
                .await?;
        Ok(found.is_some())
    }
}

#[async_trait]
impl InboxStore for SqliteInbox {
    async fn seen(&self, message_id: Uuid, endpoint: &str) -> tidings_core::Result<bool> {
        Ok(self.contains(message_id, endpoint).await?)
    }

    async fn record(&self, message_id: Uuid, endpoint: &str) -> tidings_core::Result<()> {
        self.try_record(message_id, endpoint).await?;
        Ok(())
    }
}

/// A handler whose effects commit in one transaction with its inbox row. Built by
/// [`transactional`].
pub struct Transactional<F> {
    transport: SqliteTransport,
    f: F,
}

impl<F> std::fmt::Debug for Transactional<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transactional").finish_non_exhaustive()
    }
}

/// Wraps `f` into a transactional, deduplicating [`Handler`].
///
/// `f` gets the message, its context and an open transaction (`BEGIN IMMEDIATE` on
/// [`SqliteTransport::pool`], with the inbox row already written), does its writes and
/// outbox sends in it, and returns it; the wrapper commits. An `Err` rolls everything back
/// (the inbox row too), so the delivery is retried per the endpoint's policies.
///
/// ```no_run
/// # use tidings_core::{Message, HandlerError};
/// # #[derive(serde::Serialize, serde::Deserialize, Message)]
/// # #[message(name = "shop.pay", version = 1, kind = "command")]
/// # struct Pay { order: String }
/// # fn f(transport: tidings_sqlite::SqliteTransport) {
/// let handler = tidings_sqlite::transactional(transport, |msg: Pay, _ctx, mut tx| async move {
///     sqlx::query("INSERT INTO payments (order_id) VALUES (?)")
///         .bind(&msg.order)
///         .execute(&mut *tx)
///         .await
///         .map_err(HandlerError::transient)?;
///     Ok(tx)
/// });
/// # }
/// ```
///
/// Keep these handlers short: SQLite has one writer at a time, and the transaction holds
/// the write lock from its first statement to its commit.
pub fn transactional<M, F, Fut>(transport: SqliteTransport, f: F) -> Transactional<F>
where
    M: Message,
    F: Fn(M, ConsumeContext, Tx) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Tx, HandlerError>> + Send + 'static,
{
    Transactional { transport, f }
}

fn transient(e: impl Into<SqliteError>) -> HandlerError {
    let e: SqliteError = e.into();
    match e.kind() {
        ErrorKind::Permanent => HandlerError::permanent(&e),
        _ => HandlerError::transient(&e),
    }
    .with_source(e)
}

#[async_trait]
impl<M, F, Fut> Handler<M> for Transactional<F>
where
    M: Message,
    F: Fn(M, ConsumeContext, Tx) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Tx, HandlerError>> + Send + 'static,
{
    async fn handle(&self, msg: M, ctx: ConsumeContext) -> Result<(), HandlerError> {
        let mut tx = self
            .transport
            .pool()
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(transient)?;
        if !record_in(&mut tx, ctx.message_id(), ctx.endpoint())
            .await
            .map_err(transient)?
        {
            tracing::debug!(message_id = %ctx.message_id(), endpoint = ctx.endpoint(), "duplicate delivery skipped (inbox)");
            tx.rollback().await.map_err(transient)?;
            return Ok(());
        }
        let tx = (self.f)(msg, ctx, tx).await?;
        tx.commit().await.map_err(transient)?;
        Ok(())
    }
}
