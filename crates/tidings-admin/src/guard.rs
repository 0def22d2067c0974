//! Cross-site protection of the admin API: what a request must look like before any
//! route sees it. Pure functions over header values (callable with plain strings, for
//! tests and fuzzing); the [`protect`] middleware applies them.
//!
//! - A mutating request (anything but `GET`, `HEAD`, `OPTIONS`) must say
//!   `Content-Type: application/json`. A web page can send `text/plain`, form or
//!   multipart bodies to any origin without a CORS preflight; `application/json` it cannot.
//! - Without a bearer token (loopback, the default of `tidings dashboard` and
//!   `orderflow --serve`), the `Host` must be a loopback name (`localhost`, `*.localhost`,
//!   `127.0.0.0/8`, `[::1]`) or one allowed with [`AdminState::allow_hosts`], which
//!   defeats DNS rebinding; and an `Origin`, when the browser sends one, must be the
//!   server's own (`http(s)://<Host>`), which refuses every cross-site request.
//! - With a token, the browser cannot attach it on its own, so neither check is needed.
//!
//! [`AdminState::allow_hosts`]: crate::AdminState::allow_hosts

use std::net::IpAddr;

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::api_error::ApiError;
use crate::AdminState;

/// Why a request was refused before reaching a route.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Refusal {
    /// A mutating request without `Content-Type: application/json` (415).
    NotJson,
    /// A `Host` that is neither loopback nor allowed, without a token (403).
    Host(String),
    /// An `Origin` other than the server's own, without a token (403).
    Origin(String),
}

impl Refusal {
    /// The HTTP status answered.
    pub fn status(&self) -> StatusCode {
        match self {
            Refusal::NotJson => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Refusal::Host(_) | Refusal::Origin(_) => StatusCode::FORBIDDEN,
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::NotJson => f.write_str(
                "this route changes state: send the request as `Content-Type: application/json`",
            ),
            Refusal::Host(h) => write!(
                f,
                "host `{}` is not allowed: without a token the admin API answers loopback \
                 names only (set a token, or allow the host with AdminState::allow_hosts)",
                h.escape_debug()
            ),
            Refusal::Origin(o) => write!(
                f,
                "cross-origin request from `{}` refused: without a token the admin API \
                 answers its own pages only",
                o.escape_debug()
            ),
        }
    }
}

/// Whether `method` changes state (everything but `GET`, `HEAD`, `OPTIONS`).
pub fn is_mutating(method: &str) -> bool {
    !matches!(method, "GET" | "HEAD" | "OPTIONS")
}

/// Whether a `Content-Type` value is `application/json` (parameters such as
/// `charset=utf-8` allowed, case-insensitive).
pub fn is_json(content_type: &str) -> bool {
    content_type
        .split(';')
        .next()
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
}

/// The host name of a `Host` value or URL authority, without port or IPv6 brackets,
/// lower-cased. `None` when it is malformed.
pub fn host_name(authority: &str) -> Option<String> {
    let a = authority.trim();
    let name = if let Some(rest) = a.strip_prefix('[') {
        let (ip, after) = rest.split_once(']')?;
        if !(after.is_empty() || after.strip_prefix(':').is_some_and(is_port)) {
            return None;
        }
        ip
    } else {
        match a.rsplit_once(':') {
            Some((h, p)) if is_port(p) => h,
            Some(_) => return None,
            None => a,
        }
    };
    let ok = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':'));
    ok.then(|| name.to_ascii_lowercase())
}

fn is_port(p: &str) -> bool {
    !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit())
}

/// Whether a host name (see [`host_name`]) always means this machine.
pub fn is_loopback(name: &str) -> bool {
    name == "localhost"
        || name.ends_with(".localhost")
        || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The checks of the module docs on one request's method and headers. `host` is the
/// `Host` header (or the URI's authority); `allowed_hosts` are extra host names accepted
/// without a token.
pub fn check(
    method: &str,
    host: Option<&str>,
    origin: Option<&str>,
    content_type: Option<&str>,
    token_set: bool,
    allowed_hosts: &[String],
) -> Result<(), Refusal> {
    if is_mutating(method) && !content_type.is_some_and(is_json) {
        return Err(Refusal::NotJson);
    }
    if token_set {
        return Ok(());
    }
    if let Some(h) = host {
        let allowed = host_name(h).is_some_and(|n| {
            is_loopback(&n) || allowed_hosts.iter().any(|a| a.eq_ignore_ascii_case(&n))
        });
        if !allowed {
            return Err(Refusal::Host(h.to_string()));
        }
    }
    if let Some(o) = origin {
        let same = match (o.split_once("://"), host) {
            (Some(("http" | "https", authority)), Some(h)) => authority.eq_ignore_ascii_case(h),
            // No Host to compare with (an in-process call): a loopback origin only.
            (Some(("http" | "https", authority)), None) => {
                host_name(authority).is_some_and(|n| is_loopback(&n))
            }
            _ => false,
        };
        if !same {
            return Err(Refusal::Origin(o.to_string()));
        }
    }
    Ok(())
}

/// The middleware applying [`check`] to every admin request.
pub(crate) async fn protect(
    State(state): State<AdminState>,
    request: Request,
    next: Next,
) -> Response {
    let headers = request.headers();
    let text = |name| headers.get(name).map(|v| v.to_str().unwrap_or("\u{fffd}"));
    let host = text(header::HOST).or_else(|| request.uri().authority().map(|a| a.as_str()));
    let verdict = check(
        request.method().as_str(),
        host,
        text(header::ORIGIN),
        text(header::CONTENT_TYPE),
        state.requires_token(),
        &state.allowed_hosts,
    );
    match verdict {
        Ok(()) => next.run(request).await,
        Err(refusal) => {
            tracing::warn!(%refusal, method = %request.method(), "admin: request refused");
            ApiError::new(refusal.status(), refusal.to_string()).into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NONE: &[String] = &[];

    #[test]
    fn hosts() {
        assert_eq!(host_name("127.0.0.1:9090").as_deref(), Some("127.0.0.1"));
        assert_eq!(host_name("[::1]:80").as_deref(), Some("::1"));
        assert_eq!(host_name("LocalHost").as_deref(), Some("localhost"));
        assert_eq!(host_name("h:x"), None);
        assert_eq!(host_name("[::1]x"), None);
        assert_eq!(host_name("a b"), None);
        for h in [
            "localhost",
            "app.localhost",
            "127.0.0.1",
            "127.1.2.3",
            "::1",
        ] {
            assert!(is_loopback(h), "{h}");
        }
        for h in [
            "evil.example",
            "localhost.evil.example",
            "10.0.0.1",
            "0.0.0.0",
        ] {
            assert!(!is_loopback(h), "{h}");
        }
    }

    #[test]
    fn cross_site_text_plain_post_is_refused() {
        let r = check(
            "POST",
            Some("127.0.0.1:9090"),
            Some("https://evil.example"),
            Some("text/plain"),
            false,
            NONE,
        );
        assert_eq!(r, Err(Refusal::NotJson));
        let r = check(
            "POST",
            Some("127.0.0.1:9090"),
            Some("https://evil.example"),
            Some("application/json"),
            false,
            NONE,
        );
        assert!(matches!(r, Err(Refusal::Origin(_))));
        let same = check(
            "POST",
            Some("127.0.0.1:9090"),
            Some("http://127.0.0.1:9090"),
            Some("application/json; charset=utf-8"),
            false,
            NONE,
        );
        assert_eq!(same, Ok(()));
        assert!(check("DELETE", None, None, None, true, NONE).is_err());
        assert!(check("GET", None, Some("null"), None, false, NONE).is_err());
    }

    #[test]
    fn rebinding_hosts_are_refused_without_a_token_only() {
        let evil = Some("rebind.evil.example:9090");
        assert!(matches!(
            check("GET", evil, None, None, false, NONE),
            Err(Refusal::Host(_))
        ));
        assert_eq!(check("GET", evil, None, None, true, NONE), Ok(()));
        let allowed = ["rebind.evil.example".to_string()];
        assert_eq!(check("GET", evil, None, None, false, &allowed), Ok(()));
        assert_eq!(
            check("GET", Some("localhost:9090"), None, None, false, NONE),
            Ok(())
        );
        assert_eq!(check("GET", None, None, None, false, NONE), Ok(()));
    }
}
