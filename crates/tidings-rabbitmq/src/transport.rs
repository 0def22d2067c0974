//! [`RabbitMqTransport`]: the [`Transport`] implementation.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::Utc;

use tidings_core::transport::{
    check_sizes, DeadLetter, DeadLetterQuery, Destination, Outgoing, QueueStats, ReceiveOptions,
    Receiver, Topology, Transport,
};
use tidings_core::{Error, Result};

use crate::admin;
use crate::codec::Extra;
use crate::config::RabbitMqConfig;
use crate::connection::Connector;
use crate::consumer::RabbitReceiver;
use crate::publisher::{publish_all, Publish};
use crate::topology::DelayTarget;

/// A transport on RabbitMQ. Cheap to clone; clones share one connection.
///
/// See the crate docs for how each semantic maps onto RabbitMQ.
#[derive(Clone)]
pub struct RabbitMqTransport {
    conn: Arc<Connector>,
    /// Queues known to exist (declared here or checked with a passive declare).
    known_queues: Arc<Mutex<HashSet<String>>>,
    /// Channel for dead-letter operations.
    admin: Arc<admin::AdminChannel>,
}

impl std::fmt::Debug for RabbitMqTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RabbitMqTransport")
            .field("url", &self.conn.config.redacted_url())
            .finish_non_exhaustive()
    }
}

impl RabbitMqTransport {
    /// Connects (declaring the delay infrastructure). Fails if the broker cannot be
    /// reached within the configured connect timeout.
    pub async fn connect(config: RabbitMqConfig) -> Result<Self> {
        let conn = Arc::new(Connector::new(config)?);
        conn.link().await?;
        Ok(RabbitMqTransport {
            conn,
            known_queues: Arc::new(Mutex::new(HashSet::new())),
            admin: Arc::new(admin::AdminChannel::default()),
        })
    }

    /// The configuration (its `Debug` hides the password).
    pub fn config(&self) -> &RabbitMqConfig {
        &self.conn.config
    }

    fn is_known(&self, queue: &str) -> bool {
        self.conn.is_declared(queue)
            || self
                .known_queues
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .contains(queue)
    }

    /// Fails with `UnknownQueue` unless every destination queue exists.
    async fn check_queues(&self, messages: &[Outgoing]) -> Result<()> {
        for m in messages {
            if let Destination::Queue(q) = &m.destination {
                if !self.is_known(q) {
                    admin::message_count(&self.conn, q).await?;
                    self.known_queues
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(q.clone());
                }
            }
        }
        Ok(())
    }
}

#[async_trait]
impl Transport for RabbitMqTransport {
    fn name(&self) -> &'static str {
        "rabbitmq"
    }

    fn max_message_size(&self) -> usize {
        self.conn.config.max_message_size
    }

    async fn declare(&self, topology: &Topology) -> Result<()> {
        self.conn.declare_queues(&topology.queues).await
    }

    async fn send(&self, messages: Vec<Outgoing>) -> Result<()> {
        if self.conn.is_closed() {
            return Err(Error::Shutdown);
        }
        check_sizes(&messages, self.conn.config.max_message_size)?;
        self.check_queues(&messages).await?;
        let now = Utc::now();
        let mut publishes = Vec::with_capacity(messages.len());
        for m in &messages {
            let env = &m.envelope;
            if m.destination == Destination::Topic && !self.conn.has_exchange(&env.message_type) {
                self.conn.declare_exchange(&env.message_type).await?;
            }
            let delay = env
                .scheduled_for
                .and_then(|at| (at - now).to_std().ok())
                .filter(|d| !d.is_zero());
            let extra = Extra::default();
            let p = match (&m.destination, delay) {
                (Destination::Queue(q), None) => Publish::to_queue(q, env, &extra)?,
                (Destination::Topic, None) => Publish::to_topic(env, &extra)?,
                (Destination::Queue(q), Some(d)) => Publish::delayed(
                    self.conn.config.queue_type,
                    DelayTarget::Queue(q),
                    d,
                    env,
                    &extra,
                )?,
                (Destination::Topic, Some(d)) => Publish::delayed(
                    self.conn.config.queue_type,
                    DelayTarget::Topic(&env.message_type),
                    d,
                    env,
                    &extra,
                )?,
            };
            publishes.push(p);
        }
        publish_all(&self.conn, publishes).await
    }

    async fn receive(&self, queue: &str, options: ReceiveOptions) -> Result<Box<dyn Receiver>> {
        if self.conn.is_closed() {
            return Err(Error::Shutdown);
        }
        let ordered = self.conn.is_ordered(queue);
        let r = RabbitReceiver::start(self.conn.clone(), queue, options, ordered).await?;
        Ok(Box::new(r))
    }

    async fn stats(&self) -> Result<Vec<QueueStats>> {
        admin::stats(&self.conn).await
    }

    async fn dead_letters(&self, query: &DeadLetterQuery) -> Result<Vec<DeadLetter>> {
        admin::dead_letters(&self.conn, &self.admin, query).await
    }

    async fn replay(&self, query: &DeadLetterQuery, to: Option<&str>) -> Result<u64> {
        admin::replay(&self.conn, &self.admin, query, to).await
    }

    async fn purge(&self, query: &DeadLetterQuery) -> Result<u64> {
        admin::purge(&self.conn, &self.admin, query).await
    }

    /// Deletes the queue and its error queue. Delayed copies for the queue still
    /// travelling through the shared delay levels are dropped when they come out (no
    /// binding routes them any more), unless the queue is declared again by then.
    async fn delete_queue(&self, queue: &str) -> Result<()> {
        if self.conn.is_closed() {
            return Err(Error::Shutdown);
        }
        self.conn.forget_queue(queue);
        self.known_queues
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(queue);
        admin::delete_queue(&self.conn, queue).await
    }

    async fn close(&self) -> Result<()> {
        self.conn.close().await;
        Ok(())
    }
}
