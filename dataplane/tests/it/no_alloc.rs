//! The forwarding path allocates nothing: a counting global allocator watches the worker's
//! receive → pipeline → transmit loop on memory ports after warm-up.

use arc_swap::ArcSwap;
use podswitch_dataplane::ports::memory::MemoryQueue;
use podswitch_dataplane::ports::{Uring, Waker};
use podswitch_dataplane::testkit::*;
use podswitch_dataplane::worker::{IdlePolicy, Worker, WorkerConfig};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: defers to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn forwarding_loop_allocates_nothing() {
    let tables = Arc::new(ArcSwap::from_pointee(tables_with(true, 1500, 0)));
    let (_tx, rx) = std::sync::mpsc::channel();
    let cfg = WorkerConfig {
        burst: 32,
        idle: IdlePolicy::Busy,
        pool_buffers: 1024,
        max_ports: 8,
        rx_depth: 32,
        spin_iterations: 0,
        sleep: Duration::ZERO,
    };
    let mut worker = Worker::new(
        cfg,
        tables.clone(),
        rx,
        Arc::new(Waker::new().unwrap()),
        Arc::new(AtomicBool::new(false)),
    );
    // Pod A sends a mix: routed UDP, an echo to the gateway, a TTL-expired packet, an ARP
    // request, and garbage. Every path of the pipeline runs, none may allocate.
    let frames = vec![
        udp_frame(POD_A_MAC, GW_MAC, POD_A_IP, POD_B_IP, 64, 18),
        echo_request(POD_A_MAC, GW_MAC, POD_A_IP, GW_IP, 64),
        udp_frame(POD_A_MAC, GW_MAC, POD_A_IP, POD_B_IP, 1, 18),
        udp_frame(POD_A_MAC, GW_MAC, POD_A_IP, UNUSED_POD_IP, 64, 18),
        arp_request(POD_A_MAC, POD_A_IP, GW_IP),
        vec![0xff; 9],
    ];
    worker.add_queue(Box::new(MemoryQueue::generator(POD_A, frames, 32)));
    worker.add_queue(Box::new(MemoryQueue::generator(POD_B, Vec::new(), 0)));
    let mut ring = Uring::new(64, 128).unwrap();
    let snapshot = tables.load_full();
    for _ in 0..100 {
        worker.poll_once(&mut ring, &snapshot);
    }
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    let mut packets = 0;
    for _ in 0..10_000 {
        packets += worker.poll_once(&mut ring, &snapshot);
    }
    let allocated = ALLOCATIONS.load(Ordering::Relaxed) - before;
    assert_eq!(packets, 320_000);
    assert_eq!(
        allocated, 0,
        "the forwarding loop allocated {allocated} times"
    );
    let c = worker.counters();
    // One frame in six (the first of the cycle) is routed to pod B, warm-up included.
    let sent: u64 = 100 * 32 + 320_000;
    assert_eq!(
        c.ports[usize::from(POD_B)].tx_packets,
        sent.div_ceil(6),
        "routed UDP reached pod B"
    );
}
