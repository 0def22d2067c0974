//! Settling a delivery, and the per-receiver state settlements share with the receiver
//! (partition keys in flight, deliveries waiting for their key, held redeliveries).
//!
//! - `ack` → `basic.ack`.
//! - `nack(delay)` → the (updated) message is published to the delay levels, bound back to
//!   its queue, with `tidings.delivery-count` carried over; once confirmed the original is
//!   acked. On an ordered receiver, a keyed message is instead held in process for `delay`
//!   (still unacked, its key still blocked) and handed out again: later messages of the
//!   key cannot overtake it. Its updated headers live in memory only until then.
//! - `dead_letter` → published (with fault headers and `tidings.dead-lettered-at`) to
//!   `<queue>_error`; once confirmed the original is acked.
//! - `release` → `basic.nack(requeue)`; quorum queues count that as a delivery.
//! - `extend_lease` → nothing: RabbitMQ has no lease; an unacked delivery stays with its
//!   consumer until settled or its channel closes (the broker's `consumer_timeout`,
//!   30 min by default, closes channels that hold one longer).
//! - dropped unsettled → `basic.nack(requeue)` in the background.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use lapin::options::{BasicAckOptions, BasicNackOptions};
use lapin::{Acker, Channel};
use tokio::sync::Notify;
use tokio::time::Instant;

use tidings_core::transport::{error_queue_name, Settle};
use tidings_core::{Envelope, Result};

use crate::codec::Extra;
use crate::connection::Connector;
use crate::error::RabbitMqError;
use crate::publisher::{publish_all, Publish};
use crate::topology::DelayTarget;

/// A delivery taken from the broker, not yet settled.
pub(crate) struct Pending {
    pub(crate) acker: Acker,
    /// Keeps the channel open while the delivery is unsettled.
    pub(crate) channel: Channel,
    pub(crate) envelope: Envelope,
    pub(crate) count: u32,
}

impl Pending {
    pub(crate) fn key(&self) -> Option<&str> {
        self.envelope.partition_key.as_deref()
    }

    fn alive(&self) -> bool {
        self.channel.status().connected() && self.acker.usable()
    }
}

/// Receiver state shared with its settlements.
#[derive(Default)]
pub(crate) struct RecvState {
    /// Partition keys with a delivery out (ordered receivers).
    pub(crate) keys: HashSet<String>,
    /// Received while their key was busy, in arrival order.
    pub(crate) waiting: VecDeque<Pending>,
    /// Ordered redeliveries waiting for their delay (their key stays busy).
    pub(crate) held: Vec<(Instant, Pending)>,
}

impl RecvState {
    /// The next delivery to hand out, if any: a due held redelivery, else the first
    /// waiting delivery whose key is free. Deliveries of dead channels are dropped (the
    /// broker delivers them again).
    pub(crate) fn take_ready(&mut self, now: Instant) -> Option<Pending> {
        let mut i = 0;
        while i < self.held.len() {
            if !self.held[i].1.alive() {
                let (_, p) = self.held.swap_remove(i);
                if let Some(k) = p.key() {
                    self.keys.remove(k);
                }
            } else {
                i += 1;
            }
        }
        self.waiting.retain(|p| p.alive());
        if let Some(i) = (0..self.held.len())
            .filter(|&i| self.held[i].0 <= now)
            .min_by_key(|&i| self.held[i].0)
        {
            return Some(self.held.swap_remove(i).1);
        }
        let i = self
            .waiting
            .iter()
            .position(|p| p.key().is_none_or(|k| !self.keys.contains(k)))?;
        let p = self.waiting.remove(i)?;
        if let Some(k) = p.key() {
            self.keys.insert(k.to_string());
        }
        Some(p)
    }

    /// When the next held redelivery is due.
    pub(crate) fn next_due(&self) -> Option<Instant> {
        self.held.iter().map(|h| h.0).min()
    }
}

/// State and wake-up shared by a receiver and its settlements.
#[derive(Default)]
pub(crate) struct RecvShared {
    state: Mutex<RecvState>,
    pub(crate) notify: Notify,
}

impl RecvShared {
    pub(crate) fn lock(&self) -> MutexGuard<'_, RecvState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn free_key(&self, key: Option<&str>) {
        if let Some(k) = key {
            self.lock().keys.remove(k);
        }
        self.notify.notify_one();
    }
}

/// [`Settle`] for one RabbitMQ delivery.
pub(crate) struct RabbitSettle {
    pub(crate) conn: Arc<Connector>,
    pub(crate) shared: Arc<RecvShared>,
    pub(crate) queue: String,
    pub(crate) ordered: bool,
    pub(crate) pending: Mutex<Option<Pending>>,
}

impl RabbitSettle {
    fn take(&self) -> Option<Pending> {
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }

    /// Acks `p` and frees its key.
    async fn ack_pending(&self, p: Pending) -> Result<()> {
        let r = p.acker.ack(BasicAckOptions::default()).await;
        self.conn.forget(p.envelope.id);
        self.shared.free_key(p.key());
        match r {
            Ok(true) => Ok(()),
            Ok(false) => Err(RabbitMqError::StaleDelivery(p.envelope.id.to_string()).into()),
            Err(e) => Err(self.conn.err("basic.ack", &e).into()),
        }
    }

    /// Publishes `publish`, then acks `p`; on failure gives `p` back to the queue.
    async fn move_to(&self, p: Pending, publish: Publish) -> Result<()> {
        if let Err(e) = publish_all(&self.conn, vec![publish]).await {
            let _ = p.acker.nack(requeue()).await;
            self.shared.free_key(p.key());
            return Err(e);
        }
        self.ack_pending(p).await
    }
}

fn requeue() -> BasicNackOptions {
    BasicNackOptions {
        requeue: true,
        ..BasicNackOptions::default()
    }
}

fn already_settled() -> tidings_core::Error {
    tidings_core::Error::Transport {
        message: "delivery already settled".into(),
        kind: tidings_core::ErrorKind::Permanent,
        source: None,
    }
}

#[async_trait]
impl Settle for RabbitSettle {
    async fn ack(self: Box<Self>) -> Result<()> {
        let p = self.take().ok_or_else(already_settled)?;
        self.ack_pending(p).await
    }

    async fn nack(self: Box<Self>, delay: Duration, updated: Option<Envelope>) -> Result<()> {
        let mut p = self.take().ok_or_else(already_settled)?;
        if let Some(u) = updated {
            p.envelope.headers = u.headers;
        }
        if self.ordered && p.key().is_some() && p.alive() {
            p.count = p.count.saturating_add(1);
            self.shared.lock().held.push((Instant::now() + delay, p));
            self.shared.notify.notify_one();
            return Ok(());
        }
        let extra = Extra {
            delivery_count: p.count,
            ..Extra::default()
        };
        let publish = if delay.is_zero() {
            Publish::to_queue(&self.queue, &p.envelope, &extra)?
        } else {
            Publish::delayed(
                self.conn.config.queue_type,
                DelayTarget::Queue(&self.queue),
                delay,
                &p.envelope,
                &extra,
            )?
        };
        self.move_to(p, publish).await
    }

    async fn dead_letter(self: Box<Self>, envelope: Envelope) -> Result<()> {
        let p = self.take().ok_or_else(already_settled)?;
        let extra = Extra {
            dead_lettered_at: Some(Utc::now()),
            ..Extra::default()
        };
        let publish = Publish::to_queue(&error_queue_name(&self.queue), &envelope, &extra)?;
        self.move_to(p, publish).await
    }

    async fn release(self: Box<Self>) -> Result<()> {
        let p = self.take().ok_or_else(already_settled)?;
        self.conn.note_given_back(p.envelope.id);
        let r = p.acker.nack(requeue()).await;
        self.shared.free_key(p.key());
        match r {
            Ok(true) => Ok(()),
            // The channel is gone: the broker gives the message back by itself.
            Ok(false) => Ok(()),
            Err(e) => Err(self.conn.err("basic.nack", &e).into()),
        }
    }

    async fn extend_lease(&self, _by: Duration) -> Result<()> {
        Ok(())
    }
}

impl Drop for RabbitSettle {
    fn drop(&mut self) {
        if let Some(p) = self.take() {
            self.shared.free_key(p.key());
            if let Ok(handle) = tokio::runtime::Handle::try_current() {
                handle.spawn(async move {
                    let _ = p.acker.nack(requeue()).await;
                    drop(p.channel);
                });
            }
        }
    }
}
