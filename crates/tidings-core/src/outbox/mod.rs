//! The outbox relay for brokers: messages committed to an outbox table in the service's own
//! SQL database (in the same transaction as its business rows) are shipped to a
//! [`Transport`](crate::transport::Transport) by a [`Relay`], which waits for the broker's
//! confirm and only then marks them sent (deletes them).
//!
//! The table lives behind an [`OutboxStore`] (`tidings_sqlite::OutboxTable`,
//! `tidings_postgres::OutboxTable`). A store leases the table to one relay at a time (a
//! lease row on SQLite, a session advisory lock on PostgreSQL): that relay reads the oldest
//! rows in commit order, so two relays never ship the same row at once and per-key order
//! holds. The relay sends one batch at a time (the next only after the broker confirmed
//! the previous one), and overlaps the table work — marking the previous batch sent,
//! reading the next — with that send.
//!
//! Delivery is at least once: a relay that dies between the broker's confirm and the mark
//! leaves the rows in the table (up to two batches), and the next holder ships them
//! again — consumers' inboxes absorb the duplicates.

mod relay;

pub use relay::{names, Relay, RelayStats, IDLE_RELEASE};

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

/// One relay's exclusive hold on an outbox table (a lease row on SQLite, a session
/// advisory lock on PostgreSQL), from [`OutboxStore::lease`] until released or dropped.
///
/// The relay pipelines through it: while one batch is being sent, [`OutboxLease::step`]
/// marks the batch before it sent and reads the batch after it, leaving out the rows in
/// flight. A relay that dies leaves its unmarked rows in the table, and the next holder
/// ships them again.
#[async_trait]
pub trait OutboxLease: Send {
    /// Marks the rows `sent` as shipped (a store deletes them, keeping the table small),
    /// renews the hold, and returns up to `limit` of the oldest rows left, oldest first,
    /// leaving out `in_flight` (rows being sent now). An error when the hold was lost
    /// (another relay may be shipping): the relay stops and starts over.
    async fn step(
        &mut self,
        sent: &[i64],
        in_flight: &[i64],
        limit: usize,
    ) -> Result<Vec<OutboxRow>>;

    /// Gives the table up to other relays at once (dropping the lease gives it up too, on
    /// PostgreSQL at once, on SQLite when the lease expires).
    async fn release(self: Box<Self>) -> Result<()>;
}

/// An outbox table a [`Relay`] ships from.
#[async_trait]
pub trait OutboxStore: Send + Sync + 'static {
    /// Makes the caller the table's only shipper. `None` when there is nothing to ship or
    /// another relay holds the table.
    async fn lease(&self) -> Result<Option<Box<dyn OutboxLease>>>;

    /// Rows not yet marked sent (for the `tidings_outbox_pending` gauge).
    async fn pending(&self) -> Result<u64>;

    /// Resolves when new rows may have been committed (a notification), or never; the relay
    /// also polls.
    async fn changed(&self) {
        std::future::pending::<()>().await
    }
}
