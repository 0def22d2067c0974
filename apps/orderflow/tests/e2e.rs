//! End to end in one process: 500 orders through the real HTTP API, 20% transient payment
//! failures, duplicate deliveries injected, poison messages; every invariant must hold.

use std::sync::Arc;
use std::time::Duration;

use indicatif::ProgressBar;
use orderflow::chaos::Duplicating;
use orderflow::contracts::{OrderLine, OrderPlacedV1};
use orderflow::load::{place_orders, LoadConfig};
use orderflow::report::{self, Scope};
use orderflow::run::{http, inject_poison, settled_checks, wait_until_settled};
use orderflow::services::gateway::GatewayConfig;
use orderflow::system::{Config, System};
use sqlx::Row;
use tidings_core::transport::memory::MemoryTransport;
use tidings_core::transport::Transport;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_orders_with_failures_and_duplicates_end_consistent() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::new(dir.path());
    config.gateway = GatewayConfig {
        latency: Duration::from_millis(1),
        fail_rate: 0.2,
        decline_rate: 0.05,
    };
    config.payment_timeout = Duration::from_secs(20);
    config.redelivery = vec![
        Duration::from_millis(100),
        Duration::from_millis(300),
        Duration::from_secs(1),
    ];
    let dup = Arc::new(Duplicating::new(Arc::new(MemoryTransport::new()), 0.1));
    let transport: Arc<dyn Transport> = dup.clone();
    let system = System::start(config, transport).await.unwrap();
    let addr = http(&system, 0).await.unwrap();
    let scope = Scope {
        since_micros: chrono::Utc::now().timestamp_micros() - 1,
    };

    inject_poison(&system, 4).await.unwrap();
    // an older producer still publishes v1 of OrderPlaced: upcast on the consumers
    let legacy = uuid::Uuid::now_v7();
    system
        .bus
        .publish(&OrderPlacedV1 {
            order_id: legacy,
            customer_id: "legacy".into(),
            lines: vec![OrderLine {
                product_id: "P-003".into(),
                quantity: 1,
            }],
            total_cents: 1590,
            placed_at: chrono::Utc::now(),
        })
        .await
        .unwrap();

    let load = place_orders(
        &LoadConfig {
            base_url: format!("http://{addr}"),
            orders: 500,
            clients: 16,
            undeliverable_rate: 0.05,
            retry_rate: 0.05,
        },
        &ProgressBar::hidden(),
    )
    .await
    .unwrap();
    assert_eq!(load.placed.len(), 500, "every POST accepted");
    assert_eq!(load.errors, 0);
    assert_eq!(
        load.idempotency_violations, 0,
        "a repeated key returned another order"
    );

    let settled = wait_until_settled(&system, scope, 500, Duration::from_secs(120), None)
        .await
        .unwrap();
    let checks = settled_checks(&system, scope, Duration::from_secs(15))
        .await
        .unwrap();
    for c in &checks {
        eprintln!(
            "[{}] {} — {}",
            if c.ok { "ok" } else { "FAILED" },
            c.name,
            c.detail
        );
    }
    assert!(settled, "orders did not all become final in time");
    assert!(checks.iter().all(|c| c.ok), "an invariant failed");
    assert!(checks.len() >= 8);

    let (completed, cancelled) = report::outcomes(&system.db, scope).await.unwrap();
    eprintln!(
        "completed {completed}, cancelled {cancelled:?}, duplicated {}",
        dup.duplicated()
    );
    assert_eq!(completed + cancelled.values().sum::<i64>(), 500);
    assert!(completed > 300, "most orders complete: {completed}");
    assert!(dup.duplicated() > 50, "duplicates were injected");
    let refunds: i64 = sqlx::query("SELECT COUNT(*) FROM gw_ledger WHERE kind = 'refund'")
        .fetch_one(system.db.read.sqlite().unwrap())
        .await
        .unwrap()
        .get(0);
    assert!(
        refunds > 0 && cancelled.contains_key("undeliverable"),
        "the refund path ran"
    );

    // poison: exactly the injected messages are in the error queue, nothing else
    let dl = report::error_queue(system.bus.transport().as_ref(), None)
        .await
        .unwrap();
    let by: Vec<_> = dl
        .iter()
        .map(|((q, r), n)| (q.as_str(), r.as_str(), *n))
        .collect();
    assert_eq!(
        by,
        vec![
            ("inventory", "handler-failed", 2),
            ("inventory", "undeserializable", 2)
        ]
    );

    // the v1 order went through the saga and the read model
    let status: String = sqlx::query("SELECT status FROM view_orders WHERE order_id = ?")
        .bind(legacy.to_string())
        .fetch_one(system.db.read.sqlite().unwrap())
        .await
        .unwrap()
        .get(0);
    assert!(
        status == "Completed" || status == "Cancelled",
        "legacy v1 order is {status}"
    );
    system.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_the_sqlite_transport_orders_settle_and_a_restart_continues() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::new(dir.path());
    config.gateway = GatewayConfig {
        latency: Duration::from_millis(1),
        fail_rate: 0.2,
        decline_rate: 0.05,
    };
    config.redelivery = vec![
        Duration::from_millis(100),
        Duration::from_millis(300),
        Duration::from_secs(1),
    ];
    for round in 0..2 {
        let system = System::start_sqlite(config.clone()).await.unwrap();
        assert_eq!(system.bus.transport().name(), "sqlite");
        let addr = http(&system, 0).await.unwrap();
        let scope = Scope {
            since_micros: chrono::Utc::now().timestamp_micros() - 1,
        };
        inject_poison(&system, 2).await.unwrap();
        let load = place_orders(
            &LoadConfig {
                base_url: format!("http://{addr}"),
                orders: 150,
                clients: 8,
                undeliverable_rate: 0.05,
                retry_rate: 0.05,
            },
            &ProgressBar::hidden(),
        )
        .await
        .unwrap();
        assert_eq!(load.placed.len(), 150);
        assert!(
            wait_until_settled(&system, scope, 150, Duration::from_secs(120), None)
                .await
                .unwrap()
        );
        let checks = settled_checks(&system, scope, Duration::from_secs(15))
            .await
            .unwrap();
        for c in &checks {
            eprintln!(
                "round {round}: [{}] {} — {}",
                if c.ok { "ok" } else { "FAILED" },
                c.name,
                c.detail
            );
        }
        assert!(
            checks.iter().all(|c| c.ok),
            "an invariant failed in round {round}"
        );
        // the error queue is durable: it keeps the first round's poison too
        let dl: u64 = report::error_queue(system.bus.transport().as_ref(), None)
            .await
            .unwrap()
            .values()
            .sum();
        assert_eq!(dl, 2 * (round + 1));
        system.shutdown().await;
    }
}
