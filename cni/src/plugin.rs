//! The commands: from the runtime's environment and stdin to one control request, and from its
//! answer to what the runtime reads on stdout. A pure function of (env, stdin, [`Control`]), so
//! every command is tested with a fake control process.
//!
//! Check order within a command: environment (code 4), then config (6, 1, 7), then `CNI_ARGS`
//! (4, 2), then the request; nothing is sent unless all of them pass.

use crate::client::{Control, ToCniError};
use crate::config::NetConf;
use crate::env::{AttachEnv, Command, RawEnv};
use crate::result::{code, version_json, CniError, CniResult};
use crate::version::{self, CniVersion};
use podswitch_proto::control::{CniAttach, CniDetach, ControlRequestBody, ControlResponse};
use podswitch_proto::MacAddr;
use serde_json::Value;
use std::net::Ipv4Addr;
use std::time::Duration;

/// How long ADD, DEL and GC may take: they create or remove devices and tables in podswitchd.
pub const CHANGE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long CHECK and STATUS may take: they only read.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(10);

/// What to print and how to exit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// stdout: a result, a VERSION answer, an error object, or nothing.
    pub stdout: String,
    /// 0 on success, 1 with an error object on stdout.
    pub exit_code: u8,
}

/// Runs one CNI invocation.
pub fn run(env: &RawEnv, stdin: &[u8], control: &mut dyn Control) -> Outcome {
    match dispatch(env, stdin, control) {
        Ok(stdout) => Outcome {
            stdout,
            exit_code: 0,
        },
        Err(err) => Outcome {
            stdout: err.to_json(version::answer_version_of(stdin)),
            exit_code: 1,
        },
    }
}

fn dispatch(env: &RawEnv, stdin: &[u8], control: &mut dyn Control) -> Result<String, CniError> {
    match env.command()? {
        Command::Version => Ok(version_answer(stdin)),
        Command::Add => add(env, stdin, control),
        Command::Del => del(env, stdin, control),
        Command::Check => check(env, stdin, control),
        Command::Gc => gc(stdin, control),
        Command::Status => status(stdin, control),
    }
}

/// VERSION never fails: the answer is written in the input's `cniVersion` (spec 1.1 §VERSION:
/// "the value of cniVersion specified on input"), or the latest when stdin names none.
fn version_answer(stdin: &[u8]) -> String {
    let cni_version =
        version::raw_version_of(stdin).unwrap_or_else(|| CniVersion::LATEST.as_str().to_string());
    version_json(&cni_version)
}

fn add(env: &RawEnv, stdin: &[u8], control: &mut dyn Control) -> Result<String, CniError> {
    let who = env.attach(true)?;
    let conf = NetConf::parse(stdin)?;
    let args = env.cni_args()?;
    // podswitch is normally the first plugin; chained after another, it adds to that result.
    let prev = conf
        .prev_result
        .clone()
        .map(parse_prev_result)
        .transpose()?;
    let request = ControlRequestBody::CniAdd(CniAttach {
        container_id: who.container_id.clone(),
        ifname: who.ifname.clone(),
        netns: who.netns.clone(),
        pod_namespace: args.pod_namespace,
        pod_name: args.pod_name,
        pod_uid: args.pod_uid,
        requested_ip: args.ip,
        requested_mac: args.mac,
        mtu: conf.mtu,
        offloads: conf.offloads,
        attachment: conf.attachment,
    });
    match call(control, &conf, request, CHANGE_TIMEOUT)? {
        ControlResponse::Attached(attachment) => {
            if attachment.container_id != who.container_id || attachment.ifname != who.ifname {
                return Err(CniError::new(
                    code::IO_FAILURE,
                    format!(
                        "podswitch-control answered ADD of {}/{} with the attachment of {}/{}",
                        who.container_id, who.ifname, attachment.container_id, attachment.ifname
                    ),
                ));
            }
            Ok(CniResult::for_attachment(conf.cni_version, &attachment, prev).to_json())
        }
        other => Err(unexpected("ADD", &other)),
    }
}

/// DEL reads no `CNI_ARGS` and no `prevResult` and does not check the network name's
/// pattern: it needs none of them, and failing on them would only stop the release of what ADD
/// allocated.
fn del(env: &RawEnv, stdin: &[u8], control: &mut dyn Control) -> Result<String, CniError> {
    let who = env.detach()?;
    let conf = NetConf::parse_for_release(stdin)?;
    let request = ControlRequestBody::CniDel(CniDetach {
        container_id: who.container_id,
        ifname: who.ifname,
        netns: who.netns,
    });
    match call(control, &conf, request, CHANGE_TIMEOUT)? {
        ControlResponse::Detached => Ok(String::new()),
        other => Err(unexpected("DEL", &other)),
    }
}

/// CHECK needs `prevResult` (spec 1.1 §CHECK: the config "must include a prevResult field",
/// and the plugin "must consult the prevResult to determine the expected interfaces and
/// addresses"). Its address and MAC for our interface travel as the request's `requested_ip`
/// and `requested_mac`: the control process, which is authoritative, compares them with the
/// attachment it holds.
fn check(env: &RawEnv, stdin: &[u8], control: &mut dyn Control) -> Result<String, CniError> {
    let who = env.attach(false)?;
    let conf = NetConf::parse(stdin)?;
    if !conf.cni_version.has_check() {
        return Err(CniError::new(
            code::INCOMPATIBLE_VERSION,
            format!(
                "cniVersion {} has no CHECK (it arrived in 0.4.0)",
                conf.cni_version.as_str()
            ),
        ));
    }
    let args = env.cni_args()?;
    let prev = conf.prev_result.clone().ok_or_else(|| {
        CniError::new(
            code::INVALID_CONFIG,
            "CHECK needs prevResult, the result of the ADD being checked; the runtime passes \
             it with the network config",
        )
    })?;
    let expected = expected_from_prev(&parse_prev_result(prev)?, &who)?;
    let request = ControlRequestBody::CniCheck(CniAttach {
        container_id: who.container_id,
        ifname: who.ifname,
        netns: who.netns,
        pod_namespace: args.pod_namespace,
        pod_name: args.pod_name,
        pod_uid: args.pod_uid,
        requested_ip: Some(expected.ip),
        requested_mac: expected.mac.or(args.mac),
        mtu: conf.mtu,
        offloads: conf.offloads,
        attachment: conf.attachment,
    });
    match call(control, &conf, request, QUERY_TIMEOUT)? {
        ControlResponse::Checked => Ok(String::new()),
        other => Err(unexpected("CHECK", &other)),
    }
}

/// GC refuses a config without `cni.dev/valid-attachments` (or the legacy
/// `cni.dev/attachments`): read as "nothing is valid" it would release every pod of the node.
/// An empty list is honoured. Like DEL, it does not check the network name's pattern.
fn gc(stdin: &[u8], control: &mut dyn Control) -> Result<String, CniError> {
    let conf = NetConf::parse_for_release(stdin)?;
    require_1_1(&conf, "GC")?;
    let valid = conf.valid_attachments.clone().ok_or_else(|| {
        CniError::new(
            code::INVALID_CONFIG,
            format!(
                "GC of network {:?} needs cni.dev/valid-attachments (or cni.dev/attachments); \
                 without it podswitch releases nothing",
                conf.name
            ),
        )
    })?;
    match call(
        control,
        &conf,
        ControlRequestBody::CniGc { valid },
        CHANGE_TIMEOUT,
    )? {
        ControlResponse::Collected { .. } => Ok(String::new()),
        other => Err(unexpected("GC", &other)),
    }
}

/// STATUS succeeds only when the control process answers, its dataplane holds the current
/// state and the address pool has room for another pod (spec 1.1 §STATUS: "the plugin is
/// not available to add pods" — with the pool full, every ADD would fail); every other
/// outcome, including an unreachable socket, is code 50 (not available) with the reason in the
/// message.
fn status(stdin: &[u8], control: &mut dyn Control) -> Result<String, CniError> {
    let conf = NetConf::parse(stdin)?;
    require_1_1(&conf, "STATUS")?;
    let outcome = match call(control, &conf, ControlRequestBody::Status, QUERY_TIMEOUT) {
        Ok(ControlResponse::Status(s))
            if s.dataplane_in_sync
                && s.pool_capacity
                    .is_some_and(|cap| s.allocated_ips >= cap as usize) =>
        {
            CniError::new(
                code::NOT_AVAILABLE,
                format!(
                    "address pool {} of node {} is exhausted: all {} pod addresses are \
                     allocated; delete pods (CNI DEL/GC) or give the node a larger pod CIDR",
                    s.pod_cidr, s.node, s.allocated_ips
                ),
            )
        }
        Ok(ControlResponse::Status(s)) if s.dataplane_in_sync => return Ok(String::new()),
        Ok(ControlResponse::Status(s)) => CniError::new(
            code::NOT_AVAILABLE,
            format!(
                "podswitch-control runs but podswitchd does not hold its state (desired \
                 generation {}, dataplane {}); pods cannot be attached until they agree",
                s.generation,
                s.dataplane_generation
                    .map_or_else(|| "not answering".to_string(), |g| format!("at {g}"))
            ),
        ),
        Ok(other) => unexpected("STATUS", &other),
        Err(err) => err,
    };
    Err(CniError {
        code: code::NOT_AVAILABLE,
        ..outcome
    })
}

fn require_1_1(conf: &NetConf, command: &str) -> Result<(), CniError> {
    if conf.cni_version.has_gc_and_status() {
        Ok(())
    } else {
        Err(CniError::new(
            code::INCOMPATIBLE_VERSION,
            format!(
                "cniVersion {} has no {command} (it arrived in 1.1.0)",
                conf.cni_version.as_str()
            ),
        ))
    }
}

/// One round trip; a control `Error` becomes the CNI error with its code and message.
fn call(
    control: &mut dyn Control,
    conf: &NetConf,
    body: ControlRequestBody,
    timeout: Duration,
) -> Result<ControlResponse, CniError> {
    match control.round_trip(&conf.control_socket, body, timeout) {
        Ok(ControlResponse::Error { code, message }) => Err(CniError::new(code, message)),
        Ok(response) => Ok(response),
        Err(err) => Err(err.to_cni_error()),
    }
}

fn unexpected(asked: &str, got: &ControlResponse) -> CniError {
    let kind = serde_json::to_value(got)
        .ok()
        .and_then(|v| {
            v.get("response")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .unwrap_or_else(|| "something unknown".to_string());
    CniError::new(
        code::IO_FAILURE,
        format!(
            "podswitch-control answered {asked} with {kind:?}; are podswitch-cni and \
             podswitch-control the same release?"
        ),
    )
}

fn parse_prev_result(prev: Value) -> Result<CniResult, CniError> {
    serde_json::from_value(prev).map_err(|e| {
        CniError::new(code::INVALID_CONFIG, "prevResult is not a CNI result")
            .with_details(e.to_string())
    })
}

/// What a previous ADD left for this container, as its result says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Expected {
    ip: Ipv4Addr,
    mac: Option<MacAddr>,
}

/// Finds our interface (named `CNI_IFNAME`, in `CNI_NETNS` when it names a sandbox) and its
/// IPv4 address in `prev`. A prevResult without them is not the result of our ADD: code 7.
fn expected_from_prev(prev: &CniResult, who: &AttachEnv) -> Result<Expected, CniError> {
    let invalid = |msg: String| CniError::new(code::INVALID_CONFIG, msg);
    let (index, interface) = prev
        .interfaces
        .iter()
        .enumerate()
        .find(|(_, i)| i.name == who.ifname)
        .ok_or_else(|| invalid(format!("prevResult lists no interface {:?}", who.ifname)))?;
    if let Some(sandbox) = interface.sandbox.as_deref().filter(|s| !s.is_empty()) {
        if sandbox != who.netns {
            return Err(invalid(format!(
                "prevResult puts {} in sandbox {sandbox:?}, but CNI_NETNS is {:?}",
                who.ifname, who.netns
            )));
        }
    }
    let mac = match interface.mac.as_deref().filter(|m| !m.is_empty()) {
        Some(m) => Some(m.parse::<MacAddr>().map_err(|_| {
            invalid(format!(
                "prevResult gives {} the malformed MAC {m:?}",
                who.ifname
            ))
        })?),
        None => None,
    };
    let ip = prev
        .ips
        .iter()
        .filter(|ip| ip.interface == Some(index))
        .find_map(|ip| ip.address.split('/').next()?.parse::<Ipv4Addr>().ok())
        .ok_or_else(|| {
            invalid(format!(
                "prevResult assigns no IPv4 address to {}",
                who.ifname
            ))
        })?;
    Ok(Expected { ip, mac })
}

#[cfg(test)]
mod tests;
