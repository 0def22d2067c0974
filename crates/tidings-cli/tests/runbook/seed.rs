//! Incidents to run the runbooks against: a SQLite transport in a temp dir, OrderFlow-like
//! contracts, raw sends (any body, any version, a partition key) and waiting for queue
//! figures.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tidings::sqlite::{SqliteConfig, SqliteTransport};
use tidings::transport::{Outgoing, QueueSpec, QueueStats, Topology, Transport};
use tidings::{Envelope, Message};

#[derive(Debug, Clone, Serialize, Deserialize, Message)]
#[message(name = "orderflow.reserve-stock", version = 1, kind = "command")]
pub struct ReserveStock {
    pub order: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize, Message)]
#[message(name = "orderflow.capture-payment", version = 1, kind = "command")]
pub struct CapturePayment {
    pub order: u32,
    pub amount_cents: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, Message)]
#[message(name = "orderflow.create-shipment", version = 1, kind = "command")]
pub struct CreateShipment {
    pub order: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize, Message)]
#[message(name = "orderflow.order-completed", version = 1, kind = "event")]
pub struct OrderCompleted {
    pub order: u32,
    pub channel: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, Message)]
#[message(name = "orderflow.order-placed", version = 1, kind = "event")]
pub struct OrderPlaced {
    pub order: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize, Message)]
#[message(name = "orderflow.payment-captured", version = 1, kind = "event")]
pub struct PaymentCaptured {
    pub order: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize, Message)]
#[message(name = "orderflow.payment-timeout", version = 1, kind = "command")]
pub struct PaymentTimeout {
    pub order: u32,
}

/// A SQLite transport in a fresh temp dir.
pub struct Incident {
    pub dir: tempfile::TempDir,
    pub transport: SqliteTransport,
    pub url: String,
}

impl Incident {
    pub async fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("orderflow.db");
        let transport = SqliteTransport::connect(SqliteConfig::new(path.clone()))
            .await
            .expect("sqlite transport");
        Incident {
            url: format!("sqlite://{}", path.display()),
            dir,
            transport,
        }
    }

    pub fn arc(&self) -> Arc<dyn Transport> {
        Arc::new(self.transport.clone())
    }

    /// Declares plain queues (no consumer yet).
    pub async fn declare(&self, queues: &[&str]) {
        let topology = Topology {
            queues: queues
                .iter()
                .map(|q| QueueSpec {
                    name: (*q).to_string(),
                    ..Default::default()
                })
                .collect(),
        };
        self.transport.declare(&topology).await.expect("declare");
    }

    /// Sends `body` as `ty` v`version` straight to `queue`; returns the message id.
    pub async fn send_raw(
        &self,
        queue: &str,
        ty: &str,
        version: u32,
        body: &str,
        key: Option<&str>,
    ) -> uuid::Uuid {
        let mut env = Envelope::new(ty, version, body.to_string());
        env.partition_key = key.map(str::to_string);
        let id = env.id;
        self.transport
            .send(vec![Outgoing::to_queue(queue, env)])
            .await
            .expect("send");
        id
    }

    pub async fn stats(&self, queue: &str) -> QueueStats {
        let all = self.transport.stats().await.expect("stats");
        all.into_iter()
            .find(|s| s.queue == queue)
            .unwrap_or_else(|| panic!("no queue {queue}"))
    }

    /// Waits (up to 60 s) until `ok` holds for `queue`'s stats and the counter.
    pub async fn wait(&self, queue: &str, what: &str, ok: impl Fn(&QueueStats) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let s = self.stats(queue).await;
            if ok(&s) {
                return;
            }
            assert!(Instant::now() < deadline, "waiting for {what}: {s:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Whether a dependency is up, as the test's handlers see it.
#[derive(Clone, Default)]
pub struct Switch(Arc<AtomicBool>);

impl Switch {
    pub fn up(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
    pub fn set(&self, up: bool) {
        self.0.store(up, Ordering::SeqCst);
    }
}

/// Counts handled messages.
#[derive(Clone, Default)]
pub struct Counter(Arc<AtomicUsize>);

impl Counter {
    pub fn add(&self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
    pub fn get(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

/// An idle queue: nothing ready, in flight or scheduled.
pub fn idle(s: &QueueStats) -> bool {
    s.ready == 0 && s.in_flight.unwrap_or(0) == 0 && s.scheduled.unwrap_or(0) == 0
}

/// Waits (up to 60 s) for `f`.
pub async fn until(what: &str, f: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !f() {
        assert!(Instant::now() < deadline, "waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
