//! [`History`]: the dashboard's memory of the last minutes — per-endpoint deltas of the
//! journal's counters (one point per sampler tick) and per-queue depths (one point per
//! stats poll), each in a ring of fixed capacity, so memory stays bounded whatever runs.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use tidings_core::transport::QueueStats;

/// At most this many endpoints or queues are charted (the rest are left out of the history).
pub(crate) const MAX_SERIES: usize = 256;

/// What one endpoint did during one tick.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Delta {
    pub(crate) received: f64,
    pub(crate) handled: f64,
    pub(crate) failed: f64,
    pub(crate) retried: f64,
    pub(crate) dead_lettered: f64,
    /// Sum of the critical times (ms) of the handled messages.
    pub(crate) critical_ms_sum: f64,
    /// Handler seconds and deliveries timed (from the Prometheus histogram).
    pub(crate) handler_seconds: f64,
    pub(crate) handler_count: f64,
}

impl Delta {
    pub(crate) fn add(&mut self, o: &Delta) {
        self.received += o.received;
        self.handled += o.handled;
        self.failed += o.failed;
        self.retried += o.retried;
        self.dead_lettered += o.dead_lettered;
        self.critical_ms_sum += o.critical_ms_sum;
        self.handler_seconds += o.handler_seconds;
        self.handler_count += o.handler_count;
    }

    /// Mean critical time of the handled messages, in ms.
    pub(crate) fn critical_ms(&self) -> Option<f64> {
        (self.handled > 0.0).then(|| self.critical_ms_sum / self.handled)
    }

    /// Mean handler latency, in ms.
    pub(crate) fn handler_ms(&self) -> Option<f64> {
        (self.handler_count > 0.0).then(|| self.handler_seconds * 1000.0 / self.handler_count)
    }
}

/// One sampler tick: when (Unix seconds), how long it covered, and each endpoint's delta.
#[derive(Debug, Clone)]
pub(crate) struct RatePoint {
    pub(crate) t: f64,
    pub(crate) dt: f64,
    pub(crate) endpoints: Vec<(Arc<str>, Delta)>,
}

/// One queue at one stats poll.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Depth {
    pub(crate) ready: u64,
    pub(crate) error: u64,
    pub(crate) in_flight: Option<u64>,
    pub(crate) oldest_age: Option<f64>,
}

/// One stats poll: when (Unix seconds) and each queue's depth.
#[derive(Debug, Clone)]
pub(crate) struct DepthPoint {
    pub(crate) t: f64,
    pub(crate) queues: Vec<(Arc<str>, Depth)>,
}

/// The rings, and the last stats poll.
#[derive(Debug)]
pub(crate) struct History {
    pub(crate) rates: VecDeque<RatePoint>,
    pub(crate) depth: VecDeque<DepthPoint>,
    rate_capacity: usize,
    depth_capacity: usize,
    /// The last successful stats poll.
    pub(crate) last_stats: Vec<QueueStats>,
    /// Why the last stats poll failed, if it did.
    pub(crate) stats_error: Option<String>,
    /// Interned names, so points share one allocation per endpoint or queue.
    names: BTreeMap<String, Arc<str>>,
}

impl History {
    pub(crate) fn new(rate_capacity: usize, depth_capacity: usize) -> Self {
        History {
            rates: VecDeque::with_capacity(rate_capacity.min(4096)),
            depth: VecDeque::with_capacity(depth_capacity.min(4096)),
            rate_capacity: rate_capacity.max(1),
            depth_capacity: depth_capacity.max(1),
            last_stats: Vec::new(),
            stats_error: None,
            names: BTreeMap::new(),
        }
    }

    /// The shared name for `name`, or `None` once [`MAX_SERIES`] names are known.
    pub(crate) fn intern(&mut self, name: &str) -> Option<Arc<str>> {
        if let Some(n) = self.names.get(name) {
            return Some(n.clone());
        }
        if self.names.len() >= MAX_SERIES {
            return None;
        }
        let n: Arc<str> = Arc::from(name);
        self.names.insert(name.to_string(), n.clone());
        Some(n)
    }

    pub(crate) fn push_rates(&mut self, point: RatePoint) {
        if self.rates.len() >= self.rate_capacity {
            self.rates.pop_front();
        }
        self.rates.push_back(point);
    }

    pub(crate) fn push_depth(&mut self, stats: Vec<QueueStats>, t: f64) {
        let mut queues = Vec::with_capacity(stats.len());
        for s in &stats {
            if let Some(name) = self.intern(&s.queue) {
                let depth = Depth {
                    ready: s.ready,
                    error: s.error_depth,
                    in_flight: s.in_flight,
                    oldest_age: s.oldest_age.map(|d| d.as_secs_f64()),
                };
                queues.push((name, depth));
            }
        }
        if self.depth.len() >= self.depth_capacity {
            self.depth.pop_front();
        }
        self.depth.push_back(DepthPoint { t, queues });
        self.last_stats = stats;
        self.stats_error = None;
    }

    /// Each endpoint's deltas added up over the last `ticks` points, and the time covered.
    pub(crate) fn recent(&self, ticks: usize) -> (BTreeMap<Arc<str>, Delta>, f64) {
        let mut sum: BTreeMap<Arc<str>, Delta> = BTreeMap::new();
        let mut covered = 0.0;
        for p in self.rates.iter().rev().take(ticks) {
            covered += p.dt;
            for (name, d) in &p.endpoints {
                sum.entry(name.clone()).or_default().add(d);
            }
        }
        (sum, covered)
    }

    /// The largest in-flight count each queue showed over the whole depth history.
    pub(crate) fn peak_in_flight(&self) -> BTreeMap<Arc<str>, u64> {
        let mut peak: BTreeMap<Arc<str>, u64> = BTreeMap::new();
        for p in &self.depth {
            for (name, d) in &p.queues {
                if let Some(n) = d.in_flight {
                    let e = peak.entry(name.clone()).or_default();
                    *e = (*e).max(n);
                }
            }
        }
        peak
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(queue: &str, ready: u64) -> QueueStats {
        QueueStats {
            queue: queue.into(),
            ready,
            in_flight: Some(ready / 2),
            scheduled: None,
            oldest_age: None,
            error_depth: 0,
            parked_keys: None,
        }
    }

    #[test]
    fn rings_stay_within_capacity_and_sum_the_recent_ticks() {
        let mut h = History::new(3, 2);
        let orders = h.intern("orders").unwrap();
        for i in 0..5 {
            let d = Delta {
                received: i as f64,
                handled: i as f64,
                critical_ms_sum: 10.0 * i as f64,
                ..Default::default()
            };
            h.push_rates(RatePoint {
                t: i as f64,
                dt: 1.0,
                endpoints: vec![(orders.clone(), d)],
            });
        }
        assert_eq!(h.rates.len(), 3);
        assert_eq!(h.rates[0].t, 2.0);
        let (sum, covered) = h.recent(2);
        assert_eq!(covered, 2.0);
        assert_eq!(sum[&orders].handled, 7.0);
        assert_eq!(sum[&orders].critical_ms(), Some(10.0));
        assert_eq!(sum[&orders].handler_ms(), None);
        for ready in [4, 10, 6] {
            h.push_depth(vec![stats("orders", ready)], 0.0);
        }
        assert_eq!(h.depth.len(), 2);
        assert_eq!(h.peak_in_flight()[&orders], 5);
        assert_eq!(h.last_stats[0].ready, 6);
    }

    #[test]
    fn names_are_bounded() {
        let mut h = History::new(1, 1);
        for i in 0..MAX_SERIES {
            assert!(h.intern(&format!("q{i}")).is_some());
        }
        assert!(h.intern("one-too-many").is_none());
        assert!(h.intern("q0").is_some());
    }
}
