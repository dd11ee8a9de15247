//! A real container runtime: containerd (with runc) driven through its CRI API, the path
//! kubelet uses, creates pod sandboxes on the podswitch network. The plugin is installed by
//! `podswitchctl install-cni`, as an operator would.

use podswitch_tests::containerd::{containerd_or_skip, Containerd};
use podswitch_tests::control::*;
use podswitch_tests::*;
use std::net::IpAddr;
use std::path::Path;
use std::process::Command;

fn nsenter_ping(netns: &Path, dst: IpAddr) -> (bool, String) {
    let out = Command::new("nsenter")
        .arg(format!("--net={}", netns.display()))
        .args([
            "ping",
            "-n",
            "-c",
            "2",
            "-i",
            "0.2",
            "-W",
            "2",
            &dst.to_string(),
        ])
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn cri_sandboxes_on_podswitch_reach_each_other_and_release_their_addresses() {
    let test = "cri_sandboxes_on_podswitch_reach_each_other_and_release_their_addresses";
    if !root_or_skip(test) || !containerd_or_skip(test) {
        return;
    }
    let cn = ControlNode::start();
    let (bin, conf) = (
        cn.node.dir().join("cni-bin"),
        cn.node.dir().join("cni-conf"),
    );
    let install = Command::new(binary("podswitchctl"))
        .arg("--control-socket")
        .arg(&cn.control_socket)
        .arg("install-cni")
        .arg("--bin-dir")
        .arg(&bin)
        .arg("--conf-dir")
        .arg(&conf)
        .arg("--cni-binary")
        .arg(binary("podswitch-cni"))
        .output()
        .unwrap();
    assert!(
        install.status.success(),
        "{}",
        String::from_utf8_lossy(&install.stderr)
    );

    let ctr = Containerd::start(&[&bin, Path::new("/usr/lib/cni")], &conf);
    let web = ctr.run_pod_sandbox("web", "default", "uid-web").unwrap();
    let db = ctr.run_pod_sandbox("db", "default", "uid-db").unwrap();
    let (web_ip, db_ip) = (web.ip.expect("web has an IP"), db.ip.expect("db has an IP"));
    for ip in [web_ip, db_ip] {
        assert!(
            matches!(ip, IpAddr::V4(v4) if v4.octets()[..3] == [10, 244, 1]),
            "{ip} in the pod CIDR"
        );
    }
    let pods = cn.pods();
    let names: Vec<_> = pods
        .iter()
        .map(|p| (p.namespace.as_str(), p.name.as_str()))
        .collect();
    assert!(
        names.contains(&("default", "web")) && names.contains(&("default", "db")),
        "{pods:?}"
    );

    let (ok, out) = nsenter_ping(&web.netns_path, db_ip);
    assert!(ok, "web → db: {out}");
    let (ok, out) = nsenter_ping(&db.netns_path, IpAddr::V4(GATEWAY));
    assert!(ok, "db → gateway: {out}");

    for sb in [&web, &db] {
        ctr.stop_pod_sandbox(&sb.id).unwrap();
        ctr.remove_pod_sandbox(&sb.id).unwrap();
    }
    let s = cn.status();
    assert_eq!(
        (s.pods, s.allocated_ips),
        (0, 0),
        "removing the sandboxes released their addresses: {s:?}"
    );
}
