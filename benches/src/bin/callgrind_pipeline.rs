//! Drives a fixed number of packets through the benchmark rigs, for counting instructions per
//! packet with `valgrind --tool=callgrind` (see `benches/callgrind.sh`, which runs N and 2N
//! packets and takes the difference so that start-up cost cancels).
//!
//! Usage: `callgrind_pipeline MODE PACKETS [BURST]`, MODE one of
//! - `worker`: `Worker::poll_once` on memory ports (rx + pipeline + output + tx);
//! - `pipeline`: refill a batch from the pool + `pipeline::run` + buffers back;
//! - `refill`: the same refill and return without the pipeline (subtract from `pipeline`);
//! - `policy-syn:R`, `policy-est:R` (R = `none`, `10`, `1000` or `10000`): the policy rigs
//!   (`podswitch_benches::policy`), bursts of 64 TCP segments pod A → the 64 server pods,
//!   refill + pipeline: `syn` opens a new connection with every packet (each burst a fresh
//!   source port), `est` sends the same 64 established flows. The burst is always 64.
//! - `vip-syn:P`, `vip-est:P` (P = `1`, `1000` or `10000` Service ports of 10 endpoints): the
//!   Service rigs (`podswitch_benches::services`), bursts of 64 TCP segments pod A → 64 VIPs,
//!   refill + pipeline: `syn` opens a new connection through a VIP with every packet (conntrack
//!   miss, Service lookup, Maglev, route, commit, DNAT), `est` sends 64 established flows.

use podswitch_benches::policy::{servers, tables_with_policies, ALLOWED_PORT, SERVERS};
use podswitch_benches::services::{
    flow_vips, set_src_port, tables_with_services, tcp_from_pod_a, NewConnections, FIRST_PORT,
    TCP_ACK, TCP_SYN,
};
use podswitch_benches::{extra_pod_ip, udp_a_to_b, PipelineRig, WorkerRig};
use podswitch_dataplane::batch::{Next, PortId};
use podswitch_dataplane::pipeline::FlowState;
use podswitch_dataplane::testkit::{self, POD_A, POD_B};
use std::process::ExitCode;

/// Packets per burst of the Service modes (the policy modes' is `SERVERS`, also 64).
const BURST64: usize = 64;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(mode), Some(packets)) = (args.first(), args.get(1).and_then(|n| n.parse().ok()))
    else {
        eprintln!("usage: callgrind_pipeline worker|pipeline|refill PACKETS [BURST]");
        return ExitCode::from(2);
    };
    let packets: usize = packets;
    let burst: usize = args.get(2).and_then(|b| b.parse().ok()).unwrap_or(32);
    let bursts = packets.div_ceil(burst);
    let done = match mode.as_str() {
        "worker" => {
            let mut rig = match WorkerRig::a_to_b(burst) {
                Ok(rig) => rig,
                Err(e) => {
                    eprintln!("cannot create the worker's io_uring: {e}");
                    return ExitCode::FAILURE;
                }
            };
            (0..bursts).map(|_| rig.poll()).sum::<usize>()
        }
        "pipeline" | "refill" => {
            let tables = testkit::tables_with(true, 1500, 0);
            let mut rig = PipelineRig::new(tables, POD_A, vec![udp_a_to_b()], burst);
            rig.assert_verdict(|_| Next::Output(POD_B));
            if mode == "pipeline" {
                (0..bursts).map(|_| rig.refill_and_run()).sum::<usize>()
            } else {
                (0..bursts).map(|_| rig.refill_only()).sum::<usize>()
            }
        }
        other if other.starts_with("policy-") => match policy(other, bursts_of(packets)) {
            Some(done) => done,
            None => {
                eprintln!("unknown policy mode {other:?}: expected policy-syn:R or policy-est:R, R one of none, 10, 1000, 10000");
                return ExitCode::from(2);
            }
        },
        other if other.starts_with("vip-") => match vip(other, packets.div_ceil(BURST64)) {
            Some(done) => done,
            None => {
                eprintln!("unknown Service mode {other:?}: expected vip-syn:P or vip-est:P, P one of 1, 1000, 10000");
                return ExitCode::from(2);
            }
        },
        other => {
            eprintln!("unknown mode {other:?}: expected worker, pipeline, refill, policy-syn:R, policy-est:R, vip-syn:P or vip-est:P");
            return ExitCode::from(2);
        }
    };
    println!("{mode}: {done} packets in {bursts} bursts of {burst}");
    ExitCode::SUCCESS
}

/// Bursts of the policy modes (always [`SERVERS`] packets each).
fn bursts_of(packets: usize) -> usize {
    packets.div_ceil(SERVERS)
}

/// Runs a `policy-syn:R` / `policy-est:R` mode for `bursts` bursts; `None` for a bad mode.
fn policy(mode: &str, bursts: usize) -> Option<usize> {
    let (kind, rules) = mode.strip_prefix("policy-")?.split_once(':')?;
    let rules = match rules {
        "none" => None,
        r => Some(
            r.parse::<usize>()
                .ok()
                .filter(|r| [10, 1_000, 10_000].contains(r))?,
        ),
    };
    let syn = match kind {
        "syn" => true,
        "est" => false,
        _ => return None,
    };
    let (frames, outs): (Vec<Vec<u8>>, Vec<PortId>) = servers()
        .into_iter()
        .enumerate()
        .map(|(k, i)| {
            let flags = if syn { TCP_SYN } else { TCP_ACK };
            let f = tcp_from_pod_a(40_000 + k as u16, extra_pod_ip(i), ALLOWED_PORT, flags);
            (f, 3 + i as PortId)
        })
        .collect();
    let mut rig = PipelineRig::new(tables_with_policies(rules), POD_A, frames, SERVERS);
    // Room for every connection of a 2N run at N = 100 000 (the size callgrind.sh uses here).
    rig.set_flows(FlowState::new(if syn { 262_144 } else { 1024 }, 1024));
    rig.assert_verdict(|i| Next::Output(outs[i]));
    let mut port = 1024u16;
    let mut done = 0;
    for _ in 0..bursts {
        if syn {
            // The 64 flows share a source port (their destinations differ): a new tuple each.
            port = if port == u16::MAX { 1024 } else { port + 1 };
            for f in rig.frames_mut() {
                set_src_port(f, port);
            }
        }
        done += rig.refill_and_run();
    }
    Some(done)
}

/// Runs a `vip-syn:P` / `vip-est:P` mode for `bursts` bursts of 64; `None` for a bad mode.
fn vip(mode: &str, bursts: usize) -> Option<usize> {
    let (kind, ports) = mode.strip_prefix("vip-")?.split_once(':')?;
    let ports = ports
        .parse::<usize>()
        .ok()
        .filter(|p| [1, 1_000, 10_000].contains(p))?;
    let syn = match kind {
        "syn" => true,
        "est" => false,
        _ => return None,
    };
    let flags = if syn { TCP_SYN } else { TCP_ACK };
    let frames = flow_vips(ports, BURST64)
        .into_iter()
        .enumerate()
        .map(|(k, ip)| tcp_from_pod_a(FIRST_PORT + k as u16, ip, 80, flags))
        .collect();
    let mut rig = PipelineRig::new(tables_with_services(ports), POD_A, frames, BURST64);
    let mut done = 0;
    if syn {
        let mut sweep = NewConnections::start(&mut rig);
        rig.assert_verdict(|_| Next::Output(POD_B));
        for _ in 0..bursts {
            sweep.advance(&mut rig);
            done += rig.refill_and_run();
        }
    } else {
        rig.set_flows(FlowState::new(1024, 1024));
        rig.assert_verdict(|_| Next::Output(POD_B));
        for _ in 0..bursts {
            done += rig.refill_and_run();
        }
    }
    Some(done)
}
