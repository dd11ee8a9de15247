//! The CNI plugin invoked exactly as a runtime invokes it, against real podswitch-control and
//! podswitchd processes.

use podswitch_proto::control::ControlRequestBody;
use podswitch_tests::control::*;
use podswitch_tests::*;
use std::collections::BTreeSet;

#[test]
fn add_check_del_and_a_second_del_without_netns() {
    if !root_or_skip("add_check_del_and_a_second_del_without_netns") {
        return;
    }
    let cn = ControlNode::start();
    let a = cn.add_pod("web");
    let b = cn.add_pod("db");
    // The result is CNI 1.0.0: interface in the sandbox, a /32 address, the gateway.
    let r = &a.result;
    assert_eq!(r["cniVersion"], "1.0.0");
    assert_eq!(r["interfaces"][0]["name"], "eth0");
    assert_eq!(r["interfaces"][0]["sandbox"], a.netns().as_str());
    assert_eq!(r["ips"][0]["gateway"], "10.244.1.1");
    assert!(
        r["ips"][0]["address"].as_str().unwrap().ends_with("/32"),
        "{r}"
    );
    assert_ne!(a.ip, b.ip);
    // Real traffic: the pod's interface is configured and on the switch.
    let (ok, out) = a.ns.ping(b.ip, &[]);
    assert!(ok, "{out}");
    assert!(a.ns.ping(GATEWAY, &[]).0);

    // CHECK with the previous result, as the runtime sends it.
    let mut conf: serde_json::Value = serde_json::from_str(&cn.netconf("1.0.0")).unwrap();
    conf["prevResult"] = a.result.clone();
    let env = [
        ("CNI_CONTAINERID", a.container_id.as_str()),
        ("CNI_NETNS", &a.netns()),
        ("CNI_IFNAME", "eth0"),
    ];
    let check = cn.cni("CHECK", &env, &conf.to_string());
    assert_eq!(check.code, 0, "{check:?}");

    let del = cn.del_pod(&a.container_id, Some(&a.netns()));
    assert_eq!((del.code, del.stdout.as_str()), (0, ""), "{del:?}");
    // containerd calls DEL again, with an empty CNI_NETNS.
    let again = cn.del_pod(&a.container_id, None);
    assert_eq!(again.code, 0, "second DEL must succeed: {again:?}");
    let links = a.ns.ip(&["-o", "link"]);
    assert!(
        !links.contains("eth0"),
        "the pod interface went with DEL: {links}"
    );
    let s = cn.status();
    assert_eq!((s.pods, s.allocated_ips), (1, 1), "{s:?}");
    // CHECK after DEL fails with CNI error 3, "unknown container", saying why.
    let check = cn.cni("CHECK", &env, &conf.to_string());
    assert_eq!(check.code, 1);
    let err = check.json();
    assert_eq!(err["code"], 3, "{check:?}");
    let msg = err["msg"].as_str().unwrap_or_default();
    assert!(
        msg.contains(&a.container_id) && msg.contains("DEL already ran"),
        "{check:?}"
    );
}

#[test]
fn version_and_bad_input_get_cni_answers() {
    if !root_or_skip("version_and_bad_input_get_cni_answers") {
        return;
    }
    let cn = ControlNode::start();
    let v = cn.cni("VERSION", &[], &cn.netconf("1.0.0"));
    assert_eq!(v.code, 0);
    assert!(v.json()["supportedVersions"]
        .as_array()
        .unwrap()
        .iter()
        .any(|x| x == "0.4.0"));
    let ns = Netns::new("pswc");
    let netns = ns.path().display().to_string();
    let base = [
        ("CNI_CONTAINERID", "c1"),
        ("CNI_NETNS", netns.as_str()),
        ("CNI_IFNAME", "eth0"),
    ];
    let mut env = base.to_vec();
    env.push(("CNI_ARGS", "K8S_POD_NAME=x;FOO=bar"));
    let out = cn.cni("ADD", &env, &cn.netconf("1.0.0"));
    assert_eq!(out.code, 1);
    assert_eq!(
        out.json()["code"],
        2,
        "unknown CNI_ARGS key without IgnoreUnknown: {out:?}"
    );
    let msg = out.json()["msg"].as_str().unwrap_or_default().to_string();
    assert!(
        msg.contains("\"FOO\"") && msg.contains("IgnoreUnknown=1"),
        "{out:?}"
    );
    let out = cn.cni("ADD", &base, "{not json");
    assert_eq!(out.code, 1);
    assert_eq!(out.json()["code"], 6, "{out:?}");
    assert!(
        out.json()["msg"]
            .as_str()
            .unwrap_or_default()
            .contains("not valid JSON"),
        "{out:?}"
    );
    // A 0.4.0 config gets a 0.4.0 result.
    let out = cn.cni("ADD", &base, &cn.netconf("0.4.0"));
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(out.json()["ips"][0]["version"], "4");
    assert_eq!(
        cn.status().pods,
        1,
        "nothing was allocated for the refused ADDs"
    );
}

#[test]
fn twenty_pods_added_and_deleted_concurrently_leak_nothing() {
    if !root_or_skip("twenty_pods_added_and_deleted_concurrently_leak_nothing") {
        return;
    }
    let cn = ControlNode::start();
    let pods: Vec<CniPod> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..20)
            .map(|i| {
                let cn = &cn;
                s.spawn(move || cn.add_pod(&format!("pod-{i}")))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let ips: BTreeSet<_> = pods.iter().map(|p| p.ip).collect();
    assert_eq!(ips.len(), 20, "no address handed out twice");
    assert_eq!(cn.status().allocated_ips, 20);
    for p in pods.iter().step_by(5) {
        assert!(
            p.ns.ping(GATEWAY, &["-c", "1"]).0,
            "pod {} is on the switch",
            p.ip
        );
    }
    std::thread::scope(|s| {
        for p in &pods {
            let cn = &cn;
            s.spawn(move || assert_eq!(cn.del_pod(&p.container_id, Some(&p.netns())).code, 0));
        }
    });
    let s = cn.status();
    assert_eq!(
        (s.pods, s.allocated_ips),
        (0, 0),
        "every address released: {s:?}"
    );
    cn.wait_in_sync();
    let ports = match cn.node.request(podswitch_proto::RequestBody::Ports) {
        podswitch_proto::Response::Ports { ports } => ports,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        ports.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(),
        vec!["psw0"],
        "only the host port is left"
    );
    assert!(
        matches!(cn.control(ControlRequestBody::Pods), podswitch_proto::control::ControlResponse::Pods { pods } if pods.is_empty())
    );
}

#[test]
fn gc_releases_what_the_runtime_no_longer_knows_and_status_reports_health() {
    if !root_or_skip("gc_releases_what_the_runtime_no_longer_knows_and_status_reports_health") {
        return;
    }
    let cn = ControlNode::start();
    let keep = cn.add_pod("keep");
    let gone = cn.add_pod("gone");
    let status = cn.cni("STATUS", &[], &cn.netconf("1.1.0"));
    assert_eq!(status.code, 0, "control and dataplane in sync: {status:?}");
    let mut conf: serde_json::Value = serde_json::from_str(&cn.netconf("1.1.0")).unwrap();
    conf["cni.dev/valid-attachments"] =
        serde_json::json!([{"containerID": keep.container_id, "ifname": "eth0"}]);
    let gc = cn.cni("GC", &[], &conf.to_string());
    assert_eq!(gc.code, 0, "{gc:?}");
    let pods = cn.pods();
    assert_eq!(
        pods.iter().map(|p| p.ip).collect::<Vec<_>>(),
        vec![keep.ip],
        "{pods:?}"
    );
    assert!(
        !gone.ns.ping(GATEWAY, &["-c", "1"]).0,
        "the collected pod is off the switch"
    );
    assert!(keep.ns.ping(GATEWAY, &[]).0);
}

#[test]
fn manifests_apply_all_or_nothing_and_label_the_pods() {
    if !root_or_skip("manifests_apply_all_or_nothing_and_label_the_pods") {
        return;
    }
    let cn = ControlNode::start();
    let _web = cn.add_pod("web");
    let ctl = |args: &[&str], stdin: &str| {
        let mut child = std::process::Command::new(binary("podswitchctl"))
            .arg("--control-socket")
            .arg(&cn.control_socket)
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::io::Write::write_all(&mut child.stdin.take().unwrap(), stdin.as_bytes()).unwrap();
        child.wait_with_output().unwrap()
    };
    let good = "apiVersion: v1\nkind: Pod\nmetadata: {name: web, namespace: default, labels: {app: web}}\n";
    let bad = format!(
        "{good}---\napiVersion: v1\nkind: Pod\nmetadata: {{name: db, labels: {{\"a b\": x}}}}\n"
    );
    let out = ctl(&["apply", "-f", "-"], &bad);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("document 2")
            && err.contains("Pod default/db")
            && err.contains("metadata.labels"),
        "{err}"
    );
    assert!(
        cn.pods()[0].labels.is_empty(),
        "the good first document was not applied either"
    );
    let out = ctl(&["apply", "-f", "-"], good);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = ctl(&["-o", "json", "get", "pods"], "");
    let pods: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(pods[0]["labels"]["app"], "web", "{pods}");
    let out = ctl(&["delete", "-f", "-"], good);
    assert!(out.status.success());
    assert!(cn.pods()[0].labels.is_empty());
}

#[test]
fn a_requested_address_and_mac_are_honoured_as_podman_asks() {
    if !root_or_skip("a_requested_address_and_mac_are_honoured_as_podman_asks") {
        return;
    }
    let cn = ControlNode::start();
    let ns = Netns::new("pswc");
    let netns = ns.path().display().to_string();
    let env = [
        ("CNI_CONTAINERID", "podman-1"),
        ("CNI_NETNS", netns.as_str()),
        ("CNI_IFNAME", "eth0"),
        (
            "CNI_ARGS",
            "IgnoreUnknown=1;IP=10.244.1.77;MAC=02:42:ac:11:00:77",
        ),
    ];
    let out = cn.cni("ADD", &env, &cn.netconf("1.0.0"));
    assert_eq!(out.code, 0, "{out:?}");
    let r = out.json();
    assert_eq!(r["ips"][0]["address"], "10.244.1.77/32");
    assert_eq!(r["interfaces"][0]["mac"], "02:42:ac:11:00:77");
    assert!(ns.ping(GATEWAY, &[]).0);
    // The same address for another container is refused, and nothing is allocated for it.
    let ns2 = Netns::new("pswc");
    let netns2 = ns2.path().display().to_string();
    let env2 = [
        ("CNI_CONTAINERID", "podman-2"),
        ("CNI_NETNS", netns2.as_str()),
        ("CNI_IFNAME", "eth0"),
        ("CNI_ARGS", "IgnoreUnknown=1;IP=10.244.1.77"),
    ];
    let out = cn.cni("ADD", &env2, &cn.netconf("1.0.0"));
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.json()["msg"].as_str().unwrap().contains("10.244.1.77"),
        "{out:?}"
    );
    assert_eq!(cn.status().allocated_ips, 1);
}

/// The IPv4 addresses of `eth0` in `ns`, read by netlink; `None` when there is no `eth0`.
fn eth0_addresses(ns: &Netns) -> Option<Vec<(std::net::Ipv4Addr, u8)>> {
    ns.enter(|| {
        let mut nl = podswitch_netlink::Netlink::new().unwrap();
        let index = nl.link_index("eth0").unwrap()?;
        Some(nl.addr_list_v4(index).unwrap())
    })
}

/// Waits (5 s at most) until `eth0` is gone from `ns`; whether it went.
fn eth0_goes_away(ns: &Netns) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while eth0_addresses(ns).is_some() {
        if std::time::Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    true
}

#[test]
fn del_while_podswitchd_is_down_removes_the_interface_and_a_re_add_in_that_namespace_works() {
    if !root_or_skip(
        "del_while_podswitchd_is_down_removes_the_interface_and_a_re_add_in_that_namespace_works",
    ) {
        return;
    }
    let mut cn = ControlNode::start();
    let a = cn.add_pod("web");
    let b = cn.add_pod("db");
    assert!(a.ns.ping(b.ip, &[]).0, "baseline");
    assert_eq!(cn.check(&a).code, 0);

    cn.node.kill_daemon();
    // The pod's interface is intact, the switch is not: CHECK says to try again later.
    let check = cn.check(&a);
    assert_eq!(
        (check.code, check.json()["code"].as_u64()),
        (1, Some(11)),
        "{check:?}"
    );
    let del = cn.del_pod(&a.container_id, Some(&a.netns()));
    assert_eq!(del.code, 0, "{del:?}");
    assert_eq!(
        eth0_addresses(&a.ns),
        None,
        "DEL removed the persistent tap, with its address, though podswitchd was down\n{}",
        cn.control_log()
    );

    // The sandbox restarts in the same namespace under a new id, with podswitchd back.
    cn.node.start_daemon();
    cn.wait_in_sync();
    let CniPod { ns, .. } = a;
    let again = cn.add_pod_into("web", ns, &unique("ctr"));
    assert_eq!(
        eth0_addresses(&again.ns),
        Some(vec![(again.ip, 32)]),
        "one address"
    );
    let (ok, out) = again.ns.ping(b.ip, &[]);
    assert!(ok, "the re-added pod reaches the other: {out}");
    assert_eq!(cn.check(&again).code, 0);

    // CHECK fails, naming the address, once it is removed by hand.
    again.ns.enter(|| {
        let mut nl = podswitch_netlink::Netlink::new().unwrap();
        let index = nl.link_index("eth0").unwrap().unwrap();
        nl.addr_del_v4(index, again.ip, 32).unwrap();
    });
    let check = cn.check(&again);
    assert_eq!(check.code, 1, "{check:?}");
    let err = check.json();
    assert_eq!(err["code"], 5, "{err}");
    assert!(
        err["msg"]
            .as_str()
            .unwrap()
            .contains(&format!("does not have exactly address {}/32", again.ip)),
        "{err}"
    );
}

#[test]
fn a_del_that_cannot_remove_the_interface_fails_and_its_retry_removes_it() {
    if !root_or_skip("a_del_that_cannot_remove_the_interface_fails_and_its_retry_removes_it") {
        return;
    }
    let mut cn = ControlNode::start();
    let a = cn.add_pod("web");
    // With podswitchd down, the persistent tap stays unless DEL deletes it.
    cn.node.kill_daemon();
    // A CNI_NETNS that exists but is no network namespace: entering it fails.
    let not_a_netns = std::env::temp_dir().join(unique("not-a-netns"));
    std::fs::write(&not_a_netns, b"").unwrap();
    let del = cn.del_pod(&a.container_id, not_a_netns.to_str());
    let _ = std::fs::remove_file(&not_a_netns);
    assert_eq!(
        (del.code, del.json()["code"].as_u64()),
        (1, Some(5)),
        "{del:?}"
    );
    assert_eq!(eth0_addresses(&a.ns), Some(vec![(a.ip, 32)]), "untouched");
    assert_eq!(cn.status().allocated_ips, 1, "the address is still held");
    // The runtime retries DEL (here with the right namespace): the attachment is still
    // found, and its tap goes.
    let again = cn.del_pod(&a.container_id, Some(&a.netns()));
    assert_eq!(again.code, 0, "{again:?}");
    assert_eq!(
        eth0_addresses(&a.ns),
        None,
        "the retried DEL removed the tap\n{}",
        cn.control_log()
    );
    let status = cn.status();
    assert_eq!((status.pods, status.allocated_ips), (0, 0));
}

#[test]
fn add_with_a_known_id_in_a_new_namespace_moves_the_pod_there() {
    if !root_or_skip("add_with_a_known_id_in_a_new_namespace_moves_the_pod_there") {
        return;
    }
    let cn = ControlNode::start();
    let a = cn.add_pod("web");
    let b = cn.add_pod("db");
    let moved = cn.add_pod_into("web", Netns::new("pswc"), &a.container_id);
    assert_eq!(moved.ip, a.ip, "the attachment keeps its address");
    assert_eq!(
        moved.result["interfaces"][0]["sandbox"],
        moved.netns().as_str()
    );
    assert_eq!(
        eth0_addresses(&moved.ns),
        Some(vec![(moved.ip, 32)]),
        "configured in the new namespace\n{}",
        cn.control_log()
    );
    assert!(
        eth0_goes_away(&a.ns),
        "the old sandbox's interface is released"
    );
    let (ok, out) = moved.ns.ping(b.ip, &[]);
    assert!(ok, "{out}");
    let s = cn.status();
    assert_eq!((s.pods, s.allocated_ips), (2, 2), "{s:?}");
    assert_eq!(cn.check(&moved).code, 0);
}

#[test]
fn an_add_cut_short_by_a_control_crash_is_released_or_finished_after_restart() {
    if !root_or_skip("an_add_cut_short_by_a_control_crash_is_released_or_finished_after_restart") {
        return;
    }
    const CRASH: (&str, &str) = ("PODSWITCH_CONTROL_TEST_CRASH_AFTER_ADD_COMMIT", "1");
    let mut cn = ControlNode::start();
    let crash_add = |cn: &mut ControlNode, name: &str, id: &str, ns: &Netns| {
        cn.kill_control();
        cn.start_control_with_env(&[CRASH]);
        let out = cn.add(name, id, &ns.path().display().to_string());
        assert_eq!(out.code, 1, "the ADD died with control: {out:?}");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while !cn.control_exited() {
            assert!(
                std::time::Instant::now() < deadline,
                "control did not crash"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    };
    let alive = Netns::new("pswc");
    let alive_id = unique("ctr");
    crash_add(&mut cn, "alive", &alive_id, &alive);
    let gone = Netns::new("pswc");
    crash_add(&mut cn, "gone", &unique("ctr"), &gone);
    drop(gone); // the runtime destroyed the sandbox whose ADD failed

    cn.start_control();
    cn.wait_in_sync();
    let s = cn.status();
    assert_eq!(
        (s.pods, s.allocated_ips),
        (1, 1),
        "the one whose namespace is gone was released: {s:?}\n{}",
        cn.control_log()
    );
    // The runtime retries the other ADD: it finishes, with connectivity.
    let pod = cn.add_pod_into("alive", alive, &alive_id);
    assert!(pod.ns.ping(GATEWAY, &[]).0);
    assert_eq!(cn.check(&pod).code, 0);
    let s = cn.status();
    assert_eq!((s.pods, s.allocated_ips), (1, 1), "{s:?}");
}

#[test]
fn status_fails_with_code_50_while_the_pool_is_exhausted() {
    if !root_or_skip("status_fails_with_code_50_while_the_pool_is_exhausted") {
        return;
    }
    let mut cn = ControlNode::start();
    // A /30: network, gateway, broadcast and one pod address.
    cn.kill_control();
    cn.pod_cidr = "10.244.1.0/30".into();
    cn.start_control();
    cn.wait_in_sync();
    assert_eq!(cn.status().pool_capacity, Some(1));
    let status = || cn.cni("STATUS", &[], &cn.netconf("1.1.0"));
    assert_eq!(status().code, 0, "{:?}", status());
    let pod = cn.add_pod("only");
    let full = status();
    assert_eq!(full.code, 1, "{full:?}");
    let err = full.json();
    assert_eq!(err["code"], 50, "{err}");
    assert!(
        err["msg"]
            .as_str()
            .unwrap()
            .contains("address pool 10.244.1.0/30 of node node-1 is exhausted"),
        "{err}"
    );
    assert_eq!(cn.del_pod(&pod.container_id, Some(&pod.netns())).code, 0);
    assert_eq!(status().code, 0, "available again once a pod is deleted");
}

#[test]
fn control_started_with_only_a_pod_cidr_outside_10_244_starts() {
    // No root needed: --print-config checks the configuration exactly as a start does.
    let out = std::process::Command::new(binary("podswitch-control"))
        .args([
            "--node-name",
            "n1",
            "--pod-cidr",
            "10.250.0.0/24",
            "--print-config",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("cluster_cidr = \"10.250.0.0/24\""),
        "{stdout}"
    );
    // Given explicitly, a cluster CIDR that does not contain it is still refused, saying why.
    let out = std::process::Command::new(binary("podswitch-control"))
        .args(["--node-name", "n1", "--pod-cidr", "10.250.0.0/24"])
        .args(["--cluster-cidr", "10.244.0.0/16", "--print-config"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--cluster-cidr"), "{stderr}");
}

#[test]
fn a_policy_cidr_with_host_bits_is_applied_as_its_network_and_podswitchctl_warns() {
    if !root_or_skip(
        "a_policy_cidr_with_host_bits_is_applied_as_its_network_and_podswitchctl_warns",
    ) {
        return;
    }
    let cn = ControlNode::start();
    let policy = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: default}\nspec:\n  podSelector: {}\n  ingress:\n  - from: [{ipBlock: {cidr: 10.0.0.1/8}}]\n";
    let mut child = std::process::Command::new(binary("podswitchctl"))
        .arg("--control-socket")
        .arg(&cn.control_socket)
        .args(["apply", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), policy.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "accepted, as the API server accepts it: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.starts_with(
            "Warning: document 1 (NetworkPolicy default/p): spec.ingress[0].from[0].ipBlock.cidr: \
             non-standard CIDR value \"10.0.0.1/8\" has host bits set; it is read as 10.0.0.0/8"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("networkpolicy default/p created"),
        "{stdout}"
    );
}
