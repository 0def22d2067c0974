//! The outbox relay scenario: how fast [`Relay`] empties an outbox table into a broker,
//! next to that broker's raw publish rate.
//!
//! For each selected broker (RabbitMQ, NATS) and each outbox store (SQLite file, PostgreSQL
//! schema): commit N rows to the table (off the clock), declare a fresh destination queue,
//! start a [`Relay`] (batches of `--relay-batch`: claim, confirmed send, delete) and time
//! it until every row is shipped and deleted; then check that the queue holds exactly N
//! messages and that consuming them yields each sequence number once.
//!
//! The baseline is the raw client publishing N messages in batches of the same size — a
//! batch, wait for every confirm (lapin publisher confirms, JetStream acks), the next —
//! through the [`baseline`] systems' own `send`.

mod check;
mod outbox;
mod report;

pub use outbox::StoreKind;
pub(crate) use report::{table, targets};

use std::sync::Arc;
use std::time::{Duration, Instant};

use tidings::outbox::{OutboxStore, Relay};
use tidings::transport::{QueueSpec, Topology, Transport};
use tidings::Message;
use tokio_util::sync::CancellationToken;

use crate::baseline;
use crate::opts::{BenchOpts, TransportKind};
use crate::payload::{now_ns, Work};
use crate::report::{median, Row, RunResult};
use crate::scenario::STALL;
use crate::system::Setup;
use crate::tidings_sys::unique;
use outbox::Outbox;

/// The scenario label of every relay row.
pub const SCENARIO: &str = "relay";

fn raw_row(kind: TransportKind, n: u64) -> Row {
    let mut r = Row::new(SCENARIO, kind, true, n);
    r.system = format!("raw publish {kind}");
    r
}

fn relay_row(kind: TransportKind, store: StoreKind, n: u64) -> Row {
    let mut r = Row::new(SCENARIO, kind, false, n);
    r.system = format!("relay {}→{kind}", store.as_str());
    r.durability = format!("{}; broker: {}", store.durability(), r.durability);
    r
}

/// Runs the relay scenario on the brokers among `o.transports`, appending its rows.
pub async fn measure(o: &BenchOpts, rows: &mut Vec<Row>) {
    let brokers: Vec<TransportKind> = o
        .transports
        .iter()
        .copied()
        .filter(|k| matches!(k, TransportKind::Rabbitmq | TransportKind::Nats))
        .collect();
    if brokers.is_empty() {
        eprintln!("relay: skipped: no broker selected (--transports rabbitmq,nats)");
        return;
    }
    let n = o.relay_n;
    eprintln!("relay (N = {n}, batch {}):", o.relay_batch);
    let pg_down = baseline::unreachable(TransportKind::Postgres, o).await;
    if let Some(why) = &pg_down {
        eprintln!("  skipped the PostgreSQL outbox: {why}");
    }
    for kind in brokers {
        if let Some(why) = baseline::unreachable(kind, o).await {
            eprintln!("  skipped relay to {kind}: {why}");
            let mut group = vec![raw_row(kind, n)];
            group.extend(StoreKind::ALL.map(|s| relay_row(kind, s, n)));
            for mut r in group {
                r.skipped = Some(why.clone());
                rows.push(r);
            }
            continue;
        }
        let mut raw = raw_row(kind, n);
        repeat(&mut raw, o, || async {
            Ok((publish_once(kind, o).await?, None))
        })
        .await;
        rows.push(raw);
        for store in StoreKind::ALL {
            let mut row = relay_row(kind, store, n);
            match (&pg_down, store) {
                (Some(why), StoreKind::Postgres) => row.skipped = Some(why.clone()),
                _ => {
                    repeat(&mut row, o, || async {
                        let (r, fill) = relay_once(kind, store, o).await?;
                        Ok((r, Some(fill)))
                    })
                    .await
                }
            }
            rows.push(row);
        }
    }
}

/// Runs `once` `o.runs` times into `row` (stopping at the first failure); the optional
/// second figure is the untimed fill rate, kept as the median.
async fn repeat<F, Fut>(row: &mut Row, o: &BenchOpts, mut once: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<(RunResult, Option<f64>)>>,
{
    let mut fills = Vec::new();
    for i in 0..o.runs {
        match once().await {
            Ok((r, fill)) => {
                let fill_note = fill.map_or(String::new(), |f| {
                    format!("  (outbox filled at {f:.0} msg/s, untimed)")
                });
                eprintln!(
                    "  {:<28} run {}/{}: {:>9.0} msg/s{fill_note}",
                    row.system,
                    i + 1,
                    o.runs,
                    r.msgs_per_sec
                );
                fills.extend(fill);
                row.runs.push(r);
            }
            Err(e) => {
                eprintln!("  {}: FAILED: {e:#}", row.system);
                row.error = Some(format!("{e:#}"));
                break;
            }
        }
    }
    row.enqueue_msgs_per_sec = median(fills);
}

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
async fn publish_once(kind: TransportKind, o: &BenchOpts) -> anyhow::Result<RunResult> {
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

/// One relay run from a fresh `store` to a fresh queue on `kind`; returns the run and the
/// fill rate.
async fn relay_once(
    kind: TransportKind,
    store: StoreKind,
    o: &BenchOpts,
) -> anyhow::Result<(RunResult, f64)> {
    let n = o.relay_n;
    let transport = tidings::connect(baseline::url(kind, o)).await?;
    let queue = format!("relay_{}", unique());
    let outcome = async {
        transport
            .declare(&Topology {
                queues: vec![QueueSpec {
                    name: queue.clone(),
                    commands: vec![Work::NAME.to_string()],
                    ..QueueSpec::default()
                }],
            })
            .await?;
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
        anyhow::Ok(r)
    }
    .await;
    let deleted = transport.delete_queue(&queue).await;
    let _ = transport.close().await;
    let r = outcome?;
    deleted?;
    Ok(r)
}

/// Starts a [`Relay`] on `store` and waits until it has shipped (and deleted) all `n`
/// rows; returns the time from its start. Fails if it makes no progress for [`STALL`] or
/// if rows are left in the table.
async fn ship(
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
            break Ok(started.elapsed());
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
    task.await?;
    let elapsed = waited?;
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

#[cfg(test)]
mod tests;
