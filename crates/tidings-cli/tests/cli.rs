//! `tidings` commands driven in-process (`execute` on a MemoryTransport) and through the
//! binary (errors, topology, and — once the sqlite transport is wired into `connect` —
//! dead letters across processes).

use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use tidings::transport::memory::MemoryTransport;
use tidings::transport::{Outgoing, QueueSpec, ReceiveOptions, Topology, Transport};
use tidings::{Envelope, Fault, FaultReason};
use tidings_admin::{DeadLetterView, QueueView};
use tidings_cli::{execute, Io, Opt};

async fn transport() -> Arc<dyn Transport> {
    let t: Arc<dyn Transport> = Arc::new(MemoryTransport::new());
    declare(&t).await;
    t
}

async fn declare(t: &Arc<dyn Transport>) {
    t.declare(&Topology {
        queues: vec![
            QueueSpec {
                name: "orders".into(),
                subscriptions: vec!["shop.order-placed".into()],
                ..Default::default()
            },
            QueueSpec {
                name: "payments".into(),
                ..Default::default()
            },
        ],
    })
    .await
    .unwrap();
}

async fn dead_letter(
    t: &Arc<dyn Transport>,
    queue: &str,
    ty: &str,
    reason: FaultReason,
    corr: &str,
) -> uuid::Uuid {
    let mut env = Envelope::new(ty, 1, r#"{"order_id":42,"sku":"A-1"}"#);
    env.correlation_id = Some(corr.into());
    let id = env.id;
    t.send(vec![Outgoing::to_queue(queue, env)]).await.unwrap();
    let mut rx = t.receive(queue, ReceiveOptions::default()).await.unwrap();
    let mut d = rx.recv().await.unwrap().unwrap();
    Fault::new(reason, "stock service said no", queue).apply(&mut d.envelope);
    d.dead_letter().await.unwrap();
    rx.close().await.unwrap();
    id
}

/// Three dead letters: orders/handler-failed, orders/panicked, payments/timed-out.
async fn seeded() -> (Arc<dyn Transport>, Vec<uuid::Uuid>) {
    let t = transport().await;
    let ids = vec![
        dead_letter(
            &t,
            "orders",
            "shop.reserve",
            FaultReason::HandlerFailed,
            "c-1",
        )
        .await,
        dead_letter(&t, "orders", "shop.reserve", FaultReason::Panicked, "c-2").await,
        dead_letter(&t, "payments", "shop.charge", FaultReason::TimedOut, "c-3").await,
    ];
    (t, ids)
}

async fn exec(t: &Arc<dyn Transport>, args: &[&str]) -> (anyhow::Result<()>, String) {
    let mut argv = vec!["tidings", "--url", "memory://"];
    argv.extend_from_slice(args);
    let opt = Opt::try_parse_from(argv).unwrap();
    let mut out = Vec::new();
    let mut io = Io {
        out: &mut out,
        interactive: false,
        progress: false,
    };
    let r = execute(&opt, t.clone(), &mut io).await;
    (r, String::from_utf8(out).unwrap())
}

async fn ok(t: &Arc<dyn Transport>, args: &[&str]) -> String {
    let (r, out) = exec(t, args).await;
    if let Err(e) = r {
        panic!("{args:?} failed: {e:#}\n{out}");
    }
    out
}

async fn list_json(t: &Arc<dyn Transport>, args: &[&str]) -> Vec<DeadLetterView> {
    let mut a = vec!["dlq", "list", "--json"];
    a.extend_from_slice(args);
    serde_json::from_str(&ok(t, &a).await).unwrap()
}

#[tokio::test]
async fn queues_table_and_json() {
    let (t, _) = seeded().await;
    let out = ok(&t, &["queues"]).await;
    assert!(out.starts_with("QUEUE"), "{out}");
    let orders = out.lines().find(|l| l.starts_with("orders")).unwrap();
    let cols: Vec<&str> = orders.split_whitespace().collect();
    assert_eq!(cols, ["orders", "0", "0", "0", "-", "2", "0"], "{out}");
    let views: Vec<QueueView> = serde_json::from_str(&ok(&t, &["queues", "--json"]).await).unwrap();
    assert_eq!(views.len(), 2);
    assert_eq!(
        views
            .iter()
            .find(|q| q.queue == "payments")
            .unwrap()
            .error_depth,
        1
    );
}

#[tokio::test]
async fn dlq_list_filters() {
    let (t, ids) = seeded().await;
    assert_eq!(list_json(&t, &[]).await.len(), 3);
    assert_eq!(list_json(&t, &["--endpoint", "orders"]).await.len(), 2);
    assert_eq!(list_json(&t, &["--type", "shop.charge"]).await.len(), 1);
    assert_eq!(list_json(&t, &["--reason", "panicked"]).await[0].id, ids[1]);
    assert_eq!(list_json(&t, &["--since", "1h"]).await.len(), 3);
    assert_eq!(
        list_json(&t, &["--since", "2999-01-01T00:00:00Z"])
            .await
            .len(),
        0
    );
    assert_eq!(list_json(&t, &["--limit", "1"]).await[0].id, ids[0]);
    assert_eq!(
        list_json(&t, &["--correlation-id", "c-3"]).await[0].id,
        ids[2]
    );
    let table = ok(&t, &["dlq", "list", "--endpoint", "orders"]).await;
    assert!(table.starts_with("ID"), "{table}");
    assert_eq!(table.lines().count(), 3, "{table}");
    assert!(
        table.contains("handler-failed") && table.contains("panicked"),
        "{table}"
    );
    assert!(ok(&t, &["dlq", "list", "--reason", "expired"])
        .await
        .contains("no dead letters match"));
    assert!(Opt::try_parse_from(["tidings", "dlq", "list", "--since", "soon"]).is_err());
}

#[tokio::test]
async fn dlq_show_text_and_json() {
    let (t, ids) = seeded().await;
    let id = ids[0].to_string();
    let out = ok(&t, &["dlq", "show", &id]).await;
    for want in [
        "handler-failed",
        "stock service said no",
        "original queue:",
        "\"order_id\": 42",
        "correlation id: c-1",
    ] {
        assert!(out.contains(want), "missing {want:?} in\n{out}");
    }
    let v: DeadLetterView =
        serde_json::from_str(&ok(&t, &["dlq", "show", &id, "--json"]).await).unwrap();
    assert_eq!(v.id, ids[0]);
    assert_eq!(v.body["sku"], "A-1");
    let (r, _) = exec(&t, &["dlq", "show", &uuid::Uuid::now_v7().to_string()]).await;
    assert!(format!("{:#}", r.unwrap_err()).contains("no dead letter with id"));
    let (r, _) = exec(&t, &["dlq", "show", "xyz"]).await;
    assert!(format!("{:#}", r.unwrap_err()).contains("not a message id"));
}

#[tokio::test]
async fn dlq_replay_with_filters_dry_run_and_target() {
    let (t, ids) = seeded().await;
    let out = ok(&t, &["dlq", "replay", "--endpoint", "orders", "--dry-run"]).await;
    assert!(out.contains("would replay 2"), "{out}");
    assert_eq!(list_json(&t, &[]).await.len(), 3, "dry run moves nothing");

    let out = ok(&t, &["dlq", "replay", "--id", &ids[1].to_string()]).await;
    assert!(
        out.contains("replayed 1 dead letter(s) to their original queues"),
        "{out}"
    );
    let stats = t.stats().await.unwrap();
    let orders = stats.iter().find(|s| s.queue == "orders").unwrap();
    assert_eq!((orders.ready, orders.error_depth), (1, 1));

    let (r, _) = exec(
        &t,
        &["dlq", "replay", "--reason", "timed-out", "--to", "nowhere"],
    )
    .await;
    assert!(format!("{:#}", r.unwrap_err()).contains("nowhere"));
    assert_eq!(
        list_json(&t, &[]).await.len(),
        2,
        "a bad target loses nothing"
    );

    let out = ok(
        &t,
        &["dlq", "replay", "--reason", "timed-out", "--to", "orders"],
    )
    .await;
    assert!(
        out.contains("replayed 1 dead letter(s) to `orders`"),
        "{out}"
    );
    let stats = t.stats().await.unwrap();
    assert_eq!(stats.iter().find(|s| s.queue == "orders").unwrap().ready, 2);
    assert!(ok(&t, &["dlq", "replay", "--reason", "timed-out"])
        .await
        .contains("nothing replayed"));
}

#[tokio::test]
async fn dlq_purge_needs_yes_without_a_terminal() {
    let (t, _) = seeded().await;
    let (r, _) = exec(&t, &["dlq", "purge", "--endpoint", "orders"]).await;
    let e = format!("{:#}", r.unwrap_err());
    assert!(
        e.contains("refusing to purge 2 dead letter(s) without --yes"),
        "{e}"
    );
    assert_eq!(list_json(&t, &[]).await.len(), 3);
    let out = ok(
        &t,
        &[
            "dlq",
            "purge",
            "--endpoint",
            "orders",
            "--reason",
            "panicked",
            "--yes",
        ],
    )
    .await;
    assert!(out.contains("purged 1 dead letter(s)"), "{out}");
    let left = list_json(&t, &[]).await;
    assert_eq!(left.len(), 2);
    assert!(left.iter().all(|d| d.reason.as_deref() != Some("panicked")));
    assert!(ok(&t, &["dlq", "purge", "-y"]).await.contains("purged 2"));
    assert!(ok(&t, &["dlq", "purge"]).await.contains("nothing purged"));
}

#[tokio::test]
async fn tail_prints_events_from_its_own_queue() {
    let t = transport().await;
    let opt = Opt::try_parse_from([
        "tidings",
        "tail",
        "--event",
        "shop.order-placed",
        "--count",
        "2",
        "--duration",
        "20s",
    ])
    .unwrap();
    let tt = t.clone();
    let task = tokio::spawn(async move {
        let mut out = Vec::new();
        let mut io = Io {
            out: &mut out,
            interactive: false,
            progress: false,
        };
        let r = execute(&opt, tt, &mut io).await;
        (
            r.map_err(|e| e.to_string()),
            String::from_utf8(out).unwrap(),
        )
    });
    // Wait for its temporary queue.
    for _ in 0..200 {
        if t.stats()
            .await
            .unwrap()
            .iter()
            .any(|s| s.queue.starts_with("tidings-tail-"))
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for (i, ty) in ["shop.order-placed", "shop.other", "shop.order-placed"]
        .iter()
        .enumerate()
    {
        let mut env = Envelope::new(*ty, 1, format!(r#"{{"n":{i}}}"#));
        env.correlation_id = Some(format!("corr-{i}"));
        t.send(vec![Outgoing::publish(env)]).await.unwrap();
    }
    let (r, out) = tokio::time::timeout(Duration::from_secs(20), task)
        .await
        .unwrap()
        .unwrap();
    r.unwrap();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(lines[0].contains("shop.order-placed v1") && lines[0].contains("correlation=corr-0"));
    assert!(lines[0].contains(r#"{"n":0}"#), "{out}");
    assert!(lines[1].contains("correlation=corr-2"), "{out}");
    // The real subscriber still got both: tail took nothing from it.
    let stats = t.stats().await.unwrap();
    assert_eq!(stats.iter().find(|s| s.queue == "orders").unwrap().ready, 2);
}

fn bin() -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_tidings"));
    c.env_remove("TIDINGS_URL")
        .stdin(std::process::Stdio::null());
    c
}

#[test]
fn bad_urls_fail_clearly_without_passwords() {
    let o = bin()
        .args(["--url", "kafka://user:hunter2@h/", "queues"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("could not connect to kafka://user:***@h/"),
        "{err}"
    );
    assert!(
        err.contains("unknown transport scheme `kafka`") && err.contains("check:"),
        "{err}"
    );
    assert!(!err.contains("hunter2"), "{err}");

    // A real scheme with an unreachable broker (or a transport not compiled in yet).
    let o = bin()
        .args([
            "--url",
            "amqp://guest:s3cr3t@127.0.0.1:1/%2f",
            "--connect-timeout",
            "2s",
            "queues",
        ])
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("could not connect to amqp://guest:***@127.0.0.1:1/"),
        "{err}"
    );
    assert!(err.contains("RabbitMQ"), "{err}");
    assert!(!err.contains("s3cr3t"), "{err}");

    let o = bin().args(["queues"]).output().unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("no transport URL: pass --url"));

    let o = bin()
        .args(["--url", "memory://", "queues", "--json"])
        .output()
        .unwrap();
    assert!(o.status.success());
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "[]");
}

#[test]
fn topology_from_a_report_file() {
    use tidings::topology::{EndpointReport, TopologyReport};
    let report = TopologyReport {
        endpoints: vec![
            EndpointReport {
                name: "inventory".into(),
                receives: vec!["shop.reserve-stock".into()],
                subscribes: vec![],
                sends: vec!["shop.stock-reserved".into()],
                ordered: true,
            },
            EndpointReport {
                name: "shipping".into(),
                receives: vec![],
                subscribes: vec!["shop.stock-reserved".into()],
                sends: vec![],
                ordered: false,
            },
        ],
        routes: [("shop.reserve-stock".to_string(), "inventory".to_string())].into(),
        app_sends: vec!["shop.reserve-stock".into()],
        warnings: vec![],
        topology: Default::default(),
    };
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("topology.json");
    std::fs::write(&file, serde_json::to_string(&report).unwrap()).unwrap();
    let run = |fmt: &str| {
        let o = bin()
            .args([
                "topology",
                "--from",
                file.to_str().unwrap(),
                "--format",
                fmt,
            ])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8(o.stdout).unwrap()
    };
    assert_eq!(run("text"), report.to_text());
    assert_eq!(run("mermaid"), report.to_mermaid());
    assert_eq!(run("dot"), report.to_dot());
    assert!(run("mermaid").contains("app[app] -->|shop.reserve-stock| inventory[inventory]"));

    std::fs::write(&file, "{}").unwrap();
    let o = bin()
        .args(["topology", "--from", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("is not a topology report"));
}

/// Across processes: seed dead letters in a SQLite file from this process, operate on them
/// with the binary. Runs once `tidings::connect` knows sqlite://.
#[tokio::test]
async fn dead_letters_across_processes_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    let t = match tidings::connect(&url).await {
        Ok(t) => t,
        Err(e) => {
            eprintln!("skipped: sqlite transport not available through tidings::connect ({e})");
            return;
        }
    };
    declare(&t).await;
    let a = dead_letter(
        &t,
        "orders",
        "shop.reserve",
        FaultReason::HandlerFailed,
        "c-1",
    )
    .await;
    dead_letter(&t, "payments", "shop.charge", FaultReason::Panicked, "c-2").await;
    let run = |args: &[&str]| {
        let o = bin().arg("--url").arg(&url).args(args).output().unwrap();
        (
            o.status.success(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let (okk, out, err) = run(&["dlq", "list", "--json"]);
    assert!(okk, "{err}");
    let all: Vec<DeadLetterView> = serde_json::from_str(&out).unwrap();
    assert_eq!(all.len(), 2);
    let (_, out, _) = run(&["dlq", "list"]);
    eprintln!("{out}");
    assert!(out.contains("shop.charge v1"), "{out}");
    let (_, out, _) = run(&["dlq", "show", &a.to_string()]);
    eprintln!("{out}");
    assert!(out.contains("handler-failed"), "{out}");
    let (okk, _, err) = run(&["dlq", "purge", "--endpoint", "payments"]);
    assert!(!okk && err.contains("without --yes"), "{err}");
    let (okk, out, err) = run(&["dlq", "replay", "--endpoint", "orders"]);
    assert!(okk && out.contains("replayed 1"), "{out}{err}");
    let (okk, out, err) = run(&["dlq", "purge", "--type", "shop.charge", "--yes"]);
    assert!(okk && out.contains("purged 1"), "{out}{err}");
    let (_, out, _) = run(&["queues", "--json"]);
    let qs: Vec<QueueView> = serde_json::from_str(&out).unwrap();
    let orders = qs.iter().find(|q| q.queue == "orders").unwrap();
    assert_eq!((orders.ready, orders.error_depth), (1, 0));
    assert_eq!(t.dead_letters(&Default::default()).await.unwrap().len(), 0);
}

/// `tidings tail` in another process sees events published here (SQLite shares the file).
#[tokio::test]
async fn tail_across_processes_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    let t = match tidings::connect(&url).await {
        Ok(t) => t,
        Err(e) => {
            eprintln!("skipped: sqlite transport not available through tidings::connect ({e})");
            return;
        }
    };
    declare(&t).await;
    let child = bin()
        .args([
            "--url",
            &url,
            "tail",
            "--event",
            "shop.order-placed",
            "--count",
            "1",
            "--duration",
            "30s",
            "--json",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut declared = false;
    for _ in 0..300 {
        if t.stats()
            .await
            .unwrap()
            .iter()
            .any(|s| s.queue.starts_with("tidings-tail-"))
        {
            declared = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(declared, "tail never declared its queue");
    let mut env = Envelope::new("shop.order-placed", 1, r#"{"order_id":7}"#);
    env.correlation_id = Some("corr-x".into());
    t.send(vec![Outgoing::publish(env)]).await.unwrap();
    let o = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let line: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(line["type"], "shop.order-placed");
    assert_eq!(line["correlation_id"], "corr-x");
    assert_eq!(line["body"]["order_id"], 7);
    let stats = t.stats().await.unwrap();
    assert_eq!(
        stats.iter().find(|s| s.queue == "orders").unwrap().ready,
        1,
        "the real subscriber keeps its copy"
    );
}

#[tokio::test]
async fn dashboard_command_serves_and_refuses_public_bind_without_token() {
    let o = bin()
        .args(["--url", "memory://", "dashboard", "--bind", "0.0.0.0:0"])
        .env_remove("TIDINGS_ADMIN_TOKEN")
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr)
        .contains("refusing to serve the admin API on 0.0.0.0:0 without a token"));

    let mut child = bin()
        .args([
            "--url",
            "memory://",
            "dashboard",
            "--bind",
            "127.0.0.1:0",
            "--token",
            "tok",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let first = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line).map(|_| line)
    })
    .await
    .unwrap()
    .unwrap();
    let addr = first
        .split("http://")
        .nth(1)
        .and_then(|r| r.split('/').next())
        .unwrap_or_else(|| panic!("no address in {first:?}"))
        .to_string();
    let http = http_get(&addr, "/healthz", None).await;
    let queues_without = http_get(&addr, "/queues", None).await;
    let queues_with = http_get(&addr, "/queues", Some("tok")).await;
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(http, (200, "ok".to_string()));
    assert_eq!(queues_without.0, 401);
    assert_eq!(queues_with, (200, "[]".to_string()));
}

/// A tiny HTTP/1.0 GET (no client dependency needed).
async fn http_get(addr: &str, path: &str, token: Option<&str>) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let auth = token.map_or_else(String::new, |t| format!("Authorization: Bearer {t}\r\n"));
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n{auth}\r\n").as_bytes())
        .await
        .unwrap();
    let mut buf = String::new();
    s.read_to_string(&mut buf).await.unwrap();
    let status = buf
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = buf
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    (status, body)
}
