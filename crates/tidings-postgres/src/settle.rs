//! Settling deliveries. Acks, releases and requeues (a dropped delivery) go through one
//! group-commit writer task that turns whatever is queued into one `DELETE`/`UPDATE` per
//! kind; the caller waits for its batch to commit. Nack, dead-letter and lease extension
//! are rarer and run directly. Every statement matches the row by `(queue, seq, claim)`,
//! so a delivery whose lease expired and was claimed again elsewhere cannot touch it.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::PgPool;
use tidings_core::envelope::headers;
use tidings_core::transport::{error_queue_name, Settle};
use tidings_core::{Envelope, Error, Result};
use tokio::sync::{mpsc, oneshot, Notify};
use uuid::Uuid;

use crate::error::PgError;
use crate::retry::retry;
use crate::schema::{Sql, SCHEDULE_AFTER};
use crate::transport::Shared;
use crate::wake::Wake;

/// What the writer does with a claimed row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OpKind {
    /// Delete it.
    Ack,
    /// Visible now, delivery not counted.
    Release,
    /// Visible now, delivery counted (the consumer dropped it unsettled).
    Requeue,
    /// Nothing: answers once everything queued before it is written.
    Flush,
}

/// One queued settlement.
#[derive(Debug)]
pub(crate) struct Op {
    pub(crate) kind: OpKind,
    pub(crate) queue: Arc<str>,
    pub(crate) seq: i64,
    pub(crate) claim: Uuid,
    pub(crate) ordered: bool,
    pub(crate) done: Option<oneshot::Sender<Result<()>>>,
}

/// Writes queued settlements in batches until every sender is gone.
pub(crate) async fn run_writer(
    pool: PgPool,
    sql: Arc<Sql>,
    wake: Arc<Wake>,
    mut rx: mpsc::UnboundedReceiver<Op>,
) {
    let mut batch = Vec::with_capacity(512);
    while rx.recv_many(&mut batch, 512).await > 0 {
        for kind in [OpKind::Ack, OpKind::Release, OpKind::Requeue] {
            let ops: Vec<&mut Op> = batch.iter_mut().filter(|o| o.kind == kind).collect();
            if ops.is_empty() {
                continue;
            }
            let stmt = match kind {
                OpKind::Ack => &sql.ack,
                OpKind::Release => &sql.release,
                _ => &sql.requeue,
            };
            let queues: Vec<String> = ops.iter().map(|o| o.queue.to_string()).collect();
            let seqs: Vec<i64> = ops.iter().map(|o| o.seq).collect();
            let claims: Vec<Uuid> = ops.iter().map(|o| o.claim).collect();
            let res = retry("settle", || {
                sqlx::query(stmt.sql())
                    .bind(&queues)
                    .bind(&seqs)
                    .bind(&claims)
                    .execute(&pool)
            })
            .await;
            let mut ordered: Vec<String> = ops
                .iter()
                .filter(|o| o.ordered)
                .map(|o| o.queue.to_string())
                .collect();
            ordered.sort();
            ordered.dedup();
            if res.is_ok() && !ordered.is_empty() {
                // Other processes' receivers may wait for a key this freed.
                let _ = sqlx::query("SELECT pg_notify($1, q) FROM unnest($2::text[]) AS q")
                    .bind(&sql.channel)
                    .bind(&ordered)
                    .execute(&pool)
                    .await;
            }
            let mut woken: Vec<&str> = ops.iter().map(|o| &*o.queue).collect();
            woken.sort_unstable();
            woken.dedup();
            for q in woken {
                wake.notify(q);
            }
            let outcome = res.map(|_| ()).map_err(|e| e.to_string());
            for op in ops {
                if let Some(done) = op.done.take() {
                    let _ = done.send(outcome.clone().map_err(|m| Error::Transport {
                        message: m,
                        kind: tidings_core::ErrorKind::Transient,
                        source: None,
                    }));
                }
            }
        }
        for op in batch.iter_mut() {
            if let Some(done) = op.done.take() {
                let _ = done.send(Ok(()));
            }
        }
        batch.clear();
    }
}

/// Settlement handle of one delivery.
pub(crate) struct PgSettle {
    pub(crate) shared: Arc<Shared>,
    pub(crate) queue: Arc<str>,
    pub(crate) seq: i64,
    pub(crate) claim: Uuid,
    pub(crate) ordered: bool,
    pub(crate) park: bool,
    pub(crate) outstanding: Arc<AtomicUsize>,
    pub(crate) notify: Arc<Notify>,
    pub(crate) settled: AtomicBool,
}

impl PgSettle {
    /// Marks the delivery settled (frees its prefetch slot); false if it already was.
    fn finish(&self) -> bool {
        if self.settled.swap(true, Ordering::AcqRel) {
            return false;
        }
        self.outstanding.fetch_sub(1, Ordering::AcqRel);
        self.notify.notify_waiters();
        true
    }

    fn op(&self, kind: OpKind, done: Option<oneshot::Sender<Result<()>>>) -> Op {
        Op {
            kind,
            queue: self.queue.clone(),
            seq: self.seq,
            claim: self.claim,
            ordered: self.ordered,
            done,
        }
    }

    /// Settles through the writer; the receiver answers when the batch is written.
    /// `None` if already settled or the writer is gone.
    pub(crate) fn submit(&self, kind: OpKind) -> Option<oneshot::Receiver<Result<()>>> {
        if !self.finish() {
            return None;
        }
        let (tx, rx) = oneshot::channel();
        self.shared.writer.send(self.op(kind, Some(tx))).ok()?;
        Some(rx)
    }

    async fn queued(&self, kind: OpKind) -> Result<()> {
        self.shared.check_open()?;
        match self.submit(kind) {
            Some(rx) => rx.await.map_err(|_| Error::Shutdown)?,
            None => Err(Error::Shutdown),
        }
    }

    fn pool(&self) -> &PgPool {
        &self.shared.pool
    }
}

impl Drop for PgSettle {
    fn drop(&mut self) {
        // Dropped unsettled (a crashed consumer): the message comes back at once.
        if self.finish() {
            let _ = self.shared.writer.send(self.op(OpKind::Requeue, None));
        }
    }
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

#[async_trait]
impl Settle for PgSettle {
    async fn ack(self: Box<Self>) -> Result<()> {
        self.queued(OpKind::Ack).await
    }

    async fn nack(self: Box<Self>, delay: Duration, updated: Option<Envelope>) -> Result<()> {
        self.shared.check_open()?;
        self.finish();
        let env = updated.map(|e| e.to_json()).transpose()?;
        let sql = &self.shared.sql;
        // A longer delay leaves the claim path (see `schema.rs`).
        let stmt = if delay >= SCHEDULE_AFTER {
            &sql.nack_schedule
        } else {
            &sql.nack
        };
        retry("nack", || {
            sqlx::query(stmt.sql())
                .bind(&*self.queue)
                .bind(self.seq)
                .bind(self.claim)
                .bind(secs(delay))
                .bind(env.as_deref())
                .execute(self.pool())
        })
        .await?;
        self.shared.wake.notify(&self.queue);
        Ok(())
    }

    async fn dead_letter(self: Box<Self>, envelope: Envelope) -> Result<()> {
        self.shared.check_open()?;
        self.finish();
        let blob = envelope.to_json()?;
        let reason = envelope.header(headers::FAULT_REASON);
        let error_queue = error_queue_name(&self.queue);
        let sql = &self.shared.sql;
        retry("dead-letter", || {
            sqlx::query(sql.dead_letter.sql())
                .bind(&*self.queue)
                .bind(self.seq)
                .bind(self.claim)
                .bind(&error_queue)
                .bind(reason)
                .bind(&blob)
                .bind(self.park)
                .execute(self.pool())
        })
        .await?;
        self.shared.wake.notify(&self.queue);
        Ok(())
    }

    async fn release(self: Box<Self>) -> Result<()> {
        self.queued(OpKind::Release).await
    }

    async fn extend_lease(&self, by: Duration) -> Result<()> {
        self.shared.check_open()?;
        let sql = &self.shared.sql;
        retry("extend lease", || {
            sqlx::query(sql.extend.sql())
                .bind(&*self.queue)
                .bind(self.seq)
                .bind(self.claim)
                .bind(secs(by))
                .execute(self.pool())
        })
        .await
        .map_err(PgError::into)
        .map(|_| ())
    }
}
