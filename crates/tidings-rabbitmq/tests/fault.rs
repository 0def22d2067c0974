//! Fault test: the connection is cut mid-stream by a loopback TCP proxy the test owns,
//! while a producer sends and a consumer acks. Both recover; nothing is lost (every seq
//! arrives at least once; duplicates are allowed and counted).

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use tidings_core::transport::{Outgoing, QueueSpec, ReceiveOptions, Topology, Transport};
use tidings_core::Envelope;
use tidings_rabbitmq::{RabbitMqConfig, RabbitMqTransport};

/// Forwards 127.0.0.1:<port> to the broker; `kill_all` drops every proxied connection.
struct Proxy {
    port: u16,
    conns: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accept: JoinHandle<()>,
}

impl Proxy {
    async fn start(upstream: String) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let conns: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let c = conns.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut down, _)) = listener.accept().await {
                let upstream = upstream.clone();
                let task = tokio::spawn(async move {
                    if let Ok(mut up) = TcpStream::connect(&upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut down, &mut up).await;
                    }
                });
                c.lock().unwrap().push(task);
            }
        });
        Proxy {
            port,
            conns,
            accept,
        }
    }

    /// Cuts every connection made so far (sockets dropped mid-stream).
    fn kill_all(&self) -> usize {
        let tasks: Vec<_> = self.conns.lock().unwrap().drain(..).collect();
        let n = tasks.iter().filter(|t| !t.is_finished()).count();
        for t in tasks {
            t.abort();
        }
        n
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.kill_all();
        self.accept.abort();
    }
}

fn via_proxy(url: &str, port: u16) -> String {
    let mut u = url::Url::parse(url).unwrap();
    u.set_host(Some("127.0.0.1")).unwrap();
    u.set_port(Some(port)).unwrap();
    u.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_cut_mid_stream_loses_nothing() {
    if common::unreachable().is_some() {
        return;
    }
    const N: u64 = 3000;
    const BATCH: u64 = 25;
    let proxy = Proxy::start(common::broker_addr()).await;
    let url = via_proxy(&common::amqp_url(), proxy.port);
    let config = RabbitMqConfig::from_url(&url)
        .unwrap()
        .with_connect_timeout(Duration::from_secs(5));
    let producer = RabbitMqTransport::connect(config.clone()).await.unwrap();
    let consumer = RabbitMqTransport::connect(config).await.unwrap();
    let queue = tidings_core::conformance::unique("fault");
    producer
        .declare(&Topology {
            queues: vec![QueueSpec {
                name: queue.clone(),
                ..QueueSpec::default()
            }],
        })
        .await
        .unwrap();

    let send_errors = Arc::new(Mutex::new(0u32));
    let batches_sent = Arc::new(AtomicU64::new(0));
    let sender = {
        let (q, errs, progress) = (queue.clone(), send_errors.clone(), batches_sent.clone());
        tokio::spawn(async move {
            for b in 0..N / BATCH {
                let batch: Vec<Outgoing> = (b * BATCH..(b + 1) * BATCH)
                    .map(|s| {
                        let mut e = Envelope::new("fault.test", 1, format!("{{\"seq\":{s}}}"));
                        e.headers.insert("seq".into(), s.to_string());
                        Outgoing::to_queue(&q, e)
                    })
                    .collect();
                // A failed send may have delivered part of the batch: resend it all.
                let mut attempts = 0;
                while let Err(e) = producer.send(batch.clone()).await {
                    attempts += 1;
                    *errs.lock().unwrap() += 1;
                    assert!(e.is_retryable(), "send error must be transient: {e}");
                    assert!(attempts < 50, "send keeps failing: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                progress.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            producer
        })
    };

    let mut rx = consumer
        .receive(
            &queue,
            ReceiveOptions {
                prefetch: 50,
                ..ReceiveOptions::default()
            },
        )
        .await
        .unwrap();
    let mut seen: HashMap<u64, u32> = HashMap::new();
    let mut deliveries = 0u64;
    let mut ack_errors = 0u32;
    let mut cuts = Vec::new();
    let mut sent_at_cut = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(180);
    while (seen.len() as u64) < N {
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {} of {N} distinct messages arrived in time",
            seen.len()
        );
        // Cut every proxied connection at a third and at two thirds of the stream.
        if (cuts.is_empty() && seen.len() as u64 >= N / 3)
            || (cuts.len() == 1 && seen.len() as u64 >= 2 * N / 3)
        {
            cuts.push(proxy.kill_all());
            sent_at_cut.push(batches_sent.load(Ordering::Relaxed));
        }
        let d = match tokio::time::timeout(Duration::from_secs(30), rx.recv()).await {
            Ok(Ok(Some(d))) => d,
            Ok(Ok(None)) => panic!("receiver ended"),
            Ok(Err(e)) => panic!("recv failed: {e}"),
            Err(_) => panic!("nothing received for 30 s ({} of {N} so far)", seen.len()),
        };
        deliveries += 1;
        let s: u64 = d.envelope.header("seq").unwrap().parse().unwrap();
        *seen.entry(s).or_default() += 1;
        if d.ack().await.is_err() {
            // The channel died: the broker redelivers it.
            ack_errors += 1;
        }
    }
    let producer = sender.await.unwrap();
    let duplicates = deliveries - N;
    eprintln!(
        "fault test: {N} messages, {deliveries} deliveries ({duplicates} duplicates), \
         connections cut {cuts:?} after {sent_at_cut:?} of {} batches sent, \
         send errors {}, ack errors {ack_errors}",
        N / BATCH,
        send_errors.lock().unwrap()
    );
    assert_eq!(cuts.len(), 2, "the connections were cut twice");
    assert!(
        cuts.iter().all(|&n| n >= 1),
        "each cut dropped live connections: {cuts:?}"
    );
    assert!(
        sent_at_cut.iter().all(|&b| b < N / BATCH),
        "the producer was still sending at each cut: {sent_at_cut:?}"
    );
    assert!((0..N).all(|s| seen.contains_key(&s)), "every seq arrived");
    let _ = rx.close().await;
    let _ = producer.close().await;
    let _ = consumer.close().await;
    common::delete_queue(&queue).await;
}

/// Ready messages of `queue` (stats list every endpoint queue of the vhost).
async fn ready_of(t: &RabbitMqTransport, queue: &str) -> u64 {
    let stats = t.stats().await.unwrap();
    stats
        .iter()
        .find(|s| s.queue == queue)
        .unwrap_or_else(|| panic!("{queue} not in stats: {stats:?}"))
        .ready
}

/// A send whose connection is cut before every confirm arrived fails (transient), never
/// reports success; the next send reconnects and succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_cut_before_confirms_is_an_error_then_recovers() {
    if common::unreachable().is_some() {
        return;
    }
    let proxy = Proxy::start(common::broker_addr()).await;
    let url = via_proxy(&common::amqp_url(), proxy.port);
    let config = RabbitMqConfig::from_url(&url).unwrap();
    let t = RabbitMqTransport::connect(config).await.unwrap();
    let queue = tidings_core::conformance::unique("fault_send");
    t.declare(&Topology {
        queues: vec![QueueSpec {
            name: queue.clone(),
            ..QueueSpec::default()
        }],
    })
    .await
    .unwrap();
    // Big enough that publishing it takes a while.
    let batch: Vec<Outgoing> = (0..50_000)
        .map(|i| {
            Outgoing::to_queue(
                &queue,
                Envelope::new("fault.big", 1, vec![b'x'; 1024 + i % 2]),
            )
        })
        .collect();
    let t2 = t.clone();
    let started = std::time::Instant::now();
    let send = tokio::spawn(async move { t2.send(batch).await });
    // Wait until the publishing is under way (messages reach the queue), then cut.
    loop {
        let ready = ready_of(&t, &queue).await;
        if ready > 0 || started.elapsed() > Duration::from_secs(30) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let cut = proxy.kill_all();
    let cut_at = started.elapsed();
    let r = send.await.unwrap();
    assert!(cut >= 1, "a live connection was cut");
    eprintln!(
        "cut after {cut_at:?}; send returned {r:?} after {:?}",
        started.elapsed()
    );
    match r {
        Err(e) => assert!(e.is_retryable(), "a lost connection is transient: {e}"),
        Ok(()) => {
            // Only acceptable if every message really is in the queue.
            let ready = ready_of(&t, &queue).await;
            assert_eq!(
                ready, 50_000,
                "send returned Ok but only {ready} messages arrived"
            );
        }
    }
    t.send(vec![Outgoing::to_queue(
        &queue,
        Envelope::new("fault.after", 1, "{}"),
    )])
    .await
    .expect("send after reconnect");
    let _ = t.close().await;
    common::delete_queue(&queue).await;
}
