//! The [`Transport`] trait every broker sits behind, and the types it speaks:
//! [`Topology`], [`Outgoing`], [`Receiver`], [`Delivery`], stats and dead letters.
//!
//! The trait is shaped to map onto SQL queues (rows + leases), RabbitMQ (exchanges,
//! queues, manual ack), and NATS JetStream (streams, pull consumers, ack/nak/term):
//! see docs/DESIGN.md for how each transport maps every semantic.

pub mod memory;
pub mod undecodable;

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use crate::{Envelope, Result};

/// Name of an endpoint's error queue.
pub fn error_queue_name(queue: &str) -> String {
    format!("{queue}_error")
}

/// One queue an endpoint consumes and what is routed to it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct QueueSpec {
    /// Queue (= endpoint) name.
    pub name: String,
    /// Event types (contract names) published events of which are copied into this queue.
    pub subscriptions: Vec<String>,
    /// Command types (contract names) this queue receives (informational: commands are
    /// sent to the queue by name).
    pub commands: Vec<String>,
    /// One message in flight per partition key.
    pub ordered: bool,
    /// A short-lived queue (reply queue of one bus instance); transports may auto-delete it.
    pub temporary: bool,
}

/// Everything a bus declares at start-up.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Topology {
    /// The queues, one per endpoint.
    pub queues: Vec<QueueSpec>,
}

/// Where an outgoing message goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// To one queue (commands, replies, replays).
    Queue(String),
    /// Published: copied to every queue subscribed to the envelope's message type.
    Topic,
}

/// A message on its way out.
#[derive(Debug, Clone, PartialEq)]
pub struct Outgoing {
    /// Where to.
    pub destination: Destination,
    /// The message.
    pub envelope: Envelope,
}

impl Outgoing {
    /// A message for one queue.
    pub fn to_queue(queue: impl Into<String>, envelope: Envelope) -> Self {
        Outgoing {
            destination: Destination::Queue(queue.into()),
            envelope,
        }
    }

    /// A published event.
    pub fn publish(envelope: Envelope) -> Self {
        Outgoing {
            destination: Destination::Topic,
            envelope,
        }
    }
}

/// How a consumer takes deliveries from a queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiveOptions {
    /// At most this many deliveries taken from the queue and not yet settled.
    pub prefetch: usize,
    /// How long a delivery stays invisible to other consumers before it comes back
    /// (for transports with leases; renewed by the consumer while a handler runs).
    pub lease: Duration,
    /// At most one unsettled delivery per partition key.
    pub ordered: bool,
    /// On an ordered queue: a dead-lettered message parks its key until it is replayed or purged.
    pub park_on_dead_letter: bool,
}

impl Default for ReceiveOptions {
    fn default() -> Self {
        ReceiveOptions {
            prefetch: 32,
            lease: Duration::from_secs(30),
            ordered: false,
            park_on_dead_letter: false,
        }
    }
}

/// How a delivery is settled. Implemented by each transport.
#[async_trait]
pub trait Settle: Send + Sync {
    /// Done: remove the message.
    async fn ack(self: Box<Self>) -> Result<()>;
    /// Try again after `delay`; `updated`, where given, carries headers to keep
    /// (transports that cannot rewrite a message may ignore it).
    async fn nack(self: Box<Self>, delay: Duration, updated: Option<Envelope>) -> Result<()>;
    /// Move to the queue's error queue; `envelope` carries the fault headers.
    async fn dead_letter(self: Box<Self>, envelope: Envelope) -> Result<()>;
    /// Give back without counting a failure (shutdown): visible again at once.
    async fn release(self: Box<Self>) -> Result<()>;
    /// Keep the delivery invisible to others for `by` from now.
    async fn extend_lease(&self, by: Duration) -> Result<()>;
    /// The database this delivery's ack commits in, when the transport can also write an
    /// inbox row in that very commit ([`Settle::ack_recording`]). The receive loop compares
    /// it with the endpoint's [`InboxStore::home`](crate::pipeline::inbox::InboxStore::home).
    /// Default: `None` (record and ack separately). Wrappers must forward it.
    fn inbox_home(&self) -> Option<u64> {
        None
    }
    /// Acks and records `(message_id, endpoint)` in the inbox kept at
    /// [`Settle::inbox_home`], in one commit: either both happen or neither. Called only
    /// when that home is the endpoint inbox's; the default (no home) just acks.
    async fn ack_recording(self: Box<Self>, message_id: Uuid, endpoint: &str) -> Result<()> {
        let _ = (message_id, endpoint);
        self.ack().await
    }
}

/// A message taken from a queue, to be settled exactly once.
pub struct Delivery {
    /// The message.
    pub envelope: Envelope,
    /// Times this message was delivered, this one included (1 = first delivery).
    pub delivery_count: u32,
    /// The queue it came from.
    pub queue: String,
    /// Settlement handle.
    pub settle: Box<dyn Settle>,
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery")
            .field("id", &self.envelope.id)
            .field("message_type", &self.envelope.message_type)
            .field("delivery_count", &self.delivery_count)
            .field("queue", &self.queue)
            .finish()
    }
}

impl Delivery {
    /// Acknowledges it.
    pub async fn ack(self) -> Result<()> {
        self.settle.ack().await
    }

    /// Redelivers it after `delay`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tidings_core::transport::memory::MemoryTransport;
    /// use tidings_core::transport::{Outgoing, QueueSpec, ReceiveOptions, Topology, Transport};
    /// use tidings_core::Envelope;
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> tidings_core::Result<()> {
    /// let transport = MemoryTransport::new();
    /// let queue = QueueSpec { name: "jobs".into(), ..QueueSpec::default() };
    /// transport.declare(&Topology { queues: vec![queue] }).await?;
    /// let job = Envelope::new("jobs.resize", 1, &b"{}"[..]);
    /// transport.send(vec![Outgoing::to_queue("jobs", job)]).await?;
    ///
    /// let mut rx = transport.receive("jobs", ReceiveOptions::default()).await?;
    /// let first = rx.recv().await?.expect("a delivery");
    /// first.nack(Duration::from_secs(5)).await?; // failed: try again in 5 s
    /// let again = rx.recv().await?.expect("redelivered"); // paused time: no real wait
    /// assert_eq!(again.delivery_count, 2);
    /// again.dead_letter().await?; // give up: to the error queue
    /// assert_eq!(transport.stats().await?[0].error_depth, 1);
    /// # Ok(()) }
    /// ```
    pub async fn nack(self, delay: Duration) -> Result<()> {
        self.settle.nack(delay, None).await
    }

    /// Dead-letters it as it is (fault headers already applied).
    pub async fn dead_letter(self) -> Result<()> {
        self.settle.dead_letter(self.envelope).await
    }

    /// Releases it without counting a failure.
    pub async fn release(self) -> Result<()> {
        self.settle.release().await
    }
}

/// A stream of deliveries from one queue.
#[async_trait]
pub trait Receiver: Send {
    /// The next delivery; waits until one is available. `None` once the receiver is closed.
    async fn recv(&mut self) -> Result<Option<Delivery>>;
    /// Stops taking deliveries; prefetched but unhandled ones are released.
    async fn close(&mut self) -> Result<()>;
}

/// What a transport can tell about a queue. `None` where the broker cannot say.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct QueueStats {
    /// The queue.
    pub queue: String,
    /// Messages ready to deliver now.
    pub ready: u64,
    /// Delivered and not yet settled.
    pub in_flight: Option<u64>,
    /// Waiting for their scheduled time or redelivery delay.
    pub scheduled: Option<u64>,
    /// Age of the oldest message waiting.
    pub oldest_age: Option<Duration>,
    /// Messages in the error queue.
    pub error_depth: u64,
    /// Partition keys parked behind a dead letter.
    pub parked_keys: Option<u64>,
}

/// A message in an error queue.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeadLetter {
    /// The endpoint queue it failed in (not the error queue).
    pub queue: String,
    /// The message with its fault headers.
    pub envelope: Envelope,
    /// When it was dead-lettered.
    pub dead_lettered_at: DateTime<Utc>,
}

/// Which dead letters to list, replay or purge.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeadLetterQuery {
    /// Only from this endpoint queue.
    pub queue: Option<String>,
    /// Only of this message type.
    pub message_type: Option<String>,
    /// Only with this fault reason.
    pub reason: Option<String>,
    /// Only dead-lettered at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Only these message ids (empty: all that match the rest).
    pub ids: Vec<Uuid>,
    /// At most this many (0: no limit).
    pub limit: usize,
}

impl DeadLetterQuery {
    /// Whether `dl` matches the filters (ids and limit aside).
    pub fn matches(&self, dl: &DeadLetter) -> bool {
        self.queue.as_deref().is_none_or(|q| q == dl.queue)
            && self
                .message_type
                .as_deref()
                .is_none_or(|t| t == dl.envelope.message_type)
            && self.reason.as_deref().is_none_or(|r| {
                Some(r) == dl.envelope.header(crate::envelope::headers::FAULT_REASON)
            })
            && self.since.is_none_or(|s| dl.dead_lettered_at >= s)
            && (self.ids.is_empty() || self.ids.contains(&dl.envelope.id))
    }
}

/// A message broker (or embedded store) Tidings runs on.
///
/// Implementations: in-memory ([`memory::MemoryTransport`]), SQLite, PostgreSQL, RabbitMQ,
/// NATS JetStream. Each passes the conformance suite (feature `conformance`).
///
/// The bus drives it; used directly, a round trip is declare, send, receive, settle:
///
/// ```
/// use tidings_core::transport::memory::MemoryTransport;
/// use tidings_core::transport::{Outgoing, QueueSpec, ReceiveOptions, Topology, Transport};
/// use tidings_core::Envelope;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> tidings_core::Result<()> {
/// let transport = MemoryTransport::new();
/// let queue = QueueSpec { name: "billing".into(), ..QueueSpec::default() };
/// transport.declare(&Topology { queues: vec![queue] }).await?;
///
/// let envelope = Envelope::new("shop.order-placed", 1, &b"{\"order_id\":7}"[..]);
/// let id = envelope.id;
/// transport.send(vec![Outgoing::to_queue("billing", envelope)]).await?;
///
/// let mut receiver = transport.receive("billing", ReceiveOptions::default()).await?;
/// let delivery = receiver.recv().await?.expect("a delivery");
/// assert_eq!(delivery.envelope.id, id);
/// assert_eq!(delivery.delivery_count, 1);
/// assert_eq!(&delivery.envelope.body[..], b"{\"order_id\":7}");
/// delivery.ack().await?; // done: removed from the queue
///
/// let stats = transport.stats().await?;
/// let billing = stats.iter().find(|s| s.queue == "billing").expect("declared");
/// assert_eq!((billing.ready, billing.error_depth), (0, 0));
///
/// // An undeclared queue is refused.
/// let stray = Envelope::new("shop.order-placed", 1, &b"{}"[..]);
/// assert!(transport.send(vec![Outgoing::to_queue("nowhere", stray)]).await.is_err());
/// receiver.close().await?;
/// # Ok(()) }
/// ```
#[async_trait]
pub trait Transport: Send + Sync + 'static {
    /// Short name (`memory`, `sqlite`, ...).
    fn name(&self) -> &'static str;

    /// Largest envelope (body + headers) the transport accepts, in bytes.
    fn max_message_size(&self) -> usize;

    /// Creates queues, error queues and subscriptions (idempotent; persisted where the
    /// transport is durable, so publishers in other processes see the subscriptions).
    async fn declare(&self, topology: &Topology) -> Result<()>;

    /// Sends or publishes messages. Returns once the transport has durably accepted all of
    /// them (fsync, publisher confirm, stream ack). Transports that can, do it atomically.
    /// A message over [`Transport::max_message_size`] fails with
    /// [`Error::MessageTooLarge`](crate::Error::MessageTooLarge) and nothing is sent.
    async fn send(&self, messages: Vec<Outgoing>) -> Result<()>;

    /// Starts taking deliveries from `queue`.
    async fn receive(&self, queue: &str, options: ReceiveOptions) -> Result<Box<dyn Receiver>>;

    /// Depth and friends, per declared queue.
    async fn stats(&self) -> Result<Vec<QueueStats>>;

    /// Lists dead letters, oldest first.
    async fn dead_letters(&self, query: &DeadLetterQuery) -> Result<Vec<DeadLetter>>;

    /// Moves matching dead letters back to their original queue (or `to`), marked as
    /// replayed; unparks their keys. Returns how many moved.
    async fn replay(&self, query: &DeadLetterQuery, to: Option<&str>) -> Result<u64>;

    /// Deletes matching dead letters; unparks their keys. Returns how many.
    async fn purge(&self, query: &DeadLetterQuery) -> Result<u64>;

    /// Deletes `queue` for good: its messages (ready, in flight, scheduled or waiting
    /// out a redelivery delay), its error queue and dead letters, its parked keys, and
    /// its subscriptions, so published events are no longer copied to it. Afterwards
    /// [`Transport::stats`] no longer lists it, and sending to it fails with
    /// [`Error::UnknownQueue`](crate::Error::UnknownQueue) until it is declared again
    /// (a re-declared queue starts empty). Receivers still open on it get nothing more
    /// (some transports end them).
    ///
    /// Idempotent: deleting a queue that does not exist (or no longer does) is `Ok`.
    /// Meant for temporary queues (reply queues, `tidings tail`, tests); shared state
    /// such as an event type's topic stays. Transports document what they cannot reach
    /// (e.g. a broker's delayed copies still travelling through shared delay queues).
    async fn delete_queue(&self, queue: &str) -> Result<()>;

    /// Closes connections; later calls fail with [`Error::Shutdown`](crate::Error::Shutdown).
    async fn close(&self) -> Result<()>;
}

/// Checks every outgoing message against `limit`.
pub fn check_sizes(messages: &[Outgoing], limit: usize) -> Result<()> {
    for m in messages {
        let size = m.envelope.encoded_len();
        if size > limit {
            return Err(crate::Error::MessageTooLarge { size, limit });
        }
    }
    Ok(())
}
