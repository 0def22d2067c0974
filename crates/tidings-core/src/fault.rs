//! [`Fault`]: why a message failed, written into its headers when it is dead-lettered.

use chrono::{DateTime, Utc};

use crate::envelope::{headers as h, Envelope};

/// Why a message went to the error queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FaultReason {
    /// The body could not be decoded into the contract.
    Undeserializable,
    /// No handler for this message type or version.
    UnknownType,
    /// Larger than the endpoint's limit.
    Oversize,
    /// The handler returned an error (permanent, or retries and redeliveries ran out).
    HandlerFailed,
    /// The handler panicked.
    Panicked,
    /// The handler did not finish within its timeout.
    TimedOut,
    /// Its `expires_at` had passed.
    Expired,
    /// The transport could not decode the delivery into an envelope at all (not written
    /// by Tidings, or corrupt); the dead letter's body holds the raw bytes (see
    /// [`crate::transport::undecodable`]).
    Undecodable,
}

impl FaultReason {
    /// The reason as written in the `tidings-fault-reason` header.
    pub fn as_str(self) -> &'static str {
        match self {
            FaultReason::Undeserializable => "undeserializable",
            FaultReason::UnknownType => "unknown-type",
            FaultReason::Oversize => "oversize",
            FaultReason::HandlerFailed => "handler-failed",
            FaultReason::Panicked => "panicked",
            FaultReason::TimedOut => "timed-out",
            FaultReason::Expired => "expired",
            FaultReason::Undecodable => "undecodable",
        }
    }
}

impl std::fmt::Display for FaultReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Everything known about a failure, for the error queue's fault headers.
#[derive(Debug, Clone, PartialEq)]
pub struct Fault {
    /// Why.
    pub reason: FaultReason,
    /// The error's text.
    pub error: String,
    /// Whether the error was transient or permanent.
    pub permanent: bool,
    /// Immediate attempts made in the last delivery.
    pub attempts: u32,
    /// Delayed redeliveries made before this one.
    pub redeliveries: u32,
    /// The first failure's time.
    pub first_failure: DateTime<Utc>,
    /// The last failure's time.
    pub last_failure: DateTime<Utc>,
    /// The queue the message came from.
    pub original_queue: String,
}

impl Fault {
    /// A fault that happened now, on its first failure.
    pub fn new(reason: FaultReason, error: impl Into<String>, original_queue: &str) -> Self {
        let now = Utc::now();
        Fault {
            reason,
            error: error.into(),
            permanent: true,
            attempts: 1,
            redeliveries: 0,
            first_failure: now,
            last_failure: now,
            original_queue: original_queue.to_string(),
        }
    }

    /// Writes the fault headers into `env` (keeping an earlier first-failure time).
    pub fn apply(&self, env: &mut Envelope) {
        let first = env
            .header(h::FAULT_FIRST_FAILURE)
            .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
            .map(|d| d.with_timezone(&Utc))
            .map_or(self.first_failure, |d| d.min(self.first_failure));
        let hs = &mut env.headers;
        hs.insert(h::FAULT_REASON.into(), self.reason.as_str().into());
        hs.insert(h::FAULT_ERROR.into(), self.error.clone());
        hs.insert(
            h::FAULT_KIND.into(),
            if self.permanent {
                "permanent"
            } else {
                "transient"
            }
            .into(),
        );
        hs.insert(h::FAULT_ATTEMPTS.into(), self.attempts.to_string());
        hs.insert(h::FAULT_REDELIVERIES.into(), self.redeliveries.to_string());
        hs.insert(h::FAULT_FIRST_FAILURE.into(), first.to_rfc3339());
        hs.insert(h::FAULT_LAST_FAILURE.into(), self.last_failure.to_rfc3339());
        hs.insert(h::FAULT_ORIGINAL_QUEUE.into(), self.original_queue.clone());
        hs.insert(h::FAULT_HOST.into(), host_name());
    }

    /// Records a transient failure on a message that will be redelivered: only the
    /// first-failure time, so the dead letter can say when trouble began.
    pub fn mark_first_failure(env: &mut Envelope, at: DateTime<Utc>) {
        env.headers
            .entry(h::FAULT_FIRST_FAILURE.into())
            .or_insert_with(|| at.to_rfc3339());
    }
}

/// This machine's host name (cached).
pub fn host_name() -> String {
    static HOST: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HOST.get_or_init(|| {
        hostname::get()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_else(|| "unknown".into())
    })
    .clone()
}
