//! Saga store: load/save with versions, conflicts never overwrite, update retries, delete.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tidings_sqlite::{SagaStore, SqliteConfig, SqliteError, SqliteTransport};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Order {
    step: u32,
    paid: bool,
}

async fn store(dir: &tempfile::TempDir) -> (SqliteTransport, SagaStore<Order>) {
    let t = SqliteTransport::connect(SqliteConfig::new(dir.path().join("s.db")))
        .await
        .unwrap();
    let s = SagaStore::new(&t, "order");
    (t, s)
}

#[tokio::test]
async fn save_load_and_conflicts() {
    let dir = tempfile::tempdir().unwrap();
    let (t, s) = store(&dir).await;
    assert!(s.load("o1").await.unwrap().is_none());
    let mut tx = t.pool().begin().await.unwrap();
    let v = s
        .save(
            &mut tx,
            "o1",
            &Order {
                step: 1,
                paid: false,
            },
            None,
        )
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(v, 1);
    assert_eq!(
        s.load("o1").await.unwrap(),
        Some((
            Order {
                step: 1,
                paid: false
            },
            1
        ))
    );

    // Creating it again conflicts.
    let mut tx = t.pool().begin().await.unwrap();
    let err = s
        .save(
            &mut tx,
            "o1",
            &Order {
                step: 9,
                paid: true,
            },
            None,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            SqliteError::Conflict {
                expected: None,
                found: Some(1),
                ..
            }
        ),
        "{err:?}"
    );
    drop(tx);

    let mut tx = t.pool().begin().await.unwrap();
    assert_eq!(
        s.save(
            &mut tx,
            "o1",
            &Order {
                step: 2,
                paid: true
            },
            Some(1)
        )
        .await
        .unwrap(),
        2
    );
    tx.commit().await.unwrap();

    // A stale writer (read version 1) conflicts and overwrites nothing.
    let mut tx = t.pool().begin().await.unwrap();
    let err = s
        .save(
            &mut tx,
            "o1",
            &Order {
                step: 7,
                paid: false,
            },
            Some(1),
        )
        .await
        .unwrap_err();
    assert!(err.is_conflict(), "{err:?}");
    tx.commit().await.unwrap();
    assert_eq!(
        s.load("o1").await.unwrap(),
        Some((
            Order {
                step: 2,
                paid: true
            },
            2
        ))
    );
    let core: tidings_core::Error = err.into();
    assert!(core.is_retryable(), "a conflict is worth retrying");

    // Other saga names do not see it.
    let other: SagaStore<Order> = SagaStore::new(&t, "shipment");
    assert!(other.load("o1").await.unwrap().is_none());

    // Delete with the wrong version conflicts; with the right one completes the saga.
    let mut tx = t.pool().begin().await.unwrap();
    assert!(s.delete(&mut tx, "o1", 1).await.unwrap_err().is_conflict());
    s.delete(&mut tx, "o1", 2).await.unwrap();
    tx.commit().await.unwrap();
    assert!(s.load("o1").await.unwrap().is_none());
}

#[tokio::test]
async fn concurrent_updates_all_apply() {
    let dir = tempfile::tempdir().unwrap();
    let (_t, s) = store(&dir).await;
    let s = Arc::new(s);
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..10 {
                s.update("k", |o| {
                    let mut o = o.unwrap_or(Order {
                        step: 0,
                        paid: false,
                    });
                    o.step += 1;
                    Some(o)
                })
                .await
                .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let (o, v) = s.load("k").await.unwrap().unwrap();
    assert_eq!(o.step, 80, "no lost update");
    assert_eq!(v, 80);
    // Returning None completes (deletes) the saga.
    assert!(s.update("k", |_| None).await.unwrap().is_none());
    assert!(s.load("k").await.unwrap().is_none());
}
