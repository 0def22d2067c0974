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

    /// Encodes the envelope in the compact binary stored form of the SQL transports: a
    /// marker byte, the fields (uuids as 16 bytes, times as seconds + nanoseconds, strings
    /// length-prefixed), then the body's bytes as they are — no JSON to escape or parse.
    pub fn to_stored(&self) -> crate::Result<Vec<u8>> {
        stored::encode(self)
    }

    /// Decodes [`Envelope::to_stored`]'s form, or [`Envelope::to_json`]'s (rows written
    /// before the compact form existed start with `{`).
    pub fn from_stored(bytes: &[u8]) -> crate::Result<Self> {
        stored::decode(bytes)
    }
}

mod body_repr {
    //! Bodies are usually JSON: keep them readable when the envelope itself is JSON.
    use bytes::Bytes;
    use serde::de::{self, Visitor};
    use serde::{Deserializer, Serialize, Serializer};

    #[derive(Serialize)]
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
        // A visitor rather than an untagged enum: no buffering of the value first.
        d.deserialize_any(BodyVisitor)
    }

    struct BodyVisitor;

    impl<'de> Visitor<'de> for BodyVisitor {
        type Value = Bytes;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a string or an array of bytes")
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<Bytes, E> {
            Ok(Bytes::copy_from_slice(v.as_bytes()))
        }

        fn visit_string<E: de::Error>(self, v: String) -> Result<Bytes, E> {
            Ok(Bytes::from(v))
        }

        fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Bytes, E> {
            Ok(Bytes::copy_from_slice(v))
        }

        fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Bytes, A::Error> {
            let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0));
            while let Some(b) = seq.next_element::<u8>()? {
                out.push(b);
            }
            Ok(Bytes::from(out))
        }
    }
}

mod stored {
    //! The compact stored form: `MARKER`, then the fields in declaration order — a uuid as
    //! 16 bytes, a string as a u32 length + UTF-8, a time as i64 seconds + u32 nanoseconds,
    //! an optional value as a 0/1 tag then the value, the headers as a u32 count of pairs —
    //! and the body's bytes as they are (the rest). All integers little-endian.
    use std::collections::BTreeMap;

    use bytes::Bytes;
    use chrono::{DateTime, Utc};
    use uuid::Uuid;

    use super::Envelope;
    use crate::Error;

    /// First byte of the compact form (JSON starts with `{` or whitespace).
    const MARKER: u8 = 0xE1;

    fn err(what: &str) -> Error {
        Error::Serialization(format!("stored envelope: {what}"))
    }

    struct W(Vec<u8>);

    impl W {
        fn str(&mut self, s: &str) -> crate::Result<()> {
            let n = u32::try_from(s.len()).map_err(|_| err("string too long"))?;
            self.0.extend_from_slice(&n.to_le_bytes());
            self.0.extend_from_slice(s.as_bytes());
            Ok(())
        }
        fn time(&mut self, t: &DateTime<Utc>) {
            self.0.extend_from_slice(&t.timestamp().to_le_bytes());
            self.0
                .extend_from_slice(&t.timestamp_subsec_nanos().to_le_bytes());
        }
        fn tag<T>(&mut self, o: &Option<T>) -> bool {
            self.0.push(u8::from(o.is_some()));
            o.is_some()
        }
    }

    struct R<'a>(&'a [u8]);

    impl<'a> R<'a> {
        fn take(&mut self, n: usize) -> crate::Result<&'a [u8]> {
            if self.0.len() < n {
                return Err(err("truncated"));
            }
            let (head, rest) = self.0.split_at(n);
            self.0 = rest;
            Ok(head)
        }
        fn arr<const N: usize>(&mut self) -> crate::Result<[u8; N]> {
            let mut a = [0; N];
            a.copy_from_slice(self.take(N)?);
            Ok(a)
        }
        fn u32(&mut self) -> crate::Result<u32> {
            Ok(u32::from_le_bytes(self.arr()?))
        }
        fn str(&mut self) -> crate::Result<String> {
            let n = self.u32()? as usize;
            let b = self.take(n)?;
            std::str::from_utf8(b)
                .map(str::to_string)
                .map_err(|_| err("invalid UTF-8"))
        }
        fn uuid(&mut self) -> crate::Result<Uuid> {
            Ok(Uuid::from_bytes(self.arr()?))
        }
        fn time(&mut self) -> crate::Result<DateTime<Utc>> {
            let secs = i64::from_le_bytes(self.arr()?);
            let nanos = self.u32()?;
            DateTime::from_timestamp(secs, nanos).ok_or_else(|| err("time out of range"))
        }
        fn opt<T>(
            &mut self,
            f: impl FnOnce(&mut Self) -> crate::Result<T>,
        ) -> crate::Result<Option<T>> {
            match self.take(1)?[0] {
                0 => Ok(None),
                1 => f(self).map(Some),
                _ => Err(err("bad option tag")),
            }
        }
    }

    pub(super) fn encode(e: &Envelope) -> crate::Result<Vec<u8>> {
        let mut w = W(Vec::with_capacity(160 + e.body.len()));
        w.0.push(MARKER);
        w.0.extend_from_slice(e.id.as_bytes());
        w.str(&e.message_type)?;
        w.0.extend_from_slice(&e.version.to_le_bytes());
        if w.tag(&e.correlation_id) {
            w.str(e.correlation_id.as_deref().unwrap_or_default())?;
        }
        for id in [&e.causation_id, &e.conversation_id] {
            if let Some(id) = id {
                w.0.push(1);
                w.0.extend_from_slice(id.as_bytes());
            } else {
                w.0.push(0);
            }
        }
        if w.tag(&e.source_endpoint) {
            w.str(e.source_endpoint.as_deref().unwrap_or_default())?;
        }
        w.time(&e.sent_at);
        if w.tag(&e.partition_key) {
            w.str(e.partition_key.as_deref().unwrap_or_default())?;
        }
        for t in [&e.scheduled_for, &e.expires_at] {
            if let Some(t) = t {
                w.0.push(1);
                w.time(t);
            } else {
                w.0.push(0);
            }
        }
        let n = u32::try_from(e.headers.len()).map_err(|_| err("too many headers"))?;
        w.0.extend_from_slice(&n.to_le_bytes());
        for (k, v) in &e.headers {
            w.str(k)?;
            w.str(v)?;
        }
        w.str(&e.content_type)?;
        w.0.extend_from_slice(&e.body);
        Ok(w.0)
    }

    pub(super) fn decode(bytes: &[u8]) -> crate::Result<Envelope> {
        let Some((&MARKER, rest)) = bytes.split_first() else {
            return Envelope::from_json(bytes);
        };
        let mut r = R(rest);
        let id = r.uuid()?;
        let message_type = r.str()?;
        let version = r.u32()?;
        let correlation_id = r.opt(R::str)?;
        let causation_id = r.opt(R::uuid)?;
        let conversation_id = r.opt(R::uuid)?;
        let source_endpoint = r.opt(R::str)?;
        let sent_at = r.time()?;
        let partition_key = r.opt(R::str)?;
        let scheduled_for = r.opt(R::time)?;
        let expires_at = r.opt(R::time)?;
        let mut headers = BTreeMap::new();
        for _ in 0..r.u32()? {
            let k = r.str()?;
            headers.insert(k, r.str()?);
        }
        let content_type = r.str()?;
        Ok(Envelope {
            id,
            message_type,
            version,
            correlation_id,
            causation_id,
            conversation_id,
            source_endpoint,
            sent_at,
            partition_key,
            scheduled_for,
            expires_at,
            headers,
            content_type,
            body: Bytes::copy_from_slice(r.0),
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

    #[test]
    fn stored_round_trip_keeps_every_field_and_reads_json() {
        let mut e = Envelope::new("t.x", 2, &b"{\"a\":\"\\u00e9\"}"[..]);
        e.correlation_id = Some("c".into());
        e.partition_key = Some("k".into());
        e.headers.insert("k".into(), "v".into());
        e.expires_at = Some(Utc::now());
        let stored = e.to_stored().unwrap();
        assert_eq!(e, Envelope::from_stored(&stored).unwrap());
        // Rows written as JSON still decode.
        assert_eq!(e, Envelope::from_stored(&e.to_json().unwrap()).unwrap());
        let bin = Envelope::new("t.y", 1, vec![0xff, 0x00]);
        assert_eq!(
            bin,
            Envelope::from_stored(&bin.to_stored().unwrap()).unwrap()
        );
        // Truncated or garbled rows are errors, not panics.
        for cut in [1, 3, 5, stored.len() / 2] {
            assert!(Envelope::from_stored(&stored[..cut]).is_err());
        }
        assert!(Envelope::from_stored(b"not an envelope").is_err());
    }
}
