//! Scheduled messages wait in a delay stream of their queue, not on the queue itself.
//!
//! JetStream 2.9 cannot publish a message for later. Delivering it early and answering
//! `-NAK {time left}` would keep it pending on the queue's consumer until it is due — on
//! an ordered partition (`max_ack_pending = 1`) that blocks every other message of the
//! partition for the whole delay. So, per queue `q`:
//! - stream `<P>_DL_<q>` (work queue, subject `<prefix>.dl.<q>`) with one durable pull
//!   consumer `pump` (explicit ack, `ack_wait` [`PUMP_ACK_WAIT`], no pending limit);
//! - `send` of a message whose `scheduled_for` is ahead publishes it there (`publish`);
//!   a receiver that still finds one early on the queue (a scheduled *event*, sourced
//!   into the queue stream, or clock skew) moves it there: publish, then `+ACK` —
//!   holding its slot for one round trip;
//! - every receiver of `q` runs a [`Pump`] on the `pump` consumer: a message not due yet
//!   is answered `-NAK {time left}` (harmless here: nothing queues behind it); a due one
//!   is republished, headers and body as stored, to the queue's subject for its partition
//!   (captured by `<P>_Q_<q>` or by the ordered partition `<P>_O_<q>_<n>`) and acked
//!   once the queue's stream confirmed it.
//!
//! At least once: a pump that dies between the republish and its ack leaves the message
//! pending; it comes back after [`PUMP_ACK_WAIT`] and is republished under the same
//! `Nats-Msg-Id` (`<id>:due:<delay sequence>`), which the queue stream drops within its
//! duplicate window (2 min) — later it is delivered twice, never lost. A republished
//! message is a new stream message: its delivery count starts at 1.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy, PullConsumer};
use async_nats::jetstream::message::AckKind;
use async_nats::jetstream::stream::{self, RetentionPolicy};
use async_nats::jetstream::Message;
use chrono::{DateTime, Utc};
use tidings_core::Envelope;
use tokio::task::JoinHandle;

use crate::codec;
use crate::error::NatsError;
use crate::naming::PUMP_CONSUMER;
use crate::publish::Prepared;
use crate::receiver::{pull, PULL_EXPIRES};
use crate::transport::Shared;

/// How long a pump may hold a message before JetStream gives it to another pump.
pub(crate) const PUMP_ACK_WAIT: Duration = Duration::from_secs(30);
/// A message due within this is due now.
pub(crate) const DUE_SLACK: Duration = Duration::from_millis(2);
/// Largest batch one pump pull takes.
const PUMP_BATCH: usize = 256;
/// A due message whose republish failed is tried again after this.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// Time left until `at`, if more than [`DUE_SLACK`].
pub(crate) fn not_due(at: Option<DateTime<Utc>>) -> Option<Duration> {
    let left = (at? - Utc::now()).to_std().ok()?;
    (left > DUE_SLACK).then_some(left)
}

impl Shared {
    /// Ensures `queue`'s delay stream and its `pump` consumer; returns the consumer.
    pub(crate) async fn ensure_delay(&self, queue: &str) -> Result<PullConsumer, NatsError> {
        let name = self.names.delay_stream(queue);
        self.ensure_stream(stream::Config {
            name: name.clone(),
            subjects: vec![self.names.delay_subject(queue)],
            retention: RetentionPolicy::WorkQueue,
            storage: self.storage(),
            description: Some(format!("tidings messages of `{queue}` not due yet")),
            ..Default::default()
        })
        .await?;
        let stream = self
            .js
            .get_stream_no_info(&name)
            .await
            .map_err(|e| NatsError::request(format!("stream {name}"), e))?;
        let config = pull::Config {
            durable_name: Some(PUMP_CONSUMER.to_string()),
            description: Some(format!("tidings delay pump of `{queue}`")),
            deliver_policy: DeliverPolicy::All,
            ack_policy: AckPolicy::Explicit,
            ack_wait: PUMP_ACK_WAIT,
            max_deliver: -1,
            // Every waiting message is pending here: no limit, nothing queues behind them.
            max_ack_pending: -1,
            max_waiting: 4096,
            ..Default::default()
        };
        stream
            .get_or_create_consumer(PUMP_CONSUMER, config)
            .await
            .map_err(|e| NatsError::request(format!("consumer.create {name}/{PUMP_CONSUMER}"), e))
    }

    /// Moves a message found on `queue` before its time to the delay stream (publish,
    /// then `+ACK`). If that fails, falls back to `-NAK {left}` on the queue.
    pub(crate) async fn defer(&self, queue: &str, msg: Message, env: &Envelope, left: Duration) {
        let (stream, seq) = msg
            .info()
            .map(|i| (i.stream.to_string(), i.stream_sequence))
            .unwrap_or_default();
        let out = Prepared::forward(
            self.names.delay_subject(queue),
            format!("{queue} (delay stream)"),
            msg.headers.as_ref(),
            msg.payload.clone(),
            &format!("{}:delay:{stream}:{seq}", env.id),
        );
        let kind = match self.publish_all(vec![out]).await {
            Ok(()) => AckKind::Ack,
            Err(e) => {
                tracing::warn!(queue, error = %e, "cannot move an early message to the delay stream; it waits on the queue");
                AckKind::Nak(Some(left))
            }
        };
        let _ = msg.ack_with(kind).await;
    }

    /// Handles one pulled batch of the delay stream: waits out the early ones, republishes
    /// the due ones to the queue and acks them once the queue stream confirmed.
    async fn pump_batch(&self, queue: &str, msgs: Vec<Message>) {
        let mut due = Vec::new();
        let mut taken = Vec::new();
        for m in msgs {
            let env = codec::decode(m.headers.as_ref(), m.payload.clone()).ok();
            if let Some(left) = not_due(env.as_ref().and_then(|e| e.scheduled_for)) {
                let _ = m.ack_with(AckKind::Nak(Some(left))).await;
                continue;
            }
            let seq = m.info().map(|i| i.stream_sequence).unwrap_or(0);
            let (partition, id) = match &env {
                Some(e) => (
                    self.names.partition(e.partition_key.as_deref(), &e.id),
                    e.id.to_string(),
                ),
                // Not an envelope: the receiver dead-letters it as undecodable.
                None => (0, "foreign".to_string()),
            };
            due.push(Prepared::forward(
                self.names.queue_subject(queue, partition),
                queue.to_string(),
                m.headers.as_ref(),
                m.payload.clone(),
                &format!("{id}:due:{seq}"),
            ));
            taken.push(m);
        }
        if due.is_empty() {
            return;
        }
        let kind = match self.publish_all(due).await {
            Ok(()) => AckKind::Ack,
            Err(e) => {
                tracing::warn!(queue, error = %e, "republishing due messages failed; retrying");
                AckKind::Nak(Some(RETRY_AFTER))
            }
        };
        for m in taken {
            let _ = m.ack_with(kind).await;
        }
    }
}

/// The pump of one receiver: moves `queue`'s due messages from its delay stream onto it.
pub(crate) struct Pump {
    stop: Arc<AtomicBool>,
    task: Option<JoinHandle<()>>,
}

impl Pump {
    pub(crate) fn start(shared: Arc<Shared>, queue: String, consumer: PullConsumer) -> Pump {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let task = tokio::spawn(async move {
            let mut backoff = Duration::from_millis(50);
            while !flag.load(Ordering::Acquire) && !shared.closed.load(Ordering::Acquire) {
                let r = pull(consumer.clone(), PUMP_BATCH).await;
                shared.pump_batch(&queue, r.msgs).await;
                match r.error {
                    None => backoff = Duration::from_millis(50),
                    Some(e) => {
                        tracing::debug!(queue, error = %shared.cfg.scrub(&e), "delay pump pull failed; retrying");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(2));
                    }
                }
            }
        });
        Pump {
            stop,
            task: Some(task),
        }
    }

    /// Asks the pump to stop after its current pull and batch.
    pub(crate) fn signal(&self) {
        self.stop.store(true, Ordering::Release);
    }

    /// Stops after the current pull and batch (what a pull brings is still handled).
    pub(crate) async fn stop(&mut self) {
        self.signal();
        if let Some(mut task) = self.task.take() {
            let within = PULL_EXPIRES * 4 + Duration::from_secs(1);
            if tokio::time::timeout(within, &mut task).await.is_err() {
                task.abort();
            }
        }
    }
}

impl Drop for Pump {
    fn drop(&mut self) {
        // Ends on its own after the current pull.
        self.signal();
    }
}
