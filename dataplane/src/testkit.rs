//! Test and benchmark support: a standard one-node topology on memory ports and builders for
//! the frames the tests send. Not used by the daemon.
//!
//! Topology: gateway 10.244.1.1 (the switch), host port 0, pod A (port 1, 10.244.1.2) and pod B
//! (port 2, 10.244.1.3); routes: default → host, 10.244.1.0/24 → unreachable, pods' /32s.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use crate::batch::{Batch, Meta, Next, PortId};
use crate::buffer::Pool;
use crate::counters::Counters;
use crate::pipeline::{Ctx, FlowState, Mode, WorkerState};
use crate::tables::{Binding, Fib, Node, PortEntry, Route, RouteTarget, Tables};
use crate::trace::Trace;
use podswitch_packet::{
    checksum, EtherType, EthernetFrame, IpProtocol, Ipv4Packet, MacAddr, ETHERNET_HEADER_LEN,
};
use std::net::Ipv4Addr;
use std::time::Instant;

pub const HOST: PortId = 0;
pub const POD_A: PortId = 1;
pub const POD_B: PortId = 2;
pub const GW_MAC: MacAddr = MacAddr([0x02, 0x50, 0x53, 0x00, 0x00, 0x01]);
pub const HOST_MAC: MacAddr = MacAddr([0x02, 0x50, 0x53, 0x00, 0x00, 0xfe]);
pub const POD_A_MAC: MacAddr = MacAddr([0x02, 0x00, 0x0a, 0xf4, 0x01, 0x02]);
pub const POD_B_MAC: MacAddr = MacAddr([0x02, 0x00, 0x0a, 0xf4, 0x01, 0x03]);
pub const GW_IP: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 1);
pub const POD_A_IP: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 2);
pub const POD_B_IP: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 3);
pub const UNUSED_POD_IP: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 99);

fn port(name: &str, mac: MacAddr, binding: Binding, mtu: u16) -> Option<PortEntry> {
    Some(PortEntry {
        name: name.into(),
        peer_mac: mac,
        binding,
        mtu,
        offloads: true,
        uid: u32::from(mac.0[5]) + 1,
    })
}

/// A deterministic xorshift64 stream for randomized tests (fast, reproducible from `seed`,
/// never 0 from a non-zero seed; not for secrets).
pub fn xorshift(mut seed: u64) -> impl FnMut() -> u64 {
    move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    }
}

/// The pieces of `data` between occurrences of `separator` (fuzz targets read a burst of
/// frames this way); `data` without one, or an empty `separator`, is one piece.
pub fn split_frames<'a>(mut data: &'a [u8], separator: &'a [u8]) -> impl Iterator<Item = &'a [u8]> {
    let mut done = false;
    std::iter::from_fn(move || {
        if done {
            return None;
        }
        let found = (!separator.is_empty())
            .then(|| data.windows(separator.len()).position(|w| w == separator))
            .flatten();
        match found {
            Some(at) => {
                let frame = &data[..at];
                data = &data[at + separator.len()..];
                Some(frame)
            }
            None => {
                done = true;
                Some(data)
            }
        }
    })
}

/// The standard topology's tables, with `extra_pods` more pods (10.244.x.y from port 3 on)
/// to measure lookups in a bigger table.
pub fn tables_with(default_route: bool, pod_b_mtu: u16, extra_pods: usize) -> Tables {
    let mut ports = vec![
        port("psw0", HOST_MAC, Binding::Host, 1500),
        port("pod-a", POD_A_MAC, Binding::Pod { ip: POD_A_IP }, 1500),
        port("pod-b", POD_B_MAC, Binding::Pod { ip: POD_B_IP }, pod_b_mtu),
    ];
    let mut routes = vec![
        Route {
            prefix: Ipv4Addr::new(10, 244, 1, 0),
            len: 24,
            target: RouteTarget::Unreachable,
        },
        Route {
            prefix: POD_A_IP,
            len: 32,
            target: RouteTarget::Port(POD_A),
        },
        Route {
            prefix: POD_B_IP,
            len: 32,
            target: RouteTarget::Port(POD_B),
        },
    ];
    if default_route {
        routes.push(Route {
            prefix: Ipv4Addr::UNSPECIFIED,
            len: 0,
            target: RouteTarget::Host,
        });
    }
    for i in 0..extra_pods {
        let id = ports.len() as PortId;
        let ip = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 245, 0, 0)) + i as u32);
        let o = ip.octets();
        ports.push(port(
            "pod-x",
            MacAddr([2, 0, o[0], o[1], o[2], o[3]]),
            Binding::Pod { ip },
            1500,
        ));
        routes.push(Route {
            prefix: ip,
            len: 32,
            target: RouteTarget::Port(id),
        });
    }
    Tables {
        generation: 1,
        node: Some(Node {
            gateway_ip: GW_IP,
            gateway_mac: GW_MAC,
        }),
        ports: ports.into(),
        host_port: Some(HOST),
        fib: Fib::new(routes).into(),
        ..Tables::default()
    }
}

pub const UPLINK: PortId = 3;
/// The switch's own MAC and address on the uplink (the node's InternalIP).
pub const UPLINK_MAC: MacAddr = MacAddr([0x0a, 0x58, 0xc0, 0xa8, 0x01, 0x01]);
pub const UPLINK_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 1);
/// The kernel side of the uplink (the underlay), never checked: many MACs are behind it.
pub const UNDERLAY_MAC: MacAddr = MacAddr([0x02, 0x50, 0x53, 0x00, 0x00, 0xfd]);
/// Node 2: InternalIP, NIC MAC, podCIDR 10.244.2.0/24 and one of its pods.
pub const NODE2_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 2);
pub const NODE2_MAC: MacAddr = MacAddr([0x52, 0x54, 0x00, 0x00, 0x00, 0x02]);
pub const NODE2_POD_IP: Ipv4Addr = Ipv4Addr::new(10, 244, 2, 5);
/// Node 2's tunnel endpoint MAC (the inner destination of VXLAN frames to it).
pub const NODE2_VTEP_MAC: MacAddr = MacAddr([0x0a, 0x58, 0x0a, 0xf4, 0x02, 0x01]);
pub const VNI: u32 = 42;

/// The standard topology plus an uplink (port 3, MTU 1500) with `encap`, and a route
/// 10.244.2.0/24 → node 2.
pub fn tables_multinode(encap: crate::tables::Encap) -> Tables {
    use crate::tables::{NextHop, NextHops, Uplink};
    let mut t = tables_with(true, 1500, 0);
    let mut ports = (*t.ports).clone();
    ports.push(port("uplink", UNDERLAY_MAC, Binding::Uplink, 1500));
    t.ports = ports.into();
    t.uplink = Some(Uplink {
        port: UPLINK,
        mac: UPLINK_MAC,
        ip: UPLINK_IP,
        encap,
        gateway: None,
    });
    let mut hops = NextHops::default();
    let hop = hops
        .intern(NextHop::node(NODE2_IP, NODE2_VTEP_MAC, None))
        .unwrap();
    t.next_hops = hops.into();
    let node2 = route([10, 244, 2, 0], 24, RouteTarget::Node(hop));
    reroute(&mut t, |_| true, [node2]);
    t
}

/// The route `a`/`len` → `target`.
pub fn route(a: [u8; 4], len: u8, target: RouteTarget) -> Route {
    Route {
        prefix: Ipv4Addr::from(a),
        len,
        target,
    }
}

/// Rebuilds `t`'s FIB from the routes it has that `keep` keeps, and `add`.
pub fn reroute(
    t: &mut Tables,
    keep: impl Fn(&Route) -> bool,
    add: impl IntoIterator<Item = Route>,
) {
    let routes: Vec<Route> = t.fib.routes().filter(|r| keep(r)).chain(add).collect();
    t.fib = Fib::new(routes).into();
}

/// The underlay gateway (a router on the uplink's segment, 192.168.1.0/24), its MAC, and
/// node 3 behind it (another subnet) with podCIDR 10.244.3.0/24 and one of its pods.
pub const UNDERLAY_GW_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 254);
pub const UNDERLAY_GW_MAC: MacAddr = MacAddr([0x52, 0x54, 0x00, 0x00, 0x00, 0xfe]);
pub const NODE3_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 3, 3);
pub const NODE3_POD_IP: Ipv4Addr = Ipv4Addr::new(10, 244, 3, 5);
/// An address outside the cluster, behind the gateway.
pub const INTERNET_IP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);

/// [`tables_multinode`] with an underlay gateway, as control compiles `--uplink-gateway
/// 192.168.1.254 --uplink-prefix-len 24`: the uplink knows its segment (192.168.1.0/24) and
/// the gateway's hop, and node 3, on another subnet, is routed (10.244.3.0/24) through it.
pub fn tables_underlay_gateway(encap: crate::tables::Encap) -> Tables {
    use crate::tables::NextHop;
    let mut t = tables_multinode(encap);
    let mut hops = (*t.next_hops).clone();
    let node3 = NextHop::node(NODE3_IP, NODE2_VTEP_MAC, Some(UNDERLAY_GW_IP));
    let node3 = hops.intern(node3).unwrap();
    let gateway = hops.intern(NextHop::egress(UNDERLAY_GW_IP)).unwrap();
    t.next_hops = hops.into();
    if let Some(u) = t.uplink.as_mut() {
        let segment = "192.168.1.0/24".parse().expect("a prefix");
        u.gateway = Some((segment, gateway));
    }
    reroute(
        &mut t,
        |_| true,
        [route([10, 244, 3, 0], 24, RouteTarget::Node(node3))],
    );
    t
}

/// [`tables_underlay_gateway`] with egress through the uplink, as control compiles
/// `--egress uplink` beside it: the default route out of the uplink to the gateway (instead of
/// the host), the uplink's segment out of it to each address itself, the uplink's own address
/// to the host.
pub fn tables_egress(encap: crate::tables::Encap) -> Tables {
    use crate::tables::NextHops;
    let mut t = tables_underlay_gateway(encap);
    // The same hop as the uplink's own gateway, as the daemon's compile interns it.
    let gateway = t
        .uplink
        .and_then(|u| u.gateway_hop())
        .expect("the gateway's hop");
    let egress = [
        route([0, 0, 0, 0], 0, RouteTarget::Egress(gateway)),
        route([192, 168, 1, 0], 24, RouteTarget::Egress(NextHops::SEGMENT)),
        route(UPLINK_IP.octets(), 32, RouteTarget::Host),
    ];
    reroute(&mut t, |r| r.target != RouteTarget::Host, egress);
    t
}

/// An ARP reply from `mac`/`ip` to the uplink.
pub fn arp_reply_to_uplink(mac: MacAddr, ip: Ipv4Addr) -> Vec<u8> {
    let mut f = arp_request(mac, ip, UPLINK_IP);
    f[0..6].copy_from_slice(&UPLINK_MAC.0);
    f[21] = 2;
    f[32..38].copy_from_slice(&UPLINK_MAC.0);
    f
}

/// `inner` in VXLAN from node 2 to this node's uplink, outer headers written out field by
/// field (not with `vxlan::Outer`), outer UDP checksum 0, source port 50000.
pub fn vxlan_from_node2(inner: &[u8], vni: u32) -> Vec<u8> {
    let mut f = Vec::with_capacity(50 + inner.len());
    f.extend_from_slice(&UPLINK_MAC.0);
    f.extend_from_slice(&NODE2_MAC.0);
    f.extend_from_slice(&[0x08, 0x00]);
    let ip_len = (20 + 8 + 8 + inner.len()) as u16;
    let mut ip = [0u8; 20];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&ip_len.to_be_bytes());
    ip[6] = 0x40;
    ip[8] = 64;
    ip[9] = 17;
    ip[12..16].copy_from_slice(&NODE2_IP.octets());
    ip[16..20].copy_from_slice(&UPLINK_IP.octets());
    let csum = checksum::checksum(&ip);
    ip[10..12].copy_from_slice(&csum.to_be_bytes());
    f.extend_from_slice(&ip);
    f.extend_from_slice(&50000u16.to_be_bytes());
    f.extend_from_slice(&4789u16.to_be_bytes());
    f.extend_from_slice(&(ip_len - 20).to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    let v = vni.to_be_bytes();
    f.extend_from_slice(&[0x08, 0, 0, 0, v[1], v[2], v[3], 0]);
    f.extend_from_slice(inner);
    f
}

/// Runs one frame through stages on the standard topology.
#[derive(Debug)]
pub struct Harness {
    pub tables: Tables,
    pub pool: Pool,
    pub ctr: Counters,
    pub trace: Trace,
    /// Kept across runs, like a worker's: the ICMP error budget is spent by earlier frames.
    pub state: WorkerState,
    /// Conntrack and its companions, kept across runs.
    pub flows: FlowState,
    /// The clock the stages see.
    pub now: Instant,
    /// Forward (default) or dry run.
    pub mode: Mode,
    /// The frame as it left, if it was output.
    pub last_frame: Vec<u8>,
}

impl Harness {
    pub fn new() -> Self {
        Self::from_tables(tables_with(true, 1500, 0))
    }

    pub fn without_default_route() -> Self {
        Self::from_tables(tables_with(false, 1500, 0))
    }

    pub fn with_pod_b_mtu(mtu: u16) -> Self {
        Self::from_tables(tables_with(true, mtu, 0))
    }

    pub fn from_tables(tables: Tables) -> Self {
        Self {
            tables,
            pool: Pool::new(8),
            ctr: Counters::new(64),
            trace: Trace::on(),
            state: WorkerState::new(Instant::now()),
            flows: FlowState::default(),
            now: Instant::now(),
            mode: Mode::Forward,
            last_frame: Vec::new(),
        }
    }

    /// Runs `stages` over a batch holding `frame` received on `port`; returns the metadata.
    pub fn run_meta(
        &mut self,
        port: PortId,
        frame: &[u8],
        stages: impl FnOnce(&mut Batch, &mut Ctx),
    ) -> Meta {
        let mut batch = Batch::new();
        batch.in_port = port;
        let mut buf = self.pool.get().unwrap();
        buf.fill(frame);
        batch.push(buf).unwrap();
        let mut cx = Ctx::new(
            &self.tables,
            &self.flows,
            &mut self.ctr,
            &mut self.trace,
            &mut self.state,
            self.now,
            self.mode,
        );
        stages(&mut batch, &mut cx);
        let p = batch.iter().next().unwrap();
        let meta = p.meta;
        self.last_frame = match meta.next {
            Next::Output(_) => p.buf.frame().to_vec(),
            _ => Vec::new(),
        };
        batch.recycle(&mut self.pool);
        meta
    }

    /// Like [`Harness::run_meta`], returning the verdict.
    pub fn run_one(
        &mut self,
        port: PortId,
        frame: &[u8],
        stages: impl FnOnce(&mut Batch, &mut Ctx),
    ) -> Next {
        self.run_meta(port, frame, stages).next
    }
}

impl Default for Harness {
    fn default() -> Self {
        Self::new()
    }
}

/// An Ethernet + IPv4 frame with `l4` as payload; DF set, checksums filled.
pub fn ipv4_frame(
    src_mac: MacAddr,
    dst_mac: MacAddr,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    ttl: u8,
    proto: IpProtocol,
    l4: &[u8],
) -> Vec<u8> {
    let mut f = vec![0u8; ETHERNET_HEADER_LEN + 20 + l4.len()];
    let mut eth = EthernetFrame::new_unchecked(&mut f[..]);
    eth.set_dst(dst_mac);
    eth.set_src(src_mac);
    eth.set_ethertype(EtherType::IPV4);
    let mut ip = Ipv4Packet::new_unchecked(&mut f[ETHERNET_HEADER_LEN..]);
    ip.set_version_and_header_len(20);
    ip.set_total_len((20 + l4.len()) as u16);
    ip.set_ident(0x1234);
    ip.set_dont_frag(true);
    ip.set_ttl(ttl);
    ip.set_protocol(proto);
    ip.set_src(src);
    ip.set_dst(dst);
    ip.fill_checksum();
    ip.payload_mut().copy_from_slice(l4);
    f
}

/// A UDP datagram 4000 → 5000 with `payload_len` bytes of payload (UDP checksum 0: optional).
pub fn udp_frame(
    src_mac: MacAddr,
    dst_mac: MacAddr,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    ttl: u8,
    payload_len: usize,
) -> Vec<u8> {
    let mut udp = vec![0u8; 8 + payload_len];
    udp[0..2].copy_from_slice(&4000u16.to_be_bytes());
    udp[2..4].copy_from_slice(&5000u16.to_be_bytes());
    udp[4..6].copy_from_slice(&((8 + payload_len) as u16).to_be_bytes());
    for (i, b) in udp[8..].iter_mut().enumerate() {
        *b = i as u8;
    }
    ipv4_frame(src_mac, dst_mac, src, dst, ttl, IpProtocol::UDP, &udp)
}

/// A TCP SYN 40000 → 80 (TCP checksum not filled: the switch does not look).
pub fn tcp_syn_frame(src_mac: MacAddr, dst_mac: MacAddr, src: Ipv4Addr, dst: Ipv4Addr) -> Vec<u8> {
    let mut tcp = vec![0u8; 20];
    tcp[0..2].copy_from_slice(&40000u16.to_be_bytes());
    tcp[2..4].copy_from_slice(&80u16.to_be_bytes());
    tcp[12] = 5 << 4;
    tcp[13] = 0x02;
    ipv4_frame(src_mac, dst_mac, src, dst, 64, IpProtocol::TCP, &tcp)
}

/// An ICMP echo request, id 0x4242 seq 1, 16 bytes of data.
pub fn echo_request(
    src_mac: MacAddr,
    dst_mac: MacAddr,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    ttl: u8,
) -> Vec<u8> {
    let mut icmp = vec![8u8, 0, 0, 0, 0x42, 0x42, 0, 1];
    icmp.extend(0..16u8);
    let c = checksum::checksum(&icmp);
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    ipv4_frame(src_mac, dst_mac, src, dst, ttl, IpProtocol::ICMP, &icmp)
}

/// A TCP/IPv4 super-frame pod A → pod B (40000 → 5201, ACK|PSH, timestamps option) with
/// `payload_len` bytes of payload, as a pod's TSO hands it over: the TCP checksum field holds
/// only the pseudo-header sum, and the offload says `NEEDS_CSUM` + `TCPV4` with `mss`.
/// `mss` 0 makes it an ordinary frame with a partial checksum.
pub fn tso4_frame(payload_len: usize, mss: u16) -> (Vec<u8>, crate::batch::Offload) {
    use podswitch_packet::virtio_net as v;
    let mut tcp = vec![0u8; 32 + payload_len];
    tcp[0..2].copy_from_slice(&40000u16.to_be_bytes());
    tcp[2..4].copy_from_slice(&5201u16.to_be_bytes());
    tcp[4..8].copy_from_slice(&0xffff_f000u32.to_be_bytes());
    tcp[8..12].copy_from_slice(&77u32.to_be_bytes());
    tcp[12] = 8 << 4;
    tcp[13] = 0x18; // ACK | PSH
    tcp[14..16].copy_from_slice(&501u16.to_be_bytes());
    tcp[20..32].copy_from_slice(&[1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2]);
    for (i, b) in tcp[32..].iter_mut().enumerate() {
        *b = (i % 251) as u8;
    }
    let mut f = ipv4_frame(
        POD_A_MAC,
        GW_MAC,
        POD_A_IP,
        POD_B_IP,
        64,
        IpProtocol::TCP,
        &tcp,
    );
    let l4 = ETHERNET_HEADER_LEN + 20;
    let pseudo =
        checksum::pseudo_header_ipv4(POD_A_IP, POD_B_IP, IpProtocol::TCP, tcp.len() as u16);
    f[l4 + 16..l4 + 18].copy_from_slice(&pseudo.to_be_bytes());
    let offload = crate::batch::Offload {
        csum_start: l4 as u16,
        csum_offset: v::TCP_CSUM_OFFSET,
        gso_size: mss,
        gso_type: if mss > 0 { v::GSO_TCPV4 } else { v::GSO_NONE },
        flags: v::FLAG_NEEDS_CSUM,
    };
    (f, offload)
}

/// A UDP/IPv4 super-datagram pod A → pod B (4000 → 5000) with `payload_len` bytes, as a
/// pod's USO hands it over: UDP length covering all of it, partial checksum, `UDP_L4` with
/// `size` bytes per datagram.
pub fn uso4_frame(payload_len: usize, size: u16) -> (Vec<u8>, crate::batch::Offload) {
    use podswitch_packet::virtio_net as v;
    let mut f = udp_frame(POD_A_MAC, GW_MAC, POD_A_IP, POD_B_IP, 64, payload_len);
    let l4 = ETHERNET_HEADER_LEN + 20;
    let len = (8 + payload_len) as u16;
    let pseudo = checksum::pseudo_header_ipv4(POD_A_IP, POD_B_IP, IpProtocol::UDP, len);
    f[l4 + 6..l4 + 8].copy_from_slice(&pseudo.to_be_bytes());
    let offload = crate::batch::Offload {
        csum_start: l4 as u16,
        csum_offset: v::UDP_CSUM_OFFSET,
        gso_size: size,
        gso_type: v::GSO_UDP_L4,
        flags: v::FLAG_NEEDS_CSUM,
    };
    (f, offload)
}

/// Whether the TCP or UDP checksum of the IPv4 packet in `frame` verifies (and the IPv4
/// header's).
pub fn l4_checksum_ok(frame: &[u8]) -> bool {
    let ip = Ipv4Packet::new_checked(&frame[ETHERNET_HEADER_LEN..]).unwrap();
    let l4 = ip.payload();
    let pseudo = checksum::pseudo_header_ipv4(ip.src(), ip.dst(), ip.protocol(), l4.len() as u16);
    ip.verify_checksum() && checksum::combine(&[pseudo, checksum::sum(l4)]) == 0xffff
}

/// A broadcast ARP request from `mac`/`sender` asking for `target`.
pub fn arp_request(mac: MacAddr, sender: Ipv4Addr, target: Ipv4Addr) -> Vec<u8> {
    let mut f = vec![0u8; 42];
    f[0..6].copy_from_slice(&MacAddr::BROADCAST.0);
    f[6..12].copy_from_slice(&mac.0);
    f[12..14].copy_from_slice(&[0x08, 0x06]);
    f[14..22].copy_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
    f[22..28].copy_from_slice(&mac.0);
    f[28..32].copy_from_slice(&sender.octets());
    f[38..42].copy_from_slice(&target.octets());
    f
}

/// Checks that `out` is an ICMP error of `type`/`code` from the gateway to the sender of
/// `orig`, quoting its IP header and first 8 payload bytes, with valid checksums.
pub fn assert_icmp_error(out: &[u8], orig: &[u8], icmp_type: u8, code: u8) {
    let eth = EthernetFrame::new_checked(out).unwrap();
    let orig_eth = EthernetFrame::new_checked(orig).unwrap();
    assert_eq!((eth.dst(), eth.src()), (orig_eth.src(), GW_MAC));
    let ip = Ipv4Packet::new_checked(&out[14..]).unwrap();
    let orig_ip = Ipv4Packet::new_checked(&orig[14..]).unwrap();
    assert!(ip.verify_checksum());
    assert_eq!(
        (ip.src(), ip.dst(), ip.protocol()),
        (GW_IP, orig_ip.src(), IpProtocol::ICMP)
    );
    let icmp = ip.payload();
    assert_eq!((icmp[0], icmp[1]), (icmp_type, code));
    assert_eq!(checksum::checksum(icmp), 0, "ICMP checksum must verify");
    let quote_len = orig_ip.header_len() + 8.min(orig_ip.payload().len());
    assert_eq!(
        &icmp[8..],
        &orig[14..14 + quote_len],
        "quotes the offending header + 8 bytes"
    );
}

/// A TCP segment from `src:sport` to `dst:dport` with `flags`, from pod B's MAC when `src` is
/// pod B's address, else pod A's; checksums filled.
pub fn tcp_segment(
    src: Ipv4Addr,
    sport: u16,
    dst: Ipv4Addr,
    dport: u16,
    flags: podswitch_packet::TcpFlags,
) -> Vec<u8> {
    let mac = if src == POD_B_IP {
        POD_B_MAC
    } else {
        POD_A_MAC
    };
    let mut f = tcp_syn_frame(mac, GW_MAC, src, dst);
    {
        let mut ip = Ipv4Packet::new_unchecked(&mut f[ETHERNET_HEADER_LEN..]);
        let mut t = podswitch_packet::TcpPacket::new_unchecked(ip.payload_mut());
        t.set_src_port(sport);
        t.set_dst_port(dport);
        t.set_flags(flags);
        t.fill_checksum(src, dst);
    }
    f
}

/// Pod B's ICMP port unreachable about `datagram` (a frame pod A sent it), quoting its IP
/// header and first 8 bytes.
pub fn port_unreachable_from_b(datagram: &[u8]) -> Vec<u8> {
    let mut icmp = vec![3u8, 3, 0, 0, 0, 0, 0, 0];
    icmp.extend_from_slice(&datagram[ETHERNET_HEADER_LEN..ETHERNET_HEADER_LEN + 28]);
    let sum = checksum::checksum(&icmp);
    icmp[2..4].copy_from_slice(&sum.to_be_bytes());
    ipv4_frame(
        POD_B_MAC,
        GW_MAC,
        POD_B_IP,
        POD_A_IP,
        64,
        IpProtocol::ICMP,
        &icmp,
    )
}

/// Isolates pod B both ways on the standard topology: ingress only from pod A on TCP 80 and
/// SCTP 9, egress only to the 10.0.0.0/8 block minus 10.244.1.0/24 (fuzzing and benches drive
/// the policy stage with it).
pub fn isolate_pod_b(tables: &mut Tables) {
    use podswitch_proto::{
        DirectionSpec, Ipv4Prefix, PeerBlock, PolicyProtocol, PolicySpec, PortRange, RuleSpec,
    };
    let rule = |peers, ports| RuleSpec {
        policy: 0,
        rule: 0,
        peers: Some(peers),
        ports,
    };
    let spec = PolicySpec {
        port: "b".into(),
        ingress: Some(DirectionSpec {
            policies: vec!["test/in".into()],
            rules: vec![rule(
                vec![PeerBlock {
                    cidr: Ipv4Prefix {
                        addr: POD_A_IP,
                        len: 32,
                    },
                    except: vec![],
                }],
                Some(vec![
                    PortRange {
                        protocol: PolicyProtocol::Tcp,
                        first: 80,
                        last: 80,
                    },
                    PortRange {
                        protocol: PolicyProtocol::Sctp,
                        first: 9,
                        last: 9,
                    },
                ]),
            )],
        }),
        egress: Some(DirectionSpec {
            policies: vec!["test/out".into()],
            rules: vec![rule(
                vec![PeerBlock {
                    cidr: Ipv4Prefix {
                        addr: Ipv4Addr::new(10, 0, 0, 0),
                        len: 8,
                    },
                    except: vec![Ipv4Prefix {
                        addr: Ipv4Addr::new(10, 244, 1, 0),
                        len: 24,
                    }],
                }],
                None,
            )],
        }),
    };
    let policies = crate::tables::policy::Policies::new(
        [(POD_B_IP, POD_B, &spec)],
        Some(GW_IP),
        &tables.policies,
    );
    tables.policies = std::sync::Arc::new(policies);
    tables.policy_epoch = tables.policy_epoch.wrapping_add(1);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_frames_cuts_at_each_separator_and_keeps_empty_pieces() {
        let pieces: Vec<&[u8]> = split_frames(b"aPSW|PSW|bcPSW|", b"PSW|").collect();
        assert_eq!(pieces, [&b"a"[..], b"", b"bc", b""]);
        assert_eq!(split_frames(b"abc", b"").collect::<Vec<_>>(), [&b"abc"[..]]);
    }
}
