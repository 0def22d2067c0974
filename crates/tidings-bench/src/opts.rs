//! [`BenchOpts`]: what to run (transports, scenarios, sizes), parsed with clap derive so the
//! `tidings` command can flatten it into its `bench` subcommand.

use std::fmt;
use std::str::FromStr;

use clap::Args;
use serde::{Deserialize, Serialize};

/// A transport and its raw baseline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TransportKind {
    /// Tidings in-memory transport vs a tokio mpsc channel.
    Memory,
    /// Tidings SQLite (fsync) vs a raw sqlx queue table.
    Sqlite,
    /// Tidings PostgreSQL vs a raw `FOR UPDATE SKIP LOCKED` queue.
    Postgres,
    /// Tidings RabbitMQ vs raw lapin.
    Rabbitmq,
    /// Tidings NATS JetStream vs raw async-nats.
    Nats,
}

impl TransportKind {
    /// Every transport, in report order.
    pub const ALL: [TransportKind; 5] = [
        TransportKind::Memory,
        TransportKind::Sqlite,
        TransportKind::Postgres,
        TransportKind::Rabbitmq,
        TransportKind::Nats,
    ];

    /// Short name, as on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            TransportKind::Memory => "memory",
            TransportKind::Sqlite => "sqlite",
            TransportKind::Postgres => "postgres",
            TransportKind::Rabbitmq => "rabbitmq",
            TransportKind::Nats => "nats",
        }
    }
}

impl fmt::Display for TransportKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TransportKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "memory" | "mem" | "mpsc" => Ok(TransportKind::Memory),
            "sqlite" => Ok(TransportKind::Sqlite),
            "postgres" | "postgresql" | "pg" => Ok(TransportKind::Postgres),
            "rabbitmq" | "rabbit" | "amqp" => Ok(TransportKind::Rabbitmq),
            "nats" | "jetstream" => Ok(TransportKind::Nats),
            other => Err(format!(
                "unknown transport `{other}`: use memory, sqlite, postgres, rabbitmq or nats"
            )),
        }
    }
}

/// The scenarios run when `--scenarios` is not given.
const DEFAULT_SCENARIOS: [&str; 4] = ["saturated", "paced", "fanout", "backlog"];

/// Options of `tidings bench`.
#[derive(Debug, Clone, Args, Serialize)]
pub struct BenchOpts {
    /// Transports to run, comma-separated: memory, sqlite, postgres, rabbitmq, nats.
    #[arg(long, value_delimiter = ',', default_value = "memory,sqlite")]
    pub transports: Vec<TransportKind>,
    /// Run every transport (those whose server does not answer are skipped with a reason),
    /// and the relay scenario too unless `--scenarios` is given.
    #[arg(long)]
    pub all: bool,
    /// Messages in the saturated and fan-out scenarios.
    #[arg(long, default_value_t = 100_000)]
    pub n: u64,
    /// Messages in the fan-out scenario (default: --n).
    #[arg(long)]
    pub fanout_n: Option<u64>,
    /// Tidings on SQLite without the inbox (to see what the inbox costs).
    #[arg(long)]
    pub no_inbox: bool,
    /// Body size in bytes.
    #[arg(long, default_value_t = 256)]
    pub size: usize,
    /// Offered rates of the paced scenario, msg/s (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "1000,5000")]
    pub rate: Vec<u64>,
    /// Seconds each paced run lasts.
    #[arg(long, default_value_t = 3.0)]
    pub paced_secs: f64,
    /// Messages enqueued before the drain of the backlog scenario (0: skip it).
    #[arg(long, default_value_t = 1_000_000)]
    pub backlog: u64,
    /// Runs per scenario (saturated, paced, fan-out); the report shows the median and the
    /// min–max. The backlog scenario runs once.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Messages a producer keeps in flight (sent and not yet acknowledged by the transport).
    #[arg(long, default_value_t = 256)]
    pub window: usize,
    /// Prefetch of every consumer.
    #[arg(long, default_value_t = 256)]
    pub prefetch: usize,
    /// Scenarios to run, comma-separated: saturated, paced, fanout, backlog, relay
    /// (default: the first four; with `--all` also relay; with `--relay` alone only relay).
    #[arg(long, value_delimiter = ',')]
    pub scenarios: Vec<String>,
    /// Run the outbox relay scenario: SQLite and PostgreSQL outbox tables shipped to
    /// RabbitMQ / NATS by `tidings::outbox::Relay`, next to the broker's raw publish rate.
    /// Alone it runs only that scenario; with `--scenarios` it adds to them.
    #[arg(long)]
    pub relay: bool,
    /// Rows in the outbox before each relay run (filled before the clock starts).
    #[arg(long, default_value_t = 100_000)]
    pub relay_n: u64,
    /// Rows per relay batch (claim, confirmed send, delete), and messages per confirmed
    /// batch of the raw publish baseline.
    #[arg(long, default_value_t = 500)]
    pub relay_batch: usize,
    /// Smoke mode: small N, one run, small backlog; checks exactly-once, asserts no timing.
    #[arg(long)]
    pub smoke: bool,
    /// Print the report as JSON instead of markdown.
    #[arg(long)]
    pub json: bool,
    /// PostgreSQL URL.
    #[arg(
        long,
        env = "TIDINGS_PG_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/test",
        hide_env_values = true
    )]
    pub postgres_url: String,
    /// RabbitMQ URL.
    #[arg(
        long,
        env = "TIDINGS_AMQP_URL",
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f",
        hide_env_values = true
    )]
    pub amqp_url: String,
    /// NATS URL.
    #[arg(
        long,
        env = "TIDINGS_NATS_URL",
        default_value = "nats://127.0.0.1:4222",
        hide_env_values = true
    )]
    pub nats_url: String,
}

impl Default for BenchOpts {
    fn default() -> Self {
        BenchOpts {
            transports: vec![TransportKind::Memory, TransportKind::Sqlite],
            all: false,
            n: 100_000,
            fanout_n: None,
            no_inbox: false,
            size: 256,
            rate: vec![1000, 5000],
            paced_secs: 3.0,
            backlog: 1_000_000,
            runs: 3,
            window: 256,
            prefetch: 256,
            scenarios: Vec::new(),
            relay: false,
            relay_n: 100_000,
            relay_batch: 500,
            smoke: false,
            json: false,
            postgres_url: "postgres://postgres@127.0.0.1:5432/test".into(),
            amqp_url: "amqp://guest:guest@127.0.0.1:5672/%2f".into(),
            nats_url: "nats://127.0.0.1:4222".into(),
        }
    }
}

impl BenchOpts {
    /// Applies `--smoke` and `--all`: the options actually run.
    pub fn effective(&self) -> BenchOpts {
        let mut o = self.clone();
        if o.all {
            o.transports = TransportKind::ALL.to_vec();
        }
        o.transports.sort();
        o.transports.dedup();
        if o.scenarios.is_empty() {
            o.scenarios = if o.relay && !o.all {
                Vec::new()
            } else {
                DEFAULT_SCENARIOS.map(String::from).to_vec()
            };
            if o.all {
                o.relay = true;
            }
        }
        if o.relay && !o.wants("relay") {
            o.scenarios.push("relay".into());
        }
        o.relay = o.wants("relay");
        if o.smoke {
            o.n = o.n.min(2_000);
            o.fanout_n = Some(o.fanout_n.unwrap_or(o.n).min(o.n));
            o.runs = 1;
            o.backlog = o.backlog.min(5_000);
            o.paced_secs = o.paced_secs.min(0.5);
            o.relay_n = o.relay_n.min(2_000);
        }
        o.relay_n = o.relay_n.max(1);
        o.relay_batch = o.relay_batch.max(1);
        o.runs = o.runs.max(1);
        o.window = o.window.max(1);
        o.prefetch = o.prefetch.max(1);
        o.size = o.size.max(crate::payload::HEADER);
        o
    }

    /// Whether scenario `name` is selected.
    pub fn wants(&self, name: &str) -> bool {
        self.scenarios.iter().any(|s| s.trim() == name)
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::BenchOpts;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        bench: BenchOpts,
    }

    fn effective(args: &[&str]) -> BenchOpts {
        let mut argv = vec!["bench"];
        argv.extend(args);
        Cli::parse_from(argv).bench.effective()
    }

    #[test]
    fn relay_alone_runs_only_the_relay() {
        let o = effective(&["--relay", "--transports", "rabbitmq,nats"]);
        assert_eq!(o.scenarios, ["relay"]);
        assert_eq!((o.relay_n, o.relay_batch), (100_000, 500));
    }

    #[test]
    fn all_adds_the_relay_to_the_default_scenarios() {
        let o = effective(&["--all", "--smoke"]);
        assert_eq!(
            o.scenarios,
            ["saturated", "paced", "fanout", "backlog", "relay"]
        );
        assert!(o.relay);
        assert_eq!(o.relay_n, 2_000, "smoke keeps the relay small");
        let o = effective(&["--all", "--scenarios", "saturated"]);
        assert_eq!(o.scenarios, ["saturated"]);
        assert!(!o.relay);
    }

    #[test]
    fn the_default_is_the_point_to_point_scenarios() {
        let o = effective(&[]);
        assert_eq!(o.scenarios, ["saturated", "paced", "fanout", "backlog"]);
        let o = effective(&["--scenarios", "saturated", "--relay"]);
        assert_eq!(o.scenarios, ["saturated", "relay"]);
    }
}
