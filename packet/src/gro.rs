//! Receive coalescing (GRO) of TCP/IPv4 segments: the rules by which consecutive segments of
//! one flow may become one super-frame, and the header fix-ups that make it a valid virtio-net
//! `GSO_TCPV4` frame with a partial checksum. The counterpart of [`crate::gso`]: segmenting
//! the super-frame built here gives back the segments it was built from, byte for byte. The
//! dataplane's output calls it for frames headed to a tap that takes offloads
//! (`dataplane/src/pipeline/gro.rs`; ARCHITECTURE.md, "Offloads"); this module only decides
//! and rewrites headers, the caller owns the buffers and copies the payloads.
//!
//! The rules are Linux's `inet_gro_receive` / `inet_gro_flush` and `tcp_gro_receive`, and the
//! fix-ups its `inet_gro_complete` / `tcp4_gro_complete` (net/ipv4/af_inet.c,
//! tcp_offload.c):
//!
//! - a candidate ([`TcpSegment::parse`]) is TCP in an option-less IPv4 header, not a
//!   fragment, whose IPv4 total length is the frame's (no padding), with a payload;
//! - a run starts with a segment whose flags are exactly ACK ([`Run::start`]); a segment
//!   joins it ([`Run::check`]) if it has the same addresses, ports and MACs, the next
//!   sequence number, the same acknowledgment number, window, data offset, urgent pointer and
//!   option bytes (so timestamps must be equal), the same TTL, DSCP/ECN byte (a CE mark on one
//!   and not the other does not merge) and DF bit, an IPv4 identification one more per segment (or, with
//!   DF, the same one throughout: Linux's fixed-ID case, decided by the second segment), flags
//!   ACK or ACK|PSH, a payload no longer than the first's (`gso_size`), and the total stays
//!   within 65535 bytes of IPv4;
//! - a segment shorter than `gso_size`, or with PSH, joins as the last ([`Run::append`] says
//!   the run is closed);
//! - stricter than Linux, which ignores them: the MACs and the urgent pointer (without URG) must
//!   match too, so that the super-frame stands for exactly the segments that joined it;
//! - Linux also lets FIN join as the last segment and lets a run start with CWR or ECE; here
//!   any flag other than ACK and PSH ends the run before that segment (FIN, SYN, RST, URG,
//!   ECE, CWR), which is simpler and costs nothing that matters (one frame per connection's
//!   end, or per congestion event);
//! - [`Run::finish`] sets the IPv4 total length and header checksum (the identification stays
//!   the first segment's), ORs in the PSH of the last segment, and puts the pseudo-header sum
//!   for the whole TCP length into the checksum field (not complemented: the receiver
//!   completes it, `NEEDS_CSUM`).
//!
//! A partial checksum is trusted by its receiver, so a run must only hold segments whose own
//! checksums were right ([`TcpSegment::checksum_ok`], as Linux's GRO validates each one
//! before merging it): a segment that fails is passed on alone, for the receiver to drop.

use core::fmt;
use core::net::Ipv4Addr;

use crate::checksum;
use crate::ethernet::{EtherType, EthernetFrame, HEADER_LEN as ETHERNET_LEN};
use crate::ipv4::{IpProtocol, Ipv4Packet, MIN_HEADER_LEN as IPV4_LEN};
use crate::tcp::{TcpFlags, TcpPacket, MIN_HEADER_LEN as TCP_LEN};
use crate::virtio_net::{PartialCsum, TCP_CSUM_OFFSET};

/// Where the TCP header of a candidate starts: right after an option-less IPv4 header.
pub const TCP_OFFSET: usize = ETHERNET_LEN + IPV4_LEN;

/// The longest IPv4 packet a run may grow to (IPv4's total length field; Linux's
/// `GRO_LEGACY_MAX_SIZE` less one).
pub const MAX_IP_LEN: usize = 65535;

/// Why a frame is not a GRO candidate. Not an error in the frame: it is forwarded as it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Not an Ethernet frame carrying IPv4.
    NotIpv4,
    /// The IPv4 header is malformed (the pipeline's parse would have dropped it).
    Malformed,
    /// The IPv4 header has options.
    IpOptions,
    /// A fragment.
    Fragment,
    /// Not TCP.
    NotTcp,
    /// The IPv4 total length is not the frame's (Ethernet padding behind it).
    Padded,
    /// The TCP header is malformed.
    BadTcpHeader,
    /// No payload (a pure ACK, a SYN): nothing to coalesce.
    NoPayload,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Refusal::NotIpv4 => "not IPv4 over Ethernet",
            Refusal::Malformed => "malformed IPv4 header",
            Refusal::IpOptions => "IPv4 header with options",
            Refusal::Fragment => "IPv4 fragment",
            Refusal::NotTcp => "not TCP",
            Refusal::Padded => "IPv4 total length shorter than the frame",
            Refusal::BadTcpHeader => "malformed TCP header",
            Refusal::NoPayload => "TCP segment without payload",
        })
    }
}

/// Why a segment does not join a run: the run ends before it (and the segment may start the
/// next one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mismatch {
    /// Other addresses, ports or MAC addresses: another flow.
    Flow,
    /// Not the next sequence number (out of order, a retransmission, a gap).
    Seq,
    /// Another acknowledgment number.
    Ack,
    /// A flag other than ACK and PSH (FIN, SYN, RST, URG, ECE, CWR), or no ACK.
    Flags,
    /// Another data offset (or reserved bits beside it), urgent pointer or other option bytes
    /// (a new timestamp, SACK blocks).
    Options,
    /// Another window.
    Window,
    /// Another TTL, DSCP/ECN byte (a CE mark) or DF bit.
    IpHeader,
    /// An IPv4 identification that is neither the next one nor (with DF) the same.
    Ident,
    /// A payload longer than the run's `gso_size`.
    Size,
    /// The run would pass 65535 bytes of IPv4.
    TooLong,
    /// The run was closed by a short segment or PSH.
    Closed,
}

/// What GRO reads of one candidate segment, once ([`TcpSegment::parse`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpSegment {
    /// IPv4 source.
    pub src: Ipv4Addr,
    /// IPv4 destination.
    pub dst: Ipv4Addr,
    /// TCP source port.
    pub src_port: u16,
    /// TCP destination port.
    pub dst_port: u16,
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgment number.
    pub ack: u32,
    /// Control bits.
    pub flags: TcpFlags,
    /// Receive window.
    pub window: u16,
    /// IPv4 identification.
    pub ident: u16,
    /// IPv4 Don't Fragment.
    pub dont_frag: bool,
    /// IPv4 TTL.
    pub ttl: u8,
    /// IPv4 DSCP/ECN byte.
    pub tos: u8,
    /// Ethernet + IPv4 + TCP header bytes: where the payload starts.
    pub headers_len: usize,
    /// Payload bytes (at least one).
    pub payload_len: usize,
}

impl TcpSegment {
    /// Reads a candidate's headers, or says why `frame` is none.
    pub fn parse(frame: &[u8]) -> Result<TcpSegment, Refusal> {
        let eth = EthernetFrame::new_checked(frame).map_err(|_| Refusal::NotIpv4)?;
        if eth.ethertype() != EtherType::IPV4 {
            return Err(Refusal::NotIpv4);
        }
        let ip_bytes = frame.get(ETHERNET_LEN..).ok_or(Refusal::NotIpv4)?;
        let ip = Ipv4Packet::new_checked(ip_bytes).map_err(|_| Refusal::Malformed)?;
        if ip.header_len() != IPV4_LEN {
            return Err(Refusal::IpOptions);
        }
        // Flags and offset: only DF may be set (MF, an offset, or the reserved bit: Linux's
        // `id & ~IP_DF` flush).
        if ip.is_fragment() || ip_bytes[6] & 0xbf != 0 || ip_bytes[7] != 0 {
            return Err(Refusal::Fragment);
        }
        if ip.protocol() != IpProtocol::TCP {
            return Err(Refusal::NotTcp);
        }
        if usize::from(ip.total_len()) != ip_bytes.len() {
            return Err(Refusal::Padded);
        }
        let tcp = TcpPacket::new_checked(ip.payload()).map_err(|_| Refusal::BadTcpHeader)?;
        let payload_len = tcp.payload().len();
        if payload_len == 0 {
            return Err(Refusal::NoPayload);
        }
        Ok(TcpSegment {
            src: ip.src(),
            dst: ip.dst(),
            src_port: tcp.src_port(),
            dst_port: tcp.dst_port(),
            seq: tcp.seq_no(),
            ack: tcp.ack_no(),
            flags: tcp.flags(),
            window: tcp.window(),
            ident: ip.ident(),
            dont_frag: ip.dont_frag(),
            ttl: ip.ttl(),
            tos: ip.dscp_ecn(),
            headers_len: TCP_OFFSET + tcp.header_len(),
            payload_len,
        })
    }

    /// Whether `other` has this segment's addresses and ports.
    #[inline]
    pub fn same_flow(&self, other: &TcpSegment) -> bool {
        self.src == other.src
            && self.dst == other.dst
            && self.src_port == other.src_port
            && self.dst_port == other.dst_port
    }

    /// Whether the TCP checksum of `frame` (the frame this was parsed from) verifies.
    pub fn checksum_ok(&self, frame: &[u8]) -> bool {
        frame
            .get(TCP_OFFSET..)
            .is_some_and(|tcp| TcpPacket::new_unchecked(tcp).verify_checksum(self.src, self.dst))
    }

    /// The payload of `frame` (the frame this was parsed from).
    #[inline]
    pub fn payload<'a>(&self, frame: &'a [u8]) -> &'a [u8] {
        frame.get(self.headers_len..).unwrap_or(&[])
    }
}

/// A run of coalesced segments being built: the first segment's identity and what the next
/// one must carry. The frame itself (the first segment's headers, then every payload in
/// order) is the caller's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Run {
    first: TcpSegment,
    next_seq: u32,
    count: u16,
    /// The frame's length so far (Ethernet included).
    len: usize,
    /// With DF: the second segment carried the first one's identification (Linux's
    /// `ip_fixedid`), so every later one must too.
    fixed_id: bool,
    psh: bool,
    closed: bool,
}

impl Run {
    /// A run starting with `first`, if it may start one: flags exactly ACK (a PSH segment
    /// is a run's last, so alone it is just forwarded).
    pub fn start(first: &TcpSegment) -> Option<Run> {
        if first.flags != TcpFlags::ACK {
            return None;
        }
        Some(Run {
            first: *first,
            next_seq: first.seq.wrapping_add(first.payload_len as u32),
            count: 1,
            len: first.headers_len + first.payload_len,
            fixed_id: false,
            psh: false,
            closed: false,
        })
    }

    /// The segment the run started with.
    #[inline]
    pub fn first(&self) -> &TcpSegment {
        &self.first
    }

    /// Segments in the run.
    #[inline]
    pub fn count(&self) -> usize {
        usize::from(self.count)
    }

    /// The frame's length so far, Ethernet header included.
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Never: a run holds its first segment. (For clippy's `len_without_is_empty`.)
    #[inline]
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The payload bytes of every segment but the last: the super-frame's `gso_size`.
    #[inline]
    pub fn gso_size(&self) -> u16 {
        self.first.payload_len as u16
    }

    /// Whether `seg` may join the run as its next segment. `held` is the run's frame (the
    /// first segment's headers in front) and `frame` the segment's, for the option bytes.
    pub fn check(&self, seg: &TcpSegment, held: &[u8], frame: &[u8]) -> Result<(), Mismatch> {
        let f = &self.first;
        // The MACs too: what a segment carries that the super-frame would not is lost.
        if !f.same_flow(seg) || held.get(..12).is_none() || held.get(..12) != frame.get(..12) {
            return Err(Mismatch::Flow);
        }
        if self.closed {
            return Err(Mismatch::Closed);
        }
        if seg.flags != TcpFlags::ACK && seg.flags != TcpFlags::ACK | TcpFlags::PSH {
            return Err(Mismatch::Flags);
        }
        if seg.seq != self.next_seq {
            return Err(Mismatch::Seq);
        }
        if seg.ack != f.ack {
            return Err(Mismatch::Ack);
        }
        if seg.window != f.window {
            return Err(Mismatch::Window);
        }
        if seg.ttl != f.ttl || seg.tos != f.tos || seg.dont_frag != f.dont_frag {
            return Err(Mismatch::IpHeader);
        }
        // Byte 12 (data offset and the reserved bits) and the urgent pointer: Linux compares
        // the first, ignores the second without URG; compared here so that the segments the
        // super-frame stands for are exactly those that joined it.
        let (a, b) = (TCP_OFFSET + 12, TCP_OFFSET + 18);
        if held.get(a) != frame.get(a) || held.get(b..b + 2) != frame.get(b..b + 2) {
            return Err(Mismatch::Options);
        }
        let options = TCP_OFFSET + TCP_LEN..f.headers_len;
        let same_options = match (held.get(options.clone()), frame.get(options)) {
            // Whole words (the data offset counts them): compared inline, not by a memcmp
            // call per segment.
            (Some(a), Some(b)) if seg.headers_len == f.headers_len => {
                a.chunks_exact(4).zip(b.chunks_exact(4)).all(|(x, y)| {
                    u32::from_ne_bytes([x[0], x[1], x[2], x[3]])
                        == u32::from_ne_bytes([y[0], y[1], y[2], y[3]])
                })
            }
            _ => false,
        };
        if !same_options {
            return Err(Mismatch::Options);
        }
        let step = seg.ident.wrapping_sub(f.ident);
        let ident_ok = if self.count == 1 {
            step == 1 || (f.dont_frag && step == 0)
        } else if self.fixed_id {
            step == 0
        } else {
            step == self.count
        };
        if !ident_ok {
            return Err(Mismatch::Ident);
        }
        if seg.payload_len > f.payload_len {
            return Err(Mismatch::Size);
        }
        if self.len + seg.payload_len - ETHERNET_LEN > MAX_IP_LEN {
            return Err(Mismatch::TooLong);
        }
        Ok(())
    }

    /// Adds `seg`, which [`Run::check`] accepted (the caller appends its payload to the
    /// frame). Returns whether the run stays open: false after a segment shorter than
    /// `gso_size` or with PSH, which must be its last.
    pub fn append(&mut self, seg: &TcpSegment) -> bool {
        if self.count == 1 && seg.ident == self.first.ident {
            self.fixed_id = true;
        }
        self.count = self.count.saturating_add(1);
        self.next_seq = seg.seq.wrapping_add(seg.payload_len as u32);
        self.len += seg.payload_len;
        self.psh |= seg.flags.contains(TcpFlags::PSH);
        self.closed = self.psh || seg.payload_len < self.first.payload_len;
        !self.closed
    }

    /// Turns `frame` (the first segment's headers, then every payload, [`Run::len`] bytes)
    /// into the super-frame: IPv4 total length and header checksum, PSH if the last segment
    /// had it, the pseudo-header sum in the TCP checksum field. Returns the partial checksum
    /// for its virtio-net header; `None` (nothing written) if `frame` is not the run's length.
    pub fn finish(&self, frame: &mut [u8]) -> Option<PartialCsum> {
        if frame.len() != self.len || self.len < self.first.headers_len {
            return None;
        }
        let ip_len = (self.len - ETHERNET_LEN) as u16;
        let tcp_len = ip_len - IPV4_LEN as u16;
        let (ip_bytes, tcp_bytes) = frame.get_mut(ETHERNET_LEN..)?.split_at_mut(IPV4_LEN);
        let mut ip = Ipv4Packet::new_unchecked(ip_bytes);
        ip.set_total_len(ip_len);
        ip.fill_checksum();
        let mut tcp = TcpPacket::new_unchecked(tcp_bytes);
        if self.psh {
            tcp.set_flags(tcp.flags() | TcpFlags::PSH);
        }
        tcp.set_checksum(checksum::pseudo_header_ipv4(
            self.first.src,
            self.first.dst,
            IpProtocol::TCP,
            tcp_len,
        ));
        Some(PartialCsum {
            start: TCP_OFFSET as u16,
            offset: TCP_CSUM_OFFSET,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gso::{SegmentChecksum, Segmenter};
    use std::vec;
    use std::vec::Vec;

    const SRC: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 2);
    const DST: Ipv4Addr = Ipv4Addr::new(10, 244, 2, 2);
    /// Timestamps, as Linux sends them: NOP, NOP, TS (kind 8, length 10).
    const TS: [u8; 12] = [1, 1, 8, 10, 0, 0, 0, 7, 0, 0, 0, 9];

    /// A whole TCP/IPv4 frame with correct checksums.
    fn segment(seq: u32, ident: u16, flags: TcpFlags, options: &[u8], payload: &[u8]) -> Vec<u8> {
        let thl = TCP_LEN + options.len();
        let mut f = vec![0u8; TCP_OFFSET + thl + payload.len()];
        f[..6].copy_from_slice(&[2, 0, 0, 0, 0, 2]);
        f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        let ip_len = (f.len() - ETHERNET_LEN) as u16;
        {
            let mut ip = Ipv4Packet::new_unchecked(&mut f[ETHERNET_LEN..]);
            ip.set_version_and_header_len(20);
            ip.set_total_len(ip_len);
            ip.set_ident(ident);
            ip.set_dont_frag(true);
            ip.set_ttl(63);
            ip.set_protocol(IpProtocol::TCP);
            ip.set_src(SRC);
            ip.set_dst(DST);
            ip.fill_checksum();
        }
        let mut tcp = TcpPacket::new_unchecked(&mut f[TCP_OFFSET..]);
        tcp.set_src_port(40000);
        tcp.set_dst_port(5201);
        tcp.set_seq_no(seq);
        tcp.set_ack_no(77);
        tcp.set_header_len(thl);
        tcp.set_flags(flags);
        tcp.set_window(500);
        f[TCP_OFFSET + TCP_LEN..TCP_OFFSET + thl].copy_from_slice(options);
        f[TCP_OFFSET + thl..].copy_from_slice(payload);
        TcpPacket::new_unchecked(&mut f[TCP_OFFSET..]).fill_checksum(SRC, DST);
        f
    }

    fn payload(n: usize, salt: u8) -> Vec<u8> {
        (0..n).map(|i| (i as u8).wrapping_mul(31) ^ salt).collect()
    }

    /// `n` in-order segments of `mss` payload bytes (the last `last` bytes), seq from 1000,
    /// identification from 100.
    fn stream(n: usize, mss: usize, last: usize) -> Vec<Vec<u8>> {
        let mut seq = 1000u32;
        (0..n)
            .map(|i| {
                let len = if i + 1 == n { last } else { mss };
                let f = segment(
                    seq,
                    100 + i as u16,
                    TcpFlags::ACK,
                    &TS,
                    &payload(len, i as u8),
                );
                seq += len as u32;
                f
            })
            .collect()
    }

    /// Coalesces `frames` as the dataplane does: one run, payloads appended.
    fn coalesce(frames: &[Vec<u8>]) -> (Vec<u8>, Run) {
        let first = TcpSegment::parse(&frames[0]).unwrap();
        let mut run = Run::start(&first).unwrap();
        let mut held = frames[0].clone();
        for f in &frames[1..] {
            let seg = TcpSegment::parse(f).unwrap();
            run.check(&seg, &held, f).unwrap();
            assert!(seg.checksum_ok(f));
            held.extend_from_slice(seg.payload(f));
            run.append(&seg);
        }
        (held, run)
    }

    #[test]
    fn in_order_segments_become_one_super_frame_that_segments_back_into_them() {
        let frames = stream(5, 1398, 600);
        let (mut held, run) = coalesce(&frames);
        assert_eq!(
            (run.count(), run.gso_size(), run.len()),
            (5, 1398, held.len())
        );
        let csum = run.finish(&mut held).unwrap();
        assert_eq!((csum.start, csum.offset), (34, 16));
        // The payload is the concatenation.
        let all: Vec<u8> = frames.iter().flat_map(|f| f[34 + 32..].to_vec()).collect();
        assert_eq!(&held[34 + 32..], &all[..]);
        // IPv4: total length, the first segment's identification, a valid header checksum.
        let ip = Ipv4Packet::new_checked(&held[14..]).unwrap();
        assert_eq!(usize::from(ip.total_len()), held.len() - 14);
        assert_eq!(ip.ident(), 100);
        assert!(ip.verify_checksum());
        // TCP: the pseudo-header sum for the whole TCP length, not complemented.
        let tcp_len = (held.len() - 34) as u16;
        let pseudo = checksum::pseudo_header_ipv4(SRC, DST, IpProtocol::TCP, tcp_len);
        assert_eq!(&held[34 + 16..34 + 18], &pseudo.to_be_bytes());
        // Completing it gives the checksum of the whole frame as one segment.
        let mut complete = held.clone();
        csum.complete(&mut complete).unwrap();
        assert!(TcpPacket::new_unchecked(&complete[34..]).verify_checksum(SRC, DST));
        // And the kernel's segmentation of it is what was coalesced, byte for byte.
        let mut segs = Segmenter::tcpv4(&held, 1398, SegmentChecksum::Full).unwrap();
        let mut back = Vec::new();
        let mut buf = vec![0u8; 2048];
        while let Some(n) = segs.next_into(&mut buf).unwrap() {
            back.push(buf[..n].to_vec());
        }
        assert_eq!(back, frames);
    }

    #[test]
    fn psh_joins_as_the_last_segment_and_stays_on_the_super_frame() {
        let mut frames = stream(3, 1000, 1000);
        let mut last = TcpPacket::new_unchecked(&mut frames[2][34..]);
        last.set_flags(TcpFlags::ACK | TcpFlags::PSH);
        last.fill_checksum(SRC, DST);
        let first = TcpSegment::parse(&frames[0]).unwrap();
        let mut run = Run::start(&first).unwrap();
        let mut held = frames[0].clone();
        for (i, f) in frames[1..].iter().enumerate() {
            let seg = TcpSegment::parse(f).unwrap();
            run.check(&seg, &held, f).unwrap();
            held.extend_from_slice(seg.payload(f));
            assert_eq!(run.append(&seg), i == 0, "open until the PSH segment");
        }
        let next = TcpSegment::parse(&stream(1, 1000, 1000)[0]).unwrap();
        assert_eq!(run.check(&next, &held, &frames[0]), Err(Mismatch::Closed));
        run.finish(&mut held).unwrap();
        assert_eq!(
            TcpPacket::new_unchecked(&held[34..]).flags(),
            TcpFlags::ACK | TcpFlags::PSH
        );
        // Alone, a PSH segment starts nothing.
        assert!(Run::start(&TcpSegment::parse(&frames[2]).unwrap()).is_none());
    }

    #[test]
    fn a_short_segment_is_the_last_and_a_longer_one_does_not_join() {
        let frames = stream(3, 1000, 400);
        let (held, mut run) = {
            let first = TcpSegment::parse(&frames[0]).unwrap();
            (frames[0].clone(), Run::start(&first).unwrap())
        };
        let seg1 = TcpSegment::parse(&frames[1]).unwrap();
        assert!(run.append(&seg1));
        let seg2 = TcpSegment::parse(&frames[2]).unwrap();
        assert!(!run.append(&seg2), "shorter than gso_size: the last one");
        let longer = segment(1000 + 1000, 101, TcpFlags::ACK, &TS, &payload(1001, 1));
        let run = Run::start(&TcpSegment::parse(&frames[0]).unwrap()).unwrap();
        let seg = TcpSegment::parse(&longer).unwrap();
        assert_eq!(run.check(&seg, &held, &longer), Err(Mismatch::Size));
    }

    /// The first segment of `stream(.., 1000, ..)` as a run, and a second segment built by
    /// `make(seq, ident)` checked against it.
    fn second(make: impl Fn(u32, u16) -> Vec<u8>) -> Result<(), Mismatch> {
        let first = stream(1, 1000, 1000).remove(0);
        let run = Run::start(&TcpSegment::parse(&first).unwrap()).unwrap();
        let f = make(2000, 101);
        run.check(&TcpSegment::parse(&f).unwrap(), &first, &f)
    }

    #[test]
    fn each_rule_refuses_its_mismatch() {
        let ok = |seq, id| segment(seq, id, TcpFlags::ACK, &TS, &payload(1000, 1));
        assert_eq!(second(ok), Ok(()));
        // Out of order, a retransmission, a gap.
        assert_eq!(second(|s, id| ok(s + 1000, id)), Err(Mismatch::Seq));
        assert_eq!(second(|s, id| ok(s - 1000, id)), Err(Mismatch::Seq));
        // Flags: anything but ACK and PSH.
        for flags in [
            TcpFlags::FIN,
            TcpFlags::SYN,
            TcpFlags::RST,
            TcpFlags::URG,
            TcpFlags::ECE,
            TcpFlags::CWR,
        ] {
            let f = |s, id| segment(s, id, TcpFlags::ACK | flags, &TS, &payload(1000, 1));
            assert_eq!(second(f), Err(Mismatch::Flags), "{flags:?}");
        }
        // Another timestamp, other options, no options.
        let mut ts2 = TS;
        ts2[7] = 8;
        assert_eq!(
            second(|s, id| segment(s, id, TcpFlags::ACK, &ts2, &payload(1000, 1))),
            Err(Mismatch::Options)
        );
        assert_eq!(
            second(|s, id| segment(s, id, TcpFlags::ACK, &[], &payload(1000, 1))),
            Err(Mismatch::Options)
        );
        // Another ACK number, window, TTL, ECN CE mark, DF.
        let with = |edit: fn(&mut Vec<u8>)| {
            move |s, id| {
                let mut f = ok(s, id);
                edit(&mut f);
                Ipv4Packet::new_unchecked(&mut f[14..]).fill_checksum();
                TcpPacket::new_unchecked(&mut f[34..]).fill_checksum(SRC, DST);
                f
            }
        };
        assert_eq!(
            second(with(
                |f| TcpPacket::new_unchecked(&mut f[34..]).set_ack_no(78)
            )),
            Err(Mismatch::Ack)
        );
        assert_eq!(
            second(with(
                |f| TcpPacket::new_unchecked(&mut f[34..]).set_window(501)
            )),
            Err(Mismatch::Window)
        );
        assert_eq!(
            second(with(|f| Ipv4Packet::new_unchecked(&mut f[14..]).set_ttl(62))),
            Err(Mismatch::IpHeader)
        );
        assert_eq!(
            second(with(
                |f| Ipv4Packet::new_unchecked(&mut f[14..]).set_dscp_ecn(0b11)
            )),
            Err(Mismatch::IpHeader)
        );
        assert_eq!(
            second(with(
                |f| Ipv4Packet::new_unchecked(&mut f[14..]).set_dont_frag(false)
            )),
            Err(Mismatch::IpHeader)
        );
        // Another urgent pointer (without URG), other reserved bits beside the data offset.
        assert_eq!(second(with(|f| f[34 + 19] = 1)), Err(Mismatch::Options));
        assert_eq!(second(with(|f| f[34 + 12] |= 1)), Err(Mismatch::Options));
        // Another flow, or other MACs.
        assert_eq!(second(with(|f| f[5] ^= 1)), Err(Mismatch::Flow));
        assert_eq!(
            second(with(
                |f| TcpPacket::new_unchecked(&mut f[34..]).set_src_port(40001)
            )),
            Err(Mismatch::Flow)
        );
        assert_eq!(
            second(with(
                |f| Ipv4Packet::new_unchecked(&mut f[14..]).set_dst(Ipv4Addr::new(10, 244, 2, 3))
            )),
            Err(Mismatch::Flow)
        );
        // Identification: next (above), the same with DF, anything else not.
        assert_eq!(second(|s, _| ok(s, 100)), Ok(()));
        assert_eq!(second(|s, _| ok(s, 105)), Err(Mismatch::Ident));
    }

    #[test]
    fn a_fixed_identification_is_held_to_and_needs_df() {
        let first = stream(1, 1000, 1000).remove(0);
        let mut run = Run::start(&TcpSegment::parse(&first).unwrap()).unwrap();
        let f1 = segment(2000, 100, TcpFlags::ACK, &TS, &payload(1000, 1));
        let s1 = TcpSegment::parse(&f1).unwrap();
        run.check(&s1, &first, &f1).unwrap();
        run.append(&s1);
        let f2 = segment(3000, 102, TcpFlags::ACK, &TS, &payload(1000, 2));
        assert_eq!(
            run.check(&TcpSegment::parse(&f2).unwrap(), &first, &f2),
            Err(Mismatch::Ident)
        );
        let f2 = segment(3000, 100, TcpFlags::ACK, &TS, &payload(1000, 2));
        assert_eq!(
            run.check(&TcpSegment::parse(&f2).unwrap(), &first, &f2),
            Ok(())
        );
        // Without DF the same identification twice is not one datagram stream.
        let mut nodf = first.clone();
        Ipv4Packet::new_unchecked(&mut nodf[14..]).set_dont_frag(false);
        let mut f1 = f1;
        Ipv4Packet::new_unchecked(&mut f1[14..]).set_dont_frag(false);
        let run = Run::start(&TcpSegment::parse(&nodf).unwrap()).unwrap();
        assert_eq!(
            run.check(&TcpSegment::parse(&f1).unwrap(), &nodf, &f1),
            Err(Mismatch::Ident)
        );
    }

    #[test]
    fn a_run_never_passes_65535_bytes_of_ipv4() {
        let frames = stream(60, 1448, 1448);
        let first = TcpSegment::parse(&frames[0]).unwrap();
        let mut run = Run::start(&first).unwrap();
        let mut held = frames[0].clone();
        let mut joined = 1;
        for f in &frames[1..] {
            let seg = TcpSegment::parse(f).unwrap();
            match run.check(&seg, &held, f) {
                Ok(()) => {
                    held.extend_from_slice(seg.payload(f));
                    run.append(&seg);
                    joined += 1;
                }
                Err(e) => {
                    assert_eq!(e, Mismatch::TooLong);
                    break;
                }
            }
        }
        assert_eq!(joined, 45, "45 × 1448 + 52 fits, 46 do not");
        assert!(held.len() - 14 <= MAX_IP_LEN);
        run.finish(&mut held).unwrap();
        assert_eq!(
            usize::from(Ipv4Packet::new_unchecked(&held[14..]).total_len()),
            held.len() - 14
        );
    }

    #[test]
    fn what_is_not_a_candidate_says_why() {
        let good = stream(1, 100, 100).remove(0);
        assert!(TcpSegment::parse(&good).is_ok());
        let edit = |f: fn(&mut Vec<u8>)| {
            let mut g = good.clone();
            f(&mut g);
            TcpSegment::parse(&g)
        };
        assert_eq!(edit(|g| g[12] = 0x86), Err(Refusal::NotIpv4));
        assert_eq!(edit(|g| g.truncate(13)), Err(Refusal::NotIpv4));
        assert_eq!(edit(|g| g.truncate(30)), Err(Refusal::Malformed));
        assert_eq!(edit(|g| g[14] = 0x46), Err(Refusal::IpOptions));
        assert_eq!(edit(|g| g[20] |= 0x20), Err(Refusal::Fragment));
        assert_eq!(
            edit(|g| g[20] |= 0x80),
            Err(Refusal::Fragment),
            "the reserved bit"
        );
        assert_eq!(edit(|g| g[21] = 1), Err(Refusal::Fragment));
        assert_eq!(edit(|g| g[23] = 17), Err(Refusal::NotTcp));
        assert_eq!(edit(|g| g.push(0)), Err(Refusal::Padded));
        assert_eq!(edit(|g| g[34 + 12] = 0x30), Err(Refusal::BadTcpHeader));
        let ack = segment(1, 1, TcpFlags::ACK, &TS, &[]);
        assert_eq!(TcpSegment::parse(&ack), Err(Refusal::NoPayload));
        // A wrong TCP checksum parses (checksums are checked where they matter) and says so.
        let mut bad = good.clone();
        let n = bad.len();
        bad[n - 1] ^= 1;
        let seg = TcpSegment::parse(&bad).unwrap();
        assert!(!seg.checksum_ok(&bad) && seg.checksum_ok(&good));
    }

    #[test]
    fn finish_refuses_a_frame_of_another_length() {
        let frames = stream(2, 500, 500);
        let (mut held, run) = coalesce(&frames);
        held.pop();
        assert_eq!(run.finish(&mut held), None);
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let good = stream(2, 300, 300);
        let mut x = 0x1234_5678u32;
        for len in 0..200 {
            let mut f = good[0][..len.min(good[0].len())].to_vec();
            for b in f.iter_mut().skip(12) {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                if x % 7 == 0 {
                    *b = x as u8;
                }
            }
            if let Ok(seg) = TcpSegment::parse(&f) {
                let _ = seg.checksum_ok(&f);
                let _ = seg.payload(&f);
                if let Some(run) = Run::start(&seg) {
                    let _ = run.check(&seg, &f, &good[1]);
                    let mut g = f.clone();
                    let _ = run.finish(&mut g);
                }
            }
        }
    }
}
