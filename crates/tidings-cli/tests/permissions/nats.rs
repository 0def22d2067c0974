//! NATS: a throw-away `nats-server` with JetStream whose configuration is the generated
//! `authorization` block (passwords from its environment); each service does its work as
//! its own user, and the same users are refused — a permissions violation in the server's
//! log — on another service's queue and on an event they may not publish.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use tidings::transport::{Outgoing, QueueSpec, Topology, Transport};
use tidings::Envelope;

use crate::shop::{receive_error, Conns, Shop};

/// The `nats-server` binary, or why the test cannot run (panics when `CI=true`).
fn server_binary() -> Option<PathBuf> {
    let found = [
        "/usr/sbin/nats-server",
        "/usr/bin/nats-server",
        "/usr/local/bin/nats-server",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.exists());
    if found.is_none() {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("nats-server not installed (CI=true: needed to test generated NATS users)");
        }
        eprintln!("skipped: nats-server not installed");
    }
    found
}

/// The server process, killed when dropped.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("address").port()
}

fn start(bin: &Path, shop: &Shop, authorization: &str, port: u16) -> Server {
    let dir = shop.dir();
    let conf = dir.join("nats.conf");
    let config = format!(
        "listen: \"127.0.0.1:{port}\"\njetstream {{ store_dir: \"{}\" }}\n{authorization}",
        dir.join("js").display()
    );
    std::fs::write(&conf, config).expect("write nats.conf");
    let log = std::fs::File::create(dir.join("nats.log")).expect("log file");
    let child = Command::new(bin)
        .arg("-c")
        .arg(&conf)
        .envs(shop.password_env())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start nats-server");
    let server = Server(child);
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return server;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("nats-server did not listen on {port}: {}", log_text(shop));
}

fn log_text(shop: &Shop) -> String {
    std::fs::read_to_string(shop.dir().join("nats.log")).unwrap_or_default()
}

async fn as_service(shop: &Shop, service: &str, port: u16) -> Arc<dyn Transport> {
    let url = format!(
        "nats://{}:{}@127.0.0.1:{port}?request_timeout_ms=1000&partitions=2",
        shop.user(service),
        shop.password(service)
    );
    tidings::connect(&url)
        .await
        .unwrap_or_else(|e| panic!("{service} connects with its generated user: {e:#}"))
}

/// `what` failed, and the server logged (past byte `from` of its log) a violation by
/// `user` on a subject containing `subject`. Returns the log's new length.
fn refused(shop: &Shop, from: usize, what: &str, failed: bool, user: &str, subject: &str) -> usize {
    assert!(failed, "{what}: not refused");
    let all = log_text(shop);
    let log = all.get(from..).unwrap_or_default();
    let hit = log
        .lines()
        .any(|l| l.contains("Violation") && l.contains(user) && l.contains(subject));
    assert!(
        hit,
        "{what}: no permissions violation by {user} on {subject} in the server log:\n{log}"
    );
    all.len()
}

#[tokio::test]
async fn generated_users_work_and_are_refused_elsewhere() {
    let Some(bin) = server_binary() else { return };
    let shop = Shop::new();
    let conf = shop.permissions("nats", &["--partitions", "2"]);
    assert!(
        !conf.contains(&shop.password("orders")),
        "a password in:\n{conf}"
    );
    let port = free_port();
    let _server = start(&bin, &shop, &conf, port);

    let conns = Conns {
        orders: as_service(&shop, "orders", port).await,
        payments: as_service(&shop, "payments", port).await,
        mailer: as_service(&shop, "mailer", port).await,
        app: as_service(&shop, "app", port).await,
    };
    if let Err(e) = shop.work(&conns).await {
        panic!(
            "the services' own work failed: {e:#}\nserver log:\n{}",
            log_text(&shop)
        );
    }
    let before = log_text(&shop);
    assert!(
        !before.contains("Violation"),
        "the services' own work hit a permissions violation:\n{before}"
    );
    let at = before.len();

    let wait = Duration::from_secs(3);
    let orders = shop.user("orders");
    let e = receive_error(&conns.orders, &shop.payments, wait).await;
    let at = refused(
        &shop,
        at,
        "orders consumes payments' queue",
        e.is_some(),
        &orders,
        &shop.payments,
    );

    let spec = Topology {
        queues: vec![QueueSpec {
            name: shop.payments.clone(),
            ..Default::default()
        }],
    };
    let e = conns.orders.declare(&spec).await;
    let at = refused(
        &shop,
        at,
        "orders declares payments' queue",
        e.is_err(),
        &orders,
        &shop.payments,
    );

    let mail = Outgoing::to_queue(&shop.mailer, Envelope::new(shop.charge.clone(), 1, "{}"));
    let e = conns.orders.send(vec![mail]).await;
    let at = refused(
        &shop,
        at,
        "orders sends to mailer's queue",
        e.is_err(),
        &orders,
        &shop.mailer,
    );

    let placed = Outgoing::publish(Envelope::new(shop.placed.clone(), 1, "{}"));
    let e = conns.payments.send(vec![placed]).await;
    let event = shop.placed.replace('.', "_2E");
    refused(
        &shop,
        at,
        "payments publishes the app's event",
        e.is_err(),
        &shop.user("payments"),
        &event,
    );

    for t in [conns.orders, conns.payments, conns.mailer, conns.app] {
        let _ = t.close().await;
    }
}
