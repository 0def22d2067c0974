//! [`Tracker`]: what one consumer saw — every sequence number once (duplicates, strays and
//! gaps are counted), latency into an HDR histogram, and acks — and when the last of N was
//! both received and acknowledged.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tokio::sync::Notify;

use crate::payload::now_ns;

/// Highest latency recorded, in µs (a minute).
const MAX_LATENCY_US: u64 = 60_000_000;

struct Seen {
    bits: Vec<u64>,
    distinct: u64,
    duplicates: u64,
    strays: u64,
    hist: Histogram<u64>,
}

/// One consumer's view of a run of `n` messages.
pub struct Tracker {
    n: u64,
    seen: Mutex<Seen>,
    acked: AtomicU64,
    failures: AtomicU64,
    done_at: Mutex<Option<Instant>>,
    done: Notify,
}

impl std::fmt::Debug for Tracker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracker")
            .field("n", &self.n)
            .field("acked", &self.acked.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// What a tracker found, checked for exactly-once.
#[derive(Debug, Clone)]
pub struct Tally {
    /// Messages expected.
    pub n: u64,
    /// Distinct sequence numbers received.
    pub distinct: u64,
    /// Sequence numbers received more than once (extra copies).
    pub duplicates: u64,
    /// Messages that were not ours (bad payload or seq ≥ n).
    pub strays: u64,
    /// Deliveries settled other than by ack (nack, dead letter).
    pub failures: u64,
    /// Acks.
    pub acked: u64,
    /// Latency histogram (µs).
    pub hist: Histogram<u64>,
}

impl Tally {
    /// Why this is not exactly-once, if it is not.
    pub fn violation(&self) -> Option<String> {
        let mut why = Vec::new();
        if self.distinct != self.n {
            why.push(format!(
                "{} of {} sequence numbers missing",
                self.n - self.distinct.min(self.n),
                self.n
            ));
        }
        if self.duplicates > 0 {
            why.push(format!("{} duplicates", self.duplicates));
        }
        if self.strays > 0 {
            why.push(format!("{} stray messages", self.strays));
        }
        if self.failures > 0 {
            why.push(format!(
                "{} deliveries failed (nack/dead letter)",
                self.failures
            ));
        }
        (!why.is_empty()).then(|| why.join(", "))
    }
}

impl Tracker {
    /// A tracker expecting sequence numbers `0..n`.
    pub fn new(n: u64) -> anyhow::Result<Self> {
        let words = usize::try_from(n.div_ceil(64))?;
        let hist = Histogram::new_with_bounds(1, MAX_LATENCY_US, 3)?;
        Ok(Tracker {
            n,
            seen: Mutex::new(Seen {
                bits: vec![0; words],
                distinct: 0,
                duplicates: 0,
                strays: 0,
                hist,
            }),
            acked: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            done_at: Mutex::new(None),
            done: Notify::new(),
        })
    }

    fn seen(&self) -> std::sync::MutexGuard<'_, Seen> {
        self.seen.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The consumer has message `seq`, sent at `sent_ns` (see [`now_ns`]); `None` for a
    /// payload that could not be read.
    pub fn received(&self, msg: Option<(u64, u64)>) {
        let now = now_ns();
        let complete = {
            let mut s = self.seen();
            match msg {
                Some((seq, sent)) if seq < self.n => {
                    let (w, b) = ((seq / 64) as usize, seq % 64);
                    if s.bits[w] & (1 << b) != 0 {
                        s.duplicates += 1;
                    } else {
                        s.bits[w] |= 1 << b;
                        s.distinct += 1;
                        let us = now.saturating_sub(sent) / 1000;
                        s.hist.saturating_record(us.clamp(1, MAX_LATENCY_US));
                    }
                }
                _ => s.strays += 1,
            }
            s.distinct == self.n
        };
        if complete {
            self.check_done();
        }
    }

    /// `k` deliveries were acknowledged.
    pub fn acked(&self, k: u64) {
        let total = self.acked.fetch_add(k, Ordering::AcqRel) + k;
        if total >= self.n {
            self.check_done();
        }
    }

    /// A delivery was settled other than by ack.
    pub fn failed(&self) {
        self.failures.fetch_add(1, Ordering::Relaxed);
    }

    fn check_done(&self) {
        if self.acked.load(Ordering::Acquire) >= self.n && self.seen().distinct == self.n {
            let mut at = self.done_at.lock().unwrap_or_else(|e| e.into_inner());
            if at.is_none() {
                *at = Some(Instant::now());
                self.done.notify_one();
            }
        }
    }

    /// Distinct messages received plus acks: grows while anything moves.
    fn progress(&self) -> u64 {
        self.seen().distinct + self.acked.load(Ordering::Relaxed)
    }

    /// Distinct messages received so far.
    pub fn distinct(&self) -> u64 {
        self.seen().distinct
    }

    /// Waits until all `n` are received and acked; fails when nothing moves for `stall`.
    /// Returns when that happened.
    pub async fn wait(&self, stall: Duration) -> anyhow::Result<Instant> {
        let mut last = (self.progress(), Instant::now());
        loop {
            if let Some(at) = *self.done_at.lock().unwrap_or_else(|e| e.into_inner()) {
                return Ok(at);
            }
            tokio::select! {
                _ = self.done.notified() => {}
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            }
            let p = self.progress();
            if p != last.0 {
                last = (p, Instant::now());
            } else if last.1.elapsed() > stall {
                let t = self.tally();
                anyhow::bail!(
                    "stalled for {}s: {} of {} received, {} acked{}",
                    stall.as_secs(),
                    t.distinct,
                    t.n,
                    t.acked,
                    t.violation().map(|v| format!(" ({v})")).unwrap_or_default()
                );
            }
        }
    }

    /// What was seen so far.
    pub fn tally(&self) -> Tally {
        let s = self.seen();
        Tally {
            n: self.n,
            distinct: s.distinct,
            duplicates: s.duplicates,
            strays: s.strays,
            failures: self.failures.load(Ordering::Relaxed),
            acked: self.acked.load(Ordering::Relaxed),
            hist: s.hist.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn exactly_once_is_checked() {
        let t = Tracker::new(3).unwrap();
        for s in [0, 1, 2, 1] {
            t.received(Some((s, now_ns())));
        }
        t.received(Some((9, 0)));
        t.acked(4);
        t.wait(Duration::from_secs(1)).await.unwrap();
        let v = t.tally().violation().unwrap();
        assert!(v.contains("1 duplicates") && v.contains("1 stray"), "{v}");
        let t = Tracker::new(2).unwrap();
        t.received(Some((0, now_ns())));
        t.acked(1);
        assert!(t.tally().violation().unwrap().contains("1 of 2"));
        assert!(t.wait(Duration::from_millis(300)).await.is_err());
    }
}
