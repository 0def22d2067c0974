//! `SqliteTransport::write`: closures run in the writer's group commit — many share one
//! commit, a failing or panicking one is rolled back alone, values come back after the
//! commit, and messages enqueued in a job wake idle receivers at once.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sqlx::sqlite::SqliteConnection;
use tidings_core::transport::{QueueSpec, ReceiveOptions, Topology, Transport};
use tidings_core::{Message, Producer};
use tidings_sqlite::{Outbox, SqliteConfig, SqliteError, SqliteTransport};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Message)]
#[message(name = "test.ping", kind = "command")]
struct Ping {
    n: i64,
}

async fn open(dir: &tempfile::TempDir, poll: Duration) -> SqliteTransport {
    let t =
        SqliteTransport::connect(SqliteConfig::new(dir.path().join("w.db")).poll_interval(poll))
            .await
            .unwrap();
    sqlx::query("CREATE TABLE rows (n INTEGER PRIMARY KEY)")
        .execute(t.pool())
        .await
        .unwrap();
    t.declare(&Topology {
        queues: vec![QueueSpec {
            name: "pings".into(),
            commands: vec![Ping::NAME.into()],
            ..Default::default()
        }],
    })
    .await
    .unwrap();
    t
}

async fn count(t: &SqliteTransport) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM rows")
        .fetch_one(t.pool())
        .await
        .unwrap()
}

/// Inserts `n`; fails (after writing) when `n % 5 == 0`, panics when `n % 7 == 0`.
async fn job(t: SqliteTransport, n: i64) -> Result<i64, SqliteError> {
    t.write(move |conn: &mut SqliteConnection| {
        Box::pin(async move {
            sqlx::query("INSERT INTO rows (n) VALUES (?)")
                .bind(n)
                .execute(&mut *conn)
                .await?;
            if n % 7 == 0 {
                panic!("job {n} panics");
            }
            if n % 5 == 0 {
                // a constraint failure: this job's insert must be undone with it
                sqlx::query("INSERT INTO rows (n) VALUES (?)")
                    .bind(n)
                    .execute(&mut *conn)
                    .await?;
            }
            Ok(n * 10)
        })
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_jobs_share_commits_and_failures_roll_back_alone() {
    let dir = tempfile::tempdir().unwrap();
    let t = open(&dir, Duration::from_millis(50)).await;
    let before = t.writer_stats();
    let total = 300;
    let handles: Vec<_> = (1..=total)
        .map(|n| tokio::spawn(job(t.clone(), n)))
        .collect();
    let mut ok = 0;
    for (i, h) in handles.into_iter().enumerate() {
        let n = i as i64 + 1;
        match h.await.unwrap() {
            Ok(v) => {
                assert!(n % 5 != 0 && n % 7 != 0, "job {n} should have failed");
                assert_eq!(v, n * 10);
                ok += 1;
            }
            Err(SqliteError::Panicked(msg)) => {
                assert_eq!(n % 7, 0, "job {n}: {msg}");
                assert!(msg.contains("panics"), "{msg}");
            }
            Err(e) => {
                assert_eq!(n % 5, 0, "job {n}: {e}");
                assert!(n % 7 != 0);
            }
        }
    }
    let after = t.writer_stats();
    assert_eq!(count(&t).await, ok, "exactly the successful jobs committed");
    let missing: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM rows WHERE n % 5 = 0 OR n % 7 = 0")
        .fetch_one(t.pool())
        .await
        .unwrap();
    assert_eq!(missing, 0, "failed jobs left nothing behind");
    let (commits, ops) = (
        after.commits - before.commits,
        after.operations - before.operations,
    );
    eprintln!("{ops} jobs in {commits} commits");
    assert!(ops >= total as u64);
    assert!(
        commits < ops,
        "jobs should share commits: {commits} for {ops}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_enqueued_in_a_job_wake_idle_receivers() {
    let dir = tempfile::tempdir().unwrap();
    // A poll interval far longer than the test: only the in-process wake-up can deliver.
    let t = open(&dir, Duration::from_secs(60)).await;
    let mut rx = t.receive("pings", ReceiveOptions::default()).await.unwrap();
    let waiting = tokio::spawn(async move {
        let d = rx.recv().await.unwrap().unwrap();
        let n = serde_json::from_slice::<Ping>(&d.envelope.body).unwrap().n;
        d.ack().await.unwrap();
        n
    });
    tokio::time::sleep(Duration::from_millis(200)).await; // the receiver is idle now
    let routes = HashMap::from([(Ping::NAME.to_string(), "pings".to_string())]);
    let outbox = Outbox::new(&t, Producer::new(Arc::new(t.clone()), routes, None));
    t.write(move |conn: &mut SqliteConnection| {
        Box::pin(async move {
            sqlx::query("INSERT INTO rows (n) VALUES (42)")
                .execute(&mut *conn)
                .await?;
            outbox.send(conn, &Ping { n: 42 }).await?;
            Ok::<_, anyhow::Error>(())
        })
    })
    .await
    .unwrap();
    let n = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("woken after the commit, not by polling")
        .unwrap();
    assert_eq!(n, 42);
    assert_eq!(count(&t).await, 1);
}

#[tokio::test]
async fn a_job_after_close_fails_with_closed() {
    let dir = tempfile::tempdir().unwrap();
    let t = open(&dir, Duration::from_millis(50)).await;
    t.close().await.unwrap();
    let r = t
        .write(|_conn: &mut SqliteConnection| Box::pin(async { Ok::<_, SqliteError>(()) }))
        .await;
    assert!(matches!(r, Err(SqliteError::Closed)), "{r:?}");
}

#[tokio::test]
async fn a_failed_job_sends_nothing_and_unknown_queues_fail_the_job() {
    let dir = tempfile::tempdir().unwrap();
    let t = open(&dir, Duration::from_millis(50)).await;
    let routes = HashMap::from([(Ping::NAME.to_string(), "pings".to_string())]);
    let outbox = Outbox::new(&t, Producer::new(Arc::new(t.clone()), routes, None));
    let o = outbox.clone();
    let r = t
        .write(move |conn: &mut SqliteConnection| {
            Box::pin(async move {
                o.send(conn, &Ping { n: 1 }).await?;
                anyhow::bail!("changed my mind");
                #[allow(unreachable_code)]
                Ok(())
            })
        })
        .await;
    assert!(r.is_err());
    // a later job in another batch commits its own message only
    let o = outbox.clone();
    t.write(move |conn: &mut SqliteConnection| {
        Box::pin(async move {
            o.send(conn, &Ping { n: 2 }).await?;
            Ok::<_, anyhow::Error>(())
        })
    })
    .await
    .unwrap();
    let stats = t.stats().await.unwrap();
    let pings = stats.iter().find(|s| s.queue == "pings").unwrap();
    assert_eq!(
        pings.ready, 1,
        "only the committed job's message: {stats:?}"
    );

    let nowhere = Outbox::new(
        &t,
        Producer::new(
            Arc::new(t.clone()),
            HashMap::from([(Ping::NAME.to_string(), "nowhere".to_string())]),
            None,
        ),
    );
    let r = t
        .write(move |conn: &mut SqliteConnection| {
            Box::pin(async move {
                nowhere.send(conn, &Ping { n: 3 }).await?;
                Ok::<_, tidings_core::Error>(())
            })
        })
        .await;
    assert!(
        matches!(r, Err(tidings_core::Error::UnknownQueue(ref q)) if q == "nowhere"),
        "{r:?}"
    );
}
