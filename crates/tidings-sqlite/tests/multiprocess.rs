//! Several OS processes share one database file: one producer process and two competing
//! consumer processes (this test binary re-executed with `TIDINGS_MP_ROLE`); every message
//! is handled exactly once.

use std::process::{Child, Command};
use std::time::{Duration, Instant};

use tidings_core::transport::{Outgoing, QueueSpec, ReceiveOptions, Topology, Transport};
use tidings_core::Envelope;
use tidings_sqlite::{SqliteConfig, SqliteTransport};

const N: i64 = 2000;

fn config(db: &str) -> SqliteConfig {
    SqliteConfig::new(db).poll_interval(Duration::from_millis(20))
}

/// The child side; does nothing unless started by [`producer_and_two_consumers`].
#[test]
#[ignore = "run as a child process by producer_and_two_consumers"]
fn multiprocess_child() {
    let (Ok(role), Ok(db)) = (
        std::env::var("TIDINGS_MP_ROLE"),
        std::env::var("TIDINGS_MP_DB"),
    ) else {
        eprintln!("multiprocess_child: only runs as a child of producer_and_two_consumers");
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async move {
        let t = SqliteTransport::connect(config(&db)).await.unwrap();
        if role == "producer" {
            for chunk in 0..N / 10 {
                let batch = (0..10)
                    .map(|i| {
                        let n = chunk * 10 + i;
                        Outgoing::to_queue("jobs", Envelope::new("t.job", 1, n.to_string()))
                    })
                    .collect();
                t.send(batch).await.unwrap();
            }
            return;
        }
        sqlx::query("INSERT INTO ready (role) VALUES (?)")
            .bind(&role)
            .execute(t.pool())
            .await
            .unwrap();
        let opts = ReceiveOptions {
            prefetch: 8,
            ..Default::default()
        };
        let mut rx = t.receive("jobs", opts).await.unwrap();
        while let Some(d) = rx.recv().await.unwrap() {
            let n: i64 = std::str::from_utf8(&d.envelope.body)
                .unwrap()
                .parse()
                .unwrap();
            sqlx::query("INSERT INTO handled (n, role, pid) VALUES (?, ?, ?)")
                .bind(n)
                .bind(&role)
                .bind(std::process::id())
                .execute(t.pool())
                .await
                .unwrap();
            d.ack().await.unwrap();
        }
    });
}

fn spawn(role: &str, db: &str) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "multiprocess_child",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("TIDINGS_MP_ROLE", role)
        .env("TIDINGS_MP_DB", db)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

async fn scalar(t: &SqliteTransport, sql: &'static str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(t.pool()).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn producer_and_two_consumers() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("mp.db").to_str().unwrap().to_string();
    let t = SqliteTransport::connect(config(&db)).await.unwrap();
    for sql in [
        "CREATE TABLE handled (n INTEGER NOT NULL, role TEXT NOT NULL, pid INTEGER NOT NULL)",
        "CREATE TABLE ready (role TEXT NOT NULL)",
    ] {
        sqlx::query(sql).execute(t.pool()).await.unwrap();
    }
    t.declare(&Topology {
        queues: vec![QueueSpec {
            name: "jobs".into(),
            ..Default::default()
        }],
    })
    .await
    .unwrap();

    let mut consumers = vec![spawn("consumer-a", &db), spawn("consumer-b", &db)];
    let deadline = Instant::now() + Duration::from_secs(30);
    while scalar(&t, "SELECT COUNT(*) FROM ready").await < 2 {
        assert!(Instant::now() < deadline, "consumers did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut producer = spawn("producer", &db);
    let status = tokio::task::spawn_blocking(move || producer.wait().unwrap())
        .await
        .unwrap();
    assert!(status.success(), "producer failed: {status}");

    let deadline = Instant::now() + Duration::from_secs(60);
    while scalar(&t, "SELECT COUNT(*) FROM handled").await < N {
        assert!(Instant::now() < deadline, "not all handled in time");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Give a duplicate the chance to show up before stopping the consumers.
    tokio::time::sleep(Duration::from_millis(300)).await;
    for c in &mut consumers {
        assert!(c.try_wait().unwrap().is_none(), "a consumer died");
        c.kill().unwrap();
        c.wait().unwrap();
    }

    assert_eq!(
        scalar(&t, "SELECT COUNT(*) FROM handled").await,
        N,
        "handled more than once"
    );
    assert_eq!(scalar(&t, "SELECT COUNT(DISTINCT n) FROM handled").await, N);
    assert_eq!(scalar(&t, "SELECT MIN(n) FROM handled").await, 0);
    assert_eq!(scalar(&t, "SELECT MAX(n) FROM handled").await, N - 1);
    let a = scalar(&t, "SELECT COUNT(*) FROM handled WHERE role = 'consumer-a'").await;
    let b = scalar(&t, "SELECT COUNT(*) FROM handled WHERE role = 'consumer-b'").await;
    eprintln!("consumer-a handled {a}, consumer-b handled {b}");
    assert!(a > 0 && b > 0, "both consumers compete: a={a} b={b}");
}
