//! The raw RabbitMQ baseline with lapin: durable quorum queues, persistent messages,
//! publisher confirms (each publish waits for its confirm; many in flight), manual acks
//! with a prefetch. Fan-out: a fanout exchange bound to one queue per consumer.

use std::sync::Arc;

use async_trait::async_trait;
use futures::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions,
    QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{
    BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, ExchangeKind,
};
use tokio::task::JoinHandle;

use crate::payload::{decode, encode};
use crate::system::{Locator, Setup, System};
use crate::tidings_sys::unique;

/// Raw lapin.
pub struct RawRabbit {
    conn: Connection,
    publisher: Channel,
    exchange: String,
    routing_key: String,
    consumers: Vec<JoinHandle<anyhow::Result<()>>>,
    locator: Locator,
    size: usize,
}

fn quorum() -> FieldTable {
    let mut args = FieldTable::default();
    args.insert(
        "x-queue-type".into(),
        AMQPValue::LongString(LongString::from("quorum")),
    );
    args
}

/// Deletes `queues` and `exchanges` (what a run created).
pub async fn delete(url: &str, queues: &[String], exchanges: &[String]) -> anyhow::Result<()> {
    let conn = Connection::connect(url, ConnectionProperties::default()).await?;
    let ch = conn.create_channel().await?;
    for q in queues {
        ch.queue_delete(q.as_str().into(), QueueDeleteOptions::default())
            .await?;
    }
    for e in exchanges {
        ch.exchange_delete(e.as_str().into(), ExchangeDeleteOptions::default())
            .await?;
    }
    conn.close(200, "OK".into()).await?;
    Ok(())
}

/// The broker's version: `rabbitmqctl version` where the broker is local and the tool is
/// installed (AMQP itself does not expose it through lapin).
pub async fn server_version() -> anyhow::Result<String> {
    let out = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        tokio::process::Command::new("rabbitmqctl")
            .arg("version")
            .kill_on_drop(true)
            .output(),
    )
    .await??;
    anyhow::ensure!(out.status.success(), "rabbitmqctl version failed");
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

impl RawRabbit {
    /// New quorum queues (and a fanout exchange for several), or those `setup.attach` names.
    pub async fn open(url: &str, setup: &Setup) -> anyhow::Result<Self> {
        let id = unique();
        let (queues, exchange) = match &setup.attach {
            Some(l) => (l.queues.clone(), l.namespace.clone()),
            None => {
                let queues: Vec<String> = (0..setup.fanout.max(1))
                    .map(|i| format!("raw_{id}_{i}"))
                    .collect();
                let exchange = if queues.len() > 1 {
                    format!("raw_{id}_fanout")
                } else {
                    String::new()
                };
                (queues, exchange)
            }
        };
        let conn = Connection::connect(url, ConnectionProperties::default()).await?;
        let publisher = conn.create_channel().await?;
        if !exchange.is_empty() {
            publisher
                .exchange_declare(
                    exchange.as_str().into(),
                    ExchangeKind::Fanout,
                    ExchangeDeclareOptions {
                        durable: true,
                        ..ExchangeDeclareOptions::default()
                    },
                    FieldTable::default(),
                )
                .await?;
        }
        for q in &queues {
            publisher
                .queue_declare(q.as_str().into(), QueueDeclareOptions::durable(), quorum())
                .await?;
            if !exchange.is_empty() {
                publisher
                    .queue_bind(
                        q.as_str().into(),
                        exchange.as_str().into(),
                        "".into(),
                        QueueBindOptions::default(),
                        FieldTable::default(),
                    )
                    .await?;
            }
        }
        publisher
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        let mut consumers = Vec::new();
        for (q, t) in queues.iter().zip(&setup.trackers) {
            let ch = conn.create_channel().await?;
            ch.basic_qos(
                u16::try_from(setup.prefetch).unwrap_or(u16::MAX),
                BasicQosOptions::default(),
            )
            .await?;
            let mut consumer = ch
                .basic_consume(
                    q.as_str().into(),
                    "".into(),
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                )
                .await?;
            let t = Arc::clone(t);
            consumers.push(tokio::spawn(async move {
                let _ch = ch;
                while let Some(d) = consumer.next().await {
                    let d = d?;
                    t.received(decode(&d.data));
                    d.ack(BasicAckOptions::default()).await?;
                    t.acked(1);
                }
                Ok(())
            }));
        }
        let routing_key = if exchange.is_empty() {
            queues[0].clone()
        } else {
            String::new()
        };
        Ok(RawRabbit {
            conn,
            publisher,
            routing_key,
            locator: Locator {
                kind: Some(crate::opts::TransportKind::Rabbitmq),
                raw: true,
                url: url.to_string(),
                namespace: exchange.clone(),
                queues,
            },
            exchange,
            consumers,
            size: setup.size,
        })
    }
}

#[async_trait]
impl System for RawRabbit {
    async fn send(&self, msgs: Vec<(u64, u64)>) -> anyhow::Result<()> {
        let mut confirms = Vec::with_capacity(msgs.len());
        for (seq, sent) in msgs {
            let body = encode(seq, sent, self.size);
            confirms.push(
                self.publisher
                    .basic_publish(
                        self.exchange.as_str().into(),
                        self.routing_key.as_str().into(),
                        BasicPublishOptions::default(),
                        &body,
                        BasicProperties::default().with_delivery_mode(2),
                    )
                    .await?,
            );
        }
        for c in confirms {
            if !matches!(c.await?, Confirmation::Ack(None)) {
                anyhow::bail!("publish not confirmed by RabbitMQ");
            }
        }
        Ok(())
    }

    fn locator(&self) -> Locator {
        self.locator.clone()
    }

    async fn finish(self: Box<Self>, cleanup: bool) -> anyhow::Result<()> {
        for c in &self.consumers {
            c.abort();
        }
        let _ = self.conn.close(200, "OK".into()).await;
        if cleanup {
            let exchanges: Vec<String> = [self.exchange.clone()]
                .into_iter()
                .filter(|e| !e.is_empty())
                .collect();
            delete(&self.locator.url, &self.locator.queues, &exchanges).await?;
        }
        Ok(())
    }
}
