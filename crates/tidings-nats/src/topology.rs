//! Declaring (and deleting) queues: the streams and durable consumers behind each
//! endpoint.
//!
//! Per endpoint queue `q`:
//! - unordered: stream `<P>_Q_<q>` (work-queue retention, subjects `<prefix>.q.<q>.*`);
//!   ordered: one such stream per partition, `<P>_O_<q>_<n>` capturing
//!   `<prefix>.q.<q>.<n>`;
//! - each queue stream *sources* every subscribed event stream `<P>_EV_<type>` (an
//!   ordered partition only its partition's subject), from the sequence after the last
//!   one at declare time, so only events published after the subscription arrive;
//! - on each queue stream one durable pull consumer `work`: explicit ack, `ack_wait` =
//!   lease, unlimited deliveries; `max_ack_pending = 1` on ordered partitions;
//! - stream `<P>_ERR_<q>` (limits retention) for dead letters;
//! - stream `<P>_DL_<q>` with consumer `pump` for messages not due yet (see `delay`).
//!
//! nats-server 2.9 forbids overlapping subjects across streams, so an event cannot be
//! captured by every subscriber's stream directly; sourcing gives each subscriber its
//! own copy, server-side, with one publish acknowledgement for the publisher.

use std::time::Duration;

use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy, PullConsumer};
use async_nats::jetstream::stream::{self, RetentionPolicy, Source, StorageType};

use crate::error::NatsError;
use crate::naming::WORK_CONSUMER;
use crate::transport::Shared;

/// Lease used for consumers created before any receiver asked for one.
const DEFAULT_LEASE: Duration = Duration::from_secs(30);

/// One stream of a queue: the whole queue, or one partition of an ordered queue.
pub(crate) struct Part {
    pub(crate) stream: String,
    subject: String,
    partition: Option<u32>,
}

/// Whether a JetStream error says the stream, consumer or message does not exist.
pub(crate) fn is_not_found(e: &impl std::fmt::Display) -> bool {
    let m = e.to_string();
    m.contains("not found") || m.contains("no message found")
}

/// Whether creating or updating a stream lost a race: the API answered "stream name
/// already in use" (by its error code).
fn name_in_use(e: &async_nats::jetstream::context::CreateStreamError) -> bool {
    use async_nats::jetstream::context::CreateStreamErrorKind;
    matches!(e.kind(), CreateStreamErrorKind::JetStream(api)
        if api.error_code() == async_nats::jetstream::ErrorCode::STREAM_NAME_EXIST)
}

impl Shared {
    pub(crate) fn storage(&self) -> StorageType {
        if self.cfg.memory_storage {
            StorageType::Memory
        } else {
            StorageType::File
        }
    }

    /// The streams of `queue` in the given layout.
    pub(crate) fn parts(&self, queue: &str, ordered: bool) -> Vec<Part> {
        if ordered {
            (0..self.names.partitions)
                .map(|n| Part {
                    stream: self.names.ordered_stream(queue, n),
                    subject: self.names.queue_subject(queue, n),
                    partition: Some(n),
                })
                .collect()
        } else {
            vec![Part {
                stream: self.names.queue_stream(queue),
                subject: self.names.queue_subjects(queue),
                partition: None,
            }]
        }
    }

    /// The stream's config, `None` if it does not exist.
    async fn stream_config(&self, name: &str) -> Result<Option<stream::Config>, NatsError> {
        match self.js.get_stream(name).await {
            Ok(mut s) => Ok(Some(
                s.info()
                    .await
                    .map_err(|e| NatsError::request(format!("stream.info {name}"), e))?
                    .config
                    .clone(),
            )),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(NatsError::request(format!("stream.info {name}"), e)),
        }
    }

    /// The queue's layout on the server: `Some(ordered)`, or `None` if not declared.
    pub(crate) async fn layout(&self, queue: &str) -> Result<Option<bool>, NatsError> {
        if self
            .stream_config(&self.names.queue_stream(queue))
            .await?
            .is_some()
        {
            return Ok(Some(false));
        }
        match self
            .stream_config(&self.names.ordered_stream(queue, 0))
            .await?
        {
            Some(cfg) => {
                self.check_partitions(queue, &cfg)?;
                Ok(Some(true))
            }
            None => Ok(None),
        }
    }

    /// Creates the stream if missing; returns its last sequence.
    pub(crate) async fn ensure_stream(&self, config: stream::Config) -> Result<u64, NatsError> {
        let name = config.name.clone();
        let info = match self.js.get_stream(&name).await {
            Ok(mut s) => s.info().await.cloned(),
            Err(e) if !is_not_found(&e) => {
                return Err(NatsError::request(format!("stream.info {name}"), e))
            }
            Err(_) => match self.js.create_stream(config).await {
                Ok(mut s) => s.info().await.cloned(),
                // Created by someone else meanwhile.
                Err(e) if name_in_use(&e) => {
                    let mut s = self
                        .js
                        .get_stream(&name)
                        .await
                        .map_err(|e| NatsError::request(format!("stream.info {name}"), e))?;
                    s.info().await.cloned()
                }
                Err(e) => return Err(NatsError::request(format!("stream.create {name}"), e)),
            },
        };
        info.map(|i| i.state.last_sequence)
            .map_err(|e| NatsError::request(format!("stream.info {name}"), e))
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
        let last = self
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
        Ok(last + 1)
    }

    /// Ensures the queue's stream(s) exist and source every subscribed event stream.
    /// Returns the layout in force (an existing ordered queue stays ordered).
    pub(crate) async fn ensure_queue(
        &self,
        queue: &str,
        subscriptions: &[String],
        ordered: bool,
    ) -> Result<bool, NatsError> {
        let ordered = match self.layout(queue).await? {
            Some(false) if ordered => return Err(self.not_ordered(queue)),
            Some(existing) => existing,
            None => ordered,
        };
        for part in self.parts(queue, ordered) {
            self.ensure_part(queue, &part, subscriptions).await?;
        }
        Ok(ordered)
    }

    /// Deletes every stream of `queue` — the queue stream or the ordered partitions (their
    /// `work` consumers and sources go with them), the error stream, the park stream, the
    /// delay stream (with its `pump` consumer) —
    /// skipping the ones that do not exist. Event streams are shared and stay.
    pub(crate) async fn delete_queue(&self, queue: &str) -> Result<(), NatsError> {
        let mut streams = vec![self.names.queue_stream(queue)];
        streams.extend((0..self.names.partitions).map(|n| self.names.ordered_stream(queue, n)));
        streams.push(self.names.error_stream(queue));
        streams.push(self.names.park_stream(queue));
        streams.push(self.names.delay_stream(queue));
        for name in streams {
            match self.js.delete_stream(&name).await {
                Ok(_) => {}
                Err(e) if is_not_found(&e) => {}
                Err(e) => return Err(NatsError::request(format!("stream.delete {name}"), e)),
            }
        }
        Ok(())
    }

    fn not_ordered(&self, queue: &str) -> NatsError {
        NatsError::Config(format!(
            "queue `{queue}` exists on NATS unordered; an ordered queue needs its streams \
             re-created (delete the queue's streams, then declare it ordered)"
        ))
    }

    async fn ensure_part(
        &self,
        queue: &str,
        part: &Part,
        subscriptions: &[String],
    ) -> Result<(), NatsError> {
        let name = &part.stream;
        for attempt in 0..5 {
            let existing = self.stream_config(name).await?;
            let mut sources = existing
                .as_ref()
                .and_then(|c| c.sources.clone())
                .unwrap_or_default();
            let mut changed = false;
            for t in subscriptions {
                let ev_stream = self.names.event_stream(t);
                if sources.iter().any(|s| s.name == ev_stream) {
                    continue;
                }
                let start = self.ensure_event_stream(t).await?;
                sources.push(Source {
                    name: ev_stream,
                    start_sequence: Some(start),
                    filter_subject: part.partition.map(|n| self.names.event_subject(t, n)),
                    ..Default::default()
                });
                changed = true;
            }
            let result = match existing {
                Some(mut cfg) if changed => {
                    cfg.sources = Some(sources);
                    self.js.update_stream(cfg).await.map(|_| ())
                }
                Some(_) => return Ok(()),
                None => self
                    .js
                    .create_stream(stream::Config {
                        name: name.clone(),
                        subjects: vec![part.subject.clone()],
                        retention: RetentionPolicy::WorkQueue,
                        storage: self.storage(),
                        sources: (!sources.is_empty()).then_some(sources),
                        description: Some(format!(
                            "tidings queue `{queue}`; partitions={}",
                            self.names.partitions
                        )),
                        ..Default::default()
                    })
                    .await
                    .map(|_| ()),
            };
            match result {
                Ok(()) => return Ok(()),
                // Lost a race with another declarer: read again and retry.
                Err(e) if attempt < 4 && name_in_use(&e) => continue,
                Err(e) => return Err(NatsError::request(format!("stream.declare {name}"), e)),
            }
        }
        Err(NatsError::Request {
            operation: format!("stream.declare {name}"),
            message: "kept racing with another declarer".into(),
            kind: tidings_core::ErrorKind::Transient,
        })
    }

    fn check_partitions(&self, queue: &str, cfg: &stream::Config) -> Result<(), NatsError> {
        let theirs = cfg
            .description
            .as_deref()
            .and_then(|d| d.split("partitions=").nth(1))
            .and_then(|n| n.trim().parse::<u32>().ok());
        match theirs {
            Some(n) if n != self.names.partitions => Err(NatsError::Config(format!(
                "ordered queue `{queue}` was declared with partitions={n}, this transport uses {}",
                self.names.partitions
            ))),
            _ => Ok(()),
        }
    }

    /// The queue's consumers (one per stream), created where missing, with `ack_wait =
    /// lease` where a lease is given. Returns them and whether the queue is ordered.
    pub(crate) async fn ensure_consumers(
        &self,
        queue: &str,
        want_ordered: bool,
        lease: Option<Duration>,
    ) -> Result<(Vec<PullConsumer>, bool), NatsError> {
        let ordered = match self.layout(queue).await? {
            None => return Err(NatsError::UnknownQueue(queue.to_string())),
            Some(false) if want_ordered => return Err(self.not_ordered(queue)),
            Some(o) => o,
        };
        let mut out = Vec::new();
        for part in self.parts(queue, ordered) {
            let stream = self
                .js
                .get_stream_no_info(&part.stream)
                .await
                .map_err(|e| NatsError::request(format!("stream {}", part.stream), e))?;
            let current = stream
                .get_consumer::<pull::Config>(WORK_CONSUMER)
                .await
                .ok();
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
                durable_name: Some(WORK_CONSUMER.to_string()),
                description: Some(format!("tidings consumer of `{queue}`")),
                deliver_policy: DeliverPolicy::All,
                ack_policy: AckPolicy::Explicit,
                ack_wait,
                max_deliver: -1,
                max_ack_pending: if ordered { 1 } else { self.cfg.max_ack_pending },
                max_waiting: 4096,
                ..Default::default()
            };
            let c = stream.create_consumer(config).await.map_err(|e| {
                NatsError::request(
                    format!("consumer.create {}/{WORK_CONSUMER}", part.stream),
                    e,
                )
            })?;
            out.push(c);
        }
        Ok((out, ordered))
    }
}
