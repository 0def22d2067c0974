//! Fault test: every connection to NATS goes through a loopback TCP proxy owned by the
//! test, which cuts all of them once mid-run while a producer sends and a consumer acks.
//! Both must recover on their own (async-nats reconnects; pulls are fresh requests;
//! publishes are retried with the same `Nats-Msg-Id`), and nothing may be lost: every
//! sequence number arrives at least once. Duplicates are allowed and counted.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tidings_core::transport::{Outgoing, QueueSpec, ReceiveOptions, Topology, Transport};
use tidings_core::Envelope;
use tidings_nats::NatsTransport;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

const N: u64 = 3_000;
const BATCH: u64 = 25;

/// A loopback proxy to `target` that can cut every connection it carries.
struct Proxy {
    port: u16,
    conns: Arc<Mutex<Vec<AbortHandle>>>,
    accept: AbortHandle,
}

impl Proxy {
    async fn start(target: String) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let conns: Arc<Mutex<Vec<AbortHandle>>> = Arc::default();
        let list = conns.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let target = target.clone();
                let h = tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                list.lock().unwrap().push(h.abort_handle());
            }
        })
        .abort_handle();
        Proxy {
            port,
            conns,
            accept,
        }
    }

    /// Drops every proxied connection (both sockets close).
    fn cut_all(&self) -> usize {
        let mut conns = self.conns.lock().unwrap();
        let n = conns.len();
        for c in conns.drain(..) {
            c.abort();
        }
        n
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut_all();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cut_connections_lose_nothing() {
    if let Some(why) = common::unreachable() {
        eprintln!("skipped: {why}");
        return;
    }
    let prefix = common::unique_prefix("fault");
    let proxy = Proxy::start(common::nats_addr()).await;
    let url = format!(
        "nats://127.0.0.1:{}?prefix={prefix}&request_timeout_ms=2000",
        proxy.port
    );
    let cfg = tidings_nats::NatsConfig::from_url(&url).unwrap();
    let producer = NatsTransport::connect(cfg.clone()).await.unwrap();
    let consumer = NatsTransport::connect(cfg).await.unwrap();
    producer
        .declare(&Topology {
            queues: vec![QueueSpec {
                name: "work".into(),
                ..QueueSpec::default()
            }],
        })
        .await
        .unwrap();

    let send_retries = Arc::new(AtomicU64::new(0));
    let sender = {
        let retries = send_retries.clone();
        tokio::spawn(async move {
            for b in 0..N / BATCH {
                let batch: Vec<Outgoing> = (b * BATCH..(b + 1) * BATCH)
                    .map(|i| {
                        let mut e = Envelope::new("fault.tick", 1, format!("{{\"seq\":{i}}}"));
                        e.headers.insert("seq".into(), i.to_string());
                        Outgoing::to_queue("work", e)
                    })
                    .collect();
                // Retry the same envelopes (same ids): the stream drops duplicates.
                let mut attempt = 0;
                while let Err(e) = producer.send(batch.clone()).await {
                    attempt += 1;
                    retries.fetch_add(1, Ordering::Relaxed);
                    assert!(e.is_retryable(), "send failed permanently: {e}");
                    assert!(attempt < 60, "send kept failing: {e}");
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            producer
        })
    };

    let opts = ReceiveOptions {
        prefetch: 32,
        lease: Duration::from_secs(4),
        ..ReceiveOptions::default()
    };
    let mut rx = consumer.receive("work", opts).await.unwrap();
    let mut seen: HashMap<u64, u32> = HashMap::new();
    let mut cut = false;
    let mut ack_errors = 0u64;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(180);
    while (seen.len() as u64) < N {
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {} of {N} distinct messages within 180 s",
            seen.len()
        );
        let d = match tokio::time::timeout(Duration::from_secs(30), rx.recv()).await {
            Ok(Ok(Some(d))) => d,
            Ok(Ok(None)) => panic!("receiver ended"),
            Ok(Err(e)) => panic!("recv failed: {e}"),
            Err(_) => panic!("nothing received for 30 s ({} of {N} seen)", seen.len()),
        };
        let s: u64 = d.envelope.header("seq").unwrap().parse().unwrap();
        assert!(s < N, "unknown seq {s}");
        *seen.entry(s).or_default() += 1;
        if d.ack().await.is_err() {
            ack_errors += 1;
        }
        if !cut && seen.len() as u64 >= N / 3 {
            cut = true;
            let n = proxy.cut_all();
            eprintln!("cut {n} proxied connections after {} messages", seen.len());
            assert!(n >= 2, "both transports must go through the proxy");
        }
    }
    let producer = sender.await.unwrap();
    let duplicates: u32 = seen.values().map(|c| c - 1).sum();
    eprintln!(
        "all {N} arrived; duplicates: {duplicates}; send retries: {}; ack errors: {ack_errors}",
        send_retries.load(Ordering::Relaxed)
    );
    assert!(cut, "the connections were cut mid-run");
    assert!((0..N).all(|s| seen.contains_key(&s)));
    rx.close().await.unwrap();
    let _ = producer.delete_all().await;
}
