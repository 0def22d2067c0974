//! Machine and service information for the report: cores, CPU, memory, kernel, rustc, and
//! the versions (and durability settings) of the servers that answer.

use crate::baseline;
use crate::opts::{BenchOpts, TransportKind};
use crate::report::Machine;

fn cpuinfo_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

fn memory_mb() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb / 1024)
}

fn kernel() -> String {
    std::fs::read_to_string("/proc/version")
        .ok()
        .and_then(|v| v.split(" (").next().map(str::to_string))
        .or_else(|| {
            std::process::Command::new("uname")
                .arg("-sr")
                .output()
                .ok()
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

fn rustc() -> String {
    std::process::Command::new("rustc")
        .arg("--version")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "rustc version unknown".into())
}

async fn postgres(url: &str) -> anyhow::Result<String> {
    use sqlx::Connection;
    let mut c = sqlx::PgConnection::connect(url).await?;
    let mut get = async |q: &'static str| -> anyhow::Result<String> {
        Ok(sqlx::query_scalar::<_, String>(q).fetch_one(&mut c).await?)
    };
    let v = get("SHOW server_version").await?;
    let sc = get("SHOW synchronous_commit").await?;
    let fsync = get("SHOW fsync").await?;
    c.close().await?;
    Ok(format!(
        "PostgreSQL {v} (synchronous_commit={sc}, fsync={fsync})"
    ))
}

/// Collects what is cheap to know about the machine and the reachable servers.
pub(crate) async fn collect(opts: &BenchOpts) -> Machine {
    let mut services = Vec::new();
    let mut kinds = opts.transports.clone();
    if opts.wants(crate::relay::SCENARIO) {
        kinds.push(TransportKind::Postgres); // the relay's PostgreSQL outbox
        kinds.sort();
        kinds.dedup();
    }
    for k in &kinds {
        if baseline::unreachable(*k, opts).await.is_some() {
            continue;
        }
        let info = match k {
            TransportKind::Memory => continue,
            TransportKind::Sqlite => Ok(format!(
                "SQLite (bundled with sqlx), file in a temporary directory on {}",
                std::env::temp_dir().display()
            )),
            TransportKind::Postgres => postgres(&opts.postgres_url).await,
            TransportKind::Rabbitmq => baseline::rabbitmq::server_version()
                .await
                .map(|v| format!("RabbitMQ {v} (quorum queues)")),
            TransportKind::Nats => baseline::nats::server_version(&opts.nats_url)
                .await
                .map(|v| format!("nats-server {v} (JetStream, file storage)")),
        };
        services.push(info.unwrap_or_else(|e| format!("{k}: version unknown ({e})")));
    }
    Machine {
        cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
        cpu: cpuinfo_model(),
        memory_mb: memory_mb(),
        kernel: kernel(),
        rustc: rustc(),
        services,
    }
}
