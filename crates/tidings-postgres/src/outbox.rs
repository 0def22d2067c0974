//! [`Outbox`]: sends and publishes inside the caller's own transaction. On this transport
//! the outbox needs no relay: the insert into `messages` *is* the enqueue, so business
//! rows and outgoing messages commit together or not at all, and the `NOTIFY` issued in
//! the same transaction wakes receivers only on commit.

use sqlx::{Postgres, Transaction};
use tidings_core::transport::Outgoing;
use tidings_core::{Command, ConsumeContext, Event, Message, Producer, Result, SendOptions};
use uuid::Uuid;

use crate::transport::PostgresTransport;

/// Writes messages into a caller's transaction. Envelopes are built by
/// [`Producer::outgoing`], so they are identical to those the bus sends.
#[derive(Debug, Clone)]
pub struct Outbox {
    transport: PostgresTransport,
    producer: Producer,
    defaults: SendOptions,
}

impl Outbox {
    /// An outbox building envelopes with `producer` (its routes and source endpoint).
    pub fn new(transport: &PostgresTransport, producer: Producer) -> Self {
        Outbox {
            transport: transport.clone(),
            producer,
            defaults: SendOptions::default(),
        }
    }

    /// An outbox for a handler: the context's producer, and options that continue its
    /// conversation (correlation, causation, partition key).
    pub fn for_context(transport: &PostgresTransport, ctx: &ConsumeContext) -> Self {
        Outbox {
            transport: transport.clone(),
            producer: ctx.producer().clone(),
            defaults: ctx.follow_up(),
        }
    }

    /// Publishes `event` when `tx` commits.
    pub async fn publish<E: Event>(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        event: &E,
    ) -> Result<Uuid> {
        self.dispatch(tx, event, self.defaults.clone()).await
    }

    /// Publishes with options.
    pub async fn publish_with<E: Event>(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        event: &E,
        opts: SendOptions,
    ) -> Result<Uuid> {
        self.dispatch(tx, event, opts).await
    }

    /// Sends `cmd` to the endpoint that receives it when `tx` commits.
    pub async fn send<C: Command>(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        cmd: &C,
    ) -> Result<Uuid> {
        self.dispatch(tx, cmd, self.defaults.clone()).await
    }

    /// Sends with options.
    pub async fn send_with<C: Command>(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        cmd: &C,
        opts: SendOptions,
    ) -> Result<Uuid> {
        self.dispatch(tx, cmd, opts).await
    }

    /// Sends or publishes by the contract's kind.
    pub async fn dispatch<M: Message>(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        msg: &M,
        opts: SendOptions,
    ) -> Result<Uuid> {
        let out = self.producer.outgoing(msg, opts)?;
        let id = out.envelope.id;
        self.enqueue(tx, &[out]).await?;
        Ok(id)
    }

    /// Enqueues already-built messages in `tx`.
    pub async fn enqueue(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        messages: &[Outgoing],
    ) -> Result<()> {
        let shared = &self.transport.shared;
        shared.check_open()?;
        crate::send::enqueue(shared, tx, messages).await
    }
}
