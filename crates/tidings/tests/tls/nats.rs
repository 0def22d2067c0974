//! NATS over TLS: a throw-away `nats-server` that only speaks TLS, reached through
//! `tidings::connect("tls://…?tls_ca=…")` — a message sent over TLS is received and
//! acked; a plain `nats://` connection is refused.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::{find_tool, free_port, make_certs, round_trip, tool, wait_listening, Guard};

fn start_server(dir: &Path, port: u16) -> Guard {
    let bin = find_tool("nats-server").expect("nats-server");
    let child = Command::new(bin)
        .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
        .arg(dir.join("js"))
        .arg("--tls")
        .arg("--tlscert")
        .arg(dir.join("cert.pem"))
        .arg("--tlskey")
        .arg(dir.join("key.pem"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start nats-server");
    let server = Guard(child);
    wait_listening(port, "nats-server", None);
    server
}

#[tokio::test]
async fn nats_over_tls_sends_and_receives() {
    if !tool("openssl") || !tool("nats-server") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    make_certs(dir.path());
    let port = free_port();
    let _server = start_server(dir.path(), port);
    let ca = dir.path().join("ca.pem");

    let url = format!("tls://127.0.0.1:{port}?tls_ca={}", ca.display());
    let transport = tidings::connect(&url).await.expect("connect over TLS");
    round_trip(&transport, "tls_q").await;

    // The server requires TLS: a plain connection must not get through.
    let plain = tokio::time::timeout(
        Duration::from_secs(10),
        tidings::connect(&format!("nats://127.0.0.1:{port}")),
    )
    .await;
    assert!(
        !matches!(plain, Ok(Ok(_))),
        "a plain nats:// connection to a TLS-only server succeeded"
    );
}
