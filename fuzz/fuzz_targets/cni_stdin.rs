//! Arbitrary network configs on the CNI plugin's stdin, through its pure entry point
//! `podswitch_cni::plugin::run`, as a container runtime would call it.
//!
//! Input: `[command][select][stdin...]` (shorter inputs are skipped).
//! - `command % 6` picks `CNI_COMMAND`: ADD, DEL, CHECK, VERSION, GC, STATUS.
//! - `select` bits 0-2 pick `CNI_ARGS` from [`ARGS`] (unset, containerd's, podman's, and five
//!   malformed ones); bits 3-5 pick what the fake control process answers ([`Answer`]); bits
//!   6-7 pick the identity ([`IDENTITIES`]: valid container id, netns and ifname, one of them
//!   without `CNI_NETNS`, as containerd's second DEL comes).
//! - The rest is stdin, as is.
//!
//! Checked on every run: no panic; the exit code is 0 or 1; at most one request is sent, of the
//! command's kind (none for VERSION), and only when the environment, the config and (ADD,
//! CHECK) `CNI_ARGS` are valid; the stdout of DEL, CHECK, GC and STATUS success is empty, every
//! other stdout is one line of JSON: an ADD result (`cniVersion` of the config, `ips[0].address`,
//! and our address on our interface), a VERSION answer, or on exit 1 an error object with integer
//! `code`, string `msg` and the `cniVersion` errors are answered in. When the control process
//! answered with success the run succeeds; when it answered `Error`, its code (50 for STATUS) and
//! message are what the runtime sees.

#![no_main]

use libfuzzer_sys::fuzz_target;
use podswitch_cni::client::{ClientError, Control};
use podswitch_cni::config::NetConf;
use podswitch_cni::env::RawEnv;
use podswitch_cni::plugin::{run, Outcome};
use podswitch_cni::version;
use podswitch_proto::control::{Attachment, ControlRequestBody, ControlResponse, ControlStatus};
use podswitch_proto::MacAddr;
use serde_json::Value;
use std::io;
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

const COMMANDS: [&str; 6] = ["ADD", "DEL", "CHECK", "VERSION", "GC", "STATUS"];

/// `CNI_ARGS` values: unset, two real ones, then malformed ones (unknown key, non-boolean
/// IgnoreUnknown, no `=`, an IPv6 and a bad MAC, an empty key).
const ARGS: [Option<&str>; 8] = [
    None,
    Some(
        "K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0;K8S_POD_INFRA_CONTAINER_ID=c0ffee;\
         K8S_POD_UID=1b2c-3d;IgnoreUnknown=1",
    ),
    Some("IgnoreUnknown=1;IP=10.88.0.5;MAC=02:42:ac:11:00:02"),
    Some("K8S_POD_NAME=web;FOO=bar"),
    Some("IgnoreUnknown=yes"),
    Some("K8S_POD_NAME"),
    Some("IP=fd00::1;MAC=zz:zz"),
    Some(";=x;"),
];

/// `(CNI_CONTAINERID, CNI_NETNS, CNI_IFNAME)`, all valid for ADD; `None`: unset.
const IDENTITIES: [(&str, Option<&str>, &str); 4] = [
    ("c0ffee", Some("/var/run/netns/cni-1234"), "eth0"),
    (
        "3f4e1a2b9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f",
        Some("/proc/4242/ns/net"),
        "net1",
    ),
    ("c0ffee", None, "eth0"),
    (
        "k8s_POD_web-0_default_1b2c-3d_0",
        Some("/var/run/netns/cni-5e3f0a1c-77aa-4b1e-9d0c-2f6b8e4a1d33"),
        "eth0",
    ),
];

/// What the fake control process answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    /// The success answer of the request (`Attached` for this container, `Detached`,
    /// `Checked`, `Collected`, an in-sync `Status`).
    Success,
    /// `Error` with this code.
    Error(u32),
    /// The socket is missing: control not running.
    NotRunning,
    /// No answer within the timeout.
    Timeout,
    /// A success answer of another request (`Applied`).
    WrongKind,
    /// Almost right: `Attached` for another container (ADD), a `Status` out of sync (STATUS),
    /// `Attached` for the others.
    Mismatch,
}

const ANSWERS: [Answer; 8] = [
    Answer::Success,
    Answer::Error(3),
    Answer::Error(11),
    Answer::Error(101),
    Answer::NotRunning,
    Answer::Timeout,
    Answer::WrongKind,
    Answer::Mismatch,
];

const ERROR_MESSAGE: &str = "canned error from the fake control process";

struct FakeControl {
    answer: Answer,
    sent: Vec<ControlRequestBody>,
}

impl Control for FakeControl {
    fn round_trip(
        &mut self,
        socket: &Path,
        body: ControlRequestBody,
        _timeout: Duration,
    ) -> Result<ControlResponse, ClientError> {
        self.sent.push(body.clone());
        let socket = socket.to_path_buf();
        Ok(match self.answer {
            Answer::Success => match body {
                ControlRequestBody::CniAdd(a) => ControlResponse::Attached(attachment(
                    &a.container_id,
                    &a.ifname,
                    &a.netns,
                    a.requested_ip,
                )),
                ControlRequestBody::CniDel(_) => ControlResponse::Detached,
                ControlRequestBody::CniCheck(_) => ControlResponse::Checked,
                ControlRequestBody::CniGc { .. } => ControlResponse::Collected {
                    released: Vec::new(),
                },
                ControlRequestBody::Status => status(true),
                other => panic!("the plugin sent a request no CNI command makes: {other:?}"),
            },
            Answer::Error(code) => ControlResponse::Error {
                code,
                message: ERROR_MESSAGE.to_string(),
            },
            Answer::NotRunning => {
                return Err(ClientError::NotRunning {
                    peer: "podswitch-control",
                    socket,
                    err: io::Error::from(io::ErrorKind::NotFound),
                })
            }
            Answer::Timeout => {
                return Err(ClientError::Timeout {
                    peer: "podswitch-control",
                    socket,
                    timeout: Duration::from_secs(10),
                })
            }
            Answer::WrongKind => ControlResponse::Applied {
                summary: vec!["pod default/web created".to_string()],
            },
            Answer::Mismatch => match body {
                ControlRequestBody::Status => status(false),
                _ => ControlResponse::Attached(attachment(
                    "someone-else",
                    "eth9",
                    "/var/run/netns/other",
                    None,
                )),
            },
        })
    }
}

const POD_IP: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 7);

fn attachment(container_id: &str, ifname: &str, netns: &str, ip: Option<Ipv4Addr>) -> Attachment {
    Attachment {
        container_id: container_id.to_string(),
        ifname: ifname.to_string(),
        netns: netns.to_string(),
        mac: MacAddr::new(0x0a, 0x58, 0x0a, 0xf4, 0x01, 0x07),
        ip: ip.unwrap_or(POD_IP),
        prefix_len: 32,
        gateway: Ipv4Addr::new(10, 244, 1, 1),
        port: "psw-c0ffee".to_string(),
    }
}

fn status(in_sync: bool) -> ControlResponse {
    ControlResponse::Status(ControlStatus {
        version: 1,
        node: "node-a".into(),
        pod_cidr: "10.244.1.0/24".into(),
        generation: 7,
        dataplane_in_sync: in_sync,
        dataplane_generation: in_sync.then_some(7),
        pods: 3,
        allocated_ips: 3,
        pool_capacity: Some(253),
    })
}

fuzz_target!(|data: &[u8]| {
    let [command, select, stdin @ ..] = data else {
        return;
    };
    let command = COMMANDS[usize::from(*command) % COMMANDS.len()];
    let args = ARGS[usize::from(select & 0b111)];
    let answer = ANSWERS[usize::from((select >> 3) & 0b111)];
    let (container_id, netns, ifname) = IDENTITIES[usize::from(select >> 6)];
    let env = RawEnv {
        command: Some(command.to_string()),
        container_id: Some(container_id.to_string()),
        netns: netns.map(str::to_string),
        ifname: Some(ifname.to_string()),
        args: args.map(str::to_string),
        path: Some("/opt/cni/bin".to_string()),
    };
    let mut control = FakeControl {
        answer,
        sent: Vec::new(),
    };
    let out = run(&env, stdin, &mut control);
    check(command, &env, stdin, &control, &out);
});

fn check(command: &str, env: &RawEnv, stdin: &[u8], control: &FakeControl, out: &Outcome) {
    let ctx = || {
        format!(
            "{command} answer {:?} args {:?}\nstdin: {}\nstdout: {:?}",
            control.answer,
            env.args,
            String::from_utf8_lossy(stdin),
            out.stdout
        )
    };
    assert!(out.exit_code <= 1, "exit code {}: {}", out.exit_code, ctx());

    // At most one request, of the command's kind, only after every local check passed.
    assert!(
        control.sent.len() <= 1,
        "{} requests: {}",
        control.sent.len(),
        ctx()
    );
    let sent = control.sent.first();
    if let Some(body) = sent {
        let kind_ok = matches!(
            (command, body),
            ("ADD", ControlRequestBody::CniAdd(_))
                | ("DEL", ControlRequestBody::CniDel(_))
                | ("CHECK", ControlRequestBody::CniCheck(_))
                | ("GC", ControlRequestBody::CniGc { .. })
                | ("STATUS", ControlRequestBody::Status)
        );
        assert!(kind_ok, "{command} sent {body:?}: {}", ctx());
        assert!(
            NetConf::parse(stdin).is_ok(),
            "sent with a bad config: {}",
            ctx()
        );
        if matches!(command, "ADD" | "CHECK") {
            assert!(env.cni_args().is_ok(), "sent with bad CNI_ARGS: {}", ctx());
        }
        if let ControlRequestBody::CniAdd(a) | ControlRequestBody::CniCheck(a) = body {
            assert_eq!(
                (Some(&a.container_id), Some(&a.ifname), Some(&a.netns)),
                (
                    env.container_id.as_ref(),
                    env.ifname.as_ref(),
                    env.netns.as_ref()
                ),
                "{}",
                ctx()
            );
        }
        if control.answer == Answer::Success {
            assert_eq!(
                out.exit_code,
                0,
                "control said yes, the plugin no: {}",
                ctx()
            );
        }
    } else {
        assert!(
            command != "VERSION" || out.exit_code == 0,
            "VERSION failed: {}",
            ctx()
        );
    }

    if out.exit_code == 0 && matches!(command, "DEL" | "CHECK" | "GC" | "STATUS") {
        assert_eq!(out.stdout, "", "{}", ctx());
        return;
    }
    assert!(out.stdout.ends_with('\n'), "not one line: {}", ctx());
    let json: Value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", ctx()));
    assert!(json.is_object(), "stdout is not an object: {}", ctx());
    let cni_version = json.get("cniVersion").and_then(Value::as_str);

    if out.exit_code == 1 {
        assert!(
            json.get("code").is_some_and(Value::is_u64),
            "no integer code: {}",
            ctx()
        );
        assert!(
            json.get("msg").is_some_and(Value::is_string),
            "no string msg: {}",
            ctx()
        );
        assert_eq!(
            cni_version,
            Some(version::answer_version_of(stdin).as_str()),
            "error in the wrong cniVersion: {}",
            ctx()
        );
        if let (Some(_), Answer::Error(code)) = (sent, control.answer) {
            let expected = if command == "STATUS" { 50 } else { code };
            assert_eq!(json["code"], expected, "{}", ctx());
            assert_eq!(json["msg"], ERROR_MESSAGE, "{}", ctx());
        }
        return;
    }

    match command {
        "VERSION" => {
            assert!(cni_version.is_some(), "no cniVersion: {}", ctx());
            assert!(
                json.get("supportedVersions").is_some_and(Value::is_array),
                "no supportedVersions: {}",
                ctx()
            );
        }
        "ADD" => {
            let conf = NetConf::parse(stdin).expect("ADD succeeded, so its config parsed");
            assert_eq!(cni_version, Some(conf.cni_version.as_str()), "{}", ctx());
            assert!(
                json.pointer("/ips/0/address").is_some_and(Value::is_string),
                "no ips[0].address: {}",
                ctx()
            );
            // Our address, on an interface named CNI_IFNAME in CNI_NETNS.
            let ours = json["ips"].as_array().into_iter().flatten().any(|ip| {
                let Some(index) = ip.get("interface").and_then(Value::as_u64) else {
                    return false;
                };
                let interface = &json["interfaces"][index as usize];
                ip["address"].as_str().is_some_and(|a| a.ends_with("/32"))
                    && interface["name"].as_str() == env.ifname.as_deref()
                    && interface["sandbox"].as_str() == env.netns.as_deref()
            });
            assert!(
                ours,
                "the result does not give our interface its address: {}",
                ctx()
            );
        }
        _ => unreachable!("{command} printed a result: {}", ctx()),
    }
}
