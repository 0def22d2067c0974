//! Scheduled messages wait outside the claim path: ready messages flow past thousands of
//! timers at the head of a queue (plain and ordered), due rows are promoted while the
//! receiver stays busy, and a version-1 schema is upgraded (a newer one refused).

mod common;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use chrono::{TimeDelta, Utc};
use tidings_core::transport::{Outgoing, QueueSpec, ReceiveOptions, Topology, Transport};
use tidings_core::Envelope;
use tidings_postgres::{PgError, PostgresTransport};
use uuid::Uuid;

const TIMERS: usize = 10_000;
const READY: usize = 500;

async fn declare(t: &PostgresTransport, name: &str, ordered: bool) {
    t.declare(&Topology {
        queues: vec![QueueSpec {
            name: name.into(),
            ordered,
            ..QueueSpec::default()
        }],
    })
    .await
    .unwrap();
}

/// Rows of `queue` in the given table of the transport's schema.
async fn rows_in(t: &PostgresTransport, table: &str, queue: &str) -> i64 {
    let sql = format!(
        "SELECT count(*) FROM \"{}\".{table} WHERE queue = $1",
        t.config().schema
    );
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .bind(queue)
        .fetch_one(t.pool())
        .await
        .unwrap()
}

fn timer(i: usize) -> Envelope {
    let mut e = Envelope::new("test.timer", 1, format!("{{\"timer\":{i}}}"));
    e.scheduled_for = Some(Utc::now() + TimeDelta::seconds(120));
    e
}

/// Ready message `i`; on an ordered queue keyed `k<i % 50>`.
fn ready(i: usize, keyed: bool) -> Envelope {
    let mut e = Envelope::new("test.ready", 1, format!("{i}"));
    if keyed {
        e.partition_key = Some(format!("k{}", i % 50));
    }
    e
}

async fn flows_past_timers(t: &PostgresTransport, queue: &str, ordered: bool) {
    declare(t, queue, ordered).await;
    for chunk in (0..TIMERS).collect::<Vec<_>>().chunks(1000) {
        let batch = chunk
            .iter()
            .map(|&i| Outgoing::to_queue(queue, timer(i)))
            .collect();
        t.send(batch).await.unwrap();
    }
    let sent: Vec<Envelope> = (0..READY).map(|i| ready(i, ordered)).collect();
    let ids: HashSet<Uuid> = sent.iter().map(|e| e.id).collect();
    for chunk in sent.chunks(100) {
        let batch = chunk
            .iter()
            .map(|e| Outgoing::to_queue(queue, e.clone()))
            .collect();
        t.send(batch).await.unwrap();
    }
    // The timers are not in the table claims read.
    assert_eq!(rows_in(t, "messages", queue).await, READY as i64, "{queue}");
    assert_eq!(
        rows_in(t, "scheduled", queue).await,
        TIMERS as i64,
        "{queue}"
    );

    let opts = ReceiveOptions {
        prefetch: 8,
        ordered,
        ..ReceiveOptions::default()
    };
    let mut rx = t.receive(queue, opts).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut got = HashSet::new();
    let mut last_of_key: HashMap<String, usize> = HashMap::new();
    while got.len() < READY {
        let left = deadline.saturating_duration_since(Instant::now());
        let d = tokio::time::timeout(left, rx.recv())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "{queue}: only {} of {READY} ready messages in 30 s",
                    got.len()
                )
            })
            .unwrap()
            .expect("receiver open");
        assert!(ids.contains(&d.envelope.id), "{queue}: a timer came early");
        if let Some(k) = d.envelope.partition_key.clone() {
            let n: usize = std::str::from_utf8(&d.envelope.body)
                .unwrap()
                .parse()
                .unwrap();
            if let Some(prev) = last_of_key.insert(k.clone(), n) {
                assert!(prev < n, "{queue}: key {k} out of order: {prev} then {n}");
            }
        }
        assert!(got.insert(d.envelope.id), "{queue}: delivered twice");
        d.ack().await.unwrap();
    }
    // Nothing else is ready: the timers keep waiting.
    assert!(
        tokio::time::timeout(Duration::from_millis(700), rx.recv())
            .await
            .is_err(),
        "{queue}: a timer was delivered early"
    );
    let stats = t.stats().await.unwrap();
    let s = stats.iter().find(|s| s.queue == queue).unwrap();
    assert_eq!(s.scheduled, Some(TIMERS as u64), "{queue}: {s:?}");
    assert_eq!(s.ready, 0, "{queue}: {s:?}");
    rx.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_messages_flow_past_10k_timers_at_the_head() {
    let Some(t) = common::transport("sched_head").await else {
        return;
    };
    flows_past_timers(&t, "plain", false).await;
    flows_past_timers(&t, "ordered", true).await;
    common::drop_schema(&t).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_due_message_is_promoted_while_the_receiver_stays_busy() {
    let Some(t) = common::transport("sched_busy").await else {
        return;
    };
    declare(&t, "busy", false).await;
    let started = Instant::now();
    let mut later = Envelope::new("test.later", 1, "{}");
    later.scheduled_for = Some(Utc::now() + TimeDelta::seconds(2));
    t.send(vec![Outgoing::to_queue("busy", later.clone())])
        .await
        .unwrap();
    // A backlog the slow consumer below needs well over 2 s for: it never runs out of
    // work, so it never idles and asks what is due next.
    const BACKLOG: usize = 2000;
    for chunk in (0..BACKLOG).collect::<Vec<_>>().chunks(500) {
        let batch = chunk
            .iter()
            .map(|&i| Outgoing::to_queue("busy", ready(i, false)))
            .collect();
        t.send(batch).await.unwrap();
    }
    let mut rx = t.receive("busy", ReceiveOptions::default()).await.unwrap();
    let mut consumed = 0;
    let waited = loop {
        let d = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("a message within 10 s")
            .unwrap()
            .unwrap();
        let id = d.envelope.id;
        tokio::time::sleep(Duration::from_millis(3)).await;
        d.ack().await.unwrap();
        if id == later.id {
            break started.elapsed();
        }
        consumed += 1;
    };
    assert!(
        waited >= Duration::from_millis(1900),
        "came early: {waited:?}"
    );
    assert!(
        consumed < BACKLOG,
        "the scheduled message (due after 2 s) waited until the backlog was drained ({waited:?})"
    );
    rx.close().await.unwrap();
    common::drop_schema(&t).await;
}

/// Removes what version 2 added, leaving a version-1 schema.
async fn downgrade_to_v1(t: &PostgresTransport) {
    let s = &t.config().schema;
    let sql = format!("DROP TABLE \"{s}\".schema_version; DROP TABLE \"{s}\".scheduled;");
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
        .execute(t.pool())
        .await
        .unwrap();
}

/// Inserts a row the way version 1 did: into `messages`, visible `secs` from now.
async fn insert_v1(t: &PostgresTransport, queue: &str, e: &Envelope, secs: f64) {
    let sql = format!(
        "INSERT INTO \"{}\".messages (queue, id, message_type, visible_at, sent_at, envelope) \
         VALUES ($1, $2, $3, now() + make_interval(secs => $4), now(), $5)",
        t.config().schema
    );
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(queue)
        .bind(e.id)
        .bind(&e.message_type)
        .bind(secs)
        .bind(e.to_json().unwrap())
        .execute(t.pool())
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_1_schema_is_upgraded_and_a_newer_one_refused() {
    let Some(t) = common::transport("sched_upgrade").await else {
        return;
    };
    let schema = t.config().schema.clone();
    declare(&t, "work", false).await;
    downgrade_to_v1(&t).await;
    let (now_msg, later) = (
        Envelope::new("test.now", 1, "{}"),
        Envelope::new("test.later", 1, "{}"),
    );
    insert_v1(&t, "work", &later, 3.0).await;
    insert_v1(&t, "work", &now_msg, 0.0).await;
    t.close().await.unwrap();

    let started = Instant::now();
    let t = PostgresTransport::connect(common::config(&schema))
        .await
        .unwrap();
    assert_eq!(
        rows_in(&t, "scheduled", "work").await,
        1,
        "the waiting row moved"
    );
    assert_eq!(
        rows_in(&t, "messages", "work").await,
        1,
        "the ready row stayed"
    );
    let mut rx = t.receive("work", ReceiveOptions::default()).await.unwrap();
    for (want, what) in [(now_msg.id, "the ready row"), (later.id, "the moved row")] {
        let d = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .unwrap_or_else(|_| panic!("{what} within 10 s"))
            .unwrap()
            .unwrap();
        assert_eq!(d.envelope.id, want, "{what}");
        d.ack().await.unwrap();
    }
    assert!(
        started.elapsed() >= Duration::from_millis(1500),
        "the moved row came early"
    );
    rx.close().await.unwrap();

    let sql = format!("UPDATE \"{schema}\".schema_version SET version = 99");
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .execute(t.pool())
        .await
        .unwrap();
    match PostgresTransport::connect(common::config(&schema)).await {
        Err(PgError::Schema(m)) => assert!(m.contains("newer") && m.contains("99"), "{m}"),
        other => panic!("a newer schema must be refused, got {other:?}"),
    }
    common::drop_schema(&t).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_transport_vacuums_its_tables_when_autovacuum_is_off() {
    if !common::available() {
        return;
    }
    let schema = common::schema("maint");
    let mut cfg = common::config(&schema);
    cfg.maintenance_interval = Duration::from_millis(200);
    let t = PostgresTransport::connect(cfg).await.unwrap();
    let autovacuum: bool = sqlx::query_scalar("SELECT current_setting('autovacuum')::boolean")
        .fetch_one(t.pool())
        .await
        .unwrap();
    if autovacuum {
        eprintln!("skipped: autovacuum is on, so the transport leaves vacuuming to it");
        common::drop_schema(&t).await;
        return;
    }
    declare(&t, "churn", false).await;
    for chunk in (0..3000).collect::<Vec<_>>().chunks(500) {
        let batch = chunk
            .iter()
            .map(|&i| Outgoing::to_queue("churn", ready(i, false)))
            .collect();
        t.send(batch).await.unwrap();
    }
    let mut rx = t.receive("churn", ReceiveOptions::default()).await.unwrap();
    for _ in 0..3000 {
        let d = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("a message within 10 s")
            .unwrap()
            .unwrap();
        d.ack().await.unwrap();
    }
    rx.close().await.unwrap();
    // 3000 acked rows are 3000 dead tuples: past the threshold, the transport vacuums.
    let name = format!("\"{schema}\".messages");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let vacuumed: bool = sqlx::query_scalar(
            "SELECT last_vacuum IS NOT NULL FROM pg_stat_user_tables WHERE relid = to_regclass($1)",
        )
        .bind(&name)
        .fetch_one(t.pool())
        .await
        .unwrap();
        if vacuumed {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "messages not vacuumed within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    common::drop_schema(&t).await;
}

/// A process connecting to a schema at its version runs no DDL, so it does not wait for
/// (or deadlock with) the transactions other processes hold on the queue tables: before,
/// `CREATE INDEX IF NOT EXISTS` queued a SHARE lock behind their writes.
#[tokio::test]
async fn connecting_to_a_current_schema_does_not_wait_for_open_writes() {
    let Some(t) = common::transport("sched_nowait").await else {
        return;
    };
    let schema = t.config().schema.clone();
    declare(&t, "work", false).await;
    // an open transaction that has written to both queue tables
    let mut tx = t.pool().begin().await.unwrap();
    for table in ["messages", "scheduled"] {
        let sql = format!(
            "INSERT INTO \"{schema}\".{table} (queue, seq, id, message_type, visible_at, sent_at, envelope) \
             VALUES ('work', nextval('\"{schema}\".message_seq'), $1, 'test.x', now(), now(), '\\x00')"
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(Uuid::now_v7())
            .execute(&mut *tx)
            .await
            .unwrap();
    }
    let second = tokio::time::timeout(
        Duration::from_secs(10),
        PostgresTransport::connect(common::config(&schema)),
    )
    .await
    .expect("connect waited for the open transaction")
    .unwrap();
    tx.rollback().await.unwrap();
    second.close().await.unwrap();
    common::drop_schema(&t).await;
    t.close().await.unwrap();
}
