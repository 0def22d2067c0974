//! Throughput: 100,000 messages of 256 bytes through the Tidings NATS transport, and the
//! same through raw async-nats JetStream (work-queue stream, durable pull consumer,
//! explicit ack), side by side. Each run sends everything (acknowledged by the stream),
//! then receives and acks everything.
//!
//! ```text
//! cargo run --release -p tidings-nats --example throughput [-- nats://127.0.0.1:4222]
//! ```

use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer, stream};
use bytes::Bytes;
use futures::stream::{FuturesUnordered, StreamExt};
use tidings_core::transport::{Outgoing, QueueSpec, ReceiveOptions, Topology, Transport};
use tidings_core::Envelope;
use tidings_nats::{NatsConfig, NatsTransport};

const N: usize = 100_000;
const SIZE: usize = 256;
const BATCH: usize = 1_000;

fn rate(n: usize, d: Duration) -> String {
    format!(
        "{:>9.0} msg/s ({:.2} s)",
        n as f64 / d.as_secs_f64(),
        d.as_secs_f64()
    )
}

async fn tidings(url: &str) -> anyhow::Result<(Duration, Duration)> {
    let prefix = format!("bench_{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let t = NatsTransport::connect(NatsConfig::from_url(url)?.with_prefix(prefix)).await?;
    t.declare(&Topology {
        queues: vec![QueueSpec {
            name: "bench".into(),
            ..QueueSpec::default()
        }],
    })
    .await?;
    let body = Bytes::from(vec![b'x'; SIZE]);
    let started = Instant::now();
    for _ in 0..N / BATCH {
        let batch = (0..BATCH)
            .map(|_| Outgoing::to_queue("bench", Envelope::new("bench.msg", 1, body.clone())))
            .collect();
        t.send(batch).await?;
    }
    let sent = started.elapsed();
    let opts = ReceiveOptions {
        prefetch: 256,
        ..ReceiveOptions::default()
    };
    let mut rx = t.receive("bench", opts).await?;
    let started = Instant::now();
    for _ in 0..N {
        let d = rx
            .recv()
            .await?
            .ok_or_else(|| anyhow::anyhow!("receiver ended"))?;
        d.ack().await?;
    }
    let received = started.elapsed();
    rx.close().await?;
    t.delete_all().await?;
    Ok((sent, received))
}

async fn raw(url: &str) -> anyhow::Result<(Duration, Duration)> {
    let client = async_nats::connect(url.split('?').next().unwrap_or(url)).await?;
    let js = jetstream::new(client);
    let name = format!(
        "RAW_BENCH_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let subject = format!("rawbench.{name}");
    let s = js
        .create_stream(stream::Config {
            name: name.clone(),
            subjects: vec![subject.clone()],
            retention: stream::RetentionPolicy::WorkQueue,
            ..Default::default()
        })
        .await?;
    let c = s
        .create_consumer(consumer::pull::Config {
            durable_name: Some("work".into()),
            ack_policy: consumer::AckPolicy::Explicit,
            max_ack_pending: 20_000,
            ..Default::default()
        })
        .await?;
    let body = Bytes::from(vec![b'x'; SIZE]);
    let started = Instant::now();
    let mut acks = FuturesUnordered::new();
    for _ in 0..N {
        if acks.len() >= 512 {
            if let Some(r) = acks.next().await {
                r?;
            }
        }
        let ack = js.publish(subject.clone(), body.clone()).await?;
        acks.push(async move { ack.await });
    }
    while let Some(r) = acks.next().await {
        r?;
    }
    let sent = started.elapsed();
    let started = Instant::now();
    let mut msgs = c.stream().max_messages_per_batch(256).messages().await?;
    for _ in 0..N {
        let m = msgs
            .next()
            .await
            .ok_or_else(|| anyhow::anyhow!("stream ended"))?
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        m.ack().await.map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    let received = started.elapsed();
    js.delete_stream(&name).await?;
    Ok((sent, received))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let url = std::env::args()
        .nth(1)
        .or_else(|| std::env::var("TIDINGS_NATS_URL").ok())
        .unwrap_or_else(|| "nats://127.0.0.1:4222".into());
    println!("{N} messages of {SIZE} bytes, file storage, sends in batches of {BATCH}");
    let (rs, rr) = raw(&url).await?;
    println!(
        "raw async-nats   send {}   receive+ack {}",
        rate(N, rs),
        rate(N, rr)
    );
    let (ts, tr) = tidings(&url).await?;
    println!(
        "tidings-nats     send {}   receive+ack {}",
        rate(N, ts),
        rate(N, tr)
    );
    Ok(())
}
