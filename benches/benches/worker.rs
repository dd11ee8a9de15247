//! The whole worker path on memory ports: `Worker::poll_once` receives a burst from a generator
//! queue on pod A (buffer from the pool, frame copied in), runs the pipeline, stages the output
//! and transmits it to a sink queue on pod B (counted, buffer back to the pool). This is the
//! "L3 pipeline on memory ports" number of DESIGN.md §6.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use podswitch_benches::WorkerRig;
use podswitch_dataplane::testkit;
use std::time::Duration;

fn poll_once(c: &mut Criterion) {
    let mut g = c.benchmark_group("worker");
    g.warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(20);
    for burst in [32, 256] {
        let mut rig = match WorkerRig::a_to_b(burst) {
            Ok(rig) => rig,
            Err(e) => panic!("worker bench needs io_uring (Uring::new failed: {e})"),
        };
        rig.assert_forwards();
        g.throughput(Throughput::Elements(burst as u64));
        g.bench_function(format!("poll_once/burst{burst}"), |b| b.iter(|| rig.poll()));
    }
    g.finish();
}

/// The tap path with offloads, on memory ports: pod A hands the switch what a pod's TSO does
/// (64 KB TCP super-frames with partial checksums, 45 segments of 1448 bytes each) and pod B
/// either takes them as they are (a tap with vnet headers: the frame crosses whole) or not
/// (the switch cuts each into checksummed segments). Throughput is in payload bytes.
fn poll_once_offloads(c: &mut Criterion) {
    let mut g = c.benchmark_group("worker_offload");
    g.warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(20);
    let burst = 32;
    let payload = 45 * 1448;
    let cases = [
        ("tso64k_whole", testkit::tso4_frame(payload, 1448), true),
        (
            "tso64k_segmented_sw",
            testkit::tso4_frame(payload, 1448),
            false,
        ),
        (
            "partial_csum_1448_completed_sw",
            testkit::tso4_frame(1448, 0),
            false,
        ),
    ];
    for (name, (frame, offload), pod_b_offloads) in cases {
        let payload_bytes = (frame.len() - 14 - 20 - 32) as u64;
        let mut rig = match WorkerRig::offloaded(burst, vec![(frame, offload)], pod_b_offloads) {
            Ok(rig) => rig,
            Err(e) => panic!("worker bench needs io_uring (Uring::new failed: {e})"),
        };
        rig.assert_forwards_offloaded();
        g.throughput(Throughput::Bytes(payload_bytes * burst as u64));
        g.bench_function(format!("poll_once/{name}/burst{burst}"), |b| {
            b.iter(|| rig.poll())
        });
    }
    g.finish();
}

criterion_group!(benches, poll_once, poll_once_offloads);
criterion_main!(benches);
