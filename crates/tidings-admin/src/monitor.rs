//! [`DeadLetterMonitor`]: watches error queues against thresholds (depth, age of the oldest
//! dead letter); logs, sets the `tidings_dead_letter_alert` gauge, and publishes a
//! [`DeadLetterAlert`] event through a [`Producer`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tidings_core::transport::{DeadLetterQuery, Transport};
use tidings_core::Producer;
use tokio::time::Instant;

use crate::AdminError;

/// Gauge: 1 while a queue's error queue is over a threshold, else 0; by `queue`.
pub const ALERT_GAUGE: &str = "tidings_dead_letter_alert";

/// Published when an error queue crosses a threshold (and again every
/// [`MonitorConfig::repeat_after`] while it stays over).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, tidings_core::Message)]
#[message(name = "tidings.dead-letter-alert", version = 1, kind = "event")]
pub struct DeadLetterAlert {
    /// The endpoint queue whose error queue is over a threshold.
    pub queue: String,
    /// Messages in its error queue.
    pub error_depth: u64,
    /// Age of its oldest dead letter, in seconds.
    pub oldest_age_seconds: Option<f64>,
    /// What was exceeded, in words (`error depth 12 > 10`, ...).
    pub exceeded: Vec<String>,
    /// When the monitor saw it.
    pub observed_at: DateTime<Utc>,
}

/// Thresholds and cadence of the monitor.
#[derive(Debug, Clone, PartialEq)]
pub struct MonitorConfig {
    /// How often to look.
    pub interval: Duration,
    /// Alert when an error queue holds more than this many (0: any dead letter).
    pub max_error_depth: u64,
    /// Alert when the oldest dead letter is older than this.
    pub max_oldest_age: Duration,
    /// While a queue stays over a threshold, alert again after this long.
    pub repeat_after: Duration,
}

impl Default for MonitorConfig {
    fn default() -> Self {
        MonitorConfig {
            interval: Duration::from_secs(30),
            max_error_depth: 0,
            max_oldest_age: Duration::from_secs(3600),
            repeat_after: Duration::from_secs(15 * 60),
        }
    }
}

/// Watches every queue's error queue. Run [`check`](Self::check) yourself or
/// [`spawn`](Self::spawn) it.
pub struct DeadLetterMonitor {
    transport: Arc<dyn Transport>,
    producer: Option<Producer>,
    config: MonitorConfig,
    alerting: HashMap<String, Instant>,
}

impl std::fmt::Debug for DeadLetterMonitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeadLetterMonitor")
            .field("config", &self.config)
            .field("alerting", &self.alerting.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl DeadLetterMonitor {
    /// A monitor of `transport`'s queues.
    pub fn new(transport: Arc<dyn Transport>, config: MonitorConfig) -> Self {
        DeadLetterMonitor {
            transport,
            producer: None,
            config,
            alerting: HashMap::new(),
        }
    }

    /// Publishes alerts through `producer` (usually `bus.producer().clone()`).
    pub fn producer(mut self, producer: Producer) -> Self {
        self.producer = Some(producer);
        self
    }

    /// Looks once; returns the alerts raised (and published) this time.
    pub async fn check(&mut self) -> Result<Vec<DeadLetterAlert>, AdminError> {
        let stats = self.transport.stats().await?;
        let mut raised = Vec::new();
        let now = Instant::now();
        for s in &stats {
            let oldest = if s.error_depth > 0 {
                let q = DeadLetterQuery {
                    queue: Some(s.queue.clone()),
                    limit: 1,
                    ..Default::default()
                };
                self.transport
                    .dead_letters(&q)
                    .await?
                    .first()
                    .and_then(|d| (Utc::now() - d.dead_lettered_at).to_std().ok())
            } else {
                None
            };
            let mut exceeded = Vec::new();
            if s.error_depth > self.config.max_error_depth {
                exceeded.push(format!(
                    "error depth {} > {}",
                    s.error_depth, self.config.max_error_depth
                ));
            }
            if let Some(age) = oldest.filter(|a| *a > self.config.max_oldest_age) {
                exceeded.push(format!(
                    "oldest dead letter {}s old > {}s",
                    age.as_secs(),
                    self.config.max_oldest_age.as_secs()
                ));
            }
            let over = !exceeded.is_empty();
            metrics::gauge!(ALERT_GAUGE, "queue" => s.queue.clone()).set(f64::from(u8::from(over)));
            if !over {
                if self.alerting.remove(&s.queue).is_some() {
                    tracing::info!(queue = %s.queue, "dead-letter alert cleared");
                }
                continue;
            }
            let due = self
                .alerting
                .get(&s.queue)
                .is_none_or(|last| now.duration_since(*last) >= self.config.repeat_after);
            if !due {
                continue;
            }
            self.alerting.insert(s.queue.clone(), now);
            let alert = DeadLetterAlert {
                queue: s.queue.clone(),
                error_depth: s.error_depth,
                oldest_age_seconds: oldest.map(|d| d.as_secs_f64()),
                exceeded,
                observed_at: Utc::now(),
            };
            tracing::warn!(
                queue = %alert.queue,
                error_depth = alert.error_depth,
                exceeded = %alert.exceeded.join("; "),
                "dead-letter alert"
            );
            if let Some(p) = &self.producer {
                p.publish(&alert).await?;
            }
            raised.push(alert);
        }
        Ok(raised)
    }

    /// Runs [`check`](Self::check) every interval in a background task (abort the handle
    /// to stop). Failures are logged and the next round tries again.
    pub fn spawn(mut self) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(self.config.interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if let Err(e) = self.check().await {
                    tracing::warn!(error = %e, "dead-letter monitor: check failed");
                }
            }
        })
    }
}
