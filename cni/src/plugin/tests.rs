//! The commands against a fake control process: what is sent, what is printed, which code.

use super::*;
use crate::client::ClientError;
use podswitch_proto::control::{Attachment, AttachmentId, ControlStatus};
use serde_json::json;
use std::io;
use std::path::{Path, PathBuf};

/// Answers every request with `answer` (or "not running" when `None`) and keeps what it
/// was sent.
struct FakeControl {
    answer: Option<ControlResponse>,
    sent: Vec<(PathBuf, Value, Duration)>,
}

impl FakeControl {
    fn answering(answer: ControlResponse) -> Self {
        Self {
            answer: Some(answer),
            sent: Vec::new(),
        }
    }

    fn not_running() -> Self {
        Self {
            answer: None,
            sent: Vec::new(),
        }
    }

    fn only_request(&self) -> Value {
        assert_eq!(self.sent.len(), 1, "exactly one request: {:?}", self.sent);
        self.sent[0].1.clone()
    }
}

impl Control for FakeControl {
    fn round_trip(
        &mut self,
        socket: &Path,
        body: ControlRequestBody,
        timeout: Duration,
    ) -> Result<ControlResponse, ClientError> {
        self.sent.push((
            socket.to_path_buf(),
            serde_json::to_value(&body).unwrap(),
            timeout,
        ));
        self.answer.clone().ok_or_else(|| ClientError::NotRunning {
            peer: "podswitch-control",
            socket: socket.to_path_buf(),
            err: io::Error::from(io::ErrorKind::NotFound),
        })
    }
}

const SOCKET: &str = "/tmp/fake-control.sock";

fn env(command: &str, extra: &[(&str, &str)]) -> RawEnv {
    let mut vars = vec![
        ("CNI_COMMAND", command),
        ("CNI_CONTAINERID", "c0ffee"),
        ("CNI_NETNS", "/var/run/netns/cni-1234"),
        ("CNI_IFNAME", "eth0"),
        ("CNI_PATH", "/opt/cni/bin"),
    ];
    for (k, v) in extra {
        vars.retain(|(name, _)| name != k);
        vars.push((k, v));
    }
    RawEnv::from_lookup(|name| {
        vars.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_string())
    })
}

fn conf(version: &str, extra: Value) -> Vec<u8> {
    let mut c = json!({"cniVersion": version, "name": "podswitch", "type": "podswitch",
                       "controlSocket": SOCKET});
    if let (Some(c), Value::Object(extra)) = (c.as_object_mut(), extra) {
        c.extend(extra);
    }
    c.to_string().into_bytes()
}

fn attachment() -> Attachment {
    Attachment {
        container_id: "c0ffee".into(),
        ifname: "eth0".into(),
        netns: "/var/run/netns/cni-1234".into(),
        mac: MacAddr::new(0x0a, 0x58, 0x0a, 0xf4, 0x01, 0x07),
        ip: Ipv4Addr::new(10, 244, 1, 7),
        prefix_len: 32,
        gateway: Ipv4Addr::new(10, 244, 1, 1),
        port: "psw-c0ffee".into(),
    }
}

fn control_status(in_sync: bool) -> ControlResponse {
    ControlResponse::Status(ControlStatus {
        version: 1,
        node: "node-a".into(),
        pod_cidr: "10.244.1.0/24".into(),
        generation: 7,
        dataplane_in_sync: in_sync,
        dataplane_generation: Some(if in_sync { 7 } else { 6 }),
        pods: 3,
        allocated_ips: 3,
        pool_capacity: Some(253),
    })
}

fn prev_result() -> Value {
    json!({"cniVersion": "1.0.0",
           "interfaces": [{"name": "eth0", "mac": "0a:58:0a:f4:01:07",
                           "sandbox": "/var/run/netns/cni-1234"}],
           "ips": [{"address": "10.244.1.7/32", "gateway": "10.244.1.1", "interface": 0}],
           "routes": [{"dst": "0.0.0.0/0", "gw": "10.244.1.1"}], "dns": {}})
}

fn error_of(out: &Outcome) -> Value {
    assert_eq!(out.exit_code, 1, "{}", out.stdout);
    serde_json::from_str(&out.stdout).unwrap()
}

#[test]
fn version_echoes_the_input_version_and_lists_supported_ones() {
    let mut control = FakeControl::not_running();
    let out = run(
        &env("VERSION", &[]),
        br#"{"cniVersion":"0.4.0"}"#,
        &mut control,
    );
    assert_eq!(out.exit_code, 0);
    assert_eq!(
        serde_json::from_str::<Value>(&out.stdout).unwrap(),
        json!({"cniVersion": "0.4.0",
               "supportedVersions": ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]})
    );
    let out = run(&env("VERSION", &[]), b"", &mut control);
    assert!(
        out.stdout.contains(r#""cniVersion":"1.1.0""#),
        "{}",
        out.stdout
    );
    assert!(control.sent.is_empty(), "VERSION asks no one");
}

#[test]
fn add_sends_pod_identity_and_prints_the_result() {
    let mut control = FakeControl::answering(ControlResponse::Attached(attachment()));
    let args = "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web;\
                K8S_POD_INFRA_CONTAINER_ID=c0ffee;K8S_POD_UID=u-1;IP=10.244.1.7";
    let out = run(
        &env("ADD", &[("CNI_ARGS", args)]),
        &conf("1.0.0", json!({"mtu": 1400})),
        &mut control,
    );
    assert_eq!(out.exit_code, 0, "{}", out.stdout);
    assert_eq!(
        serde_json::from_str::<Value>(&out.stdout).unwrap(),
        json!({"cniVersion": "1.0.0",
               "interfaces": [{"name": "eth0", "mac": "0a:58:0a:f4:01:07",
                               "sandbox": "/var/run/netns/cni-1234"}],
               "ips": [{"address": "10.244.1.7/32", "gateway": "10.244.1.1", "interface": 0}],
               "routes": [{"dst": "0.0.0.0/0", "gw": "10.244.1.1"}],
               "dns": {}})
    );
    assert_eq!(
        control.only_request(),
        json!({"request": "cni_add", "container_id": "c0ffee", "ifname": "eth0",
               "netns": "/var/run/netns/cni-1234", "pod_namespace": "default",
               "pod_name": "web", "pod_uid": "u-1", "requested_ip": "10.244.1.7",
               "mtu": 1400})
    );
    assert_eq!(control.sent[0].0, PathBuf::from(SOCKET));
    assert_eq!(control.sent[0].2, CHANGE_TIMEOUT);
}

#[test]
fn add_passes_offloads_from_the_config_only_when_it_says() {
    let mut control = FakeControl::answering(ControlResponse::Attached(attachment()));
    let out = run(
        &env("ADD", &[]),
        &conf("1.0.0", json!({"offloads": false})),
        &mut control,
    );
    assert_eq!(out.exit_code, 0, "{}", out.stdout);
    assert_eq!(control.only_request()["offloads"], json!(false));
    let mut control = FakeControl::answering(ControlResponse::Attached(attachment()));
    run(&env("ADD", &[]), &conf("1.0.0", json!({})), &mut control);
    assert_eq!(
        control.only_request().get("offloads"),
        None,
        "control applies its default"
    );
    let mut control = FakeControl::answering(ControlResponse::Attached(attachment()));
    let out = run(
        &env("ADD", &[]),
        &conf("1.0.0", json!({"offloads": "no"})),
        &mut control,
    );
    assert_eq!(error_of(&out)["code"], 7);
    assert!(control.sent.is_empty(), "a bad config asks no one");
}

#[test]
fn add_in_a_0_4_0_config_answers_in_0_4_0() {
    let mut control = FakeControl::answering(ControlResponse::Attached(attachment()));
    let out = run(&env("ADD", &[]), &conf("0.4.0", json!({})), &mut control);
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["cniVersion"], "0.4.0");
    assert_eq!(v["ips"][0]["version"], "4");
}

#[test]
fn add_with_control_not_running_is_code_11_naming_the_socket() {
    let mut control = FakeControl::not_running();
    let out = run(&env("ADD", &[]), &conf("1.0.0", json!({})), &mut control);
    let e = error_of(&out);
    assert_eq!(e["code"], 11);
    assert_eq!(e["cniVersion"], "1.0.0");
    let msg = e["msg"].as_str().unwrap();
    assert!(msg.contains("not running") && msg.contains(SOCKET), "{msg}");
}

#[test]
fn control_error_passes_code_and_message_through() {
    let mut control = FakeControl::answering(ControlResponse::Error {
        code: 101,
        message: "address pool 10.244.1.0/24 is exhausted".into(),
    });
    let out = run(&env("ADD", &[]), &conf("0.4.0", json!({})), &mut control);
    assert_eq!(
        error_of(&out),
        json!({"cniVersion": "0.4.0", "code": 101,
               "msg": "address pool 10.244.1.0/24 is exhausted"})
    );
}

#[test]
fn an_answer_of_the_wrong_kind_is_code_5() {
    let mut control = FakeControl::answering(ControlResponse::Detached);
    let e = error_of(&run(
        &env("ADD", &[]),
        &conf("1.0.0", json!({})),
        &mut control,
    ));
    assert_eq!(e["code"], 5);
    assert!(e["msg"].as_str().unwrap().contains("\"detached\""), "{e}");
}

#[test]
fn add_env_config_and_args_errors_send_nothing() {
    let cases: [(RawEnv, Vec<u8>, u32); 5] = [
        (
            env("ADD", &[("CNI_NETNS", "")]),
            conf("1.0.0", json!({})),
            4,
        ),
        (env("ADD", &[]), b"{not json".to_vec(), 6),
        (env("ADD", &[]), conf("0.2.0", json!({})), 1),
        (
            env("ADD", &[("CNI_ARGS", "FOO=bar")]),
            conf("1.0.0", json!({})),
            2,
        ),
        (
            env("ADD", &[("CNI_ARGS", "K8S_POD_NAME")]),
            conf("1.0.0", json!({})),
            4,
        ),
    ];
    for (env, stdin, code) in cases {
        let mut control = FakeControl::answering(ControlResponse::Attached(attachment()));
        let e = error_of(&run(&env, &stdin, &mut control));
        assert_eq!(e["code"], code, "{e}");
        assert!(control.sent.is_empty());
    }
}

#[test]
fn missing_command_is_code_4() {
    let mut control = FakeControl::not_running();
    let e = error_of(&run(
        &RawEnv::default(),
        &conf("1.0.0", json!({})),
        &mut control,
    ));
    assert_eq!(e["code"], 4);
    assert!(e["msg"].as_str().unwrap().contains("CNI_COMMAND"), "{e}");
}

#[test]
fn del_without_netns_or_args_checks_sends_none_and_prints_nothing() {
    for netns in ["", "/var/run/netns/cni-1234"] {
        let mut control = FakeControl::answering(ControlResponse::Detached);
        let out = run(
            &env(
                "DEL",
                &[("CNI_NETNS", netns), ("CNI_ARGS", "garbage;FOO=bar")],
            ),
            &conf("1.0.0", json!({"prevResult": "not even an object"})),
            &mut control,
        );
        assert_eq!(
            out,
            Outcome {
                stdout: String::new(),
                exit_code: 0
            }
        );
        let mut expected = json!({"request": "cni_del", "container_id": "c0ffee",
                                  "ifname": "eth0"});
        if !netns.is_empty() {
            expected["netns"] = json!(netns);
        }
        assert_eq!(control.only_request(), expected);
    }
}

#[test]
fn del_and_gc_release_under_a_network_name_add_refuses() {
    let named = |version: &str, extra: Value| {
        let mut c: Value = serde_json::from_slice(&conf(version, extra)).unwrap();
        c["name"] = json!("pod network");
        c.to_string().into_bytes()
    };
    let mut control = FakeControl::answering(ControlResponse::Detached);
    let out = run(&env("DEL", &[]), &named("1.0.0", json!({})), &mut control);
    assert_eq!(out.exit_code, 0, "{out:?}");
    assert_eq!(control.only_request()["request"], "cni_del");

    let mut control = FakeControl::answering(ControlResponse::Collected { released: vec![] });
    let gc_env = RawEnv::from_lookup(|n| (n == "CNI_COMMAND").then(|| "GC".to_string()));
    let gc_conf = named("1.1.0", json!({"cni.dev/valid-attachments": []}));
    let out = run(&gc_env, &gc_conf, &mut control);
    assert_eq!(out.exit_code, 0, "{out:?}");

    let mut control = FakeControl::answering(ControlResponse::Attached(attachment()));
    let out = run(&env("ADD", &[]), &named("1.0.0", json!({})), &mut control);
    assert_eq!(error_of(&out)["code"], 7);
    assert!(control.sent.is_empty(), "ADD sends nothing");
}

#[test]
fn check_sends_the_prev_result_address_and_mac_as_expected_values() {
    let mut control = FakeControl::answering(ControlResponse::Checked);
    let out = run(
        &env("CHECK", &[("CNI_ARGS", "K8S_POD_NAME=web")]),
        &conf("1.0.0", json!({"prevResult": prev_result()})),
        &mut control,
    );
    assert_eq!(
        out,
        Outcome {
            stdout: String::new(),
            exit_code: 0
        }
    );
    assert_eq!(
        control.only_request(),
        json!({"request": "cni_check", "container_id": "c0ffee", "ifname": "eth0",
               "netns": "/var/run/netns/cni-1234", "pod_name": "web",
               "requested_ip": "10.244.1.7", "requested_mac": "0a:58:0a:f4:01:07"})
    );
    assert_eq!(control.sent[0].2, QUERY_TIMEOUT);
}

#[test]
fn check_needs_a_prev_result_naming_our_interface_and_address() {
    let mut other_sandbox = prev_result();
    other_sandbox["interfaces"][0]["sandbox"] = json!("/var/run/netns/other");
    let mut no_ip = prev_result();
    no_ip["ips"] = json!([]);
    let mut other_name = prev_result();
    other_name["interfaces"][0]["name"] = json!("net1");
    for extra in [
        json!({}),
        json!({"prevResult": other_sandbox}),
        json!({"prevResult": no_ip}),
        json!({"prevResult": other_name}),
        json!({"prevResult": {"interfaces": "nope"}}),
    ] {
        let mut control = FakeControl::answering(ControlResponse::Checked);
        let e = error_of(&run(
            &env("CHECK", &[]),
            &conf("1.0.0", extra.clone()),
            &mut control,
        ));
        assert_eq!(e["code"], 7, "{extra}: {e}");
        assert!(control.sent.is_empty());
    }
}

#[test]
fn check_does_not_exist_before_0_4_0() {
    let mut control = FakeControl::answering(ControlResponse::Checked);
    let e = error_of(&run(
        &env("CHECK", &[]),
        &conf("0.3.1", json!({"prevResult": prev_result()})),
        &mut control,
    ));
    assert_eq!(e["code"], 1);
    assert_eq!(e["cniVersion"], "0.3.1");
}

#[test]
fn gc_sends_the_valid_attachments() {
    let mut control = FakeControl::answering(ControlResponse::Collected {
        released: vec![AttachmentId {
            container_id: "old".into(),
            ifname: "eth0".into(),
        }],
    });
    let gc_env = RawEnv::from_lookup(|n| (n == "CNI_COMMAND").then(|| "GC".to_string()));
    let out = run(
        &gc_env,
        &conf(
            "1.1.0",
            json!({"cni.dev/valid-attachments":
            [{"containerID": "c0ffee", "ifname": "eth0"}]}),
        ),
        &mut control,
    );
    assert_eq!(
        out,
        Outcome {
            stdout: String::new(),
            exit_code: 0
        }
    );
    assert_eq!(
        control.only_request(),
        json!({"request": "cni_gc", "valid": [{"container_id": "c0ffee", "ifname": "eth0"}]})
    );
}

#[test]
fn gc_with_only_the_legacy_attachments_key_sends_those_attachments() {
    // libcni sends both keys; a runtime that follows the 1.1.0 text to the letter, only this.
    let mut control = FakeControl::answering(ControlResponse::Collected { released: vec![] });
    let out = run(
        &env("GC", &[]),
        &conf(
            "1.1.0",
            json!({"cni.dev/attachments": [{"containerID": "c0ffee", "ifname": "eth0"}]}),
        ),
        &mut control,
    );
    assert_eq!(out.exit_code, 0, "{out:?}");
    assert_eq!(
        control.only_request(),
        json!({"request": "cni_gc", "valid": [{"container_id": "c0ffee", "ifname": "eth0"}]})
    );
}

#[test]
fn gc_without_valid_attachments_or_before_1_1_0_releases_nothing() {
    for (stdin, code) in [
        (conf("1.1.0", json!({})), 7),
        (conf("1.0.0", json!({"cni.dev/valid-attachments": []})), 1),
    ] {
        let mut control = FakeControl::answering(ControlResponse::Collected { released: vec![] });
        let e = error_of(&run(&env("GC", &[]), &stdin, &mut control));
        assert_eq!(e["code"], code, "{e}");
        assert!(control.sent.is_empty());
    }
}

#[test]
fn status_succeeds_only_when_the_dataplane_is_in_sync() {
    let mut control = FakeControl::answering(control_status(true));
    let out = run(&env("STATUS", &[]), &conf("1.1.0", json!({})), &mut control);
    assert_eq!(
        out,
        Outcome {
            stdout: String::new(),
            exit_code: 0
        }
    );
    assert_eq!(
        serde_json::to_string(&control.only_request()).unwrap(),
        r#"{"request":"status"}"#
    );

    let mut control = FakeControl::answering(control_status(false));
    let e = error_of(&run(
        &env("STATUS", &[]),
        &conf("1.1.0", json!({})),
        &mut control,
    ));
    assert_eq!(e["code"], 50);
    assert!(e["msg"].as_str().unwrap().contains("generation 7"), "{e}");
}

#[test]
fn status_fails_with_code_50_while_the_address_pool_is_exhausted() {
    let full = |allocated: usize| {
        let ControlResponse::Status(mut s) = control_status(true) else {
            unreachable!()
        };
        (s.pods, s.allocated_ips, s.pool_capacity) = (allocated, allocated, Some(5));
        ControlResponse::Status(s)
    };
    let mut control = FakeControl::answering(full(5));
    let e = error_of(&run(
        &env("STATUS", &[]),
        &conf("1.1.0", json!({})),
        &mut control,
    ));
    assert_eq!(e["code"], 50, "{e}");
    let msg = e["msg"].as_str().unwrap();
    assert!(
        msg.contains("address pool 10.244.1.0/24 of node node-a is exhausted"),
        "{e}"
    );
    // One address free: available.
    let mut control = FakeControl::answering(full(4));
    let out = run(&env("STATUS", &[]), &conf("1.1.0", json!({})), &mut control);
    assert_eq!(out.exit_code, 0, "{out:?}");
    // A control process that does not report its pool's size is not judged on it.
    let ControlResponse::Status(mut s) = full(5) else {
        unreachable!()
    };
    s.pool_capacity = None;
    let mut control = FakeControl::answering(ControlResponse::Status(s));
    let out = run(&env("STATUS", &[]), &conf("1.1.0", json!({})), &mut control);
    assert_eq!(out.exit_code, 0, "{out:?}");
}

#[test]
fn status_with_control_unreachable_or_failing_is_code_50() {
    let mut control = FakeControl::not_running();
    let e = error_of(&run(
        &env("STATUS", &[]),
        &conf("1.1.0", json!({})),
        &mut control,
    ));
    assert_eq!(e["code"], 50);
    assert!(e["msg"].as_str().unwrap().contains("not running"), "{e}");

    let mut control = FakeControl::answering(ControlResponse::Error {
        code: 5,
        message: "database unavailable".into(),
    });
    let e = error_of(&run(
        &env("STATUS", &[]),
        &conf("1.1.0", json!({})),
        &mut control,
    ));
    assert_eq!(
        (e["code"].clone(), e["msg"].clone()),
        (json!(50), json!("database unavailable"))
    );

    let mut control = FakeControl::answering(control_status(true));
    let e = error_of(&run(
        &env("STATUS", &[]),
        &conf("1.0.0", json!({})),
        &mut control,
    ));
    assert_eq!(e["code"], 1, "STATUS arrived in 1.1.0");
}
