//! The outbox relay scenario: how fast [`Relay`] empties an outbox table into a broker,
//! next to that broker's raw publish rate.
//!
//! For each selected broker (RabbitMQ, NATS) and each outbox store (SQLite file, PostgreSQL
//! schema): commit N rows to the table (off the clock), declare a fresh destination queue,
//! start a [`Relay`] (batches of `--relay-batch`: read, confirmed send, delete) and time
//! it until every row is shipped and deleted; then check that the queue holds exactly N
//! messages and that consuming them yields each sequence number once.
//!
//! The baseline is the raw client publishing N messages in batches of the same size — a
//! batch, wait for every confirm (lapin publisher confirms, JetStream acks), the next —
//! through the [`baseline`] systems' own `send`.
//!
//! Two more rows locate the gap: the Tidings transport's own `send` of the same batches
//! with no outbox (the ceiling of a relay through it), and each store relayed into the
//! in-memory transport (the outbox's own cost, no broker). The relay overlaps the table
//! work with the sends, so per batch: relay time ≈ max(outbox time, send time).

mod check;
mod outbox;
mod report;
mod runs;

pub use outbox::StoreKind;
pub(crate) use report::{table, targets};

#[cfg(doc)]
use tidings::outbox::Relay;

use crate::baseline;
use crate::opts::{BenchOpts, TransportKind};
use crate::report::{median, Row, RunResult};
use runs::{publish_once, relay_once, send_once};

/// The scenario label of every relay row.
pub const SCENARIO: &str = "relay";

fn raw_row(kind: TransportKind, n: u64) -> Row {
    let mut r = Row::new(SCENARIO, kind, true, n);
    r.system = format!("raw publish {kind}");
    r
}

fn send_row(kind: TransportKind, n: u64) -> Row {
    let mut r = Row::new(SCENARIO, kind, false, n);
    r.system = format!("Tidings send {kind} (no outbox)");
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
    let relays = async |kind: TransportKind, rows: &mut Vec<Row>| {
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
    };
    for kind in brokers {
        if let Some(why) = baseline::unreachable(kind, o).await {
            eprintln!("  skipped relay to {kind}: {why}");
            let mut group = vec![raw_row(kind, n), send_row(kind, n)];
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
        let mut send = send_row(kind, n);
        repeat(&mut send, o, || async {
            Ok((send_once(kind, o).await?, None))
        })
        .await;
        rows.push(send);
        relays(kind, rows).await;
    }
    // The outbox alone: relayed into the in-memory transport.
    relays(TransportKind::Memory, rows).await;
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

#[cfg(test)]
mod tests;
