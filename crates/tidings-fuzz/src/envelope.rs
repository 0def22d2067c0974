//! The core `Envelope` JSON decoding: how the SQLite and PostgreSQL transports read a
//! stored message (queue rows, outbox rows, dead letters).

use tidings_core::outbox::OutboxRow;
use tidings_core::Envelope;

/// `Envelope::from_json` and `OutboxRow::decode` on `data`: never panic, agree with each
/// other, and whatever decodes survives an encode/decode round trip unchanged.
pub fn envelope_json(data: &[u8]) {
    let decoded = Envelope::from_json(data);
    let row = OutboxRow::decode(1, Some("q".into()), data);
    assert_eq!(
        decoded.is_ok(),
        row.is_ok(),
        "outbox and queue decoding disagree"
    );
    if let Ok(env) = decoded {
        let json = env.to_json().expect("a decoded envelope encodes");
        let again = Envelope::from_json(&json).expect("an encoded envelope decodes");
        assert_eq!(again, env, "round trip changed the envelope");
    }
}
