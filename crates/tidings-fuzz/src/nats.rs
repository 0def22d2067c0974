//! The NATS receiver's envelope decoding: the `Tidings-Envelope` JSON header and the
//! payload.

use async_nats::HeaderMap;
use bytes::Bytes;
use tidings_nats::wire;

/// `data` up to its first `\n` is the `Tidings-Envelope` header's value, the rest the
/// payload (a NATS header value holds no `\r` or `\n`: such inputs are skipped). Decoding never panics, and whatever
/// decodes survives an encode/decode round trip unchanged.
pub fn nats_envelope(data: &[u8]) {
    let (header, payload) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let Ok(header) = std::str::from_utf8(header) else {
        return;
    };
    if header.contains('\r') {
        return;
    }
    let mut headers = HeaderMap::new();
    headers.insert(wire::ENVELOPE_HEADER, header);
    let payload = Bytes::copy_from_slice(payload);
    let _ = wire::decode(None, payload.clone());
    if let Ok(env) = wire::decode(Some(&headers), payload) {
        let (h, p) = wire::encode(&env).expect("a decoded envelope encodes");
        let again = wire::decode(Some(&h), p).expect("an encoded envelope decodes");
        assert_eq!(again, env, "round trip changed the envelope");
    }
}
