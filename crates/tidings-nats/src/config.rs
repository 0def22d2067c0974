//! [`NatsConfig`]: where the server is, how to authenticate, and how Tidings lays out its
//! streams. Built from a URL:
//!
//! ```text
//! nats://[user:password@|token@]host[:port][?prefix=tidings&partitions=8&...]
//! tls://host:4222?tls_ca=/etc/ca.pem          (TLS, as async-nats supports it)
//! ```
//!
//! Query parameters: `prefix` (subject/stream prefix, default `tidings`), `partitions`
//! (partitions of ordered queues, default 8; every process sharing a prefix must agree),
//! `event_max_age_secs` (how long event streams keep events for sourcing, default 7 days),
//! `max_ack_pending` (unordered consumers, default 20000), `storage` (`file` | `memory`),
//! `request_timeout_ms`, `confirm_acks` (`true`: wait for the server to confirm each ack),
//! `tls_ca`, `tls_cert`, `tls_key`, `name`, `max_message_size`.
//!
//! Credentials come from the URL, else from `TIDINGS_NATS_TOKEN` or
//! `TIDINGS_NATS_USER` + `TIDINGS_NATS_PASSWORD`. They never appear in `Debug`, `Display`
//! or error messages.

use std::path::PathBuf;
use std::time::Duration;

use tidings_core::redact::{percent_decode, redact_url, scrub};
use url::Url;

use crate::error::NatsError;

/// Default subject and stream prefix.
pub const DEFAULT_PREFIX: &str = "tidings";
/// Default number of partitions of ordered queues.
pub const DEFAULT_PARTITIONS: u32 = 8;

/// How the transport connects and lays out streams. See the module docs for the URL form.
#[derive(Clone)]
#[non_exhaustive]
pub struct NatsConfig {
    /// Server URL without credentials (`nats://host:port` or `tls://host:port`).
    pub server: String,
    /// Prefix of every subject and stream name.
    pub prefix: String,
    /// Partitions of ordered queues (one consumer each, one message in flight each).
    pub partitions: u32,
    /// How long event streams keep events (they are sourced into subscriber queues).
    pub event_max_age: Duration,
    /// Unacknowledged messages an unordered queue's consumer may have out at once.
    pub max_ack_pending: i64,
    /// Keep streams in memory instead of files (tests, benchmarks; not durable).
    pub memory_storage: bool,
    /// Timeout of JetStream API requests and publish acknowledgements.
    pub request_timeout: Duration,
    /// Wait for the server to confirm each ack (one round trip per ack) instead of
    /// firing it. Off by default: a lost ack only means a redelivery.
    pub confirm_acks: bool,
    /// Require TLS (implied by `tls://`).
    pub tls_required: bool,
    /// Extra root certificate (PEM) to trust.
    pub tls_ca: Option<PathBuf>,
    /// Client certificate (PEM) for mutual TLS, with `tls_key`.
    pub tls_cert: Option<PathBuf>,
    /// Client key (PEM) for mutual TLS.
    pub tls_key: Option<PathBuf>,
    /// Connection name shown by the server.
    pub connection_name: Option<String>,
    /// Override of the largest envelope accepted (default: server max payload - 8 KiB).
    pub max_message_size: Option<usize>,
    credentials: Credentials,
}

#[derive(Clone, Default, PartialEq, Eq)]
enum Credentials {
    #[default]
    None,
    Token(String),
    UserPassword(String, String),
}

impl NatsConfig {
    /// A configuration for `server` (`nats://host:port`) with defaults and no credentials.
    pub fn new(server: impl Into<String>) -> Self {
        NatsConfig {
            server: server.into(),
            prefix: DEFAULT_PREFIX.to_string(),
            partitions: DEFAULT_PARTITIONS,
            event_max_age: Duration::from_secs(7 * 24 * 3600),
            max_ack_pending: 20_000,
            memory_storage: false,
            request_timeout: Duration::from_secs(5),
            confirm_acks: false,
            tls_required: false,
            tls_ca: None,
            tls_cert: None,
            tls_key: None,
            connection_name: None,
            max_message_size: None,
            credentials: Credentials::None,
        }
    }

    /// Parses a URL (see the module docs); credentials missing from the URL are taken
    /// from the `TIDINGS_NATS_*` environment variables.
    pub fn from_url(url: &str) -> Result<Self, NatsError> {
        Self::from_url_with_env(url, |k| std::env::var(k).ok())
    }

    fn from_url_with_env(
        url: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, NatsError> {
        // Parse errors may echo the input: keep the credentials out of them.
        let parsed = Url::parse(url)
            .map_err(|e| NatsError::Config(format!("bad NATS URL `{}`: {e}", redact_url(url))))?;
        let scheme = parsed.scheme();
        if scheme != "nats" && scheme != "tls" {
            return Err(NatsError::Config(format!(
                "unsupported scheme `{scheme}` (use nats:// or tls://)"
            )));
        }
        let host = parsed
            .host_str()
            .ok_or_else(|| NatsError::Config("NATS URL has no host".into()))?;
        let port = parsed.port().unwrap_or(4222);
        let mut cfg = NatsConfig::new(format!("{scheme}://{host}:{port}"));
        cfg.tls_required = scheme == "tls";
        let user = decode_pct("user", parsed.username())?;
        let password = parsed
            .password()
            .map(|p| decode_pct("password", p))
            .transpose()?;
        cfg.credentials = match (user.is_empty(), password) {
            (false, Some(p)) => Credentials::UserPassword(user, p),
            (false, None) => Credentials::Token(user),
            (true, _) => Credentials::None,
        };
        for (k, v) in parsed.query_pairs() {
            cfg.set_param(&k, &v)?;
        }
        if cfg.credentials == Credentials::None {
            if let Some(t) = env("TIDINGS_NATS_TOKEN") {
                cfg.credentials = Credentials::Token(t);
            } else if let (Some(u), Some(p)) =
                (env("TIDINGS_NATS_USER"), env("TIDINGS_NATS_PASSWORD"))
            {
                cfg.credentials = Credentials::UserPassword(u, p);
            }
        }
        cfg.validate()?;
        Ok(cfg)
    }

    fn set_param(&mut self, k: &str, v: &str) -> Result<(), NatsError> {
        fn num<T: std::str::FromStr>(k: &str, v: &str) -> Result<T, NatsError> {
            v.parse()
                .map_err(|_| NatsError::Config(format!("`{k}` must be a number, got `{v}`")))
        }
        fn flag(k: &str, v: &str) -> Result<bool, NatsError> {
            match v {
                "true" | "1" | "yes" => Ok(true),
                "false" | "0" | "no" => Ok(false),
                _ => Err(NatsError::Config(format!("`{k}` must be true or false"))),
            }
        }
        match k {
            "prefix" => self.prefix = v.to_string(),
            "partitions" => self.partitions = num(k, v)?,
            "event_max_age_secs" => self.event_max_age = Duration::from_secs(num(k, v)?),
            "max_ack_pending" => self.max_ack_pending = num(k, v)?,
            "request_timeout_ms" => self.request_timeout = Duration::from_millis(num(k, v)?),
            "confirm_acks" => self.confirm_acks = flag(k, v)?,
            "storage" => {
                self.memory_storage = match v {
                    "memory" => true,
                    "file" => false,
                    _ => return Err(NatsError::Config("`storage` is `file` or `memory`".into())),
                }
            }
            "tls_ca" => self.tls_ca = Some(PathBuf::from(v)),
            "tls_cert" => self.tls_cert = Some(PathBuf::from(v)),
            "tls_key" => self.tls_key = Some(PathBuf::from(v)),
            "name" => self.connection_name = Some(v.to_string()),
            "max_message_size" => self.max_message_size = Some(num(k, v)?),
            other => {
                return Err(NatsError::Config(format!(
                    "unknown NATS URL parameter `{other}`"
                )))
            }
        }
        Ok(())
    }

    /// Checks the prefix and numbers.
    pub fn validate(&self) -> Result<(), NatsError> {
        let p = &self.prefix;
        if p.is_empty()
            || p.split('.').any(|t| t.is_empty() || t == "*" || t == ">")
            || p.chars().any(|c| c.is_whitespace() || c == '*' || c == '>')
        {
            return Err(NatsError::Config(format!(
                "prefix `{p}` must be dot-separated non-empty subject tokens without wildcards"
            )));
        }
        if self.partitions == 0 || self.partitions > 1024 {
            return Err(NatsError::Config("partitions must be 1..=1024".into()));
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err(NatsError::Config("tls_cert and tls_key go together".into()));
        }
        Ok(())
    }

    /// Sets a token.
    pub fn with_token(mut self, token: impl Into<String>) -> Self {
        self.credentials = Credentials::Token(token.into());
        self
    }

    /// Sets user and password.
    pub fn with_user_password(
        mut self,
        user: impl Into<String>,
        password: impl Into<String>,
    ) -> Self {
        self.credentials = Credentials::UserPassword(user.into(), password.into());
        self
    }

    /// Sets the prefix.
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Whether credentials are configured.
    pub fn has_credentials(&self) -> bool {
        self.credentials != Credentials::None
    }

    /// The server URL as safe to log: credentials shown as `***`.
    pub fn redacted_url(&self) -> String {
        if self.has_credentials() {
            self.server.replacen("://", "://***@", 1)
        } else {
            self.server.clone()
        }
    }

    /// `text` with every secret replaced by `***` (for error messages from below).
    pub fn scrub(&self, text: &str) -> String {
        match &self.credentials {
            Credentials::None => text.to_string(),
            Credentials::Token(t) => scrub(text, &[t]),
            Credentials::UserPassword(_, p) => scrub(text, &[p]),
        }
    }

    /// async-nats connect options with credentials and TLS applied.
    pub(crate) fn connect_options(&self) -> async_nats::ConnectOptions {
        let mut o = match &self.credentials {
            Credentials::None => async_nats::ConnectOptions::new(),
            Credentials::Token(t) => async_nats::ConnectOptions::with_token(t.clone()),
            Credentials::UserPassword(u, p) => {
                async_nats::ConnectOptions::with_user_and_password(u.clone(), p.clone())
            }
        };
        o = o
            .request_timeout(Some(self.request_timeout))
            .connection_timeout(self.request_timeout)
            .max_reconnects(None);
        if self.tls_required {
            o = o.require_tls(true);
        }
        if let Some(ca) = &self.tls_ca {
            o = o.add_root_certificates(ca.clone());
        }
        if let (Some(c), Some(k)) = (&self.tls_cert, &self.tls_key) {
            o = o.add_client_certificate(c.clone(), k.clone());
        }
        if let Some(n) = &self.connection_name {
            o = o.name(n);
        }
        o
    }
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Credentials::None => "None",
            Credentials::Token(_) => "Token(***)",
            Credentials::UserPassword(..) => "UserPassword(***)",
        })
    }
}

/// Percent-decodes the URL's user or password (a `+` stays a `+`).
fn decode_pct(what: &str, s: &str) -> Result<String, NatsError> {
    percent_decode(s)
        .map(|d| d.into_owned())
        .map_err(|_| NatsError::Config(format!("the NATS URL's {what} is not UTF-8")))
}

impl std::fmt::Debug for NatsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsConfig")
            .field("server", &self.redacted_url())
            .field("prefix", &self.prefix)
            .field("partitions", &self.partitions)
            .field(
                "credentials",
                &if self.has_credentials() {
                    "***"
                } else {
                    "none"
                },
            )
            .field("memory_storage", &self.memory_storage)
            .field("confirm_acks", &self.confirm_acks)
            .field("tls_required", &self.tls_required)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Display for NatsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}?prefix={}", self.redacted_url(), self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn parses_url_and_params() {
        let c = NatsConfig::from_url_with_env(
            "nats://127.0.0.1:4222?prefix=t.x&partitions=4&storage=memory&confirm_acks=true",
            no_env,
        )
        .unwrap();
        assert_eq!(c.server, "nats://127.0.0.1:4222");
        assert_eq!(c.prefix, "t.x");
        assert_eq!(c.partitions, 4);
        assert!(c.memory_storage && c.confirm_acks && !c.has_credentials());
        let d = NatsConfig::from_url_with_env("tls://nats.example", no_env).unwrap();
        assert_eq!(d.server, "tls://nats.example:4222");
        assert!(d.tls_required);
        assert!(NatsConfig::from_url_with_env("nats://h?bogus=1", no_env).is_err());
        assert!(NatsConfig::from_url_with_env("http://h", no_env).is_err());
        assert!(NatsConfig::from_url_with_env("nats://h?prefix=a.*", no_env).is_err());
        assert!(NatsConfig::from_url_with_env("nats://h?partitions=0", no_env).is_err());
    }

    #[test]
    fn credentials_are_redacted_everywhere() {
        let c = NatsConfig::from_url_with_env("nats://alice:s3cr%40t@h:4222", no_env).unwrap();
        assert!(c.has_credentials());
        assert_eq!(
            c.credentials,
            Credentials::UserPassword("alice".into(), "s3cr@t".into())
        );
        for shown in [format!("{c:?}"), c.to_string(), c.redacted_url()] {
            assert!(!shown.contains("s3cr"), "{shown}");
            assert!(shown.contains("***"), "{shown}");
        }
        assert_eq!(c.scrub("auth failed for s3cr@t"), "auth failed for ***");
        let t = NatsConfig::from_url_with_env("nats://tok123@h", no_env).unwrap();
        assert_eq!(t.credentials, Credentials::Token("tok123".into()));
        assert!(!format!("{t:?}").contains("tok123"));
        let e = NatsConfig::from_url_with_env("nats://u:pw9@h:99999", no_env).unwrap_err();
        assert!(!e.to_string().contains("pw9"), "{e}");
        // `+` in user info is a plus, not a space.
        let p = NatsConfig::from_url_with_env("nats://u:a+b%2Bc@h", no_env).unwrap();
        assert_eq!(
            p.credentials,
            Credentials::UserPassword("u".into(), "a+b+c".into())
        );
        let e =
            NatsConfig::from_url_with_env("nats://T0K%2B@h:99999?tls_key=/k", no_env).unwrap_err();
        assert!(!e.to_string().contains("T0K"), "{e}");
    }

    #[test]
    fn credentials_from_env_when_url_has_none() {
        let env = |k: &str| match k {
            "TIDINGS_NATS_USER" => Some("bob".to_string()),
            "TIDINGS_NATS_PASSWORD" => Some("hunter2".to_string()),
            _ => None,
        };
        let c = NatsConfig::from_url_with_env("nats://h", env).unwrap();
        assert_eq!(
            c.credentials,
            Credentials::UserPassword("bob".into(), "hunter2".into())
        );
        assert!(!format!("{c:?} {c}").contains("hunter2"));
        let tok = |k: &str| (k == "TIDINGS_NATS_TOKEN").then(|| "tt".to_string());
        let c = NatsConfig::from_url_with_env("nats://u:p@h", tok).unwrap();
        assert_eq!(
            c.credentials,
            Credentials::UserPassword("u".into(), "p".into())
        );
    }
}
