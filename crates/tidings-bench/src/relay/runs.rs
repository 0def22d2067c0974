//! One run of each relay-scenario row, timed: the raw client's confirmed batches, the
//! Tidings transport's own `send` of the same batches (no outbox), and a [`Relay`] emptying
//! a filled outbox table — each followed by its checks and clean-up.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tidings::outbox::{OutboxStore, Relay};
use tidings::transport::{Outgoing, QueueSpec, Topology, Transport};
use tidings::Message;
use tokio_util::sync::CancellationToken;

use super::check;
use super::outbox::{work, Outbox, StoreKind};
use crate::baseline;
use crate::opts::{BenchOpts, TransportKind};
use crate::payload::{now_ns, pad, Work};
use crate::report::RunResult;
use crate::scenario::STALL;
use crate::system::Setup;
use crate::tidings_sys::unique;

fn result(n: u64, elapsed: Duration) -> RunResult {
    let s = elapsed.as_secs_f64();
    RunResult {
        msgs_per_sec: n as f64 / s.max(1e-9),
        elapsed_s: s,
        send_s: s,
        p50_us: 0,
        p99_us: 0,
        max_us: 0,
    }
}

/// The raw client publishes `relay_n` messages to a fresh queue (stream), one confirmed
/// batch of `relay_batch` at a time.
pub(super) async fn publish_once(kind: TransportKind, o: &BenchOpts) -> anyhow::Result<RunResult> {
    let setup = Setup {
        size: o.size,
        prefetch: o.prefetch,
        fanout: 1,
        trackers: Vec::new(), // no consumer: publish only
        attach: None,
        inbox: false,
    };
    let sys = baseline::open(kind, true, baseline::url(kind, o), &setup).await?;
    let (n, batch) = (o.relay_n, o.relay_batch as u64);
    let sent = async {
        let started = Instant::now();
        let mut next = 0;
        while next < n {
            let end = n.min(next + batch);
            let msgs = (next..end).map(|seq| (seq, now_ns())).collect();
            tokio::time::timeout(STALL, sys.send(msgs))
                .await
                .map_err(|_| anyhow::anyhow!("a batch was not confirmed within {STALL:?}"))??;
            next = end;
        }
        anyhow::Ok(started.elapsed())
    }
    .await;
    let finished = crate::scenario::finish(sys).await;
    let elapsed = sent?;
    finished?;
    Ok(result(n, elapsed))
}

/// Connects a Tidings transport to `kind` (in-memory for [`TransportKind::Memory`]),
/// declares a fresh queue, runs `f` on it, then deletes the queue and closes.
async fn on_queue<T, F, Fut>(kind: TransportKind, o: &BenchOpts, f: F) -> anyhow::Result<T>
where
    F: FnOnce(Arc<dyn Transport>, String) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    let url = match kind {
        TransportKind::Memory => "memory://",
        k => baseline::url(k, o),
    };
    let transport = tidings::connect(url).await?;
    let queue = format!("relay_{}", unique());
    let spec = QueueSpec {
        name: queue.clone(),
        commands: vec![Work::NAME.to_string()],
        ..QueueSpec::default()
    };
    let outcome = match transport.declare(&Topology { queues: vec![spec] }).await {
        Ok(()) => f(transport.clone(), queue.clone()).await,
        Err(e) => Err(e.into()),
    };
    let deleted = transport.delete_queue(&queue).await;
    let _ = transport.close().await;
    let r = outcome?;
    deleted?;
    Ok(r)
}

/// The Tidings transport `send`s `relay_n` messages — envelopes like those the relay
/// ships, built before the clock starts — in batches of `relay_batch`, one at a time, with
/// no outbox: the ceiling of a relay that ships through it.
pub(super) async fn send_once(kind: TransportKind, o: &BenchOpts) -> anyhow::Result<RunResult> {
    let (n, batch) = (o.relay_n, o.relay_batch as u64);
    let pad = pad(o.size);
    on_queue(kind, o, |transport, queue| async move {
        let mut batches = Vec::new();
        let mut next = 0;
        while next < n {
            let end = n.min(next + batch);
            batches.push(
                (next..end)
                    .map(|seq| work(&queue, seq, &pad))
                    .collect::<anyhow::Result<Vec<Outgoing>>>()?,
            );
            next = end;
        }
        let started = Instant::now();
        for b in batches {
            tokio::time::timeout(STALL, transport.send(b))
                .await
                .map_err(|_| anyhow::anyhow!("a batch was not accepted within {STALL:?}"))??;
        }
        let elapsed = started.elapsed();
        check::count(transport.as_ref(), &queue, n).await?;
        Ok(result(n, elapsed))
    })
    .await
}

/// One relay run from a fresh `store` to a fresh queue on `kind`; returns the run and the
/// fill rate.
pub(super) async fn relay_once(
    kind: TransportKind,
    store: StoreKind,
    o: &BenchOpts,
) -> anyhow::Result<(RunResult, f64)> {
    let n = o.relay_n;
    on_queue(kind, o, |transport, queue| async move {
        let outbox = Outbox::open(store, &o.postgres_url).await?;
        let run = async {
            let fill = outbox.fill(&queue, n, o.size).await?;
            let elapsed = ship(outbox.store(), transport.clone(), n, o.relay_batch).await?;
            check::count(transport.as_ref(), &queue, n).await?;
            check::drain(&transport, &queue, n, o.prefetch).await?;
            anyhow::Ok((result(n, elapsed), fill))
        }
        .await;
        let removed = outbox.remove().await;
        let r = run?;
        removed?;
        Ok(r)
    })
    .await
}

/// Starts a [`Relay`] on `store` and waits until it has shipped (and deleted) all `n`
/// rows; returns the time from its start. Fails if it makes no progress for [`STALL`] or
/// if rows are left in the table.
pub(super) async fn ship(
    store: Arc<dyn OutboxStore>,
    transport: Arc<dyn Transport>,
    n: u64,
    batch: usize,
) -> anyhow::Result<Duration> {
    let relay = Relay::new(store.clone(), transport).batch_size(batch);
    let stats = relay.stats();
    let stop = CancellationToken::new();
    let started = Instant::now();
    let task = tokio::spawn(relay.run(stop.clone()));
    let (mut seen, mut progressed) = (0, started);
    let waited = loop {
        let shipped = stats.shipped();
        if shipped >= n {
            break Ok(());
        }
        if shipped != seen {
            (seen, progressed) = (shipped, Instant::now());
        } else if progressed.elapsed() > STALL {
            break Err(anyhow::anyhow!(
                "relay stalled at {shipped} of {n} shipped ({} failed attempts)",
                stats.errors()
            ));
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    };
    stop.cancel();
    // The last batch is deleted after its confirm: the clock stops once the relay is done.
    task.await?;
    waited?;
    let elapsed = started.elapsed();
    anyhow::ensure!(
        stats.shipped() == n,
        "the relay shipped {} rows of {n}",
        stats.shipped()
    );
    let pending = store.pending().await?;
    anyhow::ensure!(pending == 0, "{pending} rows left in the outbox");
    if stats.errors() > 0 {
        eprintln!("    (the relay retried {} failed batches)", stats.errors());
    }
    Ok(elapsed)
}
