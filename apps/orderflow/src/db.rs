//! The business database: where its writes go, the read side, the schema, and
//! [`Db::write`] — the one door every write goes through. Statements are written once and
//! run on SQLite or PostgreSQL ([`crate::sql`]).
//!
//! - On the SQLite transport ([`Db::on_transport`]) the business tables live in the
//!   transport's own database file, and every write is a [`SqliteTransport::write`] job:
//!   it runs on the transport's single writer, inside its group commit, next to the
//!   sends, claims and acks. Outgoing messages are enqueued in the same transaction.
//! - On the PostgreSQL transport ([`Db::on_pg_transport`]) the business tables live in
//!   the same database, one schema per service (`<schema>_inventory`, ..., see
//!   [`crate::pg`]); a write is a transaction on the transport's pool, and outgoing
//!   messages are inserted into its queue table in that transaction
//!   ([`tidings_postgres::Outbox`]): the outbox *is* the enqueue, no relay.
//! - On a broker (RabbitMQ, NATS) the business tables are in a SQLite file ([`Db::open`])
//!   or in PostgreSQL ([`Db::open_pg`]), and outgoing messages go to the library's outbox
//!   table that a [`Relay`](tidings_core::outbox::Relay) ships to the broker after commit.
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
use sqlx::{PgPool, SqlitePool};
use tidings_core::outbox::OutboxStore;
use tidings_core::{HandlerError, Producer};
use tidings_sqlite::{OutboxTable, SqliteError, SqliteTransport};

use crate::sql::{PgNames, Reader, Tx};
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
    /// PostgreSQL: transactions on a pool, tables in per-service schemas.
    Pg(PgPool, Arc<PgNames>, PgSink),
}

/// Where a PostgreSQL unit of work records its inbox row and outgoing messages.
#[derive(Clone, Debug)]
pub(crate) enum PgSink {
    /// The PostgreSQL transport: its inbox table and its queue (the insert is the send).
    Transport(tidings_postgres::Outbox, tidings_postgres::Inbox),
    /// A broker: an inbox table and the relay's outbox table in the base schema.
    Relay(tidings_postgres::OutboxTable),
}

/// The business database.
#[derive(Clone, Debug)]
pub struct Db {
    writer: Writer,
    /// The read side (WAL readers on SQLite; the pool on PostgreSQL).
    pub read: Reader,
}

const SCHEMA: &str = include_str!("schema.sql");

/// A write that did not commit.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The SQLite transport's writer failed (its group commit, or it is closed).
    #[error(transparent)]
    Transport(#[from] SqliteError),
    /// A statement, `BEGIN` or `COMMIT` failed.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
}

impl From<WriteError> for HandlerError {
    fn from(e: WriteError) -> Self {
        match e {
            WriteError::Transport(e) => HandlerError::from(e),
            WriteError::Database(e) => HandlerError::from(e),
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

async fn read_pool(opts: SqliteConnectOptions) -> anyhow::Result<Reader> {
    Ok(Reader::Sqlite(
        SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(opts)
            .await?,
    ))
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

    /// The business tables in the PostgreSQL database of `transport`, one schema per
    /// service named after the transport's schema; applies the schema. Writes are
    /// transactions on the transport's pool that enqueue their messages themselves.
    pub async fn on_pg_transport(
        transport: &tidings_postgres::PostgresTransport,
    ) -> anyhow::Result<Db> {
        let names = Arc::new(PgNames::new(&transport.config().schema));
        let pool = transport.pool().clone();
        crate::pg::apply_schema(&pool, &names).await?;
        let producer = Producer::new(Arc::new(transport.clone()), HashMap::new(), None);
        let sink = PgSink::Transport(
            tidings_postgres::Outbox::new(transport, producer),
            tidings_postgres::Inbox::new(transport, tidings_postgres::inbox::DEFAULT_WINDOW),
        );
        Ok(Db {
            writer: Writer::Pg(pool.clone(), names.clone(), sink),
            read: Reader::Pg(pool, names),
        })
    }

    /// The business tables in the PostgreSQL database `url` names (for a broker
    /// transport): schemas `<schema>_<service>` (`schema=` in the URL, default
    /// `orderflow`), and in `<schema>` the inbox and the outbox table a relay ships.
    pub async fn open_pg(url: &str) -> anyhow::Result<Db> {
        let (pool, names) = crate::pg::connect(url).await?;
        crate::pg::apply_schema(&pool, &names).await?;
        let outbox = tidings_postgres::OutboxTable::open(pool.clone()).await?;
        Ok(Db {
            writer: Writer::Pg(pool.clone(), names.clone(), PgSink::Relay(outbox)),
            read: Reader::Pg(pool, names),
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
            read: Reader::Sqlite(
                SqlitePoolOptions::new()
                    .max_connections(1)
                    .connect_lazy_with(opts),
            ),
        })
    }

    /// On the SQLite transport: its outbox, which enqueues messages in business
    /// transactions (no outbox table, no relay). `None` elsewhere.
    pub fn sqlite_outbox(&self) -> Option<&tidings_sqlite::Outbox> {
        match &self.writer {
            Writer::Transport(_, outbox) => Some(outbox),
            _ => None,
        }
    }

    /// The SQLite outbox table the relay ships (`None` elsewhere).
    pub fn relay_outbox(&self) -> Option<&OutboxTable> {
        match &self.writer {
            Writer::Pool(_, outbox) => Some(outbox),
            _ => None,
        }
    }

    pub(crate) fn pg_sink(&self) -> Option<(&Arc<PgNames>, &PgSink)> {
        match &self.writer {
            Writer::Pg(_, names, sink) => Some((names, sink)),
            _ => None,
        }
    }

    /// The outbox table a relay must ship to the broker, on either database (`None` when
    /// the transport's own database holds the business tables: no relay).
    pub fn relay_store(&self) -> Option<Arc<dyn OutboxStore>> {
        match &self.writer {
            Writer::Pool(_, outbox) => Some(Arc::new(outbox.clone())),
            Writer::Pg(_, _, PgSink::Relay(outbox)) => Some(Arc::new(outbox.clone())),
            _ => None,
        }
    }

    /// Messages written to the relay's outbox table and not shipped yet (0 without one).
    pub async fn relay_pending(&self) -> anyhow::Result<u64> {
        Ok(match self.relay_store() {
            Some(store) => store.pending().await?,
            None => 0,
        })
    }

    /// Whether the business tables are in PostgreSQL.
    pub fn is_pg(&self) -> bool {
        matches!(self.writer, Writer::Pg(..))
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
        F: for<'t, 'c> FnOnce(&'t mut Tx<'c>) -> BoxFuture<'t, Result<T, E>> + Send + 'static,
    {
        match &self.writer {
            Writer::Transport(t, _) => t
                .write(move |conn: &mut SqliteConnection| {
                    Box::pin(async move {
                        let mut tx = Tx::Sqlite(conn);
                        f(&mut tx).await.map_err(Failed::User)
                    })
                })
                .await
                .map_err(|e| match e {
                    Failed::User(e) => e,
                    Failed::Writer(e) => E::from(WriteError::Transport(e)),
                }),
            Writer::Pool(pool, _) => {
                let wrap = |e: sqlx::Error| E::from(WriteError::Database(e));
                let mut tx = pool.begin_with("BEGIN IMMEDIATE").await.map_err(wrap)?;
                let v = f(&mut Tx::Sqlite(&mut tx)).await?;
                tx.commit().await.map_err(wrap)?;
                Ok(v)
            }
            Writer::Pg(pool, names, _) => {
                let wrap = |e: sqlx::Error| E::from(WriteError::Database(e));
                let mut tx = pool.begin().await.map_err(wrap)?;
                let v = f(&mut Tx::Pg(&mut tx, names.clone())).await?;
                tx.commit().await.map_err(wrap)?;
                Ok(v)
            }
        }
    }

    /// Closes the pools (a transport's pool is closed by its owner).
    pub async fn close(&self) {
        match &self.writer {
            Writer::Pool(p, _) => p.close().await,
            Writer::Pg(p, _, PgSink::Relay(_)) => p.close().await,
            _ => {}
        }
        if let Some(p) = self.read.sqlite() {
            p.close().await;
        }
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
