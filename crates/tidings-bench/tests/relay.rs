//! The relay scenario against the real brokers, smoke-sized: for RabbitMQ and NATS, the
//! raw publish row, the Tidings send row and a relay row per outbox store (PostgreSQL when
//! it answers) each run once, ship every row exactly once (the scenario's own checks), and
//! get a ratio to the raw publish rate; so do the relays into the in-memory transport. A
//! broker that does not answer is skipped, unless CI=true.

use tidings_bench::{BenchOpts, TransportKind};

fn ci() -> bool {
    std::env::var("CI").as_deref() == Ok("true")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_rows_ship_every_row_once() {
    let opts = BenchOpts {
        transports: vec![TransportKind::Rabbitmq, TransportKind::Nats],
        relay: true,
        relay_n: 700,
        relay_batch: 64, // 10 full batches and a short one
        smoke: true,
        ..BenchOpts::default()
    };
    let mut live = Vec::new();
    for k in [TransportKind::Rabbitmq, TransportKind::Nats] {
        match tidings_bench::baseline::unreachable(k, &opts).await {
            None => live.push(k),
            Some(why) if ci() => panic!("CI=true: {why}"),
            Some(why) => eprintln!("skipped: {why}"),
        }
    }
    let pg = tidings_bench::baseline::unreachable(TransportKind::Postgres, &opts).await;
    if let Some(why) = &pg {
        assert!(!ci(), "CI=true: {why}");
    }
    let report = tidings_bench::run(opts).await.expect("bench runs");
    println!("{}", tidings_bench::markdown(&report, "relay test"));
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    assert!(report.rows.iter().all(|r| r.scenario == "relay"));
    let mut systems = vec!["relay sqlite→memory".to_string()];
    if pg.is_none() {
        systems.push("relay postgres→memory".into());
    }
    for k in live {
        systems.push(format!("raw publish {k}"));
        systems.push(format!("Tidings send {k} (no outbox)"));
        systems.push(format!("relay sqlite→{k}"));
        if pg.is_none() {
            systems.push(format!("relay postgres→{k}"));
        }
    }
    for system in systems {
        let row = report
            .rows
            .iter()
            .find(|r| r.system == system)
            .unwrap_or_else(|| panic!("no row {system}"));
        assert_eq!((row.n, row.runs.len()), (700, 1), "{row:?}");
        assert!(row.skipped.is_none() && row.error.is_none(), "{row:?}");
        assert!(row.runs[0].msgs_per_sec > 0.0, "{row:?}");
        if !row.raw && row.transport != TransportKind::Memory {
            assert!(row.vs_baseline.is_some(), "{row:?}");
        }
        if row.system.starts_with("relay ") {
            assert!(row.enqueue_msgs_per_sec.is_some(), "{row:?}");
        }
    }
}
