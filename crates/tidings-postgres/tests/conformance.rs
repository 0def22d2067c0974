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
