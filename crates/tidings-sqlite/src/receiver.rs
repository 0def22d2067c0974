//! [`SqliteReceiver`]: claims batches of up to `prefetch` rows through the writer and hands
//! them out one by one. A claim that finds nothing is parked with the writer (see
//! [`crate::park`]): it is answered in the very transaction that enqueues the next
//! message, or empty after the poll interval (writes of other processes) or when the next
//! row becomes visible.
//! [`SqliteSettle`] settles one delivery by its row id and lease token: a settlement
//! whose lease has run out (and been taken by another consumer) changes nothing.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tidings_core::envelope::headers;
use tidings_core::transport::undecodable::Undecodable;
use tidings_core::transport::{Delivery, ReceiveOptions, Receiver, Settle};
use tidings_core::{Envelope, Result};
use tokio::sync::{oneshot, Notify};
use tokio::time::Instant;
use uuid::Uuid;

use crate::error::SqliteError;
use crate::schema::now_ms;
use crate::store::{ClaimSpec, Claimed, DeadRow};
use crate::wake::Wake;
use crate::writer::{ClaimResult, Op, Reply, WriterHandle};

/// Most rows taken by one claim.
const MAX_CLAIM: usize = 256;

pub(crate) struct SqliteReceiver {
    pub(crate) writer: WriterHandle,
    pub(crate) wake: Arc<Wake>,
    pub(crate) transport_closed: Arc<AtomicBool>,
    pub(crate) poll: Duration,
    pub(crate) queue: String,
    pub(crate) options: ReceiveOptions,
    pub(crate) ordered: bool,
    pub(crate) buffer: VecDeque<(Claimed, i64)>,
    pub(crate) outstanding: Arc<AtomicUsize>,
    pub(crate) closed: bool,
    /// A claim sent to the writer and not yet answered: kept here so that `recv` is
    /// cancel-safe (a dropped `recv` future resumes waiting for it next time).
    pub(crate) pending: Option<oneshot::Receiver<crate::Result<ClaimResult>>>,
    /// After an empty claim: the wake epoch it saw and when to look again regardless.
    pub(crate) idle: Option<(u64, Instant)>,
    /// Signalled (with a stored permit) whenever one of our deliveries is settled.
    pub(crate) slot_freed: Arc<Notify>,
    /// This receiver's id for parked claims (see [`crate::park`]).
    pub(crate) park_id: u64,
}

/// Ids of receivers' parked claims.
pub(crate) fn next_park_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 4)
}

impl SqliteReceiver {
    fn delivery(&self, row: Claimed, token: i64) -> Option<Delivery> {
        let envelope = match crate::store::decode(&row.envelope) {
            Ok(e) => e,
            Err(e) => {
                self.dead_letter_undecodable(row, token, e);
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
                slot_freed: self.slot_freed.clone(),
                settled: AtomicBool::new(false),
            }),
            envelope,
        })
    }

    /// A row whose envelope does not decode (corruption, a foreign writer) goes to the
    /// error queue as `undecodable` with its raw bytes, in a writer job that reads the
    /// row's `message_id` and `partition_key` (parked per the options) — never left
    /// leased, which would bring it back every lease and hold its key.
    fn dead_letter_undecodable(&self, row: Claimed, token: i64, error: impl std::fmt::Display) {
        self.outstanding.fetch_sub(1, Ordering::AcqRel);
        self.slot_freed.notify_one();
        let (writer, queue) = (self.writer.clone(), self.queue.clone());
        let park = self.options.park_on_dead_letter && self.ordered;
        let id = row.id;
        let poison = Undecodable::new(&queue, row.envelope, error)
            .delivery_count(u32::try_from(row.delivery_count).unwrap_or(u32::MAX))
            .detail("tidings-sqlite-row", id.to_string());
        tokio::spawn(async move {
            let done = writer
                .write::<bool, SqliteError, _>(move |conn| {
                    Box::pin(async move {
                        let found: Option<(String, Option<String>)> = sqlx::query_as(
                            "SELECT message_id, partition_key FROM tidings_messages \
                             WHERE id = ? AND lease_token = ?",
                        )
                        .bind(id)
                        .bind(token)
                        .fetch_optional(&mut *conn)
                        .await?;
                        // Gone or leased again elsewhere: not ours to settle.
                        let Some((message_id, key)) = found else {
                            return Ok(false);
                        };
                        let env = poison
                            .message_id(uuid::Uuid::parse_str(&message_id).ok())
                            .partition_key(key.clone())
                            .into_dead_letter();
                        let dead = DeadRow {
                            id,
                            token,
                            queue: queue.clone(),
                            message_id: env.id.to_string(),
                            message_type: env.message_type.clone(),
                            reason: env.header(headers::FAULT_REASON).map(str::to_string),
                            partition_key: key,
                            envelope: serde_json::to_vec(&env)?,
                            park,
                        };
                        crate::store::dead_letter(conn, &dead).await?;
                        Ok(true)
                    })
                })
                .await;
            if let Err(e) = done {
                tracing::error!(row = id, error = %e,
                    "tidings-sqlite: dead-lettering an undecodable row failed; it comes back after its lease");
            }
        });
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
        // Cancel-safe: all state lives in `self` (pending claim, idle epoch and deadline).
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
            let epoch = wake.epoch();
            let prefetch = self.options.prefetch.max(1);
            let out = self.outstanding.load(Ordering::Acquire).min(prefetch);
            // Claim when at least half the prefetch window is free: big claims under
            // load, an immediate claim when idle.
            let window_ok = self.pending.is_some() || prefetch - out >= prefetch.div_ceil(2);
            let due = match self.idle {
                Some((e, until)) => e != epoch || Instant::now() >= until,
                None => true,
            };
            if window_ok && due {
                let rx = match &mut self.pending {
                    Some(rx) => rx,
                    pending => {
                        let spec = ClaimSpec {
                            queue: self.queue.clone(),
                            max: (prefetch - out).min(MAX_CLAIM),
                            lease_ms: ms(self.options.lease).max(1),
                            ordered: self.ordered,
                        };
                        let (tx, rx) = oneshot::channel();
                        self.writer.fire(Op::Claim {
                            spec,
                            reply: tx,
                            park: Some((self.park_id, self.poll)),
                        });
                        pending.insert(rx)
                    }
                };
                let res = rx.await;
                self.pending = None;
                let res = res.map_err(|_| SqliteError::Closed)??;
                if res.rows.is_empty() && res.waited {
                    // It was parked for the poll interval (or until the next row's time):
                    // look again at once (it parks again).
                    self.idle = None;
                } else if res.rows.is_empty() {
                    let mut wait = self.poll;
                    if let Some(at) = res.next_visible {
                        wait = wait.min(Duration::from_millis((at - now_ms()).max(1) as u64));
                    }
                    self.idle = Some((epoch, Instant::now() + wait));
                } else {
                    self.idle = None;
                    self.outstanding.fetch_add(res.rows.len(), Ordering::AcqRel);
                    self.buffer
                        .extend(res.rows.into_iter().map(|r| (r, res.token)));
                }
                continue;
            }
            let until = match self.idle {
                Some((_, until)) => until,
                None => Instant::now() + self.poll,
            };
            let freed = self.slot_freed.clone();
            tokio::select! {
                _ = notified => {}
                _ = freed.notified(), if !window_ok => {}
                _ = tokio::time::sleep_until(until) => {}
            }
        }
    }

    async fn close(&mut self) -> Result<()> {
        self.closed = true;
        if let Some(rx) = self.pending.take() {
            self.writer.fire(Op::Unpark { id: self.park_id });
            if let Ok(Ok(res)) = rx.await {
                self.outstanding.fetch_add(res.rows.len(), Ordering::AcqRel);
                self.buffer
                    .extend(res.rows.into_iter().map(|r| (r, res.token)));
            }
        }
        self.release_buffered();
        Ok(())
    }
}

impl Drop for SqliteReceiver {
    fn drop(&mut self) {
        self.release_buffered();
        if let (Some(rx), Ok(rt)) = (self.pending.take(), tokio::runtime::Handle::try_current()) {
            // A claim still on its way (or parked): give its rows back when it lands.
            self.writer.fire(Op::Unpark { id: self.park_id });
            let writer = self.writer.clone();
            rt.spawn(async move {
                if let Ok(Ok(res)) = rx.await {
                    for row in res.rows {
                        writer.fire(Op::Requeue {
                            id: row.id,
                            token: res.token,
                            visible_at: now_ms(),
                            envelope: None,
                            uncount: true,
                            reply: None,
                        });
                    }
                }
            });
        }
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
    slot_freed: Arc<Notify>,
    settled: AtomicBool,
}

impl SqliteSettle {
    /// Queues `op` (once per delivery), frees its prefetch slot, and waits for the commit.
    async fn settle(&self, make: impl FnOnce(Reply<()>) -> Op) -> Result<()> {
        if self.settled.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        let (tx, rx) = oneshot::channel();
        self.free_slot();
        self.writer.fire(make(tx));
        rx.await.map_err(|_| SqliteError::Closed)??;
        Ok(())
    }
}

impl SqliteSettle {
    fn free_slot(&self) {
        self.outstanding.fetch_sub(1, Ordering::AcqRel);
        self.slot_freed.notify_one();
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
            self.free_slot();
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
            inbox: None,
            reply: Some(reply),
        })
        .await
    }

    fn inbox_home(&self) -> Option<u64> {
        Some(self.writer.id())
    }

    async fn ack_recording(self: Box<Self>, message_id: Uuid, endpoint: &str) -> Result<()> {
        let (id, token) = (self.id, self.token);
        let inbox = Some((endpoint.to_string(), message_id));
        self.settle(|reply| Op::Ack {
            id,
            token,
            inbox,
            reply: Some(reply),
        })
        .await
    }

    async fn nack(self: Box<Self>, delay: Duration, updated: Option<Envelope>) -> Result<()> {
        let envelope = updated.map(|e| crate::store::encode(&e)).transpose()?;
        let (id, token) = (self.id, self.token);
        let visible_at =
            now_ms() + ms(delay) + i64::from(!delay.subsec_nanos().is_multiple_of(1_000_000));
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
            envelope: crate::store::encode(&envelope)?,
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
