//! Resident memory of the Service table (10k Service ports × 10 endpoints) and of a 1M-entry
//! conntrack, measured from `/proc/self/statm` before and after building each (empty, then
//! filled), so BENCHMARKS.md quotes measured bytes, not estimates.

use podswitch_benches::services::{service_entries, TCP_ACK};
use podswitch_dataplane::conntrack::{Nat, Tuple};
use podswitch_dataplane::pipeline::FlowState;
use podswitch_dataplane::tables::Services;
use std::net::Ipv4Addr;
use std::time::Instant;

/// podswitchd's allocator, so that the resident memory is what the daemon's would be.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Resident set size in bytes (statm's second field, in pages).
fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

fn main() {
    let start = rss();
    let before = start;
    let services = Services::new(service_entries(10_000), None);
    let after = rss();
    let table_slots: usize = services
        .iter()
        .map(|e| {
            // Equal traffic policies share one Selection: count its table once.
            let external = if std::sync::Arc::ptr_eq(&e.internal, &e.external) {
                0
            } else {
                e.external.table_len()
            };
            e.internal.table_len() + external
        })
        .sum();
    println!(
        "services: 10000 ports x 10 endpoints: rss +{} bytes ({:.0} per port); Maglev slots {} (u16) = {} bytes; first table_len {}",
        after - before,
        (after - before) as f64 / 10_000.0,
        table_slots,
        table_slots * 2,
        services.iter().next().map_or(0, |e| e.internal.table_len())
    );
    std::hint::black_box(&services);

    const CAP: usize = 1_000_000;
    let before = rss();
    let flows = FlowState::new(CAP, 1024);
    let created = rss();
    let now = Instant::now();
    for i in 0..CAP as u32 {
        let t = Tuple {
            src: Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 250, 0, 0)) + (i >> 14)),
            dst: Ipv4Addr::new(10, 251, 0, 1),
            src_port: 1024 + (i & 0x3fff) as u16,
            dst_port: 443,
            proto: 6,
        };
        let _ = flows
            .conntrack
            .commit(&t, Nat::default(), None, TCP_ACK, 54, now);
    }
    let filled = rss();
    println!(
        "conntrack capacity {CAP}: rss +{} bytes created ({:.1} per entry), +{} bytes with {} entries ({:.1} per entry)",
        created - before,
        (created - before) as f64 / CAP as f64,
        filled - before,
        flows.conntrack.len(),
        (filled - before) as f64 / CAP as f64
    );
    std::hint::black_box(&services);
    println!(
        "process rss with both: {} bytes ({:.0} MiB; {:.0} MiB before either)",
        filled,
        filled as f64 / (1 << 20) as f64,
        start as f64 / (1 << 20) as f64
    );
}
