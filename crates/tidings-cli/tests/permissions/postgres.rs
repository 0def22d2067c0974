//! PostgreSQL: the schema is created by its owner, the generated psql script makes one
//! role per service (GRANTs + row-level security); each service does its work logged in
//! as its own role, and the same roles cannot take another service's messages, insert
//! into a queue they do not send to, publish an event they do not publish, or declare
//! another service's queue.

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use tidings::transport::{Outgoing, QueueSpec, ReceiveOptions, Topology, Transport};
use tidings::Envelope;

use crate::shop::{next, Conns, Shop, SERVICES};

const HOST: &str = "127.0.0.1:5432";

/// `None` if the server and `psql` answer; else why not (panics when `CI=true`).
fn unavailable() -> Option<String> {
    let why = match psql(&["-c", "select 1"], &[]) {
        Ok(_) => return None,
        Err(e) => e,
    };
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{why} (CI=true: needed to test generated PostgreSQL roles)");
    }
    eprintln!("skipped: {why}");
    Some(why)
}

/// `psql` as the superuser on the test database; its output or why it failed.
fn psql(args: &[&str], vars: &[(String, String)]) -> Result<String, String> {
    psql_as("postgres", args, vars)
}

/// `psql` as `user` (trust authentication on the test server).
fn psql_as(user: &str, args: &[&str], vars: &[(String, String)]) -> Result<String, String> {
    let mut cmd = Command::new("psql");
    cmd.args([
        "-h",
        "127.0.0.1",
        "-U",
        user,
        "-d",
        "test",
        "-X",
        "-q",
        "-A",
        "-t",
    ])
    .args(["-v", "ON_ERROR_STOP=1"]);
    for (k, v) in vars {
        cmd.arg("-v").arg(format!("{k}={v}"));
    }
    match cmd.args(args).output() {
        Ok(o) if o.status.success() => Ok(String::from_utf8_lossy(&o.stdout).into_owned()),
        Ok(o) => Err(format!(
            "psql failed: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        )),
        Err(e) => Err(format!("psql not runnable: {e}")),
    }
}

fn schema(shop: &Shop) -> String {
    format!("perm_{}", shop.id)
}

/// Drops the run's schema and roles, even when the test fails.
struct Cleanup<'a>(&'a Shop);

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        let roles: Vec<String> = SERVICES
            .iter()
            .map(|s| format!("\"{}\"", self.0.user(s)))
            .collect();
        let roles = roles.join(", ");
        let sql = format!(
            "DROP SCHEMA IF EXISTS \"{}\" CASCADE; DROP OWNED BY {roles}; DROP ROLE {roles};",
            schema(self.0)
        );
        if let Err(e) = psql(&["-c", &sql], &[]) {
            eprintln!("cleanup: {e}");
        }
    }
}

async fn connect(user: &str, shop: &Shop) -> Arc<dyn Transport> {
    let url = format!(
        "postgres://{user}:{}@{HOST}/test?schema={}",
        shop.password("x"),
        schema(shop)
    );
    tidings::connect(&url)
        .await
        .unwrap_or_else(|e| panic!("{user} connects: {e:#}"))
}

fn refused(what: &str, e: tidings::Result<()>) {
    let e = match e {
        Ok(()) => panic!("{what}: not refused"),
        Err(e) => format!("{e:#}"),
    };
    eprintln!("{what}: {e}");
    assert!(
        e.contains("row-level security"),
        "{what}: refused for another reason: {e}"
    );
}

#[tokio::test]
async fn generated_roles_work_and_are_refused_elsewhere() {
    if unavailable().is_some() {
        return;
    }
    let shop = Shop::new();
    let _cleanup = Cleanup(&shop);
    // The owner creates the schema (the transport's migration), then runs the script.
    let owner = connect("postgres", &shop).await;
    let _ = owner.close().await;
    let sql = shop.permissions("postgres", &["--schema", &schema(&shop)]);
    assert!(
        !sql.contains(&shop.password("orders")),
        "a password in:\n{sql}"
    );
    let file = shop.dir().join("roles.sql");
    std::fs::write(&file, &sql).expect("write the script");
    let path = file.to_str().expect("utf-8 path");
    psql(&["-f", path], &shop.password_env()).unwrap_or_else(|e| panic!("{e}\n{sql}"));
    // Re-running it (policies replaced, roles kept) works too.
    psql(&["-f", path], &shop.password_env()).expect("the script runs twice");

    let conns = Conns {
        orders: connect(&shop.user("orders"), &shop).await,
        payments: connect(&shop.user("payments"), &shop).await,
        mailer: connect(&shop.user("mailer"), &shop).await,
        app: connect(&shop.user("app"), &shop).await,
    };
    if let Err(e) = shop.work(&conns).await {
        panic!("the services' own work failed: {e:#}");
    }

    // Another service's messages are invisible: orders claims nothing from payments'
    // queue, and payments still gets the message.
    let charge = Envelope::new(shop.charge.clone(), 1, "{}");
    let id = charge.id;
    conns
        .orders
        .send(vec![Outgoing::to_queue(&shop.payments, charge)])
        .await
        .expect("orders sends a charge");
    let mut rx = conns
        .orders
        .receive(&shop.payments, ReceiveOptions::default())
        .await
        .expect("a receiver (rows are filtered, not refused)");
    let got = tokio::time::timeout(Duration::from_secs(2), rx.recv()).await;
    assert!(
        got.is_err(),
        "orders took a message from payments' queue: {got:?}"
    );
    let _ = rx.close().await;
    // Nor can its role, in plain SQL, delete or claim it; it can read it (documented).
    let table = format!("\"{}\".messages", schema(&shop));
    let sql = format!(
        "WITH d AS (DELETE FROM {table} RETURNING 1), \
              u AS (UPDATE {table} SET visible_at = now() + interval '1 hour' RETURNING 1) \
         SELECT (SELECT count(*) FROM d), (SELECT count(*) FROM u), \
                (SELECT count(*) FROM {table} WHERE queue = '{}')",
        shop.payments
    );
    let out = psql_as(&shop.user("orders"), &["-c", &sql], &[]).expect("orders' SQL");
    assert_eq!(
        out.trim(),
        "0|0|1",
        "deleted | claimed | seen by orders' role"
    );
    let mut rx = conns
        .payments
        .receive(&shop.payments, ReceiveOptions::default())
        .await
        .expect("payments receives");
    let d = next(rx.as_mut(), "payments")
        .await
        .expect("payments gets it");
    assert_eq!(d.envelope.id, id);
    d.ack().await.expect("ack");
    let _ = rx.close().await;

    let mail = Outgoing::to_queue(&shop.mailer, Envelope::new(shop.charge.clone(), 1, "{}"));
    refused(
        "orders sends to mailer's queue",
        conns.orders.send(vec![mail]).await,
    );
    let placed = Outgoing::publish(Envelope::new(shop.placed.clone(), 1, "{}"));
    refused(
        "payments publishes the app's event",
        conns.payments.send(vec![placed]).await,
    );
    let spec = Topology {
        queues: vec![QueueSpec {
            name: shop.payments.clone(),
            ordered: true,
            ..Default::default()
        }],
    };
    refused(
        "orders declares payments' queue",
        conns.orders.declare(&spec).await,
    );
    // Subscribing its own queue to an event the topology does not subscribe it to.
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
        conns.mailer.declare(&spec).await,
    );

    for t in [conns.orders, conns.payments, conns.mailer, conns.app] {
        let _ = t.close().await;
    }
}
