//! The daemon's configuration model — node, ports, routes — and applying a transaction's ops
//! to it (validated one by one against a copy, so a failed transaction leaves the original
//! untouched). Compiling it into a `Tables` snapshot is `compile.rs`; creating ports,
//! `tap_factory.rs`; the errors, `error.rs`.

use super::error::{OpError, PortError, TxError};
use crate::batch::PortId;
use crate::ports::PortQueue;
use imbl::OrdMap;
use podswitch_packet::MacAddr;
use podswitch_proto::{
    ifname_problem, FrontendKind, Ipv4Prefix, L4Protocol, NodeSpec, Op, PolicySpec, PortRole,
    PortSpec, RouteTarget as ProtoTarget, ServiceSpec, MTU_RANGE,
};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::Arc;

/// A port as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortConfig {
    /// Dataplane id.
    pub id: PortId,
    /// As requested.
    pub spec: PortSpec,
    /// MAC of the device on the other side (the pod's, or the host tap's).
    pub peer_mac: MacAddr,
    /// Unique for this port's creation ([`next_port_uid`]): conntrack caches it with an
    /// output so that a port id reused by another pod is never taken for the old one.
    pub uid: u32,
    /// AF_XDP ports: the interface, queues and modes the kernel gave.
    pub afxdp: Option<podswitch_proto::AfxdpInfo>,
}

/// A new port uid: a process-wide counter starting from the clock, so that uids cached by a
/// previous daemon's conntrack entries (should they survive it) never match this one's.
pub fn next_port_uid() -> u32 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: std::sync::OnceLock<AtomicU32> = std::sync::OnceLock::new();
    NEXT.get_or_init(|| {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| {
                d.subsec_nanos() ^ (d.as_secs() as u32).rotate_left(16)
            });
        AtomicU32::new(seed)
    })
    .fetch_add(1, Ordering::Relaxed)
}

/// Everything the daemon has been told.
///
/// Its maps are shared (`Arc`, changed through `Arc::make_mut`): a transaction works on a
/// clone of the configuration, and a map it does not touch is not copied (a label change at
/// 10k Service ports copies none of their names), nor compiled again ([`Config::compile`]
/// reuses what it built from the same map).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Config {
    /// Generation of the last applied transaction.
    pub generation: u64,
    /// Node addressing.
    pub node: Option<NodeSpec>,
    /// Ports by name.
    pub ports: Arc<BTreeMap<String, PortConfig>>,
    /// Static routes.
    pub routes: Arc<BTreeMap<Ipv4Prefix, ProtoTarget>>,
    /// Where the search for a free port id starts: ids are handed out round-robin so that a
    /// freed id is reused as late as possible.
    pub next_id: usize,
    /// Changes whenever the node addressing or the static routes change (not for ports,
    /// whose uids say that, nor for Services): outputs conntrack cached under another epoch
    /// are routed again.
    pub route_epoch: u32,
    /// Service ports by name: a persistent map, so a transaction's copy costs nothing and
    /// changing one of 10k Service ports copies a path of the tree, not 10k names (and frees
    /// as little); an unchanged spec stays the same `Arc` (compiling and comparing skip it by
    /// pointer).
    pub services: OrdMap<String, Arc<ServiceSpec>>,
    /// Each Service port's id (stable while it exists, never reused for another).
    pub service_ids: OrdMap<String, u32>,
    /// Which Service port holds each frontend (address, port, protocol; a NodePort at the
    /// node's `node_port_ip`): frontends must be unique, and a transaction that changes a few
    /// Service ports checks only theirs against this, rather than all of them.
    pub frontends: OrdMap<Frontend, String>,
    /// The last id handed out.
    pub last_service_id: u32,
    /// Pod ports' effective NetworkPolicies, by port name. Shared with the compiled tables:
    /// an unchanged spec stays the same `Arc`, so compiling reuses its tables without
    /// comparing rules.
    pub policies: Arc<BTreeMap<String, Arc<PolicySpec>>>,
    /// Changes whenever a policy changes: connections whose verdict was taken under another
    /// epoch are checked again at their next packet.
    pub policy_epoch: u32,
}

/// A frontend as Services must not share it: address, port, protocol.
pub type Frontend = (Ipv4Addr, u16, L4Protocol);

/// A Service port an op of the transaction set or removed.
#[derive(Debug)]
enum Touched {
    /// Set: the spec the configuration now holds.
    Set(Arc<ServiceSpec>),
    /// Removed, by name.
    Removed(String),
}

impl Touched {
    fn name(&self) -> &str {
        match self {
            Touched::Set(spec) => &spec.name,
            Touched::Removed(name) => name,
        }
    }
}

/// A port created for a transaction: its queues (one per worker) and the peer's MAC.
#[derive(Debug)]
pub struct CreatedPort {
    /// One queue per worker, in worker order.
    pub queues: Vec<Box<dyn PortQueue>>,
    /// MAC of the device on the other side.
    pub peer_mac: MacAddr,
    /// Whether the factory created a persistent kernel device for this port (rather than
    /// re-attaching to one that was there, or opening one that vanishes with its queues):
    /// undoing the transaction must release it, or it outlives the rollback.
    pub new_device: bool,
    /// AF_XDP ports: what the kernel gave (modes, queues), for the dump.
    pub afxdp: Option<podswitch_proto::AfxdpInfo>,
}

/// Creates the I/O side of ports (tap devices in the daemon; memory queues in tests).
pub trait PortFactory {
    /// Creates port `id` as `spec` says, for a node addressed as `node`.
    fn create(
        &mut self,
        id: PortId,
        spec: &PortSpec,
        node: &NodeSpec,
    ) -> Result<CreatedPort, PortError>;
}

/// What a successful transaction changed in the I/O world.
#[derive(Debug, Default)]
pub struct Changes {
    /// New ports and their queues.
    pub added: Vec<(PortId, Vec<Box<dyn PortQueue>>)>,
    /// Removed ports.
    pub removed: Vec<PortId>,
    /// Removed ports whose kernel device a port of the new configuration took over (same
    /// device name in the same namespace): their device must not be released with them.
    pub kept_devices: Vec<PortId>,
    /// Added ports whose persistent device this transaction created (see
    /// [`CreatedPort::new_device`]): a rollback releases them.
    pub new_devices: Vec<PortId>,
    /// Service ports removed or changed, with the endpoints that went (all of them for a
    /// removed one): their UDP connections are flushed, their affinity forgotten.
    pub gone_endpoints: Vec<GoneEndpoints>,
}

/// A Service port removed or changed, and the endpoints it lost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoneEndpoints {
    /// The Service port's id.
    pub service: u32,
    pub protocol: L4Protocol,
    /// Address and port of each endpoint that went (none: only other fields changed).
    pub endpoints: Vec<(Ipv4Addr, u16)>,
}

impl Changes {
    /// Undoes the creation of the added ports: releases the devices this transaction created
    /// and closes every queue.
    pub fn discard_added(&mut self) {
        for (id, queues) in self.added.drain(..) {
            release_if_new(&self.new_devices, id, queues);
        }
    }
}

fn release_if_new(new_devices: &[PortId], id: PortId, mut queues: Vec<Box<dyn PortQueue>>) {
    if new_devices.contains(&id) {
        if let Some(q) = queues.first_mut() {
            q.release_device();
        }
    }
    drop(queues);
}

impl Config {
    /// Applies `ops` in order. On error nothing is changed (ports created so far are dropped,
    /// which closes them, and the persistent devices created for them are released) and the
    /// error names the op and the object.
    ///
    /// With `replace`, the ops describe the whole configuration: it is built from nothing, an
    /// `add_port` identical to a port that exists keeps that port (same id, same queues: its
    /// traffic is not disturbed), and every port the ops do not keep is removed.
    pub fn apply(
        &mut self,
        ops: &[Op],
        replace: bool,
        max_ports: usize,
        factory: &mut dyn PortFactory,
    ) -> Result<Changes, TxError> {
        let (next, changes) = self.applied(ops.to_vec(), replace, max_ports, factory)?;
        *self = next;
        Ok(changes)
    }

    /// [`Config::apply`] without changing `self`: the configuration after `ops`, and what
    /// changed. One copy of the configuration, made here (a caller that keeps `self` as the
    /// fallback needs no copy of its own). The ops are taken, not copied: the configuration
    /// keeps the Service ports' and policies' specs as they came (10k Service ports with their
    /// endpoints are 130k allocations to copy, and as many to free with the request).
    pub fn applied(
        &self,
        ops: Vec<Op>,
        replace: bool,
        max_ports: usize,
        factory: &mut dyn PortFactory,
    ) -> Result<(Config, Changes), TxError> {
        let mut next = if replace {
            Config {
                generation: self.generation,
                next_id: self.next_id,
                route_epoch: self.route_epoch,
                service_ids: self.service_ids.clone(),
                last_service_id: self.last_service_id,
                policy_epoch: self.policy_epoch,
                ..Config::default()
            }
        } else {
            self.clone()
        };
        let previous = replace.then_some(&*self.ports);
        let mut changes = Changes::default();
        let ops_len = ops.len();
        // What the Service checks below need to know of the ops.
        let mut node_set = false;
        let mut touched = Vec::new();
        for (i, op) in ops.into_iter().enumerate() {
            node_set |= matches!(op, Op::SetNode(_));
            match next.apply_owned(op, max_ports, factory, &mut changes, previous) {
                Ok(service) => touched.extend(service),
                Err((error, op)) => {
                    changes.discard_added();
                    return Err(TxError {
                        index: i + 1,
                        op,
                        error,
                    });
                }
            }
        }
        if replace {
            for (name, old) in self.ports.iter() {
                if next.ports.get(name).is_none_or(|p| p.id != old.id) {
                    changes.removed.push(old.id);
                }
            }
        }
        let old_by_id = |id: PortId| self.ports.values().find(|p| p.id == id);
        changes.kept_devices = changes
            .removed
            .iter()
            .copied()
            .filter(|&id| {
                old_by_id(id).is_some_and(|old| {
                    next.ports
                        .values()
                        .any(|p| p.id != id && device(&p.spec) == device(&old.spec))
                })
            })
            .collect();
        if next.routes != self.routes || next.node != self.node {
            next.route_epoch = self.route_epoch.wrapping_add(1);
        }
        // The verdicts depend on the specs and on which address and port each one is for.
        let same_policies =
            Arc::ptr_eq(&next.policies, &self.policies) && Arc::ptr_eq(&next.ports, &self.ports);
        if !same_policies
            && (next.policies != self.policies || next.policy_ports() != self.policy_ports())
        {
            next.policy_epoch = self.policy_epoch.wrapping_add(1);
        }
        // A transaction that sets no Service and no node leaves the Services as they were
        // (checked, with their ids, no endpoint gone): nothing to walk.
        if !replace && !node_set && touched.is_empty() {
            return Ok((next, changes));
        }
        // After a replace or a new node every frontend is checked again (the index is
        // rebuilt); otherwise only those of the Service ports the ops name.
        let everything = replace || node_set;
        // The Service ports the ops set or removed, each once, in name order.
        let mut named: Vec<&str> = Vec::new();
        if !everything {
            named.extend(touched.iter().map(Touched::name));
            named.sort_unstable();
            named.dedup();
        }
        let checked = if everything {
            next.check_services()
        } else {
            next.check_changed_services(self, &named)
        };
        #[cfg(test)]
        {
            // The incremental check agrees with checking everything, and keeps the index a
            // full check builds (the property test of `state/tests.rs` runs this).
            let mut full = next.clone();
            let verdict = full.check_services();
            assert_eq!(
                checked.is_ok(),
                verdict.is_ok(),
                "{checked:?} / {verdict:?}"
            );
            if checked.is_ok() {
                assert_eq!(full.frontends, next.frontends, "the frontend index");
            }
        }
        if let Err(error) = checked {
            changes.discard_added();
            return Err(TxError {
                index: ops_len,
                op: "the transaction's Services".into(),
                error,
            });
        }
        // The ids of Service ports that went.
        let gone: Vec<String> = if replace {
            (next.service_ids.keys())
                .filter(|name| !next.services.contains_key(*name))
                .cloned()
                .collect()
        } else {
            (touched.iter())
                .filter_map(|t| match t {
                    Touched::Removed(name) if !next.services.contains_key(name) => {
                        Some(name.clone())
                    }
                    _ => None,
                })
                .collect()
        };
        for name in &gone {
            next.service_ids.remove(name);
        }
        // The Service ports whose endpoints may have gone: every one after a replace or a new
        // node, else those the ops name (not a walk over 10k names for one EndpointSlice).
        // Those that are new had none.
        let walked: Vec<&str> = if everything {
            self.services.keys().map(String::as_str).collect()
        } else {
            named
        };
        for name in walked {
            let Some(old) = self.services.get(name) else {
                continue;
            };
            let Some(&id) = self.service_ids.get(name) else {
                continue;
            };
            let gone: Vec<(Ipv4Addr, u16)> = match next.services.get(name) {
                None => old.backends.iter().map(|b| (b.ip, b.port)).collect(),
                Some(new) if Arc::ptr_eq(new, old) || new == old => continue,
                Some(new) => old
                    .backends
                    .iter()
                    .filter(|b| {
                        !new.backends
                            .iter()
                            .any(|n| n.ip == b.ip && n.port == b.port)
                    })
                    .map(|b| (b.ip, b.port))
                    .collect(),
            };
            changes.gone_endpoints.push(GoneEndpoints {
                service: id,
                protocol: old.protocol,
                endpoints: gone,
            });
        }
        Ok((next, changes))
    }

    /// Applies one op it takes: a Service port's or a policy's spec goes into the
    /// configuration as it is. Returns the Service port it set or removed, if any; on error,
    /// what the op was, for the message.
    fn apply_owned(
        &mut self,
        op: Op,
        max_ports: usize,
        factory: &mut dyn PortFactory,
        changes: &mut Changes,
        previous: Option<&BTreeMap<String, PortConfig>>,
    ) -> Result<Option<Touched>, (OpError, String)> {
        match op {
            Op::SetService(spec) => match check_service(&spec) {
                Ok(()) => Ok(Some(Touched::Set(self.set_service(spec)))),
                Err(e) => Err((e, describe(&Op::SetService(spec)))),
            },
            Op::DelService { name } => match self.services.remove(&name) {
                Some(_) => Ok(Some(Touched::Removed(name))),
                None => Err((
                    OpError::NoService(name.clone()),
                    describe(&Op::DelService { name }),
                )),
            },
            Op::SetPolicy(spec) => match self.check_policy_port(&spec) {
                Ok(()) => {
                    if self
                        .policies
                        .get(&spec.port)
                        .is_none_or(|old| **old != spec)
                    {
                        Arc::make_mut(&mut self.policies).insert(spec.port.clone(), Arc::new(spec));
                    }
                    Ok(None)
                }
                Err(e) => Err((e, describe(&Op::SetPolicy(spec)))),
            },
            op => match self.apply_one(&op, max_ports, factory, changes, previous) {
                Ok(()) => Ok(None),
                Err(e) => Err((e, describe(&op))),
            },
        }
    }

    /// Sets a Service port whose spec passed [`check_service`]; an unchanged spec keeps the
    /// `Arc` it had (compiling knows it by pointer). Returns the spec the configuration holds.
    fn set_service(&mut self, spec: ServiceSpec) -> Arc<ServiceSpec> {
        if !self.service_ids.contains_key(&spec.name) {
            self.last_service_id += 1;
            (self.service_ids).insert(spec.name.clone(), self.last_service_id);
        }
        match self.services.get(&spec.name) {
            Some(old) if **old == spec => old.clone(),
            _ => {
                let spec = Arc::new(spec);
                (self.services).insert(spec.name.clone(), spec.clone());
                spec
            }
        }
    }

    /// The checks of a `set_policy`: a pod port, and a policy that passes [`check_policy`].
    fn check_policy_port(&self, spec: &PolicySpec) -> Result<(), OpError> {
        match self.ports.get(&spec.port).map(|p| &p.spec.role) {
            Some(PortRole::Pod { .. }) => {}
            Some(PortRole::Host { .. } | PortRole::Uplink { .. }) => {
                return Err(OpError::Policy {
                    port: spec.port.clone(),
                    problem: "only pod ports take a NetworkPolicy".into(),
                })
            }
            None => return Err(OpError::NoPort(spec.port.clone())),
        }
        check_policy(spec)
    }

    /// The ops [`Config::apply_owned`] does not take apart.
    fn apply_one(
        &mut self,
        op: &Op,
        max_ports: usize,
        factory: &mut dyn PortFactory,
        changes: &mut Changes,
        previous: Option<&BTreeMap<String, PortConfig>>,
    ) -> Result<(), OpError> {
        match op {
            Op::SetNode(node) => self.set_node(node),
            Op::AddPort(spec) => {
                let node = self.node.clone().ok_or(OpError::NoNode)?;
                self.check_new_port(spec, &node)?;
                if let Some(same) = previous
                    .and_then(|p| p.get(&spec.name))
                    .filter(|p| p.spec == *spec)
                {
                    Arc::make_mut(&mut self.ports).insert(spec.name.clone(), same.clone());
                    return Ok(());
                }
                // Ids freed by this transaction stay taken: workers poll those ports until
                // the transaction is published. In a replace, so do all the current ones.
                let mut reserved = changes.removed.clone();
                reserved.extend(previous.into_iter().flat_map(|p| p.values().map(|p| p.id)));
                let id = self.free_id(max_ports, &reserved)?;
                let created = factory
                    .create(id, spec, &node)
                    .map_err(|e| OpError::Create(Box::new(e)))?;
                Arc::make_mut(&mut self.ports).insert(
                    spec.name.clone(),
                    PortConfig {
                        id,
                        spec: spec.clone(),
                        peer_mac: created.peer_mac,
                        uid: next_port_uid(),
                        afxdp: created.afxdp,
                    },
                );
                if created.new_device {
                    changes.new_devices.push(id);
                }
                changes.added.push((id, created.queues));
                Ok(())
            }
            Op::DelPort { name } => {
                let port = self
                    .ports
                    .get(name)
                    .ok_or_else(|| OpError::NoPort(name.clone()))?;
                if let Some((prefix, _)) = self
                    .routes
                    .iter()
                    .find(|(_, t)| matches!(t, ProtoTarget::Port { port } if port == name))
                {
                    return Err(OpError::PortInUse {
                        prefix: *prefix,
                        port: name.clone(),
                    });
                }
                if self.policies.contains_key(name) {
                    return Err(OpError::PortHasPolicy(name.clone()));
                }
                // A port added earlier in this transaction never reaches a worker: dropping
                // its queues closes it. Any other port is torn down after publication.
                let id = port.id;
                if let Some(i) = changes.added.iter().position(|(added, _)| *added == id) {
                    let (_, queues) = changes.added.remove(i);
                    release_if_new(&changes.new_devices, id, queues);
                    changes.new_devices.retain(|&d| d != id);
                } else {
                    changes.removed.push(id);
                }
                Arc::make_mut(&mut self.ports).remove(name);
                Ok(())
            }
            Op::AddRoute(route) => {
                if let ProtoTarget::Port { port } = &route.target {
                    match self.ports.get(port).map(|p| &p.spec.role) {
                        Some(PortRole::Pod { .. }) => {}
                        Some(PortRole::Host { .. }) => {
                            return Err(OpError::RouteToHostPort(port.clone()))
                        }
                        Some(PortRole::Uplink { .. }) => {
                            return Err(OpError::RouteToUplink(port.clone()))
                        }
                        None => return Err(OpError::NoPort(port.clone())),
                    }
                }
                self.check_uplink_route(route)?;
                Arc::make_mut(&mut self.routes)
                    .insert(route.prefix.network(), route.target.clone());
                Ok(())
            }
            Op::DelRoute { prefix } => Arc::make_mut(&mut self.routes)
                .remove(&prefix.network())
                .map(drop)
                .ok_or_else(|| OpError::NoRoute(prefix.network())),
            Op::SetService(_) | Op::DelService { .. } | Op::SetPolicy(_) => {
                unreachable!("taken apart by apply_owned")
            }
            Op::DelPolicy { port } => Arc::make_mut(&mut self.policies)
                .remove(port)
                .map(drop)
                .ok_or_else(|| OpError::NoPolicy(port.clone())),
        }
    }

    /// A route through the uplink (`via: node`, `via: uplink`): its next hop and gateway are
    /// unicast, outside this node's pod CIDR and not the uplink's own address, its prefix is
    /// not this node's own pod CIDR, a `vtep_mac` is unicast.
    fn check_uplink_route(&self, route: &podswitch_proto::RouteSpec) -> Result<(), OpError> {
        let (ip, gateway, vtep_mac) = match route.target {
            ProtoTarget::Node {
                ip,
                vtep_mac,
                gateway,
            } => (Some(ip), gateway, vtep_mac),
            ProtoTarget::Uplink { gateway } => (None, gateway, None),
            ProtoTarget::Port { .. } | ProtoTarget::Host | ProtoTarget::Unreachable => {
                return Ok(())
            }
        };
        let to = match (ip, gateway) {
            (Some(ip), _) => format!("to node {ip}"),
            (None, Some(g)) => format!("out of the uplink via {g}"),
            (None, None) => "out of the uplink".into(),
        };
        let problem = |problem: &str| OpError::UplinkRoute {
            prefix: route.prefix,
            to: to.clone(),
            problem: problem.into(),
        };
        if ip.is_some_and(|a| !is_unicast(a)) {
            return Err(problem("the next hop must be a unicast address"));
        }
        if gateway.is_some_and(|a| !is_unicast(a)) {
            return Err(problem("the gateway must be a unicast address"));
        }
        if let Some(node) = &self.node {
            if ip.is_some_and(|a| node.pod_cidr.contains(a)) {
                return Err(problem("the next hop is inside this node's pod CIDR"));
            }
            if gateway.is_some_and(|a| node.pod_cidr.contains(a)) {
                return Err(problem("the gateway is inside this node's pod CIDR"));
            }
            if route.prefix.network() == node.pod_cidr.network() {
                return Err(problem("the prefix is this node's own pod CIDR"));
            }
        }
        let own = self.ports.values().find_map(|p| match p.spec.role {
            PortRole::Uplink { ip, .. } => Some(ip),
            _ => None,
        });
        if own.is_some() && (gateway == own || ip == own) {
            return Err(problem("that is the uplink's own address"));
        }
        if vtep_mac.is_some_and(|m| !m.is_unicast()) {
            return Err(problem("vtep_mac must be a unicast MAC"));
        }
        Ok(())
    }

    /// The port id and address of every port with a policy.
    fn policy_ports(&self) -> Vec<(&str, PortId, Option<Ipv4Addr>)> {
        self.policies
            .keys()
            .filter_map(|name| {
                let p = self.ports.get(name)?;
                Some((name.as_str(), p.id, pod_ip(&p.spec)))
            })
            .collect()
    }

    /// What no single op can check: frontends unique across Service ports, none inside the
    /// pod CIDR or at the gateway, NodePorts only with a node-port address. Checks every
    /// Service port and rebuilds [`Config::frontends`].
    fn check_services(&mut self) -> Result<(), OpError> {
        let mut index = OrdMap::new();
        for spec in self.services.values() {
            self.claim_frontends(spec, &mut index)?;
        }
        self.frontends = index;
        Ok(())
    }

    /// [`Config::check_services`] for a transaction that changed (or removed) only the
    /// Service ports `names` since `before`, with the same node: their old frontends are let
    /// go first (one may move to another of them), then their new ones claimed.
    fn check_changed_services(&mut self, before: &Config, names: &[&str]) -> Result<(), OpError> {
        let mut index = self.frontends.clone();
        for name in names {
            let Some(old) = before.services.get(*name) else {
                continue;
            };
            for f in &old.frontends {
                if let Ok(key) = self.frontend(old, f.kind, f.ip, f.port) {
                    if index.get(&key).is_some_and(|holder| holder == name) {
                        index.remove(&key);
                    }
                }
            }
        }
        for name in names {
            if let Some(spec) = self.services.get(*name) {
                self.claim_frontends(spec, &mut index)?;
            }
        }
        self.frontends = index;
        Ok(())
    }

    /// Adds `spec`'s frontends to `index`, each checked: not in the pod CIDR, a NodePort only
    /// with a node-port address, held by no other Service port (nor twice by this one).
    fn claim_frontends(
        &self,
        spec: &ServiceSpec,
        index: &mut OrdMap<Frontend, String>,
    ) -> Result<(), OpError> {
        for f in &spec.frontends {
            let key = self.frontend(spec, f.kind, f.ip, f.port)?;
            if let Some(other) = index.insert(key, spec.name.clone()) {
                let (ip, port, protocol) = key;
                return Err(OpError::Service {
                    name: spec.name.clone(),
                    problem: format!(
                        "frontend {ip}:{port}/{protocol} is also Service port {other:?}'s"
                    ),
                });
            }
        }
        Ok(())
    }

    /// One frontend of `spec` as the uniqueness check keys it, if it may exist at all.
    fn frontend(
        &self,
        spec: &ServiceSpec,
        kind: FrontendKind,
        ip: Ipv4Addr,
        port: u16,
    ) -> Result<Frontend, OpError> {
        let ip = if kind == FrontendKind::NodePort {
            match self.node.as_ref().and_then(|n| n.node_port_ip) {
                Some(ip) => ip,
                None => {
                    return Err(OpError::Service {
                        name: spec.name.clone(),
                        problem: format!(
                            "NodePort {port} needs the node's node_port_ip (set_node)"
                        ),
                    })
                }
            }
        } else {
            ip
        };
        if let Some(node) = &self.node {
            if ip == node.gateway || node.pod_cidr.contains(ip) {
                return Err(OpError::Service {
                    name: spec.name.clone(),
                    problem: format!(
                        "frontend {ip}:{port} is inside the pod CIDR {}: a Service address \
                         must not be a pod's",
                        node.pod_cidr
                    ),
                });
            }
        }
        Ok((ip, port, spec.protocol))
    }

    fn set_node(&mut self, node: &NodeSpec) -> Result<(), OpError> {
        let cidr = node.pod_cidr;
        if cidr.len > 30 {
            return Err(OpError::PodCidrTooSmall(cidr));
        }
        let net = cidr.network();
        if !cidr.is_host(node.gateway) {
            return Err(OpError::Gateway {
                gateway: node.gateway,
                pod_cidr: net,
            });
        }
        if let Some(mac) = node.gateway_mac.filter(|m| !m.is_unicast()) {
            return Err(OpError::GatewayMac(mac));
        }
        let has_host = self
            .ports
            .values()
            .any(|p| matches!(p.spec.role, PortRole::Host { .. }));
        if has_host && self.node.as_ref().is_some_and(|n| n != node) {
            return Err(OpError::NodeInUse);
        }
        self.node = Some(NodeSpec {
            pod_cidr: net,
            ..node.clone()
        });
        Ok(())
    }

    fn check_new_port(&self, spec: &PortSpec, node: &NodeSpec) -> Result<(), OpError> {
        if self.ports.contains_key(&spec.name) {
            return Err(OpError::PortExists(spec.name.clone()));
        }
        if !MTU_RANGE.contains(&spec.mtu) {
            return Err(OpError::Mtu(spec.mtu));
        }
        if let Some(problem) = ifname_problem(&spec.name) {
            return Err(OpError::PortName(problem));
        }
        if let Some(problem) = spec.netns.as_ref().and_then(|a| ifname_problem(&a.ifname)) {
            return Err(OpError::Ifname(problem));
        }
        match &spec.role {
            PortRole::Pod { mac, ip, .. } => {
                if !mac.is_unicast() {
                    return Err(OpError::PodMac(*mac));
                }
                if *ip == node.gateway || !node.pod_cidr.is_host(*ip) {
                    return Err(OpError::PodIp {
                        ip: *ip,
                        pod_cidr: node.pod_cidr,
                    });
                }
                if let Some(other) = self.ports.values().find(|p| pod_ip(&p.spec) == Some(*ip)) {
                    return Err(OpError::PodIpTaken {
                        ip: *ip,
                        port: other.spec.name.clone(),
                    });
                }
            }
            PortRole::Host { .. } => {
                if let Some(other) = self
                    .ports
                    .values()
                    .find(|p| matches!(p.spec.role, PortRole::Host { .. }))
                {
                    return Err(OpError::SecondHostPort(other.spec.name.clone()));
                }
            }
            PortRole::Uplink {
                mac,
                ip,
                encap,
                gateway,
            } => {
                if let Some(other) = self
                    .ports
                    .values()
                    .find(|p| matches!(p.spec.role, PortRole::Uplink { .. }))
                {
                    return Err(OpError::SecondUplink(other.spec.name.clone()));
                }
                let problem = |problem: String| OpError::Uplink {
                    port: spec.name.clone(),
                    problem,
                };
                if !mac.is_unicast() {
                    return Err(problem(format!("mac {mac} is not a unicast MAC")));
                }
                if !is_unicast(*ip) {
                    return Err(problem(format!("ip {ip} is not a unicast address")));
                }
                if node.pod_cidr.contains(*ip) {
                    return Err(problem(format!(
                        "ip {ip} is inside the pod CIDR {}: the uplink's address is the node's \
                         own (its InternalIP)",
                        node.pod_cidr
                    )));
                }
                if let Some(g) = gateway {
                    let segment = g.segment;
                    if segment.len == 0 || segment.len > 32 || !segment.contains(*ip) {
                        return Err(problem(format!(
                            "gateway segment {segment} does not hold the uplink's address {ip}"
                        )));
                    }
                    if !is_unicast(g.ip) || g.ip == *ip || node.pod_cidr.contains(g.ip) {
                        return Err(problem(format!(
                            "gateway {} must be a unicast address other than the uplink's, \
                             outside the pod CIDR",
                            g.ip
                        )));
                    }
                }
                if let podswitch_proto::Encap::Vxlan { vni, port } = encap {
                    if *vni > podswitch_packet::vxlan::MAX_VNI {
                        return Err(problem(format!("VNI {vni} is not a 24-bit number")));
                    }
                    if *port == 0 {
                        return Err(problem("VXLAN UDP port 0".into()));
                    }
                    if spec.mtu < 68 + podswitch_packet::vxlan::MTU_OVERHEAD {
                        return Err(problem(format!(
                            "MTU {} leaves no room for VXLAN's 50 bytes",
                            spec.mtu
                        )));
                    }
                }
            }
        }
        Ok(())
    }

    fn free_id(&mut self, max_ports: usize, reserved: &[PortId]) -> Result<PortId, OpError> {
        let mut used: std::collections::BTreeSet<PortId> =
            self.ports.values().map(|p| p.id).collect();
        used.extend(reserved);
        let limit = max_ports.min(usize::from(PortId::MAX) + 1);
        let id = (0..limit)
            .map(|i| ((self.next_id + i) % limit) as PortId)
            .find(|id| !used.contains(id))
            .ok_or(OpError::NoFreeId(max_ports))?;
        self.next_id = usize::from(id) + 1;
        Ok(id)
    }
}

/// The kernel device behind a port: (namespace path, or `None` for the daemon's own; name).
/// An address a host can have: not 0.0.0.0, the broadcast or a multicast address.
fn is_unicast(ip: Ipv4Addr) -> bool {
    !(ip.is_unspecified() || ip.is_broadcast() || ip.is_multicast())
}

fn device(spec: &PortSpec) -> (Option<&str>, &str) {
    match &spec.netns {
        Some(a) => (Some(a.path.as_str()), a.ifname.as_str()),
        None => (None, spec.name.as_str()),
    }
}

/// The IP a pod port is bound to.
/// The checks one Service port passes on its own.
fn check_service(spec: &ServiceSpec) -> Result<(), OpError> {
    let problem = |p: String| {
        Err(OpError::Service {
            name: spec.name.clone(),
            problem: p,
        })
    };
    if spec.name.is_empty() || spec.name.len() > 512 {
        return problem("a name of 1 to 512 bytes is required".into());
    }
    if spec.frontends.is_empty() {
        return problem(
            "no frontend: give a ClusterIP, externalIP, LoadBalancer IP or NodePort".into(),
        );
    }
    if let Some(f) = spec.frontends.iter().find(|f| f.port == 0) {
        return problem(format!("frontend {} has port 0", f.ip));
    }
    if let Some(f) = spec.frontends.iter().find(|f| {
        f.kind != FrontendKind::NodePort
            && (f.ip.is_unspecified()
                || f.ip.is_multicast()
                || f.ip.is_broadcast()
                || f.ip.is_loopback())
    }) {
        return problem(format!("frontend {} is not a unicast address", f.ip));
    }
    if let Some(b) = spec.backends.iter().find(|b| b.port == 0) {
        return problem(format!("endpoint {} has port 0", b.ip));
    }
    if spec.backends.len() > usize::from(u16::MAX) {
        return problem(format!("{} endpoints: at most 65535", spec.backends.len()));
    }
    Ok(())
}

/// The checks one policy passes on its own: every direction names its policies, every rule
/// one of them, every port range is ordered and every except lies inside its block.
fn check_policy(spec: &PolicySpec) -> Result<(), OpError> {
    let problem = |p: String| {
        Err(OpError::Policy {
            port: spec.port.clone(),
            problem: p,
        })
    };
    for (what, dir) in [("ingress", &spec.ingress), ("egress", &spec.egress)] {
        let Some(dir) = dir else { continue };
        if dir.policies.is_empty() {
            return problem(format!("{what}: isolated by no policy (give policies)"));
        }
        for (i, rule) in dir.rules.iter().enumerate() {
            if rule.policy as usize >= dir.policies.len() {
                return problem(format!(
                    "{what} rule {i}: policy index {} past the {} policies",
                    rule.policy,
                    dir.policies.len()
                ));
            }
            if let Some(r) = rule.ports.iter().flatten().find(|r| r.first > r.last) {
                return problem(format!(
                    "{what} rule {i}: port range {}-{} is reversed",
                    r.first, r.last
                ));
            }
            for peer in rule.peers.iter().flatten() {
                if let Some(e) = peer.except.iter().find(|e| {
                    e.len < peer.cidr.len || !peer.cidr.network().contains(e.network().addr)
                }) {
                    return problem(format!(
                        "{what} rule {i}: except {e} is not inside {}",
                        peer.cidr
                    ));
                }
            }
        }
    }
    Ok(())
}

pub fn pod_ip(spec: &PortSpec) -> Option<Ipv4Addr> {
    match spec.role {
        PortRole::Pod { ip, .. } => Some(ip),
        PortRole::Host { .. } | PortRole::Uplink { .. } => None,
    }
}

fn describe(op: &Op) -> String {
    match op {
        Op::SetNode(n) => format!("set_node {}", n.pod_cidr),
        Op::AddPort(p) => format!("add_port {:?}", p.name),
        Op::DelPort { name } => format!("del_port {name:?}"),
        Op::AddRoute(r) => format!("add_route {}", r.prefix),
        Op::DelRoute { prefix } => format!("del_route {prefix}"),
        Op::SetService(s) => format!("set_service {:?}", s.name),
        Op::DelService { name } => format!("del_service {name:?}"),
        Op::SetPolicy(p) => format!("set_policy {:?}", p.port),
        Op::DelPolicy { port } => format!("del_policy {port:?}"),
    }
}

#[cfg(test)]
pub(crate) mod tests;
