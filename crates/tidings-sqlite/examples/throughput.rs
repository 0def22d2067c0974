//! Throughput and latency of the SQLite transport (run in release):
//!
//! ```text
//! cargo run --release -p tidings-sqlite --example throughput [-- N [RATE] [DURABILITY]]
//! ```
//!
//! 1. Saturated: one producer task keeping up to 256 sends in flight, one consumer
//!    (prefetch 256, acks in flight concurrently), 256-byte bodies, N messages (default
//!    100,000): msg/s and send→receive latency percentiles.
//! 2. Paced: RATE msg/s (default 5,000) for 5 s: latency percentiles.
//!
//! DURABILITY is `fsync` (default) or `os-buffered`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::stream::{FuturesUnordered, StreamExt};
use hdrhistogram::Histogram;
use tidings_core::transport::{Outgoing, QueueSpec, ReceiveOptions, Topology, Transport};
use tidings_core::Envelope;
use tidings_sqlite::SqliteTransport;

const BODY: usize = 256;
const WINDOW: usize = 256;

fn body(origin: Instant) -> String {
    let t = origin.elapsed().as_nanos();
    format!("{t:0>20}{}", "x".repeat(BODY - 20))
}

fn sent_nanos(env: &Envelope) -> u128 {
    std::str::from_utf8(&env.body[..20])
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// Receives `n` messages, acking concurrently; records latency in µs.
async fn consume(t: SqliteTransport, queue: String, n: usize, origin: Instant) -> Histogram<u64> {
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram");
    let opts = ReceiveOptions {
        prefetch: WINDOW,
        ..Default::default()
    };
    let mut rx = t.receive(&queue, opts).await.expect("receive");
    let mut acks = FuturesUnordered::new();
    let mut got = 0;
    while got < n {
        tokio::select! {
            Some(r) = acks.next(), if !acks.is_empty() => { let _: tidings_core::Result<()> = r; }
            d = rx.recv() => {
                let d = d.expect("recv").expect("open");
                let lat = origin.elapsed().as_nanos().saturating_sub(sent_nanos(&d.envelope));
                hist.saturating_record((lat / 1000) as u64);
                got += 1;
                acks.push(d.ack());
            }
        }
    }
    while acks.next().await.is_some() {}
    hist
}

fn print(label: &str, h: &Histogram<u64>) {
    println!(
        "{label}: p50 {} µs, p90 {} µs, p99 {} µs, p99.9 {} µs, max {} µs",
        h.value_at_quantile(0.5),
        h.value_at_quantile(0.9),
        h.value_at_quantile(0.99),
        h.value_at_quantile(0.999),
        h.max()
    );
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(100_000);
    let rate: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(5_000);
    let durability = args.get(3).map(String::as_str).unwrap_or("fsync");
    let dir = tempfile::tempdir()?;
    let url = format!(
        "sqlite://{}/bench.db?durability={durability}",
        dir.path().display()
    );
    let t = SqliteTransport::open(&url).await?;
    println!(
        "sqlite transport, durability={durability}, body {BODY} B, db in {}",
        dir.path().display()
    );
    t.declare(&Topology {
        queues: vec![
            QueueSpec {
                name: "sat".into(),
                ..Default::default()
            },
            QueueSpec {
                name: "paced".into(),
                ..Default::default()
            },
        ],
    })
    .await?;
    let origin = Instant::now();

    // Saturated.
    let before = t.writer_stats();
    let consumer = tokio::spawn(consume(t.clone(), "sat".into(), n, origin));
    let start = Instant::now();
    let tp = Arc::new(t.clone());
    let mut inflight = FuturesUnordered::new();
    for _ in 0..n {
        if inflight.len() >= WINDOW {
            inflight.next().await.expect("in flight")?;
        }
        let tp = tp.clone();
        let env = Envelope::new("bench.msg", 1, body(origin));
        inflight.push(async move { tp.send(vec![Outgoing::to_queue("sat", env)]).await });
    }
    while let Some(r) = inflight.next().await {
        r?;
    }
    let sent_in = start.elapsed();
    let hist = consumer.await?;
    let total = start.elapsed();
    let after = t.writer_stats();
    println!(
        "saturated: {n} messages sent in {:.2} s ({:.0} msg/s), sent+received in {:.2} s ({:.0} msg/s)",
        sent_in.as_secs_f64(),
        n as f64 / sent_in.as_secs_f64(),
        total.as_secs_f64(),
        n as f64 / total.as_secs_f64()
    );
    println!(
        "  writer: {} commits for {} operations ({:.1} ops/commit, {:.0} commits/s)",
        after.commits - before.commits,
        after.operations - before.operations,
        (after.operations - before.operations) as f64
            / (after.commits - before.commits).max(1) as f64,
        (after.commits - before.commits) as f64 / total.as_secs_f64()
    );
    print("  latency", &hist);

    // Paced.
    let secs = 5;
    let m = (rate * secs) as usize;
    let consumer = tokio::spawn(consume(t.clone(), "paced".into(), m, origin));
    let start = Instant::now();
    let mut sends = FuturesUnordered::new();
    for i in 0..m {
        let due = start + Duration::from_nanos(i as u64 * 1_000_000_000 / rate);
        loop {
            let now = Instant::now();
            if now >= due {
                break;
            }
            tokio::select! {
                Some(r) = sends.next(), if !sends.is_empty() => { let _: tidings_core::Result<()> = r; }
                _ = tokio::time::sleep(due - now) => {}
            }
        }
        let tp = tp.clone();
        let env = Envelope::new("bench.msg", 1, body(origin));
        sends.push(async move { tp.send(vec![Outgoing::to_queue("paced", env)]).await });
    }
    while let Some(r) = sends.next().await {
        r?;
    }
    let hist = consumer.await?;
    println!(
        "paced: {m} messages at {rate} msg/s over {:.2} s",
        start.elapsed().as_secs_f64()
    );
    print("  latency", &hist);
    t.close().await?;
    Ok(())
}
