//! After a relay run (off the clock): the destination queue must hold exactly N messages
//! (the transport's `stats()`), and consuming them must yield every sequence number
//! 0..N once — nothing lost, nothing doubled.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::stream::{FuturesUnordered, StreamExt};
use tidings::transport::{ReceiveOptions, Transport};

use crate::payload::Work;
use crate::scenario::STALL;

/// Acks in flight while draining, at most (fewer than the prefetch: acks only make
/// progress while awaited, and unsettled deliveries hold up the receiver).
const ACKS_IN_FLIGHT: usize = 256;

/// Waits (up to 10 s, for brokers whose counts lag) until `queue` reports `n` ready
/// messages; fails at once if it reports more, and if it never gets there.
pub(crate) async fn count(transport: &dyn Transport, queue: &str, n: u64) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let stats = transport.stats().await?;
        let s = stats
            .iter()
            .find(|s| s.queue == queue)
            .ok_or_else(|| anyhow::anyhow!("queue {queue} missing from the transport's stats"))?;
        let held = s.ready + s.in_flight.unwrap_or(0);
        anyhow::ensure!(
            held <= n,
            "the destination queue holds {held} messages for {n} outbox rows (a row was shipped twice)"
        );
        anyhow::ensure!(
            s.error_depth == 0,
            "{} messages in the error queue",
            s.error_depth
        );
        if held == n {
            return Ok(());
        }
        if Instant::now() >= deadline {
            anyhow::bail!("the destination queue holds {held} of {n} messages (rows lost)");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Consumes `n` messages from `queue`, checking that each is a [`Work`] whose seq in 0..n
/// has not been seen yet (with [`count`] before it: exactly the N rows, once each).
pub(crate) async fn drain(
    transport: &Arc<dyn Transport>,
    queue: &str,
    n: u64,
    prefetch: usize,
) -> anyhow::Result<()> {
    let len = usize::try_from(n)?;
    let mut seen = vec![false; len];
    let opts = ReceiveOptions {
        prefetch,
        ..ReceiveOptions::default()
    };
    let limit = ACKS_IN_FLIGHT.min(prefetch / 2).max(1);
    let mut rx = transport.receive(queue, opts).await?;
    let mut acks = FuturesUnordered::new();
    let mut got = 0;
    let outcome = async {
        while got < len {
            let d = tokio::time::timeout(STALL, rx.recv())
                .await
                .map_err(|_| {
                    anyhow::anyhow!("no delivery for {}s ({got} of {n})", STALL.as_secs())
                })??
                .ok_or_else(|| anyhow::anyhow!("receiver closed after {got} of {n}"))?;
            let w: Work = serde_json::from_slice(&d.envelope.body)?;
            let slot = usize::try_from(w.seq)
                .ok()
                .and_then(|i| seen.get_mut(i))
                .ok_or_else(|| anyhow::anyhow!("seq {} out of range 0..{n}", w.seq))?;
            anyhow::ensure!(!*slot, "seq {} delivered twice", w.seq);
            *slot = true;
            got += 1;
            acks.push(d.settle.ack());
            while acks.len() >= limit {
                if let Some(r) = acks.next().await {
                    r?;
                }
            }
        }
        while let Some(r) = acks.next().await {
            r?;
        }
        anyhow::Ok(())
    }
    .await;
    let _ = rx.close().await;
    outcome
}
