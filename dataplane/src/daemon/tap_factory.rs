//! Creates tap ports for the daemon: opens one queue per worker and configures the kernel side
//! through rtnetlink (MAC, MTU, address of the host port, link up).

use super::state::{CreatedPort, PortFactory};
use crate::batch::{PortId, MAX_BURST};
use crate::ports::{tap, PortQueue};
use podswitch_netlink::Netlink;
use podswitch_packet::MacAddr;
use podswitch_proto::{NodeSpec, PortRole, PortSpec};

pub(super) struct TapFactory {
    netlink: Netlink,
    queues: usize,
    rx_depth: usize,
}

impl TapFactory {
    pub(super) fn new(queues: usize, rx_depth: usize) -> Result<Self, String> {
        let netlink = Netlink::new().map_err(|e| format!("opening rtnetlink: {e}"))?;
        Ok(Self {
            netlink,
            queues,
            rx_depth,
        })
    }
}

impl PortFactory for TapFactory {
    fn create(
        &mut self,
        id: PortId,
        spec: &PortSpec,
        node: &NodeSpec,
    ) -> Result<CreatedPort, String> {
        let name = &spec.name;
        let fds =
            tap::open(name, self.queues).map_err(|e| format!("creating tap {name:?}: {e}"))?;
        let nl = &mut self.netlink;
        let index = nl
            .link_index(name)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("tap {name:?} vanished right after creation"))?;
        let configure = |nl: &mut Netlink| -> Result<MacAddr, podswitch_netlink::Error> {
            match &spec.role {
                PortRole::Pod { mac, .. } => nl.link_set_mac(index, mac.0)?,
                PortRole::Host { mac: Some(mac) } => nl.link_set_mac(index, mac.0)?,
                PortRole::Host { mac: None } => {}
            }
            nl.link_set_mtu(index, u32::from(spec.mtu))?;
            if let PortRole::Host { .. } = spec.role {
                nl.addr_replace_v4(index, node.gateway, node.pod_cidr.len)?;
            }
            nl.link_set_up(index)?;
            Ok(MacAddr(nl.link_mac(index)?))
        };
        let peer_mac = configure(nl).map_err(|e| format!("configuring tap {name:?}: {e}"))?;
        let queues = fds
            .into_iter()
            .map(|fd| {
                Box::new(tap::TapQueue::new(id, fd, self.rx_depth, MAX_BURST)) as Box<dyn PortQueue>
            })
            .collect();
        Ok(CreatedPort { queues, peer_mac })
    }
}
