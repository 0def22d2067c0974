//! The in-memory receiver (claims under a lease, per-key order, parking) and its
//! settlement (ack, nack with delay, dead letter).

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use tokio::time::Instant;

use super::{expire_leases, requeue, InFlight, Inner, Msg, Queue, LEASE_CHECK_EVERY};
use crate::transport::{DeadLetter, Delivery, ReceiveOptions, Receiver, Settle};
use crate::{Envelope, Result};

pub(super) struct MemoryReceiver {
    pub(super) inner: Arc<Inner>,
    pub(super) queue: Arc<str>,
    pub(super) options: ReceiveOptions,
    pub(super) outstanding: Arc<AtomicU64>,
    pub(super) closed: bool,
}

impl MemoryReceiver {
    /// Claims the first visible message whose key is free: `Ok(None)` when the queue was
    /// deleted (nothing will ever arrive), `Err` with when to look again otherwise.
    fn claim(&self) -> std::result::Result<Option<Delivery>, Option<Instant>> {
        let now = Instant::now();
        let mut st = self.inner.lock();
        let Some(q) = st.queues.get_mut(&*self.queue) else {
            return Ok(None);
        };
        // Leases are seconds long: looking for expired ones every few milliseconds is
        // enough, and keeps a claim from walking every in-flight message.
        if q.next_lease_check.is_none_or(|t| now >= t) {
            expire_leases(q, now);
            q.next_lease_check = Some(now + LEASE_CHECK_EVERY);
        }
        let ordered = self.options.ordered || q.ordered;
        let mut next_wake: Option<Instant> = None;
        let mut found = None;
        // Keys whose earliest pending message is not visible yet (ordered queues only).
        let mut waiting: HashSet<&str> = HashSet::new();
        for (i, m) in q.pending.iter().enumerate() {
            if let Some(k) = &m.env.partition_key {
                if q.parked.contains(k)
                    || (ordered && (q.keys_in_flight.contains(k) || waiting.contains(k.as_str())))
                {
                    continue;
                }
            }
            if m.visible_at > now {
                next_wake = Some(next_wake.map_or(m.visible_at, |w| w.min(m.visible_at)));
                // A later message with the same key must not overtake this one; other
                // keys keep flowing.
                if let (true, Some(k)) = (ordered, &m.env.partition_key) {
                    waiting.insert(k);
                }
                continue;
            }
            found = Some(i);
            break;
        }
        let Some(i) = found else {
            // A lease that ends is seen at the next check, not before.
            let lease_end = q
                .in_flight
                .values()
                .map(|f| f.lease_until)
                .min()
                .map(|t| q.next_lease_check.map_or(t, |c| t.max(c)));
            return Err(match (next_wake, lease_end) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            });
        };
        let Some(mut msg) = q.pending.remove(i) else {
            return Err(next_wake);
        };
        msg.delivery_count += 1;
        if ordered {
            if let Some(k) = &msg.env.partition_key {
                q.keys_in_flight.insert(k.clone());
            }
        }
        let token = self.inner.next_token.fetch_add(1, Ordering::Relaxed);
        let env = msg.env.clone();
        let count = msg.delivery_count;
        q.in_flight.insert(
            token,
            InFlight {
                msg,
                lease_until: now + self.options.lease,
            },
        );
        drop(st);
        self.outstanding.fetch_add(1, Ordering::AcqRel);
        Ok(Some(Delivery {
            envelope: env,
            delivery_count: count,
            queue: self.queue.to_string(),
            settle: Box::new(MemorySettle {
                inner: self.inner.clone(),
                queue: self.queue.clone(),
                token,
                park: self.options.park_on_dead_letter && ordered,
                outstanding: self.outstanding.clone(),
                settled: AtomicBool::new(false),
            }),
        }))
    }
}

#[async_trait]
impl Receiver for MemoryReceiver {
    async fn recv(&mut self) -> Result<Option<Delivery>> {
        loop {
            if self.closed || self.inner.closed.load(Ordering::Acquire) {
                return Ok(None);
            }
            let full = || self.outstanding.load(Ordering::Acquire) >= self.options.prefetch as u64;
            // Fast path: a message is there; no wake-up to register.
            if !full() {
                if let Ok(d) = self.claim() {
                    return Ok(d);
                }
            }
            let notified = self.inner.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            // Look again now that a change wakes us: one may have come in between.
            let wake = if full() {
                if !self.inner.lock().queues.contains_key(&*self.queue) {
                    return Ok(None);
                }
                None
            } else {
                match self.claim() {
                    Ok(d) => return Ok(d),
                    Err(w) => w,
                }
            };
            match wake {
                Some(at) => {
                    tokio::select! {
                        _ = notified => {}
                        _ = tokio::time::sleep_until(at) => {}
                    }
                }
                None => notified.await,
            }
        }
    }

    async fn close(&mut self) -> Result<()> {
        self.closed = true;
        Ok(())
    }
}

struct MemorySettle {
    inner: Arc<Inner>,
    queue: Arc<str>,
    token: u64,
    park: bool,
    outstanding: Arc<AtomicU64>,
    settled: AtomicBool,
}

impl MemorySettle {
    /// Takes the in-flight message (None if its lease expired and it went back).
    fn take(&self, f: impl FnOnce(&mut Queue, Msg)) {
        if self.settled.swap(true, Ordering::AcqRel) {
            return;
        }
        self.outstanding.fetch_sub(1, Ordering::AcqRel);
        {
            let mut st = self.inner.lock();
            if let Some(q) = st.queues.get_mut(&*self.queue) {
                if let Some(fl) = q.in_flight.remove(&self.token) {
                    if let Some(k) = &fl.msg.env.partition_key {
                        q.keys_in_flight.remove(k);
                    }
                    f(q, fl.msg);
                }
            }
        }
        self.inner.changed.notify_waiters();
    }
}

impl Drop for MemorySettle {
    fn drop(&mut self) {
        // Dropped unsettled (a crashed consumer): the message comes back at once.
        self.take(|q, m| requeue(q, m, Instant::now()));
    }
}

#[async_trait]
impl Settle for MemorySettle {
    async fn ack(self: Box<Self>) -> Result<()> {
        self.take(|_, _| {});
        Ok(())
    }

    async fn nack(self: Box<Self>, delay: Duration, updated: Option<Envelope>) -> Result<()> {
        self.take(|q, mut m| {
            if let Some(u) = updated {
                m.env.headers = u.headers;
            }
            requeue(q, m, Instant::now() + delay);
        });
        Ok(())
    }

    async fn dead_letter(self: Box<Self>, envelope: Envelope) -> Result<()> {
        let park = self.park;
        let queue = self.queue.clone();
        self.take(|q, _| {
            if park {
                if let Some(k) = &envelope.partition_key {
                    q.parked.insert(k.clone());
                }
            }
            q.errors.push(DeadLetter {
                queue: queue.to_string(),
                envelope,
                dead_lettered_at: Utc::now(),
            });
        });
        Ok(())
    }

    async fn release(self: Box<Self>) -> Result<()> {
        self.take(|q, mut m| {
            m.delivery_count = m.delivery_count.saturating_sub(1);
            requeue(q, m, Instant::now());
        });
        Ok(())
    }

    async fn extend_lease(&self, by: Duration) -> Result<()> {
        let mut st = self.inner.lock();
        if let Some(f) = st
            .queues
            .get_mut(&*self.queue)
            .and_then(|q| q.in_flight.get_mut(&self.token))
        {
            f.lease_until = Instant::now() + by;
        }
        Ok(())
    }
}
