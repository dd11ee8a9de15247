//! The verbs podswitch-control answers, against a fake control process.

use crate::{podswitchctl, podswitchctl_with_env, text, FakeDaemon, TempDir};
use podswitch_proto::control::{
    ControlRequest, ControlRequestBody, ControlResponse, ControlStatus, PodInfo,
};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;

type FakeControl = FakeDaemon<ControlRequest>;

fn web_pod() -> PodInfo {
    PodInfo {
        namespace: "default".into(),
        name: "web-0".into(),
        container_id: "5f0c2a9d81be4c7aa1d3e0f6b2c4d8e9".into(),
        ifname: "eth0".into(),
        netns: "/var/run/netns/cni-7".into(),
        ip: Ipv4Addr::new(10, 244, 1, 2),
        mac: "02:00:0a:f4:01:02".parse().unwrap(),
        port: "psw-5f0c2a9d".into(),
        labels: BTreeMap::from([("app".to_string(), "web".to_string())]),
    }
}

#[test]
fn get_pods_prints_the_table() {
    let control = FakeControl::start(
        "control-pods",
        ControlResponse::Pods {
            pods: vec![web_pod()],
        },
    );
    let out = podswitchctl(
        &["get", "pods", "--control-socket", control.socket()],
        None,
        b"",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "NAMESPACE  NAME   IP          MAC                PORT          CONTAINER     IFNAME  \
         LABELS\n\
         default    web-0  10.244.1.2  02:00:0a:f4:01:02  psw-5f0c2a9d  5f0c2a9d81be  eth0    \
         app=web\n"
    );
    let req = control.request();
    assert_eq!(req.version, podswitch_proto::PROTOCOL_VERSION);
    assert!(matches!(req.body, ControlRequestBody::Pods));
}

#[test]
fn get_pods_json_is_the_list_and_the_socket_comes_from_the_environment() {
    let control = FakeControl::start(
        "control-pods-json",
        ControlResponse::Pods {
            pods: vec![web_pod()],
        },
    );
    let out = podswitchctl_with_env(
        &["get", "pods", "-o", "json"],
        &[("PODSWITCH_CONTROL_SOCKET", &control.path)],
        b"",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let printed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        printed,
        serde_json::json!([{"namespace": "default", "name": "web-0",
            "container_id": "5f0c2a9d81be4c7aa1d3e0f6b2c4d8e9", "ifname": "eth0",
            "netns": "/var/run/netns/cni-7", "ip": "10.244.1.2", "mac": "02:00:0a:f4:01:02",
            "port": "psw-5f0c2a9d", "labels": {"app": "web"}}])
    );
    control.request();
}

#[test]
fn get_services_points_at_the_dataplane_verb() {
    let out = podswitchctl(
        &["get", "services", "--control-socket", "/nonexistent/c.sock"],
        None,
        b"",
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        "podswitchctl: get services: podswitch-control does not list these; `podswitchctl \
         services` shows what podswitchd enforces\n"
    );
}

#[test]
fn apply_from_a_file_sends_the_manifests_and_prints_the_summary() {
    let tmp = TempDir::new("control-apply");
    let manifests = "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n---\n\
                     apiVersion: v1\nkind: Pod\nmetadata: {name: web, namespace: shop}\n";
    let file = tmp.path("shop.yaml");
    std::fs::write(&file, manifests).unwrap();
    let control = FakeControl::start(
        "control-apply",
        ControlResponse::Applied {
            summary: vec![
                "namespace shop created".into(),
                "pod shop/web configured".into(),
            ],
        },
    );
    let out = podswitchctl(
        &[
            "--control-socket",
            control.socket(),
            "apply",
            "-f",
            file.to_str().unwrap(),
        ],
        None,
        b"",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "namespace shop created\npod shop/web configured\n"
    );
    let ControlRequestBody::Apply { manifests: sent } = control.request().body else {
        panic!("not an apply")
    };
    assert_eq!(sent, manifests);
}

#[test]
fn delete_from_stdin_prints_json_summary() {
    let control = FakeControl::start(
        "control-delete",
        ControlResponse::Applied {
            summary: vec!["pod shop/web deleted".into()],
        },
    );
    let manifests = "apiVersion: v1\nkind: Pod\nmetadata: {name: web, namespace: shop}\n";
    let out = podswitchctl(
        &[
            "delete",
            "-f",
            "-",
            "-o",
            "json",
            "--control-socket",
            control.socket(),
        ],
        None,
        manifests.as_bytes(),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let printed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        printed,
        serde_json::json!({"summary": ["pod shop/web deleted"]})
    );
    let ControlRequestBody::Delete { manifests: sent } = control.request().body else {
        panic!("not a delete")
    };
    assert_eq!(sent, manifests);
}

#[test]
fn apply_refused_by_control_prints_its_message_with_exit_code_1() {
    let message =
        "service shop/web: port 80 has no targetPort and no endpoints port named \"http\"";
    let control = FakeControl::start(
        "control-apply-error",
        ControlResponse::Error {
            code: 100,
            message: message.into(),
        },
    );
    let out = podswitchctl(
        &["apply", "-f", "-", "--control-socket", control.socket()],
        None,
        b"kind: Service\n",
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(text(&out.stdout), "");
    assert_eq!(text(&out.stderr), format!("podswitchctl: {message}\n"));
    assert!(matches!(
        control.request().body,
        ControlRequestBody::Apply { .. }
    ));
}

#[test]
fn control_status_prints_key_value_lines() {
    let control = FakeControl::start(
        "control-status",
        ControlResponse::Status(ControlStatus {
            version: 1,
            node: "node-a".into(),
            pod_cidr: "10.244.1.0/24".into(),
            generation: 4,
            dataplane_in_sync: true,
            dataplane_generation: Some(4),
            pods: 1,
            allocated_ips: 1,
            pool_capacity: Some(253),
        }),
    );
    let out = podswitchctl(
        &["control-status", "--control-socket", control.socket()],
        None,
        b"",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "protocol    1\n\
         node        node-a, pod CIDR 10.244.1.0/24\n\
         generation  4\n\
         dataplane   in sync (generation 4)\n\
         pods        1\n\
         addresses   1 allocated\n"
    );
    assert!(matches!(control.request().body, ControlRequestBody::Status));
}

#[test]
fn wrong_response_kind_from_control_is_named() {
    let control = FakeControl::start("control-mismatch", ControlResponse::Detached);
    let out = podswitchctl(
        &["get", "pods", "--control-socket", control.socket()],
        None,
        b"",
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).starts_with(
            "podswitchctl: podswitch-control answered the pods request with the wrong kind of \
             response (detached)"
        ),
        "{}",
        text(&out.stderr)
    );
    control.request();
}

#[test]
fn missing_control_says_what_to_do() {
    let out = podswitchctl(
        &[
            "--control-socket",
            "/nonexistent/control.sock",
            "control-status",
        ],
        None,
        b"",
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        "podswitchctl: cannot connect to podswitch-control at /nonexistent/control.sock: \
         No such file or directory — is podswitch-control running? \
         (--control-socket to point elsewhere)\n"
    );
}
