//! Least-privilege NATS permissions per service, from what the topology says each one
//! consumes, subscribes to, sends and publishes ([`ServiceAccess`]): the publish and
//! subscribe subjects of one user per service, as the `authorization { users = [...] }`
//! block of a `nats-server` configuration.
//!
//! A service may publish to (names as in the `naming` module):
//! - its own queues: the queue subjects `<prefix>.q.<q>.*` (a due delayed message is
//!   republished there), error `<prefix>.err.<q>`, delay `<prefix>.dl.<q>`, parked
//!   `<prefix>.pk.<q>.>`; and the JetStream API and acks of their streams (`<P>_Q_<q>`,
//!   each ordered partition `<P>_O_<q>_<n>`, `_ERR_`, `_DL_`, `_PK_`):
//!   `$JS.API.STREAM.*.<stream>` (create, update, info, purge, delete),
//!   `$JS.API.STREAM.*.*.<stream>` (message get/delete), `$JS.API.CONSUMER.*.<stream>`,
//!   `$JS.API.CONSUMER.*.<stream>.>`, `$JS.API.CONSUMER.*.*.<stream>.>` (durable create,
//!   info, next message), `$JS.ACK.<stream>.>`;
//! - the queues it sends commands to: `<prefix>.q.<d>.*` and, for scheduled sends,
//!   `<prefix>.dl.<d>`;
//! - the events it publishes: `<prefix>.ev.<t>.*`;
//! - the event streams `<P>_EV_<t>` of what it publishes or subscribes to (it declares
//!   them): `$JS.API.STREAM.*.<stream>`;
//! - `$JS.API.INFO`, `$JS.API.STREAM.NAMES`, `$JS.API.STREAM.LIST` (listing stream
//!   names and their state for `stats`; the listing shows other services' stream names).
//!
//! It may subscribe to `_INBOX.>` only: every JetStream reply (publish acks, API answers,
//! pulled messages) comes to the client's inbox. What stays open: inboxes are one
//! namespace, so a user could subscribe to another client's replies if it guessed its
//! random inbox name; a service may delete its own streams. What is closed: publishing
//! to, pulling from, acking on, or changing the streams of another service's queue, and
//! publishing an event it does not publish.

use tidings_core::access::ServiceAccess;

use crate::naming::Names;

/// One user's permissions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserPermissions {
    /// User name (the service's name with the prefix given to [`permissions`]).
    pub user: String,
    /// Subjects it may publish to.
    pub publish: Vec<String>,
    /// Subjects it may subscribe to.
    pub subscribe: Vec<String>,
}

/// One user per service, named `user_prefix` + the service's name, for a deployment on
/// `subject_prefix` (the URL's `?prefix=`, default `tidings`) with `partitions` partitions
/// per ordered queue (`?partitions=`, default 8).
pub fn permissions(
    services: &[ServiceAccess],
    user_prefix: &str,
    subject_prefix: &str,
    partitions: u32,
) -> Vec<UserPermissions> {
    let names = Names::new(subject_prefix, partitions);
    services
        .iter()
        .map(|s| {
            let mut publish: Vec<String> = [
                "$JS.API.INFO",
                "$JS.API.STREAM.NAMES",
                "$JS.API.STREAM.LIST",
            ]
            .iter()
            .map(|x| x.to_string())
            .collect();
            for q in &s.consumes {
                publish.push(names.queue_subjects(q));
                publish.push(names.error_subject(q));
                publish.push(names.delay_subject(q));
                publish.push(names.park_subjects(q));
                let mut streams = vec![
                    names.queue_stream(q),
                    names.error_stream(q),
                    names.delay_stream(q),
                    names.park_stream(q),
                ];
                streams.extend((0..names.partitions).map(|n| names.ordered_stream(q, n)));
                for stream in streams {
                    publish.extend(stream_api(&stream));
                    publish.push(format!("$JS.API.CONSUMER.*.{stream}"));
                    publish.push(format!("$JS.API.CONSUMER.*.{stream}.>"));
                    publish.push(format!("$JS.API.CONSUMER.*.*.{stream}.>"));
                    publish.push(format!("$JS.ACK.{stream}.>"));
                }
            }
            for d in &s.sends_to {
                publish.push(names.queue_subjects(d));
                publish.push(names.delay_subject(d));
            }
            for t in &s.publishes {
                publish.push(names.event_subjects(t));
            }
            for t in s.publishes.iter().chain(&s.subscribes) {
                publish.extend(stream_api(&names.event_stream(t)));
            }
            publish.sort();
            publish.dedup();
            UserPermissions {
                user: format!("{user_prefix}{}", s.name),
                publish,
                subscribe: vec!["_INBOX.>".to_string()],
            }
        })
        .collect()
}

/// The stream-level API subjects of `stream`.
fn stream_api(stream: &str) -> [String; 2] {
    [
        format!("$JS.API.STREAM.*.{stream}"),
        format!("$JS.API.STREAM.*.*.{stream}"),
    ]
}

/// The environment variable a user's password is read from: `TIDINGS_PASSWORD_` + the
/// user name in upper case, other characters as `_`.
pub fn password_variable(user: &str) -> String {
    let tail: String = user
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    format!("TIDINGS_PASSWORD_{tail}")
}

/// A quoted string of the server's configuration format.
fn quoted(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', r"\\").replace('"', "\\\""))
}

/// The `authorization { users = [...] }` block of a `nats-server` configuration. Each
/// password is a `$TIDINGS_PASSWORD_…` reference the server resolves from its
/// environment when it reads the file: nothing secret is written here.
pub fn server_config(perms: &[UserPermissions]) -> String {
    let list = |subjects: &[String]| {
        subjects
            .iter()
            .map(|s| format!("          {}", quoted(s)))
            .collect::<Vec<_>>()
            .join(",\n")
    };
    let mut out = String::from(
        "# Generated by `tidings topology --permissions nats`: one user per service.\n\
         # Passwords come from the server's environment (TIDINGS_PASSWORD_*).\nauthorization {\n  users = [\n",
    );
    for p in perms {
        out.push_str(&format!(
            "    {{\n      user: {}\n      password: ${}\n      permissions: {{\n        publish: {{ allow: [\n{}\n        ] }}\n        subscribe: {{ allow: [\n{}\n        ] }}\n      }}\n    }}\n",
            quoted(&p.user),
            password_variable(&p.user),
            list(&p.publish),
            list(&p.subscribe),
        ));
    }
    out.push_str("  ]\n}\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payments() -> ServiceAccess {
        ServiceAccess {
            name: "payments".into(),
            consumes: vec!["payments".into()],
            subscribes: vec!["shop.placed".into()],
            commands: vec!["shop.ship".into()],
            sends_to: vec!["shipping".into()],
            publishes: vec!["shop.paid".into()],
            fans_out_to: vec!["orders".into()],
        }
    }

    #[test]
    fn subjects_name_own_streams_destinations_and_events_only() {
        let p = &permissions(&[payments()], "shop-", "tidings", 2)[0];
        assert_eq!(p.user, "shop-payments");
        for s in [
            "tidings.q.payments.*",
            "tidings.err.payments",
            "tidings.q.shipping.*",
            "tidings.dl.shipping",
            "tidings.ev.shop_2Epaid.*",
            "$JS.API.STREAM.*.tidings_O_payments_1",
            "$JS.API.CONSUMER.*.*.tidings_Q_payments.>",
            "$JS.ACK.tidings_Q_payments.>",
            "$JS.API.STREAM.*.tidings_EV_shop_2Eplaced",
        ] {
            assert!(p.publish.iter().any(|x| x == s), "missing {s}");
        }
        assert!(!p.publish.iter().any(|x| x.contains("tidings_Q_shipping")));
        assert!(!p.publish.iter().any(|x| x == "tidings.ev.shop_2Eplaced.*"));
        assert!(!p.publish.iter().any(|x| x.contains("_O_payments_2")));
        assert_eq!(p.subscribe, ["_INBOX.>"]);
    }

    #[test]
    fn config_refers_to_passwords_by_variable() {
        let conf = server_config(&permissions(&[payments()], "", "tidings", 1));
        assert!(
            conf.contains("password: $TIDINGS_PASSWORD_PAYMENTS\n"),
            "{conf}"
        );
        assert!(conf.contains("user: \"payments\""));
        assert!(conf.contains("\"$JS.ACK.tidings_Q_payments.>\""));
        assert_eq!(quoted(r#"a"b"#), r#""a\"b""#);
    }
}
