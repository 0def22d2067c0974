//! `tidings topology --url http://HOST:PORT/admin | --from FILE --format text|mermaid|dot`:
//! the bus's [`TopologyReport`] as JSON, fetched from a running application's admin API
//! (`GET /topology`, see `tidings_admin::AdminState::topology`) or read from a file the
//! application wrote (`serde_json::to_string(bus.topology())`), read back through a mirror
//! struct and printed — or, with `--permissions`, the permissions each service needs
//! (see `permissions.rs`).

use std::collections::BTreeMap;
use std::io::Read;
use std::time::Duration;

use anyhow::{bail, Context};
use serde::Deserialize;
use tidings::topology::{EndpointReport, TopologyReport};

use crate::opt::{TopologyArgs, TopologyFormat};
use crate::Io;

#[derive(Debug, Deserialize)]
struct ReportFile {
    endpoints: Vec<EndpointFile>,
    #[serde(default)]
    routes: BTreeMap<String, String>,
    #[serde(default)]
    app_sends: Vec<String>,
    #[serde(default)]
    warnings: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct EndpointFile {
    name: String,
    #[serde(default)]
    receives: Vec<String>,
    #[serde(default)]
    subscribes: Vec<String>,
    #[serde(default)]
    sends: Vec<String>,
    #[serde(default)]
    ordered: bool,
}

impl From<ReportFile> for TopologyReport {
    fn from(f: ReportFile) -> Self {
        TopologyReport {
            endpoints: f
                .endpoints
                .into_iter()
                .map(|e| EndpointReport {
                    name: e.name,
                    receives: e.receives,
                    subscribes: e.subscribes,
                    sends: e.sends,
                    ordered: e.ordered,
                })
                .collect(),
            routes: f.routes,
            app_sends: f.app_sends,
            warnings: f.warnings,
            topology: Default::default(),
        }
    }
}

/// Where the report comes from: `--from` wins, else an `http(s)://` `--url`.
pub(crate) async fn run(
    args: &TopologyArgs,
    url: Option<&str>,
    timeout: Duration,
    io: &mut Io<'_>,
) -> anyhow::Result<()> {
    let (text, shown) = match (&args.from, url) {
        (Some(path), _) => (read_file(path)?, path.display().to_string()),
        (None, Some(url)) if is_http(url) => {
            let shown = tidings::redact_url(url);
            let text = crate::connect::scrub_result(
                fetch(url, args.token.as_deref(), timeout).await,
                url,
            )?;
            (text, format!("the report served at {shown}"))
        }
        (None, Some(url)) => bail!(
            "`tidings topology` reads a topology report, not a transport ({}): pass --url \
             http://HOST:PORT/ADMIN-PATH (the admin API of a running application, e.g. \
             http://127.0.0.1:8080/admin) or --from FILE",
            tidings::redact_url(url)
        ),
        (None, None) => bail!(
            "where from? pass --url http://HOST:PORT/ADMIN-PATH (the admin API of a running \
             application, e.g. http://127.0.0.1:8080/admin) or --from FILE (JSON the application \
             wrote with serde_json::to_string(bus.topology()); - for stdin)"
        ),
    };
    let file: ReportFile = serde_json::from_str(&text).with_context(|| {
        format!("{shown} is not a topology report: write it from your app with serde_json::to_string(bus.topology())")
    })?;
    let report = TopologyReport::from(file);
    let out = match (args.permissions, args.format) {
        (Some(target), _) => crate::permissions::render(&report, args, target)?,
        (None, TopologyFormat::Text) => report.to_text(),
        (None, TopologyFormat::Mermaid) => report.to_mermaid(),
        (None, TopologyFormat::Dot) => report.to_dot(),
    };
    write!(io.out, "{out}")?;
    Ok(())
}

fn read_file(path: &std::path::Path) -> anyhow::Result<String> {
    if path.as_os_str() == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("reading the topology from stdin")?;
        return Ok(text);
    }
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

fn is_http(url: &str) -> bool {
    let lower = url.trim().to_ascii_lowercase();
    lower.starts_with("http://") || lower.starts_with("https://")
}

/// `GET {base}/topology` as JSON, with errors that say what to check.
async fn fetch(base: &str, token: Option<&str>, timeout: Duration) -> anyhow::Result<String> {
    let shown = tidings::redact_url(base);
    if base.trim().to_ascii_lowercase().starts_with("https://") {
        bail!(
            "{shown}: this build of tidings speaks plain HTTP only; reach the admin API over \
             http (e.g. through an SSH tunnel), or save GET /topology to a file and use --from"
        );
    }
    let url = format!("{}/topology", base.trim().trim_end_matches('/'));
    let client = reqwest::Client::builder()
        .timeout(timeout)
        .build()
        .context("building the HTTP client")?;
    let mut req = client.get(&url);
    if let Some(t) = token.filter(|t| !t.is_empty()) {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.map_err(|e| {
        let why = if e.is_timeout() {
            format!(
                "no answer within {}s (--connect-timeout)",
                timeout.as_secs_f64()
            )
        } else {
            chain(&e.without_url())
        };
        anyhow::anyhow!(
            "could not reach the admin API at {shown}: {why}\n  check: the application is \
             running and serves its admin API at that address and path (OrderFlow's `serve` \
             prints it: \"Tidings dashboard on http://ADDR/admin/\")"
        )
    })?;
    let status = resp.status();
    let body = resp
        .text()
        .await
        .with_context(|| format!("reading the answer of {shown}/topology"))?;
    if status.is_success() {
        return Ok(body);
    }
    // Problem details (RFC 9457): the explanation is `detail`.
    let error = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["detail"].as_str().map(str::to_string))
        .map(|e| crate::format::printable(&e, false).into_owned());
    match (status.as_u16(), error) {
        (401, _) => bail!(
            "the admin API at {shown} wants a bearer token: pass --token or set TIDINGS_ADMIN_TOKEN"
        ),
        (404, Some(e)) if e.contains("no topology") => {
            bail!("the application at {shown} does not serve its topology: {e}")
        }
        (404, _) => bail!(
            "no admin API at {shown} (GET /topology answered 404): check the path the \
             application mounts it under (OrderFlow: /admin)"
        ),
        (_, e) => bail!(
            "GET {shown}/topology answered {status}{}",
            e.map_or_else(String::new, |e| format!(": {e}"))
        ),
    }
}

/// An error and its causes, `: `-separated.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
