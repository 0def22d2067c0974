//! The transport conformance suite against a real nats-server (`TIDINGS_NATS_URL`, default
//! nats://127.0.0.1:4222). Each case gets its own prefix, so its streams never collide with
//! another case's, and deletes them at the end.

mod common;

use std::sync::Arc;

use tidings_core::conformance::TransportFactory;
use tidings_core::transport::Transport;
use tidings_nats::NatsTransport;

struct Factory {
    prefix: String,
    skip: Option<String>,
}

impl Factory {
    fn new() -> Self {
        Factory {
            prefix: common::unique_prefix("cf"),
            skip: common::unreachable(),
        }
    }
}

#[async_trait::async_trait]
impl TransportFactory for Factory {
    async fn create(&self) -> tidings_core::Result<Arc<dyn Transport>> {
        let t = NatsTransport::connect(common::config(&self.prefix)).await?;
        Ok(Arc::new(t))
    }

    /// A plain JetStream publish of `raw` on the queue's subject (the key's partition),
    /// without Tidings' envelope header.
    async fn inject_raw(
        &self,
        queue: &str,
        raw: &[u8],
        partition_key: Option<&str>,
    ) -> tidings_core::Result<()> {
        let t = NatsTransport::connect(common::config(&self.prefix)).await?;
        let subject = t.queue_subject(queue, partition_key);
        let js = async_nats::jetstream::new(t.client().clone());
        let err = |e: String| tidings_core::Error::Config(format!("inject_raw: {e}"));
        js.publish(subject, raw.to_vec().into())
            .await
            .map_err(|e| err(e.to_string()))?
            .await
            .map_err(|e| err(e.to_string()))?;
        Ok(())
    }

    fn unsupported(&self, case: &str) -> Option<&'static str> {
        if let Some(why) = &self.skip {
            return Some(&*Box::leak(format!("skipped: {why}").into_boxed_str()));
        }
        match case {
            "undecodable_message_parks_its_key" => Some(
                "a raw NATS message carries no partition key (only its partition's subject): \
                 it is dead-lettered and its partition released, not parked (documented)",
            ),
            _ => None,
        }
    }
}

impl Drop for Factory {
    fn drop(&mut self) {
        if self.skip.is_none() {
            common::cleanup_blocking(&self.prefix);
        }
    }
}

tidings_core::conformance_tests!(Factory::new());
