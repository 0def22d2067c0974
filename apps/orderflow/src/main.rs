//! `orderflow`: runs the order pipeline and its load test (see `orderflow --help`).

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    orderflow::run(orderflow::Opts::parse()).await
}
