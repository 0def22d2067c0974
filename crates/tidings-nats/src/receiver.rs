//! [`NatsReceiver`]: deliveries from a queue's durable pull consumer(s).
//!
//! Pulling is driven by `recv`, like claiming in the other transports: when nothing is
//! buffered, `recv` asks each of the queue's consumers (one, or one per partition of an
//! ordered queue) for up to as many messages as free prefetch slots (`fetch`, no wait);
//! when none is there, for one message with a long poll of [`PULL_EXPIRES`], so a new
//! message is pushed the moment it arrives. Pulls run as tasks that outlive a cancelled
//! `recv` (what they bring is kept for the next call), and every pull is a fresh
//! request, so once async-nats has reconnected the next pull simply works.
//!
//! Prefetch is a semaphore: a slot is held from hand-out to settlement, so at most
//! `prefetch` deliveries are out unsettled; messages buffered from one fetch wait for a
//! slot (at most `prefetch` of them, plus one per partition from long polls).
//!
//! Messages scheduled for later wait in the queue's delay stream (see `delay`); each
//! receiver runs a pump that moves them onto the queue when due. One still found early
//! here is moved there, and not handed out. Closing stops the pump, waits for open pulls
//! to end and releases (`-NAK`) everything buffered.
//!
//! A message without Tidings' envelope header (a raw publish on the queue's subject) is
//! not handed out: it is dead-lettered as `undecodable` (see
//! `tidings_core::transport::undecodable`), and TERMed once in the error stream.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::PullConsumer;
use async_nats::jetstream::message::AckKind;
use async_nats::jetstream::Message;
use async_trait::async_trait;
use chrono::Utc;
use futures::StreamExt;
use tidings_core::transport::undecodable::Undecodable;
use tidings_core::transport::{Delivery, ReceiveOptions, Receiver};
use tidings_core::Result;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::{Id, JoinSet};

use crate::codec;
use crate::delay::{not_due, Pump};
use crate::error::NatsError;
use crate::settle::NatsSettle;
use crate::topology::is_not_found;
use crate::transport::Shared;

/// How long one long-poll pull waits on the server for a message, at most (each pull
/// draws its own wait between 1.0 and 1.4 s, see [`long_poll`]).
pub(crate) const PULL_EXPIRES: Duration = Duration::from_millis(1400);

/// The wait of one long poll: 1.0–1.4 s, drawn per pull. nats-server 2.9 can lose a
/// redelivery that becomes due in the same instant a waiting pull request expires (the
/// message counts as delivered but never reaches the client, so it comes back only after
/// `ack_wait`); seen under load when a `nack(1 s)` was followed by a 1 s long poll. A
/// wait that is not a round number, and differs per pull, keeps redeliveries due after
/// round delays from landing on an expiry.
fn long_poll() -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    Duration::from_millis(1000 + u64::from(nanos % 400))
}

/// Largest batch of one fetch.
const MAX_BATCH: usize = 256;

/// What one pull brought, and the error that ended it early, if any. Messages received
/// before an error are kept: dropping one would leave it pending on the consumer until
/// its `ack_wait` (the lease) ran out.
pub(crate) struct PullResult {
    pub(crate) msgs: Vec<Message>,
    pub(crate) error: Option<String>,
}

/// Deliveries from one queue.
pub(crate) struct NatsReceiver {
    shared: Arc<Shared>,
    queue: String,
    consumers: Vec<PullConsumer>,
    busy: Vec<bool>,
    pulls: JoinSet<(usize, PullResult)>,
    pull_ids: HashMap<Id, usize>,
    buffer: VecDeque<Message>,
    permits: Arc<Semaphore>,
    lease: Duration,
    ordered: bool,
    park: bool,
    closed: bool,
    backoff: Duration,
    pump: Pump,
}

/// One pull: what is there now (a `no_wait` request without expiry, answered at once),
/// else one message within [`long_poll`]. Bounded in
/// time even if the connection drops under it (a lost request gets no answer); what
/// arrived before that bound is returned, never dropped.
pub(crate) async fn pull(consumer: PullConsumer, n: usize) -> PullResult {
    let mut msgs = Vec::new();
    // async-nats ends a batch itself `expires + 5 s` after asking; this bound only covers
    // a request that never got out.
    let bound = PULL_EXPIRES * 2 + Duration::from_secs(6);
    let error = match tokio::time::timeout(bound, pull_once(consumer, n, &mut msgs)).await {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(e),
        Err(_) => Some("pull got no answer (connection lost?)".into()),
    };
    PullResult { msgs, error }
}

async fn pull_once(consumer: PullConsumer, n: usize, out: &mut Vec<Message>) -> Result<(), String> {
    let mut batch = consumer
        .fetch()
        .max_messages(n)
        .messages()
        .await
        .map_err(|e| e.to_string())?;
    while let Some(m) = batch.next().await {
        out.push(m.map_err(|e| e.to_string())?);
    }
    if out.is_empty() {
        let mut batch = consumer
            .batch()
            .max_messages(1)
            .expires(long_poll())
            .messages()
            .await
            .map_err(|e| e.to_string())?;
        while let Some(m) = batch.next().await {
            out.push(m.map_err(|e| e.to_string())?);
        }
    }
    Ok(())
}

fn release_later(msgs: Vec<Message>) {
    if msgs.is_empty() {
        return;
    }
    if let Ok(rt) = tokio::runtime::Handle::try_current() {
        rt.spawn(async move {
            for m in msgs {
                let _ = m.ack_with(AckKind::Nak(None)).await;
            }
        });
    }
}

impl NatsReceiver {
    pub(crate) async fn start(
        shared: Arc<Shared>,
        queue: &str,
        options: ReceiveOptions,
    ) -> Result<Self> {
        let (consumers, ordered) = shared
            .ensure_consumers(queue, options.ordered, Some(options.lease))
            .await?;
        let delay = shared.ensure_delay(queue).await?;
        Ok(NatsReceiver {
            pump: Pump::start(shared.clone(), queue.to_string(), delay),
            queue: queue.to_string(),
            busy: vec![false; consumers.len()],
            consumers,
            pulls: JoinSet::new(),
            pull_ids: HashMap::new(),
            buffer: VecDeque::new(),
            permits: Arc::new(Semaphore::new(options.prefetch.max(1))),
            lease: options.lease,
            ordered,
            park: ordered && options.park_on_dead_letter,
            closed: false,
            backoff: Duration::from_millis(50),
            shared,
        })
    }

    /// Starts a pull on every consumer that has none open.
    fn start_pulls(&mut self) {
        let free = self.permits.available_permits().clamp(1, MAX_BATCH);
        for (i, c) in self.consumers.iter().enumerate() {
            if self.busy[i] {
                continue;
            }
            let n = if self.ordered { 1 } else { free };
            let c = c.clone();
            let h = self.pulls.spawn(async move { (i, pull(c, n).await) });
            self.pull_ids.insert(h.id(), i);
            self.busy[i] = true;
        }
    }

    /// Waits for one pull to end and buffers what it brought.
    async fn finish_pull(&mut self) -> Result<()> {
        let Some(done) = self.pulls.join_next_with_id().await else {
            return Ok(());
        };
        let (id, result) = match done {
            Ok((id, (_, r))) => (id, r),
            Err(e) => (
                e.id(),
                PullResult {
                    msgs: Vec::new(),
                    error: Some(e.to_string()),
                },
            ),
        };
        if let Some(i) = self.pull_ids.remove(&id) {
            self.busy[i] = false;
        }
        self.buffer.extend(result.msgs);
        match result.error {
            None => {
                self.backoff = Duration::from_millis(50);
                Ok(())
            }
            Some(e) if is_not_found(&e) => Err(NatsError::UnknownQueue(self.queue.clone()).into()),
            Some(e) => {
                tracing::warn!(queue = %self.queue, error = %self.shared.cfg.scrub(&e), "pull failed; retrying");
                tokio::time::sleep(self.backoff).await;
                self.backoff = (self.backoff * 2).min(Duration::from_secs(2));
                Ok(())
            }
        }
    }

    /// If the first buffered message's key is parked, moves it to the park stream and
    /// says so. (It stays buffered until moved: a cancelled call loses nothing.)
    async fn park_if_parked(&mut self) -> Result<bool> {
        let Some(front) = self.buffer.front() else {
            return Ok(false);
        };
        let Ok(env) = codec::decode(front.headers.as_ref(), front.payload.clone()) else {
            return Ok(false);
        };
        let Some(key) = env.partition_key.clone() else {
            return Ok(false);
        };
        if !self.shared.is_parked(&self.queue, &key).await? {
            return Ok(false);
        }
        self.shared
            .park_message(&self.queue, &key, front, &env)
            .await?;
        self.buffer.pop_front();
        Ok(true)
    }

    /// A message that is not a Tidings envelope (a raw publish on the queue's subject)
    /// goes to the error stream as `undecodable` with its payload, then is TERMed; its
    /// partition key is unknown, so an ordered partition is released, never parked.
    fn dead_letter_undecodable(
        &self,
        msg: Message,
        permit: OwnedSemaphorePermit,
        delivered: u32,
        stream_seq: u64,
        error: NatsError,
    ) {
        let poison = Undecodable::new(&self.queue, msg.payload.clone(), error)
            .delivery_count(delivered)
            .detail("nats-subject", msg.subject.as_str());
        let reply = msg.message.reply.clone();
        let (_, acker) = msg.split();
        let settle = NatsSettle {
            shared: self.shared.clone(),
            acker: Some(acker),
            reply,
            queue: self.queue.clone(),
            dead_letter_id: format!("undecodable:{}:dl:{stream_seq}", self.queue),
            park_key: None,
            permit: Some(permit),
            lease: self.lease,
            keeper: std::sync::Mutex::new(None),
        };
        tokio::spawn(poison.dead_letter(Box::new(settle)));
    }

    /// Turns a message into a delivery; `None` if it is not due yet (sent back with a delay).
    fn delivery(&self, msg: Message, permit: OwnedSemaphorePermit) -> Option<Delivery> {
        let (delivered, published, stream_seq) = match msg.info() {
            Ok(i) => (i.delivered.max(1) as u32, i.published, i.stream_sequence),
            Err(_) => (1, Utc::now(), 0),
        };
        let envelope = match codec::decode(msg.headers.as_ref(), msg.payload.clone()) {
            Ok(e) => e,
            Err(e) => {
                self.dead_letter_undecodable(msg, permit, delivered, stream_seq, e);
                return None;
            }
        };
        let mut delivery_count = delivered;
        if let Some(at) = envelope.scheduled_for {
            if let Some(left) = not_due(Some(at)) {
                let (shared, queue) = (self.shared.clone(), self.queue.clone());
                tokio::spawn(async move { shared.defer(&queue, msg, &envelope, left).await });
                return None;
            }
            // Waited on the queue (no delay stream): one delivery was spent finding it early.
            if at > published && delivered > 1 {
                delivery_count -= 1;
            }
        }
        let reply = msg.message.reply.clone();
        let (_, acker) = msg.split();
        Some(Delivery {
            delivery_count,
            queue: self.queue.clone(),
            settle: Box::new(NatsSettle {
                shared: self.shared.clone(),
                acker: Some(acker),
                reply,
                queue: self.queue.clone(),
                dead_letter_id: format!("{}:dl:{stream_seq}", envelope.id),
                park_key: if self.park {
                    envelope.partition_key.clone()
                } else {
                    None
                },
                permit: Some(permit),
                lease: self.lease,
                keeper: std::sync::Mutex::new(None),
            }),
            envelope,
        })
    }
}

#[async_trait]
impl Receiver for NatsReceiver {
    async fn recv(&mut self) -> Result<Option<Delivery>> {
        loop {
            if self.closed || self.shared.closed.load(Ordering::Acquire) {
                return Ok(None);
            }
            if !self.buffer.is_empty() {
                // Take the slot first: a cancelled wait loses nothing.
                let Ok(permit) = self.permits.clone().acquire_owned().await else {
                    return Ok(None);
                };
                if self.park && self.park_if_parked().await? {
                    continue;
                }
                let Some(msg) = self.buffer.pop_front() else {
                    continue;
                };
                if let Some(d) = self.delivery(msg, permit) {
                    return Ok(Some(d));
                }
                continue;
            }
            if self.permits.available_permits() == 0 {
                // Prefetch is full: wait for a settlement before pulling more.
                drop(self.permits.clone().acquire_owned().await);
                continue;
            }
            self.start_pulls();
            self.finish_pull().await?;
        }
    }

    async fn close(&mut self) -> Result<()> {
        self.closed = true;
        self.pump.signal();
        // Let open pulls end (within PULL_EXPIRES), so what they bring can be released.
        let until = tokio::time::Instant::now() + PULL_EXPIRES * 3;
        while let Ok(Some(done)) = tokio::time::timeout_at(until, self.pulls.join_next()).await {
            if let Ok((_, r)) = done {
                self.buffer.extend(r.msgs);
            }
        }
        self.pulls.abort_all();
        for m in self.buffer.drain(..) {
            let _ = m.ack_with(AckKind::Nak(None)).await;
        }
        self.pump.stop().await;
        Ok(())
    }
}

impl Drop for NatsReceiver {
    fn drop(&mut self) {
        // Dropped without close: release in the background.
        release_later(self.buffer.drain(..).collect());
        let mut pulls = std::mem::take(&mut self.pulls);
        if pulls.is_empty() {
            return;
        }
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                while let Some(done) = pulls.join_next().await {
                    if let Ok((_, r)) = done {
                        release_later(r.msgs);
                    }
                }
            });
        }
    }
}
