//! `tidings dlq replay` and `tidings dlq purge`: list what matches, then act in batches of
//! ids with a progress bar, so what is touched is exactly what was listed.

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use tidings::transport::{DeadLetterQuery, Transport};
use tidings_admin::DeadLetterView;
use uuid::Uuid;

use crate::dlq::{filter, print_table};
use crate::opt::{PurgeArgs, ReplayArgs};
use crate::Io;

/// Ids per transport call.
const BATCH: usize = 100;

enum Op<'a> {
    Replay(Option<&'a str>),
    Purge,
}

pub(crate) async fn replay(
    args: &ReplayArgs,
    t: &dyn Transport,
    io: &mut Io<'_>,
) -> anyhow::Result<()> {
    let f = filter(&args.filter, &args.ids, args.limit)?;
    let found = f.list(t).await.context("listing dead letters")?;
    let dest = args.to.as_deref().map_or_else(
        || "to their original queues".to_string(),
        |q| format!("to `{q}`"),
    );
    if found.is_empty() {
        writeln!(io.out, "no dead letters match: nothing replayed")?;
        return Ok(());
    }
    let ids: Vec<Uuid> = found.iter().map(|d| d.envelope.id).collect();
    if args.dry_run {
        let views: Vec<DeadLetterView> = found.iter().map(DeadLetterView::from).collect();
        print_table(io.out, &views)?;
        writeln!(
            io.out,
            "\ndry run: would replay {} dead letter(s) {dest}",
            ids.len()
        )?;
        return Ok(());
    }
    let n = in_batches(t, &ids, Op::Replay(args.to.as_deref()), io.progress).await?;
    writeln!(io.out, "replayed {n} dead letter(s) {dest}")?;
    if n < ids.len() as u64 {
        writeln!(
            io.out,
            "{} were gone before their turn (replayed or purged by someone else meanwhile)",
            ids.len() as u64 - n
        )?;
    }
    Ok(())
}

pub(crate) async fn purge(
    args: &PurgeArgs,
    t: &dyn Transport,
    io: &mut Io<'_>,
) -> anyhow::Result<()> {
    let f = filter(&args.filter, &args.ids, args.limit)?;
    let found = f.list(t).await.context("listing dead letters")?;
    if found.is_empty() {
        writeln!(io.out, "no dead letters match: nothing purged")?;
        return Ok(());
    }
    let ids: Vec<Uuid> = found.iter().map(|d| d.envelope.id).collect();
    if !args.yes {
        if !io.interactive {
            anyhow::bail!(
                "refusing to purge {} dead letter(s) without --yes: stdin is not a terminal, so nobody can confirm",
                ids.len()
            );
        }
        let views: Vec<DeadLetterView> = found.iter().take(20).map(DeadLetterView::from).collect();
        print_table(io.out, &views)?;
        if ids.len() > views.len() {
            writeln!(io.out, "... and {} more", ids.len() - views.len())?;
        }
        io.out.flush()?;
        if !confirm(&format!(
            "Delete these {} dead letter(s) for good? [y/N] ",
            ids.len()
        ))
        .await?
        {
            writeln!(io.out, "aborted: nothing purged")?;
            return Ok(());
        }
    }
    let n = in_batches(t, &ids, Op::Purge, io.progress).await?;
    writeln!(io.out, "purged {n} dead letter(s)")?;
    Ok(())
}

async fn confirm(question: &str) -> anyhow::Result<bool> {
    eprint!("{question}");
    let answer = tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).map(|_| line)
    })
    .await
    .context("reading the answer")??;
    Ok(matches!(
        answer.trim().to_ascii_lowercase().as_str(),
        "y" | "yes"
    ))
}

async fn in_batches(
    t: &dyn Transport,
    ids: &[Uuid],
    op: Op<'_>,
    progress: bool,
) -> anyhow::Result<u64> {
    let (verb, done_verb) = match op {
        Op::Replay(_) => ("replaying", "replayed"),
        Op::Purge => ("purging", "purged"),
    };
    let bar = if progress {
        let b = ProgressBar::new(ids.len() as u64);
        if let Ok(style) =
            ProgressStyle::with_template("{spinner} {msg} [{bar:30}] {pos}/{len} ({eta})")
        {
            b.set_style(style.progress_chars("=> "));
        }
        b.set_message(verb);
        b
    } else {
        ProgressBar::hidden()
    };
    let mut total = 0;
    for chunk in ids.chunks(BATCH) {
        let query = DeadLetterQuery {
            ids: chunk.to_vec(),
            ..Default::default()
        };
        let n = match op {
            Op::Replay(to) => t.replay(&query, to).await,
            Op::Purge => t.purge(&query).await,
        }
        .with_context(|| format!("{verb} dead letters ({total} {done_verb} before this failed)"))?;
        total += n;
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    Ok(total)
}
