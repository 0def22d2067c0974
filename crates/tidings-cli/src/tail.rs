//! `tidings tail --event TYPE..`: declares a temporary queue of its own subscribed to the
//! given event types and prints each message — it takes nothing from other consumers —
//! and deletes that queue when it stops (count, duration, Ctrl-C or an error).

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

/// How long tail waits for the transport to delete its queue on the way out.
const DELETE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

pub(crate) async fn run(args: &TailArgs, t: &dyn Transport, io: &mut Io<'_>) -> anyhow::Result<()> {
    let simple = Uuid::new_v4().simple().to_string();
    let queue = format!("{QUEUE_PREFIX}{}", &simple[..12]);
    let declared = t
        .declare(&Topology {
            queues: vec![QueueSpec {
                name: queue.clone(),
                subscriptions: args.events.clone(),
                temporary: true,
                ..Default::default()
            }],
        })
        .await
        .with_context(|| format!("declaring the temporary queue {queue}"));
    let outcome = match declared {
        Ok(()) => follow(args, t, &queue, io).await,
        Err(e) => Err(e),
    };
    // Also after a failed declare: it may have created part of the queue.
    delete(t, &queue).await;
    let seen = outcome?;
    eprintln!("{seen} message(s)");
    Ok(())
}

/// Deletes the temporary queue, best effort: a failure is a warning, not an error.
async fn delete(t: &dyn Transport, queue: &str) {
    match tokio::time::timeout(DELETE_TIMEOUT, t.delete_queue(queue)).await {
        Ok(Ok(())) => eprintln!("deleted the temporary queue {queue}"),
        Ok(Err(e)) => eprintln!("warning: could not delete the temporary queue {queue}: {e}"),
        Err(_) => eprintln!(
            "warning: could not delete the temporary queue {queue}: no answer within {DELETE_TIMEOUT:?}"
        ),
    }
}

/// Prints what arrives on `queue` until the count, the duration or Ctrl-C; returns how
/// many messages it printed.
async fn follow(
    args: &TailArgs,
    t: &dyn Transport,
    queue: &str,
    io: &mut Io<'_>,
) -> anyhow::Result<u64> {
    let mut rx = t
        .receive(queue, ReceiveOptions::default())
        .await
        .with_context(|| format!("receiving from {queue}"))?;
    eprintln!(
        "tailing {} on temporary queue {queue} (Ctrl-C to stop)",
        args.events.join(", ")
    );
    let deadline = args.duration.map(|d| tokio::time::Instant::now() + d);
    let mut seen = 0u64;
    let result = async {
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
        anyhow::Ok(())
    }
    .await;
    let closed = rx.close().await;
    result?;
    closed?;
    Ok(seen)
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
        writeln!(out, "{}", crate::format::printable(&v.to_string(), false))?;
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
    writeln!(out, "{}", crate::format::printable(&line, false))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use tidings::transport::memory::MemoryTransport;

    use super::*;

    fn queues(names: &[tidings::transport::QueueStats]) -> Vec<String> {
        names
            .iter()
            .map(|s| s.queue.clone())
            .filter(|q| q.starts_with(QUEUE_PREFIX))
            .collect()
    }

    #[tokio::test]
    async fn tail_deletes_its_queue_when_it_stops() {
        let t = Arc::new(MemoryTransport::new());
        let args = TailArgs {
            events: vec!["shop.order-placed".into()],
            count: None,
            duration: Some(Duration::from_millis(500)),
            body_chars: 0,
            json: false,
        };
        let tt = t.clone();
        let task = tokio::spawn(async move {
            let mut out = Vec::new();
            let mut io = Io {
                out: &mut out,
                interactive: false,
                progress: false,
            };
            run(&args, &*tt, &mut io).await.map_err(|e| e.to_string())
        });
        let mut seen = Vec::new();
        for _ in 0..100 {
            seen = queues(&t.stats().await.unwrap());
            if !seen.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(seen.len(), 1, "tail declared one temporary queue");
        task.await.unwrap().unwrap();
        assert_eq!(
            queues(&t.stats().await.unwrap()),
            Vec::<String>::new(),
            "tail deleted its queue when it stopped"
        );
    }
}
