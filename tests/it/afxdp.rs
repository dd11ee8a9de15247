//! AF_XDP ports (issue 16): a pod attached through a veth pair whose node end is an `afxdp`
//! port of podswitchd (an XDP program redirecting into one AF_XDP socket per worker), talking
//! to a pod on a tap port through the switch with real kernel stacks on both sides; and the
//! XDP program's lifetime: never left on the interface after the daemon exits, and replaced
//! when a daemon killed with SIGKILL left one.

use podswitch_proto::{
    CountersDump, Op, PortKind, RequestBody, Response, XdpAttachMode, XskBindMode,
};
use podswitch_tests::*;

fn port<'a>(c: &'a CountersDump, name: &str) -> &'a podswitch_proto::PortCounters {
    c.ports
        .iter()
        .find(|p| p.port == name)
        .unwrap_or_else(|| panic!("no port {name} in the counters dump"))
}

#[test]
fn a_veth_pod_on_an_afxdp_port_and_a_tap_pod_exchange_pings_and_exact_tcp_streams() {
    if !root_or_skip(
        "a_veth_pod_on_an_afxdp_port_and_a_tap_pod_exchange_pings_and_exact_tcp_streams",
    ) {
        return;
    }
    let node = Node::start();
    let tap = node.add_pod(2);
    let veth = node.add_veth_pod(3);

    // The dump says what the kernel gave: veth has native XDP and no zero-copy.
    let Response::Ports { ports } = node.request(RequestBody::Ports) else {
        panic!("no ports dump")
    };
    let p = ports.iter().find(|p| p.name == veth.port).unwrap();
    assert_eq!(p.kind, PortKind::Afxdp);
    assert!(!p.offloads, "an afxdp port takes no offloads");
    let x = p.afxdp.as_ref().expect("afxdp info in the dump");
    assert_eq!((x.xdp, x.bind), (XdpAttachMode::Native, XskBindMode::Copy));
    assert_eq!(x.queue_ids, vec![0]);
    let table = node.podswitchctl(&["ports"]);
    assert!(
        table.contains(&format!("afxdp {}/0 native/copy", veth.port)),
        "{table}"
    );

    let (ok, out) = veth.ns.ping(tap.ip, &["-c", "3"]);
    assert!(ok, "veth pod -> tap pod: {out}");
    let (ok, out) = tap.ns.ping(veth.ip, &["-c", "3"]);
    assert!(ok, "tap pod -> veth pod: {out}");
    let (ok, out) = veth.ns.ping(GATEWAY, &["-c", "1"]);
    assert!(ok, "veth pod -> gateway (answered by the switch): {out}");

    let before = node.counters();
    const LEN: usize = 8 << 20;
    let v = tcp_transfer_verified(&veth.ns, &tap.ns, tap.ip, 5201, LEN);
    assert!(v.is_exact(LEN), "veth pod -> tap pod: {v:?}");
    // The tap pod sends 64 KB TSO super-frames: the switch cuts them for the afxdp port.
    let v = tcp_transfer_verified(&tap.ns, &veth.ns, veth.ip, 5202, LEN);
    assert!(v.is_exact(LEN), "tap pod -> veth pod: {v:?}");
    let after = node.counters();

    let (b, a) = (port(&before, &veth.port), port(&after, &veth.port));
    // 8 MB in ≤1448-byte segments is ≥ 5800 frames each way.
    assert!(a.rx_packets - b.rx_packets > 5800, "{b:?} -> {a:?}");
    assert!(a.tx_packets - b.tx_packets > 5800, "{b:?} -> {a:?}");
    assert!(a.tx_bytes - b.tx_bytes > LEN as u64, "{b:?} -> {a:?}");
    assert!(
        event(&after, "gso_segmented_sw") > event(&before, "gso_segmented_sw"),
        "super-frames from the tap pod were segmented in software for the afxdp port"
    );
    assert_eq!(node.drops("xsk_tx_too_long"), 0);
    assert_eq!(event(&after, "xsk_bad_address"), 0);
}

#[test]
fn no_xdp_program_stays_on_the_interface_after_sigkill_restart_or_clean_exit() {
    if !root_or_skip("no_xdp_program_stays_on_the_interface_after_sigkill_restart_or_clean_exit") {
        return;
    }
    let mut node = Node::start();
    let tap = node.add_pod(2);
    let veth = node.add_veth_pod(3);
    let first = node
        .xdp_program(&veth.port)
        .expect("the port's program is attached");
    assert!(veth.ns.ping(tap.ip, &["-c", "1"]).0, "baseline");

    // SIGKILL leaves the program (an IFLA_XDP attachment outlives its process) ...
    node.kill_daemon();
    let stale = node.xdp_program(&veth.port).expect("SIGKILL cannot detach");
    assert_eq!(stale.prog_id, first.prog_id);

    // ... and the restarted daemon, given the port again, replaces it with its own.
    node.start_daemon();
    let mut ops = Node::base_ops();
    ops.extend([
        Op::AddPort(tap.spec.clone()),
        Op::AddPort(veth.spec.clone()),
    ]);
    node.replace(ops).unwrap();
    let second = node.xdp_program(&veth.port).expect("attached again");
    assert_ne!(
        second.prog_id, first.prog_id,
        "the stale program was replaced"
    );
    assert!(
        node.log().contains("detached a stale XDP program"),
        "{}",
        node.log()
    );
    let (ok, out) = veth.ns.ping(tap.ip, &["-c", "2"]);
    assert!(ok, "after the restart: {out}");

    // Removing the port detaches its program.
    node.apply(vec![Op::DelPort {
        name: veth.port.clone(),
    }])
    .unwrap();
    assert_eq!(node.xdp_program(&veth.port), None, "port removed");
    node.apply(vec![Op::AddPort(veth.spec.clone())]).unwrap();
    assert!(node.xdp_program(&veth.port).is_some(), "port added back");

    // A clean exit (SIGTERM) detaches it.
    let status = node.stop_daemon();
    assert!(status.success(), "podswitchd exit: {status}");
    assert_eq!(
        node.xdp_program(&veth.port),
        None,
        "clean exit: {}",
        node.log()
    );
}

#[test]
fn an_afxdp_port_in_generic_xdp_mode_carries_exact_tcp_streams() {
    if !root_or_skip("an_afxdp_port_in_generic_xdp_mode_carries_exact_tcp_streams") {
        return;
    }
    let node = Node::with_args(&["--xdp-generic"]);
    let tap = node.add_pod(2);
    let veth = node.add_veth_pod(3);
    let x = node.xdp_program(&veth.port).expect("attached");
    assert_eq!(x.mode, podswitch_netlink::XdpMode::Generic);
    assert!(node.podswitchctl(&["ports"]).contains("generic/copy"));
    const LEN: usize = 4 << 20;
    let v = tcp_transfer_verified(&veth.ns, &tap.ns, tap.ip, 5203, LEN);
    assert!(v.is_exact(LEN), "veth pod -> tap pod: {v:?}");
    let v = tcp_transfer_verified(&tap.ns, &veth.ns, veth.ip, 5204, LEN);
    assert!(v.is_exact(LEN), "tap pod -> veth pod: {v:?}");
}

#[test]
fn with_two_workers_each_binds_its_own_queue_and_both_carry_traffic() {
    if !root_or_skip("with_two_workers_each_binds_its_own_queue_and_both_carry_traffic") {
        return;
    }
    let node = Node::with_args(&["--workers", "2"]);
    let tap = node.add_pod(2);
    let veth = node.add_veth_pod_with_queues(3, 2);
    let Response::Ports { ports } = node.request(RequestBody::Ports) else {
        panic!("no ports dump")
    };
    let p = ports.iter().find(|p| p.name == veth.port).unwrap();
    assert_eq!(p.afxdp.as_ref().unwrap().queue_ids, vec![0, 1]);
    // Several connections, so the veth spreads them over both queues by hash.
    for port in 5211..5219 {
        let v = tcp_transfer_verified(&veth.ns, &tap.ns, tap.ip, port, 1 << 20);
        assert!(v.is_exact(1 << 20), "veth pod -> tap pod on {port}: {v:?}");
        let v = tcp_transfer_verified(&tap.ns, &veth.ns, veth.ip, port + 100, 1 << 20);
        assert!(v.is_exact(1 << 20), "tap pod -> veth pod on {port}: {v:?}");
    }
    // veth counts, per receive queue, the frames its XDP program redirected.
    let stats = node.ns.exec(&["ethtool", "-S", &veth.port]);
    let stats = String::from_utf8_lossy(&stats.stdout);
    let redirected = |q: u32| -> u64 {
        stats
            .lines()
            .find_map(|l| {
                l.trim()
                    .strip_prefix(&format!("rx_queue_{q}_xdp_redirect:"))
                    .and_then(|v| v.trim().parse().ok())
            })
            .unwrap_or_else(|| panic!("no rx_queue_{q}_xdp_redirect in ethtool -S: {stats}"))
    };
    assert!(
        redirected(0) > 0 && redirected(1) > 0,
        "both queues' sockets received: {stats}"
    );
    let c = node.counters();
    assert!(
        c.workers.iter().all(|w| w.rx_packets > 0),
        "both workers forwarded: {:?}",
        c.workers
    );
}

#[test]
fn an_afxdp_port_binds_an_interface_in_another_namespace() {
    if !root_or_skip("an_afxdp_port_binds_an_interface_in_another_namespace") {
        return;
    }
    let mut node = Node::start();
    let tap = node.add_pod(2);
    let elsewhere = Netns::new("pswe");
    let veth = node.add_veth_pod_with(3, 1, Some(&elsewhere));
    let x = elsewhere
        .enter(|| {
            let mut nl = podswitch_netlink::Netlink::new().unwrap();
            let index = nl.link_index("sw0").unwrap().unwrap();
            nl.link_xdp(index).unwrap()
        })
        .expect("the program is attached to sw0 in its own namespace");
    assert_eq!(x.mode, podswitch_netlink::XdpMode::Native);
    let (ok, out) = veth.ns.ping(tap.ip, &["-c", "2"]);
    assert!(ok, "{out}");
    const LEN: usize = 2 << 20;
    let v = tcp_transfer_verified(&tap.ns, &veth.ns, veth.ip, 5231, LEN);
    assert!(v.is_exact(LEN), "tap pod -> veth pod: {v:?}");
    node.stop_daemon();
    let after = elsewhere.enter(|| {
        let mut nl = podswitch_netlink::Netlink::new().unwrap();
        let index = nl.link_index("sw0").unwrap().unwrap();
        nl.link_xdp(index).unwrap()
    });
    assert_eq!(after, None, "detached on exit, in that namespace too");
}
