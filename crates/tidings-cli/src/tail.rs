//! `tidings tail --event TYPE..`: declares a temporary queue of its own subscribed to the
//! given event types and prints each message — it takes nothing from other consumers.

use std::io::Write;

use anyhow::Context;
use tidings::transport::{QueueSpec, ReceiveOptions, Topology, Transport};
use tidings::Envelope;
use uuid::Uuid;

use crate::format::excerpt;
use crate::opt::TailArgs;
use crate::Io;

/// Name prefix of the temporary queues `tidings tail` declares.
pub(crate) const QUEUE_PREFIX: &str = "tidings-tail-";

pub(crate) async fn run(args: &TailArgs, t: &dyn Transport, io: &mut Io<'_>) -> anyhow::Result<()> {
    let simple = Uuid::new_v4().simple().to_string();
    let queue = format!("{QUEUE_PREFIX}{}", &simple[..12]);
    t.declare(&Topology {
        queues: vec![QueueSpec {
            name: queue.clone(),
            subscriptions: args.events.clone(),
            temporary: true,
            ..Default::default()
        }],
    })
    .await
    .with_context(|| format!("declaring the temporary queue {queue}"))?;
    let mut rx = t
        .receive(&queue, ReceiveOptions::default())
        .await
        .with_context(|| format!("receiving from {queue}"))?;
    eprintln!(
        "tailing {} on temporary queue {queue} (Ctrl-C to stop)",
        args.events.join(", ")
    );
    let deadline = args.duration.map(|d| tokio::time::Instant::now() + d);
    let mut seen = 0u64;
    while args.count.is_none_or(|c| seen < c) {
        let next = tokio::select! {
            d = rx.recv() => d?,
            _ = tokio::signal::ctrl_c() => break,
            _ = sleep_until(deadline) => break,
        };
        let Some(delivery) = next else { break };
        print(io.out, &delivery.envelope, args)?;
        io.out.flush()?;
        delivery.ack().await?;
        seen += 1;
    }
    rx.close().await?;
    eprintln!("{seen} message(s); the temporary queue {queue} is left to the transport to remove");
    Ok(())
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

fn print(out: &mut dyn Write, e: &Envelope, args: &TailArgs) -> anyhow::Result<()> {
    if args.json {
        let v = serde_json::json!({
            "type": e.message_type,
            "version": e.version,
            "id": e.id,
            "correlation_id": e.correlation_id,
            "sent_at": e.sent_at,
            "partition_key": e.partition_key,
            "body": tidings_admin::body_value(&e.body),
        });
        writeln!(out, "{v}")?;
        return Ok(());
    }
    let mut line = format!(
        "{}  {} v{}  id={}  correlation={}",
        e.sent_at
            .with_timezone(&chrono::Local)
            .format("%H:%M:%S%.3f"),
        e.message_type,
        e.version,
        e.id,
        e.correlation_id.as_deref().unwrap_or("-"),
    );
    if args.body_chars > 0 {
        line.push_str("  ");
        line.push_str(&excerpt(&String::from_utf8_lossy(&e.body), args.body_chars));
    }
    writeln!(out, "{line}")?;
    Ok(())
}
