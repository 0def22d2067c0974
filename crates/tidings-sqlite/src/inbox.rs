//! Exactly-once effects on at-least-once delivery.
//!
//! - [`transactional`] wraps a closure into a [`Handler`]: it gets the writer's connection
//!   inside a transaction in which the inbox row `(message id, endpoint)`, its business
//!   writes and its outgoing messages (through an [`Outbox`](crate::Outbox)) commit
//!   together, in the writer's group commit; the consumer acks the delivery after that
//!   commit. A duplicate delivery finds the inbox row and returns `Ok` without
//!   running the closure.
//! - [`SqliteInbox`] is the plain dedup store (`try_record`), also usable as the core
//!   pipeline's [`InboxStore`].
//!
//! Inbox rows older than [`SqliteConfig::inbox_retention`](crate::SqliteConfig) are deleted
//! by a background sweeper (or [`SqliteTransport::sweep_inbox`]).

use std::collections::HashSet;
use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use futures::future::BoxFuture;
use sqlx::sqlite::SqliteConnection;
use sqlx::SqlitePool;
use tidings_core::pipeline::inbox::InboxStore;
use tidings_core::{ConsumeContext, Handler, HandlerError, Message};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use crate::error::SqliteError;
use crate::schema::now_ms;
use crate::transport::SqliteTransport;

/// The inbox row's insert (an already recorded message stays as it is).
pub(crate) const RECORD: &str = "INSERT OR IGNORE INTO tidings_inbox \
    (endpoint, message_id, processed_at) VALUES (?1, ?2, ?3)";

/// Records `(message_id, endpoint)` in `conn`'s transaction; `false` if it was there already.
pub async fn record_in(
    conn: &mut SqliteConnection,
    message_id: Uuid,
    endpoint: &str,
) -> Result<bool, SqliteError> {
    let n = sqlx::query(RECORD)
        .bind(endpoint)
        .bind(message_id.to_string())
        .bind(now_ms())
        .execute(conn)
        .await?
        .rows_affected();
    Ok(n == 1)
}

/// The inbox table's definition (as in the transport's schema), for a service's own
/// database: see [`create_table`].
const TABLE: &str = "
CREATE TABLE IF NOT EXISTS tidings_inbox (
    endpoint TEXT NOT NULL,
    message_id TEXT NOT NULL,
    processed_at INTEGER NOT NULL,
    PRIMARY KEY (endpoint, message_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS tidings_inbox_processed ON tidings_inbox (processed_at);";

/// Creates the `tidings_inbox` table in `pool`'s database if it is not there: for a
/// service on a broker transport whose business tables (and [`OutboxTable`]) live in its
/// own SQLite file, so that [`record_in`] commits the inbox row in its business
/// transaction. The SQLite transport's database has it already.
///
/// [`OutboxTable`]: crate::OutboxTable
pub async fn create_table(pool: &sqlx::SqlitePool) -> Result<(), SqliteError> {
    sqlx::raw_sql(TABLE).execute(pool).await?;
    Ok(())
}

/// One `seen` question: (endpoint, message id) and where the answer goes.
type SeenAsk = (String, Uuid, oneshot::Sender<Result<bool, SqliteError>>);

/// The inbox table as a dedup store.
///
/// As the pipeline's [`InboxStore`], its `seen` checks are batched: the questions of
/// concurrent handlers queue up while one query runs, and the next query answers all of
/// them (one read instead of one per message); rows are recorded with the ack when the
/// endpoint consumes from the same transport ([`InboxStore::home`]).
#[derive(Debug, Clone)]
pub struct SqliteInbox {
    transport: SqliteTransport,
    /// The batching task's queue, started by the first `seen`.
    asks: Arc<OnceLock<mpsc::UnboundedSender<SeenAsk>>>,
}

impl SqliteInbox {
    /// The inbox of `transport`'s database.
    pub fn new(transport: SqliteTransport) -> Self {
        SqliteInbox {
            transport,
            asks: Arc::new(OnceLock::new()),
        }
    }

    /// Whether `(message_id, endpoint)` is recorded, asked together with other callers'
    /// questions (see the type's documentation).
    async fn seen_batched(&self, message_id: Uuid, endpoint: &str) -> Result<bool, SqliteError> {
        let asks = self.asks.get_or_init(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            tokio::spawn(answer_seen(self.transport.pool().clone(), rx));
            tx
        });
        let (tx, rx) = oneshot::channel();
        asks.send((endpoint.to_string(), message_id, tx))
            .map_err(|_| SqliteError::Closed)?;
        rx.await.map_err(|_| SqliteError::Closed)?
    }

    /// Records `(message_id, endpoint)`; `true` if it is new (handle it), `false` if it was
    /// recorded before (a duplicate).
    pub async fn try_record(&self, message_id: Uuid, endpoint: &str) -> Result<bool, SqliteError> {
        let endpoint = endpoint.to_string();
        self.transport
            .write(move |conn: &mut SqliteConnection| {
                Box::pin(async move { record_in(conn, message_id, &endpoint).await })
            })
            .await
    }

    /// Whether `(message_id, endpoint)` is recorded.
    pub async fn contains(&self, message_id: Uuid, endpoint: &str) -> Result<bool, SqliteError> {
        contains_in(self.transport.pool(), &message_id.to_string(), endpoint).await
    }
}

#[async_trait]
impl InboxStore for SqliteInbox {
    async fn seen(&self, message_id: Uuid, endpoint: &str) -> tidings_core::Result<bool> {
        Ok(self.seen_batched(message_id, endpoint).await?)
    }

    async fn record(&self, message_id: Uuid, endpoint: &str) -> tidings_core::Result<()> {
        self.try_record(message_id, endpoint).await?;
        Ok(())
    }

    /// This transport's writer: an endpoint consuming from it records the inbox row in
    /// the ack's own commit (one batch, one fsync, no separate write).
    fn home(&self) -> Option<u64> {
        Some(self.transport.inner.writer.id())
    }
}

/// Most questions answered by one query.
const MAX_SEEN_BATCH: usize = 512;

/// Answers `seen` questions: takes everything queued, one query per endpoint among them.
/// Ends when every [`SqliteInbox`] clone is gone.
async fn answer_seen(pool: SqlitePool, mut rx: mpsc::UnboundedReceiver<SeenAsk>) {
    let mut batch = Vec::new();
    while rx.recv_many(&mut batch, MAX_SEEN_BATCH).await > 0 {
        while let Some(endpoint) = batch.first().map(|(e, _, _)| e.clone()) {
            let (mine, rest): (Vec<_>, Vec<_>) =
                batch.drain(..).partition(|(e, _, _)| *e == endpoint);
            batch = rest;
            let ids: Vec<String> = mine.iter().map(|(_, id, _)| id.to_string()).collect();
            let found = recorded_among(&pool, &endpoint, &ids).await;
            for ((_, _, reply), id) in mine.into_iter().zip(&ids) {
                let answer = match &found {
                    Ok(found) => Ok(found.contains(id)),
                    // Each caller gets its own error: ask again alone.
                    Err(_) => contains_in(&pool, id, &endpoint).await,
                };
                let _ = reply.send(answer);
            }
        }
    }
}

/// Whether `(message_id, endpoint)` is recorded.
async fn contains_in(
    pool: &SqlitePool,
    message_id: &str,
    endpoint: &str,
) -> Result<bool, SqliteError> {
    let found = sqlx::query("SELECT 1 FROM tidings_inbox WHERE endpoint = ? AND message_id = ?")
        .bind(endpoint)
        .bind(message_id)
        .fetch_optional(pool)
        .await?;
    Ok(found.is_some())
}

/// Which of `ids` are recorded for `endpoint`.
async fn recorded_among(
    pool: &SqlitePool,
    endpoint: &str,
    ids: &[String],
) -> Result<HashSet<String>, SqliteError> {
    let found: Vec<String> = sqlx::query_scalar(
        "SELECT message_id FROM tidings_inbox WHERE endpoint = ?1 \
         AND message_id IN (SELECT value FROM json_each(?2))",
    )
    .bind(endpoint)
    .bind(serde_json::to_string(ids)?)
    .fetch_all(pool)
    .await?;
    Ok(found.into_iter().collect())
}

/// A handler whose effects commit in one transaction with its inbox row. Built by
/// [`transactional`].
pub struct Transactional<F> {
    transport: SqliteTransport,
    f: Arc<F>,
}

impl<F> std::fmt::Debug for Transactional<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transactional").finish_non_exhaustive()
    }
}

/// Wraps `f` into a transactional, deduplicating [`Handler`].
///
/// `f` gets the message, its context and the writer's connection inside a transaction
/// (see [`SqliteTransport::write`]) in which the inbox row is already written; it does its
/// business writes and outbox sends ([`Outbox`](crate::Outbox) on the same connection)
/// there. They commit together — in the writer's group commit, so many handlers share one
/// commit and one fsync — and the delivery is acked after that commit. An `Err` (or a
/// panic) rolls back everything `f` wrote, the inbox row too, so the delivery is retried
/// per the endpoint's policies. A duplicate delivery finds the inbox row and returns `Ok`
/// without calling `f`.
///
/// ```no_run
/// # use tidings_core::{Message, HandlerError};
/// # #[derive(serde::Serialize, serde::Deserialize, Message)]
/// # #[message(name = "shop.pay", version = 1, kind = "command")]
/// # struct Pay { order: String }
/// # fn f(transport: tidings_sqlite::SqliteTransport) {
/// let handler = tidings_sqlite::transactional(transport, |msg: Pay, _ctx, conn| {
///     Box::pin(async move {
///         sqlx::query("INSERT INTO payments (order_id) VALUES (?)")
///             .bind(&msg.order)
///             .execute(&mut *conn)
///             .await
///             .map_err(HandlerError::transient)?;
///         Ok(())
///     })
/// });
/// # }
/// ```
///
/// `f` runs on the transport's single writer, inside the shared write batch: it must do
/// database work only — no network calls, no sleeps, no waiting on other tasks — or every
/// write of the process waits for it. Call remote services in a plain handler first, then
/// record their answer in a [`SqliteTransport::write`] job.
pub fn transactional<M, F>(transport: SqliteTransport, f: F) -> Transactional<F>
where
    M: Message,
    F: for<'c> Fn(M, ConsumeContext, &'c mut SqliteConnection) -> BoxFuture<'c, HandlerResult>
        + Send
        + Sync
        + 'static,
{
    Transactional {
        transport,
        f: Arc::new(f),
    }
}

type HandlerResult = Result<(), HandlerError>;

#[async_trait]
impl<M, F> Handler<M> for Transactional<F>
where
    M: Message,
    F: for<'c> Fn(M, ConsumeContext, &'c mut SqliteConnection) -> BoxFuture<'c, HandlerResult>
        + Send
        + Sync
        + 'static,
{
    async fn handle(&self, msg: M, ctx: ConsumeContext) -> Result<(), HandlerError> {
        let f = self.f.clone();
        let (message_id, endpoint) = (ctx.message_id(), ctx.endpoint().to_string());
        let handled = self
            .transport
            .write(move |conn: &mut SqliteConnection| {
                Box::pin(async move {
                    if !record_in(conn, message_id, &endpoint).await? {
                        return Ok(false);
                    }
                    f(msg, ctx, conn).await?;
                    Ok::<_, HandlerError>(true)
                })
            })
            .await?;
        if !handled {
            tracing::debug!(%message_id, "duplicate delivery skipped (inbox)");
        }
        Ok(())
    }
}
