//! The transport conformance suite against a real PostgreSQL (`TIDINGS_PG_URL`, default
//! `postgres://postgres@127.0.0.1:5432/test`), each case in a fresh schema.

mod common;

use std::sync::Arc;

use tidings_core::transport::Transport;
use tidings_postgres::PostgresTransport;

/// One schema per case; every `create()` of the case connects to the same one.
struct Factory {
    schema: String,
}

impl Factory {
    fn new() -> Self {
        Factory {
            schema: common::schema("conf"),
        }
    }
}

impl Drop for Factory {
    /// Drops the case's schema (on a thread of its own: the test's runtime is ending).
    fn drop(&mut self) {
        if !common::available() {
            return;
        }
        let schema = self.schema.clone();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(common::drop_schema_named(&schema));
        })
        .join();
    }
}

#[async_trait::async_trait]
impl tidings_core::conformance::TransportFactory for Factory {
    async fn create(&self) -> tidings_core::Result<Arc<dyn Transport>> {
        let t = PostgresTransport::connect(common::config(&self.schema)).await?;
        Ok(Arc::new(t))
    }

    fn unsupported(&self, _case: &str) -> Option<&'static str> {
        if common::available() {
            None
        } else {
            Some("postgres not reachable")
        }
    }
}

tidings_core::conformance_tests!(Factory::new());
