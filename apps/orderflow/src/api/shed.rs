//! Back-pressure: the API refuses new orders while the pipeline is too far behind to keep
//! its promise, instead of accepting orders the saga will cancel by payment timeout.
//!
//! A [`Shed`] watches the queues an order's steps wait in (inventory, payments,
//! shipping): every [`POLL`] it reads the transport's queue stats and keeps the largest
//! *oldest message age* among them. While that lag is above the limit — by default a third
//! of the payment timeout (`--shed-after-ms`), so that an order accepted now still has
//! time to reach its payment — `POST /orders` answers `503 Service Unavailable` with
//! `Retry-After` (the seconds the lag exceeds the limit by, 1–30) and a problem detail,
//! and counts the refusal (`orderflow_orders_shed_total`). The saga's queue is not
//! watched: its scheduled payment timeouts make its oldest message as old as the timeout
//! by design. Each API process watches on its own (one stats query per [`POLL`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use tidings_core::transport::{QueueStats, Transport};
use tokio_util::sync::CancellationToken;

use super::problem::{Problem, PROBLEM_JSON};

/// How often the queues are looked at.
pub const POLL: Duration = Duration::from_millis(500);

/// The queues whose lag refuses orders.
pub const WATCHED: &[&str] = &["inventory", "payments", "shipping"];

/// The back-pressure state shared by the API's handlers.
#[derive(Debug, Clone)]
pub struct Shed {
    limit: Duration,
    /// The watched queues' largest oldest-message age, in ms (0 until measured).
    lag_ms: Arc<AtomicU64>,
    /// Orders refused so far by this process.
    refused: Arc<AtomicU64>,
}

impl Shed {
    /// Refuses orders while the lag is above `limit`.
    pub fn new(limit: Duration) -> Self {
        Shed {
            limit,
            lag_ms: Arc::new(AtomicU64::new(0)),
            refused: Arc::new(AtomicU64::new(0)),
        }
    }

    /// The largest oldest-message age among the watched queues in `stats`.
    pub fn lag_of(stats: &[QueueStats]) -> Duration {
        stats
            .iter()
            .filter(|s| WATCHED.contains(&s.queue.as_str()))
            .filter_map(|s| s.oldest_age)
            .max()
            .unwrap_or_default()
    }

    /// Records a measured lag.
    pub fn set_lag(&self, lag: Duration) {
        let ms = u64::try_from(lag.as_millis()).unwrap_or(u64::MAX);
        self.lag_ms.store(ms, Ordering::Relaxed);
    }

    /// Watches `transport` every [`POLL`] until `stop`.
    pub fn watch(&self, transport: Arc<dyn Transport>, stop: CancellationToken) {
        let shed = self.clone();
        tokio::spawn(async move {
            loop {
                match transport.stats().await {
                    Ok(stats) => shed.set_lag(Shed::lag_of(&stats)),
                    // Unknown lag: do not refuse on a guess.
                    Err(e) => {
                        tracing::warn!(error = %e, "back-pressure: no queue stats");
                        shed.set_lag(Duration::ZERO);
                    }
                }
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(POLL) => {}
                }
            }
        });
    }

    /// Orders refused so far.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// `Some(503)` while the lag is above the limit (and counts it).
    pub fn check(&self) -> Option<Response> {
        let lag = Duration::from_millis(self.lag_ms.load(Ordering::Relaxed));
        if lag <= self.limit {
            return None;
        }
        self.refused.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("orderflow_orders_shed_total").increment(1);
        let retry = (lag - self.limit).as_secs().clamp(1, 30);
        let problem = Problem {
            kind: "https://orderflow.example/problems/overloaded".into(),
            title: "The order pipeline is behind; try again later".into(),
            status: 503,
            detail: format!(
                "orders wait {:.1} s in a queue (limit {:.1} s): an order placed now could not \
                 be paid before its deadline; retry after {retry} s",
                lag.as_secs_f64(),
                self.limit.as_secs_f64()
            ),
            errors: Vec::new(),
        };
        let body = serde_json::to_vec(&problem).unwrap_or_default();
        let mut resp = (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::CONTENT_TYPE, PROBLEM_JSON)],
            body,
        )
            .into_response();
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(retry));
        Some(resp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(queue: &str, age: u64) -> QueueStats {
        QueueStats {
            queue: queue.into(),
            ready: 1,
            in_flight: None,
            scheduled: None,
            oldest_age: Some(Duration::from_secs(age)),
            error_depth: 0,
            parked_keys: None,
        }
    }

    #[test]
    fn refuses_only_above_the_limit_and_ignores_the_saga_queue() {
        let shed = Shed::new(Duration::from_secs(10));
        assert!(shed.check().is_none());
        shed.set_lag(Shed::lag_of(&[stats("order-saga", 29), stats("payments", 4)]));
        assert!(shed.check().is_none(), "the saga's timers do not count");
        shed.set_lag(Shed::lag_of(&[stats("payments", 14), stats("inventory", 2)]));
        let resp = shed.check().expect("refused");
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(resp.headers()[header::RETRY_AFTER], "4");
        assert_eq!(shed.refused(), 1);
        shed.set_lag(Duration::from_secs(3));
        assert!(shed.check().is_none());
    }
}
