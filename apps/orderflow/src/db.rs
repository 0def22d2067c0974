//! The business database (SQLite, one file in the data dir): where its writes go, the
//! read pool, the schema, and [`Db::write`] — the one door every write goes through.
//!
//! - On the SQLite transport ([`Db::on_transport`]) the business tables live in the
//!   transport's own database file, and every write is a [`SqliteTransport::write`] job:
//!   it runs on the transport's single writer, inside its group commit, next to the
//!   sends, claims and acks. There is no second writer to fight for SQLite's write lock,
//!   many handlers share one commit, and outgoing messages are enqueued in the same
//!   transaction (no relay).
//! - On other transports ([`Db::open`]) writes run on a one-connection pool, and outgoing
//!   messages go to the library's outbox table ([`OutboxTable`]) that a
//!   [`Relay`](tidings_core::outbox::Relay) ships to the broker after commit.
//!
//! Handlers use the unit of work in [`crate::work`] ([`Db::work`]).

use std::collections::HashMap;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::SqlitePool;
use tidings_core::{HandlerError, Producer};
use tidings_sqlite::{OutboxTable, SqliteError, SqliteTransport};

pub use crate::work::Work;

/// Where writes go.
#[derive(Clone, Debug)]
enum Writer {
    /// The SQLite transport's group-committing writer, and its outbox (only its
    /// `enqueue` is used: envelopes are built by the handler's producer).
    Transport(SqliteTransport, tidings_sqlite::Outbox),
    /// One connection (SQLite has one writer; queuing here beats busy retries), and the
    /// outbox table the relay ships.
    Pool(SqlitePool, OutboxTable),
}

/// The business database.
#[derive(Clone, Debug)]
pub struct Db {
    writer: Writer,
    /// Readers (WAL lets them run beside the writer).
    pub read: SqlitePool,
}

const SCHEMA: &str = include_str!("schema.sql");

/// A write that did not commit.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The SQLite transport's writer failed (its group commit, or it is closed).
    #[error(transparent)]
    Transport(#[from] SqliteError),
    /// A statement, `BEGIN` or `COMMIT` on the write pool failed.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
}

impl From<WriteError> for HandlerError {
    fn from(e: WriteError) -> Self {
        match e {
            WriteError::Transport(e) => HandlerError::from(e),
            WriteError::Database(e) => db_err(e),
        }
    }
}

fn connect_options(path: &Path, fsync: bool) -> anyhow::Result<SqliteConnectOptions> {
    let url = format!("sqlite://{}", path.display());
    Ok(SqliteConnectOptions::from_str(&url)?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(if fsync {
            SqliteSynchronous::Full
        } else {
            SqliteSynchronous::Normal
        })
        .busy_timeout(Duration::from_secs(30))
        .foreign_keys(true))
}

async fn read_pool(opts: SqliteConnectOptions) -> anyhow::Result<SqlitePool> {
    Ok(SqlitePoolOptions::new()
        .max_connections(4)
        .connect_with(opts)
        .await?)
}

impl Db {
    /// Opens (creating if needed) `path` with a write pool of its own and applies the
    /// schema (for transports other than SQLite). `fsync`: every commit reaches the disk
    /// (`synchronous=FULL`); otherwise commits survive a process crash but not a power
    /// loss (`synchronous=NORMAL`).
    pub async fn open(path: &Path, fsync: bool) -> anyhow::Result<Db> {
        let opts = connect_options(path, fsync)?;
        let write = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(120))
            .connect_with(opts.clone())
            .await?;
        sqlx::raw_sql(SCHEMA).execute(&write).await?;
        tidings_sqlite::inbox::create_table(&write).await?;
        migrate_inbox(&write).await?;
        let outbox = OutboxTable::open(write.clone()).await?;
        Ok(Db {
            writer: Writer::Pool(write, outbox),
            read: read_pool(opts).await?,
        })
    }

    /// The business tables in `transport`'s database file, written through its writer
    /// ([`SqliteTransport::write`]); applies the schema.
    pub async fn on_transport(transport: &SqliteTransport) -> anyhow::Result<Db> {
        // Start-up DDL, before anything else writes.
        sqlx::raw_sql(SCHEMA).execute(transport.pool()).await?;
        migrate_inbox(transport.pool()).await?;
        let opts = connect_options(&transport.config().path, false)?;
        let producer = Producer::new(Arc::new(transport.clone()), HashMap::new(), None);
        let outbox = tidings_sqlite::Outbox::new(transport, producer);
        Ok(Db {
            writer: Writer::Transport(transport.clone(), outbox),
            read: read_pool(opts).await?,
        })
    }

    /// Pools that connect on first use to a private in-memory database (for building
    /// endpoints without running them, e.g. `orderflow topology`).
    pub async fn lazy() -> anyhow::Result<Db> {
        let opts = SqliteConnectOptions::from_str("sqlite::memory:")?;
        let write = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(opts.clone())
            .await?;
        let outbox = OutboxTable::open(write.clone()).await?;
        Ok(Db {
            writer: Writer::Pool(write, outbox),
            read: SqlitePoolOptions::new()
                .max_connections(1)
                .connect_lazy_with(opts),
        })
    }

    /// On the SQLite transport: its outbox, which enqueues messages in business
    /// transactions (no outbox table, no relay). `None` on other transports.
    pub fn sqlite_outbox(&self) -> Option<&tidings_sqlite::Outbox> {
        match &self.writer {
            Writer::Transport(_, outbox) => Some(outbox),
            Writer::Pool(..) => None,
        }
    }

    /// Off the SQLite transport: the outbox table the relay ships. `None` on the SQLite
    /// transport (its outbox enqueues directly).
    pub fn relay_outbox(&self) -> Option<&OutboxTable> {
        match &self.writer {
            Writer::Transport(..) => None,
            Writer::Pool(_, outbox) => Some(outbox),
        }
    }

    /// Runs `f` in a write transaction and returns its value once committed; an `Err` from
    /// `f` rolls back what it wrote.
    ///
    /// On the SQLite transport `f` runs on the transport's single writer inside its group
    /// commit: **database work only** — no network calls, no sleeps (call remote services
    /// first, then record their answer here).
    pub async fn write<T, E, F>(&self, f: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<WriteError> + Send + 'static,
        F: for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, Result<T, E>> + Send + 'static,
    {
        match &self.writer {
            Writer::Transport(t, _) => t
                .write(move |conn: &mut SqliteConnection| {
                    Box::pin(async move { f(conn).await.map_err(Failed::User) })
                })
                .await
                .map_err(|e| match e {
                    Failed::User(e) => e,
                    Failed::Writer(e) => E::from(WriteError::Transport(e)),
                }),
            Writer::Pool(pool, _) => {
                let wrap = |e: sqlx::Error| E::from(WriteError::Database(e));
                let mut tx = pool.begin_with("BEGIN IMMEDIATE").await.map_err(wrap)?;
                let v = f(&mut tx).await?;
                tx.commit().await.map_err(wrap)?;
                Ok(v)
            }
        }
    }

    /// Closes the pools (the SQLite transport is closed by its owner).
    pub async fn close(&self) {
        if let Writer::Pool(p, _) = &self.writer {
            p.close().await;
        }
        self.read.close().await;
    }
}

/// Moves the rows of the `inbox` table of an older OrderFlow (before it used the framework's
/// `tidings_inbox`) into `tidings_inbox` and drops it, in one transaction: a message handled
/// before the upgrade stays a duplicate after it.
async fn migrate_inbox(pool: &SqlitePool) -> anyhow::Result<()> {
    let old: Option<i64> =
        sqlx::query_scalar("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'inbox'")
            .fetch_optional(pool)
            .await?;
    if old.is_none() {
        return Ok(());
    }
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    let moved = sqlx::query(
        "INSERT OR IGNORE INTO tidings_inbox (endpoint, message_id, processed_at) \
         SELECT consumer, message_id, handled_at FROM inbox",
    )
    .execute(&mut *tx)
    .await?
    .rows_affected();
    sqlx::query("DROP TABLE inbox").execute(&mut *tx).await?;
    tx.commit().await?;
    tracing::info!(
        moved,
        "migrated OrderFlow's old inbox table into tidings_inbox"
    );
    Ok(())
}

/// The error of a closure run by the transport's writer, or of the writer itself.
enum Failed<E> {
    User(E),
    Writer(SqliteError),
}

impl<E> From<SqliteError> for Failed<E> {
    fn from(e: SqliteError) -> Self {
        Failed::Writer(e)
    }
}

/// A database error as a handler error: busy/locked are transient, the rest permanent.
pub fn db_err(e: sqlx::Error) -> HandlerError {
    let transient = match &e {
        sqlx::Error::Database(d) => {
            let m = d.message();
            m.contains("locked") || m.contains("busy")
        }
        sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed => true,
        _ => false,
    };
    if transient {
        HandlerError::transient(format!("database: {e}"))
    } else {
        HandlerError::permanent(format!("database: {e}"))
    }
}
