//! [`PostgresConfig`]: where to connect, which schema to use, and the tuning knobs.
//! The password never leaves this module un-redacted: `Debug` and
//! [`PostgresConfig::redacted_url`] print `***` in its place
//! ([`tidings_core::redact`], the rule every crate shares).

use std::time::Duration;

use sqlx::postgres::PgConnectOptions;
use tidings_core::redact::{redact_url, scrub_url};

use crate::error::PgError;

/// Default schema the transport's tables live in.
pub const DEFAULT_SCHEMA: &str = "tidings";
/// Default `application_name` of the transport's connections.
pub const DEFAULT_APPLICATION_NAME: &str = "tidings";
/// Default size limit of one envelope (body + headers): 4 MiB.
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 4 * 1024 * 1024;

/// How to reach PostgreSQL and how the transport behaves there.
#[derive(Clone)]
pub struct PostgresConfig {
    url: url::Url,
    /// Schema holding the transport's tables (created if missing). A plain lower-case
    /// identifier (`[a-z_][a-z0-9_]*`, at most 48 characters).
    pub schema: String,
    /// `application_name` of every connection (visible in `pg_stat_activity`).
    pub application_name: String,
    /// Pool size.
    pub max_connections: u32,
    /// How long to wait for a pooled connection before failing (transient).
    pub acquire_timeout: Duration,
    /// Fallback poll when no notification arrives (NOTIFY can be lost on reconnect).
    pub poll_interval: Duration,
    /// Largest envelope accepted by `send`.
    pub max_message_size: usize,
    /// A claim scans from the last claimed position; every `rescan_interval` it starts
    /// again from the head to pick up redeliveries behind the cursor.
    pub rescan_interval: Duration,
    /// When the server's autovacuum is off, how often the transport checks its queue
    /// tables and vacuums or analyzes them when needed (zero: never). Ignored while
    /// autovacuum is on.
    pub maintenance_interval: Duration,
}

impl std::fmt::Debug for PostgresConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresConfig")
            .field("url", &self.redacted_url())
            .field("schema", &self.schema)
            .field("application_name", &self.application_name)
            .field("max_connections", &self.max_connections)
            .field("poll_interval", &self.poll_interval)
            .field("max_message_size", &self.max_message_size)
            .finish_non_exhaustive()
    }
}

impl PostgresConfig {
    /// Parses `postgres://user:pass@host:5432/db?schema=tidings&sslmode=disable`.
    ///
    /// Tidings options in the query string (removed before the URL reaches the driver):
    /// `schema`, `application_name`, `max_connections`, `poll_interval_ms`,
    /// `max_message_size`, `maintenance_interval_ms`. Everything else goes to the driver
    /// (`sslmode`, ...).
    pub fn from_url(url: &str) -> Result<Self, PgError> {
        let mut parsed = url::Url::parse(url)
            .map_err(|e| PgError::Config(format!("invalid postgres URL: {e}")))?;
        if !matches!(parsed.scheme(), "postgres" | "postgresql") {
            return Err(PgError::Config(format!(
                "unsupported URL scheme `{}` (expected postgres://)",
                parsed.scheme()
            )));
        }
        let mut cfg = PostgresConfig {
            url: parsed.clone(),
            schema: DEFAULT_SCHEMA.to_string(),
            application_name: DEFAULT_APPLICATION_NAME.to_string(),
            max_connections: 10,
            acquire_timeout: Duration::from_secs(10),
            poll_interval: Duration::from_millis(1000),
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            rescan_interval: Duration::from_millis(250),
            maintenance_interval: Duration::from_secs(2),
        };
        let mut rest = Vec::new();
        for (k, v) in parsed.query_pairs() {
            let bad = |what: &str| PgError::Config(format!("invalid `{k}`: {what}"));
            match k.as_ref() {
                "schema" => cfg.schema = v.into_owned(),
                "application_name" => cfg.application_name = v.into_owned(),
                "max_connections" => {
                    cfg.max_connections = v.parse().map_err(|_| bad("not a number"))?
                }
                "poll_interval_ms" => {
                    cfg.poll_interval =
                        Duration::from_millis(v.parse().map_err(|_| bad("not a number"))?)
                }
                "maintenance_interval_ms" => {
                    cfg.maintenance_interval =
                        Duration::from_millis(v.parse().map_err(|_| bad("not a number"))?)
                }
                "max_message_size" => {
                    cfg.max_message_size = v.parse().map_err(|_| bad("not a number"))?
                }
                _ => rest.push((k.into_owned(), v.into_owned())),
            }
        }
        if rest.is_empty() {
            parsed.set_query(None);
        } else {
            parsed.query_pairs_mut().clear().extend_pairs(rest);
        }
        cfg.url = parsed;
        cfg.validate()?;
        Ok(cfg)
    }

    /// The same configuration in another schema.
    pub fn with_schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = schema.into();
        self
    }

    /// The same configuration with another `application_name`.
    pub fn with_application_name(mut self, name: impl Into<String>) -> Self {
        self.application_name = name.into();
        self
    }

    /// Checks the schema name (it is spliced into SQL, so it must be a plain identifier).
    pub fn validate(&self) -> Result<(), PgError> {
        let s = &self.schema;
        let ok = !s.is_empty()
            && s.len() <= 48
            && s.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !ok {
            return Err(PgError::Config(format!(
                "invalid schema name `{s}`: use [a-z_][a-z0-9_]*, at most 48 characters"
            )));
        }
        if self.max_connections < 2 {
            return Err(PgError::Config(
                "max_connections must be at least 2 (one is held by the listener)".into(),
            ));
        }
        Ok(())
    }

    /// The URL with the password replaced by `***` (safe to log).
    pub fn redacted_url(&self) -> String {
        redact_url(self.url.as_str())
    }

    /// Driver connect options (application name set).
    pub(crate) fn connect_options(&self) -> Result<PgConnectOptions, PgError> {
        let opts: PgConnectOptions = self.url.as_str().parse().map_err(|e: sqlx::Error| {
            PgError::Config(format!(
                "invalid postgres URL {}: {}",
                self.redacted_url(),
                scrub_url(&e.to_string(), self.url.as_str())
            ))
        })?;
        Ok(opts.application_name(&self.application_name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_tidings_options_and_redacts_password() {
        let cfg = PostgresConfig::from_url(
            "postgres://app:s3cr3t-pw@db.example:5433/orders?schema=orders_q&sslmode=disable&max_connections=4",
        )
        .unwrap();
        assert_eq!(cfg.schema, "orders_q");
        assert_eq!(cfg.max_connections, 4);
        let shown = format!("{cfg:?} {}", cfg.redacted_url());
        assert!(!shown.contains("s3cr3t-pw"), "{shown}");
        assert!(shown.contains("app:***@db.example"), "{shown}");
        assert!(shown.contains("sslmode=disable"), "{shown}");
        assert!(!cfg.url.as_str().contains("schema="));
        let opts = cfg.connect_options().unwrap();
        assert_eq!(opts.get_database(), Some("orders"));
        assert_eq!(opts.get_application_name(), Some("tidings"));
    }

    #[test]
    fn rejects_bad_schema_and_scheme() {
        assert!(PostgresConfig::from_url("postgres://u@h/db?schema=a;drop").is_err());
        assert!(PostgresConfig::from_url("postgres://u@h/db?schema=Upper").is_err());
        let e = PostgresConfig::from_url("mysql://u:topsecret@h/db").unwrap_err();
        assert!(!e.to_string().contains("topsecret"));
    }

    #[test]
    fn query_passwords_are_redacted_too() {
        let cfg = PostgresConfig::from_url("postgres://u@h/db?password=qu3ry-pw&sslmode=disable")
            .unwrap();
        let shown = format!("{cfg:?} {}", cfg.redacted_url());
        assert!(!shown.contains("qu3ry-pw"), "{shown}");
    }
}
