//! The conntrack table alone: lookups that hit (half of them by the reply alias) in a table of
//! 1k and of 1M entries, and a commit followed by its removal (a connection's table cost).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use podswitch_dataplane::conntrack::{Config, Conntrack, Nat, Timeouts, Tuple};
use std::hint::black_box;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

/// Operations per iteration.
const OPS: usize = 256;
const UDP: u8 = 17;

/// The `i`-th distinct flow: 64k source ports per client address.
fn flow(i: usize) -> Tuple {
    let client = 0x0a00_0000 + (i >> 16) as u32;
    Tuple {
        src: Ipv4Addr::from(client),
        dst: Ipv4Addr::new(10, 96, 0, 10),
        src_port: i as u16,
        dst_port: 53,
        proto: UDP,
    }
}

/// A table of `entries` flows and the tuples to look up: a spread over the whole table, every
/// other one the reply direction. The capacity is twice the entries: shards of ~64 fill
/// unevenly and each is capped, so a small table sized exactly refuses a few percent.
fn filled(entries: usize, now: Instant) -> (Conntrack, Vec<Tuple>) {
    let ct = Conntrack::new(Config {
        capacity: 2 * entries,
        timeouts: Timeouts::default(),
    });
    for i in 0..entries {
        let _ = ct.commit(&flow(i), Nat::default(), None, 0, 64, now);
    }
    let step = (entries / 4096).max(1) * 7 + 1;
    let probes = (0..4096)
        .map(|k| {
            let t = flow((k * step) % entries);
            if k % 2 == 0 {
                t
            } else {
                t.inverse()
            }
        })
        .collect();
    (ct, probes)
}

fn run_lookups(ct: &Conntrack, probes: &[Tuple], offset: &mut usize, now: Instant) -> usize {
    let mut found = 0;
    for t in &probes[*offset..*offset + OPS] {
        if ct.lookup(black_box(t), 0, 64, now, true).is_some() {
            found += 1;
        }
    }
    *offset = (*offset + OPS) % probes.len();
    found
}

fn conntrack(c: &mut Criterion) {
    let mut g = c.benchmark_group("conntrack");
    g.warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(20)
        .throughput(Throughput::Elements(OPS as u64));
    let now = Instant::now();

    for entries in [1_000, 1_000_000] {
        let (ct, probes) = filled(entries, now);
        assert_eq!(ct.len(), entries, "every flow tracked");
        let mut offset = 0;
        assert_eq!(
            run_lookups(&ct, &probes, &mut offset, now),
            OPS,
            "lookups hit"
        );
        g.bench_function(format!("lookup_hit/entries{entries}"), |b| {
            b.iter(|| run_lookups(&ct, &probes, &mut offset, now))
        });
    }

    // A connection's table cost: OPS commits of new flows into a table holding 1k live ones,
    // then one GC pass that removes them once expired (the pass also walks the 2k slots).
    let ct = Conntrack::new(Config {
        capacity: 2_048,
        timeouts: Timeouts::default(),
    });
    let later = now + Duration::from_secs(3600);
    for i in 0..1_000 {
        let _ = ct.commit(&flow(i), Nat::default(), None, 0, 64, later);
    }
    let fresh: Vec<Tuple> = (0..OPS).map(|i| flow(1_000_000 + i)).collect();
    let gc_time = now + Duration::from_secs(31);
    g.bench_function("commit_then_gc/entries1000", |b| {
        b.iter(|| {
            let made = fresh
                .iter()
                .filter(|t| ct.commit(t, Nat::default(), None, 0, 64, now).is_ok())
                .count();
            let mut cursor = Default::default();
            let removed = ct.gc_step(&mut cursor, gc_time, usize::MAX);
            debug_assert_eq!(made, removed);
            removed
        })
    });
    g.finish();
}

criterion_group!(benches, conntrack);
criterion_main!(benches);
