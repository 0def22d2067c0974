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

    fn unsupported(&self, _case: &str) -> Option<&'static str> {
        self.skip
            .as_ref()
            .map(|why| &*Box::leak(format!("skipped: {why}").into_boxed_str()))
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
