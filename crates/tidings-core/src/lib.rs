//! Core of Tidings: message contracts, the [`Envelope`], the [`Bus`], endpoints
//! and their consumer pipeline (tower layers), the [`Transport`](transport::Transport)
//! trait with an in-memory transport, a test harness, and (feature `conformance`) the
//! conformance suite every transport runs.

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
pub use handler::{Handler, HandlerError, HandlerFn};
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
