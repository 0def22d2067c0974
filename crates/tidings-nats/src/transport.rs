//! [`NatsTransport`]: the [`Transport`] on NATS JetStream. Connection, sending, stats and
//! close live here; publishing in `publish`, declaring in `topology`, receiving in
//! `receiver`, settling in `settle`, dead letters in `dead_letter`, stats in `stats`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use async_nats::jetstream;
use async_trait::async_trait;
use futures::stream::TryStreamExt;
use tidings_core::transport::{
    check_sizes, DeadLetter, DeadLetterQuery, Outgoing, QueueStats, ReceiveOptions, Receiver,
    Topology, Transport,
};
use tidings_core::Result;

use crate::config::NatsConfig;
use crate::error::NatsError;
use crate::naming::Names;
use crate::topology::is_not_found;

/// Room left in the server's max payload for the envelope header.
const HEADER_RESERVE: usize = 8 * 1024;

/// State shared by the transport, its receivers and settle handles.
pub(crate) struct Shared {
    pub(crate) cfg: NatsConfig,
    pub(crate) client: async_nats::Client,
    pub(crate) js: jetstream::Context,
    pub(crate) names: Names,
    pub(crate) closed: AtomicBool,
    pub(crate) max_size: usize,
    pub(crate) max_payload: usize,
}

impl Shared {
    pub(crate) fn check_open(&self) -> std::result::Result<(), NatsError> {
        if self.closed.load(Ordering::Acquire) {
            Err(NatsError::Closed)
        } else {
            Ok(())
        }
    }
}

/// The NATS JetStream transport. Cheap to clone; clones share one connection.
#[derive(Clone)]
pub struct NatsTransport {
    pub(crate) shared: Arc<Shared>,
}

impl std::fmt::Debug for NatsTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsTransport")
            .field("config", &self.shared.cfg)
            .finish_non_exhaustive()
    }
}

impl NatsTransport {
    /// Connects and checks that the server offers JetStream (nats-server 2.9 or newer).
    pub async fn connect(config: NatsConfig) -> std::result::Result<Self, NatsError> {
        config.validate()?;
        let client = config
            .connect_options()
            .connect(config.server.as_str())
            .await
            .map_err(|e| NatsError::Connect {
                url: config.redacted_url(),
                message: config.scrub(&e.to_string()),
                kind: crate::error::Classify::classify(&e),
            })?;
        let info = client.server_info();
        if !version_at_least(&info.version, 2, 9) {
            return Err(NatsError::JetStreamUnavailable(format!(
                "nats-server {} is older than 2.9",
                info.version
            )));
        }
        let js = jetstream::ContextBuilder::new()
            .timeout(config.request_timeout)
            .ack_timeout(config.request_timeout)
            .max_ack_inflight(65_536)
            .backpressure_on_inflight(false)
            .build(client.clone());
        check_jetstream(&client).await?;
        let max_payload = info.max_payload;
        let max_size = config
            .max_message_size
            .unwrap_or_else(|| max_payload.saturating_sub(HEADER_RESERVE))
            .min(max_payload);
        tracing::debug!(server = %config, version = %info.version, "connected to NATS");
        Ok(NatsTransport {
            shared: Arc::new(Shared {
                names: Names::new(&config.prefix, config.partitions),
                cfg: config,
                client,
                js,
                closed: AtomicBool::new(false),
                max_size,
                max_payload,
            }),
        })
    }

    /// The configuration in use.
    pub fn config(&self) -> &NatsConfig {
        &self.shared.cfg
    }

    /// The underlying async-nats client (for health checks and tools).
    pub fn client(&self) -> &async_nats::Client {
        &self.shared.client
    }

    /// The subject a message for `queue` with this partition key is published on: for a
    /// producer outside Tidings (and tests) that publishes onto a queue directly. Such a
    /// message must carry Tidings' envelope header, or the receiver dead-letters it as
    /// `undecodable`.
    pub fn queue_subject(&self, queue: &str, partition_key: Option<&str>) -> String {
        let names = &self.shared.names;
        let partition = names.partition(partition_key, &uuid::Uuid::nil());
        names.queue_subject(queue, partition)
    }

    /// Deletes every stream under this transport's prefix (queues, error queues, event
    /// streams): for tests and tearing down environments. Returns how many.
    pub async fn delete_all(&self) -> std::result::Result<usize, NatsError> {
        let names: Vec<String> = self
            .shared
            .js
            .stream_names()
            .try_collect()
            .await
            .map_err(|e| NatsError::request("stream.names", e))?;
        let mut n = 0;
        for s in names
            .into_iter()
            .filter(|s| self.shared.names.owns_stream(s))
        {
            match self.shared.js.delete_stream(&s).await {
                Ok(_) => n += 1,
                Err(e) if is_not_found(&e) => {}
                Err(e) => return Err(NatsError::request(format!("stream.delete {s}"), e)),
            }
        }
        Ok(n)
    }
}

/// Asks the JetStream API for account info (raw: 2.9's answer lacks newer fields).
async fn check_jetstream(client: &async_nats::Client) -> std::result::Result<(), NatsError> {
    let reply = client
        .request("$JS.API.INFO", bytes::Bytes::new())
        .await
        .map_err(|e| NatsError::JetStreamUnavailable(e.to_string()))?;
    let v: serde_json::Value = serde_json::from_slice(&reply.payload)
        .map_err(|e| NatsError::JetStreamUnavailable(e.to_string()))?;
    match v.get("error") {
        Some(err) => Err(NatsError::JetStreamUnavailable(err.to_string())),
        None => Ok(()),
    }
}

fn version_at_least(version: &str, major: u32, minor: u32) -> bool {
    let mut parts = version
        .trim_start_matches('v')
        .split(['.', '-'])
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let (a, b) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (a, b) >= (major, minor)
}

#[async_trait]
impl Transport for NatsTransport {
    fn name(&self) -> &'static str {
        "nats"
    }

    fn max_message_size(&self) -> usize {
        self.shared.max_size
    }

    async fn declare(&self, topology: &Topology) -> Result<()> {
        self.shared.check_open()?;
        for spec in &topology.queues {
            self.shared.ensure_error_stream(&spec.name).await?;
            let ordered = self
                .shared
                .ensure_queue(&spec.name, &spec.subscriptions, spec.ordered)
                .await?;
            if ordered {
                self.shared.ensure_park_stream(&spec.name).await?;
            }
            self.shared.ensure_delay(&spec.name).await?;
            self.shared
                .ensure_consumers(&spec.name, ordered, None)
                .await?;
        }
        Ok(())
    }

    async fn send(&self, messages: Vec<Outgoing>) -> Result<()> {
        self.shared.check_open()?;
        check_sizes(&messages, self.shared.max_size)?;
        let prepared = messages
            .iter()
            .map(|m| self.shared.prepare(m, &m.envelope.id.to_string()))
            .collect::<Result<Vec<_>>>()?;
        self.shared.publish_all(prepared).await
    }

    async fn receive(&self, queue: &str, options: ReceiveOptions) -> Result<Box<dyn Receiver>> {
        self.shared.check_open()?;
        let r = crate::receiver::NatsReceiver::start(self.shared.clone(), queue, options).await?;
        Ok(Box::new(r))
    }

    async fn stats(&self) -> Result<Vec<QueueStats>> {
        self.shared.check_open()?;
        crate::stats::stats(&self.shared).await.map_err(Into::into)
    }

    async fn dead_letters(&self, query: &DeadLetterQuery) -> Result<Vec<DeadLetter>> {
        self.shared.check_open()?;
        let found = crate::dead_letter::scan(&self.shared, query).await?;
        Ok(found.into_iter().map(|f| f.dead_letter).collect())
    }

    async fn replay(&self, query: &DeadLetterQuery, to: Option<&str>) -> Result<u64> {
        self.shared.check_open()?;
        crate::dead_letter::replay(&self.shared, query, to).await
    }

    async fn purge(&self, query: &DeadLetterQuery) -> Result<u64> {
        self.shared.check_open()?;
        crate::dead_letter::purge(&self.shared, query).await
    }

    async fn delete_queue(&self, queue: &str) -> Result<()> {
        self.shared.check_open()?;
        self.shared.delete_queue(queue).await.map_err(Into::into)
    }

    async fn close(&self) -> Result<()> {
        if !self.shared.closed.swap(true, Ordering::AcqRel) {
            // Flushes what is buffered, then closes the connection.
            if let Err(e) = self.shared.client.drain().await {
                tracing::debug!(error = %e, "draining the NATS connection");
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn version_compare() {
        assert!(super::version_at_least("2.9.10", 2, 9));
        assert!(super::version_at_least("2.10.0-beta", 2, 9));
        assert!(!super::version_at_least("2.8.4", 2, 9));
    }
}
