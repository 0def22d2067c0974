//! Publishing with publisher confirms: every message of a batch is written before any
//! confirm is awaited (pipelined), and the batch succeeds only when the broker confirmed
//! every one. A nack, an unroutable mandatory message or a lost connection fails the batch.

use std::time::Duration;

use chrono::Utc;
use lapin::options::BasicPublishOptions;
use lapin::types::ShortString;
use lapin::{BasicProperties, Confirmation};

use tidings_core::Envelope;

use crate::codec::{self, Extra};
use crate::config::QueueType;
use crate::connection::Connector;
use crate::error::RabbitMqError;
use crate::topology::{self, DelayTarget};

/// One message ready to publish.
pub(crate) struct Publish {
    exchange: ShortString,
    routing_key: ShortString,
    mandatory: bool,
    properties: BasicProperties,
    body: Vec<u8>,
    /// For error messages: the envelope id.
    id: String,
    /// The queue a mandatory message was meant for (unroutable ⇒ unknown queue).
    queue: Option<String>,
}

impl Publish {
    /// To one queue through the default exchange (mandatory: a missing queue is an error).
    pub(crate) fn to_queue(
        queue: &str,
        env: &Envelope,
        extra: &Extra,
    ) -> Result<Self, RabbitMqError> {
        let (properties, body) = codec::encode(env, extra);
        Ok(Publish {
            exchange: "".into(),
            routing_key: topology::short(queue)?,
            mandatory: true,
            properties,
            body,
            id: env.id.to_string(),
            queue: Some(queue.to_string()),
        })
    }

    /// To the event type's fanout exchange (no subscriber is not an error).
    pub(crate) fn to_topic(env: &Envelope, extra: &Extra) -> Result<Self, RabbitMqError> {
        let (properties, body) = codec::encode(env, extra);
        Ok(Publish {
            exchange: topology::short(&topology::type_exchange(&env.message_type))?,
            routing_key: "".into(),
            mandatory: false,
            properties,
            body,
            id: env.id.to_string(),
            queue: None,
        })
    }

    /// Through the delay levels to `target`, due after `delay`.
    pub(crate) fn delayed(
        queue_type: QueueType,
        target: DelayTarget<'_>,
        delay: Duration,
        env: &Envelope,
        extra: &Extra,
    ) -> Result<Self, RabbitMqError> {
        let mut extra = extra.clone();
        let delay_ms = i64::try_from(delay.as_millis()).unwrap_or(i64::MAX);
        extra.due_at_ms = Some(Utc::now().timestamp_millis().saturating_add(delay_ms));
        let (properties, body) = codec::encode(env, &extra);
        let key = topology::delay_routing_key(topology::delay_units(delay), target);
        Ok(Publish {
            exchange: topology::short(&topology::delay_level(
                queue_type,
                topology::DELAY_LEVELS - 1,
            ))?,
            routing_key: topology::short(&key)?,
            mandatory: false,
            properties,
            body,
            id: env.id.to_string(),
            queue: None,
        })
    }
}

/// Publishes all of `items` and waits for every confirm.
pub(crate) async fn publish_all(conn: &Connector, items: Vec<Publish>) -> tidings_core::Result<()> {
    if items.is_empty() {
        return Ok(());
    }
    let link = conn.link().await?;
    let mut confirms = Vec::with_capacity(items.len());
    for p in &items {
        let confirm = link
            .publisher
            .basic_publish(
                p.exchange.clone(),
                p.routing_key.clone(),
                BasicPublishOptions {
                    mandatory: p.mandatory,
                    ..BasicPublishOptions::default()
                },
                &p.body,
                p.properties.clone(),
            )
            .await
            .map_err(|e| conn.err("basic.publish", &e))?;
        confirms.push(confirm);
    }
    let results = futures::future::join_all(confirms).await;
    let mut first_error: Option<tidings_core::Error> = None;
    for (p, r) in items.iter().zip(results) {
        let e: Option<tidings_core::Error> = match r {
            Ok(Confirmation::Ack(None)) | Ok(Confirmation::NotRequested) => None,
            Ok(Confirmation::Ack(Some(_))) => Some(match &p.queue {
                Some(q) => tidings_core::Error::UnknownQueue(q.clone()),
                None => RabbitMqError::Nacked(p.id.clone()).into(),
            }),
            Ok(Confirmation::Nack(_)) => Some(RabbitMqError::Nacked(p.id.clone()).into()),
            Err(e) => Some(conn.err("publisher confirm", &e).into()),
        };
        if first_error.is_none() {
            first_error = e;
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}
