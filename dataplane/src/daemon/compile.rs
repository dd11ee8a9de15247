//! Compiles the daemon's configuration into the [`Tables`] snapshot the pipeline reads: port
//! entries with their bindings, the host port, and the FIB (static routes, then the pods'
//! connected /32s). A pure function of the configuration, run once per applied transaction.

use super::state::{pod_ip, Config};
use crate::tables::policy::Policies;
use crate::tables::{
    Binding, Encap, Fib, NextHop, NextHops, Node, PortEntry, Route, RouteTarget, ServiceEntry,
    Services, Tables, Uplink,
};
use podswitch_packet::MacAddr;
use podswitch_proto::{
    Encap as ProtoEncap, Ipv4Prefix, PortRole, RouteTarget as ProtoTarget, ServiceSpec,
};

/// The inner destination MAC of VXLAN frames to the node whose pod CIDR is `prefix`, when its
/// route does not say: `0a:58:` + its first host address (its gateway), the MAC control gives
/// gateways by the same convention as pods (`control::compile::pod_mac`).
fn gateway_mac_of(prefix: Ipv4Prefix) -> MacAddr {
    let [a, b, c, d] = (u32::from(prefix.network().addr).wrapping_add(1)).to_be_bytes();
    MacAddr::new(0x0a, 0x58, a, b, c, d)
}
use std::sync::Arc;

impl Config {
    /// Compiles the configuration into the tables the pipeline reads. Connected /32 routes of
    /// pod ports are added after static routes, so they win over a static route for the same
    /// prefix.
    ///
    /// Service ports whose spec is unchanged since `previous` keep their compiled entry (the
    /// same `Arc`: Maglev tables are not rebuilt); when no Service port changed at all, the
    /// whole Service table is shared.
    ///
    /// `since` is the configuration `previous` was compiled from, if it was: each part of
    /// `previous` built from maps this configuration still shares with it (the same `Arc`, so
    /// no op touched them) is shared as it is — the ports and the FIB, the Services, the
    /// policies — so a transaction costs what it changes, not what the node holds.
    pub fn compile(
        &self,
        default_mac: MacAddr,
        previous: &Tables,
        since: Option<&Config>,
    ) -> Tables {
        let same = |part: fn(&Config, &Config) -> bool| since.is_some_and(|old| part(old, self));
        let node = self.node.as_ref().map(|n| Node {
            gateway_ip: n.gateway,
            gateway_mac: n.gateway_mac.unwrap_or(default_mac),
        });
        let services = if same(|a, b| {
            a.services.ptr_eq(&b.services)
                && a.service_ids.ptr_eq(&b.service_ids)
                && a.node.as_ref().map(|n| n.node_port_ip)
                    == b.node.as_ref().map(|n| n.node_port_ip)
        }) {
            previous.services.clone()
        } else {
            // The same ids map: the same Service ports by name as `previous`, in its order.
            let same_ports = same(|a, b| a.service_ids.ptr_eq(&b.service_ids));
            self.compile_services(&previous.services, same_ports)
        };
        let policies = if same(|a, b| {
            Arc::ptr_eq(&a.policies, &b.policies)
                && Arc::ptr_eq(&a.ports, &b.ports)
                && a.node.as_ref().map(|n| n.gateway) == b.node.as_ref().map(|n| n.gateway)
        }) {
            previous.policies.clone()
        } else {
            self.compile_policies(&previous.policies)
        };
        if same(|a, b| {
            Arc::ptr_eq(&a.ports, &b.ports) && Arc::ptr_eq(&a.routes, &b.routes) && a.node == b.node
        }) {
            return Tables {
                generation: self.generation,
                node,
                ports: previous.ports.clone(),
                host_port: previous.host_port,
                uplink: previous.uplink,
                next_hops: previous.next_hops.clone(),
                fib: previous.fib.clone(),
                route_epoch: self.route_epoch,
                services,
                policies,
                policy_epoch: self.policy_epoch,
            };
        }
        let mut ports: Vec<Option<PortEntry>> = Vec::new();
        let mut host_port = None;
        let mut uplink: Option<Uplink> = None;
        let mut uplink_gateway = None;
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
                PortRole::Uplink {
                    mac,
                    ip,
                    encap,
                    gateway,
                } => {
                    uplink = Some(Uplink {
                        port: p.id,
                        mac,
                        ip,
                        encap: match encap {
                            ProtoEncap::Direct => Encap::Direct,
                            ProtoEncap::Vxlan { vni, port } => Encap::Vxlan { vni, port },
                        },
                        gateway: None,
                    });
                    uplink_gateway = gateway;
                    Binding::Uplink
                }
            };
            ports[id] = Some(PortEntry {
                name: p.spec.name.as_str().into(),
                peer_mac: p.peer_mac,
                binding,
                mtu: p.spec.mtu,
                offloads: p.spec.takes_offloads(),
                uid: p.uid,
            });
        }
        let mut next_hops = NextHops::default();
        if let (Some(u), Some(g)) = (uplink.as_mut(), uplink_gateway) {
            u.gateway = next_hops
                .intern(NextHop::egress(g.ip))
                .map(|hop| (g.segment.network(), hop));
        }
        let static_routes = self.routes.iter().filter_map(|(prefix, target)| {
            let target = match target {
                ProtoTarget::Port { port } => RouteTarget::Port(self.ports.get(port)?.id),
                ProtoTarget::Host => RouteTarget::Host,
                ProtoTarget::Unreachable => RouteTarget::Unreachable,
                ProtoTarget::Node {
                    ip,
                    vtep_mac,
                    gateway,
                } => RouteTarget::Node(next_hops.intern(NextHop::node(
                    *ip,
                    vtep_mac.unwrap_or_else(|| gateway_mac_of(*prefix)),
                    *gateway,
                ))?),
                ProtoTarget::Uplink { gateway: None } => RouteTarget::Egress(NextHops::SEGMENT),
                ProtoTarget::Uplink { gateway: Some(g) } => {
                    RouteTarget::Egress(next_hops.intern(NextHop::egress(*g))?)
                }
            };
            Some(Route {
                prefix: prefix.addr,
                len: prefix.len,
                target,
            })
        });
        // The Service CIDR is the switch's: VIPs are answered for (ARP on the host port) and
        // translated by the service stage; an address or port there that no Service port
        // has gets ICMP host unreachable instead of bouncing back to the host, which routes
        // the CIDR here.
        let service_cidr = self
            .node
            .as_ref()
            .and_then(|n| n.service_cidr)
            .map(|c| Route {
                prefix: c.network().addr,
                len: c.len,
                target: RouteTarget::Unreachable,
            });
        let static_routes = service_cidr.into_iter().chain(static_routes);
        let connected = self.ports.values().filter_map(|p| {
            pod_ip(&p.spec).map(|ip| Route {
                prefix: ip,
                len: 32,
                target: RouteTarget::Port(p.id),
            })
        });
        let fib = Arc::new(Fib::new(static_routes.chain(connected)));
        Tables {
            generation: self.generation,
            node,
            ports: Arc::new(ports),
            host_port,
            uplink,
            next_hops: Arc::new(next_hops),
            fib,
            route_epoch: self.route_epoch,
            services,
            policies,
            policy_epoch: self.policy_epoch,
        }
    }

    fn compile_policies(&self, previous: &Arc<Policies>) -> Arc<Policies> {
        let pods = self.policies.values().filter_map(|spec| {
            let port = self.ports.get(&spec.port)?;
            Some((pod_ip(&port.spec)?, port.id, spec.clone()))
        });
        let gateway = self.node.as_ref().map(|n| n.gateway);
        Arc::new(Policies::from_shared(pods, gateway, previous))
    }

    /// `same_ports`: the Service ports are those of `previous` (names and ids), known without
    /// comparing them.
    fn compile_services(&self, previous: &Arc<Services>, same_ports: bool) -> Arc<Services> {
        let node_port_ip = self.node.as_ref().and_then(|n| n.node_port_ip);
        let same = |e: &ServiceEntry, spec: &Arc<ServiceSpec>| {
            Arc::ptr_eq(&e.spec, spec) || *e.spec == **spec
        };
        // The same Service ports (names and ids, in the same order) as `previous`: only the
        // changed ones are compiled and patched into a copy of its table.
        if previous.node_port_ip() == node_port_ip && previous.len() == self.services.len() {
            let mut changed = Vec::new();
            let aligned =
                previous
                    .iter()
                    .zip(self.services.values())
                    .enumerate()
                    .all(|(i, (e, spec))| {
                        let aligned = same_ports
                            || Arc::ptr_eq(&e.spec, spec)
                            || (e.spec.name == spec.name
                                && self.service_ids.get(&spec.name) == Some(&e.id));
                        if aligned && !same(e, spec) {
                            changed.push((i, e.id, spec.clone()));
                        }
                        aligned
                    });
            if aligned {
                return if changed.is_empty() {
                    previous.clone()
                } else {
                    let (places, todo): (Vec<usize>, Vec<_>) = changed
                        .into_iter()
                        .map(|(i, id, spec)| (i, (id, spec)))
                        .unzip();
                    let entries = compile_entries(todo);
                    let changed: Vec<_> = places.into_iter().zip(entries).collect();
                    Arc::new(previous.patched(&changed))
                };
            }
        }
        // Every Service port in name order: the entry of `previous` when its spec is the same,
        // else a place for the one compiled below.
        let mut entries = Vec::with_capacity(self.services.len());
        let mut todo = Vec::new();
        for spec in self.services.values() {
            let Some(&id) = self.service_ids.get(&spec.name) else {
                continue;
            };
            match previous.by_name(&spec.name) {
                Some(e) if e.id == id && same(e, spec) => entries.push(Some(e.clone())),
                _ => {
                    entries.push(None);
                    todo.push((id, spec.clone()));
                }
            }
        }
        let mut compiled = compile_entries(todo).into_iter();
        let entries = (entries.into_iter())
            .filter_map(|e| e.or_else(|| compiled.next()))
            .collect();
        Arc::new(Services::new(entries, node_port_ip))
    }
}

/// Fewer Service ports than this are compiled on the daemon's thread: starting threads costs
/// more than they would save.
const COMPILE_THREADS_FROM: usize = 256;

/// At most this many threads compile Service ports.
const COMPILE_THREADS_MAX: usize = 4;

/// Compiles Service ports (`(id, spec)`), in order. Many at once (a whole configuration: 10k
/// Service ports are ~10k Maglev tables, ~100 ms on one core) are split over up to
/// [`COMPILE_THREADS_MAX`] threads, the daemon's own included; the entries are the same
/// whichever thread built them. A thread that cannot be started leaves its share to the
/// daemon's thread.
fn compile_entries(todo: Vec<(u32, Arc<ServiceSpec>)>) -> Vec<Arc<ServiceEntry>> {
    let compile = |part: &[(u32, Arc<ServiceSpec>)]| -> Vec<Arc<ServiceEntry>> {
        (part.iter())
            .map(|(id, spec)| Arc::new(ServiceEntry::from_shared(*id, spec.clone())))
            .collect()
    };
    let threads = if todo.len() < COMPILE_THREADS_FROM {
        1
    } else {
        std::thread::available_parallelism()
            .map_or(1, std::num::NonZeroUsize::get)
            .min(COMPILE_THREADS_MAX)
    };
    if threads <= 1 {
        return compile(&todo);
    }
    let share = todo.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let others: Vec<_> = (todo.chunks(share).skip(1))
            .map(|part| {
                let started = std::thread::Builder::new()
                    .name("psw-compile".into())
                    .spawn_scoped(scope, move || compile(part));
                (part, started)
            })
            .collect();
        let mut entries = compile(&todo[..share.min(todo.len())]);
        for (part, started) in others {
            match started {
                Ok(thread) => match thread.join() {
                    Ok(part) => entries.extend(part),
                    Err(panic) => std::panic::resume_unwind(panic),
                },
                Err(_) => entries.extend(compile(part)),
            }
        }
        entries
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use podswitch_proto::{BackendSpec, L4Protocol};
    use std::net::Ipv4Addr;

    #[test]
    fn service_ports_compiled_on_threads_are_those_compiled_one_by_one_in_order() {
        let todo: Vec<(u32, Arc<ServiceSpec>)> = (0..COMPILE_THREADS_FROM as u32 * 3 + 7)
            .map(|i| {
                let backends = (0..1 + i % 12)
                    .map(|j| BackendSpec {
                        ready: j % 3 != 0,
                        ..BackendSpec::ready(Ipv4Addr::new(10, 200, (i / 200) as u8, j as u8), 80)
                    })
                    .collect();
                let vip = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 96, 0, 0)) + i);
                let spec =
                    ServiceSpec::cluster_ip(format!("s{i}"), L4Protocol::Tcp, vip, 80, backends);
                (i + 1, Arc::new(spec))
            })
            .collect();
        let one_by_one: Vec<ServiceEntry> = (todo.iter())
            .map(|(id, spec)| ServiceEntry::from_shared(*id, spec.clone()))
            .collect();
        let compiled = compile_entries(todo);
        assert_eq!(compiled.len(), one_by_one.len());
        for (got, want) in compiled.iter().zip(&one_by_one) {
            assert_eq!(**got, *want);
        }
    }
}
