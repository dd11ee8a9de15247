//! One policy's rules compiled against the pod index, once whatever the number of pods the
//! policy applies to: peers become address blocks (pods' /32s, ipBlocks with their holes),
//! named ports become numbers (ingress: per selected pod, when its spec is built; egress: per
//! destination pod, splitting the rule).

use super::index::{KnownPod, PodId, PodIndex};
use super::selector::Selector;
use super::{namespace_of, normalise, ports, protocol, Ports};
use podswitch_k8s::k8s_openapi::api::networking::v1::{NetworkPolicyPeer, NetworkPolicyPort};
use podswitch_k8s::NetworkPolicy;
use podswitch_proto::{Ipv4Prefix, PeerBlock, PortRange};
use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

/// A rule on the wire: its peers and its ports (`None`: any).
pub(super) type Part = (Option<Vec<PeerBlock>>, Option<Vec<PortRange>>);

/// One rule of one policy, compiled once whatever the number of pods it applies to.
#[derive(Debug)]
pub(super) struct CompiledRule {
    pub rule: u32,
    /// Ingress rules whose named ports resolve on the selected pod keep them here.
    pub ingress_named: Option<(Option<Vec<PeerBlock>>, Ports)>,
    /// What the rule is on the wire (ingress without named ports, every egress rule: egress
    /// named ports are resolved per destination pod, splitting the rule by number).
    pub parts: Vec<Part>,
}

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub(super) enum Direction {
    Ingress,
    Egress,
}

/// A rule's `from`/`to` in `policy_ns`: the address blocks (`None`: any peer) and the pods
/// among them (every known pod when any peer), for named ports.
fn peers(
    index: &mut PodIndex,
    policy_ns: &str,
    peers: Option<&[NetworkPolicyPeer]>,
) -> (Option<Vec<PeerBlock>>, Vec<PodId>) {
    let peers = peers.unwrap_or_default();
    if peers.is_empty() {
        return (None, index.all());
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
            Some(ns) => index.select_namespaces(&Selector::new(ns)),
            None if pod_selector.is_some() => vec![policy_ns.to_string()],
            None => Vec::new(), // refused by validation: a peer needs something
        };
        let pod_selector = pod_selector.unwrap_or_else(Selector::everything);
        for ns in namespaces {
            pods.extend(index.select_pods(&ns, &pod_selector));
        }
    }
    pods.sort_unstable();
    pods.dedup();
    let ips: BTreeSet<Ipv4Addr> = pods
        .iter()
        .filter_map(|&i| index.pod(i).map(|p| p.ip))
        .collect();
    blocks.extend(ips.into_iter().map(|ip| PeerBlock {
        cidr: Ipv4Prefix { addr: ip, len: 32 },
        except: Vec::new(),
    }));
    blocks.sort_by(|a, b| (a.cidr, &a.except).cmp(&(b.cidr, &b.except)));
    blocks.dedup();
    (Some(blocks), pods)
}

/// What `named` means on `pod`: the numbers of its containers' ports of that name and protocol.
pub(super) fn resolve_named(
    pod: &KnownPod,
    named: &[(String, podswitch_proto::PolicyProtocol)],
) -> Vec<PortRange> {
    let Some(spec) = pod.manifest.as_ref().and_then(|m| m.spec.as_ref()) else {
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

/// A rule as written: its `from`/`to` and its `ports`.
type RuleParts<'a> = (
    Option<&'a [NetworkPolicyPeer]>,
    Option<&'a [NetworkPolicyPort]>,
);

pub(super) fn compile_rules(
    index: &mut PodIndex,
    policy: &NetworkPolicy,
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
    for (position, (peer_list, port_list)) in rules.into_iter().enumerate() {
        let rule = u32::try_from(position).unwrap_or(u32::MAX);
        let Some(ports) = ports(port_list) else {
            let (peers, _) = peers(index, ns, peer_list);
            out.push(CompiledRule {
                rule,
                ingress_named: None,
                parts: vec![(peers, None)],
            });
            continue;
        };
        let (peers, peer_pods) = peers(index, ns, peer_list);
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
            let Some(pod) = index.pod(i) else { continue };
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
