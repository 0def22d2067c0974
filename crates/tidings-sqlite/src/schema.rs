//! The tables, their migrations (versioned in `tidings_schema`), and opening the database
//! with clear start-up errors (missing directory, read-only, not a database, newer schema).
//!
//! | table | holds |
//! | --- | --- |
//! | `tidings_schema` | one row: the schema version, and a counter bumped by every declare |
//! | `tidings_queues` | declared queues (name, ordered, temporary) |
//! | `tidings_subscriptions` | (message type, queue): who gets a published event |
//! | `tidings_messages` | queued messages: queue, visible_at (ms: deliverable from), lease token and lease end (`lease_until`, in no index), delivery count, partition key, envelope (compact stored form: metadata JSON + raw body; JSON in older rows) |
//! | `tidings_dead_letters` | error queues: original queue, reason, time, envelope with fault headers |
//! | `tidings_parked` | (queue, partition key) parked behind a dead letter |
//! | `tidings_inbox` | (endpoint, message id) already handled, with time |
//! | `tidings_sagas` | (saga, key) → state JSON + version |

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::wake::Wake;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};
use sqlx::{Connection, Row};

use crate::config::{Durability, SqliteConfig};
use crate::error::{sqlite_code, Result, SqliteError};

/// The newest schema version this build writes.
pub const SCHEMA_VERSION: i64 = 3;

const V1: &str = r#"
CREATE TABLE tidings_queues (
    name TEXT PRIMARY KEY,
    ordered INTEGER NOT NULL DEFAULT 0,
    temporary INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE tidings_subscriptions (
    message_type TEXT NOT NULL,
    queue TEXT NOT NULL,
    PRIMARY KEY (message_type, queue)
) WITHOUT ROWID;
CREATE TABLE tidings_messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    queue TEXT NOT NULL,
    message_id TEXT NOT NULL,
    partition_key TEXT,
    visible_at INTEGER NOT NULL,
    lease_token INTEGER,
    delivery_count INTEGER NOT NULL DEFAULT 0,
    sent_at INTEGER NOT NULL,
    envelope BLOB NOT NULL
);
CREATE INDEX tidings_messages_ready ON tidings_messages (queue, visible_at, id);
CREATE INDEX tidings_messages_key ON tidings_messages (queue, partition_key, id)
    WHERE partition_key IS NOT NULL;
CREATE TABLE tidings_dead_letters (
    id INTEGER PRIMARY KEY,
    queue TEXT NOT NULL,
    message_id TEXT NOT NULL,
    message_type TEXT NOT NULL,
    reason TEXT,
    partition_key TEXT,
    dead_lettered_at INTEGER NOT NULL,
    envelope BLOB NOT NULL
);
CREATE INDEX tidings_dead_letters_queue ON tidings_dead_letters (queue, dead_lettered_at);
CREATE TABLE tidings_parked (
    queue TEXT NOT NULL,
    partition_key TEXT NOT NULL,
    parked_at INTEGER NOT NULL,
    PRIMARY KEY (queue, partition_key)
) WITHOUT ROWID;
CREATE TABLE tidings_inbox (
    endpoint TEXT NOT NULL,
    message_id TEXT NOT NULL,
    processed_at INTEGER NOT NULL,
    PRIMARY KEY (endpoint, message_id)
) WITHOUT ROWID;
CREATE INDEX tidings_inbox_processed ON tidings_inbox (processed_at);
CREATE TABLE tidings_sagas (
    saga TEXT NOT NULL,
    key TEXT NOT NULL,
    state TEXT NOT NULL,
    version INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (saga, key)
) WITHOUT ROWID;
"#;

/// Version 2 changes no table: the `envelope` columns of `tidings_messages` and
/// `tidings_dead_letters` may now hold the compact stored form (`Envelope::to_stored`),
/// which a version-1 build cannot read — so the version is bumped, and such a build
/// refuses the file (`NewerSchema`) instead of dead-lettering what it cannot decode.
/// Rows written as JSON by version 1 are still read.
const V2: &str = "SELECT 1;";

/// Version 3 keeps a delivery's lease in a column of its own, `lease_until`, which no index
/// holds: a claim then rewrites the row in place instead of moving its entry in the ready
/// index `(queue, visible_at, id)` (that move was the largest part of a claim's cost:
/// docs/benchmarks.md). `visible_at` now only says when a message becomes deliverable
/// (sent, scheduled, redelivery delay); a row is claimable when `visible_at` has passed
/// and it has no lease or its lease has run out. Rows leased by a version-2 build keep
/// their lease in `visible_at` and `lease_until` NULL, which means the same thing, so the
/// migration changes no row; a version-2 build refuses the file (`NewerSchema`), since it
/// would take every row a version-3 build has leased for free.
const V3: &str = "ALTER TABLE tidings_messages ADD COLUMN lease_until INTEGER;";

/// Migration scripts; index `i` takes the schema from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[V1, V2, V3];

/// Milliseconds since the Unix epoch, now.
pub(crate) fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Turns a failure to open or prepare the file into a start-up error that says why.
pub(crate) fn open_error(path: &Path, e: sqlx::Error) -> SqliteError {
    let reason = match sqlite_code(&e) {
        Some(8) => "the file is read-only; tidings must write it and its -wal/-shm files".into(),
        Some(26) => "the file is not a SQLite database (or is corrupt)".into(),
        Some(11) => "the database file is corrupt".into(),
        Some(14) => "cannot open the file (does its directory exist? permissions?)".into(),
        Some(23) => "permission denied".into(),
        _ => e.to_string(),
    };
    SqliteError::Open {
        path: path.to_path_buf(),
        reason,
        source: Some(e),
    }
}

fn connect_options(cfg: &SqliteConfig) -> SqliteConnectOptions {
    SqliteConnectOptions::new()
        .filename(&cfg.path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(match cfg.durability {
            Durability::Fsync => SqliteSynchronous::Full,
            Durability::OsBuffered => SqliteSynchronous::Normal,
        })
        .busy_timeout(cfg.busy_timeout)
        .foreign_keys(false)
}

/// Opens the writer connection, checks and migrates the schema.
pub(crate) async fn open_writer(cfg: &SqliteConfig) -> Result<SqliteConnection> {
    let path = &cfg.path;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if !dir.is_dir() {
            return Err(SqliteError::Open {
                path: path.clone(),
                reason: format!("directory {} does not exist", dir.display()),
                source: None,
            });
        }
    }
    if path.is_dir() {
        return Err(SqliteError::Open {
            path: path.clone(),
            reason: "it is a directory, not a file".into(),
            source: None,
        });
    }
    // The writer gets a bigger page cache (16 MiB): it touches the queue head and tail.
    // Its row channel holds a whole claim (up to 256 rows): with sqlx's default of 50 the
    // connection's worker thread stops every 50 rows until the writer task drains them.
    let options = connect_options(cfg)
        .pragma("cache_size", "-16384")
        .row_buffer_size(512);
    let mut conn = SqliteConnection::connect_with(&options)
        .await
        .map_err(|e| open_error(path, e))?;
    migrate(&mut conn, path).await.map_err(|e| match e {
        SqliteError::Database(d) => open_error(path, d),
        other => other,
    })?;
    Ok(conn)
}

async fn migrate(conn: &mut SqliteConnection, path: &Path) -> Result<()> {
    let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS tidings_schema \
         (id INTEGER PRIMARY KEY CHECK (id = 1), version INTEGER NOT NULL, \
         topology_gen INTEGER NOT NULL DEFAULT 0)",
    )
    .execute(&mut *tx)
    .await?;
    let found: i64 = sqlx::query("SELECT version FROM tidings_schema WHERE id = 1")
        .fetch_optional(&mut *tx)
        .await?
        .map(|r| r.try_get(0))
        .transpose()?
        .unwrap_or(0);
    if found > SCHEMA_VERSION {
        return Err(SqliteError::NewerSchema {
            path: path.to_path_buf(),
            found,
            supported: SCHEMA_VERSION,
        });
    }
    for (i, script) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        sqlx::raw_sql(sqlx::AssertSqlSafe(*script))
            .execute(&mut *tx)
            .await?;
        tracing::info!(version = i + 1, "tidings-sqlite: migrated schema");
    }
    sqlx::query(
        "INSERT INTO tidings_schema (id, version) VALUES (1, ?) \
         ON CONFLICT (id) DO UPDATE SET version = excluded.version",
    )
    .bind(SCHEMA_VERSION.max(found))
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Opens the pool for reads and application transactions. Each connection wakes
/// in-process receivers when it commits a transaction that wrote `tidings_messages`
/// (outbox inserts).
pub(crate) async fn open_pool(cfg: &SqliteConfig, wake: Arc<Wake>) -> Result<SqlitePool> {
    let path = cfg.path.clone();
    SqlitePoolOptions::new()
        .max_connections(cfg.pool_size)
        .min_connections(1)
        .after_connect(move |conn, _| {
            let wake = wake.clone();
            Box::pin(async move {
                let mut h = conn.lock_handle().await?;
                let dirty = Arc::new(AtomicBool::new(false));
                let d = dirty.clone();
                h.set_update_hook(move |r| {
                    if r.table == "tidings_messages" {
                        d.store(true, Ordering::Relaxed);
                    }
                });
                let d = dirty.clone();
                h.set_commit_hook(move || {
                    if d.swap(false, Ordering::Relaxed) {
                        // The writer's next claim waits for this commit's lock, then sees it.
                        wake.wake();
                    }
                    true
                });
                h.set_rollback_hook(move || dirty.store(false, Ordering::Relaxed));
                Ok(())
            })
        })
        .connect_with(connect_options(cfg))
        .await
        .map_err(|e| open_error(&path, e))
}
