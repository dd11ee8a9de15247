//! The forwarding path allocates nothing: a counting global allocator watches the worker's
//! whole loop (`Worker::iterate`, what `Worker::run` repeats: commands, completions, receive →
//! pipeline → transmit, submit, counter publishing) on memory ports after warm-up.

use podswitch_dataplane::counters::{DropReason, Event, PortStats};
use podswitch_dataplane::ports::memory::MemoryQueue;
use podswitch_dataplane::testkit::*;
use podswitch_dataplane::worker::Command;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, Sender};

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// Set on the thread being measured only: the other tests of this binary run in parallel
    /// threads, and their allocations are not the worker loop's. (A `const` initialiser, so
    /// reading it from inside the allocator allocates nothing itself.)
    static MEASURED: Cell<bool> = const { Cell::new(false) };
}

fn count() {
    if MEASURED.with(Cell::get) {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    }
}

// SAFETY: defers to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// The commands a daemon sends while traffic flows: a port removed and added back, then a
/// sync (publish and answer). Built and sent by the caller, so only their handling counts.
fn send_port_churn(commands: &Sender<Command>) -> Receiver<()> {
    let (done, answered) = std::sync::mpsc::sync_channel(1);
    commands
        .send(Command::RemovePort {
            id: POD_B,
            release_device: false,
        })
        .unwrap();
    commands
        .send(Command::AddQueue(Box::new(MemoryQueue::generator(
            POD_B,
            Vec::new(),
            0,
        ))))
        .unwrap();
    commands.send(Command::Sync(done)).unwrap();
    answered
}

#[test]
fn forwarding_loop_allocates_nothing() {
    let crate::Rig {
        mut worker,
        commands,
        waker,
        ..
    } = crate::rig(32, 1024, 32);
    // Pod A sends a mix: routed UDP, an echo to the gateway, a TTL-expired packet, one to an
    // unassigned pod address (unreachable), an ARP request, and garbage (a runt). Every path
    // of the pipeline runs, none may allocate.
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
    let mut state = worker.start_loop().unwrap();
    // Warm-up, the command path included.
    let warm = send_port_churn(&commands);
    for _ in 0..100 {
        worker.iterate(&mut state).unwrap();
    }
    warm.try_recv().expect("the warm-up sync was answered");

    let churn = send_port_churn(&commands);
    waker.wake();
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    MEASURED.with(|m| m.set(true));
    let mut packets = 0;
    for _ in 0..10_000 {
        packets += worker.iterate(&mut state).unwrap();
    }
    MEASURED.with(|m| m.set(false));
    let allocated = ALLOCATIONS.load(Ordering::Relaxed) - before;
    assert_eq!(allocated, 0, "the worker loop allocated {allocated} times");

    // Each path the window claims to cover ran in it.
    assert_eq!(packets, 320_000, "every iteration received a burst");
    churn
        .try_recv()
        .expect("the sync sent with the churn was answered");
    let c = worker.counters();
    // Pod B's counters restart when its queue is added back, at the window's first
    // iteration; one frame in six (the first of the cycle) is routed to it.
    let routed = (100 * 32..100 * 32 + 320_000)
        .filter(|i| i % 6 == 0)
        .count() as u64;
    assert_eq!(
        c.ports[usize::from(POD_B)].tx_packets,
        routed,
        "routed UDP reached pod B through its re-added queue"
    );
    for e in [
        Event::IcmpEchoReply,
        Event::IcmpTimeExceededSent,
        Event::IcmpUnreachableSent,
        Event::ArpReply,
    ] {
        assert!(c.events[e as usize] > 0, "{} never happened", e.name());
    }
    assert!(
        c.drops[DropReason::Runt as usize] > 0,
        "garbage was dropped"
    );
    // Counters were published inside the window, after pod B's queue came back (the sync's
    // publish came before any packet reached it).
    let mut published = PortStats::default();
    worker
        .shared_counters()
        .sum_port(usize::from(POD_B), &mut published);
    assert!(
        published.tx_packets > 0,
        "the loop published counters: {published:?}"
    );
}

#[test]
fn software_segmentation_and_checksum_completion_allocate_nothing() {
    let crate::Rig {
        mut worker, tables, ..
    } = crate::rig(8, 1024, 8);
    // Pod B without offloads: every super-frame is cut in software (45 segments each, more
    // than a staging burst holds for 8 of them), every partial checksum completed.
    let mut t = tables_with(true, 1500, 0);
    std::sync::Arc::make_mut(&mut t.ports)[usize::from(POD_B)]
        .as_mut()
        .unwrap()
        .offloads = false;
    tables.store(std::sync::Arc::new(t));
    let frames = vec![tso4_frame(64_000, 1448), tso4_frame(100, 0)];
    worker.add_queue(Box::new(MemoryQueue::generator_offloaded(POD_A, frames, 8)));
    worker.add_queue(Box::new(MemoryQueue::generator(POD_B, Vec::new(), 0)));
    let mut state = worker.start_loop().unwrap();
    for _ in 0..100 {
        worker.iterate(&mut state).unwrap();
    }
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    MEASURED.with(|m| m.set(true));
    for _ in 0..1_000 {
        worker.iterate(&mut state).unwrap();
    }
    MEASURED.with(|m| m.set(false));
    let allocated = ALLOCATIONS.load(Ordering::Relaxed) - before;
    assert_eq!(allocated, 0, "the GSO path allocated {allocated} times");
    let c = worker.counters();
    assert_eq!(c.events[Event::GsoSegmentedSw as usize], 1100 * 4);
    assert_eq!(c.events[Event::GsoSegmentsSw as usize], 1100 * 4 * 45);
    assert_eq!(c.events[Event::CsumCompletedSw as usize], 1100 * 4);
    assert_eq!(c.drops.iter().sum::<u64>(), 0, "{:?}", c.drops);
}
