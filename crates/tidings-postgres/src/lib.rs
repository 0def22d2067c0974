//! Tidings on PostgreSQL: a [`Transport`](tidings_core::transport::Transport) built on rows
//! claimed with `FOR UPDATE SKIP LOCKED` and woken by `LISTEN/NOTIFY`, plus the stores
//! that make handlers effectively exactly-once: the [`Outbox`] (the enqueue *is* an insert
//! in the caller's transaction), the [`Inbox`] with its [`transactional`] handler wrapper,
//! and the [`PgSagaStore`] (sagas, one transaction per step). [`OutboxTable`] is the outbox for a
//! service whose *transport* is another broker: a [`Relay`](tidings_core::outbox::Relay)
//! ships it.
//!
//! ```no_run
//! # async fn run() -> Result<(), tidings_postgres::PgError> {
//! use tidings_postgres::{PostgresConfig, PostgresTransport};
//! let config = PostgresConfig::from_url("postgres://app@127.0.0.1:5432/orders?schema=tidings")?;
//! let transport = PostgresTransport::connect(config).await?;
//! # let _ = transport; Ok(()) }
//! ```
//!
//! The schema and how each transport semantic maps onto it are described in `schema.rs`
//! and docs/DESIGN.md.

mod admin;
pub mod config;
pub mod error;
pub mod inbox;
mod maintain;
mod migrate;
pub mod outbox;
pub mod permissions;
mod receiver;
pub mod relay;
mod retry;
pub mod saga;
mod schema;
mod send;
mod send_writer;
mod settle;
pub mod transport;
mod wake;

pub use config::PostgresConfig;
pub use error::PgError;
pub use inbox::{transactional, Inbox, Transactional};
pub use outbox::Outbox;
pub use relay::OutboxTable;
pub use saga::PgSagaStore;
pub use tidings_core::redact::redact_url;
pub use transport::PostgresTransport;
