//! Tidings under test: a [`Bus`] on one transport, with one endpoint (a [`Work`] command
//! handler) or three (each subscribed to the [`Tick`] event), going through the whole
//! consumer pipeline — with the SQLite inbox on the SQLite transport. Each run gets its own
//! database / schema / queues / stream prefix, removed afterwards.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use tidings::nats::{NatsConfig, NatsTransport};
use tidings::postgres::{PostgresConfig, PostgresTransport};
use tidings::rabbitmq::{RabbitMqConfig, RabbitMqTransport};
use tidings::sqlite::{Durability, SqliteConfig, SqliteInbox, SqliteTransport};
use tidings::transport::memory::MemoryTransport;
use tidings::transport::{QueueSpec, Topology, Transport};
use tidings::{Bus, ConsumeContext, Endpoint, HandlerError, Message, Redelivery, SendOptions};

use crate::counted::Counted;
use crate::opts::TransportKind;
use crate::payload::{pad, Tick, Work};
use crate::system::{Locator, Setup, System};
use crate::tracker::Tracker;

/// Handlers running at once per endpoint.
const CONCURRENCY: usize = 32;

/// What to remove when done.
enum Cleanup {
    Nothing,
    Dir(#[allow(dead_code)] tempfile::TempDir), // removed on drop
    Schema(PostgresTransport, String),
    Rabbit(String, Vec<String>, Vec<String>),
    Nats(NatsTransport),
}

/// Tidings on one transport.
pub struct TidingsSystem {
    bus: Bus,
    transport: Arc<dyn Transport>,
    locator: Locator,
    pad: String,
    publish: bool,
    cleanup: Cleanup,
}

/// A short random id for names.
pub fn unique() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..10].to_string()
}

impl TidingsSystem {
    /// Connects to `kind` (`url` for servers) and starts a bus per `setup`.
    pub async fn open(kind: TransportKind, url: &str, setup: &Setup) -> anyhow::Result<Self> {
        let id = unique();
        let attach = setup.attach.clone();
        let queues: Vec<String> = match &attach {
            Some(l) => l.queues.clone(),
            None => (0..setup.fanout.max(1))
                .map(|i| format!("bench_{id}_{i}"))
                .collect(),
        };
        let mut locator = Locator {
            kind: Some(kind),
            raw: false,
            url: url.to_string(),
            namespace: String::new(),
            queues: queues.clone(),
        };
        let mut inbox = None;
        let (transport, cleanup): (Arc<dyn Transport>, Cleanup) = match kind {
            TransportKind::Memory => (Arc::new(MemoryTransport::new()), Cleanup::Nothing),
            TransportKind::Sqlite => {
                let (path, dir) = match &attach {
                    Some(l) => (std::path::PathBuf::from(&l.url), None),
                    None => {
                        let dir = tempfile::tempdir()?;
                        (dir.path().join("tidings.db"), Some(dir))
                    }
                };
                locator.url = path.display().to_string();
                let cfg = SqliteConfig::new(&path).durability(Durability::Fsync);
                let t = SqliteTransport::connect(cfg).await?;
                if setup.inbox {
                    inbox = Some(Arc::new(SqliteInbox::new(t.clone())));
                }
                let cleanup = dir.map_or(Cleanup::Nothing, Cleanup::Dir);
                (Arc::new(t), cleanup)
            }
            TransportKind::Postgres => {
                let schema = attach
                    .as_ref()
                    .map_or_else(|| format!("bench_{id}"), |l| l.namespace.clone());
                locator.namespace = schema.clone();
                let cfg = PostgresConfig::from_url(url)?.with_schema(&schema);
                let t = PostgresTransport::connect(cfg).await?;
                (Arc::new(t.clone()), Cleanup::Schema(t, schema))
            }
            TransportKind::Rabbitmq => {
                let t = RabbitMqTransport::connect(RabbitMqConfig::from_url(url)?).await?;
                let mut qs = queues.clone();
                qs.extend(queues.iter().map(|q| format!("{q}_error")));
                let exchanges = if setup.fanout > 1 {
                    vec![format!("tidings.{}", Tick::NAME)]
                } else {
                    Vec::new()
                };
                (Arc::new(t), Cleanup::Rabbit(url.to_string(), qs, exchanges))
            }
            TransportKind::Nats => {
                let prefix = attach
                    .as_ref()
                    .map_or_else(|| format!("bench_{id}"), |l| l.namespace.clone());
                locator.namespace = prefix.clone();
                let t =
                    NatsTransport::connect(NatsConfig::from_url(url)?.with_prefix(&prefix)).await?;
                (Arc::new(t.clone()), Cleanup::Nats(t))
            }
        };
        let trackers: HashMap<String, Arc<Tracker>> = queues
            .iter()
            .cloned()
            .zip(setup.trackers.iter().cloned())
            .collect();
        let counted: Arc<dyn Transport> = Arc::new(Counted::new(transport.clone(), trackers));
        let publish = setup.fanout > 1;
        let mut b = Bus::builder(counted.clone()).name(format!("bench_{id}"));
        if publish {
            b = b.sends::<Tick>();
        } else {
            b = b.route::<Work>(queues[0].clone()).sends::<Work>();
        }
        for (q, t) in queues.iter().zip(&setup.trackers) {
            let mut ep = Endpoint::new(q.clone())
                .prefetch(setup.prefetch)
                .concurrency(CONCURRENCY)
                .redelivery(Redelivery::none());
            if let Some(inbox) = &inbox {
                ep = ep.inbox(inbox.clone());
            }
            let t = t.clone();
            ep = if publish {
                ep.handle_fn(move |m: Tick, _: ConsumeContext| {
                    t.received(Some((m.seq, m.sent_ns)));
                    async { Ok::<(), HandlerError>(()) }
                })
            } else {
                ep.handle_fn(move |m: Work, _: ConsumeContext| {
                    t.received(Some((m.seq, m.sent_ns)));
                    async { Ok::<(), HandlerError>(()) }
                })
            };
            b = b.endpoint(ep);
        }
        if setup.trackers.is_empty() {
            // Enqueue only: declare the queues the consumer (a child process) will take.
            let topo = Topology {
                queues: queues
                    .iter()
                    .map(|q| QueueSpec {
                        name: q.clone(),
                        commands: vec![Work::NAME.to_string()],
                        subscriptions: if publish {
                            vec![Tick::NAME.to_string()]
                        } else {
                            Vec::new()
                        },
                        ..QueueSpec::default()
                    })
                    .collect(),
            };
            counted.declare(&topo).await?;
        }
        let bus = b.start().await.context("starting the bus")?;
        Ok(TidingsSystem {
            bus,
            transport,
            locator,
            pad: pad(setup.size),
            publish,
            cleanup,
        })
    }
}

#[async_trait]
impl System for TidingsSystem {
    async fn send(&self, msgs: Vec<(u64, u64)>) -> anyhow::Result<()> {
        let pad = &self.pad;
        if let [(seq, sent_ns)] = msgs[..] {
            if self.publish {
                let m = Tick {
                    seq,
                    sent_ns,
                    pad: pad.clone(),
                };
                self.bus.publish(&m).await?;
            } else {
                let m = Work {
                    seq,
                    sent_ns,
                    pad: pad.clone(),
                };
                self.bus.send(&m).await?;
            }
            return Ok(());
        }
        let p = self.bus.producer();
        let out = msgs
            .into_iter()
            .map(|(seq, sent_ns)| {
                let pad = pad.clone();
                if self.publish {
                    p.outgoing(&Tick { seq, sent_ns, pad }, SendOptions::default())
                } else {
                    p.outgoing(&Work { seq, sent_ns, pad }, SendOptions::default())
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        self.bus.send_raw(out).await?;
        Ok(())
    }

    fn locator(&self) -> Locator {
        self.locator.clone()
    }

    async fn finish(self: Box<Self>, cleanup: bool) -> anyhow::Result<()> {
        self.bus.shutdown(Duration::from_secs(10)).await;
        let mut result = Ok(());
        if cleanup {
            result = match self.cleanup {
                Cleanup::Nothing | Cleanup::Dir(_) => Ok(()),
                Cleanup::Schema(t, schema) => {
                    let drop = format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE");
                    sqlx::raw_sql(sqlx::AssertSqlSafe(drop))
                        .execute(t.pool())
                        .await
                        .map(|_| ())
                        .map_err(anyhow::Error::from)
                }
                Cleanup::Rabbit(url, queues, exchanges) => {
                    crate::baseline::rabbitmq::delete(&url, &queues, &exchanges).await
                }
                Cleanup::Nats(t) => t.delete_all().await.map(|_| ()).map_err(Into::into),
            };
        }
        self.transport.close().await?;
        result
    }
}
