//! NetworkPolicy on the dataplane socket: what control tells `podswitchd` about one pod port's
//! effective policy, and what `podswitchd` answers about it.
//!
//! Control owns the Kubernetes semantics: it evaluates every pod and namespace selector, every
//! ipBlock and every named port against the pods and namespaces it knows, and sends the result
//! per pod port as address blocks and numeric port ranges ([`PolicySpec`]). The dataplane never
//! sees a label. A pod no policy selects has no spec (unrestricted); a direction is `Some` when
//! at least one policy isolates the pod in it, and then a packet of a new connection passes
//! when any of that direction's rules matches it (policies are additive).

use crate::Ipv4Prefix;
use serde::{Deserialize, Serialize};

/// The protocols a NetworkPolicy port can name. SCTP is matched as its own protocol (by its
/// ports, statelessly: the switch does not track SCTP associations), never as TCP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PolicyProtocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
    /// SCTP.
    Sctp,
}

impl PolicyProtocol {
    /// The IP protocol number.
    pub fn number(self) -> u8 {
        match self {
            PolicyProtocol::Tcp => 6,
            PolicyProtocol::Udp => 17,
            PolicyProtocol::Sctp => 132,
        }
    }
}

impl std::fmt::Display for PolicyProtocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PolicyProtocol::Tcp => "TCP",
            PolicyProtocol::Udp => "UDP",
            PolicyProtocol::Sctp => "SCTP",
        })
    }
}

/// `set_policy`: the effective NetworkPolicy of one pod port. Replaces the port's previous
/// one; `del_policy` removes it (the pod is then unrestricted).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PolicySpec {
    /// The pod's port (an `add_port` of role `pod`).
    pub port: String,
    /// Ingress isolation (what may connect to the pod); `None`: no policy selects the pod
    /// for ingress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress: Option<DirectionSpec>,
    /// Egress isolation (what the pod may connect to); `None`: no policy selects the pod
    /// for egress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress: Option<DirectionSpec>,
}

/// One direction a pod is isolated in: the policies isolating it and the union of what they
/// allow. No rule: everything is denied in this direction (default deny).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DirectionSpec {
    /// The NetworkPolicies that select the pod for this direction, as `namespace/name`,
    /// sorted. Denials are counted for each of them.
    pub policies: Vec<String>,
    /// What they allow. A packet passes when any rule matches it.
    #[serde(default)]
    pub rules: Vec<RuleSpec>,
}

/// One allow rule: a set of peers × a set of ports. A NetworkPolicy rule whose named ports
/// resolve to different numbers on different peers becomes several rules with the same
/// `policy` and `rule`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RuleSpec {
    /// Index into the direction's `policies`: the policy this rule comes from.
    pub policy: u32,
    /// The rule's index in that policy's `ingress` or `egress` list (what trace names).
    pub rule: u32,
    /// The peers (ingress: sources; egress: destinations) as address blocks; `None`: any
    /// address. `Some` and empty matches nothing (a selector that selects no pod).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peers: Option<Vec<PeerBlock>>,
    /// The destination ports; `None`: every protocol and port (ICMP included). `Some` and
    /// empty matches nothing (a named port no destination pod has).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ports: Option<Vec<PortRange>>,
}

/// A CIDR minus the CIDRs inside it (`ipBlock` with `except`); a pod is its address as a /32.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PeerBlock {
    /// The block.
    pub cidr: Ipv4Prefix,
    /// What is carved out of it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub except: Vec<Ipv4Prefix>,
}

/// Destination ports `first..=last` of one protocol (`port` with `endPort`; a protocol with no
/// port is `0..=65535`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PortRange {
    /// The protocol.
    pub protocol: PolicyProtocol,
    /// First port.
    pub first: u16,
    /// Last port (equal to `first` for a single port).
    pub last: u16,
}

/// `policies`: one pod port's effective policy as the dataplane enforces it, with what it
/// denied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyStatus {
    /// The pod's address.
    pub ip: std::net::Ipv4Addr,
    /// Kubernetes namespace and name of the pod, when control gave them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Pod name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    /// The spec (its `port` names the pod's port).
    pub spec: PolicySpec,
    /// Packets denied by ingress isolation since the port was created.
    pub ingress_denied: u64,
    /// Packets denied by egress isolation since the port was created.
    pub egress_denied: u64,
}
