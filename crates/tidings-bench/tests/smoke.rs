//! `tidings bench --smoke` on the memory and SQLite transports (debug build): every
//! scenario of Tidings and its baseline runs and delivers every message exactly once.
//!
//! A plain `main` (harness = false) because the backlog scenario re-executes the current
//! binary with the hidden `bench-drain` subcommand: this test binary routes it itself.

use clap::Parser;
use tidings_bench::{BenchOpts, DrainArgs, TransportKind, CHILD_COMMAND};

#[derive(Parser)]
struct Child {
    #[command(subcommand)]
    cmd: ChildCmd,
}

#[derive(clap::Subcommand)]
enum ChildCmd {
    #[command(name = "bench-drain")]
    Drain(DrainArgs),
}

#[tokio::main]
async fn main() {
    if std::env::args().nth(1).as_deref() == Some(CHILD_COMMAND) {
        let ChildCmd::Drain(args) = Child::parse().cmd;
        tidings_bench::drain_child(args).await.unwrap();
        return;
    }
    // `cargo test -- --list` and filters: one test, named `smoke`.
    if std::env::args().any(|a| a == "--list") {
        println!("smoke: test");
        return;
    }
    let opts = BenchOpts {
        transports: vec![TransportKind::Memory, TransportKind::Sqlite],
        smoke: true,
        n: 500,
        backlog: 1_000,
        rate: vec![1000],
        paced_secs: 0.2,
        ..BenchOpts::default()
    };
    let report = tidings_bench::run(opts).await.unwrap();
    let md = tidings_bench::markdown(&report, "smoke");
    println!("{md}");
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    let scenarios = ["saturated", "paced 1000 msg/s", "fan-out 1→3", "backlog"];
    for kind in [TransportKind::Memory, TransportKind::Sqlite] {
        for raw in [true, false] {
            for sc in scenarios {
                let row = report
                    .rows
                    .iter()
                    .find(|r| r.transport == kind && r.raw == raw && r.scenario == sc)
                    .unwrap_or_else(|| panic!("no {sc} row for {kind} raw={raw}"));
                if kind == TransportKind::Memory && sc == "backlog" {
                    assert!(row.skipped.is_some());
                    continue;
                }
                assert!(row.error.is_none(), "{row:?}");
                assert_eq!(row.runs.len(), 1, "{row:?}");
                assert!(row.runs[0].msgs_per_sec > 0.0, "{row:?}");
            }
        }
    }
    let backlog = report
        .rows
        .iter()
        .find(|r| r.scenario == "backlog" && r.transport == TransportKind::Sqlite && !r.raw)
        .unwrap();
    assert!(backlog.peak_rss_mb.unwrap() > 1.0, "{backlog:?}");
    println!("test result: ok. smoke passed");
}
