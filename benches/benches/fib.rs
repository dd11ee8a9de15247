//! Longest-prefix match alone: lookups of pod addresses in the standard topology's table and in
//! one with 10 000 extra pods, plus a miss that falls through to the default route.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use podswitch_benches::{extra_pod_ip, random_pod_subset, BIG_TABLE_DESTINATIONS, BIG_TABLE_PODS};
use podswitch_dataplane::tables::{Fib, RouteTarget};
use podswitch_dataplane::testkit::{self, POD_A_IP, POD_B_IP};
use std::hint::black_box;
use std::net::Ipv4Addr;
use std::time::Duration;

/// Lookups per iteration.
const LOOKUPS: usize = 256;

/// `dsts` cycled to a whole number of iterations' worth, so the timed loop walks a plain slice
/// (no per-lookup modulo: a 64-bit division would cost as much as the lookup).
fn cycled(dsts: &[Ipv4Addr]) -> Vec<Ipv4Addr> {
    let len = dsts.len().div_ceil(LOOKUPS) * LOOKUPS;
    dsts.iter().copied().cycle().take(len).collect()
}

fn run_lookups(fib: &Fib, dsts: &[Ipv4Addr], offset: &mut usize) -> usize {
    let mut found = 0;
    for &dst in &dsts[*offset..*offset + LOOKUPS] {
        if matches!(fib.lookup(black_box(dst)), Some(RouteTarget::Port(_))) {
            found += 1;
        }
    }
    *offset = (*offset + LOOKUPS) % dsts.len();
    found
}

fn fib(c: &mut Criterion) {
    let mut g = c.benchmark_group("fib");
    g.warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(20)
        .throughput(Throughput::Elements(LOOKUPS as u64));

    let small = testkit::tables_with(true, 1500, 0).fib;
    let big = testkit::tables_with(true, 1500, BIG_TABLE_PODS).fib;
    let pods_small = cycled(&[POD_A_IP, POD_B_IP]);
    let pods_big: Vec<Ipv4Addr> = random_pod_subset(BIG_TABLE_PODS, BIG_TABLE_DESTINATIONS, 7)
        .into_iter()
        .map(extra_pod_ip)
        .collect();
    let pods_big = cycled(&pods_big);
    let outside = cycled(&[Ipv4Addr::new(192, 0, 2, 1), Ipv4Addr::new(8, 8, 8, 8)]);

    let cases: [(String, &Fib, &[Ipv4Addr], usize); 3] = [
        (
            format!("lookup/routes{}", small.len()),
            &small,
            &pods_small,
            LOOKUPS,
        ),
        (
            format!("lookup/routes{}", big.len()),
            &big,
            &pods_big,
            LOOKUPS,
        ),
        (
            format!("lookup_default_route/routes{}", small.len()),
            &small,
            &outside,
            0,
        ),
    ];
    for (id, fib, dsts, hits) in cases {
        let mut offset = 0;
        assert_eq!(
            run_lookups(fib, dsts, &mut offset),
            hits,
            "{id}: lookups resolve as expected"
        );
        g.bench_function(id, |b| b.iter(|| run_lookups(fib, dsts, &mut offset)));
    }
    g.finish();
}

criterion_group!(benches, fib);
criterion_main!(benches);
