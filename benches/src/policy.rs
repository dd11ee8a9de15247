//! NetworkPolicy rigs shared by `benches/policy.rs` and `src/bin/callgrind_pipeline.rs`: the
//! standard test tables with 10 000 extra pods, every one of them isolated, and a cluster of R
//! rules (R = 10, 1k or 10k) whose peers are drawn from those pods; TCP frames from pod A to
//! the [`SERVERS`] pods, port 80.
//!
//! The pods, as control would compile them (selectors already resolved to pod addresses):
//! - **Servers** ([`SERVERS`] extra pods, a random subset): ingress-isolated by all R rules.
//!   Rule *k* allows two pods' /32s (chosen by *k* and the pod's group) on one TCP port
//!   (8000 + *k* mod 1000), odd rules also a UDP range; every tenth rule is an ipBlock (a /24
//!   outside the pod range minus a /28). The middle rule, *k* = R/2, is the one that lets pod A
//!   in on TCP 80. So a check searches ~4R address intervals to find that one rule: the worst
//!   case, every rule of the cluster isolating the pod checked.
//! - **Every other extra pod**: ingress-isolated by 10 rules of the same shape. (All 10 000 with
//!   R rules is not a configuration anyone can send: the dataplane keeps each pod port's spec,
//!   so 10k pods × 10k rules would be ~15 GB of specs. Per packet only the checked pod's
//!   direction matters; the other pods make the address map the size of a real node's.)
//! - Pods are in [`GROUPS`] groups by index; a group's pods have equal specs (one compiled
//!   direction, as pods selected by the same policies share one), so the servers' 64 flows
//!   read 16 distinct structures, not one hot one.
//! - **Pod A** is egress-isolated by R rules: rule *k* allows TCP 80 to the /32s of the *k*-th
//!   of R slices of the 10 000 pods, so every destination is allowed by exactly one rule.
//!
//! Rules are spread over policies of ten rules each (`bench/pol-<k/10>`, rule index *k* mod 10),
//! as trace and `policies` would name them.

use crate::{extra_pod_ip, random_pod_subset};
use podswitch_dataplane::batch::PortId;
use podswitch_dataplane::tables::policy::Policies;
use podswitch_dataplane::tables::Tables;
use podswitch_dataplane::testkit::{self, GW_IP, POD_A, POD_A_IP};
use podswitch_proto::{
    DirectionSpec, Ipv4Prefix, PeerBlock, PolicyProtocol, PolicySpec, PortRange, RuleSpec,
};
use std::net::Ipv4Addr;
use std::sync::Arc;

/// Extra pods with a policy (`testkit::tables_with(.., PODS)`).
pub const PODS: usize = 10_000;

/// Distinct ingress specs among the extra pods (pod *i* has spec *i* mod `GROUPS`).
pub const GROUPS: usize = 16;

/// Rule counts the benches compare.
pub const RULE_SCALES: [usize; 3] = [10, 1_000, 10_000];

/// The destination port pod A's connections use (allowed both ways by one rule).
pub const ALLOWED_PORT: u16 = 80;

/// A port no rule allows from pod A (for the denied-path set-up check).
pub const DENIED_PORT: u16 = 81;

fn host(ip: Ipv4Addr) -> PeerBlock {
    PeerBlock {
        cidr: Ipv4Prefix { addr: ip, len: 32 },
        except: Vec::new(),
    }
}

fn tcp(port: u16) -> PortRange {
    PortRange {
        protocol: PolicyProtocol::Tcp,
        first: port,
        last: port,
    }
}

/// Policy names of a direction of `rules` rules: one policy per ten rules.
fn policy_names(rules: usize) -> Vec<String> {
    (0..rules.div_ceil(10))
        .map(|p| format!("bench/pol-{p:05}"))
        .collect()
}

/// The origin fields of rule `k`.
fn origin(k: usize) -> (u32, u32) {
    ((k / 10) as u32, (k % 10) as u32)
}

/// The ingress direction of group `g` with `rules` rules (see the module docs).
pub fn ingress_spec(rules: usize, g: usize) -> DirectionSpec {
    let n = rules;
    let rules = (0..n)
        .map(|k| {
            let (policy, rule) = origin(k);
            if k == n / 2 {
                return RuleSpec {
                    policy,
                    rule,
                    peers: Some(vec![host(POD_A_IP)]),
                    ports: Some(vec![tcp(ALLOWED_PORT)]),
                };
            }
            let peers = if k % 10 == 9 {
                // An ipBlock outside the pods' range: 10.246.x.0/24 minus its first /28.
                let net = Ipv4Addr::new(10, 246, (k / 10 % 256) as u8, 0);
                vec![PeerBlock {
                    cidr: Ipv4Prefix { addr: net, len: 24 },
                    except: vec![Ipv4Prefix { addr: net, len: 28 }],
                }]
            } else {
                let a = (k * 2 + g * 613) % PODS;
                vec![
                    host(extra_pod_ip(a)),
                    host(extra_pod_ip((a + PODS / 2) % PODS)),
                ]
            };
            let mut ports = vec![tcp(8000 + (k % 1000) as u16)];
            if k % 2 == 1 {
                ports.push(PortRange {
                    protocol: PolicyProtocol::Udp,
                    first: 5000,
                    last: 5100,
                });
            }
            RuleSpec {
                policy,
                rule,
                peers: Some(peers),
                ports: Some(ports),
            }
        })
        .collect();
    DirectionSpec {
        policies: policy_names(n),
        rules,
    }
}

/// Pod A's egress direction with `rules` rules: rule `k` allows TCP 80 to the `k`-th of
/// `rules` slices of the extra pods.
pub fn egress_spec(rules: usize) -> DirectionSpec {
    let n = rules;
    let per = PODS.div_ceil(n);
    let rules = (0..n)
        .map(|k| {
            let (policy, rule) = origin(k);
            let pods = (k * per).min(PODS)..((k + 1) * per).min(PODS);
            RuleSpec {
                policy,
                rule,
                peers: Some(pods.map(|i| host(extra_pod_ip(i))).collect()),
                ports: Some(vec![tcp(ALLOWED_PORT)]),
            }
        })
        .collect();
    DirectionSpec {
        policies: policy_names(n),
        rules,
    }
}

/// Pods ingress-isolated by every rule: the destinations of the benches' flows.
pub const SERVERS: usize = 64;

/// Rules of the other pods' ingress.
pub const OTHER_POD_RULES: usize = 10;

/// The extra-pod indices of the [`SERVERS`], a fixed random subset.
pub fn servers() -> Vec<usize> {
    random_pod_subset(PODS, SERVERS, 0x9e37)
}

/// Every pod's spec at `rules` rules: (address, port id, spec), pod A first.
pub fn pod_specs(rules: usize) -> Vec<(Ipv4Addr, PortId, PolicySpec)> {
    let groups =
        |n: usize| -> Vec<DirectionSpec> { (0..GROUPS).map(|g| ingress_spec(n, g)).collect() };
    let (big, small) = (groups(rules), groups(OTHER_POD_RULES));
    let mut is_server = vec![false; PODS];
    servers().into_iter().for_each(|i| is_server[i] = true);
    let mut v = Vec::with_capacity(PODS + 1);
    v.push((
        POD_A_IP,
        POD_A,
        PolicySpec {
            port: "pod-a".into(),
            ingress: None,
            egress: Some(egress_spec(rules)),
        },
    ));
    for (i, server) in is_server.into_iter().enumerate() {
        let ingress = if server { &big } else { &small }[i % GROUPS].clone();
        v.push((
            extra_pod_ip(i),
            3 + i as PortId,
            PolicySpec {
                port: format!("pod-x{i}"),
                ingress: Some(ingress),
                egress: None,
            },
        ));
    }
    v
}

/// The compiled policies of [`pod_specs`] (the node's address is the gateway, as the daemon
/// compiles it).
pub fn policies(specs: &[(Ipv4Addr, PortId, PolicySpec)]) -> Policies {
    Policies::new(
        specs.iter().map(|(ip, port, s)| (*ip, *port, s)),
        Some(GW_IP),
        &Policies::default(),
    )
}

/// The standard tables with [`PODS`] extra pods, and with their policies at `rules` rules
/// (`None`: no policy at all, the baseline).
pub fn tables_with_policies(rules: Option<usize>) -> Tables {
    let mut tables = testkit::tables_with(true, 1500, PODS);
    if let Some(rules) = rules {
        tables.policies = Arc::new(policies(&pod_specs(rules)));
        tables.policy_epoch = 1;
    }
    tables
}
