//! The single writer with group commit. Every write of this process — sends, claims (a claim
//! is a write: it takes a lease), acks, nacks, dead letters — is an [`Op`] sent to one task
//! that owns one connection. The task takes everything queued (up to `max_batch`), runs it
//! in ONE `BEGIN IMMEDIATE … COMMIT` (one fsync), then answers each caller. Under load the
//! queue fills while the previous batch fsyncs, so throughput grows with concurrency instead
//! of being capped by the fsync rate; and readers (claims) never fight writers for the lock.
//!
//! Callers' own transactional work joins the batch as a [`Job`](crate::job::Job): a closure
//! run on the writer's connection inside the batch transaction, fenced by a savepoint, so
//! handlers' business writes and outbox rows share the batch's single commit.
//!
//! If a batch fails as a whole, its operations are retried one by one, so one bad operation
//! does not fail its neighbours (a job whose closure already ran cannot run again: it is
//! answered with the batch's error).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use sqlx::sqlite::SqliteConnection;
use sqlx::Connection;
use tokio::sync::{mpsc, oneshot};

use crate::batch::exec;
use crate::job::{self, Job};
use crate::park::ParkedClaims;
use crate::raw::Direct;
use crate::topology::TopologyCache;
use crate::wake::Wake;

use crate::error::{Result, SqliteError};
use crate::store::{ClaimSpec, Claimed, DeadRow, Prepared};

/// Where a caller's answer goes.
pub(crate) type Reply<T> = oneshot::Sender<Result<T>>;

type Exclusive =
    Box<dyn for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, ()> + Send + Sync>;

/// The result of a claim.
#[derive(Debug)]
pub(crate) struct ClaimResult {
    pub(crate) rows: Vec<Claimed>,
    pub(crate) token: i64,
    /// When something in the queue becomes visible next (only when `rows` is empty).
    pub(crate) next_visible: Option<i64>,
    /// It was parked (and waited for messages) before being answered.
    pub(crate) waited: bool,
}

/// One write.
pub(crate) enum Op {
    Send {
        msgs: Vec<Prepared>,
        reply: Reply<()>,
    },
    Claim {
        spec: ClaimSpec,
        reply: Reply<ClaimResult>,
        /// If it finds nothing: park it under this id for at most this long (see
        /// [`crate::park`]) instead of answering empty.
        park: Option<(u64, Duration)>,
    },
    /// Answers parked claim `id` at once (its receiver is closing).
    Unpark {
        id: u64,
    },
    Ack {
        id: i64,
        token: i64,
        /// Also record `(endpoint, message id)` in the inbox, in the same commit.
        inbox: Option<(String, uuid::Uuid)>,
        reply: Option<Reply<()>>,
    },
    Requeue {
        id: i64,
        token: i64,
        visible_at: i64,
        envelope: Option<Vec<u8>>,
        uncount: bool,
        reply: Option<Reply<()>>,
    },
    Extend {
        id: i64,
        token: i64,
        until: i64,
        reply: Reply<()>,
    },
    DeadLetter {
        row: DeadRow,
        reply: Reply<()>,
    },
    /// A caller's closure inside the batch transaction (its own savepoint).
    Job(Job),
    /// Runs alone in its own transaction (declare, replay, purge, sweeps).
    Exclusive(Exclusive),
    Close,
}

/// Counters of the writer: how well group commit batches.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct WriterStats {
    /// Transactions committed by the writer (one fsync each in `Fsync` mode).
    pub commits: u64,
    /// Operations (sends, claims, acks, ...) in those transactions.
    pub operations: u64,
}

#[derive(Default)]
struct Counters {
    commits: AtomicU64,
    operations: AtomicU64,
}

/// Sends operations to the writer task.
#[derive(Clone)]
pub(crate) struct WriterHandle {
    tx: mpsc::UnboundedSender<Op>,
    counters: Arc<Counters>,
    /// Unique per writer (per open transport) in this process: where its commits land.
    id: u64,
}

impl WriterHandle {
    /// Starts the writer on `conn`, on a thread of its own (with a single-threaded tokio
    /// runtime): its direct statements ([`Raw`]) block that thread, never the caller's
    /// runtime. The thread ends when every handle is dropped or [`WriterHandle::close`].
    pub(crate) fn spawn(
        conn: SqliteConnection,
        wake: Arc<Wake>,
        max_batch: usize,
        ack_delay: Duration,
    ) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::unbounded_channel();
        let counters = Arc::new(Counters::default());
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()?;
        let task = run(conn, rx, wake, (max_batch, ack_delay), counters.clone());
        std::thread::Builder::new()
            .name("tidings-sqlite-writer".into())
            .spawn(move || rt.block_on(task))?;
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        Ok(WriterHandle { tx, counters, id })
    }

    /// This writer's id (see `Settle::inbox_home`).
    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    /// Commits and operations so far.
    pub(crate) fn stats(&self) -> WriterStats {
        WriterStats {
            commits: self.counters.commits.load(Ordering::Relaxed),
            operations: self.counters.operations.load(Ordering::Relaxed),
        }
    }

    /// Queues an operation and waits for its answer.
    pub(crate) async fn call<T>(&self, make: impl FnOnce(Reply<T>) -> Op) -> Result<T> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(make(tx)).map_err(|_| SqliteError::Closed)?;
        rx.await.map_err(|_| SqliteError::Closed)?
    }

    /// Queues an operation without waiting (used from `Drop`).
    pub(crate) fn fire(&self, op: Op) {
        let _ = self.tx.send(op);
    }

    /// Runs `f` inside the next group-commit transaction, in a savepoint of its own;
    /// answers after that transaction commits (see `SqliteTransport::write`).
    pub(crate) async fn write<T, E, F>(&self, f: F) -> std::result::Result<T, E>
    where
        T: Send + 'static,
        E: From<SqliteError> + Send + 'static,
        F: for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, std::result::Result<T, E>>
            + Send
            + 'static,
    {
        let (job, rx) = job::job(f);
        self.tx
            .send(Op::Job(job))
            .map_err(|_| E::from(SqliteError::Closed))?;
        rx.await.map_err(|_| E::from(SqliteError::Closed))?
    }

    /// Runs `f` alone in its own `BEGIN IMMEDIATE` transaction on the writer connection.
    pub(crate) async fn exclusive<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, Result<T>>
            + Send
            + Sync
            + 'static,
    {
        self.call(move |reply: Reply<T>| {
            Op::Exclusive(Box::new(move |conn: &mut SqliteConnection| {
                Box::pin(async move {
                    let r = async {
                        let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
                        let v = f(&mut tx).await?;
                        tx.commit().await?;
                        Ok(v)
                    }
                    .await;
                    let _ = reply.send(r);
                })
            }))
        })
        .await
    }

    /// Asks the writer to finish what is queued and stop.
    pub(crate) fn close(&self) {
        let _ = self.tx.send(Op::Close);
    }
}

async fn run(
    mut conn: SqliteConnection,
    mut rx: mpsc::UnboundedReceiver<Op>,
    wake: Arc<Wake>,
    (max_batch, ack_delay): (usize, Duration),
    counters: Arc<Counters>,
) {
    let mut cache = TopologyCache::default();
    let mut direct = Direct::default();
    let mut pending: Option<Op> = None;
    let mut parked = ParkedClaims::default();
    // Wake-ups not caused by our own batches (commits on the pool, exclusive operations)
    // make parked claims look again.
    let mut seen_epoch = wake.epoch();
    loop {
        let first = match pending.take() {
            Some(op) => Some(op),
            None => {
                let notified = wake.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                let deadline = parked.deadline();
                if deadline.is_some() && wake.epoch() != seen_epoch {
                    None
                } else {
                    let far = tokio::time::Instant::now() + Duration::from_secs(3600);
                    tokio::select! {
                        biased;
                        op = rx.recv() => match op {
                            Some(op) => Some(op),
                            None => break,
                        },
                        _ = &mut notified, if deadline.is_some() => None,
                        _ = tokio::time::sleep_until(deadline.unwrap_or(far)), if deadline.is_some() => None,
                    }
                }
            }
        };
        match first {
            None => {
                // Look again for parked receivers (woken, or a deadline passed).
                seen_epoch = wake.epoch();
                run_batch(
                    &mut conn,
                    &mut direct,
                    &mut cache,
                    Vec::new(),
                    &wake,
                    &mut parked,
                    true,
                )
                .await;
                counters.commits.fetch_add(1, Ordering::Relaxed);
            }
            Some(Op::Close) => break,
            Some(Op::Unpark { id }) => parked.unpark(id),
            Some(Op::Exclusive(f)) => {
                counters.commits.fetch_add(1, Ordering::Relaxed);
                counters.operations.fetch_add(1, Ordering::Relaxed);
                f(&mut conn).await;
                wake.wake();
            }
            Some(op) => {
                let mut batch = vec![op];
                fill(&mut rx, &mut batch, &mut pending, &mut parked, max_batch);
                // Acks alone wait a little for company: the next send or claim shares their
                // commit, so a lone message costs one fsync on its way, not two (its ack's
                // commit would otherwise be under way when the next send arrives).
                if pending.is_none()
                    && !ack_delay.is_zero()
                    && batch.iter().all(|op| matches!(op, Op::Ack { .. }))
                {
                    if let Ok(Some(op)) = tokio::time::timeout(ack_delay, rx.recv()).await {
                        if take(op, &mut batch, &mut pending, &mut parked) {
                            fill(&mut rx, &mut batch, &mut pending, &mut parked, max_batch);
                        }
                    }
                }
                counters.commits.fetch_add(1, Ordering::Relaxed);
                counters
                    .operations
                    .fetch_add(batch.len() as u64, Ordering::Relaxed);
                run_batch(
                    &mut conn,
                    &mut direct,
                    &mut cache,
                    batch,
                    &wake,
                    &mut parked,
                    false,
                )
                .await;
                seen_epoch = wake.epoch();
            }
        }
    }
    parked.release_all();
    rx.close();
    direct.close(&mut conn).await;
    let _ = conn.close().await;
}

/// Adds what is queued to `batch`, up to `max_batch` operations.
fn fill(
    rx: &mut mpsc::UnboundedReceiver<Op>,
    batch: &mut Vec<Op>,
    pending: &mut Option<Op>,
    parked: &mut ParkedClaims,
    max_batch: usize,
) {
    while batch.len() < max_batch {
        match rx.try_recv() {
            Ok(op) => {
                if !take(op, batch, pending, parked) {
                    break;
                }
            }
            Err(_) => break,
        }
    }
}

/// Adds `op` to `batch`; `false` when it must wait for the next round (an exclusive
/// operation or close: kept in `pending`).
fn take(op: Op, batch: &mut Vec<Op>, pending: &mut Option<Op>, parked: &mut ParkedClaims) -> bool {
    match op {
        op @ (Op::Exclusive(_) | Op::Close) => {
            *pending = Some(op);
            false
        }
        Op::Unpark { id } => {
            parked.unpark(id);
            // Its claim may still be in this batch: answer it, don't park it.
            for op in batch.iter_mut() {
                if let Op::Claim { park, .. } = op {
                    if park.is_some_and(|(p, _)| p == id) {
                        *park = None;
                    }
                }
            }
            true
        }
        op => {
            batch.push(op);
            true
        }
    }
}

/// What one operation of a batch came to.
pub(crate) enum Outcome {
    Unit(Result<()>),
    Claim(Result<ClaimResult>),
}

/// Runs `batch` in one transaction — and, when it changes something (or `recheck`), the
/// parked claims too — then answers.
async fn run_batch(
    conn: &mut SqliteConnection,
    direct: &mut Direct,
    cache: &mut TopologyCache,
    batch: Vec<Op>,
    wake: &Wake,
    parked: &mut ParkedClaims,
    recheck: bool,
) {
    if !batch.is_empty() {
        metrics::histogram!("tidings_sqlite_commit_batch_size").record(batch.len() as f64);
    }
    let changes = batch
        .iter()
        .any(|op| !matches!(op, Op::Claim { .. } | Op::Extend { .. }));
    let with_parked = (changes || recheck) && !parked.is_empty();
    match exec(conn, direct, cache, &batch, with_parked.then_some(&*parked)).await {
        Ok((outcomes, found)) => {
            parked.answer(found);
            for (op, o) in batch.into_iter().zip(outcomes) {
                answer_or_park(op, o, parked);
            }
        }
        Err(e) if batch.len() == 1 => {
            cache.invalidate();
            if let Some(op) = batch.into_iter().next() {
                answer(op, Outcome::Unit(Err(e)));
            }
        }
        Err(e) => {
            tracing::debug!(error = %e, "group commit failed; retrying operations one by one");
            cache.invalidate();
            let e = Arc::new(e);
            for op in batch {
                match op {
                    Op::Job(job) if job.ran() => {
                        job.finish(Some(e.clone()));
                        continue;
                    }
                    op => {
                        let o = match exec(conn, direct, cache, std::slice::from_ref(&op), None)
                            .await
                        {
                            Ok((mut os, _)) => os.pop().unwrap_or(Outcome::Unit(Ok(()))),
                            Err(e) => Outcome::Unit(Err(e)),
                        };
                        answer(op, o);
                    }
                }
            }
        }
    }
    if changes {
        wake.wake();
    }
}

/// Answers `op` — or parks it: a parking claim that found nothing.
fn answer_or_park(op: Op, o: Outcome, parked: &mut ParkedClaims) {
    match (op, o) {
        (
            Op::Claim {
                spec,
                reply,
                park: Some((id, wait)),
            },
            Outcome::Claim(Ok(res)),
        ) if res.rows.is_empty() => parked.park(id, spec, reply, wait, res.next_visible),
        (op, o) => answer(op, o),
    }
}

fn answer(op: Op, o: Outcome) {
    let unit = |o: Outcome| match o {
        Outcome::Unit(r) => r,
        Outcome::Claim(r) => r.map(|_| ()),
    };
    match op {
        Op::Send { reply, .. } | Op::Extend { reply, .. } | Op::DeadLetter { reply, .. } => {
            let _ = reply.send(unit(o));
        }
        Op::Ack { reply, .. } | Op::Requeue { reply, .. } => {
            if let Some(reply) = reply {
                let _ = reply.send(unit(o));
            }
        }
        Op::Claim { reply, .. } => {
            let r = match o {
                Outcome::Claim(r) => r,
                Outcome::Unit(r) => r.and_then(|_| Err(SqliteError::Closed)),
            };
            let _ = reply.send(r);
        }
        Op::Job(job) => job.finish(unit(o).err().map(Arc::new)),
        Op::Unpark { .. } | Op::Exclusive(_) | Op::Close => {}
    }
}
