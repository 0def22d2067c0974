//! [`MessageJournal`]: a bounded, in-memory record of how the deliveries of *this process*
//! ended, so that `GET /messages?correlation_id=..` can show one conversation's messages
//! in order.
//!
//! Install it on the bus (`BusBuilder::observer(journal.observer())`) and hand the same
//! journal to the admin state ([`AdminState::journal`](crate::AdminState::journal)). It
//! keeps the last `capacity` observations (default [`DEFAULT_JOURNAL_CAPACITY`]) in a ring buffer:
//! metadata only (no bodies, error texts cut to [`MAX_ERROR_CHARS`]), so memory stays
//! bounded (roughly 0.5–1 KB per entry). It only sees deliveries consumed by endpoints of
//! the bus it is installed on, in this process, since the process started: messages
//! handled by other processes, or older than the window, are not in it.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tidings_core::observe::{Observation, Observer, Outcome};
use uuid::Uuid;

use crate::EndpointCounters;

/// How many observations a journal keeps by default.
pub const DEFAULT_JOURNAL_CAPACITY: usize = 10_000;

/// Error texts are cut to this many characters.
pub const MAX_ERROR_CHARS: usize = 500;

/// One delivery's end, as the journal keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalEntry {
    /// Position in the journal (0 = the first observation since start): the order in
    /// which deliveries ended.
    pub seq: u64,
    /// When the delivery ended.
    pub at: DateTime<Utc>,
    /// The endpoint that consumed it.
    pub endpoint: String,
    /// Message id.
    pub id: Uuid,
    /// Contract name.
    pub message_type: String,
    /// Contract version.
    pub version: u32,
    /// Correlation id.
    pub correlation_id: Option<String>,
    /// The message that caused this one.
    pub causation_id: Option<Uuid>,
    /// When it was sent.
    pub sent_at: DateTime<Utc>,
    /// The transport's delivery count (1 = first delivery).
    pub delivery_count: u32,
    /// `consumed`, `redelivered`, `deferred`, `dead-lettered` or `expired`.
    pub outcome: String,
    /// Fault reason, when dead-lettered (`handler-failed`, ...).
    pub reason: Option<String>,
    /// The error, when it failed (at most [`MAX_ERROR_CHARS`] characters).
    pub error: Option<String>,
    /// Redelivery delay in milliseconds, when redelivered or deferred.
    pub delay_ms: Option<u64>,
}

struct Ring {
    entries: VecDeque<JournalEntry>,
    capacity: usize,
    next_seq: u64,
    /// Totals per endpoint since start (not bounded by `capacity`: one entry per endpoint).
    counters: BTreeMap<String, EndpointCounters>,
}

/// A bounded in-memory journal of delivery outcomes; an [`Observer`]. Cheap to clone
/// (clones share the buffer).
#[derive(Clone)]
pub struct MessageJournal {
    ring: Arc<Mutex<Ring>>,
}

impl std::fmt::Debug for MessageJournal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ring = self.lock();
        f.debug_struct("MessageJournal")
            .field("len", &ring.entries.len())
            .field("capacity", &ring.capacity)
            .finish()
    }
}

impl Default for MessageJournal {
    fn default() -> Self {
        Self::new()
    }
}

impl MessageJournal {
    /// A journal keeping the last [`DEFAULT_JOURNAL_CAPACITY`] observations.
    pub fn new() -> Self {
        Self::with_capacity(DEFAULT_JOURNAL_CAPACITY)
    }

    /// A journal keeping the last `capacity` observations (at least 1).
    pub fn with_capacity(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        MessageJournal {
            ring: Arc::new(Mutex::new(Ring {
                entries: VecDeque::with_capacity(capacity.min(DEFAULT_JOURNAL_CAPACITY)),
                capacity,
                next_seq: 0,
                counters: BTreeMap::new(),
            })),
        }
    }

    /// This journal as an observer to install with `BusBuilder::observer`.
    pub fn observer(&self) -> Arc<dyn Observer> {
        Arc::new(self.clone())
    }

    /// How many observations it keeps at most.
    pub fn capacity(&self) -> usize {
        self.lock().capacity
    }

    /// How many observations it holds now.
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many observations were dropped to stay within the capacity.
    pub fn dropped(&self) -> u64 {
        let ring = self.lock();
        ring.next_seq - ring.entries.len() as u64
    }

    /// The entries with correlation id `correlation_id`, in the order their deliveries ended.
    pub fn by_correlation(&self, correlation_id: &str) -> Vec<JournalEntry> {
        self.lock()
            .entries
            .iter()
            .filter(|e| e.correlation_id.as_deref() == Some(correlation_id))
            .cloned()
            .collect()
    }

    /// The last `n` entries, oldest first.
    pub fn recent(&self, n: usize) -> Vec<JournalEntry> {
        let ring = self.lock();
        let skip = ring.entries.len().saturating_sub(n);
        ring.entries.iter().skip(skip).cloned().collect()
    }

    /// How the deliveries of each endpoint ended since the journal was installed: running
    /// totals, kept apart from the bounded ring (they never drop anything). The dashboard's
    /// sampler turns them into rates.
    pub fn counters(&self) -> Vec<(String, EndpointCounters)> {
        self.lock()
            .counters
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Ring> {
        // A panic while holding the lock cannot leave the ring half-written in a way that
        // matters here (push and pop are each one step): keep serving.
        self.ring.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn cut(s: &str) -> String {
    match s.char_indices().nth(MAX_ERROR_CHARS) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

fn millis(d: std::time::Duration) -> Option<u64> {
    Some(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Observer for MessageJournal {
    fn observe(&self, o: Observation) {
        let (outcome, reason, error, delay_ms) = match &o.outcome {
            Outcome::Consumed => ("consumed", None, None, None),
            Outcome::Redelivered { delay, error } => {
                ("redelivered", None, Some(cut(error)), millis(*delay))
            }
            Outcome::Deferred { delay } => ("deferred", None, None, millis(*delay)),
            Outcome::DeadLettered { reason, error } => (
                "dead-lettered",
                Some(reason.as_str().to_string()),
                Some(cut(error)),
                None,
            ),
            Outcome::Expired => ("expired", None, None, None),
        };
        let e = o.envelope;
        let mut entry = JournalEntry {
            seq: 0,
            at: DateTime::<Utc>::MIN_UTC,
            endpoint: o.endpoint,
            id: e.id,
            message_type: e.message_type,
            version: e.version,
            correlation_id: e.correlation_id,
            causation_id: e.causation_id,
            sent_at: e.sent_at,
            delivery_count: o.delivery_count,
            outcome: outcome.to_string(),
            reason,
            error,
            delay_ms,
        };
        let mut ring = self.lock();
        // Sequence and time are taken under the lock, so both follow the journal's order.
        entry.seq = ring.next_seq;
        entry.at = Utc::now();
        match ring.counters.get_mut(entry.endpoint.as_str()) {
            Some(c) => c.count(&o.outcome, entry.sent_at, entry.at),
            None => {
                let mut c = EndpointCounters::default();
                c.count(&o.outcome, entry.sent_at, entry.at);
                ring.counters.insert(entry.endpoint.clone(), c);
            }
        }
        ring.next_seq += 1;
        if ring.entries.len() >= ring.capacity {
            ring.entries.pop_front();
        }
        ring.entries.push_back(entry);
    }
}

#[cfg(test)]
#[path = "journal_tests.rs"]
mod tests;
