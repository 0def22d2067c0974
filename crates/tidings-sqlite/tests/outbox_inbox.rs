//! Outbox (commit → delivered, rollback → nothing) and inbox (transactional handler:
//! effects once, duplicates skipped, failures roll back; try_record; sweeping).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tidings_core::transport::{QueueSpec, ReceiveOptions, Topology, Transport};
use tidings_core::{
    ConsumeContext, Endpoint, Envelope, Handler, HandlerError, Message, Producer, SendOptions,
};
use tidings_sqlite::{transactional, Outbox, SqliteConfig, SqliteInbox, SqliteTransport};
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Message)]
#[message(name = "test.order-placed", kind = "event")]
struct OrderPlaced {
    id: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Message)]
#[message(name = "test.charge", kind = "command")]
struct Charge {
    id: u32,
}

async fn open(dir: &tempfile::TempDir) -> SqliteTransport {
    let t = SqliteTransport::connect(SqliteConfig::new(dir.path().join("t.db")))
        .await
        .unwrap();
    sqlx::query("CREATE TABLE IF NOT EXISTS orders (id INTEGER PRIMARY KEY)")
        .execute(t.pool())
        .await
        .unwrap();
    sqlx::query("CREATE TABLE IF NOT EXISTS charges (id INTEGER NOT NULL)")
        .execute(t.pool())
        .await
        .unwrap();
    t.declare(&Topology {
        queues: vec![
            QueueSpec {
                name: "shipping".into(),
                subscriptions: vec![OrderPlaced::NAME.into()],
                ..Default::default()
            },
            QueueSpec {
                name: "billing".into(),
                commands: vec![Charge::NAME.into()],
                ..Default::default()
            },
        ],
    })
    .await
    .unwrap();
    t
}

fn producer(t: &SqliteTransport) -> Producer {
    let routes = HashMap::from([(Charge::NAME.to_string(), "billing".to_string())]);
    Producer::new(Arc::new(t.clone()), routes, Some("app".into()))
}

async fn count(t: &SqliteTransport, sql: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_string()))
        .fetch_one(t.pool())
        .await
        .unwrap()
}

async fn recv_one(t: &SqliteTransport, queue: &str) -> Option<Envelope> {
    let mut rx = t.receive(queue, ReceiveOptions::default()).await.unwrap();
    let d = tokio::time::timeout(Duration::from_millis(500), rx.recv())
        .await
        .ok()?
        .unwrap()?;
    let env = d.envelope.clone();
    d.ack().await.unwrap();
    Some(env)
}

#[tokio::test]
async fn outbox_commit_delivers_with_business_rows() {
    let dir = tempfile::tempdir().unwrap();
    let t = open(&dir).await;
    let outbox = Outbox::new(&t, producer(&t));
    let mut tx = t.pool().begin().await.unwrap();
    sqlx::query("INSERT INTO orders (id) VALUES (1)")
        .execute(&mut *tx)
        .await
        .unwrap();
    let id = outbox
        .publish(&mut tx, &OrderPlaced { id: 1 })
        .await
        .unwrap();
    outbox.send(&mut tx, &Charge { id: 1 }).await.unwrap();
    tx.commit().await.unwrap();

    assert_eq!(count(&t, "SELECT COUNT(*) FROM orders").await, 1);
    let env = recv_one(&t, "shipping").await.expect("event delivered");
    assert_eq!(env.id, id);
    assert_eq!(env.message_type, OrderPlaced::NAME);
    assert_eq!(env.source_endpoint.as_deref(), Some("app"));
    assert!(env.correlation_id.is_some());
    let cmd = recv_one(&t, "billing").await.expect("command delivered");
    assert_eq!(
        serde_json::from_slice::<Charge>(&cmd.body).unwrap(),
        Charge { id: 1 }
    );
}

#[tokio::test]
async fn outbox_rollback_sends_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let t = open(&dir).await;
    let outbox = Outbox::new(&t, producer(&t));
    let mut tx = t.pool().begin().await.unwrap();
    sqlx::query("INSERT INTO orders (id) VALUES (2)")
        .execute(&mut *tx)
        .await
        .unwrap();
    outbox
        .publish(&mut tx, &OrderPlaced { id: 2 })
        .await
        .unwrap();
    tx.rollback().await.unwrap();
    assert_eq!(count(&t, "SELECT COUNT(*) FROM orders").await, 0);
    assert!(recv_one(&t, "shipping").await.is_none());
    let stats = t.stats().await.unwrap();
    assert!(stats.iter().all(|s| s.ready == 0), "{stats:?}");
}

#[tokio::test]
async fn outbox_scheduled_message_waits() {
    let dir = tempfile::tempdir().unwrap();
    let t = open(&dir).await;
    let outbox = Outbox::new(&t, producer(&t));
    let mut tx = t.pool().begin().await.unwrap();
    outbox
        .dispatch(
            &mut tx,
            &Charge { id: 9 },
            SendOptions::default().delay(Duration::from_millis(600)),
        )
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let start = std::time::Instant::now();
    let mut rx = t
        .receive("billing", ReceiveOptions::default())
        .await
        .unwrap();
    let d = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(
        start.elapsed() >= Duration::from_millis(500),
        "{:?}",
        start.elapsed()
    );
    d.ack().await.unwrap();
}

#[tokio::test]
async fn outbox_to_unknown_queue_fails() {
    let dir = tempfile::tempdir().unwrap();
    let t = open(&dir).await;
    let routes = HashMap::from([(Charge::NAME.to_string(), "nowhere".to_string())]);
    let outbox = Outbox::new(&t, Producer::new(Arc::new(t.clone()), routes, None));
    let mut tx = t.pool().begin().await.unwrap();
    let err = outbox.send(&mut tx, &Charge { id: 1 }).await.unwrap_err();
    assert!(
        matches!(err, tidings_core::Error::UnknownQueue(ref q) if q == "nowhere"),
        "{err}"
    );
}

fn ctx_for(t: &SqliteTransport, env: Envelope) -> ConsumeContext {
    ConsumeContext::new(env, producer(t), "billing", 1)
}

#[tokio::test]
async fn transactional_handler_commits_once_and_skips_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let t = open(&dir).await;
    let t2 = t.clone();
    let handler = transactional(t.clone(), move |m: Charge, ctx: ConsumeContext, conn| {
        let t = t2.clone();
        Box::pin(async move {
            sqlx::query("INSERT INTO charges (id) VALUES (?)")
                .bind(m.id)
                .execute(&mut *conn)
                .await
                .map_err(HandlerError::transient)?;
            Outbox::new(&t, ctx.producer().clone())
                .dispatch(conn, &OrderPlaced { id: m.id }, ctx.follow_up())
                .await?;
            Ok(())
        })
    });
    let env = Envelope::new(
        Charge::NAME,
        1,
        serde_json::to_vec(&Charge { id: 5 }).unwrap(),
    );
    let msg_id = env.id;
    for _ in 0..3 {
        handler
            .handle(Charge { id: 5 }, ctx_for(&t, env.clone()))
            .await
            .unwrap();
    }
    assert_eq!(count(&t, "SELECT COUNT(*) FROM charges").await, 1);
    let out = recv_one(&t, "shipping").await.expect("follow-up published");
    assert_eq!(out.causation_id, Some(msg_id));
    assert!(recv_one(&t, "shipping").await.is_none(), "published once");
    assert!(SqliteInbox::new(t.clone())
        .contains(msg_id, "billing")
        .await
        .unwrap());
}

#[tokio::test]
async fn transactional_handler_error_rolls_back_everything() {
    let dir = tempfile::tempdir().unwrap();
    let t = open(&dir).await;
    let fail = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let f2 = fail.clone();
    let handler = transactional(t.clone(), move |m: Charge, _ctx, conn| {
        let fail = f2.clone();
        Box::pin(async move {
            sqlx::query("INSERT INTO charges (id) VALUES (?)")
                .bind(m.id)
                .execute(&mut *conn)
                .await
                .map_err(HandlerError::transient)?;
            if fail.load(std::sync::atomic::Ordering::SeqCst) {
                return Err(HandlerError::transient("boom"));
            }
            Ok(())
        })
    });
    let env = Envelope::new(Charge::NAME, 1, &b"{}"[..]);
    assert!(handler
        .handle(Charge { id: 1 }, ctx_for(&t, env.clone()))
        .await
        .is_err());
    assert_eq!(count(&t, "SELECT COUNT(*) FROM charges").await, 0);
    assert_eq!(count(&t, "SELECT COUNT(*) FROM tidings_inbox").await, 0);
    fail.store(false, std::sync::atomic::Ordering::SeqCst);
    handler
        .handle(Charge { id: 1 }, ctx_for(&t, env))
        .await
        .unwrap();
    assert_eq!(count(&t, "SELECT COUNT(*) FROM charges").await, 1);
}

#[tokio::test]
async fn bus_endpoint_with_transactional_handler() {
    let dir = tempfile::tempdir().unwrap();
    let t = open(&dir).await;
    let handler = transactional(t.clone(), |m: Charge, _ctx, conn| {
        Box::pin(async move {
            sqlx::query("INSERT INTO charges (id) VALUES (?)")
                .bind(m.id)
                .execute(&mut *conn)
                .await
                .map_err(HandlerError::transient)?;
            Ok(())
        })
    });
    let bus = tidings_core::Bus::builder(Arc::new(t.clone()))
        .endpoint(Endpoint::new("billing").handle(handler))
        .sends::<Charge>()
        .start()
        .await
        .unwrap();
    for id in 0..20 {
        bus.send(&Charge { id }).await.unwrap();
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while count(&t, "SELECT COUNT(*) FROM charges").await < 20 {
        assert!(std::time::Instant::now() < deadline, "not all handled");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    bus.shutdown(Duration::from_secs(5)).await;
    assert_eq!(
        count(&t, "SELECT COUNT(DISTINCT id) FROM charges").await,
        20
    );
    assert_eq!(count(&t, "SELECT COUNT(*) FROM charges").await, 20);
}

#[tokio::test]
async fn try_record_dedups_and_sweeper_expires() {
    let dir = tempfile::tempdir().unwrap();
    let cfg =
        SqliteConfig::new(dir.path().join("i.db")).inbox_retention(Duration::from_millis(100));
    let t = SqliteTransport::connect(cfg).await.unwrap();
    let inbox = SqliteInbox::new(t.clone());
    let id = Uuid::now_v7();
    assert!(inbox.try_record(id, "a").await.unwrap());
    assert!(!inbox.try_record(id, "a").await.unwrap());
    assert!(inbox.try_record(id, "b").await.unwrap(), "per endpoint");
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(t.sweep_inbox().await.unwrap(), 2);
    assert!(
        inbox.try_record(id, "a").await.unwrap(),
        "expired rows are gone"
    );
}

/// The pipeline inbox on this transport's own database: the row is written with the ack
/// (one commit), and a second copy of the same message id is skipped.
#[tokio::test]
async fn endpoint_inbox_records_with_the_ack_and_skips_a_duplicate() {
    let dir = tempfile::tempdir().unwrap();
    let t = open(&dir).await;
    let calls = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let c = calls.clone();
    let bus = tidings_core::Bus::builder(Arc::new(t.clone()))
        .endpoint(
            Endpoint::new("billing")
                .inbox(Arc::new(SqliteInbox::new(t.clone())))
                .handle_fn(move |_m: Charge, _ctx: ConsumeContext| {
                    c.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    async { Ok::<(), HandlerError>(()) }
                }),
        )
        .sends::<Charge>()
        .start()
        .await
        .unwrap();
    let out = producer(&t)
        .outgoing(&Charge { id: 7 }, SendOptions::default())
        .unwrap();
    let id = out.envelope.id;
    let wait_empty = || async {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while count(&t, "SELECT COUNT(*) FROM tidings_messages").await > 0 {
            assert!(std::time::Instant::now() < deadline, "not acked");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    t.send(vec![out.clone()]).await.unwrap();
    wait_empty().await;
    let recorded = format!(
        "SELECT COUNT(*) FROM tidings_inbox WHERE endpoint = 'billing' AND message_id = '{id}'"
    );
    assert_eq!(count(&t, &recorded).await, 1, "recorded with the ack");
    // The same message again (a producer's retry): skipped by the inbox, still acked.
    t.send(vec![out]).await.unwrap();
    wait_empty().await;
    bus.shutdown(Duration::from_secs(5)).await;
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 1);
    assert_eq!(count(&t, &recorded).await, 1);
}
