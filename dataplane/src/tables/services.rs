//! The Service table of a snapshot: which Service port a new connection's destination
//! (address, port, protocol) reaches, and which endpoints may take it. Built by the daemon
//! from the applied `ServiceSpec`s; an entry whose spec did not change is reused from the
//! previous snapshot as it is (same `Arc`, Maglev tables not rebuilt), so a change to one of
//! 10k Service ports costs one entry plus the frontend index.
//!
//! Endpoint selection follows Kubernetes (KEP-1669, kube-proxy's `CategorizeEndpoints`):
//! endpoints that are ready; if none is, those that are serving and terminating; with traffic
//! policy `Local`, only endpoints on this node, and none when none is local (the connection is
//! refused: the client's node must not forward it elsewhere).

use super::maglev;
use foldhash::fast::FixedState;
use podswitch_proto::{Algorithm, FrontendKind, ServiceSpec};
use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

type Map<K, V> = HashMap<K, V, FixedState>;

/// One endpoint as the pipeline uses it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backend {
    /// Address.
    pub ip: Ipv4Addr,
    /// Port (the resolved targetPort).
    pub port: u16,
}

/// The endpoints that take new connections from one class of frontends, and how one is
/// picked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selection {
    /// Indices into the entry's backends, in spec order.
    members: Box<[u16]>,
    /// Maglev: slot → backend index (empty for `random`).
    table: Box<[u16]>,
}

impl Selection {
    fn new(spec: &ServiceSpec, local_only: bool) -> Selection {
        let usable = |ready_only: bool| -> Vec<u16> {
            spec.backends
                .iter()
                .enumerate()
                .filter(|(_, b)| !local_only || b.local)
                .filter(|(_, b)| {
                    if ready_only {
                        b.ready
                    } else {
                        b.serving && b.terminating
                    }
                })
                .map(|(i, _)| i as u16)
                .collect()
        };
        let mut members = usable(true);
        if members.is_empty() {
            members = usable(false);
        }
        let table = match spec.algorithm {
            Algorithm::Maglev if !members.is_empty() => {
                let names: Vec<maglev::EndpointName> = members
                    .iter()
                    .map(|&i| {
                        let b = &spec.backends[usize::from(i)];
                        maglev::EndpointName::new(b.ip, b.port)
                    })
                    .collect();
                let mut table = maglev::build(&names, maglev::table_size(members.len()));
                // Slots hold indices into `members`: the backends' own when every backend is
                // a member (the usual case), else translated.
                let every_backend = members.len() == spec.backends.len();
                if !every_backend {
                    for slot in table.iter_mut() {
                        *slot = members[usize::from(*slot)];
                    }
                }
                table
            }
            _ => Box::default(),
        };
        Selection {
            members: members.into_boxed_slice(),
            table,
        }
    }

    /// Whether no endpoint takes new connections.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Whether backend `index` takes new connections.
    #[inline]
    pub fn contains(&self, index: u16) -> bool {
        self.members.contains(&index)
    }

    /// The backend for a connection with hash (Maglev) or random draw (random) `h`.
    #[inline]
    pub fn pick(&self, h: u64) -> Option<u16> {
        if !self.table.is_empty() {
            return Some(self.table[(h % self.table.len() as u64) as usize]);
        }
        if self.members.is_empty() {
            return None;
        }
        Some(self.members[(h % self.members.len() as u64) as usize])
    }

    /// Starts bringing in what [`Selection::pick`] will read for `h`.
    #[inline]
    pub fn prefetch_pick(&self, h: u64) {
        if !self.table.is_empty() {
            let slot = (h % self.table.len() as u64) as usize;
            crate::prefetch::prefetch_ptr(self.table[slot..].as_ptr());
        }
    }

    /// Maglev table entries (0 for random).
    pub fn table_len(&self) -> usize {
        self.table.len()
    }
}

/// One Service port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceEntry {
    /// Stable for the life of the Service port in this daemon (conntrack entries carry it).
    pub id: u32,
    /// `namespace/name:port`.
    pub name: Arc<str>,
    /// As applied; shared with the daemon's configuration, so an unchanged Service port is
    /// recognised by pointer, without comparing its endpoints.
    pub spec: Arc<ServiceSpec>,
    /// Every endpoint, in spec order.
    pub backends: Box<[Backend]>,
    /// Endpoints for ClusterIP frontends (internalTrafficPolicy).
    pub internal: Arc<Selection>,
    /// Endpoints for the other frontends (externalTrafficPolicy): the same `Arc` when both
    /// policies are equal, so the Maglev table is built and held once.
    pub external: Arc<Selection>,
    /// ClientIP session affinity timeout.
    pub affinity: Option<Duration>,
    /// The spec's algorithm, kept here so the first packet of a connection does not follow
    /// `spec` to find it.
    pub algorithm: Algorithm,
}

impl ServiceEntry {
    /// Compiles one Service port.
    pub fn new(id: u32, spec: &ServiceSpec) -> ServiceEntry {
        ServiceEntry::from_shared(id, Arc::new(spec.clone()))
    }

    /// Compiles one Service port, keeping `spec` (not a copy of it).
    pub fn from_shared(id: u32, spec: Arc<ServiceSpec>) -> ServiceEntry {
        let internal = Arc::new(Selection::new(&spec, spec.internal_local));
        ServiceEntry {
            id,
            name: spec.name.as_str().into(),
            backends: spec
                .backends
                .iter()
                .map(|b| Backend {
                    ip: b.ip,
                    port: b.port,
                })
                .collect(),
            internal: internal.clone(),
            external: if spec.external_local == spec.internal_local {
                internal
            } else {
                Arc::new(Selection::new(&spec, spec.external_local))
            },
            affinity: spec
                .affinity_timeout_secs
                .map(|s| Duration::from_secs(u64::from(s.max(1)))),
            algorithm: spec.algorithm,
            spec,
        }
    }
}

/// A frontend key: address, port, IP protocol.
type FrontendKey = (Ipv4Addr, u16, u8);

/// Every Service port of a snapshot, indexed by frontend.
#[derive(Debug, Clone, Default)]
pub struct Services {
    entries: Vec<Arc<ServiceEntry>>,
    node_port_ip: Option<Ipv4Addr>,
    by_frontend: Map<FrontendKey, (u32, FrontendKind)>,
    by_id: Map<u32, u32>,
    /// Frontend addresses, each with the number of frontends at it (Service ports share a
    /// VIP), so that [`Services::patched`] can take one port's away.
    vips: Map<Ipv4Addr, u32>,
    /// Endpoints, each with the number of Service ports that have it.
    backends: Map<FrontendKey, u32>,
}

impl Services {
    /// The table of `entries` (sorted by name by the caller); NodePort frontends are reached
    /// at `node_port_ip` (none without one). Frontends must be unique (the daemon refuses a
    /// transaction where two Service ports share one); a duplicate keeps the first.
    pub fn new(entries: Vec<Arc<ServiceEntry>>, node_port_ip: Option<Ipv4Addr>) -> Services {
        let mut s = Services {
            by_frontend: Map::with_capacity_and_hasher(entries.len() * 2, FixedState::default()),
            by_id: Map::with_capacity_and_hasher(entries.len(), FixedState::default()),
            node_port_ip,
            ..Services::default()
        };
        for (i, e) in entries.iter().enumerate() {
            s.by_id.insert(e.id, i as u32);
            s.index(i as u32, e);
        }
        s.entries = entries;
        s
    }

    /// This table with the entries at some positions replaced, each by an entry of the same
    /// name and id (an EndpointSlice change): the maps are copied and only those entries'
    /// keys are taken out and put in, so a change costs a copy, not a rebuild of 10k ports'
    /// frontends and 100k endpoints. With unique frontends (which the daemon requires) the
    /// result equals [`Services::new`] of the new entries.
    pub fn patched(&self, changed: &[(usize, Arc<ServiceEntry>)]) -> Services {
        let mut s = self.clone();
        for (i, new) in changed {
            let Some(old) = s.entries.get(*i).cloned() else {
                continue;
            };
            s.unindex(*i as u32, &old);
            s.index(*i as u32, new);
            s.entries[*i] = new.clone();
        }
        s
    }

    /// The frontend addresses of `e`, with its NodePorts at `node_port_ip` (none without).
    fn frontends(
        node_port_ip: Option<Ipv4Addr>,
        e: &ServiceEntry,
    ) -> impl Iterator<Item = (FrontendKey, FrontendKind)> + '_ {
        let proto = e.spec.protocol.number();
        e.spec.frontends.iter().filter_map(move |f| {
            let ip = match f.kind {
                FrontendKind::NodePort => node_port_ip?,
                _ => f.ip,
            };
            Some(((ip, f.port, proto), f.kind))
        })
    }

    /// Adds the keys of entry `e` at position `i`.
    fn index(&mut self, i: u32, e: &ServiceEntry) {
        let proto = e.spec.protocol.number();
        for (key, kind) in Self::frontends(self.node_port_ip, e) {
            self.by_frontend.entry(key).or_insert((i, kind));
            *self.vips.entry(key.0).or_insert(0) += 1;
        }
        for b in e.backends.iter() {
            *self.backends.entry((b.ip, b.port, proto)).or_insert(0) += 1;
        }
    }

    /// Takes out the keys [`Self::index`] added for entry `e` at position `i`.
    fn unindex(&mut self, i: u32, e: &ServiceEntry) {
        let proto = e.spec.protocol.number();
        for (key, _) in Self::frontends(self.node_port_ip, e) {
            if self.by_frontend.get(&key).is_some_and(|&(at, _)| at == i) {
                self.by_frontend.remove(&key);
            }
            release(&mut self.vips, key.0);
        }
        for b in e.backends.iter() {
            release(&mut self.backends, (b.ip, b.port, proto));
        }
    }

    /// The address NodePort frontends are matched at.
    pub fn node_port_ip(&self) -> Option<Ipv4Addr> {
        self.node_port_ip
    }

    /// The Service port a new connection to `dst:port` over `proto` reaches, and through which
    /// kind of frontend.
    #[inline]
    pub fn lookup(
        &self,
        dst: Ipv4Addr,
        port: u16,
        proto: u8,
    ) -> Option<(&ServiceEntry, FrontendKind)> {
        if self.entries.is_empty() {
            return None;
        }
        let &(i, kind) = self.by_frontend.get(&(dst, port, proto))?;
        Some((self.entries.get(i as usize)?, kind))
    }

    /// A Service port by id.
    pub fn by_id(&self, id: u32) -> Option<&ServiceEntry> {
        let &i = self.by_id.get(&id)?;
        self.entries.get(i as usize).map(|e| &**e)
    }

    /// A Service port by name (entries are sorted by name).
    pub fn by_name(&self, name: &str) -> Option<&Arc<ServiceEntry>> {
        let i = self
            .entries
            .binary_search_by(|e| (*e.name).cmp(name))
            .ok()?;
        self.entries.get(i)
    }

    /// Whether `ip` is a frontend address of some Service port.
    #[inline]
    pub fn is_vip(&self, ip: Ipv4Addr) -> bool {
        !self.vips.is_empty() && self.vips.contains_key(&ip)
    }

    /// Whether `ip:port` over `proto` is an endpoint of some Service port: a packet from it
    /// with no connection could be the reply of a translated one whose entry was lost.
    #[inline]
    pub fn is_backend(&self, ip: Ipv4Addr, port: u16, proto: u8) -> bool {
        !self.backends.is_empty() && self.backends.contains_key(&(ip, port, proto))
    }

    /// Every Service port, by name.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<ServiceEntry>> {
        self.entries.iter()
    }

    /// Number of Service ports.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// One user of `key` fewer; the key goes with its last user.
fn release<K: std::hash::Hash + Eq>(counts: &mut Map<K, u32>, key: K) {
    if let Some(n) = counts.get_mut(&key) {
        *n -= 1;
        if *n == 0 {
            counts.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use podswitch_proto::{BackendSpec, Frontend, L4Protocol};

    fn backend(
        host: u8,
        ready: bool,
        serving: bool,
        terminating: bool,
        local: bool,
    ) -> BackendSpec {
        BackendSpec {
            ip: Ipv4Addr::new(10, 244, 1, host),
            port: 8080,
            ready,
            serving,
            terminating,
            local,
            target: None,
        }
    }

    fn spec(backends: Vec<BackendSpec>) -> ServiceSpec {
        ServiceSpec {
            name: "shop/web:http".into(),
            protocol: L4Protocol::Tcp,
            frontends: vec![
                Frontend {
                    kind: FrontendKind::ClusterIp,
                    ip: Ipv4Addr::new(10, 96, 0, 10),
                    port: 80,
                },
                Frontend {
                    kind: FrontendKind::NodePort,
                    ip: Ipv4Addr::UNSPECIFIED,
                    port: 30080,
                },
            ],
            backends,
            algorithm: Algorithm::Maglev,
            affinity_timeout_secs: None,
            internal_local: false,
            external_local: false,
        }
    }

    fn members(s: &Selection) -> Vec<u16> {
        s.members.to_vec()
    }

    #[test]
    fn endpoint_selection_follows_kubernetes_rules() {
        // (backends, internal_local, expected members)
        let cases: Vec<(Vec<BackendSpec>, bool, Vec<u16>, &str)> = vec![
            (
                vec![
                    backend(2, true, true, false, true),
                    backend(3, false, false, false, true),
                ],
                false,
                vec![0],
                "only ready endpoints",
            ),
            (
                vec![
                    backend(2, false, true, true, true),
                    backend(3, false, false, true, true),
                ],
                false,
                vec![0],
                "no ready one: serving and terminating ones",
            ),
            (
                vec![
                    backend(2, true, true, false, true),
                    backend(3, false, true, true, true),
                ],
                false,
                vec![0],
                "terminating ones only when none is ready",
            ),
            (
                vec![
                    backend(2, true, true, false, false),
                    backend(3, true, true, false, true),
                ],
                true,
                vec![1],
                "traffic policy Local keeps local ones",
            ),
            (
                vec![backend(2, true, true, false, false)],
                true,
                vec![],
                "Local with no local endpoint: none",
            ),
            (vec![], false, vec![], "no endpoints"),
        ];
        for (backends, local, expected, what) in cases {
            let mut s = spec(backends);
            s.internal_local = local;
            let e = ServiceEntry::new(1, &s);
            assert_eq!(members(&e.internal), expected, "{what}");
            assert_eq!(e.internal.is_empty(), expected.is_empty(), "{what}");
        }
    }

    #[test]
    fn equal_traffic_policies_share_one_selection_and_different_ones_do_not() {
        let backends = vec![
            backend(2, true, true, false, true),
            backend(3, true, true, false, false),
        ];
        let e = ServiceEntry::new(1, &spec(backends.clone()));
        assert!(Arc::ptr_eq(&e.internal, &e.external));
        let mut local = spec(backends);
        local.external_local = true;
        let e = ServiceEntry::new(1, &local);
        assert!(!Arc::ptr_eq(&e.internal, &e.external));
        assert_eq!(
            (members(&e.internal), members(&e.external)),
            (vec![0, 1], vec![0])
        );
    }

    #[test]
    fn picks_are_spread_over_ready_endpoints_only() {
        let s = spec(vec![
            backend(2, true, true, false, true),
            backend(3, false, false, false, true),
            backend(4, true, true, false, true),
        ]);
        let e = ServiceEntry::new(1, &s);
        let mut counts = [0u32; 3];
        for h in 0..10_000u64 {
            let h = h.wrapping_mul(0x9e37_79b9_7f4a_7c15);
            counts[usize::from(e.internal.pick(h).unwrap())] += 1;
        }
        assert_eq!(counts[1], 0);
        assert!(counts[0] > 4000 && counts[2] > 4000, "{counts:?}");
        assert_eq!(e.internal.table_len(), maglev::table_size(2));
    }

    #[test]
    fn frontends_are_found_by_address_port_and_protocol_and_nodeports_at_the_node_port_address() {
        let npip = Ipv4Addr::new(10, 96, 255, 254);
        let e = Arc::new(ServiceEntry::new(
            7,
            &spec(vec![backend(2, true, true, false, true)]),
        ));
        let t = Services::new(vec![e], Some(npip));
        let vip = Ipv4Addr::new(10, 96, 0, 10);
        assert_eq!(
            t.lookup(vip, 80, 6).map(|(e, k)| (e.id, k)),
            Some((7, FrontendKind::ClusterIp))
        );
        assert!(t.lookup(vip, 80, 17).is_none(), "other protocol");
        assert!(t.lookup(vip, 81, 6).is_none(), "other port");
        assert_eq!(
            t.lookup(npip, 30080, 6).map(|(_, k)| k),
            Some(FrontendKind::NodePort)
        );
        assert!(t.is_vip(vip) && t.is_vip(npip));
        assert!(t.is_backend(Ipv4Addr::new(10, 244, 1, 2), 8080, 6));
        assert_eq!(t.by_id(7).map(|e| &*e.name), Some("shop/web:http"));
        assert!(t.by_name("shop/web:http").is_some());
        let without = Services::new(t.iter().cloned().collect(), None);
        assert!(
            without.lookup(npip, 30080, 6).is_none(),
            "no node-port address, no NodePort"
        );
    }

    /// Random EndpointSlice-like changes (endpoints and frontends of some ports, VIPs and
    /// endpoints shared between ports, NodePorts): a patched table holds exactly the keys a
    /// table built from the new entries holds.
    #[test]
    fn a_patched_table_equals_one_built_from_the_new_entries() {
        let mut next = crate::testkit::xorshift(0x9e37_79b9_7f4a_7c15u64);
        let make = |i: usize, next: &mut dyn FnMut() -> u64| {
            let backends = (0..next() % 4)
                .map(|j| BackendSpec {
                    port: 8080 + (next() % 2) as u16,
                    ..backend(
                        10 + ((i as u64 + j + next() % 3) % 8) as u8,
                        true,
                        true,
                        false,
                        true,
                    )
                })
                .collect();
            let mut s = spec(backends);
            s.name = format!("default/s{i}:p");
            s.frontends.truncate(1); // frontends are unique, as the daemon requires
                                     // Ports of one Service share a VIP: i / 2.
            s.frontends[0].ip = Ipv4Addr::new(10, 96, 0, (i / 2) as u8 + 1);
            s.frontends[0].port = 80 + (i % 2) as u16;
            if next() % 3 == 0 {
                s.frontends.push(Frontend {
                    kind: FrontendKind::NodePort,
                    ip: Ipv4Addr::UNSPECIFIED,
                    port: 30000 + i as u16,
                });
            }
            Arc::new(ServiceEntry::new(i as u32 + 1, &s))
        };
        let node_port_ip = Some(Ipv4Addr::new(10, 96, 255, 254));
        let mut entries: Vec<_> = (0..12).map(|i| make(i, &mut next)).collect();
        let mut table = Services::new(entries.clone(), node_port_ip);
        for round in 0..500 {
            let changed: Vec<_> = (0..1 + next() % 3)
                .map(|_| {
                    let i = (next() % 12) as usize;
                    (i, make(i, &mut next))
                })
                .collect();
            for (i, e) in &changed {
                entries[*i] = e.clone();
            }
            table = table.patched(&changed);
            let built = Services::new(entries.clone(), node_port_ip);
            assert_eq!(table.by_frontend, built.by_frontend, "round {round}");
            assert_eq!(table.by_id, built.by_id, "round {round}");
            assert_eq!(table.vips, built.vips, "round {round}");
            assert_eq!(table.backends, built.backends, "round {round}");
            assert!(table
                .iter()
                .zip(built.iter())
                .all(|(a, b)| Arc::ptr_eq(a, b)));
        }
    }
}
