//! The outbox relay for brokers: messages committed to an outbox table in the service's own
//! SQL database (in the same transaction as its business rows) are shipped to a
//! [`Transport`](crate::transport::Transport) by a [`Relay`], which waits for the broker's
//! confirm and only then marks them sent (deletes them).
//!
//! The table lives behind an [`OutboxStore`] (`tidings_sqlite::OutboxTable`,
//! `tidings_postgres::OutboxTable`). A store hands out one [`Claim`] at a time: the oldest rows, in
//! commit order, to one relay only (a lease on SQLite, an advisory lock on PostgreSQL), so
//! two relays never ship the same row at once and per-key order holds.
//!
//! Delivery is at least once: a relay that dies between the broker's confirm and the mark
//! leaves the rows in the table, and the next claim ships them again — consumers' inboxes
//! absorb the duplicates.

mod relay;

pub use relay::{names, Relay, RelayStats};

use async_trait::async_trait;

use crate::transport::{Destination, Outgoing};
use crate::{Envelope, Message, Producer, Result, SendOptions};

/// Builds `msg` for an outbox table with the table's producer (the bus's, so envelopes are
/// identical to bus-sent ones); a configuration error names the fix when there is none.
pub fn outgoing<M: Message>(
    producer: Option<&Producer>,
    msg: &M,
    opts: SendOptions,
) -> Result<Outgoing> {
    let producer = producer.ok_or_else(|| {
        crate::Error::Config(
            "OutboxTable has no producer: call .producer(bus.producer().clone())".into(),
        )
    })?;
    producer.outgoing(msg, opts)
}

/// One unsent message of an outbox table.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxRow {
    /// The row's id (commit order within one writer).
    pub id: i64,
    /// The message.
    pub message: Outgoing,
}

impl OutboxRow {
    /// Decodes a row stored as `destination` (a queue, or `None` for a published event) and
    /// the envelope's JSON.
    pub fn decode(id: i64, destination: Option<String>, envelope: &[u8]) -> Result<OutboxRow> {
        let envelope = Envelope::from_json(envelope)?;
        let message = match destination {
            Some(queue) => Outgoing::to_queue(queue, envelope),
            None => Outgoing::publish(envelope),
        };
        Ok(OutboxRow { id, message })
    }

    /// The columns a store writes for `message`: the destination queue (`None` = publish)
    /// and the envelope's JSON.
    pub fn encode(message: &Outgoing) -> Result<(Option<&str>, Vec<u8>)> {
        let destination = match &message.destination {
            Destination::Queue(q) => Some(q.as_str()),
            Destination::Topic => None,
        };
        Ok((destination, message.envelope.to_json()?))
    }
}

/// Rows claimed by one relay. Completing the claim marks the rows sent; dropping it without
/// completing leaves them for the next claim.
pub struct Claim {
    /// The claimed rows, oldest first.
    pub rows: Vec<OutboxRow>,
    handle: Box<dyn ClaimHandle>,
}

impl std::fmt::Debug for Claim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Claim")
            .field("rows", &self.rows.len())
            .finish_non_exhaustive()
    }
}

impl Claim {
    /// A claim of `rows`, completed through `handle`.
    pub fn new(rows: Vec<OutboxRow>, handle: Box<dyn ClaimHandle>) -> Self {
        Claim { rows, handle }
    }

    /// Splits the claim into its rows and its handle (the relay sends the rows, then
    /// completes the handle with their ids).
    pub fn into_parts(self) -> (Vec<OutboxRow>, Box<dyn ClaimHandle>) {
        (self.rows, self.handle)
    }
}

/// Marks a claim's rows sent.
#[async_trait]
pub trait ClaimHandle: Send {
    /// Marks the rows `ids` sent (a store deletes them, keeping the table small) and
    /// releases whatever the claim held (a transaction, an advisory lock).
    async fn complete(self: Box<Self>, ids: Vec<i64>) -> Result<()>;
}

/// An outbox table a [`Relay`] ships from.
#[async_trait]
pub trait OutboxStore: Send + Sync + 'static {
    /// Claims up to `limit` of the oldest unsent rows for this relay. `None` when there is
    /// nothing to ship or another relay holds the outbox.
    async fn claim(&self, limit: usize) -> Result<Option<Claim>>;

    /// Rows not yet marked sent (for the `tidings_outbox_pending` gauge).
    async fn pending(&self) -> Result<u64>;

    /// Resolves when new rows may have been committed (a notification), or never; the relay
    /// also polls.
    async fn changed(&self) {
        std::future::pending::<()>().await
    }
}
