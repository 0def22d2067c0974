//! The rule every transport shares for a delivery it cannot decode into an [`Envelope`]
//! (a poison message: bytes not written by Tidings, a corrupt row, a foreign publish).
//!
//! It goes to the queue's error queue at once, with fault reason `undecodable`
//! ([`FaultReason::Undecodable`]) and the raw bytes kept, unchanged, as the dead letter's
//! body (content type [`UNDECODABLE_CONTENT_TYPE`]); the receiver moves on. It is never
//! handed to the consumer pipeline and never left leased: a leased poison row would come
//! back every lease and, on an ordered queue, hold its key forever.
//!
//! A transport describes what it still knows with an [`Undecodable`] (the queue, the
//! bytes, why decoding failed, and where it can tell them: the message id, the partition
//! key, transport details as headers) and either settles the delivery with
//! [`Undecodable::dead_letter`], or, when its dead-letter path is not a [`Settle`], takes
//! the envelope from [`Undecodable::into_dead_letter`]. Either way the transport's own
//! dead-letter path applies: on an ordered queue with
//! [`park_on_dead_letter`](super::ReceiveOptions::park_on_dead_letter) the key is parked
//! when the transport knows it, otherwise the key is released with the message.
//!
//! The dead letter is an ordinary envelope, so listing, `tidings dlq show`, replay and
//! purge work on it. Its message type is empty and its version 0: replayed, it comes back
//! as `unknown-type` (fix the producer; purge it).

use std::collections::BTreeMap;
use std::fmt::Display;

use bytes::Bytes;
use uuid::Uuid;

use super::Settle;
use crate::envelope::Envelope;
use crate::fault::{Fault, FaultReason};
use crate::telemetry::names;
use crate::Result;

/// Content type of a dead letter whose body is the raw bytes of an undecodable delivery.
pub const UNDECODABLE_CONTENT_TYPE: &str = "application/vnd.tidings.undecodable";

/// What a transport knows about a delivery it could not decode.
///
/// ```
/// use tidings_core::transport::undecodable::{Undecodable, UNDECODABLE_CONTENT_TYPE};
/// use tidings_core::envelope::headers;
///
/// let dl = Undecodable::new("inventory", &b"\xff not json"[..], "expected value at line 1")
///     .partition_key(Some("order-7".into()))
///     .detail("sqlite-row", "42")
///     .into_dead_letter();
/// assert_eq!(dl.header(headers::FAULT_REASON), Some("undecodable"));
/// assert_eq!(dl.header(headers::FAULT_ORIGINAL_QUEUE), Some("inventory"));
/// assert_eq!(dl.content_type, UNDECODABLE_CONTENT_TYPE);
/// assert_eq!(&dl.body[..], b"\xff not json");
/// assert_eq!(dl.partition_key.as_deref(), Some("order-7"));
/// ```
#[derive(Debug, Clone)]
pub struct Undecodable {
    queue: String,
    raw: Bytes,
    error: String,
    message_id: Option<Uuid>,
    partition_key: Option<String>,
    delivery_count: u32,
    details: BTreeMap<String, String>,
}

impl Undecodable {
    /// A delivery from `queue` whose bytes `raw` failed to decode with `error`.
    pub fn new(queue: &str, raw: impl Into<Bytes>, error: impl Display) -> Self {
        Undecodable {
            queue: queue.to_string(),
            raw: raw.into(),
            error: error.to_string(),
            message_id: None,
            partition_key: None,
            delivery_count: 1,
            details: BTreeMap::new(),
        }
    }

    /// The message id, where the transport keeps it apart from the bytes (a row's id
    /// column, an AMQP `message_id`). Without one the dead letter gets a fresh id.
    pub fn message_id(mut self, id: Option<Uuid>) -> Self {
        self.message_id = id;
        self
    }

    /// The partition key, where the transport keeps it apart from the bytes (a row's
    /// column): lets an ordered queue park the key behind the dead letter.
    pub fn partition_key(mut self, key: Option<String>) -> Self {
        self.partition_key = key;
        self
    }

    /// Times it was delivered, this one included (recorded as redeliveries before it).
    pub fn delivery_count(mut self, count: u32) -> Self {
        self.delivery_count = count;
        self
    }

    /// A transport detail kept as a header of the dead letter (`nats-subject`, a foreign
    /// AMQP header, ...), for whoever inspects it.
    pub fn detail(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.details.insert(name.into(), value.into());
        self
    }

    /// The dead letter: the raw bytes as body, [`UNDECODABLE_CONTENT_TYPE`], the fault
    /// headers with reason `undecodable`. Logs a warning and counts it in
    /// `tidings_dead_lettered_total{endpoint, reason="undecodable"}`.
    pub fn into_dead_letter(self) -> Envelope {
        let mut env = Envelope::new("", 0, self.raw);
        if let Some(id) = self.message_id {
            env.id = id;
        }
        env.partition_key = self.partition_key;
        env.content_type = UNDECODABLE_CONTENT_TYPE.to_string();
        env.headers = self.details;
        let mut fault = Fault::new(FaultReason::Undecodable, self.error, &self.queue);
        fault.attempts = 0;
        fault.redeliveries = self.delivery_count.saturating_sub(1);
        fault.apply(&mut env);
        tracing::warn!(
            queue = %self.queue,
            message_id = %env.id,
            bytes = env.body.len(),
            error = %fault.error,
            "undecodable delivery: moved to the error queue with reason `undecodable`"
        );
        metrics::counter!(
            names::DEAD_LETTERED,
            "endpoint" => self.queue,
            "reason" => FaultReason::Undecodable.as_str()
        )
        .increment(1);
        env
    }

    /// Dead-letters the delivery `settle` belongs to (see the module docs). On failure
    /// the delivery is not settled and comes back like any unsettled one.
    pub async fn dead_letter(self, settle: Box<dyn Settle>) -> Result<()> {
        let queue = self.queue.clone();
        let env = self.into_dead_letter();
        let id = env.id;
        let r = settle.dead_letter(env).await;
        if let Err(e) = &r {
            tracing::error!(%queue, message_id = %id, error = %e,
                "dead-lettering an undecodable delivery failed; it will come back");
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::headers as h;

    #[test]
    fn keeps_bytes_id_key_and_details() {
        let id = Uuid::now_v7();
        let raw = vec![0u8, 0xff, b'{'];
        let dl = Undecodable::new("q", raw.clone(), "bad")
            .message_id(Some(id))
            .partition_key(Some("k".into()))
            .delivery_count(3)
            .detail("nats-subject", "p.q.q.0")
            .into_dead_letter();
        assert_eq!(dl.id, id);
        assert_eq!(&dl.body[..], &raw[..]);
        assert_eq!(dl.partition_key.as_deref(), Some("k"));
        assert_eq!(dl.message_type, "");
        assert_eq!(dl.header(h::FAULT_REASON), Some("undecodable"));
        assert_eq!(dl.header(h::FAULT_ERROR), Some("bad"));
        assert_eq!(dl.header(h::FAULT_KIND), Some("permanent"));
        assert_eq!(dl.header(h::FAULT_ATTEMPTS), Some("0"));
        assert_eq!(dl.header(h::FAULT_REDELIVERIES), Some("2"));
        assert_eq!(dl.header("nats-subject"), Some("p.q.q.0"));
        // Survives the JSON encoding SQL transports store (binary body included).
        assert_eq!(Envelope::from_json(&dl.to_json().unwrap()).unwrap(), dl);
    }
}
