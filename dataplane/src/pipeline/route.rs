//! Route: decides where each IPv4 packet goes — the output port, by longest prefix match on
//! its (translated) destination — and answers what the switch answers itself: echo requests to
//! the gateway, and ICMP destination unreachable where there is no way on. It changes nothing
//! else in the frame: TTL, MTU and MAC rewriting happen in `rewrite`, which every forwarded
//! packet reaches, also an established flow whose output conntrack had cached.

use super::icmp_error::{self, IcmpError};
use super::Ctx;
use crate::batch::{Batch, Endpoint, L4Key, Meta, Next, Packet, PortId, Track, L3};
use crate::conntrack::Dir;
use crate::counters::{DropReason, Event};
use crate::tables::{Node, RouteTarget, Tables};
use crate::trace::Stage;
use podswitch_packet::{
    EthernetFrame, Icmpv4Packet, Icmpv4Type, IpProtocol, Ipv4Packet, ETHERNET_HEADER_LEN,
};

/// TTL of packets the switch originates (Linux's default).
pub const ORIGIN_TTL: u8 = 64;

/// Runs the stage over the packets that still need an output.
pub fn run(batch: &mut Batch, cx: &mut Ctx) {
    let Some(node) = cx.tables.node.as_ref() else {
        return; // l2 dropped everything already
    };
    let in_port = batch.in_port;
    for (i, pkt) in batch.iter_mut().enumerate() {
        if !pkt.pending() || pkt.meta.l3 != L3::Ipv4 || pkt.meta.hop.is_some() {
            continue;
        }
        let note = route(pkt, in_port, node, cx);
        cx.trace.note(i, Stage::Route, pkt.meta.next, note);
    }
}

fn route(pkt: &mut Packet, in_port: PortId, node: &Node, cx: &mut Ctx) -> &'static str {
    let tables: &Tables = cx.tables;
    let dst = super::nat::translated_dst(&pkt.meta);
    if dst.is_multicast() || dst.is_broadcast() {
        pkt.drop(DropReason::Ipv4NotUnicast, cx.ctr);
        return "multicast/broadcast is not routed";
    }
    let target = if dst == node.gateway_ip {
        if pkt.meta.flow.proto == IpProtocol::ICMP && echo_reply(pkt, node) {
            pkt.meta.next = Next::Output(in_port);
            cx.ctr.event(Event::IcmpEchoReply);
            return "echo reply from the gateway";
        }
        // The node's stack holds the gateway address too: everything else is for it.
        Some(RouteTarget::Host)
    } else {
        tables.fib.lookup(dst)
    };
    let out = match target {
        Some(RouteTarget::Port(p)) => p,
        Some(RouteTarget::Node(hop) | RouteTarget::Egress(hop)) => match tables.uplink {
            Some(u) => {
                pkt.meta.next_hop = Some(hop);
                u.port
            }
            None => {
                pkt.drop(DropReason::NoUplink, cx.ctr);
                return "route through the uplink but no uplink";
            }
        },
        Some(RouteTarget::Host) => match tables.host_port {
            Some(h) => h,
            None => {
                pkt.drop(DropReason::NoHostPort, cx.ctr);
                return "no host port";
            }
        },
        Some(RouteTarget::Unreachable) => {
            let (error, reason) = (IcmpError::HostUnreachable, DropReason::Unreachable);
            undeliverable(pkt, in_port, node, error, reason, cx);
            return "unreachable route: ICMP host unreachable";
        }
        None => {
            let (error, reason) = (IcmpError::NetUnreachable, DropReason::NoRoute);
            undeliverable(pkt, in_port, node, error, reason, cx);
            return "no route: ICMP net unreachable";
        }
    };
    if tables.port(out).is_none() {
        pkt.drop(DropReason::OutputPortGone, cx.ctr);
        return "route to a port that is gone";
    }
    let mut note = "routed";
    if let Some(uplink) = tables.uplink.filter(|_| out != in_port) {
        let egress = matches!(target, Some(RouteTarget::Egress(_)));
        if let Err(why) = egress_translation(pkt, egress, uplink.ip, cx) {
            return why;
        }
        if egress && pkt.meta.track == Track::New {
            note = "outside the cluster through the uplink: SNAT to the uplink's address";
        }
    }
    if out == in_port {
        // Hairpin: a pod reaching a Service whose endpoint is itself. The endpoint must see
        // the connection come from elsewhere (or it would answer itself directly): SNAT to
        // the gateway. Untranslated, a packet back out of its own port is a routing loop.
        // Through the uplink: a client outside the cluster whose NodePort connection was
        // DNATed to another node's endpoint (`externalTrafficPolicy: Cluster`; `Local` selects
        // no remote endpoint). SNAT to the uplink's address, as kube-proxy masquerades to the
        // node's, so the endpoint's reply comes back through this node and its conntrack.
        match pkt.meta.track {
            Track::New if pkt.meta.nat.dst.is_some() => {
                let via_uplink = tables.uplink.filter(|u| u.port == in_port);
                pkt.meta.nat.src = Some(Endpoint {
                    ip: via_uplink.map_or(node.gateway_ip, |u| u.ip),
                    port: src_port(&pkt.meta),
                });
                note = if via_uplink.is_some() {
                    "external connection to another node's endpoint: SNAT to the uplink's address"
                } else {
                    "hairpin: back out of the input port, SNAT to the gateway"
                };
            }
            Track::Hit { .. } | Track::Fragment
                if pkt.meta.nat.dst.is_some() || pkt.meta.nat.src.is_some() =>
            {
                note = "hairpin connection: back out of the input port";
            }
            _ => {
                pkt.drop(DropReason::Hairpin, cx.ctr);
                return "route leads back out of the input port";
            }
        }
    }
    pkt.meta.hop = Some(out);
    note
}

/// Outside the cluster through the uplink (`egress`), a new connection is translated to the
/// uplink's address: the outside world knows the node's address, not the pods' (kube-proxy's
/// and the kernel's masquerade). A hairpin from the uplink is handled by the caller. What
/// cannot be translated is dropped: an untracked packet (its reply could not find the pod),
/// and a connection whose translation does not fit the route any more — one that began
/// untranslated before the routes made it egress, or one translated to the uplink's address
/// that the routes now send elsewhere (the routes changed under it: `--egress` switched).
fn egress_translation(
    pkt: &mut Packet,
    egress: bool,
    uplink_ip: std::net::Ipv4Addr,
    cx: &mut Ctx,
) -> Result<(), &'static str> {
    let as_uplink = pkt.meta.nat.src.is_some_and(|e| e.ip == uplink_ip);
    match pkt.meta.track {
        Track::New if egress => {
            pkt.meta.nat.src = Some(Endpoint {
                ip: uplink_ip,
                port: src_port(&pkt.meta),
            });
            Ok(())
        }
        Track::Untracked if egress => {
            let ip = Ipv4Packet::new_unchecked(&pkt.buf.frame()[ETHERNET_HEADER_LEN..]);
            let reason = if ip.frag_offset() > 0 {
                DropReason::FragmentBeforeFirst
            } else {
                DropReason::EgressUntracked
            };
            pkt.drop(reason, cx.ctr);
            Err("outside the cluster through the uplink, but not source-translatable")
        }
        Track::Hit {
            handle,
            dir: Dir::Original,
            ..
        } if egress != as_uplink => {
            // Ended, not held: a connection whose packets keep coming (UDP on fixed ports)
            // would otherwise refresh its entry forever. Its next packet starts anew,
            // translated for the route it has now.
            if cx.forwarding() {
                cx.flows.conntrack.remove(handle);
            }
            pkt.drop(DropReason::EgressRerouted, cx.ctr);
            Err("the routes moved this connection into or out of egress: its translation no longer fits")
        }
        _ => Ok(()),
    }
}

/// The packet's source port (ICMP echo: its identifier; 0 without one).
fn src_port(meta: &Meta) -> u16 {
    match meta.flow.l4 {
        L4Key::Tcp { src_port, .. } | L4Key::Udp { src_port, .. } => src_port,
        L4Key::Icmp { ident, .. } => ident,
        L4Key::None => 0,
    }
}

/// Counts the packet as dropped for `reason` and turns it into the ICMP error reporting it,
/// when RFC 1812 allows one; otherwise it stays dropped.
pub(super) fn undeliverable(
    pkt: &mut Packet,
    in_port: PortId,
    node: &Node,
    error: IcmpError,
    reason: DropReason,
    cx: &mut Ctx,
) {
    cx.ctr.drop(reason);
    if !icmp_error::reply(pkt, in_port, node, error, cx) {
        pkt.meta.next = Next::Drop(reason);
    }
}

/// Turns an echo request into the reply, in place. False if it is not an echo request.
fn echo_reply(pkt: &mut Packet, node: &Node) -> bool {
    let (eth, ip) = pkt.buf.frame_mut().split_at_mut(ETHERNET_HEADER_LEN);
    let mut ip = Ipv4Packet::new_unchecked(ip);
    if ip.is_fragment() {
        return false;
    }
    let Ok(mut icmp) = Icmpv4Packet::new_checked(ip.payload_mut()) else {
        return false;
    };
    if icmp.msg_type() != Icmpv4Type::ECHO_REQUEST {
        return false;
    }
    icmp.make_echo_reply();
    let requester = ip.src();
    ip.set_src(node.gateway_ip);
    ip.set_dst(requester);
    ip.set_ttl(ORIGIN_TTL);
    ip.fill_checksum();
    let mut eth = EthernetFrame::new_unchecked(eth);
    let requester_mac = eth.src();
    eth.set_dst(requester_mac);
    eth.set_src(node.gateway_mac);
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::counters::{DropReason, Event};
    use crate::pipeline::icmp_error::IcmpRateLimit;
    use crate::testkit::*;
    use podswitch_packet::checksum;
    use podswitch_packet::{EthernetFrame, Icmpv4Type, Ipv4Packet};

    fn l3(port: u16, frame: &[u8]) -> (Next, Vec<u8>, Harness) {
        let mut h = Harness::new();
        let next = h.run_one(port, frame, crate::pipeline::run);
        let out = h.last_frame.clone();
        (next, out, h)
    }

    #[test]
    fn pod_to_pod_is_routed_with_ttl_decremented_and_macs_rewritten() {
        let (next, out, _) = l3(
            POD_A,
            &udp_frame(POD_A_MAC, GW_MAC, POD_A_IP, POD_B_IP, 64, 18),
        );
        assert_eq!(next, Next::Output(POD_B));
        let eth = EthernetFrame::new_unchecked(&out[..]);
        assert_eq!((eth.src(), eth.dst()), (GW_MAC, POD_B_MAC));
        let ip = Ipv4Packet::new_checked(&out[14..]).unwrap();
        assert_eq!(ip.ttl(), 63);
        assert!(ip.verify_checksum());
    }

    #[test]
    fn pod_to_gateway_tcp_goes_to_the_host_and_outside_too() {
        let f = tcp_syn_frame(POD_A_MAC, GW_MAC, POD_A_IP, GW_IP);
        assert_eq!(l3(POD_A, &f).0, Next::Output(HOST));
        let f = udp_frame(
            POD_A_MAC,
            GW_MAC,
            POD_A_IP,
            "192.0.2.9".parse().unwrap(),
            64,
            1,
        );
        assert_eq!(l3(POD_A, &f).0, Next::Output(HOST));
    }

    #[test]
    fn host_to_pod_is_routed() {
        let f = udp_frame(HOST_MAC, GW_MAC, GW_IP, POD_A_IP, 64, 5);
        let (next, out, _) = l3(HOST, &f);
        assert_eq!(next, Next::Output(POD_A));
        assert_eq!(EthernetFrame::new_unchecked(&out[..]).dst(), POD_A_MAC);
    }

    #[test]
    fn echo_request_to_gateway_is_answered() {
        let f = echo_request(POD_A_MAC, GW_MAC, POD_A_IP, GW_IP, 64);
        let (next, out, h) = l3(POD_A, &f);
        assert_eq!(next, Next::Output(POD_A));
        let ip = Ipv4Packet::new_checked(&out[14..]).unwrap();
        assert_eq!((ip.src(), ip.dst()), (GW_IP, POD_A_IP));
        assert!(ip.verify_checksum());
        let icmp = ip.payload();
        assert_eq!(icmp[0], Icmpv4Type::ECHO_REPLY.0);
        assert_eq!(checksum::checksum(icmp), 0, "ICMP checksum must verify");
        assert_eq!(&icmp[4..], &f[14 + 20 + 4..], "id, seq and data echoed");
        assert_eq!(h.ctr.events[Event::IcmpEchoReply as usize], 1);
    }

    #[test]
    fn ttl_one_gets_time_exceeded_and_is_counted() {
        let f = udp_frame(POD_A_MAC, GW_MAC, POD_A_IP, POD_B_IP, 1, 18);
        let (next, out, h) = l3(POD_A, &f);
        assert_eq!(next, Next::Output(POD_A));
        assert_icmp_error(&out, &f, 11, 0);
        assert_eq!(h.ctr.drops[DropReason::TtlExpired as usize], 1);
    }

    #[test]
    fn unassigned_pod_address_gets_host_unreachable_and_no_route_net_unreachable() {
        let f = udp_frame(POD_A_MAC, GW_MAC, POD_A_IP, UNUSED_POD_IP, 64, 18);
        let (next, out, _) = l3(POD_A, &f);
        assert_eq!(next, Next::Output(POD_A));
        assert_icmp_error(&out, &f, 3, 1);

        let mut h = Harness::without_default_route();
        let f = udp_frame(
            POD_A_MAC,
            GW_MAC,
            POD_A_IP,
            "198.51.100.1".parse().unwrap(),
            64,
            18,
        );
        assert_eq!(
            h.run_one(POD_A, &f, crate::pipeline::run),
            Next::Output(POD_A)
        );
        assert_icmp_error(&h.last_frame, &f, 3, 0);
        assert_eq!(h.ctr.drops[DropReason::NoRoute as usize], 1);
    }

    #[test]
    fn no_icmp_error_about_an_icmp_error() {
        let f = udp_frame(POD_A_MAC, GW_MAC, POD_A_IP, UNUSED_POD_IP, 64, 18);
        let (_, err, _) = l3(POD_A, &f);
        // Bounce the error itself at an unreachable address: it must be dropped silently.
        let mut again = err.clone();
        again[0..6].copy_from_slice(&GW_MAC.0);
        again[6..12].copy_from_slice(&POD_A_MAC.0);
        let mut ip = Ipv4Packet::new_unchecked(&mut again[14..]);
        ip.set_src(POD_A_IP);
        ip.set_dst(UNUSED_POD_IP);
        ip.fill_checksum();
        let (next, _, h) = l3(POD_A, &again);
        assert_eq!(next, Next::Drop(DropReason::Unreachable));
        assert_eq!(h.ctr.events[Event::IcmpErrorSuppressed as usize], 1);
    }

    #[test]
    fn oversized_df_packet_gets_frag_needed_with_the_mtu() {
        let mut h = Harness::with_pod_b_mtu(1000);
        let f = udp_frame(POD_A_MAC, GW_MAC, POD_A_IP, POD_B_IP, 64, 1200);
        assert_eq!(
            h.run_one(POD_A, &f, crate::pipeline::run),
            Next::Output(POD_A)
        );
        assert_icmp_error(&h.last_frame, &f, 3, 4);
        assert_eq!(
            &h.last_frame[14 + 20 + 6..14 + 20 + 8],
            &1000u16.to_be_bytes()
        );
    }

    #[test]
    fn multicast_is_not_routed() {
        let f = udp_frame(
            POD_A_MAC,
            GW_MAC,
            POD_A_IP,
            "224.0.0.251".parse().unwrap(),
            64,
            18,
        );
        assert_eq!(l3(POD_A, &f).0, Next::Drop(DropReason::Ipv4NotUnicast));
    }

    #[test]
    fn a_burst_of_1000_ttl_expired_frames_gets_at_most_the_burst_of_icmp_errors() {
        let mut h = Harness::new();
        let f = udp_frame(POD_A_MAC, GW_MAC, POD_A_IP, POD_B_IP, 1, 18);
        let mut sent = 0;
        for _ in 0..1000 {
            match h.run_one(POD_A, &f, crate::pipeline::run) {
                Next::Output(POD_A) => sent += 1,
                Next::Drop(DropReason::TtlExpired) => {}
                other => panic!("unexpected verdict {other:?}"),
            }
        }
        let burst = IcmpRateLimit::BURST as u64;
        assert_eq!(sent, burst, "one burst, all at the same instant");
        assert_eq!(h.ctr.events[Event::IcmpTimeExceededSent as usize], burst);
        assert_eq!(
            h.ctr.events[Event::IcmpErrorRateLimited as usize],
            1000 - burst
        );
        assert_eq!(h.ctr.drops[DropReason::TtlExpired as usize], 1000);
        // 10 ms later the bucket holds 10 more (1000 per second).
        h.now += std::time::Duration::from_millis(10);
        let more = (0..100)
            .filter(|_| h.run_one(POD_A, &f, crate::pipeline::run) == Next::Output(POD_A))
            .count();
        assert_eq!(more, 10);
    }

    #[test]
    fn echo_replies_are_not_rate_limited() {
        let mut h = Harness::new();
        let f = echo_request(POD_A_MAC, GW_MAC, POD_A_IP, GW_IP, 64);
        for _ in 0..200 {
            assert_eq!(
                h.run_one(POD_A, &f, crate::pipeline::run),
                Next::Output(POD_A)
            );
        }
        assert_eq!(h.ctr.events[Event::IcmpErrorRateLimited as usize], 0);
    }
}
