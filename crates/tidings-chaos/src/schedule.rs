//! The seeded kill moments.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// The waits between a start getting ready and its kill: uniform in `[min, max]`, from a
/// generator seeded by the run's seed (the same seed, the same waits).
#[derive(Debug, Clone)]
pub struct Schedule {
    rng: StdRng,
    min: Duration,
    max: Duration,
}

impl Schedule {
    /// The schedule of `seed` between `min` and `max`.
    pub fn new(seed: u64, min: Duration, max: Duration) -> Self {
        let (min, max) = if min <= max { (min, max) } else { (max, min) };
        Schedule {
            rng: StdRng::seed_from_u64(seed),
            min,
            max,
        }
    }

    /// The next wait.
    pub fn next_wait(&mut self) -> Duration {
        let (lo, hi) = (self.min.as_micros() as u64, self.max.as_micros() as u64);
        Duration::from_micros(self.rng.random_range(lo..=hi))
    }
}

impl Iterator for Schedule {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        Some(self.next_wait())
    }
}
