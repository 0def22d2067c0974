//! The raw PostgreSQL baseline, the classic hand-written queue: one table, batched inserts
//! (`UNNEST`), and consumers that in one transaction select a batch `FOR UPDATE SKIP
//! LOCKED`, hand it over, delete it and commit (so a crash gives the batch back). A
//! producer wakes the consumers in-process; they also poll every 50 ms.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::{AssertSqlSafe, Row};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::payload::{decode, encode};
use crate::system::{Locator, Setup, Stop, System};
use crate::tidings_sys::unique;
use crate::tracker::Tracker;

/// Raw SKIP LOCKED queue in a schema of its own.
pub struct RawPostgres {
    pool: PgPool,
    insert: String,
    wake: Arc<Notify>,
    stop: Stop,
    consumers: Vec<JoinHandle<anyhow::Result<()>>>,
    locator: Locator,
    size: usize,
}

async fn consume(
    pool: PgPool,
    schema: String,
    queue: String,
    prefetch: usize,
    t: Arc<Tracker>,
    wake: Arc<Notify>,
    stop: Stop,
) -> anyhow::Result<()> {
    let select = format!(
        "SELECT id, body FROM \"{schema}\".q WHERE queue = $1 ORDER BY id \
         FOR UPDATE SKIP LOCKED LIMIT $2"
    );
    let delete = format!("DELETE FROM \"{schema}\".q WHERE id = ANY($1)");
    let limit = i64::try_from(prefetch)?;
    while !stop.is_stopped() {
        let notified = wake.notified();
        let mut tx = pool.begin().await?;
        let rows = sqlx::query(AssertSqlSafe(select.as_str()))
            .bind(&queue)
            .bind(limit)
            .fetch_all(&mut *tx)
            .await?;
        if rows.is_empty() {
            tx.rollback().await?;
            tokio::select! {
                _ = notified => {}
                _ = tokio::time::sleep(Duration::from_millis(50)) => {}
            }
            continue;
        }
        let mut ids = Vec::with_capacity(rows.len());
        for r in &rows {
            ids.push(r.get::<i64, _>(0));
            t.received(decode(r.get::<&[u8], _>(1)));
        }
        sqlx::query(AssertSqlSafe(delete.as_str()))
            .bind(&ids)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        t.acked(ids.len() as u64);
    }
    Ok(())
}

impl RawPostgres {
    /// A new schema with the queue table, or the one `setup.attach` names.
    pub async fn open(url: &str, setup: &Setup) -> anyhow::Result<Self> {
        let (schema, queues) = match &setup.attach {
            Some(l) => (l.namespace.clone(), l.queues.clone()),
            None => {
                let id = unique();
                let queues = (0..setup.fanout.max(1))
                    .map(|i| format!("raw_{id}_{i}"))
                    .collect();
                (format!("raw_{id}"), queues)
            }
        };
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(10))
            .connect(url)
            .await?;
        let ddl = format!(
            "CREATE SCHEMA IF NOT EXISTS \"{schema}\";
             CREATE TABLE IF NOT EXISTS \"{schema}\".q (
                 id BIGSERIAL PRIMARY KEY,
                 queue TEXT NOT NULL,
                 body BYTEA NOT NULL);
             CREATE INDEX IF NOT EXISTS q_by_queue ON \"{schema}\".q (queue, id);"
        );
        sqlx::raw_sql(AssertSqlSafe(ddl)).execute(&pool).await?;
        let wake = Arc::new(Notify::new());
        let stop = Stop::default();
        let consumers = queues
            .iter()
            .zip(&setup.trackers)
            .map(|(q, t)| {
                tokio::spawn(consume(
                    pool.clone(),
                    schema.clone(),
                    q.clone(),
                    setup.prefetch,
                    t.clone(),
                    wake.clone(),
                    stop.clone(),
                ))
            })
            .collect();
        Ok(RawPostgres {
            insert: format!(
                "INSERT INTO \"{schema}\".q (queue, body) SELECT * FROM UNNEST($1::text[], $2::bytea[])"
            ),
            pool,
            wake,
            stop,
            consumers,
            locator: Locator {
                kind: Some(crate::opts::TransportKind::Postgres),
                raw: true,
                url: url.to_string(),
                namespace: schema,
                queues,
            },
            size: setup.size,
        })
    }
}

#[async_trait]
impl System for RawPostgres {
    fn batch_hint(&self) -> usize {
        256
    }

    async fn send(&self, msgs: Vec<(u64, u64)>) -> anyhow::Result<()> {
        let mut queues = Vec::new();
        let mut bodies = Vec::new();
        for (seq, sent) in msgs {
            let b = encode(seq, sent, self.size);
            for q in &self.locator.queues {
                queues.push(q.clone());
                bodies.push(b.clone());
            }
        }
        sqlx::query(AssertSqlSafe(self.insert.as_str()))
            .bind(&queues)
            .bind(&bodies)
            .execute(&self.pool)
            .await?;
        self.wake.notify_waiters();
        Ok(())
    }

    fn locator(&self) -> Locator {
        self.locator.clone()
    }

    async fn finish(self: Box<Self>, cleanup: bool) -> anyhow::Result<()> {
        self.stop.stop();
        self.wake.notify_waiters();
        for c in self.consumers {
            c.await??;
        }
        if cleanup {
            let drop = format!(
                "DROP SCHEMA IF EXISTS \"{}\" CASCADE",
                self.locator.namespace
            );
            sqlx::raw_sql(AssertSqlSafe(drop))
                .execute(&self.pool)
                .await?;
        }
        self.pool.close().await;
        Ok(())
    }
}
