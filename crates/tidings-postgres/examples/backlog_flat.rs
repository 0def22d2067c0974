//! Throughput with a standing backlog: preloads N messages, then for a fixed window keeps
//! the backlog at N (a producer refills what consumers ack) and prints the consumed msg/s.
//! Run in release: `cargo run --release -p tidings-postgres --example backlog_flat`
//! (`TIDINGS_PG_URL` overrides `postgres://postgres@127.0.0.1:5432/test`; pass backlog
//! sizes as arguments, default `20000 100000`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tidings_core::transport::{Outgoing, QueueSpec, ReceiveOptions, Topology, Transport};
use tidings_core::Envelope;
use tidings_postgres::{PostgresConfig, PostgresTransport};

const BATCH: usize = 500;
const CONSUMERS: usize = 4;
const PRODUCERS: usize = 3;
const WINDOW: Duration = Duration::from_secs(10);

fn batch(queue: &str) -> Vec<Outgoing> {
    (0..BATCH)
        .map(|i| {
            let body = format!("{{\"order\":{i},\"sku\":\"ABC-123\",\"qty\":2}}");
            Outgoing::to_queue(queue, Envelope::new("bench.work", 1, body))
        })
        .collect()
}

async fn run(t: &PostgresTransport, backlog: usize) -> anyhow::Result<()> {
    let queue = format!("backlog_{backlog}");
    t.declare(&Topology {
        queues: vec![QueueSpec {
            name: queue.clone(),
            ..QueueSpec::default()
        }],
    })
    .await?;
    let start = Instant::now();
    for _ in 0..backlog.div_ceil(BATCH) {
        t.send(batch(&queue)).await?;
    }
    println!(
        "backlog {backlog}: preloaded in {:.1}s",
        start.elapsed().as_secs_f64()
    );

    let acked = Arc::new(AtomicU64::new(0));
    let sent = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + WINDOW;
    let mut tasks = Vec::new();
    for _ in 0..CONSUMERS {
        let (t, queue, acked) = (t.clone(), queue.clone(), acked.clone());
        tasks.push(tokio::spawn(async move {
            let opts = ReceiveOptions {
                prefetch: 256,
                ..ReceiveOptions::default()
            };
            let mut rx = t.receive(&queue, opts).await?;
            while Instant::now() < deadline {
                let d = match tokio::time::timeout(Duration::from_millis(100), rx.recv()).await {
                    Err(_) => continue,
                    Ok(next) => match next? {
                        Some(d) => d,
                        None => break,
                    },
                };
                let acked = acked.clone();
                tokio::spawn(async move {
                    if d.ack().await.is_ok() {
                        acked.fetch_add(1, Ordering::Relaxed);
                    }
                });
            }
            rx.close().await?;
            anyhow::Ok(())
        }));
    }
    // Refill: PRODUCERS senders keep (sent - acked) at the backlog size.
    let mut producers = Vec::new();
    for _ in 0..PRODUCERS {
        let (t, queue, acked, sent) = (t.clone(), queue.clone(), acked.clone(), sent.clone());
        producers.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                let s = sent.fetch_add(BATCH as u64, Ordering::AcqRel);
                if s < acked.load(Ordering::Acquire) {
                    t.send(batch(&queue)).await?;
                } else {
                    sent.fetch_sub(BATCH as u64, Ordering::AcqRel);
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            }
            anyhow::Ok(())
        }));
    }
    let t0 = Instant::now();
    let mut last = 0;
    for s in 1..=WINDOW.as_secs() {
        tokio::time::sleep_until((t0 + Duration::from_secs(s)).into()).await;
        let now = acked.load(Ordering::Relaxed);
        println!("  t={s:>2}s  {:>7} msg/s", now - last);
        last = now;
    }
    for task in tasks {
        task.await??;
    }
    for p in producers {
        p.await??;
    }
    let total = acked.load(Ordering::Relaxed);
    let depth = t
        .stats()
        .await?
        .into_iter()
        .find(|s| s.queue == queue)
        .map(|s| s.ready + s.in_flight.unwrap_or(0))
        .unwrap_or(0);
    println!(
        "backlog {backlog}: {:.0} msg/s consumed (acked) + {:.0} msg/s sent over {}s, backlog at end {depth}",
        total as f64 / t0.elapsed().as_secs_f64(),
        sent.load(Ordering::Relaxed) as f64 / t0.elapsed().as_secs_f64(),
        WINDOW.as_secs()
    );
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let url = std::env::var("TIDINGS_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let schema = format!("bench_{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let mut config = PostgresConfig::from_url(&url)?.with_schema(&schema);
    config.max_connections = 16;
    println!("connecting to {} (schema {schema})", config.redacted_url());
    let t = PostgresTransport::connect(config).await?;
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let sizes = if sizes.is_empty() {
        vec![20_000, 100_000]
    } else {
        sizes
    };
    for n in sizes {
        run(&t, n).await?;
    }
    let drop = format!("DROP SCHEMA \"{schema}\" CASCADE");
    sqlx::raw_sql(sqlx::AssertSqlSafe(drop))
        .execute(t.pool())
        .await?;
    t.close().await?;
    Ok(())
}
