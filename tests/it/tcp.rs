//! Real TCP through the switch: pod ↔ pod and pod ↔ node, byte-exact.

use podswitch_proto::CountersDump;
use podswitch_tests::*;

const TEN_MB: usize = 10 * 1024 * 1024;

#[test]
fn pod_to_pod_tcp_transfers_10_mb_byte_exact() {
    if !root_or_skip("pod_to_pod_tcp_transfers_10_mb_byte_exact") {
        return;
    }
    let node = Node::start();
    let a = node.add_pod(2);
    let b = node.add_pod(3);
    let got = tcp_transfer(&a.ns, &b.ns, b.ip, 5001, TEN_MB);
    assert_eq!(got.len(), TEN_MB);
    assert!(got == pattern(TEN_MB, 5001), "payload corrupted in transit");
    let c = node.counters();
    let rx_a = c.ports.iter().find(|p| p.port == a.port).unwrap();
    assert!(
        rx_a.rx_bytes > TEN_MB as u64,
        "the bytes went through the switch: {rx_a:?}"
    );
}

#[test]
fn pod_and_node_exchange_tcp_both_ways() {
    if !root_or_skip("pod_and_node_exchange_tcp_both_ways") {
        return;
    }
    let node = Node::start();
    let a = node.add_pod(2);
    let got = tcp_transfer(&a.ns, &node.ns, GATEWAY, 5002, 2 * 1024 * 1024);
    assert!(got == pattern(2 * 1024 * 1024, 5002), "pod → node");
    let got = tcp_transfer(&node.ns, &a.ns, a.ip, 5003, 2 * 1024 * 1024);
    assert!(got == pattern(2 * 1024 * 1024, 5003), "node → pod");
}

#[test]
fn two_workers_with_multiqueue_taps_carry_parallel_flows() {
    if !root_or_skip("two_workers_with_multiqueue_taps_carry_parallel_flows") {
        return;
    }
    let node = Node::with_args(&["--workers", "2"]);
    let a = node.add_pod(2);
    let b = node.add_pod(3);
    // Each tap queue belongs to one worker and the kernel picks a flow's queue by its hash:
    // with 16 flows, all on one queue has odds of 2 in 65536.
    const FLOWS: u16 = 16;
    const LEN: usize = 256 * 1024;
    std::thread::scope(|s| {
        let flows: Vec<_> = (0..FLOWS)
            .map(|i| {
                let (a, b) = (&a, &b);
                s.spawn(move || tcp_transfer(&a.ns, &b.ns, b.ip, 6000 + i, LEN))
            })
            .collect();
        for (i, f) in flows.into_iter().enumerate() {
            assert!(
                f.join().unwrap() == pattern(LEN, 6000 + i as u64),
                "flow {i}"
            );
        }
    });
    // Frames left in a tap's queue when the flows end are counted once read: wait until the
    // switch has counted everything the taps handed it (their kernel `tx_packets`).
    let from_taps = |c: &CountersDump| -> u64 {
        c.ports
            .iter()
            .filter_map(|p| p.kernel)
            .map(|k| k.tx_packets)
            .sum()
    };
    let workers_rx = |c: &CountersDump| -> u64 { c.workers.iter().map(|w| w.rx_packets).sum() };
    let c = crate::counters::counters_once(&node, |c| workers_rx(c) == from_taps(c));
    assert_eq!(c.workers.len(), 2, "{:?}", c.workers);
    assert!(
        c.ports.iter().all(|p| p.kernel.is_some()),
        "every tap's kernel counters are readable: {:?}",
        c.ports
    );
    for w in &c.workers {
        // Each worker carried the data of at least one whole flow. Bytes, not frames: with
        // offloads a 256 KiB flow crosses in as few as four 64 KiB super-frames, and fewer
        // the busier the machine (the sender coalesces more), so a frame count is no measure.
        let len = LEN as u64;
        assert!(
            w.rx_bytes >= len && w.tx_bytes >= len,
            "worker {} carried flows: {:?}",
            w.worker,
            c.workers
        );
    }
    // Against the kernel's own counts, not the switch's: what the workers read is what the
    // taps handed out, and what they wrote whole is what the taps took in.
    assert_eq!(
        workers_rx(&c),
        from_taps(&c),
        "the workers' shares add up to what the taps delivered: {:?}",
        c.ports
    );
    let workers_tx: u64 = c.workers.iter().map(|w| w.tx_packets).sum();
    let into_taps: u64 = c
        .ports
        .iter()
        .filter_map(|p| p.kernel)
        .map(|k| k.rx_packets)
        .sum();
    assert_eq!(
        workers_tx, into_taps,
        "the workers' writes add up to what the taps took in: {:?}",
        c.ports
    );
}

#[test]
fn a_busy_polling_worker_forwards_too() {
    if !root_or_skip("a_busy_polling_worker_forwards_too") {
        return;
    }
    let node = Node::with_args(&["--idle", "busy"]);
    let a = node.add_pod(2);
    let b = node.add_pod(3);
    assert!(a.ns.ping(b.ip, &[]).0);
    let got = tcp_transfer(&a.ns, &b.ns, b.ip, 5004, 1 << 20);
    assert!(got == pattern(1 << 20, 5004));
}

/// Threads of `pid` whose name starts with `iou-wrk` (io_uring's io-wq workers).
fn io_wq_threads(pid: i32) -> usize {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .flatten()
        .filter(|t| {
            std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.starts_with("iou-wrk"))
        })
        .count()
}

#[test]
fn no_io_uring_worker_threads_appear_under_tcp_traffic() {
    if !root_or_skip("no_io_uring_worker_threads_appear_under_tcp_traffic") {
        return;
    }
    let node = Node::with_args(&["--workers", "2"]);
    let a = node.add_pod(2);
    let b = node.add_pod(3);
    let pid = crate::counters::daemon_pid(&node);
    let done = std::sync::atomic::AtomicBool::new(false);
    let most = std::thread::scope(|s| {
        let watcher = s.spawn(|| {
            let mut most = 0;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                most = most.max(io_wq_threads(pid));
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            most.max(io_wq_threads(pid))
        });
        let flows: Vec<_> = (0..4u16)
            .map(|i| {
                let (a, b) = (&a, &b);
                s.spawn(move || tcp_transfer(&a.ns, &b.ns, b.ip, 7000 + i, TEN_MB))
            })
            .collect();
        for f in flows {
            assert_eq!(f.join().unwrap().len(), TEN_MB);
        }
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        watcher.join().unwrap()
    });
    assert_eq!(
        most, 0,
        "io-wq threads (iou-wrk-*) seen in podswitchd under traffic"
    );
}
