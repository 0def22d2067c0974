//! Outbox, inbox (transactional handler) and credential redaction against a
//! real PostgreSQL.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tidings_core::pipeline::inbox::InboxStore;
use tidings_core::transport::{QueueSpec, ReceiveOptions, Topology, Transport};
use tidings_core::{ConsumeContext, Envelope, Handler, HandlerError, Producer};
use tidings_postgres::{transactional, Inbox, Outbox, PostgresTransport};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, tidings_core::Message)]
#[message(name = "test.order-placed", version = 1, kind = "event")]
struct OrderPlaced {
    order: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, tidings_core::Message)]
#[message(name = "test.reserve-stock", version = 1, kind = "command")]
struct ReserveStock {
    order: u32,
}

/// Queues `orders` (subscribed to OrderPlaced) and `stock` (receives ReserveStock), a
/// business table, and a producer routing ReserveStock to `stock`.
async fn setup(t: &PostgresTransport) -> Producer {
    t.declare(&Topology {
        queues: vec![
            QueueSpec {
                name: "orders".into(),
                subscriptions: vec!["test.order-placed".into()],
                ..QueueSpec::default()
            },
            QueueSpec {
                name: "stock".into(),
                commands: vec!["test.reserve-stock".into()],
                ..QueueSpec::default()
            },
        ],
    })
    .await
    .unwrap();
    let ddl = format!(
        "CREATE TABLE \"{}\".business (order_id int PRIMARY KEY, note text)",
        t.config().schema
    );
    sqlx::raw_sql(sqlx::AssertSqlSafe(ddl))
        .execute(t.pool())
        .await
        .unwrap();
    let routes = HashMap::from([("test.reserve-stock".to_string(), "stock".to_string())]);
    Producer::new(Arc::new(t.clone()), routes, Some("api".into()))
}

fn business(t: &PostgresTransport) -> String {
    format!("\"{}\".business", t.config().schema)
}

async fn business_rows(t: &PostgresTransport) -> i64 {
    let sql = format!("SELECT count(*) FROM {}", business(t));
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .fetch_one(t.pool())
        .await
        .unwrap()
}

async fn depth(t: &PostgresTransport, queue: &str) -> u64 {
    let stats = t.stats().await.unwrap();
    let s = stats.iter().find(|s| s.queue == queue).unwrap();
    s.ready + s.in_flight.unwrap_or(0) + s.scheduled.unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbox_commits_with_business_rows_and_rolls_back_with_them() {
    let Some(t) = common::transport("outbox").await else {
        return;
    };
    let producer = setup(&t).await;
    let outbox = Outbox::new(&t, producer);

    // Committed: the row and both messages.
    let mut rx = t
        .receive("orders", ReceiveOptions::default())
        .await
        .unwrap();
    let mut tx = t.pool().begin().await.unwrap();
    let insert = format!("INSERT INTO {} VALUES (1, 'placed')", business(&t));
    sqlx::query(sqlx::AssertSqlSafe(insert))
        .execute(&mut *tx)
        .await
        .unwrap();
    let event_id = outbox
        .publish(&mut tx, &OrderPlaced { order: 1 })
        .await
        .unwrap();
    outbox
        .send(&mut tx, &ReserveStock { order: 1 })
        .await
        .unwrap();
    assert_eq!(depth(&t, "orders").await, 0, "invisible before commit");
    tx.commit().await.unwrap();
    // Woken by the NOTIFY sent on commit (well before the fallback poll would find it).
    let d = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(d.envelope.id, event_id);
    assert_eq!(d.envelope.message_type, "test.order-placed");
    assert_eq!(d.envelope.source_endpoint.as_deref(), Some("api"));
    assert!(d.envelope.correlation_id.is_some());
    d.ack().await.unwrap();
    assert_eq!(depth(&t, "stock").await, 1);
    assert_eq!(business_rows(&t).await, 1);

    // Rolled back: neither.
    let mut tx = t.pool().begin().await.unwrap();
    let insert = format!("INSERT INTO {} VALUES (2, 'placed')", business(&t));
    sqlx::query(sqlx::AssertSqlSafe(insert))
        .execute(&mut *tx)
        .await
        .unwrap();
    outbox
        .publish(&mut tx, &OrderPlaced { order: 2 })
        .await
        .unwrap();
    outbox
        .send(&mut tx, &ReserveStock { order: 2 })
        .await
        .unwrap();
    tx.rollback().await.unwrap();
    assert_eq!(business_rows(&t).await, 1);
    assert_eq!(depth(&t, "orders").await, 0);
    assert_eq!(depth(&t, "stock").await, 1);

    // An unknown destination fails inside the transaction and enqueues nothing.
    let mut tx = t.pool().begin().await.unwrap();
    let bad = tidings_core::transport::Outgoing::to_queue(
        "nowhere",
        Envelope::new("test.x", 1, &b"{}"[..]),
    );
    let err = outbox.enqueue(&mut tx, &[bad]).await.unwrap_err();
    assert!(matches!(err, tidings_core::Error::UnknownQueue(q) if q == "nowhere"));
    drop(tx);
    common::drop_schema(&t).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactional_handler_commits_once_and_skips_duplicates() {
    let Some(t) = common::transport("inbox").await else {
        return;
    };
    let producer = setup(&t).await;
    let calls = Arc::new(AtomicUsize::new(0));
    let table = business(&t);
    let (t2, calls2) = (t.clone(), calls.clone());
    let handler = transactional(
        t.clone(),
        move |msg: ReserveStock, ctx: ConsumeContext, mut tx| {
            let (t, calls, table) = (t2.clone(), calls2.clone(), table.clone());
            async move {
                calls.fetch_add(1, Ordering::SeqCst);
                let sql = format!("INSERT INTO {table} VALUES ($1, 'reserved')");
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(msg.order as i32)
                    .execute(&mut *tx)
                    .await
                    .map_err(HandlerError::transient)?;
                Outbox::for_context(&t, &ctx)
                    .publish(&mut tx, &OrderPlaced { order: msg.order })
                    .await?;
                if msg.order == 99 {
                    return Err(HandlerError::transient("boom after writes"));
                }
                Ok(tx)
            }
        },
    );
    let env = producer
        .envelope(&ReserveStock { order: 7 }, Default::default())
        .unwrap();
    let ctx = ConsumeContext::new(env.clone(), producer.clone(), "stock", 1);
    handler
        .handle(ReserveStock { order: 7 }, ctx.clone())
        .await
        .unwrap();
    // The same message again (a redelivery): acked without effect.
    handler
        .handle(ReserveStock { order: 7 }, ctx.with_attempt(2))
        .await
        .unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(business_rows(&t).await, 1);
    assert_eq!(depth(&t, "orders").await, 1, "one follow-up event");
    let dl = t.dead_letters(&Default::default()).await.unwrap();
    assert!(dl.is_empty());

    // A failing handler leaves no inbox row, no business row, no message: it can retry.
    let env99 = producer
        .envelope(&ReserveStock { order: 99 }, Default::default())
        .unwrap();
    let ctx99 = ConsumeContext::new(env99.clone(), producer.clone(), "stock", 1);
    assert!(handler
        .handle(ReserveStock { order: 99 }, ctx99)
        .await
        .is_err());
    assert_eq!(business_rows(&t).await, 1);
    assert_eq!(depth(&t, "orders").await, 1);
    let inbox = handler.inbox().clone();
    assert!(!inbox.seen(env99.id, "stock").await.unwrap());
    assert!(inbox.seen(env.id, "stock").await.unwrap());
    // Another endpoint handling the same message is not a duplicate.
    assert!(inbox.try_record(env.id, "billing").await.unwrap());
    assert!(!inbox.try_record(env.id, "billing").await.unwrap());

    // Expiry and the sweeper.
    let short = Inbox::new(&t, Duration::from_millis(1));
    let id = uuid::Uuid::now_v7();
    assert!(short.try_record(id, "stock").await.unwrap());
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(!short.seen(id, "stock").await.unwrap());
    assert_eq!(short.sweep().await.unwrap(), 1);
    assert!(short.try_record(id, "stock").await.unwrap());
    common::drop_schema(&t).await;
}

#[tokio::test]
async fn connection_errors_do_not_leak_the_password() {
    let cfg = tidings_postgres::PostgresConfig::from_url(
        "postgres://app:hunter2-secret@127.0.0.1:1/db?schema=x&sslmode=disable",
    )
    .unwrap();
    assert!(!format!("{cfg:?}").contains("hunter2-secret"));
    let mut cfg = cfg;
    cfg.acquire_timeout = Duration::from_secs(2);
    let err = PostgresTransport::connect(cfg).await.unwrap_err();
    let core: tidings_core::Error = err.into();
    let shown = format!("{core} {core:?}");
    assert!(!shown.contains("hunter2-secret"), "{shown}");
    assert!(
        core.is_retryable(),
        "connection refused is transient: {shown}"
    );
}
