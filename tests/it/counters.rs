//! Counters against real taps: every frame the switch reads or writes is counted where it
//! went (sent, or lost under a reason), and the kernel's own counters of each tap show what
//! never reached the switch.

use podswitch_proto::{CountersDump, KernelLinkStats, PortCounters};
use podswitch_tests::*;
use std::net::UdpSocket;
use std::time::{Duration, Instant};

fn port<'a>(c: &'a CountersDump, name: &str) -> &'a PortCounters {
    c.ports
        .iter()
        .find(|p| p.port == name)
        .unwrap_or_else(|| panic!("no port {name} in {c:?}"))
}

fn kernel(c: &CountersDump, name: &str) -> KernelLinkStats {
    port(c, name)
        .kernel
        .unwrap_or_else(|| panic!("no kernel counters for {name}: {c:?}"))
}

fn drops(c: &CountersDump, reason: &str) -> u64 {
    c.drops
        .iter()
        .find(|d| d.reason == reason)
        .unwrap_or_else(|| panic!("no drop reason {reason}"))
        .count
}

/// Dumps the node's counters until `settled` holds for a dump or 10 s have passed, and
/// returns the last dump: frames still in flight (a tap's queue, a burst between read and
/// write) are counted once the switch has processed them, and a loaded machine decides when
/// that is. The caller asserts on the dump, so a deadline passed fails there with the numbers.
pub fn counters_once(node: &Node, settled: impl Fn(&CountersDump) -> bool) -> CountersDump {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let c = node.counters();
        if settled(&c) || Instant::now() >= deadline {
            return c;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Whether the switch has counted every frame pod port `name`'s tap handed it: the tap's
/// kernel `tx_packets` (frames its reader took) equals the switch's `rx_packets`. A dump
/// syncs the workers first, so every transmit those frames caused is counted too.
fn read_all_of(c: &CountersDump, name: &str) -> bool {
    port(c, name)
        .kernel
        .is_some_and(|k| k.tx_packets == port(c, name).rx_packets)
}

/// The pid of the node's `podswitchd`: the process whose command line names its socket.
pub fn daemon_pid(node: &Node) -> i32 {
    let socket = node.socket.display().to_string();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<_> = cmdline.split(|&b| b == 0).collect();
        if args.first().is_some_and(|a| a.ends_with(b"podswitchd"))
            && args.contains(&socket.as_bytes())
        {
            return pid;
        }
    }
    panic!("no podswitchd process serving {socket}");
}

/// Sends `n` small UDP datagrams from inside `from` to `to:9` as fast as it can.
fn udp_flood(from: &Netns, to: std::net::Ipv4Addr, n: usize) {
    from.enter(|| {
        let sock = UdpSocket::bind("0.0.0.0:0").unwrap();
        for _ in 0..n {
            // A full socket buffer or a kernel drop is the point of a flood; not an error.
            let _ = sock.send_to(&[0u8; 18], (to, 9));
        }
    });
}

#[test]
fn kernel_counters_of_pod_taps_are_shown_and_move_with_traffic() {
    if !root_or_skip("kernel_counters_of_pod_taps_are_shown_and_move_with_traffic") {
        return;
    }
    let node = Node::start();
    let a = node.add_pod(2);
    let b = node.add_pod(3);
    let before = node.counters();
    let (ok, text) = a.ns.ping(b.ip, &["-c", "5"]);
    assert!(ok, "{text}");
    let after = counters_once(&node, |c| {
        read_all_of(c, &a.port) && read_all_of(c, &b.port)
    });
    let (ka0, ka1) = (kernel(&before, &a.port), kernel(&after, &a.port));
    let (kb0, kb1) = (kernel(&before, &b.port), kernel(&after, &b.port));
    assert!(
        ka1.tx_packets - ka0.tx_packets >= 5,
        "A sent into its tap: {ka1:?}"
    );
    assert!(
        kb1.rx_packets - kb0.rx_packets >= 5,
        "B got from its tap: {kb1:?}"
    );
    // What the pod sent, the switch read, and what the switch wrote, the pod got.
    assert!(port(&after, &a.port).rx_packets >= ka1.tx_packets - ka1.tx_dropped);
    assert_eq!(
        port(&after, &b.port).tx_packets,
        kb1.rx_packets + kb1.rx_dropped
    );
    assert!(port(&after, "psw0").kernel.is_some(), "the host port too");
}

#[test]
fn frames_lost_in_a_pod_tap_queue_show_as_kernel_tx_drops() {
    if !root_or_skip("frames_lost_in_a_pod_tap_queue_show_as_kernel_tx_drops") {
        return;
    }
    let node = Node::start();
    let a = node.add_pod(2);
    let b = node.add_pod(3);
    assert!(
        a.ns.ping(b.ip, &[]).0,
        "the path works (and A knows the gateway's MAC)"
    );
    let before = node.counters();
    // A switch that does not read (stopped) while the pod sends more than the tap's queue
    // holds: the kernel drops the rest, where only its own counters see it.
    let pid = daemon_pid(&node);
    // SAFETY: kill takes a pid and a signal number; no memory.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGSTOP) }, 0);
    udp_flood(&a.ns, b.ip, 3000);
    // SAFETY: as above.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGCONT) }, 0);
    let k0 = kernel(&before, &a.port);
    let read_0 = port(&before, &a.port).rx_packets;
    let accounted = |c: &CountersDump| {
        let k = kernel(c, &a.port);
        (port(c, &a.port).rx_packets - read_0) + (k.tx_dropped - k0.tx_dropped)
    };
    // Settled once the switch drained the queue and counted what it read.
    let after = counters_once(&node, |c| accounted(c) >= 3000 && read_all_of(c, &a.port));
    let k1 = kernel(&after, &a.port);
    let lost = k1.tx_dropped - k0.tx_dropped;
    let read = port(&after, &a.port).rx_packets - read_0;
    assert!(
        lost >= 1000,
        "the tap's queue overflowed: {k1:?}, switch read {read}"
    );
    assert!(read > 0, "the switch drained what the queue held");
    assert!(
        read + lost >= 3000,
        "every frame is either read by the switch ({read}) or counted lost ({lost})"
    );
    assert_eq!(
        port(&after, &a.port).rx_packets,
        k1.tx_packets,
        "the switch counted exactly what the tap handed it"
    );
}

#[test]
fn frames_a_downed_pod_interface_refuses_are_tx_errors_under_a_reason_not_tx_packets() {
    if !root_or_skip(
        "frames_a_downed_pod_interface_refuses_are_tx_errors_under_a_reason_not_tx_packets",
    ) {
        return;
    }
    let node = Node::start();
    let a = node.add_pod(2);
    let b = node.add_pod(3);
    assert!(a.ns.ping(b.ip, &[]).0);
    run(&["ip", "-n", &b.ns.name, "link", "set", "eth0", "down"]);
    let before = node.counters();
    udp_flood(&a.ns, b.ip, 20);
    // Settled once the switch has read (and so routed and written) every frame A sent; no
    // wait for the writes: a dump counts every write submitted before it.
    let sent_0 = kernel(&before, &a.port).tx_packets;
    let after = counters_once(&node, |c| {
        read_all_of(c, &a.port) && kernel(c, &a.port).tx_packets - sent_0 >= 20
    });
    let (b0, b1) = (port(&before, &b.port), port(&after, &b.port));
    assert_eq!(
        b1.tx_packets, b0.tx_packets,
        "nothing counted as sent: {b1:?}"
    );
    assert_eq!(b1.tx_errors - b0.tx_errors, 20, "{b1:?}");
    // Each under one reason: a write the downed device refuses (`tx_write_error`), or, when
    // a burst of them is still in flight, one that finds no write slot (`tx_queue_full`) or
    // is cut (`tx_short_write`).
    let by_reason: Vec<(&str, u64)> = after
        .drops
        .iter()
        .filter(|d| d.reason.starts_with("tx_"))
        .map(|d| {
            (
                d.reason.as_str(),
                drops(&after, &d.reason) - drops(&before, &d.reason),
            )
        })
        .filter(|&(_, n)| n > 0)
        .collect();
    assert_eq!(
        by_reason.iter().map(|(_, n)| n).sum::<u64>(),
        20,
        "each under its reason: {by_reason:?}"
    );
    assert!(
        by_reason[0].1 > 0,
        "the device refused writes: {by_reason:?}"
    );
    // The interface back up, frames flow again: the queue did not give up.
    // (A link going down takes its routes with it: put back those of a pod.)
    let gw = GATEWAY.to_string();
    run(&["ip", "-n", &b.ns.name, "link", "set", "eth0", "up"]);
    run(&[
        "ip", "-n", &b.ns.name, "route", "add", &gw, "dev", "eth0", "scope", "link",
    ]);
    run(&[
        "ip", "-n", &b.ns.name, "route", "add", "default", "via", &gw,
    ]);
    let (ok, text) = a.ns.ping(b.ip, &[]);
    assert!(ok, "{text}");
}

#[test]
fn a_jumbo_frame_from_a_pod_counts_its_real_length_and_is_dropped() {
    if !root_or_skip("a_jumbo_frame_from_a_pod_counts_its_real_length_and_is_dropped") {
        return;
    }
    let node = Node::start();
    let a = node.add_pod(2);
    let b = node.add_pod(3);
    // The pod's side allows jumbo frames; the switch's port allows 1500 bytes.
    run(&["ip", "-n", &a.ns.name, "link", "set", "eth0", "mtu", "9000"]);
    let before = node.counters();
    let (ok, _) = a.ns.ping(b.ip, &["-c", "1", "-s", "8000", "-M", "do"]);
    assert!(!ok, "a frame past the port's MTU must not be forwarded");
    let after = node.counters();
    let (a0, a1) = (port(&before, &a.port), port(&after, &a.port));
    // A pod's tap has offloads (vnet headers), so its reads go on into a large buffer: the
    // 8 KB frame arrives whole and parse drops it as longer than the port's MTU allows. A tap
    // without offloads would cut it at 1920 bytes (`rx_truncated`, the tap unit tests).
    assert!(
        drops(&after, "frame_too_long") > drops(&before, "frame_too_long"),
        "{after:?}"
    );
    assert!(
        a1.rx_bytes - a0.rx_bytes >= 8000 + 28 + 14,
        "the real length is counted, not the buffer's: {a1:?}"
    );
}
