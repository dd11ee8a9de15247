//! Restart behaviour, both directions, with traffic checked before and after.

use podswitch_tests::control::*;
use podswitch_tests::*;
use std::time::{Duration, Instant};

fn ping_within(pod: &CniPod, dst: std::net::Ipv4Addr, secs: u64) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if pod.ns.ping(dst, &["-c", "1", "-W", "1"]).0 {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

#[test]
fn a_killed_dataplane_is_resynced_by_control_and_pods_keep_their_interfaces() {
    if !root_or_skip("a_killed_dataplane_is_resynced_by_control_and_pods_keep_their_interfaces") {
        return;
    }
    let mut cn = ControlNode::start();
    let a = cn.add_pod("web");
    let b = cn.add_pod("db");
    assert!(a.ns.ping(b.ip, &[]).0, "before");
    cn.node.kill_daemon();
    cn.node.start_daemon();
    assert!(
        ping_within(&a, b.ip, 10),
        "control replayed the state: {}",
        cn.control_log()
    );
    let got = tcp_transfer(&a.ns, &b.ns, b.ip, 5201, 4 << 20);
    assert!(got == pattern(4 << 20, 5201), "TCP after the restart");
    assert_eq!(cn.pods().len(), 2);
}

#[test]
fn a_killed_control_leaves_forwarding_alone_and_resumes_without_disturbing_it() {
    if !root_or_skip("a_killed_control_leaves_forwarding_alone_and_resumes_without_disturbing_it") {
        return;
    }
    let mut cn = ControlNode::start();
    let a = cn.add_pod("web");
    let b = cn.add_pod("db");
    let before = cn.status();
    std::thread::scope(|s| {
        let transfer = s.spawn(|| tcp_transfer(&a.ns, &b.ns, b.ip, 5202, 32 << 20));
        cn.kill_control();
        assert!(a.ns.ping(b.ip, &[]).0, "forwarding without control");
        cn.start_control();
        assert!(
            transfer.join().unwrap() == pattern(32 << 20, 5202),
            "the transfer never noticed"
        );
    });
    cn.wait_in_sync();
    let after = cn.status();
    assert_eq!(
        after.generation, before.generation,
        "nothing changed, nothing was pushed"
    );
    let pods = cn.pods();
    assert_eq!(pods.len(), 2);
    assert!(
        pods.iter().any(|p| p.ip == a.ip) && pods.iter().any(|p| p.ip == b.ip),
        "{pods:?}"
    );
    // The database kept the allocations: a new pod gets a fresh address.
    let c = cn.add_pod("cache");
    assert!(c.ip != a.ip && c.ip != b.ip);
    assert!(c.ns.ping(a.ip, &[]).0);
}
