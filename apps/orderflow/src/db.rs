//! The business database (SQLite, one file in the data dir): pools, schema, and the
//! transactional unit of work ([`Work`]) every service handler uses — inbox row, business
//! writes and outgoing messages (outbox rows) commit in one transaction.

use std::path::Path;
use std::str::FromStr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Sqlite, SqlitePool, Transaction};
use tidings_core::transport::{Destination, Outgoing};
use tidings_core::{ConsumeContext, HandlerError, Message, Producer, SendOptions};
use tokio::sync::Notify;

/// Pools on the business database.
#[derive(Clone, Debug)]
pub struct Db {
    /// One connection: SQLite has one writer; queuing writers here beats busy retries.
    pub write: SqlitePool,
    /// Readers (WAL lets them run beside the writer).
    pub read: SqlitePool,
    /// Wakes the outbox relay after a commit.
    pub outbox_ready: Arc<Notify>,
    /// On the SQLite transport: its outbox, so outgoing messages are enqueued in the
    /// business transaction itself (no relay hop). Set once the bus has started.
    pub sqlite_outbox: Arc<OnceLock<tidings_sqlite::Outbox>>,
}

const SCHEMA: &str = include_str!("schema.sql");

impl Db {
    /// Opens (creating if needed) `path` and applies the schema.
    /// `fsync`: every commit reaches the disk (`synchronous=FULL`); otherwise commits
    /// survive a process crash but not a power loss (`synchronous=NORMAL`).
    pub async fn open(path: &Path, fsync: bool) -> anyhow::Result<Db> {
        let url = format!("sqlite://{}", path.display());
        let opts = SqliteConnectOptions::from_str(&url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(if fsync {
                SqliteSynchronous::Full
            } else {
                SqliteSynchronous::Normal
            })
            .busy_timeout(Duration::from_secs(30))
            .foreign_keys(true);
        let write = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(120))
            .connect_with(opts.clone())
            .await?;
        sqlx::raw_sql(SCHEMA).execute(&write).await?;
        let read = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(opts)
            .await?;
        Ok(Db {
            write,
            read,
            outbox_ready: Arc::new(Notify::new()),
            sqlite_outbox: Arc::new(OnceLock::new()),
        })
    }

    /// Pools that connect on first use to a private in-memory database (for building
    /// endpoints without running them, e.g. `orderflow topology`).
    pub fn lazy() -> anyhow::Result<Db> {
        let opts = SqliteConnectOptions::from_str("sqlite::memory:")?;
        Ok(Db {
            write: SqlitePoolOptions::new()
                .max_connections(1)
                .connect_lazy_with(opts.clone()),
            read: SqlitePoolOptions::new()
                .max_connections(1)
                .connect_lazy_with(opts),
            outbox_ready: Arc::new(Notify::new()),
            sqlite_outbox: Arc::new(OnceLock::new()),
        })
    }

    /// Closes both pools.
    pub async fn close(&self) {
        self.write.close().await;
        self.read.close().await;
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

/// One transaction: inbox row (for handlers), business writes, outgoing messages.
///
/// Outgoing messages are written to the `outbox` table in the same transaction and shipped
/// to the transport by the relay after commit, so a rollback sends nothing and a commit
/// never loses a message.
pub struct Work {
    tx: Transaction<'static, Sqlite>,
    producer: Producer,
    opts: SendOptions,
    outgoing: Vec<Outgoing>,
    notify: Arc<Notify>,
    sqlite: Arc<OnceLock<tidings_sqlite::Outbox>>,
}

impl std::fmt::Debug for Work {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Work")
            .field("outgoing", &self.outgoing.len())
            .finish_non_exhaustive()
    }
}

impl Work {
    /// Starts a handler's transaction. `None` when the inbox already holds this message for
    /// this endpoint: a duplicate delivery, to be acked without effect.
    pub async fn for_message(db: &Db, ctx: &ConsumeContext) -> Result<Option<Work>, HandlerError> {
        let mut tx = db
            .write
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(db_err)?;
        let inserted = sqlx::query(
            "INSERT INTO inbox (message_id, consumer, handled_at) VALUES (?, ?, ?) \
             ON CONFLICT DO NOTHING",
        )
        .bind(ctx.message_id().to_string())
        .bind(ctx.endpoint())
        .bind(chrono::Utc::now().timestamp_millis())
        .execute(&mut *tx)
        .await
        .map_err(db_err)?
        .rows_affected();
        if inserted == 0 {
            tracing::debug!(message_id = %ctx.message_id(), "duplicate skipped by the inbox");
            tx.rollback().await.map_err(db_err)?;
            return Ok(None);
        }
        Ok(Some(Work {
            tx,
            producer: ctx.producer().clone(),
            opts: ctx.follow_up(),
            outgoing: Vec::new(),
            notify: db.outbox_ready.clone(),
            sqlite: db.sqlite_outbox.clone(),
        }))
    }

    /// Starts an application transaction (no inbox), sending with `opts`.
    pub async fn begin(
        db: &Db,
        producer: Producer,
        opts: SendOptions,
    ) -> Result<Work, sqlx::Error> {
        Ok(Work {
            tx: db.write.begin_with("BEGIN IMMEDIATE").await?,
            producer,
            opts,
            outgoing: Vec::new(),
            notify: db.outbox_ready.clone(),
            sqlite: db.sqlite_outbox.clone(),
        })
    }

    /// The transaction, for business writes: `.execute(work.conn())`.
    pub fn conn(&mut self) -> &mut sqlx::SqliteConnection {
        &mut self.tx
    }

    /// Publishes (event) or sends (command) `msg` when the transaction commits.
    pub fn emit<M: Message>(&mut self, msg: &M) -> Result<(), HandlerError> {
        let out = self.producer.outgoing(msg, self.opts.clone())?;
        self.outgoing.push(out);
        Ok(())
    }

    /// Like [`Work::emit`], delivered after `delay`.
    pub fn emit_delayed<M: Message>(
        &mut self,
        msg: &M,
        delay: Duration,
    ) -> Result<(), HandlerError> {
        // Outside the partition's order: on an ordered queue a scheduled message with a
        // key would hold back the key's later messages until it is due.
        let mut opts = self.opts.clone().delay(delay);
        opts.partition_key = None;
        let out = self.producer.outgoing(msg, opts)?;
        self.outgoing.push(out);
        Ok(())
    }

    /// Writes the outbox rows and commits.
    pub async fn commit(mut self) -> Result<(), HandlerError> {
        if let Some(outbox) = self.sqlite.get() {
            let out = std::mem::take(&mut self.outgoing);
            let any = !out.is_empty();
            if any {
                outbox
                    .enqueue(&mut self.tx, out)
                    .await
                    .map_err(HandlerError::from)?;
            }
            self.tx.commit().await.map_err(db_err)?;
            if any {
                outbox.notify();
            }
            return Ok(());
        }
        for out in &self.outgoing {
            let queue = match &out.destination {
                Destination::Queue(q) => Some(q.as_str()),
                Destination::Topic => None,
            };
            let env = out.envelope.to_json()?;
            sqlx::query("INSERT INTO outbox (destination, envelope) VALUES (?, ?)")
                .bind(queue)
                .bind(env)
                .execute(&mut *self.tx)
                .await
                .map_err(db_err)?;
        }
        self.tx.commit().await.map_err(db_err)?;
        if !self.outgoing.is_empty() {
            self.notify.notify_one();
        }
        Ok(())
    }
}
