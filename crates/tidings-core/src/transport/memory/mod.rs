//! [`MemoryTransport`]: a complete transport in process memory — delays, fan-out, error
//! queues, leases, per-key order, parking. Not durable. Uses tokio time, so tests under
//! paused time run delay schedules instantly.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::{
    check_sizes, DeadLetter, DeadLetterQuery, Destination, Outgoing, QueueStats, ReceiveOptions,
    Receiver, Topology, Transport,
};
use crate::envelope::headers;
use crate::{Envelope, Error, Result};

mod hash;
mod receiver;

use hash::FastMap;
use receiver::MemoryReceiver;

/// How often claims look for expired leases.
const LEASE_CHECK_EVERY: Duration = Duration::from_millis(5);

/// Default size limit of the in-memory transport: 4 MiB.
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 4 * 1024 * 1024;

struct Msg {
    env: Envelope,
    visible_at: Instant,
    delivery_count: u32,
}

struct InFlight {
    msg: Msg,
    lease_until: Instant,
}

#[derive(Default)]
struct Queue {
    pending: VecDeque<Msg>,
    in_flight: FastMap<u64, InFlight>,
    keys_in_flight: HashSet<String>,
    parked: HashSet<String>,
    errors: Vec<DeadLetter>,
    ordered: bool,
    /// When claims look for expired leases next.
    next_lease_check: Option<Instant>,
}

#[derive(Default)]
struct State {
    queues: FastMap<String, Queue>,
    subscriptions: HashMap<String, BTreeSet<String>>,
}

struct Inner {
    state: Mutex<State>,
    changed: Notify,
    next_token: AtomicU64,
    closed: AtomicBool,
    max_size: usize,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock leaves plain data behind; keep going.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// An in-process transport. Cheap to clone; clones share the same queues.
#[derive(Clone)]
pub struct MemoryTransport {
    inner: Arc<Inner>,
}

impl Default for MemoryTransport {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for MemoryTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryTransport").finish_non_exhaustive()
    }
}

impl MemoryTransport {
    /// A new, empty transport.
    pub fn new() -> Self {
        Self::with_max_message_size(DEFAULT_MAX_MESSAGE_SIZE)
    }

    /// A new transport with a size limit.
    pub fn with_max_message_size(max_size: usize) -> Self {
        MemoryTransport {
            inner: Arc::new(Inner {
                state: Mutex::new(State::default()),
                changed: Notify::new(),
                next_token: AtomicU64::new(1),
                closed: AtomicBool::new(false),
                max_size,
            }),
        }
    }

    fn check_open(&self) -> Result<()> {
        if self.inner.closed.load(Ordering::Acquire) {
            Err(Error::Shutdown)
        } else {
            Ok(())
        }
    }
}

fn visible_at(env: &Envelope) -> Instant {
    let now = Instant::now();
    match env.scheduled_for {
        Some(at) => match (at - Utc::now()).to_std() {
            Ok(d) => now + d,
            Err(_) => now,
        },
        None => now,
    }
}

fn expire_leases(q: &mut Queue, now: Instant) {
    let expired: Vec<u64> = q
        .in_flight
        .iter()
        .filter(|(_, f)| f.lease_until <= now)
        .map(|(t, _)| *t)
        .collect();
    for t in expired {
        if let Some(f) = q.in_flight.remove(&t) {
            requeue(q, f.msg, now);
        }
    }
}

/// Puts a message back in order of its id (UUIDv7: send order) and frees its key.
fn requeue(q: &mut Queue, mut msg: Msg, at: Instant) {
    if let Some(k) = &msg.env.partition_key {
        q.keys_in_flight.remove(k);
    }
    msg.visible_at = at;
    let pos = q.pending.partition_point(|m| m.env.id < msg.env.id);
    q.pending.insert(pos, msg);
}

#[async_trait]
impl Transport for MemoryTransport {
    fn name(&self) -> &'static str {
        "memory"
    }

    fn max_message_size(&self) -> usize {
        self.inner.max_size
    }

    async fn declare(&self, topology: &Topology) -> Result<()> {
        self.check_open()?;
        let mut st = self.inner.lock();
        for spec in &topology.queues {
            let q = st.queues.entry(spec.name.clone()).or_default();
            q.ordered |= spec.ordered;
            for t in &spec.subscriptions {
                st.subscriptions
                    .entry(t.clone())
                    .or_default()
                    .insert(spec.name.clone());
            }
        }
        Ok(())
    }

    async fn send(&self, messages: Vec<Outgoing>) -> Result<()> {
        self.check_open()?;
        check_sizes(&messages, self.inner.max_size)?;
        {
            let mut st = self.inner.lock();
            // Validate every destination first: all or nothing.
            for m in &messages {
                if let Destination::Queue(q) = &m.destination {
                    if !st.queues.contains_key(q) {
                        return Err(Error::UnknownQueue(q.clone()));
                    }
                }
            }
            for m in messages {
                let at = visible_at(&m.envelope);
                let topic = match m.destination {
                    Destination::Queue(q) => {
                        if let Some(q) = st.queues.get_mut(&q) {
                            q.pending.push_back(Msg {
                                env: m.envelope,
                                visible_at: at,
                                delivery_count: 0,
                            });
                        }
                        continue;
                    }
                    Destination::Topic => st
                        .subscriptions
                        .get(&m.envelope.message_type)
                        .map(|s| s.iter().cloned().collect())
                        .unwrap_or_default(),
                };
                let targets: Vec<String> = topic;
                // Copies for all targets but the last, which takes the envelope itself.
                let mut envelope = Some(m.envelope);
                let last = targets.len().saturating_sub(1);
                for (i, t) in targets.iter().enumerate() {
                    let env = if i == last {
                        envelope.take()
                    } else {
                        envelope.clone()
                    };
                    if let (Some(q), Some(env)) = (st.queues.get_mut(t), env) {
                        q.pending.push_back(Msg {
                            env,
                            visible_at: at,
                            delivery_count: 0,
                        });
                    }
                }
            }
        }
        self.inner.changed.notify_waiters();
        Ok(())
    }

    async fn receive(&self, queue: &str, options: ReceiveOptions) -> Result<Box<dyn Receiver>> {
        self.check_open()?;
        if !self.inner.lock().queues.contains_key(queue) {
            return Err(Error::UnknownQueue(queue.to_string()));
        }
        Ok(Box::new(MemoryReceiver {
            inner: self.inner.clone(),
            queue: queue.into(),
            options,
            outstanding: Arc::new(AtomicU64::new(0)),
            closed: false,
        }))
    }

    async fn stats(&self) -> Result<Vec<QueueStats>> {
        let now = Instant::now();
        let st = self.inner.lock();
        let mut out: Vec<QueueStats> = st
            .queues
            .iter()
            .map(|(name, q)| {
                let ready = q.pending.iter().filter(|m| m.visible_at <= now).count() as u64;
                QueueStats {
                    queue: name.clone(),
                    ready,
                    in_flight: Some(q.in_flight.len() as u64),
                    scheduled: Some(q.pending.len() as u64 - ready),
                    oldest_age: q
                        .pending
                        .iter()
                        .map(|m| m.env.sent_at)
                        .min()
                        .and_then(|t| (Utc::now() - t).to_std().ok()),
                    error_depth: q.errors.len() as u64,
                    parked_keys: Some(q.parked.len() as u64),
                }
            })
            .collect();
        out.sort_by(|a, b| a.queue.cmp(&b.queue));
        Ok(out)
    }

    async fn dead_letters(&self, query: &DeadLetterQuery) -> Result<Vec<DeadLetter>> {
        let st = self.inner.lock();
        let mut out: Vec<DeadLetter> = st
            .queues
            .values()
            .flat_map(|q| q.errors.iter())
            .filter(|d| query.matches(d))
            .cloned()
            .collect();
        out.sort_by_key(|d| d.dead_lettered_at);
        if query.limit > 0 {
            out.truncate(query.limit);
        }
        Ok(out)
    }

    async fn replay(&self, query: &DeadLetterQuery, to: Option<&str>) -> Result<u64> {
        // Check the target before taking anything, so a bad target loses nothing.
        if let Some(to) = to {
            if !self.inner.lock().queues.contains_key(to) {
                return Err(Error::UnknownQueue(to.to_string()));
            }
        }
        let taken = self.take_dead_letters(query)?;
        let n = taken.len() as u64;
        {
            let mut st = self.inner.lock();
            for mut dl in taken {
                let count: u32 = dl
                    .envelope
                    .header(headers::REPLAYED)
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                dl.envelope
                    .headers
                    .insert(headers::REPLAYED.into(), (count + 1).to_string());
                let target = to.unwrap_or(&dl.queue).to_string();
                if let Some(q) = st.queues.get_mut(&target) {
                    requeue(
                        q,
                        Msg {
                            env: dl.envelope,
                            visible_at: Instant::now(),
                            delivery_count: 0,
                        },
                        Instant::now(),
                    );
                }
            }
        }
        self.inner.changed.notify_waiters();
        Ok(n)
    }

    async fn purge(&self, query: &DeadLetterQuery) -> Result<u64> {
        let n = self.take_dead_letters(query)?.len() as u64;
        self.inner.changed.notify_waiters();
        Ok(n)
    }

    async fn delete_queue(&self, queue: &str) -> Result<()> {
        self.check_open()?;
        {
            let mut st = self.inner.lock();
            st.queues.remove(queue);
            for subscribers in st.subscriptions.values_mut() {
                subscribers.remove(queue);
            }
            st.subscriptions
                .retain(|_, subscribers| !subscribers.is_empty());
        }
        // Receivers of the deleted queue wake up and end.
        self.inner.changed.notify_waiters();
        Ok(())
    }

    async fn close(&self) -> Result<()> {
        self.inner.closed.store(true, Ordering::Release);
        self.inner.changed.notify_waiters();
        Ok(())
    }
}

impl MemoryTransport {
    /// Removes matching dead letters and unparks their keys.
    fn take_dead_letters(&self, query: &DeadLetterQuery) -> Result<Vec<DeadLetter>> {
        let mut st = self.inner.lock();
        let mut taken = Vec::new();
        for q in st.queues.values_mut() {
            let mut keep = Vec::with_capacity(q.errors.len());
            for d in q.errors.drain(..) {
                if (query.limit == 0 || taken.len() < query.limit) && query.matches(&d) {
                    if let Some(k) = &d.envelope.partition_key {
                        q.parked.remove(k);
                    }
                    taken.push(d);
                } else {
                    keep.push(d);
                }
            }
            q.errors = keep;
        }
        Ok(taken)
    }
}
