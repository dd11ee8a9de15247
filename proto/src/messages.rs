//! Requests to `podswitchd` and its responses.

use crate::net::{mac, Ipv4Prefix, MacAddr};
pub use crate::policy::*;
pub use crate::services::*;
use serde::{Deserialize, Serialize};
use std::net::Ipv4Addr;

mod decode;

/// One request on the socket. Every request gets exactly one [`Response`].
///
/// Decoded by hand (`messages/decode.rs`): the body straight into its type when
/// `"request"` comes before the body's fields, as every client here writes it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Request {
    /// Must equal the daemon's [`crate::PROTOCOL_VERSION`].
    pub version: u32,
    /// What is asked.
    #[serde(flatten)]
    pub body: RequestBody,
}

impl Request {
    /// A request in this crate's protocol version.
    pub fn new(body: RequestBody) -> Self {
        Self {
            version: crate::PROTOCOL_VERSION,
            body,
        }
    }
}

/// What a request asks for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "request", rename_all = "snake_case")]
pub enum RequestBody {
    /// Apply a set of table changes atomically.
    Apply(Transaction),
    /// Daemon identity, generation and sizes.
    Status,
    /// The ports and their bindings.
    Ports,
    /// The routing table.
    Routes,
    /// The IP → MAC bindings the switch knows: configured ones (pods, host, gateway) and the
    /// uplink next hops it resolved by ARP.
    Neighbors,
    /// Counters summed over the workers.
    Counters,
    /// The Service ports, their backends and what each selects.
    Services,
    /// Conntrack entries matching a filter.
    Conntrack(ConntrackFilter),
    /// Run a described packet through the live pipeline without sending it.
    Trace(TracePacket),
    /// Each pod port's effective NetworkPolicy and what it denied.
    Policies,
}

impl RequestBody {
    /// The request's wire name, for messages.
    pub fn name(&self) -> &'static str {
        match self {
            RequestBody::Apply(_) => "apply",
            RequestBody::Status => "status",
            RequestBody::Ports => "ports",
            RequestBody::Routes => "routes",
            RequestBody::Neighbors => "neighbors",
            RequestBody::Counters => "counters",
            RequestBody::Services => "services",
            RequestBody::Conntrack(_) => "conntrack",
            RequestBody::Trace(_) => "trace",
            RequestBody::Policies => "policies",
        }
    }
}

impl Response {
    /// The response's wire name, for messages.
    pub fn name(&self) -> &'static str {
        match self {
            Response::Applied { .. } => "applied",
            Response::Status(_) => "status",
            Response::Ports { .. } => "ports",
            Response::Routes { .. } => "routes",
            Response::Neighbors { .. } => "neighbors",
            Response::Counters(_) => "counters",
            Response::Services { .. } => "services",
            Response::Conntrack(_) => "conntrack",
            Response::Trace(_) => "trace",
            Response::Policies { .. } => "policies",
            Response::Error { .. } => "error",
        }
    }
}

/// Changes applied together: either every op takes effect, in order, or none does.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Transaction {
    /// When set, the daemon records it as the generation of the tables after this transaction.
    /// The control process numbers its transactions so it can tell what a restarted peer holds.
    #[serde(default)]
    pub generation: Option<u64>,
    /// When true the ops describe the *whole* configuration: the daemon starts from nothing,
    /// keeps every existing port whose spec is unchanged as it is (no traffic disturbed), and
    /// removes whatever the ops do not mention. This is how a (re)started control process
    /// resynchronises a dataplane whatever it holds.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub replace: bool,
    /// The operations, applied in order.
    pub ops: Vec<Op>,
}

/// One change to the dataplane's configuration.
///
/// Decoded by hand (`messages/decode.rs`): the fields straight into the variant when `"op"`
/// comes first, as every client here writes it; the derived decoder otherwise.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    /// Set the node's addressing: the gateway the switch answers for, inside the pod CIDR.
    SetNode(NodeSpec),
    /// Create a port.
    AddPort(PortSpec),
    /// Remove a port by name; its connected route goes with it.
    DelPort {
        /// The port's name.
        name: String,
    },
    /// Add or replace the route for a prefix.
    AddRoute(RouteSpec),
    /// Remove the route for exactly this prefix.
    DelRoute {
        /// The prefix.
        prefix: Ipv4Prefix,
    },
    /// Add or replace one Service port (by its name). Replacing keeps the connections of
    /// endpoints that stay; UDP connections to endpoints that went are flushed.
    SetService(ServiceSpec),
    /// Remove one Service port by name; its UDP connections are flushed.
    DelService {
        /// The Service port's name (`namespace/name:port`).
        name: String,
    },
    /// Set one pod port's effective NetworkPolicy (replacing what it had). A port with a
    /// policy cannot be removed: `del_policy` first.
    SetPolicy(PolicySpec),
    /// Remove one pod port's policy: the pod is unrestricted again.
    DelPolicy {
        /// The pod's port name.
        port: String,
    },
}

/// The node's addressing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeSpec {
    /// The node's pod CIDR, e.g. `10.244.1.0/24`.
    pub pod_cidr: Ipv4Prefix,
    /// The gateway address (conventionally the first address of the pod CIDR).
    pub gateway: Ipv4Addr,
    /// The switch's own MAC, answered for the gateway and used as source of routed frames.
    /// Defaults to the daemon's configured MAC.
    #[serde(default, with = "mac::option", skip_serializing_if = "Option::is_none")]
    pub gateway_mac: Option<MacAddr>,
    /// The cluster's Service CIDR: the node's kernel routes it into the host port, so host
    /// processes reach ClusterIPs through the switch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_cidr: Option<Ipv4Prefix>,
    /// The address NodePort connections of the node itself are redirected to (the node's
    /// kernel DNATs `<node address>:<nodePort>` to it, and the switch matches NodePort
    /// frontends there). Must be inside `service_cidr` and not a ClusterIP; default none (no
    /// NodePort from the node).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_port_ip: Option<Ipv4Addr>,
}

/// A port to create.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortSpec {
    /// Unique name; for tap ports also the name of the kernel device when it is created.
    pub name: String,
    /// How packets enter and leave.
    #[serde(default)]
    pub kind: PortKind,
    /// What is on the other side.
    pub role: PortRole,
    /// Largest IP packet the port carries (the frame may be 14 bytes longer). Default 1500.
    #[serde(default = "default_mtu")]
    pub mtu: u16,
    /// Where the kernel side of the port lives, when not in the daemon's own namespace: a pod's
    /// network namespace and the interface name there. Such a tap is persistent: it outlives
    /// the daemon (the pod keeps its interface), and a restarted daemon re-attaches to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netns: Option<NetnsAttach>,
    /// Whether the port exchanges offloaded frames with its kernel side (tap: virtio-net
    /// headers, `TUNSETOFFLOAD`): 64 KB TSO/USO super-frames and partial checksums cross the
    /// switch as they are. Off, the port sends and receives only whole, checksummed frames of
    /// at most its MTU, and the switch segments and checksums in software what it forwards
    /// to it. Default on.
    ///
    /// An `afxdp` port never takes offloads, whatever this says: AF_XDP carries no checksum or
    /// segmentation metadata, so frames leave it whole and checksummed ([`PortSpec::takes_offloads`]).
    #[serde(default = "default_offloads")]
    pub offloads: bool,
    /// `afxdp` ports: the interface's queue each worker's AF_XDP socket binds, one entry per
    /// worker, in worker order. Empty (the default): worker *i* binds queue *i*. Ignored by
    /// other kinds.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub queue_ids: Vec<u32>,
}

impl PortSpec {
    /// Whether frames cross this port with offload state (GSO super-frames, partial
    /// checksums): a tap with `offloads` on. AF_XDP has no such metadata.
    pub fn takes_offloads(&self) -> bool {
        self.offloads && self.kind == PortKind::Tap
    }
}

fn default_offloads() -> bool {
    true
}

/// A port's interface inside another network namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetnsAttach {
    /// Path of the namespace: `/var/run/netns/NAME` or `/proc/PID/ns/net`.
    pub path: String,
    /// Interface name inside it (e.g. `eth0`).
    pub ifname: String,
}

/// MTU of a port whose spec does not say.
pub const DEFAULT_MTU: u16 = 1500;

fn default_mtu() -> u16 {
    DEFAULT_MTU
}

/// Port implementations reachable through the socket.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PortKind {
    /// A Linux tap device, one queue per worker.
    #[default]
    Tap,
    /// An existing interface (a veth end, a NIC) read and written through one AF_XDP socket
    /// per worker, fed by an XDP program podswitchd attaches to it. Without `netns` the
    /// interface is the one named like the port in the daemon's namespace; with `netns`, the
    /// interface `netns.ifname` in that namespace.
    Afxdp,
}

/// Where an `afxdp` port's XDP program runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum XdpAttachMode {
    /// In the driver (native XDP).
    Native,
    /// In the stack on an skb (generic XDP): any driver, slower.
    Generic,
}

/// How an `afxdp` port's sockets exchange frames with the driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum XskBindMode {
    /// The driver DMAs into and out of the UMEM.
    ZeroCopy,
    /// The kernel copies between its buffers and the UMEM.
    Copy,
}

/// What an `afxdp` port obtained from the kernel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AfxdpInfo {
    /// The interface the sockets are bound to.
    pub ifname: String,
    /// Its queue bound by each worker, in worker order.
    pub queue_ids: Vec<u32>,
    /// Where the redirect program runs.
    pub xdp: XdpAttachMode,
    /// Zero-copy or copy.
    pub bind: XskBindMode,
}

/// What a port connects to, and what the switch will accept from it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "role", rename_all = "snake_case")]
pub enum PortRole {
    /// A pod: frames must come from exactly this MAC and IP (anti-spoofing), and a /32 route
    /// to the IP through this port is connected automatically.
    Pod {
        /// The pod interface's MAC; the daemon gives the tap this address.
        #[serde(with = "mac")]
        mac: MacAddr,
        /// The pod's IP.
        ip: Ipv4Addr,
        /// Kubernetes namespace, for display.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        namespace: Option<String>,
        /// Pod name, for display.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pod: Option<String>,
    },
    /// The node's own network stack. The tap stays in the daemon's namespace and is given the
    /// gateway address with the pod CIDR's prefix length, so the node routes the pod CIDR to it.
    Host {
        /// MAC of the kernel side of the tap; when absent the kernel's choice is read back.
        #[serde(default, with = "mac::option", skip_serializing_if = "Option::is_none")]
        mac: Option<MacAddr>,
    },
    /// The node's link to the other nodes (the underlay): any port kind. Many MACs are behind
    /// it, so there is no single-MAC anti-spoofing on it; the switch owns `ip` and `mac` on
    /// it (answers ARP for `ip`, resolves next hops by ARP from it) and sends frames for other
    /// nodes' pods out of it, routed or encapsulated as `encap` says. At most one.
    Uplink {
        /// The switch's own MAC on the uplink: destination of frames the underlay sends it,
        /// source of the frames it sends.
        #[serde(with = "mac")]
        mac: MacAddr,
        /// The switch's own address on the uplink (the node's InternalIP): answered for by
        /// ARP, source of VXLAN packets, where other nodes send theirs.
        ip: Ipv4Addr,
        /// Routed or encapsulated.
        #[serde(default)]
        encap: Encap,
        /// The underlay router and the segment `ip` is on: the replies to a client outside
        /// the cluster whose address is off the segment go to the router's MAC. `None`: every
        /// such client is taken to be on the segment (answered at its own MAC).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        gateway: Option<UplinkGateway>,
    },
}

/// The underlay router of an uplink.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct UplinkGateway {
    /// Its address, on the segment (or, for a /32 segment, on link all the same).
    pub ip: Ipv4Addr,
    /// The segment the uplink's own address is on.
    pub segment: Ipv4Prefix,
}

/// How packets for other nodes' pods cross the underlay.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum Encap {
    /// Routed: the inner packet itself goes to the next hop (the other node's InternalIP),
    /// so the underlay must route pod addresses (one L2 segment, or routes to the podCIDRs).
    #[default]
    Direct,
    /// VXLAN (RFC 7348) over UDP to the other node's InternalIP: the underlay sees only node
    /// addresses. The inner packet's MTU is the uplink's minus 50 bytes.
    Vxlan {
        /// The VXLAN Network Identifier (24 bits); every node of the cluster uses the same.
        vni: u32,
        /// The UDP destination port (and the one listened on); default 4789 (IANA).
        #[serde(default = "default_vxlan_port")]
        port: u16,
    },
}

fn default_vxlan_port() -> u16 {
    4789
}

/// A route to add.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteSpec {
    /// Destination prefix.
    pub prefix: Ipv4Prefix,
    /// Where matching packets go.
    pub target: RouteTarget,
}

/// Where a route sends packets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "via", rename_all = "snake_case")]
pub enum RouteTarget {
    /// Out of a named pod port, to the pod's MAC.
    Port {
        /// Port name.
        port: String,
    },
    /// To the node's own stack through the host port.
    Host,
    /// Nowhere: answered with ICMP destination unreachable (host unreachable).
    Unreachable,
    /// Another node: out of the uplink port to the next hop `ip` (that node's InternalIP),
    /// whose MAC the switch resolves by ARP (or `gateway`'s, when the node is behind one);
    /// with VXLAN, encapsulated to `ip`.
    Node {
        /// The other node's address on the underlay.
        ip: Ipv4Addr,
        /// VXLAN only: the inner destination MAC (the other node's tunnel endpoint MAC).
        /// Default `0a:58:` + the first host address of the route's prefix, the other
        /// node's gateway MAC by the control plane's convention; a podswitch node accepts
        /// any inner destination MAC from a valid tunnel packet.
        #[serde(default, with = "mac::option", skip_serializing_if = "Option::is_none")]
        vtep_mac: Option<MacAddr>,
        /// The underlay router that reaches `ip` (a node on another subnet): frames go to
        /// its MAC. `None`: `ip` is on the uplink's own segment.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        gateway: Option<Ipv4Addr>,
    },
    /// Outside the cluster through the uplink: never encapsulated, a new connection's source
    /// translated to the uplink's address (its port kept when free), to `gateway`'s MAC, or
    /// without one to the destination's own (on the uplink's segment).
    Uplink {
        /// The underlay router; `None`: the destination is on the uplink's segment.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        gateway: Option<Ipv4Addr>,
    },
}

/// The daemon's answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "response", rename_all = "snake_case")]
pub enum Response {
    /// The transaction took effect; the tables now carry this generation.
    Applied {
        /// Generation of the tables after the transaction.
        generation: u64,
    },
    /// See [`Status`].
    Status(Status),
    /// See [`PortInfo`].
    Ports {
        /// One entry per port.
        ports: Vec<PortInfo>,
    },
    /// See [`RouteInfo`].
    Routes {
        /// Longest prefix first.
        routes: Vec<RouteInfo>,
    },
    /// See [`NeighborInfo`].
    Neighbors {
        /// One entry per binding.
        neighbors: Vec<NeighborInfo>,
    },
    /// See [`CountersDump`].
    Counters(CountersDump),
    /// See [`ServiceInfo`].
    Services {
        /// Sorted by name.
        services: Vec<ServiceInfo>,
    },
    /// See [`ConntrackDump`].
    Conntrack(ConntrackDump),
    /// See [`TraceResult`].
    Trace(TraceResult),
    /// See [`PolicyStatus`].
    Policies {
        /// Pod ports with a policy, sorted by port name.
        policies: Vec<PolicyStatus>,
    },
    /// The request failed; nothing changed.
    Error {
        /// What was wrong and, where it helps, what to do.
        message: String,
    },
}

/// Daemon identity and table sizes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// Protocol version spoken.
    pub version: u32,
    /// Generation of the published tables.
    pub generation: u64,
    /// Worker threads.
    pub workers: usize,
    /// The node addressing, once set.
    pub node: Option<NodeSpec>,
    /// Number of ports.
    pub ports: usize,
    /// Number of routes.
    pub routes: usize,
}

/// One port as the daemon holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortInfo {
    /// Dataplane port number (index into the per-worker tables).
    pub id: u32,
    /// Port name.
    pub name: String,
    /// Implementation.
    pub kind: PortKind,
    /// Role and binding.
    pub role: PortRole,
    /// MTU.
    pub mtu: u16,
    /// Queues (one per worker).
    pub queues: usize,
    /// Whether the port exchanges offloaded frames with its kernel side (see
    /// [`PortSpec::offloads`]), as its spec says. A daemon that predates the field sends
    /// none: read as the spec's default, on.
    #[serde(default = "default_offloads")]
    pub offloads: bool,
    /// The namespace and interface name of the kernel side, for ports attached to a pod's
    /// namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netns: Option<NetnsAttach>,
    /// `afxdp` ports: the interface, queues and modes the kernel gave.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub afxdp: Option<AfxdpInfo>,
}

/// One route.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteInfo {
    /// Destination.
    pub prefix: Ipv4Prefix,
    /// Where it goes.
    pub target: RouteTarget,
    /// `static` (added by a route op) or `connected` (derived from a pod port).
    pub origin: RouteOrigin,
}

/// Where a route came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RouteOrigin {
    /// Added by an `add_route` op.
    Static,
    /// Derived from a pod port's binding.
    Connected,
}

/// An IP → MAC binding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NeighborInfo {
    /// The address.
    pub ip: Ipv4Addr,
    /// Its MAC (all zero while an uplink next hop is still being resolved).
    #[serde(with = "mac")]
    pub mac: MacAddr,
    /// The port it is behind.
    pub port: String,
    /// `pod`, `host`, `switch` (the gateway itself, the uplink's own address) or `nexthop`
    /// (learnt by ARP on the uplink).
    pub kind: String,
    /// For a learnt next hop: `incomplete`, `reachable`, `stale` or `probe`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// For a learnt next hop: seconds since it was last confirmed (or, incomplete, since
    /// resolution started).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub age_secs: Option<u64>,
}

/// Counters, summed over workers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CountersDump {
    /// Per port.
    pub ports: Vec<PortCounters>,
    /// Every drop reason with its count, zeros included, in a fixed order.
    pub drops: Vec<DropCount>,
    /// Things the switch did itself: ARP replies, ICMP it generated.
    pub events: Vec<EventCount>,
    /// Per worker, in worker order: what each carried, summed over its queues.
    #[serde(default)]
    pub workers: Vec<WorkerCounters>,
}

/// What one worker carried, summed over its queues of every port.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerCounters {
    /// Worker index (0-based), as in the thread name `psw-worker-N`.
    pub worker: usize,
    /// Frames it received.
    pub rx_packets: u64,
    /// Bytes it received.
    pub rx_bytes: u64,
    /// Frames it sent.
    pub tx_packets: u64,
    /// Bytes it sent.
    pub tx_bytes: u64,
    /// Packets it dropped, all reasons.
    pub drops: u64,
}

/// A port's kernel device as the kernel counts it (rtnetlink `IFLA_STATS64`), from the
/// device's own point of view. For a tap, `tx` is what the pod (or node) sent towards the
/// switch: `tx_dropped` counts frames lost in the tap's queue because the switch did not read
/// them in time. `rx` is what the switch wrote to the pod.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelLinkStats {
    /// Frames the device delivered to its side's stack (written by the switch).
    pub rx_packets: u64,
    /// Bytes of those.
    pub rx_bytes: u64,
    /// Frames dropped on the way in.
    pub rx_dropped: u64,
    /// Receive errors.
    pub rx_errors: u64,
    /// Frames its side's stack sent into the device (for the switch to read).
    pub tx_packets: u64,
    /// Bytes of those.
    pub tx_bytes: u64,
    /// Frames dropped before the switch read them (the tap's queue was full).
    pub tx_dropped: u64,
    /// Transmit errors.
    pub tx_errors: u64,
}

/// Traffic through one port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortCounters {
    /// Port name.
    pub port: String,
    /// Frames received from the port.
    pub rx_packets: u64,
    /// Bytes received (real frame lengths).
    pub rx_bytes: u64,
    /// Reads from the port that failed (the queue retries after a back-off).
    #[serde(default)]
    pub rx_errors: u64,
    /// Frames sent to the port and taken whole by its device.
    pub tx_packets: u64,
    /// Bytes sent.
    pub tx_bytes: u64,
    /// Frames routed to the port that it did not take (each also under a drop reason:
    /// `tx_queue_full`, `tx_write_error`, `tx_short_write`).
    pub tx_errors: u64,
    /// The kernel's own counters of the port's device; `None` when they could not be read
    /// (device gone, namespace unreachable).
    #[serde(default)]
    pub kernel: Option<KernelLinkStats>,
}

/// Packets dropped for one reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DropCount {
    /// Stable machine name, e.g. `spoofed_source_ip`.
    pub reason: String,
    /// The stage that dropped.
    pub stage: String,
    /// Human text.
    pub description: String,
    /// Packets.
    pub count: u64,
}

/// A switch-originated event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventCount {
    /// Stable machine name, e.g. `arp_reply`.
    pub event: String,
    /// Count.
    pub count: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apply_request_has_a_readable_wire_form() {
        let req = Request::new(RequestBody::Apply(Transaction {
            generation: Some(3),
            replace: false,
            ops: vec![Op::AddPort(PortSpec {
                name: "tap1".into(),
                kind: PortKind::Tap,
                role: PortRole::Pod {
                    mac: "02:00:00:00:00:01".parse().unwrap(),
                    ip: Ipv4Addr::new(10, 244, 1, 2),
                    namespace: None,
                    pod: None,
                },
                mtu: 1500,
                offloads: true,
                netns: None,
                queue_ids: Vec::new(),
            })],
        }));
        let json = serde_json::to_value(&req).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "version": 1,
                "request": "apply",
                "generation": 3,
                "ops": [{"op": "add_port", "name": "tap1", "kind": "tap", "mtu": 1500,
                         "offloads": true,
                         "role": {"role": "pod", "mac": "02:00:00:00:00:01", "ip": "10.244.1.2"}}]
            })
        );
    }

    #[test]
    fn defaults_apply_and_bad_fields_are_named() {
        let req: Request = serde_json::from_str(
            r#"{"version":1,"request":"apply","ops":[{"op":"add_port","name":"h","role":{"role":"host"}}]}"#,
        )
        .unwrap();
        let RequestBody::Apply(tx) = req.body else {
            panic!()
        };
        let Op::AddPort(p) = &tx.ops[0] else { panic!() };
        assert_eq!((p.kind, p.mtu), (PortKind::Tap, 1500));

        let err = serde_json::from_str::<Request>(
            r#"{"version":1,"request":"apply","ops":[{"op":"add_port","name":"p","role":{"role":"pod","mac":"zz","ip":"10.0.0.1"}}]}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("\"zz\""), "{err}");
    }
}
