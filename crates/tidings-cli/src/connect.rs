//! Connecting by URL with errors that say what was tried and what to check, and never
//! show a password.

use std::sync::Arc;
use std::time::Duration;

use tidings::redact_url;
use tidings::transport::Transport;

/// Connects the transport `url` names, giving up after `timeout`.
pub async fn connect(url: &str, timeout: Duration) -> anyhow::Result<Arc<dyn Transport>> {
    let shown = redact_url(url);
    match tokio::time::timeout(timeout, tidings::connect(url)).await {
        Ok(Ok(t)) => Ok(t),
        Ok(Err(e)) => Err(scrub(
            anyhow::anyhow!("could not connect to {shown}: {e}\n  check: {}", hint(url)),
            url,
        )),
        Err(_) => Err(anyhow::anyhow!(
            "could not connect to {shown}: no connection within {}s (--connect-timeout)\n  check: {}",
            timeout.as_secs_f64(),
            hint(url)
        )),
    }
}

fn hint(url: &str) -> &'static str {
    match url.split_once("://").map_or("", |(s, _)| s) {
        "sqlite" => "the database file's directory exists and is writable (sqlite://path/to/file.db)",
        "postgres" | "postgresql" => {
            "PostgreSQL is running and reachable at that host and port, the user and password, and that the database exists"
        }
        "amqp" | "amqps" => {
            "RabbitMQ is running and reachable at that host and port (5672), the user and password, and the vhost"
        }
        "nats" | "tls" => {
            "nats-server is running with JetStream enabled (-js) and reachable at that host and port (4222)"
        }
        "memory" => "memory:// is in-process only: it holds nothing another process wrote",
        _ => "the URL: sqlite://FILE, postgres://USER@HOST/DB, amqp://USER@HOST:5672/VHOST, nats://HOST:4222 or memory://",
    }
}

/// Removes the URL's secrets (password, token, secret query values) from an error's
/// text, should a transport have quoted them.
pub(crate) fn scrub(e: anyhow::Error, url: &str) -> anyhow::Error {
    let secrets = tidings::redact::url_secrets(url);
    let text = format!("{e:#}");
    if !secrets.iter().any(|s| text.contains(s.as_str())) {
        return e;
    }
    anyhow::anyhow!(tidings::redact::scrub(&text, &secrets))
}

/// [`scrub`] on a result's error.
pub(crate) fn scrub_result<T>(r: anyhow::Result<T>, url: &str) -> anyhow::Result<T> {
    r.map_err(|e| scrub(e, url))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrub_hides_passwords() {
        let url = "amqp://guest:hunter%212@h:5672/";
        let e = scrub(
            anyhow::anyhow!("auth failed for hunter!2 / hunter%212"),
            url,
        );
        let s = format!("{e:#}");
        assert!(!s.contains("hunter"), "{s}");
        let e = scrub(
            anyhow::anyhow!("no token T0KEN here"),
            "nats://T0KEN@h:4222",
        );
        assert_eq!(e.to_string(), "no token *** here");
        let e = scrub(anyhow::anyhow!("fine"), "memory://");
        assert_eq!(e.to_string(), "fine");
    }
}
