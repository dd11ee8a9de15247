//! Policy: the NetworkPolicy verdict. Runs after `route` (so a Service connection is judged
//! against the endpoint it was translated to, not the VIP) and before conntrack's `commit` (so
//! a denied connection is never tracked). A new connection is checked at the source pod's egress
//! and the destination pod's ingress ([`Policies::check`]); its entry then carries the verdict
//! with the policy epoch it was taken under, so its later packets and its replies pass without
//! a check. When the policies change, each established connection is checked again at its next
//! packet, in its original direction: one a policy no longer allows is stopped (both ways) for
//! as long as that holds, and resumes when a policy allows it again (conntrack's lookup drops
//! a stopped connection's packets, and ICMP errors about it, until the epoch changes again).
//! Untracked packets (SCTP, ICMP other than echo) are checked one by one. A later fragment
//! follows its first fragment when that passed every stage (conntrack's commit records it);
//! otherwise it is checked without ports, so only a rule without ports lets it through.

use super::Ctx;
use crate::batch::{Batch, Fragment, L4Key, Meta, Track, L3};
use crate::conntrack::{Dir, PolicyMark};
use crate::counters::{Counters, DropReason};
use crate::tables::policy::{Check, CompiledDirection, Policies, Verdict};
use crate::tables::Tables;
use crate::trace::Stage;
use podswitch_packet::ETHERNET_HEADER_LEN;
use std::net::Ipv4Addr;
use std::sync::Arc;

/// What a verdict is taken on: a connection's original direction.
#[derive(Debug, Clone, Copy)]
struct Key {
    /// Source before any SNAT.
    src: Ipv4Addr,
    /// Destination after DNAT.
    dst: Ipv4Addr,
    proto: u8,
    /// Destination port (after DNAT); `None` for portless protocols.
    port: Option<u16>,
}

/// SCTP's IP protocol number.
const SCTP: u8 = 132;

/// The destination port of an SCTP packet (the switch does not parse SCTP: its common header
/// starts, like UDP's, with the two ports).
fn sctp_dst_port(frame: &[u8]) -> Option<u16> {
    let ihl = usize::from(frame.get(ETHERNET_HEADER_LEN)? & 0x0f) * 4;
    let at = ETHERNET_HEADER_LEN + ihl + 2;
    frame
        .get(at..at + 2)
        .map(|b| u16::from_be_bytes([b[0], b[1]]))
}

/// The key of a packet that opens (or travels in the original direction of) a connection.
fn forward_key(meta: &Meta, frame: &[u8]) -> Key {
    let f = &meta.flow;
    let (dst, nat_port) = match meta.nat.dst {
        Some(e) => (e.ip, Some(e.port)),
        None => (f.dst_ip, None),
    };
    let port = match f.l4 {
        L4Key::Tcp { dst_port, .. } | L4Key::Udp { dst_port, .. } => {
            Some(nat_port.unwrap_or(dst_port))
        }
        _ if f.proto.0 == SCTP && f.frag != Fragment::Later => sctp_dst_port(frame),
        _ => None,
    };
    Key {
        src: f.src_ip,
        dst,
        proto: f.proto.0,
        port,
    }
}

/// The original direction's key, from a reply: it came from where the connection went, and
/// its translation leads back to where the connection came from.
fn reply_key(meta: &Meta) -> Key {
    let f = &meta.flow;
    let port = match f.l4 {
        L4Key::Tcp { src_port, .. } | L4Key::Udp { src_port, .. } => Some(src_port),
        _ => None,
    };
    Key {
        src: meta.nat.dst.map_or(f.dst_ip, |e| e.ip),
        dst: f.src_ip,
        proto: f.proto.0,
        port,
    }
}

/// The policy stage.
pub fn run(batch: &mut Batch, cx: &mut Ctx) {
    let tables = cx.tables;
    let policies = &*tables.policies;
    for (i, pkt) in batch.iter_mut().enumerate() {
        if !pkt.pending() || pkt.meta.l3 != L3::Ipv4 {
            continue;
        }
        let (key, recheck) = match pkt.meta.track {
            Track::New | Track::Untracked if policies.is_empty() => continue,
            // A later fragment whose first passed (recorded at commit) follows it; one whose
            // first was not seen (or was dropped) has no ports: only a rule without ports
            // lets it through.
            Track::New | Track::Untracked => (forward_key(&pkt.meta, pkt.buf.frame()), None),
            Track::Hit {
                handle,
                dir,
                recheck_policy: true,
                ..
            } => {
                let key = match dir {
                    Dir::Original => forward_key(&pkt.meta, pkt.buf.frame()),
                    Dir::Reply => reply_key(&pkt.meta),
                };
                (key, Some(handle))
            }
            Track::Hit { .. } | Track::Related | Track::Fragment => continue,
        };
        let verdict = policies.check(key.src, key.dst, key.proto, key.port);
        let allowed = verdict.allowed();
        // Rechecked only when the epoch changed: the mark is written once per connection and
        // policy change (a connection still denied is dropped by conntrack's lookup).
        if let (Some(handle), true) = (recheck, cx.forwarding()) {
            let mark = PolicyMark {
                epoch: tables.policy_epoch,
                denied: !allowed,
            };
            cx.flows.conntrack.set_policy(handle, mark);
        }
        if !allowed {
            count_denial(policies, &key, &verdict, cx.ctr);
            pkt.drop(DropReason::PolicyDenied, cx.ctr);
        }
        cx.trace.note_with(i, Stage::Policy, pkt.meta.next, || {
            explain(tables, &key, &verdict, recheck.is_some())
        });
    }
}

/// Counts a denial at the isolated pod (both, when both sides deny).
fn count_denial(policies: &Policies, key: &Key, verdict: &Verdict, ctr: &mut Counters) {
    if verdict.egress == Check::Denied {
        if let Some(p) = policies.of(key.src) {
            ctr.port(usize::from(p.port)).egress_denied += 1;
        }
    }
    if verdict.ingress == Check::Denied {
        if let Some(p) = policies.of(key.dst) {
            ctr.port(usize::from(p.port)).ingress_denied += 1;
        }
    }
}

/// The trace line: each side's decision with the policy and rule behind it.
fn explain(tables: &Tables, key: &Key, verdict: &Verdict, recheck: bool) -> String {
    let what = match key.port {
        Some(port) => format!(
            "{} → {} {} {port}",
            key.src,
            key.dst,
            protocol_name(key.proto)
        ),
        None => format!("{} → {} {}", key.src, key.dst, protocol_name(key.proto)),
    };
    let pod = |ip: Ipv4Addr| {
        tables
            .policies
            .of(ip)
            .and_then(|p| tables.port(p.port))
            .map_or_else(|| ip.to_string(), |e| format!("{ip} (port {})", e.name))
    };
    let side = |name: &str, check: Check, ip: Ipv4Addr, dir: Option<&Arc<CompiledDirection>>| match (
        check, dir,
    ) {
        (Check::Open, _) if key.src == key.dst => format!("{name}: a pod reaching itself"),
        (Check::Open, Some(_)) => format!("{name}: from the node, allowed"),
        (Check::Open, None) => format!("{name}: {} is not isolated", pod(ip)),
        (Check::Allowed(o), Some(d)) => format!(
            "{name}: allowed by NetworkPolicy {} {name} rule {}",
            d.policy_name(o),
            o.rule
        ),
        (Check::Allowed(_), None) => format!("{name}: allowed"),
        (Check::Denied, d) => format!(
            "{name}: DENIED: {} is {name}-isolated by {} and no rule allows it",
            pod(ip),
            d.map(|d| d.policies.join(", ")).unwrap_or_default()
        ),
    };
    let policy_of = |ip: Ipv4Addr| tables.policies.of(ip);
    let egress = side(
        "egress",
        verdict.egress,
        key.src,
        policy_of(key.src).and_then(|p| p.egress.as_ref()),
    );
    let ingress = side(
        "ingress",
        verdict.ingress,
        key.dst,
        policy_of(key.dst).and_then(|p| p.ingress.as_ref()),
    );
    let head = match (verdict.allowed(), recheck) {
        (true, false) => "allowed",
        (false, false) => "denied",
        (true, true) => "established connection checked again after a policy change: allowed",
        (false, true) => {
            "established connection checked again after a policy change: denied (stopped)"
        }
    };
    format!("{head}: {what}; {egress}; {ingress}")
}

fn protocol_name(proto: u8) -> String {
    match proto {
        6 => "TCP".into(),
        17 => "UDP".into(),
        132 => "SCTP".into(),
        1 => "ICMP".into(),
        n => format!("protocol {n}"),
    }
}

#[cfg(test)]
mod tests;
