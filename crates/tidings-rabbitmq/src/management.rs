//! Queue discovery through the RabbitMQ management HTTP API.
//!
//! AMQP 0-9-1 cannot list queues, so a transport that declared nothing (the `tidings` CLI,
//! a dashboard in another process) would see no endpoint. When the management plugin is
//! enabled (`rabbitmq-plugins enable rabbitmq_management`), `GET /api/queues/{vhost}`
//! lists them. The endpoint follows the AMQP URL's scheme: `http://<AMQP host>:15672` for
//! `amqp://`, `https://<AMQP host>:15671` for `amqps://`, with the AMQP credentials;
//! `?management=<URL>` overrides it (credentials in that URL take precedence),
//! `?management=off` turns discovery off. An `amqps://` link never sends its credentials
//! to a plain `http://` management URL (refused at configuration). The workspace builds
//! its HTTP client without TLS, so an `https://` endpoint is refused when queues are
//! listed, before anything is sent: name the endpoint (`management=http://..` on an
//! `amqp://` link) or turn discovery off. Credentials go in a basic-auth header, never
//! in a URL, and never appear in errors or logs.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use url::Url;

use tidings_core::redact::{percent_decode, redact_url};

use crate::error::RabbitMqError;
use crate::topology;

/// What to do when queues cannot be listed.
pub(crate) const HINT: &str = "RabbitMQ cannot list queues over AMQP; enable the management \
     plugin (rabbitmq-plugins enable rabbitmq_management) or name the endpoint";

/// Where the management API is and how to log in.
#[derive(Clone)]
pub(crate) struct Endpoint {
    /// Base URL (`http://host:15672`, possibly with a path prefix), no credentials.
    pub(crate) base: Url,
    user: String,
    password: String,
    /// The AMQP virtual host whose queues are listed.
    vhost: String,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("base", &self.base.as_str())
            .field("user", &self.user)
            .field("vhost", &self.vhost)
            .finish_non_exhaustive()
    }
}

/// Percent-decodes a user, password or vhost (a `+` stays a `+`).
fn decode(what: &str, s: &str) -> Result<String, RabbitMqError> {
    percent_decode(s)
        .map(|d| d.into_owned())
        .map_err(|_| RabbitMqError::Config(format!("the AMQP URL's {what} is not UTF-8")))
}

impl Endpoint {
    /// The endpoint for an AMQP URL and the `management` query parameter (`None` when
    /// the parameter is absent: derived from the AMQP URL).
    pub(crate) fn resolve(amqp: &Url, param: Option<&str>) -> Result<Option<Self>, RabbitMqError> {
        let vhost = match amqp.path().trim_start_matches('/') {
            "" => "/".to_string(),
            v => decode("vhost", v)?,
        };
        let amqp_user = match amqp.username() {
            "" => "guest".to_string(),
            u => decode("user", u)?,
        };
        let amqp_password = match amqp.password() {
            None => "guest".to_string(),
            Some(p) => decode("password", p)?,
        };
        let tls = amqp.scheme() == "amqps";
        let mut base = match param {
            Some("off" | "false" | "none" | "") => return Ok(None),
            Some(p) => Url::parse(p).map_err(|e| {
                RabbitMqError::Config(format!("invalid management URL `{}`: {e}", redact_url(p)))
            })?,
            None => {
                let host = amqp.host_str().unwrap_or("127.0.0.1");
                let host = if host.contains(':') && !host.starts_with('[') {
                    format!("[{host}]")
                } else {
                    host.to_string()
                };
                let (scheme, port) = if tls {
                    ("https", 15671)
                } else {
                    ("http", 15672)
                };
                Url::parse(&format!("{scheme}://{host}:{port}/")).map_err(|e| {
                    RabbitMqError::Config(format!("cannot derive the management URL: {e}"))
                })?
            }
        };
        match base.scheme() {
            "https" => {}
            "http" if !tls => {}
            "http" => {
                return Err(RabbitMqError::Config(format!(
                    "management URL `{}`: the AMQP link uses TLS (amqps://), so the \
                     credentials are not sent over plain http://; use https:// or \
                     management=off",
                    redact_url(base.as_str())
                )))
            }
            other => {
                return Err(RabbitMqError::Config(format!(
                    "management URL `{}`: scheme `{other}` is not http:// or https://",
                    redact_url(base.as_str())
                )))
            }
        }
        let (user, password) = if base.username().is_empty() {
            (amqp_user, amqp_password)
        } else {
            (
                decode("management user", base.username())?,
                base.password()
                    .map(|p| decode("management password", p))
                    .transpose()?
                    .unwrap_or_default(),
            )
        };
        // Credentials travel in a header only.
        let _ = base.set_username("");
        let _ = base.set_password(None);
        base.set_query(None);
        Ok(Some(Endpoint {
            base,
            user,
            password,
            vhost,
        }))
    }

    /// The password, to scrub it from texts.
    pub(crate) fn password(&self) -> &str {
        &self.password
    }

    fn queues_url(&self) -> Url {
        let mut u = self.base.clone();
        if let Ok(mut segs) = u.path_segments_mut() {
            segs.pop_if_empty().extend(["api", "queues", &self.vhost]);
        }
        u.query_pairs_mut()
            .append_pair("columns", "name,messages_ready,messages_unacknowledged");
        u
    }
}

/// One queue as the management API reports it.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct ListedQueue {
    /// Queue name.
    pub(crate) name: String,
    /// Unacknowledged deliveries (statistics, refreshed every 5 s by default; absent
    /// until the first sample).
    #[serde(default)]
    pub(crate) messages_unacknowledged: Option<u64>,
}

/// A client of the management API.
pub(crate) struct Management {
    endpoint: Endpoint,
    client: reqwest::Client,
}

impl Management {
    pub(crate) fn new(endpoint: Endpoint) -> Result<Self, RabbitMqError> {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(10))
            .no_proxy()
            .build()
            .map_err(|e| RabbitMqError::Config(format!("cannot build the HTTP client: {e}")))?;
        Ok(Management { endpoint, client })
    }

    /// Where the API is (no credentials), for messages.
    pub(crate) fn base(&self) -> &str {
        self.endpoint.base.as_str()
    }

    /// Every queue of the vhost.
    pub(crate) async fn queues(&self) -> Result<Vec<ListedQueue>, RabbitMqError> {
        let url = self.endpoint.queues_url();
        let fail = |reason: String, retryable: bool| RabbitMqError::Management {
            url: self.base().to_string(),
            reason: tidings_core::redact::scrub(&reason, &[&self.endpoint.password]),
            retryable,
        };
        if url.scheme() != "http" {
            // Refused before anything is sent: the client cannot do TLS.
            return Err(fail(
                "https:// is not supported (the HTTP client is built without TLS); \
                 name a management=http://.. endpoint on an amqp:// link, or \
                 management=off"
                    .to_string(),
                false,
            ));
        }
        let resp = self
            .client
            .get(url)
            .basic_auth(&self.endpoint.user, Some(&self.endpoint.password))
            .send()
            .await
            .map_err(|e| {
                let retryable = crate::error::http_retryable(&e);
                fail(chain(&e.without_url()), retryable)
            })?;
        let status = resp.status();
        if !status.is_success() {
            return Err(fail(
                format!("HTTP {status}"),
                crate::error::status_retryable(status),
            ));
        }
        resp.json::<Vec<ListedQueue>>().await.map_err(|e| {
            let retryable = crate::error::http_retryable(&e);
            fail(format!("unexpected answer: {}", e.without_url()), retryable)
        })
    }
}

/// An error and its causes, `: `-separated (reqwest's own text omits the cause, e.g.
/// "connection refused").
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !out.contains(&text) {
            out = format!("{out}: {text}");
        }
        cause = c.source();
    }
    out
}

/// The Tidings endpoint queues among `listed`: a queue `q` whose error queue `q_error`
/// exists too (Tidings always declares both), except the delay levels. Error queues,
/// delay levels and queues of other applications are left out.
pub(crate) fn endpoints(listed: &[ListedQueue]) -> BTreeMap<String, Option<u64>> {
    let names: std::collections::HashSet<&str> = listed.iter().map(|q| q.name.as_str()).collect();
    listed
        .iter()
        .filter(|q| !topology::is_delay_queue(&q.name))
        .filter(|q| names.contains(tidings_core::transport::error_queue_name(&q.name).as_str()))
        .map(|q| (q.name.clone(), q.messages_unacknowledged))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(name: &str) -> ListedQueue {
        ListedQueue {
            name: name.into(),
            messages_unacknowledged: Some(1),
        }
    }

    #[tokio::test]
    async fn a_failing_api_is_an_error_without_the_password() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let amqp = Url::parse("amqp://app:Top-s3cret@127.0.0.1/%2f").unwrap();
        let param = format!("http://127.0.0.1:{port}");
        let e = Endpoint::resolve(&amqp, Some(&param)).unwrap().unwrap();
        let err = Management::new(e).unwrap().queues().await.unwrap_err();
        let text = format!("{err} {err:?}");
        assert!(
            text.contains("management API") && !text.contains("Top-s3cret"),
            "{text}"
        );
    }

    #[test]
    fn endpoints_are_queues_with_an_error_queue() {
        let listed = [
            q("orders"),
            q("orders_error"),
            q("tidings_delay.3"),
            q("tidings_delay_classic.0"),
            q("someone-elses"),
            q("lonely_error"),
        ];
        let e = endpoints(&listed);
        assert_eq!(e.keys().collect::<Vec<_>>(), ["orders"]);
    }

    #[test]
    fn endpoint_is_derived_from_the_amqp_url_without_credentials_in_it() {
        let amqp = Url::parse("amqp://app:s%40cret@rabbit.local:5672/%2f").unwrap();
        let e = Endpoint::resolve(&amqp, None).unwrap().unwrap();
        assert_eq!(e.base.as_str(), "http://rabbit.local:15672/");
        assert_eq!((e.user.as_str(), e.password()), ("app", "s@cret"));
        assert_eq!(
            e.queues_url().as_str(),
            "http://rabbit.local:15672/api/queues/%2F?columns=name%2Cmessages_ready%2Cmessages_unacknowledged"
        );
        assert!(!format!("{e:?}").contains("s@cret"));

        let amqp = Url::parse("amqp://h/prod").unwrap();
        let e = Endpoint::resolve(&amqp, Some("http://admin:pw@mgmt:8080/rabbit"))
            .unwrap()
            .unwrap();
        assert_eq!(e.base.as_str(), "http://mgmt:8080/rabbit");
        assert_eq!((e.user.as_str(), e.password()), ("admin", "pw"));
        assert!(e
            .queues_url()
            .as_str()
            .starts_with("http://mgmt:8080/rabbit/api/queues/prod?"));

        let e = Endpoint::resolve(&Url::parse("amqp://h").unwrap(), None)
            .unwrap()
            .unwrap();
        assert_eq!((e.user.as_str(), e.vhost.as_str()), ("guest", "/"));
        assert!(Endpoint::resolve(&amqp, Some("off")).unwrap().is_none());
        let err = Endpoint::resolve(&amqp, Some("ftp://u:topsecret@h:15671"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("`ftp`") && !err.contains("topsecret"), "{err}");
    }

    #[tokio::test]
    async fn amqps_follows_its_scheme_and_never_sends_credentials_in_clear() {
        let amqps = Url::parse("amqps://app:pa+ss%2Bword@rabbit.local/%2f").unwrap();
        let e = Endpoint::resolve(&amqps, None).unwrap().unwrap();
        assert_eq!(e.base.as_str(), "https://rabbit.local:15671/");
        // `+` is a plus in a URL's user info, not a space.
        assert_eq!(e.password(), "pa+ss+word");
        let err = Management::new(e).unwrap().queues().await.unwrap_err();
        let text = err.to_string();
        assert!(text.contains("https:// is not supported"), "{text}");
        assert!(!text.contains("pa+ss"), "{text}");
        let err = Endpoint::resolve(&amqps, Some("http://mgmt:15672"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("amqps://") && err.contains("https://"),
            "{err}"
        );
        let explicit = Endpoint::resolve(&amqps, Some("https://mgmt:443/rabbit"));
        assert!(explicit.unwrap().is_some());
    }
}
