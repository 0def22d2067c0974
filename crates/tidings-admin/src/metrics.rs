//! Prometheus: [`install_recorder`] and the queue gauges refreshed from
//! [`Transport::stats`](tidings_core::transport::Transport::stats) on each scrape.

use std::sync::Mutex;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tidings_core::telemetry::names;
use tidings_core::transport::QueueStats;

use crate::AdminError;

static HANDLE: Mutex<Option<PrometheusHandle>> = Mutex::new(None);

/// Installs the Prometheus recorder as the process's global `metrics` recorder, once;
/// later calls return the same handle. Fails if another recorder was installed first.
pub fn install_recorder() -> Result<PrometheusHandle, AdminError> {
    let mut slot = HANDLE.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(h) = slot.as_ref() {
        return Ok(h.clone());
    }
    let handle = PrometheusBuilder::new()
        .install_recorder()
        .map_err(|e| AdminError::Metrics(e.to_string()))?;
    *slot = Some(handle.clone());
    Ok(handle)
}

/// Sets the per-queue gauges (depth, error depth, oldest age, in flight) from `stats`.
pub fn record_queue_stats(stats: &[QueueStats]) {
    for s in stats {
        let q = s.queue.clone();
        metrics::gauge!(names::QUEUE_DEPTH, "queue" => q.clone()).set(s.ready as f64);
        metrics::gauge!(names::ERROR_DEPTH, "queue" => q.clone()).set(s.error_depth as f64);
        if let Some(age) = s.oldest_age {
            metrics::gauge!(names::OLDEST_AGE, "queue" => q.clone()).set(age.as_secs_f64());
        } else {
            metrics::gauge!(names::OLDEST_AGE, "queue" => q.clone()).set(0.0);
        }
        if let Some(n) = s.scheduled {
            metrics::gauge!("tidings_queue_scheduled", "queue" => q.clone()).set(n as f64);
        }
        if let Some(n) = s.parked_keys {
            metrics::gauge!("tidings_queue_parked_keys", "queue" => q).set(n as f64);
        }
    }
}
