//! [`PgReceiver`]: claims batches of up to `prefetch` rows with `FOR UPDATE SKIP LOCKED`,
//! hands them out one by one, and sleeps until a notification, the next scheduled row, or
//! the fallback poll.
//!
//! Claims on unordered queues start after a cursor (the highest `seq` this receiver
//! claimed) so they do not walk the dead index entries acked rows leave at the head of the
//! queue; a claim from the head runs when the cursor finds too little and at least every
//! `rescan_interval`, picking up redeliveries (nacks, expired leases) behind the cursor.
//!
//! Rows waiting in `scheduled` are promoted into `messages` by the receivers of their
//! queue: at least every `rescan_interval`, and as soon as the receiver, idle, learns that
//! the next one is due. A promoted row keeps its `seq`, so the claim that follows starts
//! from the head.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use sqlx::Row;
use tidings_core::transport::undecodable::Undecodable;
use tidings_core::transport::{Delivery, ReceiveOptions, Receiver};
use tidings_core::{Envelope, ErrorKind, Result};
use tokio::sync::Notify;
use uuid::Uuid;

use crate::error::PgError;
use crate::schema::PROMOTE_BATCH;
use crate::settle::{OpKind, PgSettle};
use crate::transport::Shared;

/// Most rows taken by one claim.
const MAX_BATCH: usize = 256;

/// A receiver on one queue.
pub(crate) struct PgReceiver {
    shared: Arc<Shared>,
    queue: Arc<str>,
    options: ReceiveOptions,
    ordered: bool,
    notify: Arc<Notify>,
    outstanding: Arc<AtomicUsize>,
    buffer: VecDeque<Buffered>,
    cursor: i64,
    last_rescan: Instant,
    last_promote: Instant,
    /// When a row of the queue is next due (learned while idle).
    next_due: Option<Instant>,
    closed: bool,
}

impl PgReceiver {
    pub(crate) fn new(
        shared: Arc<Shared>,
        queue: &str,
        options: ReceiveOptions,
        ordered: bool,
    ) -> Self {
        let notify = shared.wake.get(queue);
        let rescan = shared.config.rescan_interval;
        let long_ago = Instant::now()
            .checked_sub(rescan)
            .unwrap_or_else(Instant::now);
        PgReceiver {
            shared,
            queue: Arc::from(queue),
            options,
            ordered,
            notify,
            outstanding: Arc::new(AtomicUsize::new(0)),
            buffer: VecDeque::new(),
            cursor: 0,
            last_rescan: long_ago,
            last_promote: long_ago,
            next_due: None,
            closed: false,
        }
    }

    /// Claims up to `n` rows after `after`; returns how many were buffered.
    async fn claim(&mut self, n: usize, after: i64) -> std::result::Result<usize, PgError> {
        let sql = &self.shared.sql;
        let stmt = if self.ordered {
            &sql.claim_ordered
        } else {
            &sql.claim
        };
        let claim = Uuid::new_v4();
        let rows = sqlx::query(stmt.sql())
            .bind(&*self.queue)
            .bind(n as i64)
            .bind(self.options.lease.as_secs_f64())
            .bind(claim)
            .bind(after)
            .fetch_all(&self.shared.pool)
            .await
            .map_err(PgError::db("claim"))?;
        let mut claimed: Vec<(i64, i32, Vec<u8>)> = rows
            .into_iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
            .collect::<std::result::Result<_, sqlx::Error>>()
            .map_err(PgError::db("claim"))?;
        claimed.sort_by_key(|c| c.0);
        let got = claimed.len();
        let park = self.options.park_on_dead_letter && self.ordered;
        for (seq, count, blob) in claimed {
            self.cursor = self.cursor.max(seq);
            self.outstanding.fetch_add(1, Ordering::AcqRel);
            let settle = PgSettle {
                shared: self.shared.clone(),
                queue: self.queue.clone(),
                seq,
                claim,
                ordered: self.ordered,
                park,
                outstanding: self.outstanding.clone(),
                notify: self.notify.clone(),
                settled: AtomicBool::new(false),
            };
            match Envelope::from_json(&blob) {
                Ok(envelope) => self.buffer.push_back(Buffered {
                    envelope,
                    delivery_count: u32::try_from(count).unwrap_or(u32::MAX),
                    settle: Box::new(settle),
                }),
                Err(e) => {
                    let count = u32::try_from(count).unwrap_or(u32::MAX);
                    let poison = Undecodable::new(&self.queue, blob, e)
                        .delivery_count(count)
                        .detail("tidings-postgres-seq", seq.to_string());
                    self.dead_letter_undecodable(poison, settle).await;
                }
            }
        }
        Ok(got)
    }

    /// A row whose envelope does not decode (corruption, a foreign writer) goes to the
    /// error queue as `undecodable` with its raw bytes and its `id` and `partition_key`
    /// columns (so an ordered queue parks or releases the key per its options) — never
    /// left leased, which would bring it back every lease and hold its key. If that
    /// fails the row comes back (the dropped settlement requeues it).
    async fn dead_letter_undecodable(&self, poison: Undecodable, settle: PgSettle) {
        let meta = sqlx::query_as::<_, (Uuid, Option<String>)>(self.shared.sql.claimed_meta.sql())
            .bind(&*self.queue)
            .bind(settle.seq)
            .bind(settle.claim)
            .fetch_optional(&self.shared.pool)
            .await;
        let poison = match meta {
            Ok(Some((id, key))) => poison.message_id(Some(id)).partition_key(key),
            Ok(None) => {
                // Its claim is gone (lease taken elsewhere): not ours to settle.
                settle.settled.store(true, Ordering::Release);
                self.outstanding.fetch_sub(1, Ordering::AcqRel);
                return;
            }
            Err(e) => {
                tracing::error!(queue = %self.queue, seq = settle.seq, error = %e,
                    "tidings-postgres: reading an undecodable row failed; it comes back");
                return;
            }
        };
        let _ = poison.dead_letter(Box::new(settle)).await;
    }

    /// Moves due rows of the queue from `scheduled` into `messages`; returns how many.
    async fn promote(&self) -> std::result::Result<i64, PgError> {
        let sql = &self.shared.sql;
        let row = sqlx::query(sql.promote.sql())
            .bind(&*self.queue)
            .bind(PROMOTE_BATCH)
            .bind(&sql.channel)
            .fetch_one(&self.shared.pool)
            .await
            .map_err(PgError::db("promote"))?;
        row.try_get(0).map_err(PgError::db("promote"))
    }

    /// Fills the buffer with up to `room` deliveries; returns how many.
    async fn fill(&mut self, room: usize) -> std::result::Result<usize, PgError> {
        let want = room.min(MAX_BATCH);
        let every = self.shared.config.rescan_interval;
        let now = Instant::now();
        let mut rescan_due = now.duration_since(self.last_rescan) >= every;
        if now.duration_since(self.last_promote) >= every || self.next_due.is_some_and(|t| t <= now)
        {
            self.last_promote = now;
            self.next_due = None;
            let moved = self.promote().await?;
            if moved > 0 {
                // Promoted rows sit behind the cursor.
                rescan_due = true;
            }
            if moved >= PROMOTE_BATCH {
                self.next_due = Some(now);
            }
        }
        let mut got = 0;
        if !self.ordered && !rescan_due && self.cursor > 0 {
            got = self.claim(want, self.cursor).await?;
        }
        if got < want {
            self.last_rescan = Instant::now();
            got += self.claim(want - got, 0).await?;
        }
        Ok(got)
    }

    /// How long until the next row of the queue becomes visible, if any.
    async fn next_visible(&self) -> std::result::Result<Option<Duration>, PgError> {
        let secs: Option<f64> = sqlx::query_scalar(self.shared.sql.next_visible.sql())
            .bind(&*self.queue)
            .fetch_one(&self.shared.pool)
            .await
            .map_err(PgError::db("next visible"))?;
        Ok(secs.map(|s| Duration::from_secs_f64(s.max(0.0))))
    }

    /// Releases every buffered delivery and waits for it to be written.
    async fn release_buffered(&mut self) {
        let waits: Vec<_> = self
            .buffer
            .drain(..)
            .filter_map(|b| b.settle.submit(OpKind::Release))
            .collect();
        for w in waits {
            let _ = w.await;
        }
    }
}

/// A claimed delivery not yet handed out.
struct Buffered {
    envelope: Envelope,
    delivery_count: u32,
    settle: Box<PgSettle>,
}

#[async_trait]
impl Receiver for PgReceiver {
    async fn recv(&mut self) -> Result<Option<Delivery>> {
        let mut backoff = Duration::from_millis(50);
        loop {
            if self.closed || self.shared.is_closed() {
                return Ok(None);
            }
            if let Some(b) = self.buffer.pop_front() {
                return Ok(Some(Delivery {
                    envelope: b.envelope,
                    delivery_count: b.delivery_count,
                    queue: self.queue.to_string(),
                    settle: b.settle,
                }));
            }
            let notify = self.notify.clone();
            let notified = notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let prefetch = self.options.prefetch.max(1);
            let room = prefetch.saturating_sub(self.outstanding.load(Ordering::Acquire));
            let mut wait = self.shared.config.poll_interval;
            if room > 0 {
                match self.fill(room).await {
                    Ok(0) => {
                        backoff = Duration::from_millis(50);
                        match self.next_visible().await {
                            Ok(Some(d)) => {
                                self.next_due = Some(Instant::now() + d);
                                wait = wait.min(d + Duration::from_millis(1));
                            }
                            Ok(None) => {}
                            Err(e) if e.kind() == ErrorKind::Transient => wait = backoff,
                            Err(e) => return Err(e.into()),
                        }
                    }
                    Ok(_) => continue,
                    Err(e) if e.kind() == ErrorKind::Transient && !self.shared.is_closed() => {
                        tracing::warn!(queue = %self.queue, error = %e,
                            "tidings-postgres: claim failed; retrying");
                        wait = backoff;
                        backoff = (backoff * 2).min(Duration::from_secs(2));
                    }
                    Err(_) if self.shared.is_closed() => return Ok(None),
                    Err(e) => return Err(e.into()),
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
        self.release_buffered().await;
        Ok(())
    }
}

impl Drop for PgReceiver {
    fn drop(&mut self) {
        // Buffered deliveries requeue themselves when dropped (see `PgSettle`'s Drop).
        self.buffer.clear();
    }
}
