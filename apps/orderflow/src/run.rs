//! The commands: the load run (default), `serve`, `topology`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use tidings_core::transport::memory::MemoryTransport;
use tidings_core::transport::Outgoing;
use tidings_core::Envelope;
use tokio::net::TcpListener;

use crate::api::{app, AppState};
use crate::contracts::{OrderLine, ReserveStock};
use crate::load::{place_orders, LoadConfig};
use crate::opt::{Command, Common, Opts, RunArgs, ServeArgs, TransportKind};
use crate::report::{self, Scope};
use crate::services::gateway::GatewayConfig;
use crate::services::inventory;
use crate::system::{Config, Service, System};

/// Runs what `opts` asks for.
pub async fn run(opts: Opts) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
    match opts.command {
        Some(Command::Topology) => topology().await,
        Some(Command::Serve(args)) => serve(args).await,
        Some(Command::Chaos(args)) => crate::chaos::run(args).await,
        Some(Command::Scale(args)) => crate::scale::run(args).await,
        None => job(opts.run).await,
    }
}

/// The system's configuration from the command line.
pub fn config(common: &Common, service: Service) -> Config {
    let mut c = Config::new(&common.data_dir);
    c.gateway = GatewayConfig {
        latency: Duration::from_millis(common.payment_latency_ms),
        fail_rate: common.fail_rate,
        decline_rate: common.decline_rate,
    };
    c.payment_timeout = Duration::from_secs(common.payment_timeout_secs);
    c.concurrency = common.concurrency;
    c.service = service;
    c.fsync = common.fsync;
    c.idempotency_window = Duration::from_secs(common.idempotency_window_hours * 3600);
    c.shed_after = match common.shed_after_ms {
        Some(0) => None,
        Some(ms) => Some(Duration::from_millis(ms)),
        None => Some(c.payment_timeout / 3),
    };
    c
}

/// Starts the system on the transport the command line asks for.
pub async fn start(common: &Common, mut config: Config) -> anyhow::Result<System> {
    if let Some(url) = &common.transport_url {
        if let Some(path) = url.strip_prefix("sqlite://") {
            // The embedded transport with the business tables in the same file.
            config.db_file = Some(path.split('?').next().unwrap_or(path).into());
            return System::start_sqlite(config).await;
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            // Business tables in the same database: the outbox is the enqueue.
            let transport = tidings_postgres::PostgresConfig::from_url(url)
                .map(|c| c.with_application_name("orderflow"));
            let transport = match transport {
                Ok(c) => tidings_postgres::PostgresTransport::connect(c).await,
                Err(e) => Err(e),
            }
            .map_err(|e| anyhow::anyhow!("cannot connect to {}: {e}", tidings::redact_url(url)))?;
            return System::start_pg(config, transport).await;
        }
        let transport = tidings::connect(url)
            .await
            .map_err(|e| anyhow::anyhow!("cannot connect to {}: {e}", tidings::redact_url(url)))?;
        if let Some(db_url) = &common.db_url {
            let db = crate::db::Db::open_pg(db_url).await?;
            return System::start_on(config, transport, db).await;
        }
        return System::start(config, transport).await;
    }
    match common.transport {
        TransportKind::Sqlite => System::start_sqlite(config).await,
        TransportKind::Memory => System::start(config, Arc::new(MemoryTransport::new())).await,
    }
}

async fn topology() -> anyhow::Result<()> {
    let config = Config::new(std::env::temp_dir());
    let db = crate::db::Db::lazy().await?;
    let sink: Arc<dyn crate::services::notifications::Sink> =
        Arc::new(crate::services::notifications::NullSink);
    let report = crate::system::bus_builder(Arc::new(MemoryTransport::new()), &config, &db, sink)
        .validate()?;
    print!("{}", report.to_mermaid());
    Ok(())
}

/// Serves the API on 127.0.0.1:`port` in the background; returns the bound address.
pub async fn http(system: &System, port: u16) -> anyhow::Result<std::net::SocketAddr> {
    let listener = TcpListener::bind(("127.0.0.1", port)).await?;
    let addr = listener.local_addr()?;
    // The admin API and dashboard of Tidings, mounted under /admin/ (loopback only here),
    // with the bus's topology (`GET /admin/topology`, `tidings topology --url`).
    let mut admin = tidings_admin::AdminState::new(system.bus.transport().clone())
        .topology(system.bus.topology().clone())
        .journal(system.journal.clone());
    if let Some(sagas) = &system.sagas {
        admin = admin.sagas(sagas.clone());
    }
    match tidings_admin::install_recorder() {
        Ok(handle) => admin = admin.metrics(handle),
        Err(e) => tracing::warn!(error = %e, "no Prometheus recorder: /admin/metrics is off"),
    }
    let mut state = AppState::new(system.db.clone(), system.bus.producer().clone())
        .idempotency_window(system.config.idempotency_window);
    let takes_orders = matches!(system.config.service, Service::All | Service::Api);
    if let (Some(limit), true) = (system.config.shed_after, takes_orders) {
        let shed = crate::api::shed::Shed::new(limit);
        shed.watch(system.db.clone(), system.stop_token());
        state = state.shed(shed);
    }
    let router = app(state).nest_service("/admin", tidings_admin::router(admin));
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router).await {
            tracing::error!(error = %e, "HTTP server stopped");
        }
    });
    Ok(addr)
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    if args.start_delay_ms > 0 {
        tokio::time::sleep(Duration::from_millis(args.start_delay_ms)).await;
    }
    let mut config = config(&args.common, args.service);
    config.replica = args.replica.clone();
    let system = start(&args.common, config).await?;
    if !args.no_api {
        let addr = http(&system, args.common.port).await?;
        println!("OrderFlow API on http://{addr} (OpenAPI: http://{addr}/openapi.json)");
        println!(
            "Tidings dashboard on http://{addr}/admin/ (metrics: http://{addr}/admin/metrics)"
        );
    }
    println!("services: {:?}; Ctrl-C to stop", args.service);
    tokio::signal::ctrl_c().await?;
    system.shutdown().await;
    Ok(())
}

/// Sends `n` poison messages to the inventory queue: every other one malformed JSON
/// (→ undeserializable), the rest a valid body with a zero quantity (→ handler-failed).
pub async fn inject_poison(system: &System, n: usize) -> anyhow::Result<()> {
    for i in 0..n {
        if i % 2 == 0 {
            let env = Envelope::new(
                "orderflow.reserve-stock",
                1,
                format!("{{\"order_id\": \"poison-{i}\", \"lines\": [truncated"),
            );
            system
                .bus
                .send_raw(vec![Outgoing::to_queue(inventory::QUEUE, env)])
                .await?;
        } else {
            system
                .bus
                .send(&ReserveStock {
                    order_id: uuid::Uuid::now_v7(),
                    lines: vec![OrderLine {
                        product_id: "P-001".into(),
                        quantity: 0,
                    }],
                })
                .await?;
        }
    }
    Ok(())
}

/// Waits until the orders in scope are final and nothing is left in flight (outbox
/// empty, queues drained); `false` on timeout.
pub async fn wait_until_settled(
    system: &System,
    scope: Scope,
    expected: i64,
    timeout: Duration,
    bar: Option<&ProgressBar>,
) -> anyhow::Result<bool> {
    let deadline = Instant::now() + timeout;
    loop {
        let (_, done) = report::progress(&system.db, scope).await?;
        if let Some(b) = bar {
            b.set_position(done as u64);
        }
        if done >= expected && quiet(system).await? {
            return Ok(true);
        }
        if Instant::now() > deadline {
            return Ok(false);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn quiet(system: &System) -> anyhow::Result<bool> {
    if system.db.relay_pending().await? > 0 {
        return Ok(false);
    }
    let stats = system.bus.transport().stats().await?;
    Ok(stats
        .iter()
        .filter(|s| !s.queue.contains(".replies."))
        .all(|s| s.ready == 0 && s.in_flight.unwrap_or(0) == 0))
}

/// Checks invariants, trying again for a while if compensations are still settling.
pub async fn settled_checks(
    system: &System,
    scope: Scope,
    patience: Duration,
) -> anyhow::Result<Vec<report::Check>> {
    let deadline = Instant::now() + patience;
    loop {
        let checks =
            report::check_invariants(&system.db, &system.config.notifications_path(), scope)
                .await?;
        if checks.iter().all(|c| c.ok) || Instant::now() > deadline {
            return Ok(checks);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn bar(len: u64, msg: &'static str) -> ProgressBar {
    let b = ProgressBar::new(len);
    if let Ok(style) =
        ProgressStyle::with_template("{msg:>18} [{bar:40}] {pos}/{len} ({per_sec}, eta {eta})")
    {
        b.set_style(style.progress_chars("=> "));
    }
    b.set_message(msg);
    b
}

async fn job(args: RunArgs) -> anyhow::Result<()> {
    let config = config(&args.common, Service::All);
    let system = start(&args.common, config).await?;
    let addr = http(&system, args.common.port).await?;
    let data = system.config.data_dir.display().to_string();
    println!(
        "OrderFlow on http://{addr}  data dir {data}  transport {}",
        system.bus.transport().name()
    );
    let scope = Scope {
        since_micros: chrono::Utc::now().timestamp_micros(),
    };
    let poison = (args.orders as f64 * args.poison_rate).round() as usize;
    inject_poison(&system, poison).await?;
    let placing = bar(args.orders as u64, "placing orders");
    let load = place_orders(
        &LoadConfig {
            base_url: format!("http://{addr}"),
            orders: args.orders,
            clients: args.clients,
            undeliverable_rate: args.undeliverable_rate,
            retry_rate: args.retry_rate,
        },
        &placing,
    )
    .await?;
    placing.finish();
    let finishing = bar(load.placed.len() as u64, "orders final");
    let settled = wait_until_settled(
        &system,
        scope,
        load.placed.len() as i64,
        Duration::from_secs(900),
        Some(&finishing),
    )
    .await?;
    finishing.finish();
    let checks = settled_checks(&system, scope, Duration::from_secs(20)).await?;
    let summary = crate::summary::Summary::gather(&system, scope, &load, settled, &checks).await?;
    // Where the error queues are (credentials redacted).
    let url = match &args.common.transport_url {
        Some(u) => tidings::redact_url(u),
        None => format!("sqlite://{data}/orderflow.db"),
    };
    print!("{}", summary.render(&url));
    if args.serve {
        println!("serving on http://{addr} (dashboard: http://{addr}/admin/) — Ctrl-C to stop");
        tokio::signal::ctrl_c().await?;
    }
    system.shutdown().await;
    if !checks.iter().all(|c| c.ok) {
        anyhow::bail!("some invariants did not hold");
    }
    Ok(())
}
