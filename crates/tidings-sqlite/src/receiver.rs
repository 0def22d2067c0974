//! [`SqliteReceiver`]: claims batches of up to `prefetch` rows through the writer, hands
//! them out one by one, and sleeps until woken (in-process commit), until the next row
//! becomes visible, or for the poll interval (writes of other processes).
//! [`SqliteSettle`] settles one delivery by its row id and lease token: a settlement
//! whose lease has run out (and been taken by another consumer) changes nothing.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tidings_core::envelope::headers;
use tidings_core::transport::{Delivery, ReceiveOptions, Receiver, Settle};
use tidings_core::{Envelope, Result};
use tokio::sync::{oneshot, Notify};

use crate::error::SqliteError;
use crate::schema::now_ms;
use crate::store::{ClaimSpec, Claimed, DeadRow};
use crate::writer::{Op, Reply, WriterHandle};

/// Most rows taken by one claim.
const MAX_CLAIM: usize = 256;

pub(crate) struct SqliteReceiver {
    pub(crate) writer: WriterHandle,
    pub(crate) wake: Arc<Notify>,
    pub(crate) transport_closed: Arc<AtomicBool>,
    pub(crate) poll: Duration,
    pub(crate) queue: String,
    pub(crate) options: ReceiveOptions,
    pub(crate) ordered: bool,
    pub(crate) buffer: VecDeque<(Claimed, i64)>,
    pub(crate) outstanding: Arc<AtomicUsize>,
    pub(crate) closed: bool,
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 4)
}

impl SqliteReceiver {
    fn delivery(&self, row: Claimed, token: i64) -> Option<Delivery> {
        let envelope = match Envelope::from_json(&row.envelope) {
            Ok(e) => e,
            Err(e) => {
                // Only we write this column; leave the row leased (it comes back later).
                tracing::error!(row = row.id, error = %e, "tidings-sqlite: undecodable envelope row");
                self.outstanding.fetch_sub(1, Ordering::AcqRel);
                return None;
            }
        };
        Some(Delivery {
            delivery_count: u32::try_from(row.delivery_count).unwrap_or(u32::MAX),
            queue: self.queue.clone(),
            settle: Box::new(SqliteSettle {
                writer: self.writer.clone(),
                id: row.id,
                token,
                queue: self.queue.clone(),
                park: self.options.park_on_dead_letter && self.ordered,
                outstanding: self.outstanding.clone(),
                settled: AtomicBool::new(false),
            }),
            envelope,
        })
    }

    fn release_buffered(&mut self) {
        for (row, token) in self.buffer.drain(..) {
            self.writer.fire(Op::Requeue {
                id: row.id,
                token,
                visible_at: now_ms(),
                envelope: None,
                uncount: true,
                reply: None,
            });
            self.outstanding.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

#[async_trait]
impl Receiver for SqliteReceiver {
    async fn recv(&mut self) -> Result<Option<Delivery>> {
        loop {
            if self.closed || self.transport_closed.load(Ordering::Acquire) {
                return Ok(None);
            }
            if let Some((row, token)) = self.buffer.pop_front() {
                match self.delivery(row, token) {
                    Some(d) => return Ok(Some(d)),
                    None => continue,
                }
            }
            let wake = self.wake.clone();
            let notified = wake.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let out = self.outstanding.load(Ordering::Acquire);
            let mut wait = self.poll;
            if out < self.options.prefetch.max(1) {
                let spec = ClaimSpec {
                    queue: self.queue.clone(),
                    max: (self.options.prefetch.max(1) - out).min(MAX_CLAIM),
                    lease_ms: ms(self.options.lease).max(1),
                    ordered: self.ordered,
                };
                let res = self.writer.call(|reply| Op::Claim { spec, reply }).await?;
                if !res.rows.is_empty() {
                    self.outstanding.fetch_add(res.rows.len(), Ordering::AcqRel);
                    self.buffer
                        .extend(res.rows.into_iter().map(|r| (r, res.token)));
                    continue;
                }
                if let Some(at) = res.next_visible {
                    let until = Duration::from_millis((at - now_ms()).max(1) as u64);
                    wait = wait.min(until);
                }
            }
            tokio::select! {
                _ = notified => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    async fn close(&mut self) -> Result<()> {
        self.closed = true;
        self.release_buffered();
        Ok(())
    }
}

impl Drop for SqliteReceiver {
    fn drop(&mut self) {
        self.release_buffered();
    }
}

/// Settles one claimed row.
pub(crate) struct SqliteSettle {
    writer: WriterHandle,
    id: i64,
    token: i64,
    queue: String,
    park: bool,
    outstanding: Arc<AtomicUsize>,
    settled: AtomicBool,
}

impl SqliteSettle {
    /// Queues `op` (once per delivery), frees its prefetch slot, and waits for the commit.
    async fn settle(&self, make: impl FnOnce(Reply<()>) -> Op) -> Result<()> {
        if self.settled.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        let (tx, rx) = oneshot::channel();
        self.writer.fire(make(tx));
        // After the op is queued, so a claim this frees up runs after it.
        self.outstanding.fetch_sub(1, Ordering::AcqRel);
        rx.await.map_err(|_| SqliteError::Closed)??;
        Ok(())
    }
}

impl Drop for SqliteSettle {
    fn drop(&mut self) {
        if !self.settled.swap(true, Ordering::AcqRel) {
            // Dropped unsettled (a crashed handler): back at once.
            self.writer.fire(Op::Requeue {
                id: self.id,
                token: self.token,
                visible_at: now_ms(),
                envelope: None,
                uncount: false,
                reply: None,
            });
            self.outstanding.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

#[async_trait]
impl Settle for SqliteSettle {
    async fn ack(self: Box<Self>) -> Result<()> {
        let (id, token) = (self.id, self.token);
        self.settle(|reply| Op::Ack {
            id,
            token,
            reply: Some(reply),
        })
        .await
    }

    async fn nack(self: Box<Self>, delay: Duration, updated: Option<Envelope>) -> Result<()> {
        let envelope = updated.map(|e| e.to_json()).transpose()?;
        let (id, token) = (self.id, self.token);
        let visible_at = now_ms() + ms(delay) + i64::from(delay.subsec_micros() % 1000 > 0);
        self.settle(|reply| Op::Requeue {
            id,
            token,
            visible_at,
            envelope,
            uncount: false,
            reply: Some(reply),
        })
        .await
    }

    async fn dead_letter(self: Box<Self>, envelope: Envelope) -> Result<()> {
        let row = DeadRow {
            id: self.id,
            token: self.token,
            queue: self.queue.clone(),
            message_id: envelope.id.to_string(),
            message_type: envelope.message_type.clone(),
            reason: envelope.header(headers::FAULT_REASON).map(str::to_string),
            partition_key: envelope.partition_key.clone(),
            envelope: envelope.to_json()?,
            park: self.park,
        };
        self.settle(|reply| Op::DeadLetter { row, reply }).await
    }

    async fn release(self: Box<Self>) -> Result<()> {
        let (id, token) = (self.id, self.token);
        self.settle(|reply| Op::Requeue {
            id,
            token,
            visible_at: now_ms(),
            envelope: None,
            uncount: true,
            reply: Some(reply),
        })
        .await
    }

    async fn extend_lease(&self, by: Duration) -> Result<()> {
        let (id, token) = (self.id, self.token);
        let until = now_ms() + ms(by);
        Ok(self
            .writer
            .call(|reply| Op::Extend {
                id,
                token,
                until,
                reply,
            })
            .await?)
    }
}
