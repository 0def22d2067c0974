//! Back-pressure: the API refuses new orders while the pipeline is too far behind to keep
//! its promise, instead of accepting orders the saga will cancel by payment timeout.
//!
//! A [`Shed`] measures, every [`POLL`], how long orders have been on their way to their
//! payment: the age of the [`NTH`]-oldest order saga still `reserving` stock or `paying`
//! (the time since it entered that state), among those updated within the last
//! [`WINDOW_FACTOR`] × the limit (so an order stuck behind a dead letter does not refuse
//! orders for ever). While that lag is above the limit — by default a third of the payment
//! timeout (`--shed-after-ms`), so that an order accepted now still has time to be paid —
//! `POST /orders` answers `503 Service Unavailable` with `Retry-After` (the seconds the lag
//! exceeds the limit by, 1–30) and a problem detail, stores nothing, and counts the
//! refusal (`orderflow_orders_shed_total`).
//!
//! Why not the queues' *oldest message age*: on PostgreSQL a delayed redelivery (a
//! payment retried after 2 s) waits in `scheduled` with its first send time and counts as
//! the queue's oldest message, so one retry looked like a backlog; and messages a worker
//! has prefetched count as in flight, not waiting, so a backlog hid in the prefetch. The
//! saga's ages measure what the payment timeout measures. Each API process measures on
//! its own (one indexed query per [`POLL`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use tokio_util::sync::CancellationToken;

use super::problem::{Problem, PROBLEM_JSON};
use crate::args;
use crate::db::Db;

/// How often the queues are looked at.
pub const POLL: Duration = Duration::from_millis(500);

/// The saga that is measured behind: the `NTH`-oldest, not the oldest (one unlucky order,
/// e.g. a payment in its redelivery back-off, is not a backlog).
pub const NTH: i64 = 5;

/// Orders updated longer ago than this many limits do not count (stuck, not queued).
pub const WINDOW_FACTOR: u32 = 3;

/// The back-pressure state shared by the API's handlers.
#[derive(Debug, Clone)]
pub struct Shed {
    limit: Duration,
    /// The largest lag measured, in ms (0 until measured).
    lag_ms: Arc<AtomicU64>,
    /// Where it is (a queue, or the orders waiting for payment).
    behind: Arc<std::sync::Mutex<String>>,
    /// Orders refused so far by this process.
    refused: Arc<AtomicU64>,
}

impl Shed {
    /// Refuses orders while the lag is above `limit`.
    pub fn new(limit: Duration) -> Self {
        Shed {
            limit,
            lag_ms: Arc::new(AtomicU64::new(0)),
            behind: Arc::new(std::sync::Mutex::new(String::new())),
            refused: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Records a measured lag and where it is.
    pub fn set_lag(&self, (lag, behind): (Duration, String)) {
        let ms = u64::try_from(lag.as_millis()).unwrap_or(u64::MAX);
        self.lag_ms.store(ms, Ordering::Relaxed);
        *self.behind.lock().unwrap_or_else(|e| e.into_inner()) = behind;
    }

    /// Measures the lag in `db` every [`POLL`] until `stop`.
    pub fn watch(&self, db: Db, stop: CancellationToken) {
        let shed = self.clone();
        let window = self.limit * WINDOW_FACTOR;
        tokio::spawn(async move {
            loop {
                match behind(&db, window).await {
                    Ok(lag) => shed.set_lag(lag),
                    // Unknown lag: do not refuse on a guess.
                    Err(e) => {
                        tracing::warn!(error = %e, "back-pressure: cannot measure the lag");
                        shed.set_lag(Default::default());
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
                "the pipeline is {:.1} s behind ({}; limit {:.1} s): an order placed now could \
                 not be paid before its deadline; retry after {retry} s",
                lag.as_secs_f64(),
                self.behind.lock().unwrap_or_else(|e| e.into_inner()),
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

/// The [`NTH`]-oldest order saga `reserving` or `paying`, updated within `window`: how
/// long it has been in that state, and the state.
pub async fn behind(db: &Db, window: Duration) -> Result<(Duration, String), sqlx::Error> {
    let window_ms = i64::try_from(window.as_millis()).unwrap_or(i64::MAX);
    let row: Option<(i64, String)> = if db.is_pg() {
        db.read
            .opt(
                "SELECT CAST(EXTRACT(EPOCH FROM now() - updated_at) * 1000 AS BIGINT), state \
                 FROM tidings_saga_instances WHERE saga = 'order' \
                 AND state IN ('reserving', 'paying') \
                 AND updated_at >= now() - CAST(? AS BIGINT) * interval '1 millisecond' \
                 ORDER BY updated_at LIMIT 1 OFFSET ?",
                args![window_ms, NTH - 1],
            )
            .await?
    } else {
        let now = chrono::Utc::now().timestamp_millis();
        db.read
            .opt::<(i64, String)>(
                "SELECT updated_at, state FROM tidings_saga_instances WHERE saga = 'order' \
                 AND state IN ('reserving', 'paying') AND updated_at >= ? \
                 ORDER BY updated_at LIMIT 1 OFFSET ?",
                args![now - window_ms, NTH - 1],
            )
            .await?
            .map(|(at, state)| (now - at, state))
    };
    Ok(match row {
        Some((ms, state)) => (
            Duration::from_millis(ms.max(0) as u64),
            format!("orders {state} for that long"),
        ),
        None => Default::default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_only_above_the_limit() {
        let shed = Shed::new(Duration::from_secs(10));
        assert!(shed.check().is_none());
        shed.set_lag((Duration::from_secs(9), "orders paying for that long".into()));
        assert!(shed.check().is_none());
        shed.set_lag((
            Duration::from_secs(14),
            "orders paying for that long".into(),
        ));
        let resp = shed.check().expect("refused");
        let body = futures::executor::block_on(axum::body::to_bytes(resp.into_body(), 4096));
        let text = String::from_utf8(body.expect("body").to_vec()).expect("utf-8");
        assert!(text.contains("14.0 s behind (orders paying"), "{text}");
        let resp = shed.check().expect("refused");
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(resp.headers()[header::RETRY_AFTER], "4");
        assert_eq!(shed.refused(), 2);
        shed.set_lag((Duration::from_secs(3), String::new()));
        assert!(shed.check().is_none());
    }
}
