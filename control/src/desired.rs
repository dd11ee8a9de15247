//! A whole dataplane configuration indexed by what names each op (port name, route prefix,
//! Service port name), and the smallest non-replace transaction that turns one into another.
//!
//! The sync thread keeps the configuration the dataplane last accepted as a [`Desired`]; while
//! the dataplane still reports that generation, a change is pushed as [`diff`]'s ops only, so
//! one EndpointSlice change is one `set_service` on the wire and in the daemon, whatever the
//! number of Services. Anything the diff cannot express safely (the node's addressing changed:
//! the daemon refuses `set_node` while a host port exists) is `None`: push the full replace.

use podswitch_proto::{
    Ipv4Prefix, NodeSpec, Op, PolicySpec, PortSpec, RouteSpec, ServiceSpec, Transaction,
};
use std::collections::BTreeMap;

/// One whole configuration, by key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Desired {
    /// `set_node`.
    pub node: Option<NodeSpec>,
    /// `add_port`, by name.
    pub ports: BTreeMap<String, PortSpec>,
    /// `add_route`, by prefix (as `(address, length)`: prefixes order by network first).
    pub routes: BTreeMap<(u32, u8), RouteSpec>,
    /// `set_service`, by name.
    pub services: BTreeMap<String, ServiceSpec>,
    /// `set_policy`, by port name.
    pub policies: BTreeMap<String, PolicySpec>,
}

fn route_key(p: Ipv4Prefix) -> (u32, u8) {
    (u32::from(p.addr), p.len)
}

impl Desired {
    /// The configuration a replace transaction describes (later ops of one key win, as they
    /// do in the daemon). Delete ops have no meaning in a replace and are ignored.
    pub fn of(tx: &Transaction) -> Desired {
        let mut d = Desired::default();
        for op in &tx.ops {
            match op {
                Op::SetNode(n) => d.node = Some(n.clone()),
                Op::AddPort(p) => {
                    d.ports.insert(p.name.clone(), p.clone());
                }
                Op::AddRoute(r) => {
                    d.routes.insert(route_key(r.prefix), r.clone());
                }
                Op::SetService(s) => {
                    d.services.insert(s.name.clone(), s.clone());
                }
                Op::SetPolicy(p) => {
                    d.policies.insert(p.port.clone(), p.clone());
                }
                Op::DelPort { .. }
                | Op::DelRoute { .. }
                | Op::DelService { .. }
                | Op::DelPolicy { .. } => {}
            }
        }
        d
    }
}

/// The ops that turn `old` into `new`, in an order the daemon accepts: what goes first
/// (Services, then routes, then ports: a port is refused removal while a route uses it), then
/// what comes or changes (ports before the routes, Services and policies that may use them).
/// Policies go first and come last: a port with a policy cannot be removed. A changed
/// port is removed and added again (its spec is fixed at CNI ADD, so this is rare). `None`
/// when the node's addressing differs, or a changed port has a policy. One merge walk per table: O(old + new) comparisons,
/// each of two specs of the same key.
pub fn diff(old: &Desired, new: &Desired) -> Option<Vec<Op>> {
    if old.node != new.node {
        return None;
    }
    let mut gone = Vec::new();
    let mut came = Vec::new();
    let policies = changes(&old.policies, &new.policies);
    gone.extend(policies.removed.iter().map(|port| Op::DelPolicy {
        port: (*port).clone(),
    }));
    let services = changes(&old.services, &new.services);
    gone.extend(services.removed.iter().map(|name| Op::DelService {
        name: (*name).clone(),
    }));
    let routes = changes(&old.routes, &new.routes);
    gone.extend(routes.removed.iter().map(|k| Op::DelRoute {
        prefix: old.routes[*k].prefix,
    }));
    let ports = changes(&old.ports, &new.ports);
    if ports.changed.iter().any(|p| old.policies.contains_key(*p)) {
        // Its policy would have to go and come back around it: rare enough for a replace.
        return None;
    }
    gone.extend(ports.removed.iter().map(|name| Op::DelPort {
        name: (*name).clone(),
    }));
    // A changed port goes too, before it comes back.
    gone.extend(ports.changed.iter().map(|name| Op::DelPort {
        name: (*name).clone(),
    }));
    came.extend(
        ports
            .added
            .iter()
            .chain(&ports.changed)
            .map(|name| Op::AddPort(new.ports[*name].clone())),
    );
    came.extend(
        routes
            .added
            .iter()
            .chain(&routes.changed)
            .map(|k| Op::AddRoute(new.routes[*k].clone())),
    );
    came.extend(
        services
            .added
            .iter()
            .chain(&services.changed)
            .map(|name| Op::SetService(new.services[*name].clone())),
    );
    came.extend(
        policies
            .added
            .iter()
            .chain(&policies.changed)
            .map(|port| Op::SetPolicy(new.policies[*port].clone())),
    );
    gone.extend(came);
    Some(gone)
}

/// Keys of one table that went, came, or whose spec changed.
struct Changes<'a, K> {
    removed: Vec<&'a K>,
    added: Vec<&'a K>,
    changed: Vec<&'a K>,
}

fn changes<'a, K: Ord, V: PartialEq>(
    old: &'a BTreeMap<K, V>,
    new: &'a BTreeMap<K, V>,
) -> Changes<'a, K> {
    let mut c = Changes {
        removed: Vec::new(),
        added: Vec::new(),
        changed: Vec::new(),
    };
    let mut a = old.iter().peekable();
    let mut b = new.iter().peekable();
    loop {
        match (a.peek(), b.peek()) {
            (None, None) => break,
            (Some((k, _)), None) => {
                c.removed.push(*k);
                a.next();
            }
            (None, Some((k, _))) => {
                c.added.push(*k);
                b.next();
            }
            (Some((ka, va)), Some((kb, vb))) => match ka.cmp(kb) {
                std::cmp::Ordering::Less => {
                    c.removed.push(*ka);
                    a.next();
                }
                std::cmp::Ordering::Greater => {
                    c.added.push(*kb);
                    b.next();
                }
                std::cmp::Ordering::Equal => {
                    if va != vb {
                        c.changed.push(*kb);
                    }
                    a.next();
                    b.next();
                }
            },
        }
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compile::compile;
    use crate::testkit;
    use podswitch_proto::{BackendSpec, L4Protocol};
    use std::net::Ipv4Addr;

    fn service(name: &str, backend: u8) -> ServiceSpec {
        ServiceSpec::cluster_ip(
            name,
            L4Protocol::Tcp,
            Ipv4Addr::new(10, 96, 0, 10),
            80,
            vec![BackendSpec::ready(Ipv4Addr::new(10, 244, 1, backend), 8080)],
        )
    }

    fn op_names(ops: &[Op]) -> Vec<String> {
        ops.iter()
            .map(|op| match op {
                Op::SetNode(_) => "set_node".into(),
                Op::AddPort(p) => format!("add_port {}", p.name),
                Op::DelPort { name } => format!("del_port {name}"),
                Op::AddRoute(r) => format!("add_route {}", r.prefix),
                Op::DelRoute { prefix } => format!("del_route {prefix}"),
                Op::SetService(s) => format!("set_service {}", s.name),
                Op::DelService { name } => format!("del_service {name}"),
                Op::SetPolicy(p) => format!("set_policy {}", p.port),
                Op::DelPolicy { port } => format!("del_policy {port}"),
            })
            .collect()
    }

    #[test]
    fn equal_configurations_differ_by_nothing() {
        let s = testkit::settings();
        let a = testkit::pod("aaa", [10, 244, 1, 2]);
        let tx = compile(&s, 2, [&a], [service("default/web", 5)], [], []);
        assert!(diff(&Desired::of(&tx), &Desired::of(&tx))
            .unwrap()
            .is_empty());
    }

    #[test]
    fn a_diff_deletes_before_it_adds_and_sets_only_what_changed() {
        let s = testkit::settings();
        let a = testkit::pod("aaa", [10, 244, 1, 2]);
        let b = testkit::pod("bbb", [10, 244, 1, 3]);
        let old = compile(
            &s,
            2,
            [&a],
            [
                service("default/gone", 5),
                service("default/same", 5),
                service("default/web", 5),
            ],
            [],
            [],
        );
        let new = compile(
            &s,
            3,
            [&b],
            [
                service("default/new", 5),
                service("default/same", 5),
                service("default/web", 6),
            ],
            [],
            [],
        );
        let ops = diff(&Desired::of(&old), &Desired::of(&new)).unwrap();
        assert_eq!(
            op_names(&ops),
            [
                "del_service default/gone",
                &format!("del_port {}", a.port),
                &format!("add_port {}", b.port),
                "set_service default/new",
                "set_service default/web",
            ]
        );
    }

    #[test]
    fn a_changed_node_cannot_be_diffed() {
        let old = compile(&testkit::settings(), 2, [], [], [], []);
        let new = compile(
            &testkit::settings_with_cidr("10.244.2.0/24"),
            3,
            [],
            [],
            [],
            [],
        );
        assert!(diff(&Desired::of(&old), &Desired::of(&new)).is_none());
    }
}
