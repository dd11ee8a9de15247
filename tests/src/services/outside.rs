//! A client outside the node: a namespace of its own joined to the node's namespace by a veth
//! pair, as a machine on the node's network is. The node's side of the pair holds the node's
//! address, the client routes everything through it, and the node forwards (as a Kubernetes
//! node does), so the client reaches NodePorts on the node's address the way external traffic
//! does: through the node's prerouting hook, not its output hook.

use crate::{run, Netns};
use std::net::Ipv4Addr;

/// The outside client's namespace and both addresses of the link.
#[derive(Debug)]
pub struct Outside {
    /// The client's namespace (deleting it deletes the veth pair).
    pub ns: Netns,
    /// The client's address.
    pub ip: Ipv4Addr,
    /// The node's address on the link (its InternalIP, for this client).
    pub node_ip: Ipv4Addr,
}

impl Outside {
    /// Joins a new client namespace to `node` (the node's own namespace) over a /24 link:
    /// `node_ip` on the node's side, `ip` on the client's, a default route via the node, and
    /// forwarding on in the node.
    pub fn join(node: &Netns, node_ip: Ipv4Addr, ip: Ipv4Addr) -> Outside {
        let ns = Netns::new("pswo");
        // Created in the client's namespace, one end moved to the node's: names are local to
        // each namespace, so parallel tests do not collide.
        ns.ip(&[
            "link", "add", "eth0", "type", "veth", "peer", "name", "outside0",
        ]);
        ns.ip(&["link", "set", "outside0", "netns", &node.name]);
        ns.ip(&["addr", "add", &format!("{ip}/24"), "dev", "eth0"]);
        ns.ip(&["link", "set", "eth0", "up"]);
        ns.ip(&["route", "add", "default", "via", &node_ip.to_string()]);
        node.ip(&["addr", "add", &format!("{node_ip}/24"), "dev", "outside0"]);
        node.ip(&["link", "set", "outside0", "up"]);
        run(&[
            "ip",
            "netns",
            "exec",
            &node.name,
            "sysctl",
            "-qw",
            "net.ipv4.ip_forward=1",
        ]);
        Outside { ns, ip, node_ip }
    }
}
