//! Crash test — nothing lost, nothing twice. A child process (this test binary re-executed
//! with `TIDINGS_CRASH_DB`) produces through the outbox (a `sent` row and the message in one
//! transaction) and consumes with a transactional handler that records each message's
//! effect in `effects`. The parent kills it with SIGKILL at random moments and restarts it
//! (`TIDINGS_CRASH_CYCLES`, default 50), then drains what is left and checks every sent
//! message's effect is present exactly once.

use std::collections::HashMap;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tidings_core::transport::{DeadLetterQuery, QueueSpec, ReceiveOptions, Topology, Transport};
use tidings_core::{ConsumeContext, Handler, HandlerError, Message, Producer};
use tidings_sqlite::{transactional, Outbox, SqliteConfig, SqliteTransport};

#[derive(Debug, Serialize, Deserialize, Message)]
#[message(name = "crash.job", kind = "command")]
struct Job {
    n: i64,
}

const LEASE: Duration = Duration::from_millis(500);

fn config(db: &str) -> SqliteConfig {
    SqliteConfig::new(db).poll_interval(Duration::from_millis(20))
}

fn producer(t: &SqliteTransport) -> Producer {
    let routes = HashMap::from([(Job::NAME.to_string(), "work".to_string())]);
    Producer::new(Arc::new(t.clone()), routes, Some("crash".into()))
}

fn handler(t: &SqliteTransport) -> impl Handler<Job> {
    transactional(t.clone(), |job: Job, _ctx, conn| {
        Box::pin(async move {
            sqlx::query("INSERT INTO effects (n) VALUES (?)")
                .bind(job.n)
                .execute(&mut *conn)
                .await
                .map_err(HandlerError::transient)?;
            Ok(())
        })
    })
}

/// Consumes `work` until `stop` says so; each delivery handled on its own task.
async fn consume(t: SqliteTransport, stop: impl Fn() -> bool) {
    let h = Arc::new(handler(&t));
    let p = producer(&t);
    let opts = ReceiveOptions {
        prefetch: 16,
        lease: LEASE,
        ..Default::default()
    };
    let mut rx = t.receive("work", opts).await.unwrap();
    while !stop() {
        let Ok(next) = tokio::time::timeout(Duration::from_millis(100), rx.recv()).await else {
            continue;
        };
        let Some(d) = next.unwrap() else { return };
        let (h, p) = (h.clone(), p.clone());
        tokio::spawn(async move {
            let job: Job = serde_json::from_slice(&d.envelope.body).unwrap();
            let ctx = ConsumeContext::new(d.envelope.clone(), p, "work", d.delivery_count);
            match h.handle(job, ctx).await {
                Ok(()) => d.ack().await,
                Err(_) => d.nack(Duration::from_millis(10)).await,
            }
        });
    }
}

/// The child side; does nothing unless started by [`killed_and_restarted_nothing_lost_nothing_twice`].
#[test]
#[ignore = "run as a child process by killed_and_restarted_nothing_lost_nothing_twice"]
fn crash_child() {
    let Ok(db) = std::env::var("TIDINGS_CRASH_DB") else {
        eprintln!("crash_child: only runs as a child of the crash test");
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async move {
        let t = SqliteTransport::connect(config(&db)).await.unwrap();
        let tp = t.clone();
        tokio::spawn(async move {
            let outbox = Outbox::new(&tp, producer(&tp));
            let mut n: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(n), 0) FROM sent")
                .fetch_one(tp.pool())
                .await
                .unwrap();
            loop {
                n += 1;
                let outbox = outbox.clone();
                tp.write(move |conn: &mut sqlx::SqliteConnection| {
                    Box::pin(async move {
                        sqlx::query("INSERT INTO sent (n) VALUES (?)")
                            .bind(n)
                            .execute(&mut *conn)
                            .await?;
                        outbox.send(conn, &Job { n }).await?;
                        Ok::<_, anyhow::Error>(())
                    })
                })
                .await
                .unwrap();
            }
        });
        consume(t, || false).await;
    });
}

async fn scalar(t: &SqliteTransport, sql: &'static str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(t.pool()).await.unwrap()
}

fn random_below(n: u64) -> u64 {
    (uuid::Uuid::new_v4().as_u128() % u128::from(n)) as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_and_restarted_nothing_lost_nothing_twice() {
    let cycles: u32 = std::env::var("TIDINGS_CRASH_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("crash.db").to_str().unwrap().to_string();
    let t = SqliteTransport::connect(config(&db)).await.unwrap();
    for sql in [
        "CREATE TABLE sent (n INTEGER PRIMARY KEY)",
        "CREATE TABLE effects (n INTEGER NOT NULL)",
    ] {
        sqlx::query(sql).execute(t.pool()).await.unwrap();
    }
    t.declare(&Topology {
        queues: vec![QueueSpec {
            name: "work".into(),
            commands: vec![Job::NAME.into()],
            ..Default::default()
        }],
    })
    .await
    .unwrap();

    let started = Instant::now();
    for _ in 0..cycles {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "crash_child",
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("TIDINGS_CRASH_DB", &db)
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        tokio::time::sleep(Duration::from_millis(20 + random_below(280))).await;
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the child exited by itself: {status}");
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
    }
    let run = started.elapsed();

    // Drain what the killed children left (their leases run out after LEASE).
    let sent = scalar(&t, "SELECT COUNT(*) FROM sent").await;
    // Messages whose effect committed but whose ack was lost to a kill: the inbox must
    // turn their redelivery into a no-op.
    let handled_unacked = scalar(
        &t,
        "SELECT COUNT(*) FROM tidings_messages m JOIN tidings_inbox i \
         ON i.message_id = m.message_id AND i.endpoint = 'work'",
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(60);
    let tc = t.clone();
    let drain = tokio::spawn(async move { consume(tc, || false).await });
    loop {
        let stats = t.stats().await.unwrap();
        let left: u64 = stats
            .iter()
            .map(|s| s.ready + s.in_flight.unwrap_or(0) + s.scheduled.unwrap_or(0))
            .sum();
        if left == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "drain did not finish: {stats:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drain.abort();

    let effects = scalar(&t, "SELECT COUNT(*) FROM effects").await;
    let distinct = scalar(&t, "SELECT COUNT(DISTINCT n) FROM effects").await;
    let missing = scalar(
        &t,
        "SELECT COUNT(*) FROM sent WHERE n NOT IN (SELECT n FROM effects)",
    )
    .await;
    let stray = scalar(
        &t,
        "SELECT COUNT(*) FROM effects WHERE n NOT IN (SELECT n FROM sent)",
    )
    .await;
    let dead = t.dead_letters(&DeadLetterQuery::default()).await.unwrap();
    eprintln!(
        "{cycles} kill cycles in {run:?}: {sent} messages sent, {effects} effects, \
         {handled_unacked} handled-but-unacked redeliveries deduplicated, {} dead letters",
        dead.len()
    );
    assert!(sent > 0, "the children sent nothing");
    assert_eq!(missing, 0, "effects lost");
    assert_eq!(stray, 0, "effects of messages never committed as sent");
    assert_eq!(effects, distinct, "an effect applied twice");
    assert_eq!(effects, sent);
    assert!(dead.is_empty(), "{dead:?}");
}
