//! The coalescer at output (`gro.rs`): what it hands on, in which order, with which offload
//! state, for streams of real segments (a pod's TSO frame cut by the software segmenter, as
//! the other node's switch cuts it for its uplink). The header rules themselves are tested
//! one by one in `podswitch_packet::gro`.

use super::gro::{Gro, MAX_FLOWS};
use crate::batch::{Offload, Packet, PortId};
use crate::buffer::Pool;
use crate::counters::{Counters, Event};
use crate::testkit::{tso4_frame, POD_A, POD_B};
use podswitch_packet::gso::{SegmentChecksum, Segmenter};
use podswitch_packet::virtio_net::{PartialCsum, FLAG_NEEDS_CSUM, GSO_TCPV4};
use podswitch_packet::{Ipv4Packet, TcpFlags, TcpPacket};

const MSS: u16 = 1448;
/// Ethernet + IPv4 + TCP with timestamps: where a testkit segment's payload starts.
const HEADERS: usize = 14 + 20 + 32;

/// The segments of a `payload`-byte TSO frame of flow `sport` → 5201 (ACK; PSH on the last
/// one), checksums full: what arrives from an uplink.
fn stream(payload: usize, sport: u16) -> Vec<Vec<u8>> {
    stream_at(payload, sport, 0xffff_f000, 0x1234, true)
}

/// [`stream`] from sequence number `seq` and identification `ident`, PSH on the last segment
/// or on none.
fn stream_at(payload: usize, sport: u16, seq: u32, ident: u16, psh: bool) -> Vec<Vec<u8>> {
    let (mut f, _) = tso4_frame(payload, MSS);
    Ipv4Packet::new_unchecked(&mut f[14..]).set_ident(ident);
    let mut tcp = TcpPacket::new_unchecked(&mut f[34..]);
    tcp.set_src_port(sport);
    tcp.set_seq_no(seq);
    if !psh {
        tcp.set_flags(TcpFlags::ACK);
    }
    let mut segs = Segmenter::tcpv4(&f, MSS, SegmentChecksum::Full).unwrap();
    let mut out = Vec::new();
    let mut buf = vec![0u8; 2048];
    while let Some(n) = segs.next_into(&mut buf).unwrap() {
        out.push(buf[..n].to_vec());
    }
    out
}

/// A coalescer with its pool and counters, collecting what it hands on.
struct Rig {
    gro: Gro,
    pool: Pool,
    ctr: Counters,
    out: Vec<(PortId, Packet)>,
}

impl Rig {
    fn new(large: usize) -> Rig {
        Rig {
            gro: Gro::new(),
            pool: Pool::with_large(256, large),
            ctr: Counters::new(4),
            out: Vec::new(),
        }
    }

    fn offer_to(&mut self, port: PortId, frame: &[u8]) {
        let mut buf = self.pool.get().unwrap();
        buf.fill(frame);
        let out = &mut self.out;
        self.gro.offer(
            Packet::new(buf),
            port,
            &mut self.pool,
            &mut self.ctr,
            |_, _, port, p| out.push((port, p)),
        );
    }

    fn offer(&mut self, frame: &[u8]) {
        self.offer_to(POD_B, frame);
    }

    /// The end of the burst: everything held is handed on. Returns what left, in order (frame
    /// and offload state, per port), every buffer back in the pool.
    fn flush(&mut self) -> Vec<(PortId, Vec<u8>, Offload)> {
        let out = &mut self.out;
        self.gro
            .flush(&mut self.pool, &mut self.ctr, |_, _, port, p| {
                out.push((port, p))
            });
        assert_eq!(self.gro.held(), 0);
        let sent = self
            .out
            .drain(..)
            .map(|(port, p)| {
                let r = (port, p.buf.frame().to_vec(), p.meta.offload);
                self.pool.put(p.buf);
                r
            })
            .collect();
        assert_eq!(
            self.pool.available(),
            self.pool.total(),
            "small buffers all home"
        );
        assert_eq!(
            self.pool.available_large(),
            self.pool.total_large(),
            "large ones too"
        );
        sent
    }

    fn event(&self, e: Event) -> u64 {
        self.ctr.events[e as usize]
    }
}

/// The segments a super-frame stands for, cut as the receiving kernel would.
fn resegment(frame: &[u8], o: &Offload) -> Vec<Vec<u8>> {
    let mut segs = Segmenter::tcpv4(frame, o.gso_size, SegmentChecksum::Full).unwrap();
    let mut out = Vec::new();
    let mut buf = vec![0u8; 2048];
    while let Some(n) = segs.next_into(&mut buf).unwrap() {
        out.push(buf[..n].to_vec());
    }
    out
}

/// The sequence numbers of the segments in what left, in order (a super-frame's all).
fn seqs(sent: &[(PortId, Vec<u8>, Offload)]) -> Vec<u32> {
    sent.iter()
        .flat_map(|(_, f, o)| {
            if o.gso_type == 0 {
                vec![f.clone()]
            } else {
                resegment(f, o)
            }
        })
        .map(|f| TcpPacket::new_unchecked(&f[34..]).seq_no())
        .collect()
}

#[test]
fn in_order_segments_leave_as_one_super_frame_holding_their_payloads() {
    let segs = stream(20 * 1448 + 500, 40000);
    let mut rig = Rig::new(4);
    for s in &segs {
        rig.offer(s);
    }
    let sent = rig.flush();
    assert_eq!(sent.len(), 1, "one frame for 21 segments");
    let (port, frame, o) = &sent[0];
    assert_eq!(*port, POD_B);
    assert_eq!(
        *o,
        Offload {
            csum_start: 34,
            csum_offset: 16,
            gso_size: MSS,
            gso_type: GSO_TCPV4,
            flags: FLAG_NEEDS_CSUM,
        }
    );
    let payload: Vec<u8> = segs.iter().flat_map(|s| s[HEADERS..].to_vec()).collect();
    assert_eq!(
        &frame[HEADERS..],
        &payload[..],
        "the payloads, concatenated"
    );
    let ip = Ipv4Packet::new_checked(&frame[14..]).unwrap();
    assert!(ip.verify_checksum());
    assert_eq!(usize::from(ip.total_len()), frame.len() - 14);
    let tcp = TcpPacket::new_checked(ip.payload()).unwrap();
    assert_eq!(
        tcp.flags(),
        TcpFlags::ACK | TcpFlags::PSH,
        "the last one's PSH"
    );
    // The checksum the receiver completes is right for the whole frame.
    let mut complete = frame.clone();
    PartialCsum {
        start: 34,
        offset: 16,
    }
    .complete(&mut complete)
    .unwrap();
    assert!(crate::testkit::l4_checksum_ok(&complete));
    assert_eq!(
        resegment(frame, o),
        segs,
        "it stands for exactly those segments"
    );
    assert_eq!(rig.event(Event::GroFrames), 1);
    assert_eq!(rig.event(Event::GroSegments), 21);
}

#[test]
fn a_lone_segment_leaves_untouched_in_its_own_buffer() {
    let segs = stream(1000, 40000);
    let mut rig = Rig::new(4);
    let mut ack_only = segs[0].clone();
    // Without PSH it could start a run; alone, it is sent as it came.
    let mut tcp = TcpPacket::new_unchecked(&mut ack_only[34..]);
    tcp.set_flags(TcpFlags::ACK);
    tcp.fill_checksum(crate::testkit::POD_A_IP, crate::testkit::POD_B_IP);
    rig.offer(&ack_only);
    assert_eq!(rig.gro.held(), 1);
    assert_eq!(
        rig.pool.available_large(),
        4,
        "no large buffer for one segment"
    );
    let sent = rig.flush();
    assert_eq!(sent, vec![(POD_B, ack_only, Offload::NONE)]);
    assert_eq!(rig.event(Event::GroFrames), 0);
}

#[test]
fn two_interleaved_flows_each_become_one_super_frame() {
    let (a, b) = (stream(10 * 1448, 40000), stream(10 * 1448, 40001));
    let mut rig = Rig::new(4);
    for (x, y) in a.iter().zip(&b) {
        rig.offer(x);
        rig.offer(y);
    }
    let sent = rig.flush();
    assert_eq!(sent.len(), 2);
    let mut got: Vec<_> = sent.iter().map(|(_, f, o)| resegment(f, o)).collect();
    got.sort_by_key(|s| TcpPacket::new_unchecked(&s[0][34..]).src_port());
    assert_eq!(got, vec![a, b]);
    assert_eq!(rig.event(Event::GroSegments), 20);
}

#[test]
fn out_of_order_segments_end_the_run_and_leave_in_the_order_they_came() {
    let segs = stream(6 * 1448, 40000);
    let mut rig = Rig::new(4);
    for i in [0, 1, 2, 4, 3, 5] {
        rig.offer(&segs[i]);
    }
    let sent = rig.flush();
    let s = |i: usize| TcpPacket::new_unchecked(&segs[i][34..]).seq_no();
    assert_eq!(seqs(&sent), vec![s(0), s(1), s(2), s(4), s(3), s(5)]);
    // 0-2 one frame; 4 alone (3 is not next to it); 3 and 5 not contiguous either.
    assert_eq!(
        sent.len(),
        4,
        "{:?}",
        sent.iter().map(|s| s.1.len()).collect::<Vec<_>>()
    );
    assert_eq!(rig.event(Event::GroFrames), 1);
    // A retransmission carries the next identification (IPv4 ids count datagrams, not
    // bytes): only its sequence number tells it does not belong after the run.
    let mut again = segs[1].clone();
    Ipv4Packet::new_unchecked(&mut again[14..]).set_ident(0x1234 + 3);
    Ipv4Packet::new_unchecked(&mut again[14..]).fill_checksum();
    let mut rig = Rig::new(4);
    for f in [&segs[0], &segs[1], &segs[2], &again] {
        rig.offer(f);
    }
    let sent = rig.flush();
    assert_eq!(seqs(&sent), vec![s(0), s(1), s(2), s(1)]);
    assert_eq!(sent.len(), 2, "the run, then the retransmission");
}

#[test]
fn a_segment_to_another_port_sends_the_run_on_first() {
    let segs = stream(4 * 1448, 40000);
    let mut rig = Rig::new(4);
    rig.offer(&segs[0]);
    rig.offer(&segs[1]);
    rig.offer_to(POD_A, &segs[2]);
    rig.offer(&segs[3]);
    let sent = rig.flush();
    let ports: Vec<PortId> = sent.iter().map(|s| s.0).collect();
    assert_eq!(ports, vec![POD_B, POD_A, POD_B]);
    assert_eq!(seqs(&sent).len(), 4);
    assert_eq!(rig.event(Event::GroFrames), 1);
}

#[test]
fn a_segment_with_other_flags_or_options_or_size_ends_the_run() {
    let segs = stream(8 * 1448, 40000);
    let edit = |i: usize, f: fn(&mut [u8])| {
        let mut s = segs[i].clone();
        f(&mut s);
        TcpPacket::new_unchecked(&mut s[34..])
            .fill_checksum(crate::testkit::POD_A_IP, crate::testkit::POD_B_IP);
        s
    };
    // A FIN in the middle: 0-1 leave together, the FIN alone, then 3-... again.
    let fin = edit(2, |s| s[34 + 13] |= TcpFlags::FIN.bits());
    // Another timestamp on 5: 3-4 together, 5 alone (6 has the old one), then 6-7.
    let ts = edit(5, |s| s[34 + 31] ^= 1);
    let mut rig = Rig::new(4);
    for s in [
        &segs[0], &segs[1], &fin, &segs[3], &segs[4], &ts, &segs[6], &segs[7],
    ] {
        rig.offer(s);
    }
    let sent = rig.flush();
    let lens: Vec<usize> = sent
        .iter()
        .map(|(_, f, o)| {
            if o.gso_type == 0 {
                1
            } else {
                resegment(f, o).len()
            }
        })
        .collect();
    // 0-1 | the FIN | 3-4 | 5 with its own timestamp | 6-7.
    assert_eq!(lens, vec![2, 1, 2, 1, 2]);
    // A longer segment after a shorter first one does not join.
    let short = stream(1000, 40001);
    let mut first = short[0].clone();
    first[34 + 13] = TcpFlags::ACK.bits();
    TcpPacket::new_unchecked(&mut first[34..])
        .fill_checksum(crate::testkit::POD_A_IP, crate::testkit::POD_B_IP);
    let mut rig = Rig::new(4);
    rig.offer(&first);
    let mut next = segs[1].clone();
    TcpPacket::new_unchecked(&mut next[34..]).set_src_port(40001);
    TcpPacket::new_unchecked(&mut next[34..]).set_seq_no(0xffff_f000 + 1000);
    TcpPacket::new_unchecked(&mut next[34..])
        .fill_checksum(crate::testkit::POD_A_IP, crate::testkit::POD_B_IP);
    Ipv4Packet::new_unchecked(&mut next[14..]).set_ident(0x1235);
    Ipv4Packet::new_unchecked(&mut next[14..]).fill_checksum();
    rig.offer(&next);
    assert_eq!(rig.flush().len(), 2);
}

#[test]
fn a_pure_ack_or_gso_frame_between_the_same_addresses_sends_the_run_on_first() {
    let segs = stream(3 * 1448, 40000);
    let mut rig = Rig::new(4);
    rig.offer(&segs[0]);
    rig.offer(&segs[1]);
    // A pure ACK of another connection between the same two pods: no candidate.
    let mut ack = segs[0][..HEADERS].to_vec();
    Ipv4Packet::new_unchecked(&mut ack[14..]).set_total_len((HEADERS - 14) as u16);
    Ipv4Packet::new_unchecked(&mut ack[14..]).fill_checksum();
    TcpPacket::new_unchecked(&mut ack[34..]).set_src_port(40009);
    rig.offer(&ack);
    rig.offer(&segs[2]);
    let sent = rig.flush();
    assert_eq!(sent.len(), 3);
    assert_eq!(sent[1].1, ack, "after the run it followed");
    assert_ne!(sent[0].2.gso_type, 0);
}

#[test]
fn a_segment_whose_checksum_is_wrong_leaves_alone_and_starts_nothing() {
    let segs = stream(4 * 1448, 40000);
    let mut bad = segs[1].clone();
    let n = bad.len();
    bad[n - 1] ^= 0x55;
    let mut rig = Rig::new(4);
    for s in [&segs[0], &bad, &segs[2], &segs[3]] {
        rig.offer(s);
    }
    let sent = rig.flush();
    assert_eq!(sent[0].1, segs[0], "the run before it, alone");
    assert_eq!(sent[1].1, bad, "untouched, for the receiver to drop");
    assert_eq!(sent.len(), 3, "2 and 3 still coalesce");
    assert_eq!(rig.event(Event::GroBadChecksum), 1);
    // A first segment found wrong when the second comes: it leaves alone, the second starts.
    let mut rig = Rig::new(4);
    let mut bad0 = segs[0].clone();
    bad0[HEADERS] ^= 1;
    for s in [&bad0, &segs[1], &segs[2]] {
        rig.offer(s);
    }
    let sent = rig.flush();
    assert_eq!((sent.len(), &sent[0].1), (2, &bad0));
    assert_eq!(resegment(&sent[1].1, &sent[1].2), segs[1..3].to_vec());
}

#[test]
fn without_a_free_large_buffer_segments_leave_one_by_one() {
    let segs = stream(5 * 1448, 40000);
    let mut rig = Rig::new(0);
    for s in &segs {
        rig.offer(s);
    }
    let sent = rig.flush();
    let frames: Vec<Vec<u8>> = sent.into_iter().map(|s| s.1).collect();
    assert_eq!(frames, segs);
    assert!(rig.event(Event::GroNoLargeBuffer) >= 1);
}

#[test]
fn a_ninth_flow_sends_the_oldest_run_on() {
    let mut rig = Rig::new(16);
    let flows: Vec<_> = (0..=MAX_FLOWS as u16)
        .map(|i| stream(3 * 1448, 41000 + i))
        .collect();
    for f in &flows[..MAX_FLOWS] {
        rig.offer(&f[0]);
    }
    assert_eq!(rig.gro.held(), MAX_FLOWS);
    rig.offer(&flows[MAX_FLOWS][0]);
    assert_eq!(rig.gro.held(), MAX_FLOWS);
    assert_eq!(rig.out.len(), 1, "the oldest went");
    assert_eq!(rig.out[0].1.buf.frame(), &flows[0][0][..]);
    rig.flush();
}

#[test]
fn a_run_never_passes_64_kb() {
    let mut segs = stream_at(40 * 1448, 40000, 0, 0, false);
    segs.extend(stream_at(20 * 1448, 40000, 40 * 1448, 40, true));
    let mut rig = Rig::new(4);
    for s in &segs {
        rig.offer(s);
    }
    let sent = rig.flush();
    assert_eq!(sent.len(), 2, "45 + 15 segments");
    for (_, f, _) in &sent {
        assert!(f.len() - 14 <= 65535);
        assert_eq!(
            usize::from(Ipv4Packet::new_checked(&f[14..]).unwrap().total_len()),
            f.len() - 14
        );
    }
    let all: Vec<Vec<u8>> = sent.iter().flat_map(|(_, f, o)| resegment(f, o)).collect();
    assert_eq!(all, segs);
}

/// Valid IPv4 header and TCP checksums for whatever headers `f` has (the randomized test
/// below reaches the rules that way, not only the checksum refusal).
fn fill_checksums(f: &mut [u8]) {
    let Some(ip_bytes) = f.get_mut(14..) else {
        return;
    };
    let Ok(mut ip) = Ipv4Packet::new_checked(&mut *ip_bytes) else {
        return;
    };
    ip.fill_checksum();
    let (src, dst, total, header) = (ip.src(), ip.dst(), ip.total_len(), ip.header_len());
    if let Some(tcp) = ip_bytes.get_mut(header..usize::from(total)) {
        if let Ok(mut tcp) = TcpPacket::new_checked(tcp) {
            tcp.fill_checksum(src, dst);
        }
    }
}

#[test]
fn mangled_streams_never_panic_and_what_leaves_is_exactly_what_came() {
    // Segments of two flows with random bytes changed (checksums refilled half of the time)
    // or cut short, offered in bursts to two ports: whatever joins a run must come back out
    // of the super-frame, cut by the segmenter, as it went in (the `gro` fuzz target checks
    // the same on arbitrary input).
    let streams = [stream(12 * 1448, 40000), stream(12 * 1448, 40001)];
    let mut next = crate::testkit::xorshift(7);
    let key = |(port, f): &(PortId, Vec<u8>)| {
        let mut f = f.clone();
        if f.len() >= 26 {
            f[18..20].fill(0); // identification: renumbered by the segmenter in fixed-id runs
            f[24..26].fill(0); // and the header checksum with it
        }
        (*port, f)
    };
    let mut coalesced = 0;
    for _ in 0..300 {
        let mut rig = Rig::new(4);
        let mut offered = Vec::new();
        for i in 0..32 {
            let s = &streams[(next() % 2) as usize];
            let mut f = s[(i + (next() % 3) as usize) % s.len()].clone();
            match next() % 4 {
                0 => f.truncate((next() as usize) % (f.len() + 1)),
                1 => {
                    let i = (next() as usize) % f.len();
                    f[i] = next() as u8;
                    if next() % 2 == 0 {
                        fill_checksums(&mut f);
                    }
                }
                _ => {}
            }
            let port = if next() % 8 == 0 { POD_A } else { POD_B };
            rig.offer_to(port, &f);
            offered.push((port, f));
        }
        let mut got = Vec::new();
        let sent = rig.flush();
        coalesced += rig.event(Event::GroSegments);
        for (port, f, o) in sent {
            if o.gso_type == 0 {
                got.push((port, f));
                continue;
            }
            let mut complete = f.clone();
            PartialCsum {
                start: o.csum_start,
                offset: o.csum_offset,
            }
            .complete(&mut complete)
            .unwrap();
            assert!(crate::testkit::l4_checksum_ok(&complete));
            got.extend(resegment(&f, &o).into_iter().map(|s| (port, s)));
        }
        let mut a: Vec<_> = offered.iter().map(key).collect();
        let mut b: Vec<_> = got.iter().map(key).collect();
        a.sort();
        b.sort();
        assert!(a == b, "what left is not what came in");
    }
    assert!(
        coalesced > 1000,
        "the runs were exercised: {coalesced} segments coalesced"
    );
}

#[test]
fn malformed_frames_are_handed_on_unchanged_and_never_panic() {
    let segs = stream(2 * 1448, 40000);
    let mut next = crate::testkit::xorshift(7);
    let mut rig = Rig::new(4);
    for round in 0..2000 {
        let mut f = segs[round % 2].clone();
        let cut = (next() as usize) % (f.len() + 1);
        f.truncate(cut);
        for _ in 0..(next() % 4) {
            if !f.is_empty() {
                let i = (next() as usize) % f.len();
                f[i] = next() as u8;
            }
        }
        rig.offer(&f);
        if round % 7 == 0 {
            for (_, frame, o) in rig.flush() {
                if o.gso_type == 0 {
                    assert!(frame.len() <= segs[0].len());
                }
            }
        }
    }
    rig.flush();
}
