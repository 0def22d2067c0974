//! The raw baselines, one module each, and [`open`]: Tidings or its baseline on a transport,
//! by kind.

pub mod mpsc;
pub mod nats;
pub mod postgres;
pub mod rabbitmq;
pub mod sqlite;

use std::time::Duration;

use crate::opts::{BenchOpts, TransportKind};
use crate::system::{Setup, System};
use crate::tidings_sys::TidingsSystem;

/// The server URL of `kind` (empty for in-process ones).
pub fn url(kind: TransportKind, opts: &BenchOpts) -> &str {
    match kind {
        TransportKind::Memory | TransportKind::Sqlite => "",
        TransportKind::Postgres => &opts.postgres_url,
        TransportKind::Rabbitmq => &opts.amqp_url,
        TransportKind::Nats => &opts.nats_url,
    }
}

/// Opens Tidings (`raw == false`) or the raw baseline on `kind`.
pub async fn open(
    kind: TransportKind,
    raw: bool,
    url: &str,
    setup: &Setup,
) -> anyhow::Result<Box<dyn System>> {
    Ok(match (kind, raw) {
        (k, false) => Box::new(TidingsSystem::open(k, url, setup).await?),
        (TransportKind::Memory, true) => Box::new(mpsc::MpscSystem::open(setup)),
        (TransportKind::Sqlite, true) => Box::new(sqlite::RawSqlite::open(setup).await?),
        (TransportKind::Postgres, true) => Box::new(postgres::RawPostgres::open(url, setup).await?),
        (TransportKind::Rabbitmq, true) => Box::new(rabbitmq::RawRabbit::open(url, setup).await?),
        (TransportKind::Nats, true) => Box::new(nats::RawNats::open(url, setup).await?),
    })
}

/// What the baseline of `kind` is, for the report.
pub fn name(kind: TransportKind, raw: bool) -> &'static str {
    match (kind, raw) {
        (TransportKind::Memory, false) => "Tidings memory",
        (TransportKind::Sqlite, false) => "Tidings SQLite + inbox",
        (TransportKind::Postgres, false) => "Tidings PostgreSQL",
        (TransportKind::Rabbitmq, false) => "Tidings RabbitMQ",
        (TransportKind::Nats, false) => "Tidings NATS",
        (TransportKind::Memory, true) => "raw tokio mpsc",
        (TransportKind::Sqlite, true) => "raw SQLite queue (sqlx)",
        (TransportKind::Postgres, true) => "raw PG SKIP LOCKED",
        (TransportKind::Rabbitmq, true) => "raw lapin",
        (TransportKind::Nats, true) => "raw async-nats JetStream",
    }
}

/// What an acknowledged send survives on `kind`.
pub fn durability(kind: TransportKind) -> &'static str {
    match kind {
        TransportKind::Memory => "none (in memory)",
        TransportKind::Sqlite => "fsync before ack (WAL, synchronous=FULL)",
        TransportKind::Postgres => "server commit (synchronous_commit, fsync: see above)",
        TransportKind::Rabbitmq => "fsync before confirm (quorum queue, persistent)",
        TransportKind::Nats => "no fsync before ack (file storage, server sync_interval)",
    }
}

/// Why `kind`'s server cannot be used, if it cannot: it must accept a TCP connection.
pub async fn unreachable(kind: TransportKind, opts: &BenchOpts) -> Option<String> {
    let u = url(kind, opts);
    if u.is_empty() {
        return None;
    }
    let Ok(parsed) = url_host_port(u) else {
        return Some(format!("cannot read host and port from the {kind} URL"));
    };
    let connect = tokio::net::TcpStream::connect(parsed.clone());
    match tokio::time::timeout(Duration::from_secs(3), connect).await {
        Ok(Ok(_)) => None,
        Ok(Err(e)) => Some(format!("{kind} not reachable at {parsed}: {e}")),
        Err(_) => Some(format!(
            "{kind} not reachable at {parsed}: no answer within 3s"
        )),
    }
}

fn url_host_port(u: &str) -> Result<String, ()> {
    let rest = u.split_once("://").map(|(_, r)| r).ok_or(())?;
    let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
    let hostport = rest.split(['/', '?']).next().ok_or(())?;
    if hostport.is_empty() {
        return Err(());
    }
    let default = if u.starts_with("postgres") {
        5432
    } else if u.starts_with("amqp") {
        5672
    } else {
        4222
    };
    Ok(
        if hostport
            .rsplit_once(':')
            .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
        {
            hostport.to_string()
        } else {
            format!("{hostport}:{default}")
        },
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn host_and_port_come_from_urls() {
        assert_eq!(
            super::url_host_port("amqp://guest:guest@127.0.0.1:5672/%2f").unwrap(),
            "127.0.0.1:5672"
        );
        assert_eq!(
            super::url_host_port("postgres://postgres@127.0.0.1/test").unwrap(),
            "127.0.0.1:5432"
        );
    }
}
