//! The breaker's state machine and its sliding failure window, free of I/O so it can be
//! driven with any clock.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

use super::BreakerConfig;

/// The state of a circuit breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BreakerState {
    /// Deliveries reach the handler; failures are counted.
    Closed,
    /// One probe delivery reaches the handler; others are deferred.
    HalfOpen,
    /// Deliveries are deferred until the open duration has passed.
    Open,
}

impl BreakerState {
    /// The value of the `tidings_breaker_state` gauge: 0 closed, 1 half-open, 2 open.
    pub fn gauge_value(self) -> f64 {
        match self {
            BreakerState::Closed => 0.0,
            BreakerState::HalfOpen => 1.0,
            BreakerState::Open => 2.0,
        }
    }
}

/// What a delivery may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Admit {
    /// Call the handler; its outcome counts in the window.
    Pass,
    /// Call the handler as the half-open probe.
    Probe,
    /// Do not call the handler; defer the delivery by this long.
    Defer(Duration),
}

/// How an admitted call ended, as far as the breaker cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Outcome {
    /// Finished: success, or a permanent error (the dependency answered).
    Success,
    /// A transient failure.
    Failure,
    /// Neither (a deferral): not counted.
    Ignored,
}

#[derive(Debug)]
enum Inner {
    Closed,
    Open { until: Instant },
    HalfOpen { probing: bool },
}

#[derive(Debug)]
struct Bucket {
    start: Instant,
    successes: u32,
    failures: u32,
}

/// The state machine. Every method returns the new state when it changed.
#[derive(Debug)]
pub(super) struct Machine {
    config: BreakerConfig,
    inner: Inner,
    buckets: VecDeque<Bucket>,
}

const BUCKETS: u32 = 10;

impl Machine {
    pub(super) fn new(config: BreakerConfig) -> Self {
        Machine {
            config,
            inner: Inner::Closed,
            buckets: VecDeque::new(),
        }
    }

    /// The state as of `now` (an elapsed open period reads as half-open).
    pub(super) fn state(&self, now: Instant) -> BreakerState {
        match self.inner {
            Inner::Closed => BreakerState::Closed,
            Inner::Open { until } if now < until => BreakerState::Open,
            Inner::Open { .. } | Inner::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }

    /// Decides whether a delivery arriving at `now` reaches the handler.
    pub(super) fn admit(&mut self, now: Instant) -> (Admit, Option<BreakerState>) {
        match self.inner {
            Inner::Closed => (Admit::Pass, None),
            Inner::Open { until } if now < until => (Admit::Defer(until - now), None),
            Inner::Open { .. } => {
                self.inner = Inner::HalfOpen { probing: true };
                (Admit::Probe, Some(BreakerState::HalfOpen))
            }
            Inner::HalfOpen { probing: true } => (Admit::Defer(self.config.probe_defer), None),
            Inner::HalfOpen { probing: false } => {
                self.inner = Inner::HalfOpen { probing: true };
                (Admit::Probe, None)
            }
        }
    }

    /// Records how an admitted call ended at `now`.
    pub(super) fn record(
        &mut self,
        admit: Admit,
        outcome: Outcome,
        now: Instant,
    ) -> Option<BreakerState> {
        match (admit, &self.inner) {
            (Admit::Probe, Inner::HalfOpen { .. }) => match outcome {
                Outcome::Success => {
                    self.close();
                    Some(BreakerState::Closed)
                }
                Outcome::Failure => {
                    self.open(now);
                    Some(BreakerState::Open)
                }
                Outcome::Ignored => {
                    self.inner = Inner::HalfOpen { probing: false };
                    None
                }
            },
            (Admit::Pass, Inner::Closed) => {
                match outcome {
                    Outcome::Success => self.count(now, false),
                    Outcome::Failure => self.count(now, true),
                    Outcome::Ignored => return None,
                }
                if self.tripped() {
                    self.open(now);
                    Some(BreakerState::Open)
                } else {
                    None
                }
            }
            // A late result from an earlier state: it says nothing about the current one.
            _ => None,
        }
    }

    /// A probe ended without an outcome (cancelled): let the next delivery probe.
    pub(super) fn release_probe(&mut self) {
        if let Inner::HalfOpen { probing: true } = self.inner {
            self.inner = Inner::HalfOpen { probing: false };
        }
    }

    fn open(&mut self, now: Instant) {
        self.inner = Inner::Open {
            until: now + self.config.open_duration,
        };
        self.buckets.clear();
    }

    fn close(&mut self) {
        self.inner = Inner::Closed;
        self.buckets.clear();
    }

    fn bucket_len(&self) -> Duration {
        (self.config.window / BUCKETS).max(Duration::from_millis(1))
    }

    fn count(&mut self, now: Instant, failed: bool) {
        let window = self.config.window;
        while self
            .buckets
            .front()
            .is_some_and(|b| b.start + window <= now)
        {
            self.buckets.pop_front();
        }
        let len = self.bucket_len();
        let bucket = match self.buckets.back_mut() {
            Some(b) if now < b.start + len => b,
            _ => {
                self.buckets.push_back(Bucket {
                    start: now,
                    successes: 0,
                    failures: 0,
                });
                match self.buckets.back_mut() {
                    Some(b) => b,
                    None => return,
                }
            }
        };
        if failed {
            bucket.failures = bucket.failures.saturating_add(1);
        } else {
            bucket.successes = bucket.successes.saturating_add(1);
        }
    }

    fn tripped(&self) -> bool {
        let (mut failures, mut total) = (0u64, 0u64);
        for b in &self.buckets {
            failures += u64::from(b.failures);
            total += u64::from(b.failures) + u64::from(b.successes);
        }
        failures >= u64::from(self.config.failure_threshold)
            && total >= u64::from(self.config.min_throughput)
            && total > 0
            && failures as f64 / total as f64 >= self.config.failure_ratio
    }
}
