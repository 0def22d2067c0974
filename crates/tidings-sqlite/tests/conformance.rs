//! The transport conformance suite on a temp-file database. A second `create()` in the same
//! case opens a second transport on the same file (as a second process would). Raw
//! (undecodable) rows are inserted with plain SQL on a connection of their own, as a
//! foreign writer or a corruption would leave them.

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

    async fn inject_raw(
        &self,
        queue: &str,
        raw: &[u8],
        partition_key: Option<&str>,
    ) -> tidings_core::Result<()> {
        use sqlx::{ConnectOptions, Connection};
        let opts = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(self.dir.path().join("conformance.db"))
            .busy_timeout(std::time::Duration::from_secs(10));
        let err = |e: sqlx::Error| tidings_core::Error::Config(format!("inject_raw: {e}"));
        let mut conn = opts.connect().await.map_err(err)?;
        let now = chrono::Utc::now().timestamp_millis();
        sqlx::query(
            "INSERT INTO tidings_messages \
             (queue, message_id, partition_key, visible_at, sent_at, envelope) \
             VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(queue)
        .bind(uuid::Uuid::now_v7().to_string())
        .bind(partition_key)
        .bind(now)
        .bind(now)
        .bind(raw)
        .execute(&mut conn)
        .await
        .map_err(err)?;
        conn.close().await.map_err(err)
    }
}

tidings_core::conformance_tests!(Factory::new());
