//! Two podswitch nodes joined by an underlay, each run as deployed (podswitchd +
//! podswitch-control, pods attached through the CNI plugin), their uplinks AF_XDP ports.
//!
//! Topology: an underlay namespace holding a bridge `br0`; node *i* (1, 2) is its own
//! namespace whose interface `up0` is one end of a veth pair, the other end (`n1`, `n2`) a
//! port of the bridge. Control is started with `--uplink up0 --uplink-kind afxdp
//! --node-ip 192.168.1.i --pod-cidr 10.244.i.0/24 --node-name node-i`, so podswitchd binds
//! AF_XDP sockets to `up0` (it sets the MAC and MTU and attaches its XDP program). Both
//! controls are given both Node manifests. Every name is made by [`unique`] or local to a
//! namespace, so tests run in parallel; everything is deleted on drop, also when a test
//! panics (nodes first, then the underlay).

use crate::control::{CniPod, ControlNode};
use crate::{Netns, Node};
use std::net::Ipv4Addr;

/// The underlay's prefix length (192.168.1.0/24).
pub const UNDERLAY_LEN: u8 = 24;

/// The underlay's router in [`TwoNodes::world_behind_a_router`].
pub const UNDERLAY_GATEWAY: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 254);
/// The host behind it, outside the cluster.
pub const WORLD_IP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);

/// A network outside the cluster behind a router on the underlay. Declared world first:
/// dropped before its router.
#[derive(Debug)]
pub struct World {
    /// The host at [`WORLD_IP`].
    pub world: Netns,
    /// The router at [`UNDERLAY_GATEWAY`].
    pub router: Netns,
}

/// How the nodes cross the underlay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Crossing {
    /// Routed: pod addresses on the underlay.
    Direct,
    /// VXLAN with each node's VNI (the same on both, unless a test breaks it on purpose).
    Vxlan {
        /// Node 1's VNI.
        vni1: u32,
        /// Node 2's VNI.
        vni2: u32,
    },
}

impl Crossing {
    /// VXLAN with VNI 42 on both nodes.
    pub const VXLAN: Crossing = Crossing::Vxlan { vni1: 42, vni2: 42 };
}

/// Two nodes and their underlay.
#[derive(Debug)]
pub struct TwoNodes {
    /// Node 1 (`node-1`, 10.244.1.0/24, 192.168.1.1) and node 2 (`node-2`, 10.244.2.0/24,
    /// 192.168.1.2, or 192.168.2.2 on two subnets). Declared before the underlay: dropped
    /// first.
    pub nodes: [ControlNode; 2],
    /// The router between the two subnets ([`TwoNodes::start_on_two_subnets`]), dropped
    /// before the underlay.
    pub router: Option<Netns>,
    /// The underlay's namespace (the bridge `br0`; `br1` too on two subnets).
    pub underlay: Netns,
    /// Node 2 is on its own subnet, behind the router.
    apart: bool,
}

/// Node *i*'s InternalIP (`i` is 1 or 2) on one segment, and node 1's on two subnets.
pub fn node_ip(i: u8) -> Ipv4Addr {
    Ipv4Addr::new(192, 168, 1, i)
}

/// Node *i*'s InternalIP on two subnets: 192.168.*i*.*i*.
pub fn node_ip_apart(i: u8) -> Ipv4Addr {
    Ipv4Addr::new(192, 168, i, i)
}

/// Node *i*'s router on two subnets: 192.168.*i*.254 (the first is [`UNDERLAY_GATEWAY`]).
pub fn subnet_gateway(i: u8) -> Ipv4Addr {
    Ipv4Addr::new(192, 168, i, 254)
}

impl TwoNodes {
    /// Starts both nodes, their uplinks on the underlay, and applies both Node manifests to
    /// both controls; returns when both dataplanes hold control's configuration.
    pub fn start(crossing: Crossing) -> TwoNodes {
        Self::start_with_mtu(crossing, None)
    }

    /// [`TwoNodes::start`] on an underlay of MTU `underlay_mtu` (jumbo frames) when given:
    /// the bridge and its ports take it, each control gets `--uplink-mtu` and gives its pods
    /// that MTU less the encapsulation's 50 bytes with VXLAN (`--mtu`).
    pub fn start_with_mtu(crossing: Crossing, underlay_mtu: Option<u16>) -> TwoNodes {
        Self::start_with(crossing, underlay_mtu, &[])
    }

    /// [`TwoNodes::start_with_mtu`], both controls also given `extra_args`.
    pub fn start_with(
        crossing: Crossing,
        underlay_mtu: Option<u16>,
        extra_args: &[&str],
    ) -> TwoNodes {
        Self::start_layout(crossing, underlay_mtu, extra_args, false)
    }

    /// Node 1 on 192.168.1.0/24 (bridge `br0`), node 2 on 192.168.2.0/24 (bridge `br1`), a
    /// router between them at .254 of each (forwarding; with `Direct` it also routes each
    /// node's pod CIDR to it), each control given its router as `--uplink-gateway`: the
    /// nodes reach each other only through it.
    pub fn start_on_two_subnets(crossing: Crossing) -> TwoNodes {
        Self::start_layout(crossing, None, &[], true)
    }

    fn start_layout(
        crossing: Crossing,
        underlay_mtu: Option<u16>,
        extra_args: &[&str],
        apart: bool,
    ) -> TwoNodes {
        let underlay = Netns::new("pswu");
        for br in ["br0", "br1"].iter().take(if apart { 2 } else { 1 }) {
            underlay.ip(&["link", "add", br, "type", "bridge"]);
            if let Some(mtu) = underlay_mtu {
                underlay.ip(&["link", "set", br, "mtu", &mtu.to_string()]);
            }
            underlay.ip(&["link", "set", br, "up"]);
        }
        let router = apart.then(|| Self::router(&underlay, crossing));
        let nodes = [1u8, 2].map(|i| {
            let mut args: Vec<String> = extra_args.iter().map(|a| a.to_string()).collect();
            if apart {
                args.extend([
                    "--uplink-gateway".into(),
                    subnet_gateway(i).to_string(),
                    "--uplink-prefix-len".into(),
                    UNDERLAY_LEN.to_string(),
                ]);
            }
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            Self::start_node(&underlay, i, crossing, underlay_mtu, &args, apart)
        });
        let two = TwoNodes {
            nodes,
            router,
            underlay,
            apart,
        };
        let manifests = format!("{}---\n{}", two.manifest(1), two.manifest(2));
        for cn in &two.nodes {
            if let Err(e) = cn.apply_manifests(&manifests) {
                panic!("Node manifests refused: {e}\n{manifests}");
            }
            cn.wait_in_sync();
        }
        two
    }

    /// The router between the two subnets (see [`TwoNodes::start_on_two_subnets`]).
    fn router(underlay: &Netns, crossing: Crossing) -> Netns {
        let router = Netns::new("pswr");
        for i in [1u8, 2] {
            let bridge = format!("br{}", i - 1);
            on_bridge(
                underlay,
                &bridge,
                &router,
                &format!("eth{i}"),
                subnet_gateway(i),
            );
            if crossing == Crossing::Direct {
                let pods = format!("10.244.{i}.0/24");
                router.ip(&["route", "add", &pods, "via", &node_ip_apart(i).to_string()]);
            }
        }
        forwards(&router);
        router
    }

    /// Node *i*'s InternalIP.
    pub fn ip(&self, i: u8) -> Ipv4Addr {
        if self.apart {
            node_ip_apart(i)
        } else {
            node_ip(i)
        }
    }

    /// Node *i*'s manifest.
    fn manifest(&self, i: u8) -> String {
        node_manifest_at(i, self.ip(i))
    }

    fn start_node(
        underlay: &Netns,
        i: u8,
        crossing: Crossing,
        underlay_mtu: Option<u16>,
        extra_args: &[&str],
        apart: bool,
    ) -> ControlNode {
        let node = Node::bare(&[]);
        let bridge_end = format!("n{i}");
        let (ip, bridge) = if apart {
            (node_ip_apart(i), format!("br{}", i - 1))
        } else {
            (node_ip(i), "br0".to_string())
        };
        underlay.ip(&[
            "link",
            "add",
            &bridge_end,
            "type",
            "veth",
            "peer",
            "name",
            "up0",
            "netns",
            &node.ns.name,
        ]);
        if let Some(mtu) = underlay_mtu {
            underlay.ip(&["link", "set", &bridge_end, "mtu", &mtu.to_string()]);
        }
        underlay.ip(&["link", "set", &bridge_end, "master", &bridge, "up"]);
        let mut cn = ControlNode::without_control(node);
        cn.node_name = format!("node-{i}");
        cn.pod_cidr = format!("10.244.{i}.0/24");
        let mut args: Vec<String> = [
            "--uplink",
            "up0",
            "--uplink-kind",
            "afxdp",
            "--node-ip",
            &ip.to_string(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        if let Crossing::Vxlan { vni1, vni2 } = crossing {
            let vni = if i == 1 { vni1 } else { vni2 };
            args.extend([
                "--encap".into(),
                "vxlan".into(),
                "--vni".into(),
                vni.to_string(),
            ]);
        }
        if let Some(mtu) = underlay_mtu {
            let pods = match crossing {
                Crossing::Direct => mtu,
                Crossing::Vxlan { .. } => mtu - 50,
            };
            args.extend([
                "--uplink-mtu".into(),
                mtu.to_string(),
                "--mtu".into(),
                pods.to_string(),
            ]);
        }
        args.extend(extra_args.iter().map(|a| a.to_string()));
        cn.control_args = args;
        cn.start_control();
        cn.wait_in_sync();
        cn
    }

    /// Node *i* (1 or 2).
    pub fn node(&self, i: u8) -> &ControlNode {
        &self.nodes[usize::from(i - 1)]
    }

    /// Node *i*, mutable (to kill and restart its daemons).
    pub fn node_mut(&mut self, i: u8) -> &mut ControlNode {
        &mut self.nodes[usize::from(i - 1)]
    }

    /// A pod `name` on node *i*, attached through the CNI plugin.
    pub fn add_pod(&self, i: u8, name: &str) -> CniPod {
        self.node(i).add_pod(name)
    }

    /// A router on the underlay at [`UNDERLAY_GATEWAY`] (`eth0`, forwarding) in front of a
    /// network outside the cluster, 203.0.113.0/24 (`in0` at .1), on which a host
    /// (`world`, `eth0` at [`WORLD_IP`], default route via the router) stands for the world.
    /// Both forward whole, checksummed frames (`tx off`), as the nodes' AF_XDP uplinks need.
    pub fn world_behind_a_router(&self) -> World {
        let router = self.outside_client(UNDERLAY_GATEWAY);
        let world = Netns::new("psww");
        router.ip(&[
            "link",
            "add",
            "in0",
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            &world.name,
        ]);
        router.ip(&["addr", "add", "203.0.113.1/24", "dev", "in0"]);
        router.ip(&["link", "set", "in0", "up"]);
        world.ip(&["addr", "add", &format!("{WORLD_IP}/24"), "dev", "eth0"]);
        world.ip(&["link", "set", "eth0", "up"]);
        world.ip(&["route", "add", "default", "via", "203.0.113.1"]);
        sends_whole_frames(&router, "in0");
        sends_whole_frames(&world, "eth0");
        forwards(&router);
        World { world, router }
    }

    /// A namespace on the underlay standing for a client outside the cluster: `eth0` at
    /// `ip`/24, bridged to the nodes' uplinks. Its kernel sends whole, checksummed frames
    /// (`ethtool -K eth0 tx off tso off gso off`): they reach the nodes' AF_XDP uplinks,
    /// which carry no checksum or segmentation state (ARCHITECTURE.md, "AF_XDP ports").
    pub fn outside_client(&self, ip: Ipv4Addr) -> Netns {
        let ns = Netns::new("pswo");
        on_bridge(&self.underlay, "br0", &ns, "eth0", ip);
        ns
    }

    /// Both nodes' logs and counters, for a failed assertion.
    pub fn debug(&self) -> String {
        let mut s = String::new();
        for (i, cn) in self.nodes.iter().enumerate() {
            s += &format!(
                "=== node-{} neighbors:\n{}\n=== counters:\n{}\n=== podswitchd log:\n{}\n\
                 === control log:\n{}\n",
                i + 1,
                cn.node.podswitchctl(&["neighbors"]),
                cn.node.podswitchctl(&["counters"]),
                cn.node.log(),
                cn.control_log()
            );
        }
        s
    }
}

/// Puts `ns` on the underlay's `bridge`: `dev` in `ns` at `ip`/[`UNDERLAY_LEN`], up, sending
/// whole frames, the other end of its veth pair a port of the bridge.
fn on_bridge(underlay: &Netns, bridge: &str, ns: &Netns, dev: &str, ip: Ipv4Addr) {
    let end = crate::unique("b");
    underlay.ip(&[
        "link", "add", &end, "type", "veth", "peer", "name", dev, "netns", &ns.name,
    ]);
    underlay.ip(&["link", "set", &end, "master", bridge, "up"]);
    ns.ip(&["addr", "add", &format!("{ip}/{UNDERLAY_LEN}"), "dev", dev]);
    ns.ip(&["link", "set", dev, "up"]);
    sends_whole_frames(ns, dev);
}

/// Makes `dev` in `ns` send whole, checksummed frames (`ethtool -K dev tx off tso off gso
/// off`), as what reaches the nodes' AF_XDP uplinks must be: they carry no checksum or
/// segmentation state.
fn sends_whole_frames(ns: &Netns, dev: &str) {
    let off = ns.exec(&[
        "ethtool", "-K", dev, "tx", "off", "tso", "off", "gso", "off",
    ]);
    assert!(
        off.status.success(),
        "ethtool -K {dev} tx off in {}: {}",
        ns.name,
        String::from_utf8_lossy(&off.stderr)
    );
}

/// Turns IPv4 forwarding on in `ns` (a router).
fn forwards(ns: &Netns) {
    let fwd = ns.exec(&["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    assert!(fwd.status.success(), "{} forwards", ns.name);
}

/// Node *i*'s manifest: its pod CIDR and InternalIP (on one segment).
pub fn node_manifest(i: u8) -> String {
    node_manifest_at(i, node_ip(i))
}

/// Node *i*'s manifest with InternalIP `ip`.
fn node_manifest_at(i: u8, ip: Ipv4Addr) -> String {
    format!(
        "apiVersion: v1\nkind: Node\nmetadata:\n  name: node-{i}\nspec:\n  podCIDR: \
         10.244.{i}.0/24\nstatus:\n  addresses:\n  - type: InternalIP\n    address: {ip}\n"
    )
}
