//! `tidings dlq list` and `tidings dlq show`.

use std::io::Write;

use anyhow::Context;
use tidings::envelope::headers as h;
use tidings::transport::{DeadLetterQuery, Transport};
use tidings_admin::{DeadLetterView, DlqFilter};
use uuid::Uuid;

use crate::format::{ago, excerpt, opt, printable, table};
use crate::opt::{FilterArgs, ListArgs, ShowArgs};
use crate::Io;

/// Printed when RabbitMQ shows no queues: AMQP alone cannot list them.
pub(crate) const RABBITMQ_HINT: &str = "note: RabbitMQ cannot list queues over AMQP; Tidings \
     asks its management API (rabbitmq-plugins enable rabbitmq_management; add \
     ?management=http://HOST:15672 to the URL if it is elsewhere)";

/// The shared filter from the command line.
pub(crate) fn filter(f: &FilterArgs, ids: &[String], limit: usize) -> anyhow::Result<DlqFilter> {
    let ids = tidings_admin::parse_ids(&ids.join(","))?;
    Ok(DlqFilter {
        endpoint: f.endpoint.clone(),
        message_type: f.message_type.clone(),
        reason: f.reason.clone(),
        since: f.since.clone(),
        limit: Some(limit),
        ids: (!ids.is_empty()).then(|| {
            ids.iter()
                .map(Uuid::to_string)
                .collect::<Vec<_>>()
                .join(",")
        }),
        correlation_id: f.correlation_id.clone(),
    })
}

/// Rows of the dead-letter table.
pub(crate) fn rows(views: &[DeadLetterView]) -> Vec<Vec<String>> {
    views
        .iter()
        .map(|v| {
            vec![
                v.id.to_string(),
                ago(v.dead_lettered_at),
                v.endpoint.clone(),
                format!("{} v{}", v.message_type, v.version),
                opt(v.reason.as_deref()),
                opt(v.attempts),
                excerpt(v.error.as_deref().unwrap_or("-"), 60),
            ]
        })
        .collect()
}

/// Prints the dead-letter table.
pub(crate) fn print_table(out: &mut dyn Write, views: &[DeadLetterView]) -> std::io::Result<()> {
    table(
        out,
        &[
            "ID",
            "DEAD-LETTERED",
            "ENDPOINT",
            "TYPE",
            "REASON",
            "ATTEMPTS",
            "ERROR",
        ],
        &rows(views),
        &[5],
    )
}

pub(crate) async fn list(
    args: &ListArgs,
    t: &dyn Transport,
    io: &mut Io<'_>,
) -> anyhow::Result<()> {
    let f = filter(&args.filter, &[], args.limit)?;
    let found = f.list(t).await.context("listing dead letters")?;
    let views: Vec<DeadLetterView> = found.iter().map(DeadLetterView::from).collect();
    if args.json {
        let json = serde_json::to_string_pretty(&views)?;
        writeln!(io.out, "{}", printable(&json, true))?;
        return Ok(());
    }
    if views.is_empty() {
        writeln!(io.out, "no dead letters match")?;
        if t.name() == "rabbitmq" && args.filter.endpoint.is_none() {
            writeln!(
                io.out,
                "{RABBITMQ_HINT}; or name the endpoint with --endpoint"
            )?;
        }
        return Ok(());
    }
    print_table(io.out, &views)?;
    if args.limit > 0 && views.len() == args.limit {
        writeln!(
            io.out,
            "\nshowing the first {} (oldest first); --limit 0 shows all",
            args.limit
        )?;
    }
    Ok(())
}

pub(crate) async fn show(
    args: &ShowArgs,
    t: &dyn Transport,
    io: &mut Io<'_>,
) -> anyhow::Result<()> {
    let id = Uuid::parse_str(args.id.trim())
        .map_err(|_| anyhow::anyhow!("`{}` is not a message id (a UUID)", args.id))?;
    let query = DeadLetterQuery {
        ids: vec![id],
        ..Default::default()
    };
    let found = t
        .dead_letters(&query)
        .await
        .context("reading dead letters")?;
    let dl = found.first().with_context(|| {
        format!("no dead letter with id {id}: it may have been replayed or purged (see `tidings dlq list`)")
    })?;
    let v = DeadLetterView::from(dl);
    if args.json {
        let json = serde_json::to_string_pretty(&v)?;
        writeln!(io.out, "{}", printable(&json, true))?;
        return Ok(());
    }
    // Everything below comes from the message or the broker: escaped before printing.
    let o = &mut *io.out;
    let field =
        |o: &mut dyn Write, k: &str, v: String| writeln!(o, "{k:<16}{}", printable(&v, false));
    field(o, "id:", v.id.to_string())?;
    field(o, "endpoint:", v.endpoint.clone())?;
    field(o, "type:", format!("{} v{}", v.message_type, v.version))?;
    field(
        o,
        "dead-lettered:",
        format!(
            "{} ({})",
            v.dead_lettered_at.to_rfc3339(),
            ago(v.dead_lettered_at)
        ),
    )?;
    field(o, "sent:", v.sent_at.to_rfc3339())?;
    field(o, "correlation id:", opt(v.correlation_id.as_deref()))?;
    field(o, "partition key:", opt(v.partition_key.as_deref()))?;
    field(o, "source:", opt(v.source_endpoint.as_deref()))?;
    writeln!(o, "\nfault:")?;
    let fault_headers = [
        ("reason", h::FAULT_REASON),
        ("error", h::FAULT_ERROR),
        ("kind", h::FAULT_KIND),
        ("attempts", h::FAULT_ATTEMPTS),
        ("redeliveries", h::FAULT_REDELIVERIES),
        ("first failure", h::FAULT_FIRST_FAILURE),
        ("last failure", h::FAULT_LAST_FAILURE),
        ("original queue", h::FAULT_ORIGINAL_QUEUE),
        ("host", h::FAULT_HOST),
        ("replayed", h::REPLAYED),
    ];
    for (label, name) in fault_headers {
        if let Some(val) = v.headers.get(name) {
            writeln!(o, "  {:<16}{}", format!("{label}:"), printable(val, false))?;
        }
    }
    let others: Vec<_> = v
        .headers
        .iter()
        .filter(|(k, _)| !fault_headers.iter().any(|(_, n)| n == k))
        .collect();
    if !others.is_empty() {
        writeln!(o, "\nheaders:")?;
        for (k, val) in others {
            writeln!(o, "  {}: {}", printable(k, false), printable(val, false))?;
        }
    }
    writeln!(o, "\nbody ({}):", printable(&v.content_type, false))?;
    match &v.body {
        serde_json::Value::String(s)
            if serde_json::from_slice::<serde_json::Value>(&dl.envelope.body).is_err() =>
        {
            writeln!(o, "{}", printable(s, true))?
        }
        json => writeln!(
            o,
            "{}",
            printable(&serde_json::to_string_pretty(json)?, true)
        )?,
    }
    Ok(())
}
