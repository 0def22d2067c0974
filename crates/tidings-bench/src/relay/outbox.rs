//! The outbox tables the relay scenario ships from — a SQLite file (temporary directory,
//! WAL, `synchronous=FULL`) or a PostgreSQL schema of its own (dropped afterwards) — and
//! their filling with N [`Work`] commands addressed to the destination queue.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Serialize;
use tidings::outbox::OutboxStore;
use tidings::transport::Outgoing;
use tidings::{Envelope, Message};

use crate::payload::{pad, Work};
use crate::tidings_sys::unique;

/// Rows per transaction while filling.
const FILL_CHUNK: u64 = 5_000;

/// Where the outbox table lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    /// A SQLite file (WAL, synchronous=FULL).
    Sqlite,
    /// A PostgreSQL schema.
    Postgres,
}

impl StoreKind {
    /// Both, in report order.
    pub const ALL: [StoreKind; 2] = [StoreKind::Sqlite, StoreKind::Postgres];

    /// Short name, as in the report.
    pub fn as_str(self) -> &'static str {
        match self {
            StoreKind::Sqlite => "sqlite",
            StoreKind::Postgres => "postgres",
        }
    }

    /// What a committed outbox row survives.
    pub fn durability(self) -> &'static str {
        match self {
            StoreKind::Sqlite => "outbox: SQLite WAL, synchronous=FULL",
            StoreKind::Postgres => "outbox: PostgreSQL commit",
        }
    }
}

/// The [`Work`] command `seq` (padded with `pad`) to `queue`, as the relay ships it.
pub(crate) fn work(queue: &str, seq: u64, pad: &str) -> anyhow::Result<Outgoing> {
    let body = serde_json::to_vec(&Work {
        seq,
        sent_ns: 0,
        pad: pad.to_string(),
    })?;
    let env = Envelope::new(Work::NAME, Work::VERSION, body);
    Ok(Outgoing::to_queue(queue, env))
}

/// One outbox table, opened fresh for one run.
pub(crate) enum Outbox {
    Sqlite {
        table: tidings::sqlite::OutboxTable,
        pool: sqlx::SqlitePool,
        _dir: tempfile::TempDir, // removed on drop
    },
    Postgres {
        table: tidings::postgres::OutboxTable,
        pool: sqlx::PgPool,
        schema: String,
    },
}

impl Outbox {
    /// A new, empty outbox table of `kind` (`pg_url` for PostgreSQL).
    pub(crate) async fn open(kind: StoreKind, pg_url: &str) -> anyhow::Result<Outbox> {
        Ok(match kind {
            StoreKind::Sqlite => {
                let dir = tempfile::tempdir()?;
                let opts = sqlx::sqlite::SqliteConnectOptions::new()
                    .filename(dir.path().join("app.db"))
                    .create_if_missing(true)
                    .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
                    .synchronous(sqlx::sqlite::SqliteSynchronous::Full)
                    .busy_timeout(Duration::from_secs(10));
                let pool = sqlx::SqlitePool::connect_with(opts).await?;
                let table = tidings::sqlite::OutboxTable::open(pool.clone()).await?;
                Outbox::Sqlite {
                    table,
                    pool,
                    _dir: dir,
                }
            }
            StoreKind::Postgres => {
                let schema = format!("relay_bench_{}", unique());
                let opts: sqlx::postgres::PgConnectOptions =
                    pg_url.parse().context("the PostgreSQL URL")?;
                let pool = sqlx::postgres::PgPoolOptions::new()
                    .max_connections(4)
                    .connect_with(opts.options([("search_path", schema.as_str())]))
                    .await?;
                sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
                    .execute(&pool)
                    .await?;
                let table = tidings::postgres::OutboxTable::open(pool.clone()).await?;
                Outbox::Postgres {
                    table,
                    pool,
                    schema,
                }
            }
        })
    }

    /// The table as the relay sees it.
    pub(crate) fn store(&self) -> Arc<dyn OutboxStore> {
        match self {
            Outbox::Sqlite { table, .. } => Arc::new(table.clone()),
            Outbox::Postgres { table, .. } => Arc::new(table.clone()),
        }
    }

    /// Commits `n` [`Work`] commands (seq 0..n, bodies of about `size` bytes) to `queue`,
    /// [`FILL_CHUNK`] per transaction, through the table's own `enqueue`. Returns the rate.
    pub(crate) async fn fill(&self, queue: &str, n: u64, size: usize) -> anyhow::Result<f64> {
        let started = Instant::now();
        let pad = pad(size);
        let mut next = 0;
        while next < n {
            let end = n.min(next + FILL_CHUNK);
            let msgs = (next..end)
                .map(|seq| work(queue, seq, &pad))
                .collect::<anyhow::Result<Vec<_>>>()?;
            match self {
                Outbox::Sqlite { table, pool, .. } => {
                    let mut tx = pool.begin().await?;
                    table.enqueue(&mut tx, &msgs).await?;
                    tx.commit().await?;
                }
                Outbox::Postgres { table, pool, .. } => {
                    let mut tx = pool.begin().await?;
                    table.enqueue(&mut tx, &msgs).await?;
                    tx.commit().await?;
                }
            }
            next = end;
        }
        Ok(n as f64 / started.elapsed().as_secs_f64().max(1e-9))
    }

    /// Drops what the run created (the PostgreSQL schema; the SQLite directory goes with
    /// `self`).
    pub(crate) async fn remove(self) -> anyhow::Result<()> {
        match &self {
            Outbox::Sqlite { pool, .. } => pool.close().await,
            Outbox::Postgres { pool, schema, .. } => {
                sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
                    .execute(pool)
                    .await?;
            }
        }
        Ok(())
    }
}
