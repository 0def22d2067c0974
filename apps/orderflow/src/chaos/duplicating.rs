//! A transport decorator that delivers some messages twice (same message id), as an
//! at-least-once broker may: fault injection for tests and the load run.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use rand::Rng;
use tidings_core::transport::{
    DeadLetter, DeadLetterQuery, Outgoing, QueueStats, ReceiveOptions, Receiver, Topology,
    Transport,
};
use tidings_core::Result;

/// Sends a fraction of messages twice.
pub struct Duplicating {
    inner: Arc<dyn Transport>,
    rate: f64,
    duplicated: AtomicU64,
}

impl std::fmt::Debug for Duplicating {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Duplicating")
            .field("rate", &self.rate)
            .finish_non_exhaustive()
    }
}

impl Duplicating {
    /// Wraps `inner`, duplicating each message with probability `rate`.
    pub fn new(inner: Arc<dyn Transport>, rate: f64) -> Self {
        Duplicating {
            inner,
            rate: rate.clamp(0.0, 1.0),
            duplicated: AtomicU64::new(0),
        }
    }

    /// Messages sent twice so far.
    pub fn duplicated(&self) -> u64 {
        self.duplicated.load(Ordering::Relaxed)
    }
}

#[async_trait]
impl Transport for Duplicating {
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
        let mut out = Vec::with_capacity(messages.len());
        {
            let mut rng = rand::rng();
            for m in messages {
                if self.rate > 0.0 && rng.random_bool(self.rate) {
                    out.push(m.clone());
                    self.duplicated.fetch_add(1, Ordering::Relaxed);
                }
                out.push(m);
            }
        }
        self.inner.send(out).await
    }
    async fn receive(&self, queue: &str, options: ReceiveOptions) -> Result<Box<dyn Receiver>> {
        self.inner.receive(queue, options).await
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
