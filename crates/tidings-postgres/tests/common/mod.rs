//! Shared test helpers: find PostgreSQL (or skip), connect in a fresh schema.
#![allow(dead_code, unreachable_pub)]

use std::time::Duration;

use tidings_postgres::{PostgresConfig, PostgresTransport};

pub const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

pub fn url() -> String {
    std::env::var("TIDINGS_PG_URL").unwrap_or_else(|_| DEFAULT_URL.to_string())
}

/// Whether PostgreSQL answers; if not, panics under CI=true, else prints the skip reason.
pub fn available() -> bool {
    let cfg = PostgresConfig::from_url(&url()).expect("TIDINGS_PG_URL");
    let u = url::Url::parse(&url()).unwrap();
    let addr = format!(
        "{}:{}",
        u.host_str().unwrap_or("127.0.0.1"),
        u.port().unwrap_or(5432)
    );
    let ok = std::net::ToSocketAddrs::to_socket_addrs(&addr)
        .ok()
        .and_then(|mut a| a.next())
        .is_some_and(|a| std::net::TcpStream::connect_timeout(&a, Duration::from_secs(2)).is_ok());
    if !ok {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!(
                "PostgreSQL not reachable at {} (CI=true)",
                cfg.redacted_url()
            );
        }
        eprintln!("skipped: postgres not reachable at {}", cfg.redacted_url());
    }
    ok
}

/// A fresh schema name.
pub fn schema(tag: &str) -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("t_{tag}_{}", &id[..8])
}

pub fn config(schema: &str) -> PostgresConfig {
    PostgresConfig::from_url(&url())
        .unwrap()
        .with_schema(schema)
        .with_application_name(format!("tidings-test-{schema}"))
}

/// A transport in a fresh schema, or `None` (skip) when PostgreSQL is not reachable.
pub async fn transport(tag: &str) -> Option<PostgresTransport> {
    if !available() {
        return None;
    }
    Some(
        PostgresTransport::connect(config(&schema(tag)))
            .await
            .unwrap(),
    )
}

/// Drops the transport's schema (best effort).
pub async fn drop_schema(t: &PostgresTransport) {
    let sql = format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE", t.config().schema);
    let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
        .execute(t.pool())
        .await;
}

/// Drops `schema` over a connection of its own (best effort).
pub async fn drop_schema_named(schema: &str) {
    use sqlx::Connection;
    if let Ok(mut conn) = sqlx::PgConnection::connect(&url()).await {
        let sql = format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE");
        let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&mut conn)
            .await;
    }
}
