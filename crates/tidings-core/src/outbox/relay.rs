//! [`Relay`]: the loop that ships an [`OutboxStore`]'s rows to a transport in batches —
//! claim, send (the transport returns once the broker confirmed every message), mark sent.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::OutboxStore;
use crate::transport::Transport;
use crate::Result;

/// Metric names the relay records.
pub mod names {
    /// Counter: messages shipped and marked sent.
    pub const SHIPPED: &str = "tidings_outbox_shipped_total";
    /// Counter: failed ship attempts (the rows stay and are retried).
    pub const ERRORS: &str = "tidings_outbox_relay_errors_total";
    /// Gauge: rows waiting in the outbox table.
    pub const PENDING: &str = "tidings_outbox_pending";
    /// Histogram: seconds from claim to mark of one batch.
    pub const BATCH_SECONDS: &str = "tidings_outbox_batch_seconds";
}

/// Counts of one relay (shared with clones of [`Relay::stats`]).
#[derive(Debug, Default)]
pub struct RelayStats {
    shipped: AtomicU64,
    batches: AtomicU64,
    errors: AtomicU64,
}

impl RelayStats {
    /// Messages shipped and marked sent.
    pub fn shipped(&self) -> u64 {
        self.shipped.load(Ordering::Relaxed)
    }
    /// Batches completed.
    pub fn batches(&self) -> u64 {
        self.batches.load(Ordering::Relaxed)
    }
    /// Failed ship attempts.
    pub fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }
}

/// Ships an outbox table to a transport.
///
/// ```no_run
/// # async fn f(store: std::sync::Arc<dyn tidings_core::outbox::OutboxStore>,
/// #            transport: std::sync::Arc<dyn tidings_core::transport::Transport>) {
/// use tidings_core::outbox::Relay;
/// let stop = tokio_util::sync::CancellationToken::new();
/// let relay = Relay::new(store, transport).batch_size(500);
/// tokio::spawn(relay.run(stop.clone()));
/// // ... on shutdown:
/// stop.cancel();
/// # }
/// ```
#[derive(Clone)]
pub struct Relay {
    store: Arc<dyn OutboxStore>,
    transport: Arc<dyn Transport>,
    batch: usize,
    poll: Duration,
    max_backoff: Duration,
    stats: Arc<RelayStats>,
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay")
            .field("transport", &self.transport.name())
            .field("batch", &self.batch)
            .field("poll", &self.poll)
            .finish_non_exhaustive()
    }
}

impl Relay {
    /// A relay from `store` to `transport`: batches of 500, polling every 50 ms when the
    /// store has no notifications.
    pub fn new(store: Arc<dyn OutboxStore>, transport: Arc<dyn Transport>) -> Self {
        Relay {
            store,
            transport,
            batch: 500,
            poll: Duration::from_millis(50),
            max_backoff: Duration::from_secs(5),
            stats: Arc::default(),
        }
    }

    /// Rows per batch (one claim, one confirmed send, one mark). At least 1.
    pub fn batch_size(mut self, n: usize) -> Self {
        self.batch = n.max(1);
        self
    }

    /// How often an idle relay looks for rows (notifications wake it sooner).
    pub fn poll_interval(mut self, every: Duration) -> Self {
        self.poll = every;
        self
    }

    /// The longest wait between retries after a failure (back-off doubles from 50 ms).
    pub fn max_backoff(mut self, max: Duration) -> Self {
        self.max_backoff = max;
        self
    }

    /// This relay's counts.
    pub fn stats(&self) -> Arc<RelayStats> {
        self.stats.clone()
    }

    /// Ships one batch: claims, sends (confirmed), marks sent. Returns how many rows; 0 when
    /// there was nothing to ship or another relay holds the outbox.
    pub async fn ship_once(&self) -> Result<usize> {
        let started = Instant::now();
        let Some(claim) = self.store.claim(self.batch).await? else {
            return Ok(0);
        };
        let (rows, handle) = claim.into_parts();
        if rows.is_empty() {
            handle.complete(Vec::new()).await?;
            return Ok(0);
        }
        let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
        let n = rows.len();
        self.transport
            .send(rows.into_iter().map(|r| r.message).collect())
            .await?;
        handle.complete(ids).await?;
        self.stats.shipped.fetch_add(n as u64, Ordering::Relaxed);
        self.stats.batches.fetch_add(1, Ordering::Relaxed);
        metrics::counter!(names::SHIPPED, "transport" => self.transport.name()).increment(n as u64);
        metrics::histogram!(names::BATCH_SECONDS, "transport" => self.transport.name())
            .record(started.elapsed().as_secs_f64());
        Ok(n)
    }

    /// Ships until `stop` is cancelled, then finishes the batch in hand and returns.
    /// Failures (broker down, database busy) are logged and retried with back-off; rows
    /// are never dropped.
    pub async fn run(self, stop: CancellationToken) {
        let mut backoff = Duration::from_millis(50);
        let mut last_gauge = Instant::now() - Duration::from_secs(1);
        loop {
            if stop.is_cancelled() {
                return;
            }
            if last_gauge.elapsed() >= Duration::from_secs(1) {
                last_gauge = Instant::now();
                if let Ok(n) = self.store.pending().await {
                    metrics::gauge!(names::PENDING).set(n as f64);
                }
            }
            match self.ship_once().await {
                Ok(n) if n > 0 => {
                    backoff = Duration::from_millis(50);
                    continue;
                }
                Ok(_) => {
                    backoff = Duration::from_millis(50);
                    tokio::select! {
                        _ = self.store.changed() => {}
                        _ = tokio::time::sleep(self.poll) => {}
                        _ = stop.cancelled() => {}
                    }
                }
                Err(e) => {
                    self.stats.errors.fetch_add(1, Ordering::Relaxed);
                    metrics::counter!(names::ERRORS, "transport" => self.transport.name())
                        .increment(1);
                    tracing::warn!(error = %e, retry_in = ?backoff, "outbox relay: shipping failed; the rows stay and are retried");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = stop.cancelled() => {}
                    }
                    backoff = (backoff * 2).min(self.max_backoff);
                }
            }
        }
    }
}
