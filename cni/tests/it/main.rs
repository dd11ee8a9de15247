//! `podswitch-cni` as a runtime runs it: a process with `CNI_*` variables and the network config
//! on stdin, against a fake podswitch-control (a thread on a temporary unix socket that reads one
//! request and answers with a canned response). Checks what reaches control, what is printed,
//! and the exit code.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use podswitch_proto::control::{Attachment, ControlRequest, ControlResponse};
use podswitch_proto::{read_frame, write_frame, MacAddr};
use serde_json::{json, Value};
use std::io::Write;
use std::net::Ipv4Addr;
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::thread::JoinHandle;

/// A socket that answers one request with a canned response and hands back what it was asked.
struct FakeControl {
    path: PathBuf,
    thread: Option<JoinHandle<ControlRequest>>,
}

impl FakeControl {
    fn start(test: &str, answer: ControlResponse) -> Self {
        let path = socket_path(test);
        let listener = UnixListener::bind(&path).unwrap();
        let thread = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let req: ControlRequest = read_frame(&mut conn).unwrap();
            write_frame(&mut conn, &answer).unwrap();
            req
        });
        Self {
            path,
            thread: Some(thread),
        }
    }

    fn socket(&self) -> &str {
        self.path.to_str().unwrap()
    }

    /// The request control received, as JSON.
    fn request(mut self) -> Value {
        serde_json::to_value(self.thread.take().unwrap().join().unwrap()).unwrap()
    }
}

impl Drop for FakeControl {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn socket_path(test: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!(
        "podswitch-cni-it-{}-{test}.sock",
        std::process::id()
    ));
    let _ = std::fs::remove_file(&path);
    path
}

/// What the plugin did: exit code and stdout (JSON, or `None` when it printed nothing).
struct Run {
    code: i32,
    stdout: Option<Value>,
}

/// Runs the binary with exactly `vars` as its environment and `stdin`.
fn podswitch_cni(vars: &[(&str, &str)], stdin: &Value) -> Run {
    let mut child = Command::new(env!("CARGO_BIN_EXE_podswitch-cni"))
        .env_clear()
        .envs(vars.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    Run {
        code: out.status.code().unwrap(),
        stdout: (!text.trim().is_empty()).then(|| serde_json::from_str(&text).unwrap()),
    }
}

fn config(version: &str, socket: &str) -> Value {
    json!({"cniVersion": version, "name": "podswitch", "type": "podswitch-cni",
           "controlSocket": socket,
           "runtimeConfig": {"portMappings": [{"hostPort": 8080, "containerPort": 80,
                                               "protocol": "tcp"}]}})
}

const POD_ARGS: &str = "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web;\
                        K8S_POD_INFRA_CONTAINER_ID=c0ffee;K8S_POD_UID=7d1c";

fn add_env() -> Vec<(&'static str, &'static str)> {
    vec![
        ("CNI_COMMAND", "ADD"),
        ("CNI_CONTAINERID", "c0ffee"),
        ("CNI_NETNS", "/var/run/netns/cni-1234"),
        ("CNI_IFNAME", "eth0"),
        ("CNI_ARGS", POD_ARGS),
        ("CNI_PATH", "/opt/cni/bin"),
    ]
}

#[test]
fn add_asks_control_and_prints_the_1_0_0_result() {
    let control = FakeControl::start(
        "add",
        ControlResponse::Attached(Attachment {
            container_id: "c0ffee".into(),
            ifname: "eth0".into(),
            netns: "/var/run/netns/cni-1234".into(),
            mac: MacAddr::new(0x0a, 0x58, 0x0a, 0xf4, 0x01, 0x07),
            ip: Ipv4Addr::new(10, 244, 1, 7),
            prefix_len: 32,
            gateway: Ipv4Addr::new(10, 244, 1, 1),
            port: "psw-c0ffee".into(),
        }),
    );
    let run = podswitch_cni(&add_env(), &config("1.0.0", control.socket()));
    assert_eq!(run.code, 0, "{:?}", run.stdout);
    assert_eq!(
        run.stdout.unwrap(),
        json!({"cniVersion": "1.0.0",
               "interfaces": [{"name": "eth0", "mac": "0a:58:0a:f4:01:07",
                               "sandbox": "/var/run/netns/cni-1234"}],
               "ips": [{"address": "10.244.1.7/32", "gateway": "10.244.1.1", "interface": 0}],
               "routes": [{"dst": "0.0.0.0/0", "gw": "10.244.1.1"}],
               "dns": {}})
    );
    assert_eq!(
        control.request(),
        json!({"version": 1, "request": "cni_add", "container_id": "c0ffee", "ifname": "eth0",
               "netns": "/var/run/netns/cni-1234", "pod_namespace": "default",
               "pod_name": "web", "pod_uid": "7d1c"})
    );
}

#[test]
fn second_del_with_empty_netns_succeeds_silently() {
    let control = FakeControl::start("del", ControlResponse::Detached);
    let run = podswitch_cni(
        &[
            ("CNI_COMMAND", "DEL"),
            ("CNI_CONTAINERID", "c0ffee"),
            ("CNI_NETNS", ""),
            ("CNI_IFNAME", "eth0"),
            ("CNI_ARGS", POD_ARGS),
            ("CNI_PATH", "/opt/cni/bin"),
        ],
        &config("0.4.0", control.socket()),
    );
    assert_eq!((run.code, run.stdout), (0, None));
    assert_eq!(
        control.request(),
        json!({"version": 1, "request": "cni_del", "container_id": "c0ffee", "ifname": "eth0"})
    );
}

#[test]
fn version_needs_nothing_but_the_command() {
    let run = podswitch_cni(
        &[("CNI_COMMAND", "VERSION")],
        &json!({"cniVersion": "1.0.0"}),
    );
    assert_eq!(run.code, 0);
    assert_eq!(
        run.stdout.unwrap(),
        json!({"cniVersion": "1.0.0",
               "supportedVersions": ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]})
    );
}

#[test]
fn control_error_becomes_the_cni_error_with_its_code() {
    let control = FakeControl::start(
        "ctlerr",
        ControlResponse::Error {
            code: 101,
            message: "address pool 10.244.1.0/24 is exhausted: delete unused pods".into(),
        },
    );
    let run = podswitch_cni(&add_env(), &config("0.4.0", control.socket()));
    assert_eq!(run.code, 1);
    assert_eq!(
        run.stdout.unwrap(),
        json!({"cniVersion": "0.4.0", "code": 101,
               "msg": "address pool 10.244.1.0/24 is exhausted: delete unused pods"})
    );
    assert_eq!(control.request()["request"], "cni_add");
}

#[test]
fn unreachable_socket_is_try_again_later_naming_the_socket() {
    let path = socket_path("unreachable");
    let socket = path.to_str().unwrap();
    let run = podswitch_cni(&add_env(), &config("1.1.0", socket));
    assert_eq!(run.code, 1);
    let err = run.stdout.unwrap();
    assert_eq!(err["cniVersion"], "1.1.0");
    assert_eq!(err["code"], 11);
    let msg = err["msg"].as_str().unwrap();
    assert!(msg.contains("podswitch-control is not running"), "{msg}");
    assert!(msg.contains(socket), "{msg}");
}

#[test]
fn missing_environment_is_code_4_naming_the_variables() {
    let run = podswitch_cni(
        &[("CNI_COMMAND", "ADD"), ("CNI_CONTAINERID", "c0ffee")],
        &config("1.0.0", "/nonexistent.sock"),
    );
    assert_eq!(run.code, 1);
    let err = run.stdout.unwrap();
    assert_eq!(err["code"], 4);
    assert!(
        err["msg"]
            .as_str()
            .unwrap()
            .contains("CNI_NETNS, CNI_IFNAME"),
        "{err}"
    );
}
