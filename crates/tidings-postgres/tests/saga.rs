//! The PostgreSQL saga store (against the live server; skipped when it does not answer): a saga end to end on the transport (timeout fired, stale timeout
//! dropped), one transaction per step (a failing step or a failing enqueue leaves nothing,
//! a duplicate delivery has no effect), conflicts, the pool + outbox-table mode, queries.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use tidings_core::saga::store::is_conflict;
use tidings_core::saga::{
    Completion, Decide, Decision, Saga, SagaQueries, SagaQuery, SagaRecord, SagaState, SagaStatus,
    SagaStore, StepOutcome, Write,
};
use tidings_core::transport::Transport;
use tidings_core::{Bus, ConsumeContext, Endpoint, Envelope, HandlerError, Message, Producer};
use tidings_postgres::saga::step_in;
use tidings_postgres::{OutboxTable, PgSagaStore, PostgresTransport};

mod common;

#[derive(Debug, Clone, Serialize, Deserialize, Message)]
#[message(name = "s.started", version = 1, kind = "event")]
struct Started {
    id: u32,
}
#[derive(Debug, Clone, Serialize, Deserialize, Message)]
#[message(name = "s.advanced", version = 1, kind = "event")]
struct Advanced {
    id: u32,
}
#[derive(Debug, Clone, Serialize, Deserialize, Message)]
#[message(name = "s.expired", version = 1, kind = "command")]
struct Expired {
    id: u32,
}
#[derive(Debug, Clone, Serialize, Deserialize, Message)]
#[message(name = "s.gave-up", version = 1, kind = "event")]
struct GaveUp {
    id: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Flow {
    Waiting,
    Advanced,
    GaveUp,
}

impl SagaState for Flow {
    fn name(&self) -> &str {
        match self {
            Flow::Waiting => "waiting",
            Flow::Advanced => "advanced",
            Flow::GaveUp => "gave-up",
        }
    }
}

fn saga(timeout: Duration) -> Saga<Flow> {
    Saga::<Flow>::new("flow")
        .completion(Completion::Keep)
        .starts_with(
            |m: &Started| m.id,
            move |m, step| {
                step.request_timeout(&Expired { id: m.id }, timeout)?;
                Ok(Flow::Waiting)
            },
        )
        .on(|m: &Advanced| m.id, |_, _, _| Ok(Flow::Advanced))
        .on(
            |m: &Expired| m.id,
            |s, m, step| match s {
                Flow::Waiting => {
                    step.publish(&GaveUp { id: m.id })?;
                    step.complete();
                    Ok(Flow::GaveUp)
                }
                s => Ok(s),
            },
        )
}

async fn eventually(mut f: impl AsyncFnMut() -> bool) -> bool {
    for _ in 0..200 {
        if f().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saga_runs_on_the_transport_with_real_timeouts() {
    let Some(t) = common::transport("saga").await else {
        return;
    };
    let store = Arc::new(PgSagaStore::on_transport(&t).await.unwrap());
    let gave_up = Arc::new(AtomicU32::new(0));
    let g = gave_up.clone();
    let bus = Bus::builder(Arc::new(t.clone()))
        .endpoint(
            saga(Duration::from_millis(300)).attach(
                Endpoint::new("flow-saga")
                    .ordered(true)
                    .sends::<GaveUp>()
                    .sends::<Expired>(),
                store.clone(),
            ),
        )
        .endpoint(Endpoint::new("watch").handle_fn(move |_: GaveUp, _| {
            g.fetch_add(1, Ordering::SeqCst);
            async { Ok(()) }
        }))
        .sends::<Started>()
        .sends::<Advanced>()
        .start()
        .await
        .unwrap();
    bus.publish(&Started { id: 1 }).await.unwrap();
    bus.publish(&Started { id: 2 }).await.unwrap();
    // This transport may hand a later publish to the saga before an earlier one (seen:
    // Advanced{2} before Started{2}, so order 2 gave up too): move on once 2 exists.
    assert!(eventually(async || store.show("flow", "2").await.unwrap().is_some()).await);
    bus.publish(&Advanced { id: 2 }).await.unwrap();
    assert!(eventually(async || gave_up.load(Ordering::SeqCst) == 1).await);
    let one = store.show("flow", "1").await.unwrap().unwrap();
    assert_eq!(
        (one.state.as_str(), one.status),
        ("gave-up", SagaStatus::Completed)
    );
    // Order 2 moved on before its timeout: it arrives and is dropped without a write.
    assert!(
        eventually(async || {
            tokio::time::sleep(Duration::from_millis(50)).await;
            store
                .show("flow", "2")
                .await
                .unwrap()
                .unwrap()
                .timeouts
                .is_empty()
        })
        .await
    );
    let two = store.show("flow", "2").await.unwrap().unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(store.show("flow", "2").await.unwrap().unwrap(), two);
    assert_eq!(gave_up.load(Ordering::SeqCst), 1);
    bus.shutdown(Duration::from_secs(5)).await;
    common::drop_schema(&t).await;
}

fn ctx(t: &PostgresTransport, msg_id: Option<uuid::Uuid>) -> ConsumeContext {
    let mut env = Envelope::new("s.advanced", 1, b"{\"id\":1}".to_vec());
    if let Some(id) = msg_id {
        env.id = id;
    }
    let routes = HashMap::from([("s.expired".to_string(), "flow-saga".to_string())]);
    let producer = Producer::new(Arc::new(t.clone()), routes, Some("flow-saga".into()));
    ConsumeContext::new(env, producer, "flow-saga", 1)
}

fn record(key: &str, state: &str) -> SagaRecord {
    let now = chrono::Utc::now();
    SagaRecord {
        saga: "flow".into(),
        key: key.into(),
        state: state.into(),
        data: serde_json::json!({ "n": 1 }),
        version: 0,
        status: SagaStatus::Active,
        created_at: now,
        updated_at: now,
        completed_at: None,
        compensations: Vec::new(),
        timeouts: Vec::new(),
    }
}

fn insert(key: &str, outgoing: Vec<tidings_core::transport::Outgoing>) -> Decide {
    let r = record(key, "waiting");
    Box::new(move |_| {
        Ok(Decision {
            write: Write::Insert(r),
            outgoing,
        })
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_is_one_transaction_and_a_duplicate_does_nothing() {
    let Some(t) = common::transport("saga").await else {
        return;
    };
    t.declare(&tidings_core::transport::Topology {
        queues: vec![tidings_core::transport::QueueSpec {
            name: "flow-saga".into(),
            ..Default::default()
        }],
    })
    .await
    .unwrap();
    let store = PgSagaStore::on_transport(&t).await.unwrap();
    let c = ctx(&t, None);

    // The decision fails: nothing is stored, not even the inbox row.
    let fail: Decide = Box::new(|_| Err(HandlerError::permanent("no")));
    assert!(store.step("flow", "a", &c, fail).await.is_err());
    // The enqueue fails (a queue nobody declared): the state is not stored either.
    let bad = c
        .producer()
        .outgoing(&Expired { id: 1 }, Default::default())
        .map(|mut o| {
            o.destination = tidings_core::transport::Destination::Queue("nowhere".into());
            o
        })
        .unwrap();
    assert!(store
        .step("flow", "a", &c, insert("a", vec![bad]))
        .await
        .is_err());
    assert!(store.show("flow", "a").await.unwrap().is_none());

    // The same message again: now it commits, with its message.
    let out = c
        .producer()
        .outgoing(&Expired { id: 1 }, Default::default())
        .unwrap();
    let applied = store
        .step("flow", "a", &c, insert("a", vec![out]))
        .await
        .unwrap();
    assert_eq!(applied, StepOutcome::Applied);
    assert_eq!(store.show("flow", "a").await.unwrap().unwrap().version, 1);
    assert_eq!(
        t.stats()
            .await
            .unwrap()
            .iter()
            .find(|s| s.queue == "flow-saga")
            .unwrap()
            .ready,
        1
    );

    // A duplicate delivery: decide is not called, nothing changes.
    let called = Arc::new(AtomicU32::new(0));
    let c2 = called.clone();
    let dup: Decide = Box::new(move |_| {
        c2.fetch_add(1, Ordering::SeqCst);
        Ok(Decision::nothing())
    });
    assert_eq!(
        store.step("flow", "a", &c, dup).await.unwrap(),
        StepOutcome::Duplicate
    );
    assert_eq!(called.load(Ordering::SeqCst), 0);
    common::drop_schema(&t).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_version_is_a_conflict_and_writes_nothing() {
    let Some(t) = common::transport("saga").await else {
        return;
    };
    let store = PgSagaStore::on_transport(&t).await.unwrap();
    let c = ctx(&t, None);
    store
        .step("flow", "k", &c, insert("k", vec![]))
        .await
        .unwrap();
    let mut conn = t.pool().acquire().await.unwrap();
    let prefix = format!("{}.", t.config().schema);
    // Insert over an existing saga, update and delete with a version nobody has.
    let mut stale = record("k", "advanced");
    stale.version = 7;
    for write in [
        Write::Insert(record("k", "waiting")),
        Write::Update(stale),
        Write::Delete {
            key: "k".into(),
            expected: 7,
        },
    ] {
        let d: Decide = Box::new(move |_| {
            Ok(Decision {
                write,
                outgoing: vec![],
            })
        });
        let e = step_in(&mut conn, &prefix, "flow", "k", d)
            .await
            .unwrap_err();
        assert!(is_conflict(&e), "{e}");
        assert!(e.message().contains("found Some(1)"), "{e}");
    }
    let r = store.show("flow", "k").await.unwrap().unwrap();
    assert_eq!((r.state.as_str(), r.version), ("waiting", 1));
    common::drop_schema(&t).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_pool_the_messages_go_to_the_outbox_table() {
    let Some(t) = common::transport("sagapool").await else {
        return; // only to build envelopes: the saga's tables are in another schema
    };
    let svc = common::schema("svc");
    let admin = PgPoolOptions::new().connect(&common::url()).await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {svc}")))
        .execute(&admin)
        .await
        .unwrap();
    let opts: PgConnectOptions = common::url().parse().unwrap();
    let pool = PgPoolOptions::new()
        .max_connections(4)
        .connect_with(opts.options([("search_path", svc.as_str())]))
        .await
        .unwrap();
    let outbox = OutboxTable::open(pool.clone()).await.unwrap();
    let store = PgSagaStore::on_pool(pool.clone(), outbox).await.unwrap();
    let c = ctx(&t, None);
    let out = c
        .producer()
        .outgoing(&Expired { id: 1 }, Default::default())
        .unwrap();
    assert_eq!(
        store
            .step("flow", "p", &c, insert("p", vec![out]))
            .await
            .unwrap(),
        StepOutcome::Applied
    );
    let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM tidings_relay_outbox")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(rows, 1);
    let dup: Decide = Box::new(|_| Ok(Decision::nothing()));
    assert_eq!(
        store.step("flow", "p", &c, dup).await.unwrap(),
        StepOutcome::Duplicate
    );
    // A failing step on the pool rolls back its inbox row too.
    let c2 = ctx(&t, None);
    let fail: Decide = Box::new(|_| Err(HandlerError::permanent("no")));
    assert!(store.step("flow", "p", &c2, fail).await.is_err());
    let ok: Decide = Box::new(|_| Ok(Decision::nothing()));
    assert_eq!(
        store.step("flow", "p", &c2, ok).await.unwrap(),
        StepOutcome::Applied
    );
    common::drop_schema(&t).await;
    common::drop_schema_named(&svc).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_list_and_show_sagas() {
    let Some(t) = common::transport("saga").await else {
        return;
    };
    let store = PgSagaStore::on_transport(&t).await.unwrap();
    for key in ["x", "y", "z"] {
        store
            .step("flow", key, &ctx(&t, None), insert(key, vec![]))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    let all = store.list(&SagaQuery::default()).await.unwrap();
    let keys: Vec<&str> = all.iter().map(|s| s.key.as_str()).collect();
    assert_eq!(keys, ["x", "y", "z"], "oldest first");
    let page = store
        .list(&SagaQuery {
            offset: 1,
            limit: 1,
            state: Some("waiting".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(page.len(), 1);
    assert_eq!(page[0].key, "y");
    let none = store
        .list(&SagaQuery {
            state: Some("gave-up".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(none.is_empty());
    let old = store
        .list(&SagaQuery {
            updated_before: Some(all[1].updated_at),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(old.len(), 1);
    assert_eq!(
        store.show("flow", "y").await.unwrap().unwrap().data,
        serde_json::json!({ "n": 1 })
    );
    common::drop_schema(&t).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sweep_completed_deletes_only_completed_sagas_past_the_cutoff() {
    let Some(t) = common::transport("sagasweep").await else {
        return;
    };
    let store = PgSagaStore::on_transport(&t).await.unwrap();
    let hour_ago = chrono::Utc::now() - chrono::Duration::hours(1);
    for (key, done) in [
        ("old", Some(hour_ago)),
        ("new", Some(chrono::Utc::now())),
        ("live", None),
    ] {
        let mut r = record(key, "s");
        if let Some(at) = done {
            r.status = SagaStatus::Completed;
            r.completed_at = Some(at);
        }
        let d: Decide = Box::new(move |_| {
            Ok(Decision {
                write: Write::Insert(r),
                outgoing: vec![],
            })
        });
        store.step("flow", key, &ctx(&t, None), d).await.unwrap();
    }
    let cutoff = chrono::Utc::now() - chrono::Duration::minutes(1);
    assert_eq!(store.sweep_completed("other", cutoff).await.unwrap(), 0);
    assert_eq!(store.sweep_completed("flow", cutoff).await.unwrap(), 1);
    assert!(store.show("flow", "old").await.unwrap().is_none());
    assert!(store.show("flow", "new").await.unwrap().is_some());
    assert!(store.show("flow", "live").await.unwrap().is_some());
    common::drop_schema(&t).await;
}
