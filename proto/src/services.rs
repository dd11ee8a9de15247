//! Services on the dataplane socket: what control tells `podswitchd` about one Service port
//! (its frontends and backends), and what `podswitchd` answers about Services and conntrack.
//!
//! The unit is one **Service port** (kube-proxy's `ServicePortName`): `namespace/name:port`,
//! one protocol, the frontends that reach it (ClusterIP, externalIPs, LoadBalancer ingress IPs,
//! NodePort) and its endpoints with their conditions. Control resolves named target ports from
//! the EndpointSlices and sends each endpoint with its own port; the dataplane applies
//! Kubernetes' selection rules (ready first, serving-and-terminating only when no endpoint is
//! ready, traffic policy Local) when it builds the table, so dumps show every endpoint with its
//! state.

use serde::{Deserialize, Serialize};
use std::net::Ipv4Addr;

/// A transport protocol a Service port can carry in this switch. SCTP is refused by control
/// with a message; it never reaches the dataplane.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum L4Protocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

impl L4Protocol {
    /// The IP protocol number.
    pub fn number(self) -> u8 {
        match self {
            L4Protocol::Tcp => 6,
            L4Protocol::Udp => 17,
        }
    }
}

impl std::fmt::Display for L4Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            L4Protocol::Tcp => "TCP",
            L4Protocol::Udp => "UDP",
        })
    }
}

/// How a Service port picks an endpoint for a new connection.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Algorithm {
    /// Maglev consistent hashing on the connection's 5-tuple: a change of endpoints moves
    /// only the connections it must.
    #[default]
    Maglev,
    /// Uniformly random, as kube-proxy's iptables mode does.
    Random,
}

/// Which address family of frontend this is: decides which traffic policy applies
/// (`internalTrafficPolicy` for ClusterIP, `externalTrafficPolicy` for the rest).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FrontendKind {
    /// `spec.clusterIP` (and `clusterIPs`).
    ClusterIp,
    /// `spec.externalIPs`.
    ExternalIp,
    /// `status.loadBalancer.ingress[].ip`.
    LoadBalancer,
    /// `spec.ports[].nodePort`, on every node address (`ip` is `0.0.0.0`).
    NodePort,
}

impl FrontendKind {
    /// Whether `externalTrafficPolicy` governs this frontend (else `internalTrafficPolicy`).
    pub fn is_external(self) -> bool {
        !matches!(self, FrontendKind::ClusterIp)
    }
}

/// One address and port that reaches a Service port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Frontend {
    /// What kind of frontend.
    pub kind: FrontendKind,
    /// The virtual IP; `0.0.0.0` for a NodePort (every node address).
    pub ip: Ipv4Addr,
    /// The port clients connect to (`port`, or `nodePort` for a NodePort frontend).
    pub port: u16,
}

/// One endpoint of a Service port, with its EndpointSlice conditions.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct BackendSpec {
    /// The endpoint's address.
    pub ip: Ipv4Addr,
    /// The port it listens on (the resolved `targetPort`).
    pub port: u16,
    /// `conditions.ready` (absent in the slice counts as true).
    pub ready: bool,
    /// `conditions.serving` (absent: as `ready`).
    pub serving: bool,
    /// `conditions.terminating` (absent: false).
    pub terminating: bool,
    /// The endpoint runs on this node (`nodeName` is this node, or its address is in this
    /// node's pod CIDR): what traffic policy `Local` keeps.
    pub local: bool,
    /// `namespace/pod` of the endpoint's `targetRef`, for dumps and traces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}

impl BackendSpec {
    /// An endpoint that is ready (so serving, not terminating), on this node, with no target:
    /// what an EndpointSlice endpoint with default conditions on this node is.
    pub fn ready(ip: Ipv4Addr, port: u16) -> BackendSpec {
        BackendSpec {
            ip,
            port,
            ready: true,
            serving: true,
            terminating: false,
            local: true,
            target: None,
        }
    }
}

/// One Service port as the dataplane needs it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ServiceSpec {
    /// `namespace/name:port` (`namespace/name` alone when the port has no name): unique key.
    pub name: String,
    /// The protocol of every frontend and backend.
    pub protocol: L4Protocol,
    /// How clients reach it. Two Service ports may not share a frontend (same IP, port and
    /// protocol): the daemon refuses the transaction naming both.
    pub frontends: Vec<Frontend>,
    /// Every endpoint, whatever its conditions.
    #[serde(default)]
    pub backends: Vec<BackendSpec>,
    /// How an endpoint is chosen.
    #[serde(default)]
    pub algorithm: Algorithm,
    /// `sessionAffinity: ClientIP`: a client address keeps its endpoint for this long after its
    /// last new connection. `None` for no affinity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity_timeout_secs: Option<u32>,
    /// `internalTrafficPolicy: Local`: ClusterIP frontends use local endpoints only.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub internal_local: bool,
    /// `externalTrafficPolicy: Local`: the other frontends use local endpoints only.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub external_local: bool,
}

impl ServiceSpec {
    /// A Service port reached at `vip:port` alone (a ClusterIP), with the Kubernetes defaults:
    /// Maglev, no session affinity, traffic policies `Cluster`.
    pub fn cluster_ip(
        name: impl Into<String>,
        protocol: L4Protocol,
        vip: Ipv4Addr,
        port: u16,
        backends: Vec<BackendSpec>,
    ) -> ServiceSpec {
        ServiceSpec {
            name: name.into(),
            protocol,
            frontends: vec![Frontend {
                kind: FrontendKind::ClusterIp,
                ip: vip,
                port,
            }],
            backends,
            algorithm: Algorithm::Maglev,
            affinity_timeout_secs: None,
            internal_local: false,
            external_local: false,
        }
    }
}

/// One Service port as the daemon holds it, with the endpoints it currently selects.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceInfo {
    /// The spec as applied.
    pub spec: ServiceSpec,
    /// Per backend (same order as `spec.backends`): whether new connections may go to it from
    /// a ClusterIP frontend and from the others (traffic policies and conditions applied).
    pub selected: Vec<BackendUse>,
    /// Size of each Maglev lookup table (entries), 0 for `random`.
    pub maglev_table_size: u32,
    /// Connections in conntrack through this Service port, per backend (same order).
    pub connections: Vec<u64>,
}

/// Whether a backend takes new connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackendUse {
    /// From ClusterIP frontends.
    pub internal: bool,
    /// From externalIP, LoadBalancer and NodePort frontends.
    pub external: bool,
}

/// Which conntrack entries a dump returns; every set field must match.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConntrackFilter {
    /// Either tuple has this address as source or destination.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<Ipv4Addr>,
    /// Either tuple has this port as source or destination.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// This protocol.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<u8>,
    /// Through this Service port (by name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// At most this many entries (default 1000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
}

/// One direction of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TupleInfo {
    /// Source address.
    pub src: Ipv4Addr,
    /// Destination address.
    pub dst: Ipv4Addr,
    /// Source port (ICMP: echo identifier).
    pub src_port: u16,
    /// Destination port (ICMP: echo identifier).
    pub dst_port: u16,
}

/// One conntrack entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnInfo {
    /// IP protocol number.
    pub protocol: u8,
    /// As the first packet came in.
    pub original: TupleInfo,
    /// As replies come in (after NAT: from the backend to the client, or the SNAT address).
    pub reply: TupleInfo,
    /// State name: `syn_sent`, `established`, `time_wait`, `udp_unreplied`, `udp_replied`, ...
    pub state: String,
    /// The Service port whose DNAT this is, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// Whether the source is translated too (hairpin).
    #[serde(default)]
    pub snat: bool,
    /// Seconds since the first packet.
    pub age_secs: u64,
    /// Seconds until it expires unless more packets come.
    pub expires_in_secs: u64,
    /// Packets seen, original and reply direction.
    pub packets: [u64; 2],
    /// Bytes seen, original and reply direction.
    pub bytes: [u64; 2],
}

/// The answer to a conntrack dump.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConntrackDump {
    /// Entries in the table (all of them, not only those returned).
    pub total: usize,
    /// The table's hard capacity.
    pub capacity: usize,
    /// Matching entries, at most the filter's limit.
    pub entries: Vec<ConnInfo>,
}

/// A packet described for `trace`: run through the live pipeline without being sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TracePacket {
    /// The port it arrives on (by name).
    pub in_port: String,
    /// Source address; default the input port's pod address (or the gateway for the host port).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub src: Option<Ipv4Addr>,
    /// Destination address.
    pub dst: Ipv4Addr,
    /// `tcp`, `udp` or `icmp` (an echo request).
    pub protocol: String,
    /// Source port (default 40000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub src_port: Option<u16>,
    /// Destination port (default 80).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dst_port: Option<u16>,
}

/// One stage's decision in a trace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceStep {
    /// The stage.
    pub stage: String,
    /// Its verdict: `continue`, `output <port>`, `drop <reason>`.
    pub verdict: String,
    /// Why, with the Kubernetes object behind it where there is one.
    pub note: String,
}

/// The answer to a trace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceResult {
    /// Every stage that looked at the packet, in order.
    pub steps: Vec<TraceStep>,
    /// The final verdict.
    pub verdict: String,
}
