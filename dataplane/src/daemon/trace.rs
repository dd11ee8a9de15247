//! `podswitchctl trace`: builds the packet a request describes, as it would arrive on the named
//! port, and runs it through the live pipeline — the published tables and the shared conntrack —
//! in dry-run mode: every stage decides as it would for a real packet and records why, but
//! nothing shared is changed (no connection created or advanced, no affinity written) and
//! nothing is sent. The answer is each stage's decision, with the Service and endpoint behind
//! it where there is one.

use crate::batch::{Batch, Next};
use crate::buffer::Pool;
use crate::counters::Counters;
use crate::pipeline::{self, Ctx, FlowState, Mode, WorkerState};
use crate::tables::{Binding, Tables};
use crate::trace::Trace;
use podswitch_packet::{
    checksum, EtherType, EthernetFrame, IpProtocol, Ipv4Packet, MacAddr, ETHERNET_HEADER_LEN,
};
use podswitch_proto::{TracePacket, TraceResult, TraceStep};
use std::net::Ipv4Addr;
use std::time::Instant;

/// Runs the described packet through the pipeline without sending it.
pub fn trace(tables: &Tables, flows: &FlowState, req: &TracePacket) -> Result<TraceResult, String> {
    let node = tables
        .node
        .ok_or("the node is not configured yet (no set_node): nothing to trace through")?;
    let (in_port, entry) = tables
        .ports
        .iter()
        .enumerate()
        .find_map(|(id, p)| {
            p.as_ref()
                .filter(|p| *p.name == *req.in_port)
                .map(|p| (id, p))
        })
        .ok_or_else(|| format!("no port named {:?}: see `podswitchctl ports`", req.in_port))?;
    let src = req.src.unwrap_or(match entry.binding {
        Binding::Pod { ip } => ip,
        Binding::Host => node.gateway_ip,
        // A packet from another node's pod: the first host of 0.0.0.0/0 is as good as any;
        // `src` says which.
        Binding::Uplink => std::net::Ipv4Addr::new(192, 0, 2, 1),
    });
    let (sport, dport) = (req.src_port.unwrap_or(40000), req.dst_port.unwrap_or(80));
    let (proto, l4) = match req.protocol.to_ascii_lowercase().as_str() {
        "tcp" => (IpProtocol::TCP, tcp_syn(sport, dport)),
        "udp" => (IpProtocol::UDP, udp(sport, dport)),
        "icmp" => (IpProtocol::ICMP, icmp_echo(sport)),
        other => {
            return Err(format!(
                "protocol {other:?} cannot be traced: use tcp, udp or icmp"
            ))
        }
    };
    let uplink = tables.uplink.filter(|u| usize::from(u.port) == in_port);
    let frame = match uplink {
        None => ipv4(entry.peer_mac, node.gateway_mac, src, req.dst, proto, &l4),
        // From the underlay: addressed to the uplink's MAC; with VXLAN, as another node would
        // send it (outer headers from a documentation address to the uplink's).
        Some(u) => {
            let inner = ipv4(entry.peer_mac, u.mac, src, req.dst, proto, &l4);
            match u.encap {
                crate::tables::Encap::Direct => inner,
                crate::tables::Encap::Vxlan { vni, port } => {
                    let mut f = vec![0u8; podswitch_packet::vxlan::ENCAP_LEN];
                    let outer = podswitch_packet::vxlan::Outer {
                        src_mac: entry.peer_mac,
                        dst_mac: u.mac,
                        src_ip: std::net::Ipv4Addr::new(192, 0, 2, 2),
                        dst_ip: u.ip,
                        ttl: 64,
                        dscp_ecn: 0,
                        src_port: 49152,
                        dst_port: port,
                        vni,
                    };
                    outer
                        .emit(&mut f, inner.len())
                        .ok_or("the traced packet is too long to encapsulate")?;
                    f.extend_from_slice(&inner);
                    f
                }
            }
        }
    };

    let mut pool = Pool::new(1);
    let mut buf = pool.get().ok_or("no buffer for the traced packet")?;
    buf.fill(&frame);
    let mut batch = Batch::with_limit(1);
    batch.in_port = in_port as u16;
    if batch.push(buf).is_err() {
        return Err("the traced packet did not fit its batch".into());
    }
    let mut ctr = Counters::new(tables.ports.len().max(1));
    let mut trace = Trace::on();
    let now = Instant::now();
    let mut state = WorkerState::new(now);
    let mut cx = Ctx::new(
        tables,
        flows,
        &mut ctr,
        &mut trace,
        &mut state,
        now,
        Mode::DryRun,
    );
    pipeline::run(&mut batch, &mut cx);
    let verdict = batch
        .iter()
        .next()
        .map(|p| describe(p.meta.next, tables))
        .unwrap_or_default();
    batch.recycle(&mut pool);
    Ok(TraceResult {
        steps: trace
            .entries()
            .iter()
            .map(|e| TraceStep {
                stage: e.stage.name().to_string(),
                verdict: describe(e.next, tables),
                note: e.note.to_string(),
            })
            .collect(),
        verdict,
    })
}

fn describe(next: Next, tables: &Tables) -> String {
    match next {
        Next::Continue => "continue".into(),
        Next::Output(p) => format!(
            "output {}",
            tables
                .port(p)
                .map_or_else(|| p.to_string(), |e| e.name.to_string())
        ),
        Next::Drop(r) => format!("drop {}", r.name()),
    }
}

/// A SYN with no options (checksum left 0: the switch verifies none).
fn tcp_syn(sport: u16, dport: u16) -> Vec<u8> {
    let mut tcp = vec![0u8; 20];
    tcp[0..2].copy_from_slice(&sport.to_be_bytes());
    tcp[2..4].copy_from_slice(&dport.to_be_bytes());
    tcp[4..8].copy_from_slice(&1u32.to_be_bytes());
    tcp[12] = 5 << 4;
    tcp[13] = 0x02;
    tcp[14..16].copy_from_slice(&64240u16.to_be_bytes());
    tcp
}

/// A datagram with 16 bytes of payload and no checksum.
fn udp(sport: u16, dport: u16) -> Vec<u8> {
    let mut u = vec![0u8; 24];
    u[0..2].copy_from_slice(&sport.to_be_bytes());
    u[2..4].copy_from_slice(&dport.to_be_bytes());
    u[4..6].copy_from_slice(&24u16.to_be_bytes());
    u
}

/// An echo request with identifier `ident`, sequence 1.
fn icmp_echo(ident: u16) -> Vec<u8> {
    let mut icmp = vec![8u8, 0, 0, 0, 0, 0, 0, 1];
    icmp[4..6].copy_from_slice(&ident.to_be_bytes());
    let c = checksum::checksum(&icmp);
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    icmp
}

fn ipv4(
    src_mac: MacAddr,
    dst_mac: MacAddr,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    proto: IpProtocol,
    l4: &[u8],
) -> Vec<u8> {
    let mut f = vec![0u8; ETHERNET_HEADER_LEN + 20 + l4.len()];
    let mut eth = EthernetFrame::new_unchecked(&mut f[..]);
    eth.set_dst(dst_mac);
    eth.set_src(src_mac);
    eth.set_ethertype(EtherType::IPV4);
    let mut ip = Ipv4Packet::new_unchecked(&mut f[ETHERNET_HEADER_LEN..]);
    ip.set_version_and_header_len(20);
    ip.set_total_len((20 + l4.len()) as u16);
    ip.set_dont_frag(true);
    ip.set_ttl(64);
    ip.set_protocol(proto);
    ip.set_src(src);
    ip.set_dst(dst);
    ip.fill_checksum();
    ip.payload_mut().copy_from_slice(l4);
    f
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tables::Encap;
    use crate::testkit::*;

    fn from_uplink(encap: Encap) -> TraceResult {
        let tables = tables_multinode(encap);
        let req = TracePacket {
            in_port: "uplink".into(),
            src: Some(NODE2_POD_IP),
            dst: POD_A_IP,
            protocol: "udp".into(),
            src_port: None,
            dst_port: None,
        };
        trace(&tables, &FlowState::default(), &req).unwrap()
    }

    #[test]
    fn a_packet_from_another_node_is_traced_as_the_underlay_would_send_it() {
        let direct = from_uplink(Encap::Direct);
        assert_eq!(direct.verdict, "output pod-a", "{direct:?}");
        let vxlan = from_uplink(Encap::Vxlan {
            vni: VNI,
            port: 4789,
        });
        assert_eq!(vxlan.verdict, "output pod-a", "{vxlan:?}");
        assert!(vxlan
            .steps
            .iter()
            .any(|s| s.stage == "tunnel" && s.note == "VXLAN decapsulated"));
    }
}
