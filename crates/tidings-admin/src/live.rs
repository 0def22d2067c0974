//! `GET /endpoints` (each endpoint's current rates, latency, critical time and queue
//! figures) and `GET /history` (the sampler's last minutes, as aligned arrays for the
//! dashboard's charts).

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

use crate::history::History;
use crate::AdminState;

/// Rates in `GET /endpoints` are averaged over this many sampler ticks.
pub const RATE_TICKS: usize = 5;

/// One endpoint in `GET /endpoints`. Rates are per second over the last [`RATE_TICKS`]
/// ticks; `null` where nothing could be measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct EndpointView {
    /// Endpoint (queue) name.
    pub endpoint: String,
    /// Deliveries that ended, per second (this process).
    pub received_per_second: Option<f64>,
    /// Handled and acked, per second (this process).
    pub handled_per_second: Option<f64>,
    /// Ended in a failure (redelivered or dead-lettered), per second (this process).
    pub failed_per_second: Option<f64>,
    /// Delayed redeliveries and breaker deferrals, per second (this process).
    pub retried_per_second: Option<f64>,
    /// Dead-lettered, per second (this process).
    pub dead_lettered_per_second: Option<f64>,
    /// Mean handler latency, ms (from the Prometheus histogram, when a handle is given).
    pub handler_ms: Option<f64>,
    /// Mean critical time (sent → handled), ms.
    pub critical_ms: Option<f64>,
    /// Messages ready (transport, every consumer).
    pub ready: Option<u64>,
    /// Deliveries being handled now, by every consumer of the queue (transport).
    pub in_flight: Option<u64>,
    /// The most deliveries seen in flight at once over the history window: concurrent
    /// consumers seen busy, across every replica.
    pub in_flight_peak: Option<u64>,
    /// Age of the oldest waiting message, seconds.
    pub oldest_age_seconds: Option<f64>,
    /// Messages in the error queue.
    pub error_depth: Option<u64>,
}

/// `GET /endpoints`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct EndpointsView {
    /// Whether the sampler runs (false: no tokio runtime, or disabled).
    pub sampling: bool,
    /// Whether rates are counted (a [`MessageJournal`](crate::MessageJournal) is installed).
    pub rates: bool,
    /// Whether handler latency is measured (a Prometheus handle is given).
    pub latency: bool,
    /// Seconds the rates cover.
    pub covered_seconds: f64,
    /// Why the last queue-stats poll failed, if it did.
    pub stats_error: Option<String>,
    /// Every endpoint or queue seen, by name.
    pub endpoints: Vec<EndpointView>,
}

fn rate(n: f64, covered: f64) -> Option<f64> {
    (covered > 0.0).then(|| n / covered)
}

/// Per endpoint: rates, latency, critical time, depth, in flight.
#[utoipa::path(get, path = "/endpoints", tag = "queues",
    responses((status = 200, description = "Every endpoint or queue seen", body = EndpointsView)))]
pub(crate) async fn endpoints(State(s): State<AdminState>) -> Json<EndpointsView> {
    let h = s.sampling.history();
    let (recent, covered) = h.recent(RATE_TICKS);
    let peaks = h.peak_in_flight();
    let mut names: BTreeSet<&str> = recent.keys().map(|k| &**k).collect();
    names.extend(h.last_stats.iter().map(|q| q.queue.as_str()));
    let counted = s.journal.is_some();
    let endpoints = names
        .into_iter()
        .map(|name| {
            let d = recent.get(name).copied().unwrap_or_default();
            let q = h.last_stats.iter().find(|q| q.queue == name);
            let r = |n: f64| rate(n, covered).filter(|_| counted);
            EndpointView {
                endpoint: name.to_string(),
                received_per_second: r(d.received),
                handled_per_second: r(d.handled),
                failed_per_second: r(d.failed),
                retried_per_second: r(d.retried),
                dead_lettered_per_second: r(d.dead_lettered),
                handler_ms: d.handler_ms(),
                critical_ms: d.critical_ms(),
                ready: q.map(|q| q.ready),
                in_flight: q.and_then(|q| q.in_flight),
                in_flight_peak: peaks.get(name).copied(),
                oldest_age_seconds: q.and_then(|q| q.oldest_age.map(|a| a.as_secs_f64())),
                error_depth: q.map(|q| q.error_depth),
            }
        })
        .collect();
    Json(EndpointsView {
        sampling: s.sampling.running(),
        rates: counted,
        latency: s.metrics.is_some(),
        covered_seconds: covered,
        stats_error: h.stats_error.clone(),
        endpoints,
    })
}

/// One endpoint's series in `GET /history`: per-second rates and mean latencies per tick.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct EndpointSeries {
    /// Received per second.
    pub received: Vec<Option<f64>>,
    /// Handled per second.
    pub handled: Vec<Option<f64>>,
    /// Failed per second.
    pub failed: Vec<Option<f64>>,
    /// Retried per second.
    pub retried: Vec<Option<f64>>,
    /// Mean handler latency, ms.
    pub handler_ms: Vec<Option<f64>>,
    /// Mean critical time, ms.
    pub critical_ms: Vec<Option<f64>>,
}

/// One queue's series in `GET /history`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct QueueSeries {
    /// Ready.
    pub ready: Vec<Option<u64>>,
    /// Error-queue depth.
    pub error: Vec<Option<u64>>,
    /// In flight.
    pub in_flight: Vec<Option<u64>>,
    /// Oldest waiting message's age, seconds.
    pub oldest_age: Vec<Option<f64>>,
}

/// `GET /history`: `t` are Unix seconds; each series has one value per `t` (`null` when
/// the endpoint or queue was not seen then).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HistoryView {
    /// Seconds between rate points.
    pub tick_seconds: f64,
    /// Seconds between depth points.
    pub stats_seconds: f64,
    /// Seconds of history kept.
    pub window_seconds: f64,
    /// Times of the rate points.
    pub rates_t: Vec<f64>,
    /// Seconds each rate point covers (rate × seconds = count).
    pub rates_dt: Vec<f64>,
    /// Rates by endpoint.
    pub rates: BTreeMap<String, EndpointSeries>,
    /// Times of the depth points.
    pub depth_t: Vec<f64>,
    /// Depths by queue.
    pub depth: BTreeMap<String, QueueSeries>,
}

fn series(h: &History) -> (Vec<f64>, BTreeMap<String, EndpointSeries>) {
    let n = h.rates.len();
    let t: Vec<f64> = h.rates.iter().map(|p| p.t).collect();
    let mut out: BTreeMap<String, EndpointSeries> = BTreeMap::new();
    for (i, p) in h.rates.iter().enumerate() {
        for (name, d) in &p.endpoints {
            let s = out
                .entry(name.to_string())
                .or_insert_with(|| EndpointSeries {
                    received: vec![None; n],
                    handled: vec![None; n],
                    failed: vec![None; n],
                    retried: vec![None; n],
                    handler_ms: vec![None; n],
                    critical_ms: vec![None; n],
                });
            s.received[i] = rate(d.received, p.dt);
            s.handled[i] = rate(d.handled, p.dt);
            s.failed[i] = rate(d.failed, p.dt);
            s.retried[i] = rate(d.retried, p.dt);
            s.handler_ms[i] = d.handler_ms();
            s.critical_ms[i] = d.critical_ms();
        }
    }
    (t, out)
}

/// The sampler's last minutes: rates per endpoint, depths per queue.
#[utoipa::path(get, path = "/history", tag = "queues",
    responses((status = 200, description = "Aligned series for the charts", body = HistoryView)))]
pub(crate) async fn history(State(s): State<AdminState>) -> Json<HistoryView> {
    let h = s.sampling.history();
    let (rates_t, rates) = series(&h);
    let rates_dt = h.rates.iter().map(|p| p.dt).collect();
    let depth_t: Vec<f64> = h.depth.iter().map(|p| p.t).collect();
    let n = h.depth.len();
    let mut depth: BTreeMap<String, QueueSeries> = BTreeMap::new();
    for (i, p) in h.depth.iter().enumerate() {
        for (name, d) in &p.queues {
            let q = depth
                .entry(name.to_string())
                .or_insert_with(|| QueueSeries {
                    ready: vec![None; n],
                    error: vec![None; n],
                    in_flight: vec![None; n],
                    oldest_age: vec![None; n],
                });
            q.ready[i] = Some(d.ready);
            q.error[i] = Some(d.error);
            q.in_flight[i] = d.in_flight;
            q.oldest_age[i] = d.oldest_age;
        }
    }
    let c = s.sampling.config;
    Json(HistoryView {
        tick_seconds: c.tick.as_secs_f64(),
        stats_seconds: c.stats_every.as_secs_f64(),
        window_seconds: c.window.as_secs_f64(),
        rates_t,
        rates_dt,
        rates,
        depth_t,
        depth,
    })
}
