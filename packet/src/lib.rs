//! Wire formats podswitch switches: zero-copy views over byte buffers, one module per protocol.
//! This crate is the bottom layer: it knows nothing about ports, tables or the pipeline, and
//! depends on nothing but `core`.
//!
//! Every protocol follows the smoltcp `wire` pattern:
//!
//! - `XxxPacket<T: AsRef<[u8]>>` (Ethernet: [`EthernetFrame`]) is a view over a buffer.
//!   `new_checked` validates every length once; after that no accessor can panic. Slices that
//!   depend on length fields (options, payload) are additionally clamped to the buffer, so even a
//!   setter that breaks a length invariant cannot make a later accessor panic.
//!   `new_unchecked` skips validation: fixed-offset accessors then panic on a short buffer.
//! - Setters exist when `T: AsMut<[u8]>`.
//! - A small `XxxRepr` is the parsed, owned form: `parse` from a view, `emit` into a buffer.
//!
//! Checksums are never verified implicitly: `new_checked` and `parse` accept a packet whose
//! checksum is wrong; call `verify_checksum` where that matters.

#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

#[cfg(test)]
extern crate std;

pub mod arp;
pub mod checksum;
pub mod ethernet;
pub mod gro;
pub mod gso;
pub mod icmpv4;
pub mod ipv4;
pub mod ipv4_options;
pub mod partial_csum;
pub mod tcp;
pub mod udp;
pub mod virtio_net;
pub mod vxlan;

pub use arp::{ArpError, ArpOp, ArpPacket, ArpRepr, LEN as ARP_LEN};
pub use ethernet::{
    EtherType, EthernetError, EthernetFrame, EthernetRepr, MacAddr, MacAddrParseError,
    HEADER_LEN as ETHERNET_HEADER_LEN,
};
pub use gso::{GsoError, SegmentChecksum, Segmenter};
pub use icmpv4::{
    Icmpv4Error, Icmpv4Packet, Icmpv4Repr, Icmpv4Type, HEADER_LEN as ICMPV4_HEADER_LEN,
};
pub use ipv4::{
    IpProtocol, Ipv4Error, Ipv4Packet, Ipv4Repr, MIN_HEADER_LEN as IPV4_MIN_HEADER_LEN,
};
pub use ipv4_options::{Ipv4Option, Ipv4OptionError, Ipv4Options};
pub use tcp::{TcpError, TcpFlags, TcpPacket, MIN_HEADER_LEN as TCP_MIN_HEADER_LEN};
pub use udp::{UdpError, UdpPacket, HEADER_LEN as UDP_HEADER_LEN};
pub use virtio_net::{
    Gso, GsoKind, HeaderFormat, PartialCsum, RscInfo, VirtioNetError, VirtioNetPacket,
    VirtioNetRepr,
};
pub use vxlan::{VxlanError, VxlanPacket, ENCAP_LEN as VXLAN_ENCAP_LEN};

/// A byte range of a header field, as in smoltcp's `field` modules.
type Field = core::ops::Range<usize>;

/// Reads the big-endian `u16` at `field` (which must be two bytes long).
#[inline]
fn read_u16(data: &[u8], field: Field) -> u16 {
    u16::from_be_bytes([data[field.start], data[field.start + 1]])
}

/// Writes `value` big-endian at `field` (which must be two bytes long).
#[inline]
fn write_u16(data: &mut [u8], field: Field, value: u16) {
    data[field].copy_from_slice(&value.to_be_bytes());
}

/// Reads the big-endian `u32` at `field` (which must be four bytes long).
#[inline]
fn read_u32(data: &[u8], field: Field) -> u32 {
    let s = field.start;
    u32::from_be_bytes([data[s], data[s + 1], data[s + 2], data[s + 3]])
}

/// Writes `value` big-endian at `field` (which must be four bytes long).
#[inline]
fn write_u32(data: &mut [u8], field: Field, value: u32) {
    data[field].copy_from_slice(&value.to_be_bytes());
}

/// `start..end` clamped into `0..len` (and `start <= end`), so slicing with it never panics.
///
/// On a view accepted by `new_checked` this is the identity; it only matters after a setter
/// has rewritten a length field.
#[inline]
fn clamp(start: usize, end: usize, len: usize) -> Field {
    let end = end.min(len);
    start.min(end)..end
}
