//! The pod's side of an attachment: the addressing of its interface inside its network
//! namespace. `podswitchd` creates the interface (a tap with the pod's MAC and MTU, renamed to
//! `ifname` inside the namespace); control gives it what makes it a routed /32 port:
//!
//! ```text
//! ip link set IFNAME up
//! ip addr replace IP/32 dev IFNAME
//! ip route replace GATEWAY/32 dev IFNAME scope link
//! ip route replace default via GATEWAY dev IFNAME
//! ```
//!
//! All four are replaces, so configuring twice changes nothing and never disturbs traffic;
//! any other IPv4 address on the interface is removed (a tap left behind by an earlier
//! sandbox of the same namespace must not keep its old address: the switch would drop what
//! the pod sends from it as spoofed). CNI DEL removes the interface itself
//! ([`PodNetwork::remove`]), whatever `podswitchd`'s state: the tap is persistent, so without
//! a running switch nothing else would.
//!
//! A veth-afxdp pod ([`PodAttachment::VethAfxdp`]) has a veth pair instead, and control, not
//! podswitchd, makes it ([`PodNetwork::ensure_veth`]): the pod's end created directly in the
//! pod's namespace as `ifname` with the pod's MAC and MTU, its transmit checksum offload, TSO
//! and GSO switched off (AF_XDP carries no checksum or segmentation state, so the pod must
//! send whole, checksummed frames), and the node end left in control's namespace — which is
//! podswitchd's — under the port's name, where podswitchd binds its AF_XDP sockets. The
//! addressing above is then the same. Deleting either end deletes the pair, so DEL removes it
//! by the node end, and a pod namespace that goes takes the pair with it.
//!
//! Behind a trait so that the handlers can be tested without root and without namespaces.

use crate::store::PodRecord;
use podswitch_netlink::{Ethtool, Netlink, TxOffloads, VethPeer};
use podswitch_proto::control::PodAttachment;
use std::fs::File;
use std::net::Ipv4Addr;
use std::os::fd::AsFd;
use std::path::Path;

/// Configuring or checking a pod's interface failed; the message says where and what.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PodNetError(pub String);

/// Access to pods' network namespaces.
pub trait PodNetwork: Send + Sync {
    /// Whether the namespace path still exists (a pod whose namespace is gone is skipped).
    fn netns_exists(&self, netns: &str) -> bool;
    /// Gives the pod's interface its address and routes and sets it up; idempotent.
    fn configure(&self, pod: &PodRecord, gateway: Ipv4Addr) -> Result<(), PodNetError>;
    /// Verifies the interface exists with the pod's MAC, is up, has the address (and no
    /// other), the on-link route to the gateway and the default route via it.
    fn check(&self, pod: &PodRecord, gateway: Ipv4Addr) -> Result<(), PodNetError>;
    /// Deletes the pod's interface from `netns` if it is there with the pod's MAC (anything
    /// else under that name is not podswitch's); whether it deleted one.
    fn remove(&self, pod: &PodRecord, netns: &str) -> Result<bool, PodNetError>;
    /// Whether the pod's port can be pushed: its namespace exists and, for a veth-afxdp pod,
    /// its veth pair is whole (node end here, the pod's end in the namespace with the pod's
    /// MAC). podswitchd refuses a transaction naming an afxdp port whose interface is
    /// missing, so such a pod is left out as a pod whose namespace is gone is.
    fn attachable(&self, pod: &PodRecord) -> bool {
        self.netns_exists(&pod.netns)
    }
    /// veth-afxdp: makes the pod's veth pair whole (see the module doc) with `queues` queues
    /// (one per podswitchd worker) and MTU `mtu`; a pair that is already whole is kept, its
    /// offloads switched off again. Whatever is left of a broken pair (the node end, or the
    /// pod's end with the pod's MAC) is deleted first; anything else under `ifname` in the
    /// namespace is not podswitch's and is an error. Returns whether it created the pair.
    fn ensure_veth(&self, pod: &PodRecord, mtu: u16, queues: u32) -> Result<bool, PodNetError> {
        let _ = (mtu, queues);
        Err(PodNetError(format!(
            "{}: this pod network makes no veth pairs",
            pod.key()
        )))
    }
}

/// `ENODEV`: the link went away between listing and deleting it (podswitchd released it).
const ENODEV: i32 = 19;

impl std::fmt::Debug for dyn PodNetwork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PodNetwork")
    }
}

/// The real thing: rtnetlink inside the pod's namespace (needs `CAP_NET_ADMIN` and
/// `CAP_SYS_ADMIN`, i.e. root).
#[derive(Debug, Default, Clone, Copy)]
pub struct NetlinkPodNetwork;

impl NetlinkPodNetwork {
    /// A handle in the pod's namespace and its interface's index.
    fn open(pod: &PodRecord) -> Result<(Netlink, u32), PodNetError> {
        let mut nl =
            Netlink::new_in_netns(Path::new(&pod.netns)).map_err(|e| PodNetError(e.to_string()))?;
        let index = nl
            .link_index(&pod.ifname)
            .map_err(|e| in_pod(pod, e))?
            .ok_or_else(|| {
                PodNetError(format!(
                    "{} in {} does not exist: podswitchd did not create it (is port {} in \
                     `podswitchctl ports`?)",
                    pod.ifname, pod.netns, pod.port
                ))
            })?;
        Ok((nl, index))
    }
}

fn in_pod(pod: &PodRecord, e: impl std::fmt::Display) -> PodNetError {
    PodNetError(format!("{} in {}: {e}", pod.ifname, pod.netns))
}

impl PodNetwork for NetlinkPodNetwork {
    fn netns_exists(&self, netns: &str) -> bool {
        !netns.is_empty() && Path::new(netns).exists()
    }

    fn configure(&self, pod: &PodRecord, gateway: Ipv4Addr) -> Result<(), PodNetError> {
        let (mut nl, index) = Self::open(pod)?;
        let e = |e| in_pod(pod, e);
        // Up first: the kernel refuses routes through a link that is down.
        nl.link_set_up(index).map_err(e)?;
        nl.addr_replace_v4(index, pod.ip, 32).map_err(e)?;
        for (addr, len) in nl.addr_list_v4(index).map_err(e)? {
            if (addr, len) != (pod.ip, 32) {
                nl.addr_del_v4(index, addr, len).map_err(e)?;
            }
        }
        nl.route_replace_v4(gateway, 32, None, Some(index), true)
            .map_err(e)?;
        nl.route_replace_v4(Ipv4Addr::UNSPECIFIED, 0, Some(gateway), Some(index), false)
            .map_err(e)?;
        Ok(())
    }

    fn check(&self, pod: &PodRecord, gateway: Ipv4Addr) -> Result<(), PodNetError> {
        let (mut nl, index) = Self::open(pod)?;
        let link = nl.link(index).map_err(|e| in_pod(pod, e))?;
        if !link.up {
            return Err(in_pod(pod, "the interface is down"));
        }
        if link.mac != Some(pod.mac.octets()) {
            let has = link
                .mac
                .map_or("none".into(), |m| podswitch_proto::MacAddr(m).to_string());
            return Err(in_pod(
                pod,
                format!("the interface has MAC {has}, not {}", pod.mac),
            ));
        }
        let addrs = nl.addr_list_v4(index).map_err(|e| in_pod(pod, e))?;
        if !addrs.contains(&(pod.ip, 32)) || addrs.len() > 1 {
            let has: Vec<String> = addrs.iter().map(|(a, l)| format!("{a}/{l}")).collect();
            return Err(in_pod(
                pod,
                format!(
                    "the interface does not have exactly address {}/32 (it has: {})",
                    pod.ip,
                    if has.is_empty() {
                        "none".into()
                    } else {
                        has.join(", ")
                    }
                ),
            ));
        }
        let routes = nl.route_list_v4().map_err(|e| in_pod(pod, e))?;
        let on_link = routes.iter().any(|r| {
            (r.dst, r.prefix_len) == (gateway, 32)
                && r.gateway.is_none()
                && r.oif == Some(index)
                && r.scope_link
        });
        if !on_link {
            return Err(in_pod(
                pod,
                format!("there is no route {gateway}/32 scope link on the interface"),
            ));
        }
        let default = routes
            .iter()
            .any(|r| r.prefix_len == 0 && r.gateway == Some(gateway) && r.oif == Some(index));
        if !default {
            return Err(in_pod(
                pod,
                format!("there is no default route via {gateway} on the interface"),
            ));
        }
        if pod.attachment == PodAttachment::VethAfxdp {
            let node_end = Netlink::new()
                .and_then(|mut nl| nl.link_index(&pod.port))
                .map_err(|e| PodNetError(e.to_string()))?;
            if node_end.is_none() {
                return Err(PodNetError(format!(
                    "the node end {} of its veth pair is missing",
                    pod.port
                )));
            }
            let offloads = Ethtool::new_in_netns(Path::new(&pod.netns))
                .and_then(|e| e.tx_offloads(&pod.ifname))
                .map_err(|e| in_pod(pod, e))?;
            if offloads != TxOffloads::NONE {
                return Err(in_pod(
                    pod,
                    format!(
                        "transmit offloads are on ({offloads:?}); an AF_XDP port cannot take \
                         what it would send"
                    ),
                ));
            }
        }
        Ok(())
    }

    fn remove(&self, pod: &PodRecord, netns: &str) -> Result<bool, PodNetError> {
        if pod.attachment == PodAttachment::VethAfxdp && delete_node_end(pod)? {
            // The pod's end went with it.
            return Ok(true);
        }
        let in_ns =
            |e: podswitch_netlink::Error| PodNetError(format!("{} in {netns}: {e}", pod.ifname));
        let mut nl =
            Netlink::new_in_netns(Path::new(netns)).map_err(|e| PodNetError(e.to_string()))?;
        let Some(index) = nl.link_index(&pod.ifname).map_err(in_ns)? else {
            return Ok(false);
        };
        let link = match nl.link(index) {
            Ok(link) => link,
            Err(e) if e.errno() == Some(ENODEV) => return Ok(false),
            Err(e) => return Err(in_ns(e)),
        };
        if link.mac != Some(pod.mac.octets()) {
            return Ok(false);
        }
        match nl.link_del(index) {
            Ok(()) => Ok(true),
            Err(e) if e.errno() == Some(ENODEV) => Ok(false),
            Err(e) => Err(in_ns(e)),
        }
    }

    fn attachable(&self, pod: &PodRecord) -> bool {
        self.netns_exists(&pod.netns)
            && (pod.attachment == PodAttachment::Tap || Self::veth_whole(pod))
    }

    fn ensure_veth(&self, pod: &PodRecord, mtu: u16, queues: u32) -> Result<bool, PodNetError> {
        if Self::veth_whole(pod) {
            Self::disable_offloads(pod)?;
            return Ok(false);
        }
        // What is left of a broken pair goes first (deleting the node end takes a pod end
        // that is still its peer).
        delete_node_end(pod)?;
        match Self::pod_end(pod)? {
            None => {}
            Some(true) => {
                self.remove(pod, &pod.netns)?;
            }
            Some(false) => {
                return Err(in_pod(
                    pod,
                    "an interface of that name with another MAC is in the way (not \
                     podswitch's): remove it or use another CNI_IFNAME",
                ))
            }
        }
        Self::create_veth(pod, mtu, queues)?;
        if let Err(e) = Self::disable_offloads(pod) {
            // Not half made: a pod end with offloads on would send what the port drops.
            let _ = delete_node_end(pod);
            return Err(e);
        }
        Ok(true)
    }
}

/// Deletes the node end of a veth-afxdp pod's pair (named like its port, in our namespace),
/// which takes the pod's end with it; whether there was one.
fn delete_node_end(pod: &PodRecord) -> Result<bool, PodNetError> {
    let here = |e: podswitch_netlink::Error| PodNetError(format!("{}: {e}", pod.port));
    let mut nl = Netlink::new().map_err(here)?;
    let Some(index) = nl.link_index(&pod.port).map_err(here)? else {
        return Ok(false);
    };
    match nl.link_del(index) {
        Ok(()) => Ok(true),
        Err(e) if e.errno() == Some(ENODEV) => Ok(false),
        Err(e) => Err(here(e)),
    }
}

impl NetlinkPodNetwork {
    /// The pod's end of its pair in its namespace, with the pod's MAC, if it is there:
    /// `Ok(Some(true))`; another interface under that name: `Ok(Some(false))`.
    fn pod_end(pod: &PodRecord) -> Result<Option<bool>, PodNetError> {
        let mut nl =
            Netlink::new_in_netns(Path::new(&pod.netns)).map_err(|e| PodNetError(e.to_string()))?;
        let Some(index) = nl.link_index(&pod.ifname).map_err(|e| in_pod(pod, e))? else {
            return Ok(None);
        };
        match nl.link(index) {
            Ok(link) => Ok(Some(link.mac == Some(pod.mac.octets()))),
            Err(e) if e.errno() == Some(ENODEV) => Ok(None),
            Err(e) => Err(in_pod(pod, e)),
        }
    }

    fn node_end_exists(pod: &PodRecord) -> Result<bool, PodNetError> {
        Netlink::new()
            .and_then(|mut nl| nl.link_index(&pod.port))
            .map(|i| i.is_some())
            .map_err(|e| PodNetError(format!("{}: {e}", pod.port)))
    }

    fn veth_whole(pod: &PodRecord) -> bool {
        matches!(Self::node_end_exists(pod), Ok(true))
            && matches!(Self::pod_end(pod), Ok(Some(true)))
    }

    /// Creates the pair (nothing of it exists) and switches the pod end's offloads off.
    fn create_veth(pod: &PodRecord, mtu: u16, queues: u32) -> Result<(), PodNetError> {
        let netns = File::open(&pod.netns)
            .map_err(|e| PodNetError(format!("open network namespace {}: {e}", pod.netns)))?;
        let peer = VethPeer {
            name: &pod.ifname,
            netns: netns.as_fd(),
            mac: Some(pod.mac.octets()),
        };
        let mut nl = Netlink::new().map_err(|e| PodNetError(e.to_string()))?;
        nl.link_add_veth_into(&pod.port, &peer, u32::from(mtu), queues)
            .map_err(|e| in_pod(pod, e))?;
        Ok(())
    }

    fn disable_offloads(pod: &PodRecord) -> Result<(), PodNetError> {
        Ethtool::new_in_netns(Path::new(&pod.netns))
            .and_then(|e| e.disable_tx_offloads(&pod.ifname))
            .map_err(|e| in_pod(pod, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit;

    #[test]
    fn a_missing_namespace_is_reported_with_its_path() {
        let mut pod = testkit::pod("gone", [10, 244, 1, 2]);
        pod.netns = "/nonexistent/psw-ctl-test".into();
        let net = NetlinkPodNetwork;
        assert!(!net.netns_exists(&pod.netns));
        assert!(!net.netns_exists(""));
        let err = net
            .configure(&pod, Ipv4Addr::new(10, 244, 1, 1))
            .unwrap_err()
            .to_string();
        assert!(err.contains("/nonexistent/psw-ctl-test"), "{err}");
    }
}
