//! `tidings queues [--watch] [--json]`.

use tidings::transport::Transport;
use tidings_admin::QueueView;

use crate::format::{age, opt, table};
use crate::opt::QueuesArgs;
use crate::Io;

pub(crate) async fn run(
    args: &QueuesArgs,
    t: &dyn Transport,
    io: &mut Io<'_>,
) -> anyhow::Result<()> {
    if !args.watch {
        return once(args, t, io, false).await;
    }
    let mut tick = tokio::time::interval(args.interval);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
        if !args.json {
            // Clear the screen, cursor home.
            write!(io.out, "\x1b[2J\x1b[H")?;
            writeln!(
                io.out,
                "{} — every {}s, Ctrl-C to stop\n",
                chrono::Local::now().format("%H:%M:%S"),
                args.interval.as_secs_f64()
            )?;
        }
        once(args, t, io, true).await?;
        io.out.flush()?;
    }
}

async fn once(
    args: &QueuesArgs,
    t: &dyn Transport,
    io: &mut Io<'_>,
    line: bool,
) -> anyhow::Result<()> {
    let stats = t.stats().await?;
    if args.json {
        let views: Vec<QueueView> = stats.iter().map(QueueView::from).collect();
        if line {
            let json = serde_json::to_string(&views)?;
            writeln!(io.out, "{}", crate::format::printable(&json, false))?;
        } else {
            let json = serde_json::to_string_pretty(&views)?;
            writeln!(io.out, "{}", crate::format::printable(&json, true))?;
        }
        return Ok(());
    }
    if stats.is_empty() {
        writeln!(io.out, "no queues declared on this {} transport", t.name())?;
        if t.name() == "rabbitmq" {
            writeln!(io.out, "{}", crate::dlq::RABBITMQ_HINT)?;
        }
        return Ok(());
    }
    let rows: Vec<Vec<String>> = stats
        .iter()
        .map(|s| {
            vec![
                s.queue.clone(),
                s.ready.to_string(),
                opt(s.in_flight),
                opt(s.scheduled),
                s.oldest_age.map_or_else(|| "-".into(), age),
                s.error_depth.to_string(),
                opt(s.parked_keys),
            ]
        })
        .collect();
    table(
        io.out,
        &[
            "QUEUE",
            "READY",
            "IN FLIGHT",
            "SCHEDULED",
            "OLDEST",
            "ERRORS",
            "PARKED KEYS",
        ],
        &rows,
        &[1, 2, 3, 4, 5, 6],
    )?;
    Ok(())
}
