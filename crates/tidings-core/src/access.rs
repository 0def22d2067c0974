//! What each service of a topology does on a broker — the queues it consumes, the events
//! its queues subscribe to, the queues its commands go to, the events it publishes — worked
//! out from a [`TopologyReport`]. It is the transport-neutral input of the permission
//! generators (`tidings_rabbitmq::permissions`, `tidings_nats::permissions`,
//! `tidings_postgres::permissions`; `tidings topology --permissions`).
//!
//! A *service* is what runs under one set of credentials: one process, one connection.
//! By default every endpoint is a service of its own (OrderFlow runs one endpoint per
//! process with `orderflow serve --service NAME`); [`Services::group`] puts several
//! endpoints under one name, and what the application sends outside handlers
//! (`app_sends`) belongs to [`Services::app`] (default `app`).

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::topology::TopologyReport;
use crate::transport::error_queue_name;
use crate::{Error, Result};

/// What one service needs on the broker. Every list is sorted and free of duplicates.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ServiceAccess {
    /// The service's name (user or role name, before any prefix a generator adds).
    pub name: String,
    /// Endpoint queues it consumes (their error queues `<queue>_error` go with them).
    pub consumes: Vec<String>,
    /// Event types its queues subscribe to.
    pub subscribes: Vec<String>,
    /// Command types it sends.
    pub commands: Vec<String>,
    /// Queues it sends commands to (may include its own).
    pub sends_to: Vec<String>,
    /// Event types it publishes.
    pub publishes: Vec<String>,
    /// Queues subscribed to the events it publishes (where a publish fans out to).
    pub fans_out_to: Vec<String>,
}

impl ServiceAccess {
    /// The error queues of the queues it consumes.
    pub fn error_queues(&self) -> Vec<String> {
        self.consumes.iter().map(|q| error_queue_name(q)).collect()
    }
}

/// How the endpoints of a report are grouped into services.
#[derive(Debug, Clone, Default)]
pub struct Services {
    groups: BTreeMap<String, Vec<String>>,
    app: Option<String>,
}

impl Services {
    /// Every endpoint its own service; the application's own sends under `app`.
    pub fn new() -> Self {
        Services::default()
    }

    /// Runs `endpoints` as one service named `name`.
    pub fn group(mut self, name: impl Into<String>, endpoints: Vec<String>) -> Self {
        self.groups
            .entry(name.into())
            .or_default()
            .extend(endpoints);
        self
    }

    /// The service that sends what the application sends outside handlers (default
    /// `app`; the name of an endpoint or group merges them).
    pub fn app(mut self, name: impl Into<String>) -> Self {
        self.app = Some(name.into());
        self
    }

    /// The services of `report`. Fails if a group names an endpoint the report does not
    /// have, or the same endpoint twice.
    pub fn resolve(&self, report: &TopologyReport) -> Result<Vec<ServiceAccess>> {
        let known: BTreeSet<&str> = report.endpoints.iter().map(|e| e.name.as_str()).collect();
        let mut owner: BTreeMap<&str, &str> = BTreeMap::new();
        for (service, endpoints) in &self.groups {
            for ep in endpoints {
                if !known.contains(ep.as_str()) {
                    return Err(Error::Config(format!(
                        "service `{service}` names endpoint `{ep}`, which the topology does not have (it has: {})",
                        known.iter().copied().collect::<Vec<_>>().join(", ")
                    )));
                }
                if let Some(other) = owner.insert(ep, service) {
                    return Err(Error::Config(format!(
                        "endpoint `{ep}` is in two services, `{other}` and `{service}`"
                    )));
                }
            }
        }
        let mut services: BTreeMap<String, Sets> = BTreeMap::new();
        for ep in &report.endpoints {
            let name = owner.get(ep.name.as_str()).copied().unwrap_or(&ep.name);
            let s = services.entry(name.to_string()).or_default();
            s.consumes.insert(ep.name.clone());
            s.subscribes.extend(ep.subscribes.iter().cloned());
            s.sends.extend(ep.sends.iter().cloned());
        }
        if !report.app_sends.is_empty() {
            let app = self.app.as_deref().unwrap_or("app");
            let name = owner.get(app).copied().unwrap_or(app);
            let s = services.entry(name.to_string()).or_default();
            s.sends.extend(report.app_sends.iter().cloned());
        }
        Ok(services
            .into_iter()
            .map(|(name, s)| s.access(name, report))
            .collect())
    }
}

/// One service's sets while they are being collected.
#[derive(Default)]
struct Sets {
    consumes: BTreeSet<String>,
    subscribes: BTreeSet<String>,
    sends: BTreeSet<String>,
}

impl Sets {
    /// A sent contract with a route is a command; any other is an event (the bus refuses
    /// to start with a command nobody receives).
    fn access(self, name: String, report: &TopologyReport) -> ServiceAccess {
        let mut commands = BTreeSet::new();
        let mut sends_to = BTreeSet::new();
        let mut publishes = BTreeSet::new();
        let mut fans_out_to = BTreeSet::new();
        for m in self.sends {
            match report.routes.get(&m) {
                Some(queue) => {
                    sends_to.insert(queue.clone());
                    commands.insert(m);
                }
                None => {
                    for ep in report
                        .endpoints
                        .iter()
                        .filter(|e| e.subscribes.contains(&m))
                    {
                        fans_out_to.insert(ep.name.clone());
                    }
                    publishes.insert(m);
                }
            }
        }
        ServiceAccess {
            name,
            consumes: self.consumes.into_iter().collect(),
            subscribes: self.subscribes.into_iter().collect(),
            commands: commands.into_iter().collect(),
            sends_to: sends_to.into_iter().collect(),
            publishes: publishes.into_iter().collect(),
            fans_out_to: fans_out_to.into_iter().collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::EndpointReport;

    fn ep(name: &str, receives: &[&str], subscribes: &[&str], sends: &[&str]) -> EndpointReport {
        let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect();
        EndpointReport {
            name: name.into(),
            receives: v(receives),
            subscribes: v(subscribes),
            sends: v(sends),
            ordered: false,
        }
    }

    fn report() -> TopologyReport {
        TopologyReport {
            endpoints: vec![
                ep("orders", &[], &["shop.paid"], &["shop.charge"]),
                ep("payments", &["shop.charge"], &[], &["shop.paid"]),
                ep("mailer", &[], &["shop.paid"], &[]),
            ],
            routes: [("shop.charge".to_string(), "payments".to_string())].into(),
            app_sends: vec!["shop.order-placed".into()],
            warnings: vec![],
            topology: Default::default(),
        }
    }

    #[test]
    fn every_endpoint_is_a_service_and_sends_split_into_commands_and_events() {
        let s = Services::new().resolve(&report()).unwrap();
        let names: Vec<&str> = s.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, ["app", "mailer", "orders", "payments"]);
        let orders = &s[2];
        assert_eq!(orders.consumes, ["orders"]);
        assert_eq!(orders.sends_to, ["payments"]);
        assert_eq!(orders.commands, ["shop.charge"]);
        assert!(orders.publishes.is_empty());
        let payments = &s[3];
        assert_eq!(payments.publishes, ["shop.paid"]);
        assert_eq!(payments.fans_out_to, ["mailer", "orders"]);
        assert_eq!(payments.error_queues(), ["payments_error"]);
        assert_eq!(s[0].publishes, ["shop.order-placed"]);
        assert!(s[0].consumes.is_empty() && s[0].fans_out_to.is_empty());
    }

    #[test]
    fn groups_merge_endpoints_and_the_app_joins_a_group() {
        let s = Services::new()
            .group("shop", vec!["orders".into(), "mailer".into()])
            .app("orders")
            .resolve(&report())
            .unwrap();
        let names: Vec<&str> = s.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, ["payments", "shop"]);
        assert_eq!(s[1].consumes, ["mailer", "orders"]);
        assert_eq!(s[1].publishes, ["shop.order-placed"]);
        assert_eq!(s[1].subscribes, ["shop.paid"]);
    }

    #[test]
    fn a_group_naming_an_unknown_or_taken_endpoint_is_refused() {
        let e = Services::new()
            .group("x", vec!["nope".into()])
            .resolve(&report())
            .unwrap_err();
        assert!(e.to_string().contains("`nope`"), "{e}");
        let e = Services::new()
            .group("a", vec!["orders".into()])
            .group("b", vec!["orders".into()])
            .resolve(&report())
            .unwrap_err();
        assert!(e.to_string().contains("two services"), "{e}");
    }
}
