//! Pod interfaces are persistent taps: they survive the daemon, and a restarted daemon that is
//! given the configuration again re-attaches to them.

use podswitch_proto::Op;
use podswitch_tests::*;

fn ip_addr(pod: &Pod) -> String {
    pod.ns.ip(&["-o", "addr", "show", "dev", "eth0"])
}

#[test]
fn pods_keep_their_interfaces_across_a_daemon_kill_and_replay() {
    if !root_or_skip("pods_keep_their_interfaces_across_a_daemon_kill_and_replay") {
        return;
    }
    let mut node = Node::start();
    let a = node.add_pod(2);
    let b = node.add_pod(3);
    assert!(a.ns.ping(b.ip, &[]).0, "baseline");

    node.kill_daemon();
    assert!(
        ip_addr(&a).contains("10.244.1.2/32"),
        "pod A kept eth0 and its address: {}",
        ip_addr(&a)
    );
    assert!(!a.ns.ping(b.ip, &["-c", "1"]).0, "no switch, no traffic");

    node.start_daemon();
    let mut ops = Node::base_ops();
    ops.extend([Op::AddPort(a.spec.clone()), Op::AddPort(b.spec.clone())]);
    node.replace(ops).unwrap();
    let (ok, out) = a.ns.ping(b.ip, &[]);
    assert!(ok, "re-attached: {out}");
    let got = tcp_transfer(&a.ns, &b.ns, b.ip, 5101, 1 << 20);
    assert!(got == pattern(1 << 20, 5101));
}

#[test]
fn replaying_the_same_configuration_does_not_disturb_traffic() {
    if !root_or_skip("replaying_the_same_configuration_does_not_disturb_traffic") {
        return;
    }
    let node = Node::start();
    let a = node.add_pod(2);
    let b = node.add_pod(3);
    let mut ops = Node::base_ops();
    ops.extend([Op::AddPort(a.spec.clone()), Op::AddPort(b.spec.clone())]);
    std::thread::scope(|s| {
        let transfer = s.spawn(|| tcp_transfer(&a.ns, &b.ns, b.ip, 5102, 16 << 20));
        for _ in 0..20 {
            node.replace(ops.clone()).unwrap();
        }
        assert!(
            transfer.join().unwrap() == pattern(16 << 20, 5102),
            "byte-exact while replaying"
        );
    });
    let ports = match node.request(podswitch_proto::RequestBody::Ports) {
        podswitch_proto::Response::Ports { ports } => ports,
        other => panic!("{other:?}"),
    };
    let ids: Vec<u32> = ports.iter().map(|p| p.id).collect();
    assert_eq!(
        ids,
        vec![0, 1, 2],
        "the same ports, never re-created: {ports:?}"
    );
}

#[test]
fn deleting_a_pod_port_removes_the_pod_interface() {
    if !root_or_skip("deleting_a_pod_port_removes_the_pod_interface") {
        return;
    }
    let node = Node::start();
    let a = node.add_pod(2);
    assert!(ip_addr(&a).contains("10.244.1.2"));
    node.apply(vec![Op::DelPort {
        name: a.port.clone(),
    }])
    .unwrap();
    let links = a.ns.ip(&["-o", "link"]);
    assert!(
        !links.contains("eth0"),
        "the persistent tap was released: {links}"
    );
}

#[test]
fn an_interface_name_taken_by_something_else_is_refused() {
    if !root_or_skip("an_interface_name_taken_by_something_else_is_refused") {
        return;
    }
    let node = Node::start();
    let ns = Netns::new("pswp");
    run(&[
        "ip", "-n", &ns.name, "link", "add", "eth0", "type", "veth", "peer", "name", "eth1",
    ]);
    let mut spec = node.add_pod(2).spec;
    spec.name = unique("pt");
    spec.netns = Some(podswitch_proto::NetnsAttach {
        path: ns.path().display().to_string(),
        ifname: "eth0".into(),
    });
    if let podswitch_proto::PortRole::Pod { ip, .. } = &mut spec.role {
        *ip = "10.244.1.7".parse().unwrap();
    }
    let err = node.apply(vec![Op::AddPort(spec)]).unwrap_err();
    assert!(
        err.contains("eth0") && err.contains("not a podswitch tap"),
        "{err}"
    );
}
