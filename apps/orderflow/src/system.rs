//! Wiring: the database, the transport, every service's endpoint and (off the SQLite
//! transport) the outbox relay in one [`System`]. `Services` picks which endpoints run in this process (the others are
//! reached through routes).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tidings_core::outbox::Relay;
use tidings_core::pipeline::retry::Intervals;
use tidings_core::transport::Transport;
use tidings_core::{Bus, Endpoint, Redelivery};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::contracts::*;
use crate::db::Db;
use crate::services::gateway::{Gateway, GatewayConfig};
use crate::services::notifications::{FileSink, Sink};
use crate::services::{analytics, inventory, notifications, payments, read_model, saga, shipping};

/// The product catalog: id, name, price in cents, initial stock.
pub const CATALOG: &[(&str, &str, i64, i64)] = &[
    ("P-001", "Espresso beans 1 kg", 2490, 100_000),
    ("P-002", "Grinder", 12900, 100_000),
    ("P-003", "Milk jug", 1590, 100_000),
    ("P-004", "Tamper", 2990, 100_000),
    ("P-005", "Scale", 3990, 100_000),
    ("P-006", "Kettle", 5490, 100_000),
    ("P-007", "Filter papers", 490, 100_000),
    ("P-008", "Dripper", 2290, 100_000),
    ("P-009", "Limited edition cup", 1990, 150),
    ("P-010", "Signed barista book", 3490, 60),
];

/// Which services run in this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Service {
    /// Everything.
    All,
    /// No service: only the HTTP API (an API replica).
    Api,
    /// Stock reservations.
    Inventory,
    /// Captures and refunds.
    Payments,
    /// Shipments.
    Shipping,
    /// Customer notifications.
    Notifications,
    /// The order saga.
    Saga,
    /// The read model and analytics.
    Views,
}

/// Everything the system needs to start.
#[derive(Debug, Clone)]
pub struct Config {
    /// Data directory (database, notification log).
    pub data_dir: PathBuf,
    /// Payment gateway simulation.
    pub gateway: GatewayConfig,
    /// How long the saga waits for a payment.
    pub payment_timeout: Duration,
    /// Immediate retries of payments.
    pub retries: Vec<Duration>,
    /// Delayed redeliveries of every endpoint.
    pub redelivery: Vec<Duration>,
    /// Handlers per endpoint.
    pub concurrency: usize,
    /// Which services run here.
    pub service: Service,
    /// fsync every commit (transport and business tables).
    pub fsync: bool,
    /// The database file, when not `<data_dir>/orderflow.db` (a `sqlite://` transport URL).
    pub db_file: Option<PathBuf>,
    /// How long the API remembers an `Idempotency-Key`.
    pub idempotency_window: Duration,
    /// The API refuses new orders (503 + `Retry-After`) while a pipeline queue's oldest
    /// message is older than this; `None`: never.
    pub shed_after: Option<Duration>,
    /// This process's name among replicas (it writes its work-share counts).
    pub replica: Option<String>,
}

impl Config {
    /// Defaults for a data dir.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Config {
            data_dir: data_dir.into(),
            gateway: GatewayConfig::default(),
            payment_timeout: Duration::from_secs(30),
            retries: vec![
                Duration::from_millis(10),
                Duration::from_millis(50),
                Duration::from_millis(100),
            ],
            redelivery: vec![
                Duration::from_millis(500),
                Duration::from_secs(2),
                Duration::from_secs(5),
            ],
            concurrency: 64,
            service: Service::All,
            fsync: false,
            idempotency_window: crate::api::idempotency::DEFAULT_WINDOW,
            db_file: None,
            shed_after: Some(Duration::from_secs(10)),
            replica: None,
        }
    }

    /// The database file.
    pub fn db_path(&self) -> PathBuf {
        self.db_file
            .clone()
            .unwrap_or_else(|| self.data_dir.join("orderflow.db"))
    }

    /// The notification log.
    pub fn notifications_path(&self) -> PathBuf {
        self.data_dir.join("notifications.jsonl")
    }
}

/// A running OrderFlow: bus, database, relay.
pub struct System {
    /// The bus (all endpoints of this process).
    pub bus: Bus,
    /// The business database.
    pub db: Db,
    /// The configuration it runs with.
    pub config: Config,
    /// Deliveries this process consumed (bounded, in memory), for GET /admin/messages.
    pub journal: tidings_admin::MessageJournal,
    /// The order sagas for operators (`GET /admin/sagas`), where they can be read.
    pub sagas: Option<Arc<dyn tidings_core::saga::SagaQueries>>,
    stop: CancellationToken,
    tasks: TaskTracker,
}

impl std::fmt::Debug for System {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("System")
            .field("bus", &self.bus)
            .field("db", &self.db)
            .field("config", &self.config)
            .field("sagas", &self.sagas.is_some())
            .finish_non_exhaustive()
    }
}

/// Builds the endpoints `config.service` selects.
pub fn endpoints(config: &Config, db: &Db, sink: Arc<dyn Sink>) -> Vec<Endpoint> {
    let redelivery = Redelivery::intervals(config.redelivery.clone());
    let on = |s: Service| config.service == Service::All || config.service == s;
    let mut eps = Vec::new();
    if on(Service::Saga) {
        eps.push(saga::endpoint(db.clone(), config.payment_timeout));
    }
    if on(Service::Inventory) {
        eps.push(inventory::endpoint(db.clone()));
    }
    if on(Service::Payments) {
        let gw = Gateway::new(db.clone(), config.gateway.clone());
        eps.push(
            payments::endpoint(db.clone(), gw)
                .retry(Intervals(config.retries.clone()))
                .prefetch(256),
        );
    }
    if on(Service::Shipping) {
        eps.push(shipping::endpoint(db.clone()));
    }
    if on(Service::Notifications) {
        eps.push(notifications::endpoint(db.clone(), sink));
    }
    if on(Service::Views) {
        eps.push(read_model::endpoint(db.clone()));
        eps.push(analytics::endpoint(db.clone()));
    }
    eps.into_iter()
        .map(|e| {
            e.redelivery(redelivery.clone())
                .concurrency(config.concurrency)
                .retry_if_unset()
        })
        .collect()
}

trait RetryIfUnset {
    fn retry_if_unset(self) -> Self;
}

impl RetryIfUnset for Endpoint {
    fn retry_if_unset(self) -> Self {
        if self.name() == payments::QUEUE {
            self
        } else {
            // database busy / a saga not there yet: a few quick immediate retries
            self.retry(Intervals(vec![
                Duration::from_millis(20),
                Duration::from_millis(100),
            ]))
        }
    }
}

/// The bus builder with every endpoint of this process and routes to the others.
pub fn bus_builder(
    transport: Arc<dyn Transport>,
    config: &Config,
    db: &Db,
    sink: Arc<dyn Sink>,
) -> tidings_core::BusBuilder {
    let mut b = Bus::builder(transport).name("orderflow");
    for ep in endpoints(config, db, sink) {
        b = b.endpoint(ep);
    }
    if config.service != Service::All {
        b = b
            .route::<ReserveStock>(inventory::QUEUE)
            .route::<ReleaseStock>(inventory::QUEUE)
            .route::<CapturePayment>(payments::QUEUE)
            .route::<RefundPayment>(payments::QUEUE)
            .route::<CreateShipment>(shipping::QUEUE)
            .route::<PaymentTimeout>(saga::QUEUE);
    }
    b.sends::<OrderPlaced>()
}

impl System {
    /// Opens the database in `config.data_dir` (writes on a pool of its own), seeds the
    /// catalog, starts the bus on `transport` and the outbox relay.
    pub async fn start(config: Config, transport: Arc<dyn Transport>) -> anyhow::Result<System> {
        std::fs::create_dir_all(&config.data_dir)?;
        let db = Db::open(&config.db_path(), config.fsync).await?;
        Self::start_with(config, transport, db).await
    }

    /// Starts on `transport` (a broker) with the business tables in `db` (a SQLite file
    /// or a PostgreSQL database of their own, [`Db::open_pg`]) and the outbox relay.
    pub async fn start_on(
        config: Config,
        transport: Arc<dyn Transport>,
        db: Db,
    ) -> anyhow::Result<System> {
        std::fs::create_dir_all(&config.data_dir)?;
        Self::start_with(config, transport, db).await
    }

    /// Starts on the PostgreSQL transport with the business tables in the same database
    /// (a schema per service): every business transaction enqueues its own messages
    /// (outbox = the send; no relay).
    pub async fn start_pg(
        config: Config,
        transport: tidings_postgres::PostgresTransport,
    ) -> anyhow::Result<System> {
        std::fs::create_dir_all(&config.data_dir)?;
        let db = Db::on_pg_transport(&transport).await?;
        let sagas = match db.pg_sink() {
            Some((names, _)) => {
                let store = tidings_postgres::PgSagaStore::on_transport_in(
                    &transport,
                    &names.schema("saga"),
                )
                .await?;
                Some(Arc::new(store) as Arc<dyn tidings_core::saga::SagaQueries>)
            }
            None => None,
        };
        let mut system = Self::start_with(config, Arc::new(transport), db).await?;
        system.sagas = sagas;
        Ok(system)
    }

    /// Starts on the embedded SQLite transport, with the business tables in its database
    /// file: every business transaction is a job of the transport's group-committing
    /// writer, and enqueues its messages itself (outbox = the send; no relay).
    pub async fn start_sqlite(config: Config) -> anyhow::Result<System> {
        std::fs::create_dir_all(&config.data_dir)?;
        let durability = if config.fsync {
            tidings_sqlite::Durability::Fsync
        } else {
            tidings_sqlite::Durability::OsBuffered
        };
        let sqlite = tidings_sqlite::SqliteTransport::connect(
            tidings_sqlite::SqliteConfig::new(config.db_path())
                .durability(durability)
                .busy_timeout(Duration::from_secs(30)),
        )
        .await?;
        let db = Db::on_transport(&sqlite).await?;
        Self::start_with(config, Arc::new(sqlite), db).await
    }

    async fn start_with(
        config: Config,
        transport: Arc<dyn Transport>,
        db: Db,
    ) -> anyhow::Result<System> {
        seed(&db).await?;
        saga::prepare(&db).await?;
        let sink: Arc<dyn Sink> = Arc::new(FileSink::open(config.notifications_path())?);
        let journal = tidings_admin::MessageJournal::new();
        let stop = CancellationToken::new();
        let mut observer = journal.observer();
        if let Some(name) = &config.replica {
            let dir = crate::scale::share::dir(&config.data_dir);
            std::fs::create_dir_all(&dir)?;
            let counting = crate::scale::share::Counting::new(observer);
            counting.flush_to(
                dir.join(format!("{name}-{}.json", std::process::id())),
                stop.clone(),
            );
            observer = counting;
        }
        let bus = bus_builder(transport.clone(), &config, &db, sink)
            .observer(observer)
            .start()
            .await?;
        let tasks = TaskTracker::new();
        if let Some(store) = db.relay_store() {
            let relay = Relay::new(store, transport);
            tasks.spawn(relay.run(stop.clone()));
        }
        let sagas = db.read.sqlite().map(|read| {
            Arc::new(tidings_sqlite::SqliteSagaQueries::new(read.clone()))
                as Arc<dyn tidings_core::saga::SagaQueries>
        });
        Ok(System {
            bus,
            db,
            config,
            journal,
            sagas,
            stop,
            tasks,
        })
    }

    /// Cancelled at shutdown (for background tasks of this process).
    pub fn stop_token(&self) -> CancellationToken {
        self.stop.clone()
    }

    /// Stops the bus and the relay.
    pub async fn shutdown(&self) {
        self.bus.shutdown(Duration::from_secs(10)).await;
        self.stop.cancel();
        self.tasks.close();
        self.tasks.wait().await;
        self.db.close().await;
    }
}

/// Seeds catalog (API) and stock (inventory), keeping what a previous run left.
pub async fn seed(db: &Db) -> anyhow::Result<()> {
    db.write(|tx| {
        Box::pin(async move {
            for (id, name, price, _) in CATALOG {
                tx.exec(
                    "INSERT INTO api_catalog (product_id, name, price_cents) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                    crate::args![*id, *name, *price],
                )
                .await?;
            }
            Ok::<_, anyhow::Error>(())
        })
    })
    .await?;
    let stock: Vec<(&str, i64)> = CATALOG.iter().map(|(id, _, _, s)| (*id, *s)).collect();
    inventory::seed(db, &stock).await
}
