//! ARP (RFC 826) for Ethernet hardware and IPv4 protocol addresses only, the one combination
//! a pod network carries. The switch answers requests for gateway and service addresses by
//! turning the request buffer into a reply in place ([`ArpPacket::make_reply`]).

use core::fmt;
use core::net::Ipv4Addr;

use crate::ethernet::{EtherType, MacAddr};

/// Field offsets of an Ethernet/IPv4 ARP packet (hlen 6, plen 4).
mod field {
    use crate::Field;
    pub const HTYPE: Field = 0..2;
    pub const PTYPE: Field = 2..4;
    pub const HLEN: usize = 4;
    pub const PLEN: usize = 5;
    pub const OPER: Field = 6..8;
    pub const SHA: Field = 8..14;
    pub const SPA: Field = 14..18;
    pub const THA: Field = 18..24;
    pub const TPA: Field = 24..28;
}

/// Length of an Ethernet/IPv4 ARP packet.
pub const LEN: usize = field::TPA.end;

/// Hardware type for Ethernet.
const HTYPE_ETHERNET: u16 = 1;

/// The ARP operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ArpOp {
    /// 1: who has `target_ip`?
    Request,
    /// 2: `sender_ip` is at `sender_hw`.
    Reply,
    /// Any other value (RARP, InARP, ...).
    Unknown(u16),
}

impl From<u16> for ArpOp {
    fn from(value: u16) -> ArpOp {
        match value {
            1 => ArpOp::Request,
            2 => ArpOp::Reply,
            other => ArpOp::Unknown(other),
        }
    }
}

impl From<ArpOp> for u16 {
    fn from(op: ArpOp) -> u16 {
        match op {
            ArpOp::Request => 1,
            ArpOp::Reply => 2,
            ArpOp::Unknown(other) => other,
        }
    }
}

/// Why a buffer is not an Ethernet/IPv4 ARP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArpError {
    /// Shorter than 28 bytes.
    Truncated,
    /// Hardware type is not Ethernet (1).
    BadHardwareType,
    /// Protocol type is not IPv4 (0x0800).
    BadProtocolType,
    /// Hardware address length is not 6.
    BadHardwareLen,
    /// Protocol address length is not 4.
    BadProtocolLen,
}

impl fmt::Display for ArpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ArpError::Truncated => "ARP packet shorter than the 28 bytes of Ethernet/IPv4 ARP",
            ArpError::BadHardwareType => "ARP hardware type is not Ethernet (1)",
            ArpError::BadProtocolType => "ARP protocol type is not IPv4 (0x0800)",
            ArpError::BadHardwareLen => "ARP hardware address length is not 6",
            ArpError::BadProtocolLen => "ARP protocol address length is not 4",
        })
    }
}

impl core::error::Error for ArpError {}

/// A zero-copy view of an Ethernet/IPv4 ARP packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> ArpPacket<T> {
    /// Wraps `buffer` without checking it; accessors panic if it is shorter than 28 bytes.
    pub const fn new_unchecked(buffer: T) -> ArpPacket<T> {
        ArpPacket { buffer }
    }

    /// Wraps `buffer` after checking its length and that it is Ethernet/IPv4 ARP.
    /// Trailing bytes (Ethernet padding) are allowed and ignored.
    pub fn new_checked(buffer: T) -> Result<ArpPacket<T>, ArpError> {
        let data = buffer.as_ref();
        if data.len() < LEN {
            return Err(ArpError::Truncated);
        }
        if crate::read_u16(data, field::HTYPE) != HTYPE_ETHERNET {
            return Err(ArpError::BadHardwareType);
        }
        if crate::read_u16(data, field::PTYPE) != EtherType::IPV4.0 {
            return Err(ArpError::BadProtocolType);
        }
        if data[field::HLEN] != 6 {
            return Err(ArpError::BadHardwareLen);
        }
        if data[field::PLEN] != 4 {
            return Err(ArpError::BadProtocolLen);
        }
        Ok(ArpPacket { buffer })
    }

    /// Returns the underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The operation.
    #[inline]
    pub fn operation(&self) -> ArpOp {
        ArpOp::from(crate::read_u16(self.buffer.as_ref(), field::OPER))
    }

    /// The sender hardware address.
    #[inline]
    pub fn sender_hw(&self) -> MacAddr {
        mac_at(self.buffer.as_ref(), field::SHA.start)
    }

    /// The sender protocol address.
    #[inline]
    pub fn sender_ip(&self) -> Ipv4Addr {
        Ipv4Addr::from(crate::read_u32(self.buffer.as_ref(), field::SPA))
    }

    /// The target hardware address (zero in a request).
    #[inline]
    pub fn target_hw(&self) -> MacAddr {
        mac_at(self.buffer.as_ref(), field::THA.start)
    }

    /// The target protocol address.
    #[inline]
    pub fn target_ip(&self) -> Ipv4Addr {
        Ipv4Addr::from(crate::read_u32(self.buffer.as_ref(), field::TPA))
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> ArpPacket<T> {
    /// Writes the fixed Ethernet/IPv4 preamble: htype 1, ptype 0x0800, hlen 6, plen 4.
    pub fn set_ethernet_ipv4(&mut self) {
        let data = self.buffer.as_mut();
        crate::write_u16(data, field::HTYPE, HTYPE_ETHERNET);
        crate::write_u16(data, field::PTYPE, EtherType::IPV4.0);
        data[field::HLEN] = 6;
        data[field::PLEN] = 4;
    }

    /// Sets the operation.
    #[inline]
    pub fn set_operation(&mut self, op: ArpOp) {
        crate::write_u16(self.buffer.as_mut(), field::OPER, op.into());
    }

    /// Sets the sender hardware address.
    #[inline]
    pub fn set_sender_hw(&mut self, addr: MacAddr) {
        self.buffer.as_mut()[field::SHA].copy_from_slice(&addr.0);
    }

    /// Sets the sender protocol address.
    #[inline]
    pub fn set_sender_ip(&mut self, addr: Ipv4Addr) {
        self.buffer.as_mut()[field::SPA].copy_from_slice(&addr.octets());
    }

    /// Sets the target hardware address.
    #[inline]
    pub fn set_target_hw(&mut self, addr: MacAddr) {
        self.buffer.as_mut()[field::THA].copy_from_slice(&addr.0);
    }

    /// Sets the target protocol address.
    #[inline]
    pub fn set_target_ip(&mut self, addr: Ipv4Addr) {
        self.buffer.as_mut()[field::TPA].copy_from_slice(&addr.octets());
    }

    /// Turns a request into its reply in place: the requester becomes the target, the
    /// requested address becomes the sender with `our_mac` as its hardware address, and the
    /// operation becomes Reply (RFC 826, "Packet Reception"). The Ethernet header around it is
    /// the caller's to rewrite.
    pub fn make_reply(&mut self, our_mac: MacAddr) {
        let requester_hw = self.sender_hw();
        let requester_ip = self.sender_ip();
        let wanted_ip = self.target_ip();
        self.set_operation(ArpOp::Reply);
        self.set_sender_hw(our_mac);
        self.set_sender_ip(wanted_ip);
        self.set_target_hw(requester_hw);
        self.set_target_ip(requester_ip);
    }
}

fn mac_at(data: &[u8], at: usize) -> MacAddr {
    MacAddr([
        data[at],
        data[at + 1],
        data[at + 2],
        data[at + 3],
        data[at + 4],
        data[at + 5],
    ])
}

/// An Ethernet/IPv4 ARP packet in parsed form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArpRepr {
    /// Request, reply or other.
    pub operation: ArpOp,
    /// Sender hardware address.
    pub sender_hw: MacAddr,
    /// Sender protocol address.
    pub sender_ip: Ipv4Addr,
    /// Target hardware address.
    pub target_hw: MacAddr,
    /// Target protocol address.
    pub target_ip: Ipv4Addr,
}

impl ArpRepr {
    /// Reads `packet`, re-validating it (a view made by `new_unchecked` is welcome).
    pub fn parse<T: AsRef<[u8]>>(packet: &ArpPacket<T>) -> Result<ArpRepr, ArpError> {
        let packet = ArpPacket::new_checked(packet.buffer.as_ref())?;
        Ok(ArpRepr {
            operation: packet.operation(),
            sender_hw: packet.sender_hw(),
            sender_ip: packet.sender_ip(),
            target_hw: packet.target_hw(),
            target_ip: packet.target_ip(),
        })
    }

    /// Bytes [`emit`](Self::emit) writes: 28.
    pub const fn buffer_len(&self) -> usize {
        LEN
    }

    /// Writes the packet into the start of `buf`.
    pub fn emit(&self, buf: &mut [u8]) -> Result<(), ArpError> {
        if buf.len() < LEN {
            return Err(ArpError::Truncated);
        }
        let mut packet = ArpPacket::new_unchecked(buf);
        packet.set_ethernet_ipv4();
        packet.set_operation(self.operation);
        packet.set_sender_hw(self.sender_hw);
        packet.set_sender_ip(self.sender_ip);
        packet.set_target_hw(self.target_hw);
        packet.set_target_ip(self.target_ip);
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Who has 10.244.1.1? Tell 10.244.1.7 (from 0a:58:0a:f4:01:07), padded to 46 bytes as on
    /// the wire.
    const REQUEST: [u8; 46] = [
        0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01, // eth/ipv4, request
        0x0a, 0x58, 0x0a, 0xf4, 0x01, 0x07, 0x0a, 0xf4, 0x01, 0x07, // sender
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x0a, 0xf4, 0x01, 0x01, // target
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // padding
    ];

    /// 10.244.1.1 is at 0a:58:0a:f4:01:01, to 10.244.1.7.
    const REPLY: [u8; 28] = [
        0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x02, // eth/ipv4, reply
        0x0a, 0x58, 0x0a, 0xf4, 0x01, 0x01, 0x0a, 0xf4, 0x01, 0x01, // sender
        0x0a, 0x58, 0x0a, 0xf4, 0x01, 0x07, 0x0a, 0xf4, 0x01, 0x07, // target
    ];

    const GW_MAC: MacAddr = MacAddr::new(0x0a, 0x58, 0x0a, 0xf4, 0x01, 0x01);

    #[test]
    fn request_fields_are_read() {
        let p = ArpPacket::new_checked(&REQUEST[..]).unwrap();
        assert_eq!(p.operation(), ArpOp::Request);
        assert_eq!(
            p.sender_hw(),
            MacAddr::new(0x0a, 0x58, 0x0a, 0xf4, 0x01, 0x07)
        );
        assert_eq!(p.sender_ip(), Ipv4Addr::new(10, 244, 1, 7));
        assert_eq!(p.target_hw(), MacAddr::ZERO);
        assert_eq!(p.target_ip(), Ipv4Addr::new(10, 244, 1, 1));
    }

    #[test]
    fn request_becomes_reply_in_place() {
        let mut buf = REQUEST;
        ArpPacket::new_checked(&mut buf[..])
            .unwrap()
            .make_reply(GW_MAC);
        assert_eq!(buf[..28], REPLY);
        assert!(buf[28..].iter().all(|&b| b == 0), "padding untouched");
    }

    #[test]
    fn every_error_variant_is_reported() {
        assert_eq!(
            ArpPacket::new_checked(&REQUEST[..27]),
            Err(ArpError::Truncated)
        );
        let cases = [
            (0, 0x06, ArpError::BadHardwareType),
            (2, 0x86, ArpError::BadProtocolType),
            (4, 0x08, ArpError::BadHardwareLen),
            (5, 0x10, ArpError::BadProtocolLen),
        ];
        for (at, value, err) in cases {
            let mut buf = REPLY;
            buf[at] = value;
            assert_eq!(ArpPacket::new_checked(&buf[..]), Err(err));
            assert_eq!(
                ArpRepr::parse(&ArpPacket::new_unchecked(&buf[..])),
                Err(err)
            );
        }
    }

    #[test]
    fn op_conversions_round_trip() {
        for v in [0u16, 1, 2, 3, 4, 8, 9, 0xFFFF] {
            assert_eq!(u16::from(ArpOp::from(v)), v);
        }
        assert_eq!(ArpOp::from(3), ArpOp::Unknown(3));
    }

    #[test]
    fn setters_round_trip() {
        let mut buf = [0u8; 28];
        let mut p = ArpPacket::new_unchecked(&mut buf[..]);
        p.set_ethernet_ipv4();
        p.set_operation(ArpOp::Unknown(9));
        p.set_sender_hw(GW_MAC);
        p.set_sender_ip(Ipv4Addr::new(1, 2, 3, 4));
        p.set_target_hw(MacAddr::BROADCAST);
        p.set_target_ip(Ipv4Addr::new(5, 6, 7, 8));
        let p = ArpPacket::new_checked(&buf[..]).unwrap();
        assert_eq!(p.operation(), ArpOp::Unknown(9));
        assert_eq!(p.sender_hw(), GW_MAC);
        assert_eq!(p.sender_ip(), Ipv4Addr::new(1, 2, 3, 4));
        assert_eq!(p.target_hw(), MacAddr::BROADCAST);
        assert_eq!(p.target_ip(), Ipv4Addr::new(5, 6, 7, 8));
    }

    #[test]
    fn repr_parse_and_emit_round_trip() {
        let repr = ArpRepr::parse(&ArpPacket::new_checked(&REPLY[..]).unwrap()).unwrap();
        assert_eq!(
            repr,
            ArpRepr {
                operation: ArpOp::Reply,
                sender_hw: GW_MAC,
                sender_ip: Ipv4Addr::new(10, 244, 1, 1),
                target_hw: MacAddr::new(0x0a, 0x58, 0x0a, 0xf4, 0x01, 0x07),
                target_ip: Ipv4Addr::new(10, 244, 1, 7),
            }
        );
        let mut out = [0xEEu8; 28];
        repr.emit(&mut out).unwrap();
        assert_eq!(out, REPLY);
        assert_eq!(repr.buffer_len(), 28);
        assert_eq!(repr.emit(&mut [0u8; 27]), Err(ArpError::Truncated));
    }
}
