//! Table and property tests of [`super`] over the URL shapes Tidings takes.

use super::*;
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use proptest::prelude::*;

#[test]
fn every_url_shape() {
    let table = [
        // user:password
        (
            "amqp://guest:secret@host:5672/%2f",
            "amqp://guest:***@host:5672/%2f",
        ),
        (
            "amqps://app:s3cr%40t@mq.example/vh",
            "amqps://app:***@mq.example/vh",
        ),
        ("postgres://u:p%40ss@h/db", "postgres://u:***@h/db"),
        (
            "nats://alice:pw+with+plus@h:4222",
            "nats://alice:***@h:4222",
        ),
        // token
        ("nats://T0KEN@nats:4222", "nats://***@nats:4222"),
        (
            "tls://s3cr3ttoken@nats.example:4222",
            "tls://***@nats.example:4222",
        ),
        // a user without password is hidden too: it may be a token
        ("postgres://u@h/db", "postgres://***@h/db"),
        // an empty password: the user may be a token
        ("amqp://guest:@h/", "amqp://***@h/"),
        // no credentials
        ("nats://127.0.0.1:4222", "nats://127.0.0.1:4222"),
        ("sqlite://./data/orders.db", "sqlite://./data/orders.db"),
        ("sqlite:orders.db?mode=rwc", "sqlite:orders.db?mode=rwc"),
        ("memory://", "memory://"),
        // secret query parameters
        (
            "postgres://h/db?sslmode=require&password=pw1&sslpassword=pw2",
            "postgres://h/db?sslmode=require&password=***&sslpassword=***",
        ),
        (
            "tls://h:4222?tls_cert=/c.pem&tls_key=/k.pem&prefix=t",
            "tls://h:4222?tls_cert=/c.pem&tls_key=***&prefix=t",
        ),
        (
            "nats://h?token=abc&TOKEN=def&api%5Fkey=x&name=n",
            "nats://h?token=***&TOKEN=***&api%5Fkey=***&name=n",
        ),
        (
            "amqp://u:p@h/%2f?auth_mechanism=plain&heartbeat=10",
            "amqp://u:***@h/%2f?auth_mechanism=plain&heartbeat=10",
        ),
        ("postgres://h/db?password=", "postgres://h/db?password="),
        // unparsable: everything up to the last `@` and secret query values
        ("nats://u:pw9@h:99999", "nats://***@h:99999"),
        ("amqp://app:s3cr3t@[bad/", "amqp://***@[bad/"),
        ("amqp://u:pa?ss@h", "amqp://***@h"),
        ("not a url :pw@", "***@"),
        ("x://[h?password=pw", "x://[h?password=***"),
        ("nonsense", "nonsense"),
    ];
    for (input, expected) in table {
        assert_eq!(redact_url(input), expected, "{input}");
    }
}

#[test]
fn secrets_of_a_url_raw_and_decoded() {
    let s = url_secrets("amqp://app:s3cr%40t@h/");
    assert!(s.contains(&"s3cr%40t".to_string()) && s.contains(&"s3cr@t".to_string()));
    assert_eq!(url_secrets("nats://tok@h"), vec!["tok".to_string()]);
    assert_eq!(
        url_secrets("nats://h?tls_key=%2Fk.pem"),
        vec!["%2Fk.pem", "/k.pem"]
    );
    assert!(url_secrets("nats://h:4222?prefix=x").is_empty());
    assert!(url_secrets("nats://u:pw9@h:99999").contains(&"pw9".to_string()));
    assert_eq!(
        scrub_url("failed: s3cr@t and s3cr%40t", "amqp://app:s3cr%40t@h/"),
        "failed: *** and ***"
    );
    assert_eq!(scrub("abcd abc", &["abc", "abcd", ""]), "*** ***");
    // typed raw: `Url` turns `{` into `%7B` but keeps `%AA` (not UTF-8 once decoded)
    let typed = "amqp://a:Z9{%AA@a";
    assert_eq!(scrub_url("driver said: Z9{%AA", typed), "driver said: ***");
}

#[test]
fn percent_decoding_keeps_plus() {
    assert_eq!(percent_decode("a+b%2Bc%40").unwrap(), "a+b+c@");
    assert_eq!(percent_decode("%2f").unwrap(), "/");
    assert!(percent_decode("%ff").is_err());
    assert!(is_secret_param("sslKey") && is_secret_param("PASSWORD"));
    assert!(!is_secret_param("prefix") && !is_secret_param("auth_mechanism"));
}

fn enc(s: &str) -> String {
    utf8_percent_encode(s, NON_ALPHANUMERIC).to_string()
}

proptest! {
    // Secrets are marked with `Z9`, absent from the other (lower-case) parts.
    #[test]
    fn no_password_survives(
        scheme in "(amqp|amqps|postgres|nats|tls|sqlite|x)",
        user in "[a-z]{1,8}",
        pw in "Z9[ -~]{2,16}",
        host in "[a-z]{1,8}",
        port in proptest::option::of(1u32..99_999),
        param in "(password|tls_key|token|sslkey|secret)",
        value in "Z9[a-zA-Z0-9/._-]{2,10}",
    ) {
        let port = port.map(|p| format!(":{p}")).unwrap_or_default();
        // (url, whether it holds `pw`)
        let urls = [
            (format!("{scheme}://{user}:{}@{host}{port}/p", enc(&pw)), true),
            (format!("{scheme}://{}@{host}{port}/", enc(&pw)), true),
            (format!("{scheme}://{host}{port}/d?a=b&{param}={}&c=d", enc(&value)), false),
            // the raw password, as someone may type it
            (format!("{scheme}://{user}:{pw}@{host}{port}"), true),
        ];
        for (url, holds_pw) in urls {
            let shown = redact_url(&url);
            prop_assert!(!shown.contains("Z9"), "{} -> {}", url, shown);
            let text = format!("driver said: {pw} / {} / {value} / {}", enc(&pw), enc(&value));
            let scrubbed = scrub_url(&text, &url);
            let secret = if holds_pw { &pw } else { &value };
            prop_assert!(!scrubbed.contains(secret.as_str()), "{} -> {}", url, scrubbed);
        }
    }
}
