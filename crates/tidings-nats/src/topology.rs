//! Declaring queues: the streams and durable consumers behind each endpoint.
//!
//! Per endpoint queue `q`:
//! - stream `<P>_Q_<q>`, work-queue retention, subjects `<prefix>.q.<q>.*`, and one
//!   *source* per subscribed event type (the stream `<P>_EV_<type>`, from the sequence
//!   after its last one at declare time, so only events published after the subscription
//!   arrive);
//! - unordered: one durable pull consumer `work` (explicit ack, `ack_wait` = lease,
//!   unlimited deliveries); ordered: `partitions` consumers `part-<n>`, each filtering
//!   `<prefix>.*.*.<n>` with `max_ack_pending = 1`;
//! - stream `<P>_ERR_<q>` (limits retention) for dead letters.
//!
//! nats-server 2.9 forbids overlapping subjects across streams, so an event cannot be
//! captured by every subscriber's stream directly; sourcing gives each subscriber its
//! own copy, server-side, with one publish acknowledgement for the publisher.

use std::time::Duration;

use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy, PullConsumer};
use async_nats::jetstream::stream::{self, RetentionPolicy, Source, StorageType};
use futures::TryStreamExt;

use crate::error::NatsError;
use crate::naming::{Names, PARTITION_CONSUMER, WORK_CONSUMER};
use crate::transport::Shared;

/// Lease used for consumers created before any receiver asked for one.
const DEFAULT_LEASE: Duration = Duration::from_secs(30);

impl Shared {
    fn storage(&self) -> StorageType {
        if self.cfg.memory_storage {
            StorageType::Memory
        } else {
            StorageType::File
        }
    }

    fn queue_description(&self, queue: &str) -> String {
        format!(
            "tidings queue `{queue}`; partitions={}",
            self.names.partitions
        )
    }

    /// Creates the stream if missing; returns its info.
    async fn ensure_stream(&self, config: stream::Config) -> Result<stream::Info, NatsError> {
        let name = config.name.clone();
        match self.js.get_stream(&name).await {
            Ok(mut s) => {
                return s
                    .info()
                    .await
                    .cloned()
                    .map_err(|e| NatsError::request(format!("stream.info {name}"), e))
            }
            Err(e) if !is_not_found(&e) => {
                return Err(NatsError::request(format!("stream.info {name}"), e))
            }
            Err(_) => {}
        }
        match self.js.create_stream(config).await {
            Ok(mut s) => s.info().await.cloned().map_err(|e| NatsError::request(format!("stream.info {name}"), e)),
            // Created by someone else meanwhile.
            Err(e) if e.to_string().contains("already in use") => {
                let mut s = self
                    .js
                    .get_stream(&name)
                    .await
                    .map_err(|e| NatsError::request(format!("stream.info {name}"), e))?;
                s.info().await.cloned().map_err(|e| NatsError::request(format!("stream.info {name}"), e))
            }
            Err(e) => Err(NatsError::request(format!("stream.create {name}"), e)),
        }
    }

    pub(crate) async fn ensure_error_stream(&self, queue: &str) -> Result<(), NatsError> {
        self.ensure_stream(stream::Config {
            name: self.names.error_stream(queue),
            subjects: vec![self.names.error_subject(queue)],
            retention: RetentionPolicy::Limits,
            storage: self.storage(),
            allow_direct: true,
            description: Some(format!("tidings error queue of `{queue}`")),
            ..Default::default()
        })
        .await
        .map(|_| ())
    }

    /// Ensures the event stream exists; returns the sequence a new subscriber starts at.
    async fn ensure_event_stream(&self, message_type: &str) -> Result<u64, NatsError> {
        let info = self
            .ensure_stream(stream::Config {
                name: self.names.event_stream(message_type),
                subjects: vec![self.names.event_subjects(message_type)],
                retention: RetentionPolicy::Limits,
                storage: self.storage(),
                max_age: self.cfg.event_max_age,
                duplicate_window: self.cfg.event_max_age.min(Duration::from_secs(120)),
                description: Some(format!("tidings events `{message_type}`")),
                ..Default::default()
            })
            .await?;
        Ok(info.state.last_sequence + 1)
    }

    /// Ensures the queue's stream exists and sources every subscribed event stream.
    pub(crate) async fn ensure_queue_stream(
        &self,
        queue: &str,
        subscriptions: &[String],
    ) -> Result<(), NatsError> {
        let name = self.names.queue_stream(queue);
        let mut wanted = Vec::new();
        for t in subscriptions {
            wanted.push((self.names.event_stream(t), t.as_str()));
        }
        for attempt in 0..5 {
            let existing = match self.js.get_stream(&name).await {
                Ok(mut s) => Some(
                    s.info()
                        .await
                        .map_err(|e| NatsError::request(format!("stream.info {name}"), e))?
                        .config
                        .clone(),
                ),
                Err(e) if is_not_found(&e) => None,
                Err(e) => return Err(NatsError::request(format!("stream.info {name}"), e)),
            };
            if let Some(cfg) = &existing {
                self.check_partitions(queue, cfg)?;
            }
            let mut sources = existing
                .as_ref()
                .and_then(|c| c.sources.clone())
                .unwrap_or_default();
            let mut changed = false;
            for (ev_stream, t) in &wanted {
                if sources.iter().any(|s| &s.name == ev_stream) {
                    continue;
                }
                let start = self.ensure_event_stream(t).await?;
                sources.push(Source {
                    name: ev_stream.clone(),
                    start_sequence: Some(start),
                    ..Default::default()
                });
                changed = true;
            }
            let result = match existing {
                Some(mut cfg) if changed => {
                    cfg.sources = Some(sources);
                    self.js.update_stream(cfg).await.map(|_| ()).map_err(|e| e.to_string())
                }
                Some(_) => return Ok(()),
                None => self
                    .js
                    .create_stream(stream::Config {
                        name: name.clone(),
                        subjects: vec![self.names.queue_subjects(queue)],
                        retention: RetentionPolicy::WorkQueue,
                        storage: self.storage(),
                        sources: (!sources.is_empty()).then_some(sources),
                        description: Some(self.queue_description(queue)),
                        ..Default::default()
                    })
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string()),
            };
            match result {
                Ok(()) => return Ok(()),
                // Lost a race with another declarer: read again and retry.
                Err(e) if attempt < 4 && e.contains("already in use") => continue,
                Err(e) => return Err(NatsError::request(format!("stream.declare {name}"), e)),
            }
        }
        Err(NatsError::request(format!("stream.declare {name}"), "kept racing with another declarer"))
    }

    fn check_partitions(&self, queue: &str, cfg: &stream::Config) -> Result<(), NatsError> {
        let theirs = cfg
            .description
            .as_deref()
            .and_then(|d| d.split("partitions=").nth(1))
            .and_then(|n| n.trim().parse::<u32>().ok());
        match theirs {
            Some(n) if n != self.names.partitions => Err(NatsError::Config(format!(
                "queue `{queue}` was declared with partitions={n}, this transport uses {}",
                self.names.partitions
            ))),
            _ => Ok(()),
        }
    }

    /// Ensures the queue's consumers exist (ordered: one per partition), with
    /// `ack_wait = lease` where a lease is given. Returns them.
    pub(crate) async fn ensure_consumers(
        &self,
        queue: &str,
        ordered: bool,
        lease: Option<Duration>,
    ) -> Result<(Vec<PullConsumer>, bool), NatsError> {
        let stream_name = self.names.queue_stream(queue);
        let stream = self.js.get_stream(&stream_name).await.map_err(|e| {
            if is_not_found(&e) {
                NatsError::UnknownQueue(queue.to_string())
            } else {
                NatsError::request(format!("stream.info {stream_name}"), e)
            }
        })?;
        let names: Vec<String> = stream
            .consumer_names()
            .try_collect()
            .await
            .map_err(|e| NatsError::request(format!("consumer.names {stream_name}"), e))?;
        let ordered = ordered || names.iter().any(|n| n.starts_with(PARTITION_CONSUMER));
        if ordered && names.iter().any(|n| n == WORK_CONSUMER) {
            stream
                .delete_consumer(WORK_CONSUMER)
                .await
                .map_err(|e| NatsError::request("consumer.delete work", e))?;
        }
        let wanted: Vec<(String, Option<String>)> = if ordered {
            (0..self.names.partitions)
                .map(|n| (Names::partition_consumer(n), Some(self.names.partition_filter(n))))
                .collect()
        } else {
            vec![(WORK_CONSUMER.to_string(), None)]
        };
        let mut out = Vec::with_capacity(wanted.len());
        for (name, filter) in wanted {
            let current = if names.contains(&name) {
                stream.get_consumer::<pull::Config>(&name).await.ok()
            } else {
                None
            };
            let ack_wait = lease.unwrap_or_else(|| {
                current
                    .as_ref()
                    .map(|c| c.cached_info().config.ack_wait)
                    .unwrap_or(DEFAULT_LEASE)
            });
            if let Some(c) = current {
                if c.cached_info().config.ack_wait == ack_wait {
                    out.push(c);
                    continue;
                }
            }
            let config = pull::Config {
                durable_name: Some(name.clone()),
                description: Some(format!("tidings consumer of `{queue}`")),
                deliver_policy: DeliverPolicy::All,
                ack_policy: AckPolicy::Explicit,
                ack_wait,
                max_deliver: -1,
                filter_subject: filter.unwrap_or_default(),
                max_ack_pending: if ordered { 1 } else { self.cfg.max_ack_pending },
                max_waiting: 4096,
                ..Default::default()
            };
            let c = stream
                .create_consumer(config)
                .await
                .map_err(|e| NatsError::request(format!("consumer.create {stream_name}/{name}"), e))?;
            out.push(c);
        }
        Ok((out, ordered))
    }
}

/// Whether a JetStream error says the stream or consumer does not exist.
pub(crate) fn is_not_found(e: &impl std::fmt::Display) -> bool {
    e.to_string().contains("not found")
}
