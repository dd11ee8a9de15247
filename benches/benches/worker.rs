//! The whole worker path on memory ports: `Worker::poll_once` receives a burst from a generator
//! queue on pod A (buffer from the pool, frame copied in), runs the pipeline, stages the output
//! and transmits it to a sink queue on pod B (counted, buffer back to the pool). This is the
//! "L3 pipeline on memory ports" number of DESIGN.md §6.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use podswitch_benches::WorkerRig;
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

criterion_group!(benches, poll_once);
criterion_main!(benches);
