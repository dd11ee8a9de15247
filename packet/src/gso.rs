//! Software segmentation (GSO) of TCP/IPv4 and UDP/IPv4 super-frames: what the switch does
//! when a pod hands it a 64 KB TSO/USO frame (virtio-net `gso_type` TCPV4 or UDP_L4) and the
//! output cannot take it (a port without the offload, a smaller MTU, later an encapsulating
//! uplink or AF_XDP). Each segment is written into a buffer the caller provides; nothing is
//! allocated. The dataplane's output calls it (`pipeline/offload.rs`; ARCHITECTURE.md,
//! "Offloads").
//!
//! The segments are the ones Linux's `tcp_gso_segment` / `__udp_gso_segment` and
//! `inet_gso_segment` produce (net/ipv4/tcp_offload.c, udp_offload.c, af_inet.c):
//!
//! - the Ethernet header, the IPv4 header with its options and the TCP header with its
//!   options are copied to every segment; each segment carries `gso_size` payload bytes, the
//!   last one the rest;
//! - IPv4: total length per segment, identification incremented by one per segment
//!   (wrapping; the non-`FIXEDID` case), header checksum recomputed;
//! - TCP: sequence number advanced by the payload before it; FIN and PSH only on the last
//!   segment, CWR only on the first; everything else (ACK, window, URG and the urgent
//!   pointer, options) copied, as Linux does;
//! - UDP (USO, not the old UFO fragmentation): every segment is its own datagram with its
//!   own length;
//! - the transport checksum is either computed in full, or left partial (the pseudo-header
//!   sum for the segment's length in the field, `NEEDS_CSUM`-style) for an output that
//!   offloads it: [`SegmentChecksum`].
//!
//! The checksum the super-frame carries is not read: a pod's TSO frame holds only a partial
//! one, and each segment's is computed from its own bytes.

use core::fmt;

use crate::checksum;
use crate::ethernet::{EtherType, EthernetError, EthernetFrame, HEADER_LEN as ETHERNET_LEN};
use crate::ipv4::{IpProtocol, Ipv4Error, Ipv4Packet};
use crate::tcp::{TcpError, TcpFlags, TcpPacket};
use crate::udp::{UdpError, UdpPacket, HEADER_LEN as UDP_LEN};
use crate::virtio_net::{PartialCsum, TCP_CSUM_OFFSET, UDP_CSUM_OFFSET};

/// What each segment's transport checksum is left as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SegmentChecksum {
    /// Computed in full: the segment is correct on any wire.
    Full,
    /// Partial: the pseudo-header sum (not complemented) is in the field, for an output that
    /// completes it (a tap with `TUNSETOFFLOAD` checksum, a NIC); pass
    /// [`Segmenter::partial_csum`] with the segment in its virtio-net header.
    Partial,
}

/// The transport protocol being segmented.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transport {
    Tcp,
    Udp,
}

/// Why a frame cannot be segmented, or a segment not written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GsoError {
    /// `gso_size` is 0.
    GsoSizeZero,
    /// The frame is not an Ethernet frame.
    Ethernet(EthernetError),
    /// The frame's EtherType is not IPv4 (VLAN-tagged frames are not segmented yet).
    NotIpv4(EtherType),
    /// The IPv4 header is malformed.
    Ipv4(Ipv4Error),
    /// The IPv4 packet is a fragment: only whole datagrams are segmented.
    Fragment,
    /// The IPv4 payload is not the protocol asked for (TCP for TSO, UDP for USO).
    WrongProtocol(IpProtocol),
    /// The TCP header is malformed.
    Tcp(TcpError),
    /// The UDP header is malformed.
    Udp(UdpError),
    /// The UDP length is not the IPv4 payload's: a super-datagram's covers all of it.
    UdpLengthMismatch {
        /// The UDP header's length field.
        udp_len: u16,
        /// The IPv4 payload's length.
        ip_payload_len: usize,
    },
    /// The caller's buffer is shorter than the next segment; nothing was written and the
    /// segmenter has not moved on, so the call can be repeated with a larger buffer.
    OutputTooSmall {
        /// The length of the next segment.
        needed: usize,
        /// The length of the buffer offered.
        available: usize,
    },
}

impl fmt::Display for GsoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            GsoError::GsoSizeZero => f.write_str("cannot segment with gso_size 0"),
            GsoError::Ethernet(e) => write!(f, "cannot segment: {e}"),
            GsoError::NotIpv4(t) => write!(
                f,
                "cannot segment a frame of EtherType {:#06x}: only untagged IPv4 is segmented",
                t.0
            ),
            GsoError::Ipv4(e) => write!(f, "cannot segment: {e}"),
            GsoError::Fragment => f.write_str("cannot segment an IPv4 fragment"),
            GsoError::WrongProtocol(p) => {
                write!(
                    f,
                    "cannot segment: the IPv4 payload is {p}, not the GSO kind's protocol"
                )
            }
            GsoError::Tcp(e) => write!(f, "cannot segment: {e}"),
            GsoError::Udp(e) => write!(f, "cannot segment: {e}"),
            GsoError::UdpLengthMismatch {
                udp_len,
                ip_payload_len,
            } => write!(
                f,
                "cannot segment: UDP length {udp_len} is not the {ip_payload_len}-byte IPv4 payload"
            ),
            GsoError::OutputTooSmall { needed, available } => write!(
                f,
                "segment of {needed} bytes does not fit the {available}-byte output buffer"
            ),
        }
    }
}

impl core::error::Error for GsoError {}

/// Cuts one super-frame into segments, one per [`next_into`](Self::next_into) call.
///
/// ```
/// # use podswitch_packet::gso::{Segmenter, SegmentChecksum};
/// # fn send(_: &[u8]) {}
/// # fn run(frame: &[u8]) -> Result<(), podswitch_packet::gso::GsoError> {
/// let mut segments = Segmenter::tcpv4(frame, 1448, SegmentChecksum::Full)?;
/// let mut buf = [0u8; 1514];
/// while let Some(len) = segments.next_into(&mut buf)? {
///     send(&buf[..len]);
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Segmenter<'a> {
    /// The frame up to the IPv4 total length (Ethernet padding cut off).
    frame: &'a [u8],
    transport: Transport,
    checksum: SegmentChecksum,
    /// Offset of the transport header.
    l4_start: usize,
    /// Offset of the payload: the length of the headers every segment repeats.
    header_len: usize,
    gso_size: usize,
    /// Segments in all, at least 1 (a super-frame with no payload is one segment).
    count: usize,
    /// The index of the segment the next call writes.
    next: usize,
}

impl<'a> Segmenter<'a> {
    /// Segments an Ethernet + IPv4 + TCP super-frame (TSO4) into segments of `gso_size`
    /// payload bytes.
    pub fn tcpv4(
        frame: &'a [u8],
        gso_size: u16,
        checksum: SegmentChecksum,
    ) -> Result<Segmenter<'a>, GsoError> {
        Segmenter::new(frame, gso_size, checksum, Transport::Tcp)
    }

    /// Segments an Ethernet + IPv4 + UDP super-datagram (USO, `UDP_L4`) into datagrams of
    /// `gso_size` payload bytes each.
    pub fn udpv4(
        frame: &'a [u8],
        gso_size: u16,
        checksum: SegmentChecksum,
    ) -> Result<Segmenter<'a>, GsoError> {
        Segmenter::new(frame, gso_size, checksum, Transport::Udp)
    }

    fn new(
        frame: &'a [u8],
        gso_size: u16,
        checksum: SegmentChecksum,
        transport: Transport,
    ) -> Result<Segmenter<'a>, GsoError> {
        if gso_size == 0 {
            return Err(GsoError::GsoSizeZero);
        }
        let eth = EthernetFrame::new_checked(frame).map_err(GsoError::Ethernet)?;
        if eth.ethertype() != EtherType::IPV4 {
            return Err(GsoError::NotIpv4(eth.ethertype()));
        }
        let ip = Ipv4Packet::new_checked(eth.into_payload()).map_err(GsoError::Ipv4)?;
        if ip.is_fragment() {
            return Err(GsoError::Fragment);
        }
        let l4_start = ETHERNET_LEN + ip.header_len();
        let frame = &frame[..ETHERNET_LEN + usize::from(ip.total_len())];
        let expected = match transport {
            Transport::Tcp => IpProtocol::TCP,
            Transport::Udp => IpProtocol::UDP,
        };
        if ip.protocol() != expected {
            return Err(GsoError::WrongProtocol(ip.protocol()));
        }
        let l4 = &frame[l4_start..];
        let l4_header_len = match transport {
            Transport::Tcp => TcpPacket::new_checked(l4)
                .map_err(GsoError::Tcp)?
                .header_len(),
            Transport::Udp => {
                let udp = UdpPacket::new_checked(l4).map_err(GsoError::Udp)?;
                if usize::from(udp.len()) != l4.len() {
                    return Err(GsoError::UdpLengthMismatch {
                        udp_len: udp.len(),
                        ip_payload_len: l4.len(),
                    });
                }
                UDP_LEN
            }
        };
        let header_len = l4_start + l4_header_len;
        let gso_size = usize::from(gso_size);
        let payload_len = frame.len() - header_len;
        Ok(Segmenter {
            frame,
            transport,
            checksum,
            l4_start,
            header_len,
            gso_size,
            count: payload_len.div_ceil(gso_size).max(1),
            next: 0,
        })
    }

    /// How many segments the frame makes in all (at least 1).
    pub fn segment_count(&self) -> usize {
        self.count
    }

    /// How many segments are still to be written.
    pub fn remaining(&self) -> usize {
        self.count - self.next
    }

    /// The headers every segment repeats: Ethernet, IPv4 and TCP or UDP, options included.
    pub fn header_len(&self) -> usize {
        self.header_len
    }

    /// The length of the longest segment (the first): the buffer size that always suffices.
    pub fn max_segment_len(&self) -> usize {
        self.segment_len(0)
    }

    /// Where the transport checksum of every segment is: the `csum_start`/`csum_offset` of a
    /// virtio-net header for a segment left [`SegmentChecksum::Partial`].
    pub fn partial_csum(&self) -> PartialCsum {
        PartialCsum {
            // The IPv4 header is at most 60 bytes, so this always fits.
            start: self.l4_start as u16,
            offset: match self.transport {
                Transport::Tcp => TCP_CSUM_OFFSET,
                Transport::Udp => UDP_CSUM_OFFSET,
            },
        }
    }

    /// The length of the next segment, or `None` when all have been written.
    pub fn next_len(&self) -> Option<usize> {
        (self.next < self.count).then(|| self.segment_len(self.next))
    }

    fn segment_len(&self, index: usize) -> usize {
        let payload_len = self.frame.len() - self.header_len;
        let start = index * self.gso_size;
        self.header_len + payload_len.saturating_sub(start).min(self.gso_size)
    }

    /// Writes the next segment into the start of `out` and returns its length, or `None`
    /// when all segments have been written. Fails with `OutputTooSmall` — writing nothing and
    /// staying on the same segment — if `out` is shorter than [`next_len`](Self::next_len).
    pub fn next_into(&mut self, out: &mut [u8]) -> Result<Option<usize>, GsoError> {
        let Some(len) = self.next_len() else {
            return Ok(None);
        };
        let available = out.len();
        let out = out.get_mut(..len).ok_or(GsoError::OutputTooSmall {
            needed: len,
            available,
        })?;
        let index = self.next;
        let offset = index * self.gso_size;
        let payload_len = len - self.header_len;
        let payload_start = self.header_len + offset;
        out[..self.header_len].copy_from_slice(&self.frame[..self.header_len]);
        out[self.header_len..]
            .copy_from_slice(&self.frame[payload_start..payload_start + payload_len]);

        let (l2_l3, l4) = out.split_at_mut(self.l4_start);
        let mut ip = Ipv4Packet::new_unchecked(&mut l2_l3[ETHERNET_LEN..]);
        // `len` is at most the super-frame's length, whose IPv4 part fit in 16 bits.
        ip.set_total_len((len - ETHERNET_LEN) as u16);
        ip.set_ident(ip.ident().wrapping_add(index as u16));
        ip.fill_checksum();
        let (src, dst) = (ip.src(), ip.dst());
        let l4_len = l4.len() as u16;
        match self.transport {
            Transport::Tcp => {
                let mut tcp = TcpPacket::new_unchecked(&mut *l4);
                tcp.set_seq_no(tcp.seq_no().wrapping_add(offset as u32));
                let mut flags = tcp.flags();
                if index + 1 < self.count {
                    flags.remove(TcpFlags::FIN | TcpFlags::PSH);
                }
                if index > 0 {
                    flags.remove(TcpFlags::CWR);
                }
                tcp.set_flags(flags);
                match self.checksum {
                    SegmentChecksum::Full => tcp.fill_checksum(src, dst),
                    SegmentChecksum::Partial => tcp.set_checksum(checksum::pseudo_header_ipv4(
                        src,
                        dst,
                        IpProtocol::TCP,
                        l4_len,
                    )),
                }
            }
            Transport::Udp => {
                let mut udp = UdpPacket::new_unchecked(&mut *l4);
                udp.set_len(l4_len);
                match self.checksum {
                    SegmentChecksum::Full => udp.fill_checksum(src, dst),
                    SegmentChecksum::Partial => udp.set_checksum(checksum::pseudo_header_ipv4(
                        src,
                        dst,
                        IpProtocol::UDP,
                        l4_len,
                    )),
                }
            }
        }
        self.next += 1;
        Ok(Some(len))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use core::net::Ipv4Addr;
    use std::vec::Vec;

    const SRC: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 7);
    const DST: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 9);
    const SEQ: u32 = 0xffff_f000; // wraps within a 64 KB frame
    const IDENT: u16 = 0xfffe; // wraps after two segments

    /// TCP timestamps, as every Linux segment carries them: NOP NOP TS(10 bytes).
    const TS_OPTION: [u8; 12] = [1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2];
    /// An IPv4 option (Router Alert) to prove IPv4 options are copied too.
    const RA_OPTION: [u8; 4] = [0x94, 0x04, 0x00, 0x00];

    fn payload(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i % 251) as u8).collect()
    }

    /// An Ethernet + IPv4 + TCP super-frame as a pod's TSO leaves it: the TCP checksum holds
    /// only the pseudo-header sum, the IPv4 total length covers the whole frame.
    fn tcp_frame(ip_opts: &[u8], tcp_opts: &[u8], flags: TcpFlags, data: &[u8]) -> Vec<u8> {
        let ip_hl = 20 + ip_opts.len();
        let tcp_hl = 20 + tcp_opts.len();
        let mut f = std::vec![0u8; 14 + ip_hl + tcp_hl];
        f[0..6].copy_from_slice(&[2, 0, 0, 0, 0, 9]);
        f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 7]);
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        f.extend_from_slice(data);
        let total = (f.len() - 14) as u16;
        {
            let mut ip = Ipv4Packet::new_unchecked(&mut f[14..]);
            ip.set_version_and_header_len(ip_hl);
            ip.set_total_len(total);
            ip.set_ident(IDENT);
            ip.set_dont_frag(true);
            ip.set_ttl(64);
            ip.set_protocol(IpProtocol::TCP);
            ip.set_src(SRC);
            ip.set_dst(DST);
            ip.options_mut().copy_from_slice(ip_opts);
            ip.fill_checksum();
        }
        let l4 = 14 + ip_hl;
        let l4_len = (f.len() - l4) as u16;
        let mut tcp = TcpPacket::new_unchecked(&mut f[l4..]);
        tcp.set_src_port(40000);
        tcp.set_dst_port(5201);
        tcp.set_seq_no(SEQ);
        tcp.set_ack_no(77);
        tcp.set_header_len(tcp_hl);
        tcp.set_flags(flags);
        tcp.set_window(501);
        let opts_end = tcp_hl;
        f[l4 + 20..l4 + opts_end].copy_from_slice(tcp_opts);
        let pseudo = checksum::pseudo_header_ipv4(SRC, DST, IpProtocol::TCP, l4_len);
        f[l4 + 16..l4 + 18].copy_from_slice(&pseudo.to_be_bytes());
        f
    }

    /// Runs the segmenter to the end, each segment in its own exactly-sized buffer.
    fn segments(mut s: Segmenter<'_>) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        while let Some(len) = s.next_len() {
            let mut buf = std::vec![0xEEu8; len];
            assert_eq!(s.next_into(&mut buf), Ok(Some(len)));
            out.push(buf);
        }
        assert_eq!(s.next_into(&mut [0u8; 2000]), Ok(None));
        out
    }

    /// Checks every segment against the super-frame and returns the re-assembled payload.
    fn check_tcp(frame: &[u8], segs: &[Vec<u8>], gso_size: usize, full: bool) -> Vec<u8> {
        let ip0 = Ipv4Packet::new_checked(&frame[14..]).unwrap();
        let l4 = 14 + ip0.header_len();
        let tcp0 = TcpPacket::new_checked(&frame[l4..]).unwrap();
        let hl = l4 + tcp0.header_len();
        let mut data = Vec::new();
        for (i, seg) in segs.iter().enumerate() {
            let last = i + 1 == segs.len();
            assert_eq!(&seg[..14], &frame[..14], "Ethernet header copied");
            let ip = Ipv4Packet::new_checked(&seg[14..]).unwrap();
            assert_eq!(usize::from(ip.total_len()), seg.len() - 14);
            assert!(ip.verify_checksum(), "segment {i}: IPv4 checksum");
            assert_eq!(ip.ident(), IDENT.wrapping_add(i as u16));
            assert_eq!(ip.options(), ip0.options());
            assert_eq!((ip.ttl(), ip.dont_frag()), (64, true));
            let tcp = TcpPacket::new_checked(ip.payload()).unwrap();
            assert_eq!(tcp.options(), tcp0.options(), "segment {i}: TCP options");
            assert_eq!(tcp.seq_no(), SEQ.wrapping_add((i * gso_size) as u32));
            assert_eq!((tcp.ack_no(), tcp.window()), (77, 501));
            let flags = tcp.flags();
            let orig = tcp0.flags();
            assert_eq!(
                flags.contains(TcpFlags::FIN),
                last && orig.contains(TcpFlags::FIN)
            );
            assert_eq!(
                flags.contains(TcpFlags::PSH),
                last && orig.contains(TcpFlags::PSH)
            );
            assert_eq!(
                flags.contains(TcpFlags::CWR),
                i == 0 && orig.contains(TcpFlags::CWR)
            );
            assert_eq!(
                flags & !(TcpFlags::FIN | TcpFlags::PSH | TcpFlags::CWR),
                orig & !(TcpFlags::FIN | TcpFlags::PSH | TcpFlags::CWR)
            );
            if !last {
                assert_eq!(tcp.payload().len(), gso_size, "segment {i}: full size");
            }
            assert!(!tcp.payload().is_empty() || segs.len() == 1);
            if full {
                assert!(tcp.verify_checksum(SRC, DST), "segment {i}: TCP checksum");
            } else {
                let mut done = seg.clone();
                PartialCsum {
                    start: l4 as u16,
                    offset: 16,
                }
                .complete(&mut done)
                .unwrap();
                let tcp = TcpPacket::new_checked(&done[l4..]).unwrap();
                assert!(tcp.verify_checksum(SRC, DST), "segment {i}: completed");
            }
            assert_eq!(seg.len(), hl + tcp.payload().len());
            data.extend_from_slice(tcp.payload());
        }
        data
    }

    fn all_flags() -> TcpFlags {
        TcpFlags::ACK | TcpFlags::PSH | TcpFlags::FIN | TcpFlags::CWR | TcpFlags::ECE
    }

    #[test]
    fn payload_a_multiple_of_gso_size_makes_equal_segments() {
        let data = payload(1448 * 4);
        let f = tcp_frame(&[], &TS_OPTION, all_flags(), &data);
        let s = Segmenter::tcpv4(&f, 1448, SegmentChecksum::Full).unwrap();
        assert_eq!((s.segment_count(), s.header_len()), (4, 14 + 20 + 32));
        assert_eq!(s.max_segment_len(), 14 + 20 + 32 + 1448);
        let segs = segments(s);
        assert!(segs.iter().all(|seg| seg.len() == 1514));
        assert_eq!(check_tcp(&f, &segs, 1448, true), data);
    }

    #[test]
    fn last_segment_carries_the_short_rest() {
        let data = payload(1448 * 3 + 17);
        let f = tcp_frame(&[], &TS_OPTION, all_flags(), &data);
        let segs = segments(Segmenter::tcpv4(&f, 1448, SegmentChecksum::Full).unwrap());
        assert_eq!(segs.len(), 4);
        assert_eq!(segs[3].len(), 14 + 20 + 32 + 17);
        assert_eq!(check_tcp(&f, &segs, 1448, true), data);
    }

    #[test]
    fn gso_size_larger_than_payload_makes_one_unchanged_segment() {
        let data = payload(1000);
        let f = tcp_frame(&[], &TS_OPTION, all_flags(), &data);
        let segs = segments(Segmenter::tcpv4(&f, 1448, SegmentChecksum::Full).unwrap());
        assert_eq!(segs.len(), 1);
        // The only segment is first and last: FIN, PSH and CWR all stay.
        let tcp = TcpPacket::new_checked(&segs[0][34..]).unwrap();
        assert_eq!(tcp.flags(), all_flags());
        assert_eq!(check_tcp(&f, &segs, 1448, true), data);
        // A bare ACK (no payload) is one segment too.
        let f = tcp_frame(&[], &[], TcpFlags::ACK, &[]);
        let segs = segments(Segmenter::tcpv4(&f, 1448, SegmentChecksum::Full).unwrap());
        assert_eq!(segs.len(), 1);
        assert_eq!(segs[0].len(), 54);
        assert!(check_tcp(&f, &segs, 1448, true).is_empty());
    }

    #[test]
    fn ip_and_tcp_options_are_copied_to_every_segment() {
        let data = payload(5000);
        let f = tcp_frame(&RA_OPTION, &TS_OPTION, TcpFlags::ACK, &data);
        let s = Segmenter::tcpv4(&f, 1000, SegmentChecksum::Full).unwrap();
        assert_eq!(s.header_len(), 14 + 24 + 32);
        assert_eq!(
            s.partial_csum(),
            PartialCsum {
                start: 38,
                offset: 16
            }
        );
        let segs = segments(s);
        assert_eq!(segs.len(), 5);
        assert_eq!(check_tcp(&f, &segs, 1000, true), data);
    }

    #[test]
    fn largest_super_frame_is_cut_byte_exact_with_wrapping_seq_and_ident() {
        let hl = 20 + 32;
        let data = payload(65535 - hl);
        let f = tcp_frame(&[], &TS_OPTION, all_flags(), &data);
        let segs = segments(Segmenter::tcpv4(&f, 1448, SegmentChecksum::Full).unwrap());
        assert_eq!(segs.len(), (65535 - hl).div_ceil(1448));
        assert_eq!(check_tcp(&f, &segs, 1448, true), data);
    }

    #[test]
    fn partial_mode_leaves_a_checksum_the_output_can_complete() {
        let data = payload(4000);
        let f = tcp_frame(&[], &TS_OPTION, TcpFlags::ACK, &data);
        let segs = segments(Segmenter::tcpv4(&f, 1448, SegmentChecksum::Partial).unwrap());
        // The field holds the pseudo-header sum for the segment's own length.
        for seg in &segs {
            let len = (seg.len() - 34) as u16;
            let pseudo = checksum::pseudo_header_ipv4(SRC, DST, IpProtocol::TCP, len);
            assert_eq!(&seg[50..52], &pseudo.to_be_bytes());
            assert!(!TcpPacket::new_checked(&seg[34..])
                .unwrap()
                .verify_checksum(SRC, DST));
        }
        assert_eq!(check_tcp(&f, &segs, 1448, false), data);
    }

    #[test]
    fn a_short_output_buffer_is_refused_without_losing_the_segment() {
        let data = payload(3000);
        let f = tcp_frame(&[], &[], TcpFlags::ACK, &data);
        let mut s = Segmenter::tcpv4(&f, 1448, SegmentChecksum::Full).unwrap();
        let mut small = [0u8; 1000];
        assert_eq!(
            s.next_into(&mut small),
            Err(GsoError::OutputTooSmall {
                needed: 1502,
                available: 1000
            })
        );
        assert_eq!(small, [0u8; 1000], "nothing written");
        assert_eq!(s.next_len(), Some(1502));
        // A larger buffer than needed is fine; only the segment's bytes are reported.
        let mut big = [0u8; 9000];
        assert_eq!(s.next_into(&mut big), Ok(Some(1502)));
        let rest = segments(s);
        let mut all = std::vec![big[..1502].to_vec()];
        all.extend(rest);
        assert_eq!(check_tcp(&f, &all, 1448, true), data);
    }

    #[test]
    fn ethernet_padding_after_the_ipv4_packet_is_not_payload() {
        let data = payload(3);
        let mut f = tcp_frame(&[], &[], TcpFlags::ACK, &data);
        f.extend_from_slice(&[0xAA; 3]); // to the 60-byte Ethernet minimum
        let segs = segments(Segmenter::tcpv4(&f, 1448, SegmentChecksum::Full).unwrap());
        assert_eq!(check_tcp(&f, &segs, 1448, true), data);
    }

    #[test]
    fn frames_that_cannot_be_segmented_are_refused_by_reason() {
        let f = tcp_frame(&[], &[], TcpFlags::ACK, &payload(3000));
        let full = SegmentChecksum::Full;
        assert_eq!(
            Segmenter::tcpv4(&f, 0, full).unwrap_err(),
            GsoError::GsoSizeZero
        );
        assert_eq!(
            Segmenter::tcpv4(&f[..10], 1448, full).unwrap_err(),
            GsoError::Ethernet(EthernetError::Truncated)
        );
        let mut v = f.clone();
        v[12..14].copy_from_slice(&[0x81, 0x00]);
        assert_eq!(
            Segmenter::tcpv4(&v, 1448, full).unwrap_err(),
            GsoError::NotIpv4(EtherType::VLAN)
        );
        assert_eq!(
            Segmenter::tcpv4(&f[..30], 1448, full).unwrap_err(),
            GsoError::Ipv4(Ipv4Error::Truncated)
        );
        assert_eq!(
            Segmenter::tcpv4(&f[..1000], 1448, full).unwrap_err(),
            GsoError::Ipv4(Ipv4Error::BadTotalLen)
        );
        let mut frag = f.clone();
        Ipv4Packet::new_unchecked(&mut frag[14..]).set_more_frags(true);
        assert_eq!(
            Segmenter::tcpv4(&frag, 1448, full).unwrap_err(),
            GsoError::Fragment
        );
        let mut bad = f.clone();
        bad[34 + 12] = 0x40;
        assert_eq!(
            Segmenter::tcpv4(&bad, 1448, full).unwrap_err(),
            GsoError::Tcp(TcpError::BadDataOffset)
        );
        let u = udp_frame(&payload(100));
        assert_eq!(
            Segmenter::tcpv4(&u, 1448, full).unwrap_err(),
            GsoError::WrongProtocol(IpProtocol::UDP)
        );
        let mut u = udp_frame(&payload(100));
        u[14 + 9] = 6;
        assert_eq!(
            Segmenter::udpv4(&u, 1448, full).unwrap_err(),
            GsoError::WrongProtocol(IpProtocol::TCP)
        );
        let mut short_udp = udp_frame(&payload(100));
        short_udp[38..40].copy_from_slice(&50u16.to_be_bytes());
        assert_eq!(
            Segmenter::udpv4(&short_udp, 1448, full).unwrap_err(),
            GsoError::UdpLengthMismatch {
                udp_len: 50,
                ip_payload_len: 108
            }
        );
        short_udp[38..40].copy_from_slice(&5u16.to_be_bytes());
        assert_eq!(
            Segmenter::udpv4(&short_udp, 1448, full).unwrap_err(),
            GsoError::Udp(UdpError::BadLength)
        );
        assert_eq!(
            Segmenter::udpv4(&short_udp[..40], 1448, full).unwrap_err(),
            GsoError::Ipv4(Ipv4Error::BadTotalLen)
        );
    }

    /// An Ethernet + IPv4 + UDP super-datagram as a pod's USO leaves it.
    fn udp_frame(data: &[u8]) -> Vec<u8> {
        let mut f = tcp_frame(&[], &[], TcpFlags::ACK, &[]);
        f.truncate(34);
        f.extend_from_slice(&[0x30, 0x39, 0x11, 0x51, 0, 0, 0, 0]);
        f.extend_from_slice(data);
        let total = (f.len() - 14) as u16;
        let mut ip = Ipv4Packet::new_unchecked(&mut f[14..]);
        ip.set_total_len(total);
        ip.set_protocol(IpProtocol::UDP);
        ip.fill_checksum();
        let udp_len = total - 20;
        f[38..40].copy_from_slice(&udp_len.to_be_bytes());
        let pseudo = checksum::pseudo_header_ipv4(SRC, DST, IpProtocol::UDP, udp_len);
        f[40..42].copy_from_slice(&pseudo.to_be_bytes());
        f
    }

    #[test]
    fn uso_makes_one_datagram_per_segment() {
        let data = payload(1400 * 5 + 3);
        let f = udp_frame(&data);
        for mode in [SegmentChecksum::Full, SegmentChecksum::Partial] {
            let s = Segmenter::udpv4(&f, 1400, mode).unwrap();
            assert_eq!(
                s.partial_csum(),
                PartialCsum {
                    start: 34,
                    offset: 6
                }
            );
            let segs = segments(s);
            assert_eq!(segs.len(), 6);
            let mut got = Vec::new();
            for (i, seg) in segs.iter().enumerate() {
                let mut seg = seg.clone();
                let ip = Ipv4Packet::new_checked(&seg[14..]).unwrap();
                assert!(ip.verify_checksum());
                assert_eq!(ip.ident(), IDENT.wrapping_add(i as u16));
                if mode == SegmentChecksum::Partial {
                    PartialCsum {
                        start: 34,
                        offset: 6,
                    }
                    .complete(&mut seg)
                    .unwrap();
                }
                let udp = UdpPacket::new_checked(&seg[34..]).unwrap();
                assert_eq!(usize::from(udp.len()), seg.len() - 34);
                assert_ne!(udp.checksum(), 0, "a checksum, not 'none'");
                assert!(udp.verify_checksum(SRC, DST), "datagram {i}");
                assert_eq!((udp.src_port(), udp.dst_port()), (12345, 4433));
                got.extend_from_slice(udp.payload());
            }
            assert_eq!(got, data);
        }
    }

    #[test]
    fn errors_say_what_cannot_be_segmented() {
        use std::string::ToString;
        assert_eq!(
            GsoError::NotIpv4(EtherType::VLAN).to_string(),
            "cannot segment a frame of EtherType 0x8100: only untagged IPv4 is segmented"
        );
        assert_eq!(
            GsoError::OutputTooSmall {
                needed: 1514,
                available: 1500
            }
            .to_string(),
            "segment of 1514 bytes does not fit the 1500-byte output buffer"
        );
        assert_eq!(
            GsoError::WrongProtocol(IpProtocol::UDP).to_string(),
            "cannot segment: the IPv4 payload is UDP, not the GSO kind's protocol"
        );
    }
}
