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

    /// A plain `basic.publish` of `raw` to the queue (default exchange), confirmed, with no
    /// Tidings properties: only a `tidings.partition-key` header when a key is given.
    async fn inject_raw(
        &self,
        queue: &str,
        raw: &[u8],
        partition_key: Option<&str>,
    ) -> tidings_core::Result<()> {
        use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
        use lapin::types::{AMQPValue, FieldTable, LongString};
        let err = |e: lapin::Error| tidings_core::Error::Config(format!("inject_raw: {e}"));
        let conn =
            lapin::Connection::connect(&common::amqp_url(), lapin::ConnectionProperties::default())
                .await
                .map_err(err)?;
        let ch = conn.create_channel().await.map_err(err)?;
        ch.confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(err)?;
        let mut props = lapin::BasicProperties::default().with_delivery_mode(2);
        if let Some(k) = partition_key {
            let mut h = FieldTable::default();
            h.insert(
                "tidings.partition-key".into(),
                AMQPValue::LongString(LongString::from(k.to_string())),
            );
            props = props.with_headers(h);
        }
        ch.basic_publish(
            "".into(),
            queue.into(),
            BasicPublishOptions::default(),
            raw,
            props,
        )
        .await
        .map_err(err)?
        .await
        .map_err(err)?;
        let _ = conn.close(200, "OK".into()).await;
        Ok(())
    }

    fn unsupported(&self, case: &str) -> Option<&'static str> {
        if let Some(why) = common::unreachable() {
            return Some(why);
        }
        match case {
            "parked_key_waits_for_replay" | "undecodable_message_parks_its_key" => Some(
                "RabbitMQ transport does not park keys: the broker keeps no per-key state, \
                 and holding later messages unacked would stall the queue (documented)",
            ),
            _ => None,
        }
    }
}

tidings_core::conformance_tests!(Factory);
