//! The unit of work every service handler (and the API) writes in: inbox row (for
//! handlers: the framework's transactional inbox — `tidings_inbox` through
//! [`tidings_sqlite::inbox::record_in`] on SQLite, the PostgreSQL transport's `inbox`
//! through [`tidings_postgres::Inbox::try_record_in`]), business writes and outgoing
//! messages commit in one transaction.
//!
//! ```text
//! let fresh = db
//!     .work(&ctx, move |w| Box::pin(async move {
//!         w.exec("INSERT ..", args![..]).await?;
//!         w.emit(&Something { .. })?;
//!         Ok(())
//!     }))
//!     .await?; // None: a duplicate delivery, skipped by the inbox
//! ```
//!
//! On the SQLite transport the closure runs inside the transport's group commit (see
//! [`Db::write`]): database work only. Outgoing messages are enqueued in the same
//! transaction ([`tidings_sqlite::Outbox`], [`tidings_postgres::Outbox`]) and delivered
//! once it commits; on a broker they are written to the outbox table and shipped by the
//! relay.

use std::time::Duration;

use futures::future::BoxFuture;
use tidings_core::transport::Outgoing;
use tidings_core::{ConsumeContext, HandlerError, Message, Producer, SendOptions};

use crate::db::{Db, PgSink};
use crate::sql::Tx;

/// One transaction's business writes (through [`Tx`], which it dereferences to) and
/// outgoing messages.
pub struct Work<'c> {
    tx: Tx<'c>,
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

impl<'c> std::ops::Deref for Work<'c> {
    type Target = Tx<'c>;
    fn deref(&self) -> &Tx<'c> {
        &self.tx
    }
}

impl<'c> std::ops::DerefMut for Work<'c> {
    fn deref_mut(&mut self) -> &mut Tx<'c> {
        &mut self.tx
    }
}

impl Work<'_> {
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
        let pg = self.pg_sink().map(|(_, sink)| sink.clone());
        let done = self
            .write(move |tx: &mut Tx<'_>| {
                Box::pin(async move {
                    if let Some((message_id, endpoint)) = inbox {
                        if !record_inbox(tx, pg.as_ref(), message_id, &endpoint).await? {
                            return Ok::<_, HandlerError>(None);
                        }
                    }
                    let mut work = Work {
                        tx: reborrow(tx),
                        producer,
                        opts,
                        outgoing: Vec::new(),
                    };
                    let v = f(&mut work).await?;
                    let Work { tx, outgoing, .. } = work;
                    let shipped = !outgoing.is_empty();
                    match (tx, &outbox, &table, &pg) {
                        (Tx::Sqlite(conn), Some(outbox), _, _) => {
                            outbox.enqueue(conn, outgoing).await?
                        }
                        (Tx::Sqlite(conn), None, Some(table), _) => {
                            table.enqueue(conn, &outgoing).await?
                        }
                        (Tx::Pg(t, _), _, _, Some(PgSink::Transport(outbox, _))) => {
                            if shipped {
                                outbox.enqueue(t, &outgoing).await?
                            }
                        }
                        (Tx::Pg(t, _), _, _, Some(PgSink::Relay(table))) => {
                            if shipped {
                                table.enqueue(t, &outgoing).await?
                            }
                        }
                        _ => return Err(HandlerError::permanent("no outbox to write to")),
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

/// A shorter borrow of the same transaction.
fn reborrow<'a>(tx: &'a mut Tx<'_>) -> Tx<'a> {
    match tx {
        Tx::Sqlite(c) => Tx::Sqlite(c),
        Tx::Pg(t, names) => Tx::Pg(t, names.clone()),
    }
}

/// Records `(message_id, endpoint)` in the transaction: `false` when it was there (a
/// duplicate; a concurrent duplicate on PostgreSQL waits for the first to commit).
async fn record_inbox(
    tx: &mut Tx<'_>,
    pg: Option<&PgSink>,
    message_id: uuid::Uuid,
    endpoint: &str,
) -> Result<bool, HandlerError> {
    match (tx, pg) {
        (Tx::Sqlite(conn), _) => {
            Ok(tidings_sqlite::inbox::record_in(conn, message_id, endpoint).await?)
        }
        (Tx::Pg(t, _), Some(PgSink::Transport(_, inbox))) => {
            Ok(inbox.try_record_in(t, message_id, endpoint).await?)
        }
        (Tx::Pg(t, _), _) => {
            let done = sqlx::query(
                "INSERT INTO inbox (message_id, endpoint, expires_at) \
                 VALUES ($1, $2, now() + interval '7 days') ON CONFLICT DO NOTHING",
            )
            .bind(message_id)
            .bind(endpoint)
            .execute(&mut ***t)
            .await?;
            Ok(done.rows_affected() == 1)
        }
    }
}
