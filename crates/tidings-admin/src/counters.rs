//! [`EndpointCounters`]: running totals per endpoint that the [`MessageJournal`](crate::MessageJournal)
//! keeps beside its ring of entries (they never wrap, whatever the journal's capacity), so
//! the dashboard's sampler can turn them into rates.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tidings_core::observe::Outcome;

/// How the deliveries of one endpoint ended, counted since the process started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct EndpointCounters {
    /// Deliveries that ended (whatever the outcome): received and settled.
    pub received: u64,
    /// Handled and acked.
    pub handled: u64,
    /// Ended in a failure: redelivered later, or dead-lettered.
    pub failed: u64,
    /// Scheduled again after a failure (delayed redelivery) or deferred by an open breaker.
    pub retried: u64,
    /// Moved to the error queue.
    pub dead_lettered: u64,
    /// Skipped because they expired.
    pub expired: u64,
    /// Sum over handled messages of their critical time (sent → handled), in milliseconds.
    pub critical_ms_sum: f64,
    /// The largest critical time of a handled message so far, in milliseconds.
    pub critical_ms_max: f64,
}

impl EndpointCounters {
    /// Counts one delivery that ended at `now`.
    pub(crate) fn count(&mut self, outcome: &Outcome, sent_at: DateTime<Utc>, now: DateTime<Utc>) {
        self.received += 1;
        match outcome {
            Outcome::Consumed => {
                self.handled += 1;
                // Clocks of other hosts may run ahead: a negative span counts as zero.
                let ms = (now - sent_at)
                    .num_microseconds()
                    .unwrap_or(i64::MAX)
                    .max(0) as f64
                    / 1000.0;
                self.critical_ms_sum += ms;
                self.critical_ms_max = self.critical_ms_max.max(ms);
            }
            Outcome::Redelivered { .. } => {
                self.failed += 1;
                self.retried += 1;
            }
            Outcome::Deferred { .. } => self.retried += 1,
            Outcome::DeadLettered { .. } => {
                self.failed += 1;
                self.dead_lettered += 1;
            }
            Outcome::Expired => self.expired += 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tidings_core::FaultReason;

    use super::*;

    #[test]
    fn counts_each_outcome() {
        let mut c = EndpointCounters::default();
        let now = Utc::now();
        let sent = now - chrono::Duration::milliseconds(250);
        c.count(&Outcome::Consumed, sent, now);
        c.count(&Outcome::Consumed, now + chrono::Duration::seconds(1), now);
        let error = "boom".to_string();
        c.count(
            &Outcome::Redelivered {
                delay: Duration::from_secs(1),
                error: error.clone(),
            },
            sent,
            now,
        );
        c.count(
            &Outcome::Deferred {
                delay: Duration::from_secs(1),
            },
            sent,
            now,
        );
        c.count(
            &Outcome::DeadLettered {
                reason: FaultReason::HandlerFailed,
                error,
            },
            sent,
            now,
        );
        c.count(&Outcome::Expired, sent, now);
        assert_eq!(
            (
                c.received,
                c.handled,
                c.failed,
                c.retried,
                c.dead_lettered,
                c.expired
            ),
            (6, 2, 2, 2, 1, 1)
        );
        // 250 ms for the first, 0 (not -1000) for the one "sent" in the future.
        assert!((c.critical_ms_sum - 250.0).abs() < 1e-9, "{c:?}");
        assert!((c.critical_ms_max - 250.0).abs() < 1e-9, "{c:?}");
    }
}
