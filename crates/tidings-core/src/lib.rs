//! Core of Tidings: message contracts, the [`Envelope`], the [`Bus`], endpoints
//! and their consumer pipeline (tower layers), the [`Transport`](transport::Transport)
//! trait with an in-memory transport, a test harness, and (feature `conformance`) the
//! conformance suite every transport runs.
//!
//! A contract, an endpoint handling it, and a bus on the in-memory transport:
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use serde::{Deserialize, Serialize};
//! use tidings_core::transport::memory::MemoryTransport;
//! use tidings_core::{Bus, ConsumeContext, Endpoint, Message};
//!
//! #[derive(Debug, Serialize, Deserialize, Message)]
//! #[message(name = "shop.order-placed", version = 1, kind = "event")]
//! struct OrderPlaced { order_id: u32 }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> anyhow::Result<()> {
//! let (seen, mut handled) = tokio::sync::mpsc::unbounded_channel();
//! let billing = Endpoint::new("billing").handle_fn(move |e: OrderPlaced, _: ConsumeContext| {
//!     let seen = seen.clone();
//!     async move {
//!         let _ = seen.send(e.order_id);
//!         Ok(())
//!     }
//! });
//! let bus = Bus::builder(Arc::new(MemoryTransport::new()))
//!     .endpoint(billing)
//!     .sends::<OrderPlaced>()
//!     .start()
//!     .await?;
//! bus.publish(&OrderPlaced { order_id: 7 }).await?;
//! // The handler ran (a timeout rather than a hang if it did not).
//! assert_eq!(tokio::time::timeout(Duration::from_secs(5), handled.recv()).await?, Some(7));
//! assert!(bus.shutdown(Duration::from_secs(5)).await);
//! # Ok(()) }
//! ```

// `#[derive(Message)]` names this crate `::tidings_core`, inside it too.
extern crate self as tidings_core;

pub mod envelope;
pub mod error;
pub mod fault;
pub mod message;
pub mod transport;

pub use envelope::Envelope;
pub use error::{Error, ErrorKind, Result};
pub use fault::{Fault, FaultReason};
pub use message::{Command, ContractId, Event, JsonSerializer, Message, MessageKind, Serializer};
pub use tidings_macros::Message;

pub mod context;
pub mod handler;
#[cfg(feature = "otel")]
pub mod otel;
pub mod producer;
pub mod telemetry;

pub use context::ConsumeContext;
pub use handler::{Handler, HandlerError, HandlerFn, ResultExt};
pub use producer::{Producer, SendOptions};

#[cfg(feature = "conformance")]
pub mod conformance;
pub mod pipeline;
pub mod redact;

pub mod access;
pub mod bus;
pub mod endpoint;
mod metric_cache;
pub mod observe;
pub mod outbox;
mod receive;
pub mod saga;
pub mod topology;

pub use bus::{Bus, BusBuilder};
pub use endpoint::{Endpoint, Redelivery};
pub mod harness;
pub use harness::TestHarness;
