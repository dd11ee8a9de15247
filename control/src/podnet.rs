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
//! Behind a trait so that the handlers can be tested without root and without namespaces.

use crate::store::PodRecord;
use podswitch_netlink::Netlink;
use std::net::Ipv4Addr;
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
        Ok(())
    }

    fn remove(&self, pod: &PodRecord, netns: &str) -> Result<bool, PodNetError> {
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
