//! `tidings queues` in-process, and how the binary fails on bad or unreachable URLs.

mod common;

use common::{bin, ok, seeded};
use tidings_admin::QueueView;

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
