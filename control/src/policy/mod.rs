//! Stored NetworkPolicies, Namespaces and Pods → the dataplane's [`PolicySpec`]s, one per
//! attached pod port that some policy isolates, with every Kubernetes semantic resolved here
//! (`networking.k8s.io/v1`): pod and namespace selectors become the peers' addresses (/32s),
//! ipBlocks stay blocks with their holes, named ports become numbers. The dataplane never
//! sees a label.
//!
//! Cost: pods are indexed by namespace and by `key=value` label; each distinct (namespace,
//! pod selector) and each distinct namespace selector is evaluated once, and only the rules
//! of policies that select an attached pod are compiled.

mod selector;

pub use selector::{Requirement, Selector};

use crate::store::{decode_object, object_kind, PodRecord, StoreError};
use podswitch_k8s::k8s_openapi::api::core::v1::Pod;
use podswitch_k8s::k8s_openapi::api::networking::v1::{NetworkPolicyPeer, NetworkPolicyPort};
use podswitch_k8s::k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use podswitch_k8s::k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use podswitch_k8s::{Namespace, NetworkPolicy, NAMESPACE_NAME_LABEL};
use podswitch_proto::{
    DirectionSpec, Ipv4Prefix, PeerBlock, PolicyProtocol, PolicySpec, PortRange, RuleSpec,
};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::Ipv4Addr;

/// The policy-related objects of the store, decoded.
#[derive(Debug, Default, Clone)]
pub struct PolicyObjects {
    /// Every NetworkPolicy.
    pub policies: Vec<NetworkPolicy>,
    /// Every Namespace (their labels feed namespace selectors).
    pub namespaces: Vec<Namespace>,
    /// Every Pod (labels, containerPorts, and `status.podIPs` of pods not attached here).
    pub pods: Vec<Pod>,
}

/// The store's key prefixes of the kinds compiled here (`ObjectKey`'s display, lower case).
pub const KINDS: [&str; 3] = ["networkpolicy", "namespace", "pod"];

/// Whether a stored object key (`pod default/web`) is of a kind compiled here.
pub fn is_policy_key(key: &str) -> bool {
    object_kind(key).is_some_and(|kind| KINDS.contains(&kind))
}

impl PolicyObjects {
    /// Decodes the stored JSON of the objects `is_policy_key` selects; others are ignored.
    pub fn decode<'a>(
        objects: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<PolicyObjects, StoreError> {
        let mut out = PolicyObjects::default();
        for (key, json) in objects {
            match object_kind(key) {
                Some("networkpolicy") => out.policies.push(decode_object(key, json)?),
                Some("namespace") => out.namespaces.push(decode_object(key, json)?),
                Some("pod") => out.pods.push(decode_object(key, json)?),
                _ => {}
            }
        }
        Ok(out)
    }
}

fn namespace_of(meta: &ObjectMeta) -> &str {
    meta.namespace.as_deref().unwrap_or("default")
}

static NO_LABELS: BTreeMap<String, String> = BTreeMap::new();

/// A pod the compiler knows: attached here (address from its record) or only stored.
struct KnownPod<'a> {
    namespace: &'a str,
    ip: Ipv4Addr,
    labels: &'a BTreeMap<String, String>,
    manifest: Option<&'a Pod>,
    attached: Option<&'a PodRecord>,
}

/// A namespace with pods: its labels, its pods, and its pods by `key=value` label.
#[derive(Default)]
struct NamespaceIndex<'a> {
    labels: BTreeMap<String, String>,
    pods: Vec<usize>,
    by_label: HashMap<(&'a str, &'a str), Vec<usize>>,
}

/// The index plus the caches of selector results.
struct Resolver<'a> {
    pods: Vec<KnownPod<'a>>,
    namespaces: BTreeMap<&'a str, NamespaceIndex<'a>>,
    pod_selections: HashMap<(&'a str, Selector), Vec<usize>>,
    namespace_selections: HashMap<Selector, Vec<&'a str>>,
}

impl<'a> Resolver<'a> {
    fn new(objects: &'a PolicyObjects, attached: &[&'a PodRecord]) -> Resolver<'a> {
        let manifests: HashMap<(&str, &str), &Pod> = objects
            .pods
            .iter()
            .map(|p| {
                let name = p.metadata.name.as_deref().unwrap_or_default();
                ((namespace_of(&p.metadata), name), p)
            })
            .collect();
        let mut pods = Vec::new();
        let mut attached_names = HashSet::new();
        for record in attached {
            // An attachment the runtime gave no Kubernetes namespace is no Kubernetes pod: no
            // selector selects it, no policy isolates it.
            if record.namespace.is_empty() {
                continue;
            }
            attached_names.insert((record.namespace.as_str(), record.name.as_str()));
            let manifest = manifests
                .get(&(record.namespace.as_str(), record.name.as_str()))
                .copied();
            pods.push(KnownPod {
                namespace: &record.namespace,
                ip: record.ip,
                labels: manifest
                    .and_then(|m| m.metadata.labels.as_ref())
                    .unwrap_or(&NO_LABELS),
                manifest,
                attached: Some(record),
            });
        }
        for pod in &objects.pods {
            let name = pod.metadata.name.as_deref().unwrap_or_default();
            let namespace = namespace_of(&pod.metadata);
            if attached_names.contains(&(namespace, name)) {
                continue;
            }
            // A hostNetwork pod's address is its node's, and a finished pod's address may
            // already be another pod's: neither is a pod address a selector can mean (Calico
            // and Cilium leave both out too).
            let host_network = pod
                .spec
                .as_ref()
                .and_then(|s| s.host_network)
                .unwrap_or(false);
            let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
            if host_network || matches!(phase, Some("Succeeded" | "Failed")) {
                continue;
            }
            let status = pod.status.as_ref();
            let ips: BTreeSet<Ipv4Addr> = status
                .and_then(|s| s.pod_ips.as_ref())
                .into_iter()
                .flatten()
                .map(|p| p.ip.as_str())
                .chain(status.and_then(|s| s.pod_ip.as_deref()))
                .filter_map(|ip| ip.parse().ok())
                .collect();
            for ip in ips {
                pods.push(KnownPod {
                    namespace,
                    ip,
                    labels: pod.metadata.labels.as_ref().unwrap_or(&NO_LABELS),
                    manifest: Some(pod),
                    attached: None,
                });
            }
        }
        let stored_labels: HashMap<&str, &BTreeMap<String, String>> = objects
            .namespaces
            .iter()
            .filter_map(|n| Some((n.metadata.name.as_deref()?, n.metadata.labels.as_ref()?)))
            .collect();
        let mut namespaces: BTreeMap<&str, NamespaceIndex> = BTreeMap::new();
        for (i, pod) in pods.iter().enumerate() {
            let ns = namespaces.entry(pod.namespace).or_insert_with(|| {
                let mut labels = stored_labels
                    .get(pod.namespace)
                    .map(|l| (*l).clone())
                    .unwrap_or_default();
                labels.insert(NAMESPACE_NAME_LABEL.to_string(), pod.namespace.to_string());
                NamespaceIndex {
                    labels,
                    ..NamespaceIndex::default()
                }
            });
            ns.pods.push(i);
            for (k, v) in pod.labels {
                ns.by_label.entry((k, v)).or_default().push(i);
            }
        }
        Resolver {
            pods,
            namespaces,
            pod_selections: HashMap::new(),
            namespace_selections: HashMap::new(),
        }
    }

    /// The pods of `namespace` that `selector` matches, ascending.
    fn select_pods(&mut self, namespace: &'a str, selector: &Selector) -> &[usize] {
        let key = (namespace, selector.clone());
        if !self.pod_selections.contains_key(&key) {
            let found = match self.namespaces.get(namespace) {
                None => Vec::new(),
                Some(ns) if selector.is_everything() => ns.pods.clone(),
                Some(ns) => {
                    let mut found: Vec<usize> = match selector.narrowest_in() {
                        Some((k, values)) => values
                            .iter()
                            .filter_map(|v| ns.by_label.get(&(k, v.as_str())))
                            .flatten()
                            .copied()
                            .filter(|&i| selector.matches(self.pods[i].labels))
                            .collect(),
                        None => ns
                            .pods
                            .iter()
                            .copied()
                            .filter(|&i| selector.matches(self.pods[i].labels))
                            .collect(),
                    };
                    found.sort_unstable();
                    found.dedup();
                    found
                }
            };
            self.pod_selections.insert(key.clone(), found);
        }
        self.pod_selections
            .get(&key)
            .map(Vec::as_slice)
            .unwrap_or_default()
    }

    /// The namespaces (with pods) whose labels `selector` matches.
    fn select_namespaces(&mut self, selector: &Selector) -> Vec<&'a str> {
        if let Some(found) = self.namespace_selections.get(selector) {
            return found.clone();
        }
        let found: Vec<&'a str> = self
            .namespaces
            .iter()
            .filter(|(_, ns)| selector.matches(&ns.labels))
            .map(|(name, _)| *name)
            .collect();
        self.namespace_selections
            .insert(selector.clone(), found.clone());
        found
    }

    /// A rule's `from`/`to` in `policy_ns`: the address blocks (`None`: any peer) and the pods
    /// among them (every known pod when any peer), for named ports.
    fn peers(
        &mut self,
        policy_ns: &'a str,
        peers: Option<&[NetworkPolicyPeer]>,
    ) -> (Option<Vec<PeerBlock>>, Vec<usize>) {
        let peers = peers.unwrap_or_default();
        if peers.is_empty() {
            return (None, (0..self.pods.len()).collect());
        }
        let mut pods = Vec::new();
        let mut blocks = Vec::new();
        for peer in peers {
            if let Some(block) = &peer.ip_block {
                // IPv6 blocks match no IPv4 packet.
                if let Ok(cidr) = block.cidr.parse::<Ipv4Prefix>() {
                    let mut except: Vec<Ipv4Prefix> = block
                        .except
                        .iter()
                        .flatten()
                        .filter_map(|e| e.parse::<Ipv4Prefix>().ok())
                        .map(|e| e.network())
                        .collect();
                    except.sort_unstable();
                    except.dedup();
                    blocks.push(PeerBlock {
                        cidr: cidr.network(),
                        except,
                    });
                }
                continue;
            }
            let pod_selector = peer.pod_selector.as_ref().map(Selector::new);
            let namespaces = match &peer.namespace_selector {
                Some(ns) => self.select_namespaces(&Selector::new(ns)),
                None if pod_selector.is_some() => vec![policy_ns],
                None => Vec::new(), // refused by validation: a peer needs something
            };
            let pod_selector = pod_selector.unwrap_or_else(Selector::everything);
            for ns in namespaces {
                pods.extend_from_slice(self.select_pods(ns, &pod_selector));
            }
        }
        pods.sort_unstable();
        pods.dedup();
        let ips: BTreeSet<Ipv4Addr> = pods.iter().map(|&i| self.pods[i].ip).collect();
        blocks.extend(ips.into_iter().map(|ip| PeerBlock {
            cidr: Ipv4Prefix { addr: ip, len: 32 },
            except: Vec::new(),
        }));
        blocks.sort_by(|a, b| (a.cidr, &a.except).cmp(&(b.cidr, &b.except)));
        blocks.dedup();
        (Some(blocks), pods)
    }
}

fn protocol(p: Option<&str>) -> Option<PolicyProtocol> {
    match p.unwrap_or("TCP") {
        "TCP" => Some(PolicyProtocol::Tcp),
        "UDP" => Some(PolicyProtocol::Udp),
        "SCTP" => Some(PolicyProtocol::Sctp),
        _ => None,
    }
}

/// Sorted, with overlapping and adjacent ranges of one protocol merged.
fn normalise(mut ranges: Vec<PortRange>) -> Vec<PortRange> {
    ranges.sort_unstable();
    let mut out: Vec<PortRange> = Vec::with_capacity(ranges.len());
    for r in ranges {
        match out.last_mut() {
            Some(last)
                if last.protocol == r.protocol
                    && u32::from(r.first) <= u32::from(last.last) + 1 =>
            {
                last.last = last.last.max(r.last);
            }
            _ => out.push(r),
        }
    }
    out
}

/// A rule's `ports`, split into numeric ranges and named ports; `None`: all ports.
struct Ports {
    numeric: Vec<PortRange>,
    named: Vec<(String, PolicyProtocol)>,
}

fn ports(list: Option<&[NetworkPolicyPort]>) -> Option<Ports> {
    let list = list.unwrap_or_default();
    if list.is_empty() {
        return None;
    }
    let mut out = Ports {
        numeric: Vec::new(),
        named: Vec::new(),
    };
    for entry in list {
        let Some(proto) = protocol(entry.protocol.as_deref()) else {
            continue;
        };
        match &entry.port {
            None => out.numeric.push(PortRange {
                protocol: proto,
                first: 0,
                last: u16::MAX,
            }),
            Some(IntOrString::Int(first)) => {
                let last = entry.end_port.unwrap_or(*first);
                if let (Ok(first), Ok(last)) = (u16::try_from(*first), u16::try_from(last)) {
                    if first <= last {
                        out.numeric.push(PortRange {
                            protocol: proto,
                            first,
                            last,
                        });
                    }
                }
            }
            Some(IntOrString::String(name)) => out.named.push((name.clone(), proto)),
        }
    }
    out.numeric = normalise(out.numeric);
    Some(out)
}

/// What `named` means on `pod`: the numbers of its containers' ports of that name and protocol.
fn resolve_named(pod: &KnownPod<'_>, named: &[(String, PolicyProtocol)]) -> Vec<PortRange> {
    let Some(spec) = pod.manifest.and_then(|m| m.spec.as_ref()) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for c in &spec.containers {
        for p in c.ports.iter().flatten() {
            let (Some(name), Some(proto), Ok(number)) = (
                p.name.as_deref(),
                protocol(p.protocol.as_deref()),
                u16::try_from(p.container_port),
            ) else {
                continue;
            };
            if named.iter().any(|(n, pr)| n == name && *pr == proto) {
                out.push(PortRange {
                    protocol: proto,
                    first: number,
                    last: number,
                });
            }
        }
    }
    normalise(out)
}

/// A rule on the wire: its peers and its ports (`None`: any).
type Part = (Option<Vec<PeerBlock>>, Option<Vec<PortRange>>);

/// A rule as written: its `from`/`to` and its `ports`.
type RuleParts<'a> = (
    Option<&'a [NetworkPolicyPeer]>,
    Option<&'a [NetworkPolicyPort]>,
);

/// One rule of one policy, compiled once whatever the number of pods it applies to.
struct CompiledRule {
    rule: u32,
    /// Ingress rules whose named ports resolve on the selected pod keep them here.
    ingress_named: Option<(Option<Vec<PeerBlock>>, Ports)>,
    /// What the rule is on the wire (ingress without named ports, every egress rule: egress
    /// named ports are resolved per destination pod, splitting the rule by number).
    parts: Vec<Part>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Direction {
    Ingress,
    Egress,
}

/// The policyTypes of a policy, defaulted as the API server does when absent or empty
/// (`SetDefaults_NetworkPolicy`): always Ingress, Egress when `spec.egress` has a rule.
/// Kubernetes tests `len(spec.Egress) != 0`, so `egress: []` without policyTypes isolates
/// nothing for egress.
fn policy_types(policy: &NetworkPolicy) -> (bool, bool) {
    let Some(spec) = &policy.spec else {
        return (true, false);
    };
    match spec.policy_types.as_deref() {
        Some(types) if !types.is_empty() => (
            types.iter().any(|t| t == "Ingress"),
            types.iter().any(|t| t == "Egress"),
        ),
        _ => (true, spec.egress.as_ref().is_some_and(|e| !e.is_empty())),
    }
}

fn compile_rules<'a>(
    resolver: &mut Resolver<'a>,
    policy: &'a NetworkPolicy,
    direction: Direction,
) -> Vec<CompiledRule> {
    let ns = namespace_of(&policy.metadata);
    let Some(spec) = &policy.spec else {
        return Vec::new();
    };
    let rules: Vec<RuleParts<'_>> = match direction {
        Direction::Ingress => spec
            .ingress
            .iter()
            .flatten()
            .map(|r| (r.from.as_deref(), r.ports.as_deref()))
            .collect(),
        Direction::Egress => spec
            .egress
            .iter()
            .flatten()
            .map(|r| (r.to.as_deref(), r.ports.as_deref()))
            .collect(),
    };
    let mut out = Vec::with_capacity(rules.len());
    for (index, (peer_list, port_list)) in rules.into_iter().enumerate() {
        let rule = u32::try_from(index).unwrap_or(u32::MAX);
        let (peers, peer_pods) = resolver.peers(ns, peer_list);
        let Some(ports) = ports(port_list) else {
            out.push(CompiledRule {
                rule,
                ingress_named: None,
                parts: vec![(peers, None)],
            });
            continue;
        };
        if ports.named.is_empty() {
            out.push(CompiledRule {
                rule,
                ingress_named: None,
                parts: vec![(peers, Some(ports.numeric))],
            });
            continue;
        }
        if direction == Direction::Ingress {
            out.push(CompiledRule {
                rule,
                ingress_named: Some((peers, ports)),
                parts: Vec::new(),
            });
            continue;
        }
        // Egress named ports: per destination pod; an ipBlock peer never matches one.
        let mut parts = Vec::new();
        if !ports.numeric.is_empty() {
            parts.push((peers.clone(), Some(ports.numeric.clone())));
        }
        let mut by_ports: BTreeMap<Vec<PortRange>, BTreeSet<Ipv4Addr>> = BTreeMap::new();
        for &i in &peer_pods {
            let pod = &resolver.pods[i];
            let resolved = resolve_named(pod, &ports.named);
            if !resolved.is_empty() {
                by_ports.entry(resolved).or_default().insert(pod.ip);
            }
        }
        for (resolved, ips) in by_ports {
            let blocks = ips
                .into_iter()
                .map(|ip| PeerBlock {
                    cidr: Ipv4Prefix { addr: ip, len: 32 },
                    except: Vec::new(),
                })
                .collect();
            parts.push((Some(blocks), Some(resolved)));
        }
        if parts.is_empty() {
            parts.push((peers, Some(Vec::new())));
        }
        out.push(CompiledRule {
            rule,
            ingress_named: None,
            parts,
        });
    }
    out
}

/// One `PolicySpec` per attached pod port that at least one policy isolates, sorted by port.
/// `pods` are the attachments the dataplane gets ports for.
pub fn compile_policies<'a>(objects: &'a PolicyObjects, pods: &[&'a PodRecord]) -> Vec<PolicySpec> {
    let mut resolver = Resolver::new(objects, pods);
    // Per attached pod (its index in resolver.pods), the policies isolating it.
    let mut ingress: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    let mut egress: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (p, policy) in objects.policies.iter().enumerate() {
        let ns = namespace_of(&policy.metadata);
        let selector = policy
            .spec
            .as_ref()
            .and_then(|s| s.pod_selector.as_ref())
            .map(Selector::new)
            .unwrap_or_else(Selector::everything);
        let (is_ingress, is_egress) = policy_types(policy);
        let selected: Vec<usize> = resolver.select_pods(ns, &selector).to_vec();
        for i in selected {
            if resolver.pods[i].attached.is_none() {
                continue;
            }
            if is_ingress {
                ingress.entry(i).or_default().push(p);
            }
            if is_egress {
                egress.entry(i).or_default().push(p);
            }
        }
    }
    let mut compiled: HashMap<(usize, bool), Vec<CompiledRule>> = HashMap::new();
    let mut direction_spec = |resolver: &mut Resolver<'a>,
                              pod: usize,
                              policies: Option<&Vec<usize>>,
                              direction: Direction|
     -> Option<DirectionSpec> {
        let policies = policies?;
        let mut named: Vec<(String, usize)> = policies
            .iter()
            .map(|&p| {
                let m = &objects.policies[p].metadata;
                (
                    format!(
                        "{}/{}",
                        namespace_of(m),
                        m.name.as_deref().unwrap_or_default()
                    ),
                    p,
                )
            })
            .collect();
        named.sort();
        named.dedup_by(|a, b| a.0 == b.0);
        let mut rules = Vec::new();
        for (position, (_, p)) in named.iter().enumerate() {
            let position = u32::try_from(position).unwrap_or(u32::MAX);
            let compiled = compiled
                .entry((*p, direction == Direction::Ingress))
                .or_insert_with(|| compile_rules(resolver, &objects.policies[*p], direction));
            for rule in compiled.iter() {
                if let Some((peers, ports)) = &rule.ingress_named {
                    let mut resolved = ports.numeric.clone();
                    resolved.extend(resolve_named(&resolver.pods[pod], &ports.named));
                    rules.push(RuleSpec {
                        policy: position,
                        rule: rule.rule,
                        peers: peers.clone(),
                        ports: Some(normalise(resolved)),
                    });
                }
                for (peers, ports) in &rule.parts {
                    rules.push(RuleSpec {
                        policy: position,
                        rule: rule.rule,
                        peers: peers.clone(),
                        ports: ports.clone(),
                    });
                }
            }
        }
        Some(DirectionSpec {
            policies: named.into_iter().map(|(n, _)| n).collect(),
            rules,
        })
    };
    let isolated: BTreeSet<usize> = ingress.keys().chain(egress.keys()).copied().collect();
    let mut specs = Vec::with_capacity(isolated.len());
    for i in isolated {
        let Some(record) = resolver.pods[i].attached else {
            continue;
        };
        let ingress_spec = direction_spec(&mut resolver, i, ingress.get(&i), Direction::Ingress);
        let egress_spec = direction_spec(&mut resolver, i, egress.get(&i), Direction::Egress);
        specs.push(PolicySpec {
            port: record.port.clone(),
            ingress: ingress_spec,
            egress: egress_spec,
        });
    }
    specs.sort_by(|a, b| a.port.cmp(&b.port));
    specs
}

/// The specs by port, for diffs.
pub fn by_port(specs: Vec<PolicySpec>) -> BTreeMap<String, PolicySpec> {
    specs.into_iter().map(|s| (s.port.clone(), s)).collect()
}

#[cfg(test)]
mod tests;
