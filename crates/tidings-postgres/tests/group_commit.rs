//! Group commit of sends: many concurrent `send` calls share commits, yet each call stays
//! all-or-nothing and a bad call fails alone.

mod common;

use tidings_core::transport::{Outgoing, QueueSpec, Topology, Transport};
use tidings_core::{Envelope, Error};

const CALLS: usize = 200;
const PER_CALL: usize = 3;
/// The call whose second message cannot be stored (NUL in a text column).
const BAD: usize = 57;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_sends_share_commits_and_a_bad_call_fails_alone() {
    let Some(t) = common::transport("group").await else {
        return;
    };
    t.declare(&Topology {
        queues: vec![QueueSpec {
            name: "work".into(),
            ..QueueSpec::default()
        }],
    })
    .await
    .unwrap();

    let mut calls = Vec::with_capacity(CALLS + 1);
    for c in 0..CALLS {
        let t = t.clone();
        calls.push(tokio::spawn(async move {
            let batch: Vec<Outgoing> = (0..PER_CALL)
                .map(|i| {
                    let ty = if c == BAD && i == 1 {
                        "test.bad\0type"
                    } else {
                        "test.work"
                    };
                    let body = format!("{{\"call\":{c},\"i\":{i}}}");
                    Outgoing::to_queue("work", Envelope::new(ty, 1, body))
                })
                .collect();
            t.send(batch).await
        }));
    }
    let unknown = {
        let t = t.clone();
        tokio::spawn(async move {
            t.send(vec![Outgoing::to_queue(
                "nowhere",
                Envelope::new("test.work", 1, "{}"),
            )])
            .await
        })
    };

    let mut failed = Vec::new();
    for (c, call) in calls.into_iter().enumerate() {
        if let Err(e) = call.await.unwrap() {
            assert!(!e.is_retryable(), "call {c}: {e}");
            failed.push(c);
        }
    }
    assert_eq!(failed, vec![BAD], "only the bad call fails");
    assert!(matches!(
        unknown.await.unwrap(),
        Err(Error::UnknownQueue(q)) if q == "nowhere"
    ));

    // Every good call's messages are stored, none of the bad call's (all-or-nothing).
    let schema = t.config().schema.clone();
    let rows: Vec<Vec<u8>> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT envelope FROM \"{schema}\".messages WHERE queue = 'work'"
    )))
    .fetch_all(t.pool())
    .await
    .unwrap();
    let mut per_call = vec![0usize; CALLS];
    for r in &rows {
        let e = Envelope::from_json(r).unwrap();
        let body: serde_json::Value = serde_json::from_slice(&e.body).unwrap();
        per_call[body["call"].as_u64().unwrap() as usize] += 1;
    }
    for (c, n) in per_call.iter().enumerate() {
        let want = if c == BAD { 0 } else { PER_CALL };
        assert_eq!(*n, want, "messages stored for call {c}");
    }
    common::drop_schema(&t).await;
}
