//! `tidings topology`: a report read from a file, or fetched from a running application's
//! admin API (`--url http://HOST:PORT/admin`), and the errors when neither works.

mod common;

use std::sync::Arc;

use common::bin;
use tidings::topology::{EndpointReport, TopologyReport};
use tidings::transport::memory::MemoryTransport;
use tidings_admin::{AdminConfig, AdminServer, AdminState};

fn report() -> TopologyReport {
    TopologyReport {
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
    }
}

#[test]
fn topology_from_a_report_file() {
    let report = report();
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

/// Runs the binary off the runtime's thread (the admin server runs on it); (ok, out, err).
async fn run(args: Vec<String>) -> (bool, String, String) {
    tokio::task::spawn_blocking(move || {
        let o = bin()
            .env_remove("TIDINGS_ADMIN_TOKEN")
            .args(&args)
            .output()
            .unwrap();
        (
            o.status.success(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    })
    .await
    .unwrap()
}

fn args(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| s.to_string()).collect()
}

#[tokio::test]
async fn topology_from_a_running_admin_api() {
    let report = report();
    let state = AdminState::new(Arc::new(MemoryTransport::new()))
        .topology(report.clone())
        .token(Some("tok".into()));
    let server = AdminServer::bind(AdminConfig::new(([127, 0, 0, 1], 0).into()), state)
        .await
        .unwrap();
    let addr = server.local_addr();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(server.run_until(async {
        let _ = stopped.await;
    }));
    let base = format!("http://{addr}");

    for (fmt, expected) in [
        ("text", report.to_text()),
        ("mermaid", report.to_mermaid()),
        ("dot", report.to_dot()),
    ] {
        let (ok, out, err) = run(args(&[
            "topology", "--url", &base, "--token", "tok", "--format", fmt,
        ]))
        .await;
        assert!(ok, "{fmt}: {err}");
        assert_eq!(out, expected, "{fmt}");
    }
    // A trailing slash is fine; the token also comes from the environment.
    let o = tokio::task::spawn_blocking({
        let base = base.clone();
        move || {
            bin()
                .env("TIDINGS_ADMIN_TOKEN", "tok")
                .args(["topology", "--url", &format!("{base}/")])
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(String::from_utf8_lossy(&o.stdout), report.to_text());

    let (ok, _, err) = run(args(&["topology", "--url", &base])).await;
    assert!(
        !ok && err.contains("wants a bearer token: pass --token"),
        "{err}"
    );
    let (ok, _, err) = run(args(&[
        "topology",
        "--url",
        &format!("{base}/admin"),
        "--token",
        "tok",
    ]))
    .await;
    assert!(!ok, "{err}");
    assert!(
        err.contains(&format!("no admin API at {base}/admin")),
        "{err}"
    );

    stop.send(()).unwrap();
    serving.await.unwrap().unwrap();

    // An admin API that was not given the topology says so.
    let server = AdminServer::bind(
        AdminConfig::new(([127, 0, 0, 1], 0).into()),
        AdminState::new(Arc::new(MemoryTransport::new())),
    )
    .await
    .unwrap();
    let base = format!("http://{}", server.local_addr());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(server.run_until(async {
        let _ = stopped.await;
    }));
    let (ok, _, err) = run(args(&["topology", "--url", &base])).await;
    assert!(!ok, "{err}");
    assert!(
        err.contains("does not serve its topology") && err.contains("AdminState::topology"),
        "{err}"
    );
    stop.send(()).unwrap();
    serving.await.unwrap().unwrap();
}

#[tokio::test]
async fn topology_url_errors_are_clear() {
    // Nothing listens on port 1.
    let (ok, _, err) = run(args(&[
        "topology",
        "--url",
        "http://ops:s3cr3t@127.0.0.1:1/admin",
        "--connect-timeout",
        "3s",
    ]))
    .await;
    assert!(!ok);
    assert!(
        err.contains("could not reach the admin API at http://ops:***@127.0.0.1:1/admin"),
        "{err}"
    );
    assert!(err.contains("check: the application is running"), "{err}");
    assert!(!err.contains("s3cr3t"), "{err}");

    let (ok, _, err) = run(args(&["topology", "--url", "sqlite://x.db"])).await;
    assert!(
        !ok && err.contains("not a transport (sqlite://x.db)"),
        "{err}"
    );
    let (ok, _, err) = run(args(&["topology"])).await;
    assert!(
        !ok && err.contains("where from? pass --url http://"),
        "{err}"
    );
    let (ok, _, err) = run(args(&["topology", "--url", "https://127.0.0.1:1/admin"])).await;
    assert!(!ok && err.contains("plain HTTP only"), "{err}");
}

#[test]
fn permissions_name_every_service_and_refuse_unknown_endpoints() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("topology.json");
    std::fs::write(&file, serde_json::to_string(&report()).unwrap()).unwrap();
    let run = |args: &[&str]| {
        bin()
            .args(["topology", "--from", file.to_str().unwrap()])
            .args(args)
            .output()
            .unwrap()
    };
    // One user per endpoint, plus `app` for the application's own send.
    let o = run(&["--permissions", "rabbitmq-json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let defs: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let users: Vec<&str> = defs["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["name"].as_str().unwrap())
        .collect();
    assert_eq!(users, ["app", "inventory", "shipping"]);
    // Grouped: one user for both endpoints, the app's send included.
    let o = run(&[
        "--permissions",
        "nats",
        "--service",
        "shop=inventory,shipping",
        "--app-service",
        "shop",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let conf = String::from_utf8(o.stdout).unwrap();
    assert_eq!(conf.matches("user: ").count(), 1, "{conf}");
    assert!(conf.contains("password: $TIDINGS_PASSWORD_SHOP"), "{conf}");
    // A group naming an endpoint the topology does not have.
    let o = run(&["--permissions", "postgres", "--service", "x=nope"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("`nope`"));
    let o = run(&["--permissions", "postgres", "--service", "no-equals-sign"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("NAME=ENDPOINT"));
}
