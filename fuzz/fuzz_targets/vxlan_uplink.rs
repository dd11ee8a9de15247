//! Arbitrary frames into the uplink (VXLAN decapsulation, ARP learning, routing to local pods)
//! and arbitrary frames from pod A to another node's pod (neighbour resolution, encapsulation),
//! on the testkit multi-node topology.
//!
//! Input layout:
//! - byte 0, bit 0: VXLAN (else routed); bit 1: each frame is wrapped in valid outer headers
//!   from node 2 (`testkit::vxlan_from_node2`) so the fuzzer reaches the inner pipeline;
//!   bit 2: the frames come from pod A instead (destination fixed to node 2's pod, IPv4
//!   checksum filled), after node 2 has been resolved when bit 3 is set.
//! - the rest: frames, separated by `PSW|`, at most `MAX_BURST` of them.
//!
//! After the run every packet has a verdict, every drop is counted, every buffer comes back,
//! frame windows stay inside their buffers; a frame leaving the uplink in VXLAN mode carries a
//! valid outer IPv4 header to node 2 whose UDP length covers exactly the inner frame, and
//! that frame, fed back into the uplink as node 2 would return it, decapsulates.

#![no_main]

use libfuzzer_sys::fuzz_target;
use podswitch_dataplane::batch::{Batch, Next, MAX_BURST};
use podswitch_dataplane::buffer::{Pool, LARGE_BUF};
use podswitch_dataplane::counters::Counters;
use podswitch_dataplane::pipeline::{self, Ctx, FlowState, Mode, WorkerState};
use podswitch_dataplane::tables::Encap;
use podswitch_dataplane::testkit::{self, *};
use podswitch_dataplane::trace::Trace;
use podswitch_packet::{Ipv4Packet, UdpPacket, ETHERNET_HEADER_LEN};

const SEPARATOR: &[u8] = b"PSW|";

fuzz_target!(|data: &[u8]| {
    let &[flags, ref frames @ ..] = data else {
        return;
    };
    let vxlan = flags & 1 != 0;
    let encap = if vxlan {
        Encap::Vxlan {
            vni: VNI,
            port: 4789,
        }
    } else {
        Encap::Direct
    };
    let tables = testkit::tables_multinode(encap);
    let from_pod = flags & 4 != 0;
    let in_port = if from_pod { POD_A } else { UPLINK };
    let flows = FlowState::default();
    let now = std::time::Instant::now();
    if flags & 8 != 0 {
        flows.neighbors.confirm(NODE2_IP, NODE2_MAC, now, true);
    }
    let frames: Vec<Vec<u8>> = testkit::split_frames(frames, SEPARATOR)
        .take(MAX_BURST)
        .map(|f| {
            let mut f = f.to_vec();
            if from_pod {
                fix_pod_frame(&mut f);
                f
            } else if flags & 2 != 0 {
                vxlan_from_node2(&f, VNI)
            } else {
                f
            }
        })
        .collect();
    if frames.is_empty() {
        return;
    }
    let mut pool = Pool::with_large(frames.len(), frames.len());
    let mut batch = Batch::new();
    batch.in_port = in_port;
    for f in &frames {
        let Some(mut buf) = pool.get_for(f.len()) else {
            continue;
        };
        buf.fill(f);
        batch.push(buf).expect("at most MAX_BURST frames");
    }
    let mut ctr = Counters::new(64);
    let mut trace = Trace::on();
    let mut state = WorkerState::new(now);
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
    let mut returned = Vec::new();
    for (i, pkt) in batch.iter().enumerate() {
        assert!(
            pkt.buf.headroom() + pkt.buf.len() <= LARGE_BUF,
            "packet {i}: window"
        );
        match pkt.meta.next {
            Next::Drop(_) => dropped += 1,
            Next::Output(out) => {
                assert!(tables.port(out).is_some(), "packet {i}: to port {out}");
                if vxlan && out == UPLINK && pkt.meta.tunneled {
                    let frame = pkt.buf.frame();
                    let outer =
                        Ipv4Packet::new_checked(&frame[ETHERNET_HEADER_LEN..]).expect("outer IPv4");
                    assert!(outer.verify_checksum(), "packet {i}: outer checksum");
                    assert_eq!(outer.dst(), NODE2_IP);
                    let udp = UdpPacket::new_checked(outer.payload()).expect("outer UDP");
                    assert_eq!(
                        usize::from(udp.len()),
                        frame.len() - 34,
                        "packet {i}: UDP length"
                    );
                    returned.push(frame[50..].to_vec());
                }
            }
            Next::Continue => panic!("packet {i} left the pipeline without a verdict"),
        }
    }
    assert!(
        ctr.drops.iter().sum::<u64>() >= dropped,
        "every drop counted"
    );
    batch.recycle(&mut pool);
    assert_eq!(pool.available(), pool.total(), "every buffer came back");

    // What left in VXLAN decapsulates when node 2 sends it back.
    if returned.is_empty() {
        return;
    }
    let mut pool = Pool::with_large(returned.len(), returned.len());
    let mut batch = Batch::new();
    batch.in_port = UPLINK;
    for inner in &returned {
        let f = vxlan_from_node2(inner, VNI);
        let Some(mut buf) = pool.get_for(f.len()) else {
            continue;
        };
        buf.fill(&f);
        batch.push(buf).expect("at most MAX_BURST frames");
    }
    let mut ctr = Counters::new(64);
    let mut cx = Ctx::new(
        &tables,
        &flows,
        &mut ctr,
        &mut trace,
        &mut state,
        now,
        Mode::Forward,
    );
    pipeline::tunnel::decap(&mut batch, &mut cx);
    for (pkt, inner) in batch.iter().zip(&returned) {
        assert_eq!(
            pkt.meta.next,
            Next::Continue,
            "a frame the switch sent decapsulates"
        );
        assert_eq!(
            pkt.buf.frame()[6..],
            inner[6..],
            "to the same inner frame (dst MAC aside)"
        );
    }
    batch.recycle(&mut pool);
});

/// Gives a pod A frame its real MACs, source and node 2's pod as destination, and a valid
/// IPv4 header checksum, when it is long enough to hold one.
fn fix_pod_frame(f: &mut [u8]) {
    if f.len() < 34 {
        return;
    }
    f[0..6].copy_from_slice(&GW_MAC.0);
    f[6..12].copy_from_slice(&POD_A_MAC.0);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    let mut ip = Ipv4Packet::new_unchecked(&mut f[14..]);
    ip.set_src(POD_A_IP);
    ip.set_dst(NODE2_POD_IP);
    if ip.header_len() >= 20 && 14 + ip.header_len() <= f.len() {
        let mut ip = Ipv4Packet::new_unchecked(&mut f[14..]);
        ip.fill_checksum();
    }
}
