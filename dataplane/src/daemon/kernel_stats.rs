//! The kernel's own counters of the ports' devices, read by rtnetlink for the counters dump.
//! They show what the switch cannot see itself: frames a pod sent that were lost in its tap's
//! queue before a worker read them (`tx_dropped` of the tap).
//!
//! Pod taps live in the pods' namespaces under the pod's interface name; a handle is opened in
//! each namespace for the read. A device that cannot be read (gone, namespace unreachable)
//! just has no kernel counters in the dump: this is a diagnostic, never a reason to fail it.

use podswitch_netlink::{LinkStats, Netlink};
use podswitch_proto::{KernelLinkStats, NetnsAttach};
use std::path::Path;

/// Where a port's device is: its name in the daemon's namespace, or a pod namespace and name.
pub(super) enum Device<'a> {
    Local(&'a str),
    InPod(&'a NetnsAttach),
}

/// Reads the counters of each device; `None` for those that could not be read.
pub(super) fn read(devices: &[Device<'_>]) -> Vec<Option<KernelLinkStats>> {
    let mut local = Netlink::new().ok();
    devices
        .iter()
        .map(|d| {
            let stats = match d {
                Device::Local(name) => local.as_mut().and_then(|nl| stats_of(nl, name)),
                Device::InPod(attach) => Netlink::new_in_netns(Path::new(&attach.path))
                    .ok()
                    .and_then(|mut nl| stats_of(&mut nl, &attach.ifname)),
            };
            stats.map(convert)
        })
        .collect()
}

fn stats_of(nl: &mut Netlink, name: &str) -> Option<LinkStats> {
    let index = nl.link_index(name).ok()??;
    nl.link_stats(index).ok()
}

fn convert(s: LinkStats) -> KernelLinkStats {
    KernelLinkStats {
        rx_packets: s.rx_packets,
        rx_bytes: s.rx_bytes,
        rx_dropped: s.rx_dropped,
        rx_errors: s.rx_errors,
        tx_packets: s.tx_packets,
        tx_bytes: s.tx_bytes,
        tx_dropped: s.tx_dropped,
        tx_errors: s.tx_errors,
    }
}
