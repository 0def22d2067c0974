//! [`connect`]: picks and connects a transport by URL scheme, like sqlx's `Any` driver.
//!
//! | scheme | transport | feature |
//! | --- | --- | --- |
//! | `memory://` | in-process, not durable | always |
//! | `sqlite://path/to/file.db` | embedded, durable | `sqlite` (default) |
//! | `postgres://` / `postgresql://` | PostgreSQL | `postgres` |
//! | `amqp://` / `amqps://` | RabbitMQ | `rabbitmq` |
//! | `nats://` / `tls://` | NATS JetStream | `nats` |

use std::sync::Arc;

use tidings_core::redact::redact_url;
use tidings_core::transport::Transport;
use tidings_core::{Error, Result};

/// Connects the transport `url` names. Errors say which scheme or feature is missing.
pub async fn connect(url: &str) -> Result<Arc<dyn Transport>> {
    let scheme = url.split_once("://").map(|(s, _)| s).unwrap_or("");
    match scheme {
        "memory" => Ok(Arc::new(tidings_core::transport::memory::MemoryTransport::new())),
        #[cfg(feature = "sqlite")]
        "sqlite" => {
            let config = tidings_sqlite::SqliteConfig::from_url(url)?;
            Ok(Arc::new(tidings_sqlite::SqliteTransport::connect(config).await?))
        }
        #[cfg(feature = "postgres")]
        "postgres" | "postgresql" => {
            let config = tidings_postgres::PostgresConfig::from_url(url)?;
            Ok(Arc::new(tidings_postgres::PostgresTransport::connect(config).await?))
        }
        #[cfg(feature = "rabbitmq")]
        "amqp" | "amqps" => {
            let config = tidings_rabbitmq::RabbitMqConfig::from_url(url)?;
            Ok(Arc::new(tidings_rabbitmq::RabbitMqTransport::connect(config).await?))
        }
        #[cfg(feature = "nats")]
        "nats" | "tls" => {
            let config = tidings_nats::NatsConfig::from_url(url)?;
            Ok(Arc::new(tidings_nats::NatsTransport::connect(config).await?))
        }
        #[allow(unreachable_patterns)] // reachable when a transport feature is off
        "sqlite" | "postgres" | "postgresql" | "amqp" | "amqps" | "nats" | "tls" => Err(Error::Config(format!(
            "transport `{scheme}` is not compiled in: enable the `{}` feature of the `tidings` crate",
            feature_of(scheme)
        ))),
        "" => Err(Error::Config(format!(
            "`{}` is not a transport URL: use sqlite://FILE, postgres://.., amqp://.., nats://.. or memory://",
            redact_url(url)
        ))),
        other => Err(Error::Config(format!(
            "unknown transport scheme `{other}` in `{}`: use sqlite, postgres, amqp, nats or memory",
            redact_url(url)
        ))),
    }
}

fn feature_of(scheme: &str) -> &'static str {
    match scheme {
        "sqlite" => "sqlite",
        "postgres" | "postgresql" => "postgres",
        "amqp" | "amqps" => "rabbitmq",
        _ => "nats",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_core_redaction_is_used() {
        assert_eq!(
            redact_url("amqp://guest:secret@host:5672/%2f"),
            "amqp://guest:***@host:5672/%2f"
        );
        assert_eq!(
            redact_url("nats://T0KEN@127.0.0.1:4222"),
            "nats://***@127.0.0.1:4222"
        );
    }

    #[tokio::test]
    async fn unknown_schemes_say_what_to_use() {
        let e = connect("kafka://x")
            .await
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("unknown transport scheme `kafka`"), "{e}");
        let e = connect("nonsense")
            .await
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("not a transport URL"), "{e}");
        assert!(connect("memory://").await.is_ok());
    }
}
