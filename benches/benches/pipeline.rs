//! The pipeline alone (parse → l2 → l3) over one batch, no ports: packets per second at burst
//! 32 and 256, for routed UDP, ARP answered in place, and routing into a 10k-pod table.
//!
//! Every iteration refills the batch from a pool (the pipeline rewrites the frames it routes, so
//! a batch cannot be replayed), runs the pipeline and returns the buffers. `refill_only` times
//! the same refill and return without the pipeline, so the pipeline's own cost per packet is
//! `l3_forward - refill_only` (see BENCHMARKS.md).

use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion, Throughput};
use podswitch_benches::{
    arp_for_gateway, extra_pod_port, udp_a_to_b, udp_to_random_extra_pods, PipelineRig,
    BIG_TABLE_PODS,
};
use podswitch_dataplane::batch::Next;
use podswitch_dataplane::testkit::{self, POD_A, POD_B};
use std::time::Duration;

const BURSTS: [usize; 2] = [32, 256];

fn configure(c: &mut Criterion) -> BenchmarkGroup<'_, criterion::measurement::WallTime> {
    let mut g = c.benchmark_group("pipeline");
    g.warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(20);
    g
}

fn bench_rig(
    g: &mut BenchmarkGroup<'_, criterion::measurement::WallTime>,
    id: &str,
    mut rig: PipelineRig,
    refill_only: bool,
) {
    g.throughput(Throughput::Elements(rig.burst() as u64));
    g.bench_function(id, |b| {
        if refill_only {
            b.iter(|| rig.refill_only())
        } else {
            b.iter(|| rig.refill_and_run())
        }
    });
}

fn pipeline(c: &mut Criterion) {
    let mut g = configure(c);
    for burst in BURSTS {
        let rig = PipelineRig::new(
            testkit::tables_with(true, 1500, 0),
            POD_A,
            vec![udp_a_to_b()],
            burst,
        );
        bench_rig(&mut g, &format!("refill_only/burst{burst}"), rig, true);
    }
    for burst in BURSTS {
        let mut rig = PipelineRig::new(
            testkit::tables_with(true, 1500, 0),
            POD_A,
            vec![udp_a_to_b()],
            burst,
        );
        rig.assert_verdict(|_| Next::Output(POD_B));
        bench_rig(&mut g, &format!("l3_forward/burst{burst}"), rig, false);
    }
    for burst in BURSTS {
        let mut rig = PipelineRig::new(
            testkit::tables_with(true, 1500, 0),
            POD_A,
            vec![arp_for_gateway()],
            burst,
        );
        rig.assert_verdict(|_| Next::Output(POD_A));
        bench_rig(&mut g, &format!("l2_arp_reply/burst{burst}"), rig, false);
    }
    {
        let frames = udp_to_random_extra_pods();
        let ports: Vec<_> = frames.iter().map(|f| extra_pod_port(f)).collect();
        let tables = testkit::tables_with(true, 1500, BIG_TABLE_PODS);
        let mut rig = PipelineRig::new(tables, POD_A, frames, 32);
        rig.assert_verdict(|i| Next::Output(ports[i]));
        bench_rig(&mut g, "l3_forward_big_table/burst32", rig, false);
    }
    g.finish();
}

criterion_group!(benches, pipeline);
criterion_main!(benches);
