//! The [`Envelope`]: what travels through every transport, around a message body.

use std::collections::BTreeMap;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Well-known header names. Fault headers are set when a message is dead-lettered.
pub mod headers {
    /// W3C trace context.
    pub const TRACEPARENT: &str = "traceparent";
    /// W3C trace state.
    pub const TRACESTATE: &str = "tracestate";
    /// Why the message was dead-lettered (`undeserializable`, `handler-failed`, ...).
    pub const FAULT_REASON: &str = "tidings-fault-reason";
    /// The error's text.
    pub const FAULT_ERROR: &str = "tidings-fault-error";
    /// `transient` or `permanent`.
    pub const FAULT_KIND: &str = "tidings-fault-kind";
    /// Immediate (in-process) attempts of the last delivery.
    pub const FAULT_ATTEMPTS: &str = "tidings-fault-attempts";
    /// Delayed redeliveries made before dead-lettering.
    pub const FAULT_REDELIVERIES: &str = "tidings-fault-redeliveries";
    /// RFC 3339 time of the first failure.
    pub const FAULT_FIRST_FAILURE: &str = "tidings-fault-first-failure";
    /// RFC 3339 time of the last failure.
    pub const FAULT_LAST_FAILURE: &str = "tidings-fault-last-failure";
    /// The queue the message was taken from.
    pub const FAULT_ORIGINAL_QUEUE: &str = "tidings-fault-original-queue";
    /// The host that dead-lettered it.
    pub const FAULT_HOST: &str = "tidings-fault-host";
    /// Set on a message replayed from an error queue: how many times.
    pub const REPLAYED: &str = "tidings-replayed";
    /// Reply address of a request.
    pub const REPLY_TO: &str = "tidings-reply-to";
    /// The request id a response answers.
    pub const IN_REPLY_TO: &str = "tidings-in-reply-to";
}

/// The default content type of bodies.
pub const JSON_CONTENT_TYPE: &str = "application/json";

/// A message with its metadata, as it travels through a transport.
///
/// Timestamps are UTC; the body is the serialized message (JSON by default).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    /// Unique id (UUIDv7: time-ordered).
    pub id: Uuid,
    /// Contract name, e.g. `orderflow.order-placed`.
    pub message_type: String,
    /// Contract version.
    pub version: u32,
    /// Ties together every message one business operation caused.
    pub correlation_id: Option<String>,
    /// The id of the message whose handling sent this one.
    pub causation_id: Option<Uuid>,
    /// The id of the first message of the conversation.
    pub conversation_id: Option<Uuid>,
    /// The endpoint (or application) that sent it.
    pub source_endpoint: Option<String>,
    /// When it was sent.
    pub sent_at: DateTime<Utc>,
    /// Messages with the same key are handled in order on ordered endpoints.
    pub partition_key: Option<String>,
    /// Not delivered before this time.
    pub scheduled_for: Option<DateTime<Utc>>,
    /// Not handled after this time (counted as expired).
    pub expires_at: Option<DateTime<Utc>>,
    /// Trace context and user headers.
    pub headers: BTreeMap<String, String>,
    /// MIME type of the body.
    pub content_type: String,
    /// The serialized message.
    #[serde(with = "body_repr")]
    pub body: Bytes,
}

impl Envelope {
    /// A new envelope with a fresh UUIDv7 id, sent now.
    pub fn new(message_type: impl Into<String>, version: u32, body: impl Into<Bytes>) -> Self {
        Envelope {
            id: Uuid::now_v7(),
            message_type: message_type.into(),
            version,
            correlation_id: None,
            causation_id: None,
            conversation_id: None,
            source_endpoint: None,
            sent_at: Utc::now(),
            partition_key: None,
            scheduled_for: None,
            expires_at: None,
            headers: BTreeMap::new(),
            content_type: JSON_CONTENT_TYPE.to_string(),
            body: body.into(),
        }
    }

    /// Whether `expires_at` has passed.
    pub fn is_expired(&self, now: DateTime<Utc>) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }

    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }

    /// Serialized size used for size limits: the body plus headers.
    pub fn encoded_len(&self) -> usize {
        self.body.len()
            + self
                .headers
                .iter()
                .map(|(k, v)| k.len() + v.len())
                .sum::<usize>()
    }

    /// Encodes the whole envelope as JSON (for transports that carry it as one blob).
    pub fn to_json(&self) -> crate::Result<Vec<u8>> {
        serde_json::to_vec(self).map_err(|e| crate::Error::Serialization(e.to_string()))
    }

    /// Decodes an envelope written by [`Envelope::to_json`].
    pub fn from_json(bytes: &[u8]) -> crate::Result<Self> {
        serde_json::from_slice(bytes).map_err(|e| crate::Error::Serialization(e.to_string()))
    }
}

mod body_repr {
    //! Bodies are usually JSON: keep them readable when the envelope itself is JSON.
    use bytes::Bytes;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    #[serde(untagged)]
    enum Body {
        Text(String),
        Bytes(Vec<u8>),
    }

    pub(super) fn serialize<S: Serializer>(b: &Bytes, s: S) -> Result<S::Ok, S::Error> {
        match std::str::from_utf8(b) {
            Ok(t) => Body::Text(t.to_string()).serialize(s),
            Err(_) => Body::Bytes(b.to_vec()).serialize(s),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Bytes, D::Error> {
        Ok(match Body::deserialize(d)? {
            Body::Text(t) => Bytes::from(t),
            Body::Bytes(b) => Bytes::from(b),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trip_keeps_every_field() {
        let mut e = Envelope::new("t.x", 2, &b"{\"a\":1}"[..]);
        e.correlation_id = Some("c".into());
        e.headers.insert("k".into(), "v".into());
        let back = Envelope::from_json(&e.to_json().unwrap()).unwrap();
        assert_eq!(e, back);
        let bin = Envelope::new("t.y", 1, vec![0xff, 0x00]);
        assert_eq!(bin, Envelope::from_json(&bin.to_json().unwrap()).unwrap());
    }
}
