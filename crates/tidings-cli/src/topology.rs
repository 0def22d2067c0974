//! `tidings topology --from FILE --format text|mermaid|dot`: the application writes its
//! bus's [`TopologyReport`] as JSON (`serde_json::to_string(bus.topology())`); this reads
//! it back through a mirror struct and prints it.

use std::collections::BTreeMap;
use std::io::Read;

use anyhow::Context;
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

pub(crate) fn run(args: &TopologyArgs, io: &mut Io<'_>) -> anyhow::Result<()> {
    let shown = args.from.display();
    let mut text = String::new();
    if args.from.as_os_str() == "-" {
        std::io::stdin()
            .read_to_string(&mut text)
            .context("reading the topology from stdin")?;
    } else {
        text = std::fs::read_to_string(&args.from).with_context(|| format!("reading {shown}"))?;
    }
    let file: ReportFile = serde_json::from_str(&text).with_context(|| {
        format!("{shown} is not a topology report: write it from your app with serde_json::to_string(bus.topology())")
    })?;
    let report = TopologyReport::from(file);
    let out = match args.format {
        TopologyFormat::Text => report.to_text(),
        TopologyFormat::Mermaid => report.to_mermaid(),
        TopologyFormat::Dot => report.to_dot(),
    };
    write!(io.out, "{out}")?;
    Ok(())
}
