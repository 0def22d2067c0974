//! [`Observer`]: a hook told how each delivery ended (used by the test harness and
//! available to applications for auditing).

use std::time::Duration;

use crate::{Envelope, FaultReason};

/// How a delivery ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Handled and acked.
    Consumed,
    /// Failed; will be delivered again after `delay`.
    Redelivered {
        /// The delay.
        delay: Duration,
        /// The error.
        error: String,
    },
    /// Not attempted now (open breaker); delivered again after `delay`.
    Deferred {
        /// The delay.
        delay: Duration,
    },
    /// Moved to the error queue.
    DeadLettered {
        /// Why.
        reason: FaultReason,
        /// The error.
        error: String,
    },
    /// Skipped because it expired.
    Expired,
}

/// One delivery's end.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    /// The endpoint.
    pub endpoint: String,
    /// The message.
    pub envelope: Envelope,
    /// Its delivery count.
    pub delivery_count: u32,
    /// How it ended.
    pub outcome: Outcome,
}

/// Told how each delivery ended. Must be quick: it runs on the consumer's task.
pub trait Observer: Send + Sync + 'static {
    /// Called once per settled delivery.
    fn observe(&self, observation: Observation);
}
