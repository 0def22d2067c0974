//! The admin crate's sampler: two background tasks started by [`router`](crate::router)
//! (once per [`AdminState`](crate::AdminState), ending when the last clone of the state is
//! dropped).
//!
//! - **Stats**, every [`SamplerConfig::stats_every`] (default 5 s): calls
//!   [`Transport::stats`] and sets the queue gauges (`tidings_queue_depth`,
//!   `tidings_queue_oldest_age_seconds`, error depth, scheduled, parked keys) on the global
//!   `metrics` recorder, so a Prometheus or KEDA scaler sees them whether or not anyone
//!   opens a page; the depths go into the dashboard's history.
//! - **Rates**, every [`SamplerConfig::tick`] (default 1 s): reads the
//!   [`MessageJournal`](crate::MessageJournal)'s per-endpoint counters and, when a
//!   Prometheus handle is given, the handler-latency histogram, and keeps the deltas.
//!
//! Both rings hold [`SamplerConfig::window`] (default 10 minutes) of points.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusHandle;
use tidings_core::transport::Transport;
use tokio::time::{Instant, MissedTickBehavior};

use crate::history::{Delta, History, RatePoint};
use crate::promtext::{handler_latency, Latency};
use crate::{AdminState, EndpointCounters, MessageJournal};

/// How often the sampler looks, and how much it remembers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct SamplerConfig {
    /// Rates are sampled this often (default 1 s).
    pub tick: Duration,
    /// Queue stats are polled, and the queue gauges set, this often (default 5 s).
    pub stats_every: Duration,
    /// The charts' history (default 10 minutes).
    pub window: Duration,
    /// Whether to sample at all (default true).
    pub enabled: bool,
}

impl Default for SamplerConfig {
    fn default() -> Self {
        SamplerConfig {
            tick: Duration::from_secs(1),
            stats_every: Duration::from_secs(5),
            window: Duration::from_secs(600),
            enabled: true,
        }
    }
}

impl SamplerConfig {
    /// No sampler: no background task, no history; the queue gauges are set only when
    /// `/metrics` is scraped.
    pub fn disabled() -> Self {
        SamplerConfig {
            enabled: false,
            ..Default::default()
        }
    }

    /// Samples rates every `tick` (at least 10 ms).
    pub fn tick(mut self, tick: Duration) -> Self {
        self.tick = tick.max(Duration::from_millis(10));
        self
    }

    /// Polls queue stats every `every` (at least 10 ms).
    pub fn stats_every(mut self, every: Duration) -> Self {
        self.stats_every = every.max(Duration::from_millis(10));
        self
    }

    /// Keeps `window` of history.
    pub fn window(mut self, window: Duration) -> Self {
        self.window = window;
        self
    }

    fn points(window: Duration, every: Duration) -> usize {
        let n = window.as_secs_f64() / every.as_secs_f64().max(0.001);
        (n.ceil() as usize).clamp(2, 100_000)
    }
}

/// The sampler's config and memory, shared by the state's clones and (weakly) its tasks.
#[derive(Debug)]
pub(crate) struct Sampling {
    pub(crate) config: SamplerConfig,
    history: Mutex<History>,
    started: AtomicBool,
}

impl Sampling {
    pub(crate) fn new(config: SamplerConfig) -> Self {
        let rates = SamplerConfig::points(config.window, config.tick);
        let depth = SamplerConfig::points(config.window, config.stats_every);
        Sampling {
            config,
            history: Mutex::new(History::new(rates, depth)),
            started: AtomicBool::new(false),
        }
    }

    pub(crate) fn history(&self) -> MutexGuard<'_, History> {
        // Every update is a push or a field assignment: a panic elsewhere cannot leave
        // the rings inconsistent.
        self.history.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn running(&self) -> bool {
        self.started.load(Ordering::SeqCst)
    }
}

/// Starts the sampler tasks of `state`, once; not without a tokio runtime or when disabled.
pub(crate) fn start(state: &AdminState) {
    let sampling = &state.sampling;
    if !sampling.config.enabled {
        return;
    }
    let Ok(rt) = tokio::runtime::Handle::try_current() else {
        tracing::debug!("admin: no tokio runtime here, the sampler is not started");
        return;
    };
    if sampling.started.swap(true, Ordering::SeqCst) {
        return;
    }
    let weak = Arc::downgrade(sampling);
    rt.spawn(poll_stats(weak.clone(), state.transport.clone()));
    if state.journal.is_some() || state.metrics.is_some() {
        // The baseline is read now, not when the task first runs: whatever is handled
        // after `router()` returns shows up in the rates.
        let baseline = Reading::take(state.journal.as_ref(), state.metrics.as_ref());
        rt.spawn(sample_rates(
            weak,
            state.journal.clone(),
            state.metrics.clone(),
            baseline,
        ));
    }
}

fn unix_now() -> f64 {
    chrono::Utc::now().timestamp_millis() as f64 / 1000.0
}

async fn poll_stats(weak: Weak<Sampling>, transport: Arc<dyn Transport>) {
    let Some(every) = weak.upgrade().map(|s| s.config.stats_every) else {
        return;
    };
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        ticker.tick().await;
        if weak.strong_count() == 0 {
            return;
        }
        // A transport that hangs must not stall the loop forever.
        let polled = tokio::time::timeout(every.max(Duration::from_secs(5)), transport.stats());
        let result = match polled.await {
            Ok(r) => r.map_err(|e| e.to_string()),
            Err(_) => Err("the transport did not answer in time".to_string()),
        };
        let Some(sampling) = weak.upgrade() else {
            return;
        };
        match result {
            Ok(stats) => {
                crate::metrics::record_queue_stats(&stats);
                sampling.history().push_depth(stats, unix_now());
                failing = false;
            }
            Err(e) => {
                if !failing {
                    tracing::warn!(transport = transport.name(), error = %e, "admin sampler: queue stats failed");
                }
                failing = true;
                sampling.history().stats_error = Some(e);
            }
        }
    }
}

/// What the rates task last read: the journal's totals and the latency histogram.
#[derive(Default)]
struct Reading {
    counters: BTreeMap<String, EndpointCounters>,
    latency: BTreeMap<String, Latency>,
}

impl Reading {
    fn take(journal: Option<&MessageJournal>, metrics: Option<&PrometheusHandle>) -> Self {
        Reading {
            counters: journal
                .map(|j| j.counters().into_iter().collect())
                .unwrap_or_default(),
            latency: metrics
                .map(|h| handler_latency(&h.render()))
                .unwrap_or_default(),
        }
    }

    /// Each endpoint's change since `before`.
    fn since(&self, before: &Reading) -> BTreeMap<&str, Delta> {
        let mut out: BTreeMap<&str, Delta> = BTreeMap::new();
        for (name, c) in &self.counters {
            let b = before.counters.get(name).copied().unwrap_or_default();
            let d = out.entry(name).or_default();
            d.received = c.received.saturating_sub(b.received) as f64;
            d.handled = c.handled.saturating_sub(b.handled) as f64;
            d.failed = c.failed.saturating_sub(b.failed) as f64;
            d.retried = c.retried.saturating_sub(b.retried) as f64;
            d.dead_lettered = c.dead_lettered.saturating_sub(b.dead_lettered) as f64;
            d.critical_ms_sum = (c.critical_ms_sum - b.critical_ms_sum).max(0.0);
        }
        for (name, l) in &self.latency {
            let b = before.latency.get(name).copied().unwrap_or_default();
            let d = out.entry(name).or_default();
            d.handler_seconds = (l.seconds - b.seconds).max(0.0);
            d.handler_count = (l.count - b.count).max(0.0);
        }
        out
    }
}

async fn sample_rates(
    weak: Weak<Sampling>,
    journal: Option<MessageJournal>,
    metrics: Option<PrometheusHandle>,
    baseline: Reading,
) {
    let Some(tick) = weak.upgrade().map(|s| s.config.tick) else {
        return;
    };
    let mut ticker = tokio::time::interval(tick);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut before = baseline;
    let mut before_at = Instant::now();
    ticker.tick().await; // the first tick completes at once
    loop {
        ticker.tick().await;
        let Some(sampling) = weak.upgrade() else {
            return;
        };
        let now = Reading::take(journal.as_ref(), metrics.as_ref());
        let at = Instant::now();
        let dt = (at - before_at).as_secs_f64();
        {
            let mut h = sampling.history();
            let mut endpoints = Vec::new();
            for (name, delta) in now.since(&before) {
                if let Some(name) = h.intern(name) {
                    endpoints.push((name, delta));
                }
            }
            h.push_rates(RatePoint {
                t: unix_now(),
                dt,
                endpoints,
            });
        }
        before = now;
        before_at = at;
    }
}
