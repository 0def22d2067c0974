//! [`Counted`]: a transport wrapper that tells a queue's [`Tracker`] when one of its
//! deliveries has been acknowledged (the bus acks after the handler returns, so this is the
//! only place a Tidings run's "last ack" can be seen), and when one was settled otherwise.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tidings::transport::{
    DeadLetter, DeadLetterQuery, Delivery, Outgoing, QueueStats, ReceiveOptions, Receiver, Settle,
    Topology, Transport,
};
use tidings::{Envelope, Result};

use crate::tracker::Tracker;

/// `inner`, reporting settlements of the queues in `trackers`.
pub struct Counted {
    inner: Arc<dyn Transport>,
    trackers: HashMap<String, Arc<Tracker>>,
}

impl Counted {
    /// Wraps `inner`; `trackers` maps queue names to their trackers.
    pub fn new(inner: Arc<dyn Transport>, trackers: HashMap<String, Arc<Tracker>>) -> Self {
        Counted { inner, trackers }
    }
}

struct CountedReceiver {
    inner: Box<dyn Receiver>,
    tracker: Option<Arc<Tracker>>,
}

struct CountedSettle {
    inner: Box<dyn Settle>,
    tracker: Arc<Tracker>,
}

#[async_trait]
impl Settle for CountedSettle {
    async fn ack(self: Box<Self>) -> Result<()> {
        self.inner.ack().await?;
        self.tracker.acked(1);
        Ok(())
    }

    async fn nack(self: Box<Self>, delay: Duration, updated: Option<Envelope>) -> Result<()> {
        self.tracker.failed();
        self.inner.nack(delay, updated).await
    }

    async fn dead_letter(self: Box<Self>, envelope: Envelope) -> Result<()> {
        self.tracker.failed();
        self.inner.dead_letter(envelope).await
    }

    async fn release(self: Box<Self>) -> Result<()> {
        self.inner.release().await
    }

    async fn extend_lease(&self, by: Duration) -> Result<()> {
        self.inner.extend_lease(by).await
    }

    fn inbox_home(&self) -> Option<u64> {
        self.inner.inbox_home()
    }

    async fn ack_recording(self: Box<Self>, message_id: uuid::Uuid, endpoint: &str) -> Result<()> {
        self.inner.ack_recording(message_id, endpoint).await?;
        self.tracker.acked(1);
        Ok(())
    }
}

#[async_trait]
impl Receiver for CountedReceiver {
    async fn recv(&mut self) -> Result<Option<Delivery>> {
        let d = self.inner.recv().await?;
        Ok(match (d, &self.tracker) {
            (Some(d), Some(t)) => Some(Delivery {
                settle: Box::new(CountedSettle {
                    inner: d.settle,
                    tracker: t.clone(),
                }),
                envelope: d.envelope,
                delivery_count: d.delivery_count,
                queue: d.queue,
            }),
            (d, _) => d,
        })
    }

    async fn close(&mut self) -> Result<()> {
        self.inner.close().await
    }
}

#[async_trait]
impl Transport for Counted {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn max_message_size(&self) -> usize {
        self.inner.max_message_size()
    }

    async fn declare(&self, topology: &Topology) -> Result<()> {
        self.inner.declare(topology).await
    }

    async fn send(&self, messages: Vec<Outgoing>) -> Result<()> {
        self.inner.send(messages).await
    }

    async fn receive(&self, queue: &str, options: ReceiveOptions) -> Result<Box<dyn Receiver>> {
        Ok(Box::new(CountedReceiver {
            inner: self.inner.receive(queue, options).await?,
            tracker: self.trackers.get(queue).cloned(),
        }))
    }

    async fn stats(&self) -> Result<Vec<QueueStats>> {
        self.inner.stats().await
    }

    async fn dead_letters(&self, query: &DeadLetterQuery) -> Result<Vec<DeadLetter>> {
        self.inner.dead_letters(query).await
    }

    async fn replay(&self, query: &DeadLetterQuery, to: Option<&str>) -> Result<u64> {
        self.inner.replay(query, to).await
    }

    async fn purge(&self, query: &DeadLetterQuery) -> Result<u64> {
        self.inner.purge(query).await
    }

    async fn delete_queue(&self, queue: &str) -> Result<()> {
        self.inner.delete_queue(queue).await
    }

    async fn close(&self) -> Result<()> {
        self.inner.close().await
    }
}
