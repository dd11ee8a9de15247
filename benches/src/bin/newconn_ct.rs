//! New connections through a VIP into a fresh conntrack and into one already holding a million
//! others, each burst timed alone: prints the median and quartiles of the rate per burst.
//!
//! criterion's mean over many bursts is the figure BENCHMARKS.md reports, but on this 2-core
//! machine shared with builds it swings by 2× from run to run, as a burst preempted by
//! another process counts whole. A burst takes ~30 µs, so most bursts run unpreempted and
//! their median stays put under load: this is the figure to compare two builds by while the
//! machine is busy (run both, one after the other, twice).
//!
//! `newconn_ct corner` measures issue 14's "within 20% from the small tables to the large"
//! for new connections in one run: the smallest corner (1 Service port, a fresh conntrack) and
//! the largest (10k ports, a million other connections) alternate in blocks of bursts, so a
//! host that slows down for a while slows both alike, and the ratio of their medians is
//! compared at the same moments rather than minutes apart.
//!
//! Usage: `newconn_ct [PORTS] [BURSTS]` (defaults 1 and 20000; PORTS one of 1, 1000, 10000),
//! or `newconn_ct corner [BURSTS]`.

use podswitch_benches::services::{
    big_flow_state, flow_vips, tables_with_services, tcp_from_pod_a, NewConnections, FIRST_PORT,
    TCP_SYN,
};
use podswitch_benches::PipelineRig;
use podswitch_dataplane::batch::Next;
use podswitch_dataplane::testkit::{POD_A, POD_A_IP, POD_B};
use std::time::Instant;

const BURST: usize = 64;
/// Bursts per block in `corner` mode: long enough for each rig's small working set to come
/// back into cache after the other's block, short enough to share the host's moods.
const BLOCK: usize = 200;

/// One sweep of new connections: a rig, its source-port sweep and its per-burst times.
struct Corner {
    rig: PipelineRig,
    sweep: NewConnections,
    ns: Vec<f64>,
}

impl Corner {
    fn new(ports: usize, big: bool, bursts: usize) -> Corner {
        let frames = flow_vips(ports, BURST)
            .into_iter()
            .map(|ip| tcp_from_pod_a(FIRST_PORT, ip, 80, TCP_SYN))
            .collect();
        let mut rig = PipelineRig::new(tables_with_services(ports), POD_A, frames, BURST);
        let sweep = if big {
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
        Corner {
            rig,
            sweep,
            ns: Vec::with_capacity(bursts),
        }
    }

    fn run(&mut self, bursts: usize) {
        for _ in 0..bursts {
            self.sweep.advance(&mut self.rig);
            let t = Instant::now();
            std::hint::black_box(self.rig.refill_and_run());
            self.ns.push(t.elapsed().as_nanos() as f64);
        }
    }

    /// Median and quartiles of the rate per burst, in M/s.
    fn rates(&mut self) -> (f64, f64, f64) {
        self.ns.sort_by(f64::total_cmp);
        let ns = &self.ns;
        let rate = |q: f64| BURST as f64 * 1e3 / ns[((ns.len() - 1) as f64 * q) as usize];
        (rate(0.5), rate(0.75), rate(0.25))
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let first = args.next();
    if first.as_deref() == Some("corner") {
        let bursts: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(20_000);
        let mut small = Corner::new(1, false, bursts);
        let mut large = Corner::new(10_000, true, bursts);
        let mut done = 0;
        while done < bursts {
            let n = BLOCK.min(bursts - done);
            small.run(n);
            large.run(n);
            done += n;
        }
        let (s, s_lo, s_hi) = small.rates();
        let (l, l_lo, l_hi) = large.rates();
        println!("vip_tcp_syn/ct_fresh/ports1: median {s:.2} M/s (quartiles {s_lo:.2}–{s_hi:.2})");
        println!("vip_tcp_syn/ct1M/ports10000: median {l:.2} M/s (quartiles {l_lo:.2}–{l_hi:.2})");
        println!("corner ratio (large / small): {:.2}", l / s);
        return;
    }
    let ports: usize = first.and_then(|a| a.parse().ok()).unwrap_or(1);
    let bursts: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(20_000);
    for big in [false, true] {
        let mut c = Corner::new(ports, big, bursts);
        c.run(bursts);
        let (m, lo, hi) = c.rates();
        println!(
            "vip_tcp_syn/{}/ports{ports}: median {m:.2} M/s (quartiles {lo:.2}–{hi:.2})",
            if big { "ct1M" } else { "ct_fresh" },
        );
    }
}
