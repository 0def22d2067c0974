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
//! Durability: see [`Durability`]. A transport is configured in code or by URL
//! ([`SqliteConfig::from_url`]):
//!
//! ```
//! use std::time::Duration;
//! use tidings_sqlite::{Durability, SqliteConfig};
//!
//! let cfg = SqliteConfig::from_url("sqlite://data/app.db?durability=os-buffered&poll_ms=20")?;
//! assert_eq!(cfg.path, std::path::Path::new("data/app.db")); // relative; sqlite:///.. is absolute
//! assert_eq!(cfg.durability, Durability::OsBuffered);
//! assert_eq!(cfg.poll_interval, Duration::from_millis(20));
//! // The same in code:
//! let same = SqliteConfig::new("data/app.db")
//!     .durability(Durability::OsBuffered)
//!     .poll_interval(Duration::from_millis(20));
//! assert_eq!((same.path, same.durability), (cfg.path, cfg.durability));
//! // Mistakes are refused, naming the option.
//! let err = SqliteConfig::from_url("sqlite://app.db?poll=5").unwrap_err();
//! assert!(err.to_string().contains("unknown option `poll`"));
//! assert!(SqliteConfig::from_url("sqlite://:memory:").is_err());
//! assert!(SqliteConfig::from_url("postgres://db/app").is_err());
//! # Ok::<(), tidings_sqlite::SqliteError>(())
//! ```
//!
//! An [`OutboxTable`] in a service's own database, shipped by a
//! [`Relay`](tidings_core::outbox::Relay) to the bus's transport (here another SQLite
//! file standing in for a broker): the order row and the event commit together, and the
//! event reaches its subscriber once the relay has shipped it.
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use serde::{Deserialize, Serialize};
//! use tidings_core::outbox::{OutboxStore, Relay};
//! use tidings_core::{Bus, ConsumeContext, Endpoint, Message};
//! use tidings_sqlite::{OutboxTable, SqliteTransport};
//!
//! #[derive(Serialize, Deserialize, Message)]
//! #[message(name = "shop.order-placed", kind = "event")]
//! struct OrderPlaced { id: String }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> anyhow::Result<()> {
//! let dir = tempfile::tempdir()?;
//! let broker = SqliteTransport::open(&format!("sqlite://{}/broker.db", dir.path().display())).await?;
//! let (tx, mut billed) = tokio::sync::mpsc::unbounded_channel();
//! let billing = Endpoint::new("billing").handle_fn(move |e: OrderPlaced, _: ConsumeContext| {
//!     let tx = tx.clone();
//!     async move {
//!         let _ = tx.send(e.id);
//!         Ok(())
//!     }
//! });
//! let bus = Bus::builder(Arc::new(broker)).endpoint(billing).sends::<OrderPlaced>().start().await?;
//!
//! // The service's database, with its business table and the outbox table.
//! let options = sqlx::sqlite::SqliteConnectOptions::new()
//!     .filename(dir.path().join("shop.db"))
//!     .create_if_missing(true);
//! let pool = sqlx::SqlitePool::connect_with(options).await?;
//! sqlx::query("CREATE TABLE orders (id TEXT PRIMARY KEY)").execute(&pool).await?;
//! let outbox = OutboxTable::open(pool.clone()).await?.producer(bus.producer().clone());
//!
//! let mut tx = pool.begin().await?;
//! sqlx::query("INSERT INTO orders (id) VALUES ('o-1')").execute(&mut *tx).await?;
//! outbox.publish(&mut tx, &OrderPlaced { id: "o-1".into() }).await?;
//! tx.commit().await?; // both or neither
//! assert_eq!(outbox.pending().await?, 1);
//!
//! let stop = tokio_util::sync::CancellationToken::new();
//! let relay = Relay::new(Arc::new(outbox.clone()), bus.transport().clone());
//! let stats = relay.stats();
//! let running = tokio::spawn(relay.run(stop.clone()));
//! outbox.notify(); // wake the relay now instead of at its next poll
//! let got = tokio::time::timeout(Duration::from_secs(10), billed.recv()).await?;
//! assert_eq!(got.as_deref(), Some("o-1"));
//! assert_eq!(stats.shipped(), 1);
//! stop.cancel();
//! running.await?;
//! bus.shutdown(Duration::from_secs(5)).await;
//! # Ok(()) }
//! ```

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
