//! Prometheus: [`install_recorder`] and the queue gauges refreshed from
//! [`Transport::stats`](tidings_core::transport::Transport::stats) on each scrape.

use std::sync::Mutex;

use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle};
use tidings_core::telemetry::names;
use tidings_core::transport::QueueStats;

use crate::AdminError;

static HANDLE: Mutex<Option<PrometheusHandle>> = Mutex::new(None);

/// Bucket bounds of every `*_seconds` histogram: 0.5 ms to 60 s.
const SECONDS_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
];

/// Bucket bounds of the SQLite group-commit size (operations per commit).
const BATCH_BUCKETS: &[f64] = &[
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
];

/// Installs the Prometheus recorder as the process's global `metrics` recorder, once;
/// later calls return the same handle. Fails if another recorder was installed first.
/// Durations are exported as histograms (buckets from 0.5 ms to 60 s), and every Tidings metric
/// has its `# HELP` text ([`describe_metrics`](tidings_core::telemetry::describe_metrics)).
pub fn install_recorder() -> Result<PrometheusHandle, AdminError> {
    let mut slot = HANDLE.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(h) = slot.as_ref() {
        return Ok(h.clone());
    }
    let metric_error = |e: BuildError| AdminError::Metrics(e.to_string());
    // Histograms as Prometheus histograms (buckets), not summaries: buckets add up across
    // instances, quantiles of a summary do not.
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)
        .map_err(metric_error)?
        .set_buckets_for_metric(
            Matcher::Full("tidings_sqlite_commit_batch_size".into()),
            BATCH_BUCKETS,
        )
        .map_err(metric_error)?
        .install_recorder()
        .map_err(metric_error)?;
    tidings_core::telemetry::describe_metrics();
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
            metrics::gauge!(names::QUEUE_SCHEDULED, "queue" => q.clone()).set(n as f64);
        }
        if let Some(n) = s.parked_keys {
            metrics::gauge!(names::QUEUE_PARKED_KEYS, "queue" => q).set(n as f64);
        }
    }
}
