//! The shop every permissions test runs: a topology report JSON with three endpoints and
//! the application's own publish, turned into four services by `--service`:
//!
//! - `orders` (queue `orders-<id>`): subscribes to `paid` and `placed`, sends `charge`;
//! - `payments` (queue `payments-<id>`): receives `charge`, publishes `paid`;
//! - `mailer` (queue `mailer-<id>`, ordered): subscribes to `paid`;
//! - `app`: publishes `placed`.
//!
//! Names carry a per-run id (other engineers test against the same brokers), users are
//! `t<id>_<service>`. [`Shop::work`] is what the services do with their own credentials;
//! each transport's test adds what must be refused.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use tidings::transport::{
    DeadLetterQuery, Delivery, Outgoing, QueueSpec, ReceiveOptions, Topology, Transport,
};
use tidings::Envelope;

use crate::common::bin;

/// One run's names, its report file and the users' passwords.
pub struct Shop {
    pub id: String,
    pub orders: String,
    pub payments: String,
    pub mailer: String,
    pub charge: String,
    pub paid: String,
    pub placed: String,
    dir: tempfile::TempDir,
}

/// A connection per service, each with its own credentials.
pub struct Conns {
    pub orders: Arc<dyn Transport>,
    pub payments: Arc<dyn Transport>,
    pub mailer: Arc<dyn Transport>,
    pub app: Arc<dyn Transport>,
}

pub const SERVICES: [&str; 4] = ["app", "mailer", "orders", "payments"];

impl Shop {
    pub fn new() -> Self {
        let id = uuid::Uuid::new_v4().simple().to_string()[..10].to_string();
        let shop = Shop {
            orders: format!("orders-{id}"),
            payments: format!("payments-{id}"),
            mailer: format!("mailer-{id}"),
            charge: format!("shop{id}.charge"),
            paid: format!("shop{id}.paid"),
            placed: format!("shop{id}.placed"),
            id,
            dir: tempfile::tempdir().expect("tempdir"),
        };
        std::fs::write(shop.report_path(), shop.report_json()).expect("write the report");
        shop
    }

    /// What `serde_json::to_string(bus.topology())` writes for this shop.
    pub fn report_json(&self) -> String {
        serde_json::json!({
            "endpoints": [
                {"name": self.orders, "receives": [], "subscribes": [self.paid, self.placed],
                 "sends": [self.charge], "ordered": false},
                {"name": self.payments, "receives": [self.charge], "subscribes": [],
                 "sends": [self.paid], "ordered": false},
                {"name": self.mailer, "receives": [], "subscribes": [self.paid],
                 "sends": [], "ordered": true},
            ],
            "routes": {self.charge.clone(): self.payments},
            "app_sends": [self.placed],
            "warnings": [],
        })
        .to_string()
    }

    pub fn report_path(&self) -> std::path::PathBuf {
        self.dir.path().join("topology.json")
    }

    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// The user / role name of `service`.
    pub fn user(&self, service: &str) -> String {
        format!("t{}_{service}", self.id)
    }

    /// The password of `service`'s user (random per run, never printed by the CLI).
    pub fn password(&self, service: &str) -> String {
        format!("pw{}{service}", self.id)
    }

    /// `TIDINGS_PASSWORD_<USER>` of every service, as the generated files expect them.
    pub fn password_env(&self) -> Vec<(String, String)> {
        SERVICES
            .iter()
            .map(|s| {
                let var = format!("TIDINGS_PASSWORD_{}", self.user(s).to_ascii_uppercase());
                (var, self.password(s))
            })
            .collect()
    }

    /// `tidings topology --from <report> --permissions <target> ...` (services grouped
    /// under short names), its standard output.
    pub fn permissions(&self, target: &str, extra: &[&str]) -> String {
        let prefix = format!("t{}_", self.id);
        let groups = [
            format!("orders={}", self.orders),
            format!("payments={}", self.payments),
            format!("mailer={}", self.mailer),
        ];
        let report = self.report_path();
        let mut args = vec![
            "topology",
            "--from",
            report.to_str().expect("utf-8 path"),
            "--permissions",
            target,
            "--user-prefix",
            &prefix,
        ];
        for g in &groups {
            args.extend(["--service", g.as_str()]);
        }
        args.extend(extra);
        let out = bin().args(&args).output().expect("run tidings");
        assert!(
            out.status.success(),
            "tidings {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8 output")
    }

    fn spec(&self, name: &str, subscriptions: &[&String]) -> Topology {
        Topology {
            queues: vec![QueueSpec {
                name: name.to_string(),
                subscriptions: subscriptions.iter().map(|s| s.to_string()).collect(),
                ordered: name == self.mailer,
                ..Default::default()
            }],
        }
    }

    /// Each service declares its queue (`orders` and `mailer` first: their subscriptions
    /// must exist before `paid` is published).
    pub async fn declare(&self, c: &Conns) -> anyhow::Result<()> {
        c.orders
            .declare(&self.spec(&self.orders, &[&self.paid, &self.placed]))
            .await
            .context("orders declares its queue")?;
        c.mailer
            .declare(&self.spec(&self.mailer, &[&self.paid]))
            .await
            .context("mailer declares its queue")?;
        c.payments
            .declare(&self.spec(&self.payments, &[]))
            .await
            .context("payments declares its queue")?;
        Ok(())
    }

    /// The whole flow, each step on its service's own connection: a command, a retry
    /// after a delay, a dead letter listed and purged, an event fanned out to two
    /// services, the application's own publish.
    pub async fn work(&self, c: &Conns) -> anyhow::Result<()> {
        self.declare(c).await?;
        let charge = |n: u32| Envelope::new(self.charge.clone(), 1, format!("{{\"n\":{n}}}"));
        c.orders
            .send(vec![
                Outgoing::to_queue(&self.payments, charge(1)),
                Outgoing::to_queue(&self.payments, charge(2)),
            ])
            .await
            .context("orders sends charge to payments")?;
        let mut rx = c
            .payments
            .receive(&self.payments, ReceiveOptions::default())
            .await
            .context("payments receives")?;
        let mut poison = None;
        let mut retried = false;
        let mut done = 0;
        while done < 1 || poison.is_none() {
            let d = next(rx.as_mut(), "payments").await?;
            match (&*d.envelope.body, retried) {
                (b"{\"n\":1}", false) => {
                    retried = true;
                    d.nack(Duration::from_millis(50))
                        .await
                        .context("payments nacks with a delay")?;
                }
                (b"{\"n\":1}", true) => {
                    d.ack().await.context("payments acks")?;
                    done += 1;
                }
                _ => {
                    poison = Some(d.envelope.id);
                    d.dead_letter().await.context("payments dead-letters")?;
                }
            }
        }
        let query = DeadLetterQuery {
            queue: Some(self.payments.clone()),
            ..Default::default()
        };
        let dead = c
            .payments
            .dead_letters(&query)
            .await
            .context("payments lists its dead letters")?;
        if dead.iter().map(|d| d.envelope.id).collect::<Vec<_>>() != [poison.unwrap_or_default()] {
            bail!(
                "payments_error holds {} dead letters, expected the poison message",
                dead.len()
            );
        }
        c.payments
            .purge(&query)
            .await
            .context("payments purges its dead letters")?;
        let mut paid = Envelope::new(self.paid.clone(), 1, "{}");
        paid.partition_key = Some("order-1".into());
        c.payments
            .send(vec![Outgoing::publish(paid)])
            .await
            .context("payments publishes paid")?;
        c.app
            .send(vec![Outgoing::publish(Envelope::new(
                self.placed.clone(),
                1,
                "{}",
            ))])
            .await
            .context("app publishes placed")?;
        let mut orders = c
            .orders
            .receive(&self.orders, ReceiveOptions::default())
            .await?;
        let mut got = Vec::new();
        for _ in 0..2 {
            let d = next(orders.as_mut(), "orders").await?;
            got.push(d.envelope.message_type.clone());
            d.ack().await.context("orders acks")?;
        }
        got.sort();
        if got != [self.paid.clone(), self.placed.clone()] {
            bail!("orders got {got:?}");
        }
        let ordered = ReceiveOptions {
            ordered: true,
            ..Default::default()
        };
        let mut mailer = c.mailer.receive(&self.mailer, ordered).await?;
        let d = next(mailer.as_mut(), "mailer").await?;
        if d.envelope.message_type != self.paid {
            bail!("mailer got {}", d.envelope.message_type);
        }
        d.ack().await.context("mailer acks")?;
        rx.close().await?;
        orders.close().await?;
        mailer.close().await?;
        Ok(())
    }
}

/// The next delivery within 15 s.
pub async fn next(
    rx: &mut dyn tidings::transport::Receiver,
    who: &str,
) -> anyhow::Result<Delivery> {
    match tokio::time::timeout(Duration::from_secs(15), rx.recv()).await {
        Ok(Ok(Some(d))) => Ok(d),
        Ok(Ok(None)) => bail!("{who}: the receiver ended"),
        Ok(Err(e)) => Err(anyhow::Error::new(e).context(format!("{who}: receive failed"))),
        Err(_) => bail!("{who}: nothing within 15 s"),
    }
}

/// The first error of `receive` + one `recv` of `queue` on `t` (some brokers refuse at
/// the first pull, not at subscribe), or `None` if a delivery or nothing came within
/// `wait`.
pub async fn receive_error(t: &Arc<dyn Transport>, queue: &str, wait: Duration) -> Option<String> {
    let mut rx = match t.receive(queue, ReceiveOptions::default()).await {
        Ok(rx) => rx,
        Err(e) => return Some(format!("{e:#}")),
    };
    let out = match tokio::time::timeout(wait, rx.recv()).await {
        Ok(Err(e)) => Some(format!("{e:#}")),
        Ok(Ok(Some(d))) => {
            let _ = d.release().await;
            None
        }
        _ => None,
    };
    let _ = rx.close().await;
    out
}
