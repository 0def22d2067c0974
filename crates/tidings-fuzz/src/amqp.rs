//! The RabbitMQ consumer's envelope decoding: AMQP basic properties (parsed from their
//! wire form by amq-protocol, as lapin does) and the body.

use lapin::protocol::basic::parse_properties;
use lapin::BasicProperties;
use tidings_rabbitmq::wire;

/// `data` starts with the wire form of AMQP basic properties (a content header's
/// property flags and list); the rest is the body. See [`rabbitmq_properties`].
pub fn rabbitmq_envelope(data: &[u8]) {
    if let Ok((body, props)) = parse_properties(data) {
        rabbitmq_properties(&props, body);
    }
}

/// Whatever properties arrive, the decoder takes them without panicking, and its
/// envelope survives an encode/decode round trip unchanged.
pub fn rabbitmq_properties(props: &BasicProperties, body: &[u8]) {
    let env = wire::decode(props, body);
    let (props, body) = wire::encode(&env);
    let again = wire::decode(&props, &body);
    assert_eq!(again, env, "round trip changed the envelope");
}
