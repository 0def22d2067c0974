//! A RabbitMQ virtual host of the scale run's own. A broker is shared (by other runs, by
//! the transport test suites): its queues would count as work left, its dead letters as
//! this run's, and a quorum queue per endpoint from every earlier run would pile up. So
//! on an `amqp(s)://` URL on the default vhost (`/`, or none) the run creates
//! `orderflow-scale-<stamp>` through the management HTTP API, grants the URL's user every
//! permission on it, runs there, and deletes it at the end (its queues, exchanges and
//! delay levels go with it). A URL that names another vhost is used as it is.
//!
//! The management API is the transport's: `?management=<URL>` or `http://<AMQP host>:15672`,
//! the AMQP credentials unless the management URL has its own. Credentials travel in a
//! basic-auth header only and never appear in errors.

use std::time::Duration;

use tidings_core::redact::{percent_decode, redact_url, scrub};
use url::Url;

/// A vhost this run created, deleted by [`OwnVhost::delete`].
pub struct OwnVhost {
    client: reqwest::Client,
    base: Url,
    user: String,
    password: String,
    /// The vhost's name.
    pub name: String,
}

impl std::fmt::Debug for OwnVhost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OwnVhost")
            .field("base", &self.base.as_str())
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

fn decoded(s: &str, default: &str) -> anyhow::Result<String> {
    if s.is_empty() {
        return Ok(default.to_string());
    }
    Ok(percent_decode(s)
        .map_err(|_| anyhow::anyhow!("the AMQP URL's credentials are not UTF-8"))?
        .into_owned())
}

impl OwnVhost {
    /// On an AMQP URL on the default vhost: creates `orderflow-scale-<stamp>` and returns
    /// it with the URL on it. `None` for other URLs (used as they are).
    pub async fn create(url: &str, stamp: i64) -> anyhow::Result<Option<(OwnVhost, String)>> {
        if !(url.starts_with("amqp://") || url.starts_with("amqps://")) {
            return Ok(None);
        }
        let shown = redact_url(url);
        let mut amqp = Url::parse(url).map_err(|e| anyhow::anyhow!("{shown}: {e}"))?;
        if !matches!(amqp.path(), "" | "/" | "/%2f" | "/%2F") {
            return Ok(None);
        }
        let param = amqp
            .query_pairs()
            .find(|(k, _)| k == "management")
            .map(|(_, v)| v.into_owned());
        let mut base = match param.as_deref() {
            Some("off" | "false" | "none" | "") => anyhow::bail!(
                "{shown}: management is off, so the run cannot make a vhost of its own; \
                 name one in the URL (amqp://…/VHOST)"
            ),
            Some(p) => Url::parse(p)
                .map_err(|e| anyhow::anyhow!("management URL {}: {e}", redact_url(p)))?,
            None => {
                let host = amqp.host_str().unwrap_or("127.0.0.1");
                Url::parse(&format!("http://{host}:15672/"))?
            }
        };
        anyhow::ensure!(
            base.scheme() == "http",
            "{shown}: the management API must be http:// here (the HTTP client has no TLS); \
             or name a vhost in the URL"
        );
        let (user, password) = if base.username().is_empty() {
            (
                decoded(amqp.username(), "guest")?,
                decoded(amqp.password().unwrap_or(""), "guest")?,
            )
        } else {
            (
                decoded(base.username(), "")?,
                decoded(base.password().unwrap_or(""), "")?,
            )
        };
        let _ = base.set_username("");
        let _ = base.set_password(None);
        base.set_query(None);
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(30))
            .no_proxy()
            .build()?;
        let vhost = OwnVhost {
            client,
            base,
            user,
            password,
            name: format!("orderflow-scale-{stamp}"),
        };
        let empty = serde_json::json!({});
        vhost
            .call(reqwest::Method::PUT, &["vhosts", &vhost.name], Some(empty))
            .await?;
        let all = serde_json::json!({"configure": ".*", "write": ".*", "read": ".*"});
        let grant = ["permissions", &vhost.name, &vhost.user];
        if let Err(e) = vhost.call(reqwest::Method::PUT, &grant, Some(all)).await {
            let _ = vhost
                .call(reqwest::Method::DELETE, &["vhosts", &vhost.name], None)
                .await;
            return Err(e);
        }
        amqp.set_path(&format!("/{}", vhost.name));
        Ok(Some((vhost, amqp.to_string())))
    }

    /// Deletes the vhost with everything in it.
    pub async fn delete(self) -> anyhow::Result<()> {
        self.call(reqwest::Method::DELETE, &["vhosts", &self.name], None)
            .await
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &[&str],
        body: Option<serde_json::Value>,
    ) -> anyhow::Result<()> {
        let mut url = self.base.clone();
        if let Ok(mut segs) = url.path_segments_mut() {
            segs.pop_if_empty().push("api").extend(path);
        }
        let what = format!("{method} {}", url.path());
        let mut request = self
            .client
            .request(method, url)
            .basic_auth(&self.user, Some(&self.password));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let answer = request.send().await.map_err(|e| {
            anyhow::anyhow!(
                "RabbitMQ management API at {}: {what}: {}",
                self.base,
                scrub(&e.to_string(), &[&self.password])
            )
        })?;
        let status = answer.status();
        anyhow::ensure!(
            status.is_success(),
            "RabbitMQ management API at {}: {what} answered {status}",
            self.base
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::OwnVhost;

    #[tokio::test]
    async fn only_an_amqp_url_on_the_default_vhost_gets_a_vhost_of_its_own() {
        // no broker is asked in any of these
        for url in [
            "postgres://postgres@127.0.0.1:5432/test",
            "nats://127.0.0.1:4222",
            "amqp://guest:guest@127.0.0.1:5672/mine",
        ] {
            assert!(OwnVhost::create(url, 1).await.unwrap().is_none(), "{url}");
        }
        let off = OwnVhost::create("amqp://u:secret@127.0.0.1:5672/%2f?management=off", 1)
            .await
            .unwrap_err()
            .to_string();
        assert!(off.contains("management is off"), "{off}");
        assert!(!off.contains("secret"), "{off}");
        let tls = OwnVhost::create("amqp://u:secret@h/?management=https://h:15671", 1)
            .await
            .unwrap_err()
            .to_string();
        assert!(tls.contains("http://"), "{tls}");
        assert!(!tls.contains("secret"), "{tls}");
    }
}
