//! The outbox relay against the real brokers: rows committed to an outbox table in SQLite
//! or PostgreSQL reach RabbitMQ / NATS JetStream consumers in order per key, exactly once
//! with no faults even with two relays running, and — when the relay is killed between the
//! broker's confirm and the mark — at least once, with the inbox making each effect once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tidings_core::observe::{Observation, Observer};
use tidings_core::outbox::{OutboxLease, OutboxRow, OutboxStore, Relay};
use tidings_core::pipeline::inbox::MemoryInbox;
use tidings_core::transport::Transport;
use tidings_core::{Bus, ConsumeContext, Endpoint, Message, SendOptions};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

#[derive(Debug, Clone, Serialize, Deserialize, Message)]
#[message(name = "relay-test.ping", version = 1, kind = "command")]
struct Ping {
    key: u32,
    seq: u32,
}

#[derive(Clone, Copy, Debug)]
enum Broker {
    Rabbit,
    Nats,
}

#[derive(Clone, Copy, Debug)]
enum Db {
    Sqlite,
    Postgres,
}

fn reachable(addr: &str, what: &str) -> bool {
    let ok = std::net::TcpStream::connect_timeout(
        &addr.parse().expect("literal address"),
        Duration::from_secs(2),
    )
    .is_ok();
    if !ok {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{what} not reachable at {addr} (CI=true: the service must be up)"
        );
        eprintln!("skipped: {what} not reachable at {addr}");
    }
    ok
}

async fn broker(b: Broker) -> Option<Arc<dyn Transport>> {
    let (addr, url, what) = match b {
        Broker::Rabbit => (
            "127.0.0.1:5672",
            "amqp://guest:guest@127.0.0.1:5672/%2f",
            "RabbitMQ",
        ),
        Broker::Nats => ("127.0.0.1:4222", "nats://127.0.0.1:4222", "NATS"),
    };
    if !reachable(addr, what) {
        return None;
    }
    Some(tidings::connect(url).await.expect("connect to the broker"))
}

/// Arrivals (every settled delivery, duplicates included) and effects (handler runs past
/// the inbox), per message id, plus the order effects happened in.
#[derive(Default)]
struct Seen {
    arrivals: Mutex<HashMap<Uuid, u32>>,
    effects: Mutex<HashMap<Uuid, u32>>,
    order: Mutex<Vec<(u32, u32)>>,
}

impl Observer for Seen {
    fn observe(&self, o: Observation) {
        *self
            .arrivals
            .lock()
            .unwrap()
            .entry(o.envelope.id)
            .or_default() += 1;
    }
}

impl Seen {
    fn effects(&self) -> usize {
        self.effects.lock().unwrap().len()
    }
    fn total_arrivals(&self) -> u32 {
        self.arrivals.lock().unwrap().values().sum()
    }
}

struct Rig {
    bus: Bus,
    transport: Arc<dyn Transport>,
    queue: String,
    seen: Arc<Seen>,
    tables: Tables,
}

enum Tables {
    Sqlite(sqlx::SqlitePool, #[allow(dead_code)] tempfile::TempDir),
    Postgres(sqlx::PgPool, String),
}

async fn rig(b: Broker, db: Db) -> Option<Rig> {
    if matches!(db, Db::Postgres) && !reachable("127.0.0.1:5432", "PostgreSQL") {
        return None;
    }
    let transport = broker(b).await?;
    let queue = format!("relay_{}", &Uuid::now_v7().simple().to_string()[20..]);
    let seen = Arc::new(Seen::default());
    let s = seen.clone();
    let bus = Bus::builder(transport.clone())
        .endpoint(
            Endpoint::new(queue.clone())
                .concurrency(1)
                .inbox(Arc::new(MemoryInbox::default()))
                .handle_fn(move |m: Ping, ctx: ConsumeContext| {
                    let s = s.clone();
                    async move {
                        *s.effects
                            .lock()
                            .unwrap()
                            .entry(ctx.message_id())
                            .or_default() += 1;
                        s.order.lock().unwrap().push((m.key, m.seq));
                        Ok(())
                    }
                }),
        )
        .observer(seen.clone())
        .start()
        .await
        .expect("bus starts");
    let tables = match db {
        Db::Sqlite => {
            let dir = tempfile::tempdir().expect("tempdir");
            let opts = sqlx::sqlite::SqliteConnectOptions::new()
                .filename(dir.path().join("app.db"))
                .create_if_missing(true)
                .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
                .busy_timeout(Duration::from_secs(10));
            let pool = sqlx::SqlitePool::connect_with(opts).await.expect("sqlite");
            Tables::Sqlite(pool, dir)
        }
        Db::Postgres => {
            let schema = format!("relay_{}", &Uuid::now_v7().simple().to_string()[20..]);
            let admin = sqlx::PgPool::connect("postgres://postgres@127.0.0.1:5432/test")
                .await
                .expect("postgres");
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
                .execute(&admin)
                .await
                .expect("schema");
            admin.close().await;
            let opts: sqlx::postgres::PgConnectOptions = "postgres://postgres@127.0.0.1:5432/test"
                .parse()
                .expect("url");
            let pool = sqlx::PgPool::connect_with(opts.options([("search_path", schema.as_str())]))
                .await
                .expect("postgres");
            Tables::Postgres(pool, schema)
        }
    };
    Some(Rig {
        bus,
        transport,
        queue,
        seen,
        tables,
    })
}

/// One outbox table instance, as a relay in its own process would have it.
enum Table {
    Sqlite(tidings_sqlite::OutboxTable, sqlx::SqlitePool),
    Postgres(tidings_postgres::OutboxTable, sqlx::PgPool),
}

impl Rig {
    async fn table(&self, lease: Duration) -> Table {
        let producer = self.bus.producer().clone();
        match &self.tables {
            Tables::Sqlite(pool, _) => Table::Sqlite(
                tidings_sqlite::OutboxTable::open(pool.clone())
                    .await
                    .expect("table")
                    .producer(producer)
                    .lease(lease),
                pool.clone(),
            ),
            Tables::Postgres(pool, _) => Table::Postgres(
                tidings_postgres::OutboxTable::open(pool.clone())
                    .await
                    .expect("table")
                    .producer(producer),
                pool.clone(),
            ),
        }
    }

    async fn wait_effects(&self, n: usize) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
        while self.seen.effects() < n {
            assert!(
                tokio::time::Instant::now() < deadline,
                "only {} of {n} messages handled",
                self.seen.effects()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // let late duplicates arrive
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    async fn finish(self) {
        self.bus.shutdown(Duration::from_secs(5)).await;
        let _ = self.transport.delete_queue(&self.queue).await;
        if let Tables::Postgres(pool, schema) = &self.tables {
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
                .execute(pool)
                .await;
        }
    }
}

impl Table {
    fn store(&self) -> Arc<dyn OutboxStore> {
        match self {
            Table::Sqlite(t, _) => Arc::new(t.clone()),
            Table::Postgres(t, _) => Arc::new(t.clone()),
        }
    }

    /// Commits `pings` in one transaction.
    async fn enqueue(&self, pings: &[Ping]) {
        match self {
            Table::Sqlite(t, pool) => {
                let mut tx = pool.begin().await.expect("begin");
                for p in pings {
                    t.dispatch(&mut tx, p, key_opts(p)).await.expect("enqueue");
                }
                tx.commit().await.expect("commit");
                t.notify();
            }
            Table::Postgres(t, pool) => {
                let mut tx = pool.begin().await.expect("begin");
                for p in pings {
                    t.dispatch(&mut tx, p, key_opts(p)).await.expect("enqueue");
                }
                tx.commit().await.expect("commit");
            }
        }
    }

    async fn fill(&self, keys: u32, per_key: u32, per_tx: usize) -> usize {
        let all: Vec<Ping> = (0..per_key)
            .flat_map(|seq| (0..keys).map(move |key| Ping { key, seq }))
            .collect();
        for chunk in all.chunks(per_tx) {
            self.enqueue(chunk).await;
        }
        all.len()
    }
}

fn key_opts(p: &Ping) -> SendOptions {
    SendOptions::default().partition_key(format!("k{}", p.key))
}

fn assert_in_order(order: &[(u32, u32)]) {
    let mut last: HashMap<u32, u32> = HashMap::new();
    for (key, seq) in order {
        if let Some(prev) = last.insert(*key, *seq) {
            assert!(*seq > prev, "key {key}: seq {seq} handled after {prev}");
        }
    }
}

async fn ships_in_order_once(b: Broker, db: Db) {
    let Some(rig) = rig(b, db).await else { return };
    let table = rig.table(Duration::from_secs(30)).await;
    let n = table.fill(10, 200, 25).await;
    let relay = Relay::new(table.store(), rig.transport.clone()).batch_size(256);
    let stats = relay.stats();
    let stop = CancellationToken::new();
    let task = tokio::spawn(relay.run(stop.clone()));
    rig.wait_effects(n).await;
    stop.cancel();
    task.await.expect("relay task");
    assert_eq!(stats.shipped(), n as u64);
    assert!(stats.batches() >= (n / 256) as u64);
    assert_eq!(
        table.store().pending().await.expect("pending"),
        0,
        "sent rows are deleted"
    );
    assert_eq!(
        rig.seen.total_arrivals(),
        n as u32,
        "no duplicates without faults"
    );
    assert_in_order(&rig.seen.order.lock().unwrap());
    rig.finish().await;
}

async fn two_relays_never_ship_a_row_twice(b: Broker, db: Db) {
    let Some(rig) = rig(b, db).await else { return };
    let (t1, t2) = (
        rig.table(Duration::from_secs(30)).await,
        rig.table(Duration::from_secs(30)).await,
    );
    let stop = CancellationToken::new();
    let (r1, r2) = (
        Relay::new(t1.store(), rig.transport.clone()).batch_size(50),
        Relay::new(t2.store(), rig.transport.clone()).batch_size(50),
    );
    let (s1, s2) = (r1.stats(), r2.stats());
    let tasks = [
        tokio::spawn(r1.run(stop.clone())),
        tokio::spawn(r2.run(stop.clone())),
    ];
    // Both tables enqueue while both relays run.
    let (a, b2) = tokio::join!(t1.fill(4, 150, 10), t2.fill(4, 150, 10));
    let n = a + b2;
    rig.wait_effects(n).await;
    stop.cancel();
    for t in tasks {
        t.await.expect("relay task");
    }
    assert_eq!(s1.shipped() + s2.shipped(), n as u64);
    assert_eq!(
        rig.seen.total_arrivals(),
        n as u32,
        "a row was shipped twice"
    );
    assert_eq!(t1.store().pending().await.expect("pending"), 0);
    rig.finish().await;
}

/// Passes leases through, except that the first mark never happens: the relay hangs
/// after the broker confirmed the first batch (while the second one is being sent), and the
/// test kills the relay there.
struct KillAfterConfirm {
    inner: Arc<dyn OutboxStore>,
    confirmed: Arc<Notify>,
    fired: Arc<AtomicBool>,
}

struct HangOnFirstMark {
    inner: Box<dyn OutboxLease>,
    confirmed: Arc<Notify>,
    fired: Arc<AtomicBool>,
}

#[async_trait]
impl OutboxLease for HangOnFirstMark {
    async fn step(
        &mut self,
        sent: &[i64],
        in_flight: &[i64],
        limit: usize,
    ) -> tidings_core::Result<Vec<OutboxRow>> {
        if !sent.is_empty() && !self.fired.swap(true, Ordering::SeqCst) {
            self.confirmed.notify_one();
            std::future::pending::<()>().await;
        }
        self.inner.step(sent, in_flight, limit).await
    }
    async fn release(self: Box<Self>) -> tidings_core::Result<()> {
        self.inner.release().await
    }
}

#[async_trait]
impl OutboxStore for KillAfterConfirm {
    async fn lease(&self) -> tidings_core::Result<Option<Box<dyn OutboxLease>>> {
        let Some(inner) = self.inner.lease().await? else {
            return Ok(None);
        };
        Ok(Some(Box::new(HangOnFirstMark {
            inner,
            confirmed: self.confirmed.clone(),
            fired: self.fired.clone(),
        })))
    }
    async fn pending(&self) -> tidings_core::Result<u64> {
        self.inner.pending().await
    }
}

async fn killed_between_confirm_and_mark(b: Broker, db: Db) {
    let Some(rig) = rig(b, db).await else { return };
    let lease = Duration::from_secs(1);
    let first = rig.table(lease).await;
    let n = first.fill(5, 60, 20).await;
    let confirmed = Arc::new(Notify::new());
    let killer = KillAfterConfirm {
        inner: first.store(),
        confirmed: confirmed.clone(),
        fired: Arc::default(),
    };
    let doomed = Relay::new(Arc::new(killer), rig.transport.clone()).batch_size(100);
    let task = tokio::spawn(doomed.run(CancellationToken::new()));
    tokio::time::timeout(Duration::from_secs(30), confirmed.notified())
        .await
        .expect("the first batch is confirmed by the broker");
    // The second batch was being sent meanwhile; once it has arrived too, the relay dies
    // with two confirmed batches unmarked.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while rig.seen.total_arrivals() < 200 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the second batch did not arrive: {} arrivals",
            rig.seen.total_arrivals()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    task.abort(); // the relay dies between the broker's confirm and the mark
    let _ = task.await;
    drop(first);

    let second = rig.table(lease).await;
    let relay = Relay::new(second.store(), rig.transport.clone()).batch_size(100);
    let second_stats = relay.stats();
    let stop = CancellationToken::new();
    let task = tokio::spawn(relay.run(stop.clone()));
    rig.wait_effects(n).await;
    stop.cancel();
    task.await.expect("relay task");

    let arrivals = rig.seen.arrivals.lock().unwrap().clone();
    let effects = rig.seen.effects.lock().unwrap().clone();
    assert_eq!(effects.len(), n, "every message arrived");
    assert!(effects.values().all(|&c| c == 1), "an effect ran twice");
    assert_eq!(
        second_stats.shipped(),
        n as u64,
        "the killed batch's rows stayed in the table and were shipped again"
    );
    let dups = arrivals.values().filter(|&&c| c > 1).count();
    match b {
        // RabbitMQ delivers the two re-shipped batches again; the inbox absorbs them.
        Broker::Rabbit => assert_eq!(dups, 200, "the re-shipped batches arrive twice"),
        // JetStream drops the re-publish itself: Nats-Msg-Id = envelope id, inside the
        // stream's duplicate window.
        Broker::Nats => assert_eq!(dups, 0, "JetStream deduplicates by Nats-Msg-Id"),
    }
    assert_eq!(second.store().pending().await.expect("pending"), 0);
    rig.finish().await;
}

macro_rules! matrix {
    ($($name:ident: $f:ident($b:expr, $db:expr);)*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            $f($b, $db).await
        }
    )*};
}

matrix! {
    sqlite_to_rabbitmq_in_order: ships_in_order_once(Broker::Rabbit, Db::Sqlite);
    sqlite_to_nats_in_order: ships_in_order_once(Broker::Nats, Db::Sqlite);
    postgres_to_rabbitmq_in_order: ships_in_order_once(Broker::Rabbit, Db::Postgres);
    postgres_to_nats_in_order: ships_in_order_once(Broker::Nats, Db::Postgres);
    sqlite_two_relays_rabbitmq: two_relays_never_ship_a_row_twice(Broker::Rabbit, Db::Sqlite);
    postgres_two_relays_nats: two_relays_never_ship_a_row_twice(Broker::Nats, Db::Postgres);
    sqlite_killed_relay_rabbitmq: killed_between_confirm_and_mark(Broker::Rabbit, Db::Sqlite);
    sqlite_killed_relay_nats: killed_between_confirm_and_mark(Broker::Nats, Db::Sqlite);
    postgres_killed_relay_rabbitmq: killed_between_confirm_and_mark(Broker::Rabbit, Db::Postgres);
    postgres_killed_relay_nats: killed_between_confirm_and_mark(Broker::Nats, Db::Postgres);
}
