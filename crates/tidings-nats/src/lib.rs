//! Tidings transport on NATS JetStream (async-nats), for nats-server 2.9 and newer.
//!
//! ```no_run
//! # async fn demo() -> Result<(), tidings_nats::NatsError> {
//! use tidings_nats::{NatsConfig, NatsTransport};
//! let transport =
//!     NatsTransport::connect(NatsConfig::from_url("nats://127.0.0.1:4222?prefix=tidings")?).await?;
//! # Ok(()) }
//! ```
//!
//! How each Tidings semantic maps onto JetStream:
//!
//! | semantic | JetStream |
//! | --- | --- |
//! | queue / competing consumers | work-queue stream per endpoint + durable pull consumer, explicit ack, `ack_wait` = lease |
//! | publish fan-out | a limits stream per event type, *sourced* by each subscribed endpoint stream (2.9 forbids overlapping subjects) |
//! | delayed redelivery | `-NAK {delay}`: the message stays pending on the consumer meanwhile (on an ordered partition it holds the partition: the retry keeps its place) |
//! | scheduled delivery | a delay stream per queue (`<P>_DL_<q>`) whose `pump` consumer (run by the queue's receivers) `-NAK`s a message until due, then republishes it onto the queue (its partition's subject) and acks it; a scheduled event found early on a queue is moved there |
//! | per-key order | subjects carry a partition (hash of the key); ordered queues have one consumer per partition with `max_ack_pending = 1` |
//! | error queue | `<endpoint>_error` = stream `<P>_ERR_<endpoint>`; dead-letter = publish there, then `+TERM` |
//! | wake-up | long-polling pull requests (server pushes as soon as a message arrives) |
//! | delete queue | deletes the queue's streams (`<P>_Q_`, or the ordered `<P>_O_*` partitions, with their consumers and sources), `<P>_ERR_`, `<P>_PK_` and `<P>_DL_`; event streams are shared and stay |
//!
//! See the `naming` table for subjects and stream names.

mod codec;
pub mod config;
mod dead_letter;
mod delay;
pub mod error;
mod naming;
mod park;
pub mod permissions;
mod publish;
mod receiver;
mod settle;
mod stats;
mod topology;
pub mod transport;

pub use config::NatsConfig;
pub use error::NatsError;
pub use transport::NatsTransport;

/// The receiver's envelope decoding (the `Tidings-Envelope` header and the payload), and
/// its inverse, exposed for the fuzz harness (`crates/tidings-fuzz`); not a stable API.
#[doc(hidden)]
pub mod wire {
    use async_nats::HeaderMap;
    use bytes::Bytes;
    use tidings_core::Envelope;

    use crate::NatsError;

    /// The envelope of a stored message, as the receiver decodes it.
    pub fn decode(headers: Option<&HeaderMap>, payload: Bytes) -> Result<Envelope, NatsError> {
        crate::codec::decode(headers, payload)
    }

    /// Headers and payload of `env`, as the publisher encodes them.
    pub fn encode(env: &Envelope) -> Result<(HeaderMap, Bytes), NatsError> {
        crate::codec::encode(env, None)
    }

    /// The header holding the envelope's metadata as JSON.
    pub const ENVELOPE_HEADER: &str = crate::codec::ENVELOPE_HEADER;
}
