//! Fixtures: a memory transport with dead letters in it.
#![allow(dead_code, unreachable_pub, missing_docs)]

pub mod chromium;
pub mod png;

use std::sync::Arc;

use tidings_core::transport::memory::MemoryTransport;
use tidings_core::transport::{Outgoing, QueueSpec, ReceiveOptions, Topology, Transport};
use tidings_core::{Envelope, Fault, FaultReason};

/// Declares `orders` and `payments`.
pub async fn transport() -> Arc<dyn Transport> {
    let t: Arc<dyn Transport> = Arc::new(MemoryTransport::new());
    let queue = |name: &str, subs: &[&str]| QueueSpec {
        name: name.into(),
        subscriptions: subs.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    };
    t.declare(&Topology {
        queues: vec![
            queue("orders", &["shop.order-placed"]),
            queue("payments", &[]),
        ],
    })
    .await
    .unwrap();
    t
}

/// Sends a message to `queue`, takes it and dead-letters it with `reason`. Returns its id.
pub async fn dead_letter(
    t: &Arc<dyn Transport>,
    queue: &str,
    message_type: &str,
    reason: FaultReason,
    correlation: &str,
) -> uuid::Uuid {
    dead_letter_with(
        t,
        queue,
        message_type,
        reason,
        "stock service said no",
        correlation,
    )
    .await
}

/// [`dead_letter`] with the error text `error`.
pub async fn dead_letter_with(
    t: &Arc<dyn Transport>,
    queue: &str,
    message_type: &str,
    reason: FaultReason,
    error: &str,
    correlation: &str,
) -> uuid::Uuid {
    let mut env = Envelope::new(message_type, 1, r#"{"order_id":42,"sku":"A-1"}"#);
    env.correlation_id = Some(correlation.into());
    let id = env.id;
    t.send(vec![Outgoing::to_queue(queue, env)]).await.unwrap();
    let mut rx = t.receive(queue, ReceiveOptions::default()).await.unwrap();
    let mut d = rx.recv().await.unwrap().unwrap();
    Fault::new(reason, error, queue).apply(&mut d.envelope);
    d.dead_letter().await.unwrap();
    rx.close().await.unwrap();
    id
}

/// A transport whose broker is down: every call fails with a transient error.
pub struct DownTransport;

fn down() -> tidings_core::Error {
    tidings_core::Error::Transport {
        message: "connection refused (127.0.0.1:1)".into(),
        kind: tidings_core::ErrorKind::Transient,
        source: None,
    }
}

#[async_trait::async_trait]
impl Transport for DownTransport {
    fn name(&self) -> &'static str {
        "down"
    }
    fn max_message_size(&self) -> usize {
        1024
    }
    async fn declare(&self, _: &Topology) -> tidings_core::Result<()> {
        Err(down())
    }
    async fn send(&self, _: Vec<Outgoing>) -> tidings_core::Result<()> {
        Err(down())
    }
    async fn receive(
        &self,
        _: &str,
        _: ReceiveOptions,
    ) -> tidings_core::Result<Box<dyn tidings_core::transport::Receiver>> {
        Err(down())
    }
    async fn stats(&self) -> tidings_core::Result<Vec<tidings_core::transport::QueueStats>> {
        Err(down())
    }
    async fn dead_letters(
        &self,
        _: &tidings_core::transport::DeadLetterQuery,
    ) -> tidings_core::Result<Vec<tidings_core::transport::DeadLetter>> {
        Err(down())
    }
    async fn replay(
        &self,
        _: &tidings_core::transport::DeadLetterQuery,
        _: Option<&str>,
    ) -> tidings_core::Result<u64> {
        Err(down())
    }
    async fn purge(
        &self,
        _: &tidings_core::transport::DeadLetterQuery,
    ) -> tidings_core::Result<u64> {
        Err(down())
    }
    async fn delete_queue(&self, _: &str) -> tidings_core::Result<()> {
        Err(down())
    }
    async fn close(&self) -> tidings_core::Result<()> {
        Ok(())
    }
}
