//! L2: the switch's Ethernet side. It accepts a frame only from the MAC (and, for IPv4 and ARP,
//! the IP) its port is bound to (anti-spoofing), answers ARP for addresses it owns, and lets
//! through only IPv4 frames addressed to its own MAC: the switch routes, it never bridges, and
//! it learns nothing it was not told.
//!
//! Which ARP requests are answered (RFC 826, replies built in place):
//! - on a pod port: the gateway address, nothing else (pods route everything via the gateway);
//! - on the host port: any address the switch routes somewhere other than back to the host
//!   (local pods, unreachable parts of the pod CIDR), so the node's kernel hands those
//!   packets to the switch.

use super::Ctx;
use crate::batch::{Batch, Next, Packet, L3};
use crate::counters::{Counters, DropReason, Event};
use crate::tables::{Binding, Node, PortEntry, RouteTarget, Tables, Uplink};
use crate::trace::Stage;
use podswitch_packet::{ArpOp, ArpPacket, EthernetFrame, ETHERNET_HEADER_LEN};
use std::net::Ipv4Addr;

/// Runs the stage.
pub fn run(batch: &mut Batch, cx: &mut Ctx) {
    let (tables, flows, now, forwarding) = (cx.tables, cx.flows, cx.now, cx.forwarding());
    let in_port = batch.in_port;
    let (ctr, trace) = (&mut *cx.ctr, &mut *cx.trace);
    let (Some(port), Some(node)) = (tables.port(in_port), tables.node.as_ref()) else {
        let reason = if tables.node.is_none() {
            DropReason::NoNode
        } else {
            DropReason::UnknownInPort
        };
        for (i, pkt) in batch.iter_mut().enumerate().filter(|(_, p)| p.pending()) {
            pkt.drop(reason, ctr);
            trace.note(i, Stage::L2, pkt.meta.next, reason.description());
        }
        return;
    };
    if let (Binding::Uplink, Some(uplink)) = (port.binding, tables.uplink) {
        for (i, pkt) in batch.iter_mut().enumerate() {
            if !pkt.pending() {
                continue;
            }
            let note = from_underlay(pkt, in_port, &uplink, node, tables, ctr, |ip, mac| {
                forwarding
                    && flows
                        .neighbors
                        .confirm(ip, mac, now, tables.next_hops.contains(ip))
            });
            trace.note(i, Stage::L2, pkt.meta.next, note);
        }
        return;
    }
    for (i, pkt) in batch.iter_mut().enumerate() {
        if !pkt.pending() {
            continue;
        }
        let note = check(pkt, in_port, port, node, tables, ctr);
        trace.note(i, Stage::L2, pkt.meta.next, note);
    }
}

/// A frame from the uplink (after VXLAN decapsulation, if any): many MACs are behind it, so
/// no MAC binding; IPv4 must be addressed to the uplink's MAC and must not claim a local pod's
/// (or the gateway's) source address. ARP from a next hop confirms its neighbour entry
/// (`confirm`); a request for the uplink's own address is answered.
fn from_underlay(
    pkt: &mut Packet,
    in_port: u16,
    uplink: &Uplink,
    node: &Node,
    tables: &Tables,
    ctr: &mut Counters,
    confirm: impl FnOnce(Ipv4Addr, podswitch_packet::MacAddr) -> bool,
) -> &'static str {
    let frame = pkt.buf.frame_mut();
    let dst_mac = EthernetFrame::new_unchecked(&*frame).dst();
    match pkt.meta.l3 {
        L3::Ipv4 => {
            let src = pkt.meta.flow.src_ip;
            let local = src == node.gateway_ip
                || matches!(tables.fib.lookup(src), Some(RouteTarget::Port(p)) if p != in_port);
            if dst_mac != uplink.mac {
                pkt.drop(DropReason::NotForSwitch, ctr);
                "IPv4 frame not addressed to the uplink's MAC"
            } else if local {
                pkt.drop(DropReason::SpoofedSourceIp, ctr);
                "source IP from the underlay is a local pod's or the gateway's"
            } else {
                "accepted from the underlay"
            }
        }
        L3::Arp => {
            let mut arp = ArpPacket::new_unchecked(&mut frame[ETHERNET_HEADER_LEN..]);
            let (sender_ip, sender_mac) = (arp.sender_ip(), arp.sender_hw());
            let learnt = !sender_ip.is_unspecified()
                && sender_mac.is_unicast()
                && confirm(sender_ip, sender_mac);
            if learnt {
                ctr.event(Event::NeighborConfirmed);
            }
            let for_us = arp.operation() == ArpOp::Request && arp.target_ip() == uplink.ip;
            if for_us && !sender_ip.is_unspecified() {
                arp.make_reply(uplink.mac);
                let mut eth = EthernetFrame::new_unchecked(frame);
                eth.set_dst(sender_mac);
                eth.set_src(uplink.mac);
                pkt.meta.next = Next::Output(in_port);
                ctr.event(Event::ArpReply);
                "ARP reply for the uplink's address sent"
            } else if learnt {
                pkt.drop(DropReason::ArpLearned, ctr);
                "ARP from a next hop: neighbour confirmed"
            } else if arp.operation() == ArpOp::Request {
                pkt.drop(DropReason::ArpNotOurs, ctr);
                "ARP request for an address the uplink does not own"
            } else {
                pkt.drop(DropReason::ArpIgnored, ctr);
                "ARP reply from no next hop"
            }
        }
        L3::None => "not parsed",
    }
}

fn check(
    pkt: &mut Packet,
    in_port: u16,
    port: &PortEntry,
    node: &Node,
    tables: &Tables,
    ctr: &mut Counters,
) -> &'static str {
    let eth = EthernetFrame::new_unchecked(pkt.buf.frame());
    if eth.src() != port.peer_mac {
        pkt.drop(DropReason::SpoofedSourceMac, ctr);
        return "source MAC is not the port's";
    }
    let dst_mac = eth.dst();
    let bound_ip = match port.binding {
        Binding::Pod { ip } => Some(ip),
        Binding::Host | Binding::Uplink => None,
    };
    match pkt.meta.l3 {
        L3::Ipv4 => {
            if dst_mac != node.gateway_mac {
                pkt.drop(DropReason::NotForSwitch, ctr);
                "IPv4 frame not addressed to the switch"
            } else if bound_ip.is_some_and(|ip| ip != pkt.meta.flow.src_ip) {
                pkt.drop(DropReason::SpoofedSourceIp, ctr);
                "source IP is not the pod's"
            } else {
                "accepted"
            }
        }
        L3::Arp => arp(pkt, in_port, port, bound_ip, node, tables, ctr),
        L3::None => "not parsed",
    }
}

fn arp(
    pkt: &mut Packet,
    in_port: u16,
    port: &PortEntry,
    bound_ip: Option<Ipv4Addr>,
    node: &Node,
    tables: &Tables,
    ctr: &mut Counters,
) -> &'static str {
    let frame = pkt.buf.frame_mut();
    let mut arp = ArpPacket::new_unchecked(&mut frame[ETHERNET_HEADER_LEN..]);
    if arp.operation() != ArpOp::Request {
        pkt.drop(DropReason::ArpIgnored, ctr);
        return "ARP other than a request";
    }
    let sender_ip = arp.sender_ip();
    // An ARP probe (RFC 5227) has sender IP 0.0.0.0; otherwise the sender must be the pod.
    let sender_ok = arp.sender_hw() == port.peer_mac
        && bound_ip.is_none_or(|ip| sender_ip == ip || sender_ip.is_unspecified());
    if !sender_ok {
        pkt.drop(DropReason::SpoofedArp, ctr);
        return "ARP sender is not the port's binding";
    }
    let target = arp.target_ip();
    let ours = match port.binding {
        Binding::Pod { .. } => target == node.gateway_ip,
        // The host routes the Service CIDR and every externalIP and LoadBalancer IP here
        // (the daemon's `host_routes`): a Service address outside the CIDR is answered
        // although the FIB would send it back to the host.
        Binding::Host => {
            target != node.gateway_ip
                && (tables.services.is_vip(target)
                    || match tables.fib.lookup(target) {
                        Some(RouteTarget::Port(p)) => p != in_port,
                        Some(
                            RouteTarget::Unreachable
                            | RouteTarget::Node(_)
                            | RouteTarget::Egress(_),
                        ) => true,
                        Some(RouteTarget::Host) | None => false,
                    })
        }
        // Handled by `from_underlay`.
        Binding::Uplink => false,
    };
    if !ours || sender_ip.is_unspecified() {
        pkt.drop(DropReason::ArpNotOurs, ctr);
        return "ARP for an address the switch does not answer";
    }
    arp.make_reply(node.gateway_mac);
    let mut eth = EthernetFrame::new_unchecked(frame);
    eth.set_dst(port.peer_mac);
    eth.set_src(node.gateway_mac);
    pkt.meta.next = Next::Output(in_port);
    ctr.event(Event::ArpReply);
    "ARP reply sent"
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::*;
    use podswitch_packet::MacAddr;

    fn l2(port: u16, frame: &[u8]) -> (Next, Vec<u8>) {
        let mut h = Harness::new();
        let next = h.run_one(port, frame, |b, cx| {
            crate::pipeline::parse::run(b, cx);
            run(b, cx)
        });
        (next, h.last_frame.clone())
    }

    #[test]
    fn arp_for_gateway_from_pod_is_answered_in_place() {
        let (next, out) = l2(POD_A, &arp_request(POD_A_MAC, POD_A_IP, GW_IP));
        assert_eq!(next, Next::Output(POD_A));
        let eth = EthernetFrame::new_unchecked(&out[..]);
        assert_eq!((eth.dst(), eth.src()), (POD_A_MAC, GW_MAC));
        let arp = ArpPacket::new_checked(&out[14..]).unwrap();
        assert_eq!(arp.operation(), ArpOp::Reply);
        assert_eq!((arp.sender_hw(), arp.sender_ip()), (GW_MAC, GW_IP));
        assert_eq!((arp.target_hw(), arp.target_ip()), (POD_A_MAC, POD_A_IP));
    }

    #[test]
    fn arp_for_other_pods_from_a_pod_is_not_answered() {
        let (next, _) = l2(POD_A, &arp_request(POD_A_MAC, POD_A_IP, POD_B_IP));
        assert_eq!(next, Next::Drop(DropReason::ArpNotOurs));
    }

    #[test]
    fn host_port_gets_answers_for_pods_but_not_for_the_outside() {
        let (next, _) = l2(HOST, &arp_request(HOST_MAC, GW_IP, POD_B_IP));
        assert_eq!(next, Next::Output(HOST));
        let (next, _) = l2(HOST, &arp_request(HOST_MAC, GW_IP, UNUSED_POD_IP));
        assert_eq!(next, Next::Output(HOST));
        let (next, _) = l2(
            HOST,
            &arp_request(HOST_MAC, GW_IP, "192.0.2.1".parse().unwrap()),
        );
        assert_eq!(next, Next::Drop(DropReason::ArpNotOurs));
    }

    #[test]
    fn host_port_gets_answers_for_service_addresses_outside_the_service_cidr() {
        use crate::tables::{ServiceEntry, Services};
        use podswitch_proto::{Frontend, FrontendKind, L4Protocol, ServiceSpec};
        use std::sync::Arc;
        let external: Ipv4Addr = "203.0.113.10".parse().unwrap();
        let ask = |h: &mut Harness| {
            h.run_one(HOST, &arp_request(HOST_MAC, GW_IP, external), |b, cx| {
                crate::pipeline::parse::run(b, cx);
                run(b, cx)
            })
        };
        // The default route sends the address to the host: not the switch's without a Service.
        assert_eq!(ask(&mut Harness::new()), Next::Drop(DropReason::ArpNotOurs));
        let mut spec = ServiceSpec::cluster_ip(
            "default/web",
            L4Protocol::Tcp,
            "10.96.0.10".parse().unwrap(),
            80,
            Vec::new(),
        );
        spec.frontends.push(Frontend {
            kind: FrontendKind::ExternalIp,
            ip: external,
            port: 80,
        });
        let mut tables = tables_with(true, 1500, 0);
        tables.services = Arc::new(Services::new(
            vec![Arc::new(ServiceEntry::new(1, &spec))],
            None,
        ));
        let mut h = Harness::from_tables(tables);
        assert_eq!(
            ask(&mut h),
            Next::Output(HOST),
            "the node routes an externalIP into the host port, so the switch answers for it"
        );
        // A pod asks only for the gateway, whatever the Services.
        let (next, _) = l2(POD_A, &arp_request(POD_A_MAC, POD_A_IP, external));
        assert_eq!(next, Next::Drop(DropReason::ArpNotOurs));
    }

    #[test]
    fn spoofed_sources_are_dropped() {
        let evil = MacAddr::new(2, 0, 0, 0, 0xee, 0xee);
        let f = udp_frame(evil, GW_MAC, POD_A_IP, POD_B_IP, 64, 10);
        assert_eq!(l2(POD_A, &f).0, Next::Drop(DropReason::SpoofedSourceMac));
        let f = udp_frame(POD_A_MAC, GW_MAC, POD_B_IP, POD_A_IP, 64, 10);
        assert_eq!(l2(POD_A, &f).0, Next::Drop(DropReason::SpoofedSourceIp));
        let f = arp_request(POD_A_MAC, POD_B_IP, GW_IP);
        assert_eq!(l2(POD_A, &f).0, Next::Drop(DropReason::SpoofedArp));
    }

    #[test]
    fn frames_not_for_the_switch_and_arp_replies_are_dropped() {
        let f = udp_frame(POD_A_MAC, POD_B_MAC, POD_A_IP, POD_B_IP, 64, 10);
        assert_eq!(l2(POD_A, &f).0, Next::Drop(DropReason::NotForSwitch));
        let mut f = arp_request(POD_A_MAC, POD_A_IP, GW_IP);
        f[21] = 2;
        assert_eq!(l2(POD_A, &f).0, Next::Drop(DropReason::ArpIgnored));
    }

    #[test]
    fn unknown_port_drops_everything() {
        let f = udp_frame(POD_A_MAC, GW_MAC, POD_A_IP, POD_B_IP, 64, 10);
        assert_eq!(l2(77, &f).0, Next::Drop(DropReason::UnknownInPort));
    }
}
