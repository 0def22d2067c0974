//! The unit of work every service handler (and the API) writes in: inbox row (for
//! handlers: the framework's transactional inbox, `tidings_inbox`, through
//! [`tidings_sqlite::inbox::record_in`]), business writes and outgoing messages commit in
//! one transaction.
//!
//! ```text
//! let fresh = db
//!     .work(&ctx, move |w| Box::pin(async move {
//!         sqlx::query("INSERT ..").execute(w.conn()).await.map_err(db_err)?;
//!         w.emit(&Something { .. })?;
//!         Ok(())
//!     }))
//!     .await?; // None: a duplicate delivery, skipped by the inbox
//! ```
//!
//! On the SQLite transport the closure runs inside the transport's group commit (see
//! [`Db::write`]): database work only. Outgoing messages are enqueued in the same
//! transaction ([`tidings_sqlite::Outbox`]) and delivered once it commits; on other
//! transports they are written to the outbox table and shipped by the relay.

use std::time::Duration;

use futures::future::BoxFuture;
use sqlx::sqlite::SqliteConnection;
use tidings_core::transport::Outgoing;
use tidings_core::{ConsumeContext, HandlerError, Message, Producer, SendOptions};

use crate::db::Db;

/// One transaction's business writes and outgoing messages.
pub struct Work<'c> {
    conn: &'c mut SqliteConnection,
    producer: Producer,
    opts: SendOptions,
    outgoing: Vec<Outgoing>,
}

impl std::fmt::Debug for Work<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Work")
            .field("outgoing", &self.outgoing.len())
            .finish_non_exhaustive()
    }
}

impl Work<'_> {
    /// The transaction, for business writes: `.execute(work.conn())`.
    pub fn conn(&mut self) -> &mut SqliteConnection {
        &mut *self.conn
    }

    /// Publishes (event) or sends (command) `msg` when the transaction commits.
    pub fn emit<M: Message>(&mut self, msg: &M) -> Result<(), HandlerError> {
        let out = self.producer.outgoing(msg, self.opts.clone())?;
        self.outgoing.push(out);
        Ok(())
    }

    /// Like [`Work::emit`], delivered after `delay`.
    pub fn emit_delayed<M: Message>(
        &mut self,
        msg: &M,
        delay: Duration,
    ) -> Result<(), HandlerError> {
        // Outside the partition's order: on an ordered queue a scheduled message with a
        // key would hold back the key's later messages until it is due.
        let mut opts = self.opts.clone().delay(delay);
        opts.partition_key = None;
        let out = self.producer.outgoing(msg, opts)?;
        self.outgoing.push(out);
        Ok(())
    }
}

impl Work<'_> {
    /// Adds messages already built (e.g. by a saga step) to those sent when the
    /// transaction commits.
    pub fn push(&mut self, outgoing: Vec<Outgoing>) {
        self.outgoing.extend(outgoing);
    }
}

impl Db {
    /// A handler's unit of work for the message of `ctx`: `None` when the inbox already
    /// holds this message for this endpoint (a duplicate delivery, to be acked without
    /// effect) — then `f` does not run.
    pub async fn work<T, F>(&self, ctx: &ConsumeContext, f: F) -> Result<Option<T>, HandlerError>
    where
        T: Send + 'static,
        F: for<'w, 'c> FnOnce(&'w mut Work<'c>) -> BoxFuture<'w, Result<T, HandlerError>>
            + Send
            + 'static,
    {
        let inbox = (ctx.message_id(), ctx.endpoint().to_string());
        let v = self
            .unit(ctx.producer().clone(), ctx.follow_up(), Some(inbox), f)
            .await?;
        if v.is_none() {
            tracing::debug!(message_id = %ctx.message_id(), "duplicate skipped by the inbox");
        }
        Ok(v)
    }

    /// An application unit of work (no inbox), sending with `opts`.
    pub async fn transact<T, F>(
        &self,
        producer: Producer,
        opts: SendOptions,
        f: F,
    ) -> Result<T, HandlerError>
    where
        T: Send + 'static,
        F: for<'w, 'c> FnOnce(&'w mut Work<'c>) -> BoxFuture<'w, Result<T, HandlerError>>
            + Send
            + 'static,
    {
        self.unit(producer, opts, None, f)
            .await?
            .ok_or_else(|| HandlerError::permanent("a unit of work without inbox was skipped"))
    }

    async fn unit<T, F>(
        &self,
        producer: Producer,
        opts: SendOptions,
        inbox: Option<(uuid::Uuid, String)>,
        f: F,
    ) -> Result<Option<T>, HandlerError>
    where
        T: Send + 'static,
        F: for<'w, 'c> FnOnce(&'w mut Work<'c>) -> BoxFuture<'w, Result<T, HandlerError>>
            + Send
            + 'static,
    {
        let outbox = self.sqlite_outbox().cloned();
        let table = self.relay_outbox().cloned();
        let done = self
            .write(move |conn: &mut SqliteConnection| {
                Box::pin(async move {
                    if let Some((message_id, endpoint)) = inbox {
                        if !tidings_sqlite::inbox::record_in(conn, message_id, &endpoint).await? {
                            return Ok::<_, HandlerError>(None);
                        }
                    }
                    let mut work = Work {
                        conn,
                        producer,
                        opts,
                        outgoing: Vec::new(),
                    };
                    let v = f(&mut work).await?;
                    let Work { conn, outgoing, .. } = work;
                    let shipped = !outgoing.is_empty();
                    match (&outbox, &table) {
                        (Some(outbox), _) => outbox.enqueue(conn, outgoing).await?,
                        (None, Some(table)) => table.enqueue(conn, &outgoing).await?,
                        (None, None) => {
                            return Err(HandlerError::permanent("no outbox to write to"))
                        }
                    }
                    Ok::<_, HandlerError>(Some((v, shipped)))
                })
            })
            .await?;
        Ok(done.map(|(v, shipped)| {
            if let (true, Some(table)) = (shipped, self.relay_outbox()) {
                table.notify();
            }
            v
        }))
    }
}
