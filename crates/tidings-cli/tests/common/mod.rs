//! Shared fixtures of the `tidings` CLI tests: a MemoryTransport with `orders` and
//! `payments`, dead letters in it, `execute` in-process, the binary, a tiny HTTP GET.
#![allow(dead_code, unreachable_pub, missing_docs)]

use std::sync::Arc;

use clap::Parser;
use tidings::transport::memory::MemoryTransport;
use tidings::transport::{Outgoing, QueueSpec, ReceiveOptions, Topology, Transport};
use tidings::{Envelope, Fault, FaultReason};
use tidings_admin::DeadLetterView;
use tidings_cli::{execute, Io, Opt};

pub async fn transport() -> Arc<dyn Transport> {
    let t: Arc<dyn Transport> = Arc::new(MemoryTransport::new());
    declare(&t).await;
    t
}

pub async fn declare(t: &Arc<dyn Transport>) {
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

pub async fn dead_letter(
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
pub async fn seeded() -> (Arc<dyn Transport>, Vec<uuid::Uuid>) {
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

pub async fn exec(t: &Arc<dyn Transport>, args: &[&str]) -> (anyhow::Result<()>, String) {
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

pub async fn ok(t: &Arc<dyn Transport>, args: &[&str]) -> String {
    let (r, out) = exec(t, args).await;
    if let Err(e) = r {
        panic!("{args:?} failed: {e:#}\n{out}");
    }
    out
}

pub async fn list_json(t: &Arc<dyn Transport>, args: &[&str]) -> Vec<DeadLetterView> {
    let mut a = vec!["dlq", "list", "--json"];
    a.extend_from_slice(args);
    serde_json::from_str(&ok(t, &a).await).unwrap()
}

pub fn bin() -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_tidings"));
    c.env_remove("TIDINGS_URL")
        .stdin(std::process::Stdio::null());
    c
}

/// A tiny HTTP/1.0 GET (no client dependency needed).
pub async fn http_get(addr: &str, path: &str, token: Option<&str>) -> (u16, String) {
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
