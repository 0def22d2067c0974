//! [`Outbox`]: sends and publishes inside the caller's own transaction on the transport's
//! database. On the SQLite transport the insert *is* the enqueue: the business rows and the
//! messages commit together or not at all, and there is no relay.
//!
//! Write in a [`SqliteTransport::write`] closure: the business rows and the messages then
//! join the writer's group commit (no second writer fighting for SQLite's lock), and the
//! messages are delivered as soon as the batch commits.
//!
//! ```no_run
//! # use tidings_core::{Producer, Message};
//! # #[derive(serde::Serialize, serde::Deserialize, Message)]
//! # #[message(name = "shop.order-placed", version = 1, kind = "event")]
//! # struct OrderPlaced { id: String }
//! # async fn f(transport: tidings_sqlite::SqliteTransport, producer: Producer) -> anyhow::Result<()> {
//! use sqlx::sqlite::SqliteConnection;
//! let outbox = tidings_sqlite::Outbox::new(&transport, producer);
//! transport
//!     .write(move |conn: &mut SqliteConnection| Box::pin(async move {
//!         sqlx::query("INSERT INTO orders (id) VALUES (?)").bind("o-1").execute(&mut *conn).await?;
//!         outbox.publish(conn, &OrderPlaced { id: "o-1".into() }).await?;
//!         Ok::<_, anyhow::Error>(())
//!     }))
//!     .await?; // both or neither
//! # Ok(()) }
//! ```
//!
//! A transaction of [`SqliteTransport::pool`] works too (`outbox.publish(&mut tx, ..)`),
//! but it is a second writer: it waits for the group-commit writer's lock, and makes it
//! wait.
//!
//! Saga timeouts are scheduled messages: `outbox.dispatch(conn, &timeout,
//! SendOptions::default().delay(d))` in the transaction that saves the saga state.

use std::sync::Arc;

use crate::wake::Wake;
use sqlx::sqlite::SqliteConnection;
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

    /// Publishes `event` when `conn`'s transaction commits.
    pub async fn publish<E: Event>(&self, conn: &mut SqliteConnection, event: &E) -> Result<Uuid> {
        self.dispatch(conn, event, SendOptions::default()).await
    }

    /// Sends `cmd` to the endpoint that receives it when `conn`'s transaction commits.
    pub async fn send<C: Command>(&self, conn: &mut SqliteConnection, cmd: &C) -> Result<Uuid> {
        self.dispatch(conn, cmd, SendOptions::default()).await
    }

    /// Sends (command) or publishes (event) with options (schedule, partition key, ...).
    pub async fn dispatch<M: Message>(
        &self,
        conn: &mut SqliteConnection,
        msg: &M,
        opts: SendOptions,
    ) -> Result<Uuid> {
        let out = self.producer.outgoing(msg, opts)?;
        let id = out.envelope.id;
        self.enqueue(conn, vec![out]).await?;
        Ok(id)
    }

    /// Enqueues already-built messages in `conn`'s transaction. Fails with `UnknownQueue` for a queue that
    /// is not declared; a published event goes to every queue subscribed right now.
    pub async fn enqueue(
        &self,
        conn: &mut SqliteConnection,
        messages: Vec<Outgoing>,
    ) -> Result<()> {
        check_sizes(&messages, self.max_size)?;
        let prepared = messages
            .iter()
            .map(Prepared::new)
            .collect::<crate::Result<Vec<_>>>()?;
        // Inside a write job the writer inserts the rows with the batch's (one statement
        // for all its jobs); elsewhere, resolve and insert here.
        if let Some(r) = crate::topology::defer(&prepared) {
            return Ok(r?);
        }
        let rows = resolve(conn, &prepared).await?;
        insert_rows(conn, &rows).await?;
        Ok(())
    }

    /// Wakes this process's receivers. [`SqliteTransport::write`] batches and commits on
    /// [`SqliteTransport::pool`] do it by themselves; call this after committing on a
    /// connection of your own.
    pub fn notify(&self) {
        self.wake.wake();
    }
}
