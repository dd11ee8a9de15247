//! ICMPv4 messages (RFC 792): echo, which the switch answers for gateway addresses, and the
//! errors it generates or translates (Destination Unreachable incl. Fragmentation Needed with
//! the RFC 1191 next-hop MTU, Time Exceeded). The view covers the IPv4 payload.

use core::fmt;

use crate::checksum;
use crate::ipv4::Ipv4Packet;

/// Field offsets of the ICMPv4 header.
mod field {
    use crate::Field;
    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    /// Type and code as one 16-bit word, as the checksum sees them.
    pub const TYPE_CODE: Field = 0..2;
    pub const CHECKSUM: Field = 2..4;
    /// "Rest of header", echo form.
    pub const ECHO_IDENT: Field = 4..6;
    pub const ECHO_SEQ_NO: Field = 6..8;
    /// "Rest of header", Fragmentation Needed form (RFC 1191 section 4): unused, then MTU.
    pub const UNUSED: Field = 4..6;
    pub const NEXT_HOP_MTU: Field = 6..8;
    pub const DATA: usize = 8;
}

/// Length of the ICMPv4 header (type, code, checksum and the 4-byte rest of header).
pub const HEADER_LEN: usize = field::DATA;

/// The ICMPv4 message type.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct Icmpv4Type(pub u8);

impl Icmpv4Type {
    /// Echo Reply.
    pub const ECHO_REPLY: Icmpv4Type = Icmpv4Type(0);
    /// Destination Unreachable; codes in [`unreachable`](mod@unreachable).
    pub const DEST_UNREACHABLE: Icmpv4Type = Icmpv4Type(3);
    /// Source Quench (deprecated, RFC 6633).
    pub const SOURCE_QUENCH: Icmpv4Type = Icmpv4Type(4);
    /// Redirect.
    pub const REDIRECT: Icmpv4Type = Icmpv4Type(5);
    /// Echo Request.
    pub const ECHO_REQUEST: Icmpv4Type = Icmpv4Type(8);
    /// Time Exceeded; codes in [`time_exceeded`].
    pub const TIME_EXCEEDED: Icmpv4Type = Icmpv4Type(11);
    /// Parameter Problem.
    pub const PARAM_PROBLEM: Icmpv4Type = Icmpv4Type(12);

    /// Whether this is an error message (3, 4, 5, 11, 12), which quotes the offending
    /// datagram and must never be answered with another error (RFC 1122 3.2.2).
    pub const fn is_error(self) -> bool {
        matches!(self.0, 3 | 4 | 5 | 11 | 12)
    }
}

impl fmt::Display for Icmpv4Type {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Icmpv4Type::ECHO_REPLY => f.write_str("echo reply"),
            Icmpv4Type::DEST_UNREACHABLE => f.write_str("destination unreachable"),
            Icmpv4Type::SOURCE_QUENCH => f.write_str("source quench"),
            Icmpv4Type::REDIRECT => f.write_str("redirect"),
            Icmpv4Type::ECHO_REQUEST => f.write_str("echo request"),
            Icmpv4Type::TIME_EXCEEDED => f.write_str("time exceeded"),
            Icmpv4Type::PARAM_PROBLEM => f.write_str("parameter problem"),
            Icmpv4Type(other) => write!(f, "type {other}"),
        }
    }
}

/// Codes of [`Icmpv4Type::DEST_UNREACHABLE`].
pub mod unreachable {
    /// Net unreachable.
    pub const NET: u8 = 0;
    /// Host unreachable.
    pub const HOST: u8 = 1;
    /// Protocol unreachable.
    pub const PROTOCOL: u8 = 2;
    /// Port unreachable.
    pub const PORT: u8 = 3;
    /// Fragmentation needed and DF set; carries the next-hop MTU (RFC 1191).
    pub const FRAG_NEEDED: u8 = 4;
    /// Communication administratively prohibited (RFC 1812), what a policy drop answers.
    pub const ADMIN_PROHIBITED: u8 = 13;
}

/// Codes of [`Icmpv4Type::TIME_EXCEEDED`].
pub mod time_exceeded {
    /// TTL exceeded in transit.
    pub const TTL: u8 = 0;
    /// Fragment reassembly time exceeded.
    pub const REASSEMBLY: u8 = 1;
}

/// Why a buffer is not an ICMPv4 message podswitch understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Icmpv4Error {
    /// Shorter than the 8-byte header.
    Truncated,
    /// A type [`Icmpv4Repr`] does not model (only from `Icmpv4Repr::parse`).
    UnsupportedType,
    /// An error message whose quoted datagram is not an IPv4 header followed by at least
    /// 8 bytes (only from [`quoted_header`]).
    BadQuote,
}

impl fmt::Display for Icmpv4Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Icmpv4Error::Truncated => "ICMPv4 message shorter than its 8-byte header",
            Icmpv4Error::UnsupportedType => {
                "ICMPv4 type is not echo, destination unreachable or time exceeded"
            }
            Icmpv4Error::BadQuote => {
                "ICMPv4 error does not quote an IPv4 header followed by 8 bytes"
            }
        })
    }
}

impl core::error::Error for Icmpv4Error {}

/// A zero-copy view of an ICMPv4 message. ICMP has no length field: the message is the
/// whole buffer, so pass exactly the IPv4 payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Icmpv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Icmpv4Packet<T> {
    /// Wraps `buffer` without checking it; accessors panic if it is shorter than 8 bytes.
    pub const fn new_unchecked(buffer: T) -> Icmpv4Packet<T> {
        Icmpv4Packet { buffer }
    }

    /// Wraps `buffer` after checking it holds the 8-byte header. Any type is accepted.
    pub fn new_checked(buffer: T) -> Result<Icmpv4Packet<T>, Icmpv4Error> {
        if buffer.as_ref().len() < HEADER_LEN {
            return Err(Icmpv4Error::Truncated);
        }
        Ok(Icmpv4Packet { buffer })
    }

    /// Returns the underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The message type.
    #[inline]
    pub fn msg_type(&self) -> Icmpv4Type {
        Icmpv4Type(self.buffer.as_ref()[field::TYPE])
    }

    /// The code.
    #[inline]
    pub fn code(&self) -> u8 {
        self.buffer.as_ref()[field::CODE]
    }

    /// Whether the message is an error (see [`Icmpv4Type::is_error`]).
    #[inline]
    pub fn is_error(&self) -> bool {
        self.msg_type().is_error()
    }

    /// The checksum field.
    #[inline]
    pub fn checksum(&self) -> u16 {
        crate::read_u16(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// The echo identifier (meaningful for echo request/reply).
    #[inline]
    pub fn echo_ident(&self) -> u16 {
        crate::read_u16(self.buffer.as_ref(), field::ECHO_IDENT)
    }

    /// The echo sequence number (meaningful for echo request/reply).
    #[inline]
    pub fn echo_seq_no(&self) -> u16 {
        crate::read_u16(self.buffer.as_ref(), field::ECHO_SEQ_NO)
    }

    /// The next-hop MTU (meaningful for Fragmentation Needed, RFC 1191).
    #[inline]
    pub fn next_hop_mtu(&self) -> u16 {
        crate::read_u16(self.buffer.as_ref(), field::NEXT_HOP_MTU)
    }

    /// Everything after the 8-byte header: echo data, or the quoted datagram of an error.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        let data = self.buffer.as_ref();
        &data[crate::clamp(field::DATA, data.len(), data.len())]
    }

    /// Whether the checksum over the whole message is correct.
    pub fn verify_checksum(&self) -> bool {
        checksum::sum(self.buffer.as_ref()) == 0xFFFF
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Icmpv4Packet<&'a T> {
    /// The payload, borrowed for as long as the underlying buffer rather than the view.
    #[inline]
    pub fn into_payload(self) -> &'a [u8] {
        let data = self.buffer.as_ref();
        &data[crate::clamp(field::DATA, data.len(), data.len())]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Icmpv4Packet<T> {
    /// Sets the message type (checksum not updated).
    #[inline]
    pub fn set_msg_type(&mut self, value: Icmpv4Type) {
        self.buffer.as_mut()[field::TYPE] = value.0;
    }

    /// Sets the code (checksum not updated).
    #[inline]
    pub fn set_code(&mut self, value: u8) {
        self.buffer.as_mut()[field::CODE] = value;
    }

    /// Sets the checksum field.
    #[inline]
    pub fn set_checksum(&mut self, value: u16) {
        crate::write_u16(self.buffer.as_mut(), field::CHECKSUM, value);
    }

    /// Sets the echo identifier.
    #[inline]
    pub fn set_echo_ident(&mut self, value: u16) {
        crate::write_u16(self.buffer.as_mut(), field::ECHO_IDENT, value);
    }

    /// Sets the echo sequence number.
    #[inline]
    pub fn set_echo_seq_no(&mut self, value: u16) {
        crate::write_u16(self.buffer.as_mut(), field::ECHO_SEQ_NO, value);
    }

    /// Sets the next-hop MTU of a Fragmentation Needed message and zeroes the unused half of
    /// the rest of header before it, as RFC 1191 requires.
    #[inline]
    pub fn set_next_hop_mtu(&mut self, mtu: u16) {
        let data = self.buffer.as_mut();
        crate::write_u16(data, field::UNUSED, 0);
        crate::write_u16(data, field::NEXT_HOP_MTU, mtu);
    }

    /// Recomputes the checksum over the whole message (header and payload).
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let sum = checksum::checksum(self.buffer.as_ref());
        self.set_checksum(sum);
    }

    /// Turns an echo request into its reply in place: the type becomes Echo Reply and the
    /// checksum is updated incrementally; identifier, sequence number and data are kept
    /// (RFC 792). The IPv4 header around it is the caller's to rewrite.
    pub fn make_echo_reply(&mut self) {
        let data = self.buffer.as_mut();
        let old = crate::read_u16(data, field::TYPE_CODE);
        data[field::TYPE] = Icmpv4Type::ECHO_REPLY.0;
        let new = crate::read_u16(data, field::TYPE_CODE);
        let csum = checksum::update_u16(crate::read_u16(data, field::CHECKSUM), old, new);
        // An echo reply whose identifier, sequence number and data are all zero sums to zero,
        // and the incremental update then gives 0x0000, which does not verify (see
        // `update_u16`). A result of 0x0000 means the rest sums to ±0, and 0xFFFF verifies in
        // both cases, so use it.
        let csum = if csum == 0 { 0xFFFF } else { csum };
        crate::write_u16(data, field::CHECKSUM, csum);
    }

    /// The payload, mutably.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let data = self.buffer.as_mut();
        let len = data.len();
        &mut data[crate::clamp(field::DATA, len, len)]
    }
}

/// The part of an offending IPv4 datagram that an ICMP error quotes: its header plus the first
/// 8 bytes of payload (RFC 792), clipped to what `datagram` holds. Not validated: a datagram
/// too malformed to have a header yields what is there.
pub fn quote(datagram: &[u8]) -> &[u8] {
    let header_len = datagram.first().map_or(0, |b| usize::from(b & 0x0F) * 4);
    &datagram[..datagram.len().min(header_len + 8)]
}

/// The quoted datagram of an error message (its [`payload`](Icmpv4Packet::payload)), checked
/// to be what RFC 792 says an error carries: an IPv4 header (version 4, IHL at least 5) and at
/// least 8 bytes after it. Its total length and checksum are not checked: the quote is cut
/// short by design, and its header may have been rewritten by NAT on the way. The view's
/// fixed fields and [`Ipv4Packet::payload`] (the quoted transport bytes) are safe to read.
pub fn quoted_header(quote: &[u8]) -> Result<Ipv4Packet<&[u8]>, Icmpv4Error> {
    let header_len = match quote.first() {
        Some(&b) if b >> 4 == 4 && b & 0x0F >= 5 => usize::from(b & 0x0F) * 4,
        _ => return Err(Icmpv4Error::BadQuote),
    };
    if quote.len() < header_len + 8 {
        return Err(Icmpv4Error::BadQuote);
    }
    Ok(Ipv4Packet::new_unchecked(quote))
}

/// The ICMPv4 messages podswitch sends or answers, in parsed form. `data` is the echo payload
/// or, for errors, the quoted datagram (see [`quote`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Icmpv4Repr<'a> {
    /// Echo Request (type 8).
    EchoRequest {
        /// Identifier.
        ident: u16,
        /// Sequence number.
        seq_no: u16,
        /// Echo data.
        data: &'a [u8],
    },
    /// Echo Reply (type 0).
    EchoReply {
        /// Identifier.
        ident: u16,
        /// Sequence number.
        seq_no: u16,
        /// Echo data.
        data: &'a [u8],
    },
    /// Destination Unreachable (type 3).
    DestUnreachable {
        /// One of [`unreachable`](mod@unreachable).
        code: u8,
        /// Next-hop MTU for [`unreachable::FRAG_NEEDED`], otherwise 0.
        next_hop_mtu: u16,
        /// The quoted datagram.
        data: &'a [u8],
    },
    /// Time Exceeded (type 11).
    TimeExceeded {
        /// One of [`time_exceeded`].
        code: u8,
        /// The quoted datagram.
        data: &'a [u8],
    },
}

impl<'a> Icmpv4Repr<'a> {
    /// Reads `packet`. The checksum is not verified; other types give `UnsupportedType`.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(
        packet: &Icmpv4Packet<&'a T>,
    ) -> Result<Icmpv4Repr<'a>, Icmpv4Error> {
        let packet = Icmpv4Packet::new_checked(packet.buffer.as_ref())?;
        let (ident, seq_no) = (packet.echo_ident(), packet.echo_seq_no());
        let code = packet.code();
        let data = packet.clone().into_payload();
        match packet.msg_type() {
            Icmpv4Type::ECHO_REQUEST => Ok(Icmpv4Repr::EchoRequest {
                ident,
                seq_no,
                data,
            }),
            Icmpv4Type::ECHO_REPLY => Ok(Icmpv4Repr::EchoReply {
                ident,
                seq_no,
                data,
            }),
            Icmpv4Type::DEST_UNREACHABLE => Ok(Icmpv4Repr::DestUnreachable {
                code,
                next_hop_mtu: if code == unreachable::FRAG_NEEDED {
                    packet.next_hop_mtu()
                } else {
                    0
                },
                data,
            }),
            Icmpv4Type::TIME_EXCEEDED => Ok(Icmpv4Repr::TimeExceeded { code, data }),
            _ => Err(Icmpv4Error::UnsupportedType),
        }
    }

    /// Bytes [`emit`](Self::emit) writes: the 8-byte header plus `data`.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN + self.data().len()
    }

    const fn data(&self) -> &'a [u8] {
        match *self {
            Icmpv4Repr::EchoRequest { data, .. }
            | Icmpv4Repr::EchoReply { data, .. }
            | Icmpv4Repr::DestUnreachable { data, .. }
            | Icmpv4Repr::TimeExceeded { data, .. } => data,
        }
    }

    /// Writes the message into the start of `buf` with its checksum, which covers exactly
    /// [`buffer_len`](Self::buffer_len) bytes. Fails with `Truncated` if `buf` is shorter.
    pub fn emit(&self, buf: &mut [u8]) -> Result<(), Icmpv4Error> {
        let buf = buf
            .get_mut(..self.buffer_len())
            .ok_or(Icmpv4Error::Truncated)?;
        let mut packet = Icmpv4Packet::new_unchecked(buf);
        let (msg_type, code) = match *self {
            Icmpv4Repr::EchoRequest { ident, seq_no, .. } => {
                packet.set_echo_ident(ident);
                packet.set_echo_seq_no(seq_no);
                (Icmpv4Type::ECHO_REQUEST, 0)
            }
            Icmpv4Repr::EchoReply { ident, seq_no, .. } => {
                packet.set_echo_ident(ident);
                packet.set_echo_seq_no(seq_no);
                (Icmpv4Type::ECHO_REPLY, 0)
            }
            Icmpv4Repr::DestUnreachable {
                code, next_hop_mtu, ..
            } => {
                packet.set_next_hop_mtu(next_hop_mtu);
                (Icmpv4Type::DEST_UNREACHABLE, code)
            }
            Icmpv4Repr::TimeExceeded { code, .. } => {
                packet.set_next_hop_mtu(0); // unused, must be zero
                (Icmpv4Type::TIME_EXCEEDED, code)
            }
        };
        packet.set_msg_type(msg_type);
        packet.set_code(code);
        packet.payload_mut().copy_from_slice(self.data());
        packet.fill_checksum();
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::string::ToString;

    /// Time exceeded's quote of a UDP datagram 10.244.1.2:4000 → 10.244.1.3:5000.
    const UDP_QUOTE: [u8; 28] = [
        0x45, 0x00, 0x00, 0x2e, 0x12, 0x34, 0x40, 0x00, 0x01, 0x11, 0x00, 0x00, 0x0a, 0xf4, 0x01,
        0x02, 0x0a, 0xf4, 0x01, 0x03, 0x0f, 0xa0, 0x13, 0x88, 0x00, 0x1a, 0x00, 0x00,
    ];

    #[test]
    fn quoted_header_accepts_an_ipv4_header_and_8_bytes() {
        let ip = quoted_header(&UDP_QUOTE).unwrap();
        assert_eq!(ip.protocol(), crate::IpProtocol::UDP);
        assert_eq!(ip.payload(), &UDP_QUOTE[20..28]);
    }

    #[test]
    fn quoted_header_rejects_garbage_short_quotes_and_bad_versions() {
        assert_eq!(quoted_header(&[]), Err(Icmpv4Error::BadQuote));
        assert_eq!(quoted_header(&UDP_QUOTE[..27]), Err(Icmpv4Error::BadQuote));
        let mut q = UDP_QUOTE;
        q[0] = 0x65;
        assert_eq!(quoted_header(&q), Err(Icmpv4Error::BadQuote));
        q[0] = 0x44;
        assert_eq!(quoted_header(&q), Err(Icmpv4Error::BadQuote));
        q[0] = 0x46; // 24-byte header: 4 option bytes, then only 4 transport bytes
        assert_eq!(quoted_header(&q), Err(Icmpv4Error::BadQuote));
        assert!(Icmpv4Error::BadQuote.to_string().contains("quote"));
    }

    /// The ICMP part of `ping -c1 8.8.8.8` (Linux: 8-byte timestamp then 0x10..=0x3f).
    const ECHO_REQUEST: [u8; 64] = [
        0x08, 0x00, 0xd1, 0x7c, 0x00, 0x2a, 0x00, 0x01, 0x5f, 0x2e, 0x1b, 0x66, 0x00, 0x00, 0x00,
        0x00, 0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x1b, 0x1c, 0x1d,
        0x1e, 0x1f, 0x20, 0x21, 0x22, 0x23, 0x24, 0x25, 0x26, 0x27, 0x28, 0x29, 0x2a, 0x2b, 0x2c,
        0x2d, 0x2e, 0x2f, 0x30, 0x31, 0x32, 0x33, 0x34, 0x35, 0x36, 0x37, 0x38, 0x39, 0x3a, 0x3b,
        0x3c, 0x3d, 0x3e, 0x3f,
    ];

    /// The IPv4 header of that echo request, as an error would quote it.
    const PING_IP_HEADER: [u8; 20] = [
        0x45, 0x00, 0x00, 0x54, 0xa6, 0xf2, 0x40, 0x00, 0x40, 0x01, 0x77, 0xac, 0x0a, 0xf4, 0x01,
        0x07, 0x08, 0x08, 0x08, 0x08,
    ];

    #[test]
    fn echo_request_fields_and_known_checksum() {
        let p = Icmpv4Packet::new_checked(&ECHO_REQUEST[..]).unwrap();
        assert_eq!(p.msg_type(), Icmpv4Type::ECHO_REQUEST);
        assert_eq!(p.code(), 0);
        assert_eq!(p.checksum(), 0xd17c);
        assert!(p.verify_checksum());
        assert!(!p.is_error());
        assert_eq!((p.echo_ident(), p.echo_seq_no()), (0x2a, 1));
        assert_eq!(p.payload(), &ECHO_REQUEST[8..]);
        let mut buf = ECHO_REQUEST;
        let mut p = Icmpv4Packet::new_checked(&mut buf[..]).unwrap();
        p.set_checksum(0x1234);
        assert!(!p.verify_checksum());
        p.fill_checksum();
        assert_eq!(p.checksum(), 0xd17c);
    }

    #[test]
    fn echo_request_becomes_reply_with_incremental_checksum() {
        let mut buf = ECHO_REQUEST;
        let mut p = Icmpv4Packet::new_checked(&mut buf[..]).unwrap();
        p.make_echo_reply();
        assert_eq!(p.msg_type(), Icmpv4Type::ECHO_REPLY);
        assert_eq!(p.checksum(), 0xd97c);
        assert!(p.verify_checksum());
        assert_eq!(buf[4..], ECHO_REQUEST[4..]);
    }

    #[test]
    fn short_buffer_is_truncated() {
        assert_eq!(
            Icmpv4Packet::new_checked(&ECHO_REQUEST[..7]),
            Err(Icmpv4Error::Truncated)
        );
        let p = Icmpv4Packet::new_checked(&ECHO_REQUEST[..8]).unwrap();
        assert!(p.payload().is_empty());
        assert_eq!(
            Icmpv4Repr::parse(&Icmpv4Packet::new_unchecked(&ECHO_REQUEST[..3])),
            Err(Icmpv4Error::Truncated)
        );
    }

    #[test]
    fn error_types_are_classified() {
        for t in 0..=255u8 {
            assert_eq!(
                Icmpv4Type(t).is_error(),
                [3, 4, 5, 11, 12].contains(&t),
                "type {t}"
            );
        }
        assert_eq!(Icmpv4Type::TIME_EXCEEDED.to_string(), "time exceeded");
        assert_eq!(Icmpv4Type(42).to_string(), "type 42");
    }

    #[test]
    fn setters_round_trip() {
        let mut buf = [0u8; 12];
        let mut p = Icmpv4Packet::new_checked(&mut buf[..]).unwrap();
        p.set_msg_type(Icmpv4Type::ECHO_REPLY);
        p.set_code(7);
        p.set_echo_ident(0xabcd);
        p.set_echo_seq_no(0x0102);
        p.payload_mut().copy_from_slice(b"ping");
        p.fill_checksum();
        assert!(p.verify_checksum());
        assert_eq!((p.msg_type(), p.code()), (Icmpv4Type::ECHO_REPLY, 7));
        assert_eq!((p.echo_ident(), p.echo_seq_no()), (0xabcd, 0x0102));
        assert_eq!(p.payload(), b"ping");
        p.set_next_hop_mtu(1450);
        assert_eq!((p.next_hop_mtu(), p.echo_ident()), (1450, 0));
    }

    #[test]
    fn frag_needed_is_emitted_with_mtu_and_quote() {
        let mut datagram = [0u8; 1500];
        datagram[..20].copy_from_slice(&PING_IP_HEADER);
        datagram[20..28].copy_from_slice(&ECHO_REQUEST[..8]);
        let quoted = quote(&datagram);
        assert_eq!(quoted.len(), 28);
        let repr = Icmpv4Repr::DestUnreachable {
            code: unreachable::FRAG_NEEDED,
            next_hop_mtu: 1450,
            data: quoted,
        };
        let mut out = [0xEEu8; 40];
        repr.emit(&mut out).unwrap();
        assert_eq!(repr.buffer_len(), 36);
        assert_eq!(&out[..8], &[3, 4, out[2], out[3], 0, 0, 0x05, 0xaa]);
        assert_eq!(out[36..], [0xEE; 4], "emit writes only buffer_len bytes");
        let p = Icmpv4Packet::new_checked(&out[..36]).unwrap();
        assert!(p.verify_checksum() && p.is_error());
        assert_eq!(Icmpv4Repr::parse(&p), Ok(repr));
    }

    #[test]
    fn quote_clips_to_the_datagram() {
        assert!(quote(&[]).is_empty());
        assert_eq!(quote(&PING_IP_HEADER[..10]).len(), 10);
        let mut with_options = [0u8; 40];
        with_options[0] = 0x46;
        assert_eq!(quote(&with_options).len(), 32);
    }

    #[test]
    fn repr_round_trips_every_variant() {
        let data = &ECHO_REQUEST[8..];
        let reprs = [
            Icmpv4Repr::EchoRequest {
                ident: 0x2a,
                seq_no: 1,
                data,
            },
            Icmpv4Repr::EchoReply {
                ident: 0x2a,
                seq_no: 1,
                data,
            },
            Icmpv4Repr::DestUnreachable {
                code: unreachable::PORT,
                next_hop_mtu: 0,
                data,
            },
            Icmpv4Repr::DestUnreachable {
                code: unreachable::ADMIN_PROHIBITED,
                next_hop_mtu: 0,
                data,
            },
            Icmpv4Repr::TimeExceeded {
                code: time_exceeded::TTL,
                data,
            },
        ];
        for repr in reprs {
            let mut out = [0u8; 64];
            repr.emit(&mut out).unwrap();
            let p = Icmpv4Packet::new_checked(&out[..]).unwrap();
            assert!(p.verify_checksum());
            assert_eq!(Icmpv4Repr::parse(&p), Ok(repr));
            assert_eq!(repr.emit(&mut [0u8; 63]), Err(Icmpv4Error::Truncated));
        }
        let p = Icmpv4Packet::new_checked(&ECHO_REQUEST[..]).unwrap();
        assert_eq!(Icmpv4Repr::parse(&p), Ok(reprs[0]));
        let mut out = [0u8; 64];
        reprs[0].emit(&mut out).unwrap();
        assert_eq!(out, ECHO_REQUEST);
    }

    #[test]
    fn unmodelled_types_are_unsupported() {
        let mut buf = ECHO_REQUEST;
        buf[0] = Icmpv4Type::REDIRECT.0;
        let p = Icmpv4Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(Icmpv4Repr::parse(&p), Err(Icmpv4Error::UnsupportedType));
        assert!(Icmpv4Error::UnsupportedType.to_string().contains("echo"));
    }

    /// Found by fuzzing: a request with identifier, sequence and data all zero.
    #[test]
    fn echo_reply_of_an_all_zero_request_verifies() {
        let mut msg = [0x08, 0x00, 0xf7, 0xff, 0, 0, 0, 0];
        let mut icmp = Icmpv4Packet::new_checked(&mut msg[..]).unwrap();
        assert!(icmp.verify_checksum());
        icmp.make_echo_reply();
        assert!(icmp.verify_checksum(), "{msg:02x?}");
        assert_eq!(msg, [0, 0, 0xff, 0xff, 0, 0, 0, 0]);
    }
}
