//! Ethernet II frames (IEEE 802.3 / RFC 894): the outermost header of every packet a port
//! hands to the pipeline, plus the MAC address and EtherType value types. 802.1Q tags are not
//! parsed here; a tagged frame shows `EtherType::VLAN`.

use core::fmt;
use core::str::FromStr;

/// Field offsets of the Ethernet II header.
mod field {
    use crate::Field;
    pub const DESTINATION: Field = 0..6;
    pub const SOURCE: Field = 6..12;
    pub const ETHERTYPE: Field = 12..14;
    pub const PAYLOAD: usize = 14;
}

/// Length of the Ethernet II header (no FCS, no VLAN tag).
pub const HEADER_LEN: usize = field::PAYLOAD;

/// A 48-bit IEEE 802 MAC address.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// `ff:ff:ff:ff:ff:ff`.
    pub const BROADCAST: MacAddr = MacAddr([0xFF; 6]);
    /// `00:00:00:00:00:00`.
    pub const ZERO: MacAddr = MacAddr([0; 6]);

    /// The address `a:b:c:d:e:f`.
    pub const fn new(a: u8, b: u8, c: u8, d: u8, e: u8, f: u8) -> MacAddr {
        MacAddr([a, b, c, d, e, f])
    }

    /// The six octets, in wire order.
    pub const fn octets(&self) -> [u8; 6] {
        self.0
    }

    /// Whether this is the broadcast address.
    pub const fn is_broadcast(&self) -> bool {
        matches!(self.0, [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF])
    }

    /// Whether the I/G bit is set (group address); true for broadcast too.
    pub const fn is_multicast(&self) -> bool {
        self.0[0] & 0x01 != 0
    }

    /// Whether this is an individual (unicast) address: neither multicast nor broadcast.
    pub const fn is_unicast(&self) -> bool {
        !self.is_multicast()
    }

    /// Whether the U/L bit is set (locally administered, as generated pod MACs are).
    pub const fn is_local(&self) -> bool {
        self.0[0] & 0x02 != 0
    }
}

impl From<[u8; 6]> for MacAddr {
    fn from(octets: [u8; 6]) -> MacAddr {
        MacAddr(octets)
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

impl fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MacAddr({self})")
    }
}

/// The error from parsing a [`MacAddr`] that is not six colon-separated pairs of hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MacAddrParseError;

impl fmt::Display for MacAddrParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("invalid MAC address: expected six colon-separated pairs of hex digits, like 02:42:ac:11:00:02")
    }
}

impl core::error::Error for MacAddrParseError {}

impl FromStr for MacAddr {
    type Err = MacAddrParseError;

    /// Parses `aa:bb:cc:dd:ee:ff` (either case, exactly two digits per octet).
    fn from_str(s: &str) -> Result<MacAddr, MacAddrParseError> {
        let mut octets = [0u8; 6];
        let mut parts = s.split(':');
        for octet in &mut octets {
            let part = parts.next().ok_or(MacAddrParseError)?;
            // from_str_radix alone would accept a leading '+'.
            if part.len() != 2 || !part.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(MacAddrParseError);
            }
            *octet = u8::from_str_radix(part, 16).map_err(|_| MacAddrParseError)?;
        }
        if parts.next().is_some() {
            return Err(MacAddrParseError);
        }
        Ok(MacAddr(octets))
    }
}

/// The EtherType field: which protocol the Ethernet payload carries.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct EtherType(pub u16);

impl EtherType {
    /// Internet Protocol version 4.
    pub const IPV4: EtherType = EtherType(0x0800);
    /// Address Resolution Protocol.
    pub const ARP: EtherType = EtherType(0x0806);
    /// Internet Protocol version 6.
    pub const IPV6: EtherType = EtherType(0x86DD);
    /// IEEE 802.1Q VLAN tag.
    pub const VLAN: EtherType = EtherType(0x8100);
}

impl fmt::Display for EtherType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            EtherType::IPV4 => f.write_str("IPv4"),
            EtherType::ARP => f.write_str("ARP"),
            EtherType::IPV6 => f.write_str("IPv6"),
            EtherType::VLAN => f.write_str("802.1Q"),
            EtherType(other) => write!(f, "0x{other:04x}"),
        }
    }
}

/// Why a buffer is not an Ethernet frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EthernetError {
    /// Shorter than the 14-byte header.
    Truncated,
}

impl fmt::Display for EthernetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EthernetError::Truncated => {
                f.write_str("Ethernet frame shorter than its 14-byte header")
            }
        }
    }
}

impl core::error::Error for EthernetError {}

/// A zero-copy view of an Ethernet II frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EthernetFrame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> EthernetFrame<T> {
    /// Wraps `buffer` without checking it; accessors panic if it is shorter than 14 bytes.
    pub const fn new_unchecked(buffer: T) -> EthernetFrame<T> {
        EthernetFrame { buffer }
    }

    /// Wraps `buffer` after checking it holds a whole header.
    pub fn new_checked(buffer: T) -> Result<EthernetFrame<T>, EthernetError> {
        if buffer.as_ref().len() < HEADER_LEN {
            return Err(EthernetError::Truncated);
        }
        Ok(EthernetFrame { buffer })
    }

    /// Returns the underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The buffer length needed for a frame with `payload_len` bytes of payload.
    pub const fn buffer_len(payload_len: usize) -> usize {
        HEADER_LEN + payload_len
    }

    /// The destination address.
    #[inline]
    pub fn dst(&self) -> MacAddr {
        mac_at(self.buffer.as_ref(), field::DESTINATION.start)
    }

    /// The source address.
    #[inline]
    pub fn src(&self) -> MacAddr {
        mac_at(self.buffer.as_ref(), field::SOURCE.start)
    }

    /// The EtherType.
    #[inline]
    pub fn ethertype(&self) -> EtherType {
        EtherType(crate::read_u16(self.buffer.as_ref(), field::ETHERTYPE))
    }

    /// Everything after the header (including any padding up to the 60-byte minimum).
    #[inline]
    pub fn payload(&self) -> &[u8] {
        let data = self.buffer.as_ref();
        &data[crate::clamp(field::PAYLOAD, data.len(), data.len())]
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> EthernetFrame<&'a T> {
    /// The payload, borrowed for as long as the underlying buffer rather than the view.
    #[inline]
    pub fn into_payload(self) -> &'a [u8] {
        let data = self.buffer.as_ref();
        &data[crate::clamp(field::PAYLOAD, data.len(), data.len())]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> EthernetFrame<T> {
    /// Sets the destination address.
    #[inline]
    pub fn set_dst(&mut self, addr: MacAddr) {
        self.buffer.as_mut()[field::DESTINATION].copy_from_slice(&addr.0);
    }

    /// Sets the source address.
    #[inline]
    pub fn set_src(&mut self, addr: MacAddr) {
        self.buffer.as_mut()[field::SOURCE].copy_from_slice(&addr.0);
    }

    /// Sets the EtherType.
    #[inline]
    pub fn set_ethertype(&mut self, ethertype: EtherType) {
        crate::write_u16(self.buffer.as_mut(), field::ETHERTYPE, ethertype.0);
    }

    /// The payload, mutably.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let data = self.buffer.as_mut();
        let len = data.len();
        &mut data[crate::clamp(field::PAYLOAD, len, len)]
    }
}

#[inline]
fn mac_at(data: &[u8], at: usize) -> MacAddr {
    // One bounds check for the six bytes, then a plain copy.
    let mut mac = [0u8; 6];
    mac.copy_from_slice(&data[at..at + 6]);
    MacAddr(mac)
}

/// An Ethernet II header in parsed form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EthernetRepr {
    /// Source address.
    pub src: MacAddr,
    /// Destination address.
    pub dst: MacAddr,
    /// Payload protocol.
    pub ethertype: EtherType,
}

impl EthernetRepr {
    /// Reads the header of `frame`.
    pub fn parse<T: AsRef<[u8]>>(frame: &EthernetFrame<T>) -> Result<EthernetRepr, EthernetError> {
        if frame.buffer.as_ref().len() < HEADER_LEN {
            return Err(EthernetError::Truncated);
        }
        Ok(EthernetRepr {
            src: frame.src(),
            dst: frame.dst(),
            ethertype: frame.ethertype(),
        })
    }

    /// Bytes [`emit`](Self::emit) writes: the 14-byte header.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the header into the start of `buf`, leaving the rest alone.
    pub fn emit(&self, buf: &mut [u8]) -> Result<(), EthernetError> {
        let mut frame = EthernetFrame::new_checked(buf)?;
        frame.set_dst(self.dst);
        frame.set_src(self.src);
        frame.set_ethertype(self.ethertype);
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::string::ToString;

    /// Start of an ARP request frame from a capture: who-has 10.0.0.2 tell 10.0.0.1.
    const FRAME: [u8; 18] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, // dst
        0x02, 0x42, 0xac, 0x11, 0x00, 0x02, // src
        0x08, 0x06, // ARP
        0x00, 0x01, 0x08, 0x00, // payload (truncated ARP)
    ];

    #[test]
    fn frame_fields_are_read_from_wire_order() {
        let f = EthernetFrame::new_checked(&FRAME[..]).unwrap();
        assert_eq!(f.dst(), MacAddr::BROADCAST);
        assert_eq!(f.src(), MacAddr::new(0x02, 0x42, 0xac, 0x11, 0x00, 0x02));
        assert_eq!(f.ethertype(), EtherType::ARP);
        assert_eq!(f.payload(), &[0x00, 0x01, 0x08, 0x00]);
        assert_eq!(f.into_payload(), &[0x00, 0x01, 0x08, 0x00]);
    }

    #[test]
    fn frame_shorter_than_header_is_truncated() {
        assert_eq!(
            EthernetFrame::new_checked(&FRAME[..13]),
            Err(EthernetError::Truncated)
        );
        let f = EthernetFrame::new_checked(&FRAME[..14]).unwrap();
        assert!(f.payload().is_empty());
    }

    #[test]
    fn setters_round_trip() {
        let mut buf = [0u8; 20];
        let mut f = EthernetFrame::new_checked(&mut buf[..]).unwrap();
        let a = MacAddr::new(1, 2, 3, 4, 5, 6);
        let b = MacAddr::new(0xa, 0xb, 0xc, 0xd, 0xe, 0xf);
        f.set_dst(a);
        f.set_src(b);
        f.set_ethertype(EtherType::IPV6);
        f.payload_mut().fill(0x77);
        assert_eq!((f.dst(), f.src(), f.ethertype()), (a, b, EtherType::IPV6));
        assert_eq!(
            &buf[12..],
            &[0x86, 0xdd, 0x77, 0x77, 0x77, 0x77, 0x77, 0x77]
        );
    }

    #[test]
    fn repr_parse_and_emit_round_trip() {
        let repr = EthernetRepr::parse(&EthernetFrame::new_unchecked(&FRAME[..])).unwrap();
        let mut out = [0u8; 14];
        repr.emit(&mut out).unwrap();
        assert_eq!(out, FRAME[..14]);
        assert_eq!(repr.buffer_len(), 14);
        assert_eq!(repr.emit(&mut [0u8; 13]), Err(EthernetError::Truncated));
        assert_eq!(
            EthernetRepr::parse(&EthernetFrame::new_unchecked(&FRAME[..3])),
            Err(EthernetError::Truncated)
        );
    }

    #[test]
    fn mac_classification() {
        assert!(MacAddr::BROADCAST.is_broadcast());
        assert!(MacAddr::BROADCAST.is_multicast());
        assert!(!MacAddr::BROADCAST.is_unicast());
        let mcast = MacAddr::new(0x01, 0x00, 0x5e, 0x00, 0x00, 0x01);
        assert!(mcast.is_multicast() && !mcast.is_broadcast() && !mcast.is_unicast());
        let pod = MacAddr::new(0x02, 0x42, 0xac, 0x11, 0x00, 0x02);
        assert!(pod.is_unicast() && pod.is_local() && !pod.is_multicast());
        assert!(!MacAddr::new(0x00, 0x1b, 0x21, 0, 0, 1).is_local());
    }

    #[test]
    fn mac_display_and_parse_round_trip() {
        let mac = MacAddr::new(0x02, 0x42, 0xAC, 0x11, 0x00, 0xFF);
        assert_eq!(mac.to_string(), "02:42:ac:11:00:ff");
        assert_eq!(std::format!("{mac:?}"), "MacAddr(02:42:ac:11:00:ff)");
        assert_eq!("02:42:ac:11:00:ff".parse::<MacAddr>(), Ok(mac));
        assert_eq!("02:42:AC:11:00:FF".parse::<MacAddr>(), Ok(mac));
        assert_eq!(
            MacAddr::BROADCAST.to_string().parse::<MacAddr>(),
            Ok(MacAddr::BROADCAST)
        );
    }

    #[test]
    fn mac_parse_rejects_malformed_input() {
        for bad in [
            "",
            "02:42:ac:11:00",
            "02:42:ac:11:00:ff:01",
            "02:42:ac:11:00:f",
            "02:42:ac:11:00:fff",
            "02-42-ac-11-00-ff",
            "02:42:ac:11:00:+f",
            "02:42:ac:11:00:gg",
            "02:42:ac:11:00:ff:",
            ":02:42:ac:11:00:ff",
            "02:42:ac:11::00",
            "0é:42:ac:11:00:ff",
        ] {
            assert_eq!(bad.parse::<MacAddr>(), Err(MacAddrParseError), "{bad:?}");
        }
        assert!(MacAddrParseError.to_string().contains("02:42:ac:11:00:02"));
    }

    #[test]
    fn ethertype_display_names_known_types() {
        assert_eq!(EtherType::IPV4.to_string(), "IPv4");
        assert_eq!(EtherType::ARP.to_string(), "ARP");
        assert_eq!(EtherType::IPV6.to_string(), "IPv6");
        assert_eq!(EtherType::VLAN.to_string(), "802.1Q");
        assert_eq!(EtherType(0x88cc).to_string(), "0x88cc");
    }
}
