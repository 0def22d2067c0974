//! [`PostgresTransport`]: connecting (pool, schema, LISTEN task, send and settlement
//! writers, table maintenance when autovacuum is off) and the [`Transport`] implementation.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::PgPoolOptions;
use sqlx::{PgConnection, PgPool, Row};
use tidings_core::transport::{
    check_sizes, error_queue_name, DeadLetter, DeadLetterQuery, Outgoing, QueueStats,
    ReceiveOptions, Receiver, Topology, Transport,
};
use tidings_core::{Error, Result};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::config::PostgresConfig;
use crate::error::PgError;
use crate::receiver::PgReceiver;
use crate::schema::Sql;
use crate::send_writer::{run_send_writer, SendJob};
use crate::settle::{run_writer, Op, OpKind};
use crate::wake::{listen, Wake};

/// State shared by the transport, its receivers and settlement handles.
pub(crate) struct Shared {
    pub(crate) pool: PgPool,
    pub(crate) sql: Arc<Sql>,
    pub(crate) config: PostgresConfig,
    pub(crate) wake: Arc<Wake>,
    pub(crate) writer: mpsc::UnboundedSender<Op>,
    /// The group-commit writer of [`Transport::send`].
    sends: mpsc::UnboundedSender<SendJob>,
    closed: AtomicBool,
    /// Queues known to exist, with their `ordered` flag.
    known: RwLock<HashMap<String, bool>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        let tasks = self.tasks.get_mut().unwrap_or_else(|e| e.into_inner());
        for t in tasks.drain(..) {
            t.abort();
        }
    }
}

impl Shared {
    pub(crate) fn check_open(&self) -> Result<()> {
        if self.is_closed() {
            Err(Error::Shutdown)
        } else {
            Ok(())
        }
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    fn known(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, bool>> {
        self.known.read().unwrap_or_else(|e| e.into_inner())
    }

    fn remember(&self, name: &str, ordered: bool) {
        let mut k = self.known.write().unwrap_or_else(|e| e.into_inner());
        let e = k.entry(name.to_string()).or_insert(false);
        *e |= ordered;
    }

    /// Forgets a deleted queue and its error queue.
    fn forget(&self, name: &str) {
        let mut k = self.known.write().unwrap_or_else(|e| e.into_inner());
        k.remove(name);
        k.remove(&error_queue_name(name));
    }

    /// Fails with [`Error::UnknownQueue`] unless every queue in `names` is declared.
    pub(crate) async fn ensure_queues(
        &self,
        conn: &mut PgConnection,
        names: &[String],
    ) -> Result<()> {
        let missing: Vec<String> = {
            let k = self.known();
            names
                .iter()
                .filter(|n| !k.contains_key(*n))
                .cloned()
                .collect()
        };
        if missing.is_empty() {
            return Ok(());
        }
        let rows = sqlx::query(self.sql.queues.sql())
            .bind(&missing)
            .fetch_all(conn)
            .await
            .map_err(PgError::db("look up queues"))?;
        for r in &rows {
            let col = || PgError::db("look up queues");
            self.remember(
                r.try_get::<&str, _>(0).map_err(col())?,
                r.try_get(1).map_err(col())?,
            );
        }
        let k = self.known();
        match missing.into_iter().find(|n| !k.contains_key(n)) {
            Some(n) => Err(Error::UnknownQueue(n)),
            None => Ok(()),
        }
    }

    /// Like [`Shared::ensure_queues`] on a pooled connection, retrying transient errors;
    /// no connection at all when every queue is already known.
    async fn ensure_known(&self, names: &[String]) -> Result<()> {
        if names.iter().all(|n| self.known().contains_key(n)) {
            return Ok(());
        }
        let mut delay = Duration::from_millis(20);
        let mut attempt = 1;
        loop {
            self.check_open()?;
            let res = async {
                let mut conn = self.pool.acquire().await.map_err(PgError::db("acquire"))?;
                self.ensure_queues(&mut conn, names).await
            }
            .await;
            match res {
                Err(e) if attempt < 5 && crate::send::retryable(&e) => {
                    tracing::debug!(attempt, error = %e, "tidings-postgres: retrying queue lookup");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 3).min(Duration::from_secs(1));
                    attempt += 1;
                }
                res => return res,
            }
        }
    }

    /// Whether `queue` was declared ordered (fails if it is unknown).
    pub(crate) async fn queue_ordered(&self, queue: &str) -> Result<bool> {
        let mut conn = self.pool.acquire().await.map_err(PgError::db("acquire"))?;
        self.ensure_queues(&mut conn, &[queue.to_string()]).await?;
        Ok(self.known().get(queue).copied().unwrap_or(false))
    }
}

/// The PostgreSQL transport. Cheap to clone; clones share one pool.
#[derive(Clone)]
pub struct PostgresTransport {
    pub(crate) shared: Arc<Shared>,
}

impl std::fmt::Debug for PostgresTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresTransport")
            .field("config", &self.shared.config)
            .finish_non_exhaustive()
    }
}

impl PostgresTransport {
    /// Connects, creates the schema and tables if missing, and starts the LISTEN task
    /// and the send and settlement writers.
    pub async fn connect(config: PostgresConfig) -> std::result::Result<Self, PgError> {
        config.validate()?;
        let pool = PgPoolOptions::new()
            .max_connections(config.max_connections)
            .acquire_timeout(config.acquire_timeout)
            .connect_with(config.connect_options()?)
            .await
            .map_err(PgError::db("connect"))?;
        let sql = Arc::new(Sql::new(&config.schema));
        crate::migrate::migrate(&pool, &config.schema).await?;
        let wake = Arc::new(Wake::default());
        let (writer, rx) = mpsc::unbounded_channel();
        let (sends, send_rx) = mpsc::unbounded_channel();
        let tasks = vec![
            tokio::spawn(run_send_writer(pool.clone(), sql.clone(), send_rx)),
            tokio::spawn(run_writer(pool.clone(), sql.clone(), wake.clone(), rx)),
            tokio::spawn(listen(pool.clone(), sql.channel.clone(), wake.clone())),
            tokio::spawn(crate::maintain::run_maintenance(
                pool.clone(),
                config.schema.clone(),
                config.maintenance_interval,
            )),
        ];
        Ok(PostgresTransport {
            shared: Arc::new(Shared {
                pool,
                sql,
                config,
                wake,
                writer,
                sends,
                closed: AtomicBool::new(false),
                known: RwLock::new(HashMap::new()),
                tasks: Mutex::new(tasks),
            }),
        })
    }

    /// Connects with a URL (see [`PostgresConfig::from_url`]).
    pub async fn connect_url(url: &str) -> std::result::Result<Self, PgError> {
        Self::connect(PostgresConfig::from_url(url)?).await
    }

    /// The connection pool (for business transactions, the outbox and the stores).
    pub fn pool(&self) -> &PgPool {
        &self.shared.pool
    }

    /// The configuration.
    pub fn config(&self) -> &PostgresConfig {
        &self.shared.config
    }
}

#[async_trait]
impl Transport for PostgresTransport {
    fn name(&self) -> &'static str {
        "postgres"
    }

    fn max_message_size(&self) -> usize {
        self.shared.config.max_message_size
    }

    async fn declare(&self, topology: &Topology) -> Result<()> {
        let s = &self.shared;
        s.check_open()?;
        let mut tx = s.pool.begin().await.map_err(PgError::db("declare"))?;
        for q in &topology.queues {
            for (name, is_error) in [(q.name.clone(), false), (error_queue_name(&q.name), true)] {
                sqlx::query(s.sql.declare_queue.sql())
                    .bind(&name)
                    .bind(q.ordered && !is_error)
                    .bind(q.temporary)
                    .bind(is_error)
                    .execute(&mut *tx)
                    .await
                    .map_err(PgError::db("declare"))?;
            }
            for t in &q.subscriptions {
                sqlx::query(s.sql.declare_subscription.sql())
                    .bind(t)
                    .bind(&q.name)
                    .execute(&mut *tx)
                    .await
                    .map_err(PgError::db("declare"))?;
            }
        }
        tx.commit().await.map_err(PgError::db("declare"))?;
        for q in &topology.queues {
            s.remember(&q.name, q.ordered);
            s.remember(&error_queue_name(&q.name), false);
        }
        Ok(())
    }

    async fn send(&self, messages: Vec<Outgoing>) -> Result<()> {
        let s = &self.shared;
        s.check_open()?;
        if messages.is_empty() {
            return Ok(());
        }
        check_sizes(&messages, s.config.max_message_size)?;
        let queues = crate::send::queues(&messages);
        s.ensure_known(&queues).await?;
        let columns = crate::send::columns(&messages)?;
        drop(messages);
        let (done, answer) = oneshot::channel();
        s.sends
            .send(SendJob { columns, done })
            .map_err(|_| Error::Shutdown)?;
        answer.await.map_err(|_| Error::Shutdown)??;
        for q in &queues {
            s.wake.notify(q);
        }
        Ok(())
    }

    async fn receive(&self, queue: &str, options: ReceiveOptions) -> Result<Box<dyn Receiver>> {
        self.shared.check_open()?;
        let ordered = self.shared.queue_ordered(queue).await? || options.ordered;
        Ok(Box::new(PgReceiver::new(
            self.shared.clone(),
            queue,
            options,
            ordered,
        )))
    }

    async fn stats(&self) -> Result<Vec<QueueStats>> {
        self.shared.check_open()?;
        crate::admin::stats(&self.shared).await
    }

    async fn dead_letters(&self, query: &DeadLetterQuery) -> Result<Vec<DeadLetter>> {
        self.shared.check_open()?;
        crate::admin::dead_letters(&self.shared, query).await
    }

    async fn replay(&self, query: &DeadLetterQuery, to: Option<&str>) -> Result<u64> {
        self.shared.check_open()?;
        crate::admin::replay(&self.shared, query, to).await
    }

    async fn purge(&self, query: &DeadLetterQuery) -> Result<u64> {
        self.shared.check_open()?;
        crate::admin::purge(&self.shared, query).await
    }

    /// Another process that already sent to the queue keeps it in its cache of known
    /// queues: its later sends still insert rows (for no one) until it restarts.
    async fn delete_queue(&self, queue: &str) -> Result<()> {
        self.shared.check_open()?;
        self.shared.forget(queue);
        crate::admin::delete_queue(&self.shared, queue).await?;
        // Forget again: a send racing with the delete may have looked the queue up.
        self.shared.forget(queue);
        self.shared.wake.notify(queue);
        Ok(())
    }

    async fn close(&self) -> Result<()> {
        let s = &self.shared;
        if s.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        // Let queued settlements (releases of prefetched deliveries) reach the database.
        let (tx, rx) = oneshot::channel();
        let flush = Op {
            kind: OpKind::Flush,
            queue: Arc::from(""),
            seq: 0,
            claim: uuid::Uuid::nil(),
            ordered: false,
            done: Some(tx),
        };
        if s.writer.send(flush).is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(5), rx).await;
        }
        s.wake.notify_all();
        s.pool.close().await;
        Ok(())
    }
}
