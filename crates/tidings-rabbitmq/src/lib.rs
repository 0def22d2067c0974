//! Tidings transport on RabbitMQ (lapin, AMQP 0-9-1), for RabbitMQ 3.10 and later, with
//! no plugin required (the management plugin, when enabled, lets any process list the
//! queues).
//!
//! ```no_run
//! # async fn f() -> tidings_core::Result<()> {
//! use tidings_rabbitmq::{RabbitMqConfig, RabbitMqTransport};
//! let config = RabbitMqConfig::from_url("amqp://guest:guest@127.0.0.1:5672/%2f?queue_type=quorum")?;
//! let transport = RabbitMqTransport::connect(config).await?;
//! # Ok(()) }
//! ```
//!
//! # How the transport semantics map
//!
//! | semantic | on RabbitMQ |
//! | --- | --- |
//! | queue / competing consumers | durable quorum queue (classic with `?queue_type=classic`), persistent messages, manual ack, `basic.qos` = prefetch |
//! | send | default exchange, `mandatory` (a missing queue is an error); publisher confirms, pipelined: `send` returns once every message is confirmed |
//! | publish fan-out | a durable fanout exchange `tidings.<type>` per event type, bound to each subscribed queue |
//! | delayed redelivery, scheduled messages | fixed-TTL delay levels + dead-letter exchanges (see [`topology`](crate::topology)); 10 ms resolution, never early |
//! | delivery count | `tidings.delivery-count` header (carried over delayed redeliveries) + quorum `x-delivery-count` |
//! | per-key order | `x-single-active-consumer` queue + at most one delivery per key in process; an ordered nack-with-delay is held in process, so later messages of the key wait |
//! | error queue | `<queue>_error`; dead-letter publishes there (confirmed) then acks; list/replay/purge via `basic.get` (not atomic) |
//! | lease | none: `extend_lease` is a no-op; the broker's `consumer_timeout` applies |
//! | release | `basic.nack(requeue)` (quorum queues count it as a delivery) |
//! | wake-up | push (`basic.consume`) |
//! | listing queues (`stats`, dead letters without a queue filter) | management HTTP API `GET /api/queues/{vhost}` (`?management=`, default `http://<host>:15672`): every `<q>` that has a `<q>_error`; if it does not answer, only the queues declared through this transport (AMQP cannot list queues) |
//! | parking a key on dead-letter | not supported (`parked_keys: None`) |
//! | delete queue | `queue.delete` of `<queue>` and `<queue>_error` (their bindings go with them); delayed copies still in the shared delay levels are dropped when they come out, unless the queue is declared again by then |
//!
//! The connection is re-established with back-off after a loss, topology is declared
//! again, and consumers re-open; deliveries unsettled at the loss come back (at least
//! once). Credentials never appear in logs or errors.

mod admin;
mod codec;
mod config;
mod connection;
mod consumer;
mod error;
mod management;
pub mod permissions;
mod publisher;
mod settle;
pub mod topology;
mod transport;

pub use config::{QueueType, RabbitMqConfig, DEFAULT_MAX_MESSAGE_SIZE};
pub use error::RabbitMqError;
pub use transport::RabbitMqTransport;

/// The consumer's envelope decoding (AMQP properties and body), and its inverse, exposed
/// for the fuzz harness (`crates/tidings-fuzz`); not a stable API.
#[doc(hidden)]
pub mod wire {
    use lapin::BasicProperties;
    use tidings_core::Envelope;

    /// The envelope of a received message, as the consumer decodes it.
    pub fn decode(props: &BasicProperties, body: &[u8]) -> Envelope {
        crate::codec::decode(props, body).envelope
    }

    /// AMQP properties and payload of `env`, as the publisher encodes them.
    pub fn encode(env: &Envelope) -> (BasicProperties, Vec<u8>) {
        crate::codec::encode(env, &crate::codec::Extra::default())
    }
}
