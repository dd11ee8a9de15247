//! New connections through a VIP into a fresh conntrack and into one already holding a million
//! others, each burst timed alone: prints the median and quartiles of the rate per burst.
//!
//! criterion's mean over many bursts is the figure BENCHMARKS.md reports, but on this 2-core
//! machine shared with builds it swings by 2× from run to run, as a burst preempted by
//! another process counts whole. A burst takes ~30 µs, so most bursts run unpreempted and
//! their median stays put under load: this is the figure to compare two builds by while the
//! machine is busy (run both, one after the other, twice).
//!
//! Usage: `newconn_ct [PORTS] [BURSTS]` (defaults 1 and 20000; PORTS one of 1, 1000, 10000).

use podswitch_benches::services::{
    big_flow_state, flow_vips, tables_with_services, tcp_from_pod_a, NewConnections, FIRST_PORT,
    TCP_SYN,
};
use podswitch_benches::PipelineRig;
use podswitch_dataplane::batch::Next;
use podswitch_dataplane::testkit::{POD_A, POD_A_IP, POD_B};
use std::time::Instant;

const BURST: usize = 64;

fn main() {
    let mut args = std::env::args().skip(1);
    let ports: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1);
    let bursts: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(20_000);
    for big in [false, true] {
        let frames = flow_vips(ports, BURST)
            .into_iter()
            .map(|ip| tcp_from_pod_a(FIRST_PORT, ip, 80, TCP_SYN))
            .collect();
        let mut rig = PipelineRig::new(tables_with_services(ports), POD_A, frames, BURST);
        let mut sweep = if big {
            rig.set_flows(big_flow_state());
            rig.flows().conntrack.flush(|e| e.original.src == POD_A_IP);
            NewConnections::start_in_filled(&mut rig)
        } else {
            NewConnections::start(&mut rig)
        };
        let before = rig.flows().conntrack.len();
        rig.assert_verdict(|_| Next::Output(POD_B));
        assert_eq!(
            rig.flows().conntrack.len(),
            before + BURST,
            "new connections"
        );
        let mut ns: Vec<f64> = Vec::with_capacity(bursts);
        for _ in 0..bursts {
            sweep.advance(&mut rig);
            let t = Instant::now();
            std::hint::black_box(rig.refill_and_run());
            ns.push(t.elapsed().as_nanos() as f64);
        }
        ns.sort_by(f64::total_cmp);
        let rate = |q: f64| BURST as f64 * 1e3 / ns[((ns.len() - 1) as f64 * q) as usize];
        println!(
            "vip_tcp_syn/{}/ports{ports}: median {:.2} M/s (quartiles {:.2}–{:.2})",
            if big { "ct1M" } else { "ct_fresh" },
            rate(0.5),
            rate(0.75),
            rate(0.25),
        );
    }
}
