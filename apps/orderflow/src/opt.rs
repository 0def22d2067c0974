//! Command-line options.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::system::Service;

/// OrderFlow: the Tidings reference order pipeline.
#[derive(Debug, Parser)]
#[command(name = "orderflow", version, about)]
pub struct Opts {
    /// What to do (default: the load run).
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Options of the load run.
    #[command(flatten)]
    pub run: RunArgs,
}

/// Which transport to run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TransportKind {
    /// The embedded SQLite transport (durable; processes on one machine may share it).
    Sqlite,
    /// In-process memory (nothing survives the process).
    Memory,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the API and/or services until Ctrl-C.
    Serve(ServeArgs),
    /// Print the message topology as a mermaid diagram.
    Topology,
    /// Crash-cycle test: run `orderflow serve` as a child, place orders over HTTP, kill it
    /// with SIGKILL at seeded random moments and restart it, then check every invariant.
    Chaos(ChaosArgs),
    /// Scale-out test: API replicas and service workers as separate processes on one
    /// PostgreSQL database (or a broker + `--db-url`), orders placed across the APIs, one
    /// worker of each service killed with SIGKILL mid-run and restarted later; then every
    /// invariant and how the work was shared.
    Scale(crate::scale::ScaleArgs),
}

/// `orderflow chaos`.
#[derive(Debug, Clone, Args)]
pub struct ChaosArgs {
    /// Kills (each followed by a restart).
    #[arg(long, default_value_t = 20)]
    pub cycles: u32,
    /// Seeds the kill moments (random when absent; printed, to replay a failure).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Data dir of the child (default: a fresh one under the temp dir, kept afterwards).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Client tasks placing orders meanwhile (each repeats an unanswered request with the
    /// same Idempotency-Key).
    #[arg(long, default_value_t = 8)]
    pub clients: usize,
    /// Orders per second placed by all clients together (0 = as fast as they get answers).
    /// Above what the service processes, the backlog grows with every cycle.
    #[arg(long, default_value_t = 50.0)]
    pub rate: f64,
    /// Shortest time from a (re)start being ready to its kill, in ms.
    #[arg(long, default_value_t = 1000)]
    pub min_ms: u64,
    /// Longest time from a (re)start being ready to its kill, in ms.
    #[arg(long, default_value_t = 4000)]
    pub max_ms: u64,
    /// The child's payment timeout (short, so that timeouts race captures across kills).
    #[arg(long, default_value_t = 5)]
    pub payment_timeout_secs: u64,
    /// How long to wait for quiescence after the last restart, in seconds.
    #[arg(long, default_value_t = 300)]
    pub settle_secs: u64,
    /// Transport by URL (e.g. `postgres://…`; default: the embedded SQLite transport). On
    /// PostgreSQL without `schema=` in the URL the run gets a schema of its own.
    #[arg(long, env = "TIDINGS_URL", hide_env_values = true)]
    pub transport_url: Option<String>,
}

/// Options shared by the run and serve.
#[derive(Debug, Clone, Args)]
pub struct Common {
    /// Where the database and notification log live.
    #[arg(long, default_value = "./orderflow-data", env = "ORDERFLOW_DATA_DIR")]
    pub data_dir: PathBuf,
    /// HTTP port (0 = any free port).
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// Probability of a transient payment-gateway failure per call.
    #[arg(long, default_value_t = 0.1)]
    pub fail_rate: f64,
    /// Probability that a payment is declined.
    #[arg(long, default_value_t = 0.05)]
    pub decline_rate: f64,
    /// Simulated gateway latency in milliseconds.
    #[arg(long, default_value_t = 5)]
    pub payment_latency_ms: u64,
    /// Seconds the saga waits for a payment before cancelling the order.
    #[arg(long, default_value_t = 30)]
    pub payment_timeout_secs: u64,
    /// Transport: `sqlite` (embedded, durable, in the data dir's database) or `memory`.
    /// Ignored when a transport URL is given.
    #[arg(long, value_enum, default_value = "sqlite")]
    pub transport: TransportKind,
    /// Transport by URL: `sqlite://<file>`, `postgres://…`, `amqp(s)://…`, `nats://…`,
    /// `memory://`. On PostgreSQL the business tables live in the same database (a schema
    /// per service, named after the transport's `schema=`); on a broker they stay in the
    /// data dir's SQLite file (or `--db-url`) and an outbox relay ships their messages.
    #[arg(long, env = "TIDINGS_URL", hide_env_values = true)]
    pub transport_url: Option<String>,
    /// On a broker (`amqp://`, `nats://`): the business tables in this PostgreSQL database
    /// (`postgres://…?schema=NAME`, schemas NAME_<service>) instead of the data dir's
    /// SQLite file; the outbox relay ships from there. Ignored on SQLite and PostgreSQL
    /// transports (their own database holds the tables).
    #[arg(long, env = "ORDERFLOW_DB_URL", hide_env_values = true)]
    pub db_url: Option<String>,
    /// Back-pressure: the API answers 503 with Retry-After while a pipeline queue's oldest
    /// message is older than this many ms (default: a third of the payment timeout; 0 =
    /// never refuse).
    #[arg(long)]
    pub shed_after_ms: Option<u64>,
    /// fsync every commit (otherwise commits survive a process crash, not a power loss).
    #[arg(long)]
    pub fsync: bool,
    /// Handlers running at once per endpoint. Handlers mostly wait for the group commit
    /// they joined, so more in flight means bigger batches, not more CPU.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Hours an `Idempotency-Key` is remembered (a retry within them gets the first order
    /// back; after them the key may name a new order).
    #[arg(long, default_value_t = 24, value_parser = clap::value_parser!(u64).range(1..=8760))]
    pub idempotency_window_hours: u64,
}

/// The load run.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Shared options.
    #[command(flatten)]
    pub common: Common,
    /// Orders to place through the HTTP API.
    #[arg(long, default_value_t = 10_000)]
    pub orders: usize,
    /// Fraction of orders for which a poison message (malformed or invalid) is also sent
    /// straight to a queue; they must end in the error queue.
    #[arg(long, default_value_t = 0.01)]
    pub poison_rate: f64,
    /// Fraction of orders shipped to a country shipping does not serve (compensation path).
    #[arg(long, default_value_t = 0.02)]
    pub undeliverable_rate: f64,
    /// Fraction of requests the client repeats with the same Idempotency-Key.
    #[arg(long, default_value_t = 0.02)]
    pub retry_rate: f64,
    /// Concurrent HTTP requests.
    #[arg(long, default_value_t = 32)]
    pub clients: usize,
    /// Keep serving the API after the report.
    #[arg(long)]
    pub serve: bool,
}

/// `orderflow serve`.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Shared options.
    #[command(flatten)]
    pub common: Common,
    /// Which service(s) to run in this process.
    #[arg(long, value_enum, default_value = "all")]
    pub service: Service,
    /// Do not serve the HTTP API.
    #[arg(long)]
    pub no_api: bool,
    /// This process's name among replicas: it writes the deliveries it consumed per
    /// endpoint to `<data dir>/share/NAME-<pid>.json` (the scale-out report).
    #[arg(long, hide = true)]
    pub replica: Option<String>,
    /// Wait this long before starting (a restart "later" in the scale-out test).
    #[arg(long, hide = true, default_value_t = 0)]
    pub start_delay_ms: u64,
}
