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

/// Runs `worker`'s loop 100 times, then 1000 times counted: how many times those allocated.
fn allocations_after_warm_up(worker: &mut podswitch_dataplane::worker::Worker) -> usize {
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
    ALLOCATIONS.load(Ordering::Relaxed) - before
}

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
    let allocated = allocations_after_warm_up(&mut worker);
    assert_eq!(allocated, 0, "the GSO path allocated {allocated} times");
    let c = worker.counters();
    assert_eq!(c.events[Event::GsoSegmentedSw as usize], 1100 * 4);
    assert_eq!(c.events[Event::GsoSegmentsSw as usize], 1100 * 4 * 45);
    assert_eq!(c.events[Event::CsumCompletedSw as usize], 1100 * 4);
    assert_eq!(c.drops.iter().sum::<u64>(), 0, "{:?}", c.drops);
}

#[test]
fn coalescing_allocates_nothing() {
    use podswitch_packet::gso::{SegmentChecksum, Segmenter};
    let crate::Rig {
        mut worker, tables, ..
    } = crate::rig(32, 1024, 8);
    // A burst of two flows' MTU-sized segments, interleaved, and a pure ACK between them, to
    // pod B, which takes offloads: two runs per burst, and a flush of one by the ACK.
    let cut = |sport: u16| {
        let (mut f, _) = tso4_frame(15 * 1448, 1448);
        f[34..36].copy_from_slice(&sport.to_be_bytes());
        let mut segs = Segmenter::tcpv4(&f, 1448, SegmentChecksum::Full).unwrap();
        let mut out = Vec::new();
        let mut buf = vec![0u8; 2048];
        while let Some(n) = segs.next_into(&mut buf).unwrap() {
            out.push(buf[..n].to_vec());
        }
        out
    };
    let (a, b) = (cut(40000), cut(40001));
    let mut frames: Vec<Vec<u8>> = a.into_iter().zip(b).flat_map(|(x, y)| [x, y]).collect();
    frames.insert(
        10,
        tcp_segment(
            POD_A_IP,
            40000,
            POD_B_IP,
            5201,
            podswitch_packet::TcpFlags::ACK,
        ),
    );
    frames.truncate(32);
    // Pod A sends wire-sized segments (no offloads), as an AF_XDP port does.
    let mut t = tables_with(true, 1500, 0);
    std::sync::Arc::make_mut(&mut t.ports)[usize::from(POD_A)]
        .as_mut()
        .unwrap()
        .offloads = false;
    tables.store(std::sync::Arc::new(t));
    worker.add_queue(Box::new(MemoryQueue::generator(POD_A, frames, 32)));
    worker.add_queue(Box::new(MemoryQueue::generator(POD_B, Vec::new(), 0)));
    let allocated = allocations_after_warm_up(&mut worker);
    assert_eq!(allocated, 0, "the GRO path allocated {allocated} times");
    let c = worker.counters();
    assert!(
        c.events[Event::GroFrames as usize] >= 1100 * 2,
        "{:?}",
        c.events
    );
    assert_eq!(c.drops.iter().sum::<u64>(), 0, "{:?}", c.drops);
}

/// A network namespace made with `ip netns add`, deleted on drop (with the veths inside).
struct TestNetns(String);

impl Drop for TestNetns {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &self.0])
            .status();
    }
}

fn ip(args: &[&str]) {
    let out = std::process::Command::new("ip")
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// An afxdp queue of port `port` on interface `ifname` (of the calling thread's namespace),
/// over the worker's buffer region: what `daemon/afxdp_port.rs` builds for one worker.
fn afxdp_queue(
    port: u16,
    ifname: &str,
    (base, len, chunks): (usize, usize, usize),
) -> podswitch_dataplane::ports::afxdp::AfxdpQueue {
    use podswitch_dataplane::ports::afxdp::{AfxdpQueue, CHUNK_SIZE, RING_SIZE};
    use podswitch_dataplane::ports::xdp::{load_redirect_program, XdpHook, XskMap};
    use podswitch_dataplane::ports::xsk::{Xsk, XskConfig};
    let mut nl = podswitch_netlink::Netlink::new().unwrap();
    let index = nl.link_index(ifname).unwrap().unwrap();
    let map = XskMap::new(1).unwrap();
    let prog = load_redirect_program(&map, false).unwrap();
    let (hook, _) = XdpHook::attach(nl, index, ifname, map, prog, false).unwrap();
    let cfg = XskConfig {
        umem: (base, len),
        chunk_size: CHUNK_SIZE,
        ring_size: RING_SIZE,
        ifindex: index,
        queue_id: 0,
        multi_buffer: false,
    };
    // SAFETY: the region is the worker's pool, which outlives the queue in this test (the
    // worker owns both and drops its pool with a buffer out only by leaking its region), and
    // the queue lends only chunks it takes from that pool.
    let xsk = unsafe { Xsk::open(&cfg) }.unwrap();
    hook.map().insert(0, xsk.raw_fd()).unwrap();
    AfxdpQueue::new(port, xsk, hook, base, chunks)
}

/// Sends `frame` out of `ifname` through an AF_PACKET socket until `stop` is set.
fn flood(ifname: &str, frame: Vec<u8>, stop: std::sync::Arc<std::sync::atomic::AtomicBool>) {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    let name = std::ffi::CString::new(ifname).unwrap();
    // SAFETY: a C string the call only reads.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    assert_ne!(index, 0);
    // SAFETY: no pointers; checked below.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0) };
    assert!(fd >= 0);
    // SAFETY: a fresh descriptor.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: sockaddr_ll is plain data.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_ifindex = index as i32;
    // SAFETY: a valid sockaddr_ll of the length given.
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&sll as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as u32,
        )
    };
    assert_eq!(rc, 0);
    while !stop.load(Ordering::Relaxed) {
        for _ in 0..64 {
            // SAFETY: sends `frame.len()` bytes of a live buffer.
            unsafe { libc::send(fd.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0) };
        }
        std::thread::sleep(std::time::Duration::from_micros(200));
    }
}

#[test]
fn afxdp_forwarding_allocates_nothing() {
    // SAFETY: geteuid has no arguments and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        let why = "SKIPPED afxdp_forwarding_allocates_nothing: needs root (veths, XDP, AF_XDP)";
        assert!(std::env::var_os("PODSWITCH_REQUIRE_ALL").is_none(), "{why}");
        eprintln!("{why}");
        return;
    }
    let ns = TestNetns(format!("pswna{:x}", std::process::id()));
    ip(&["netns", "add", &ns.0]);
    for (x, p) in [("xa", "pa"), ("xb", "pb")] {
        ip(&[
            "-n", &ns.0, "link", "add", x, "type", "veth", "peer", "name", p,
        ]);
        ip(&["-n", &ns.0, "link", "set", x, "up"]);
        ip(&["-n", &ns.0, "link", "set", p, "up"]);
    }
    let crate::Rig { mut worker, .. } = crate::rig(32, 8192, 32);
    let (base, len, chunks) = worker.umem_area();
    let umem = (base as usize, len, chunks);
    let path = std::path::PathBuf::from("/run/netns").join(&ns.0);
    let (qa, qb) = podswitch_netlink::in_netns(&path, || {
        (
            afxdp_queue(POD_A, "xa", umem),
            afxdp_queue(POD_B, "xb", umem),
        )
    })
    .unwrap();
    worker.add_queue(Box::new(qa));
    worker.add_queue(Box::new(qb));
    // Pod A's frames arrive on xa (sent into its peer pa), are routed to pod B and leave
    // through xb's socket (to pb, where nobody listens).
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let frame = udp_frame(POD_A_MAC, GW_MAC, POD_A_IP, POD_B_IP, 64, 18);
    let sender = {
        let stop = stop.clone();
        podswitch_netlink::in_netns(&path, move || {
            std::thread::spawn(move || flood("pa", frame, stop))
        })
        .unwrap()
    };
    let mut state = worker.start_loop().unwrap();
    let mut warm = 0;
    // Bounded by time, not iterations: on a loaded machine the sender thread may get little
    // CPU, and the worker spins through many empty iterations meanwhile.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while warm <= 5_000 && std::time::Instant::now() < deadline {
        warm += worker.iterate(&mut state).unwrap();
    }
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    MEASURED.with(|m| m.set(true));
    let mut packets = 0;
    while packets <= 20_000 && std::time::Instant::now() < deadline {
        packets += worker.iterate(&mut state).unwrap();
    }
    MEASURED.with(|m| m.set(false));
    let allocated = ALLOCATIONS.load(Ordering::Relaxed) - before;
    stop.store(true, Ordering::Relaxed);
    sender.join().unwrap();
    assert!(warm > 5_000, "the warm-up forwarded {warm} frames");
    assert!(packets > 20_000, "the window forwarded {packets} frames");
    assert_eq!(allocated, 0, "the AF_XDP loop allocated {allocated} times");
    let c = worker.counters();
    assert!(
        c.ports[usize::from(POD_B)].tx_packets > 20_000,
        "frames left through pod B's socket and completed: {:?}",
        c.ports[usize::from(POD_B)]
    );
}
