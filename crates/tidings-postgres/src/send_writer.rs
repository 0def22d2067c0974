//! Group commit of sends. [`PostgresTransport::send`] checks and encodes its messages, then
//! queues them here; one writer task takes everything queued (up to [`MAX_ROWS`] rows),
//! inserts it with one `INSERT .. SELECT unnest(..)` statement — one transaction, one
//! commit, one `pg_notify` per queue that got a visible message — and answers every caller.
//!
//! Each call stays all-or-nothing: its rows are contiguous in one statement. If a batch of
//! several calls fails permanently (a bad row), its calls are retried one by one so only
//! the bad call fails. A batch that fails transiently (after the usual retries) fails every
//! call in it with a retryable error.
//!
//! [`PostgresTransport::send`]: tidings_core::transport::Transport::send

use std::ops::Range;
use std::sync::Arc;

use sqlx::PgPool;
use tidings_core::{Error, ErrorKind, Result};
use tokio::sync::{mpsc, oneshot};

use crate::error::PgError;
use crate::retry::retry;
use crate::schema::Sql;
use crate::send::Columns;

/// Rows per statement: the writer stops taking calls once a batch holds this many.
const MAX_ROWS: usize = 1024;

/// One `send` call, checked and encoded.
#[derive(Debug)]
pub(crate) struct SendJob {
    pub(crate) columns: Columns,
    pub(crate) done: oneshot::Sender<Result<()>>,
}

/// Writes queued sends in batches until every sender is gone.
pub(crate) async fn run_send_writer(
    pool: PgPool,
    sql: Arc<Sql>,
    mut rx: mpsc::UnboundedReceiver<SendJob>,
) {
    while let Some(first) = rx.recv().await {
        let mut rows = first.columns.len();
        let mut jobs = vec![first];
        while rows < MAX_ROWS {
            match rx.try_recv() {
                Ok(job) => {
                    rows += job.columns.len();
                    jobs.push(job);
                }
                Err(_) => break,
            }
        }
        write(&pool, &sql, jobs).await;
    }
}

/// Inserts `columns[rows]` with retries of transient errors (the insert is idempotent
/// per `(queue, id)`, so retrying after an unknown outcome does not duplicate).
async fn insert(
    pool: &PgPool,
    sql: &Sql,
    columns: &Columns,
    rows: Range<usize>,
) -> std::result::Result<(), PgError> {
    retry("send", || columns.insert(sql, rows.clone()).execute(pool))
        .await
        .map(|_| ())
}

/// Writes one batch and answers its callers.
async fn write(pool: &PgPool, sql: &Sql, jobs: Vec<SendJob>) {
    let mut all = Columns::default();
    let mut calls: Vec<(Range<usize>, oneshot::Sender<Result<()>>)> =
        Vec::with_capacity(jobs.len());
    for job in jobs {
        let start = all.len();
        all.append(job.columns);
        calls.push((start..all.len(), job.done));
    }
    let res = insert(pool, sql, &all, 0..all.len()).await;
    match res {
        Ok(()) => {
            for (_, done) in calls {
                let _ = done.send(Ok(()));
            }
        }
        Err(e) if calls.len() == 1 => {
            if let Some((_, done)) = calls.pop() {
                let _ = done.send(Err(e.into()));
            }
        }
        Err(e) if e.kind() == ErrorKind::Transient || is_shutdown(&e) => {
            tracing::debug!(error = %e, calls = calls.len(), "tidings-postgres: send batch failed");
            for (_, done) in calls {
                let _ = done.send(Err(shared_error(&e)));
            }
        }
        Err(e) => {
            tracing::debug!(error = %e, calls = calls.len(), "tidings-postgres: send batch failed, retrying its calls one by one");
            for (rows, done) in calls {
                let res = insert(pool, sql, &all, rows).await;
                let _ = done.send(res.map_err(Error::from));
            }
        }
    }
}

fn is_shutdown(e: &PgError) -> bool {
    matches!(
        e,
        PgError::Closed
            | PgError::Database {
                source: sqlx::Error::PoolClosed,
                ..
            }
    )
}

/// The same failure for each caller of a batch (the driver's error cannot be cloned).
fn shared_error(e: &PgError) -> Error {
    if is_shutdown(e) {
        return Error::Shutdown;
    }
    Error::Transport {
        message: e.to_string(),
        kind: ErrorKind::Transient,
        source: None,
    }
}
