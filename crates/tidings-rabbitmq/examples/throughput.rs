//! Throughput: 100,000 messages of 256 bytes sent with publisher confirms and received
//! with manual acks, through the Tidings transport and through raw lapin (durable quorum
//! queue, persistent messages, confirms, manual ack), side by side.
//!
//! ```text
//! cargo run --release -p tidings-rabbitmq --example throughput
//! ```
//! `TIDINGS_AMQP_URL` overrides the broker URL; `N` the message count.

use std::time::{Duration, Instant};

use futures::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Confirmation, Connection, ConnectionProperties};

use tidings_core::transport::{Outgoing, QueueSpec, ReceiveOptions, Topology, Transport};
use tidings_core::Envelope;
use tidings_rabbitmq::{RabbitMqConfig, RabbitMqTransport};

const SIZE: usize = 256;
const BATCH: usize = 1000;
const PREFETCH: u16 = 256;

fn count() -> usize {
    std::env::var("N")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(100_000)
}

fn report(what: &str, n: usize, send: Duration, total: Duration) {
    println!(
        "{what:>8}: {n} x {SIZE} B  send (confirmed) {:>8.0} msg/s  send+receive+ack {:>8.0} msg/s  ({:.2} s)",
        n as f64 / send.as_secs_f64(),
        n as f64 / total.as_secs_f64(),
        total.as_secs_f64()
    );
}

async fn tidings(url: &str, n: usize) -> anyhow::Result<()> {
    let t = RabbitMqTransport::connect(RabbitMqConfig::from_url(url)?).await?;
    let queue = tidings_core::conformance::unique("bench_tidings");
    t.declare(&Topology {
        queues: vec![QueueSpec {
            name: queue.clone(),
            ..QueueSpec::default()
        }],
    })
    .await?;
    let mut rx = t
        .receive(
            &queue,
            ReceiveOptions {
                prefetch: usize::from(PREFETCH),
                ..ReceiveOptions::default()
            },
        )
        .await?;
    let start = Instant::now();
    let sender = {
        let (t, queue) = (t.clone(), queue.clone());
        tokio::spawn(async move {
            let mut sent = 0;
            while sent < n {
                let batch: Vec<Outgoing> = (sent..(sent + BATCH).min(n))
                    .map(|_| {
                        Outgoing::to_queue(&queue, Envelope::new("bench.msg", 1, vec![b'x'; SIZE]))
                    })
                    .collect();
                sent += batch.len();
                t.send(batch).await?;
            }
            Ok::<Duration, tidings_core::Error>(start.elapsed())
        })
    };
    for _ in 0..n {
        let d = rx
            .recv()
            .await?
            .ok_or_else(|| anyhow::anyhow!("receiver ended"))?;
        d.ack().await?;
    }
    let total = start.elapsed();
    let send = sender.await??;
    report("tidings", n, send, total);
    rx.close().await?;
    t.close().await?;
    delete(url, &queue).await
}

fn quorum() -> FieldTable {
    let mut args = FieldTable::default();
    args.insert(
        "x-queue-type".into(),
        AMQPValue::LongString(LongString::from("quorum")),
    );
    args
}

async fn raw_lapin(url: &str, n: usize) -> anyhow::Result<()> {
    let conn = Connection::connect(url, ConnectionProperties::default()).await?;
    let queue = tidings_core::conformance::unique("bench_lapin");
    let pub_ch = conn.create_channel().await?;
    pub_ch
        .queue_declare(
            queue.as_str().into(),
            QueueDeclareOptions::durable(),
            quorum(),
        )
        .await?;
    pub_ch
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    let sub_ch = conn.create_channel().await?;
    sub_ch
        .basic_qos(PREFETCH, BasicQosOptions::default())
        .await?;
    let mut consumer = sub_ch
        .basic_consume(
            queue.as_str().into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let start = Instant::now();
    let sender = {
        let queue = queue.clone();
        tokio::spawn(async move {
            let body = vec![b'x'; SIZE];
            let mut sent = 0;
            while sent < n {
                let mut confirms = Vec::with_capacity(BATCH);
                for _ in sent..(sent + BATCH).min(n) {
                    confirms.push(
                        pub_ch
                            .basic_publish(
                                "".into(),
                                queue.as_str().into(),
                                BasicPublishOptions::default(),
                                &body,
                                BasicProperties::default().with_delivery_mode(2),
                            )
                            .await?,
                    );
                }
                sent += confirms.len();
                for c in futures::future::join_all(confirms).await {
                    if !matches!(c?, Confirmation::Ack(None)) {
                        anyhow::bail!("publish not confirmed");
                    }
                }
            }
            Ok::<Duration, anyhow::Error>(start.elapsed())
        })
    };
    for _ in 0..n {
        let d = consumer
            .next()
            .await
            .ok_or_else(|| anyhow::anyhow!("consumer ended"))??;
        d.ack(BasicAckOptions::default()).await?;
    }
    let total = start.elapsed();
    let send = sender.await??;
    report("lapin", n, send, total);
    conn.close(200, "OK".into()).await?;
    delete(url, &queue).await
}

async fn delete(url: &str, queue: &str) -> anyhow::Result<()> {
    let conn = Connection::connect(url, ConnectionProperties::default()).await?;
    let ch = conn.create_channel().await?;
    for q in [queue.to_string(), format!("{queue}_error")] {
        ch.queue_delete(q.as_str().into(), QueueDeleteOptions::default())
            .await?;
    }
    conn.close(200, "OK".into()).await?;
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let url = std::env::var("TIDINGS_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_string());
    let n = count();
    raw_lapin(&url, n).await?;
    tidings(&url, n).await?;
    Ok(())
}
