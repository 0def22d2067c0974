//! How an [`Envelope`] travels as a NATS message: the body is the payload, untouched; the
//! rest of the envelope is one compact JSON header (`Tidings-Envelope`), so tools like
//! `nats stream view` show the body as sent. `Nats-Msg-Id` carries the message id so a
//! retried publish is de-duplicated by the stream (its duplicate window).

use std::collections::BTreeMap;

use async_nats::HeaderMap;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tidings_core::Envelope;
use uuid::Uuid;

use crate::error::NatsError;

/// Header holding the envelope's metadata as JSON.
pub(crate) const ENVELOPE_HEADER: &str = "Tidings-Envelope";
/// Header naming the message type (for people reading streams).
pub(crate) const TYPE_HEADER: &str = "Tidings-Type";
/// JetStream's de-duplication header.
pub(crate) const MSG_ID_HEADER: &str = "Nats-Msg-Id";

#[derive(Serialize)]
struct MetaRef<'a> {
    id: &'a Uuid,
    message_type: &'a str,
    version: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    correlation_id: &'a Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    causation_id: &'a Option<Uuid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    conversation_id: &'a Option<Uuid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    source_endpoint: &'a Option<String>,
    sent_at: &'a DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    partition_key: &'a Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    scheduled_for: &'a Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    expires_at: &'a Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    headers: &'a BTreeMap<String, String>,
    content_type: &'a str,
}

#[derive(Deserialize)]
struct Meta {
    id: Uuid,
    message_type: String,
    version: u32,
    #[serde(default)]
    correlation_id: Option<String>,
    #[serde(default)]
    causation_id: Option<Uuid>,
    #[serde(default)]
    conversation_id: Option<Uuid>,
    #[serde(default)]
    source_endpoint: Option<String>,
    sent_at: DateTime<Utc>,
    #[serde(default)]
    partition_key: Option<String>,
    #[serde(default)]
    scheduled_for: Option<DateTime<Utc>>,
    #[serde(default)]
    expires_at: Option<DateTime<Utc>>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    content_type: String,
}

/// Headers and payload of `env`; `msg_id` becomes `Nats-Msg-Id`.
pub(crate) fn encode(
    env: &Envelope,
    msg_id: Option<&str>,
) -> Result<(HeaderMap, Bytes), NatsError> {
    let meta = MetaRef {
        id: &env.id,
        message_type: &env.message_type,
        version: env.version,
        correlation_id: &env.correlation_id,
        causation_id: &env.causation_id,
        conversation_id: &env.conversation_id,
        source_endpoint: &env.source_endpoint,
        sent_at: &env.sent_at,
        partition_key: &env.partition_key,
        scheduled_for: &env.scheduled_for,
        expires_at: &env.expires_at,
        headers: &env.headers,
        content_type: &env.content_type,
    };
    let json = serde_json::to_string(&meta).map_err(|e| NatsError::Decode(e.to_string()))?;
    let mut h = HeaderMap::new();
    h.insert(ENVELOPE_HEADER, json);
    if is_header_safe(&env.message_type) {
        h.insert(TYPE_HEADER, env.message_type.as_str());
    }
    if let Some(id) = msg_id {
        h.insert(MSG_ID_HEADER, id);
    }
    Ok((h, env.body.clone()))
}

fn is_header_safe(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| !c.is_control())
}

/// The bytes a NATS message with these headers and payload takes (for size checks).
pub(crate) fn wire_len(headers: &HeaderMap, payload: &Bytes) -> usize {
    let hdr: usize = headers
        .iter()
        .map(|(k, vs)| {
            vs.iter()
                .map(|v| k.to_string().len() + v.as_str().len() + 4)
                .sum::<usize>()
        })
        .sum();
    payload.len() + hdr + 12
}

/// The envelope of a stored message.
pub(crate) fn decode(headers: Option<&HeaderMap>, payload: Bytes) -> Result<Envelope, NatsError> {
    let json = headers
        .and_then(|h| h.get(ENVELOPE_HEADER))
        .ok_or_else(|| NatsError::Decode(format!("no {ENVELOPE_HEADER} header")))?;
    let m: Meta =
        serde_json::from_str(json.as_str()).map_err(|e| NatsError::Decode(e.to_string()))?;
    Ok(Envelope {
        id: m.id,
        message_type: m.message_type,
        version: m.version,
        correlation_id: m.correlation_id,
        causation_id: m.causation_id,
        conversation_id: m.conversation_id,
        source_endpoint: m.source_endpoint,
        sent_at: m.sent_at,
        partition_key: m.partition_key,
        scheduled_for: m.scheduled_for,
        expires_at: m.expires_at,
        headers: m.headers,
        content_type: m.content_type,
        body: payload,
    })
}

/// A placeholder envelope for a message in an error stream that is not a Tidings envelope
/// (published there by something else), so listing the error queue shows it instead of
/// failing. (A receiver dead-letters such a message as `undecodable`: see `receiver.rs`.)
pub(crate) fn foreign(subject: &str, payload: Bytes, why: &str) -> Envelope {
    let mut env = Envelope::new("", 0, payload);
    env.content_type = "application/octet-stream".into();
    env.headers
        .insert("nats-subject".into(), subject.to_string());
    env.headers
        .insert("nats-decode-error".into(), why.to_string());
    env
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_keeps_every_field() {
        let mut e = Envelope::new("orders.placed", 3, &b"{\"a\":\"line\\nbreak\"}"[..]);
        e.correlation_id = Some("c-1".into());
        e.partition_key = Some("k\n1".into());
        e.scheduled_for = Some(Utc::now());
        e.headers.insert("x".into(), "multi\r\nline ü".into());
        let (h, p) = encode(&e, Some("id-1")).unwrap();
        assert_eq!(h.get(MSG_ID_HEADER).map(|v| v.as_str()), Some("id-1"));
        assert!(wire_len(&h, &p) > p.len());
        assert_eq!(decode(Some(&h), p).unwrap(), e);
        let bin = Envelope::new("b", 1, vec![0u8, 255, 10]);
        let (h, p) = encode(&bin, None).unwrap();
        assert_eq!(decode(Some(&h), p).unwrap(), bin);
        assert!(decode(None, Bytes::new()).is_err());
    }
}
