//! Tidings: reliable messaging for Rust services — commands and events, retries,
//! redelivery, error queues, outbox / inbox and sagas — on an embedded durable SQLite
//! broker by default, or on PostgreSQL, RabbitMQ and NATS JetStream.
//!
//! This facade re-exports the core ([`Bus`], [`Endpoint`], [`Message`] ...) and the
//! transports enabled by features (`sqlite` (default), `postgres`, `rabbitmq`, `nats`), and
//! picks a transport by URL with [`connect`]. Feature `otel` exports the consume spans to
//! OpenTelemetry as one trace tree per message flow (`otel::init_otlp` installs OTLP).
//!
//! A message contract is a serde type with `#[derive(Message)]`: a stable name, a version
//! (default 1) and its kind, `"event"` (published to every subscriber) or `"command"`
//! (sent to the one endpoint that receives it):
//!
//! ```
//! use serde::{Deserialize, Serialize};
//! use tidings::{Command, Event, Message, MessageKind};
//!
//! #[derive(Debug, Serialize, Deserialize, Message)]
//! #[message(name = "shop.order-placed", version = 2, kind = "event")]
//! struct OrderPlaced { order_id: u32 }
//!
//! #[derive(Debug, Serialize, Deserialize, Message)]
//! #[message(name = "shop.reserve-stock", kind = "command")]
//! struct ReserveStock { order_id: u32 }
//!
//! fn publishable<E: Event>() {}
//! fn sendable<C: Command>() {}
//! publishable::<OrderPlaced>();
//! sendable::<ReserveStock>();
//! assert_eq!(OrderPlaced::NAME, "shop.order-placed");
//! assert_eq!(OrderPlaced::VERSION, 2);
//! assert_eq!(OrderPlaced::KIND, MessageKind::Event);
//! assert_eq!((ReserveStock::VERSION, ReserveStock::KIND), (1, MessageKind::Command));
//! ```
//!
//! A service on the embedded SQLite transport (feature `sqlite`; [`connect`] picks the
//! transport by URL): an event handler sends a command, whose handler fails once and
//! succeeds on its retry.
//!
//! ```
//! use std::sync::atomic::{AtomicU32, Ordering};
//! use std::sync::Arc;
//! use std::time::Duration;
//! use serde::{Deserialize, Serialize};
//! use tidings::pipeline::retry::Intervals;
//! use tidings::{Bus, ConsumeContext, Endpoint, HandlerError, Message};
//!
//! #[derive(Serialize, Deserialize, Message)]
//! #[message(name = "shop.order-placed", kind = "event")]
//! struct OrderPlaced { order_id: u32 }
//!
//! #[derive(Serialize, Deserialize, Message)]
//! #[message(name = "shop.reserve-stock", kind = "command")]
//! struct ReserveStock { order_id: u32 }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> anyhow::Result<()> {
//! let dir = tempfile::tempdir()?;
//! let transport = tidings::connect(&format!("sqlite://{}/shop.db", dir.path().display())).await?;
//! let orders = Endpoint::new("orders").sends::<ReserveStock>().handle_fn(
//!     |e: OrderPlaced, ctx: ConsumeContext| async move {
//!         ctx.send(&ReserveStock { order_id: e.order_id }).await?;
//!         Ok(())
//!     },
//! );
//! let attempts = Arc::new(AtomicU32::new(0));
//! let (done, mut reserved) = tokio::sync::mpsc::unbounded_channel();
//! let counted = attempts.clone();
//! let inventory = Endpoint::new("inventory")
//!     .retry(Intervals(vec![Duration::from_millis(10)]))
//!     .handle_fn(move |c: ReserveStock, _: ConsumeContext| {
//!         let (counted, done) = (counted.clone(), done.clone());
//!         async move {
//!             if counted.fetch_add(1, Ordering::SeqCst) == 0 {
//!                 return Err(HandlerError::transient("warehouse busy")); // retried
//!             }
//!             let _ = done.send(c.order_id);
//!             Ok(())
//!         }
//!     });
//! let bus = Bus::builder(transport)
//!     .endpoint(orders)
//!     .endpoint(inventory)
//!     .sends::<OrderPlaced>()
//!     .start()
//!     .await?;
//! bus.publish(&OrderPlaced { order_id: 42 }).await?;
//! assert_eq!(tokio::time::timeout(Duration::from_secs(10), reserved.recv()).await?, Some(42));
//! assert_eq!(attempts.load(Ordering::SeqCst), 2);
//! assert!(bus.shutdown(Duration::from_secs(5)).await);
//! # Ok(()) }
//! ```

pub use tidings_core::*;

// `#[derive(Message)]` names this crate `::tidings`, inside it too.
extern crate self as tidings;

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
///
/// ```
/// assert_eq!(
///     tidings::redact_url("postgres://app:s3cret@db:5432/shop?sslmode=require"),
///     "postgres://app:***@db:5432/shop?sslmode=require"
/// );
/// assert_eq!(tidings::redact_url("sqlite://data/app.db"), "sqlite://data/app.db");
/// let err = "connection to postgres://app:s3cret@db failed: password s3cret rejected";
/// assert!(!tidings::redact::scrub_url(err, "postgres://app:s3cret@db").contains("s3cret"));
/// ```
pub use tidings_core::redact::redact_url;
