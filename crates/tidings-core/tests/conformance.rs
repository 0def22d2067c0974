//! The transport conformance suite run against the in-memory transport.
#![cfg(feature = "conformance")]

use std::sync::Arc;

use tidings_core::conformance::TransportFactory;
use tidings_core::transport::memory::MemoryTransport;
use tidings_core::transport::Transport;

/// One shared in-memory broker per test: every `create` is a new handle to it.
struct MemoryFactory(MemoryTransport);

#[async_trait::async_trait]
impl TransportFactory for MemoryFactory {
    async fn create(&self) -> tidings_core::Result<Arc<dyn Transport>> {
        Ok(Arc::new(self.0.clone()))
    }
}

tidings_core::conformance_tests!(MemoryFactory(MemoryTransport::new()));
