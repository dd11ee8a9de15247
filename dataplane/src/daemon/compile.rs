//! Compiles the daemon's configuration into the [`Tables`] snapshot the pipeline reads: port
//! entries with their bindings, the host port, and the FIB (static routes, then the pods'
//! connected /32s). A pure function of the configuration, run once per applied transaction.

use super::state::{pod_ip, Config};
use crate::tables::{Binding, Fib, Node, PortEntry, Route, RouteTarget, Tables};
use podswitch_packet::MacAddr;
use podswitch_proto::{PortRole, RouteTarget as ProtoTarget};

impl Config {
    /// Compiles the configuration into the tables the pipeline reads. Connected /32 routes of
    /// pod ports are added after static routes, so they win over a static route for the same
    /// prefix.
    pub fn compile(&self, default_mac: MacAddr) -> Tables {
        let mut ports: Vec<Option<PortEntry>> = Vec::new();
        let mut host_port = None;
        for p in self.ports.values() {
            let id = usize::from(p.id);
            if ports.len() <= id {
                ports.resize(id + 1, None);
            }
            let binding = match p.spec.role {
                PortRole::Pod { ip, .. } => Binding::Pod { ip },
                PortRole::Host { .. } => {
                    host_port = Some(p.id);
                    Binding::Host
                }
            };
            ports[id] = Some(PortEntry {
                name: p.spec.name.as_str().into(),
                peer_mac: p.peer_mac,
                binding,
                mtu: p.spec.mtu,
                offloads: p.spec.offloads,
                uid: p.uid,
            });
        }
        let static_routes = self.routes.iter().filter_map(|(prefix, target)| {
            let target = match target {
                ProtoTarget::Port { port } => RouteTarget::Port(self.ports.get(port)?.id),
                ProtoTarget::Host => RouteTarget::Host,
                ProtoTarget::Unreachable => RouteTarget::Unreachable,
            };
            Some(Route {
                prefix: prefix.addr,
                len: prefix.len,
                target,
            })
        });
        let connected = self.ports.values().filter_map(|p| {
            pod_ip(&p.spec).map(|ip| Route {
                prefix: ip,
                len: 32,
                target: RouteTarget::Port(p.id),
            })
        });
        Tables {
            generation: self.generation,
            node: self.node.as_ref().map(|n| Node {
                gateway_ip: n.gateway,
                gateway_mac: n.gateway_mac.unwrap_or(default_mac),
            }),
            ports,
            host_port,
            fib: Fib::new(static_routes.chain(connected)),
            route_epoch: self.route_epoch,
        }
    }
}
