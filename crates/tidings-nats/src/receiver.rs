//! [`NatsReceiver`]: deliveries from a queue's durable pull consumer(s).
//!
//! One task per consumer pulls batches (`expires` = [`PULL_EXPIRES`]) and feeds a
//! channel. Every pull is a fresh request, so after async-nats reconnects the next pull
//! simply works: nothing to resubscribe. Prefetch is a semaphore of `prefetch` slots, a
//! slot held from delivery to settlement:
//! - unordered (`work` consumer): slots are taken *before* pulling, so at most
//!   `prefetch` messages are out unsettled;
//! - ordered (`part-<n>` consumers, `max_ack_pending = 1` each): each pulls one message
//!   and then waits for a slot, so up to `prefetch + partitions` may be out (a partition
//!   with nothing to deliver must not sit on a slot).
//!
//! A message scheduled for later (`scheduled_for`) is answered with `-NAK {delay}` for
//! the time left, and is not handed out: JetStream 2.9 has no scheduled publishing.
//! Closing stops pulling, lets the open pull end, and releases (`-NAK`) what arrives.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::PullConsumer;
use async_nats::jetstream::message::AckKind;
use async_trait::async_trait;
use chrono::Utc;
use futures::StreamExt;
use tidings_core::transport::{Delivery, ReceiveOptions, Receiver};
use tidings_core::{Error, Result};
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;

use crate::codec;
use crate::error::NatsError;
use crate::settle::NatsSettle;
use crate::topology::is_not_found;
use crate::transport::Shared;

/// How long one pull request waits on the server for messages.
pub(crate) const PULL_EXPIRES: Duration = Duration::from_secs(1);
/// Largest batch of one pull.
const MAX_BATCH: usize = 256;

/// Deliveries from one queue.
pub(crate) struct NatsReceiver {
    rx: mpsc::Receiver<Result<Delivery>>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    shared: Arc<Shared>,
    closed: bool,
}

#[derive(Clone)]
struct Puller {
    shared: Arc<Shared>,
    queue: String,
    tx: mpsc::Sender<Result<Delivery>>,
    permits: Arc<Semaphore>,
    stop: watch::Receiver<bool>,
    lease: Duration,
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
        let prefetch = options.prefetch.max(1);
        let (tx, rx) = mpsc::channel(prefetch + consumers.len());
        let (stop, stop_rx) = watch::channel(false);
        let puller = Puller {
            shared: shared.clone(),
            queue: queue.to_string(),
            tx,
            permits: Arc::new(Semaphore::new(prefetch)),
            stop: stop_rx,
            lease: options.lease,
        };
        let tasks = consumers
            .into_iter()
            .map(|c| {
                let p = puller.clone();
                tokio::spawn(p.run(c, !ordered))
            })
            .collect();
        Ok(NatsReceiver {
            rx,
            stop,
            tasks,
            shared,
            closed: false,
        })
    }
}

impl Puller {
    fn stopping(&self) -> bool {
        *self.stop.borrow() || self.shared.closed.load(Ordering::Acquire)
    }

    /// Pull loop of one consumer. `slots_first`: take prefetch slots before pulling.
    async fn run(mut self, consumer: PullConsumer, slots_first: bool) {
        let mut backoff = Duration::from_millis(50);
        while !self.stopping() {
            let mut held: Vec<OwnedSemaphorePermit> = Vec::new();
            if slots_first {
                let first = tokio::select! {
                    p = self.permits.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
                    _ = self.stop.changed() => break,
                };
                held.push(first);
                while held.len() < MAX_BATCH {
                    match self.permits.clone().try_acquire_owned() {
                        Ok(p) => held.push(p),
                        Err(_) => break,
                    }
                }
            }
            let n = if slots_first { held.len() } else { 1 };
            let mut batch = match consumer
                .batch()
                .max_messages(n)
                .expires(PULL_EXPIRES)
                .messages()
                .await
            {
                Ok(b) => b,
                Err(e) => {
                    if self.fail(&e.to_string()).await {
                        break;
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                    continue;
                }
            };
            let mut stopping = false;
            while let Some(item) = batch.next().await {
                let msg = match item {
                    Ok(m) => m,
                    Err(e) => {
                        tracing::debug!(queue = %self.queue, error = %e, "pull ended");
                        break;
                    }
                };
                backoff = Duration::from_millis(50);
                if stopping || self.stopping() {
                    stopping = true;
                    let _ = msg.ack_with(AckKind::Nak(None)).await;
                    continue;
                }
                let permit = if slots_first {
                    held.pop()
                } else {
                    let waited = Instant::now();
                    let p = tokio::select! {
                        p = self.permits.clone().acquire_owned() => p.ok(),
                        _ = self.stop.changed() => None,
                    };
                    if p.is_none() {
                        stopping = true;
                        let _ = msg.ack_with(AckKind::Nak(None)).await;
                        continue;
                    }
                    if waited.elapsed() > self.lease / 3 {
                        let _ = msg.ack_with(AckKind::Progress).await;
                    }
                    p
                };
                if let Some(d) = self.delivery(msg, permit).await {
                    if self.tx.send(Ok(d)).await.is_err() {
                        // Receiver gone: the delivery's drop released it.
                        stopping = true;
                    }
                }
            }
            drop(held);
            if stopping {
                break;
            }
        }
    }

    /// Logs a pull failure; reports a vanished queue to `recv` and says to stop.
    async fn fail(&self, error: &str) -> bool {
        if is_not_found(&error) {
            let _ = self
                .tx
                .send(Err(NatsError::UnknownQueue(self.queue.clone()).into()))
                .await;
            return true;
        }
        tracing::warn!(queue = %self.queue, error = %self.shared.cfg.scrub(error), "pull failed; retrying");
        false
    }

    /// Turns a message into a delivery; `None` if it is not due yet (sent back with a delay).
    async fn delivery(
        &self,
        msg: async_nats::jetstream::Message,
        permit: Option<OwnedSemaphorePermit>,
    ) -> Option<Delivery> {
        let (delivered, published, stream_seq) = match msg.info() {
            Ok(i) => (i.delivered.max(1) as u32, i.published, i.stream_sequence),
            Err(_) => (1, Utc::now(), 0),
        };
        let reply = msg.message.reply.clone();
        let (m, acker) = msg.split();
        let envelope = match codec::decode(m.headers.as_ref(), m.payload.clone()) {
            Ok(e) => e,
            Err(e) => codec::foreign(m.subject.as_str(), m.payload, &e.to_string()),
        };
        let mut delivery_count = delivered;
        if let Some(at) = envelope.scheduled_for {
            let now = Utc::now();
            if let Ok(left) = (at - now).to_std() {
                if left > Duration::from_millis(2) {
                    let _ = acker.ack_with(AckKind::Nak(Some(left))).await;
                    return None;
                }
            }
            // One delivery was spent finding it early (usually exactly one).
            if at > published && delivered > 1 {
                delivery_count -= 1;
            }
        }
        Some(Delivery {
            delivery_count,
            queue: self.queue.clone(),
            settle: Box::new(NatsSettle {
                shared: self.shared.clone(),
                acker: Some(acker),
                reply,
                queue: self.queue.clone(),
                dead_letter_id: format!("{}:dl:{stream_seq}", envelope.id),
                permit,
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
        if self.closed || self.shared.closed.load(Ordering::Acquire) {
            return Ok(None);
        }
        match self.rx.recv().await {
            Some(Ok(d)) => Ok(Some(d)),
            Some(Err(e)) => Err(e),
            None => Ok(None),
        }
    }

    async fn close(&mut self) -> Result<()> {
        if self.closed {
            return Ok(());
        }
        self.closed = true;
        let _ = self.stop.send(true);
        // Let the open pulls end (at most PULL_EXPIRES) so what they bring is released.
        let tasks = std::mem::take(&mut self.tasks);
        let _ = tokio::time::timeout(PULL_EXPIRES * 3, futures::future::join_all(tasks)).await;
        self.rx.close();
        while let Ok(item) = self.rx.try_recv() {
            if let Ok(d) = item {
                d.release().await?;
            }
        }
        Ok::<(), Error>(())
    }
}

impl Drop for NatsReceiver {
    fn drop(&mut self) {
        // Pull tasks see the signal, end their open pull and release what it brings;
        // deliveries still queued here are released by their handles' drop.
        let _ = self.stop.send(true);
    }
}
