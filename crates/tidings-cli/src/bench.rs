//! `tidings bench`: runs [`tidings_bench::run`] and prints its report (markdown, or JSON
//! with `--json`); fails when any row broke exactly-once or errored.

use tidings_bench::BenchOpts;

use crate::Io;

pub(crate) async fn run(opts: &BenchOpts, io: &mut Io<'_>) -> anyhow::Result<()> {
    let report = tidings_bench::run(opts.clone()).await?;
    if opts.json {
        writeln!(io.out, "{}", serde_json::to_string_pretty(&report)?)?;
    } else {
        // The command line goes into the report: URL arguments with credentials masked.
        let args: Vec<String> = std::env::args()
            .skip(1)
            .map(|a| {
                if a.contains("://") || a.contains('@') {
                    tidings::redact_url(&a)
                } else {
                    a
                }
            })
            .collect();
        let command = format!("tidings {}", args.join(" "));
        writeln!(io.out, "{}", tidings_bench::markdown(&report, &command))?;
    }
    io.out.flush()?;
    if !report.failures.is_empty() {
        anyhow::bail!(
            "{} row(s) failed:\n  {}",
            report.failures.len(),
            report.failures.join("\n  ")
        );
    }
    Ok(())
}
