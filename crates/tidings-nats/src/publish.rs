//! Publishing to JetStream: every message is acknowledged by its stream before `send`
//! returns; acknowledgements are pipelined ([`PUBLISH_WINDOW`] at once) and transient
//! failures retried with the same `Nats-Msg-Id`, which the stream de-duplicates.
//!
//! A message sent to a queue with `scheduled_for` still ahead goes to the queue's delay
//! stream (`<P>_DL_<q>`, see `delay`), not to the queue: it must not take a pending slot
//! of the queue's consumer while it waits. Should that stream be missing (a queue declared
//! by an older version and not received from since), it goes to the queue directly.

use std::time::Duration;

use async_nats::jetstream::{self, context::PublishErrorKind, message::PublishMessage};
use futures::stream::{FuturesUnordered, StreamExt};
use tidings_core::transport::{Destination, Outgoing};
use tidings_core::{Error, Result};

use crate::codec;
use crate::error::NatsError;
use crate::transport::Shared;

/// Publishes awaiting their acknowledgement at once, per call.
const PUBLISH_WINDOW: usize = 512;
/// Attempts per message when publishing fails transiently.
const PUBLISH_ATTEMPTS: u32 = 6;

/// One message ready to publish.
pub(crate) struct Prepared {
    subject: String,
    headers: async_nats::HeaderMap,
    payload: bytes::Bytes,
    /// `Some(queue)` for sends to a queue (a missing stream is an unknown queue);
    /// `None` for events (a missing event stream means no subscriber).
    queue: Option<String>,
    /// Where to send it instead if `subject` has no stream.
    fallback: Option<String>,
}

impl Prepared {
    /// A stored message forwarded as it is (headers and payload), under `msg_id`.
    pub(crate) fn forward(
        subject: String,
        queue: String,
        headers: Option<&async_nats::HeaderMap>,
        payload: bytes::Bytes,
        msg_id: &str,
    ) -> Self {
        let mut headers = headers.cloned().unwrap_or_default();
        headers.insert(codec::MSG_ID_HEADER, msg_id);
        Prepared {
            subject,
            headers,
            payload,
            queue: Some(queue),
            fallback: None,
        }
    }
}

impl Shared {
    pub(crate) fn prepare(&self, m: &Outgoing, msg_id: &str) -> Result<Prepared> {
        let names = &self.names;
        let env = &m.envelope;
        let partition = names.partition(env.partition_key.as_deref(), &env.id);
        let later = env.scheduled_for.is_some_and(|at| at > chrono::Utc::now());
        let (subject, queue, fallback) = match &m.destination {
            Destination::Queue(q) if later => (
                names.delay_subject(q),
                Some(q.clone()),
                Some(names.queue_subject(q, partition)),
            ),
            Destination::Queue(q) => (names.queue_subject(q, partition), Some(q.clone()), None),
            Destination::Topic => (
                names.event_subject(&env.message_type, partition),
                None,
                None,
            ),
        };
        let mut p = self.prepare_to(subject, queue, env, msg_id)?;
        p.fallback = fallback;
        Ok(p)
    }

    /// Prepares `env` for `subject`; `queue` names the queue whose stream must exist.
    pub(crate) fn prepare_to(
        &self,
        subject: String,
        queue: Option<String>,
        env: &tidings_core::Envelope,
        msg_id: &str,
    ) -> Result<Prepared> {
        let (headers, payload) = codec::encode(env, Some(msg_id))?;
        let size = codec::wire_len(&headers, &payload);
        if size > self.max_payload {
            return Err(Error::MessageTooLarge {
                size,
                limit: self.max_size,
            });
        }
        Ok(Prepared {
            subject,
            headers,
            payload,
            queue,
            fallback: None,
        })
    }

    /// Publishes `msgs`, pipelining up to [`PUBLISH_WINDOW`] acknowledgements, retrying
    /// transient failures; returns once every message is acknowledged by its stream.
    pub(crate) async fn publish_all(&self, mut msgs: Vec<Prepared>) -> Result<()> {
        let mut todo: Vec<usize> = (0..msgs.len()).collect();
        let mut last_err: Option<NatsError> = None;
        for attempt in 0..PUBLISH_ATTEMPTS {
            if todo.is_empty() {
                return Ok(());
            }
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(100 << attempt.min(5))).await;
            }
            let mut retry = Vec::new();
            let mut redirect = Vec::new();
            let mut inflight = FuturesUnordered::new();
            for &i in &todo {
                let m = &msgs[i];
                loop {
                    if inflight.len() >= PUBLISH_WINDOW {
                        if let Some(r) = inflight.next().await {
                            settle_publish(&msgs, r, &mut retry, &mut redirect, &mut last_err)?;
                        }
                    }
                    let publish = PublishMessage::build()
                        .payload(m.payload.clone())
                        .headers(m.headers.clone());
                    match self.js.send_publish(m.subject.clone(), publish).await {
                        Ok(ack) => {
                            inflight.push(async move { (i, ack.await) });
                            break;
                        }
                        Err(e) if e.kind() == PublishErrorKind::MaxAckPending => {
                            match inflight.next().await {
                                Some(r) => settle_publish(
                                    &msgs,
                                    r,
                                    &mut retry,
                                    &mut redirect,
                                    &mut last_err,
                                )?,
                                None => tokio::time::sleep(Duration::from_millis(5)).await,
                            }
                        }
                        Err(e) => {
                            last_err = Some(publish_error(&m.subject, &e));
                            retry.push(i);
                            break;
                        }
                    }
                }
            }
            while let Some(r) = inflight.next().await {
                settle_publish(&msgs, r, &mut retry, &mut redirect, &mut last_err)?;
            }
            drop(inflight);
            // No delay stream there: send those to the queue itself.
            for i in redirect {
                if let Some(direct) = msgs[i].fallback.take() {
                    msgs[i].subject = direct;
                }
            }
            if !retry.is_empty() {
                tracing::warn!(count = retry.len(), attempt, "retrying NATS publishes");
            }
            retry.sort_unstable();
            todo = retry;
        }
        if todo.is_empty() {
            return Ok(());
        }
        Err(last_err
            .unwrap_or_else(|| NatsError::Publish {
                subject: String::new(),
                message: "publish failed".into(),
                kind: tidings_core::ErrorKind::Transient,
            })
            .into())
    }
}

fn publish_error(subject: &str, e: &jetstream::context::PublishError) -> NatsError {
    NatsError::publish(subject, e)
}

/// Handles one acknowledgement: done, retry later, or a permanent failure.
fn settle_publish(
    msgs: &[Prepared],
    (i, r): (
        usize,
        std::result::Result<jetstream::publish::PublishAck, jetstream::context::PublishError>,
    ),
    retry: &mut Vec<usize>,
    redirect: &mut Vec<usize>,
    last_err: &mut Option<NatsError>,
) -> Result<()> {
    let m = &msgs[i];
    match r {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == PublishErrorKind::StreamNotFound && m.fallback.is_some() => {
            retry.push(i);
            redirect.push(i);
            Ok(())
        }
        Err(e) if e.kind() == PublishErrorKind::StreamNotFound => match &m.queue {
            Some(q) => Err(Error::UnknownQueue(q.clone())),
            // No stream captures this event type: nobody subscribed.
            None => Ok(()),
        },
        Err(e) => {
            let err = publish_error(&m.subject, &e);
            if err.kind() == tidings_core::ErrorKind::Transient {
                retry.push(i);
                *last_err = Some(err);
                Ok(())
            } else {
                Err(err.into())
            }
        }
    }
}
