//! Least-privilege RabbitMQ permissions per service, from what the topology says each one
//! consumes, subscribes to, sends and publishes ([`ServiceAccess`]): the configure / write
//! / read regexes of one user per service, as `rabbitmqctl` lines or as the users and
//! permissions of a definitions file (`rabbitmqctl import_definitions`).
//!
//! What each AMQP operation of this transport needs (RabbitMQ's access-control table):
//!
//! | operation | configure | write | read |
//! | --- | --- | --- | --- |
//! | declare own queue `q`, `q_error` | both | | |
//! | bind `q` to `tidings.<event>` / `tidings_delay.deliver` | | `q` | the exchange |
//! | declare delay levels (dead-letter to the next level) | levels | levels, bindings | levels |
//! | declare `tidings.<event>` and bind it to `tidings_delay.deliver` | exchange | exchange | deliver |
//! | consume `q`, read/replay/purge `q_error` | | | `q`, `q_error` |
//! | send a command, dead-letter, replay | | `amq.default` | |
//! | publish an event | | `tidings.<event>` | |
//! | delayed send/publish, delayed retry | | top delay level | |
//!
//! What stays open, because of how RabbitMQ checks permissions: the default exchange is
//! one exchange (`amq.default`), so a user that may send a command to one queue may send
//! to any queue by name; a subscriber of an event may also publish it (binding the event's
//! exchange to the delay exchange needs write on it); every service shares the delay
//! levels (configure on them, so it could delete them). What is closed: consuming,
//! declaring, deleting or purging another service's queue, binding another queue, and
//! publishing an event it neither publishes nor subscribes to.

use serde::Serialize;
use tidings_core::access::ServiceAccess;

/// One user's permissions on a virtual host (RabbitMQ regexes, anchored).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UserPermissions {
    /// User name (the service's name with the prefix given to [`permissions`]).
    pub user: String,
    /// Resources it may declare and delete.
    pub configure: String,
    /// Resources it may publish to and bind to.
    pub write: String,
    /// Resources it may consume from and bind from.
    pub read: String,
}

/// The regex fragment of every name of the delay infrastructure (quorum and classic).
const DELAY: &str = r"tidings_delay(_classic)?\.(deliver|[0-9]+)";

/// One user per service, named `prefix` + the service's name.
pub fn permissions(services: &[ServiceAccess], prefix: &str) -> Vec<UserPermissions> {
    services
        .iter()
        .map(|s| {
            let queues: Vec<String> = s.consumes.iter().map(|q| escape(q)).collect();
            let errors: Vec<String> = s.error_queues().iter().map(|q| escape(q)).collect();
            let exchanges = |events: &[&String]| -> Vec<String> {
                events
                    .iter()
                    .map(|t| escape(&crate::topology::type_exchange(t)))
                    .collect()
            };
            let mut events: Vec<&String> = s.subscribes.iter().chain(&s.publishes).collect();
            events.sort();
            events.dedup();
            let all_exchanges = exchanges(&events);
            let subscribed = exchanges(&s.subscribes.iter().collect::<Vec<_>>());
            let delay = vec![DELAY.to_string()];
            let configure = [&queues, &errors, &all_exchanges, &delay];
            let default = vec![r"amq\.default".to_string()];
            let write = [&default, &queues, &all_exchanges, &delay];
            let read = [&queues, &errors, &subscribed, &delay];
            UserPermissions {
                user: format!("{prefix}{}", s.name),
                configure: anchored(&configure),
                write: anchored(&write),
                read: anchored(&read),
            }
        })
        .collect()
}

/// `^(a|b|c)$` of every fragment.
fn anchored(parts: &[&Vec<String>]) -> String {
    let all: Vec<&str> = parts
        .iter()
        .flat_map(|p| p.iter())
        .map(String::as_str)
        .collect();
    format!("^({})$", all.join("|"))
}

/// Escapes a name for RabbitMQ's regexes (PCRE).
fn escape(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    for c in name.chars() {
        if r"\.^$|?*+()[]{}".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The environment variable the generated scripts read a user's password from:
/// `TIDINGS_PASSWORD_` + the user name in upper case, other characters as `_`.
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

/// Single-quotes `s` for a POSIX shell.
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// A shell script of `rabbitmqctl` commands creating the users (passwords from
/// [`password_variable`]s, never written here) and setting their permissions on `vhost`.
pub fn rabbitmqctl_script(perms: &[UserPermissions], vhost: &str) -> String {
    let mut out = String::from(
        "#!/bin/sh\n# Generated by `tidings topology --permissions rabbitmq`: one user per service.\n\
         # Set each TIDINGS_PASSWORD_* variable first; users that exist keep their password.\nset -eu\n",
    );
    for p in perms {
        let user = shell_quote(&p.user);
        let var = password_variable(&p.user);
        out.push_str(&format!(
            "rabbitmqctl list_users --quiet --no-table-headers | cut -f1 | grep -qxF {user} \\\n  \
             || rabbitmqctl add_user {user} \"${{{var}:?set {var}}}\"\n\
             rabbitmqctl set_permissions -p {} {user} {} {} {}\n",
            shell_quote(vhost),
            shell_quote(&p.configure),
            shell_quote(&p.write),
            shell_quote(&p.read),
        ));
    }
    out
}

/// The users and permissions of a definitions file (`rabbitmqctl import_definitions`, or
/// the management UI's import). Passwords are `${TIDINGS_PASSWORD_…}` placeholders for
/// `envsubst` to fill in: nothing secret is generated.
#[derive(Debug, Clone, Serialize)]
pub struct Definitions {
    /// Users, without tags (no management access).
    pub users: Vec<DefinitionUser>,
    /// Permissions per user and vhost.
    pub permissions: Vec<DefinitionPermission>,
}

/// A user of a definitions file.
#[derive(Debug, Clone, Serialize)]
pub struct DefinitionUser {
    /// User name.
    pub name: String,
    /// A `${VARIABLE}` placeholder, not a password.
    pub password: String,
    /// Tags (none).
    pub tags: String,
}

/// A permission of a definitions file.
#[derive(Debug, Clone, Serialize)]
pub struct DefinitionPermission {
    /// User name.
    pub user: String,
    /// Virtual host.
    pub vhost: String,
    /// Configure regex.
    pub configure: String,
    /// Write regex.
    pub write: String,
    /// Read regex.
    pub read: String,
}

/// [`Definitions`] of `perms` on `vhost`.
pub fn definitions(perms: &[UserPermissions], vhost: &str) -> Definitions {
    Definitions {
        users: perms
            .iter()
            .map(|p| DefinitionUser {
                name: p.user.clone(),
                password: format!("${{{}}}", password_variable(&p.user)),
                tags: String::new(),
            })
            .collect(),
        permissions: perms
            .iter()
            .map(|p| DefinitionPermission {
                user: p.user.clone(),
                vhost: vhost.to_string(),
                configure: p.configure.clone(),
                write: p.write.clone(),
                read: p.read.clone(),
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payments() -> ServiceAccess {
        ServiceAccess {
            name: "payments".into(),
            consumes: vec!["payments".into()],
            subscribes: vec!["shop.order-placed".into()],
            commands: vec!["shop.ship".into()],
            sends_to: vec!["shipping".into()],
            publishes: vec!["shop.paid".into()],
            fans_out_to: vec!["orders".into()],
        }
    }

    #[test]
    fn regexes_name_own_queues_and_event_exchanges_only() {
        let p = &permissions(&[payments()], "shop-")[0];
        assert_eq!(p.user, "shop-payments");
        let delay = r"tidings_delay(_classic)?\.(deliver|[0-9]+)";
        assert_eq!(
            p.configure,
            format!(
                r"^(payments|payments_error|tidings\.shop\.order-placed|tidings\.shop\.paid|{delay})$"
            )
        );
        assert_eq!(
            p.write,
            format!(
                r"^(amq\.default|payments|tidings\.shop\.order-placed|tidings\.shop\.paid|{delay})$"
            )
        );
        assert_eq!(
            p.read,
            format!(r"^(payments|payments_error|tidings\.shop\.order-placed|{delay})$")
        );
        assert!(!p.read.contains("shipping") && !p.configure.contains("orders"));
    }

    #[test]
    fn scripts_read_passwords_from_the_environment() {
        let perms = permissions(&[payments()], "");
        let sh = rabbitmqctl_script(&perms, "/");
        assert!(sh.contains(r#""${TIDINGS_PASSWORD_PAYMENTS:?set TIDINGS_PASSWORD_PAYMENTS}""#));
        assert!(
            sh.contains("set_permissions -p '/' 'payments' '^(payments|"),
            "{sh}"
        );
        let d = definitions(&perms, "/");
        assert_eq!(d.users[0].password, "${TIDINGS_PASSWORD_PAYMENTS}");
        assert_eq!(escape("a.b*c"), r"a\.b\*c");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
    }
}
