//! Start-up validation of a bus's topology, and the [`TopologyReport`] that describes it
//! (as text, mermaid or DOT) for `tidings topology` and the docs.

use std::any::TypeId;
use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::Serialize;

use crate::endpoint::{ContractUse, Endpoint};
use crate::transport::{QueueSpec, Topology};
use crate::{ContractId, Error, MessageKind, Result};

/// One endpoint as the report shows it.
#[derive(Debug, Clone, Serialize)]
pub struct EndpointReport {
    /// Queue name.
    pub name: String,
    /// Commands it receives.
    pub receives: Vec<String>,
    /// Events it subscribes to.
    pub subscribes: Vec<String>,
    /// Contracts its handlers send or publish (declared with `.sends::<M>()`).
    pub sends: Vec<String>,
    /// Ordered by partition key.
    pub ordered: bool,
}

/// The validated topology: endpoints, routes, warnings.
#[derive(Debug, Clone, Serialize)]
pub struct TopologyReport {
    /// Endpoints.
    pub endpoints: Vec<EndpointReport>,
    /// Command name → receiving queue.
    pub routes: BTreeMap<String, String>,
    /// Contracts the application itself (outside handlers) sends or publishes.
    pub app_sends: Vec<String>,
    /// Non-fatal findings (an event nobody publishes that an endpoint waits for ...).
    pub warnings: Vec<String>,
    /// What the transport declares.
    #[serde(skip)]
    pub topology: Topology,
}

/// Validates endpoints and routes. Errors name what to fix.
pub(crate) fn validate(
    endpoints: &[Endpoint],
    extra_routes: &BTreeMap<String, String>,
    app_sends: &BTreeSet<ContractUse>,
) -> Result<TopologyReport> {
    let mut problems: Vec<String> = endpoints.iter().flat_map(|e| e.errors.clone()).collect();
    let mut names = BTreeSet::new();
    let mut routes: BTreeMap<String, String> = BTreeMap::new();
    let mut types: HashMap<ContractId, (&'static str, TypeId)> = HashMap::new();
    let mut handled_events = BTreeMap::<String, Vec<String>>::new();
    for ep in endpoints {
        if !names.insert(ep.name.clone()) {
            problems.push(format!("two endpoints are named `{}`", ep.name));
        }
        if ep.settings.concurrency == 0 || ep.settings.prefetch == 0 {
            problems.push(format!(
                "endpoint `{}`: prefetch and concurrency must be at least 1",
                ep.name
            ));
        }
        if ep.handles.is_empty() {
            problems.push(format!(
                "endpoint `{}` has no handlers: add `.handle::<M, _>(..)`",
                ep.name
            ));
        }
        for (id, entry) in &ep.handlers.entries {
            let rust = ep
                .handles
                .iter()
                .find(|c| &c.id == id)
                .map_or("?", |c| c.rust_type);
            if let Some((other, t)) = types.get(id) {
                if *t != entry.wire_type {
                    problems.push(format!("{id} is claimed by two Rust types: {other} and {rust} (a contract name + version must be unique)"));
                }
            } else {
                types.insert(id.clone(), (rust, entry.wire_type));
            }
        }
        for c in &ep.handles {
            match c.kind {
                MessageKind::Command => {
                    if let Some(prev) = routes.get(&c.id.name) {
                        if prev != &ep.name {
                            problems.push(format!(
                                "command `{}` is received by two endpoints, `{prev}` and `{}`: a command has exactly one receiver",
                                c.id.name, ep.name
                            ));
                        }
                    } else {
                        routes.insert(c.id.name.clone(), ep.name.clone());
                    }
                }
                MessageKind::Event => handled_events
                    .entry(c.id.name.clone())
                    .or_default()
                    .push(ep.name.clone()),
            }
        }
    }
    for (cmd, queue) in extra_routes {
        if let Some(prev) = routes.get(cmd) {
            if prev != queue {
                problems.push(format!(
                    "command `{cmd}` is routed to `{queue}` but endpoint `{prev}` receives it"
                ));
            }
        } else {
            routes.insert(cmd.clone(), queue.clone());
        }
    }
    let all_sends: Vec<&ContractUse> = endpoints
        .iter()
        .flat_map(|e| e.sends.iter())
        .chain(app_sends)
        .collect();
    for c in &all_sends {
        if c.kind == MessageKind::Command && !routes.contains_key(&c.id.name) {
            problems.push(format!(
                "command `{}` is sent but no endpoint receives it: add a handler on an endpoint, or `.route::<{}>(\"queue\")` for a receiver in another process",
                c.id.name, c.rust_type
            ));
        }
    }
    let mut warnings = Vec::new();
    if !all_sends.is_empty() {
        let published: BTreeSet<&str> = all_sends
            .iter()
            .filter(|c| c.kind == MessageKind::Event)
            .map(|c| c.id.name.as_str())
            .collect();
        for (event, eps) in &handled_events {
            if !published.contains(event.as_str()) {
                warnings.push(format!(
                    "event `{event}` is handled by {} but nothing here declares publishing it",
                    eps.join(", ")
                ));
            }
        }
    }
    if !problems.is_empty() {
        return Err(Error::Config(problems.join("; ")));
    }
    let topology = Topology {
        queues: endpoints
            .iter()
            .map(|ep| QueueSpec {
                name: ep.name.clone(),
                subscriptions: names_of(ep, MessageKind::Event),
                commands: names_of(ep, MessageKind::Command),
                ordered: ep.settings.ordered,
                temporary: false,
            })
            .collect(),
    };
    Ok(TopologyReport {
        endpoints: endpoints
            .iter()
            .map(|ep| EndpointReport {
                name: ep.name.clone(),
                receives: names_of(ep, MessageKind::Command),
                subscribes: names_of(ep, MessageKind::Event),
                sends: ep
                    .sends
                    .iter()
                    .map(|c| c.id.name.clone())
                    .collect::<BTreeSet<_>>()
                    .into_iter()
                    .collect(),
                ordered: ep.settings.ordered,
            })
            .collect(),
        routes,
        app_sends: app_sends.iter().map(|c| c.id.name.clone()).collect(),
        warnings,
        topology,
    })
}

fn names_of(ep: &Endpoint, kind: MessageKind) -> Vec<String> {
    ep.handles
        .iter()
        .filter(|c| c.kind == kind)
        .map(|c| c.id.name.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

impl TopologyReport {
    fn edges(&self) -> Vec<(String, String, String, bool)> {
        // (from, to, label, is_command)
        let mut edges = Vec::new();
        let senders = self
            .endpoints
            .iter()
            .map(|e| (e.name.clone(), e.sends.clone()))
            .chain(std::iter::once(("app".to_string(), self.app_sends.clone())));
        for (from, sends) in senders {
            for m in sends {
                if let Some(q) = self.routes.get(&m) {
                    edges.push((from.clone(), q.clone(), m.clone(), true));
                }
                for ep in self.endpoints.iter().filter(|e| e.subscribes.contains(&m)) {
                    edges.push((from.clone(), ep.name.clone(), m.clone(), false));
                }
            }
        }
        edges
    }

    /// A mermaid flowchart: solid arrows are commands, dotted arrows events.
    pub fn to_mermaid(&self) -> String {
        let mut out = String::from("flowchart LR\n");
        let id = |s: &str| s.replace(['.', '-'], "_");
        for (from, to, label, cmd) in self.edges() {
            let arrow = if cmd { "-->" } else { "-.->" };
            out.push_str(&format!(
                "  {}[{}] {arrow}|{}| {}[{}]\n",
                id(&from),
                from,
                label,
                id(&to),
                to
            ));
        }
        out
    }

    /// A Graphviz DOT digraph.
    pub fn to_dot(&self) -> String {
        let mut out = String::from("digraph tidings {\n  rankdir=LR;\n");
        for (from, to, label, cmd) in self.edges() {
            let style = if cmd { "solid" } else { "dashed" };
            out.push_str(&format!(
                "  \"{from}\" -> \"{to}\" [label=\"{label}\", style={style}];\n"
            ));
        }
        out.push_str("}\n");
        out
    }

    /// Plain text, one endpoint per paragraph.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for e in &self.endpoints {
            out.push_str(&format!(
                "endpoint {}{}\n",
                e.name,
                if e.ordered { " (ordered)" } else { "" }
            ));
            for c in &e.receives {
                out.push_str(&format!("  receives  {c}\n"));
            }
            for c in &e.subscribes {
                out.push_str(&format!("  subscribes {c}\n"));
            }
            for c in &e.sends {
                out.push_str(&format!("  sends     {c}\n"));
            }
        }
        for w in &self.warnings {
            out.push_str(&format!("warning: {w}\n"));
        }
        out
    }
}
