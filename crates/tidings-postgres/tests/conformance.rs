//! The transport conformance suite against a real PostgreSQL (`TIDINGS_PG_URL`, default
//! `postgres://postgres@127.0.0.1:5432/test`), each case in a fresh schema. Raw
//! (undecodable) rows are inserted with plain SQL on a connection of their own, as a
//! foreign writer or a corruption would leave them.

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

    async fn inject_raw(
        &self,
        queue: &str,
        raw: &[u8],
        partition_key: Option<&str>,
    ) -> tidings_core::Result<()> {
        use sqlx::Connection;
        let err = |e: sqlx::Error| tidings_core::Error::Config(format!("inject_raw: {e}"));
        let mut conn = sqlx::PgConnection::connect(&common::url())
            .await
            .map_err(err)?;
        let s = &self.schema;
        let sql = format!(
            "INSERT INTO \"{s}\".messages \
             (queue, seq, id, message_type, partition_key, visible_at, sent_at, envelope) \
             VALUES ($1, nextval('\"{s}\".message_seq'), $2, '', $3, now(), now(), $4)"
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(queue)
            .bind(uuid::Uuid::now_v7())
            .bind(partition_key)
            .bind(raw)
            .execute(&mut conn)
            .await
            .map_err(err)?;
        conn.close().await.map_err(err)
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
