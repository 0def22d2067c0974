//! [`OutboxTable`]: an outbox table in a service's own SQLite database, for services whose
//! transport is a broker (RabbitMQ, NATS, PostgreSQL). Messages are inserted in the
//! service's business transaction; a [`Relay`](tidings_core::outbox::Relay) ships them to
//! the broker, waits for its confirm, then deletes them.
//!
//! One relay ships at a time: it holds a lease row, renewed with every batch it marks
//! sent, so a second relay on the same file waits until the first one gives the lease up
//! (its outbox ran empty) or the lease expires (it died) — rows leave in commit order,
//! never twice at once.
//!
//! ```no_run
//! # use tidings_core::Message;
//! # #[derive(serde::Serialize, serde::Deserialize, Message)]
//! # #[message(name = "shop.order-placed", version = 1, kind = "event")]
//! # struct OrderPlaced { id: String }
//! # async fn f(pool: sqlx::SqlitePool, bus: tidings_core::Bus) -> anyhow::Result<()> {
//! use std::sync::Arc;
//! use tidings_core::outbox::Relay;
//! let outbox = tidings_sqlite::OutboxTable::open(pool.clone())
//!     .await?
//!     .producer(bus.producer().clone());
//! let mut tx = pool.begin().await?;
//! sqlx::query("INSERT INTO orders (id) VALUES ('o-1')").execute(&mut *tx).await?;
//! outbox.publish(&mut tx, &OrderPlaced { id: "o-1".into() }).await?;
//! tx.commit().await?;
//! outbox.notify(); // wake the relay now instead of at its next poll
//! let stop = tokio_util::sync::CancellationToken::new();
//! tokio::spawn(Relay::new(Arc::new(outbox), bus.transport().clone()).run(stop));
//! # Ok(()) }
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use sqlx::sqlite::{SqliteConnection, SqlitePool, SqliteRow};
use sqlx::Row;
use tidings_core::outbox::{OutboxLease, OutboxRow, OutboxStore};
use tidings_core::transport::Outgoing;
use tidings_core::{Command, Event, Message, Producer, Result, SendOptions};
use tokio::sync::{Mutex, Notify, OwnedMutexGuard};
use uuid::Uuid;

use crate::error::SqliteError;
use crate::schema::now_ms;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS tidings_relay_outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    destination TEXT,
    envelope BLOB NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS tidings_relay_lease (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    owner TEXT NOT NULL,
    expires_at INTEGER NOT NULL
);";

/// An outbox table in an application's SQLite database (see the module docs).
#[derive(Clone)]
pub struct OutboxTable {
    pool: SqlitePool,
    producer: Option<Producer>,
    owner: String,
    lease: Duration,
    claiming: Arc<Mutex<()>>,
    changed: Arc<Notify>,
}

impl std::fmt::Debug for OutboxTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboxTable")
            .field("owner", &self.owner)
            .field("lease", &self.lease)
            .finish_non_exhaustive()
    }
}

impl OutboxTable {
    /// Creates the tables if needed. Give it a producer ([`OutboxTable::producer`]) to use
    /// `publish`/`send`/`dispatch`; [`OutboxTable::enqueue`] takes built messages.
    pub async fn open(pool: SqlitePool) -> Result<Self> {
        sqlx::raw_sql(SCHEMA)
            .execute(&pool)
            .await
            .map_err(SqliteError::from)?;
        Ok(OutboxTable {
            pool,
            producer: None,
            owner: Uuid::now_v7().to_string(),
            lease: Duration::from_secs(30),
            claiming: Arc::default(),
            changed: Arc::default(),
        })
    }

    /// How long a relay's claim keeps other relays away after its last batch (default
    /// 30 s): another relay takes over that long after this one died. Must be longer than
    /// one batch's confirmed send.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// The producer that builds envelopes for `publish`/`send`/`dispatch` exactly as the
    /// bus does (routes, source endpoint): `bus.producer().clone()`.
    pub fn producer(mut self, producer: Producer) -> Self {
        self.producer = Some(producer);
        self
    }

    /// Publishes `event` when `conn`'s transaction commits.
    pub async fn publish<E: Event>(&self, conn: &mut SqliteConnection, event: &E) -> Result<Uuid> {
        self.dispatch(conn, event, SendOptions::default()).await
    }

    /// Sends `cmd` to its endpoint when `conn`'s transaction commits.
    pub async fn send<C: Command>(&self, conn: &mut SqliteConnection, cmd: &C) -> Result<Uuid> {
        self.dispatch(conn, cmd, SendOptions::default()).await
    }

    /// Sends (command) or publishes (event) with options, when `conn`'s transaction commits.
    pub async fn dispatch<M: Message>(
        &self,
        conn: &mut SqliteConnection,
        msg: &M,
        opts: SendOptions,
    ) -> Result<Uuid> {
        let out = tidings_core::outbox::outgoing(self.producer.as_ref(), msg, opts)?;
        let id = out.envelope.id;
        self.enqueue(conn, &[out]).await?;
        Ok(id)
    }

    /// Inserts already-built messages in `conn`'s transaction.
    pub async fn enqueue(&self, conn: &mut SqliteConnection, messages: &[Outgoing]) -> Result<()> {
        let now = now_ms();
        for m in messages {
            let (destination, envelope) = OutboxRow::encode(m)?;
            sqlx::query(
                "INSERT INTO tidings_relay_outbox (destination, envelope, created_at) VALUES (?, ?, ?)",
            )
            .bind(destination)
            .bind(envelope)
            .bind(now)
            .execute(&mut *conn)
            .await
            .map_err(SqliteError::from)?;
        }
        Ok(())
    }

    /// Wakes this process's relay (call after committing; otherwise it finds the rows at
    /// its next poll).
    pub fn notify(&self) {
        self.changed.notify_one();
    }

    async fn take_lease(&self, conn: &mut SqliteConnection) -> Result<bool, SqliteError> {
        let now = now_ms();
        let n = sqlx::query(
            "INSERT INTO tidings_relay_lease (id, owner, expires_at) VALUES (1, ?1, ?2)
             ON CONFLICT(id) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at
             WHERE tidings_relay_lease.owner = ?1 OR tidings_relay_lease.expires_at < ?3",
        )
        .bind(&self.owner)
        .bind(now + self.lease.as_millis() as i64)
        .bind(now)
        .execute(&mut *conn)
        .await?
        .rows_affected();
        Ok(n == 1)
    }

    /// Marks `sent` shipped, renews the lease and reads up to `limit` rows not in
    /// `in_flight`, in one write transaction (one commit per batch). With nothing to mark
    /// and `renew` false it only reads (an idle relay polling its table writes nothing).
    async fn step(
        &self,
        sent: &[i64],
        in_flight: &[i64],
        limit: usize,
        renew: bool,
    ) -> Result<Vec<OutboxRow>, SqliteError> {
        if sent.is_empty() && !renew {
            let rows = self
                .read(in_flight, limit, &mut *self.pool.acquire().await?)
                .await?;
            return decode(rows);
        }
        let mut tx = self.pool.begin().await?;
        if !sent.is_empty() {
            sqlx::query(
                "DELETE FROM tidings_relay_outbox WHERE id IN (SELECT value FROM json_each(?))",
            )
            .bind(serde_json::to_string(sent)?)
            .execute(&mut *tx)
            .await?;
        }
        if !self.take_lease(&mut tx).await? {
            return Err(SqliteError::Config(
                "outbox relay lost its lease (a batch took longer than the lease?): another relay may be shipping; starting over".into(),
            ));
        }
        let rows = self.read(in_flight, limit, &mut tx).await?;
        tx.commit().await?;
        decode(rows)
    }

    /// Up to `limit` of the oldest rows not in `in_flight`.
    async fn read(
        &self,
        in_flight: &[i64],
        limit: usize,
        conn: &mut SqliteConnection,
    ) -> Result<Vec<SqliteRow>, SqliteError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        Ok(sqlx::query(
            "SELECT id, destination, envelope FROM tidings_relay_outbox
             WHERE id NOT IN (SELECT value FROM json_each(?1)) ORDER BY id LIMIT ?2",
        )
        .bind(serde_json::to_string(in_flight)?)
        .bind(limit as i64)
        .fetch_all(conn)
        .await?)
    }
}

fn decode(rows: Vec<SqliteRow>) -> Result<Vec<OutboxRow>, SqliteError> {
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let envelope: Vec<u8> = r.try_get("envelope")?;
        out.push(
            OutboxRow::decode(r.try_get("id")?, r.try_get("destination")?, &envelope)
                .map_err(|e| SqliteError::Config(format!("undecodable outbox row: {e}")))?,
        );
    }
    Ok(out)
}

/// This table's lease, held by one relay (and, within the process, the `claiming` lock).
struct Lease {
    table: OutboxTable,
    /// When the lease row was last renewed.
    renewed: Instant,
    _guard: OwnedMutexGuard<()>,
}

#[async_trait]
impl OutboxLease for Lease {
    async fn step(
        &mut self,
        sent: &[i64],
        in_flight: &[i64],
        limit: usize,
    ) -> Result<Vec<OutboxRow>> {
        // Renewed with every mark, and at least every third of the lease while idle.
        let renew = self.renewed.elapsed() >= self.table.lease / 3;
        let rows = self.table.step(sent, in_flight, limit, renew).await?;
        if renew || !sent.is_empty() {
            self.renewed = Instant::now();
        }
        Ok(rows)
    }

    async fn release(self: Box<Self>) -> Result<()> {
        sqlx::query("UPDATE tidings_relay_lease SET expires_at = 0 WHERE id = 1 AND owner = ?")
            .bind(&self.table.owner)
            .execute(&self.table.pool)
            .await
            .map_err(SqliteError::from)?;
        Ok(())
    }
}

#[async_trait]
impl OutboxStore for OutboxTable {
    async fn lease(&self) -> Result<Option<Box<dyn OutboxLease>>> {
        let guard = self.claiming.clone().lock_owned().await;
        // An idle relay only reads: no write transaction unless there is work.
        let any = sqlx::query("SELECT 1 FROM tidings_relay_outbox LIMIT 1")
            .fetch_optional(&self.pool)
            .await
            .map_err(SqliteError::from)?;
        if any.is_none() {
            return Ok(None);
        }
        let mut tx = self.pool.begin().await.map_err(SqliteError::from)?;
        if !self.take_lease(&mut tx).await? {
            return Ok(None);
        }
        tx.commit().await.map_err(SqliteError::from)?;
        Ok(Some(Box::new(Lease {
            table: self.clone(),
            renewed: Instant::now(),
            _guard: guard,
        })))
    }

    async fn pending(&self) -> Result<u64> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM tidings_relay_outbox")
            .fetch_one(&self.pool)
            .await
            .map_err(SqliteError::from)?;
        Ok(n as u64)
    }

    async fn changed(&self) {
        self.changed.notified().await
    }
}
