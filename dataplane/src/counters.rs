//! Per-worker counters: every drop has a reason, every port counts what crosses it.
//!
//! Stages count into plain integers owned by their worker ([`Counters`]); the worker copies them
//! into its [`SharedCounters`] when it goes idle and every few hundred bursts, with relaxed
//! stores from the only writer. Readers (the socket API) sum the workers' shared copies. So the
//! forwarding path never executes an atomic read-modify-write or touches a shared cache line.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

macro_rules! reasons {
    ($(#[$m:meta])* $vis:vis enum $name:ident { $($(#[doc = $doc:literal])* $var:ident = ($stage:literal, $key:literal, $text:literal),)* }) => {
        $(#[$m])*
        $vis enum $name { $($(#[doc = $doc])* $var,)* }
        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$var,)*];
            /// Number of values.
            pub const COUNT: usize = [$($name::$var,)*].len();
            /// Stable snake_case name (used in JSON and by scripts).
            pub fn name(self) -> &'static str { match self { $($name::$var => $key,)* } }
            /// The pipeline stage this belongs to.
            pub fn stage(self) -> &'static str { match self { $($name::$var => $stage,)* } }
            /// Human explanation.
            pub fn description(self) -> &'static str { match self { $($name::$var => $text,)* } }
        }
    };
}

reasons! {
    /// Why a packet was dropped. Shown by `podswitchctl counters`.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum DropReason {
        /// Shorter than an Ethernet header.
        Runt = ("parse", "runt", "frame shorter than an Ethernet header (14 bytes)"),
        /// Longer than the input port's MTU allows.
        FrameTooLong = ("parse", "frame_too_long", "frame longer than the port MTU + 14"),
        /// EtherType the switch does not handle (IPv6, VLAN tags, ...).
        UnsupportedEtherType = ("parse", "unsupported_ethertype", "EtherType other than IPv4 or ARP"),
        /// ARP other than Ethernet/IPv4, or truncated.
        ArpMalformed = ("parse", "arp_malformed", "ARP packet truncated or not Ethernet/IPv4"),
        /// IPv4 header cut short.
        Ipv4Truncated = ("parse", "ipv4_truncated", "IPv4 header longer than the frame"),
        /// IP version field not 4.
        Ipv4BadVersion = ("parse", "ipv4_bad_version", "IP version field is not 4"),
        /// IHL below 5 or beyond the frame.
        Ipv4BadHeaderLen = ("parse", "ipv4_bad_header_len", "IPv4 IHL below 5 or past the frame"),
        /// Total length inconsistent with the header or the frame.
        Ipv4BadTotalLen = ("parse", "ipv4_bad_total_len", "IPv4 total length below the header length or past the frame"),
        /// Header checksum wrong.
        Ipv4BadChecksum = ("parse", "ipv4_bad_checksum", "IPv4 header checksum does not verify"),
        /// Options not walkable as RFC 791 says (length 0/1, past the header, truncated, or
        /// shorter than the option type needs).
        Ipv4BadOption = ("parse", "ipv4_bad_option", "IPv4 option malformed (length below 2, past the header, truncated, or too short for its type)"),
        /// Loose or strict source route: dropped as Linux does with `accept_source_route = 0`.
        Ipv4SourceRoute = ("parse", "ipv4_source_route", "IPv4 source-route option (LSRR/SSRR) not accepted"),
        /// RFC 1858 tiny fragment: a first fragment without the whole transport header, or a
        /// TCP fragment at offset 8.
        Ipv4TinyFragment = ("parse", "ipv4_tiny_fragment", "first fragment too short for the transport header, or TCP fragment at offset 8 (RFC 1858)"),
        /// A fragment whose offset plus length passes 65535 bytes.
        Ipv4FragmentTooLong = ("parse", "ipv4_fragment_too_long", "fragment ends past the 65535-byte datagram limit"),
        /// A partial checksum whose `csum_start`/`csum_offset` are not the transport
        /// header's checksum field (or a frame with one that has no transport header).
        BadCsumStart = ("parse", "bad_csum_start", "partial checksum (NEEDS_CSUM) whose csum_start/csum_offset are not the TCP/UDP checksum field"),
        /// A GSO frame whose `gso_type` is not its transport protocol (TCPV4 for TCP, UDP_L4
        /// for UDP), or one the switch cannot segment (IPv6, UFO, a fragment, ICMP).
        GsoTypeMismatch = ("parse", "gso_type_mismatch", "GSO frame whose gso_type does not match its IPv4 transport protocol (TCPV4/TCP, UDP_L4/UDP)"),
        /// IP payload shorter than the 20-byte TCP header.
        TcpTruncated = ("parse", "tcp_truncated", "TCP header missing or cut short (IP payload below 20 bytes)"),
        /// TCP data offset below 5 or past the segment.
        TcpBadDataOffset = ("parse", "tcp_bad_data_offset", "TCP data offset below 5 words or past the end of the segment"),
        /// IP payload shorter than the 8-byte UDP header.
        UdpTruncated = ("parse", "udp_truncated", "UDP header missing or cut short (IP payload below 8 bytes)"),
        /// UDP length below 8 or past the IP payload.
        UdpBadLength = ("parse", "udp_bad_length", "UDP length below 8 or longer than the IP payload"),
        /// IP payload shorter than the 8-byte ICMP header.
        IcmpTruncated = ("parse", "icmp_truncated", "ICMP header missing or cut short (IP payload below 8 bytes)"),
        /// An ICMP error that does not quote an IPv4 header and 8 bytes.
        IcmpBadQuote = ("parse", "icmp_bad_quote", "ICMP error does not quote a valid IPv4 header and 8 bytes"),
        /// The input port is not (or no longer) configured.
        UnknownInPort = ("l2", "unknown_in_port", "frame from a port that is not configured"),
        /// Source MAC is not the one bound to the port.
        SpoofedSourceMac = ("l2", "spoofed_source_mac", "source MAC differs from the port's bound MAC"),
        /// Source IP is not the one bound to the port.
        SpoofedSourceIp = ("l2", "spoofed_source_ip", "source IPv4 differs from the pod's bound IP"),
        /// ARP sender fields do not match the port's binding.
        SpoofedArp = ("l2", "spoofed_arp", "ARP sender MAC/IP differ from the port's binding"),
        /// Destination MAC is neither the switch's nor broadcast.
        NotForSwitch = ("l2", "not_for_switch", "destination MAC is not the switch's (the switch routes; it does not bridge)"),
        /// An ARP request for an address the switch does not answer for.
        ArpNotOurs = ("l2", "arp_not_ours", "ARP request for an address the switch does not own"),
        /// ARP replies and other ARP operations: the switch never asks, so it never needs them.
        ArpIgnored = ("l2", "arp_ignored", "ARP reply or other operation the switch does not need"),
        /// Node addressing not configured yet.
        NoNode = ("l2", "no_node", "node addressing (gateway) not configured yet"),
        /// An ARP from the underlay the switch took what it needed from (a next hop's reply,
        /// request or gratuitous ARP confirms its neighbour entry): consumed, not forwarded.
        ArpLearned = ("l2", "arp_learned", "ARP from an uplink next hop, learnt into the neighbour table (consumed)"),
        /// On a VXLAN uplink: an IPv4 frame that is not VXLAN to the switch's uplink address
        /// and port (the underlay carries only tunnel traffic to the switch).
        VxlanNotTunneled = ("tunnel", "vxlan_not_tunneled", "IPv4 on a VXLAN uplink that is not VXLAN to the switch's uplink address and UDP port"),
        /// VXLAN to the switch with malformed outer headers (IPv4 fragment or bad checksum,
        /// UDP length, no I flag) or no inner Ethernet frame.
        VxlanMalformed = ("tunnel", "vxlan_malformed", "VXLAN packet with malformed outer headers or no inner Ethernet frame"),
        /// VXLAN to the switch with another VNI than the uplink's.
        VxlanWrongVni = ("tunnel", "vxlan_wrong_vni", "VXLAN packet with a VNI other than the uplink's"),
        /// Multicast or broadcast IPv4 destination.
        Ipv4NotUnicast = ("l3", "ipv4_not_unicast", "IPv4 multicast/broadcast destination (not routed)"),
        /// No route matched (an ICMP net unreachable is sent when allowed).
        NoRoute = ("l3", "no_route", "no route to the destination"),
        /// An unreachable route matched (an ICMP host unreachable is sent when allowed).
        Unreachable = ("l3", "unreachable", "destination is in an unreachable route"),
        /// TTL would reach zero (an ICMP time exceeded is sent when allowed).
        TtlExpired = ("l3", "ttl_expired", "TTL expired in transit"),
        /// Packet larger than the output port's MTU.
        MtuExceeded = ("l3", "mtu_exceeded", "packet larger than the output MTU (ICMP frag-needed sent if DF)"),
        /// Route points at the port the packet came from.
        Hairpin = ("l3", "hairpin", "route leads back out of the input port"),
        /// The host port is not configured.
        NoHostPort = ("l3", "no_host_port", "route to the host but no host port is configured"),
        /// A route to another node, but no uplink port.
        NoUplink = ("l3", "no_uplink", "route to another node but no uplink port is configured"),
        /// Out of the uplink to outside the cluster, but the packet is not of a tracked
        /// connection (an IP protocol other than TCP, UDP and ICMP echo, an ICMP query other
        /// than echo): it cannot be translated to the uplink's address, and untranslated a
        /// reply could not find the pod.
        EgressUntracked = ("l3", "egress_untracked", "outside the cluster through the uplink, but not a connection that can be source-translated"),
        /// A connection's next packet after a route change moved it into egress (it began
        /// untranslated) or out of it (translated to the uplink's address, now routed
        /// elsewhere): its translation cannot change mid-connection, so its entry is removed
        /// and the packet dropped; the next one starts a new connection.
        EgressRerouted = ("l3", "egress_rerouted", "a route change moved the connection into or out of egress; its source translation no longer fits"),
        /// The next hop's MAC is not known yet: the packet is dropped (no queue) while ARP
        /// resolves it; one such packet per second becomes the ARP request.
        NeighborUnresolved = ("l3", "neighbor_unresolved", "uplink next hop not resolved yet (ARP under way); packet dropped"),
        /// Too little headroom in front of the frame for the VXLAN headers (cannot happen
        /// with the pool's 128 bytes; counted rather than assumed).
        EncapNoHeadroom = ("l3", "encap_no_headroom", "no headroom in the buffer for the VXLAN outer headers"),
        /// A new connection found the conntrack table (or its shard) full; existing
        /// connections continue.
        ConntrackFull = ("conntrack", "conntrack_full", "new connection not tracked: conntrack table full"),
        /// A later fragment of a datagram whose first fragment was not seen (or timed out):
        /// without its ports it cannot be matched to a connection.
        FragmentBeforeFirst = ("conntrack", "fragment_before_first", "later fragment of a datagram whose first fragment was not seen"),
        /// A new connection whose reply tuple another connection holds (no free SNAT port).
        ConntrackReplyTaken = ("conntrack", "conntrack_reply_taken", "new connection not tracked: its reply tuple belongs to another connection"),
        /// A packet with no connection from a Service endpoint's address and port: it may be
        /// the reply of a translated connection whose entry is gone (a restart); sent on
        /// untranslated, the client would reset it. TCP retransmits it once the client's next
        /// packet has re-created the entry.
        UntrackedEndpointReply = ("conntrack", "untracked_endpoint_reply", "packet from a Service endpoint matching no connection (possible reply of a lost translated connection)"),
        /// A new connection to a Service port with no endpoint to take it (answered with a TCP
        /// RST or ICMP port unreachable where allowed).
        NoEndpoints = ("service", "no_endpoints", "new connection to a Service port with no usable endpoint (refused)"),
        /// No rule of the source pod's egress or the destination pod's ingress isolation
        /// allows the connection (checked on its first packet, and again after a policy
        /// change).
        PolicyDenied = ("policy", "policy_denied", "connection not allowed by the NetworkPolicies isolating its source (egress) or destination (ingress) pod"),
        /// The output port has gone (removed while the packet was in flight).
        OutputPortGone = ("output", "output_port_gone", "output port no longer exists"),
        /// The output queue had no free transmit slot (writes in flight at its limit) or the
        /// ring refused the write.
        TxQueueFull = ("output", "tx_queue_full", "output port's transmit queue was full"),
        /// The kernel refused the write (device down or gone, out of memory, ...).
        TxWriteError = ("output", "tx_write_error", "the output device refused the frame (write error)"),
        /// The kernel took only part of the frame.
        TxShortWrite = ("output", "tx_short_write", "the output device took only part of the frame"),
        /// A GSO frame that had to be segmented in software but could not be cut (headers
        /// the segmenter refuses).
        GsoSegmentFailed = ("output", "gso_segment_failed", "GSO frame could not be segmented in software"),
        /// Software segmentation ran out of buffers: the rest of the super-frame's segments
        /// are dropped (each counted here).
        GsoPoolEmpty = ("output", "gso_pool_empty", "no free buffer for a segment of a software-segmented GSO frame"),
        /// A partial checksum the output cannot complete, and the switch could not either
        /// (the field is not inside the frame).
        CsumCompleteFailed = ("output", "csum_complete_failed", "partial checksum could not be completed in software"),
        /// The virtio-net header in front of a frame from a tap with offloads failed to parse
        /// (unknown flags or GSO type, checksum field past the frame, ...), or the read was
        /// shorter than the header.
        BadVnetHeader = ("input", "bad_vnet_header", "virtio-net header of a received frame is malformed"),
        /// The frame was longer than a receive buffer; its tail was cut off, so it is dropped.
        RxTruncated = ("input", "rx_truncated", "frame longer than the receive buffer (3968 bytes)"),
        /// The kernel dropped frames an AF_XDP socket should have received: no UMEM chunk in
        /// its fill ring, or the frame did not fit one (`XDP_STATISTICS` `rx_dropped`, read when
        /// counters are requested).
        XskRxDropped = ("input", "xsk_rx_dropped", "AF_XDP: the kernel dropped a received frame (fill ring empty, or frame longer than a UMEM chunk)"),
        /// The kernel dropped frames for an AF_XDP socket whose rx ring was full (the worker
        /// did not keep up).
        XskRxRingFull = ("input", "xsk_rx_ring_full", "AF_XDP: the kernel dropped a received frame, the socket's rx ring was full"),
        /// A frame routed to an AF_XDP port did not fit one UMEM chunk, and its socket takes
        /// no multi-buffer frames.
        XskTxTooLong = ("output", "xsk_tx_too_long", "AF_XDP: frame routed to the port is longer than a UMEM chunk (the socket takes no multi-buffer frames)"),
        /// A multi-buffer frame received on an AF_XDP port found no large buffer to be
        /// gathered into, or outgrew it: dropped whole.
        XskRxGatherFailed = ("input", "xsk_rx_gather_failed", "AF_XDP: a frame received in several chunks could not be gathered (no large buffer free)"),
        /// A coalesced super-frame whose headers could not be finished (never expected: the
        /// frame is built to the run's length); its segments, each counted, are lost.
        GroFinishFailed = ("output", "gro_finish_failed", "segments of a coalesced (GRO) frame whose headers could not be finished"),
    }
}

reasons! {
    /// Packets the switch produced itself.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Event {
        /// ARP reply sent.
        ArpReply = ("l2", "arp_reply", "ARP replies sent for the gateway or routed addresses"),
        /// ARP requests sent out of the uplink to resolve (or re-probe) a next hop.
        ArpRequestSent = ("l3", "arp_request_sent", "ARP requests sent to resolve or re-probe uplink next hops"),
        /// A next hop's MAC learnt or confirmed from an ARP on the uplink.
        NeighborConfirmed = ("l2", "neighbor_confirmed", "uplink next hops learnt or confirmed by ARP"),
        /// Frames encapsulated in VXLAN for another node.
        VxlanEncapsulated = ("l3", "vxlan_encapsulated", "frames encapsulated in VXLAN to another node"),
        /// VXLAN packets from another node decapsulated.
        VxlanDecapsulated = ("tunnel", "vxlan_decapsulated", "VXLAN packets from another node decapsulated"),
        /// ICMP echo reply from the gateway.
        IcmpEchoReply = ("l3", "icmp_echo_reply", "ICMP echo replies sent from the gateway"),
        /// ICMP destination unreachable sent.
        IcmpUnreachableSent = ("l3", "icmp_unreachable_sent", "ICMP destination unreachable sent"),
        /// A TCP RST the switch sent (a connection to a Service port with no endpoint).
        TcpResetSent = ("service", "tcp_reset_sent", "TCP RST sent for a Service port with no endpoint"),
        /// ICMP time exceeded sent.
        IcmpTimeExceededSent = ("l3", "icmp_time_exceeded_sent", "ICMP time exceeded sent"),
        /// ICMP error suppressed (RFC 1812 4.3.2.7: never about ICMP errors, fragments, multicast).
        IcmpErrorSuppressed = ("l3", "icmp_error_suppressed", "ICMP error not sent, as RFC 1812 4.3.2.7 requires"),
        /// ICMP error not sent: the worker's token bucket was empty (like Linux's
        /// `icmp_msgs_per_sec` / `icmp_msgs_burst`).
        IcmpErrorRateLimited = ("l3", "icmp_error_rate_limited", "ICMP error not sent: rate limit (1000/s per worker, burst 50)"),
        /// A receive buffer could not be re-armed because the pool was empty.
        PoolEmpty = ("ports", "pool_empty", "receive not re-armed: buffer pool empty"),
        /// A read of a tap queue with offloads was not armed: no large buffer free (the
        /// frame waits in the tap queue; nothing is lost).
        LargePoolEmpty = ("ports", "large_pool_empty", "receive not armed: no large buffer free (frames wait in the tap)"),
        /// GSO super-frames received from a port with offloads.
        GsoFramesRx = ("ports", "gso_frames_rx", "GSO super-frames received (TSO/USO from a pod or the host)"),
        /// GSO frames cut into segments in software (the output could not take them whole).
        GsoSegmentedSw = ("output", "gso_segmented_sw", "GSO frames segmented in software for an output without the offload"),
        /// Segments produced by software segmentation.
        GsoSegmentsSw = ("output", "gso_segments_sw", "segments produced by software segmentation"),
        /// Partial checksums completed in software (for an output without checksum offload).
        CsumCompletedSw = ("output", "csum_completed_sw", "partial checksums completed in software"),
        /// TCP super-frames built by coalescing a burst's segments of one flow (GRO) for a
        /// port that takes TSO frames.
        GroFrames = ("output", "gro_frames", "TCP super-frames built from received segments (GRO) for a port that takes TSO"),
        /// Segments coalesced into those super-frames.
        GroSegments = ("output", "gro_segments", "TCP segments coalesced into GRO super-frames"),
        /// A segment that did not join a GRO run because its TCP checksum (or the run's first
        /// segment's) did not verify: sent on alone, for the receiver to drop.
        GroBadChecksum = ("output", "gro_bad_checksum", "TCP segments not coalesced: their checksum did not verify (sent on alone)"),
        /// No large buffer was free for a GRO run: its segments were sent one by one.
        GroNoLargeBuffer = ("output", "gro_no_large_buffer", "GRO run not started: no large buffer free (segments sent one by one)"),
        /// A read from a port failed (other than EAGAIN/EINTR); its receives back off and retry.
        RxReadError = ("ports", "rx_read_error", "a port read failed; receives retry with back-off"),
        /// The kernel found an AF_XDP socket's fill ring empty when a frame arrived
        /// (`XDP_STATISTICS` `rx_fill_ring_empty_descs`): the frame was dropped (`xsk_rx_dropped`).
        XskFillRingEmpty = ("ports", "xsk_fill_ring_empty", "AF_XDP: the kernel found the fill ring empty"),
        /// A transmit kick (`sendto`) of an AF_XDP socket failed other than with EAGAIN/EBUSY/
        /// ENOBUFS; the frames stay in the tx ring and the kick is retried.
        XskKickError = ("ports", "xsk_kick_error", "AF_XDP: a transmit wake-up (sendto) failed; retried"),
        /// An AF_XDP ring handed back an address that is not a chunk the queue lent (never
        /// expected): ignored, the chunk is not reused.
        XskBadAddress = ("ports", "xsk_bad_address", "AF_XDP: the kernel returned an address the queue never lent"),
        /// Frames copied into a UMEM chunk on the way to an AF_XDP port (they were in a large buffer).
        XskTxCopied = ("output", "xsk_tx_copied", "AF_XDP: frame copied into a UMEM chunk for transmit"),
        /// Frames longer than a chunk sent over an AF_XDP port in several chunks (multi-buffer).
        XskTxMultiBuffer = ("output", "xsk_tx_multi_buffer", "AF_XDP: frame sent in several UMEM chunks (multi-buffer)"),
        /// Frames that arrived on an AF_XDP port in several chunks, gathered into one buffer.
        XskRxMultiBuffer = ("input", "xsk_rx_multi_buffer", "AF_XDP: frame received in several UMEM chunks, gathered"),
        /// A multi-buffer frame left in an AF_XDP rx ring for a poll because no large buffer
        /// was free to gather it into.
        XskRxGatherWait = ("input", "xsk_rx_gather_wait", "AF_XDP: a frame in several UMEM chunks waited in the ring for a large buffer"),
    }
}

/// Traffic through one port, as counted by one worker.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PortStats {
    /// Frames received.
    pub rx_packets: u64,
    /// Bytes received (each frame's real length, also for frames dropped as truncated).
    pub rx_bytes: u64,
    /// Reads from the port that failed (other than EAGAIN/EINTR).
    pub rx_errors: u64,
    /// Frames sent: the kernel accepted them whole.
    pub tx_packets: u64,
    /// Bytes sent.
    pub tx_bytes: u64,
    /// Frames routed to the port that it did not take (each also counted under a drop reason:
    /// `tx_queue_full`, `tx_write_error`, `tx_short_write`).
    pub tx_errors: u64,
    /// Packets to this pod denied by its ingress NetworkPolicy isolation.
    pub ingress_denied: u64,
    /// Packets from this pod denied by its egress NetworkPolicy isolation.
    pub egress_denied: u64,
}

impl PortStats {
    /// Adds `o` into these stats.
    pub fn add(&mut self, o: &PortStats) {
        self.rx_packets += o.rx_packets;
        self.rx_bytes += o.rx_bytes;
        self.rx_errors += o.rx_errors;
        self.tx_packets += o.tx_packets;
        self.tx_bytes += o.tx_bytes;
        self.tx_errors += o.tx_errors;
        self.ingress_denied += o.ingress_denied;
        self.egress_denied += o.egress_denied;
    }
}

/// One worker's counters, plain integers written only by that worker.
#[derive(Debug, Clone)]
pub struct Counters {
    /// Drops by reason, indexed by `DropReason as usize`.
    pub drops: [u64; DropReason::COUNT],
    /// Events, indexed by `Event as usize`.
    pub events: [u64; Event::COUNT],
    /// Per port, indexed by port id.
    pub ports: Vec<PortStats>,
}

impl Counters {
    /// Zeroed counters for up to `max_ports` ports (allocated once, here).
    pub fn new(max_ports: usize) -> Self {
        Self {
            drops: [0; DropReason::COUNT],
            events: [0; Event::COUNT],
            ports: vec![PortStats::default(); max_ports],
        }
    }

    /// Counts one drop.
    #[inline]
    pub fn drop(&mut self, reason: DropReason) {
        self.drops[reason as usize] += 1;
    }

    /// Counts one event.
    #[inline]
    pub fn event(&mut self, event: Event) {
        self.events[event as usize] += 1;
    }

    /// The stats of one port; ids past the table go to a scratch slot (never expected).
    #[inline]
    pub fn port(&mut self, id: usize) -> &mut PortStats {
        let last = self.ports.len() - 1;
        &mut self.ports[id.min(last)]
    }

    /// Counts a frame sent on `port` that the kernel took whole.
    #[inline]
    pub fn tx_sent(&mut self, port: usize, len: usize) {
        let s = self.port(port);
        s.tx_packets += 1;
        s.tx_bytes += len as u64;
    }

    /// Counts a frame routed to `port` that it did not take, under `reason`.
    #[inline]
    pub fn tx_lost(&mut self, port: usize, reason: DropReason) {
        self.port(port).tx_errors += 1;
        self.drop(reason);
    }
}

/// Fields of [`PortStats`], as published.
const PORT_FIELDS: usize = 8;

/// The copy of a worker's counters that other threads read.
#[derive(Debug)]
pub struct SharedCounters {
    drops: [AtomicU64; DropReason::COUNT],
    events: [AtomicU64; Event::COUNT],
    ports: Box<[[AtomicU64; PORT_FIELDS]]>,
}

impl SharedCounters {
    /// Zeroed, for `max_ports` ports.
    pub fn new(max_ports: usize) -> Self {
        Self {
            drops: std::array::from_fn(|_| AtomicU64::new(0)),
            events: std::array::from_fn(|_| AtomicU64::new(0)),
            ports: (0..max_ports).map(|_| Default::default()).collect(),
        }
    }

    /// Publishes the worker's counters. Only the owning worker calls this.
    pub fn publish(&self, c: &Counters, active_ports: impl Iterator<Item = usize>) {
        for (a, v) in self.drops.iter().zip(c.drops.iter()) {
            a.store(*v, Relaxed);
        }
        for (a, v) in self.events.iter().zip(c.events.iter()) {
            a.store(*v, Relaxed);
        }
        for id in active_ports {
            if let (Some(a), Some(s)) = (self.ports.get(id), c.ports.get(id)) {
                let vals: [u64; PORT_FIELDS] = [
                    s.rx_packets,
                    s.rx_bytes,
                    s.rx_errors,
                    s.tx_packets,
                    s.tx_bytes,
                    s.tx_errors,
                    s.ingress_denied,
                    s.egress_denied,
                ];
                for (a, v) in a.iter().zip(vals) {
                    a.store(v, Relaxed);
                }
            }
        }
    }

    /// Adds this worker's published drops into `out`.
    pub fn sum_drops(&self, out: &mut [u64; DropReason::COUNT]) {
        for (o, a) in out.iter_mut().zip(self.drops.iter()) {
            *o += a.load(Relaxed);
        }
    }

    /// Adds this worker's published events into `out`.
    pub fn sum_events(&self, out: &mut [u64; Event::COUNT]) {
        for (o, a) in out.iter_mut().zip(self.events.iter()) {
            *o += a.load(Relaxed);
        }
    }

    /// Adds this worker's published stats of port `id` into `out`.
    pub fn sum_port(&self, id: usize, out: &mut PortStats) {
        if let Some(a) = self.ports.get(id) {
            let v: [u64; PORT_FIELDS] = std::array::from_fn(|i| a[i].load(Relaxed));
            out.add(&PortStats {
                rx_packets: v[0],
                rx_bytes: v[1],
                rx_errors: v[2],
                tx_packets: v[3],
                tx_bytes: v[4],
                tx_errors: v[5],
                ingress_denied: v[6],
                egress_denied: v[7],
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_has_a_unique_name() {
        let mut names: Vec<_> = DropReason::ALL.iter().map(|r| r.name()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), DropReason::COUNT);
        assert_eq!(
            DropReason::ALL[DropReason::Hairpin as usize],
            DropReason::Hairpin
        );
    }

    #[test]
    fn published_counters_sum_across_workers() {
        let shared = [SharedCounters::new(4), SharedCounters::new(4)];
        for s in &shared {
            let mut c = Counters::new(4);
            c.drop(DropReason::NoRoute);
            c.port(2).rx_packets = 5;
            s.publish(&c, [2].into_iter());
        }
        let mut drops = [0; DropReason::COUNT];
        let mut port = PortStats::default();
        for s in &shared {
            s.sum_drops(&mut drops);
            s.sum_port(2, &mut port);
        }
        assert_eq!(drops[DropReason::NoRoute as usize], 2);
        assert_eq!(port.rx_packets, 10);
    }
}
