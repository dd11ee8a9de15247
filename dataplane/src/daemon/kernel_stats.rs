//! The kernel's own counters of the ports' devices, read by rtnetlink for the counters dump.
//! They show what the switch cannot see itself: frames a pod sent that were lost in its tap's
//! queue before a worker read them (`tx_dropped` of the tap).
//!
//! Pod taps live in the pods' namespaces under the pod's interface name; one handle is opened
//! per namespace for each dump, so a dump enters every pod's namespace once: a diagnostics
//! call, not one to poll at a high rate. A device that cannot be read (gone, namespace unreachable)
//! just has no kernel counters in the dump: this is a diagnostic, never a reason to fail it.

use podswitch_netlink::{LinkStats, Netlink};
use podswitch_proto::{KernelLinkStats, NetnsAttach};
use std::collections::HashMap;
use std::path::Path;

/// Where a port's device is: its name in the daemon's namespace, or a pod namespace and name.
pub(super) enum Device<'a> {
    Local(&'a str),
    InPod(&'a NetnsAttach),
}

/// Reads the counters of each device; `None` for those that could not be read. Opens one
/// netlink handle per namespace for the whole call (entering a namespace costs a thread and a
/// `setns`), however many of the devices live there.
pub(super) fn read(devices: &[Device<'_>]) -> Vec<Option<KernelLinkStats>> {
    read_with(
        devices,
        |netns| match netns {
            None => Netlink::new().ok(),
            Some(path) => Netlink::new_in_netns(Path::new(path)).ok(),
        },
        stats_of,
    )
    .into_iter()
    .map(|s| s.map(convert))
    .collect()
}

/// [`read`] with the handle opener and the read passed in: `open(None)` opens a handle in the
/// daemon's namespace, `open(Some(path))` one in the namespace at `path`. Each namespace is
/// opened at most once, a failed open included.
fn read_with<H>(
    devices: &[Device<'_>],
    mut open: impl FnMut(Option<&str>) -> Option<H>,
    mut stats: impl FnMut(&mut H, &str) -> Option<LinkStats>,
) -> Vec<Option<LinkStats>> {
    let mut handles: HashMap<Option<&str>, Option<H>> = HashMap::new();
    devices
        .iter()
        .map(|d| {
            let (netns, name) = match d {
                Device::Local(name) => (None, *name),
                Device::InPod(attach) => (Some(attach.path.as_str()), attach.ifname.as_str()),
            };
            let handle = handles.entry(netns).or_insert_with(|| open(netns));
            handle.as_mut().and_then(|h| stats(h, name))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn attach(path: &str, ifname: &str) -> NetnsAttach {
        NetnsAttach {
            path: path.into(),
            ifname: ifname.into(),
        }
    }

    #[test]
    fn each_namespace_is_entered_once_per_dump_however_many_ports_it_holds() {
        let a0 = attach("/run/netns/a", "eth0");
        let a1 = attach("/run/netns/a", "eth1");
        let b0 = attach("/run/netns/b", "eth0");
        let devices = [
            Device::InPod(&a0),
            Device::Local("host0"),
            Device::InPod(&a1),
            Device::InPod(&b0),
            Device::Local("host1"),
        ];
        let mut opened = Vec::new();
        let read = read_with(
            &devices,
            |netns| {
                opened.push(netns.map(str::to_owned));
                // The namespace b cannot be entered.
                (netns != Some("/run/netns/b")).then(|| netns.map(str::to_owned))
            },
            |ns, name| {
                Some(LinkStats {
                    rx_packets: u64::from(ns.is_some()),
                    rx_bytes: name.len() as u64,
                    ..LinkStats::default()
                })
            },
        );
        assert_eq!(
            opened,
            [
                Some("/run/netns/a".to_owned()),
                None,
                Some("/run/netns/b".to_owned())
            ],
            "one handle per namespace, in the order first needed"
        );
        let got: Vec<_> = read
            .iter()
            .map(|s| s.map(|s| (s.rx_packets, s.rx_bytes)))
            .collect();
        assert_eq!(
            got,
            [Some((1, 4)), Some((0, 5)), Some((1, 4)), None, Some((0, 5))],
            "each device read through its namespace's handle; b's device unreadable"
        );
    }
}
