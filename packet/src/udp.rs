//! UDP datagrams (RFC 768): ports and length for the flow key, conntrack and service NAT, and
//! the checksum over the IPv4 pseudo-header that NAT must keep right.

use core::fmt;
use core::net::Ipv4Addr;

use crate::checksum;
use crate::ipv4::IpProtocol;

/// Field offsets of the UDP header.
mod field {
    use crate::Field;
    pub const SRC_PORT: Field = 0..2;
    pub const DST_PORT: Field = 2..4;
    pub const LENGTH: Field = 4..6;
    pub const CHECKSUM: Field = 6..8;
    pub const PAYLOAD: usize = 8;
}

/// Length of the UDP header.
pub const HEADER_LEN: usize = field::PAYLOAD;

/// Why a buffer is not a UDP datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UdpError {
    /// Shorter than the 8-byte header.
    Truncated,
    /// Length field below 8 or past the buffer.
    BadLength,
}

impl fmt::Display for UdpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            UdpError::Truncated => "UDP datagram shorter than its 8-byte header",
            UdpError::BadLength => "UDP length field below 8 or past the end of the packet",
        })
    }
}

impl core::error::Error for UdpError {}

/// A zero-copy view of a UDP datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UdpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> UdpPacket<T> {
    /// Wraps `buffer` without checking it; accessors panic if it is shorter than 8 bytes.
    pub const fn new_unchecked(buffer: T) -> UdpPacket<T> {
        UdpPacket { buffer }
    }

    /// Wraps `buffer` after checking the header and the length field against it.
    pub fn new_checked(buffer: T) -> Result<UdpPacket<T>, UdpError> {
        let data = buffer.as_ref();
        if data.len() < HEADER_LEN {
            return Err(UdpError::Truncated);
        }
        let len = usize::from(crate::read_u16(data, field::LENGTH));
        if len < HEADER_LEN || len > data.len() {
            return Err(UdpError::BadLength);
        }
        Ok(UdpPacket { buffer })
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

    /// The length field: header plus payload, in octets.
    #[inline]
    pub fn len(&self) -> u16 {
        crate::read_u16(self.buffer.as_ref(), field::LENGTH)
    }

    /// Whether the payload is empty.
    #[inline]
    pub fn is_empty(&self) -> bool {
        usize::from(self.len()) <= HEADER_LEN
    }

    /// The checksum field (0 means the sender computed none).
    #[inline]
    pub fn checksum(&self) -> u16 {
        crate::read_u16(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// The payload, up to the length field (not the buffer end).
    #[inline]
    pub fn payload(&self) -> &[u8] {
        let data = self.buffer.as_ref();
        &data[crate::clamp(field::PAYLOAD, usize::from(self.len()), data.len())]
    }

    /// The checksum this datagram should carry between `src` and `dst`, over the pseudo-header
    /// and `len` bytes, taking the current checksum field as zero. A computed 0 is returned
    /// as 0xFFFF, since 0 on the wire means "no checksum" (RFC 768).
    pub fn compute_checksum(&self, src: Ipv4Addr, dst: Ipv4Addr) -> u16 {
        let data = self.buffer.as_ref();
        let covered = &data[crate::clamp(0, usize::from(self.len()), data.len())];
        let sum = checksum::combine(&[
            checksum::pseudo_header_ipv4(src, dst, IpProtocol::UDP, self.len()),
            checksum::sum(covered),
            !self.checksum(), // take the field out of the sum
        ]);
        match !sum {
            0 => 0xFFFF,
            c => c,
        }
    }

    /// Whether the checksum is correct for `src` and `dst`; a zero checksum (none) passes.
    pub fn verify_checksum(&self, src: Ipv4Addr, dst: Ipv4Addr) -> bool {
        let data = self.buffer.as_ref();
        let covered = &data[crate::clamp(0, usize::from(self.len()), data.len())];
        self.checksum() == 0
            || checksum::combine(&[
                checksum::pseudo_header_ipv4(src, dst, IpProtocol::UDP, self.len()),
                checksum::sum(covered),
            ]) == 0xFFFF
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> UdpPacket<&'a T> {
    /// The payload, borrowed for as long as the underlying buffer rather than the view.
    #[inline]
    pub fn into_payload(self) -> &'a [u8] {
        let len = usize::from(self.len());
        let data = self.buffer.as_ref();
        &data[crate::clamp(field::PAYLOAD, len, data.len())]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> UdpPacket<T> {
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

    /// Sets the length field.
    #[inline]
    pub fn set_len(&mut self, len: u16) {
        crate::write_u16(self.buffer.as_mut(), field::LENGTH, len);
    }

    /// Sets the checksum field.
    #[inline]
    pub fn set_checksum(&mut self, value: u16) {
        crate::write_u16(self.buffer.as_mut(), field::CHECKSUM, value);
    }

    /// Computes and writes the checksum for `src` and `dst`.
    pub fn fill_checksum(&mut self, src: Ipv4Addr, dst: Ipv4Addr) {
        let c = self.compute_checksum(src, dst);
        self.set_checksum(c);
    }

    /// The payload (up to the length field), mutably.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let len = usize::from(self.len());
        let data = self.buffer.as_mut();
        let buffer_len = data.len();
        &mut data[crate::clamp(field::PAYLOAD, len, buffer_len)]
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const SRC: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 7);
    const DST: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);

    /// A DNS query for "a.io" A from 10.244.1.7:53000 to kube-dns 10.96.0.10:53, followed by
    /// two bytes of trailing junk that the length field excludes.
    const DNS_QUERY: [u8; 32] = [
        0xcf, 0x08, 0x00, 0x35, 0x00, 0x1e, 0x94, 0x0e, // header, len 30
        0x12, 0x34, 0x01, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // DNS header
        0x01, b'a', 0x02, b'i', b'o', 0x00, 0x00, 0x01, 0x00, 0x01, // question
        0xde, 0xad, // not part of the datagram
    ];

    #[test]
    fn dns_query_fields_and_checksum() {
        let p = UdpPacket::new_checked(&DNS_QUERY[..]).unwrap();
        assert_eq!((p.src_port(), p.dst_port(), p.len()), (53000, 53, 30));
        assert_eq!(p.payload(), &DNS_QUERY[8..30]);
        assert!(!p.is_empty());
        assert_eq!(p.checksum(), 0x940e);
        assert!(p.verify_checksum(SRC, DST));
        assert!(!p.verify_checksum(SRC, Ipv4Addr::new(10, 96, 0, 11)));
        assert_eq!(p.compute_checksum(SRC, DST), 0x940e);
        assert_eq!(p.into_payload().len(), 22);
    }

    #[test]
    fn every_error_variant_is_reported() {
        assert_eq!(
            UdpPacket::new_checked(&DNS_QUERY[..7]),
            Err(UdpError::Truncated)
        );
        assert_eq!(
            UdpPacket::new_checked(&DNS_QUERY[..29]),
            Err(UdpError::BadLength)
        );
        let mut buf = DNS_QUERY;
        buf[4..6].copy_from_slice(&7u16.to_be_bytes());
        assert_eq!(UdpPacket::new_checked(&buf[..]), Err(UdpError::BadLength));
        buf[4..6].copy_from_slice(&8u16.to_be_bytes());
        assert!(UdpPacket::new_checked(&buf[..]).unwrap().is_empty());
    }

    #[test]
    fn zero_checksum_means_none() {
        let mut buf = DNS_QUERY;
        let mut p = UdpPacket::new_checked(&mut buf[..]).unwrap();
        p.set_checksum(0);
        assert!(p.verify_checksum(SRC, Ipv4Addr::UNSPECIFIED));
        p.fill_checksum(SRC, DST);
        assert_eq!(p.checksum(), 0x940e);
    }

    #[test]
    fn computed_zero_is_sent_as_ffff() {
        // Choose the last payload word so the datagram sums to 0xFFFF with a zero checksum.
        let mut buf = [0u8; 10];
        let mut p = UdpPacket::new_unchecked(&mut buf[..]);
        p.set_len(10);
        let partial = !p.compute_checksum(SRC, DST);
        p.payload_mut()
            .copy_from_slice(&(0xFFFF - partial).to_be_bytes());
        assert_eq!(p.compute_checksum(SRC, DST), 0xFFFF);
        p.fill_checksum(SRC, DST);
        assert!(p.verify_checksum(SRC, DST));
    }

    #[test]
    fn setters_round_trip_and_nat_rewrite_keeps_checksum_valid() {
        let mut buf = DNS_QUERY;
        let mut p = UdpPacket::new_checked(&mut buf[..]).unwrap();
        // Service NAT: 10.96.0.10:53 -> 10.244.2.5:5353, checksum updated incrementally.
        let backend = Ipv4Addr::new(10, 244, 2, 5);
        let mut c = p.checksum();
        c = checksum::update_u32(c, DST.into(), backend.into());
        c = checksum::update_u16(c, p.dst_port(), 5353);
        p.set_dst_port(5353);
        p.set_checksum(c);
        assert!(p.verify_checksum(SRC, backend));
        assert_eq!(c, p.compute_checksum(SRC, backend));
        p.set_src_port(1);
        p.set_len(9);
        p.payload_mut()[0] = 0xAB;
        assert_eq!((p.src_port(), p.dst_port(), p.len()), (1, 5353, 9));
        assert_eq!(p.payload(), &[0xAB]);
        p.set_len(0xFFFF);
        assert_eq!(p.payload().len(), 24, "clamped to the buffer");
        p.set_len(0);
        assert!(p.payload().is_empty());
        let _ = p.compute_checksum(SRC, DST);
    }
}
