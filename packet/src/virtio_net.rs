//! The virtio-net header (virtio 1.2 section 5.1.6, Linux `struct virtio_net_hdr`) that a tap
//! opened with `IFF_VNET_HDR` puts in front of every frame: how the kernel tells the switch
//! that a frame is a TSO/GSO super-frame (`gso_type`, `gso_size`) or carries a partial
//! checksum (`NEEDS_CSUM`, `csum_start`, `csum_offset`), and how the switch tells the kernel
//! the same about the frames it writes. The dataplane's tap ports parse and emit it
//! (ARCHITECTURE.md, "Offloads").
//!
//! Two layouts exist: the legacy 10-byte header and the 12-byte one with `num_buffers`
//! (`virtio_net_hdr_mrg_rxbuf`, also `virtio_net_hdr_v1`), which a tap uses after
//! `TUNSETVNETHDRSZ` 12. A tap gives `num_buffers` no meaning: it ignores it on a write, and
//! on a read 6.18 zeroes the bytes past the legacy header (seen with `readv` into a buffer
//! filled with 0xEE), where older kernels skipped them and left the buffer's old contents —
//! so a tap port ignores [`VirtioNetRepr::num_buffers`].
//!
//! **Byte order: little-endian, always.** The virtio 1.x header is little-endian by
//! specification; a tap uses the host's order for the legacy header unless `TUNSETVNETLE` is
//! set. On the hosts podswitch runs on (x86-64, aarch64) the two are the same; a port on a
//! big-endian host must set `TUNSETVNETLE` so that this module stays right.

use core::fmt;

pub use crate::partial_csum::PartialCsum;

/// Field offsets of the virtio-net header (all multi-byte fields little-endian).
mod field {
    use crate::Field;
    pub const FLAGS: usize = 0;
    pub const GSO_TYPE: usize = 1;
    pub const HDR_LEN: Field = 2..4;
    pub const GSO_SIZE: Field = 4..6;
    pub const CSUM_START: Field = 6..8;
    pub const CSUM_OFFSET: Field = 8..10;
    /// Only in the 12-byte layout.
    pub const NUM_BUFFERS: Field = 10..12;
}

/// `flags`: the checksum from `csum_start` to the end is partial; complete it at
/// `csum_start + csum_offset` (the pseudo-header sum is already there).
pub const FLAG_NEEDS_CSUM: u8 = 1;
/// `flags`: the checksum has been validated (receive side only).
pub const FLAG_DATA_VALID: u8 = 2;
/// `flags`: `csum_start`/`csum_offset` hold receive-segment-coalescing counts instead
/// (`VIRTIO_NET_F_RSC_EXT`): coalesced segments and duplicate ACKs.
pub const FLAG_RSC_INFO: u8 = 4;
const KNOWN_FLAGS: u8 = FLAG_NEEDS_CSUM | FLAG_DATA_VALID | FLAG_RSC_INFO;

/// `gso_type`: not a GSO frame.
pub const GSO_NONE: u8 = 0;
/// `gso_type`: TCP over IPv4 (TSO4).
pub const GSO_TCPV4: u8 = 1;
/// `gso_type`: UDP fragmentation offload (UFO: one datagram, IP-fragmented).
pub const GSO_UDP: u8 = 3;
/// `gso_type`: TCP over IPv6 (TSO6).
pub const GSO_TCPV6: u8 = 4;
/// `gso_type`: UDP segmentation offload (USO: one datagram per segment, no fragments).
pub const GSO_UDP_L4: u8 = 5;
/// `gso_type` bit: the TCP super-frame carries CWR, which must go on the first segment only.
pub const GSO_ECN: u8 = 0x80;

/// Offset of the TCP checksum in the TCP header: `csum_offset` of a TCP frame.
pub const TCP_CSUM_OFFSET: u16 = 16;
/// Offset of the UDP checksum in the UDP header: `csum_offset` of a UDP frame.
pub const UDP_CSUM_OFFSET: u16 = 6;

/// Which of the two header layouts a port uses (`TUNSETVNETHDRSZ`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderFormat {
    /// `struct virtio_net_hdr`, 10 bytes: the tap's default.
    Legacy,
    /// `struct virtio_net_hdr_mrg_rxbuf` / `_v1`, 12 bytes: the legacy fields and
    /// `num_buffers`.
    Mergeable,
}

impl HeaderFormat {
    /// The header's length in bytes: 10 or 12.
    pub const fn header_len(self) -> usize {
        match self {
            HeaderFormat::Legacy => field::CSUM_OFFSET.end,
            HeaderFormat::Mergeable => field::NUM_BUFFERS.end,
        }
    }
}

/// Length of the legacy header.
pub const LEGACY_HEADER_LEN: usize = HeaderFormat::Legacy.header_len();
/// Length of the header with `num_buffers`.
pub const MERGEABLE_HEADER_LEN: usize = HeaderFormat::Mergeable.header_len();

/// The kind of segmentation a GSO frame asks for (`gso_type` without the ECN bit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GsoKind {
    /// TCP over IPv4.
    TcpV4,
    /// TCP over IPv6.
    TcpV6,
    /// UDP fragmentation (UFO).
    Udp,
    /// UDP segmentation (USO).
    UdpL4,
}

impl GsoKind {
    const fn from_raw(raw: u8) -> Option<GsoKind> {
        match raw {
            GSO_TCPV4 => Some(GsoKind::TcpV4),
            GSO_TCPV6 => Some(GsoKind::TcpV6),
            GSO_UDP => Some(GsoKind::Udp),
            GSO_UDP_L4 => Some(GsoKind::UdpL4),
            _ => None,
        }
    }

    const fn raw(self) -> u8 {
        match self {
            GsoKind::TcpV4 => GSO_TCPV4,
            GsoKind::TcpV6 => GSO_TCPV6,
            GsoKind::Udp => GSO_UDP,
            GsoKind::UdpL4 => GSO_UDP_L4,
        }
    }

    /// Whether segments of this kind are TCP.
    pub const fn is_tcp(self) -> bool {
        matches!(self, GsoKind::TcpV4 | GsoKind::TcpV6)
    }

    /// The `csum_offset` the transport protocol of this kind has.
    pub const fn csum_offset(self) -> u16 {
        if self.is_tcp() {
            TCP_CSUM_OFFSET
        } else {
            UDP_CSUM_OFFSET
        }
    }
}

/// Why a header (with the frame behind it) is not a usable virtio-net header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VirtioNetError {
    /// The buffer is shorter than the header layout in use (10 or 12 bytes).
    Truncated,
    /// A flag bit this module does not know is set (the raw flags).
    UnknownFlags(u8),
    /// `gso_type` (without the ECN bit) is not one of NONE, TCPV4, UDP, TCPV6, UDP_L4.
    UnknownGsoType(u8),
    /// The ECN bit is set on a frame that is not TCP GSO.
    EcnWithoutTcpGso,
    /// A GSO frame with `gso_size` 0.
    GsoSizeZero,
    /// A GSO frame without `NEEDS_CSUM`: the switch needs `csum_start` to find the transport
    /// header, and a super-frame's checksum is always left to the segmenter.
    GsoWithoutPartialCsum,
    /// `csum_offset` does not point at the checksum of the GSO kind's transport header
    /// (16 for TCP, 6 for UDP).
    CsumOffsetMismatch {
        /// The GSO kind of the frame.
        kind: GsoKind,
        /// The `csum_offset` the header carries.
        csum_offset: u16,
    },
    /// The two checksum bytes at `csum_start + csum_offset` are not inside the frame.
    CsumOutOfFrame {
        /// The `csum_start` the header carries.
        csum_start: u16,
        /// The `csum_offset` the header carries.
        csum_offset: u16,
        /// The length of the frame behind the header.
        frame_len: usize,
    },
    /// `hdr_len` is longer than the frame behind the header.
    HdrLenPastFrame {
        /// The `hdr_len` the header carries.
        hdr_len: u16,
        /// The length of the frame behind the header.
        frame_len: usize,
    },
    /// `RSC_INFO` together with `NEEDS_CSUM`: both claim `csum_start` and `csum_offset`.
    RscWithPartialCsum,
    /// `RSC_INFO` on a frame that is not TCP GSO: only coalesced TCP carries RSC counts.
    RscWithoutTcpGso,
}

impl fmt::Display for VirtioNetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            VirtioNetError::Truncated => {
                f.write_str("buffer shorter than the virtio-net header (10 or 12 bytes)")
            }
            VirtioNetError::UnknownFlags(flags) => write!(
                f,
                "virtio-net header flags {flags:#04x} has bits other than NEEDS_CSUM, \
                 DATA_VALID and RSC_INFO"
            ),
            VirtioNetError::UnknownGsoType(t) => write!(
                f,
                "virtio-net gso_type {t} is not NONE (0), TCPV4 (1), UDP (3), TCPV6 (4) \
                 or UDP_L4 (5)"
            ),
            VirtioNetError::EcnWithoutTcpGso => {
                f.write_str("virtio-net gso_type has the ECN bit on a frame that is not TCP GSO")
            }
            VirtioNetError::GsoSizeZero => f.write_str("virtio-net GSO frame with gso_size 0"),
            VirtioNetError::GsoWithoutPartialCsum => f.write_str(
                "virtio-net GSO frame without NEEDS_CSUM: csum_start must locate the \
                 transport header",
            ),
            VirtioNetError::CsumOffsetMismatch { kind, csum_offset } => write!(
                f,
                "virtio-net csum_offset {csum_offset} is not the checksum of a {kind:?} \
                 segment (expected {})",
                kind.csum_offset()
            ),
            VirtioNetError::CsumOutOfFrame {
                csum_start,
                csum_offset,
                frame_len,
            } => write!(
                f,
                "virtio-net checksum at csum_start {csum_start} + csum_offset {csum_offset} \
                 does not fit in the {frame_len}-byte frame"
            ),
            VirtioNetError::HdrLenPastFrame { hdr_len, frame_len } => write!(
                f,
                "virtio-net hdr_len {hdr_len} is longer than the {frame_len}-byte frame"
            ),
            VirtioNetError::RscWithPartialCsum => f.write_str(
                "virtio-net header has both RSC_INFO and NEEDS_CSUM, which share csum_start \
                 and csum_offset",
            ),
            VirtioNetError::RscWithoutTcpGso => {
                f.write_str("virtio-net header has RSC_INFO on a frame that is not TCP GSO")
            }
        }
    }
}

impl core::error::Error for VirtioNetError {}

/// A zero-copy view of a virtio-net header followed by its Ethernet frame: exactly what one
/// read from (or write to) a tap with `IFF_VNET_HDR` holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VirtioNetPacket<T: AsRef<[u8]>> {
    buffer: T,
    format: HeaderFormat,
}

impl<T: AsRef<[u8]>> VirtioNetPacket<T> {
    /// Wraps `buffer` without checking it; accessors panic if it is shorter than
    /// `format.header_len()`.
    pub const fn new_unchecked(buffer: T, format: HeaderFormat) -> VirtioNetPacket<T> {
        VirtioNetPacket { buffer, format }
    }

    /// Wraps `buffer` after checking that it holds the header. The fields are not validated
    /// against the frame: [`VirtioNetRepr::parse`] does that.
    pub fn new_checked(
        buffer: T,
        format: HeaderFormat,
    ) -> Result<VirtioNetPacket<T>, VirtioNetError> {
        if buffer.as_ref().len() < format.header_len() {
            return Err(VirtioNetError::Truncated);
        }
        Ok(VirtioNetPacket { buffer, format })
    }

    /// Returns the underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The header layout.
    pub const fn format(&self) -> HeaderFormat {
        self.format
    }

    /// The raw flags.
    #[inline]
    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[field::FLAGS]
    }

    /// The raw `gso_type`, ECN bit included.
    #[inline]
    pub fn gso_type(&self) -> u8 {
        self.buffer.as_ref()[field::GSO_TYPE]
    }

    /// `hdr_len`: the length of the headers (Ethernet to transport), a hint.
    #[inline]
    pub fn hdr_len(&self) -> u16 {
        read_le16(self.buffer.as_ref(), field::HDR_LEN)
    }

    /// `gso_size`: the payload bytes per segment (the MSS for TCP).
    #[inline]
    pub fn gso_size(&self) -> u16 {
        read_le16(self.buffer.as_ref(), field::GSO_SIZE)
    }

    /// `csum_start`: where the checksummed region starts, from the start of the frame.
    #[inline]
    pub fn csum_start(&self) -> u16 {
        read_le16(self.buffer.as_ref(), field::CSUM_START)
    }

    /// `csum_offset`: where, from `csum_start`, the checksum goes.
    #[inline]
    pub fn csum_offset(&self) -> u16 {
        read_le16(self.buffer.as_ref(), field::CSUM_OFFSET)
    }

    /// `num_buffers` in the 12-byte layout, `None` in the legacy one.
    #[inline]
    pub fn num_buffers(&self) -> Option<u16> {
        match self.format {
            HeaderFormat::Legacy => None,
            HeaderFormat::Mergeable => Some(read_le16(self.buffer.as_ref(), field::NUM_BUFFERS)),
        }
    }

    /// The Ethernet frame behind the header.
    #[inline]
    pub fn frame(&self) -> &[u8] {
        let data = self.buffer.as_ref();
        &data[crate::clamp(self.format.header_len(), data.len(), data.len())]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> VirtioNetPacket<T> {
    /// Sets the raw flags.
    #[inline]
    pub fn set_flags(&mut self, value: u8) {
        self.buffer.as_mut()[field::FLAGS] = value;
    }

    /// Sets the raw `gso_type`.
    #[inline]
    pub fn set_gso_type(&mut self, value: u8) {
        self.buffer.as_mut()[field::GSO_TYPE] = value;
    }

    /// Sets `hdr_len`.
    #[inline]
    pub fn set_hdr_len(&mut self, value: u16) {
        write_le16(self.buffer.as_mut(), field::HDR_LEN, value);
    }

    /// Sets `gso_size`.
    #[inline]
    pub fn set_gso_size(&mut self, value: u16) {
        write_le16(self.buffer.as_mut(), field::GSO_SIZE, value);
    }

    /// Sets `csum_start`.
    #[inline]
    pub fn set_csum_start(&mut self, value: u16) {
        write_le16(self.buffer.as_mut(), field::CSUM_START, value);
    }

    /// Sets `csum_offset`.
    #[inline]
    pub fn set_csum_offset(&mut self, value: u16) {
        write_le16(self.buffer.as_mut(), field::CSUM_OFFSET, value);
    }

    /// Sets `num_buffers`; does nothing in the legacy layout, which has no such field.
    #[inline]
    pub fn set_num_buffers(&mut self, value: u16) {
        if self.format == HeaderFormat::Mergeable {
            write_le16(self.buffer.as_mut(), field::NUM_BUFFERS, value);
        }
    }

    /// The frame behind the header, mutably.
    #[inline]
    pub fn frame_mut(&mut self) -> &mut [u8] {
        let start = self.format.header_len();
        let data = self.buffer.as_mut();
        let len = data.len();
        &mut data[crate::clamp(start, len, len)]
    }
}

/// Receive-segment-coalescing counts (`RSC_INFO`), carried in `csum_start`/`csum_offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RscInfo {
    /// How many TCP segments were coalesced into this frame.
    pub coalesced_segments: u16,
    /// How many duplicate ACKs were coalesced.
    pub dup_acks: u16,
}

/// What a GSO frame asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gso {
    /// Which protocol to segment.
    pub kind: GsoKind,
    /// Payload bytes per segment (the MSS for TCP); never 0.
    pub size: u16,
    /// The ECN bit: CWR is on the super-frame and belongs on the first segment only.
    pub ecn: bool,
}

/// A virtio-net header in parsed, validated form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct VirtioNetRepr {
    /// `NEEDS_CSUM` and where: `None` when the checksum is complete (or absent).
    pub partial_csum: Option<PartialCsum>,
    /// `DATA_VALID`: the checksum was verified by whoever wrote the header.
    pub data_valid: bool,
    /// `RSC_INFO` and its counts.
    pub rsc: Option<RscInfo>,
    /// The segmentation asked for; `None` for an ordinary frame.
    pub gso: Option<Gso>,
    /// `hdr_len`, a hint: the length of the headers (a tap wrote 42 for a UDP/IPv4 frame on
    /// 6.18; older kernels wrote the skb's linear length), which the kernel fixes up itself
    /// when one it is given is short. Never trusted to find a header; at most the frame's
    /// length.
    pub hdr_len: u16,
    /// `num_buffers` of the 12-byte layout; 0 in the legacy one, and not written by
    /// [`emit`](Self::emit) there.
    pub num_buffers: u16,
}

impl VirtioNetRepr {
    /// Reads and validates the header of `packet` against the frame behind it.
    ///
    /// `gso_size` and `csum_start`/`csum_offset` are ignored where the flags and `gso_type`
    /// say they mean nothing (no GSO; neither `NEEDS_CSUM` nor `RSC_INFO`), as the kernel
    /// ignores them; [`emit`](Self::emit) writes zeros there.
    pub fn parse<T: AsRef<[u8]>>(
        packet: &VirtioNetPacket<T>,
    ) -> Result<VirtioNetRepr, VirtioNetError> {
        let packet = VirtioNetPacket::new_checked(packet.buffer.as_ref(), packet.format)?;
        let frame_len = packet.frame().len();
        let flags = packet.flags();
        if flags & !KNOWN_FLAGS != 0 {
            return Err(VirtioNetError::UnknownFlags(flags));
        }
        let raw_gso = packet.gso_type();
        let ecn = raw_gso & GSO_ECN != 0;
        let gso = match raw_gso & !GSO_ECN {
            GSO_NONE => None,
            kind => {
                let kind =
                    GsoKind::from_raw(kind).ok_or(VirtioNetError::UnknownGsoType(raw_gso))?;
                let size = packet.gso_size();
                if size == 0 {
                    return Err(VirtioNetError::GsoSizeZero);
                }
                Some(Gso { kind, size, ecn })
            }
        };
        if ecn && !gso.is_some_and(|g| g.kind.is_tcp()) {
            return Err(VirtioNetError::EcnWithoutTcpGso);
        }
        let needs_csum = flags & FLAG_NEEDS_CSUM != 0;
        let rsc_info = flags & FLAG_RSC_INFO != 0;
        let partial_csum = if needs_csum {
            if rsc_info {
                return Err(VirtioNetError::RscWithPartialCsum);
            }
            let csum = PartialCsum {
                start: packet.csum_start(),
                offset: packet.csum_offset(),
            };
            csum.field(frame_len)?;
            Some(csum)
        } else {
            None
        };
        if let Some(g) = gso {
            match partial_csum {
                None if !rsc_info => return Err(VirtioNetError::GsoWithoutPartialCsum),
                Some(c) if c.offset != g.kind.csum_offset() => {
                    return Err(VirtioNetError::CsumOffsetMismatch {
                        kind: g.kind,
                        csum_offset: c.offset,
                    })
                }
                _ => {}
            }
        }
        let rsc = if rsc_info {
            if !gso.is_some_and(|g| g.kind.is_tcp()) {
                return Err(VirtioNetError::RscWithoutTcpGso);
            }
            Some(RscInfo {
                coalesced_segments: packet.csum_start(),
                dup_acks: packet.csum_offset(),
            })
        } else {
            None
        };
        let hdr_len = packet.hdr_len();
        if usize::from(hdr_len) > frame_len {
            return Err(VirtioNetError::HdrLenPastFrame { hdr_len, frame_len });
        }
        Ok(VirtioNetRepr {
            partial_csum,
            data_valid: flags & FLAG_DATA_VALID != 0,
            rsc,
            gso,
            hdr_len,
            num_buffers: packet.num_buffers().unwrap_or(0),
        })
    }

    /// Writes the header into the start of `buf` in `format` (10 or 12 bytes); the frame
    /// behind it is the caller's. Fails with `Truncated` if `buf` is shorter than the header,
    /// and with `RscWithPartialCsum` if both would claim the checksum fields.
    pub fn emit(&self, buf: &mut [u8], format: HeaderFormat) -> Result<(), VirtioNetError> {
        let (csum_start, csum_offset) = match (self.partial_csum, self.rsc) {
            (Some(_), Some(_)) => return Err(VirtioNetError::RscWithPartialCsum),
            (Some(c), None) => (c.start, c.offset),
            (None, Some(r)) => (r.coalesced_segments, r.dup_acks),
            (None, None) => (0, 0),
        };
        let header = buf
            .get_mut(..format.header_len())
            .ok_or(VirtioNetError::Truncated)?;
        let mut packet = VirtioNetPacket::new_unchecked(header, format);
        let mut flags = 0;
        if self.partial_csum.is_some() {
            flags |= FLAG_NEEDS_CSUM;
        }
        if self.data_valid {
            flags |= FLAG_DATA_VALID;
        }
        if self.rsc.is_some() {
            flags |= FLAG_RSC_INFO;
        }
        packet.set_flags(flags);
        let (gso_type, gso_size) = match self.gso {
            None => (GSO_NONE, 0),
            Some(g) => (g.kind.raw() | if g.ecn { GSO_ECN } else { 0 }, g.size),
        };
        packet.set_gso_type(gso_type);
        packet.set_hdr_len(self.hdr_len);
        packet.set_gso_size(gso_size);
        packet.set_csum_start(csum_start);
        packet.set_csum_offset(csum_offset);
        packet.set_num_buffers(self.num_buffers);
        Ok(())
    }
}

#[inline]
fn read_le16(data: &[u8], field: crate::Field) -> u16 {
    u16::from_le_bytes([data[field.start], data[field.start + 1]])
}

#[inline]
fn write_le16(data: &mut [u8], field: crate::Field, value: u16) {
    data[field].copy_from_slice(&value.to_le_bytes());
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::string::ToString;
    use std::vec::Vec;

    /// The header a tap puts before a TSO4 super-frame from a pod: NEEDS_CSUM, TCPV4,
    /// hdr_len 66 (14 + 20 + 32), gso_size 1448, csum_start 34, csum_offset 16.
    const TSO4_HEADER: [u8; 10] = [0x01, 0x01, 0x42, 0x00, 0xa8, 0x05, 0x22, 0x00, 0x10, 0x00];

    /// What a tap (Linux 6.18, `TUNSETOFFLOAD` with USO4) handed its reader for a
    /// 2500-byte `UDP_SEGMENT` send with segments of 1000: NEEDS_CSUM, UDP_L4, hdr_len 42,
    /// gso_size 1000, csum_start 34, csum_offset 6 (packet/tests/it/kernel_gso/).
    const KERNEL_USO4_HEADER: [u8; 10] =
        [0x01, 0x05, 0x2a, 0x00, 0xe8, 0x03, 0x22, 0x00, 0x06, 0x00];

    #[test]
    fn header_a_tap_wrote_for_uso_parses() {
        let buf = with_frame(&KERNEL_USO4_HEADER, 2542);
        let p = VirtioNetPacket::new_checked(&buf[..], HeaderFormat::Legacy).unwrap();
        let repr = VirtioNetRepr::parse(&p).unwrap();
        assert_eq!(
            repr,
            VirtioNetRepr {
                partial_csum: Some(PartialCsum {
                    start: 34,
                    offset: 6
                }),
                gso: Some(Gso {
                    kind: GsoKind::UdpL4,
                    size: 1000,
                    ecn: false
                }),
                hdr_len: 42,
                ..VirtioNetRepr::default()
            }
        );
        let mut out = [0u8; 10];
        repr.emit(&mut out, HeaderFormat::Legacy).unwrap();
        assert_eq!(out, KERNEL_USO4_HEADER);
    }

    fn tso4_repr() -> VirtioNetRepr {
        VirtioNetRepr {
            partial_csum: Some(PartialCsum {
                start: 34,
                offset: 16,
            }),
            data_valid: false,
            rsc: None,
            gso: Some(Gso {
                kind: GsoKind::TcpV4,
                size: 1448,
                ecn: false,
            }),
            hdr_len: 66,
            num_buffers: 0,
        }
    }

    /// `TSO4_HEADER` followed by a zeroed frame of `frame_len` bytes.
    fn with_frame(header: &[u8], frame_len: usize) -> Vec<u8> {
        let mut buf = header.to_vec();
        buf.resize(header.len() + frame_len, 0);
        buf
    }

    #[test]
    fn tso4_header_fields_are_read_little_endian() {
        let buf = with_frame(&TSO4_HEADER, 1514);
        let p = VirtioNetPacket::new_checked(&buf[..], HeaderFormat::Legacy).unwrap();
        assert_eq!((p.flags(), p.gso_type()), (FLAG_NEEDS_CSUM, GSO_TCPV4));
        assert_eq!((p.hdr_len(), p.gso_size()), (66, 1448));
        assert_eq!((p.csum_start(), p.csum_offset()), (34, 16));
        assert_eq!(p.num_buffers(), None);
        assert_eq!(p.frame().len(), 1514);
        assert_eq!(VirtioNetRepr::parse(&p), Ok(tso4_repr()));
    }

    #[test]
    fn emit_writes_the_literal_bytes_in_both_layouts() {
        let mut out = [0xEEu8; 12];
        tso4_repr().emit(&mut out, HeaderFormat::Legacy).unwrap();
        assert_eq!(&out[..10], &TSO4_HEADER);
        assert_eq!(
            &out[10..],
            &[0xEE, 0xEE],
            "legacy emit stays inside 10 bytes"
        );

        let repr = VirtioNetRepr {
            num_buffers: 0x0201,
            ..tso4_repr()
        };
        repr.emit(&mut out, HeaderFormat::Mergeable).unwrap();
        assert_eq!(&out[..10], &TSO4_HEADER);
        assert_eq!(&out[10..], &[0x01, 0x02]);
        let buf = with_frame(&out, 100);
        let p = VirtioNetPacket::new_checked(&buf[..], HeaderFormat::Mergeable).unwrap();
        assert_eq!(p.num_buffers(), Some(0x0201));
        assert_eq!(p.frame().len(), 100);
        assert_eq!(VirtioNetRepr::parse(&p), Ok(repr));
    }

    #[test]
    fn plain_frame_header_is_all_zero_and_ignores_stale_fields() {
        let mut out = [0xEEu8; 10];
        VirtioNetRepr::default()
            .emit(&mut out, HeaderFormat::Legacy)
            .unwrap();
        assert_eq!(out, [0; 10]);
        // gso_size and csum fields mean nothing without GSO and NEEDS_CSUM.
        let stale = [0x00, 0x00, 0x00, 0x00, 0xa8, 0x05, 0xff, 0xff, 0xff, 0xff];
        let buf = with_frame(&stale, 60);
        let p = VirtioNetPacket::new_checked(&buf[..], HeaderFormat::Legacy).unwrap();
        assert_eq!(VirtioNetRepr::parse(&p), Ok(VirtioNetRepr::default()));
    }

    #[test]
    fn every_gso_type_and_flag_round_trips() {
        for (kind, csum_offset) in [
            (GsoKind::TcpV4, 16),
            (GsoKind::TcpV6, 16),
            (GsoKind::Udp, 6),
            (GsoKind::UdpL4, 6),
        ] {
            for ecn in [false, kind.is_tcp()] {
                let repr = VirtioNetRepr {
                    partial_csum: Some(PartialCsum {
                        start: 54,
                        offset: csum_offset,
                    }),
                    data_valid: true,
                    gso: Some(Gso {
                        kind,
                        size: 1400,
                        ecn,
                    }),
                    hdr_len: 62,
                    ..VirtioNetRepr::default()
                };
                let mut buf = [0u8; 10 + 200];
                repr.emit(&mut buf, HeaderFormat::Legacy).unwrap();
                assert_eq!(buf[0], FLAG_NEEDS_CSUM | FLAG_DATA_VALID);
                assert_eq!(buf[1] & GSO_ECN != 0, ecn);
                let p = VirtioNetPacket::new_checked(&buf[..], HeaderFormat::Legacy).unwrap();
                assert_eq!(VirtioNetRepr::parse(&p), Ok(repr), "{kind:?} ecn {ecn}");
            }
        }
        let rsc = VirtioNetRepr {
            rsc: Some(RscInfo {
                coalesced_segments: 7,
                dup_acks: 1,
            }),
            data_valid: true,
            gso: Some(Gso {
                kind: GsoKind::TcpV4,
                size: 1448,
                ecn: false,
            }),
            ..VirtioNetRepr::default()
        };
        let mut buf = [0u8; 10 + 100];
        rsc.emit(&mut buf, HeaderFormat::Legacy).unwrap();
        assert_eq!(&buf[..10], &[0x06, 0x01, 0, 0, 0xa8, 0x05, 7, 0, 1, 0]);
        let p = VirtioNetPacket::new_checked(&buf[..], HeaderFormat::Legacy).unwrap();
        assert_eq!(VirtioNetRepr::parse(&p), Ok(rsc));
    }

    fn parse_err(header: [u8; 10], frame_len: usize) -> VirtioNetError {
        let buf = with_frame(&header, frame_len);
        let p = VirtioNetPacket::new_checked(&buf[..], HeaderFormat::Legacy).unwrap();
        VirtioNetRepr::parse(&p).unwrap_err()
    }

    #[test]
    fn every_error_variant_is_reported() {
        assert_eq!(
            VirtioNetPacket::new_checked(&TSO4_HEADER[..9], HeaderFormat::Legacy),
            Err(VirtioNetError::Truncated)
        );
        assert_eq!(
            VirtioNetPacket::new_checked(&TSO4_HEADER[..], HeaderFormat::Mergeable),
            Err(VirtioNetError::Truncated)
        );
        assert_eq!(
            VirtioNetRepr::parse(&VirtioNetPacket::new_unchecked(
                &TSO4_HEADER[..4],
                HeaderFormat::Legacy
            )),
            Err(VirtioNetError::Truncated)
        );
        let mut h = TSO4_HEADER;
        h[0] = 0x09;
        assert_eq!(parse_err(h, 1514), VirtioNetError::UnknownFlags(0x09));
        for bad in [2u8, 6, 0x7f, 0x82] {
            let mut h = TSO4_HEADER;
            h[1] = bad;
            assert_eq!(parse_err(h, 1514), VirtioNetError::UnknownGsoType(bad));
        }
        let mut h = TSO4_HEADER;
        h[1] = GSO_UDP_L4 | GSO_ECN;
        h[8] = 6;
        assert_eq!(parse_err(h, 1514), VirtioNetError::EcnWithoutTcpGso);
        let mut h = [0u8; 10];
        h[1] = GSO_ECN;
        assert_eq!(parse_err(h, 1514), VirtioNetError::EcnWithoutTcpGso);
        let mut h = TSO4_HEADER;
        h[4..6].copy_from_slice(&[0, 0]);
        assert_eq!(parse_err(h, 1514), VirtioNetError::GsoSizeZero);
        let mut h = TSO4_HEADER;
        h[0] = 0;
        assert_eq!(parse_err(h, 1514), VirtioNetError::GsoWithoutPartialCsum);
        let mut h = TSO4_HEADER;
        h[8] = 6;
        assert_eq!(
            parse_err(h, 1514),
            VirtioNetError::CsumOffsetMismatch {
                kind: GsoKind::TcpV4,
                csum_offset: 6
            }
        );
        // The checksum's two bytes must fit: 34 + 16 + 2 = 52.
        let buf = with_frame(&TSO4_HEADER, 52);
        let p = VirtioNetPacket::new_checked(&buf[..], HeaderFormat::Legacy).unwrap();
        assert!(VirtioNetRepr::parse(&p).is_err_and(|e| e
            == VirtioNetError::HdrLenPastFrame {
                hdr_len: 66,
                frame_len: 52
            }));
        assert_eq!(
            parse_err(TSO4_HEADER, 51),
            VirtioNetError::CsumOutOfFrame {
                csum_start: 34,
                csum_offset: 16,
                frame_len: 51
            }
        );
        let mut h = TSO4_HEADER;
        h[6..10].copy_from_slice(&[0xff, 0xff, 0x10, 0x00]);
        assert_eq!(
            parse_err(h, 1514),
            VirtioNetError::CsumOutOfFrame {
                csum_start: 0xffff,
                csum_offset: 16,
                frame_len: 1514
            }
        );
        let mut h = TSO4_HEADER;
        h[0] = FLAG_NEEDS_CSUM | FLAG_RSC_INFO;
        assert_eq!(parse_err(h, 1514), VirtioNetError::RscWithPartialCsum);
        let h = [FLAG_RSC_INFO, 0, 0, 0, 0, 0, 1, 0, 0, 0];
        assert_eq!(parse_err(h, 1514), VirtioNetError::RscWithoutTcpGso);
        let both = VirtioNetRepr {
            rsc: Some(RscInfo {
                coalesced_segments: 1,
                dup_acks: 0,
            }),
            ..tso4_repr()
        };
        assert_eq!(
            both.emit(&mut [0u8; 10], HeaderFormat::Legacy),
            Err(VirtioNetError::RscWithPartialCsum)
        );
        assert_eq!(
            tso4_repr().emit(&mut [0u8; 11], HeaderFormat::Mergeable),
            Err(VirtioNetError::Truncated)
        );
    }

    #[test]
    fn errors_say_which_field_is_wrong() {
        let e = VirtioNetError::CsumOutOfFrame {
            csum_start: 34,
            csum_offset: 16,
            frame_len: 51,
        };
        assert_eq!(
            e.to_string(),
            "virtio-net checksum at csum_start 34 + csum_offset 16 does not fit in the \
             51-byte frame"
        );
        assert_eq!(
            VirtioNetError::CsumOffsetMismatch {
                kind: GsoKind::UdpL4,
                csum_offset: 16
            }
            .to_string(),
            "virtio-net csum_offset 16 is not the checksum of a UdpL4 segment (expected 6)"
        );
        assert!(VirtioNetError::UnknownGsoType(2)
            .to_string()
            .contains("gso_type 2"));
    }

    #[test]
    fn setters_round_trip_and_legacy_has_no_num_buffers() {
        let mut buf = [0u8; 12 + 4];
        let mut p = VirtioNetPacket::new_checked(&mut buf[..], HeaderFormat::Mergeable).unwrap();
        p.set_flags(FLAG_DATA_VALID);
        p.set_gso_type(GSO_TCPV6);
        p.set_hdr_len(0x0102);
        p.set_gso_size(0x0304);
        p.set_csum_start(0x0506);
        p.set_csum_offset(0x0708);
        p.set_num_buffers(0x090a);
        p.frame_mut().copy_from_slice(b"abcd");
        assert_eq!(p.format(), HeaderFormat::Mergeable);
        assert_eq!(
            buf,
            [2, 4, 2, 1, 4, 3, 6, 5, 8, 7, 0x0a, 0x09, b'a', b'b', b'c', b'd']
        );
        let mut legacy = [0u8; 12];
        let mut p = VirtioNetPacket::new_checked(&mut legacy[..], HeaderFormat::Legacy).unwrap();
        p.set_num_buffers(0xffff);
        assert_eq!(p.frame(), &[0, 0]);
        assert_eq!(p.into_inner(), &[0u8; 12]);
    }
}
