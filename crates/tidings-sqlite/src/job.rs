//! Write jobs: a caller's closure run by the writer on its own connection, inside the
//! current group-commit transaction, fenced by a savepoint (see
//! [`SqliteTransport::write`](crate::SqliteTransport::write)).
//!
//! A job is type-erased in two steps: [`JobRun`] runs the closure and returns a
//! [`Finish`] holding its result; the writer calls the `Finish` once the batch's fate is
//! known (committed: the closure's result; failed: the batch's error), so a caller never
//! sees `Ok` for writes that did not commit.

use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use futures::FutureExt;
use sqlx::sqlite::SqliteConnection;
use tokio::sync::oneshot;

use crate::error::SqliteError;
use crate::store::NewRow;
use crate::topology::{Deferred, Topo, DEFERRED};

/// Answers a job's caller: `None` when the batch committed, else why it failed.
pub(crate) type Finish = Box<dyn FnOnce(Option<Arc<SqliteError>>) + Send>;

/// Runs the closure on the writer's connection (inside the job's savepoint).
pub(crate) type JobRun =
    Box<dyn for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, Ran> + Send>;

/// What running a job's closure came to.
pub(crate) struct Ran {
    /// The closure returned `Ok` (release its savepoint) — else roll it back.
    pub(crate) ok: bool,
    pub(crate) finish: Finish,
}

/// A job queued to the writer. The mutexes only make it `Sync` (the writer alone
/// touches it), so closures need not be.
pub(crate) struct Job {
    run: Mutex<Option<JobRun>>,
    finish: Mutex<Option<Finish>>,
    /// Answers with an error a job that never got to run.
    fail: Mutex<Option<Fail>>,
}

type Fail = Box<dyn FnOnce(Arc<SqliteError>) + Send>;

impl Job {
    /// Takes the closure to run (`None` once it has run).
    pub(crate) fn take_run(&self) -> Option<JobRun> {
        self.run.lock().ok().and_then(|mut r| r.take())
    }

    /// Keeps the answer of a job that ran until the batch commits or fails.
    pub(crate) fn set_finish(&self, f: Finish) {
        if let Ok(mut slot) = self.finish.lock() {
            *slot = Some(f);
        }
    }

    /// Whether the closure has run (and must not run again).
    pub(crate) fn ran(&self) -> bool {
        self.run.lock().map(|r| r.is_none()).unwrap_or(true)
    }

    /// Answers the caller: the closure's result if `batch` is `None`, else the failure.
    pub(crate) fn finish(self, batch: Option<Arc<SqliteError>>) {
        let f = self.finish.into_inner().ok().flatten();
        let fail = self.fail.into_inner().ok().flatten();
        match (f, fail, batch) {
            (Some(f), _, batch) => f(batch),
            (None, Some(fail), Some(e)) => fail(e),
            // Never ran and nothing failed (cannot happen): dropping the closure drops
            // the caller's sender, who sees `Closed`.
            _ => {}
        }
    }
}

fn panic_message(p: Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_string()
    }
}

fn send_once<R>(tx: &Mutex<Option<oneshot::Sender<R>>>, out: R) {
    if let Some(tx) = tx.lock().ok().and_then(|mut t| t.take()) {
        let _ = tx.send(out);
    }
}

/// Wraps `f` into a job and the receiver of its answer.
pub(crate) fn job<T, E, F>(f: F) -> (Job, oneshot::Receiver<Result<T, E>>)
where
    T: Send + 'static,
    E: From<SqliteError> + Send + 'static,
    F: for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, Result<T, E>> + Send + 'static,
{
    let (tx, rx) = oneshot::channel::<Result<T, E>>();
    let tx = Arc::new(Mutex::new(Some(tx)));
    let tx2 = tx.clone();
    let fail: Fail = Box::new(move |e: Arc<SqliteError>| {
        send_once(&tx2, Err(E::from(SqliteError::GroupCommit(e))));
    });
    let run: JobRun = Box::new(move |conn: &mut SqliteConnection| {
        Box::pin(async move {
            let r = AssertUnwindSafe(f(conn))
                .catch_unwind()
                .await
                .map_err(panic_message);
            let ok = matches!(r, Ok(Ok(_)));
            let finish: Finish = Box::new(move |batch: Option<Arc<SqliteError>>| {
                let out = match (r, batch) {
                    // Its own failure says more than the batch's (rolled back either way).
                    (Ok(Err(e)), _) => Err(e),
                    (Ok(Ok(_)) | Err(_), Some(b)) => Err(E::from(SqliteError::GroupCommit(b))),
                    (Ok(Ok(v)), None) => Ok(v),
                    (Err(p), None) => Err(E::from(SqliteError::Panicked(p))),
                };
                send_once(&tx, out);
            });
            Ran { ok, finish }
        })
    });
    (
        Job {
            run: Mutex::new(Some(run)),
            finish: Mutex::new(None),
            fail: Mutex::new(Some(fail)),
        },
        rx,
    )
}

/// Runs `jobs` in order inside the open transaction on `conn`, each fenced by a savepoint:
/// released when its closure succeeds, rolled back (and released) when it fails or panics.
/// One round trip between two jobs (`RELEASE …; SAVEPOINT …`). Returns the message rows the
/// successful jobs enqueued (their outboxes defer to the writer, see [`crate::topology`]).
/// An `Err` means the transaction itself is broken (the batch must fail).
pub(crate) async fn run_jobs(
    conn: &mut SqliteConnection,
    jobs: &[&Job],
    topo: Arc<Topo>,
) -> Result<Vec<NewRow>, SqliteError> {
    let mut rows = Vec::new();
    if jobs.is_empty() {
        return Ok(rows);
    }
    sqlx::raw_sql("SAVEPOINT tidings_job")
        .execute(&mut *conn)
        .await?;
    for (k, job) in jobs.iter().enumerate() {
        let mut ok = true;
        if let Some(run) = job.take_run() {
            let deferred = Deferred {
                topo: topo.clone(),
                rows: Arc::new(Mutex::new(Vec::new())),
            };
            let ran = DEFERRED.scope(deferred.clone(), run(&mut *conn)).await;
            ok = ran.ok;
            job.set_finish(ran.finish);
            if ok {
                if let Ok(mut mine) = deferred.rows.lock() {
                    rows.append(&mut mine);
                }
            }
        }
        let last = k + 1 == jobs.len();
        let sql = match (ok, last) {
            (true, false) => "RELEASE tidings_job; SAVEPOINT tidings_job",
            (false, false) => "ROLLBACK TO tidings_job; RELEASE tidings_job; SAVEPOINT tidings_job",
            (true, true) => "RELEASE tidings_job",
            (false, true) => "ROLLBACK TO tidings_job; RELEASE tidings_job",
        };
        sqlx::raw_sql(sql).execute(&mut *conn).await?;
    }
    Ok(rows)
}
