//! ICMP errors from the gateway (RFC 792, RFC 1812 §4.3.2): turns the offending packet, in its
//! own buffer, into the error that reports it. The quoted part (IP header plus the first 8
//! bytes of payload) is moved back behind new Ethernet, IPv4 and ICMP headers; nothing is
//! allocated. Errors are never sent about ICMP errors, non-first fragments, or packets from
//! addresses that cannot be answered (RFC 1812 §4.3.2.7).
//!
//! Errors are rate limited per worker by a token bucket ([`IcmpRateLimit`]) with Linux's
//! global defaults: 1000 per second (`net.ipv4.icmp_msgs_per_sec`), bursts of 50
//! (`icmp_msgs_burst`). Echo replies are not limited, as Linux's `icmp_ratemask` does not
//! limit them either. Linux also limits per destination (`icmp_ratelimit`, via its inet_peer
//! cache); the switch does not keep a per-destination table: the worker's bucket bounds what
//! any burst costs, and a pod port has one source address anyway.

use crate::batch::{Next, Packet, PortId};
use crate::counters::Event;
use crate::pipeline::route::ORIGIN_TTL;
use crate::pipeline::Ctx;
use crate::tables::Node;
use podswitch_packet::{
    icmpv4::{time_exceeded, unreachable},
    EtherType, EthernetFrame, Icmpv4Packet, Icmpv4Type, IpProtocol, Ipv4Packet,
    ETHERNET_HEADER_LEN, ICMPV4_HEADER_LEN, IPV4_MIN_HEADER_LEN,
};
use std::time::{Duration, Instant};

/// Bytes of the offending datagram's payload quoted after its header (RFC 792).
const QUOTED_PAYLOAD: usize = 8;

/// A token bucket of ICMP errors: `burst` tokens at most, one more every `1 / per_sec`
/// seconds, one spent per error. Credit is kept in nanoseconds, so no fraction is lost between
/// bursts, and time is what the worker passes in (no clock read here).
#[derive(Debug, Clone)]
pub struct IcmpRateLimit {
    /// Nanoseconds of credit; an error costs `cost_ns`.
    credit_ns: u64,
    cost_ns: u64,
    max_credit_ns: u64,
    last: Instant,
}

impl IcmpRateLimit {
    /// Linux's defaults: 1000 per second, bursts of 50.
    pub const PER_SEC: u32 = 1000;
    /// See [`Self::PER_SEC`].
    pub const BURST: u32 = 50;

    /// A full bucket allowing `per_sec` errors per second (at least 1) in bursts of `burst`.
    pub fn new(per_sec: u32, burst: u32, now: Instant) -> Self {
        let cost_ns = 1_000_000_000 / u64::from(per_sec.max(1));
        let max_credit_ns = cost_ns * u64::from(burst.max(1));
        Self {
            credit_ns: max_credit_ns,
            cost_ns,
            max_credit_ns,
            last: now,
        }
    }

    /// [`Self::new`] with Linux's defaults.
    pub fn linux_default(now: Instant) -> Self {
        Self::new(Self::PER_SEC, Self::BURST, now)
    }

    /// Takes a token if there is one at `now`. A clock that goes backwards adds nothing.
    pub fn allow(&mut self, now: Instant) -> bool {
        if now > self.last {
            let elapsed = now.duration_since(self.last).min(Duration::from_secs(60));
            self.credit_ns = (self.credit_ns + elapsed.as_nanos() as u64).min(self.max_credit_ns);
            self.last = now;
        }
        if self.credit_ns >= self.cost_ns {
            self.credit_ns -= self.cost_ns;
            true
        } else {
            false
        }
    }
}

/// The errors the switch sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IcmpError {
    /// No route (type 3 code 0).
    NetUnreachable,
    /// Unreachable route (type 3 code 1).
    HostUnreachable,
    /// Too big for the next hop and DF set (type 3 code 4), with the next-hop MTU.
    FragNeeded(u16),
    /// TTL expired in transit (type 11 code 0).
    TimeExceeded,
    /// Nothing listens (type 3 code 3): a Service with no endpoint, answered from its VIP.
    PortUnreachable {
        /// The source of the error: the address the refused datagram was sent to.
        from: std::net::Ipv4Addr,
    },
}

impl IcmpError {
    fn type_code(self) -> (Icmpv4Type, u8) {
        match self {
            IcmpError::NetUnreachable => (Icmpv4Type::DEST_UNREACHABLE, unreachable::NET),
            IcmpError::HostUnreachable => (Icmpv4Type::DEST_UNREACHABLE, unreachable::HOST),
            IcmpError::FragNeeded(_) => (Icmpv4Type::DEST_UNREACHABLE, unreachable::FRAG_NEEDED),
            IcmpError::TimeExceeded => (Icmpv4Type::TIME_EXCEEDED, time_exceeded::TTL),
            IcmpError::PortUnreachable { .. } => (Icmpv4Type::DEST_UNREACHABLE, unreachable::PORT),
        }
    }
}

/// Rewrites `pkt` into `error` addressed to its sender, leaving through `in_port`, and returns
/// true. Returns false, leaving the packet untouched, when RFC 1812 forbids an error or the
/// worker's rate limit is spent.
pub fn reply(
    pkt: &mut Packet,
    in_port: PortId,
    node: &Node,
    error: IcmpError,
    cx: &mut Ctx,
) -> bool {
    let ctr = &mut *cx.ctr;
    if !may_answer(pkt) {
        ctr.event(Event::IcmpErrorSuppressed);
        return false;
    }
    if !cx.state.icmp_errors.allow(cx.now) {
        ctr.event(Event::IcmpErrorRateLimited);
        return false;
    }
    let frame = pkt.buf.frame();
    let ip = Ipv4Packet::new_unchecked(&frame[ETHERNET_HEADER_LEN..]);
    let quote_len =
        ip.header_len() + (usize::from(ip.total_len()) - ip.header_len()).min(QUOTED_PAYLOAD);
    let sender_ip = ip.src();
    let sender_mac = EthernetFrame::new_unchecked(frame).src();

    let headers = ETHERNET_HEADER_LEN + IPV4_MIN_HEADER_LEN + ICMPV4_HEADER_LEN;
    if pkt.buf.resize(headers + quote_len).is_none() {
        return false;
    }
    let frame = pkt.buf.frame_mut();
    // The quote moves back by the new IP + ICMP headers; `copy_within` handles the overlap.
    frame.copy_within(
        ETHERNET_HEADER_LEN..ETHERNET_HEADER_LEN + quote_len,
        headers,
    );

    // Back out of the uplink the switch speaks as the uplink's address (the sender may be
    // outside the cluster, where the pods' gateway address means nothing); elsewhere as the
    // gateway.
    let (from_mac, from_ip) = match cx.tables.uplink.filter(|u| u.port == in_port) {
        Some(u) => (u.mac, u.ip),
        None => (node.gateway_mac, node.gateway_ip),
    };
    let (eth, rest) = frame.split_at_mut(ETHERNET_HEADER_LEN);
    let mut eth = EthernetFrame::new_unchecked(eth);
    eth.set_dst(sender_mac);
    eth.set_src(from_mac);
    eth.set_ethertype(EtherType::IPV4);

    let ip_len = IPV4_MIN_HEADER_LEN + ICMPV4_HEADER_LEN + quote_len;
    let (ip_hdr, icmp) = rest.split_at_mut(IPV4_MIN_HEADER_LEN);
    let mut ip = Ipv4Packet::new_unchecked(ip_hdr);
    ip.set_version_and_header_len(IPV4_MIN_HEADER_LEN);
    ip.set_dscp_ecn(0xc0); // internetwork control precedence, as routers send errors
    ip.set_total_len(ip_len as u16);
    ip.set_ident(0);
    ip.set_dont_frag(false);
    ip.set_more_frags(false);
    ip.set_frag_offset(0);
    ip.set_ttl(ORIGIN_TTL);
    ip.set_protocol(IpProtocol::ICMP);
    ip.set_src(match error {
        IcmpError::PortUnreachable { from } => from,
        _ => from_ip,
    });
    ip.set_dst(sender_ip);
    ip.fill_checksum();

    let (msg_type, code) = error.type_code();
    let mut icmp = Icmpv4Packet::new_unchecked(icmp);
    icmp.set_msg_type(msg_type);
    icmp.set_code(code);
    icmp.set_echo_ident(0);
    icmp.set_next_hop_mtu(match error {
        IcmpError::FragNeeded(mtu) => mtu,
        _ => 0,
    });
    icmp.fill_checksum();

    // The error is a new, small frame with a complete checksum, whatever the offload state of
    // the (possibly 64 KB GSO) packet it quotes the first bytes of.
    pkt.meta.offload = crate::batch::Offload::NONE;
    pkt.meta.next = Next::Output(in_port);
    ctr.event(match error {
        IcmpError::TimeExceeded => Event::IcmpTimeExceededSent,
        _ => Event::IcmpUnreachableSent,
    });
    true
}

/// RFC 1812 §4.3.2.7: no error about an ICMP error, a non-first fragment, or a packet whose
/// source is not a unicast address.
fn may_answer(pkt: &Packet) -> bool {
    let ip = Ipv4Packet::new_unchecked(&pkt.buf.frame()[ETHERNET_HEADER_LEN..]);
    let src = ip.src();
    if ip.frag_offset() != 0 || src.is_unspecified() || src.is_multicast() || src.is_broadcast() {
        return false;
    }
    if ip.protocol() == IpProtocol::ICMP {
        let icmp = ip.payload();
        // An ICMP message too short to have a type is not answered either.
        return icmp.first().is_some_and(|&t| !Icmpv4Type(t).is_error());
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_bucket_allows_the_burst_then_one_per_interval() {
        let t0 = Instant::now();
        let mut b = IcmpRateLimit::new(1000, 50, t0);
        assert_eq!((0..1000).filter(|_| b.allow(t0)).count(), 50);
        assert!(!b.allow(t0 + Duration::from_micros(999)));
        assert!(b.allow(t0 + Duration::from_millis(1)));
        assert!(!b.allow(t0 + Duration::from_millis(1)));
    }

    #[test]
    fn credit_is_capped_at_the_burst_however_long_the_pause() {
        let t0 = Instant::now();
        let mut b = IcmpRateLimit::new(1000, 50, t0);
        let later = t0 + Duration::from_secs(3600);
        assert_eq!((0..1000).filter(|_| b.allow(later)).count(), 50);
    }

    #[test]
    fn fractions_of_a_token_are_kept_between_calls() {
        let t0 = Instant::now();
        let mut b = IcmpRateLimit::new(1000, 1, t0);
        assert!(b.allow(t0));
        assert!(!b.allow(t0 + Duration::from_micros(500)));
        assert!(
            b.allow(t0 + Duration::from_micros(1000)),
            "two halves make a token"
        );
    }

    #[test]
    fn a_clock_going_backwards_adds_no_credit() {
        let t1 = Instant::now() + Duration::from_secs(1);
        let mut b = IcmpRateLimit::new(1000, 1, t1);
        assert!(b.allow(t1));
        assert!(!b.allow(t1 - Duration::from_millis(500)));
        assert!(!b.allow(t1));
    }
}
