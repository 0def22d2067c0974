//! The inbox: `(message_id, endpoint)` rows recording what a consumer has processed, and
//! [`transactional`], a handler wrapper in which the inbox row, the business writes and
//! outgoing messages ([`Outbox`](crate::Outbox)) commit in one transaction. A duplicate
//! delivery finds the row and is acked without effect. Rows expire after a window; a
//! sweeper deletes them.

use std::future::Future;
use std::marker::PhantomData;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::{PgConnection, Postgres, Transaction};
use tidings_core::pipeline::inbox::InboxStore;
use tidings_core::{ConsumeContext, Handler, HandlerError, Message};
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::error::PgError;
use crate::transport::PostgresTransport;

/// How long inbox rows are kept by default: 7 days.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(7 * 24 * 3600);

/// The inbox table of one transport's schema.
#[derive(Debug, Clone)]
pub struct Inbox {
    transport: PostgresTransport,
    window: Duration,
}

impl Inbox {
    /// An inbox keeping rows for `window`.
    pub fn new(transport: &PostgresTransport, window: Duration) -> Self {
        Inbox {
            transport: transport.clone(),
            window,
        }
    }

    /// Records `(message_id, endpoint)` in its own transaction: `true` if it was new,
    /// `false` if it was already processed.
    pub async fn try_record(&self, message_id: Uuid, endpoint: &str) -> Result<bool, PgError> {
        let mut conn = self
            .transport
            .pool()
            .acquire()
            .await
            .map_err(PgError::db("acquire"))?;
        self.try_record_in(&mut conn, message_id, endpoint).await
    }

    /// Records `(message_id, endpoint)` on `conn` (a transaction: the row commits or rolls
    /// back with it). A concurrent duplicate waits for the first to commit.
    pub async fn try_record_in(
        &self,
        conn: &mut PgConnection,
        message_id: Uuid,
        endpoint: &str,
    ) -> Result<bool, PgError> {
        let done = sqlx::query(self.transport.shared.sql.inbox_record.sql())
            .bind(message_id)
            .bind(endpoint)
            .bind(self.window.as_secs_f64())
            .execute(conn)
            .await
            .map_err(PgError::db("inbox record"))?;
        Ok(done.rows_affected() == 1)
    }

    /// Deletes expired rows; returns how many.
    pub async fn sweep(&self) -> Result<u64, PgError> {
        let done = sqlx::query(self.transport.shared.sql.inbox_sweep.sql())
            .execute(self.transport.pool())
            .await
            .map_err(PgError::db("inbox sweep"))?;
        Ok(done.rows_affected())
    }

    /// Sweeps every `every` until the transport closes.
    pub fn spawn_sweeper(&self, every: Duration) -> JoinHandle<()> {
        let inbox = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                if inbox.transport.shared.is_closed() {
                    return;
                }
                match inbox.sweep().await {
                    Ok(n) if n > 0 => tracing::debug!(deleted = n, "tidings-postgres: inbox swept"),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "tidings-postgres: inbox sweep failed"),
                }
            }
        })
    }
}

/// The pipeline's inbox layer on this table (for handlers that are not transactional:
/// `record` commits on its own, after the handler).
#[async_trait]
impl InboxStore for Inbox {
    async fn seen(&self, message_id: Uuid, endpoint: &str) -> tidings_core::Result<bool> {
        let seen = sqlx::query_scalar(self.transport.shared.sql.inbox_seen.sql())
            .bind(message_id)
            .bind(endpoint)
            .fetch_one(self.transport.pool())
            .await
            .map_err(PgError::db("inbox seen"))?;
        Ok(seen)
    }

    async fn record(&self, message_id: Uuid, endpoint: &str) -> tidings_core::Result<()> {
        self.try_record(message_id, endpoint).await?;
        Ok(())
    }
}

/// Wraps `f` as a transactional [`Handler`]: see [`Transactional`].
///
/// ```ignore
/// tidings_postgres::transactional(transport.clone(), |msg: ReserveStock, ctx, mut tx| async move {
///     sqlx::query("UPDATE stock ...").execute(&mut *tx).await?;
///     Outbox::for_context(&transport, &ctx).publish(&mut tx, &StockReserved { .. }).await?;
///     Ok(tx)
/// })
/// ```
pub fn transactional<M, F, Fut>(transport: PostgresTransport, f: F) -> Transactional<M, F>
where
    M: Message,
    F: Fn(M, ConsumeContext, Transaction<'static, Postgres>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Transaction<'static, Postgres>, HandlerError>> + Send + 'static,
{
    Transactional {
        inbox: Inbox::new(&transport, DEFAULT_WINDOW),
        f,
        _m: PhantomData,
    }
}

/// A handler running `f` in a transaction that also records the inbox row; the
/// transaction `f` hands back is committed, and only then is the delivery acked.
pub struct Transactional<M, F> {
    inbox: Inbox,
    f: F,
    _m: PhantomData<fn(M)>,
}

impl<M, F> std::fmt::Debug for Transactional<M, F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transactional")
            .field("window", &self.inbox.window)
            .finish_non_exhaustive()
    }
}

impl<M, F> Transactional<M, F> {
    /// Keeps inbox rows for `window` (default [`DEFAULT_WINDOW`]).
    pub fn with_window(mut self, window: Duration) -> Self {
        self.inbox.window = window;
        self
    }

    /// The inbox it records in.
    pub fn inbox(&self) -> &Inbox {
        &self.inbox
    }
}

#[async_trait]
impl<M, F, Fut> Handler<M> for Transactional<M, F>
where
    M: Message,
    F: Fn(M, ConsumeContext, Transaction<'static, Postgres>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Transaction<'static, Postgres>, HandlerError>> + Send + 'static,
{
    async fn handle(&self, msg: M, ctx: ConsumeContext) -> Result<(), HandlerError> {
        let pool = self.inbox.transport.pool();
        let mut tx = pool
            .begin()
            .await
            .map_err(|e| HandlerError::from(PgError::db("begin")(e)))?;
        let fresh = self
            .inbox
            .try_record_in(&mut tx, ctx.message_id(), ctx.endpoint())
            .await
            .map_err(HandlerError::from)?;
        if !fresh {
            tracing::debug!(message_id = %ctx.message_id(), endpoint = ctx.endpoint(),
                "tidings-postgres: duplicate delivery skipped by the inbox");
            return Ok(());
        }
        let tx = (self.f)(msg, ctx, tx).await?;
        tx.commit()
            .await
            .map_err(|e| HandlerError::from(PgError::db("commit")(e)))
    }
}
