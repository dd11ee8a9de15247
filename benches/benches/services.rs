//! Service traffic through the pipeline (conntrack → service → route → commit → rewrite), no
//! ports: established flows through a VIP and new connections, at 1, 1k and 10k Service ports
//! of 10 endpoints each, beside the plain pod → pod path in the same run; and the cost of
//! compiling the Service table. Results and method: BENCHMARKS.md, "Issue 14: Services".
//!
//! Bursts are 64 packets from pod A, each flow to the VIP of a different (random) Service port
//! when there are at least 64, so lookups touch 64 entries and Maglev tables.

use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion, Throughput};
use podswitch_benches::services::{
    big_flow_state, flow_vips, service_entries, service_spec, tables_with_services, tcp_from_pod_a,
    NewConnections, FIRST_PORT, TCP_ACK, TCP_SYN,
};
use podswitch_benches::{udp_a_to_b, PipelineRig};
use podswitch_dataplane::batch::Next;
use podswitch_dataplane::pipeline::FlowState;
use podswitch_dataplane::tables::{ServiceEntry, Services};
use podswitch_dataplane::testkit::{self, POD_A, POD_A_IP, POD_B, POD_B_IP};
use std::sync::Arc;
use std::time::Duration;

type Group<'a> = BenchmarkGroup<'a, criterion::measurement::WallTime>;

const BURST: usize = 64;
const SCALES: [usize; 3] = [1, 1_000, 10_000];
fn configure<'a>(c: &'a mut Criterion, name: &str) -> Group<'a> {
    let mut g = c.benchmark_group(name);
    g.warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(20);
    g
}

fn established(c: &mut Criterion) {
    let mut g = configure(c, "services_established");
    g.throughput(Throughput::Elements(BURST as u64));
    {
        let mut rig = PipelineRig::new(
            testkit::tables_with(true, 1500, 0),
            POD_A,
            vec![udp_a_to_b()],
            BURST,
        );
        rig.assert_verdict(|_| Next::Output(POD_B));
        g.bench_function("pod_pod_udp_1flow", |b| b.iter(|| rig.refill_and_run()));
    }
    {
        let frames = (0..BURST)
            .map(|k| tcp_from_pod_a(40_000 + k as u16, POD_B_IP, 80, TCP_ACK))
            .collect();
        let mut rig = PipelineRig::new(testkit::tables_with(true, 1500, 0), POD_A, frames, BURST);
        rig.assert_verdict(|_| Next::Output(POD_B));
        g.bench_function("pod_pod_tcp_64flows", |b| b.iter(|| rig.refill_and_run()));
    }
    for (label, big) in [("ct1k", false), ("ct1M", true)] {
        let mut big_flows = big.then(big_flow_state);
        for (scale, ports) in SCALES.into_iter().enumerate() {
            // Client ports distinct per scale: the handed-on conntrack still holds the previous
            // scale's flows, whose reply tuples (pod B's endpoint ports → pod A) would collide.
            let first = 40_000 + (scale * BURST) as u16;
            let frames = flow_vips(ports, BURST)
                .into_iter()
                .enumerate()
                .map(|(k, ip)| tcp_from_pod_a(first + k as u16, ip, 80, TCP_ACK))
                .collect();
            let mut rig = PipelineRig::new(tables_with_services(ports), POD_A, frames, BURST);
            match big_flows.take() {
                Some(f) => rig.set_flows(f),
                None => rig.set_flows(FlowState::new(1024, 1024)),
            }
            // The first burst creates the 64 connections; the measured ones find them.
            rig.assert_verdict(|_| Next::Output(POD_B));
            rig.assert_verdict(|_| Next::Output(POD_B));
            g.bench_function(format!("vip_tcp_64flows/{label}/ports{ports}"), |b| {
                b.iter(|| rig.refill_and_run())
            });
            if big {
                // Hand the filled table to the next scale rather than fill it again.
                big_flows = Some(rig.take_flows());
            }
        }
    }
    g.finish();
}

fn new_connections(c: &mut Criterion) {
    let mut g = configure(c, "services_new_connections");
    g.throughput(Throughput::Elements(BURST as u64));
    for (label, big) in [("ct_fresh", false), ("ct1M", true)] {
        let mut big_flows = big.then(big_flow_state);
        for ports in SCALES {
            let frames = flow_vips(ports, BURST)
                .into_iter()
                .map(|ip| tcp_from_pod_a(FIRST_PORT, ip, 80, TCP_SYN))
                .collect();
            let mut rig = PipelineRig::new(tables_with_services(ports), POD_A, frames, BURST);
            let mut sweep = match big_flows.take() {
                Some(flows) => {
                    // Pod A's connections of the previous scale go; the 1M others stay.
                    flows.conntrack.flush(|e| e.original.src == POD_A_IP);
                    rig.set_flows(flows);
                    NewConnections::start_in_filled(&mut rig)
                }
                None => NewConnections::start(&mut rig),
            };
            let before = rig.flows().conntrack.len();
            rig.assert_verdict(|_| Next::Output(POD_B));
            assert_eq!(
                rig.flows().conntrack.len(),
                before + BURST,
                "64 new connections"
            );
            g.bench_function(format!("vip_tcp_syn/{label}/ports{ports}"), |b| {
                b.iter_custom(|iters| sweep.time(&mut rig, iters))
            });
            if big {
                big_flows = Some(rig.take_flows());
            }
        }
    }
    g.finish();
}

fn compile(c: &mut Criterion) {
    let mut g = c.benchmark_group("services_compile");
    g.warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(10);
    g.bench_function("entries_and_table/ports10000", |b| {
        b.iter(|| Services::new(service_entries(10_000), None))
    });
    let entries = service_entries(10_000);
    let changed = service_spec(5_000, 1);
    g.bench_function("one_port_changed_reuse/ports10000", |b| {
        b.iter(|| {
            let mut v = entries.clone();
            v[5_000] = Arc::new(ServiceEntry::new(5_001, &changed));
            Services::new(v, None)
        })
    });
    g.finish();
}

criterion_group!(benches, established, new_connections, compile);
criterion_main!(benches);
