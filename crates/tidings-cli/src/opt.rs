//! Command-line options ([`Opt`]), parsed with clap derive.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

fn duration(s: &str) -> Result<Duration, String> {
    tidings_admin::parse_duration(s).map_err(|e| e.to_string())
}

fn since(s: &str) -> Result<String, String> {
    tidings_admin::parse_since(s)
        .map(|_| s.to_string())
        .map_err(|e| e.to_string())
}

/// `tidings`: operate a Tidings deployment — queues, dead letters, live tail, topology,
/// admin dashboard — on any transport, chosen by URL.
#[derive(Debug, Clone, Parser)]
#[command(name = "tidings", version, about, long_about = None)]
pub struct Opt {
    /// Transport URL: sqlite://FILE, postgres://.., amqp://.., nats://.., memory://
    /// (for `topology`: an application's admin API, http://HOST:PORT/admin)
    #[arg(long, env = "TIDINGS_URL", global = true, hide_env_values = true)]
    pub url: Option<String>,

    /// Give up connecting after this long (30s, 1m).
    #[arg(long, global = true, default_value = "10s", value_parser = duration)]
    pub connect_timeout: Duration,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Per queue: ready, in flight, scheduled, oldest age, error depth, parked keys.
    Queues(QueuesArgs),
    /// Dead letters (error queues): list, show, replay, purge.
    #[command(subcommand)]
    Dlq(DlqCommand),
    /// Prints published events live, from a temporary queue of its own (takes nothing
    /// from other consumers).
    Tail(TailArgs),
    /// Prints an application's topology as text, mermaid or DOT: fetched from its admin
    /// API (--url http://HOST:PORT/admin) or read from the JSON its bus wrote (--from); with
    /// --permissions, the least-privilege RabbitMQ / NATS / PostgreSQL permissions of each
    /// service.
    Topology(TopologyArgs),
    /// Saga instances: list (oldest update first: stuck ones lead), show one.
    Sagas(SagasArgs),
    /// Serves the admin API and web dashboard.
    Dashboard(DashboardArgs),
    /// Benchmarks Tidings against raw baselines (tokio mpsc, SQLite, PostgreSQL SKIP
    /// LOCKED, lapin, async-nats), side by side in one run; needs no --url.
    Bench(tidings_bench::BenchOpts),
    /// Internal: the backlog drain child of `bench`.
    #[command(name = "bench-drain", hide = true)]
    BenchDrain(tidings_bench::DrainArgs),
}

/// `tidings queues`.
#[derive(Debug, Clone, Args)]
pub struct QueuesArgs {
    /// Refresh until interrupted.
    #[arg(long)]
    pub watch: bool,
    /// Refresh interval with --watch.
    #[arg(long, default_value = "2s", value_parser = duration)]
    pub interval: Duration,
    /// JSON output (one line per refresh with --watch).
    #[arg(long)]
    pub json: bool,
}

/// Filters shared by the `dlq` commands.
#[derive(Debug, Clone, Default, Args)]
pub struct FilterArgs {
    /// Only from this endpoint.
    #[arg(long)]
    pub endpoint: Option<String>,
    /// Only of this message type (contract name).
    #[arg(long = "type", value_name = "TYPE")]
    pub message_type: Option<String>,
    /// Only with this fault reason (handler-failed, undeserializable, panicked, timed-out, ...).
    #[arg(long)]
    pub reason: Option<String>,
    /// Only dead-lettered within this long (30s, 15m, 1h, 2d) or since an RFC 3339 time.
    #[arg(long, value_parser = since)]
    pub since: Option<String>,
    /// Only with this correlation id.
    #[arg(long)]
    pub correlation_id: Option<String>,
}

/// The `dlq` subcommands.
#[derive(Debug, Clone, Subcommand)]
pub enum DlqCommand {
    /// Lists dead letters, oldest first.
    List(ListArgs),
    /// Shows one dead letter: fault headers and body.
    Show(ShowArgs),
    /// Moves dead letters back to their queue (or --to another) to be handled again.
    Replay(ReplayArgs),
    /// Deletes dead letters for good.
    Purge(PurgeArgs),
}

/// `tidings dlq list`.
#[derive(Debug, Clone, Args)]
pub struct ListArgs {
    /// Filters.
    #[command(flatten)]
    pub filter: FilterArgs,
    /// At most this many (0: all).
    #[arg(long, default_value_t = 100)]
    pub limit: usize,
    /// JSON output.
    #[arg(long)]
    pub json: bool,
}

/// `tidings dlq show`.
#[derive(Debug, Clone, Args)]
pub struct ShowArgs {
    /// The message id.
    pub id: String,
    /// JSON output.
    #[arg(long)]
    pub json: bool,
}

/// `tidings dlq replay`.
#[derive(Debug, Clone, Args)]
pub struct ReplayArgs {
    /// Filters.
    #[command(flatten)]
    pub filter: FilterArgs,
    /// Only these message ids (repeatable).
    #[arg(long = "id", value_name = "ID")]
    pub ids: Vec<String>,
    /// At most this many (0: all).
    #[arg(long, default_value_t = 0)]
    pub limit: usize,
    /// Replay into this endpoint's queue instead of the original one.
    #[arg(long, value_name = "ENDPOINT")]
    pub to: Option<String>,
    /// Only list what would be replayed.
    #[arg(long)]
    pub dry_run: bool,
}

/// `tidings dlq purge`.
#[derive(Debug, Clone, Args)]
pub struct PurgeArgs {
    /// Filters.
    #[command(flatten)]
    pub filter: FilterArgs,
    /// Only these message ids (repeatable).
    #[arg(long = "id", value_name = "ID")]
    pub ids: Vec<String>,
    /// At most this many (0: all).
    #[arg(long, default_value_t = 0)]
    pub limit: usize,
    /// Do not ask; required when stdin is not a terminal.
    #[arg(long, short = 'y')]
    pub yes: bool,
}

/// `tidings tail`.
#[derive(Debug, Clone, Args)]
pub struct TailArgs {
    /// Event type to follow (repeatable), e.g. orderflow.order-placed.
    #[arg(long = "event", value_name = "TYPE", required = true)]
    pub events: Vec<String>,
    /// Stop after this many messages.
    #[arg(long)]
    pub count: Option<u64>,
    /// Stop after this long without end (30s, 5m).
    #[arg(long, value_parser = duration)]
    pub duration: Option<Duration>,
    /// Characters of body to print (0: none).
    #[arg(long, default_value_t = 120)]
    pub body_chars: usize,
    /// One JSON object per message.
    #[arg(long)]
    pub json: bool,
}

/// Output format of `tidings topology`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TopologyFormat {
    /// One endpoint per paragraph.
    Text,
    /// Mermaid flowchart.
    Mermaid,
    /// Graphviz DOT.
    Dot,
}

/// `tidings topology`: from a running application (`--url http://HOST:PORT/admin`, its
/// admin API's `GET /topology`) or from a file (`--from`, which wins when both are given).
#[derive(Debug, Clone, Args)]
pub struct TopologyArgs {
    /// JSON written by the application (`serde_json::to_string(bus.topology())`); `-` for
    /// stdin. Without it, the report is fetched from --url http://HOST:PORT/ADMIN-PATH.
    #[arg(long, value_name = "FILE")]
    pub from: Option<PathBuf>,
    /// Bearer token of the admin API (with --url).
    #[arg(long, env = "TIDINGS_ADMIN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = TopologyFormat::Text)]
    pub format: TopologyFormat,
    /// Print instead the least-privilege permissions of each service on this broker.
    #[arg(long, value_enum, value_name = "BROKER")]
    pub permissions: Option<PermissionsTarget>,
    /// Run these endpoints as one service (one user): NAME=ENDPOINT,ENDPOINT (repeatable).
    /// Every other endpoint is a service of its own.
    #[arg(long = "service", value_name = "NAME=ENDPOINTS", value_parser = service_group)]
    pub services: Vec<(String, Vec<String>)>,
    /// The service that sends what the application sends outside handlers (an endpoint
    /// or --service name merges them).
    #[arg(long, value_name = "NAME", default_value = "app")]
    pub app_service: String,
    /// Prefix of every generated user / role name.
    #[arg(long, value_name = "PREFIX", default_value = "")]
    pub user_prefix: String,
    /// RabbitMQ virtual host.
    #[arg(long, default_value = "/")]
    pub vhost: String,
    /// NATS subject and stream prefix (the transport URL's ?prefix=).
    #[arg(long, default_value = "tidings")]
    pub nats_prefix: String,
    /// NATS partitions per ordered queue (the transport URL's ?partitions=).
    #[arg(long, default_value_t = 8)]
    pub partitions: u32,
    /// PostgreSQL schema (the transport URL's ?schema=).
    #[arg(long, default_value = "tidings")]
    pub schema: String,
}

/// Which broker `tidings topology --permissions` writes for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PermissionsTarget {
    /// RabbitMQ: a shell script of `rabbitmqctl add_user` / `set_permissions` lines.
    Rabbitmq,
    /// RabbitMQ: users and permissions as a definitions file (JSON).
    RabbitmqJson,
    /// NATS: the `authorization { users = [...] }` block of a server configuration.
    Nats,
    /// PostgreSQL: a psql script of roles, GRANTs and row-level security policies.
    Postgres,
}

fn service_group(s: &str) -> Result<(String, Vec<String>), String> {
    let (name, endpoints) = s
        .split_once('=')
        .ok_or_else(|| format!("`{s}`: expected NAME=ENDPOINT,ENDPOINT"))?;
    let endpoints: Vec<String> = endpoints
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(str::to_string)
        .collect();
    if name.trim().is_empty() || endpoints.is_empty() {
        return Err(format!("`{s}`: expected NAME=ENDPOINT,ENDPOINT"));
    }
    Ok((name.trim().to_string(), endpoints))
}

/// `tidings sagas`.
#[derive(Debug, Clone, Args)]
pub struct SagasArgs {
    /// The SQL database holding the sagas (default: --url): sqlite://FILE. On RabbitMQ or
    /// NATS, the service's own database.
    #[arg(long, env = "TIDINGS_SAGA_DB", hide_env_values = true)]
    pub db: Option<String>,
    /// list or show.
    #[command(subcommand)]
    pub command: SagaCommand,
}

/// `tidings sagas list|show`.
#[derive(Debug, Clone, Subcommand)]
pub enum SagaCommand {
    /// Saga instances, least recently updated first.
    List(SagaListArgs),
    /// One saga instance: state, data, recorded compensations, armed timeouts (JSON).
    Show(SagaShowArgs),
}

/// `tidings sagas list`.
#[derive(Debug, Clone, Args)]
pub struct SagaListArgs {
    /// Only this saga (definition name).
    #[arg(long)]
    pub saga: Option<String>,
    /// Only instances in this state.
    #[arg(long)]
    pub state: Option<String>,
    /// Only `active` or only `completed` instances.
    #[arg(long)]
    pub status: Option<String>,
    /// Only instances not updated for at least this long (30s, 5m, 1h): stuck ones.
    #[arg(long, value_parser = duration)]
    pub stuck_for: Option<Duration>,
    /// At most this many (0: the default page of 100).
    #[arg(long, default_value_t = 0)]
    pub limit: usize,
    /// Skip this many (paging).
    #[arg(long, default_value_t = 0)]
    pub offset: u64,
    /// JSON output.
    #[arg(long)]
    pub json: bool,
}

/// `tidings sagas show`.
#[derive(Debug, Clone, Args)]
pub struct SagaShowArgs {
    /// The saga's name.
    pub saga: String,
    /// The correlation key.
    pub key: String,
}

/// `tidings dashboard`.
#[derive(Debug, Clone, Args)]
pub struct DashboardArgs {
    /// Address to listen on; non-loopback addresses need --token.
    #[arg(long, default_value = "127.0.0.1:9090")]
    pub bind: SocketAddr,
    /// Bearer token the API requires.
    #[arg(long, env = "TIDINGS_ADMIN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// The SQL database holding sagas, for the saga table (default: --url when it is
    /// sqlite://).
    #[arg(long, env = "TIDINGS_SAGA_DB", hide_env_values = true)]
    pub saga_db: Option<String>,
}
