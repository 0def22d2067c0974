//! What travels: the Tidings contracts ([`Work`], a command; [`Tick`], an event) and the
//! raw baselines' bytes, both carrying a sequence number and the send time.

use std::sync::OnceLock;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use tidings::Message;

/// Bytes of a raw payload taken by the sequence number and the send time.
pub const HEADER: usize = 16;

/// JSON around the padding of a Tidings body (`{"seq":..,"sent_ns":..,"pad":".."}`).
const JSON_OVERHEAD: usize = 56;

/// The command of the point-to-point scenarios.
#[derive(Debug, Clone, Serialize, Deserialize, Message)]
#[message(name = "tidings.bench.work", version = 1, kind = "command")]
pub struct Work {
    /// Sequence number, 0..N.
    pub seq: u64,
    /// Send time, ns since this process's [`origin`].
    pub sent_ns: u64,
    /// Padding up to the body size.
    pub pad: String,
}

/// The event of the fan-out scenario.
#[derive(Debug, Clone, Serialize, Deserialize, Message)]
#[message(name = "tidings.bench.tick", version = 1, kind = "event")]
pub struct Tick {
    /// Sequence number, 0..N.
    pub seq: u64,
    /// Send time, ns since this process's [`origin`].
    pub sent_ns: u64,
    /// Padding up to the body size.
    pub pad: String,
}

/// Padding that brings a JSON body to about `size` bytes.
pub fn pad(size: usize) -> String {
    "x".repeat(size.saturating_sub(JSON_OVERHEAD))
}

/// The instant every timestamp of this process counts from.
pub fn origin() -> Instant {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    *ORIGIN.get_or_init(Instant::now)
}

/// Nanoseconds since [`origin`].
pub fn now_ns() -> u64 {
    u64::try_from(origin().elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// A raw payload of `size` bytes: seq and send time (little-endian), then padding.
pub fn encode(seq: u64, sent_ns: u64, size: usize) -> Vec<u8> {
    let mut b = Vec::with_capacity(size.max(HEADER));
    b.extend_from_slice(&seq.to_le_bytes());
    b.extend_from_slice(&sent_ns.to_le_bytes());
    b.resize(size.max(HEADER), b'x');
    b
}

/// The seq and send time of a raw payload; `None` if it is not one.
pub fn decode(b: &[u8]) -> Option<(u64, u64)> {
    let seq = u64::from_le_bytes(b.get(0..8)?.try_into().ok()?);
    let sent = u64::from_le_bytes(b.get(8..16)?.try_into().ok()?);
    Some((seq, sent))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_payloads_round_trip() {
        let b = encode(7, 99, 256);
        assert_eq!(b.len(), 256);
        assert_eq!(decode(&b), Some((7, 99)));
        assert_eq!(decode(&b[..10]), None);
    }

    #[test]
    fn json_bodies_are_about_the_size() {
        let w = Work {
            seq: 99_999,
            sent_ns: 12_345_678_901,
            pad: pad(256),
        };
        let len = serde_json::to_vec(&w).unwrap().len();
        assert!((240..=272).contains(&len), "{len}");
    }
}
