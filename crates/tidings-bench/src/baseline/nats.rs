//! The raw NATS JetStream baseline with async-nats: a file-storage work-queue stream, a
//! durable pull consumer with explicit acks; publishes wait for the stream's ack (many in
//! flight). Fan-out: an interest-retention stream with one durable consumer per subscriber.

use std::sync::Arc;

use async_nats::jetstream::{self, consumer, stream};
use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use tokio::task::JoinHandle;

use crate::payload::{decode, encode};
use crate::system::{Locator, Setup, System};
use crate::tidings_sys::unique;

/// Raw async-nats JetStream.
pub struct RawNats {
    js: jetstream::Context,
    subject: String,
    consumers: Vec<JoinHandle<anyhow::Result<()>>>,
    locator: Locator,
    size: usize,
}

/// The server's version.
pub async fn server_version(url: &str) -> anyhow::Result<String> {
    let client = async_nats::connect(url).await?;
    Ok(client.server_info().version)
}

impl RawNats {
    /// A new stream with its consumers, or the stream `setup.attach` names.
    pub async fn open(url: &str, setup: &Setup) -> anyhow::Result<Self> {
        let (name, queues) = match &setup.attach {
            Some(l) => (l.namespace.clone(), l.queues.clone()),
            None => {
                let name = format!("RAW_{}", unique());
                let queues = (0..setup.fanout.max(1)).map(|i| format!("c{i}")).collect();
                (name, queues)
            }
        };
        let subject = format!("rawbench.{name}");
        let client = async_nats::connect(url).await?;
        let js = jetstream::new(client);
        let retention = if queues.len() > 1 {
            stream::RetentionPolicy::Interest
        } else {
            stream::RetentionPolicy::WorkQueue
        };
        let s = js
            .get_or_create_stream(stream::Config {
                name: name.clone(),
                subjects: vec![subject.clone()],
                retention,
                storage: stream::StorageType::File,
                ..Default::default()
            })
            .await
            .map_err(|e| anyhow::anyhow!("creating stream {name}: {e}"))?;
        let mut handles = Vec::new();
        for q in &queues {
            handles.push(
                s.get_or_create_consumer(
                    q,
                    consumer::pull::Config {
                        durable_name: Some(q.clone()),
                        ack_policy: consumer::AckPolicy::Explicit,
                        max_ack_pending: 20_000,
                        ..Default::default()
                    },
                )
                .await
                .map_err(|e| anyhow::anyhow!("creating consumer {q}: {e}"))?,
            );
        }
        let mut consumers = Vec::new();
        for (c, t) in handles.into_iter().zip(&setup.trackers) {
            let t = Arc::clone(t);
            let mut msgs = c
                .stream()
                .max_messages_per_batch(setup.prefetch)
                .messages()
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            consumers.push(tokio::spawn(async move {
                while let Some(m) = msgs.next().await {
                    let m = m.map_err(|e| anyhow::anyhow!("{e}"))?;
                    t.received(decode(&m.payload));
                    m.ack().await.map_err(|e| anyhow::anyhow!("{e}"))?;
                    t.acked(1);
                }
                Ok(())
            }));
        }
        Ok(RawNats {
            js,
            subject,
            consumers,
            locator: Locator {
                kind: Some(crate::opts::TransportKind::Nats),
                raw: true,
                url: url.to_string(),
                namespace: name,
                queues,
            },
            size: setup.size,
        })
    }
}

#[async_trait]
impl System for RawNats {
    async fn send(&self, msgs: Vec<(u64, u64)>) -> anyhow::Result<()> {
        let mut acks = Vec::with_capacity(msgs.len());
        for (seq, sent) in msgs {
            let body = Bytes::from(encode(seq, sent, self.size));
            acks.push(
                self.js
                    .publish(self.subject.clone(), body)
                    .await
                    .map_err(|e| anyhow::anyhow!("{e}"))?,
            );
        }
        for a in acks {
            a.await.map_err(|e| anyhow::anyhow!("{e}"))?;
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
        if cleanup {
            self.js
                .delete_stream(&self.locator.namespace)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        Ok(())
    }
}
