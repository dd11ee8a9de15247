//! One worker per CPU, worker *i* pinned to CPU *i*: the taps steer each frame to the queue of
//! the CPU that sent it (`tap::steer_by_cpu`), so the worker on the sender's own CPU switches
//! it and no wake-up crosses CPUs.

use podswitch_proto::CountersDump;
use podswitch_tests::*;

fn worker_rx(c: &CountersDump, worker: usize) -> u64 {
    c.workers
        .iter()
        .find(|w| w.worker == worker)
        .map_or(0, |w| w.rx_packets)
}

#[test]
fn a_pods_frames_are_switched_by_the_worker_on_the_cpu_that_sent_them() {
    let test = "a_pods_frames_are_switched_by_the_worker_on_the_cpu_that_sent_them";
    if !root_or_skip(test) {
        return;
    }
    if std::thread::available_parallelism().map_or(1, |n| n.get()) < 2 {
        skip(test, "needs 2 CPUs to pin two workers");
        return;
    }
    let node = Node::with_args(&["--workers", "2", "--worker-cpus", "0,1"]);
    let a = node.add_pod(2);
    let b = node.add_pod(3);
    // Warm up ARP both ways, so the counted pings are all echo traffic.
    assert!(a.ns.ping(b.ip, &["-c", "1", "-W", "2"]).0);
    for cpu in [0usize, 1] {
        let other = 1 - cpu;
        let before = node.counters();
        let cpu_arg = cpu.to_string();
        let out = a.ns.exec(&[
            "taskset",
            "-c",
            &cpu_arg,
            "ping",
            "-q",
            "-c",
            "50",
            "-i",
            "0.005",
            "-W",
            "2",
            &b.ip.to_string(),
        ]);
        assert!(
            out.status.success(),
            "ping pinned to CPU {cpu} failed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let after = node.counters();
        let mine = worker_rx(&after, cpu) - worker_rx(&before, cpu);
        let theirs = worker_rx(&after, other) - worker_rx(&before, other);
        // 50 requests from A sent on `cpu`; B's kernel answers in the softirq the worker's
        // write ran on that same CPU, so the 50 replies come back on its queue too.
        assert!(
            mine >= 100,
            "worker {cpu} read {mine} frames of the 100 sent on CPU {cpu} (worker {other}: {theirs})"
        );
        assert!(
            theirs < 10,
            "worker {other} read {theirs} frames sent on CPU {cpu}: frames are not steered by CPU"
        );
    }
}
