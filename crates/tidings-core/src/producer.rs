//! [`Producer`]: builds envelopes and hands them to the transport. The bus and every
//! [`ConsumeContext`](crate::ConsumeContext) send through one.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use tracing::Instrument as _;
use uuid::Uuid;

use crate::metric_cache::MetricCache;
use crate::transport::{Destination, Outgoing, Transport};
use crate::{
    Command, Envelope, Error, Event, JsonSerializer, Message, MessageKind, Result, Serializer,
};

/// Per-message options: correlation, partition key, headers, schedule, expiry.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SendOptions {
    /// Correlation id (when neither this nor a consumed message sets it, the message's own
    /// id is used).
    pub correlation_id: Option<String>,
    /// The message that caused this one.
    pub causation_id: Option<Uuid>,
    /// The first message of the conversation.
    pub conversation_id: Option<Uuid>,
    /// Ordering key.
    pub partition_key: Option<String>,
    /// Extra headers.
    pub headers: BTreeMap<String, String>,
    /// Deliver no earlier than this.
    pub scheduled_for: Option<DateTime<Utc>>,
    /// Drop (count as expired) if not handled by then.
    pub expires_at: Option<DateTime<Utc>>,
}

impl SendOptions {
    /// Sets the correlation id.
    pub fn correlation_id(mut self, id: impl Into<String>) -> Self {
        self.correlation_id = Some(id.into());
        self
    }

    /// Sets the partition key.
    pub fn partition_key(mut self, key: impl Into<String>) -> Self {
        self.partition_key = Some(key.into());
        self
    }

    /// Adds a header.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.insert(name.into(), value.into());
        self
    }

    /// Delivers no earlier than `at`.
    pub fn schedule_at(mut self, at: DateTime<Utc>) -> Self {
        self.scheduled_for = Some(at);
        self
    }

    /// Delivers after `delay`.
    pub fn delay(self, delay: std::time::Duration) -> Self {
        let at = Utc::now() + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::zero());
        self.schedule_at(at)
    }

    /// Expires after `ttl`.
    pub fn time_to_live(mut self, ttl: std::time::Duration) -> Self {
        self.expires_at =
            Some(Utc::now() + chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::zero()));
        self
    }
}

struct Inner {
    transport: Arc<dyn Transport>,
    routes: HashMap<String, String>,
    source: Option<String>,
    serializer: JsonSerializer,
    /// The sent counter per message type.
    sent: MetricCache<metrics::Counter>,
}

/// Sends and publishes on a transport, routing commands to the endpoint that receives them.
#[derive(Clone)]
pub struct Producer {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Producer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Producer")
            .field("transport", &self.inner.transport.name())
            .field("source", &self.inner.source)
            .finish()
    }
}

impl Producer {
    /// A producer on `transport`; `routes` maps command names to queues.
    pub fn new(
        transport: Arc<dyn Transport>,
        routes: HashMap<String, String>,
        source: Option<String>,
    ) -> Self {
        Producer {
            inner: Arc::new(Inner {
                transport,
                routes,
                source,
                serializer: JsonSerializer,
                sent: MetricCache::default(),
            }),
        }
    }

    /// The same routes, with another source endpoint name.
    pub fn with_source(&self, source: impl Into<String>) -> Self {
        Producer {
            inner: Arc::new(Inner {
                transport: self.inner.transport.clone(),
                routes: self.inner.routes.clone(),
                source: Some(source.into()),
                serializer: JsonSerializer,
                sent: MetricCache::default(),
            }),
        }
    }

    /// The transport underneath.
    pub fn transport(&self) -> &Arc<dyn Transport> {
        &self.inner.transport
    }

    /// The queue that receives command `name`.
    pub fn route(&self, name: &str) -> Result<&str> {
        self.inner
            .routes
            .get(name)
            .map(String::as_str)
            .ok_or_else(|| Error::NoRoute(name.to_string()))
    }

    /// Builds the envelope for `msg`.
    pub fn envelope<M: Message>(&self, msg: &M, opts: SendOptions) -> Result<Envelope> {
        let body = self.inner.serializer.encode(msg)?;
        let mut env = Envelope::new(M::NAME, M::VERSION, body);
        let content_type = self.inner.serializer.content_type();
        if env.content_type != content_type {
            env.content_type = content_type.to_string();
        }
        // A message that starts a conversation is correlated by its own id (unique, and one
        // UUIDv7 fewer to make).
        env.correlation_id = Some(opts.correlation_id.unwrap_or_else(|| {
            let mut buf = Uuid::encode_buffer();
            env.id.hyphenated().encode_lower(&mut buf).to_owned()
        }));
        env.causation_id = opts.causation_id;
        env.conversation_id = opts.conversation_id.or(Some(env.id));
        env.source_endpoint = self.inner.source.clone();
        env.partition_key = opts.partition_key;
        env.headers = opts.headers;
        env.scheduled_for = opts.scheduled_for;
        env.expires_at = opts.expires_at;
        crate::telemetry::inject_current(&mut env);
        Ok(env)
    }

    /// The outgoing message for `msg`: published if an event, routed if a command.
    pub fn outgoing<M: Message>(&self, msg: &M, opts: SendOptions) -> Result<Outgoing> {
        let env = self.envelope(msg, opts)?;
        Ok(match M::KIND {
            crate::MessageKind::Event => Outgoing::publish(env),
            crate::MessageKind::Command => Outgoing::to_queue(self.route(M::NAME)?, env),
        })
    }

    /// Publishes an event to every subscribed endpoint.
    pub async fn publish<E: Event>(&self, event: &E) -> Result<Uuid> {
        self.publish_with(event, SendOptions::default()).await
    }

    /// Publishes with options.
    pub async fn publish_with<E: Event>(&self, event: &E, opts: SendOptions) -> Result<Uuid> {
        self.dispatch(event, opts).await
    }

    /// Sends a command to the endpoint that receives it.
    pub async fn send<C: Command>(&self, cmd: &C) -> Result<Uuid> {
        self.send_with(cmd, SendOptions::default()).await
    }

    /// Sends with options.
    pub async fn send_with<C: Command>(&self, cmd: &C, opts: SendOptions) -> Result<Uuid> {
        self.dispatch(cmd, opts).await
    }

    /// Sends (command) or publishes (event) `msg` so that it is delivered at `at`.
    pub async fn schedule<M: Message>(&self, msg: &M, at: DateTime<Utc>) -> Result<Uuid> {
        self.dispatch(msg, SendOptions::default().schedule_at(at))
            .await
    }

    /// Sends or publishes, by the contract's kind, in a `tidings.send` / `tidings.publish`
    /// span (see [`telemetry::spans`](crate::telemetry::spans)). The envelope is built inside
    /// that span, so its `traceparent` names it: the receiver's span is its child.
    pub async fn dispatch<M: Message>(&self, msg: &M, opts: SendOptions) -> Result<Uuid> {
        let destination = match M::KIND {
            MessageKind::Event => Destination::Topic,
            MessageKind::Command => Destination::Queue(self.route(M::NAME)?.to_string()),
        };
        let (out, span) = self.prepare(M::KIND, msg, opts, destination)?;
        self.ship(out, span).await
    }

    /// Builds `msg`'s outgoing message inside its producer span (`kind` picks
    /// `tidings.publish` or `tidings.send`); [`Producer::ship`] sends it in that span. Split
    /// so a caller can act between the two (`bus.request` registers the reply first).
    pub(crate) fn prepare<M: Message>(
        &self,
        kind: MessageKind,
        msg: &M,
        opts: SendOptions,
        destination: Destination,
    ) -> Result<(Outgoing, tracing::Span)> {
        let span = crate::telemetry::producer_span(
            kind,
            self.inner.transport.name(),
            match &destination {
                Destination::Queue(queue) => queue,
                Destination::Topic => M::NAME,
            },
            M::NAME,
            self.inner.source.as_deref(),
        );
        let envelope = span.in_scope(|| self.envelope(msg, opts))?;
        crate::telemetry::record_outgoing(&span, &envelope);
        Ok((
            Outgoing {
                destination,
                envelope,
            },
            span,
        ))
    }

    /// Sends a message built by [`Producer::prepare`] in its span; records a failure there.
    pub(crate) async fn ship(&self, out: Outgoing, span: tracing::Span) -> Result<Uuid> {
        let id = out.envelope.id;
        let t = &out.envelope.message_type;
        let sent = self
            .inner
            .sent
            .get(t, |_| true, || crate::telemetry::sent_counter(t));
        sent.1.increment(1);
        let sent = self
            .inner
            .transport
            .send(vec![out])
            .instrument(span.clone())
            .await;
        if let Err(e) = &sent {
            let kind = match e.kind() {
                crate::ErrorKind::Transient => "transient",
                _ => "permanent",
            };
            crate::telemetry::record_error(&span, e, kind);
        }
        sent.map(|()| id)
    }

    /// Sends already-built messages in one call (atomically where the transport can).
    pub async fn send_raw(&self, messages: Vec<Outgoing>) -> Result<()> {
        self.inner.transport.send(messages).await
    }
}
