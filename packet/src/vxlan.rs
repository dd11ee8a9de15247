//! VXLAN (RFC 7348): the 8-byte header a tunnel endpoint puts between the outer UDP header and
//! the inner Ethernet frame, and the whole outer header stack (Ethernet / IPv4 / UDP / VXLAN,
//! [`ENCAP_LEN`] bytes) a switch pushes in front of an inner frame to send it to another node.
//!
//! ```text
//!  0                   1                   2                   3
//! |R|R|R|R|I|R|R|R|            Reserved                           |
//! |                VXLAN Network Identifier (VNI) |   Reserved    |
//! ```

use core::fmt;
use core::net::Ipv4Addr;

use crate::ethernet::{EtherType, MacAddr, HEADER_LEN as ETHERNET_HEADER_LEN};
use crate::ipv4::{IpProtocol, Ipv4Packet, MIN_HEADER_LEN as IPV4_HEADER_LEN};
use crate::udp::HEADER_LEN as UDP_HEADER_LEN;

/// Field offsets of the VXLAN header.
mod field {
    use crate::Field;
    pub const FLAGS: usize = 0;
    pub const VNI: Field = 4..7;
    pub const PAYLOAD: usize = 8;
}

/// Length of the VXLAN header.
pub const HEADER_LEN: usize = field::PAYLOAD;
/// The IANA UDP port of VXLAN (RFC 7348 §5).
pub const UDP_PORT: u16 = 4789;
/// The "I" flag: the VNI is valid. The only flag RFC 7348 defines; it must be set.
pub const FLAG_VNI: u8 = 0x08;
/// The largest VNI (24 bits).
pub const MAX_VNI: u32 = 0x00ff_ffff;
/// Bytes pushed in front of an inner frame: outer Ethernet, IPv4 (no options), UDP, VXLAN.
pub const ENCAP_LEN: usize = ETHERNET_HEADER_LEN + IPV4_HEADER_LEN + UDP_HEADER_LEN + HEADER_LEN;
/// What encapsulation takes from the underlay's IP MTU for the inner IP packet: everything
/// but the outer Ethernet header (it is not part of the outer IP packet), plus the inner one.
pub const MTU_OVERHEAD: u16 = ENCAP_LEN as u16;

/// Why a buffer is not a VXLAN header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VxlanError {
    /// Shorter than the 8-byte header.
    Truncated,
    /// The I flag is clear: the VNI is not valid (RFC 7348 §5: such packets are dropped).
    NoVni,
}

impl fmt::Display for VxlanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            VxlanError::Truncated => "VXLAN header shorter than 8 bytes",
            VxlanError::NoVni => "VXLAN header without the I flag (no valid VNI)",
        })
    }
}

impl core::error::Error for VxlanError {}

/// A zero-copy view of a VXLAN header and the inner frame behind it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VxlanPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> VxlanPacket<T> {
    /// Wraps `buffer` without checking it; accessors panic if it is shorter than 8 bytes.
    pub const fn new_unchecked(buffer: T) -> VxlanPacket<T> {
        VxlanPacket { buffer }
    }

    /// Wraps `buffer` after checking its length and the I flag. Reserved bits are ignored on
    /// receipt, as RFC 7348 §5 says.
    pub fn new_checked(buffer: T) -> Result<VxlanPacket<T>, VxlanError> {
        let data = buffer.as_ref();
        if data.len() < HEADER_LEN {
            return Err(VxlanError::Truncated);
        }
        if data[field::FLAGS] & FLAG_VNI == 0 {
            return Err(VxlanError::NoVni);
        }
        Ok(VxlanPacket { buffer })
    }

    /// The flags byte.
    #[inline]
    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[field::FLAGS]
    }

    /// The 24-bit VXLAN Network Identifier.
    #[inline]
    pub fn vni(&self) -> u32 {
        let d = &self.buffer.as_ref()[field::VNI];
        u32::from_be_bytes([0, d[0], d[1], d[2]])
    }

    /// The inner Ethernet frame.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::PAYLOAD..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> VxlanPacket<T> {
    /// Writes a header with the I flag and `vni` (its low 24 bits), reserved fields zero.
    pub fn set_header(&mut self, vni: u32) {
        let d = &mut self.buffer.as_mut()[..HEADER_LEN];
        d.fill(0);
        d[field::FLAGS] = FLAG_VNI;
        d[field::VNI].copy_from_slice(&(vni & MAX_VNI).to_be_bytes()[1..]);
    }
}

/// The outer headers of one encapsulated frame: what [`Outer::emit`] writes in front of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outer {
    /// Outer source MAC (the sending uplink's).
    pub src_mac: MacAddr,
    /// Outer destination MAC (the underlay next hop's, resolved by ARP).
    pub dst_mac: MacAddr,
    /// Outer source address (this tunnel endpoint).
    pub src_ip: Ipv4Addr,
    /// Outer destination address (the remote tunnel endpoint).
    pub dst_ip: Ipv4Addr,
    /// Outer TTL.
    pub ttl: u8,
    /// Outer IPv4 DSCP/ECN byte (copied from the inner packet, RFC 6040 normal mode).
    pub dscp_ecn: u8,
    /// Outer UDP source port: entropy from the inner flow ([`source_port`]).
    pub src_port: u16,
    /// Outer UDP destination port ([`UDP_PORT`] unless configured otherwise).
    pub dst_port: u16,
    /// The VNI.
    pub vni: u32,
}

impl Outer {
    /// Writes the [`ENCAP_LEN`] outer bytes into `buf[..ENCAP_LEN]` for an inner frame of
    /// `inner_len` bytes: the outer IPv4 header with DF set (the switch checks the inner packet
    /// against the effective MTU, so the outer one never needs fragmenting), identification 0
    /// (RFC 6864 §4.1: atomic datagrams), its checksum filled; UDP with checksum 0 (RFC 7348
    /// §5 allows it over IPv4). `None` if `buf` is short or the total would pass 65535 bytes.
    pub fn emit(&self, buf: &mut [u8], inner_len: usize) -> Option<()> {
        let buf = buf.get_mut(..ENCAP_LEN)?;
        let ip_len = IPV4_HEADER_LEN + UDP_HEADER_LEN + HEADER_LEN + inner_len;
        let ip_len = u16::try_from(ip_len).ok()?;
        let udp_len = ip_len - IPV4_HEADER_LEN as u16;
        let (eth, rest) = buf.split_at_mut(ETHERNET_HEADER_LEN);
        eth[0..6].copy_from_slice(&self.dst_mac.0);
        eth[6..12].copy_from_slice(&self.src_mac.0);
        eth[12..14].copy_from_slice(&EtherType::IPV4.0.to_be_bytes());
        let (ip, rest) = rest.split_at_mut(IPV4_HEADER_LEN);
        ip.fill(0);
        let mut ip = Ipv4Packet::new_unchecked(ip);
        ip.set_version_and_header_len(IPV4_HEADER_LEN);
        ip.set_dscp_ecn(self.dscp_ecn);
        ip.set_total_len(ip_len);
        ip.set_dont_frag(true);
        ip.set_ttl(self.ttl);
        ip.set_protocol(IpProtocol::UDP);
        ip.set_src(self.src_ip);
        ip.set_dst(self.dst_ip);
        ip.fill_checksum();
        let (udp, vxlan) = rest.split_at_mut(UDP_HEADER_LEN);
        udp[0..2].copy_from_slice(&self.src_port.to_be_bytes());
        udp[2..4].copy_from_slice(&self.dst_port.to_be_bytes());
        udp[4..6].copy_from_slice(&udp_len.to_be_bytes());
        udp[6..8].fill(0);
        VxlanPacket::new_unchecked(vxlan).set_header(self.vni);
        Some(())
    }

    /// Rewrites the length fields (and the IPv4 checksum) of outer headers already in
    /// `buf[..ENCAP_LEN]` for an inner frame of `inner_len` bytes: how each segment of a
    /// super-frame cut after encapsulation gets its own outer headers.
    pub fn set_inner_len(buf: &mut [u8], inner_len: usize) -> Option<()> {
        let buf = buf.get_mut(ETHERNET_HEADER_LEN..ENCAP_LEN)?;
        let ip_len = u16::try_from(ENCAP_LEN - ETHERNET_HEADER_LEN + inner_len).ok()?;
        let (ip, rest) = buf.split_at_mut(IPV4_HEADER_LEN);
        let mut ip = Ipv4Packet::new_unchecked(ip);
        ip.set_total_len(ip_len);
        ip.fill_checksum();
        rest[4..6].copy_from_slice(&(ip_len - IPV4_HEADER_LEN as u16).to_be_bytes());
        Some(())
    }
}

/// The outer UDP source port for an inner flow hash: in the dynamic range 49152–65535 that
/// RFC 7348 §5 recommends, so underlay ECMP and RSS spread the tunnel's flows as they would
/// the inner ones (Linux `udp_flow_src_port` does the same with its range).
#[inline]
pub const fn source_port(flow_hash: u32) -> u16 {
    let folded = (flow_hash ^ (flow_hash >> 16)) as u16;
    49152 | (folded & 0x3fff)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checksum;

    /// RFC 7348 §5 header for VNI 0x123456.
    const HEADER: [u8; 8] = [0x08, 0, 0, 0, 0x12, 0x34, 0x56, 0];

    #[test]
    fn parses_the_vni_and_the_inner_frame() {
        let mut data = HEADER.to_vec();
        data.extend_from_slice(&[0xaa; 14]);
        let v = VxlanPacket::new_checked(&data[..]).unwrap();
        assert_eq!(v.vni(), 0x123456);
        assert_eq!(v.flags(), FLAG_VNI);
        assert_eq!(v.payload(), &[0xaa; 14]);
    }

    #[test]
    fn refuses_short_headers_and_a_clear_i_flag_but_ignores_reserved_bits() {
        assert_eq!(
            VxlanPacket::new_checked(&HEADER[..7]).unwrap_err(),
            VxlanError::Truncated
        );
        let mut no_i = HEADER;
        no_i[0] = 0;
        assert_eq!(
            VxlanPacket::new_checked(&no_i[..]).unwrap_err(),
            VxlanError::NoVni
        );
        let mut reserved = HEADER;
        reserved[0] = 0xff;
        reserved[7] = 0xff;
        assert_eq!(
            VxlanPacket::new_checked(&reserved[..]).unwrap().vni(),
            0x123456
        );
    }

    #[test]
    fn set_header_writes_the_rfc_layout() {
        let mut buf = [0xffu8; 8];
        VxlanPacket::new_unchecked(&mut buf[..]).set_header(0x0012_3456);
        assert_eq!(buf, HEADER);
        VxlanPacket::new_unchecked(&mut buf[..]).set_header(0xff00_0001);
        assert_eq!(buf, [0x08, 0, 0, 0, 0, 0, 1, 0], "only 24 bits of VNI");
    }

    /// The outer headers for a 98-byte inner frame, written out by hand.
    #[test]
    fn outer_headers_match_a_hand_built_reference() {
        let outer = Outer {
            src_mac: MacAddr::new(0x0a, 0x58, 0xc0, 0xa8, 0x01, 0x01),
            dst_mac: MacAddr::new(0x52, 0x54, 0, 0x12, 0x34, 0x56),
            src_ip: Ipv4Addr::new(192, 168, 1, 1),
            dst_ip: Ipv4Addr::new(192, 168, 1, 2),
            ttl: 64,
            dscp_ecn: 0,
            src_port: 0xc123,
            dst_port: UDP_PORT,
            vni: 42,
        };
        let mut buf = [0u8; ENCAP_LEN];
        outer.emit(&mut buf, 98).unwrap();
        #[rustfmt::skip]
        let expect: [u8; ENCAP_LEN] = [
            // Ethernet: dst, src, IPv4
            0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 0x0a, 0x58, 0xc0, 0xa8, 0x01, 0x01, 0x08, 0x00,
            // IPv4: 45, tos 0, total 20+8+8+98 = 134 (0x86), id 0, DF, TTL 64, UDP, csum, src, dst
            0x45, 0x00, 0x00, 0x86, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb7, 0x13,
            192, 168, 1, 1, 192, 168, 1, 2,
            // UDP: 0xc123 → 4789 (0x12b5), length 114 (0x72), checksum 0
            0xc1, 0x23, 0x12, 0xb5, 0x00, 0x72, 0x00, 0x00,
            // VXLAN: I flag, VNI 42
            0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x2a, 0x00,
        ];
        // The reference's IPv4 checksum (0xb713, summed by hand) verifies (RFC 1071).
        assert_eq!(checksum::checksum(&expect[14..34]), 0);
        assert_eq!(buf, expect);
    }

    #[test]
    fn set_inner_len_rewrites_lengths_and_checksum() {
        let outer = Outer {
            src_mac: MacAddr::new(2, 0, 0, 0, 0, 1),
            dst_mac: MacAddr::new(2, 0, 0, 0, 0, 2),
            src_ip: Ipv4Addr::new(10, 0, 0, 1),
            dst_ip: Ipv4Addr::new(10, 0, 0, 2),
            ttl: 64,
            dscp_ecn: 0,
            src_port: 50000,
            dst_port: UDP_PORT,
            vni: 1,
        };
        let (mut a, mut b) = ([0u8; ENCAP_LEN], [0u8; ENCAP_LEN]);
        outer.emit(&mut a, 1000).unwrap();
        outer.emit(&mut b, 60).unwrap();
        Outer::set_inner_len(&mut a, 60).unwrap();
        assert_eq!(a, b);
        assert!(outer.emit(&mut a, 65535).is_none(), "past 65535 bytes");
        assert!(outer.emit(&mut a[..49], 60).is_none(), "short buffer");
    }

    #[test]
    fn source_ports_stay_in_the_dynamic_range_and_spread() {
        let mut seen = [false; 16];
        for h in 0..10_000u32 {
            let p = source_port(h.wrapping_mul(0x9e37_79b9));
            assert!(p >= 49152);
            seen[usize::from(p & 15)] = true;
        }
        assert!(seen.iter().all(|&s| s));
    }
}
