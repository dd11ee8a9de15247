//! TCP segments (RFC 793 / RFC 9293): ports, sequence numbers and flags for the flow key and
//! conntrack state, and the checksum over the IPv4 pseudo-header that NAT must keep right.
//! Options are exposed as bytes only; the switch does not interpret them.

use core::fmt;
use core::net::Ipv4Addr;
use core::ops::{BitAnd, BitOr, BitOrAssign, Not};

use crate::checksum;
use crate::ipv4::IpProtocol;

/// Field offsets of the TCP header.
mod field {
    use crate::Field;
    pub const SRC_PORT: Field = 0..2;
    pub const DST_PORT: Field = 2..4;
    pub const SEQ_NO: Field = 4..8;
    pub const ACK_NO: Field = 8..12;
    /// Data offset in the high nibble; the low nibble is reserved (and the old NS bit).
    pub const DATA_OFFSET: usize = 12;
    pub const FLAGS: usize = 13;
    pub const WINDOW: Field = 14..16;
    pub const CHECKSUM: Field = 16..18;
    pub const URGENT: Field = 18..20;
}

/// Length of a header without options.
pub const MIN_HEADER_LEN: usize = field::URGENT.end;

/// The eight TCP control bits (byte 13 of the header), as a set.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TcpFlags(pub u8);

impl TcpFlags {
    /// No more data from sender.
    pub const FIN: TcpFlags = TcpFlags(0x01);
    /// Synchronize sequence numbers.
    pub const SYN: TcpFlags = TcpFlags(0x02);
    /// Reset the connection.
    pub const RST: TcpFlags = TcpFlags(0x04);
    /// Push.
    pub const PSH: TcpFlags = TcpFlags(0x08);
    /// Acknowledgment field significant.
    pub const ACK: TcpFlags = TcpFlags(0x10);
    /// Urgent pointer field significant.
    pub const URG: TcpFlags = TcpFlags(0x20);
    /// ECN echo (RFC 3168).
    pub const ECE: TcpFlags = TcpFlags(0x40);
    /// Congestion window reduced (RFC 3168).
    pub const CWR: TcpFlags = TcpFlags(0x80);
    /// The empty set.
    pub const NONE: TcpFlags = TcpFlags(0);

    const NAMES: [(TcpFlags, &'static str); 8] = [
        (TcpFlags::SYN, "SYN"),
        (TcpFlags::ACK, "ACK"),
        (TcpFlags::FIN, "FIN"),
        (TcpFlags::RST, "RST"),
        (TcpFlags::PSH, "PSH"),
        (TcpFlags::URG, "URG"),
        (TcpFlags::ECE, "ECE"),
        (TcpFlags::CWR, "CWR"),
    ];

    /// The raw bits.
    pub const fn bits(self) -> u8 {
        self.0
    }

    /// Whether every flag in `other` is set.
    pub const fn contains(self, other: TcpFlags) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether any flag in `other` is set.
    pub const fn intersects(self, other: TcpFlags) -> bool {
        self.0 & other.0 != 0
    }

    /// Whether no flag is set.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Sets the flags in `other`.
    pub fn insert(&mut self, other: TcpFlags) {
        self.0 |= other.0;
    }

    /// Clears the flags in `other`.
    pub fn remove(&mut self, other: TcpFlags) {
        self.0 &= !other.0;
    }
}

impl BitOr for TcpFlags {
    type Output = TcpFlags;
    fn bitor(self, rhs: TcpFlags) -> TcpFlags {
        TcpFlags(self.0 | rhs.0)
    }
}

impl BitOrAssign for TcpFlags {
    fn bitor_assign(&mut self, rhs: TcpFlags) {
        self.0 |= rhs.0;
    }
}

impl BitAnd for TcpFlags {
    type Output = TcpFlags;
    fn bitand(self, rhs: TcpFlags) -> TcpFlags {
        TcpFlags(self.0 & rhs.0)
    }
}

impl Not for TcpFlags {
    type Output = TcpFlags;
    fn not(self) -> TcpFlags {
        TcpFlags(!self.0)
    }
}

impl fmt::Display for TcpFlags {
    /// `SYN|ACK`, or `-` for none.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("-");
        }
        let mut first = true;
        for (flag, name) in TcpFlags::NAMES {
            if self.contains(flag) {
                if !first {
                    f.write_str("|")?;
                }
                f.write_str(name)?;
                first = false;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for TcpFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TcpFlags({self})")
    }
}

/// Why a buffer is not a TCP segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcpError {
    /// Shorter than the 20-byte minimum header.
    Truncated,
    /// Data offset below 5, or the header it announces runs past the buffer.
    BadDataOffset,
}

impl fmt::Display for TcpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TcpError::Truncated => "TCP segment shorter than the 20-byte minimum header",
            TcpError::BadDataOffset => {
                "TCP data offset below 20 bytes or past the end of the segment"
            }
        })
    }
}

impl core::error::Error for TcpError {}

/// A zero-copy view of a TCP segment. TCP has no length field: the segment is the whole
/// buffer, so pass exactly the IPv4 payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> TcpPacket<T> {
    /// Wraps `buffer` without checking it; accessors panic if it is shorter than 20 bytes.
    pub const fn new_unchecked(buffer: T) -> TcpPacket<T> {
        TcpPacket { buffer }
    }

    /// Wraps `buffer` after checking the header and its data offset against it.
    pub fn new_checked(buffer: T) -> Result<TcpPacket<T>, TcpError> {
        let data = buffer.as_ref();
        if data.len() < MIN_HEADER_LEN {
            return Err(TcpError::Truncated);
        }
        let header_len = TcpPacket::new_unchecked(data).header_len();
        if header_len < MIN_HEADER_LEN || header_len > data.len() {
            return Err(TcpError::BadDataOffset);
        }
        Ok(TcpPacket { buffer })
    }

    /// Returns the underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The source port.
    #[inline]
    pub fn src_port(&self) -> u16 {
        crate::read_u16(self.buffer.as_ref(), field::SRC_PORT)
    }

    /// The destination port.
    #[inline]
    pub fn dst_port(&self) -> u16 {
        crate::read_u16(self.buffer.as_ref(), field::DST_PORT)
    }

    /// The sequence number.
    #[inline]
    pub fn seq_no(&self) -> u32 {
        crate::read_u32(self.buffer.as_ref(), field::SEQ_NO)
    }

    /// The acknowledgment number.
    #[inline]
    pub fn ack_no(&self) -> u32 {
        crate::read_u32(self.buffer.as_ref(), field::ACK_NO)
    }

    /// The header length in octets (data offset * 4).
    #[inline]
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::DATA_OFFSET] >> 4) * 4
    }

    /// The control bits.
    #[inline]
    pub fn flags(&self) -> TcpFlags {
        TcpFlags(self.buffer.as_ref()[field::FLAGS])
    }

    /// The receive window.
    #[inline]
    pub fn window(&self) -> u16 {
        crate::read_u16(self.buffer.as_ref(), field::WINDOW)
    }

    /// The checksum field.
    #[inline]
    pub fn checksum(&self) -> u16 {
        crate::read_u16(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// The urgent pointer.
    #[inline]
    pub fn urgent(&self) -> u16 {
        crate::read_u16(self.buffer.as_ref(), field::URGENT)
    }

    /// The options: bytes 20 up to the header length.
    #[inline]
    pub fn options(&self) -> &[u8] {
        let data = self.buffer.as_ref();
        &data[crate::clamp(MIN_HEADER_LEN, self.header_len(), data.len())]
    }

    /// The payload: from the header length to the end of the buffer.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        let data = self.buffer.as_ref();
        &data[crate::clamp(self.header_len(), data.len(), data.len())]
    }

    /// The checksum this segment should carry between `src` and `dst`, over the pseudo-header
    /// and the whole buffer, taking the current checksum field as zero.
    pub fn compute_checksum(&self, src: Ipv4Addr, dst: Ipv4Addr) -> u16 {
        !checksum::combine(&[self.sum_with_pseudo_header(src, dst), !self.checksum()])
    }

    /// Whether the checksum is correct for `src` and `dst`.
    pub fn verify_checksum(&self, src: Ipv4Addr, dst: Ipv4Addr) -> bool {
        self.sum_with_pseudo_header(src, dst) == 0xFFFF
    }

    fn sum_with_pseudo_header(&self, src: Ipv4Addr, dst: Ipv4Addr) -> u16 {
        let data = self.buffer.as_ref();
        // A segment longer than 65535 bytes cannot be in an IPv4 packet; truncating the
        // pseudo-header length then gives a wrong checksum rather than a panic.
        let len = data.len() as u16;
        checksum::combine(&[
            checksum::pseudo_header_ipv4(src, dst, IpProtocol::TCP, len),
            checksum::sum(data),
        ])
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> TcpPacket<&'a T> {
    /// The payload, borrowed for as long as the underlying buffer rather than the view.
    #[inline]
    pub fn into_payload(self) -> &'a [u8] {
        let header_len = self.header_len();
        let data = self.buffer.as_ref();
        &data[crate::clamp(header_len, data.len(), data.len())]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> TcpPacket<T> {
    /// Sets the source port (checksum not updated).
    #[inline]
    pub fn set_src_port(&mut self, port: u16) {
        crate::write_u16(self.buffer.as_mut(), field::SRC_PORT, port);
    }

    /// Sets the destination port (checksum not updated).
    #[inline]
    pub fn set_dst_port(&mut self, port: u16) {
        crate::write_u16(self.buffer.as_mut(), field::DST_PORT, port);
    }

    /// Sets the sequence number.
    #[inline]
    pub fn set_seq_no(&mut self, value: u32) {
        crate::write_u32(self.buffer.as_mut(), field::SEQ_NO, value);
    }

    /// Sets the acknowledgment number.
    #[inline]
    pub fn set_ack_no(&mut self, value: u32) {
        crate::write_u32(self.buffer.as_mut(), field::ACK_NO, value);
    }

    /// Sets the header length in octets (a multiple of 4, 20..=60), keeping the reserved bits.
    #[inline]
    pub fn set_header_len(&mut self, header_len: usize) {
        let data = self.buffer.as_mut();
        let offset = ((header_len / 4) & 0x0F) as u8;
        data[field::DATA_OFFSET] = (data[field::DATA_OFFSET] & 0x0F) | (offset << 4);
    }

    /// Sets the control bits.
    #[inline]
    pub fn set_flags(&mut self, flags: TcpFlags) {
        self.buffer.as_mut()[field::FLAGS] = flags.0;
    }

    /// Sets the receive window.
    #[inline]
    pub fn set_window(&mut self, value: u16) {
        crate::write_u16(self.buffer.as_mut(), field::WINDOW, value);
    }

    /// Sets the checksum field.
    #[inline]
    pub fn set_checksum(&mut self, value: u16) {
        crate::write_u16(self.buffer.as_mut(), field::CHECKSUM, value);
    }

    /// Sets the urgent pointer.
    #[inline]
    pub fn set_urgent(&mut self, value: u16) {
        crate::write_u16(self.buffer.as_mut(), field::URGENT, value);
    }

    /// Computes and writes the checksum for `src` and `dst`.
    pub fn fill_checksum(&mut self, src: Ipv4Addr, dst: Ipv4Addr) {
        let c = self.compute_checksum(src, dst);
        self.set_checksum(c);
    }

    /// The payload, mutably.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let header_len = self.header_len();
        let data = self.buffer.as_mut();
        let len = data.len();
        &mut data[crate::clamp(header_len, len, len)]
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::string::ToString;

    const SRC: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 7);
    const DST: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 1);

    /// A SYN from 10.244.1.7:40000 to 10.96.0.1:443 with MSS 1460, SACK-permitted, window
    /// scale 7 and a NOP: data offset 8 (32-byte header), no payload.
    const SYN: [u8; 32] = [
        0x9c, 0x40, 0x01, 0xbb, // ports
        0x12, 0x34, 0x56, 0x78, // seq
        0x00, 0x00, 0x00, 0x00, // ack
        0x80, 0x02, 0xfa, 0xf0, // offset 8, SYN, window 64240
        0x00, 0x00, 0x00, 0x00, // checksum (filled by the test), urgent
        0x02, 0x04, 0x05, 0xb4, 0x04, 0x02, 0x01, 0x03, 0x03, 0x07, 0x01, 0x01,
    ];

    fn syn_with_checksum() -> [u8; 32] {
        let mut buf = SYN;
        buf[16..18].copy_from_slice(&SYN_CHECKSUM.to_be_bytes());
        buf
    }

    /// Computed independently (Python, RFC 1071) for SYN between SRC and DST.
    const SYN_CHECKSUM: u16 = 0x571d;

    #[test]
    fn syn_fields_are_read() {
        let buf = syn_with_checksum();
        let p = TcpPacket::new_checked(&buf[..]).unwrap();
        assert_eq!((p.src_port(), p.dst_port()), (40000, 443));
        assert_eq!((p.seq_no(), p.ack_no()), (0x1234_5678, 0));
        assert_eq!(p.header_len(), 32);
        assert_eq!(p.flags(), TcpFlags::SYN);
        assert_eq!((p.window(), p.urgent()), (64240, 0));
        assert_eq!(p.options(), &SYN[20..]);
        assert!(p.payload().is_empty());
        assert_eq!(p.checksum(), SYN_CHECKSUM);
        assert!(p.verify_checksum(SRC, DST));
        assert!(!p.verify_checksum(DST, Ipv4Addr::new(10, 96, 0, 2)));
        assert_eq!(p.compute_checksum(SRC, DST), SYN_CHECKSUM);
    }

    #[test]
    fn every_error_variant_is_reported() {
        assert_eq!(TcpPacket::new_checked(&SYN[..19]), Err(TcpError::Truncated));
        assert_eq!(
            TcpPacket::new_checked(&SYN[..31]),
            Err(TcpError::BadDataOffset)
        );
        let mut buf = SYN;
        buf[12] = 0x40;
        assert_eq!(
            TcpPacket::new_checked(&buf[..]),
            Err(TcpError::BadDataOffset)
        );
        buf[12] = 0x50;
        let p = TcpPacket::new_checked(&buf[..]).unwrap();
        assert_eq!(p.payload().len(), 12);
        assert!(p.options().is_empty());
        assert_eq!(p.into_payload(), &SYN[20..]);
    }

    #[test]
    fn setters_round_trip() {
        let mut buf = [0u8; 28];
        let mut p = TcpPacket::new_unchecked(&mut buf[..]);
        p.set_src_port(1);
        p.set_dst_port(2);
        p.set_seq_no(0xdead_beef);
        p.set_ack_no(0x0102_0304);
        p.set_header_len(24);
        p.set_flags(TcpFlags::SYN | TcpFlags::ACK);
        p.set_window(512);
        p.set_urgent(9);
        p.payload_mut().copy_from_slice(b"data");
        p.fill_checksum(SRC, DST);
        assert!(p.verify_checksum(SRC, DST));
        let p = TcpPacket::new_checked(&buf[..]).unwrap();
        assert_eq!((p.src_port(), p.dst_port()), (1, 2));
        assert_eq!((p.seq_no(), p.ack_no()), (0xdead_beef, 0x0102_0304));
        assert_eq!((p.header_len(), p.window(), p.urgent()), (24, 512, 9));
        assert_eq!(p.flags(), TcpFlags::SYN | TcpFlags::ACK);
        assert_eq!(p.payload(), b"data");
    }

    #[test]
    fn nat_rewrite_with_incremental_update_keeps_checksum_valid() {
        let mut buf = syn_with_checksum();
        let mut p = TcpPacket::new_checked(&mut buf[..]).unwrap();
        let backend = Ipv4Addr::new(10, 244, 3, 9);
        let mut c = p.checksum();
        c = checksum::update_u32(c, DST.into(), backend.into());
        c = checksum::update_u16(c, p.dst_port(), 8443);
        p.set_dst_port(8443);
        p.set_checksum(c);
        assert!(p.verify_checksum(SRC, backend));
    }

    #[test]
    fn header_len_setter_cannot_make_accessors_panic() {
        let mut buf = SYN;
        buf[12] = 0x50;
        let mut p = TcpPacket::new_checked(&mut buf[..24]).unwrap();
        p.set_header_len(60);
        assert_eq!(p.options().len(), 4);
        assert!(p.payload().is_empty() && p.payload_mut().is_empty());
    }

    #[test]
    fn flags_behave_as_a_set() {
        let mut f = TcpFlags::SYN | TcpFlags::ACK;
        assert!(f.contains(TcpFlags::SYN) && f.contains(TcpFlags::ACK));
        assert!(!f.contains(TcpFlags::SYN | TcpFlags::FIN));
        assert!(f.intersects(TcpFlags::SYN | TcpFlags::FIN));
        f.remove(TcpFlags::SYN);
        f |= TcpFlags::FIN;
        assert_eq!(f, TcpFlags::FIN | TcpFlags::ACK);
        f.insert(TcpFlags::RST);
        assert_eq!(f & !TcpFlags::ACK, TcpFlags::FIN | TcpFlags::RST);
        assert_eq!(f.bits(), 0x15);
        assert!(TcpFlags::NONE.is_empty() && TcpFlags::default().is_empty());
        assert_eq!((TcpFlags::SYN | TcpFlags::ACK).to_string(), "SYN|ACK");
        assert_eq!(
            TcpFlags(0xFF).to_string(),
            "SYN|ACK|FIN|RST|PSH|URG|ECE|CWR"
        );
        assert_eq!(TcpFlags::NONE.to_string(), "-");
        assert_eq!(std::format!("{:?}", TcpFlags::RST), "TcpFlags(RST)");
        let all = [
            TcpFlags::FIN,
            TcpFlags::SYN,
            TcpFlags::RST,
            TcpFlags::PSH,
            TcpFlags::ACK,
            TcpFlags::URG,
        ];
        assert_eq!(all.iter().fold(TcpFlags::NONE, |a, &b| a | b).bits(), 0x3F);
    }
}
