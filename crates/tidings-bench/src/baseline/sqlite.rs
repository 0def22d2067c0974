//! The raw SQLite baseline, what one would write by hand with sqlx: one table, WAL with
//! `synchronous=FULL` (fsync on every commit), batched multi-row inserts, and consumers that
//! claim a batch (take a lease: one commit) and delete it once handled (one commit). In one
//! process producer and consumers share one connection, taking turns (no busy waits); a
//! producer wakes the consumers in-process.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqliteSynchronous};
use sqlx::{ConnectOptions, Connection, QueryBuilder, Row, Sqlite};
use tokio::sync::{Mutex, Notify};
use tokio::task::JoinHandle;

use crate::payload::{decode, encode};
use crate::system::{Locator, Setup, Stop, System};
use crate::tidings_sys::unique;

/// Lease of a claimed batch.
const LEASE_MS: i64 = 30_000;

/// Raw sqlx queue table.
pub struct RawSqlite {
    conn: Arc<Mutex<SqliteConnection>>,
    wake: Arc<Notify>,
    stop: Stop,
    consumers: Vec<JoinHandle<anyhow::Result<()>>>,
    locator: Locator,
    size: usize,
    _dir: Option<tempfile::TempDir>,
}

async fn connect(path: &Path) -> anyhow::Result<SqliteConnection> {
    let mut c = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .busy_timeout(Duration::from_secs(30))
        .connect()
        .await?;
    sqlx::raw_sql(
        "CREATE TABLE IF NOT EXISTS q (
             id INTEGER PRIMARY KEY AUTOINCREMENT,
             queue TEXT NOT NULL,
             visible_at INTEGER NOT NULL DEFAULT 0,
             body BLOB NOT NULL);
         CREATE INDEX IF NOT EXISTS q_by_queue ON q (queue, id);",
    )
    .execute(&mut c)
    .await?;
    Ok(c)
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Claims up to `limit` visible rows of `queue`; returns (ids as a JSON array, bodies).
async fn claim(
    c: &mut SqliteConnection,
    queue: &str,
    limit: usize,
) -> anyhow::Result<(String, Vec<Vec<u8>>)> {
    let now = now_ms();
    let mut tx = c.begin_with("BEGIN IMMEDIATE").await?;
    let rows = sqlx::query(
        "UPDATE q SET visible_at = ? WHERE id IN (
             SELECT id FROM q WHERE queue = ? AND visible_at <= ? ORDER BY id LIMIT ?)
         RETURNING id, body",
    )
    .bind(now + LEASE_MS)
    .bind(queue)
    .bind(now)
    .bind(i64::try_from(limit)?)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    let ids: Vec<i64> = rows.iter().map(|r| r.get::<i64, _>(0)).collect();
    let bodies = rows.into_iter().map(|r| r.get::<Vec<u8>, _>(1)).collect();
    Ok((serde_json::to_string(&ids)?, bodies))
}

async fn delete(c: &mut SqliteConnection, ids: &str) -> anyhow::Result<()> {
    sqlx::query("DELETE FROM q WHERE id IN (SELECT value FROM json_each(?))")
        .bind(ids)
        .execute(c)
        .await?;
    Ok(())
}

/// Takes batches from `queue` until stopped: claim, hand to the tracker, delete, ack.
async fn consume(
    conn: Arc<Mutex<SqliteConnection>>,
    queue: String,
    prefetch: usize,
    t: Arc<crate::tracker::Tracker>,
    wake: Arc<Notify>,
    stop: Stop,
) -> anyhow::Result<()> {
    while !stop.is_stopped() {
        let notified = wake.notified();
        let (ids, bodies) = claim(&mut *conn.lock().await, &queue, prefetch).await?;
        if bodies.is_empty() {
            tokio::select! {
                _ = notified => {}
                _ = tokio::time::sleep(Duration::from_millis(50)) => {}
            }
            continue;
        }
        for b in &bodies {
            t.received(decode(b));
        }
        delete(&mut *conn.lock().await, &ids).await?;
        t.acked(bodies.len() as u64);
    }
    Ok(())
}

impl RawSqlite {
    /// A new database in a temporary directory, or the one `setup.attach` names.
    pub async fn open(setup: &Setup) -> anyhow::Result<Self> {
        let (path, dir, queues) = match &setup.attach {
            Some(l) => (PathBuf::from(&l.url), None, l.queues.clone()),
            None => {
                let dir = tempfile::tempdir()?;
                let id = unique();
                let queues = (0..setup.fanout.max(1))
                    .map(|i| format!("raw_{id}_{i}"))
                    .collect();
                (dir.path().join("raw.db"), Some(dir), queues)
            }
        };
        let conn = Arc::new(Mutex::new(connect(&path).await?));
        let wake = Arc::new(Notify::new());
        let stop = Stop::default();
        let consumers = queues
            .iter()
            .zip(&setup.trackers)
            .map(|(q, t)| {
                tokio::spawn(consume(
                    conn.clone(),
                    q.clone(),
                    setup.prefetch,
                    t.clone(),
                    wake.clone(),
                    stop.clone(),
                ))
            })
            .collect();
        Ok(RawSqlite {
            conn,
            wake,
            stop,
            consumers,
            locator: Locator {
                kind: Some(crate::opts::TransportKind::Sqlite),
                raw: true,
                url: path.display().to_string(),
                namespace: String::new(),
                queues,
            },
            size: setup.size,
            _dir: dir,
        })
    }
}

#[async_trait]
impl System for RawSqlite {
    fn batch_hint(&self) -> usize {
        256
    }

    async fn send(&self, msgs: Vec<(u64, u64)>) -> anyhow::Result<()> {
        let rows: Vec<(&str, Vec<u8>)> = msgs
            .iter()
            .flat_map(|&(seq, sent)| {
                let b = encode(seq, sent, self.size);
                self.locator
                    .queues
                    .iter()
                    .map(move |q| (q.as_str(), b.clone()))
            })
            .collect();
        let mut c = self.conn.lock().await;
        let mut tx = c.begin_with("BEGIN IMMEDIATE").await?;
        // 2 parameters a row; SQLite takes up to 32766 in one statement.
        for chunk in rows.chunks(8_000) {
            let mut qb = QueryBuilder::<Sqlite>::new("INSERT INTO q (queue, body) ");
            qb.push_values(chunk, |mut r, (q, b)| {
                r.push_bind(*q).push_bind(b.as_slice());
            });
            qb.build().execute(&mut *tx).await?;
        }
        tx.commit().await?;
        drop(c);
        self.wake.notify_waiters();
        Ok(())
    }

    fn locator(&self) -> Locator {
        self.locator.clone()
    }

    async fn finish(self: Box<Self>, _cleanup: bool) -> anyhow::Result<()> {
        self.stop.stop();
        self.wake.notify_waiters();
        for c in self.consumers {
            c.await??;
        }
        Ok(())
    }
}
