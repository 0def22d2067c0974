//! [`Relay`]: the loop that ships an [`OutboxStore`]'s rows to a transport in batches.
//!
//! Holding the table's lease, it sends batch k (the transport returns once the broker
//! confirmed every message) while, at the same time, the lease marks batch k − 1 sent and
//! reads batch k + 1. Sends never overlap, so a failed batch is retried before anything
//! after it goes out (per-key order holds); only the table work runs beside them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::{OutboxLease, OutboxRow, OutboxStore};
use crate::transport::Transport;
use crate::Result;

/// Metric names the relay records.
pub mod names {
    /// Counter: messages shipped (confirmed by the broker; marked sent with the next step).
    pub const SHIPPED: &str = "tidings_outbox_shipped_total";
    /// Counter: failed ship attempts (the rows stay and are retried).
    pub const ERRORS: &str = "tidings_outbox_relay_errors_total";
    /// Gauge: rows waiting in the outbox table.
    pub const PENDING: &str = "tidings_outbox_pending";
    /// Histogram: seconds to send one batch (with the table work done meanwhile).
    pub const BATCH_SECONDS: &str = "tidings_outbox_batch_seconds";
}

/// How long a running relay keeps the table's lease with nothing to ship.
pub const IDLE_RELEASE: Duration = Duration::from_secs(1);

/// Counts of one relay (shared with clones of [`Relay::stats`]).
#[derive(Debug, Default)]
pub struct RelayStats {
    shipped: AtomicU64,
    batches: AtomicU64,
    errors: AtomicU64,
}

impl RelayStats {
    /// Messages shipped (confirmed by the broker; marked sent with the next step).
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
/// The shape of it (a runnable example, with `tidings_sqlite::OutboxTable` in a temporary
/// directory, is in the `tidings_sqlite` crate docs):
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

    /// Rows per batch (one read, one confirmed send, one mark). At least 1.
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

    /// Ships batch after batch through `lease` until the table is empty (or `stop` is
    /// cancelled); returns how many rows were shipped.
    async fn ship_with(
        &self,
        lease: &mut dyn OutboxLease,
        stop: &CancellationToken,
    ) -> Result<usize> {
        let mut total = 0;
        let mut sent: Vec<i64> = Vec::new();
        let mut rows = lease.step(&[], &[], self.batch).await?;
        while !rows.is_empty() {
            let started = Instant::now();
            let (ids, messages) = split(rows);
            let (confirmed, next) = tokio::join!(
                self.transport.send(messages),
                lease.step(&sent, &ids, self.batch)
            );
            // A failed send: its rows stay; the next batch (read, not sent) is dropped and
            // read again after them.
            confirmed?;
            rows = next?;
            let n = ids.len();
            total += n;
            sent = ids;
            self.stats.shipped.fetch_add(n as u64, Ordering::Relaxed);
            self.stats.batches.fetch_add(1, Ordering::Relaxed);
            metrics::counter!(names::SHIPPED, "transport" => self.transport.name())
                .increment(n as u64);
            metrics::histogram!(names::BATCH_SECONDS, "transport" => self.transport.name())
                .record(started.elapsed().as_secs_f64());
            if stop.is_cancelled() {
                break;
            }
        }
        if !sent.is_empty() {
            lease.step(&sent, &[], 0).await?;
        }
        Ok(total)
    }

    /// Ships until `stop` is cancelled, then finishes the batch in hand and returns.
    /// Failures (broker down, database busy) are logged and retried with back-off; rows
    /// are never dropped. The relay keeps the table's lease while rows keep coming and
    /// gives it up after [`IDLE_RELEASE`] without any.
    pub async fn run(self, stop: CancellationToken) {
        let mut backoff = Duration::from_millis(50);
        let mut gauge = Instant::now() - Duration::from_secs(1);
        while !stop.is_cancelled() {
            self.gauge(&mut gauge).await;
            let held = match self.store.lease().await {
                Ok(Some(lease)) => self.hold(lease, &stop, &mut gauge).await,
                Ok(None) => {
                    self.idle(&stop).await;
                    Ok(())
                }
                Err(e) => Err(e),
            };
            match held {
                Ok(()) => backoff = Duration::from_millis(50),
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

    /// Ships through `lease` until the table stayed empty for [`IDLE_RELEASE`] (or `stop`,
    /// or a failure), then gives the lease up.
    async fn hold(
        &self,
        mut lease: Box<dyn OutboxLease>,
        stop: &CancellationToken,
        gauge: &mut Instant,
    ) -> Result<()> {
        let mut busy_at = Instant::now();
        let held = loop {
            self.gauge(gauge).await;
            match self.ship_with(&mut *lease, stop).await {
                Err(e) => break Err(e),
                Ok(n) if n > 0 => busy_at = Instant::now(),
                Ok(_) if busy_at.elapsed() >= IDLE_RELEASE => break Ok(()),
                Ok(_) => self.idle(stop).await,
            }
            if stop.is_cancelled() {
                break Ok(());
            }
        };
        // Given up even after a failure: a failed send must not keep other relays away.
        let released = lease.release().await;
        held?;
        released
    }

    /// Waits for a notification, the poll interval or `stop`.
    async fn idle(&self, stop: &CancellationToken) {
        tokio::select! {
            _ = self.store.changed() => {}
            _ = tokio::time::sleep(self.poll) => {}
            _ = stop.cancelled() => {}
        }
    }

    /// Sets the pending gauge, at most once a second.
    async fn gauge(&self, last: &mut Instant) {
        if last.elapsed() >= Duration::from_secs(1) {
            *last = Instant::now();
            if let Ok(n) = self.store.pending().await {
                metrics::gauge!(names::PENDING).set(n as f64);
            }
        }
    }
}

fn split(rows: Vec<OutboxRow>) -> (Vec<i64>, Vec<crate::transport::Outgoing>) {
    rows.into_iter().map(|r| (r.id, r.message)).unzip()
}
