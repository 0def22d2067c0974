//! `tidings bench`: Tidings side by side with raw baselines, in one run.
//!
//! For each transport — in-memory vs a tokio mpsc channel, SQLite (fsync, with the inbox)
//! vs a hand-written sqlx queue, PostgreSQL vs a `SKIP LOCKED` queue, RabbitMQ vs raw
//! lapin, NATS JetStream vs raw async-nats — it runs the same scenarios through both:
//!
//! - **saturated**: 1 producer, 1 consumer, N messages as fast as they go;
//! - **paced**: fixed offered rates, for latency;
//! - **fan-out**: 1 producer, 3 subscribers;
//! - **backlog**: enqueue a backlog, drain it in a child process and read its peak RSS;
//! - **relay** (`--relay`): an outbox table (SQLite, PostgreSQL) shipped to RabbitMQ / NATS
//!   by the outbox [`Relay`](tidings::outbox::Relay), against the broker's raw publish rate.
//!
//! Throughput is N / (first send → last ack); latency is "the consumer has it" minus the
//! send time carried in the message. Every sequence number must arrive exactly once, else
//! the run fails. Tidings rows go through the whole stack: a [`Bus`](tidings::Bus) with an
//! [`Endpoint`](tidings::Endpoint) handler and its consumer pipeline.
//!
//! [`run`] returns a [`Report`]; [`markdown`] renders it. A binary that calls [`run`] with
//! the backlog scenario must route the hidden [`CHILD_COMMAND`] to [`drain_child`].

pub mod backlog;
pub mod baseline;
pub mod counted;
mod machine;
pub mod opts;
pub mod payload;
pub mod relay;
pub mod report;
pub mod scenario;
pub mod system;
mod targets;
pub mod tidings_sys;
pub mod tracker;

use std::time::Instant;

pub use backlog::{drain_child, DrainArgs, CHILD_COMMAND};
pub use opts::{BenchOpts, TransportKind};
pub use report::{markdown, Report, Row};

use scenario::Scenario;

/// Runs the benchmark `opts` asks for. Rows that fail (exactly-once violated, an error
/// mid-run) are kept with their error and listed in [`Report::failures`]; transports
/// whose server does not answer are skipped with the reason.
pub async fn run(opts: BenchOpts) -> anyhow::Result<Report> {
    let o = opts.effective();
    let wall = Instant::now();
    let started_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let machine = machine::collect(&o).await;
    let mut rows = Vec::new();
    let mut live = Vec::new();
    for &k in &o.transports {
        match baseline::unreachable(k, &o).await {
            Some(why) => {
                eprintln!("skipped {k}: {why}");
                // (the relay scenario adds its own skipped rows)
                let point_to_point = ["saturated", "paced", "fanout", "backlog"];
                if !point_to_point.iter().any(|s| o.wants(s)) {
                    continue;
                }
                for raw in [true, false] {
                    let mut r = Row::new("saturated", k, raw, o.n);
                    r.skipped = Some(why.clone());
                    rows.push(r);
                }
            }
            None => live.push(k),
        }
    }
    let mut scenarios = Vec::new();
    if o.wants("saturated") {
        scenarios.push(Scenario::Saturated);
    }
    if o.wants("paced") {
        scenarios.extend(o.rate.iter().map(|&r| Scenario::Paced(r.max(1))));
    }
    if o.wants("fanout") {
        scenarios.push(Scenario::Fanout);
    }
    for sc in scenarios {
        eprintln!("{} (N = {}):", sc.label(), sc.n(&o));
        for &k in &live {
            for raw in [true, false] {
                rows.push(scenario::measure(k, raw, &o, sc).await);
            }
        }
    }
    if o.wants("backlog") && o.backlog > 0 {
        eprintln!("backlog (N = {}):", o.backlog);
        for &k in &live {
            for raw in [true, false] {
                rows.push(backlog::measure(k, raw, &o).await);
            }
        }
    }
    if o.wants(relay::SCENARIO) {
        relay::measure(&o, &mut rows).await;
    }
    if o.no_inbox {
        for r in rows
            .iter_mut()
            .filter(|r| !r.raw && r.transport == TransportKind::Sqlite)
        {
            r.system = "Tidings SQLite (no inbox)".into();
        }
    }
    let mut report = Report {
        opts: o,
        started_at,
        wall_s: 0.0,
        machine,
        rows,
        targets: Vec::new(),
        failures: Vec::new(),
    };
    report.wall_s = wall.elapsed().as_secs_f64();
    report.finish();
    Ok(report)
}
