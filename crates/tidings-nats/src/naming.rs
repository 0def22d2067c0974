//! How Tidings names map onto NATS: subjects, stream names, consumer names, partitions.
//!
//! Queue and message-type names are encoded into one subject token (and a valid stream
//! name): `[A-Za-z0-9-]` stay, every other byte becomes `_XX` (hex). The encoding is
//! injective, so two names never share a stream.
//!
//! | what | subject | stream |
//! | --- | --- | --- |
//! | sends to unordered queue `q` | `<prefix>.q.<q>.<partition>` | `<P>_Q_<q>` (work queue, `<prefix>.q.<q>.*`) |
//! | sends to ordered queue `q` | `<prefix>.q.<q>.<n>` | `<P>_O_<q>_<n>`, one per partition `n` |
//! | events of type `t` | `<prefix>.ev.<t>.<partition>` | `<P>_EV_<t>` (limits, max age), sourced into subscribed queue streams |
//! | error queue of `q` | `<prefix>.err.<q>` | `<P>_ERR_<q>` |
//! | messages of `q` not due yet (`scheduled_for` ahead) | `<prefix>.dl.<q>` | `<P>_DL_<q>` (work queue, consumer `pump`) |
//! | parked key `k` of ordered queue `q` | marker `<prefix>.pk.<q>.m.<k>`, messages `<prefix>.pk.<q>.k.<k>` | `<P>_PK_<q>` |
//!
//! `<P>` is the encoded prefix. The partition is `fnv1a(partition key or message id) %
//! partitions`, chosen by the publisher whatever the queue's layout; an ordered queue's
//! partition stream `n` captures `<prefix>.q.<q>.<n>` and sources `<prefix>.ev.<t>.<n>`
//! (nats-server 2.9 has one filter per consumer, and a filter must lie within one of the
//! stream's subjects, so partitions are streams, not consumer filters).

use std::fmt::Write as _;

/// The durable consumer of each queue stream.
pub(crate) const WORK_CONSUMER: &str = "work";
/// The durable consumer of each delay stream.
pub(crate) const PUMP_CONSUMER: &str = "pump";

/// Encodes a name into one subject token / stream-name fragment.
pub(crate) fn encode(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' {
            out.push(b as char);
        } else {
            let _ = write!(out, "_{b:02X}");
        }
    }
    out
}

/// Decodes [`encode`]; `None` if `s` is not an encoded name.
pub(crate) fn decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'_' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// FNV-1a, 64 bit: stable across processes and versions (unlike `DefaultHasher`).
pub(crate) fn fnv1a(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in data {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Names of everything under one prefix.
#[derive(Debug, Clone)]
pub(crate) struct Names {
    /// Subject prefix (as configured).
    pub(crate) subject_prefix: String,
    /// Stream-name prefix (encoded).
    pub(crate) stream_prefix: String,
    /// Number of partitions.
    pub(crate) partitions: u32,
}

impl Names {
    pub(crate) fn new(prefix: &str, partitions: u32) -> Self {
        Names {
            subject_prefix: prefix.to_string(),
            stream_prefix: encode(prefix),
            partitions: partitions.max(1),
        }
    }

    /// Partition of a message.
    pub(crate) fn partition(&self, key: Option<&str>, id: &uuid::Uuid) -> u32 {
        let h = match key {
            Some(k) => fnv1a(k.as_bytes()),
            None => fnv1a(id.as_bytes()),
        };
        (h % u64::from(self.partitions)) as u32
    }

    pub(crate) fn queue_subject(&self, queue: &str, partition: u32) -> String {
        format!("{}.q.{}.{partition}", self.subject_prefix, encode(queue))
    }

    pub(crate) fn queue_subjects(&self, queue: &str) -> String {
        format!("{}.q.{}.*", self.subject_prefix, encode(queue))
    }

    pub(crate) fn event_subject(&self, message_type: &str, partition: u32) -> String {
        format!(
            "{}.ev.{}.{partition}",
            self.subject_prefix,
            encode(message_type)
        )
    }

    pub(crate) fn event_subjects(&self, message_type: &str) -> String {
        format!("{}.ev.{}.*", self.subject_prefix, encode(message_type))
    }

    pub(crate) fn error_subject(&self, queue: &str) -> String {
        format!("{}.err.{}", self.subject_prefix, encode(queue))
    }

    pub(crate) fn queue_stream(&self, queue: &str) -> String {
        format!("{}_Q_{}", self.stream_prefix, encode(queue))
    }

    /// Stream of partition `n` of an ordered queue.
    pub(crate) fn ordered_stream(&self, queue: &str, n: u32) -> String {
        format!("{}_O_{}_{n}", self.stream_prefix, encode(queue))
    }

    pub(crate) fn event_stream(&self, message_type: &str) -> String {
        format!("{}_EV_{}", self.stream_prefix, encode(message_type))
    }

    pub(crate) fn error_stream(&self, queue: &str) -> String {
        format!("{}_ERR_{}", self.stream_prefix, encode(queue))
    }

    /// Stream holding `queue`'s messages until they are due.
    pub(crate) fn delay_stream(&self, queue: &str) -> String {
        format!("{}_DL_{}", self.stream_prefix, encode(queue))
    }

    pub(crate) fn delay_subject(&self, queue: &str) -> String {
        format!("{}.dl.{}", self.subject_prefix, encode(queue))
    }

    pub(crate) fn park_stream(&self, queue: &str) -> String {
        format!("{}_PK_{}", self.stream_prefix, encode(queue))
    }

    pub(crate) fn park_subjects(&self, queue: &str) -> String {
        format!("{}.pk.{}.>", self.subject_prefix, encode(queue))
    }

    /// Marker subject: a message here means `key` is parked.
    pub(crate) fn park_marker(&self, queue: &str, key: &str) -> String {
        format!(
            "{}.pk.{}.m.{}",
            self.subject_prefix,
            encode(queue),
            encode(key)
        )
    }

    /// Filter of every marker of `queue`.
    pub(crate) fn park_markers(&self, queue: &str) -> String {
        format!("{}.pk.{}.m.*", self.subject_prefix, encode(queue))
    }

    /// Where messages of a parked key wait.
    pub(crate) fn parked_subject(&self, queue: &str, key: &str) -> String {
        format!(
            "{}.pk.{}.k.{}",
            self.subject_prefix,
            encode(queue),
            encode(key)
        )
    }

    /// The queue a queue stream (unordered, or a partition of an ordered one) belongs to.
    pub(crate) fn queue_of_stream(&self, stream: &str) -> Option<String> {
        let rest = stream.strip_prefix(&self.stream_prefix)?;
        if let Some(q) = rest.strip_prefix("_Q_") {
            return decode(q);
        }
        let (q, n) = rest.strip_prefix("_O_")?.rsplit_once('_')?;
        n.parse::<u32>().ok()?;
        decode(q)
    }

    /// Whether a stream belongs to this prefix.
    pub(crate) fn owns_stream(&self, stream: &str) -> bool {
        stream
            .strip_prefix(&self.stream_prefix)
            .is_some_and(|rest| {
                ["_Q_", "_O_", "_EV_", "_ERR_", "_PK_", "_DL_"]
                    .iter()
                    .any(|p| rest.starts_with(p))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_is_injective_and_round_trips() {
        for name in [
            "orders",
            "orderflow.order-placed",
            "a_b",
            "a.b",
            "ü x*>",
            "",
        ] {
            let e = encode(name);
            assert!(e
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
            assert_eq!(decode(&e).as_deref(), Some(name));
        }
        assert_ne!(encode("a_2E"), encode("a.")); // `_` itself is escaped
    }

    #[test]
    fn names_are_scoped_by_prefix() {
        let n = Names::new("tidings.test", 4);
        assert_eq!(n.queue_subject("orders", 3), "tidings.test.q.orders.3");
        assert_eq!(
            n.event_subject("o.placed", 0),
            "tidings.test.ev.o_2Eplaced.0"
        );
        assert_eq!(n.queue_stream("orders"), "tidings_2Etest_Q_orders");
        assert_eq!(
            n.queue_of_stream("tidings_2Etest_Q_a_2Eb").as_deref(),
            Some("a.b")
        );
        assert_eq!(n.queue_of_stream("other_Q_a"), None);
        assert_eq!(
            n.queue_of_stream(&n.ordered_stream("a_b", 3)).as_deref(),
            Some("a_b")
        );
        assert!(n.owns_stream(&n.error_stream("x")));
        assert!(n.owns_stream(&n.delay_stream("x")));
        assert_eq!(n.queue_of_stream(&n.delay_stream("x")), None);
        assert_eq!(n.delay_subject("a.b"), "tidings.test.dl.a_2Eb");
        assert!(!Names::new("tidings", 1).owns_stream("tidings_2Etest_Q_x"));
    }

    #[test]
    fn partition_is_stable_and_in_range() {
        let n = Names::new("p", 8);
        let id = uuid::Uuid::nil();
        let a = n.partition(Some("customer-1"), &id);
        assert_eq!(a, n.partition(Some("customer-1"), &uuid::Uuid::new_v4()));
        assert!(a < 8);
        // FNV-1a reference value of "a".
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
