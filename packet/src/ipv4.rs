//! IPv4 headers (RFC 791): the layer the pipeline routes, filters and NATs on. Forwarding
//! decrements the TTL with an incremental checksum update (RFC 1624 eqn. 3, RFC 1812 5.3.1)
//! instead of re-summing the header.

use core::fmt;
use core::net::Ipv4Addr;

use crate::checksum;

/// Field offsets of the IPv4 header.
mod field {
    use crate::Field;
    pub const VER_IHL: usize = 0;
    pub const DSCP_ECN: usize = 1;
    pub const TOTAL_LEN: Field = 2..4;
    pub const IDENT: Field = 4..6;
    pub const FLAGS_FRAG: Field = 6..8;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const CHECKSUM: Field = 10..12;
    pub const SRC: Field = 12..16;
    pub const DST: Field = 16..20;
    /// TTL and protocol share the 16-bit word at offset 8, the one the checksum sees change.
    pub const TTL_PROTOCOL: Field = 8..10;
}

/// Length of a header without options.
pub const MIN_HEADER_LEN: usize = field::DST.end;

const FLAG_DF: u16 = 0x4000;
const FLAG_MF: u16 = 0x2000;
const FRAG_OFFSET_MASK: u16 = 0x1FFF;

/// The IPv4 protocol number (the IPv6 "next header") of the payload.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct IpProtocol(pub u8);

impl IpProtocol {
    /// Internet Control Message Protocol.
    pub const ICMP: IpProtocol = IpProtocol(1);
    /// Transmission Control Protocol.
    pub const TCP: IpProtocol = IpProtocol(6);
    /// User Datagram Protocol.
    pub const UDP: IpProtocol = IpProtocol(17);
}

impl fmt::Display for IpProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            IpProtocol::ICMP => f.write_str("ICMP"),
            IpProtocol::TCP => f.write_str("TCP"),
            IpProtocol::UDP => f.write_str("UDP"),
            IpProtocol(other) => write!(f, "proto {other}"),
        }
    }
}

/// Why a buffer is not an IPv4 packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ipv4Error {
    /// Shorter than the 20-byte minimum header.
    Truncated,
    /// Version field is not 4.
    BadVersion,
    /// IHL below 5, or the header it announces runs past the buffer.
    BadHeaderLen,
    /// Total length below the header length or past the buffer.
    BadTotalLen,
}

impl fmt::Display for Ipv4Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Ipv4Error::Truncated => "IPv4 packet shorter than the 20-byte minimum header",
            Ipv4Error::BadVersion => "IP version field is not 4",
            Ipv4Error::BadHeaderLen => "IPv4 header length below 20 bytes or past the buffer",
            Ipv4Error::BadTotalLen => {
                "IPv4 total length below the header length or past the buffer"
            }
        })
    }
}

impl core::error::Error for Ipv4Error {}

/// A zero-copy view of an IPv4 packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ipv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv4Packet<T> {
    /// Wraps `buffer` without checking it; fixed-field accessors panic if it is shorter than
    /// 20 bytes.
    pub const fn new_unchecked(buffer: T) -> Ipv4Packet<T> {
        Ipv4Packet { buffer }
    }

    /// Wraps `buffer` after checking version, header length and total length against it.
    /// The checksum is not checked ([`verify_checksum`](Self::verify_checksum)); bytes past the
    /// total length (Ethernet padding) are allowed and ignored by [`payload`](Self::payload).
    pub fn new_checked(buffer: T) -> Result<Ipv4Packet<T>, Ipv4Error> {
        let data = buffer.as_ref();
        if data.len() < MIN_HEADER_LEN {
            return Err(Ipv4Error::Truncated);
        }
        let packet = Ipv4Packet::new_unchecked(data);
        if packet.version() != 4 {
            return Err(Ipv4Error::BadVersion);
        }
        let header_len = packet.header_len();
        if header_len < MIN_HEADER_LEN || header_len > data.len() {
            return Err(Ipv4Error::BadHeaderLen);
        }
        let total_len = usize::from(packet.total_len());
        if total_len < header_len || total_len > data.len() {
            return Err(Ipv4Error::BadTotalLen);
        }
        Ok(Ipv4Packet { buffer })
    }

    /// Returns the underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The version field (4 on a checked packet).
    #[inline]
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_IHL] >> 4
    }

    /// The header length in octets (IHL * 4).
    #[inline]
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::VER_IHL] & 0x0F) * 4
    }

    /// The DSCP and ECN bits, as the whole second octet (the old TOS byte).
    #[inline]
    pub fn dscp_ecn(&self) -> u8 {
        self.buffer.as_ref()[field::DSCP_ECN]
    }

    /// The total length (header and payload) in octets.
    #[inline]
    pub fn total_len(&self) -> u16 {
        crate::read_u16(self.buffer.as_ref(), field::TOTAL_LEN)
    }

    /// The identification field.
    #[inline]
    pub fn ident(&self) -> u16 {
        crate::read_u16(self.buffer.as_ref(), field::IDENT)
    }

    /// The Don't Fragment flag.
    #[inline]
    pub fn dont_frag(&self) -> bool {
        crate::read_u16(self.buffer.as_ref(), field::FLAGS_FRAG) & FLAG_DF != 0
    }

    /// The More Fragments flag.
    #[inline]
    pub fn more_frags(&self) -> bool {
        crate::read_u16(self.buffer.as_ref(), field::FLAGS_FRAG) & FLAG_MF != 0
    }

    /// The fragment offset in octets (the field is in units of 8 octets).
    #[inline]
    pub fn frag_offset(&self) -> u16 {
        (crate::read_u16(self.buffer.as_ref(), field::FLAGS_FRAG) & FRAG_OFFSET_MASK) << 3
    }

    /// Whether this is a fragment (MF set or a non-zero offset); only the first carries the
    /// transport header.
    #[inline]
    pub fn is_fragment(&self) -> bool {
        crate::read_u16(self.buffer.as_ref(), field::FLAGS_FRAG) & (FLAG_MF | FRAG_OFFSET_MASK) != 0
    }

    /// The time to live.
    #[inline]
    pub fn ttl(&self) -> u8 {
        self.buffer.as_ref()[field::TTL]
    }

    /// The payload protocol.
    #[inline]
    pub fn protocol(&self) -> IpProtocol {
        IpProtocol(self.buffer.as_ref()[field::PROTOCOL])
    }

    /// The header checksum field.
    #[inline]
    pub fn checksum(&self) -> u16 {
        crate::read_u16(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// The source address.
    #[inline]
    pub fn src(&self) -> Ipv4Addr {
        Ipv4Addr::from(crate::read_u32(self.buffer.as_ref(), field::SRC))
    }

    /// The destination address.
    #[inline]
    pub fn dst(&self) -> Ipv4Addr {
        Ipv4Addr::from(crate::read_u32(self.buffer.as_ref(), field::DST))
    }

    /// The options: bytes 20 up to the header length.
    #[inline]
    pub fn options(&self) -> &[u8] {
        let data = self.buffer.as_ref();
        &data[crate::clamp(MIN_HEADER_LEN, self.header_len(), data.len())]
    }

    /// The payload: from the header length up to the total length (not the buffer end).
    #[inline]
    pub fn payload(&self) -> &[u8] {
        let data = self.buffer.as_ref();
        &data[self.payload_range(data.len())]
    }

    /// Whether the header checksum is correct.
    pub fn verify_checksum(&self) -> bool {
        let data = self.buffer.as_ref();
        if let Some(header) = data.first_chunk::<20>().filter(|_| self.header_len() == 20) {
            return checksum::sum_ipv4_header(header) == 0xFFFF;
        }
        checksum::sum(&data[crate::clamp(0, self.header_len(), data.len())]) == 0xFFFF
    }

    fn payload_range(&self, buffer_len: usize) -> crate::Field {
        crate::clamp(self.header_len(), usize::from(self.total_len()), buffer_len)
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Ipv4Packet<&'a T> {
    /// The payload, borrowed for as long as the underlying buffer rather than the view.
    #[inline]
    pub fn into_payload(self) -> &'a [u8] {
        let range = self.payload_range(self.buffer.as_ref().len());
        &self.buffer.as_ref()[range]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv4Packet<T> {
    /// Sets version 4 and the header length in octets (a multiple of 4, 20..=60).
    /// Changing the length does not move options or payload.
    #[inline]
    pub fn set_version_and_header_len(&mut self, header_len: usize) {
        let ihl = ((header_len / 4) & 0x0F) as u8;
        self.buffer.as_mut()[field::VER_IHL] = 0x40 | ihl;
    }

    /// Sets the DSCP/ECN octet.
    #[inline]
    pub fn set_dscp_ecn(&mut self, value: u8) {
        self.buffer.as_mut()[field::DSCP_ECN] = value;
    }

    /// Sets the total length.
    #[inline]
    pub fn set_total_len(&mut self, value: u16) {
        crate::write_u16(self.buffer.as_mut(), field::TOTAL_LEN, value);
    }

    /// Sets the identification field.
    #[inline]
    pub fn set_ident(&mut self, value: u16) {
        crate::write_u16(self.buffer.as_mut(), field::IDENT, value);
    }

    /// Sets the Don't Fragment flag.
    #[inline]
    pub fn set_dont_frag(&mut self, value: bool) {
        self.set_flag(FLAG_DF, value);
    }

    /// Sets the More Fragments flag.
    #[inline]
    pub fn set_more_frags(&mut self, value: bool) {
        self.set_flag(FLAG_MF, value);
    }

    /// Sets the fragment offset, in octets (rounded down to a multiple of 8).
    #[inline]
    pub fn set_frag_offset(&mut self, offset: u16) {
        let data = self.buffer.as_mut();
        let raw = crate::read_u16(data, field::FLAGS_FRAG);
        let raw = (raw & !FRAG_OFFSET_MASK) | (offset >> 3);
        crate::write_u16(data, field::FLAGS_FRAG, raw);
    }

    fn set_flag(&mut self, flag: u16, value: bool) {
        let data = self.buffer.as_mut();
        let raw = crate::read_u16(data, field::FLAGS_FRAG);
        let raw = if value { raw | flag } else { raw & !flag };
        crate::write_u16(data, field::FLAGS_FRAG, raw);
    }

    /// Sets the time to live (checksum not updated).
    #[inline]
    pub fn set_ttl(&mut self, value: u8) {
        self.buffer.as_mut()[field::TTL] = value;
    }

    /// Sets the payload protocol (checksum not updated).
    #[inline]
    pub fn set_protocol(&mut self, value: IpProtocol) {
        self.buffer.as_mut()[field::PROTOCOL] = value.0;
    }

    /// Sets the header checksum field.
    #[inline]
    pub fn set_checksum(&mut self, value: u16) {
        crate::write_u16(self.buffer.as_mut(), field::CHECKSUM, value);
    }

    /// Sets the source address (checksum not updated; see [`checksum::update_u32`]).
    #[inline]
    pub fn set_src(&mut self, addr: Ipv4Addr) {
        self.buffer.as_mut()[field::SRC].copy_from_slice(&addr.octets());
    }

    /// Sets the destination address (checksum not updated; see [`checksum::update_u32`]).
    #[inline]
    pub fn set_dst(&mut self, addr: Ipv4Addr) {
        self.buffer.as_mut()[field::DST].copy_from_slice(&addr.octets());
    }

    /// Recomputes the header checksum over the whole header, options included.
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let header_len = self.header_len();
        let data = self.buffer.as_ref();
        let sum = checksum::checksum(&data[crate::clamp(0, header_len, data.len())]);
        self.set_checksum(sum);
    }

    /// Decrements the TTL by one and updates the checksum incrementally (RFC 1624 eqn. 3),
    /// returning the new TTL. A TTL of 0 is left alone (returns 0): the caller must already
    /// have dropped such a packet with ICMP Time Exceeded (RFC 1812 5.3.1).
    #[inline]
    pub fn decrement_ttl(&mut self) -> u8 {
        let data = self.buffer.as_mut();
        let old = crate::read_u16(data, field::TTL_PROTOCOL);
        let ttl = data[field::TTL];
        if ttl == 0 {
            return 0;
        }
        let new = old - 0x0100;
        data[field::TTL] = ttl - 1;
        let csum = crate::read_u16(data, field::CHECKSUM);
        crate::write_u16(data, field::CHECKSUM, checksum::update_u16(csum, old, new));
        ttl - 1
    }

    /// The options, mutably.
    #[inline]
    pub fn options_mut(&mut self) -> &mut [u8] {
        let header_len = self.header_len();
        let data = self.buffer.as_mut();
        let len = data.len();
        &mut data[crate::clamp(MIN_HEADER_LEN, header_len, len)]
    }

    /// The payload (up to the total length), mutably.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let range = self.payload_range(self.buffer.as_ref().len());
        &mut self.buffer.as_mut()[range]
    }
}

/// An IPv4 header without options, in parsed form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Repr {
    /// Source address.
    pub src: Ipv4Addr,
    /// Destination address.
    pub dst: Ipv4Addr,
    /// Payload protocol.
    pub protocol: IpProtocol,
    /// Payload length in octets (total length minus header length).
    pub payload_len: usize,
    /// Time to live.
    pub ttl: u8,
}

impl Ipv4Repr {
    /// Reads `packet`, re-validating its lengths; options, DSCP/ECN, identification and
    /// fragmentation fields are not kept and the checksum is not verified.
    pub fn parse<T: AsRef<[u8]>>(packet: &Ipv4Packet<T>) -> Result<Ipv4Repr, Ipv4Error> {
        let packet = Ipv4Packet::new_checked(packet.buffer.as_ref())?;
        Ok(Ipv4Repr {
            src: packet.src(),
            dst: packet.dst(),
            protocol: packet.protocol(),
            payload_len: usize::from(packet.total_len()) - packet.header_len(),
            ttl: packet.ttl(),
        })
    }

    /// Bytes [`emit`](Self::emit) writes: the 20-byte header (the payload follows it).
    pub const fn buffer_len(&self) -> usize {
        MIN_HEADER_LEN
    }

    /// Writes a 20-byte header into the start of `buf`: no options, DSCP/ECN 0, ident 0,
    /// Don't Fragment set, and a filled checksum. The payload is the caller's to write.
    /// Fails with `Truncated` if `buf` is shorter than 20 bytes and `BadTotalLen` if the
    /// payload is too long for the 16-bit total length.
    pub fn emit(&self, buf: &mut [u8]) -> Result<(), Ipv4Error> {
        let total_len = MIN_HEADER_LEN
            .checked_add(self.payload_len)
            .and_then(|len| u16::try_from(len).ok())
            .ok_or(Ipv4Error::BadTotalLen)?;
        let header = buf.get_mut(..MIN_HEADER_LEN).ok_or(Ipv4Error::Truncated)?;
        let mut packet = Ipv4Packet::new_unchecked(header);
        packet.set_version_and_header_len(MIN_HEADER_LEN);
        packet.set_dscp_ecn(0);
        packet.set_total_len(total_len);
        packet.set_ident(0);
        crate::write_u16(packet.buffer, field::FLAGS_FRAG, FLAG_DF);
        packet.set_ttl(self.ttl);
        packet.set_protocol(self.protocol);
        packet.set_src(self.src);
        packet.set_dst(self.dst);
        packet.fill_checksum();
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::string::ToString;

    /// `ping -c1 8.8.8.8` from a pod at 10.244.1.7: IPv4 + ICMP echo request, 84 bytes.
    const PING: [u8; 84] = [
        0x45, 0x00, 0x00, 0x54, 0xa6, 0xf2, 0x40, 0x00, 0x40, 0x01, 0x77, 0xac, 0x0a, 0xf4, 0x01,
        0x07, 0x08, 0x08, 0x08, 0x08, 0x08, 0x00, 0xd1, 0x7c, 0x00, 0x2a, 0x00, 0x01, 0x5f, 0x2e,
        0x1b, 0x66, 0x00, 0x00, 0x00, 0x00, 0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18,
        0x19, 0x1a, 0x1b, 0x1c, 0x1d, 0x1e, 0x1f, 0x20, 0x21, 0x22, 0x23, 0x24, 0x25, 0x26, 0x27,
        0x28, 0x29, 0x2a, 0x2b, 0x2c, 0x2d, 0x2e, 0x2f, 0x30, 0x31, 0x32, 0x33, 0x34, 0x35, 0x36,
        0x37, 0x38, 0x39, 0x3a, 0x3b, 0x3c, 0x3d, 0x3e, 0x3f,
    ];

    #[test]
    fn echo_request_header_fields_are_read() {
        let p = Ipv4Packet::new_checked(&PING[..]).unwrap();
        assert_eq!(p.version(), 4);
        assert_eq!(p.header_len(), 20);
        assert_eq!(p.dscp_ecn(), 0);
        assert_eq!(p.total_len(), 84);
        assert_eq!(p.ident(), 0xa6f2);
        assert!(p.dont_frag() && !p.more_frags() && !p.is_fragment());
        assert_eq!(p.frag_offset(), 0);
        assert_eq!(p.ttl(), 64);
        assert_eq!(p.protocol(), IpProtocol::ICMP);
        assert_eq!(p.checksum(), 0x77ac);
        assert!(p.verify_checksum());
        assert_eq!(p.src(), Ipv4Addr::new(10, 244, 1, 7));
        assert_eq!(p.dst(), Ipv4Addr::new(8, 8, 8, 8));
        assert!(p.options().is_empty());
        assert_eq!(p.payload(), &PING[20..]);
        assert_eq!(p.into_payload(), &PING[20..]);
    }

    #[test]
    fn textbook_header_checksum_is_b861() {
        // The well-known UDP example header: 4500 0073 0000 4000 4011 b861 c0a8 0001 c0a8 00c7.
        let mut hdr = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        let mut p = Ipv4Packet::new_unchecked(&mut hdr[..]);
        assert!(!p.verify_checksum());
        p.fill_checksum();
        assert_eq!(p.checksum(), 0xb861);
        assert!(p.verify_checksum());
    }

    #[test]
    fn payload_stops_at_total_len_not_buffer_end() {
        let mut buf = [0u8; 60];
        buf.copy_from_slice(&PING[..60]);
        buf[2..4].copy_from_slice(&46u16.to_be_bytes()); // shorter than the Ethernet-padded buffer
        let p = Ipv4Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(p.payload().len(), 26);
    }

    #[test]
    fn options_lie_between_20_and_header_len() {
        let mut buf = [0u8; 28];
        buf[0] = 0x46; // IHL 6
        buf[2..4].copy_from_slice(&28u16.to_be_bytes());
        buf[20..24].copy_from_slice(&[0x94, 0x04, 0x00, 0x00]); // router alert
        buf[24..28].copy_from_slice(&[1, 2, 3, 4]);
        let mut p = Ipv4Packet::new_checked(&mut buf[..]).unwrap();
        p.fill_checksum();
        assert!(p.verify_checksum());
        assert_eq!(p.options(), &[0x94, 0x04, 0x00, 0x00]);
        assert_eq!(p.payload(), &[1, 2, 3, 4]);
        p.options_mut()[0] = 0x01;
        assert!(!p.verify_checksum(), "checksum covers options");
    }

    #[test]
    fn every_error_variant_is_reported() {
        let check = |buf: &[u8], err| assert_eq!(Ipv4Packet::new_checked(buf), Err(err));
        check(&PING[..19], Ipv4Error::Truncated);
        check(&[], Ipv4Error::Truncated);
        let mut buf = PING;
        buf[0] = 0x65;
        check(&buf, Ipv4Error::BadVersion);
        buf[0] = 0x44;
        check(&buf, Ipv4Error::BadHeaderLen);
        buf[0] = 0x4f; // 60-byte header in a 40-byte buffer
        check(&buf[..40], Ipv4Error::BadHeaderLen);
        buf[0] = 0x45;
        buf[2..4].copy_from_slice(&19u16.to_be_bytes());
        check(&buf, Ipv4Error::BadTotalLen);
        buf[2..4].copy_from_slice(&85u16.to_be_bytes());
        check(&buf, Ipv4Error::BadTotalLen);
        check(&PING[..83], Ipv4Error::BadTotalLen);
        assert!(Ipv4Packet::new_checked(&PING[..]).is_ok());
        assert!(Ipv4Error::BadTotalLen.to_string().contains("total length"));
    }

    #[test]
    fn setters_round_trip() {
        let mut buf = [0u8; 40];
        let mut p = Ipv4Packet::new_unchecked(&mut buf[..]);
        p.set_version_and_header_len(24);
        p.set_dscp_ecn(0xb8);
        p.set_total_len(30);
        p.set_ident(0xbeef);
        p.set_dont_frag(false);
        p.set_more_frags(true);
        p.set_frag_offset(1480);
        p.set_ttl(7);
        p.set_protocol(IpProtocol::UDP);
        p.set_src(Ipv4Addr::new(1, 2, 3, 4));
        p.set_dst(Ipv4Addr::new(5, 6, 7, 8));
        p.fill_checksum();
        p.payload_mut().fill(0xAA);
        let p = Ipv4Packet::new_checked(&buf[..]).unwrap();
        assert_eq!((p.version(), p.header_len(), p.dscp_ecn()), (4, 24, 0xb8));
        assert_eq!((p.total_len(), p.ident()), (30, 0xbeef));
        assert!(!p.dont_frag() && p.more_frags() && p.is_fragment());
        assert_eq!(p.frag_offset(), 1480);
        assert_eq!((p.ttl(), p.protocol()), (7, IpProtocol::UDP));
        assert_eq!(p.src(), Ipv4Addr::new(1, 2, 3, 4));
        assert_eq!(p.dst(), Ipv4Addr::new(5, 6, 7, 8));
        assert!(p.verify_checksum());
        assert_eq!(p.payload(), &[0xAA; 6]);
        assert_eq!(buf[30], 0, "payload_mut stops at total_len");
        let mut p = Ipv4Packet::new_unchecked(&mut buf[..]);
        p.set_dont_frag(true);
        p.set_more_frags(false);
        p.set_frag_offset(0);
        assert!(p.dont_frag() && !p.more_frags() && !p.is_fragment());
    }

    #[test]
    fn length_setters_cannot_make_accessors_panic() {
        let mut buf = PING;
        buf[2..4].copy_from_slice(&60u16.to_be_bytes());
        let mut p = Ipv4Packet::new_checked(&mut buf[..60]).unwrap();
        p.set_total_len(0xFFFF);
        assert_eq!(p.payload().len(), 40);
        p.set_version_and_header_len(60);
        assert_eq!(p.options().len(), 40);
        assert!(p.payload().is_empty());
        p.set_total_len(3);
        assert!(p.payload().is_empty());
        assert!(p.payload_mut().is_empty());
        p.fill_checksum();
        assert!(p.verify_checksum());
        let short = [0x4fu8; 5];
        assert!(Ipv4Packet::new_unchecked(&short[..]).payload().is_empty());
    }

    /// Sets the checksum by full recomputation and returns it.
    fn full_checksum(hdr: &mut [u8; 20]) -> u16 {
        let mut p = Ipv4Packet::new_unchecked(&mut hdr[..]);
        p.fill_checksum();
        p.checksum()
    }

    /// Decrements the TTL incrementally and checks against a full recompute.
    fn check_decrement(hdr: [u8; 20]) {
        let mut inc = hdr;
        let mut p = Ipv4Packet::new_unchecked(&mut inc[..]);
        let before = p.checksum();
        let ttl = p.ttl();
        assert_eq!(p.decrement_ttl(), ttl - 1);
        assert!(p.verify_checksum());
        let mut full = inc;
        full_checksum(&mut full);
        assert_eq!(
            inc, full,
            "ttl {ttl} checksum {before:#06x}: incremental != full recompute"
        );
    }

    /// The identification value that makes the header checksum come out as 0x0000.
    fn ident_for_zero_checksum(mut hdr: [u8; 20]) -> u16 {
        hdr[4..6].copy_from_slice(&[0, 0]);
        hdr[10..12].copy_from_slice(&[0, 0]);
        // Needed: rest +' ident == 0xFFFF.
        0xFFFF - checksum::sum(&hdr)
    }

    #[test]
    fn decrement_ttl_matches_full_recompute_for_every_ttl_and_edge_checksums() {
        let mut rng = 0x9E37_79B9_7F4A_7C15u64;
        let mut base = [0u8; 20];
        base.copy_from_slice(&PING[..20]);
        for ttl in 1..=255u8 {
            let mut hdr = base;
            hdr[8] = ttl;
            let mut idents = std::vec![0x0000, 0xFFFF, ident_for_zero_checksum(hdr)];
            let mut after = hdr;
            after[8] = ttl - 1;
            idents.push(ident_for_zero_checksum(after)); // checksum becomes 0x0000
            for _ in 0..8 {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                idents.push(rng as u16);
            }
            for ident in idents {
                hdr[4..6].copy_from_slice(&ident.to_be_bytes());
                let c = full_checksum(&mut hdr);
                check_decrement(hdr);
                if c == 0 {
                    // 0xFFFF is the other ones'-complement zero and verifies too.
                    let mut negzero = hdr;
                    negzero[10..12].copy_from_slice(&[0xFF, 0xFF]);
                    assert!(Ipv4Packet::new_unchecked(&negzero[..]).verify_checksum());
                    check_decrement(negzero);
                }
            }
        }
    }

    #[test]
    fn decrement_ttl_matches_full_recompute_for_every_checksum() {
        let mut hdr = [0u8; 20];
        hdr.copy_from_slice(&PING[..20]);
        for ident in 0..=0xFFFFu16 {
            hdr[4..6].copy_from_slice(&ident.to_be_bytes());
            full_checksum(&mut hdr);
            check_decrement(hdr);
        }
    }

    #[test]
    fn decrement_ttl_leaves_zero_ttl_alone() {
        let mut buf = PING;
        buf[8] = 0;
        Ipv4Packet::new_checked(&mut buf[..])
            .unwrap()
            .fill_checksum();
        let before = buf;
        assert_eq!(
            Ipv4Packet::new_checked(&mut buf[..])
                .unwrap()
                .decrement_ttl(),
            0
        );
        assert_eq!(buf, before);
    }

    #[test]
    fn repr_parse_and_emit_round_trip() {
        let repr = Ipv4Repr::parse(&Ipv4Packet::new_checked(&PING[..]).unwrap()).unwrap();
        assert_eq!(
            repr,
            Ipv4Repr {
                src: Ipv4Addr::new(10, 244, 1, 7),
                dst: Ipv4Addr::new(8, 8, 8, 8),
                protocol: IpProtocol::ICMP,
                payload_len: 64,
                ttl: 64,
            }
        );
        let mut out = [0xEEu8; 84];
        repr.emit(&mut out).unwrap();
        let p = Ipv4Packet::new_checked(&out[..]).unwrap();
        assert!(p.verify_checksum() && p.dont_frag());
        assert_eq!((p.ident(), p.total_len(), p.header_len()), (0, 84, 20));
        assert_eq!(Ipv4Repr::parse(&p), Ok(repr));
        assert_eq!(repr.buffer_len(), 20);
        assert_eq!(repr.emit(&mut [0u8; 19]), Err(Ipv4Error::Truncated));
        let huge = Ipv4Repr {
            payload_len: 65516,
            ..repr
        };
        assert_eq!(huge.emit(&mut out), Err(Ipv4Error::BadTotalLen));
        let absurd = Ipv4Repr {
            payload_len: usize::MAX,
            ..repr
        };
        assert_eq!(absurd.emit(&mut out), Err(Ipv4Error::BadTotalLen));
        assert_eq!(
            Ipv4Repr::parse(&Ipv4Packet::new_unchecked(&PING[..10])),
            Err(Ipv4Error::Truncated)
        );
    }

    #[test]
    fn protocol_display() {
        assert_eq!(IpProtocol::ICMP.to_string(), "ICMP");
        assert_eq!(IpProtocol::TCP.to_string(), "TCP");
        assert_eq!(IpProtocol::UDP.to_string(), "UDP");
        assert_eq!(IpProtocol(132).to_string(), "proto 132");
    }
}
