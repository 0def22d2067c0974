//! [`Outbox`]: sends and publishes inside the caller's own `sqlx` transaction. On the SQLite
//! transport the insert *is* the enqueue: the business rows and the messages commit
//! together or not at all, and there is no relay.
//!
//! ```no_run
//! # use tidings_core::{Producer, Message};
//! # #[derive(serde::Serialize, serde::Deserialize, Message)]
//! # #[message(name = "shop.order-placed", version = 1, kind = "event")]
//! # struct OrderPlaced { id: String }
//! # async fn f(transport: tidings_sqlite::SqliteTransport, producer: Producer) -> anyhow::Result<()> {
//! let outbox = tidings_sqlite::Outbox::new(&transport, producer);
//! let mut tx = transport.pool().begin().await?;
//! sqlx::query("INSERT INTO orders (id) VALUES (?)").bind("o-1").execute(&mut *tx).await?;
//! outbox.publish(&mut tx, &OrderPlaced { id: "o-1".into() }).await?;
//! tx.commit().await?; // both or neither
//! # Ok(()) }
//! ```
//!
//! Saga timeouts are scheduled messages: `outbox.dispatch(&mut tx, &timeout,
//! SendOptions::default().delay(d))` in the transaction that saves the saga state.

use std::sync::Arc;

use crate::wake::Wake;
use sqlx::{Sqlite, Transaction};
use tidings_core::transport::{check_sizes, Outgoing};
use tidings_core::{Command, Event, Message, Producer, Result, SendOptions};
use uuid::Uuid;

use crate::store::{insert_rows, resolve, Prepared};
use crate::transport::SqliteTransport;

/// Enqueues messages in an application transaction on the transport's database.
#[derive(Clone)]
pub struct Outbox {
    producer: Producer,
    wake: Arc<Wake>,
    max_size: usize,
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox")
            .field("producer", &self.producer)
            .finish_non_exhaustive()
    }
}

impl Outbox {
    /// An outbox on `transport`'s database. `producer` builds the envelopes (routes for
    /// commands, source endpoint), so they are identical to bus-sent ones.
    pub fn new(transport: &SqliteTransport, producer: Producer) -> Self {
        Outbox {
            producer,
            wake: transport.inner.wake.clone(),
            max_size: transport.inner.config.max_message_size,
        }
    }

    /// The producer building envelopes.
    pub fn producer(&self) -> &Producer {
        &self.producer
    }

    /// Publishes `event` when `tx` commits.
    pub async fn publish<E: Event>(
        &self,
        tx: &mut Transaction<'_, Sqlite>,
        event: &E,
    ) -> Result<Uuid> {
        self.dispatch(tx, event, SendOptions::default()).await
    }

    /// Sends `cmd` to the endpoint that receives it when `tx` commits.
    pub async fn send<C: Command>(
        &self,
        tx: &mut Transaction<'_, Sqlite>,
        cmd: &C,
    ) -> Result<Uuid> {
        self.dispatch(tx, cmd, SendOptions::default()).await
    }

    /// Sends (command) or publishes (event) with options (schedule, partition key, ...).
    pub async fn dispatch<M: Message>(
        &self,
        tx: &mut Transaction<'_, Sqlite>,
        msg: &M,
        opts: SendOptions,
    ) -> Result<Uuid> {
        let out = self.producer.outgoing(msg, opts)?;
        let id = out.envelope.id;
        self.enqueue(tx, vec![out]).await?;
        Ok(id)
    }

    /// Enqueues already-built messages in `tx`. Fails with `UnknownQueue` for a queue that
    /// is not declared; a published event goes to every queue subscribed right now.
    pub async fn enqueue(
        &self,
        tx: &mut Transaction<'_, Sqlite>,
        messages: Vec<Outgoing>,
    ) -> Result<()> {
        check_sizes(&messages, self.max_size)?;
        let prepared = messages
            .iter()
            .map(Prepared::new)
            .collect::<crate::Result<Vec<_>>>()?;
        let rows = resolve(tx, &prepared).await?;
        insert_rows(tx, &rows).await?;
        Ok(())
    }

    /// Wakes this process's receivers. Commits on [`SqliteTransport::pool`] do it by
    /// themselves; call this after committing on a connection of your own.
    pub fn notify(&self) {
        self.wake.wake();
    }
}
