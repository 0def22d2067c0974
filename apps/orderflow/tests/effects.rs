//! Effects outside the database under a kill between the external call and the commit
//! (see docs/effects.md): the capture/refund window of payments, and the notification sink.

use std::time::{Duration, Instant};

use orderflow::contracts::{CapturePayment, RefundPayment};
use orderflow::services::gateway::{Charge, Gateway, GatewayConfig, IntentStatus};
use orderflow::services::notifications::{FileSink, Notification, Sink};
use orderflow::system::{Config, Service, System};
use sqlx::Row;
use uuid::Uuid;

async fn payments_only(dir: &std::path::Path) -> System {
    let mut config = Config::new(dir);
    config.gateway = GatewayConfig {
        latency: Duration::ZERO,
        fail_rate: 0.0,
        decline_rate: 0.0,
    };
    config.service = Service::Payments;
    System::start_sqlite(config).await.unwrap()
}

async fn ledger(system: &System, order: Uuid) -> Vec<(String, i64)> {
    sqlx::query("SELECT kind, amount_cents FROM gw_ledger WHERE intent = ? ORDER BY kind")
        .bind(order.to_string())
        .fetch_all(system.db.read.sqlite().unwrap())
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

async fn payment_status(system: &System, order: Uuid) -> Option<String> {
    sqlx::query_scalar("SELECT status FROM pay_payments WHERE order_id = ?")
        .bind(order.to_string())
        .fetch_optional(system.db.read.sqlite().unwrap())
        .await
        .unwrap()
}

/// Waits until the payments endpoint has handled `n` messages (its inbox rows).
async fn handled(system: &System, n: i64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM tidings_inbox WHERE endpoint = 'payments'")
                .fetch_one(system.db.read.sqlite().unwrap())
                .await
                .unwrap();
        if got >= n {
            return;
        }
        assert!(Instant::now() < deadline, "payments handled {got} of {n}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The report's lost refunds: the capture handler charged, then was killed before its
/// commit (no `pay_payments` row, the capture to be redelivered); the payment timeout then
/// asks for a refund. The refund asks the gateway, which refunds the charge; the
/// redelivered capture charges nothing more. Net charge 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn charged_but_not_committed_then_refund_gives_the_money_back() {
    let dir = tempfile::tempdir().unwrap();
    let system = payments_only(dir.path()).await;
    let order = Uuid::now_v7();
    // The capture handler got as far as the gateway call, then the process died.
    let gw = Gateway::new(
        system.db.clone(),
        GatewayConfig {
            latency: Duration::ZERO,
            fail_rate: 0.0,
            decline_rate: 0.0,
        },
    );
    assert_eq!(
        gw.charge(&order.to_string(), 4990).await.unwrap(),
        Charge::Captured
    );
    assert_eq!(
        payment_status(&system, order).await,
        None,
        "nothing recorded on our side"
    );

    system
        .bus
        .send(&RefundPayment {
            order_id: order,
            reason: "payment-timeout".into(),
        })
        .await
        .unwrap();
    handled(&system, 1).await;
    assert_eq!(
        ledger(&system, order).await,
        vec![("charge".into(), 4990), ("refund".into(), 4990)],
        "the refund found the charge at the gateway although our table had none"
    );
    assert_eq!(
        payment_status(&system, order).await.as_deref(),
        Some("refunded")
    );

    // The capture, redelivered after the restart.
    system
        .bus
        .send(&CapturePayment {
            order_id: order,
            customer_id: "c-1".into(),
            amount_cents: 4990,
        })
        .await
        .unwrap();
    handled(&system, 2).await;
    assert_eq!(
        ledger(&system, order).await,
        vec![("charge".into(), 4990), ("refund".into(), 4990)],
        "no second charge, no second refund"
    );
    assert_eq!(
        gw.status(&order.to_string()).await.unwrap(),
        IntentStatus::Refunded(4990)
    );
    system.shutdown().await;
}

/// A refund before any charge voids the intent at the gateway: a capture arriving later is
/// refused there, whatever our own table says.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refund_before_the_charge_voids_the_intent_and_blocks_a_late_capture() {
    let dir = tempfile::tempdir().unwrap();
    let system = payments_only(dir.path()).await;
    let order = Uuid::now_v7();
    system
        .bus
        .send(&RefundPayment {
            order_id: order,
            reason: "payment-timeout".into(),
        })
        .await
        .unwrap();
    handled(&system, 1).await;
    assert_eq!(ledger(&system, order).await, vec![("void".into(), 0)]);
    // Even with our row gone (the worst case), the gateway refuses the charge.
    sqlx::query("DELETE FROM pay_payments WHERE order_id = ?")
        .bind(order.to_string())
        .execute(system.db.read.sqlite().unwrap())
        .await
        .unwrap();
    system
        .bus
        .send(&CapturePayment {
            order_id: order,
            customer_id: "c-1".into(),
            amount_cents: 1590,
        })
        .await
        .unwrap();
    handled(&system, 2).await;
    assert_eq!(
        ledger(&system, order).await,
        vec![("void".into(), 0)],
        "never charged"
    );
    assert_eq!(
        payment_status(&system, order).await.as_deref(),
        Some("voided")
    );
    system.shutdown().await;
}

fn note(id: Uuid, order: Uuid) -> Notification {
    Notification {
        id,
        order_id: order,
        customer_id: "c-1".into(),
        channel: orderflow::contracts::Channel::Email,
        kind: "confirmation",
        text: "Your order is on its way.".into(),
    }
}

/// The sink is idempotent by notification id, across a restart too, and a line cut short
/// by a kill does not glue onto the next one.
#[test]
fn the_file_sink_writes_each_notification_id_once_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notifications.jsonl");
    let (a, b, order) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    {
        let sink = FileSink::open(path.clone()).unwrap();
        sink.deliver(&note(a, order)).unwrap();
        sink.deliver(&note(a, order)).unwrap();
    }
    // a kill in the middle of writing b's line
    std::fs::write(
        &path,
        format!(
            "{}{{\"id\":\"{b}\",\"order_",
            std::fs::read_to_string(&path).unwrap()
        ),
    )
    .unwrap();
    let sink = FileSink::open(path.clone()).unwrap();
    sink.deliver(&note(a, order)).unwrap(); // the redelivery of a: known
    sink.deliver(&note(b, order)).unwrap(); // the redelivery of b: written again, whole
    let text = std::fs::read_to_string(&path).unwrap();
    let ids: Vec<Uuid> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["id"].as_str().and_then(|s| s.parse().ok()))
        .collect();
    assert_eq!(ids, vec![a, b], "{text}");
}

/// A data dir of an older OrderFlow (its own `inbox` table): its rows move into the
/// framework's `tidings_inbox`, so a message handled before the upgrade stays a duplicate.
#[tokio::test]
async fn an_old_inbox_table_is_migrated_into_tidings_inbox() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("orderflow.db");
    {
        let opts = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true);
        let pool = sqlx::SqlitePool::connect_with(opts).await.unwrap();
        sqlx::raw_sql(
            "CREATE TABLE inbox (message_id TEXT NOT NULL, consumer TEXT NOT NULL, \
             handled_at INTEGER NOT NULL, PRIMARY KEY (message_id, consumer)) WITHOUT ROWID; \
             INSERT INTO inbox VALUES ('01a24200-0000-7000-8000-000000000001', 'payments', 1);",
        )
        .execute(&pool)
        .await
        .unwrap();
        pool.close().await;
    }
    let db = orderflow::db::Db::open(&path, false).await.unwrap();
    let rows: Vec<(String, String, i64)> =
        sqlx::query_as("SELECT endpoint, message_id, processed_at FROM tidings_inbox")
            .fetch_all(db.read.sqlite().unwrap())
            .await
            .unwrap();
    assert_eq!(
        rows,
        vec![(
            "payments".to_string(),
            "01a24200-0000-7000-8000-000000000001".to_string(),
            1
        )]
    );
    let old: Option<i64> =
        sqlx::query_scalar("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'inbox'")
            .fetch_optional(db.read.sqlite().unwrap())
            .await
            .unwrap();
    assert_eq!(old, None, "the old table is gone");
    db.close().await;
    // opening again is a no-op
    let db = orderflow::db::Db::open(&path, false).await.unwrap();
    db.close().await;
}
