//! `orderflow scale` end to end: every replica a separate `orderflow serve` process (the
//! real binary). Skipped with a printed reason when a service does not answer (a failure
//! under CI=true).
//!
//! - On PostgreSQL, in a schema of this run's own: 2 APIs and 2 workers per service, orders
//!   across both APIs, one worker of each service SIGKILLed mid-run and restarted later:
//!   every invariant holds and both replicas of each service did work.
//! - The same on RabbitMQ (a vhost of the run's own, deleted afterwards) with the business
//!   tables in PostgreSQL and every process relaying its outbox.
//! - Back-pressure: payments as the bottleneck (one worker, one handler, a 200 ms gateway)
//!   at an offered load above its capacity: the APIs refuse orders (503 + Retry-After)
//!   instead of accepting orders the payment timeout would cancel; with four payments
//!   workers the same offered load is accepted and completes.

use std::process::Command;
use std::time::Duration;

const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/test";
const DEFAULT_AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// Whether `host:port` accepts a TCP connection; outside CI a `false` prints why the test
/// is skipped, under CI=true it fails the test.
fn answers(what: &str, host: &str, port: u16) -> bool {
    let addr = format!("{host}:{port}");
    let ok = std::net::ToSocketAddrs::to_socket_addrs(&addr)
        .ok()
        .and_then(|mut a| a.next())
        .is_some_and(|a| std::net::TcpStream::connect_timeout(&a, Duration::from_secs(2)).is_ok());
    if !ok {
        assert_ne!(
            std::env::var("CI").as_deref(),
            Ok("true"),
            "{what} not reachable at {addr} (CI=true)"
        );
        eprintln!("skipped: {what} not reachable at {addr}");
    }
    ok
}

fn url() -> Option<String> {
    let url = std::env::var("TIDINGS_PG_URL").unwrap_or_else(|_| DEFAULT_URL.to_string());
    let u = url::Url::parse(&url).unwrap();
    answers(
        "PostgreSQL",
        u.host_str().unwrap_or("127.0.0.1"),
        u.port().unwrap_or(5432),
    )
    .then_some(url)
}

/// RabbitMQ (`TIDINGS_AMQP_URL`) and its management API (the run makes a vhost of its own
/// through it).
fn amqp_url() -> Option<String> {
    let url = std::env::var("TIDINGS_AMQP_URL").unwrap_or_else(|_| DEFAULT_AMQP_URL.to_string());
    let u = url::Url::parse(&url).unwrap();
    let host = u.host_str().unwrap_or("127.0.0.1");
    (answers("RabbitMQ", host, u.port().unwrap_or(5672))
        && answers("RabbitMQ's management API", host, 15672))
    .then_some(url)
}

/// One scale run at a time: each starts 7–14 processes with 4 connections each, and the
/// server's connection limit (100 by default) is shared with every other test.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Runs `orderflow scale ARGS` in a schema of its own on PostgreSQL `url`, on it as the
/// transport or (with `broker`) as the business database; (success, stdout + the error).
fn scale(url: &str, broker: Option<&str>, tag: &str, args: &[&str]) -> (bool, String) {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let schema = format!(
        "of_scale_{tag}_{}_{}",
        std::process::id(),
        chrono::Utc::now().timestamp_millis()
    );
    let sep = if url.contains('?') { '&' } else { '?' };
    let pg = format!("{url}{sep}schema={schema}");
    let mut command = Command::new(env!("CARGO_BIN_EXE_orderflow"));
    command
        .arg("scale")
        .args(args)
        .arg("--data-dir")
        .arg(dir.path());
    match broker {
        Some(b) => command.env("TIDINGS_URL", b).env("ORDERFLOW_DB_URL", pg),
        None => command
            .env("TIDINGS_URL", pg)
            .env_remove("ORDERFLOW_DB_URL"),
    };
    let out = command.output().unwrap();
    let mut stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        // the error (with the children's `Error:` lines) without the backtrace
        let error: Vec<&str> = stderr
            .lines()
            .skip_while(|l| !l.starts_with("Error:"))
            .take_while(|l| !l.starts_with("Stack backtrace"))
            .collect();
        stdout.push_str(&error.join("\n"));
    }
    (out.status.success(), stdout)
}

/// The number after `label` in `text` (e.g. `"answered 202 ("` → orders shed).
fn number_before(text: &str, suffix: &str) -> u64 {
    let at = text
        .find(suffix)
        .unwrap_or_else(|| panic!("no `{suffix}` in {text}"));
    text[..at]
        .split_whitespace()
        .last()
        .and_then(|w| w.trim_start_matches('(').parse().ok())
        .unwrap_or_else(|| panic!("no number before `{suffix}` in {text}"))
}

/// The kill test's run: 12 s of load across 2 APIs, one worker of each service killed 3 s
/// into it and started 3 s later; every invariant holds and the work was shared: both
/// replicas of each of `shared` consumed work, and the second replica (never killed) of
/// each of `taken_over`.
fn kill_run(
    url: &str,
    broker: Option<&str>,
    tag: &str,
    shared: &[&str],
    taken_over: &[(&str, &str)],
) -> String {
    let (ok, out) = scale(
        url,
        broker,
        tag,
        &[
            "--seconds",
            "12",
            "--rate",
            "15",
            "--kill-after-ms",
            "3000",
            "--restart-after-ms",
            "3000",
            "--seed",
            "7",
        ],
    );
    assert!(ok, "{out}");
    assert!(
        out.contains("all 13 invariants hold with 14 processes, 6 killed and restarted"),
        "{out}"
    );
    assert!(!out.contains("[FAIL]"), "{out}");
    // both APIs took orders; both replicas of every service consumed work, and the killed
    // one started twice
    let apis: Vec<&str> = out
        .lines()
        .filter(|l| l.contains("orders accepted"))
        .collect();
    assert_eq!(apis.len(), 2, "{out}");
    for l in apis {
        assert!(number_before(l, "orders accepted") > 0, "{out}");
    }
    let share = |endpoint: &str| {
        out.lines()
            .find(|l| l.trim_start().starts_with(&format!("{endpoint} ")))
            .unwrap_or_else(|| panic!("no work-share line for {endpoint}: {out}"))
            .to_string()
    };
    for service in shared {
        let line = share(service);
        assert!(line.contains(&format!("{service}-1 ")), "{line}");
        assert!(line.contains(&format!("{service}-2 ")), "{line}");
        assert!(line.contains("2 starts"), "{line}");
    }
    for (endpoint, service) in taken_over {
        let line = share(endpoint);
        assert!(line.contains(&format!("{service}-2 ")), "{line}");
    }
    out
}

/// Competing consumers everywhere (PostgreSQL).
const ALL: &[&str] = &["inventory", "payments", "shipping", "notifications"];

#[test]
fn two_replicas_of_everything_with_a_worker_of_each_service_killed_keep_every_invariant() {
    let Some(url) = url() else { return };
    kill_run(&url, None, "kill", ALL, &[]);
}

#[test]
fn on_rabbitmq_two_replicas_of_everything_with_a_worker_of_each_service_killed_keep_every_invariant(
) {
    let Some(url) = url() else { return };
    let Some(amqp) = amqp_url() else { return };
    // The saga's and payments' queues are ordered: on RabbitMQ a single active consumer
    // (the victim, started first), the other replica standing by until the kill.
    let out = kill_run(
        &url,
        Some(&amqp),
        "rmq",
        &["inventory", "shipping", "notifications"],
        &[("order-saga", "saga"), ("payments", "payments")],
    );
    // the run had a vhost of its own and deleted it
    assert!(
        out.contains("RabbitMQ vhost of this run: orderflow-scale-"),
        "{out}"
    );
    assert!(out.contains("deleted the vhost orderflow-scale-"), "{out}");
    println!("{out}");
}

#[test]
fn the_api_sheds_load_the_payments_cannot_take_and_more_payment_workers_take_it() {
    let Some(url) = url() else { return };
    // one payments handler at a time, 200 ms a gateway call: about 5 captures/s per worker
    // (less with the gateway's transient failures), against 12 orders/s offered
    let common = [
        "--no-kill",
        "--workers",
        "1",
        "--apis",
        "1",
        "--seconds",
        "20",
        "--rate",
        "12",
        "--payments-concurrency",
        "1",
        "--payment-latency-ms",
        "200",
        "--payment-timeout-secs",
        "12",
        "--shed-after-ms",
        "3000",
    ];
    let (ok, one) = scale(
        &url,
        None,
        "bp1",
        &[&common[..], &["--payments-workers", "1"]].concat(),
    );
    assert!(ok, "{one}");
    let shed = number_before(&one, "shed with 503");
    assert!(shed > 0, "one payments worker: nothing was refused\n{one}");
    assert!(!one.contains("[FAIL]"), "{one}");

    let (ok, four) = scale(
        &url,
        None,
        "bp4",
        &[&common[..], &["--payments-workers", "4"]].concat(),
    );
    assert!(ok, "{four}");
    assert_eq!(
        number_before(&four, "shed with 503"),
        0,
        "four payments workers: orders were refused\n{four}"
    );
    assert!(
        !four.contains("payment-timeout"),
        "four payments workers: orders timed out\n{four}"
    );
    println!("one payments worker:\n{one}\nfour payments workers:\n{four}");
}
