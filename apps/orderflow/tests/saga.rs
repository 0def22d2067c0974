//! The order saga on the framework's sagas, on the embedded SQLite transport: a payment
//! that does not answer in time cancels the order (stock released, payment refunded); the
//! capture that lands after the cancellation is refunded; a duplicated refund refunds once.

use std::time::Duration;

use orderflow::contracts::{Channel, OrderLine, OrderPlaced, RefundPayment};
use orderflow::services::gateway::GatewayConfig;
use orderflow::system::{Config, System};
use sqlx::Row;
use tidings_core::SendOptions;
use uuid::Uuid;

async fn system(dir: &tempfile::TempDir, latency: Duration, payment_timeout: Duration) -> System {
    let mut config = Config::new(dir.path());
    config.gateway = GatewayConfig {
        latency,
        fail_rate: 0.0,
        decline_rate: 0.0,
    };
    config.payment_timeout = payment_timeout;
    config.redelivery = vec![Duration::from_millis(100), Duration::from_millis(300)];
    config.concurrency = 8;
    System::start_sqlite(config).await.unwrap()
}

/// Places one order (P-001 × 2 = 4980 cents) under its own correlation id.
async fn place(system: &System) -> (Uuid, String) {
    let id = Uuid::now_v7();
    let cid = format!("test-{id}");
    let order = OrderPlaced {
        order_id: id,
        customer_id: "c-1".into(),
        lines: vec![OrderLine {
            product_id: "P-001".into(),
            quantity: 2,
        }],
        total_cents: 4980,
        channel: Channel::Email,
        ship_to: "NL".into(),
        placed_at: chrono::Utc::now(),
    };
    let opts = SendOptions::default()
        .correlation_id(cid.clone())
        .partition_key(id.to_string());
    system.bus.publish_with(&order, opts).await.unwrap();
    (id, cid)
}

async fn row(system: &System, sql: &'static str, id: Uuid) -> Option<(String, Option<String>)> {
    sqlx::query(sql)
        .bind(id.to_string())
        .fetch_optional(system.db.read.sqlite().unwrap())
        .await
        .unwrap()
        .map(|r| (r.get(0), r.try_get(1).ok()))
}

async fn until<T>(what: &str, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    for _ in 0..400 {
        if let Some(v) = f().await {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("timed out waiting for {what}");
}

async fn ledger(system: &System, id: Uuid) -> Vec<(String, i64)> {
    sqlx::query("SELECT kind, amount_cents FROM gw_ledger WHERE intent = ? ORDER BY kind")
        .bind(id.to_string())
        .fetch_all(system.db.read.sqlite().unwrap())
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

/// Deliveries of `message_type` consumed by `endpoint` in the conversation `cid`.
fn handled(system: &System, cid: &str, endpoint: &str, message_type: &str) -> usize {
    system
        .journal
        .by_correlation(cid)
        .iter()
        .filter(|e| {
            e.endpoint == endpoint && e.message_type == message_type && e.outcome == "consumed"
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payment_timeout_cancels_and_a_late_capture_is_refunded_once() {
    let dir = tempfile::tempdir().unwrap();
    // The gateway answers after 1.5 s; the saga waits 200 ms.
    let system = system(
        &dir,
        Duration::from_millis(1500),
        Duration::from_millis(200),
    )
    .await;
    let (id, cid) = place(&system).await;

    let saga = "SELECT state, reason FROM saga_orders WHERE order_id = ?";
    let (state, reason) = until("the cancellation", async || {
        row(&system, saga, id)
            .await
            .filter(|(s, _)| s == "cancelled")
    })
    .await;
    assert_eq!(
        (state.as_str(), reason.as_deref()),
        ("cancelled", Some("payment-timeout"))
    );

    // The reservation is released (the compensation recorded when stock was reserved).
    let released = "SELECT CAST(released AS TEXT), NULL FROM inv_reservations WHERE order_id = ?";
    until("the stock release", async || {
        row(&system, released, id).await.filter(|(r, _)| r == "1")
    })
    .await;

    // The capture was in flight at the gateway: it lands after the cancellation, the saga
    // asks for a refund (a second one: the timeout asked too), and money goes back once.
    let pay = "SELECT status, NULL FROM pay_payments WHERE order_id = ?";
    until("the refund", async || {
        row(&system, pay, id).await.filter(|(s, _)| s == "refunded")
    })
    .await;
    until("both refund requests handled", async || {
        (handled(&system, &cid, "payments", "orderflow.refund-payment") == 2).then_some(())
    })
    .await;
    assert_eq!(
        handled(&system, &cid, "order-saga", "orderflow.payment-captured"),
        1
    );
    assert_eq!(
        ledger(&system, id).await,
        [("charge".to_string(), 4980), ("refund".to_string(), 4980)]
    );
    let rec = row(&system, saga, id).await.unwrap();
    assert_eq!(
        rec.0, "cancelled",
        "the late capture does not revive the order"
    );
    system.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicated_refund_refunds_once() {
    let dir = tempfile::tempdir().unwrap();
    let system = system(&dir, Duration::from_millis(1), Duration::from_secs(30)).await;
    let (id, cid) = place(&system).await;
    let saga = "SELECT state, reason FROM saga_orders WHERE order_id = ?";
    until("the completion", async || {
        row(&system, saga, id)
            .await
            .filter(|(s, _)| s == "completed")
    })
    .await;
    assert_eq!(ledger(&system, id).await, [("charge".to_string(), 4980)]);

    // The same refund twice (two messages), and one of them delivered twice.
    let refund = RefundPayment {
        order_id: id,
        reason: "customer asked".into(),
    };
    let opts = SendOptions::default()
        .correlation_id(cid.clone())
        .partition_key(id.to_string());
    let out = system
        .bus
        .producer()
        .outgoing(&refund, opts.clone())
        .unwrap();
    system.bus.send_raw(vec![out.clone(), out]).await.unwrap();
    system.bus.send_with(&refund, opts).await.unwrap();
    until("three deliveries", async || {
        (handled(&system, &cid, "payments", "orderflow.refund-payment") == 3).then_some(())
    })
    .await;
    assert_eq!(
        ledger(&system, id).await,
        [("charge".to_string(), 4980), ("refund".to_string(), 4980)]
    );
    let pay = "SELECT status, NULL FROM pay_payments WHERE order_id = ?";
    assert_eq!(row(&system, pay, id).await.unwrap().0, "refunded");
    system.shutdown().await;
}
