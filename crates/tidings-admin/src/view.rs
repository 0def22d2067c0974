//! JSON views of queue stats and dead letters, shared by the HTTP API and `tidings --json`.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tidings_core::envelope::headers as h;
use tidings_core::transport::{DeadLetter, QueueStats};
use uuid::Uuid;

/// One queue's figures; `null` where the transport cannot tell.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct QueueView {
    /// Queue (endpoint) name.
    pub queue: String,
    /// Ready to deliver now.
    pub ready: u64,
    /// Delivered, not yet settled.
    pub in_flight: Option<u64>,
    /// Waiting for a scheduled time or redelivery delay.
    pub scheduled: Option<u64>,
    /// Age of the oldest waiting message, in seconds.
    pub oldest_age_seconds: Option<f64>,
    /// Messages in the error queue.
    pub error_depth: u64,
    /// Partition keys parked behind a dead letter.
    pub parked_keys: Option<u64>,
}

impl From<&QueueStats> for QueueView {
    fn from(s: &QueueStats) -> Self {
        QueueView {
            queue: s.queue.clone(),
            ready: s.ready,
            in_flight: s.in_flight,
            scheduled: s.scheduled,
            oldest_age_seconds: s.oldest_age.map(|d| d.as_secs_f64()),
            error_depth: s.error_depth,
            parked_keys: s.parked_keys,
        }
    }
}

/// A dead letter with its fault headers pulled out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DeadLetterView {
    /// Message id.
    pub id: Uuid,
    /// The endpoint it failed in.
    pub endpoint: String,
    /// Contract name.
    pub message_type: String,
    /// Contract version.
    pub version: u32,
    /// When it was dead-lettered.
    pub dead_lettered_at: DateTime<Utc>,
    /// Fault reason (`handler-failed`, ...).
    pub reason: Option<String>,
    /// The error's text.
    pub error: Option<String>,
    /// `transient` or `permanent`.
    pub kind: Option<String>,
    /// Immediate attempts of the last delivery.
    pub attempts: Option<u32>,
    /// Delayed redeliveries before dead-lettering.
    pub redeliveries: Option<u32>,
    /// First failure time (RFC 3339, as written).
    pub first_failure: Option<String>,
    /// Last failure time (RFC 3339, as written).
    pub last_failure: Option<String>,
    /// Host that dead-lettered it.
    pub host: Option<String>,
    /// Times it was replayed before.
    pub replayed: u32,
    /// Correlation id.
    pub correlation_id: Option<String>,
    /// Partition key.
    pub partition_key: Option<String>,
    /// When it was sent.
    pub sent_at: DateTime<Utc>,
    /// Sender.
    pub source_endpoint: Option<String>,
    /// Every header.
    pub headers: BTreeMap<String, String>,
    /// Body MIME type.
    pub content_type: String,
    /// The body: parsed JSON when it is JSON, else the text (lossy UTF-8).
    pub body: serde_json::Value,
}

impl From<&DeadLetter> for DeadLetterView {
    fn from(d: &DeadLetter) -> Self {
        let e = &d.envelope;
        let hdr = |n: &str| e.header(n).map(str::to_string);
        let num = |n: &str| e.header(n).and_then(|v| v.parse().ok());
        DeadLetterView {
            id: e.id,
            endpoint: d.queue.clone(),
            message_type: e.message_type.clone(),
            version: e.version,
            dead_lettered_at: d.dead_lettered_at,
            reason: hdr(h::FAULT_REASON),
            error: hdr(h::FAULT_ERROR),
            kind: hdr(h::FAULT_KIND),
            attempts: num(h::FAULT_ATTEMPTS),
            redeliveries: num(h::FAULT_REDELIVERIES),
            first_failure: hdr(h::FAULT_FIRST_FAILURE),
            last_failure: hdr(h::FAULT_LAST_FAILURE),
            host: hdr(h::FAULT_HOST),
            replayed: num(h::REPLAYED).unwrap_or(0),
            correlation_id: e.correlation_id.clone(),
            partition_key: e.partition_key.clone(),
            sent_at: e.sent_at,
            source_endpoint: e.source_endpoint.clone(),
            headers: e.headers.clone(),
            content_type: e.content_type.clone(),
            body: body_value(&e.body),
        }
    }
}

/// A body as JSON: parsed when it is JSON, else a string (lossy UTF-8).
pub fn body_value(body: &[u8]) -> serde_json::Value {
    serde_json::from_slice(body)
        .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(body).into_owned()))
}

/// Dead letters counted by reason and by endpoint.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FaultSummary {
    /// How many dead letters were counted.
    pub total: u64,
    /// Count per fault reason (`unknown` when the header is missing).
    pub by_reason: BTreeMap<String, u64>,
    /// Count per endpoint.
    pub by_endpoint: BTreeMap<String, u64>,
    /// The most recent dead-lettering time.
    pub latest: Option<DateTime<Utc>>,
}

impl FaultSummary {
    /// Counts `letters`.
    pub fn of(letters: &[DeadLetter]) -> Self {
        let mut s = FaultSummary::default();
        for d in letters {
            s.total += 1;
            let reason = d.envelope.header(h::FAULT_REASON).unwrap_or("unknown");
            *s.by_reason.entry(reason.to_string()).or_default() += 1;
            *s.by_endpoint.entry(d.queue.clone()).or_default() += 1;
            s.latest = s.latest.max(Some(d.dead_lettered_at));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tidings_core::{Envelope, Fault, FaultReason};

    #[test]
    fn view_pulls_fault_headers_and_parses_body() {
        let mut env = Envelope::new("t.x", 2, &br#"{"a":1}"#[..]);
        Fault::new(FaultReason::Panicked, "boom", "orders").apply(&mut env);
        let dl = DeadLetter {
            queue: "orders".into(),
            envelope: env,
            dead_lettered_at: Utc::now(),
        };
        let v = DeadLetterView::from(&dl);
        assert_eq!(v.reason.as_deref(), Some("panicked"));
        assert_eq!(v.error.as_deref(), Some("boom"));
        assert_eq!(v.attempts, Some(1));
        assert_eq!(v.body, serde_json::json!({"a": 1}));
        assert_eq!(body_value(b"not json"), serde_json::json!("not json"));
        let s = FaultSummary::of(&[dl.clone(), dl]);
        assert_eq!(s.total, 2);
        assert_eq!(s.by_reason.get("panicked"), Some(&2));
    }
}
