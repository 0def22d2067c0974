//! [`BreakerConfig`]: when the circuit opens and for how long.

use std::time::Duration;

/// When a [`CircuitBreaker`](super::CircuitBreaker) opens, and for how long.
///
/// The circuit opens when, within the sliding `window`, at least `failure_threshold`
/// attempts failed transiently, at least `min_throughput` attempts finished, and failures
/// make up at least `failure_ratio` of them. It then stays open for `open_duration`, after
/// which one probe is let through (half-open).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BreakerConfig {
    pub(super) window: Duration,
    pub(super) failure_threshold: u32,
    pub(super) failure_ratio: f64,
    pub(super) min_throughput: u32,
    pub(super) open_duration: Duration,
    pub(super) probe_defer: Duration,
}

impl Default for BreakerConfig {
    /// 5 failures that are at least half of at least 5 attempts within 60 s open the
    /// circuit for 30 s; during a probe, other deliveries are deferred by 1 s.
    fn default() -> Self {
        BreakerConfig {
            window: Duration::from_secs(60),
            failure_threshold: 5,
            failure_ratio: 0.5,
            min_throughput: 5,
            open_duration: Duration::from_secs(30),
            probe_defer: Duration::from_secs(1),
        }
    }
}

impl BreakerConfig {
    /// The defaults (see [`Default`]).
    pub fn new() -> Self {
        Self::default()
    }

    /// The sliding window failures are counted in (kept in ten buckets).
    pub fn window(mut self, window: Duration) -> Self {
        self.window = window;
        self
    }

    /// Transient failures needed within the window to open the circuit (at least 1).
    pub fn failure_threshold(mut self, failures: u32) -> Self {
        self.failure_threshold = failures.max(1);
        self
    }

    /// The share of failed attempts (0..=1) needed within the window to open the circuit.
    pub fn failure_ratio(mut self, ratio: f64) -> Self {
        self.failure_ratio = if ratio.is_finite() {
            ratio.clamp(0.0, 1.0)
        } else {
            1.0
        };
        self
    }

    /// Attempts that must have finished within the window before the circuit may open.
    pub fn min_throughput(mut self, attempts: u32) -> Self {
        self.min_throughput = attempts;
        self
    }

    /// How long the circuit stays open before a probe is let through.
    pub fn open_duration(mut self, duration: Duration) -> Self {
        self.open_duration = duration;
        self
    }

    /// How long deliveries are deferred while the half-open probe is running.
    pub fn probe_defer(mut self, duration: Duration) -> Self {
        self.probe_defer = duration;
        self
    }
}
