//! Bounded memory on a big backlog (run in release):
//!
//! ```text
//! cargo run --release -p tidings-sqlite --example sqlite_backlog [-- N]
//! ```
//!
//! Enqueues N messages (default 1,000,000; 256-byte bodies, sends of 1,000), then drains
//! them with one consumer (prefetch 256). Prints msg/s of both phases and the peak resident
//! memory (VmHWM from /proc/self/status): claims are batched by prefetch and the queue is
//! never loaded whole, so draining costs disk, not RAM.

use std::time::Instant;

use futures::stream::{FuturesUnordered, StreamExt};
use tidings_core::transport::{Outgoing, QueueSpec, ReceiveOptions, Topology, Transport};
use tidings_core::Envelope;
use tidings_sqlite::SqliteTransport;

fn vm_hwm() -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .map(|l| l["VmHWM:".len()..].trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir()?;
    let t = SqliteTransport::open(&format!("sqlite://{}/backlog.db", dir.path().display())).await?;
    t.declare(&Topology {
        queues: vec![QueueSpec {
            name: "backlog".into(),
            ..Default::default()
        }],
    })
    .await?;
    let body = "x".repeat(256);
    println!("peak RSS after start: {}", vm_hwm());

    let start = Instant::now();
    let mut inflight = FuturesUnordered::new();
    let mut sent = 0;
    while sent < n {
        let k = (n - sent).min(1000);
        let batch: Vec<Outgoing> = (0..k)
            .map(|_| Outgoing::to_queue("backlog", Envelope::new("bench.msg", 1, body.clone())))
            .collect();
        sent += k;
        if inflight.len() >= 4 {
            inflight.next().await.expect("in flight")?;
        }
        let t = t.clone();
        inflight.push(async move { t.send(batch).await });
    }
    while let Some(r) = inflight.next().await {
        r?;
    }
    let enq = start.elapsed();
    let size = std::fs::metadata(dir.path().join("backlog.db"))?.len()
        + std::fs::metadata(dir.path().join("backlog.db-wal")).map_or(0, |m| m.len());
    println!(
        "enqueued {n} in {:.1} s ({:.0} msg/s); database {:.0} MB; peak RSS so far: {}",
        enq.as_secs_f64(),
        n as f64 / enq.as_secs_f64(),
        size as f64 / 1e6,
        vm_hwm()
    );

    let start = Instant::now();
    let opts = ReceiveOptions {
        prefetch: 256,
        ..Default::default()
    };
    let mut rx = t.receive("backlog", opts).await?;
    let mut acks = FuturesUnordered::new();
    let mut got = 0;
    while got < n {
        tokio::select! {
            Some(r) = acks.next(), if !acks.is_empty() => { let _: tidings_core::Result<()> = r; }
            d = rx.recv() => {
                let d = d?.expect("open");
                got += 1;
                acks.push(d.ack());
                if got % 200_000 == 0 {
                    println!("  drained {got}, peak RSS {}", vm_hwm());
                }
            }
        }
    }
    while let Some(r) = acks.next().await {
        r?;
    }
    let drain = start.elapsed();
    println!(
        "drained {n} in {:.1} s ({:.0} msg/s); peak RSS (VmHWM): {}",
        drain.as_secs_f64(),
        n as f64 / drain.as_secs_f64(),
        vm_hwm()
    );
    let left: u64 = t
        .stats()
        .await?
        .iter()
        .map(|s| s.ready + s.in_flight.unwrap_or(0))
        .sum();
    println!("left in queue: {left}");
    t.close().await?;
    Ok(())
}
