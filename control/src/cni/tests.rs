//! The CNI handlers against a fake dataplane and fake namespaces (`testkit`).

use super::*;
use crate::testkit::{self, add_request, Harness};
use podswitch_proto::control::ControlRequestBody;
use std::net::Ipv4Addr;

fn generation(h: &Harness) -> u64 {
    h.store().read().unwrap().generation().unwrap()
}

#[test]
fn add_allocates_records_pushes_and_configures() {
    let h = Harness::new();
    let a = h.add("aaa").unwrap();
    assert_eq!(a.ip, Ipv4Addr::new(10, 244, 1, 2));
    assert_eq!(a.mac.to_string(), "0a:58:0a:f4:01:02");
    assert_eq!(
        (a.prefix_len, a.gateway),
        (32, Ipv4Addr::new(10, 244, 1, 1))
    );
    assert_eq!(a.port, "psw1fd96c58e588");
    assert_eq!(a.netns, "/var/run/netns/aaa");
    {
        let dp = h.dp.state();
        assert_eq!(dp.port_names(), vec!["psw0", "psw1fd96c58e588"]);
        assert_eq!(dp.generation, generation(&h));
    }
    assert_eq!(h.net.state().configured, vec!["aaa/eth0"]);
    let b = h.add("bbb").unwrap();
    assert_eq!(b.ip, Ipv4Addr::new(10, 244, 1, 3));
}

#[test]
fn add_is_idempotent() {
    let h = Harness::new();
    let first = h.add("aaa").unwrap();
    let pushes = h.dp.state().applied.len();
    let g = generation(&h);
    let again = h.add("aaa").unwrap();
    assert_eq!(first, again);
    assert_eq!(generation(&h), g);
    assert_eq!(h.dp.state().applied.len(), pushes);
    let view = h.store().read().unwrap();
    assert_eq!(view.pods().unwrap().len(), 1);
    assert_eq!(view.ipam().unwrap().len(), 1);
}

#[test]
fn add_with_an_unreachable_dataplane_is_rolled_back_and_leaves_no_allocation() {
    let h = Harness::new();
    let g = generation(&h);
    h.dp.state().unreachable = true;
    let err = h.add("aaa").unwrap_err();
    assert_eq!(err.code, code::TRY_AGAIN_LATER);
    assert!(
        err.message
            .starts_with("podswitchd at /fake/dataplane.sock is not reachable: "),
        "{err}"
    );
    let view = h.store().read().unwrap();
    assert!(view.pods().unwrap().is_empty());
    assert!(view.ipam().unwrap().is_empty());
    // Recorded, then rolled back: two new generations, never a reused one.
    assert_eq!(view.generation().unwrap(), g + 2);
    assert!(h.net.state().configured.is_empty());
    // Once podswitchd is back, the same ADD works.
    h.dp.state().unreachable = false;
    let a = h.add("aaa").unwrap();
    assert_eq!(h.dp.state().port_names(), vec!["psw0", a.port.as_str()]);
}

#[test]
fn add_refused_by_the_dataplane_is_rolled_back_with_code_5() {
    let h = Harness::new();
    h.dp.state().refuse = Some("op 5 (add_port): cannot open the namespace".into());
    let err = h.add("aaa").unwrap_err();
    assert_eq!(err.code, code::IO_FAILURE);
    assert!(err.message.contains("cannot open the namespace"), "{err}");
    assert!(h.store().read().unwrap().ipam().unwrap().is_empty());
}

#[test]
fn add_whose_interface_cannot_be_configured_is_rolled_back_everywhere() {
    let h = Harness::new();
    h.add("keep").unwrap();
    h.net.state().fail_configure = true;
    let err = h.add("aaa").unwrap_err();
    assert_eq!(err.code, code::IO_FAILURE);
    assert!(err.message.contains("pod default/aaa (aaa/eth0)"), "{err}");
    assert!(err.message.contains("Operation not permitted"), "{err}");
    let view = h.store().read().unwrap();
    assert_eq!(
        view.pods().unwrap().keys().collect::<Vec<_>>(),
        ["keep/eth0"]
    );
    assert_eq!(view.ipam().unwrap().len(), 1);
    // The dataplane got the pod, then a push without it.
    let dp = h.dp.state();
    assert_eq!(
        dp.port_names(),
        vec!["psw0".to_string(), testkit::pod("keep", [0; 4]).port]
    );
    assert_eq!(dp.generation, view.generation().unwrap());
}

#[test]
fn add_validates_the_environment() {
    let h = Harness::new();
    let mut req = add_request("aaa");
    req.netns = String::new();
    assert_eq!(
        h.c().cni_add(&req).unwrap_err().code,
        code::INVALID_ENVIRONMENT
    );
    let mut req = add_request("aaa");
    req.ifname = "a-name-far-too-long".into();
    let err = h.c().cni_add(&req).unwrap_err();
    assert!(err.message.contains("CNI_IFNAME"), "{err}");
    let req = add_request("bad id");
    assert!(h
        .c()
        .cni_add(&req)
        .unwrap_err()
        .message
        .contains("CNI_CONTAINERID"));
    h.net.state().missing.insert("/var/run/netns/aaa".into());
    let err = h.add("aaa").unwrap_err();
    assert_eq!(err.code, code::INVALID_ENVIRONMENT);
    assert!(
        err.message.contains("/var/run/netns/aaa does not exist"),
        "{err}"
    );
    assert!(h.store().read().unwrap().pods().unwrap().is_empty());
}

#[test]
fn an_add_with_offloads_off_gives_a_port_without_them_and_the_default_is_on() {
    let h = Harness::new();
    let mut off = add_request("aaa");
    off.offloads = Some(false);
    h.c().cni_add(&off).unwrap();
    let mut on = add_request("bbb");
    on.offloads = Some(true);
    h.c().cni_add(&on).unwrap();
    h.c().cni_add(&add_request("ccc")).unwrap();
    let ports = h.dp.state().ports.clone();
    let offloads = |name: &str| {
        let pod = h
            .store()
            .read()
            .unwrap()
            .pod(&format!("{name}/eth0"))
            .unwrap();
        let pod = pod.unwrap();
        assert_eq!(
            ports.iter().find(|p| p.name == pod.port).unwrap().offloads,
            pod.offloads,
            "{name}: the port as the record says"
        );
        pod.offloads
    };
    assert!(!offloads("aaa"));
    assert!(offloads("bbb"));
    assert!(offloads("ccc"), "no offloads in the request means on");
}

#[test]
fn requested_ip_and_mac_are_honoured_and_conflicts_refused() {
    let h = Harness::new();
    let mut req = add_request("aaa");
    req.requested_ip = Some(Ipv4Addr::new(10, 244, 1, 50));
    req.requested_mac = Some("02:11:22:33:44:55".parse().unwrap());
    req.mtu = Some(1400);
    let a = h.c().cni_add(&req).unwrap();
    assert_eq!(a.ip, Ipv4Addr::new(10, 244, 1, 50));
    assert_eq!(a.mac.to_string(), "02:11:22:33:44:55");
    assert_eq!(h.dp.state().ports[1].mtu, 1400);

    let mut taken = add_request("bbb");
    taken.requested_ip = Some(Ipv4Addr::new(10, 244, 1, 50));
    let err = h.c().cni_add(&taken).unwrap_err();
    assert_eq!(err.code, code::INVALID_ENVIRONMENT);
    assert!(
        err.message.contains("already allocated to aaa/eth0"),
        "{err}"
    );

    let mut outside = add_request("bbb");
    outside.requested_ip = Some(Ipv4Addr::new(10, 244, 2, 5));
    assert!(h
        .c()
        .cni_add(&outside)
        .unwrap_err()
        .message
        .contains("outside"));

    let mut same_mac = add_request("bbb");
    same_mac.requested_mac = Some("02:11:22:33:44:55".parse().unwrap());
    assert!(h
        .c()
        .cni_add(&same_mac)
        .unwrap_err()
        .message
        .contains("already used"));
    assert_eq!(h.store().read().unwrap().pods().unwrap().len(), 1);
}

#[test]
fn a_full_pool_answers_101_until_a_pod_is_deleted() {
    let h = Harness::with_settings(testkit::settings_with_cidr("10.244.1.0/29"));
    for c in ["a", "b", "c", "d", "e"] {
        h.add(c).unwrap();
    }
    let s = h.c().status().unwrap();
    assert_eq!(
        (s.allocated_ips, s.pool_capacity),
        (5, Some(5)),
        "STATUS sees it full"
    );
    let err = h.add("f").unwrap_err();
    assert_eq!(err.code, code::POOL_EXHAUSTED);
    assert!(err.message.contains("10.244.1.0/29 is exhausted"), "{err}");
    h.del("c").unwrap();
    assert_eq!(h.add("f").unwrap().ip, Ipv4Addr::new(10, 244, 1, 4));
}

#[test]
fn no_address_is_given_twice_across_a_restart() {
    let mut h = Harness::new();
    let a = h.add("aaa").unwrap();
    h.restart_control();
    let b = h.add("bbb").unwrap();
    assert_ne!(a.ip, b.ip);
    // And the attachment from before the restart is still known.
    assert_eq!(h.add("aaa").unwrap(), a);
}

#[test]
fn del_is_idempotent_and_needs_no_namespace() {
    let h = Harness::new();
    let a = h.add("aaa").unwrap();
    h.net.state().missing.insert(a.netns.clone());
    h.del("aaa").unwrap();
    let view = h.store().read().unwrap();
    assert!(view.pods().unwrap().is_empty());
    assert!(view.ipam().unwrap().is_empty());
    assert_eq!(h.dp.state().port_names(), vec!["psw0"]);
    let pushes = h.dp.state().applied.len();
    h.del("aaa").unwrap();
    h.del("never-added").unwrap();
    assert_eq!(h.dp.state().applied.len(), pushes, "nothing to push");
}

#[test]
fn del_with_an_unreachable_dataplane_succeeds_and_the_resync_removes_the_port() {
    let h = Harness::new();
    let a = h.add("aaa").unwrap();
    h.dp.state().unreachable = true;
    h.del("aaa").unwrap();
    assert!(h.store().read().unwrap().pods().unwrap().is_empty());
    {
        let mut dp = h.dp.state();
        assert!(dp.port_names().contains(&a.port));
        dp.unreachable = false;
    }
    h.c().sync().push_now().unwrap();
    assert_eq!(h.dp.state().port_names(), vec!["psw0"]);
}

#[test]
fn del_removes_the_pods_interface_even_with_the_dataplane_down() {
    let h = Harness::new();
    h.add("aaa").unwrap();
    h.add("bbb").unwrap();
    h.dp.state().unreachable = true;
    h.c()
        .cni_del(&CniDetach {
            container_id: "aaa".into(),
            ifname: "eth0".into(),
            netns: Some("/var/run/netns/aaa".into()),
        })
        .unwrap();
    // Without CNI_NETNS (containerd's second DEL style), the recorded namespace.
    h.del("bbb").unwrap();
    assert_eq!(
        h.net.state().removed,
        [
            "aaa/eth0 in /var/run/netns/aaa",
            "bbb/eth0 in /var/run/netns/bbb"
        ]
    );
    assert!(h.store().read().unwrap().pods().unwrap().is_empty());
    // A namespace that is gone has nothing to remove; a second DEL has no record.
    h.dp.state().unreachable = false;
    h.add("ccc").unwrap();
    h.net.state().missing.insert("/var/run/netns/ccc".into());
    h.del("ccc").unwrap();
    h.del("ccc").unwrap();
    assert_eq!(h.net.state().removed.len(), 2);
}

#[test]
fn del_whose_interface_cannot_be_removed_fails_keeps_the_address_and_its_retry_removes_it() {
    let h = Harness::new();
    let a = h.add("aaa").unwrap();
    // podswitchd is down, so the persistent tap stays unless DEL deletes it.
    h.dp.state().unreachable = true;
    h.net.state().fail_remove = true;
    let err = h.del("aaa").unwrap_err();
    assert_eq!(err.code, code::IO_FAILURE);
    assert!(
        err.message.contains("could not be removed")
            && err.message.contains("Operation not permitted")
            && err.message.contains("call DEL again"),
        "{err}"
    );
    {
        // A tombstone: still found, the address still held, so no other pod gets it while
        // the old tap has it.
        let view = h.store().read().unwrap();
        assert!(view.pod("aaa/eth0").unwrap().unwrap().deleting);
        assert_eq!(
            view.ipam().unwrap().get(&a.ip).map(String::as_str),
            Some("aaa/eth0")
        );
    }
    let check = h.c().cni_check(&add_request("aaa")).unwrap_err();
    assert_eq!(check.code, code::UNKNOWN_CONTAINER, "{check}");
    h.dp.state().unreachable = false;
    assert_ne!(h.add("bbb").unwrap().ip, a.ip);
    assert!(
        !h.dp.state().port_names().contains(&a.port),
        "a tombstone's port is not pushed"
    );
    // The runtime retries DEL: this time the interface goes, and then the record.
    h.net.state().fail_remove = false;
    h.del("aaa").unwrap();
    assert_eq!(h.net.state().removed, ["aaa/eth0 in /var/run/netns/aaa"]);
    let view = h.store().read().unwrap();
    assert!(view.pod("aaa/eth0").unwrap().is_none());
    assert_eq!(view.ipam().unwrap().get(&a.ip), None);
    assert_eq!(view.generation().unwrap(), h.dp.state().generation);
}

#[test]
fn a_rolled_back_add_removes_the_interface_or_leaves_a_tombstone_its_del_finds() {
    let h = Harness::new();
    // The interface cannot be configured: the rollback deletes the tap podswitchd created,
    // whether or not podswitchd is there to release it.
    h.net.state().fail_configure = true;
    h.add("aaa").unwrap_err();
    assert_eq!(h.net.state().removed, ["aaa/eth0 in /var/run/netns/aaa"]);
    assert!(h.store().read().unwrap().pods().unwrap().is_empty());
    // Nor can the tap be deleted: the record stays as a tombstone, and the DEL the runtime
    // sends after the failed ADD deletes the tap and releases the address.
    h.net.state().fail_remove = true;
    let err = h.add("bbb").unwrap_err();
    assert!(err.message.contains("configuring the interface"), "{err}");
    let view = h.store().read().unwrap();
    assert!(view.pod("bbb/eth0").unwrap().unwrap().deleting);
    drop(view);
    h.net.state().fail_remove = false;
    h.del("bbb").unwrap();
    assert_eq!(
        h.net.state().removed,
        [
            "aaa/eth0 in /var/run/netns/aaa",
            "bbb/eth0 in /var/run/netns/bbb"
        ]
    );
    let view = h.store().read().unwrap();
    assert!(view.pods().unwrap().is_empty());
    assert!(view.ipam().unwrap().is_empty());
}

#[test]
fn add_over_a_tombstone_finishes_its_del_first() {
    let h = Harness::new();
    let first = h.add("aaa").unwrap();
    h.net.state().fail_remove = true;
    h.del("aaa").unwrap_err();
    h.net.state().fail_remove = false;
    let again = h.add("aaa").unwrap();
    assert_eq!(h.net.state().removed, ["aaa/eth0 in /var/run/netns/aaa"]);
    assert_eq!(
        h.store().read().unwrap().ipam().unwrap().len(),
        1,
        "{} was released",
        first.ip
    );
    let view = h.store().read().unwrap();
    let pod = view.pod("aaa/eth0").unwrap().unwrap();
    assert!(!pod.deleting && !pod.pending);
    assert!(h.dp.state().port_names().contains(&again.port));
}

#[test]
fn a_tombstone_whose_namespace_is_gone_is_released_at_restart() {
    let mut h = Harness::new();
    let a = h.add("aaa").unwrap();
    h.net.state().fail_remove = true;
    h.del("aaa").unwrap_err();
    h.net.state().missing.insert(a.netns.clone());
    h.restart_control();
    let view = h.store().read().unwrap();
    assert!(view.pods().unwrap().is_empty());
    assert!(view.ipam().unwrap().is_empty());
}

#[test]
fn add_in_another_namespace_moves_the_attachment_there() {
    let h = Harness::new();
    let first = h.add("aaa").unwrap();
    let g = generation(&h);
    let mut again = add_request("aaa");
    again.netns = "/var/run/netns/aaa-restarted".into();
    let moved = h.c().cni_add(&again).unwrap();
    assert_eq!(moved.netns, "/var/run/netns/aaa-restarted");
    assert_eq!(
        (moved.ip, moved.mac, &moved.port),
        (first.ip, first.mac, &first.port)
    );
    assert_eq!(generation(&h), g + 1, "the port's spec changed");
    let dp = h.dp.state();
    let port = dp.ports.iter().find(|p| p.name == first.port).unwrap();
    assert_eq!(
        port.netns.as_ref().map(|n| n.path.as_str()),
        Some("/var/run/netns/aaa-restarted")
    );
    assert_eq!(h.net.state().configured, ["aaa/eth0", "aaa/eth0"]);
    let view = h.store().read().unwrap();
    assert_eq!(view.pod("aaa/eth0").unwrap().unwrap().netns, moved.netns);
    assert_eq!(view.ipam().unwrap().len(), 1);
    // Into a namespace that does not exist: refused, the attachment stays where it was.
    let mut gone = add_request("aaa");
    gone.netns = "/var/run/netns/gone".into();
    h.net.state().missing.insert(gone.netns.clone());
    assert_eq!(
        h.c().cni_add(&gone).unwrap_err().code,
        code::INVALID_ENVIRONMENT
    );
    let after = h.store().read().unwrap();
    assert_eq!(after.pod("aaa/eth0").unwrap().unwrap().netns, moved.netns);
}

/// What a control process that died right after step 1 of an ADD leaves behind.
fn commit_pending(h: &Harness, container: &str, ip: [u8; 4]) {
    let mut pod = testkit::pod(container, ip);
    pod.pending = true;
    h.store()
        .write(|tx| -> Result<(), StoreError> {
            tx.put_pod(&pod)?;
            tx.allocate_ip(pod.ip, &pod.key())?;
            tx.bump_generation().map(drop)
        })
        .unwrap();
}

#[test]
fn an_add_interrupted_after_its_commit_is_finished_by_the_retry() {
    let h = Harness::new();
    commit_pending(&h, "aaa", [10, 244, 1, 9]);
    let err = h.c().cni_check(&add_request("aaa")).unwrap_err();
    assert!(err.message.contains("never finished"), "{err}");
    // The runtime saw the ADD fail and retries it: same address, now configured.
    let a = h.add("aaa").unwrap();
    assert_eq!(a.ip, Ipv4Addr::new(10, 244, 1, 9));
    assert_eq!(h.net.state().configured, ["aaa/eth0"]);
    assert!(
        !h.store()
            .read()
            .unwrap()
            .pod("aaa/eth0")
            .unwrap()
            .unwrap()
            .pending
    );
    assert!(h.dp.state().port_names().contains(&a.port));
    h.c().cni_check(&add_request("aaa")).unwrap();
}

#[test]
fn an_interrupted_add_whose_namespace_is_gone_is_released_at_restart() {
    let mut h = Harness::new();
    h.add("done").unwrap();
    commit_pending(&h, "gone", [10, 244, 1, 9]);
    commit_pending(&h, "alive", [10, 244, 1, 10]);
    h.net.state().missing.insert("/var/run/netns/gone".into());
    // A finished attachment whose namespace is gone stays until DEL or GC.
    h.net.state().missing.insert("/var/run/netns/done".into());
    h.restart_control();
    let view = h.store().read().unwrap();
    assert_eq!(
        view.pods().unwrap().keys().collect::<Vec<_>>(),
        ["alive/eth0", "done/eth0"]
    );
    assert_eq!(view.ipam().unwrap().len(), 2, "10.244.1.9 is free again");
    assert_eq!(view.generation().unwrap(), h.dp.state().generation);
    // The one whose namespace exists: configured by the start-up resync, finished by
    // the ADD the runtime retries, or released by its DEL.
    h.del("alive").unwrap();
    assert_eq!(h.store().read().unwrap().ipam().unwrap().len(), 1);
}

#[test]
fn check_compares_the_prev_result_with_the_attachment() {
    let h = Harness::new();
    let a = h.add("aaa").unwrap();
    let mut req = add_request("aaa");
    req.requested_ip = Some(a.ip);
    req.requested_mac = Some(a.mac);
    h.c().cni_check(&req).unwrap();
    req.requested_ip = Some(Ipv4Addr::new(10, 244, 1, 200));
    let err = h.c().cni_check(&req).unwrap_err();
    assert_eq!(err.code, code::INVALID_ENVIRONMENT);
    assert!(err.message.contains("10.244.1.200"), "{err}");
    // The interface is checked before the dataplane is asked: with podswitchd down, a
    // broken interface is still named.
    h.dp.state().unreachable = true;
    h.net.state().check_error = Some("eth0 in /var/run/netns/aaa: no address".into());
    let err = h.c().cni_check(&add_request("aaa")).unwrap_err();
    assert!(err.message.contains("no address"), "{err}");
}

#[test]
fn gc_releases_every_attachment_not_listed() {
    let h = Harness::new();
    for c in ["aaa", "bbb", "ccc"] {
        h.add(c).unwrap();
    }
    let keep = AttachmentId {
        container_id: "bbb".into(),
        ifname: "eth0".into(),
    };
    let released = h.c().cni_gc(std::slice::from_ref(&keep)).unwrap();
    let ids: Vec<_> = released.iter().map(|a| a.container_id.as_str()).collect();
    assert_eq!(ids, ["aaa", "ccc"]);
    let view = h.store().read().unwrap();
    assert_eq!(
        view.pods().unwrap().keys().collect::<Vec<_>>(),
        ["bbb/eth0"]
    );
    assert_eq!(view.ipam().unwrap().len(), 1);
    assert_eq!(h.dp.state().ports.len(), 2);
    assert!(h.c().cni_gc(&[keep]).unwrap().is_empty());
}

#[test]
fn check_verifies_record_port_and_interface() {
    let h = Harness::new();
    h.add("aaa").unwrap();
    h.c().cni_check(&add_request("aaa")).unwrap();

    let unknown = h.c().cni_check(&add_request("zzz")).unwrap_err();
    assert_eq!(unknown.code, code::UNKNOWN_CONTAINER);

    h.net.state().check_error = Some("eth0 in /var/run/netns/aaa: no address".into());
    let err = h.c().cni_check(&add_request("aaa")).unwrap_err();
    assert_eq!(err.code, code::IO_FAILURE);
    assert!(err.message.contains("no address"), "{err}");
    h.net.state().check_error = None;

    h.dp.state().ports.truncate(1);
    let err = h.c().cni_check(&add_request("aaa")).unwrap_err();
    assert_eq!(err.code, code::IO_FAILURE);
    assert!(err.message.contains("podswitchd has no port"), "{err}");

    h.dp.state().unreachable = true;
    let err = h.c().cni_check(&add_request("aaa")).unwrap_err();
    assert_eq!(err.code, code::TRY_AGAIN_LATER);
}

#[test]
fn handle_answers_cni_requests_with_protocol_responses() {
    let h = Harness::new();
    let resp = h.c().handle(ControlRequestBody::CniAdd(add_request("aaa")));
    assert!(matches!(
        resp,
        podswitch_proto::control::ControlResponse::Attached(_)
    ));
    let resp = h
        .c()
        .handle(ControlRequestBody::CniCheck(add_request("nope")));
    assert!(matches!(
        resp,
        podswitch_proto::control::ControlResponse::Error { code: 3, .. }
    ));
}

fn veth_request(container: &str) -> CniAttach {
    CniAttach {
        attachment: Some(PodAttachment::VethAfxdp),
        ..add_request(container)
    }
}

#[test]
fn a_veth_afxdp_add_makes_the_pair_then_pushes_an_afxdp_port_on_its_node_end() {
    let h = Harness::new();
    let a = h.c().cni_add(&veth_request("aaa")).unwrap();
    assert_eq!(a.port, "psw1fd96c58e588");
    // One queue per podswitchd worker (the fake has one).
    assert_eq!(h.net.state().veth_calls, ["aaa/eth0 1"]);
    assert_eq!(h.net.state().configured, ["aaa/eth0"]);
    {
        let dp = h.dp.state();
        let port = dp.ports.iter().find(|p| p.name == a.port).unwrap();
        assert_eq!(port.kind, podswitch_proto::PortKind::Afxdp);
        assert_eq!((port.netns.as_ref(), port.offloads), (None, false));
        assert_eq!(dp.generation, generation(&h));
    }
    let pod = h.store().read().unwrap().pod("aaa/eth0").unwrap().unwrap();
    assert_eq!(pod.attachment, PodAttachment::VethAfxdp);
    assert!(!pod.pending);
    h.c().cni_check(&veth_request("aaa")).unwrap();

    // Idempotent: the same ADD again is answered from the record.
    let g = generation(&h);
    assert_eq!(h.c().cni_add(&veth_request("aaa")).unwrap(), a);
    assert_eq!(generation(&h), g);
    assert_eq!(h.net.state().veth_calls.len(), 1);

    // A tap pod beside it is still a tap.
    h.add("bbb").unwrap();
    let dp = h.dp.state();
    let kinds: Vec<_> = dp.ports.iter().map(|p| p.kind).collect();
    assert_eq!(
        kinds,
        [
            podswitch_proto::PortKind::Tap,
            podswitch_proto::PortKind::Afxdp,
            podswitch_proto::PortKind::Tap
        ]
    );
}

#[test]
fn a_veth_afxdp_add_whose_pair_cannot_be_made_is_rolled_back_with_code_5() {
    let h = Harness::new();
    h.net.state().fail_veth = true;
    let err = h.c().cni_add(&veth_request("aaa")).unwrap_err();
    assert_eq!(err.code, code::IO_FAILURE);
    assert!(
        err.message
            .starts_with("making the veth pair of pod default/aaa (aaa/eth0): "),
        "{err}"
    );
    let view = h.store().read().unwrap();
    assert!(view.pods().unwrap().is_empty());
    assert!(view.ipam().unwrap().is_empty());
    assert_eq!(h.dp.state().port_names(), ["psw0"]);
}

#[test]
fn del_and_gc_of_a_veth_afxdp_pod_remove_its_pair_and_port() {
    let h = Harness::new();
    h.c().cni_add(&veth_request("aaa")).unwrap();
    h.c().cni_add(&veth_request("bbb")).unwrap();
    h.del("aaa").unwrap();
    assert_eq!(h.net.state().removed, ["aaa/eth0 in /var/run/netns/aaa"]);
    assert!(!h.net.state().veths.contains("aaa/eth0"));
    assert_eq!(h.dp.state().ports.len(), 2);
    h.c().cni_gc(&[]).unwrap();
    assert!(h.net.state().veths.is_empty());
    assert_eq!(h.dp.state().port_names(), ["psw0"]);
}

#[test]
fn a_veth_afxdp_pod_whose_pair_is_gone_is_left_out_of_a_replace_not_failing_it() {
    let mut h = Harness::new();
    h.c().cni_add(&veth_request("aaa")).unwrap();
    h.add("bbb").unwrap();
    h.net.state().veths.clear();
    // A restarted podswitchd: the replace carries the tap pod, not the broken veth pod.
    h.dp.state().generation = 0;
    h.restart_control();
    let dp = h.dp.state();
    assert_eq!(dp.port_names(), ["psw0", "psw80a29dd2115d"]);
}
