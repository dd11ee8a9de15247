//! NetworkPolicy as the pipeline looks it up: per local pod address, the compiled rules of each
//! direction the pod is isolated in.
//!
//! Control sends each pod port's effective policy with every selector already resolved to
//! address blocks and every named port to numbers (`podswitch_proto::PolicySpec`). Here each
//! direction becomes a [`CompiledDirection`]: the IPv4 space cut into the elementary intervals
//! the rules' peer blocks (minus their excepts) start and end at, each interval mapped to the
//! union of the ports its rules allow, as disjoint ranges. A check is one hash lookup of the pod
//! and two binary searches (the peer's interval, the port's range), so its cost grows with the
//! logarithm of the rules, never linearly; pods with equal rules share one compiled direction.

use crate::batch::PortId;
use podswitch_proto::{DirectionSpec, PeerBlock, PolicySpec, PortRange};
use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::sync::Arc;

type FastMap<K, V> = HashMap<K, V, foldhash::fast::FixedState>;

/// Where an allowing match comes from: the rule's policy (index into the direction's
/// `policies`) and the rule's index in that policy's list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Origin {
    /// Index into [`CompiledDirection::policies`].
    pub policy: u32,
    /// The rule's index in the policy's `ingress` or `egress` list.
    pub rule: u32,
}

/// One interval's allowed ports: the union of the ports of the rules whose peers cover it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
struct PortSet {
    /// A rule with no ports (every protocol and port) covers the interval: its origin.
    any: Option<Origin>,
    /// Disjoint ranges sorted by `(protocol, first)`: `(protocol, first, last, origin)`.
    ranges: Box<[(u8, u16, u16, Origin)]>,
}

impl PortSet {
    #[inline]
    fn lookup(&self, proto: u8, port: Option<u16>) -> Option<Origin> {
        if self.any.is_some() {
            return self.any;
        }
        let port = port?;
        let i = self.ranges.partition_point(|r| (r.0, r.1) <= (proto, port));
        let r = self.ranges.get(i.checked_sub(1)?)?;
        (r.0 == proto && port <= r.2).then_some(r.3)
    }

    /// The union of `rules`' ports, each part attributed to the first rule (in `Origin` order)
    /// that allows it.
    fn union(rules: &[(Origin, Option<&[PortRange]>)]) -> PortSet {
        if let Some(o) = rules
            .iter()
            .filter(|(_, p)| p.is_none())
            .map(|(o, _)| *o)
            .min()
        {
            return PortSet {
                any: Some(o),
                ranges: Box::new([]),
            };
        }
        // Sweep each protocol's port line: at every boundary the lowest covering origin wins.
        let mut events: Vec<(u8, u32, bool, Origin)> = Vec::new();
        for (o, ports) in rules {
            for r in ports.iter().flat_map(|p| p.iter()) {
                let proto = r.protocol.number();
                events.push((proto, u32::from(r.first), true, *o));
                events.push((proto, u32::from(r.last) + 1, false, *o));
            }
        }
        events.sort_unstable_by_key(|e| (e.0, e.1));
        let mut ranges: Vec<(u8, u16, u16, Origin)> = Vec::new();
        let mut active: BTreeMap<Origin, u32> = BTreeMap::new();
        let mut i = 0;
        while i < events.len() {
            let (proto, at) = (events[i].0, events[i].1);
            while i < events.len() && (events[i].0, events[i].1) == (proto, at) {
                let (_, _, start, o) = events[i];
                if start {
                    *active.entry(o).or_default() += 1;
                } else if let Some(n) = active.get_mut(&o) {
                    *n -= 1;
                    if *n == 0 {
                        active.remove(&o);
                    }
                }
                i += 1;
            }
            let Some((&o, _)) = active.iter().next() else {
                continue;
            };
            // The segment reaches the next boundary of this protocol (always one: every start
            // has its end).
            let Some(&(next_proto, end, _, _)) = events.get(i) else {
                continue;
            };
            if next_proto != proto || at > 65535 {
                continue;
            }
            let (first, last) = (at as u16, (end - 1).min(65535) as u16);
            match ranges.last_mut() {
                Some(prev) if prev.0 == proto && prev.3 == o && u32::from(prev.2) + 1 == at => {
                    prev.2 = last;
                }
                _ => ranges.push((proto, first, last, o)),
            }
        }
        PortSet {
            any: None,
            ranges: ranges.into_boxed_slice(),
        }
    }
}

/// One direction of one pod (or of every pod with the same rules): what may be reached or
/// reach it.
#[derive(Debug)]
pub struct CompiledDirection {
    /// The policies isolating the pod in this direction (`namespace/name`).
    pub policies: Box<[Arc<str>]>,
    /// Single addresses whose port set differs from their neighbours' (pods: their /32s),
    /// when there are many: found by one hash probe, and left out of `starts`, so the search
    /// there is over the blocks' boundaries only. Most peers are pods, so this keeps a check
    /// near-flat as the pods named by rules grow.
    points: FastMap<u32, u32>,
    /// Start of each elementary interval of the IPv4 space (but `points`), ascending; the
    /// first is 0.
    starts: Box<[u32]>,
    /// Each interval's port set (index into `sets`; `u32::MAX`: nothing allowed).
    set_of: Box<[u32]>,
    sets: Box<[PortSet]>,
}

/// Below this many single-address intervals, a binary search over all intervals is as fast
/// as a hash probe.
const POINTS_MIN: usize = 32;

/// Splits the single-address intervals out of an interval map (when there are many):
/// returns them, and the map of the rest with equal neighbours merged.
fn split_points(starts: Vec<u32>, set_of: Vec<u32>) -> (FastMap<u32, u32>, Vec<u32>, Vec<u32>) {
    let is_point = |k: usize| starts.get(k + 1).is_some_and(|&next| next - starts[k] == 1);
    let count = (0..starts.len()).filter(|&k| is_point(k)).count();
    if count < POINTS_MIN {
        return (FastMap::default(), starts, set_of);
    }
    let mut points = FastMap::with_capacity_and_hasher(count, Default::default());
    let (mut s2, mut o2) = (Vec::new(), Vec::new());
    for k in 0..starts.len() {
        if is_point(k) {
            points.insert(starts[k], set_of[k]);
            continue;
        }
        if o2.last() != Some(&set_of[k]) {
            // Where a removed point was, the next interval starts right after it: an address
            // in between is a point and never searched for here.
            s2.push(if s2.is_empty() { 0 } else { starts[k] });
            o2.push(set_of[k]);
        }
    }
    if s2.is_empty() {
        // Every interval was a point but the last can never be one (it reaches 2^32 - 1
        // unless it starts there): unreachable, kept total.
        s2.push(0);
        o2.push(u32::MAX);
    }
    (points, s2, o2)
}

/// Disjoint address intervals `[lo, hi]` of a block minus its excepts.
fn block_intervals(b: &PeerBlock, out: &mut Vec<(u32, u32)>) {
    let span = |p: podswitch_proto::Ipv4Prefix| {
        let lo = u32::from(p.network().addr);
        let size = if p.len == 0 {
            u32::MAX
        } else {
            (1u32 << (32 - p.len)) - 1
        };
        (lo, lo.saturating_add(size))
    };
    let (lo, hi) = span(b.cidr);
    let mut holes: Vec<(u32, u32)> = b.except.iter().map(|e| span(*e)).collect();
    holes.sort_unstable();
    let mut at = lo;
    for (hlo, hhi) in holes {
        if hhi < at || hlo > hi {
            continue;
        }
        if hlo > at {
            out.push((at, hlo - 1));
        }
        if hhi >= hi {
            return;
        }
        at = at.max(hhi + 1);
    }
    out.push((at, hi));
}

impl CompiledDirection {
    /// Compiles one direction's rules.
    pub fn new(spec: &DirectionSpec) -> CompiledDirection {
        // Sweep the address line: events where a rule's peer interval starts and ends.
        let mut events: Vec<(u64, bool, usize)> = Vec::new();
        let mut intervals = Vec::new();
        for (r, rule) in spec.rules.iter().enumerate() {
            if rule.ports.as_ref().is_some_and(Vec::is_empty) {
                continue; // matches nothing
            }
            intervals.clear();
            match &rule.peers {
                None => intervals.push((0, u32::MAX)),
                Some(peers) => peers
                    .iter()
                    .for_each(|b| block_intervals(b, &mut intervals)),
            }
            for &(lo, hi) in &intervals {
                events.push((u64::from(lo), true, r));
                events.push((u64::from(hi) + 1, false, r));
            }
        }
        events.sort_unstable_by_key(|e| e.0);
        let mut starts = vec![0u32];
        let mut set_of = vec![u32::MAX];
        let mut sets: Vec<PortSet> = Vec::new();
        let mut set_ids: HashMap<Vec<usize>, u32> = HashMap::new();
        let mut active: BTreeMap<usize, u32> = BTreeMap::new();
        let mut i = 0;
        while i < events.len() {
            let at = events[i].0;
            while i < events.len() && events[i].0 == at {
                let (_, start, r) = events[i];
                if start {
                    *active.entry(r).or_default() += 1;
                } else if let Some(n) = active.get_mut(&r) {
                    *n -= 1;
                    if *n == 0 {
                        active.remove(&r);
                    }
                }
                i += 1;
            }
            if at > u64::from(u32::MAX) {
                break;
            }
            let key: Vec<usize> = active.keys().copied().collect();
            let set = if key.is_empty() {
                u32::MAX
            } else {
                let next = sets.len() as u32;
                *set_ids.entry(key).or_insert_with_key(|key| {
                    let rules: Vec<(Origin, Option<&[PortRange]>)> = key
                        .iter()
                        .map(|&r| {
                            let rule = &spec.rules[r];
                            let o = Origin {
                                policy: rule.policy,
                                rule: rule.rule,
                            };
                            (o, rule.ports.as_deref())
                        })
                        .collect();
                    sets.push(PortSet::union(&rules));
                    next
                })
            };
            let at = at as u32;
            if *starts.last().unwrap_or(&0) == at {
                if let Some(last) = set_of.last_mut() {
                    *last = set;
                }
            } else if set_of.last() != Some(&set) {
                starts.push(at);
                set_of.push(set);
            }
        }
        let (points, starts, set_of) = split_points(starts, set_of);
        CompiledDirection {
            policies: spec
                .policies
                .iter()
                .map(|p| Arc::from(p.as_str()))
                .collect(),
            points,
            starts: starts.into_boxed_slice(),
            set_of: set_of.into_boxed_slice(),
            sets: sets.into_boxed_slice(),
        }
    }

    /// The rule allowing `peer` on `proto`/`port` (`port`: the destination port; `None` for
    /// ICMP and other portless protocols, which only a rule with no ports allows).
    #[inline]
    pub fn allows(&self, peer: Ipv4Addr, proto: u8, port: Option<u16>) -> Option<Origin> {
        let peer = u32::from(peer);
        let set = match self.points.get(&peer) {
            Some(&set) => set,
            None => {
                let i = self.starts.partition_point(|&s| s <= peer).checked_sub(1)?;
                *self.set_of.get(i)?
            }
        };
        self.sets.get(set as usize)?.lookup(proto, port)
    }

    /// `namespace/name` of an origin's policy.
    pub fn policy_name(&self, o: Origin) -> &str {
        self.policies.get(o.policy as usize).map_or("?", |p| p)
    }

    /// Number of elementary address intervals (for sizing reports).
    pub fn intervals(&self) -> usize {
        self.starts.len() + self.points.len()
    }
}

/// A local pod's policy.
#[derive(Debug, Clone)]
pub struct PodPolicy {
    /// The pod's port.
    pub port: PortId,
    /// What control sent.
    pub spec: Arc<PolicySpec>,
    /// Ingress rules, when the pod is ingress-isolated.
    pub ingress: Option<Arc<CompiledDirection>>,
    /// Egress rules, when the pod is egress-isolated.
    pub egress: Option<Arc<CompiledDirection>>,
}

/// Which way a verdict was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// At the destination pod.
    Ingress,
    /// At the source pod.
    Egress,
}

/// What one direction's check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// The pod is not isolated in this direction (or the traffic is exempt).
    Open,
    /// Allowed by this rule.
    Allowed(Origin),
    /// No rule allows it.
    Denied,
}

/// The verdict on a connection's first packet: both directions' checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    /// At the source pod.
    pub egress: Check,
    /// At the destination pod.
    pub ingress: Check,
}

impl Verdict {
    /// Both checks passed.
    #[inline]
    pub fn allowed(&self) -> bool {
        self.egress != Check::Denied && self.ingress != Check::Denied
    }
}

/// A spec handed to [`Policies::build`].
enum SpecIn<'a> {
    Borrowed(&'a PolicySpec),
    Shared(Arc<PolicySpec>),
}

/// Every local pod's policy, by address.
#[derive(Debug, Default)]
pub struct Policies {
    by_ip: FastMap<Ipv4Addr, PodPolicy>,
    /// The node's own address (the host port's source): exempt from ingress isolation.
    node_ip: Option<Ipv4Addr>,
}

impl Policies {
    /// Compiles the policies of `pods` (address, port, spec). A pod whose spec and port are
    /// those it had in `previous` keeps its compiled policy; new specs equal to each other
    /// share one compiled form per direction.
    pub fn new<'a>(
        pods: impl IntoIterator<Item = (Ipv4Addr, PortId, &'a PolicySpec)>,
        node_ip: Option<Ipv4Addr>,
        previous: &Policies,
    ) -> Policies {
        Self::build(
            pods.into_iter()
                .map(|(ip, port, spec)| (ip, port, SpecIn::Borrowed(spec))),
            node_ip,
            previous,
        )
    }

    /// [`Policies::new`] for specs the caller already shares: a pod whose spec is the same
    /// `Arc` as in `previous` is reused without comparing its rules, so a change to one pod's
    /// policy costs that pod's compilation and a pass over the pods, whatever their rules.
    pub fn from_shared(
        pods: impl IntoIterator<Item = (Ipv4Addr, PortId, Arc<PolicySpec>)>,
        node_ip: Option<Ipv4Addr>,
        previous: &Policies,
    ) -> Policies {
        Self::build(
            pods.into_iter()
                .map(|(ip, port, spec)| (ip, port, SpecIn::Shared(spec))),
            node_ip,
            previous,
        )
    }

    fn build<'a>(
        pods: impl Iterator<Item = (Ipv4Addr, PortId, SpecIn<'a>)>,
        node_ip: Option<Ipv4Addr>,
        previous: &Policies,
    ) -> Policies {
        let mut by_ip = FastMap::default();
        let mut fresh: HashMap<DirectionSpec, Arc<CompiledDirection>> = HashMap::new();
        for (ip, port, spec) in pods {
            let kept = previous.by_ip.get(&ip).filter(|p| {
                p.port == port
                    && match &spec {
                        // `Arc<T: Eq>`'s `==` is a pointer comparison first.
                        SpecIn::Shared(s) => p.spec == *s,
                        SpecIn::Borrowed(s) => *p.spec == **s,
                    }
            });
            if let Some(p) = kept {
                by_ip.insert(ip, p.clone());
                continue;
            }
            let spec = match spec {
                SpecIn::Shared(s) => s,
                SpecIn::Borrowed(s) => Arc::new(s.clone()),
            };
            let mut get = |d: &Option<DirectionSpec>| {
                let d = d.as_ref()?;
                Some(match fresh.get(d) {
                    Some(c) => c.clone(),
                    None => {
                        let c = Arc::new(CompiledDirection::new(d));
                        fresh.insert(d.clone(), c.clone());
                        c
                    }
                })
            };
            let ingress = get(&spec.ingress);
            let egress = get(&spec.egress);
            by_ip.insert(
                ip,
                PodPolicy {
                    port,
                    spec,
                    ingress,
                    egress,
                },
            );
        }
        Policies { by_ip, node_ip }
    }

    /// No pod has a policy: every check is open.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.by_ip.is_empty()
    }

    /// Number of pods with a policy.
    pub fn len(&self) -> usize {
        self.by_ip.len()
    }

    /// The policy of the local pod at `ip`.
    #[inline]
    pub fn of(&self, ip: Ipv4Addr) -> Option<&PodPolicy> {
        self.by_ip.get(&ip)
    }

    /// The verdict on a new connection from `src` (before any SNAT) to `dst:port` (after
    /// DNAT): egress at `src`'s pod, ingress at `dst`'s, each only where that pod is local and
    /// isolated. A pod reaching itself, and the node reaching a pod, are always allowed.
    #[inline]
    pub fn check(&self, src: Ipv4Addr, dst: Ipv4Addr, proto: u8, port: Option<u16>) -> Verdict {
        let open = Verdict {
            egress: Check::Open,
            ingress: Check::Open,
        };
        if self.by_ip.is_empty() || src == dst {
            return open;
        }
        let side = |d: Option<&Arc<CompiledDirection>>, peer| match d {
            None => Check::Open,
            Some(c) => c
                .allows(peer, proto, port)
                .map_or(Check::Denied, Check::Allowed),
        };
        let egress = side(self.of(src).and_then(|p| p.egress.as_ref()), dst);
        let ingress = if Some(src) == self.node_ip {
            Check::Open
        } else {
            side(self.of(dst).and_then(|p| p.ingress.as_ref()), src)
        };
        Verdict { egress, ingress }
    }

    /// Every pod's policy, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&Ipv4Addr, &PodPolicy)> {
        self.by_ip.iter()
    }
}

#[cfg(test)]
mod tests;
