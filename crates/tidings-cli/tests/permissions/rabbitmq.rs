//! RabbitMQ: the generated `rabbitmqctl` script creates one user per service on the live
//! broker; each service does its work with its own user, and the same users are refused
//! (ACCESS_REFUSED) on another service's queue and on an event they may not publish.

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use tidings::rabbitmq::{RabbitMqConfig, RabbitMqTransport};
use tidings::transport::{Outgoing, QueueSpec, Topology, Transport};
use tidings::Envelope;

use crate::shop::{receive_error, Conns, Shop, SERVICES};

const HOST: &str = "127.0.0.1:5672";

/// `None` if the broker and `rabbitmqctl` answer; else why not (panics when `CI=true`).
fn unavailable() -> Option<String> {
    let why = if std::net::TcpStream::connect_timeout(
        &HOST.parse().expect("address"),
        Duration::from_secs(2),
    )
    .is_err()
    {
        format!("RabbitMQ not reachable at {HOST}")
    } else {
        match Command::new("rabbitmqctl")
            .args(["list_users", "-q"])
            .output()
        {
            Ok(o) if o.status.success() => return None,
            Ok(o) => format!(
                "rabbitmqctl failed: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            ),
            Err(e) => format!("rabbitmqctl not runnable: {e}"),
        }
    };
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{why} (CI=true: needed to test generated RabbitMQ users)");
    }
    eprintln!("skipped: {why}");
    Some(why)
}

/// Deletes the run's users and queues, even when the test fails.
struct Cleanup<'a>(&'a Shop);

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        for s in SERVICES {
            let _ = Command::new("rabbitmqctl")
                .args(["delete_user", "-q", &self.0.user(s)])
                .output();
        }
        // AMQP clients here cannot delete exchanges: the run's event exchanges go through
        // `rabbitmqctl eval` (best effort; RabbitMQ 3.10's internal API).
        let exchanges: Vec<String> = [&self.0.paid, &self.0.placed]
            .iter()
            .map(|t| format!("<<\"tidings.{t}\">>"))
            .collect();
        let _ = Command::new("rabbitmqctl")
            .arg("eval")
            .arg(format!(
                "[rabbit_exchange:delete(rabbit_misc:r(<<\"/\">>, exchange, N), false, \
                 <<\"tidings-test\">>) || N <- [{}]], ok.",
                exchanges.join(", ")
            ))
            .output();
        let queues = [&self.0.orders, &self.0.payments, &self.0.mailer];
        let _ = std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    let rt = tokio::runtime::Runtime::new().ok()?;
                    rt.block_on(async {
                        let admin = connect("guest", "guest").await.ok()?;
                        for q in queues {
                            let _ = admin.delete_queue(q).await;
                        }
                        let _ = admin.close().await;
                        Some(())
                    })
                })
                .join()
        });
    }
}

async fn connect(user: &str, password: &str) -> tidings::Result<Arc<dyn Transport>> {
    let url = format!("amqp://{user}:{password}@{HOST}/%2f?connect_timeout_ms=5000&management=off");
    let t = RabbitMqTransport::connect(RabbitMqConfig::from_url(&url)?).await?;
    Ok(Arc::new(t))
}

async fn as_service(shop: &Shop, service: &str) -> Arc<dyn Transport> {
    connect(&shop.user(service), &shop.password(service))
        .await
        .unwrap_or_else(|e| panic!("{service} connects with its generated user: {e:#}"))
}

fn refused(what: &str, e: Option<String>) {
    let e = e.unwrap_or_else(|| panic!("{what}: not refused"));
    eprintln!("{what}: {e}");
    assert!(
        e.contains("ACCESS_REFUSED"),
        "{what}: refused for another reason: {e}"
    );
}

#[tokio::test]
async fn generated_users_work_and_are_refused_elsewhere() {
    if unavailable().is_some() {
        return;
    }
    let shop = Shop::new();
    let _cleanup = Cleanup(&shop);
    let script = shop.permissions("rabbitmq", &[]);
    assert!(
        !script.contains(&shop.password("orders")),
        "a password in:\n{script}"
    );
    let out = Command::new("sh")
        .arg("-c")
        .arg(&script)
        .envs(shop.password_env())
        .output()
        .expect("run the generated script");
    assert!(
        out.status.success(),
        "the generated script failed: {}\n{script}",
        String::from_utf8_lossy(&out.stderr)
    );

    let conns = Conns {
        orders: as_service(&shop, "orders").await,
        payments: as_service(&shop, "payments").await,
        mailer: as_service(&shop, "mailer").await,
        app: as_service(&shop, "app").await,
    };
    if let Err(e) = shop.work(&conns).await {
        panic!("the services' own work failed: {e:#}");
    }

    // Refused: consuming another service's queue or error queue (each on a fresh
    // connection: a refusal closes the channel).
    let wait = Duration::from_secs(3);
    let orders = as_service(&shop, "orders").await;
    refused(
        "orders consumes payments' queue",
        receive_error(&orders, &shop.payments, wait).await,
    );
    let mailer = as_service(&shop, "mailer").await;
    refused(
        "mailer consumes orders' error queue",
        receive_error(&mailer, &format!("{}_error", shop.orders), wait).await,
    );
    // Declaring (taking over) another service's queue.
    let orders = as_service(&shop, "orders").await;
    let spec = Topology {
        queues: vec![QueueSpec {
            name: shop.payments.clone(),
            ..Default::default()
        }],
    };
    refused(
        "orders declares payments' queue",
        orders.declare(&spec).await.err().map(|e| format!("{e:#}")),
    );
    // Publishing an event the service neither publishes nor subscribes to.
    let payments = as_service(&shop, "payments").await;
    let placed = Outgoing::publish(Envelope::new(shop.placed.clone(), 1, "{}"));
    refused(
        "payments publishes the app's event",
        payments
            .send(vec![placed])
            .await
            .err()
            .map(|e| format!("{e:#}")),
    );
    // Subscribing its own queue to an event the topology does not subscribe it to.
    let mailer = as_service(&shop, "mailer").await;
    let spec = Topology {
        queues: vec![QueueSpec {
            name: shop.mailer.clone(),
            subscriptions: vec![shop.paid.clone(), shop.placed.clone()],
            ordered: true,
            ..Default::default()
        }],
    };
    refused(
        "mailer subscribes to the app's event",
        mailer.declare(&spec).await.err().map(|e| format!("{e:#}")),
    );
    for t in [orders, payments, mailer] {
        let _ = t.close().await;
    }
    for t in [conns.orders, conns.payments, conns.mailer, conns.app] {
        let _ = t.close().await;
    }
    definitions_give_the_same_users(&shop).await;
}

/// The run's users and their (configure, write, read) on `/`, sorted by user, from one
/// `rabbitmqctl list_permissions` (each call starts an Erlang VM: about a second).
fn permissions_on_vhost(shop: &Shop) -> Vec<(String, String, String, String)> {
    let Ok(out) = Command::new("rabbitmqctl")
        .args(["list_permissions", "-p", "/", "-q", "--no-table-headers"])
        .output()
    else {
        return Vec::new();
    };
    let prefix = shop.user("");
    let mut rows: Vec<_> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with(&prefix))
        .filter_map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            Some((
                f.first()?.to_string(),
                f.get(1)?.to_string(),
                f.get(2)?.to_string(),
                f.get(3)?.to_string(),
            ))
        })
        .collect();
    rows.sort();
    rows
}

/// The definitions JSON, its `${TIDINGS_PASSWORD_…}` filled in (what `envsubst` does)
/// and imported after the script's users are deleted, yields the same permissions, and
/// the users log in with their passwords.
async fn definitions_give_the_same_users(shop: &Shop) {
    let expected = permissions_on_vhost(shop);
    assert_eq!(
        expected.len(),
        SERVICES.len(),
        "the script's users: {expected:?}"
    );
    for s in SERVICES {
        let _ = Command::new("rabbitmqctl")
            .args(["delete_user", "-q", &shop.user(s)])
            .output();
    }
    let mut json = shop.permissions("rabbitmq-json", &[]);
    assert!(
        !json.contains(&shop.password("orders")),
        "a password in:\n{json}"
    );
    for (var, value) in shop.password_env() {
        json = json.replace(&format!("${{{var}}}"), &value);
    }
    let file = shop.dir().join("definitions.json");
    std::fs::write(&file, json).expect("write definitions");
    let out = Command::new("rabbitmqctl")
        .arg("import_definitions")
        .arg(&file)
        .output()
        .expect("rabbitmqctl import_definitions");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The import is asynchronous.
    let mut got = Vec::new();
    for _ in 0..30 {
        got = permissions_on_vhost(shop);
        if got == expected {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(got, expected, "permissions from the definitions file");
    let payments = connect(&shop.user("payments"), &shop.password("payments")).await;
    let payments = payments.expect("payments logs in with the imported user");
    let _ = payments.close().await;
}
