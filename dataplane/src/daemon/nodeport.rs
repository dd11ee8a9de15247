//! Keeps the node's NodePort nf_tables table (`ip podswitch`, see `podswitch_netlink::Nftables`)
//! in step with the published configuration: the daemon's apply path calls [`NodePortTable::sync`]
//! after each successful transaction and the table is reprogrammed only when what it should
//! redirect changed. Workers never see it; it is kernel state beside the switch.

use super::state::Config;
use podswitch_netlink::{Nftables, NodePortNat};
use podswitch_proto::PortRole;

/// What the daemon knows of the kernel's table.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Known {
    /// Nothing yet (a daemon that died may have left one) or a change failed half way for
    /// all we know: the next sync programs or deletes it whatever it believes.
    Unknown,
    Absent,
    Programmed(NodePortNat),
}

/// The daemon's side of the NodePort table.
#[derive(Debug)]
pub(super) struct NodePortTable {
    known: Known,
    /// This daemon has changed (or tried to change) the kernel's table.
    touched: bool,
}

impl Default for NodePortTable {
    fn default() -> Self {
        NodePortTable {
            known: Known::Unknown,
            touched: false,
        }
    }
}

impl NodePortTable {
    /// Makes the kernel's table redirect `want`, or removes it for `None`; does nothing when
    /// it already does. After a failure the table's state is unknown and the next call
    /// reprograms it.
    pub(super) fn sync(
        &mut self,
        want: Option<NodePortNat>,
    ) -> Result<(), podswitch_netlink::Error> {
        let target = match want {
            Some(nat) => Known::Programmed(nat),
            None => Known::Absent,
        };
        if self.known == target {
            return Ok(());
        }
        self.known = Known::Unknown;
        self.touched = true;
        let result = Nftables::new().and_then(|mut nft| match &target {
            Known::Programmed(nat) => nft.replace_nodeport_table(nat),
            _ => nft.delete_nodeport_table(),
        });
        match result {
            Ok(()) => {}
            // A kernel without nf_tables (or nfnetlink) holds no table to delete: not an
            // error to repeat on every apply of a node that uses no NodePorts.
            Err(e) if target == Known::Absent && lacks_nf_tables(&e) => {}
            Err(e) => return Err(e),
        }
        self.known = target;
        Ok(())
    }

    /// Deletes the table if this daemon made (or may have made) it. A daemon that never
    /// synced leaves the kernel alone: its unit tests and a `--print-config` run must not
    /// touch the namespace they run in.
    pub(super) fn remove(&mut self) -> Result<(), podswitch_netlink::Error> {
        if !self.touched {
            return Ok(());
        }
        self.sync(None)
    }
}

/// Whether `e` says this kernel has no nf_tables at all: no NETLINK_NETFILTER protocol
/// (`EPROTONOSUPPORT`) or no nf_tables subsystem behind it (`EOPNOTSUPP` on the batch).
fn lacks_nf_tables(e: &podswitch_netlink::Error) -> bool {
    matches!(e.errno(), Some(libc::EPROTONOSUPPORT | libc::EOPNOTSUPP))
}

/// The table `config` calls for, given the NodePorts of its Services: none without a host
/// port (the redirect would lead nowhere), without a `node_port_ip`, or without NodePorts.
pub(super) fn wanted(config: &Config, tcp_ports: &[u16], udp_ports: &[u16]) -> Option<NodePortNat> {
    let node_port_ip = config.node.as_ref()?.node_port_ip?;
    let has_host_port = config
        .ports
        .values()
        .any(|p| matches!(p.spec.role, PortRole::Host { .. }));
    if !has_host_port || (tcp_ports.is_empty() && udp_ports.is_empty()) {
        return None;
    }
    Some(NodePortNat {
        node_port_ip,
        tcp_ports: tcp_ports.to_vec(),
        udp_ports: udp_ports.to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::state::tests::node_config;
    use std::net::Ipv4Addr;

    const NODE_PORT_IP: Ipv4Addr = Ipv4Addr::new(10, 96, 255, 254);

    #[test]
    fn table_is_wanted_with_host_port_node_port_ip_and_ports() {
        assert_eq!(
            wanted(&node_config(Some(NODE_PORT_IP), true), &[30080], &[]),
            Some(NodePortNat {
                node_port_ip: NODE_PORT_IP,
                tcp_ports: vec![30080],
                udp_ports: vec![],
            })
        );
    }

    #[test]
    fn no_table_without_host_port_node_port_ip_or_node_ports() {
        assert_eq!(
            wanted(&node_config(Some(NODE_PORT_IP), false), &[30080], &[]),
            None
        );
        assert_eq!(wanted(&node_config(None, true), &[30080], &[30053]), None);
        assert_eq!(
            wanted(&node_config(Some(NODE_PORT_IP), true), &[], &[]),
            None
        );
        assert_eq!(wanted(&Config::default(), &[30080], &[]), None);
    }

    #[test]
    fn sync_to_what_is_known_to_be_there_does_not_touch_the_kernel() {
        // Known absent and asked for absent: returns before opening any socket, so this
        // passes even where NETLINK_NETFILTER is unavailable.
        let mut t = NodePortTable {
            known: Known::Absent,
            touched: true,
        };
        t.sync(None).unwrap();
        assert_eq!(t.known, Known::Absent);
    }

    #[test]
    fn remove_on_a_daemon_that_never_synced_does_not_touch_the_kernel() {
        let mut t = NodePortTable::default();
        t.remove().unwrap();
        assert_eq!(t.known, Known::Unknown);
    }
}
