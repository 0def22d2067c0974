//! Saga stores on SQLite ([`SqliteSagaStore`]): each saga step — inbox row, state (with
//! optimistic concurrency), outgoing messages — is one transaction.
//!
//! - [`SqliteSagaStore::on_transport`]: on the SQLite transport, the step is a
//!   [`SqliteTransport::write`] job: it joins the writer's group commit, and its messages
//!   are enqueued in the same transaction ([`Outbox`]; no relay).
//! - [`SqliteSagaStore::on_pool`]: for a broker transport (RabbitMQ, NATS ...), the step is
//!   a transaction on the service's own SQLite database, its messages go to the
//!   [`OutboxTable`] that a [`Relay`](tidings_core::outbox::Relay) ships after commit.
//! - [`step_in`]: the step on a connection the caller already holds, for an application
//!   with a unit of work of its own (it writes the inbox row and enqueues the returned
//!   messages itself).
//!
//! Sagas live in `tidings_saga_instances(saga, key, state, data JSON, version, status,
//! created_at, updated_at, completed_at, meta JSON)` (meta: recorded compensations and
//! armed timeouts), created by the store when it opens.

mod table;

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::sqlite::SqliteConnection;
use sqlx::SqlitePool;
use tidings_core::saga::{
    Decide, SagaQueries, SagaQuery, SagaRecord, SagaStore, SagaSummary, StepOutcome,
};
use tidings_core::transport::Outgoing;
use tidings_core::{ConsumeContext, HandlerError, Producer};
use uuid::Uuid;

use crate::error::Result;
use crate::inbox::record_in;
use crate::{Outbox, OutboxTable, SqliteTransport};

/// Where steps commit.
#[derive(Clone, Debug)]
enum Mode {
    Transport(SqliteTransport, Outbox),
    Pool(SqlitePool, OutboxTable),
}

/// Sagas in a SQLite database; see the [module docs](self).
#[derive(Clone, Debug)]
pub struct SqliteSagaStore {
    mode: Mode,
}

/// Runs a step on `conn` (inside the caller's transaction): loads the saga, calls
/// `decide`, applies its write with optimistic concurrency. Returns the messages to
/// enqueue in the same transaction. A conflict is a transient
/// [`Error::Conflict`](tidings_core::Error::Conflict) (roll back; the runner re-runs).
pub async fn step_in(
    conn: &mut SqliteConnection,
    saga: &str,
    key: &str,
    decide: Decide,
) -> std::result::Result<Vec<Outgoing>, HandlerError> {
    let found = table::load(conn, saga, key).await?;
    let decision = decide(found)?;
    table::apply(conn, saga, &decision.write).await??;
    Ok(decision.outgoing)
}

/// Creates the saga table on `conn` (idempotent); for applications that run [`step_in`]
/// on a database of their own.
pub async fn create_table(conn: &mut SqliteConnection) -> Result<()> {
    sqlx::raw_sql(table::DDL).execute(conn).await?;
    Ok(())
}

impl SqliteSagaStore {
    /// Sagas in `transport`'s database, each step a job of its writer.
    pub async fn on_transport(transport: &SqliteTransport) -> Result<Self> {
        transport
            .write(|conn: &mut SqliteConnection| Box::pin(create_table(conn)))
            .await?;
        // The outbox only enqueues messages the steps built with their own producer.
        let producer = Producer::new(Arc::new(transport.clone()), HashMap::new(), None);
        let outbox = Outbox::new(transport, producer);
        Ok(SqliteSagaStore {
            mode: Mode::Transport(transport.clone(), outbox),
        })
    }

    /// Sagas in the database of `pool` (a service's own, for a broker transport); the
    /// steps' messages go to `outbox`, which a relay ships. Use a pool of one connection
    /// (SQLite has one writer).
    pub async fn on_pool(pool: SqlitePool, outbox: OutboxTable) -> Result<Self> {
        let mut conn = pool.acquire().await?;
        create_table(&mut conn).await?;
        Ok(SqliteSagaStore {
            mode: Mode::Pool(pool, outbox),
        })
    }

    fn read_pool(&self) -> &SqlitePool {
        match &self.mode {
            Mode::Transport(t, _) => t.pool(),
            Mode::Pool(p, _) => p,
        }
    }

    /// Deletes instances of `saga` that completed before `before` (those kept by
    /// [`Completion::KeepFor`](tidings_core::saga::Completion::KeepFor)); returns how many.
    pub async fn sweep_completed(&self, saga: &str, before: DateTime<Utc>) -> Result<u64> {
        let saga = saga.to_string();
        match &self.mode {
            Mode::Transport(t, _) => {
                t.write(move |conn: &mut SqliteConnection| {
                    Box::pin(async move { table::sweep(conn, &saga, before).await })
                })
                .await
            }
            Mode::Pool(p, _) => {
                let mut conn = p.acquire().await?;
                table::sweep(&mut conn, &saga, before).await
            }
        }
    }
}

/// The inbox row, the step and the enqueue, on one connection in one transaction.
async fn step_with(
    conn: &mut SqliteConnection,
    inbox: (Uuid, String),
    saga: &str,
    key: &str,
    decide: Decide,
) -> std::result::Result<Option<Vec<Outgoing>>, HandlerError> {
    if !record_in(conn, inbox.0, &inbox.1).await? {
        return Ok(None);
    }
    step_in(conn, saga, key, decide).await.map(Some)
}

#[async_trait]
impl SagaStore for SqliteSagaStore {
    async fn step(
        &self,
        saga: &str,
        key: &str,
        ctx: &ConsumeContext,
        decide: Decide,
    ) -> std::result::Result<StepOutcome, HandlerError> {
        let inbox = (ctx.message_id(), ctx.endpoint().to_string());
        let (saga, key) = (saga.to_string(), key.to_string());
        let applied = match &self.mode {
            Mode::Transport(t, outbox) => {
                let outbox = outbox.clone();
                t.write(move |conn: &mut SqliteConnection| {
                    Box::pin(async move {
                        let Some(out) = step_with(conn, inbox, &saga, &key, decide).await? else {
                            return Ok::<_, HandlerError>(false);
                        };
                        outbox.enqueue(conn, out).await?;
                        Ok(true)
                    })
                })
                .await?
            }
            Mode::Pool(pool, table) => {
                let mut tx = pool
                    .begin_with("BEGIN IMMEDIATE")
                    .await
                    .map_err(crate::SqliteError::from)?;
                let Some(out) = step_with(&mut tx, inbox, &saga, &key, decide).await? else {
                    return Ok(StepOutcome::Duplicate);
                };
                table.enqueue(&mut tx, &out).await?;
                tx.commit().await.map_err(crate::SqliteError::from)?;
                if !out.is_empty() {
                    table.notify();
                }
                true
            }
        };
        Ok(if applied {
            StepOutcome::Applied
        } else {
            StepOutcome::Duplicate
        })
    }
}

#[async_trait]
impl SagaQueries for SqliteSagaStore {
    async fn list(&self, query: &SagaQuery) -> tidings_core::Result<Vec<SagaSummary>> {
        Ok(table::list(self.read_pool(), query).await?)
    }

    async fn show(&self, saga: &str, key: &str) -> tidings_core::Result<Option<SagaRecord>> {
        Ok(table::show(self.read_pool(), saga, key).await?)
    }
}

/// [`SagaQueries`] over a SQLite database's `tidings_saga_instances`, read only: for
/// operators' tools (`tidings sagas`, the admin API) in a process that runs no saga.
#[derive(Clone, Debug)]
pub struct SqliteSagaQueries {
    pool: SqlitePool,
}

impl SqliteSagaQueries {
    /// Queries through `pool` (a reader is enough; WAL lets it run beside the writer).
    pub fn new(pool: SqlitePool) -> Self {
        SqliteSagaQueries { pool }
    }

    /// Opens `path` read only. A database without saga table lists nothing.
    pub async fn open(path: &std::path::Path) -> Result<Self> {
        let opts = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(path)
            .read_only(true);
        let pool = sqlx::sqlite::SqlitePoolOptions::new()
            .max_connections(2)
            .connect_with(opts)
            .await?;
        Ok(SqliteSagaQueries { pool })
    }

    async fn has_table(&self) -> Result<bool> {
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'tidings_saga_instances'",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(n > 0)
    }
}

#[async_trait]
impl SagaQueries for SqliteSagaQueries {
    async fn list(&self, query: &SagaQuery) -> tidings_core::Result<Vec<SagaSummary>> {
        if !self.has_table().await? {
            return Ok(Vec::new());
        }
        Ok(table::list(&self.pool, query).await?)
    }

    async fn show(&self, saga: &str, key: &str) -> tidings_core::Result<Option<SagaRecord>> {
        if !self.has_table().await? {
            return Ok(None);
        }
        Ok(table::show(&self.pool, saga, key).await?)
    }
}
