//! Creates tap ports for the daemon: opens one queue per worker and configures the kernel side
//! through rtnetlink (MAC, MTU, address of the host port and its route to the Service CIDR,
//! link up).
//!
//! A port with a `netns` attachment lives in a pod's namespace under the pod's interface name,
//! and is persistent, so the pod keeps its interface (and its addresses and routes) when the
//! daemon dies. Creating such a port first looks for that interface: if it is there, the daemon
//! re-attaches to it (a restart); otherwise it creates the tap in its own namespace under the
//! port's name, makes it persistent, moves it into the pod's namespace and renames it.

use super::afxdp_port::UmemArea;
use super::error::PortError;
use super::state::{CreatedPort, PortFactory};
use crate::batch::{PortId, MAX_BURST};
use crate::ports::{tap, PortQueue};
use podswitch_netlink::{in_netns, Netlink};
use podswitch_packet::MacAddr;
use podswitch_proto::{NetnsAttach, NodeSpec, PortKind, PortRole, PortSpec};
use std::os::fd::OwnedFd;
use std::path::Path;

/// Writes in flight per queue of a tap without offloads (see `create`).
const TX_DEPTH_WITHOUT_OFFLOADS: usize = 4 * MAX_BURST;

pub(super) struct TapFactory {
    netlink: Netlink,
    queues: usize,
    rx_depth: usize,
    /// Steer each tap's frames to the queue of the sending CPU (`tap::steer_by_cpu`): on
    /// when worker *i* is pinned to CPU *i* for every worker.
    steer_by_cpu: bool,
    /// A steering failure was reported (once per daemon: the cause is the kernel's, not the
    /// port's).
    steer_warned: bool,
    /// Each worker's buffer region, the UMEM of its AF_XDP sockets (`afxdp` ports are made
    /// here too: `afxdp_port.rs`).
    umems: Vec<UmemArea>,
    /// Attach AF_XDP ports' XDP programs in generic mode (`DaemonConfig::xdp_generic`).
    xdp_generic: bool,
}

impl TapFactory {
    pub(super) fn new(
        queues: usize,
        rx_depth: usize,
        steer_by_cpu: bool,
        umems: Vec<UmemArea>,
        xdp_generic: bool,
    ) -> Result<Self, podswitch_netlink::Error> {
        let netlink = Netlink::new()?;
        Ok(Self {
            netlink,
            queues,
            rx_depth,
            steer_by_cpu,
            steer_warned: false,
            umems,
            xdp_generic,
        })
    }

    /// A tap in the daemon's namespace (the host port, and pod ports without a namespace).
    fn local(
        &mut self,
        spec: &PortSpec,
        node: &NodeSpec,
    ) -> Result<(Vec<OwnedFd>, MacAddr), PortError> {
        let name = &spec.name;
        let fds = tap::open(name, self.queues, spec.offloads).map_err(|err| PortError::Open {
            name: name.clone(),
            err,
        })?;
        let nl = &mut self.netlink;
        let index = link(nl, name)?;
        match &spec.role {
            PortRole::Pod { mac, .. } | PortRole::Host { mac: Some(mac) } => {
                nl.link_set_mac(index, mac.0)?
            }
            // The uplink's kernel side is the underlay: its own MAC, the kernel's choice.
            PortRole::Host { mac: None } | PortRole::Uplink { .. } => {}
        }
        nl.link_set_mtu(index, u32::from(spec.mtu))?;
        if let PortRole::Host { .. } = spec.role {
            nl.addr_replace_v4(index, node.gateway, node.pod_cidr.len)?;
        }
        nl.link_set_up(index)?;
        if let (PortRole::Host { .. }, Some(cidr)) = (&spec.role, node.service_cidr) {
            // Host processes reach ClusterIPs through the switch (which answers ARP for the
            // VIPs on this port). After the link is up: the kernel refuses a route through a
            // down device. Replace, not add: a re-created port meets no stale route (it went
            // with the old device), but an operator's own route to the CIDR is taken over.
            // No explicit removal: the route goes with the device when the port's queues close.
            let cidr = cidr.network();
            nl.route_replace_v4(cidr.addr, cidr.len, None, Some(index), true)?;
        }
        let mac = MacAddr(nl.link_mac(index)?);
        Ok((fds, mac))
    }

    /// A persistent tap inside a pod's namespace: re-attached if it exists, created otherwise.
    fn in_pod(
        &mut self,
        spec: &PortSpec,
        attach: &NetnsAttach,
        mac: MacAddr,
    ) -> Result<(Vec<OwnedFd>, bool), PortError> {
        let path = Path::new(&attach.path);
        let ifname = attach.ifname.as_str();
        let queues = self.queues;
        // Re-attaching with the port's offload setting reconfigures the device if it was
        // created with the other one (see `tap::open`).
        let offloads = spec.offloads;
        // A restart: the pod still has its interface. TUNSETIFF by name works only in the
        // namespace the device is in, so open the queues from inside it.
        let existing = in_pod_netns(path, || {
            let mut nl = Netlink::new()?;
            match nl.link_index(ifname)? {
                Some(_) => tap::open(ifname, queues, offloads)
                    .map(Some)
                    .map_err(|err| PortError::NotATap {
                        ifname: ifname.to_string(),
                        err,
                    }),
                None => Ok(None),
            }
        })?;
        let (fds, new_device) = match existing {
            Some(fds) => (fds, false),
            None => (self.create_in_pod(spec, path, ifname)?, true),
        };
        let configured = in_pod_netns(path, || {
            let mut nl = Netlink::new()?;
            let index = link(&mut nl, ifname)?;
            nl.link_set_mac(index, mac.0)?;
            nl.link_set_mtu(index, u32::from(spec.mtu))?;
            Ok(nl.link_set_up(index)?)
        })
        .map_err(|e| PortError::Configure {
            ifname: ifname.to_string(),
            path: attach.path.clone(),
            err: Box::new(e),
        });
        if let Err(e) = configured {
            if new_device {
                // Created for this port and never handed out: it goes with these queues.
                let _ = tap::set_persist(&fds[0], false);
            }
            return Err(e);
        }
        Ok((fds, new_device))
    }

    fn create_in_pod(
        &mut self,
        spec: &PortSpec,
        path: &Path,
        ifname: &str,
    ) -> Result<Vec<OwnedFd>, PortError> {
        let name = &spec.name;
        let fds = tap::open(name, self.queues, spec.offloads).map_err(|err| PortError::Open {
            name: name.clone(),
            err,
        })?;
        let nl = &mut self.netlink;
        let moved = (|| -> Result<(), PortError> {
            tap::set_persist(&fds[0], true).map_err(PortError::Persist)?;
            let index = link(nl, name)?;
            let netns = std::fs::File::open(path).map_err(|err| PortError::OpenNetns {
                path: path.display().to_string(),
                err,
            })?;
            nl.link_set_netns_fd(index, &netns)?;
            in_pod_netns(path, || {
                let mut nl = Netlink::new()?;
                let index = link(&mut nl, name)?;
                Ok(nl.link_rename(index, ifname)?)
            })
        })();
        if let Err(e) = moved {
            // Undo persistence so the device disappears with these queues, wherever it is now.
            let _ = tap::set_persist(&fds[0], false);
            return Err(PortError::Move {
                name: name.clone(),
                path: path.display().to_string(),
                ifname: ifname.to_string(),
                err: Box::new(e),
            });
        }
        Ok(fds)
    }
}

/// The index of link `name`, which must exist.
fn link(nl: &mut Netlink, name: &str) -> Result<u32, PortError> {
    nl.link_index(name)?
        .ok_or_else(|| PortError::Vanished(name.to_string()))
}

/// Runs `f` inside the namespace at `path`.
fn in_pod_netns<R: Send>(
    path: &Path,
    f: impl FnOnce() -> Result<R, PortError> + Send,
) -> Result<R, PortError> {
    in_netns(path, f).map_err(|err| PortError::EnterNetns {
        path: path.display().to_string(),
        err: Box::new(err),
    })?
}

impl PortFactory for TapFactory {
    fn create(
        &mut self,
        id: PortId,
        spec: &PortSpec,
        node: &NodeSpec,
    ) -> Result<CreatedPort, PortError> {
        if spec.kind == PortKind::Afxdp {
            return super::afxdp_port::create(id, spec, &self.umems, self.xdp_generic);
        }
        // A tap in the daemon's namespace is not persistent: it vanishes with its queues.
        let (fds, peer_mac, new_device) = match (&spec.netns, &spec.role) {
            (Some(attach), PortRole::Pod { mac, .. }) => {
                let (fds, new_device) = self.in_pod(spec, attach, *mac)?;
                (fds, *mac, new_device)
            }
            (Some(_), PortRole::Host { .. }) => return Err(PortError::HostInNetns),
            (Some(_), PortRole::Uplink { .. }) => return Err(PortError::UplinkInNetns),
            (None, _) => {
                let (fds, mac) = self.local(spec, node)?;
                (fds, mac, false)
            }
        };
        if self.steer_by_cpu {
            if let Some(fd) = fds.first() {
                if let Err(e) = tap::steer_by_cpu(fd) {
                    // Not fatal: the tap then spreads flows over the queues by hash.
                    if !std::mem::replace(&mut self.steer_warned, true) {
                        eprintln!(
                            "podswitchd: {}: cannot steer frames to the sending CPU's worker \
                             ({e}); taps spread flows by hash",
                            spec.name
                        );
                    }
                }
            }
        }
        // A port without offloads receives super-frames from its neighbours cut into ~45
        // segments each, all written in the iteration that cut them: give its queues room
        // for a burst of those rather than losing them as `tx_queue_full`.
        let tx_depth = if spec.offloads {
            MAX_BURST
        } else {
            TX_DEPTH_WITHOUT_OFFLOADS
        };
        let queues = fds
            .into_iter()
            .map(|fd| {
                Box::new(
                    tap::TapQueue::new(id, fd, self.rx_depth, tx_depth)
                        .with_vnet_hdr(spec.offloads),
                ) as Box<dyn PortQueue>
            })
            .collect();
        Ok(CreatedPort {
            queues,
            peer_mac,
            new_device,
            afxdp: None,
        })
    }
}
