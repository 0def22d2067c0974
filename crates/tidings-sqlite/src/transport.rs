//! [`SqliteTransport`]: the embedded durable transport. One database file; every write of
//! this process goes through one group-committing writer — the application's own
//! transactions too ([`SqliteTransport::write`]); reads use a small pool that the
//! application shares for its own tables (see [`SqliteTransport::pool`]).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use crate::wake::Wake;
use async_trait::async_trait;
use futures::future::BoxFuture;
use sqlx::sqlite::SqliteConnection;
use sqlx::SqlitePool;
use tidings_core::transport::{
    check_sizes, DeadLetter, DeadLetterQuery, Outgoing, QueueStats, ReceiveOptions, Receiver,
    Topology, Transport,
};
use tidings_core::Result as CoreResult;

use crate::admin;
use crate::config::SqliteConfig;
use crate::error::{Result, SqliteError};
use crate::receiver::SqliteReceiver;
use crate::schema::{now_ms, open_pool, open_writer};
use crate::store::Prepared;
use crate::writer::{Op, WriterHandle, WriterStats};

pub(crate) struct Inner {
    pub(crate) config: SqliteConfig,
    pub(crate) pool: SqlitePool,
    pub(crate) writer: WriterHandle,
    pub(crate) wake: Arc<Wake>,
    pub(crate) closed: Arc<AtomicBool>,
}

/// The SQLite transport. Cheap to clone; clones share the writer and the pool.
///
/// ```
/// use tidings_core::transport::Transport;
/// use tidings_sqlite::{Durability, SqliteConfig, SqliteTransport};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> anyhow::Result<()> {
/// let dir = tempfile::tempdir()?;
/// let config = SqliteConfig::new(dir.path().join("app.db")).durability(Durability::Fsync);
/// let transport = SqliteTransport::connect(config).await?;
/// assert_eq!(transport.name(), "sqlite");
/// // Business tables live in the same file: the outbox is one transaction
/// // (`transport.write(|conn| ..)`, see `SqliteTransport::write`).
/// sqlx::query("CREATE TABLE IF NOT EXISTS orders (id TEXT PRIMARY KEY)")
///     .execute(transport.pool())
///     .await?;
/// let tables: i64 = sqlx::query_scalar("SELECT count(*) FROM sqlite_master WHERE name = 'orders'")
///     .fetch_one(transport.pool())
///     .await?;
/// assert_eq!(tables, 1);
/// transport.close().await?;
/// // A missing directory is a clear error, not a panic.
/// assert!(SqliteTransport::open("sqlite:///no/such/dir/app.db").await.is_err());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct SqliteTransport {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for SqliteTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteTransport")
            .field("path", &self.inner.config.path)
            .field("durability", &self.inner.config.durability)
            .finish_non_exhaustive()
    }
}

impl SqliteTransport {
    /// Opens (creating if missing) the database, checks and migrates its schema, and starts
    /// the writer and the inbox sweeper. Fails clearly on a missing directory, a read-only
    /// or corrupt file, or a schema newer than this build.
    pub async fn connect(config: SqliteConfig) -> Result<Self> {
        let wake = Arc::new(Wake::default());
        let conn = open_writer(&config).await?;
        let pool = open_pool(&config, wake.clone()).await?;
        let writer = WriterHandle::spawn(conn, wake.clone(), config.max_batch, config.ack_delay)?;
        let inner = Arc::new(Inner {
            config,
            pool,
            writer,
            wake,
            closed: Arc::new(AtomicBool::new(false)),
        });
        tokio::spawn(sweeper(Arc::downgrade(&inner)));
        Ok(SqliteTransport { inner })
    }

    /// Parses `url` with [`SqliteConfig::from_url`] and connects.
    ///
    /// ```
    /// use tidings_core::transport::{Outgoing, QueueSpec, ReceiveOptions, Topology, Transport};
    /// use tidings_core::Envelope;
    /// use tidings_sqlite::SqliteTransport;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> anyhow::Result<()> {
    /// let dir = tempfile::tempdir()?;
    /// let url = format!("sqlite://{}/app.db?durability=os-buffered", dir.path().display());
    /// let transport = SqliteTransport::open(&url).await?;
    /// let queue = QueueSpec { name: "work".into(), ..QueueSpec::default() };
    /// transport.declare(&Topology { queues: vec![queue] }).await?;
    /// let job = Envelope::new("jobs.resize", 1, &b"{}"[..]);
    /// transport.send(vec![Outgoing::to_queue("work", job.clone())]).await?;
    ///
    /// let mut rx = transport.receive("work", ReceiveOptions::default()).await?;
    /// let delivery = rx.recv().await?.expect("a delivery");
    /// assert_eq!(delivery.envelope.id, job.id);
    /// delivery.ack().await?;
    /// rx.close().await?;
    /// let stats = transport.stats().await?;
    /// assert_eq!(stats.iter().find(|s| s.queue == "work").map(|s| s.ready), Some(0));
    /// transport.close().await?;
    /// # Ok(()) }
    /// ```
    pub async fn open(url: &str) -> Result<Self> {
        Self::connect(SqliteConfig::from_url(url)?).await
    }

    /// The connection pool on the same database file, for reading the application's own
    /// tables (and for schema set-up). Write through [`SqliteTransport::write`]: a
    /// transaction on this pool is a second writer that waits for the group-commit
    /// writer's lock (SQLite's busy handler sleeps) and makes it wait.
    pub fn pool(&self) -> &SqlitePool {
        &self.inner.pool
    }

    /// The configuration it was opened with.
    pub fn config(&self) -> &SqliteConfig {
        &self.inner.config
    }

    /// Runs `f` on the writer's connection inside its next group-commit transaction and
    /// returns `f`'s value once that transaction has committed — the way
    /// `sqlx::Connection::transaction` does, but shared: many callers' closures run one
    /// after the other in ONE transaction with ONE commit (one fsync), next to the sends,
    /// claims and acks of the same batch. This is how a business transaction joins the
    /// transport's single writer instead of fighting it for SQLite's write lock.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), tidings_sqlite::SqliteError> {
    /// # let dir = tempfile::tempdir().expect("a temp dir");
    /// # let transport = tidings_sqlite::SqliteTransport::open(
    /// #     &format!("sqlite://{}/app.db", dir.path().display())).await?;
    /// # sqlx::query("CREATE TABLE orders (id INTEGER PRIMARY KEY, customer TEXT)")
    /// #     .execute(transport.pool()).await?;
    /// use sqlx::sqlite::SqliteConnection;
    /// let id: i64 = transport
    ///     .write(|conn: &mut SqliteConnection| Box::pin(async move {
    ///         sqlx::query("INSERT INTO orders (customer) VALUES ('c-1')").execute(&mut *conn).await?;
    ///         let id = sqlx::query_scalar("SELECT last_insert_rowid()").fetch_one(&mut *conn).await?;
    ///         Ok::<_, tidings_sqlite::SqliteError>(id)
    ///     }))
    ///     .await?;
    /// // Committed: readable from the pool.
    /// let customer: String = sqlx::query_scalar("SELECT customer FROM orders WHERE id = ?")
    ///     .bind(id)
    ///     .fetch_one(transport.pool())
    ///     .await?;
    /// assert_eq!(customer, "c-1");
    /// // A closure's error rolls back its own writes only.
    /// let failed = transport
    ///     .write(|conn: &mut SqliteConnection| Box::pin(async move {
    ///         sqlx::query("INSERT INTO orders (customer) VALUES ('c-2')").execute(&mut *conn).await?;
    ///         Err::<(), _>(tidings_sqlite::SqliteError::Config("changed my mind".into()))
    ///     }))
    ///     .await;
    /// assert!(failed.is_err());
    /// let n: i64 = sqlx::query_scalar("SELECT count(*) FROM orders").fetch_one(transport.pool()).await?;
    /// assert_eq!(n, 1);
    /// # Ok(()) }
    /// ```
    ///
    /// - Atomic: `f` runs inside a `SAVEPOINT`. `Ok` releases it (its writes commit with
    ///   the batch); `Err` or a panic rolls back to it, so only `f`'s own writes are undone
    ///   and the rest of the batch commits. A panic is answered with
    ///   [`SqliteError::Panicked`].
    /// - Messages enqueued by `f` (an [`Outbox`](crate::Outbox) on `conn`) are visible to
    ///   this process's receivers as soon as the batch commits (they are woken then).
    /// - If the batch fails as a whole (disk full, I/O error), every closure of it gets
    ///   [`SqliteError::GroupCommit`] (transient when the cause is) and nothing it wrote
    ///   was committed; `f` is never run twice.
    /// - **Only database work inside `f`**: no network calls, no sleeps, no waiting on
    ///   other tasks. `f` runs on the single writer while it holds SQLite's write lock —
    ///   every other write of the process (sends, claims, acks, other closures) waits for
    ///   it. Call remote services before (and record their answer in a job after).
    /// - Do not `BEGIN`, `COMMIT` or `ROLLBACK` in `f` (nested `SAVEPOINT`s are fine).
    pub async fn write<T, E, F>(&self, f: F) -> std::result::Result<T, E>
    where
        T: Send + 'static,
        E: From<SqliteError> + Send + 'static,
        F: for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, std::result::Result<T, E>>
            + Send
            + 'static,
    {
        self.check_open().map_err(E::from)?;
        self.inner.writer.write(f).await
    }

    /// Wakes this process's idle receivers (they look for new messages at once). Commits on
    /// [`SqliteTransport::pool`] that insert messages do this by themselves.
    pub fn notify(&self) {
        self.inner.wake.wake();
    }

    /// Deletes inbox rows older than the configured retention; returns how many.
    /// Runs periodically in the background; call it to sweep now.
    pub async fn sweep_inbox(&self) -> Result<u64> {
        sweep(&self.inner).await
    }

    /// Group-commit counters of this process's writer.
    pub fn writer_stats(&self) -> WriterStats {
        self.inner.writer.stats()
    }

    fn check_open(&self) -> Result<()> {
        if self.inner.closed.load(Ordering::Acquire) {
            Err(SqliteError::Closed)
        } else {
            Ok(())
        }
    }
}

async fn sweep(inner: &Inner) -> Result<u64> {
    let cutoff = now_ms() - inner.config.inbox_retention.as_millis() as i64;
    inner
        .writer
        .exclusive(move |conn| {
            Box::pin(async move {
                Ok(
                    sqlx::query("DELETE FROM tidings_inbox WHERE processed_at < ?")
                        .bind(cutoff)
                        .execute(conn)
                        .await?
                        .rows_affected(),
                )
            })
        })
        .await
}

async fn sweeper(inner: Weak<Inner>) {
    let every = match inner.upgrade() {
        Some(i) => {
            (i.config.inbox_retention / 8).clamp(Duration::from_secs(1), Duration::from_secs(3600))
        }
        None => return,
    };
    loop {
        tokio::time::sleep(every).await;
        let Some(i) = inner.upgrade() else { return };
        if i.closed.load(Ordering::Acquire) {
            return;
        }
        if let Err(e) = sweep(&i).await {
            tracing::warn!(error = %e, "tidings-sqlite: inbox sweep failed");
        }
    }
}

#[async_trait]
impl Transport for SqliteTransport {
    fn name(&self) -> &'static str {
        "sqlite"
    }

    fn max_message_size(&self) -> usize {
        self.inner.config.max_message_size
    }

    async fn declare(&self, topology: &Topology) -> CoreResult<()> {
        self.check_open()?;
        let topology = topology.clone();
        self.inner
            .writer
            .exclusive(move |conn| Box::pin(async move { admin::declare(conn, &topology).await }))
            .await?;
        Ok(())
    }

    async fn send(&self, messages: Vec<Outgoing>) -> CoreResult<()> {
        self.check_open()?;
        check_sizes(&messages, self.inner.config.max_message_size)?;
        if messages.is_empty() {
            return Ok(());
        }
        let msgs = messages
            .iter()
            .map(Prepared::new)
            .collect::<Result<Vec<_>>>()?;
        self.inner
            .writer
            .call(|reply| Op::Send { msgs, reply })
            .await?;
        Ok(())
    }

    async fn receive(&self, queue: &str, options: ReceiveOptions) -> CoreResult<Box<dyn Receiver>> {
        self.check_open()?;
        let ordered: Option<bool> =
            sqlx::query_scalar("SELECT ordered FROM tidings_queues WHERE name = ?")
                .bind(queue)
                .fetch_optional(&self.inner.pool)
                .await
                .map_err(SqliteError::from)?;
        let Some(ordered) = ordered else {
            return Err(tidings_core::Error::UnknownQueue(queue.to_string()));
        };
        Ok(Box::new(SqliteReceiver {
            writer: self.inner.writer.clone(),
            wake: self.inner.wake.clone(),
            transport_closed: self.inner.closed.clone(),
            poll: self.inner.config.poll_interval,
            queue: queue.to_string(),
            ordered: ordered || options.ordered,
            options,
            buffer: Default::default(),
            outstanding: Arc::new(AtomicUsize::new(0)),
            closed: false,
            pending: None,
            idle: None,
            slot_freed: Default::default(),
            park_id: crate::receiver::next_park_id(),
        }))
    }

    async fn stats(&self) -> CoreResult<Vec<QueueStats>> {
        self.check_open()?;
        Ok(admin::stats(&self.inner.pool).await?)
    }

    async fn dead_letters(&self, query: &DeadLetterQuery) -> CoreResult<Vec<DeadLetter>> {
        self.check_open()?;
        Ok(admin::find(&self.inner.pool, query)
            .await?
            .into_iter()
            .map(|e| e.letter)
            .collect())
    }

    async fn replay(&self, query: &DeadLetterQuery, to: Option<&str>) -> CoreResult<u64> {
        self.check_open()?;
        let (query, to) = (query.clone(), to.map(str::to_string));
        Ok(self
            .inner
            .writer
            .exclusive(move |conn| {
                Box::pin(async move { admin::replay(conn, &query, to.as_deref()).await })
            })
            .await?)
    }

    async fn purge(&self, query: &DeadLetterQuery) -> CoreResult<u64> {
        self.check_open()?;
        let query = query.clone();
        Ok(self
            .inner
            .writer
            .exclusive(move |conn| Box::pin(async move { admin::purge(conn, &query).await }))
            .await?)
    }

    async fn delete_queue(&self, queue: &str) -> CoreResult<()> {
        self.check_open()?;
        let queue = queue.to_string();
        self.inner
            .writer
            .exclusive(move |conn| Box::pin(async move { admin::delete_queue(conn, &queue).await }))
            .await?;
        // Idle receivers of the queue look again (and find nothing).
        self.inner.wake.wake();
        Ok(())
    }

    async fn close(&self) -> CoreResult<()> {
        if self.inner.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        self.inner.writer.close();
        self.inner.wake.wake();
        self.inner.pool.close().await;
        Ok(())
    }
}
