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
