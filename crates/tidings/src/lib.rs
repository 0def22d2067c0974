//! Tidings: reliable messaging for Rust services — commands and events, retries,
//! redelivery, error queues, outbox / inbox and sagas — on an embedded durable SQLite
//! broker by default, or on PostgreSQL, RabbitMQ and NATS JetStream.
//!
//! This facade re-exports the core ([`Bus`], [`Endpoint`], [`Message`] ...) and the
//! transports enabled by features (`sqlite` (default), `postgres`, `rabbitmq`, `nats`), and
//! picks a transport by URL with [`connect`]. Feature `otel` exports the consume spans to
//! OpenTelemetry as one trace tree per message flow (`otel::init_otlp` installs OTLP).

pub use tidings_core::*;

#[cfg(feature = "nats")]
pub use tidings_nats as nats;
#[cfg(feature = "postgres")]
pub use tidings_postgres as postgres;
#[cfg(feature = "rabbitmq")]
pub use tidings_rabbitmq as rabbitmq;
#[cfg(feature = "sqlite")]
pub use tidings_sqlite as sqlite;

mod connect;

pub use connect::connect;
/// The URL with its credentials masked: [`redact::redact_url`], the one rule every crate uses.
pub use tidings_core::redact::redact_url;
