//! [`System`]: one thing under test — Tidings on a transport, or a raw baseline — with a
//! producer side ([`System::send`]) and consumers feeding [`Tracker`]s; and [`drive`], the
//! one producer loop every system is measured with (saturated or paced).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::stream::{FuturesUnordered, StreamExt};
use serde::{Deserialize, Serialize};

use crate::opts::TransportKind;
use crate::payload::now_ns;
use crate::tracker::Tracker;

/// Where a system's queue lives, so a child process can attach to it (backlog drain).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Locator {
    /// The transport.
    pub kind: Option<TransportKind>,
    /// Tidings (`false`) or the raw baseline (`true`).
    pub raw: bool,
    /// Server URL, or the SQLite file.
    pub url: String,
    /// Namespace: PostgreSQL schema, NATS prefix or stream.
    pub namespace: String,
    /// Queue (endpoint) names, one per consumer.
    pub queues: Vec<String>,
}

/// How a system is opened.
#[derive(Debug, Clone)]
pub struct Setup {
    /// Body size.
    pub size: usize,
    /// Consumer prefetch.
    pub prefetch: usize,
    /// Consumers (1, or 3 for fan-out: every message reaches each).
    pub fanout: usize,
    /// Trackers, one per consumer; empty: start no consumers (enqueue only).
    pub trackers: Vec<Arc<Tracker>>,
    /// Attach to an existing queue instead of making a new one (backlog child).
    pub attach: Option<Locator>,
    /// Tidings on SQLite: with the inbox.
    pub inbox: bool,
}

/// A system under test.
#[async_trait]
pub trait System: Send + Sync {
    /// How many messages one `send` call should carry (1: send each on its own, many in
    /// flight; more: batches, one in flight).
    fn batch_hint(&self) -> usize {
        1
    }

    /// Sends `msgs` (`(seq, sent_ns)`), returning once the transport durably accepted them.
    async fn send(&self, msgs: Vec<(u64, u64)>) -> anyhow::Result<()>;

    /// Where its queues are.
    fn locator(&self) -> Locator;

    /// Stops consumers and, with `cleanup`, deletes what it created.
    async fn finish(self: Box<Self>, cleanup: bool) -> anyhow::Result<()>;
}

/// What the producer loop measured.
#[derive(Debug, Clone, Copy)]
pub struct Driven {
    /// When the first send started.
    pub start: Instant,
    /// When the last send was accepted.
    pub sent: Instant,
}

/// Sends `n` messages through `sys`: all at once when `rate` is `None` (saturated: at most
/// `window` messages in flight, each stamped when its send starts), else at `rate` msg/s
/// (paced: each stamped when the producer sees it due, so time spent waiting behind a slow
/// send counts as latency, while the timer's own granularity does not).
pub async fn drive(
    sys: &dyn System,
    n: u64,
    rate: Option<u64>,
    window: usize,
    stall: Duration,
) -> anyhow::Result<Driven> {
    let batch = sys.batch_hint().max(1) as u64;
    let max_chunks = (window as u64 / batch).max(1) as usize;
    let start = Instant::now();
    let start_ns = now_ns();
    let due_ns = |i: u64| match rate {
        Some(r) => start_ns + i.saturating_mul(1_000_000_000) / r.max(1),
        None => start_ns,
    };
    let mut inflight = FuturesUnordered::new();
    let mut stamps = VecDeque::new();
    let (mut noticed, mut next) = (0u64, 0u64);
    loop {
        let now = now_ns();
        if rate.is_some() {
            while noticed < n && due_ns(noticed) <= now {
                stamps.push_back(now);
                noticed += 1;
            }
        } else {
            noticed = n;
        }
        while next < noticed && inflight.len() < max_chunks {
            let end = noticed.min(next + batch);
            let msgs: Vec<(u64, u64)> = (next..end)
                .map(|i| (i, stamps.pop_front().unwrap_or(now)))
                .collect();
            next = end;
            inflight.push(sys.send(msgs));
        }
        if next >= n && inflight.is_empty() {
            break;
        }
        let timed = rate.is_some() && noticed < n;
        let wait = Duration::from_nanos(due_ns(noticed).saturating_sub(now_ns()));
        tokio::select! {
            Some(r) = inflight.next(), if !inflight.is_empty() => r?,
            _ = tokio::time::sleep(wait), if timed => {}
            _ = tokio::time::sleep(stall) => {
                anyhow::bail!("producer stalled: no send accepted for {}s ({next} of {n} sent)", stall.as_secs())
            }
        }
    }
    Ok(Driven {
        start,
        sent: Instant::now(),
    })
}

/// A flag consumers poll to know they should stop.
#[derive(Debug, Clone, Default)]
pub struct Stop(Arc<std::sync::atomic::AtomicBool>);

impl Stop {
    /// Asks to stop.
    pub fn stop(&self) {
        self.0.store(true, std::sync::atomic::Ordering::Release);
    }

    /// Whether asked to stop.
    pub fn is_stopped(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::Acquire)
    }
}
