//! The transport conformance suite on a temp-file database. A second `create()` in the same
//! case opens a second transport on the same file (as a second process would).

use std::sync::Arc;

use tidings_core::transport::Transport;
use tidings_sqlite::{SqliteConfig, SqliteTransport};

struct Factory {
    dir: tempfile::TempDir,
}

impl Factory {
    fn new() -> Self {
        Factory {
            dir: tempfile::tempdir().unwrap(),
        }
    }
}

#[async_trait::async_trait]
impl tidings_core::conformance::TransportFactory for Factory {
    async fn create(&self) -> tidings_core::Result<Arc<dyn Transport>> {
        let cfg = SqliteConfig::new(self.dir.path().join("conformance.db"));
        Ok(Arc::new(SqliteTransport::connect(cfg).await?))
    }
}

tidings_core::conformance_tests!(Factory::new());
