//! What the deploy checks share: the commands the images run, parsed with the real
//! command-line parsers, and the queues each OrderFlow service consumes.
#![allow(dead_code, unreachable_pub, missing_docs)]

use clap::Parser;
use orderflow::opt::{Command, ServeArgs};
use orderflow::services::{
    analytics, inventory, notifications, payments, read_model, saga, shipping,
};
use orderflow::system::Service;
use serde_json::Value;

/// What a container runs.
#[derive(Debug)]
pub enum Runs {
    /// `orderflow-entrypoint ARGS`: `orderflow serve --port 8081 ARGS` (deploy/orderflow-entrypoint.sh).
    OrderFlow(ServeArgs),
    /// `tidings ARGS`.
    Tidings(tidings_cli::Opt),
}

/// The words of a YAML list.
pub fn strings(v: &Value, what: &str) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("{what}: a list, got {v}"))
        .iter()
        .map(|w| {
            w.as_str()
                .unwrap_or_else(|| panic!("{what}: strings only, got {w}"))
                .to_string()
        })
        .collect()
}

/// Parses a container's command line as the image runs it.
pub fn runs(argv: &[String], what: &str) -> Runs {
    match argv.first().map(String::as_str) {
        Some("orderflow-entrypoint") => {
            let mut full = vec![
                "orderflow".to_string(),
                "serve".into(),
                "--port".into(),
                "8081".into(),
            ];
            full.extend_from_slice(&argv[1..]);
            let opts = orderflow::Opts::try_parse_from(&full)
                .unwrap_or_else(|e| panic!("{what}: `orderflow serve` refuses {argv:?}:\n{e}"));
            match opts.command {
                Some(Command::Serve(args)) => Runs::OrderFlow(args),
                other => panic!("{what}: not `orderflow serve`: {other:?}"),
            }
        }
        Some("tidings") => Runs::Tidings(
            tidings_cli::Opt::try_parse_from(argv)
                .unwrap_or_else(|e| panic!("{what}: `tidings` refuses {argv:?}:\n{e}")),
        ),
        _ => panic!("{what}: runs neither orderflow-entrypoint nor tidings: {argv:?}"),
    }
}

/// The queues `service` consumes, from OrderFlow's own constants.
pub fn queues(service: Service) -> Vec<&'static str> {
    match service {
        Service::Inventory => vec![inventory::QUEUE],
        Service::Payments => vec![payments::QUEUE],
        Service::Shipping => vec![shipping::QUEUE],
        Service::Notifications => vec![notifications::QUEUE],
        Service::Saga => vec![saga::QUEUE],
        Service::Views => vec![read_model::QUEUE, analytics::QUEUE],
        Service::All | Service::Api => vec![],
    }
}

/// Every OrderFlow service a deployment must run somewhere.
pub const SERVICES: [Service; 6] = [
    Service::Inventory,
    Service::Payments,
    Service::Shipping,
    Service::Notifications,
    Service::Saga,
    Service::Views,
];
