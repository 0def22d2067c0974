//! [`ConsumeContext`]: what a handler knows about the message it handles, and how it
//! sends more (correlation and causation are carried over automatically).

use std::sync::Arc;

use uuid::Uuid;

use crate::envelope::headers;
use crate::producer::{Producer, SendOptions};
use crate::{Command, Envelope, Error, Event, Message, Result};

struct Shared {
    envelope: Envelope,
    producer: Producer,
    endpoint: Arc<str>,
    delivery_count: u32,
    attempts: std::sync::atomic::AtomicU32,
}

/// The message being handled, with a producer that continues its conversation.
#[derive(Clone)]
pub struct ConsumeContext {
    shared: Arc<Shared>,
    attempt: u32,
}

impl std::fmt::Debug for ConsumeContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsumeContext")
            .field("message_id", &self.shared.envelope.id)
            .field("message_type", &self.shared.envelope.message_type)
            .field("endpoint", &self.shared.endpoint)
            .field("attempt", &self.attempt)
            .finish()
    }
}

impl ConsumeContext {
    /// A context for `envelope`, delivered to `endpoint`.
    pub fn new(
        envelope: Envelope,
        producer: Producer,
        endpoint: &str,
        delivery_count: u32,
    ) -> Self {
        Self::with_shared_name(envelope, producer, endpoint.into(), delivery_count)
    }

    /// [`ConsumeContext::new`] with the endpoint name shared (no copy per delivery).
    pub(crate) fn with_shared_name(
        envelope: Envelope,
        producer: Producer,
        endpoint: Arc<str>,
        delivery_count: u32,
    ) -> Self {
        ConsumeContext {
            shared: Arc::new(Shared {
                envelope,
                producer,
                endpoint,
                delivery_count,
                attempts: std::sync::atomic::AtomicU32::new(1),
            }),
            attempt: 1,
        }
    }

    /// The envelope being handled.
    pub fn envelope(&self) -> &Envelope {
        &self.shared.envelope
    }

    /// The message id.
    pub fn message_id(&self) -> Uuid {
        self.shared.envelope.id
    }

    /// The correlation id.
    pub fn correlation_id(&self) -> Option<&str> {
        self.shared.envelope.correlation_id.as_deref()
    }

    /// The endpoint handling it.
    pub fn endpoint(&self) -> &str {
        &self.shared.endpoint
    }

    /// Times the transport delivered it (1 = first).
    pub fn delivery_count(&self) -> u32 {
        self.shared.delivery_count
    }

    /// Immediate attempt within this delivery (1 = first).
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// Immediate attempts made so far in this delivery (highest attempt number seen).
    pub fn attempts_made(&self) -> u32 {
        self.shared
            .attempts
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The same context, at immediate attempt `attempt`.
    pub fn with_attempt(&self, attempt: u32) -> Self {
        self.shared
            .attempts
            .fetch_max(attempt, std::sync::atomic::Ordering::Relaxed);
        ConsumeContext {
            shared: self.shared.clone(),
            attempt,
        }
    }

    /// The producer (sends with this endpoint as source).
    pub fn producer(&self) -> &Producer {
        &self.shared.producer
    }

    /// Options that continue this message's conversation: same correlation id, causation =
    /// this message, same conversation, same partition key.
    pub fn follow_up(&self) -> SendOptions {
        let env = &self.shared.envelope;
        SendOptions {
            correlation_id: env.correlation_id.clone(),
            causation_id: Some(env.id),
            conversation_id: env.conversation_id.or(Some(env.id)),
            partition_key: env.partition_key.clone(),
            ..SendOptions::default()
        }
    }

    /// Publishes an event caused by this message.
    pub async fn publish<E: Event>(&self, event: &E) -> Result<Uuid> {
        self.producer().publish_with(event, self.follow_up()).await
    }

    /// Sends a command caused by this message.
    pub async fn send<C: Command>(&self, cmd: &C) -> Result<Uuid> {
        self.producer().send_with(cmd, self.follow_up()).await
    }

    /// Sends with options on top of [`ConsumeContext::follow_up`].
    pub async fn send_with<M: Message>(
        &self,
        msg: &M,
        f: impl FnOnce(SendOptions) -> SendOptions,
    ) -> Result<Uuid> {
        self.producer().dispatch(msg, f(self.follow_up())).await
    }

    /// Answers a request made with `bus.request`.
    pub async fn respond<M: Message>(&self, msg: &M) -> Result<Uuid> {
        let env = &self.shared.envelope;
        let Some(reply_to) = env.header(headers::REPLY_TO) else {
            return Err(Error::Config(format!(
                "message {} ({}) is not a request: it has no {} header",
                env.id,
                env.message_type,
                headers::REPLY_TO
            )));
        };
        let opts = self
            .follow_up()
            .header(headers::IN_REPLY_TO, env.id.to_string());
        // A response goes to one queue, the requester's: a `tidings.send` span.
        let (out, span) = self.producer().prepare(
            crate::MessageKind::Command,
            msg,
            opts,
            crate::transport::Destination::Queue(reply_to.to_string()),
        )?;
        self.producer().ship(out, span).await
    }
}
