//! Envelope ↔ AMQP message: the body travels as the payload, envelope fields as AMQP
//! properties (`message_id`, `type`, `content_type`, `correlation_id`, `timestamp`) and
//! `tidings.*` headers; user headers travel as they are.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::BasicProperties;
use uuid::Uuid;

use tidings_core::Envelope;

/// Header names of the envelope's own fields and of the transport's bookkeeping.
pub(crate) mod meta {
    pub(crate) const VERSION: &str = "tidings.version";
    pub(crate) const CAUSATION_ID: &str = "tidings.causation-id";
    pub(crate) const CONVERSATION_ID: &str = "tidings.conversation-id";
    pub(crate) const SOURCE: &str = "tidings.source-endpoint";
    pub(crate) const SENT_AT: &str = "tidings.sent-at";
    pub(crate) const PARTITION_KEY: &str = "tidings.partition-key";
    pub(crate) const SCHEDULED_FOR: &str = "tidings.scheduled-for";
    pub(crate) const EXPIRES_AT: &str = "tidings.expires-at";
    /// Deliveries made before this copy was (re)published (delayed redeliveries).
    pub(crate) const DELIVERY_COUNT: &str = "tidings.delivery-count";
    /// Unix milliseconds before which a delayed copy must not be handled.
    pub(crate) const DUE_AT: &str = "tidings.due-at";
    /// RFC 3339 time the message went to the error queue.
    pub(crate) const DEAD_LETTERED_AT: &str = "tidings.dead-lettered-at";
    /// The prefix of all of the above.
    pub(crate) const PREFIX: &str = "tidings.";
}

/// Headers RabbitMQ adds; not part of the envelope.
const BROKER_HEADERS: &[&str] = &[
    "x-death",
    "x-delivery-count",
    "x-first-death-exchange",
    "x-first-death-queue",
    "x-first-death-reason",
    "x-last-death-exchange",
    "x-last-death-queue",
    "x-last-death-reason",
];

/// Transport bookkeeping added to a message on its way out.
#[derive(Debug, Clone, Default)]
pub(crate) struct Extra {
    pub(crate) delivery_count: u32,
    pub(crate) due_at_ms: Option<i64>,
    pub(crate) dead_lettered_at: Option<DateTime<Utc>>,
}

fn long(s: impl Into<String>) -> AMQPValue {
    AMQPValue::LongString(LongString::from(s.into()))
}

fn short(s: &str) -> Option<ShortString> {
    ShortString::try_new(s).ok()
}

/// AMQP properties and payload of `env` (persistent).
pub(crate) fn encode(env: &Envelope, extra: &Extra) -> (BasicProperties, Vec<u8>) {
    let mut h: BTreeMap<ShortString, AMQPValue> = BTreeMap::new();
    for (k, v) in &env.headers {
        if let Some(k) = short(k) {
            h.insert(k, long(v.clone()));
        }
    }
    let mut put = |k: &str, v: String| {
        if let Some(k) = short(k) {
            h.insert(k, long(v));
        }
    };
    put(meta::VERSION, env.version.to_string());
    put(meta::SENT_AT, env.sent_at.to_rfc3339());
    if let Some(c) = env.causation_id {
        put(meta::CAUSATION_ID, c.to_string());
    }
    if let Some(c) = env.conversation_id {
        put(meta::CONVERSATION_ID, c.to_string());
    }
    if let Some(s) = &env.source_endpoint {
        put(meta::SOURCE, s.clone());
    }
    if let Some(k) = &env.partition_key {
        put(meta::PARTITION_KEY, k.clone());
    }
    if let Some(t) = env.scheduled_for {
        put(meta::SCHEDULED_FOR, t.to_rfc3339());
    }
    if let Some(t) = env.expires_at {
        put(meta::EXPIRES_AT, t.to_rfc3339());
    }
    if extra.delivery_count > 0 {
        put(meta::DELIVERY_COUNT, extra.delivery_count.to_string());
    }
    if let Some(d) = extra.due_at_ms {
        put(meta::DUE_AT, d.to_string());
    }
    if let Some(t) = extra.dead_lettered_at {
        put(meta::DEAD_LETTERED_AT, t.to_rfc3339());
    }
    let mut props = BasicProperties::default()
        .with_delivery_mode(2)
        .with_headers(FieldTable::from(h))
        .with_timestamp(env.sent_at.timestamp().max(0) as u64);
    if let Some(id) = short(&env.id.to_string()) {
        props = props.with_message_id(id);
    }
    if let Some(t) = short(&env.message_type) {
        props = props.with_type(t);
    }
    if let Some(ct) = short(&env.content_type) {
        props = props.with_content_type(ct);
    }
    if let Some(c) = env.correlation_id.as_deref().and_then(short) {
        props = props.with_correlation_id(c);
    }
    (props, env.body.to_vec())
}

/// A decoded message: the envelope and the bookkeeping headers.
#[derive(Debug, Clone)]
pub(crate) struct Decoded {
    pub(crate) envelope: Envelope,
    /// `tidings.delivery-count`: deliveries before this copy was published.
    pub(crate) base_count: u32,
    /// `x-delivery-count` (quorum queues): returns of this copy to its queue.
    pub(crate) broker_count: Option<u32>,
    pub(crate) due_at_ms: Option<i64>,
    pub(crate) dead_lettered_at: Option<DateTime<Utc>>,
}

impl Decoded {
    /// Times delivered, this one included. Quorum queues count returns
    /// (`x-delivery-count`); classic queues only say "redelivered" (counted as one).
    /// On quorum queues, `given_back` returns that were no failure (release, shutdown)
    /// are not counted; a classic queue's flag cannot tell them apart.
    pub(crate) fn delivery_count(&self, redelivered: bool, given_back: u32) -> u32 {
        let returns = match self.broker_count {
            Some(n) => n.saturating_sub(given_back),
            None => u32::from(redelivered),
        };
        self.base_count.saturating_add(returns).saturating_add(1)
    }
}

fn value_str(v: &AMQPValue) -> Option<String> {
    match v {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_string()),
        AMQPValue::Boolean(b) => Some(b.to_string()),
        AMQPValue::ShortShortInt(n) => Some(n.to_string()),
        AMQPValue::ShortShortUInt(n) => Some(n.to_string()),
        AMQPValue::ShortInt(n) => Some(n.to_string()),
        AMQPValue::ShortUInt(n) => Some(n.to_string()),
        AMQPValue::LongInt(n) => Some(n.to_string()),
        AMQPValue::LongUInt(n) => Some(n.to_string()),
        AMQPValue::LongLongInt(n) => Some(n.to_string()),
        AMQPValue::Timestamp(n) => Some(n.to_string()),
        _ => None,
    }
}

fn time(s: Option<String>) -> Option<DateTime<Utc>> {
    s.and_then(|s| DateTime::parse_from_rfc3339(&s).ok())
        .map(|d| d.with_timezone(&Utc))
}

/// Why a received message cannot be taken for a Tidings envelope, if it cannot: it has no
/// AMQP `type` property, which carries the contract name (a raw publish, a foreign
/// producer). The receiver dead-letters such a message as `undecodable`.
pub(crate) fn undecodable(props: &BasicProperties) -> Option<&'static str> {
    props.kind().is_none().then_some(
        "no AMQP `type` property: not a Tidings message (the contract name travels in `type`)",
    )
}

/// The envelope of a received message. Tolerant: messages not sent by Tidings get
/// defaults (a fresh id, version 1, sent now).
pub(crate) fn decode(props: &BasicProperties, body: &[u8]) -> Decoded {
    let mut headers = BTreeMap::new();
    let mut metas: BTreeMap<String, String> = BTreeMap::new();
    let mut broker_count = None;
    if let Some(table) = props.headers() {
        for (k, v) in table.inner() {
            let k = k.as_str();
            if k == "x-delivery-count" {
                broker_count = value_str(v).and_then(|s| s.parse().ok());
            } else if BROKER_HEADERS.contains(&k) {
                continue;
            } else if let Some(s) = value_str(v) {
                if k.starts_with(meta::PREFIX) {
                    metas.insert(k.to_string(), s);
                } else {
                    headers.insert(k.to_string(), s);
                }
            }
        }
    }
    let mut take = |k: &str| metas.remove(k);
    let uuid = |s: Option<String>| s.and_then(|s| Uuid::parse_str(&s).ok());
    let id = props
        .message_id()
        .as_ref()
        .and_then(|s| Uuid::parse_str(s.as_str()).ok())
        .unwrap_or_else(Uuid::now_v7);
    let mut envelope = Envelope::new(
        props
            .kind()
            .as_ref()
            .map(|s| s.as_str().to_string())
            .unwrap_or_default(),
        take(meta::VERSION)
            .and_then(|v| v.parse().ok())
            .unwrap_or(1),
        body.to_vec(),
    );
    envelope.id = id;
    envelope.correlation_id = props
        .correlation_id()
        .as_ref()
        .map(|s| s.as_str().to_string());
    envelope.causation_id = uuid(take(meta::CAUSATION_ID));
    envelope.conversation_id = uuid(take(meta::CONVERSATION_ID));
    envelope.source_endpoint = take(meta::SOURCE);
    if let Some(t) = time(take(meta::SENT_AT)) {
        envelope.sent_at = t;
    }
    envelope.partition_key = take(meta::PARTITION_KEY);
    envelope.scheduled_for = time(take(meta::SCHEDULED_FOR));
    envelope.expires_at = time(take(meta::EXPIRES_AT));
    if let Some(ct) = props.content_type() {
        envelope.content_type = ct.as_str().to_string();
    }
    let base_count = take(meta::DELIVERY_COUNT)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let due_at_ms = take(meta::DUE_AT).and_then(|v| v.parse().ok());
    let dead_lettered_at = time(take(meta::DEAD_LETTERED_AT));
    // Unknown `tidings.*` headers (from a newer version) are kept as user headers.
    headers.extend(metas);
    envelope.headers = headers;
    Decoded {
        envelope,
        base_count,
        broker_count,
        due_at_ms,
        dead_lettered_at,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_keeps_every_field() {
        let mut e = Envelope::new("t.x", 3, &b"{\"a\":1}"[..]);
        e.correlation_id = Some("corr".into());
        e.causation_id = Some(Uuid::now_v7());
        e.conversation_id = Some(Uuid::now_v7());
        e.source_endpoint = Some("src".into());
        e.partition_key = Some("k1".into());
        e.scheduled_for = Some(Utc::now());
        e.expires_at = Some(Utc::now());
        e.headers.insert("traceparent".into(), "00-abc".into());
        e.headers.insert("x-user".into(), "kept".into());
        let extra = Extra {
            delivery_count: 4,
            due_at_ms: Some(42),
            dead_lettered_at: None,
        };
        let (props, body) = encode(&e, &extra);
        let d = decode(&props, &body);
        assert_eq!(d.envelope, e);
        assert_eq!(d.base_count, 4);
        assert_eq!(d.due_at_ms, Some(42));
        assert_eq!(d.delivery_count(false, 0), 5);
    }
}
