//! Keeping credentials out of everything Tidings shows: the one place where a transport
//! URL is redacted, its secrets listed, an error text scrubbed of them, and a URL
//! component percent-decoded. Every transport, the facade and every binary use these
//! functions, so the rules are the same everywhere:
//!
//! - `user:password@`: the password becomes `***` (the user name stays).
//! - `token@` (user info without a password, as `nats://TOKEN@host`): the whole user
//!   info becomes `***`.
//! - Query parameters whose name looks secret ([`is_secret_param`]: `password=`,
//!   `token=`, `tls_key=`, `sslkey=`, `secret=`, ...): the value becomes `***`.
//! - A URL that does not parse: everything up to the last `@` becomes `***` and secret
//!   query values are masked the same way; text without `://`, `@` or `?` is shown as is
//!   (it cannot hold credentials in URL form).
//!
//! ```
//! use tidings_core::redact::{redact_url, scrub_url};
//! assert_eq!(redact_url("amqp://app:s3cret@mq:5672/%2f"), "amqp://app:***@mq:5672/%2f");
//! assert_eq!(redact_url("nats://T0KEN@nats:4222"), "nats://***@nats:4222");
//! assert_eq!(
//!     redact_url("postgres://db/app?sslmode=require&password=pw"),
//!     "postgres://db/app?sslmode=require&password=***"
//! );
//! assert_eq!(scrub_url("auth failed for s3cret", "amqp://app:s3cret@mq"), "auth failed for ***");
//! ```

use std::borrow::Cow;

use percent_encoding::percent_decode_str;
use url::Url;

/// What a secret is replaced with.
pub const MASK: &str = "***";

/// Fragments of a query parameter's name that mark its value as secret.
const SECRET_NAME_PARTS: [&str; 10] = [
    "pass", "pwd", "secret", "token", "key", "cred", "jwt", "sig", "session", "auth",
];

/// Parameter names containing [`SECRET_NAME_PARTS`] that are known not to be secret.
const NOT_SECRET: [&str; 1] = ["auth_mechanism"];

/// Whether a URL query parameter named `name` holds a secret (case-insensitive): its
/// name contains `pass`, `pwd`, `secret`, `token`, `key`, `cred`, `jwt`, `sig`,
/// `session` or `auth` (`password`, `sslpassword`, `tls_key`, `sslkey`, `api_key`,
/// `access_token`, `creds`, ...). `auth_mechanism` is not.
pub fn is_secret_param(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    !NOT_SECRET.contains(&name.as_str()) && SECRET_NAME_PARTS.iter().any(|p| name.contains(p))
}

/// `url` with its credentials replaced by [`MASK`], safe for logs, errors and reports.
/// See the module docs for the rules.
pub fn redact_url(url: &str) -> String {
    match Url::parse(url) {
        Ok(parsed) => redact_parsed(parsed).unwrap_or_else(|| redact_unparsed(url)),
        Err(_) => redact_unparsed(url),
    }
}

fn redact_parsed(mut u: Url) -> Option<String> {
    if u.password().is_some() {
        u.set_password(Some(MASK)).ok()?;
    } else if !u.username().is_empty() {
        u.set_username(MASK).ok()?;
    }
    if let Some(q) = u.query() {
        let q = redact_query(q);
        u.set_query(Some(&q));
    }
    Some(u.to_string())
}

/// A URL the parser refused (it may still hold credentials, and its error may quote it).
fn redact_unparsed(url: &str) -> String {
    if !url.contains("://") && !url.contains('@') && !url.contains('?') {
        return url.to_string();
    }
    let start = url.find("://").map_or(0, |s| s + 3);
    let (head, rest) = match url.rfind('@') {
        Some(at) if at >= start => (format!("{}{MASK}@", &url[..start]), &url[at + 1..]),
        _ => (url[..start].to_string(), &url[start..]),
    };
    match rest.split_once('?') {
        Some((path, query)) => format!("{head}{path}?{}", redact_query(query)),
        None => format!("{head}{rest}"),
    }
}

/// A raw query string with the values of secret parameters masked, the rest untouched.
fn redact_query(query: &str) -> String {
    query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((k, v)) if !v.is_empty() && is_secret_param(&decode_form(k)) => {
                format!("{k}={MASK}")
            }
            _ => pair.to_string(),
        })
        .collect::<Vec<_>>()
        .join("&")
}

fn decode_form(s: &str) -> String {
    percent_decode_str(&s.replace('+', " "))
        .decode_utf8_lossy()
        .into_owned()
}

/// Percent-decodes one URL component (user, password, path segment) as RFC 3986 does:
/// `%XX` only, a `+` stays a `+` (it means a space in form data, not in a URL's user
/// info). Fails when the decoded bytes are not UTF-8.
pub fn percent_decode(component: &str) -> Result<Cow<'_, str>, std::str::Utf8Error> {
    percent_decode_str(component).decode_utf8()
}

/// The secrets a URL holds, as they may appear in text: the password or token, and the
/// values of secret query parameters, each raw and percent-decoded. Empty when the URL
/// holds none.
pub fn url_secrets(url: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut push = |raw: &str| {
        let decoded = percent_decode_str(raw).decode_utf8_lossy().into_owned();
        for s in [raw.to_string(), decoded] {
            if !s.is_empty() && !out.contains(&s) {
                out.push(s);
            }
        }
    };
    // The userinfo as typed: `Url` re-encodes some characters (`{` -> `%7B`) and keeps
    // others (`%AA`), so the typed form is a secret of its own.
    let start = url.find("://").map_or(0, |s| s + 3);
    if let Some(at) = url.rfind('@').filter(|at| *at >= start) {
        let info = &url[start..at];
        match info.split_once(':') {
            Some((_, pw)) => push(pw),
            None => push(info),
        }
    }
    let query = match Url::parse(url) {
        Ok(u) => {
            match u.password() {
                Some(p) => push(p),
                None => push(u.username()),
            }
            u.query().map(str::to_string)
        }
        Err(_) => url.split_once('?').map(|(_, q)| q.to_string()),
    };
    for (k, v) in query
        .iter()
        .flat_map(|q| q.split('&'))
        .filter_map(|p| p.split_once('='))
    {
        if is_secret_param(&decode_form(k)) {
            push(v);
            push(&v.replace('+', " "));
        }
    }
    out
}

/// `text` with every non-empty `secret` replaced by [`MASK`] (longest first, so a secret
/// containing another is masked whole).
pub fn scrub<S: AsRef<str>>(text: &str, secrets: &[S]) -> String {
    let mut secrets: Vec<&str> = secrets
        .iter()
        .map(AsRef::as_ref)
        .filter(|s| !s.is_empty())
        .collect();
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    secrets
        .into_iter()
        .fold(text.to_string(), |out, s| out.replace(s, MASK))
}

/// `text` (an error from a driver, say) with the secrets of `url` masked:
/// [`scrub`] over [`url_secrets`].
pub fn scrub_url(text: &str, url: &str) -> String {
    scrub(text, &url_secrets(url))
}

#[cfg(test)]
#[path = "redact_tests.rs"]
mod tests;
