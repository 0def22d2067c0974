//! Many messages and several consumers: nothing lost, nothing handled twice.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::super::support::*;
use super::super::TransportFactory;
use crate::transport::Outgoing;

/// Checks that `seqs` holds each of `0..n` exactly once.
fn assert_each_once(seqs: &[u64], n: u64, what: &str) {
    let mut seen = vec![0u32; n as usize];
    for &s in seqs {
        match seen.get_mut(s as usize) {
            Some(c) => *c += 1,
            None => panic!("{what}: unknown seq {s}"),
        }
    }
    let dup: Vec<_> = (0..n).filter(|&s| seen[s as usize] > 1).collect();
    let lost: Vec<_> = (0..n).filter(|&s| seen[s as usize] == 0).collect();
    assert!(dup.is_empty(), "{what}: handled more than once: {dup:?}");
    assert!(lost.is_empty(), "{what}: never handled: {lost:?}");
}

/// Two receivers (on two connections) on one queue: 200 messages, each handled once.
pub async fn competing_consumers_get_each_message_once(factory: &impl TransportFactory) {
    const N: u64 = 200;
    let t = connect(factory).await;
    let q = fresh_queue(&*t, "competing").await;
    let ty = type_name("competing");
    let t2 = connect(factory).await;
    let stop = CancellationToken::new();
    let (tx, mut reports) = mpsc::unbounded_channel();
    let mut tasks = Vec::new();
    for (i, conn) in [&t, &t2].into_iter().enumerate() {
        let rx = open(&**conn, &q, options(10, Duration::from_secs(30))).await;
        let tx2 = tx.clone();
        tasks.push(spawn_consumer(
            rx,
            format!("receiver {i}"),
            stop.clone(),
            tx.clone(),
            move |d| {
                let tx2 = tx2.clone();
                async move {
                    let s = seq(&d.envelope);
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    let r = d
                        .ack()
                        .await
                        .map(|()| s)
                        .map_err(|e| format!("ack of {s}: {e}"));
                    let _ = tx2.send(r);
                }
            },
        ));
    }
    drop(tx);
    let msgs: Vec<Outgoing> = (0..N)
        .map(|i| Outgoing::to_queue(&q, message(&ty, i)))
        .collect();
    for chunk in msgs.chunks(50) {
        send(&*t, chunk.to_vec()).await;
    }
    let mut seqs = collect(
        &mut reports,
        N as usize,
        Duration::from_secs(60),
        "competing consumers",
    )
    .await;
    // Watch a little longer for duplicates.
    while let Ok(Some(r)) = tokio::time::timeout(QUIET, reports.recv()).await {
        match r {
            Ok(s) => seqs.push(s),
            Err(v) => panic!("competing consumers: {v}"),
        }
    }
    stop_all(&stop, tasks).await;
    assert_each_once(&seqs, N, "competing consumers");
}

/// 10,000 messages sent in batches of 100 while a receiver with prefetch 64 consumes:
/// every one arrives exactly once.
pub async fn many_messages_no_loss_no_duplicate(factory: &impl TransportFactory) {
    const N: u64 = 10_000;
    const BATCH: u64 = 100;
    let t = connect(factory).await;
    let q = fresh_queue(&*t, "many").await;
    let ty = type_name("many");
    let mut rx = open(&*t, &q, options(64, Duration::from_secs(60))).await;

    let sender = {
        let (t, q, ty) = (t.clone(), q.clone(), ty.clone());
        tokio::spawn(async move {
            for b in 0..N / BATCH {
                let batch = (b * BATCH..(b + 1) * BATCH)
                    .map(|i| Outgoing::to_queue(&q, message(&ty, i)))
                    .collect();
                t.send(batch)
                    .await
                    .map_err(|e| format!("send of batch {b}: {e}"))?;
            }
            Ok::<(), String>(())
        })
    };

    let deadline = tokio::time::Instant::now() + Duration::from_secs(300);
    let mut seen = vec![false; N as usize];
    let mut acks = JoinSet::new();
    for n in 0..N {
        if tokio::time::Instant::now() > deadline {
            panic!("only {n} of {N} messages arrived within 300 s");
        }
        let d = recv_within(
            &mut *rx,
            Duration::from_secs(30),
            format!("message {n} of {N}"),
        )
        .await;
        let s = seq(&d.envelope);
        match seen.get_mut(s as usize) {
            Some(true) => panic!(
                "seq {s} delivered twice (delivery_count {})",
                d.delivery_count
            ),
            Some(slot) => *slot = true,
            None => panic!("unknown seq {s}"),
        }
        acks.spawn(async move { d.ack().await.map_err(|e| format!("ack of {s}: {e}")) });
        while let Some(r) = acks.try_join_next() {
            must_ack(r);
        }
    }
    while let Some(r) = acks.join_next().await {
        must_ack(r);
    }
    match sender.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => panic!("{e}"),
        Err(e) => panic!("sender task failed: {e}"),
    }
    expect_nothing(&mut *rx, QUIET, "all 10,000 were received and acked").await;
    let lost = seen.iter().filter(|s| !**s).count();
    assert_eq!(lost, 0, "{lost} messages never arrived");
}

fn must_ack(r: Result<Result<(), String>, tokio::task::JoinError>) {
    match r {
        Ok(Ok(())) => {}
        Ok(Err(e)) => panic!("{e}"),
        Err(e) => panic!("ack task failed: {e}"),
    }
}
