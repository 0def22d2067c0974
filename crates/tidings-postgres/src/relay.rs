//! [`OutboxTable`]: an outbox table in a service's own PostgreSQL database, for services
//! whose transport is another broker (RabbitMQ, NATS). Messages are inserted in the
//! service's business transaction; a [`Relay`](tidings_core::outbox::Relay) ships them,
//! waits for the broker's confirm, then deletes them.
//!
//! A relay's lease is a connection of its own (taken out of the pool) holding the session
//! lock `pg_try_advisory_lock` on the table: one relay ships at a time (rows leave in id
//! order, never twice at once), and a relay that dies drops that connection, which frees
//! the lock for the next one. Marking a batch sent is one `DELETE` on that connection.
//! Enqueues `NOTIFY` the relays on commit.
//!
//! (On the PostgreSQL *transport* no relay is needed: use [`Outbox`](crate::Outbox),
//! whose insert is the enqueue.)

use std::sync::{Arc, Weak};
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgConnection, PgListener, PgPool};
use sqlx::{Connection, Postgres, Row, Transaction};
use tidings_core::outbox::{OutboxLease, OutboxRow, OutboxStore};
use tidings_core::transport::Outgoing;
use tidings_core::{Command, Event, Message, Producer, Result, SendOptions};
use tokio::sync::Notify;
use uuid::Uuid;

use crate::error::PgError;

const TABLE: &str = "tidings_relay_outbox";

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS tidings_relay_outbox (
    id BIGSERIAL PRIMARY KEY,
    destination TEXT,
    envelope BYTEA NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
)";

/// An outbox table in an application's PostgreSQL database (see the module docs).
#[derive(Clone)]
pub struct OutboxTable {
    pool: PgPool,
    producer: Option<Producer>,
    changed: Arc<Notify>,
}

impl std::fmt::Debug for OutboxTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboxTable").finish_non_exhaustive()
    }
}

impl OutboxTable {
    /// Creates the table if needed (in the connection's `search_path` schema) and listens
    /// for enqueue notifications. Give it a producer ([`OutboxTable::producer`]) to use
    /// `publish`/`send`/`dispatch`; [`OutboxTable::enqueue`] takes built messages.
    pub async fn open(pool: PgPool) -> Result<Self> {
        let mut tx = pool.begin().await.map_err(PgError::db("relay outbox"))?;
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext('tidings_relay_outbox_schema'))")
            .execute(&mut *tx)
            .await
            .map_err(PgError::db("relay outbox"))?;
        sqlx::query(SCHEMA)
            .execute(&mut *tx)
            .await
            .map_err(PgError::db("relay outbox"))?;
        tx.commit().await.map_err(PgError::db("relay outbox"))?;
        let changed = Arc::new(Notify::new());
        tokio::spawn(listen(pool.clone(), Arc::downgrade(&changed)));
        Ok(OutboxTable {
            pool,
            producer: None,
            changed,
        })
    }

    /// The producer that builds envelopes for `publish`/`send`/`dispatch` exactly as the
    /// bus does (routes, source endpoint): `bus.producer().clone()`.
    pub fn producer(mut self, producer: Producer) -> Self {
        self.producer = Some(producer);
        self
    }

    /// Publishes `event` when `tx` commits.
    pub async fn publish<E: Event>(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        event: &E,
    ) -> Result<Uuid> {
        self.dispatch(tx, event, SendOptions::default()).await
    }

    /// Sends `cmd` to its endpoint when `tx` commits.
    pub async fn send<C: Command>(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        cmd: &C,
    ) -> Result<Uuid> {
        self.dispatch(tx, cmd, SendOptions::default()).await
    }

    /// Sends (command) or publishes (event) with options, when `tx` commits.
    pub async fn dispatch<M: Message>(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        msg: &M,
        opts: SendOptions,
    ) -> Result<Uuid> {
        let out = tidings_core::outbox::outgoing(self.producer.as_ref(), msg, opts)?;
        let id = out.envelope.id;
        self.enqueue(tx, &[out]).await?;
        Ok(id)
    }

    /// Inserts already-built messages in `tx`; relays are notified when it commits.
    pub async fn enqueue(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        messages: &[Outgoing],
    ) -> Result<()> {
        let mut destinations = Vec::with_capacity(messages.len());
        let mut envelopes = Vec::with_capacity(messages.len());
        for m in messages {
            let (d, e) = OutboxRow::encode(m)?;
            destinations.push(d.map(str::to_string));
            envelopes.push(e);
        }
        sqlx::query(
            "INSERT INTO tidings_relay_outbox (destination, envelope)
             SELECT d, e FROM UNNEST($1::text[], $2::bytea[]) WITH ORDINALITY AS t(d, e, n) ORDER BY n",
        )
        .bind(destinations)
        .bind(envelopes)
        .execute(&mut **tx)
        .await
        .map_err(PgError::db("relay outbox"))?;
        sqlx::query("SELECT pg_notify($1, '')")
            .bind(TABLE)
            .execute(&mut **tx)
            .await
            .map_err(PgError::db("relay outbox"))?;
        Ok(())
    }
}

/// Wakes the relay on `NOTIFY tidings_relay_outbox` until the table is dropped.
async fn listen(pool: PgPool, changed: Weak<Notify>) {
    while changed.strong_count() > 0 {
        let mut listener = match PgListener::connect_with(&pool).await {
            Ok(l) => l,
            Err(_) => {
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if listener.listen(TABLE).await.is_err() {
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        loop {
            let got = tokio::time::timeout(Duration::from_secs(5), listener.recv()).await;
            let Some(notify) = changed.upgrade() else {
                return;
            };
            match got {
                Ok(Ok(_)) => notify.notify_one(),
                Ok(Err(_)) => break, // reconnect
                Err(_) => {}         // timeout: check the table is still alive
            }
        }
    }
}

/// The advisory lock key of the table (session level, held by a lease's connection).
const LOCK: &str = "SELECT pg_try_advisory_lock(hashtext('tidings_relay_outbox'))";

/// A relay's hold on the table: a connection of its own, out of the pool, holding the
/// session advisory lock. Dropped, the connection closes and the server frees the lock.
struct Lease {
    conn: PgConnection,
}

#[async_trait]
impl OutboxLease for Lease {
    async fn step(
        &mut self,
        sent: &[i64],
        in_flight: &[i64],
        limit: usize,
    ) -> Result<Vec<OutboxRow>> {
        if !sent.is_empty() {
            sqlx::query("DELETE FROM tidings_relay_outbox WHERE id = ANY($1)")
                .bind(sent)
                .execute(&mut self.conn)
                .await
                .map_err(PgError::db("relay outbox"))?;
        }
        if limit == 0 {
            return Ok(Vec::new());
        }
        // Not "id > the last one in flight": ids are taken at insert, so a transaction
        // committing late can add a row below it.
        let rows = sqlx::query(
            "SELECT id, destination, envelope FROM tidings_relay_outbox
             WHERE id <> ALL($1) ORDER BY id LIMIT $2",
        )
        .bind(in_flight)
        .bind(limit as i64)
        .fetch_all(&mut self.conn)
        .await
        .map_err(PgError::db("relay outbox"))?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let envelope: Vec<u8> = r.try_get("envelope").map_err(PgError::db("relay outbox"))?;
            let id: i64 = r.try_get("id").map_err(PgError::db("relay outbox"))?;
            let dest: Option<String> = r
                .try_get("destination")
                .map_err(PgError::db("relay outbox"))?;
            out.push(OutboxRow::decode(id, dest, &envelope)?);
        }
        Ok(out)
    }

    async fn release(self: Box<Self>) -> Result<()> {
        // Closing the session frees its advisory lock.
        self.conn
            .close()
            .await
            .map_err(PgError::db("relay outbox"))?;
        Ok(())
    }
}

#[async_trait]
impl OutboxStore for OutboxTable {
    async fn lease(&self) -> Result<Option<Box<dyn OutboxLease>>> {
        // An idle relay only reads, and holds no connection of its own.
        let any = sqlx::query("SELECT 1 FROM tidings_relay_outbox LIMIT 1")
            .fetch_optional(&self.pool)
            .await
            .map_err(PgError::db("relay outbox"))?;
        if any.is_none() {
            return Ok(None);
        }
        // Out of the pool: the lock must never go back into it with the connection.
        let mut conn = self
            .pool
            .acquire()
            .await
            .map_err(PgError::db("relay outbox"))?
            .detach();
        let locked: bool = sqlx::query_scalar(LOCK)
            .fetch_one(&mut conn)
            .await
            .map_err(PgError::db("relay outbox"))?;
        if !locked {
            let _ = conn.close().await;
            return Ok(None);
        }
        Ok(Some(Box::new(Lease { conn })))
    }

    async fn pending(&self) -> Result<u64> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM tidings_relay_outbox")
            .fetch_one(&self.pool)
            .await
            .map_err(PgError::db("relay outbox"))?;
        Ok(n as u64)
    }

    async fn changed(&self) {
        self.changed.notified().await
    }
}
