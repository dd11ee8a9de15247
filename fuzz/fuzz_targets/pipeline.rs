//! Arbitrary frames through the whole pipeline (`parse` → `l2` → `l3`) on the testkit topology.
//!
//! Input layout:
//! - byte 0, bits 0-1: the input port: 0 host, 1 pod A, 2 pod B, 3 a port that does not exist;
//!   bit 2: the tables have a default route;
//!   bits 3-6: fix-ups applied to every frame before the run, so the fuzzer reaches l2 and l3
//!   without having to guess MACs or compute a checksum: 3 source MAC := the input port's peer
//!   MAC, 4 destination MAC := the gateway's, 5 IPv4 source / ARP sender := the port's bound
//!   IP, 6 fill the IPv4 header checksum (last, after the other fix-ups);
//!   bit 7: pod B's MTU comes from byte 1 (68 + 6 * byte 1) instead of 1500.
//! - byte 1: see bit 7.
//! - the rest: frames, separated by [`SEPARATOR`], at most [`MAX_BURST`] of them.
//!
//! After the run every packet must have a final verdict (`Drop`, or `Output` to a port in the
//! tables), and every output frame must be one the switch could send: from the gateway MAC to
//! the output port's peer, a valid IPv4 header (checksum, TTL, and for routed packets the output
//! MTU) or a valid ARP reply, inside its buffer. A frame routed to another port must pass the
//! parse stage again unchanged (options, fragments, transport header): the switch forwards
//! nothing it would itself reject.
//!
//! Byte 1's low bit (when bit 7 of byte 0 is clear) picks the ICMP error budget: full, or
//! empty (every error rate limited).

#![no_main]

use libfuzzer_sys::fuzz_target;
use podswitch_dataplane::batch::{Batch, Next, PortId, MAX_BURST};
use podswitch_dataplane::buffer::{Pool, BUF_SIZE};
use podswitch_dataplane::counters::Counters;
use podswitch_dataplane::pipeline::{
    self, icmp_error::IcmpRateLimit, Ctx, FlowState, Mode, WorkerState,
};
use podswitch_dataplane::tables::{Binding, Tables};
use podswitch_dataplane::testkit::{self, GW_MAC};
use podswitch_dataplane::trace::Trace;
use podswitch_packet::{
    checksum, ArpOp, ArpPacket, EtherType, EthernetFrame, Icmpv4Packet, Icmpv4Type, IpProtocol,
    Ipv4Packet, ETHERNET_HEADER_LEN, IPV4_MIN_HEADER_LEN,
};

/// Frames in the input are separated by these bytes.
const SEPARATOR: &[u8] = b"PSW|";

/// The input port selected by `3`: no such port in the tables.
const UNKNOWN_PORT: PortId = 77;

fuzz_target!(|data: &[u8]| {
    let &[flags, mtu_byte, ref frames @ ..] = data else {
        return;
    };
    let in_port = match flags & 0b11 {
        0 => testkit::HOST,
        1 => testkit::POD_A,
        2 => testkit::POD_B,
        _ => UNKNOWN_PORT,
    };
    let default_route = flags & 1 << 2 != 0;
    let pod_b_mtu = if flags & 1 << 7 != 0 {
        68 + 6 * u16::from(mtu_byte)
    } else {
        1500
    };
    let mut tables = testkit::tables_with(default_route, pod_b_mtu, 0);
    if mtu_byte & 2 != 0 {
        testkit::isolate_pod_b(&mut tables);
    }

    let frames: Vec<&[u8]> = testkit::split_frames(frames, SEPARATOR)
        .take(MAX_BURST)
        .collect();
    let mut pool = Pool::new(frames.len());
    let mut batch = Batch::new();
    batch.in_port = in_port;
    let mut inputs = Vec::with_capacity(frames.len());
    for frame in &frames {
        let mut buf = pool.get().expect("one buffer per frame");
        buf.fill(frame);
        fix_up(buf.frame_mut(), flags, &tables, in_port);
        inputs.push(buf.frame().to_vec());
        batch.push(buf).expect("at most MAX_BURST frames");
    }

    let mut ctr = Counters::new(64);
    let mut trace = Trace::on();
    let now = std::time::Instant::now();
    let mut state = WorkerState::new(now);
    if flags & 1 << 7 == 0 && mtu_byte & 1 != 0 {
        state.icmp_errors = IcmpRateLimit::new(1, 1, now);
        state.icmp_errors.allow(now);
    }
    let flows = FlowState::default();
    let mut cx = Ctx::new(
        &tables,
        &flows,
        &mut ctr,
        &mut trace,
        &mut state,
        now,
        Mode::Forward,
    );
    pipeline::run(&mut batch, &mut cx);

    let mut dropped = 0u64;
    for (i, pkt) in batch.iter().enumerate() {
        assert!(
            pkt.buf.headroom() + pkt.buf.len() <= BUF_SIZE,
            "packet {i}: frame window past the buffer: {:?}",
            pkt.buf
        );
        match pkt.meta.next {
            Next::Drop(_) => dropped += 1,
            Next::Output(out) => {
                check_output(i, pkt.buf.frame(), &inputs[i], out, in_port, &tables);
                if out != in_port {
                    check_reparses(i, pkt.buf.frame(), out, &tables);
                }
            }
            Next::Continue => panic!("packet {i} left the pipeline without a verdict"),
        }
    }
    let counted: u64 = ctr.drops.iter().sum();
    assert!(
        counted >= dropped,
        "{dropped} packets dropped but only {counted} drops counted"
    );
    for e in trace.entries() {
        assert!(e.packet < batch.len(), "trace names packet {}", e.packet);
    }
    batch.recycle(&mut pool);
    assert_eq!(pool.available(), pool.total(), "every buffer came back");
});

/// Applies the fix-ups `flags` asks for (see the module comment) to one frame.
fn fix_up(frame: &mut [u8], flags: u8, tables: &Tables, in_port: PortId) {
    let Some(port) = tables.port(in_port) else {
        return;
    };
    let Ok(mut eth) = EthernetFrame::new_checked(&mut frame[..]) else {
        return;
    };
    if flags & 1 << 3 != 0 {
        eth.set_src(port.peer_mac);
    }
    if flags & 1 << 4 != 0 {
        eth.set_dst(GW_MAC);
    }
    let bound_ip = match port.binding {
        Binding::Pod { ip } => Some(ip),
        Binding::Host | Binding::Uplink => None,
    };
    let ethertype = eth.ethertype();
    let payload = eth.payload_mut();
    if ethertype == EtherType::IPV4 && payload.len() >= IPV4_MIN_HEADER_LEN {
        let mut ip = Ipv4Packet::new_unchecked(payload);
        if let (true, Some(addr)) = (flags & 1 << 5 != 0, bound_ip) {
            ip.set_src(addr);
        }
        if flags & 1 << 6 != 0 {
            ip.fill_checksum();
        }
    } else if ethertype == EtherType::ARP {
        if let (true, Ok(mut arp)) = (flags & 1 << 5 != 0, ArpPacket::new_checked(payload)) {
            arp.set_sender_hw(port.peer_mac);
            if let Some(addr) = bound_ip {
                arp.set_sender_ip(addr);
            }
        }
    }
}

/// Checks a frame the pipeline wants to send out of `out`.
fn check_output(
    i: usize,
    frame: &[u8],
    input: &[u8],
    out: PortId,
    in_port: PortId,
    tables: &Tables,
) {
    let Some(port) = tables.port(out) else {
        panic!("packet {i}: output to port {out}, which is not in the tables");
    };
    let eth = EthernetFrame::new_checked(frame)
        .unwrap_or_else(|e| panic!("packet {i}: output frame is no Ethernet frame: {e}"));
    assert_eq!(
        eth.src(),
        GW_MAC,
        "packet {i}: output frame not from the gateway MAC"
    );
    assert_eq!(
        eth.dst(),
        port.peer_mac,
        "packet {i}: output frame not addressed to port {out}'s peer"
    );
    match eth.ethertype() {
        EtherType::IPV4 => {
            let ip = Ipv4Packet::new_checked(eth.payload())
                .unwrap_or_else(|e| panic!("packet {i}: output IPv4 header invalid: {e}"));
            assert!(
                ip.verify_checksum(),
                "packet {i}: output IPv4 checksum wrong"
            );
            assert_ne!(ip.ttl(), 0, "packet {i}: output with TTL 0");
            if out != in_port {
                // Routed (everything else goes back out of the input port): it fits the MTU.
                assert!(
                    ip.total_len() <= port.mtu,
                    "packet {i}: {} bytes routed to port {out} with MTU {}",
                    ip.total_len(),
                    port.mtu
                );
            }
            if ip.protocol() == IpProtocol::ICMP && !ip.is_fragment() && out == in_port {
                check_icmp(i, ip.payload(), input);
            }
        }
        EtherType::ARP => {
            let arp = ArpPacket::new_checked(eth.payload())
                .unwrap_or_else(|e| panic!("packet {i}: output ARP invalid: {e}"));
            assert_eq!(out, in_port, "packet {i}: ARP leaves by another port");
            assert_eq!(
                arp.operation(),
                ArpOp::Reply,
                "packet {i}: ARP output not a reply"
            );
            assert_eq!(
                arp.sender_hw(),
                GW_MAC,
                "packet {i}: ARP reply not for our MAC"
            );
        }
        other => panic!("packet {i}: output frame with EtherType {other}"),
    }
}

/// Runs a routed frame through the parse stage again, as if received on its output port: it
/// must be accepted, since routing only rewrote MACs and the TTL. Ethernet padding is cut off
/// first: it may make the frame longer than the output MTU allows, which the MTU check of the
/// IPv4 packet rightly ignores.
fn check_reparses(i: usize, frame: &[u8], out: PortId, tables: &Tables) {
    let ip_len = Ipv4Packet::new_unchecked(&frame[ETHERNET_HEADER_LEN..]).total_len();
    let frame = &frame[..ETHERNET_HEADER_LEN + usize::from(ip_len)];
    let mut pool = Pool::new(1);
    let mut batch = Batch::new();
    batch.in_port = out;
    let mut buf = pool.get().expect("one buffer");
    buf.fill(frame);
    batch.push(buf).expect("room for one");
    let mut ctr = Counters::new(64);
    let (flows, mut trace) = (FlowState::default(), Trace::off());
    let mut state = WorkerState::new(std::time::Instant::now());
    let mut cx = Ctx::new(
        tables,
        &flows,
        &mut ctr,
        &mut trace,
        &mut state,
        std::time::Instant::now(),
        Mode::Forward,
    );
    pipeline::parse::run(&mut batch, &mut cx);
    let verdict = batch.iter().next().map(|p| p.meta.next);
    assert_eq!(
        verdict,
        Some(Next::Continue),
        "packet {i}: routed to port {out} but parse rejects it there"
    );
    batch.recycle(&mut pool);
}

/// An ICMP message the switch sends back: an error it built (its checksum must verify), or an
/// echo reply made from the request in place (its checksum must verify if the request's did).
fn check_icmp(i: usize, icmp: &[u8], input: &[u8]) {
    let msg = Icmpv4Packet::new_checked(icmp)
        .unwrap_or_else(|e| panic!("packet {i}: output ICMP invalid: {e}"));
    let request_valid = || {
        let ip = Ipv4Packet::new_checked(&input[ETHERNET_HEADER_LEN..]).expect("parse accepted it");
        checksum::sum(ip.payload()) == 0xFFFF
    };
    let must_verify = match msg.msg_type() {
        t if t.is_error() => true,
        Icmpv4Type::ECHO_REPLY => request_valid(),
        t => panic!("packet {i}: the switch sent ICMP type {t}"),
    };
    assert!(
        !must_verify || msg.verify_checksum(),
        "packet {i}: output ICMP {} checksum does not verify",
        msg.msg_type()
    );
}
