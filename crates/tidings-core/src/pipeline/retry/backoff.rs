//! [`Exponential`] back-off with a cap and jitter.

use std::time::Duration;

use rand::Rng;

use super::RetryPolicy;
use crate::handler::HandlerError;

/// Exponential back-off: before retry `n` (0-based) the base wait is
/// `min(max, initial * factor^n)`; jitter then shortens it by a random fraction of up to
/// `jitter`, so the wait lies in `[base * (1 - jitter), base]` and never exceeds `max`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Exponential {
    /// The base wait before the first retry.
    pub initial: Duration,
    /// How much the base wait grows per retry (values below 1 are taken as 1).
    pub factor: f64,
    /// The cap on any wait.
    pub max: Duration,
    /// How many retries at most (attempts = `max_retries + 1`).
    pub max_retries: u32,
    /// The fraction (0..=1) of the base wait that jitter may take off; 0 = no jitter,
    /// 1 = full jitter.
    pub jitter: f64,
}

impl Default for Exponential {
    /// 100 ms doubling up to 10 s, 5 retries, 20% jitter.
    fn default() -> Self {
        Exponential {
            initial: Duration::from_millis(100),
            factor: 2.0,
            max: Duration::from_secs(10),
            max_retries: 5,
            jitter: 0.2,
        }
    }
}

impl Exponential {
    /// `max_retries` retries starting at `initial`, doubling, capped at `max`, 20% jitter.
    pub fn new(initial: Duration, max: Duration, max_retries: u32) -> Self {
        Exponential {
            initial,
            max,
            max_retries,
            ..Self::default()
        }
    }

    /// The same policy with growth `factor`.
    pub fn factor(mut self, factor: f64) -> Self {
        self.factor = factor;
        self
    }

    /// The same policy with jitter fraction `jitter` (clamped to 0..=1).
    pub fn jitter(mut self, jitter: f64) -> Self {
        self.jitter = jitter;
        self
    }

    /// The wait before retry `retry` (0-based) without jitter: `min(max, initial * factor^retry)`.
    pub fn base_delay(&self, retry: u32) -> Duration {
        let factor = if self.factor.is_finite() {
            self.factor.max(1.0)
        } else {
            1.0
        };
        let exponent = i32::try_from(retry).unwrap_or(i32::MAX);
        let secs = self.initial.as_secs_f64() * factor.powi(exponent);
        match Duration::try_from_secs_f64(secs) {
            Ok(d) => d.min(self.max),
            Err(_) => self.max,
        }
    }

    /// The wait before retry `retry` (0-based) for a random draw `unit` in `[0, 1]`: the
    /// base wait shortened by `unit * jitter` of itself.
    pub fn jittered_delay(&self, retry: u32, unit: f64) -> Duration {
        let base = self.base_delay(retry);
        let jitter = if self.jitter.is_finite() {
            self.jitter.clamp(0.0, 1.0)
        } else {
            0.0
        };
        let cut = (unit.clamp(0.0, 1.0) * jitter).clamp(0.0, 1.0);
        base.mul_f64(1.0 - cut).min(base)
    }
}

impl RetryPolicy for Exponential {
    fn next_delay(&self, attempt: u32, _error: &HandlerError) -> Option<Duration> {
        let retry = attempt.checked_sub(1)?;
        if retry >= self.max_retries {
            return None;
        }
        Some(self.jittered_delay(retry, rand::rng().random::<f64>()))
    }
}
