//! `tidings dashboard`: serves with a token, refuses a public bind without one.

mod common;

use common::{bin, http_get};

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
