//! [`RabbitMqConfig`]: where the broker is and how the transport uses it.
//!
//! Built from an AMQP URL. Tidings' own settings ride in the query string and are removed
//! before the URL goes to lapin; lapin's (`heartbeat`, `frame_max`, `channel_max`,
//! `connection_timeout`, `auth_mechanism`) pass through. `amqps://` connects over TLS
//! (rustls with the platform's trust store); `?tls_ca=/path/ca.pem` adds the PEM
//! certificates of that file as trusted roots (a private CA). The server's certificate
//! must name the URL's host.
//!
//! `?management=http://host:15672` (default: the AMQP host, port 15672 over `http://`
//! for `amqp://`, 15671 over `https://` for `amqps://`, the AMQP credentials; `off`
//! disables) names the management HTTP API used to list queues (see the `management`
//! module; `https://` is refused when listing: the HTTP client is built without TLS).
//!
//! The URL holds credentials: [`RabbitMqConfig`]'s `Debug` and every error show it with
//! the password replaced by `***`.

use std::time::Duration;

use tidings_core::redact::{redact_url, scrub, url_secrets};
use url::Url;

use crate::error::RabbitMqError;
use crate::management::Endpoint;

/// Default size limit of one message (body + headers): 16 MiB.
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 16 * 1024 * 1024;

/// The kind of queue declared for endpoints, error queues and delay levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum QueueType {
    /// Replicated Raft queues (`x-queue-type: quorum`): the default, and the only kind
    /// with a broker-side delivery count and at-least-once dead-lettering.
    #[default]
    Quorum,
    /// Classic queues (durable, persistent messages).
    Classic,
}

impl QueueType {
    /// The value of `x-queue-type`.
    pub fn as_str(self) -> &'static str {
        match self {
            QueueType::Quorum => "quorum",
            QueueType::Classic => "classic",
        }
    }
}

/// How to reach RabbitMQ and how to use it.
#[derive(Clone)]
pub struct RabbitMqConfig {
    /// The AMQP URL handed to lapin (Tidings' query parameters removed). Holds credentials.
    pub(crate) url: String,
    /// Queue type of declared queues (`?queue_type=quorum|classic`).
    pub queue_type: QueueType,
    /// Largest message accepted by `send` (`?max_message_size=<bytes>`).
    pub max_message_size: usize,
    /// How long an operation waits for a (re)connection before failing
    /// (`?connect_timeout_ms=`; default 10 s).
    pub connect_timeout: Duration,
    /// First pause between reconnect attempts; doubles up to `reconnect_max_backoff`.
    pub reconnect_initial_backoff: Duration,
    /// Longest pause between reconnect attempts.
    pub reconnect_max_backoff: Duration,
    /// Name shown for the connection in the RabbitMQ management UI.
    pub connection_name: String,
    /// The management HTTP API used to list queues (`None`: off). Holds credentials.
    pub(crate) management: Option<Endpoint>,
    /// `?tls_ca=`: the file and its PEM certificates, trusted as roots for `amqps://`.
    pub(crate) tls_ca: Option<(std::path::PathBuf, String)>,
}

impl std::fmt::Debug for RabbitMqConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RabbitMqConfig")
            .field("url", &redact_url(&self.url))
            .field("queue_type", &self.queue_type)
            .field("max_message_size", &self.max_message_size)
            .field("connect_timeout", &self.connect_timeout)
            .field("reconnect_initial_backoff", &self.reconnect_initial_backoff)
            .field("reconnect_max_backoff", &self.reconnect_max_backoff)
            .field("connection_name", &self.connection_name)
            .field("management", &self.management_url())
            .field("tls_ca", &self.tls_ca.as_ref().map(|(path, _)| path))
            .finish()
    }
}

impl RabbitMqConfig {
    /// Parses an `amqp://` or `amqps://` URL, e.g.
    /// `amqp://guest:guest@127.0.0.1:5672/%2f?queue_type=quorum`.
    ///
    /// Tidings parameters: `queue_type` (`quorum` | `classic`), `max_message_size`
    /// (bytes), `connect_timeout_ms`, `connection_name`, `management` (the management
    /// API's URL, default `http://<host>:15672` (`https://<host>:15671` for `amqps://`)
    /// with the AMQP credentials; `off`).
    pub fn from_url(url: &str) -> Result<Self, RabbitMqError> {
        let mut parsed = Url::parse(url).map_err(|e| {
            RabbitMqError::Config(format!("invalid AMQP URL `{}`: {e}", redact_url(url)))
        })?;
        if parsed.scheme() != "amqp" && parsed.scheme() != "amqps" {
            return Err(RabbitMqError::Config(format!(
                "unsupported URL scheme `{}` (expected amqp or amqps)",
                parsed.scheme()
            )));
        }
        let mut config = RabbitMqConfig {
            url: String::new(),
            queue_type: QueueType::default(),
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            connect_timeout: Duration::from_secs(10),
            reconnect_initial_backoff: Duration::from_millis(100),
            reconnect_max_backoff: Duration::from_secs(5),
            connection_name: "tidings".to_string(),
            management: None,
            tls_ca: None,
        };
        let mut management = None;
        let mut passthrough = Vec::new();
        for (k, v) in parsed.query_pairs() {
            match k.as_ref() {
                "queue_type" => {
                    config.queue_type = match v.as_ref() {
                        "quorum" => QueueType::Quorum,
                        "classic" => QueueType::Classic,
                        other => {
                            return Err(RabbitMqError::Config(format!(
                                "queue_type must be `quorum` or `classic`, not `{other}`"
                            )))
                        }
                    }
                }
                "max_message_size" => config.max_message_size = parse_num(&k, &v)?,
                "connect_timeout_ms" => {
                    config.connect_timeout = Duration::from_millis(parse_num(&k, &v)? as u64)
                }
                "connection_name" => config.connection_name = v.into_owned(),
                "management" => management = Some(v.into_owned()),
                "tls_ca" => config.tls_ca = Some(read_ca(&v)?),
                _ => passthrough.push((k.into_owned(), v.into_owned())),
            }
        }
        if passthrough.is_empty() {
            parsed.set_query(None);
        } else {
            parsed
                .query_pairs_mut()
                .clear()
                .extend_pairs(passthrough.iter());
        }
        if config.tls_ca.is_some() && parsed.scheme() != "amqps" {
            return Err(RabbitMqError::Config(
                "`tls_ca` needs an `amqps://` URL (plain `amqp://` does not use TLS)".into(),
            ));
        }
        config.management = Endpoint::resolve(&parsed, management.as_deref())?;
        config.url = parsed.to_string();
        Ok(config)
    }

    /// Sets the queue type of declared queues.
    pub fn with_queue_type(mut self, queue_type: QueueType) -> Self {
        self.queue_type = queue_type;
        self
    }

    /// Sets the message size limit.
    pub fn with_max_message_size(mut self, bytes: usize) -> Self {
        self.max_message_size = bytes;
        self
    }

    /// Sets how long operations wait for a (re)connection.
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// The management API's base URL used to list queues (no credentials), or `None` when
    /// discovery is off.
    pub fn management_url(&self) -> Option<&str> {
        self.management.as_ref().map(|m| m.base.as_str())
    }

    /// Turns queue discovery through the management API off (`?management=off`).
    pub fn without_management(mut self) -> Self {
        self.management = None;
        self
    }

    /// The URL with its password replaced by `***` (safe to log).
    pub fn redacted_url(&self) -> String {
        redact_url(&self.url)
    }

    /// Removes the URL's secrets (and the management API's password) from `text`.
    pub(crate) fn redact(&self, text: &str) -> String {
        let mut secrets = url_secrets(&self.url);
        // A password of the management URL's own (the implied default `guest` is no
        // secret).
        if let Some(pw) = self.management.as_ref().map(Endpoint::password) {
            if pw != "guest" {
                secrets.push(pw.to_string());
            }
        }
        scrub(text, &secrets)
    }
}

/// Reads `?tls_ca=`: a PEM file holding at least one certificate.
fn read_ca(path: &str) -> Result<(std::path::PathBuf, String), RabbitMqError> {
    let pem = std::fs::read_to_string(path)
        .map_err(|e| RabbitMqError::Config(format!("tls_ca: cannot read `{path}`: {e}")))?;
    if !pem.contains("-----BEGIN CERTIFICATE-----") {
        return Err(RabbitMqError::Config(format!(
            "tls_ca: `{path}` holds no PEM certificate"
        )));
    }
    Ok((path.into(), pem))
}

fn parse_num(key: &str, value: &str) -> Result<usize, RabbitMqError> {
    value.parse().map_err(|_| {
        RabbitMqError::Config(format!(
            "`{key}` must be a non-negative integer, not `{value}`"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tidings_parameters_are_taken_out_of_the_url() {
        let c = RabbitMqConfig::from_url(
            "amqp://guest:guest@127.0.0.1:5672/%2f?queue_type=classic&heartbeat=10&max_message_size=1024",
        )
        .unwrap();
        assert_eq!(c.queue_type, QueueType::Classic);
        assert_eq!(c.max_message_size, 1024);
        assert_eq!(c.url, "amqp://guest:guest@127.0.0.1:5672/%2f?heartbeat=10");
        let d = RabbitMqConfig::from_url("amqp://u:p@h/%2f").unwrap();
        assert_eq!(d.queue_type, QueueType::Quorum);
        assert_eq!(d.url, "amqp://u:p@h/%2f");
        assert!(RabbitMqConfig::from_url("amqp://h/?queue_type=stream").is_err());
        assert!(RabbitMqConfig::from_url("http://h/").is_err());
    }

    #[test]
    fn debug_and_errors_hide_the_password() {
        let c = RabbitMqConfig::from_url("amqp://app:s3cr%40t-pw@127.0.0.1:5672/%2f").unwrap();
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("s3cr"), "{dbg}");
        assert!(dbg.contains("app:***@"), "{dbg}");
        assert_eq!(
            c.redact("failed: s3cr@t-pw and s3cr%40t-pw"),
            "failed: *** and ***"
        );
        let err = RabbitMqConfig::from_url("amqp://app:s3cr3t@[bad/").unwrap_err();
        assert!(!err.to_string().contains("s3cr3t"), "{err}");
    }

    #[test]
    fn tls_ca_is_read_checked_and_taken_out_of_the_url() {
        let dir = std::env::temp_dir().join(format!("tidings-tls-ca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ca = dir.join("ca.pem");
        std::fs::write(
            &ca,
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let url = format!("amqps://u:p@h/%2f?tls_ca={}&heartbeat=5", ca.display());
        let c = RabbitMqConfig::from_url(&url).unwrap();
        assert_eq!(c.url, "amqps://u:p@h/%2f?heartbeat=5");
        assert!(c
            .tls_ca
            .as_ref()
            .is_some_and(|(p, pem)| *p == ca && pem.contains("BEGIN")));
        assert!(format!("{c:?}").contains("ca.pem"));
        let plain = format!("amqp://h/?tls_ca={}", ca.display());
        let err = RabbitMqConfig::from_url(&plain).unwrap_err().to_string();
        assert!(err.contains("amqps"), "{err}");
        let err = RabbitMqConfig::from_url("amqps://h/?tls_ca=/nonexistent/ca.pem")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("tls_ca") && err.contains("/nonexistent/ca.pem"),
            "{err}"
        );
        let not_pem = dir.join("not.pem");
        std::fs::write(&not_pem, "hello").unwrap();
        let err = RabbitMqConfig::from_url(&format!("amqps://h/?tls_ca={}", not_pem.display()))
            .unwrap_err()
            .to_string();
        assert!(err.contains("no PEM certificate"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
