//! The transport conformance suite against a real RabbitMQ
//! (`TIDINGS_AMQP_URL`, default `amqp://guest:guest@127.0.0.1:5672/%2f`).

mod common;

use std::sync::Arc;

use tidings_core::transport::Transport;
use tidings_rabbitmq::{RabbitMqConfig, RabbitMqTransport};

struct Factory;

#[async_trait::async_trait]
impl tidings_core::conformance::TransportFactory for Factory {
    async fn create(&self) -> tidings_core::Result<Arc<dyn Transport>> {
        let config = RabbitMqConfig::from_url(&common::amqp_url())?;
        Ok(Arc::new(RabbitMqTransport::connect(config).await?))
    }

    fn unsupported(&self, case: &str) -> Option<&'static str> {
        if let Some(why) = common::unreachable() {
            return Some(why);
        }
        match case {
            "parked_key_waits_for_replay" => Some(
                "RabbitMQ transport does not park keys: the broker keeps no per-key state, \
                 and holding later messages unacked would stall the queue (documented)",
            ),
            _ => None,
        }
    }
}

tidings_core::conformance_tests!(Factory);
