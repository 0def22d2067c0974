//! [`RabbitReceiver`]: a push consumer (`basic.consume`, manual ack, `basic.qos` =
//! prefetch) on its own channel, re-opened on a new connection after a loss.
//!
//! Ordered receivers hand out at most one delivery per partition key: a delivery whose key
//! is busy waits in process (still unacked, so it counts against prefetch) until the key is
//! settled. Ordered queues are declared `x-single-active-consumer`, so one receiver at a
//! time gets the queue's messages in order; the others stand by.
//!
//! A message without the AMQP `type` property (not from Tidings) is not handed out: it is
//! dead-lettered as `undecodable` (see `tidings_core::transport::undecodable`).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use futures::{FutureExt, StreamExt};
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions,
};
use lapin::types::FieldTable;
use lapin::{Channel, Consumer};
use tokio::time::Instant;

use tidings_core::transport::undecodable::Undecodable;
use tidings_core::transport::{Delivery, ReceiveOptions, Receiver};
use tidings_core::{Error, Result};

use crate::codec::{self, Extra};
use crate::connection::Connector;
use crate::error::is_not_found;
use crate::publisher::{publish_all, Publish};
use crate::settle::{Pending, RabbitSettle, RecvShared};
use crate::topology::{self, DelayTarget};

struct Live {
    channel: Channel,
    consumer: Consumer,
}

/// See the module docs.
pub(crate) struct RabbitReceiver {
    conn: Arc<Connector>,
    queue: String,
    options: ReceiveOptions,
    ordered: bool,
    shared: Arc<RecvShared>,
    live: Option<Live>,
    closed: bool,
    backoff: Duration,
}

enum Event {
    Message(Box<lapin::message::Delivery>),
    Lost(Option<lapin::Error>),
    Wake,
}

impl RabbitReceiver {
    /// Opens the first consumer now, so a missing queue fails here.
    pub(crate) async fn start(
        conn: Arc<Connector>,
        queue: &str,
        options: ReceiveOptions,
        ordered: bool,
    ) -> Result<Self> {
        let mut r = RabbitReceiver {
            conn,
            queue: queue.to_string(),
            ordered: ordered || options.ordered,
            options,
            shared: Arc::new(RecvShared::default()),
            live: None,
            closed: false,
            backoff: Duration::ZERO,
        };
        r.open().await?;
        Ok(r)
    }

    async fn open(&mut self) -> Result<()> {
        let (channel, _) = self.conn.channel().await?;
        let prefetch = u16::try_from(self.options.prefetch.max(1)).unwrap_or(u16::MAX);
        channel
            .basic_qos(prefetch, BasicQosOptions::default())
            .await
            .map_err(|e| self.conn.err("basic.qos", &e))?;
        let queue = topology::short(&self.queue)?;
        let consumer = channel
            .basic_consume(
                queue,
                "".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(|e| {
                if is_not_found(&e) {
                    Error::UnknownQueue(self.queue.clone())
                } else {
                    self.conn.err("basic.consume", &e).into()
                }
            })?;
        self.live = Some(Live { channel, consumer });
        Ok(())
    }

    /// Turns a broker delivery into a pending one; `None` if it is not to be handed out
    /// now (arrived early from the delay levels, or waits for its key).
    async fn accept(&mut self, d: lapin::message::Delivery, channel: Channel) -> Option<Pending> {
        let decoded = codec::decode(&d.properties, &d.data);
        let given_back = self.conn.given_back(decoded.envelope.id);
        let count = decoded.delivery_count(d.redelivered, given_back);
        if let Some(why) = codec::undecodable(&d.properties) {
            self.dead_letter_undecodable(d, channel, decoded.envelope, count, why);
            return None;
        }
        let now_ms = Utc::now().timestamp_millis();
        if let Some(due) = decoded.due_at_ms.filter(|&due| due > now_ms) {
            // Longer than one pass through the delay levels: go round again.
            let remaining = Duration::from_millis(u64::try_from(due - now_ms).unwrap_or(0));
            let extra = Extra {
                delivery_count: decoded.base_count,
                ..Extra::default()
            };
            let again = Publish::delayed(
                self.conn.config.queue_type,
                DelayTarget::Queue(&self.queue),
                remaining,
                &decoded.envelope,
                &extra,
            )
            .map_err(Error::from);
            let sent = match again {
                Ok(p) => publish_all(&self.conn, vec![p]).await,
                Err(e) => Err(e),
            };
            let _ = match sent {
                Ok(()) => d.acker.ack(BasicAckOptions::default()).await,
                Err(e) => {
                    tracing::warn!(error = %e, queue = %self.queue, "re-delaying an early message failed");
                    d.acker
                        .nack(BasicNackOptions {
                            requeue: true,
                            ..Default::default()
                        })
                        .await
                }
            };
            return None;
        }
        let p = Pending {
            acker: d.acker,
            channel,
            envelope: decoded.envelope,
            count,
        };
        if self.ordered {
            if let Some(k) = p.key() {
                let mut st = self.shared.lock();
                let busy = st.keys.contains(k) || st.waiting.iter().any(|w| w.key() == Some(k));
                if busy {
                    st.waiting.push_back(p);
                    return None;
                }
                st.keys.insert(k.to_string());
            }
        }
        Some(p)
    }

    /// A message that is not a Tidings envelope goes to the error queue as `undecodable`
    /// with its body and its foreign headers, then is acked; it never waits for or holds a
    /// key (the broker keeps no per-key state to park).
    fn dead_letter_undecodable(
        &self,
        d: lapin::message::Delivery,
        channel: Channel,
        decoded: tidings_core::Envelope,
        count: u32,
        why: &str,
    ) {
        let mut poison = Undecodable::new(&self.queue, d.data, why)
            .message_id(Some(decoded.id))
            .partition_key(decoded.partition_key)
            .delivery_count(count);
        for (k, v) in decoded.headers {
            poison = poison.detail(k, v);
        }
        let mut placeholder = tidings_core::Envelope::new("", 0, Vec::new());
        placeholder.id = decoded.id;
        let settle = RabbitSettle {
            conn: self.conn.clone(),
            shared: self.shared.clone(),
            queue: self.queue.clone(),
            ordered: self.ordered,
            // No key: settling it must not free a key another delivery holds.
            pending: Mutex::new(Some(Pending {
                acker: d.acker,
                channel,
                envelope: placeholder,
                count,
            })),
        };
        tokio::spawn(poison.dead_letter(Box::new(settle)));
    }

    fn deliver(&self, p: Pending) -> Delivery {
        Delivery {
            envelope: p.envelope.clone(),
            delivery_count: p.count,
            queue: self.queue.clone(),
            settle: Box::new(RabbitSettle {
                conn: self.conn.clone(),
                shared: self.shared.clone(),
                queue: self.queue.clone(),
                ordered: self.ordered,
                pending: Mutex::new(Some(p)),
            }),
        }
    }

    async fn next_event(&mut self, due: Option<Instant>) -> Event {
        let shared = self.shared.clone();
        let notified = shared.notify.notified();
        let Some(live) = self.live.as_mut() else {
            return Event::Lost(None);
        };
        let sleep = async {
            match due {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            next = live.consumer.next() => match next {
                Some(Ok(d)) => Event::Message(Box::new(d)),
                Some(Err(e)) => Event::Lost(Some(e)),
                None => Event::Lost(None),
            },
            _ = notified => Event::Wake,
            _ = sleep => Event::Wake,
        }
    }
}

#[async_trait]
impl Receiver for RabbitReceiver {
    async fn recv(&mut self) -> Result<Option<Delivery>> {
        loop {
            if self.closed || self.conn.is_closed() {
                return Ok(None);
            }
            let due = {
                let mut st = self.shared.lock();
                if let Some(p) = st.take_ready(Instant::now()) {
                    drop(st);
                    return Ok(Some(self.deliver(p)));
                }
                st.next_due()
            };
            if self.live.is_none() {
                if !self.backoff.is_zero() {
                    tokio::time::sleep(self.backoff).await;
                }
                match self.open().await {
                    Ok(()) => {
                        tracing::info!(queue = %self.queue, "consumer re-opened");
                        self.backoff = Duration::ZERO;
                    }
                    Err(Error::Shutdown) => return Ok(None),
                    Err(e @ Error::UnknownQueue(_)) => return Err(e),
                    Err(e) => {
                        self.backoff = (self.backoff * 2)
                            .max(self.conn.config.reconnect_initial_backoff)
                            .min(self.conn.config.reconnect_max_backoff);
                        tracing::warn!(error = %e, queue = %self.queue, retry_in = ?self.backoff, "re-opening consumer failed");
                    }
                }
                continue;
            }
            match self.next_event(due).await {
                Event::Message(d) => {
                    let channel = match &self.live {
                        Some(l) => l.channel.clone(),
                        None => continue,
                    };
                    if let Some(p) = self.accept(*d, channel).await {
                        return Ok(Some(self.deliver(p)));
                    }
                }
                Event::Lost(e) => {
                    if !self.closed && !self.conn.is_closed() {
                        let reason = e.map(|e| self.conn.config.redact(&e.to_string()));
                        tracing::warn!(queue = %self.queue, reason = ?reason, "consumer lost; reconnecting");
                    }
                    self.live = None;
                    self.backoff = self.backoff.max(self.conn.config.reconnect_initial_backoff);
                }
                Event::Wake => {}
            }
        }
    }

    async fn close(&mut self) -> Result<()> {
        self.closed = true;
        let requeue = BasicNackOptions {
            requeue: true,
            ..BasicNackOptions::default()
        };
        if let Some(mut live) = self.live.take() {
            let tag = live.consumer.tag();
            let _ = live
                .channel
                .basic_cancel(tag, BasicCancelOptions::default())
                .await;
            // Deliveries the broker sent before cancel-ok are buffered: give them back.
            while let Some(Some(Ok(d))) = live.consumer.next().now_or_never() {
                let decoded = codec::decode(&d.properties, &d.data);
                self.conn.note_given_back(decoded.envelope.id);
                let _ = d.acker.nack(requeue).await;
            }
        }
        let (waiting, held) = {
            let mut st = self.shared.lock();
            let waiting: Vec<Pending> = st.waiting.drain(..).collect();
            let held: Vec<Pending> = st.held.drain(..).map(|(_, p)| p).collect();
            for p in &held {
                if let Some(k) = p.key() {
                    st.keys.remove(k);
                }
            }
            (waiting, held)
        };
        for p in &waiting {
            self.conn.note_given_back(p.envelope.id);
        }
        // Held redeliveries were nacked by their handler: that return is a failure.
        for p in waiting.into_iter().chain(held) {
            let _ = p.acker.nack(requeue).await;
        }
        Ok(())
    }
}
