//! Saga stores on PostgreSQL ([`PgSagaStore`]): each saga step — inbox row, state (with
//! optimistic concurrency), outgoing messages — is one transaction.
//!
//! - [`PgSagaStore::on_transport`]: on the PostgreSQL transport, the step is a transaction
//!   on its pool: the inbox row goes to the transport's `inbox` table and the messages are
//!   enqueued by its [`Outbox`] (the insert into `messages` is the send; no relay).
//! - [`PgSagaStore::on_pool`]: for a broker transport (RabbitMQ, NATS ...), the step is a
//!   transaction on the service's own database, its messages go to the [`OutboxTable`]
//!   that a [`Relay`](tidings_core::outbox::Relay) ships after commit.
//! - [`step_in`]: the step on a transaction the caller already holds (it writes the inbox
//!   row and enqueues the returned messages itself).
//!
//! Sagas live in `tidings_saga_instances(saga, key, state, data JSONB, version, status,
//! created_at, updated_at, completed_at, meta JSONB)` (meta: recorded compensations and
//! armed timeouts), created by the store when it opens. A write that finds another version
//! than the step read is a transient [`Error::Conflict`](tidings_core::Error::Conflict).

mod table;

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};
use tidings_core::saga::{
    Decide, SagaQueries, SagaQuery, SagaRecord, SagaStore, SagaSummary, StepOutcome,
};
use tidings_core::transport::Outgoing;
use tidings_core::{ConsumeContext, HandlerError, Producer};
use uuid::Uuid;

use crate::error::PgError;
use crate::inbox::{Inbox, DEFAULT_WINDOW};
use crate::{Outbox, OutboxTable, PostgresTransport};

/// Where steps commit.
#[derive(Clone, Debug)]
enum Mode {
    Transport(Inbox, Outbox),
    Pool(OutboxTable),
}

/// Sagas in a PostgreSQL database; see the [module docs](self).
#[derive(Clone, Debug)]
pub struct PgSagaStore {
    pool: PgPool,
    /// `"schema."` on the transport, `""` (the `search_path`) on a pool.
    prefix: String,
    mode: Mode,
}

/// Runs a step on `conn` (inside the caller's transaction; tables qualified by `prefix`,
/// `""` for the `search_path`): loads the saga, calls `decide`, applies its write with
/// optimistic concurrency. Returns the messages to enqueue in the same transaction. A
/// conflict is a transient [`Error::Conflict`](tidings_core::Error::Conflict): roll back.
pub async fn step_in(
    conn: &mut PgConnection,
    prefix: &str,
    saga: &str,
    key: &str,
    decide: Decide,
) -> Result<Vec<Outgoing>, HandlerError> {
    let found = table::load(conn, prefix, saga, key)
        .await
        .map_err(handler)?;
    let decision = decide(found)?;
    table::apply(conn, prefix, saga, &decision.write)
        .await
        .map_err(handler)??;
    Ok(decision.outgoing)
}

fn handler(e: PgError) -> HandlerError {
    tidings_core::Error::from(e).into()
}

/// Creates the saga table (and an inbox table) in `conn`'s `search_path` schema
/// (idempotent); for applications that run [`step_in`] on a database of their own.
pub async fn create_table(conn: &mut PgConnection) -> Result<(), PgError> {
    create(conn, "", true).await
}

/// Creates the saga table qualified by `prefix` (`"schema."`, the schema must exist),
/// idempotently and safe against concurrent creators; for applications that keep their
/// sagas in a schema of their own and run [`step_in`] with the same `prefix`.
pub async fn create_table_in(conn: &mut PgConnection, prefix: &str) -> Result<(), PgError> {
    create(conn, prefix, false).await
}

async fn create(conn: &mut PgConnection, prefix: &str, with_inbox: bool) -> Result<(), PgError> {
    // Concurrent `CREATE ... IF NOT EXISTS` can race on the catalog: serialize them.
    let mut tx = sqlx::Connection::begin(conn)
        .await
        .map_err(PgError::db("saga table"))?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('tidings_saga_instances_schema'))")
        .execute(&mut *tx)
        .await
        .map_err(PgError::db("saga table"))?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(table::ddl(prefix, with_inbox)))
        .execute(&mut *tx)
        .await
        .map_err(PgError::db("saga table"))?;
    tx.commit().await.map_err(PgError::db("saga table"))
}

impl PgSagaStore {
    /// Sagas in `transport`'s schema, each step a transaction on its pool.
    pub async fn on_transport(transport: &PostgresTransport) -> Result<Self, PgError> {
        let prefix = format!("{}.", transport.config().schema);
        let pool = transport.pool().clone();
        let mut conn = pool.acquire().await.map_err(PgError::db("acquire"))?;
        create(&mut conn, &prefix, false).await?;
        // The outbox only enqueues messages the steps built with their own producer.
        let producer = Producer::new(Arc::new(transport.clone()), HashMap::new(), None);
        let outbox = Outbox::new(transport, producer);
        Ok(PgSagaStore {
            pool,
            prefix,
            mode: Mode::Transport(Inbox::new(transport, DEFAULT_WINDOW), outbox),
        })
    }

    /// Sagas in the schema `schema` of `transport`'s database (created if missing, the
    /// schema must exist), each step a transaction on its pool — for an application that
    /// keeps its sagas in a schema of its own (and for operators' queries on them).
    pub async fn on_transport_in(
        transport: &PostgresTransport,
        schema: &str,
    ) -> Result<Self, PgError> {
        let ok = !schema.is_empty()
            && schema.len() <= 63
            && schema.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
            && schema
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !ok {
            return Err(PgError::Config(format!(
                "invalid saga schema `{schema}`: use [a-z_][a-z0-9_]*"
            )));
        }
        let mut store = Self::on_transport(transport).await?;
        store.prefix = format!("{schema}.");
        let mut conn = store.pool.acquire().await.map_err(PgError::db("acquire"))?;
        create(&mut conn, &store.prefix, false).await?;
        Ok(store)
    }

    /// Sagas in the database of `pool` (a service's own, for a broker transport; its
    /// `search_path` schema, where `outbox` lives too); the steps' messages go to
    /// `outbox`, which a relay ships.
    pub async fn on_pool(pool: PgPool, outbox: OutboxTable) -> Result<Self, PgError> {
        let mut conn = pool.acquire().await.map_err(PgError::db("acquire"))?;
        create_table(&mut conn).await?;
        drop(conn);
        Ok(PgSagaStore {
            pool,
            prefix: String::new(),
            mode: Mode::Pool(outbox),
        })
    }

    /// Deletes instances of `saga` that completed before `before` (those kept by
    /// [`Completion::KeepFor`](tidings_core::saga::Completion::KeepFor)); returns how many.
    pub async fn sweep_completed(&self, saga: &str, before: DateTime<Utc>) -> Result<u64, PgError> {
        table::sweep(&self.pool, &self.prefix, saga, before).await
    }

    /// Records the inbox row in `conn`'s transaction: `false` if it was there.
    async fn record_inbox(
        &self,
        conn: &mut PgConnection,
        id: Uuid,
        endpoint: &str,
    ) -> Result<bool, PgError> {
        match &self.mode {
            Mode::Transport(inbox, _) => inbox.try_record_in(conn, id, endpoint).await,
            Mode::Pool(_) => {
                let done = sqlx::query(
                    "INSERT INTO inbox (message_id, endpoint, expires_at) \
                     VALUES ($1, $2, now() + make_interval(secs => $3)) ON CONFLICT DO NOTHING",
                )
                .bind(id)
                .bind(endpoint)
                .bind(DEFAULT_WINDOW.as_secs_f64())
                .execute(conn)
                .await
                .map_err(PgError::db("inbox record"))?;
                Ok(done.rows_affected() == 1)
            }
        }
    }
}

#[async_trait]
impl SagaStore for PgSagaStore {
    async fn step(
        &self,
        saga: &str,
        key: &str,
        ctx: &ConsumeContext,
        decide: Decide,
    ) -> Result<StepOutcome, HandlerError> {
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(|e| handler(PgError::db("begin")(e)))?;
        if !self
            .record_inbox(&mut tx, ctx.message_id(), ctx.endpoint())
            .await
            .map_err(handler)?
        {
            return Ok(StepOutcome::Duplicate);
        }
        let out = step_in(&mut tx, &self.prefix, saga, key, decide).await?;
        match &self.mode {
            Mode::Transport(_, outbox) => outbox.enqueue(&mut tx, &out).await?,
            Mode::Pool(table) => table.enqueue(&mut tx, &out).await?,
        }
        tx.commit()
            .await
            .map_err(|e| handler(PgError::db("commit")(e)))?;
        Ok(StepOutcome::Applied)
    }
}

#[async_trait]
impl SagaQueries for PgSagaStore {
    async fn list(&self, query: &SagaQuery) -> tidings_core::Result<Vec<SagaSummary>> {
        Ok(table::list(&self.pool, &self.prefix, query).await?)
    }

    async fn show(&self, saga: &str, key: &str) -> tidings_core::Result<Option<SagaRecord>> {
        Ok(table::show(&self.pool, &self.prefix, saga, key).await?)
    }
}
