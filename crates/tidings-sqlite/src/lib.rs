//! The embedded durable transport of Tidings (the default: no server), and the outbox,
//! inbox and saga stores on SQLite.
//!
//! - [`SqliteTransport`]: queues as rows with leases, fan-out from persisted subscriptions,
//!   delays, per-key order and parking, error queues — one file that several processes of
//!   one machine may share. Every write of a process goes through one writer task that
//!   group-commits (one transaction + one fsync per batch).
//! - [`SqliteTransport::write`]: the caller's own transactional work (a closure on the
//!   writer's connection) joins the group commit — many business transactions share one
//!   commit, and never fight the transport for SQLite's single write lock.
//! - [`Outbox`]: enqueue in the caller's transaction (a `write` closure's connection) — on
//!   this transport that insert *is* the send, so business rows and messages commit
//!   together.
//! - [`transactional`]: a handler whose inbox row, business writes and outgoing messages
//!   commit in one transaction; duplicates are skipped.
//! - [`SqliteSagaStore`]: saga steps (state with optimistic concurrency, inbox row,
//!   messages) as one transaction, for [`tidings_core::saga`].
//! - [`OutboxTable`]: an outbox table in a service's own SQLite database, shipped to a
//!   broker transport by a [`Relay`](tidings_core::outbox::Relay).
//!
//! Durability: see [`Durability`].

mod admin;
mod batch;
pub mod config;
pub mod error;
pub mod inbox;
mod job;
pub mod outbox;
mod park;
mod raw;
mod receiver;
pub mod relay;
pub mod saga;
mod schema;
mod store;
mod topology;
pub mod transport;
mod wake;
mod writer;

pub use writer::WriterStats;

pub use config::{Durability, SqliteConfig};
pub use error::{Result, SqliteError};
pub use inbox::{transactional, SqliteInbox, Transactional};
pub use outbox::Outbox;
pub use relay::OutboxTable;
pub use saga::{SqliteSagaQueries, SqliteSagaStore};
pub use schema::SCHEMA_VERSION;
pub use transport::SqliteTransport;
