//! The runbooks whose incidents need more set-up: a bug and its fix, a retry storm, a
//! stuck saga, a broker down.

use std::time::Duration;

use crate::runbook::seed::*;
use crate::runbook::{Runbook, Vars};
use tidings::saga::{Saga, SagaState};
use tidings::sqlite::SqliteSagaStore;
use tidings::{Bus, ConsumeContext, Endpoint, HandlerError, Redelivery};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_after_fix() {
    let inc = Incident::new().await;
    let fixed = Switch::default();
    let sms = Counter::default();
    let (f, s) = (fixed.clone(), sms.clone());
    let bus = Bus::builder(inc.arc())
        .endpoint(Endpoint::new("notifications").handle_fn(
            move |m: OrderCompleted, _: ConsumeContext| {
                let (f, s) = (f.clone(), s.clone());
                async move {
                    if m.channel == "sms" {
                        if !f.up() {
                            return Err(HandlerError::permanent(
                                "template order-completed.sms missing",
                            ));
                        }
                        s.add();
                    }
                    Ok(())
                }
            },
        ))
        .start()
        .await
        .expect("bus");
    for (order, channel) in [
        (1, "sms"),
        (2, "email"),
        (3, "sms"),
        (4, "sms"),
        (5, "email"),
        (6, "sms"),
    ] {
        let body = format!(r#"{{"order":{order},"channel":"{channel}"}}"#);
        inc.send_raw("notifications", "orderflow.order-completed", 1, &body, None)
            .await;
    }
    inc.wait("notifications", "4 dead letters", |s| {
        s.error_depth == 4 && idle(s)
    })
    .await;

    let mut rb = Runbook::load("replay-after-fix.md");
    let vars = Vars::new(&inc.url);
    rb.run("inspect", &vars);
    fixed.set(true); // the fixed release is deployed
    rb.run("canary", &vars);
    until("the canary handled", || sms.get() == 1).await;
    inc.wait("notifications", "the canary gone", |s| {
        s.error_depth == 3 && idle(s)
    })
    .await;
    rb.run("rest", &vars);
    until("every sms sent", || sms.get() == 4).await;
    inc.wait("notifications", "an idle queue", idle).await;
    rb.run("verify", &vars);
    rb.finish();
    bus.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_storm() {
    let inc = Incident::new().await;
    let gateway = Switch::default();
    let captured = Counter::default();
    let (g, c) = (gateway.clone(), captured.clone());
    // Each failure comes back after 20 s: long enough to read the figures in between, even
    // on a loaded machine.
    let bus = Bus::builder(inc.arc())
        .endpoint(
            Endpoint::new("payments")
                .redelivery(Redelivery::intervals([Duration::from_secs(20); 6]))
                .handle_fn(move |_: CapturePayment, _: ConsumeContext| {
                    let (g, c) = (g.clone(), c.clone());
                    async move {
                        if !g.up() {
                            return Err(HandlerError::transient(
                                "payment gateway: 503 Service Unavailable",
                            ));
                        }
                        c.add();
                        Ok(())
                    }
                }),
        )
        .start()
        .await
        .expect("bus");
    for order in 0..20 {
        let body = format!(r#"{{"order":{order},"amount_cents":100}}"#);
        inc.send_raw("payments", "orderflow.capture-payment", 1, &body, None)
            .await;
    }
    inc.wait("payments", "20 redeliveries scheduled", |s| {
        s.scheduled == Some(20) && s.ready == 0 && s.in_flight == Some(0)
    })
    .await;

    let mut rb = Runbook::load("retry-storm.md");
    let vars = Vars::new(&inc.url);
    rb.run("inspect", &vars);
    gateway.set(true); // the gateway recovers
    until("every payment captured", || captured.get() == 20).await;
    inc.wait("payments", "an idle queue", idle).await;
    rb.run("verify", &vars);
    rb.finish();
    bus.shutdown(Duration::from_secs(5)).await;
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
enum Order {
    Paying,
    Shipping,
}

impl SagaState for Order {
    fn name(&self) -> &str {
        match self {
            Order::Paying => "paying",
            Order::Shipping => "shipping",
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stuck_saga() {
    let inc = Incident::new().await;
    let store = std::sync::Arc::new(
        SqliteSagaStore::on_transport(&inc.transport)
            .await
            .expect("saga store"),
    );
    let healthy = Switch::default();
    let h = healthy.clone();
    let saga = Saga::<Order>::new("order")
        .starts_with(
            |m: &OrderPlaced| m.order,
            |m, step| {
                step.request_timeout(
                    &PaymentTimeout { order: m.order },
                    Duration::from_secs(3600),
                )?;
                Ok(Order::Paying)
            },
        )
        .on(
            |m: &PaymentCaptured| m.order,
            move |_, _, _| {
                if !h.up() {
                    return Err(HandlerError::transient(
                        "saga store unavailable: disk I/O error",
                    ));
                }
                Ok(Order::Shipping)
            },
        )
        .on(|m: &PaymentTimeout| m.order, |s, _, _| Ok(s));
    let endpoint = Endpoint::new("order-saga")
        .ordered(true)
        .redelivery(Redelivery::none())
        .sends::<PaymentTimeout>();
    let bus = Bus::builder(inc.arc())
        .endpoint(saga.attach(endpoint, store))
        .start()
        .await
        .expect("bus");
    inc.send_raw(
        "order-saga",
        "orderflow.order-placed",
        1,
        r#"{"order":7}"#,
        Some("7"),
    )
    .await;
    inc.wait("order-saga", "the saga started", |s| {
        s.scheduled == Some(1) && s.ready == 0
    })
    .await;
    inc.send_raw(
        "order-saga",
        "orderflow.payment-captured",
        1,
        r#"{"order":7}"#,
        Some("7"),
    )
    .await;
    inc.wait("order-saga", "the capture dead-lettered", |s| {
        s.error_depth == 1
    })
    .await;
    // Twenty minutes pass.
    sqlx::query(
        "UPDATE tidings_saga_instances SET updated_at = updated_at - 1200000, \
         created_at = created_at - 1200000",
    )
    .execute(inc.transport.pool())
    .await
    .expect("ageing the saga");

    let mut rb = Runbook::load("stuck-saga.md");
    let vars = Vars::new(&inc.url);
    rb.run("inspect", &vars);
    healthy.set(true);
    rb.run("fix", &vars);
    inc.wait("order-saga", "the replay handled", |s| {
        s.error_depth == 0 && s.ready == 0 && s.in_flight == Some(0)
    })
    .await;
    rb.run("verify", &vars);
    rb.finish();
    bus.shutdown(Duration::from_secs(5)).await;
}

/// A local port nothing listens on.
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

#[tokio::test]
async fn broker_down() {
    let port = closed_port();
    let mut rb = Runbook::load("broker-down.md");
    let down = Vars::new("sqlite:///nonexistent/unused.db")
        .set(
            "broker-url",
            format!("postgres://postgres@127.0.0.1:{port}/test"),
        )
        .set(
            "amqp-url",
            format!("amqp://guest:guest@127.0.0.1:{port}/%2f"),
        );
    rb.run("down", &down);

    // Back up: the real PostgreSQL, in a schema of its own.
    if std::net::TcpStream::connect("127.0.0.1:5432").is_err() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true: PostgreSQL is not answering on 127.0.0.1:5432"
        );
        eprintln!("skipped the recovery half: PostgreSQL is not answering on 127.0.0.1:5432");
        return;
    }
    let schema = format!(
        "runbook_{}_{}",
        std::process::id(),
        chrono::Utc::now().timestamp_micros()
    );
    let url = format!("postgres://postgres@127.0.0.1:5432/test?schema={schema}");
    let t = tidings::connect(&url).await.expect("postgres transport");
    t.declare(&tidings::transport::Topology {
        queues: vec![tidings::transport::QueueSpec {
            name: "inventory".into(),
            ..Default::default()
        }],
    })
    .await
    .expect("declare");
    let up = Vars::new("sqlite:///nonexistent/unused.db").set("broker-url", &url);
    rb.run("up", &up);
    rb.finish();
    let _ = t.close().await;
    let pool = sqlx::PgPool::connect("postgres://postgres@127.0.0.1:5432/test")
        .await
        .expect("postgres");
    // The schema name is made above from digits and letters only.
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"
    )))
    .execute(&pool)
    .await
    .expect("dropping the test schema");
}
