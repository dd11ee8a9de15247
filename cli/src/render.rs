//! Tables for people: aligned columns under a header row, widths computed from the cells.
//!
//! Text columns are left-aligned and numbers right-aligned; columns are two spaces apart and no
//! line carries trailing spaces, so the output diffs and greps cleanly. This file renders
//! podswitchd's answers; `control` renders podswitch-control's.

pub mod control;
pub mod flows;
pub mod policies;

use podswitch_proto::{
    CountersDump, Encap, NeighborInfo, PortInfo, PortKind, PortRole, RouteInfo, RouteOrigin,
    RouteTarget, Status, XdpAttachMode, XskBindMode,
};

/// Which side of its column a cell hugs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Align {
    /// Text.
    Left,
    /// Numbers.
    Right,
}

/// A table being filled row by row.
#[derive(Debug)]
pub struct Table {
    header: Vec<(&'static str, Align)>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column titles.
    pub fn new(header: &[(&'static str, Align)]) -> Self {
        Self {
            header: header.to_vec(),
            rows: Vec::new(),
        }
    }

    /// Appends a row; it must have one cell per column.
    pub fn row(&mut self, cells: Vec<String>) {
        debug_assert_eq!(cells.len(), self.header.len());
        self.rows.push(cells);
    }

    /// The header and every row, each line ending in a newline.
    pub fn render(&self) -> String {
        let mut widths: Vec<usize> = self.header.iter().map(|(h, _)| h.len()).collect();
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let titles: Vec<String> = self.header.iter().map(|(h, _)| h.to_string()).collect();
        let mut out = String::new();
        for cells in std::iter::once(&titles).chain(&self.rows) {
            let mut line = String::new();
            for (i, cell) in cells.iter().enumerate() {
                if i > 0 {
                    line.push_str("  ");
                }
                let pad = widths[i].saturating_sub(cell.chars().count());
                match self.header[i].1 {
                    Align::Left => {
                        line.push_str(cell);
                        line.extend(std::iter::repeat_n(' ', pad));
                    }
                    Align::Right => {
                        line.extend(std::iter::repeat_n(' ', pad));
                        line.push_str(cell);
                    }
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

use Align::{Left, Right};

/// `status`: one `key  value` line per fact.
pub fn status(s: &Status) -> String {
    let node = match &s.node {
        Some(n) => {
            let mac = n.gateway_mac.map(|m| format!(" ({m})")).unwrap_or_default();
            format!("pod CIDR {}, gateway {}{mac}", n.pod_cidr, n.gateway)
        }
        None => "not set (podswitchctl dp set-node)".to_string(),
    };
    key_values(&[
        ("protocol", s.version.to_string()),
        ("generation", s.generation.to_string()),
        ("workers", s.workers.to_string()),
        ("node", node),
        ("ports", s.ports.to_string()),
        ("routes", s.routes.to_string()),
    ])
}

/// One `key  value` line per fact, the values aligned.
pub fn key_values(facts: &[(&str, String)]) -> String {
    let width = facts.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    facts
        .iter()
        .map(|(k, v)| format!("{k:width$}  {v}").trim_end().to_string() + "\n")
        .collect()
}

/// `ports`: ID NAME KIND ROLE MAC IP MTU QUEUES OFFLOADS (`on`: the port exchanges TSO/USO
/// super-frames and partial checksums with its kernel side; `off`: whole frames only, the
/// switch segmenting for it). An afxdp port's KIND says its interface, the queue of each
/// worker, and the modes obtained: `afxdp veth0/0 native/copy`.
pub fn ports(ports: &[PortInfo]) -> String {
    let mut t = Table::new(&[
        ("ID", Right),
        ("NAME", Left),
        ("KIND", Left),
        ("ROLE", Left),
        ("MAC", Left),
        ("IP", Left),
        ("MTU", Right),
        ("QUEUES", Right),
        ("OFFLOADS", Left),
    ]);
    for p in ports {
        let kind = match (p.kind, &p.afxdp) {
            (PortKind::Tap, _) => "tap".to_string(),
            // The modes the kernel gave: where the XDP program runs, how frames cross.
            (PortKind::Afxdp, Some(x)) => format!(
                "afxdp {}/{} {}",
                x.ifname,
                x.queue_ids
                    .iter()
                    .map(u32::to_string)
                    .collect::<Vec<_>>()
                    .join(","),
                match (x.xdp, x.bind) {
                    (XdpAttachMode::Native, XskBindMode::ZeroCopy) => "native/zerocopy",
                    (XdpAttachMode::Native, XskBindMode::Copy) => "native/copy",
                    (XdpAttachMode::Generic, XskBindMode::ZeroCopy) => "generic/zerocopy",
                    (XdpAttachMode::Generic, XskBindMode::Copy) => "generic/copy",
                }
            ),
            (PortKind::Afxdp, None) => "afxdp".to_string(),
        };
        let (role, mac, ip) = match &p.role {
            PortRole::Pod {
                mac,
                ip,
                namespace,
                pod,
            } => {
                let role = match (namespace, pod) {
                    (Some(ns), Some(pod)) => format!("pod {ns}/{pod}"),
                    (None, Some(pod)) => format!("pod {pod}"),
                    (Some(ns), None) => format!("pod {ns}/-"),
                    (None, None) => "pod".to_string(),
                };
                (role, mac.to_string(), ip.to_string())
            }
            PortRole::Host { mac } => (
                "host".to_string(),
                mac.map_or_else(|| "-".to_string(), |m| m.to_string()),
                "-".to_string(),
            ),
            PortRole::Uplink {
                mac,
                ip,
                encap,
                gateway,
            } => (
                match encap {
                    Encap::Direct => "uplink direct".to_string(),
                    Encap::Vxlan { vni, port } => format!("uplink vxlan {vni}:{port}"),
                },
                mac.to_string(),
                match gateway {
                    Some(g) => format!("{ip}/{} via {}", g.segment.len, g.ip),
                    None => ip.to_string(),
                },
            ),
        };
        t.row(vec![
            p.id.to_string(),
            p.name.clone(),
            kind,
            role,
            mac,
            ip,
            p.mtu.to_string(),
            p.queues.to_string(),
            if p.offloads { "on" } else { "off" }.to_string(),
        ]);
    }
    t.render()
}

/// `routes`: PREFIX TARGET ORIGIN.
pub fn routes(routes: &[RouteInfo]) -> String {
    let mut t = Table::new(&[("PREFIX", Left), ("TARGET", Left), ("ORIGIN", Left)]);
    for r in routes {
        let target = match &r.target {
            RouteTarget::Port { port } => format!("port {port}"),
            RouteTarget::Host => "host".to_string(),
            RouteTarget::Unreachable => "unreachable".to_string(),
            RouteTarget::Node {
                ip,
                vtep_mac,
                gateway,
            } => {
                let mut s = format!("node {ip}");
                if let Some(mac) = vtep_mac {
                    s += &format!(" vtep {mac}");
                }
                if let Some(g) = gateway {
                    s += &format!(" via {g}");
                }
                s
            }
            RouteTarget::Uplink { gateway: Some(g) } => format!("uplink via {g} (snat)"),
            RouteTarget::Uplink { gateway: None } => "uplink on-link (snat)".to_string(),
        };
        let origin = match r.origin {
            RouteOrigin::Static => "static",
            RouteOrigin::Connected => "connected",
        };
        t.row(vec![r.prefix.to_string(), target, origin.to_string()]);
    }
    t.render()
}

/// `neighbors`: IP MAC PORT KIND STATE AGE (the last two for next hops learnt by ARP;
/// an incomplete one has no MAC yet).
pub fn neighbors(neighbors: &[NeighborInfo]) -> String {
    let mut t = Table::new(&[
        ("IP", Left),
        ("MAC", Left),
        ("PORT", Left),
        ("KIND", Left),
        ("STATE", Left),
        ("AGE", Right),
    ]);
    for n in neighbors {
        let incomplete = n.state.as_deref() == Some("incomplete");
        t.row(vec![
            n.ip.to_string(),
            if incomplete {
                "-".to_string()
            } else {
                n.mac.to_string()
            },
            n.port.clone(),
            n.kind.clone(),
            n.state.clone().unwrap_or_else(|| "-".into()),
            n.age_secs.map_or_else(|| "-".into(), |s| format!("{s}s")),
        ]);
    }
    t.render()
}

/// `counters`: ports, then workers, then drops, then events, separated by blank lines. Drop
/// reasons and events that never happened are left out unless `all`, so a healthy switch reads
/// "no drops".
///
/// Beside the switch's own port counters stand the kernel's for the port's device (`DEV_*`,
/// `-` when unreadable): `DEV_TX` is what the pod sent into its tap, `DEV_TX_DROP` what the
/// tap's queue lost before the switch read it, `DEV_RX_DROP` what the pod's side dropped of
/// what the switch wrote.
pub fn counters(c: &CountersDump, all: bool) -> String {
    let mut ports = Table::new(&[
        ("PORT", Left),
        ("RX_PKTS", Right),
        ("RX_BYTES", Right),
        ("RX_ERR", Right),
        ("TX_PKTS", Right),
        ("TX_BYTES", Right),
        ("TX_ERR", Right),
        ("DEV_TX", Right),
        ("DEV_TX_DROP", Right),
        ("DEV_RX", Right),
        ("DEV_RX_DROP", Right),
    ]);
    for p in &c.ports {
        let k = |f: fn(&podswitch_proto::KernelLinkStats) -> u64| {
            p.kernel
                .as_ref()
                .map_or("-".to_string(), |k| f(k).to_string())
        };
        ports.row(vec![
            p.port.clone(),
            p.rx_packets.to_string(),
            p.rx_bytes.to_string(),
            p.rx_errors.to_string(),
            p.tx_packets.to_string(),
            p.tx_bytes.to_string(),
            p.tx_errors.to_string(),
            k(|k| k.tx_packets),
            k(|k| k.tx_dropped),
            k(|k| k.rx_packets),
            k(|k| k.rx_dropped),
        ]);
    }

    let mut workers = Table::new(&[
        ("WORKER", Left),
        ("RX_PKTS", Right),
        ("RX_BYTES", Right),
        ("TX_PKTS", Right),
        ("TX_BYTES", Right),
        ("DROPS", Right),
    ]);
    for w in &c.workers {
        workers.row(vec![
            w.worker.to_string(),
            w.rx_packets.to_string(),
            w.rx_bytes.to_string(),
            w.tx_packets.to_string(),
            w.tx_bytes.to_string(),
            w.drops.to_string(),
        ]);
    }
    let workers = if c.workers.is_empty() {
        String::new()
    } else {
        format!("{}\n", workers.render())
    };

    let drops: Vec<_> = c.drops.iter().filter(|d| all || d.count > 0).collect();
    let drops = if drops.is_empty() {
        "no drops\n".to_string()
    } else {
        let mut t = Table::new(&[
            ("STAGE", Left),
            ("REASON", Left),
            ("COUNT", Right),
            ("DESCRIPTION", Left),
        ]);
        for d in drops {
            t.row(vec![
                d.stage.clone(),
                d.reason.clone(),
                d.count.to_string(),
                d.description.clone(),
            ]);
        }
        t.render()
    };

    let events: Vec<_> = c.events.iter().filter(|e| all || e.count > 0).collect();
    let events = if events.is_empty() {
        "no events\n".to_string()
    } else {
        let mut t = Table::new(&[("EVENT", Left), ("COUNT", Right)]);
        for e in events {
            t.row(vec![e.event.clone(), e.count.to_string()]);
        }
        t.render()
    };

    format!("{}\n{workers}{drops}\n{events}", ports.render())
}

#[cfg(test)]
mod tests {
    use super::*;
    use podswitch_proto::{
        DropCount, EventCount, KernelLinkStats, NodeSpec, PortCounters, WorkerCounters,
    };
    use std::net::Ipv4Addr;

    fn pod_port(id: u32, name: &str, ns: Option<&str>, pod: Option<&str>) -> PortInfo {
        PortInfo {
            id,
            name: name.into(),
            kind: PortKind::Tap,
            role: PortRole::Pod {
                mac: format!("02:00:00:00:00:{id:02x}").parse().unwrap(),
                ip: Ipv4Addr::new(10, 244, 1, id as u8),
                namespace: ns.map(Into::into),
                pod: pod.map(Into::into),
            },
            mtu: 1500,
            netns: None,
            queues: 2,
            offloads: true,
            afxdp: None,
        }
    }

    #[test]
    fn columns_are_as_wide_as_their_widest_cell_and_numbers_hug_the_right() {
        let mut t = Table::new(&[("NAME", Left), ("N", Right), ("NOTE", Left)]);
        t.row(vec!["a".into(), "12345".into(), "x".into()]);
        t.row(vec!["longer-name".into(), "7".into(), "".into()]);
        assert_eq!(
            t.render(),
            "NAME             N  NOTE\n\
             a            12345  x\n\
             longer-name      7\n"
        );
    }

    #[test]
    fn empty_table_is_its_header() {
        assert_eq!(routes(&[]), "PREFIX  TARGET  ORIGIN\n");
    }

    #[test]
    fn ports_show_pod_identity_and_host_without_ip() {
        let list = vec![
            PortInfo {
                id: 0,
                name: "psw0".into(),
                kind: PortKind::Tap,
                role: PortRole::Host { mac: None },
                mtu: 1500,
                netns: None,
                queues: 2,
                offloads: true,
                afxdp: None,
            },
            pod_port(1, "tap-web", Some("default"), Some("web-0")),
            PortInfo {
                offloads: false,
                ..pod_port(12, "tap-x", None, None)
            },
        ];
        assert_eq!(
            ports(&list),
            "ID  NAME     KIND  ROLE               MAC                IP            MTU  QUEUES  OFFLOADS\n\
             \x200  psw0     tap   host               -                  -            1500       2  on\n\
             \x201  tap-web  tap   pod default/web-0  02:00:00:00:00:01  10.244.1.1   1500       2  on\n\
             12  tap-x    tap   pod                02:00:00:00:00:0c  10.244.1.12  1500       2  off\n"
        );
    }

    #[test]
    fn an_afxdp_port_shows_its_interface_queues_and_modes() {
        let p = PortInfo {
            kind: PortKind::Afxdp,
            offloads: false,
            afxdp: Some(podswitch_proto::AfxdpInfo {
                ifname: "vsw1".into(),
                queue_ids: vec![0, 1],
                xdp: XdpAttachMode::Native,
                bind: XskBindMode::Copy,
            }),
            ..pod_port(3, "vsw1", None, None)
        };
        let out = ports(&[p]);
        assert!(
            out.lines()
                .nth(1)
                .unwrap()
                .contains("afxdp vsw1/0,1 native/copy  pod"),
            "{out}"
        );
    }

    #[test]
    fn routes_name_their_target_and_origin() {
        let list = vec![
            RouteInfo {
                prefix: "10.244.1.2/32".parse().unwrap(),
                target: RouteTarget::Port {
                    port: "tap-web".into(),
                },
                origin: RouteOrigin::Connected,
            },
            RouteInfo {
                prefix: "10.244.9.0/24".parse().unwrap(),
                target: RouteTarget::Unreachable,
                origin: RouteOrigin::Static,
            },
            RouteInfo {
                prefix: "0.0.0.0/0".parse().unwrap(),
                target: RouteTarget::Host,
                origin: RouteOrigin::Static,
            },
        ];
        assert_eq!(
            routes(&list),
            "PREFIX         TARGET        ORIGIN\n\
             10.244.1.2/32  port tap-web  connected\n\
             10.244.9.0/24  unreachable   static\n\
             0.0.0.0/0      host          static\n"
        );
    }

    #[test]
    fn neighbors_table() {
        let list = vec![
            NeighborInfo {
                ip: Ipv4Addr::new(10, 244, 1, 1),
                mac: "02:aa:00:00:00:01".parse().unwrap(),
                port: "-".into(),
                kind: "switch".into(),
                state: None,
                age_secs: None,
            },
            NeighborInfo {
                ip: Ipv4Addr::new(192, 168, 1, 2),
                mac: "52:54:00:00:00:02".parse().unwrap(),
                port: "eth1".into(),
                kind: "nexthop".into(),
                state: Some("reachable".into()),
                age_secs: Some(12),
            },
            NeighborInfo {
                ip: Ipv4Addr::new(192, 168, 1, 3),
                mac: "00:00:00:00:00:00".parse().unwrap(),
                port: "eth1".into(),
                kind: "nexthop".into(),
                state: Some("incomplete".into()),
                age_secs: Some(0),
            },
        ];
        assert_eq!(
            neighbors(&list),
            "IP           MAC                PORT  KIND     STATE       AGE\n\
             10.244.1.1   02:aa:00:00:00:01  -     switch   -             -\n\
             192.168.1.2  52:54:00:00:00:02  eth1  nexthop  reachable   12s\n\
             192.168.1.3  -                  eth1  nexthop  incomplete   0s\n"
        );
    }

    fn dump() -> CountersDump {
        CountersDump {
            ports: vec![
                PortCounters {
                    port: "psw0".into(),
                    rx_packets: 3,
                    rx_bytes: 252,
                    rx_errors: 0,
                    tx_packets: 120,
                    tx_bytes: 10080,
                    tx_errors: 0,
                    kernel: Some(KernelLinkStats {
                        rx_packets: 120,
                        tx_packets: 9,
                        tx_dropped: 6,
                        ..Default::default()
                    }),
                },
                PortCounters {
                    port: "tap-web".into(),
                    rx_packets: 0,
                    rx_bytes: 0,
                    rx_errors: 2,
                    tx_packets: 0,
                    tx_bytes: 0,
                    tx_errors: 1,
                    kernel: None,
                },
            ],
            workers: vec![WorkerCounters {
                worker: 0,
                rx_packets: 3,
                rx_bytes: 252,
                tx_packets: 120,
                tx_bytes: 10080,
                drops: 42,
            }],
            drops: vec![
                DropCount {
                    reason: "no_route".into(),
                    stage: "l3".into(),
                    description: "no route to the destination".into(),
                    count: 0,
                },
                DropCount {
                    reason: "spoofed_source_ip".into(),
                    stage: "l2".into(),
                    description: "source IP is not the port's".into(),
                    count: 42,
                },
            ],
            events: vec![
                EventCount {
                    event: "arp_reply".into(),
                    count: 5,
                },
                EventCount {
                    event: "icmp_unreachable".into(),
                    count: 0,
                },
            ],
        }
    }

    #[test]
    fn counters_hide_zero_drops_and_events() {
        assert_eq!(
            counters(&dump(), false),
            "PORT     RX_PKTS  RX_BYTES  RX_ERR  TX_PKTS  TX_BYTES  TX_ERR  DEV_TX  DEV_TX_DROP  DEV_RX  DEV_RX_DROP\n\
             psw0           3       252       0      120     10080       0       9            6     120            0\n\
             tap-web        0         0       2        0         0       1       -            -       -            -\n\
             \n\
             WORKER  RX_PKTS  RX_BYTES  TX_PKTS  TX_BYTES  DROPS\n\
             0             3       252      120     10080     42\n\
             \n\
             STAGE  REASON             COUNT  DESCRIPTION\n\
             l2     spoofed_source_ip     42  source IP is not the port's\n\
             \n\
             EVENT      COUNT\n\
             arp_reply      5\n"
        );
    }

    #[test]
    fn counters_all_shows_zero_rows() {
        let text = counters(&dump(), true);
        assert!(
            text.contains(
                "STAGE  REASON             COUNT  DESCRIPTION\n\
                 l3     no_route               0  no route to the destination\n\
                 l2     spoofed_source_ip     42  source IP is not the port's\n"
            ),
            "{text}"
        );
        assert!(
            text.ends_with("arp_reply             5\nicmp_unreachable      0\n"),
            "{text}"
        );
    }

    #[test]
    fn counters_without_drops_say_so() {
        let mut c = dump();
        c.drops.iter_mut().for_each(|d| d.count = 0);
        c.events.clear();
        assert!(
            counters(&c, false).ends_with("\nno drops\n\nno events\n"),
            "{}",
            counters(&c, false)
        );
    }

    #[test]
    fn status_lists_node_addressing() {
        let mut s = Status {
            version: 1,
            generation: 7,
            workers: 2,
            node: Some(NodeSpec {
                pod_cidr: "10.244.1.0/24".parse().unwrap(),
                gateway: Ipv4Addr::new(10, 244, 1, 1),
                gateway_mac: Some("02:aa:00:00:00:01".parse().unwrap()),
                service_cidr: None,
                node_port_ip: None,
            }),
            ports: 3,
            routes: 4,
        };
        assert_eq!(
            status(&s),
            "protocol    1\n\
             generation  7\n\
             workers     2\n\
             node        pod CIDR 10.244.1.0/24, gateway 10.244.1.1 (02:aa:00:00:00:01)\n\
             ports       3\n\
             routes      4\n"
        );
        s.node = None;
        assert!(status(&s).contains("node        not set (podswitchctl dp set-node)\n"));
    }
}
