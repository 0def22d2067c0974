//! [`SqliteConfig`]: where the database file is and how durable a commit is, built in code
//! or parsed from a URL (`sqlite://path/to/file.db?durability=os-buffered&poll_ms=50`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{Result, SqliteError};

/// Default largest envelope: 4 MiB.
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 4 * 1024 * 1024;

/// What an acknowledged write survives.
///
/// Both modes use SQLite's write-ahead log (WAL); both survive a crash of the *process*
/// (a `kill -9`, a panic) without losing an acknowledged send, ack or settlement.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Durability {
    /// `synchronous=FULL`: every commit fsyncs the WAL before `send` returns (amortised by
    /// group commit: one fsync per batch). Survives power failure and OS crash: nothing
    /// acknowledged is lost.
    #[default]
    Fsync,
    /// `synchronous=NORMAL`: commits reach the OS page cache; the WAL is fsynced only at
    /// checkpoints. Survives a process crash; on power failure or OS crash the most recent
    /// acknowledged commits (up to the last checkpoint) may be lost — messages sent may
    /// vanish, acked messages may be delivered again — but the database stays consistent.
    OsBuffered,
}

impl Durability {
    fn parse(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "fsync" | "full" => Ok(Durability::Fsync),
            "os-buffered" | "os_buffered" | "normal" => Ok(Durability::OsBuffered),
            other => Err(SqliteError::Config(format!(
                "unknown durability `{other}`: use `fsync` or `os-buffered`"
            ))),
        }
    }
}

/// How to open the SQLite transport.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SqliteConfig {
    /// The database file (created when missing; its directory must exist).
    pub path: PathBuf,
    /// What an acknowledged write survives.
    pub durability: Durability,
    /// How often an idle receiver looks for messages written by *other processes*
    /// (within one process receivers are woken at once).
    pub poll_interval: Duration,
    /// How long a statement waits for another process's write lock before failing.
    pub busy_timeout: Duration,
    /// Largest envelope accepted, in bytes.
    pub max_message_size: usize,
    /// Most operations committed in one group-commit transaction.
    pub max_batch: usize,
    /// How long a batch of nothing but acks waits for another operation (a send, a claim)
    /// to share its commit; zero: commit at once. Acks are still fsynced before they are
    /// answered; this only saves the fsync of a commit of their own.
    pub ack_delay: Duration,
    /// Connections in the pool used by reads, outbox and inbox transactions.
    pub pool_size: u32,
    /// How long inbox rows are kept (duplicates older than this are no longer detected).
    pub inbox_retention: Duration,
}

impl SqliteConfig {
    /// Defaults for the database at `path`.
    pub fn new(path: impl AsRef<Path>) -> Self {
        SqliteConfig {
            path: path.as_ref().to_path_buf(),
            durability: Durability::Fsync,
            poll_interval: Duration::from_millis(50),
            busy_timeout: Duration::from_secs(10),
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            max_batch: 1024,
            ack_delay: Duration::from_millis(2),
            pool_size: 4,
            inbox_retention: Duration::from_secs(7 * 24 * 3600),
        }
    }

    /// Parses `sqlite://path?durability=fsync|os-buffered&poll_ms=50&busy_timeout_ms=..
    /// &max_message_size=..&max_batch=..&ack_delay_ms=..&pool_size=..&inbox_retention_s=..`.
    /// `sqlite:///abs/file.db` is absolute, `sqlite://rel/file.db` relative.
    pub fn from_url(url: &str) -> Result<Self> {
        let rest = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
            .ok_or_else(|| SqliteError::Config(format!("`{url}` is not a sqlite:// URL")))?;
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        if path.is_empty() || path == ":memory:" {
            return Err(SqliteError::Config(format!(
                "`{url}`: a database file path is required (in-memory databases are not supported)"
            )));
        }
        let mut cfg = SqliteConfig::new(path);
        for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
            let num = |v: &str| {
                v.parse::<u64>()
                    .map_err(|_| SqliteError::Config(format!("`{k}={v}` in `{url}`: not a number")))
            };
            match k.as_ref() {
                "durability" => cfg.durability = Durability::parse(&v)?,
                "poll_ms" => cfg.poll_interval = Duration::from_millis(num(&v)?.max(1)),
                "busy_timeout_ms" => cfg.busy_timeout = Duration::from_millis(num(&v)?),
                "max_message_size" => cfg.max_message_size = num(&v)? as usize,
                "max_batch" => cfg.max_batch = (num(&v)? as usize).max(1),
                "ack_delay_ms" => cfg.ack_delay = Duration::from_millis(num(&v)?),
                "pool_size" => cfg.pool_size = (num(&v)? as u32).max(1),
                "inbox_retention_s" => cfg.inbox_retention = Duration::from_secs(num(&v)?),
                other => {
                    return Err(SqliteError::Config(format!(
                        "unknown option `{other}` in `{url}`"
                    )))
                }
            }
        }
        Ok(cfg)
    }

    /// Sets the durability.
    pub fn durability(mut self, d: Durability) -> Self {
        self.durability = d;
        self
    }

    /// Sets the cross-process poll interval.
    pub fn poll_interval(mut self, d: Duration) -> Self {
        self.poll_interval = d.max(Duration::from_millis(1));
        self
    }

    /// Sets the busy timeout.
    pub fn busy_timeout(mut self, d: Duration) -> Self {
        self.busy_timeout = d;
        self
    }

    /// Sets the largest envelope accepted.
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.max_message_size = bytes;
        self
    }

    /// Sets the most operations per group commit.
    pub fn max_batch(mut self, n: usize) -> Self {
        self.max_batch = n.max(1);
        self
    }

    /// Sets how long a batch of nothing but acks waits for company (see
    /// [`SqliteConfig::ack_delay`]).
    pub fn ack_delay(mut self, d: Duration) -> Self {
        self.ack_delay = d;
        self
    }

    /// Sets the pool size.
    pub fn pool_size(mut self, n: u32) -> Self {
        self.pool_size = n.max(1);
        self
    }

    /// Sets how long inbox rows are kept.
    pub fn inbox_retention(mut self, d: Duration) -> Self {
        self.inbox_retention = d;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_url_options() {
        let c =
            SqliteConfig::from_url("sqlite://data/x.db?durability=os-buffered&poll_ms=20").unwrap();
        assert_eq!(c.path, PathBuf::from("data/x.db"));
        assert_eq!(c.durability, Durability::OsBuffered);
        assert_eq!(c.poll_interval, Duration::from_millis(20));
        assert_eq!(c.ack_delay, Duration::from_millis(2));
        let c = SqliteConfig::from_url("sqlite://x.db?ack_delay_ms=0").unwrap();
        assert_eq!(c.ack_delay, Duration::ZERO);
        let abs = SqliteConfig::from_url("sqlite:///tmp/a.db").unwrap();
        assert_eq!(abs.path, PathBuf::from("/tmp/a.db"));
        assert_eq!(abs.durability, Durability::Fsync);
    }

    #[test]
    fn rejects_bad_urls() {
        assert!(SqliteConfig::from_url("postgres://x").is_err());
        assert!(SqliteConfig::from_url("sqlite://x.db?durability=maybe").is_err());
        assert!(SqliteConfig::from_url("sqlite://x.db?poll_ms=abc").is_err());
        assert!(SqliteConfig::from_url("sqlite://x.db?bogus=1").is_err());
        assert!(SqliteConfig::from_url("sqlite::memory:").is_err());
    }
}
