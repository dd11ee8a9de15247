//! The unit of work: a batch of packets from one input port, each with the metadata the stages
//! fill in as it moves through the pipeline.

use crate::buffer::{PktBuf, Pool};
use crate::conntrack::{Dir, Handle, ServiceRef};
use crate::counters::{Counters, DropReason};
use podswitch_packet::{IpProtocol, TcpFlags};
use std::net::Ipv4Addr;

/// Index of a port in the tables and in every worker's port list.
pub type PortId = u16;

/// Largest burst a port may deliver at once.
pub const MAX_BURST: usize = 256;

/// Where a packet goes after the stage that last looked at it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Still in the pipeline: the next stage decides.
    Continue,
    /// Leave through this port, frame ready to send.
    Output(PortId),
    /// Dropped, and counted, for this reason.
    Drop(DropReason),
}

/// The network-layer protocol the parse stage found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum L3 {
    /// Not parsed yet, or dropped before.
    None,
    /// ARP for IPv4 over Ethernet.
    Arp,
    /// IPv4; the IP header starts right after the Ethernet header.
    Ipv4,
}

/// Where a packet stands in IPv4 fragmentation (RFC 791 §3.2). Only the first fragment
/// carries the transport header, so only it has ports in its [`FlowKey`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Fragment {
    /// A whole datagram (offset 0, More Fragments clear).
    None,
    /// The first fragment: offset 0, More Fragments set; its transport header is parsed.
    First,
    /// A later fragment (offset > 0): no transport header, no ports.
    Later,
}

/// The transport part of a [`FlowKey`]: what conntrack, Services and policy match on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum L4Key {
    /// No transport header: ARP, a later fragment, or a protocol the switch does not parse.
    None,
    /// TCP ports and control bits.
    Tcp {
        /// Source port.
        src_port: u16,
        /// Destination port.
        dst_port: u16,
        /// The control bits (SYN, ACK, FIN, RST, ...).
        flags: TcpFlags,
    },
    /// UDP ports.
    Udp {
        /// Source port.
        src_port: u16,
        /// Destination port.
        dst_port: u16,
    },
    /// An ICMP query (echo and the like) or an error.
    Icmp {
        /// Type.
        icmp_type: u8,
        /// Code.
        code: u8,
        /// Echo identifier (the "port" of an echo flow); 0 for other types.
        ident: u16,
        /// For an error (destination unreachable, time exceeded, ...): the key of the datagram
        /// it quotes, seen from that datagram's sender (so its source is the error's receiver).
        quoted: Option<QuotedKey>,
    },
}

/// The key of the datagram an ICMP error quotes: enough to find the connection the error is
/// about (RFC 792 quotes the IP header and the first 8 transport bytes, which hold the ports).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct QuotedKey {
    /// The quoted datagram's source.
    pub src_ip: Ipv4Addr,
    /// The quoted datagram's destination.
    pub dst_ip: Ipv4Addr,
    /// Its protocol.
    pub proto: IpProtocol,
    /// TCP/UDP source port; ICMP echo identifier; 0 otherwise.
    pub src_port: u16,
    /// TCP/UDP destination port; 0 otherwise.
    pub dst_port: u16,
}

/// What the parse stage extracts once (OVS's miniflow), so later stages never re-parse
/// headers. Addresses are IPv4 today (the FIB and bindings are IPv4-only); IPv6 gives the key
/// an address-family variant (see ARCHITECTURE.md, "The flow key").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FlowKey {
    /// IPv4 source (ARP: sender protocol address).
    pub src_ip: Ipv4Addr,
    /// IPv4 destination (ARP: target protocol address).
    pub dst_ip: Ipv4Addr,
    /// IPv4 protocol (valid when the packet is IPv4).
    pub proto: IpProtocol,
    /// Fragmentation state.
    pub frag: Fragment,
    /// Transport ports / ICMP identity; [`L4Key::None`] for later fragments.
    pub l4: L4Key,
}

/// An address and port a translation rewrites to (ICMP echo: the port is the identifier).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Endpoint {
    /// Address.
    pub ip: Ipv4Addr,
    /// Port.
    pub port: u16,
}

/// What to rewrite on one packet: its source and/or its destination (`None`: leave as is).
/// Conntrack keeps one per direction of a connection; `rewrite` applies it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct Nat {
    /// New source (SNAT, or the VIP on a reply).
    pub src: Option<Endpoint>,
    /// New destination (DNAT to a backend, or the client on a reply to an SNATed flow).
    pub dst: Option<Endpoint>,
}

impl Nat {
    /// Translates nothing.
    pub const NONE: Nat = Nat {
        src: None,
        dst: None,
    };

    /// Whether it translates anything.
    #[inline]
    pub fn is_none(&self) -> bool {
        self.src.is_none() && self.dst.is_none()
    }
}

/// The offload state of a frame: the virtio-net header in native form (ARCHITECTURE.md,
/// "Offloads"). 8 bytes; all zero for an ordinary frame with a complete checksum.
///
/// Rules every stage keeps: `csum_start` counts from the first byte of the frame (a stage that
/// pushes or pops headers in front moves it by as many bytes); a GSO frame is rewritten once
/// and every segment inherits its headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Offload {
    /// First byte the partial checksum covers (the transport header); 0 with `csum_offset`
    /// 0 when the checksum is complete.
    pub csum_start: u16,
    /// Where the checksum field is, from `csum_start`.
    pub csum_offset: u16,
    /// Payload bytes per segment of a GSO frame; 0 for an ordinary frame.
    pub gso_size: u16,
    /// The virtio-net `gso_type` (ECN bit included); `GSO_NONE` (0) for an ordinary frame.
    pub gso_type: u8,
    /// The virtio-net flags: `NEEDS_CSUM` or nothing.
    pub flags: u8,
}

impl Offload {
    /// An ordinary frame: complete checksum, no segmentation.
    pub const NONE: Offload = Offload {
        csum_start: 0,
        csum_offset: 0,
        gso_size: 0,
        gso_type: 0,
        flags: 0,
    };

    /// Whether the transport checksum is partial (`NEEDS_CSUM`).
    #[inline]
    pub fn needs_csum(&self) -> bool {
        self.flags & podswitch_packet::virtio_net::FLAG_NEEDS_CSUM != 0
    }

    /// Whether this is a GSO super-frame.
    #[inline]
    pub fn is_gso(&self) -> bool {
        self.gso_type & !podswitch_packet::virtio_net::GSO_ECN != 0
    }

    /// Whether there is anything to do for it at all (the common case is no).
    #[inline]
    pub fn is_none(&self) -> bool {
        *self == Offload::NONE
    }

    /// From a parsed virtio-net header. RSC counts (which share the checksum fields) are not
    /// kept: the switch never receives them from a tap. Nor is `DATA_VALID`: the switch does
    /// not verify transport checksums, so it does not vouch for one to the next receiver,
    /// which then checks it itself.
    pub fn from_repr(r: &podswitch_packet::virtio_net::VirtioNetRepr) -> Offload {
        use podswitch_packet::virtio_net as v;
        let mut o = Offload::NONE;
        if let Some(c) = r.partial_csum {
            o.csum_start = c.start;
            o.csum_offset = c.offset;
            o.flags |= v::FLAG_NEEDS_CSUM;
        }
        if let Some(g) = r.gso {
            let kind = match g.kind {
                v::GsoKind::TcpV4 => v::GSO_TCPV4,
                v::GsoKind::TcpV6 => v::GSO_TCPV6,
                v::GsoKind::Udp => v::GSO_UDP,
                v::GsoKind::UdpL4 => v::GSO_UDP_L4,
            };
            o.gso_type = kind | if g.ecn { v::GSO_ECN } else { 0 };
            o.gso_size = g.size;
        }
        o
    }

    /// Writes this as a legacy (10-byte) virtio-net header into `hdr`; `hdr_len` is the
    /// length of the frame's headers (a hint the kernel fixes up when it is short).
    pub fn emit(&self, hdr: &mut [u8; 10], hdr_len: u16) {
        hdr[0] = self.flags;
        hdr[1] = self.gso_type;
        hdr[2..4].copy_from_slice(&hdr_len.to_le_bytes());
        hdr[4..6].copy_from_slice(&self.gso_size.to_le_bytes());
        hdr[6..8].copy_from_slice(&self.csum_start.to_le_bytes());
        hdr[8..10].copy_from_slice(&self.csum_offset.to_le_bytes());
    }
}

/// Per-packet state shared between stages. Kept small: it is rewritten for every packet.
#[derive(Debug, Clone, Copy)]
pub struct Meta {
    /// Verdict so far.
    pub next: Next,
    /// Protocol found by parse.
    pub l3: L3,
    /// Offset of the transport header from the start of the frame (0 when there is none:
    /// ARP, later fragments).
    pub l4_offset: u16,
    /// Addresses, protocol, ports: the flow this packet belongs to.
    pub flow: FlowKey,
    /// The frame's offload state (partial checksum, GSO), from the input port's virtio-net
    /// header; [`Offload::NONE`] for ports without one.
    pub offload: Offload,
    /// The output port `route` chose (or conntrack had cached): `rewrite` sends the packet
    /// there. `None` until decided.
    pub hop: Option<PortId>,
    /// With a `hop` to the uplink: the next hop (`Tables::next_hops` index) the packet is
    /// for, which `rewrite` resolves to a MAC (and encapsulates to, with VXLAN).
    pub next_hop: Option<u16>,
    /// `rewrite` encapsulated the frame (VXLAN): the output segments a GSO frame's inner
    /// packet and gives each segment the outer headers (`pipeline::offload`).
    pub tunneled: bool,
    /// The translation `rewrite` applies (from conntrack, or chosen by `service` for a new
    /// connection). For an ICMP error related to a connection, the translation of the
    /// direction the error travels in (its quoted datagram is translated the opposite way).
    pub nat: Nat,
    /// What conntrack found.
    pub track: Track,
    /// The Service port and endpoint `service` chose for a new connection (stored with it).
    pub service: Option<ServiceRef>,
}

/// What conntrack knows of a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Track {
    /// Not tracked: ARP, other protocols, ICMP queries other than echo, fragments after the
    /// first, or conntrack has not looked yet.
    Untracked,
    /// The first packet of a connection: `commit` creates its entry.
    New,
    /// A packet of a tracked connection.
    Hit {
        /// The entry.
        handle: Handle,
        /// Which way the packet goes.
        dir: Dir,
        /// The entry had no valid output for this direction: `commit` stores the one `route`
        /// chooses.
        cache_hop: bool,
        /// The connection's policy verdict was taken under other policies, or denies it:
        /// the policy stage checks it again.
        recheck_policy: bool,
    },
    /// An ICMP error about a tracked connection: translated with it, never creates one.
    Related,
    /// A later fragment of a datagram whose first fragment passed every stage: it follows
    /// that fragment (its translation, its policy verdict).
    Fragment,
}

impl Meta {
    const FRESH: Meta = Meta {
        next: Next::Continue,
        l3: L3::None,
        l4_offset: 0,
        flow: FlowKey {
            src_ip: Ipv4Addr::UNSPECIFIED,
            dst_ip: Ipv4Addr::UNSPECIFIED,
            proto: IpProtocol(0),
            frag: Fragment::None,
            l4: L4Key::None,
        },
        offload: Offload::NONE,
        hop: None,
        next_hop: None,
        tunneled: false,
        nat: Nat::NONE,
        track: Track::Untracked,
        service: None,
    };
}

/// One packet in flight: its buffer and its metadata.
#[derive(Debug)]
pub struct Packet {
    /// The frame.
    pub buf: PktBuf,
    /// What the stages decided.
    pub meta: Meta,
}

impl Packet {
    /// A packet the switch makes itself (an ARP probe), with fresh metadata.
    pub fn new(buf: PktBuf) -> Packet {
        Packet {
            buf,
            meta: Meta::FRESH,
        }
    }

    /// Whether a stage still has to decide about this packet.
    #[inline]
    pub fn pending(&self) -> bool {
        self.meta.next == Next::Continue
    }

    /// Drops the packet for `reason` and counts it.
    #[inline]
    pub fn drop(&mut self, reason: DropReason, ctr: &mut Counters) {
        self.meta.next = Next::Drop(reason);
        ctr.drop(reason);
    }
}

/// Packets received from one port in one burst.
#[derive(Debug)]
pub struct Batch {
    /// The port every packet of this batch came from.
    pub in_port: PortId,
    pkts: Vec<Packet>,
    limit: usize,
}

impl Batch {
    /// An empty batch with room for [`MAX_BURST`] packets (allocated once, per worker).
    pub fn new() -> Self {
        Self::with_limit(MAX_BURST)
    }

    /// An empty batch that takes at most `limit` packets (the burst size, up to [`MAX_BURST`]).
    pub fn with_limit(limit: usize) -> Self {
        let limit = limit.clamp(1, MAX_BURST);
        Self {
            in_port: 0,
            pkts: Vec::with_capacity(limit),
            limit,
        }
    }

    /// Adds a received frame; hands the buffer back if the batch is full.
    #[inline]
    pub fn push(&mut self, buf: PktBuf) -> Result<(), PktBuf> {
        self.push_offloaded(buf, Offload::NONE)
    }

    /// Adds a received frame with its offload state; hands the buffer back if the batch is
    /// full.
    #[inline]
    pub fn push_offloaded(&mut self, buf: PktBuf, offload: Offload) -> Result<(), PktBuf> {
        if self.pkts.len() >= self.limit {
            return Err(buf);
        }
        let mut meta = Meta::FRESH;
        meta.offload = offload;
        self.pkts.push(Packet { buf, meta });
        Ok(())
    }

    /// Packets in the batch.
    #[inline]
    pub fn len(&self) -> usize {
        self.pkts.len()
    }

    /// Whether the batch is empty.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.pkts.is_empty()
    }

    /// Room left.
    #[inline]
    pub fn room(&self) -> usize {
        self.limit - self.pkts.len()
    }

    /// The packets.
    #[inline]
    pub fn iter(&self) -> std::slice::Iter<'_, Packet> {
        self.pkts.iter()
    }

    /// The packets, mutable.
    #[inline]
    pub fn iter_mut(&mut self) -> std::slice::IterMut<'_, Packet> {
        self.pkts.iter_mut()
    }

    /// The packets, mutable and indexable (stages that look a few packets ahead).
    #[inline]
    pub fn packets_mut(&mut self) -> &mut [Packet] {
        &mut self.pkts
    }

    /// Takes every packet out, leaving the batch empty (capacity kept).
    #[inline]
    pub fn drain(&mut self) -> std::vec::Drain<'_, Packet> {
        self.pkts.drain(..)
    }

    /// Returns every buffer to the pool.
    pub fn recycle(&mut self, pool: &mut Pool) {
        for p in self.pkts.drain(..) {
            pool.put(p.buf);
        }
    }
}

impl Default for Batch {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_fits_in_two_cache_lines_and_the_flow_key_in_half_of_one() {
        assert!(std::mem::size_of::<FlowKey>() <= 32);
        assert!(
            std::mem::size_of::<Meta>() <= 128,
            "{}",
            std::mem::size_of::<Meta>()
        );
    }
}
