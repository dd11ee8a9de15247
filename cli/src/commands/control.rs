//! The verbs podswitch-control answers: `get`, `apply -f`, `delete -f`, `control-status`.
//!
//! Same rules as podswitchd's verbs: an error response becomes the CLI's error with the
//! control's message unchanged (it names the object and field), and a response of the wrong
//! kind says the two sides disagree about the protocol.

use super::show;
use crate::render;
use crate::{client, GetCommand, Output};
use anyhow::{anyhow, bail, Result};
use podswitch_proto::control::{ControlRequestBody, ControlResponse};
use serde::Serialize;
use std::path::Path;

/// `get pods|services|policies`.
pub fn get(socket: &Path, out: Output, what: &GetCommand) -> Result<String> {
    match what {
        GetCommand::Pods => {
            let pods = call(socket, ControlRequestBody::Pods, |r| match r {
                ControlResponse::Pods { pods } => Ok(pods),
                other => Err(other),
            })?;
            show(out, &pods, |p| render::control::pods(p))
        }
        // Answered before connecting: the control protocol lists no compiled objects; what
        // the switch enforces is podswitchd's to show.
        GetCommand::Services => elsewhere("services", "services"),
        GetCommand::Policies => elsewhere("policies", "policies"),
    }
}

fn elsewhere(what: &str, verb: &str) -> Result<String> {
    bail!(
        "get {what}: podswitch-control does not list these; `podswitchctl {verb}` shows what \
         podswitchd enforces"
    )
}

/// `apply -f` and `delete -f`: `body` is the manifests' request; prints the control's summary,
/// one line per object.
pub fn change(socket: &Path, out: Output, body: ControlRequestBody) -> Result<String> {
    #[derive(Serialize)]
    struct Summary {
        summary: Vec<String>,
    }
    let summary = call(socket, body, |r| match r {
        ControlResponse::Applied { summary } => Ok(summary),
        other => Err(other),
    })?;
    show(out, &Summary { summary }, |s| {
        s.summary.iter().map(|line| format!("{line}\n")).collect()
    })
}

/// `control-status`.
pub fn status(socket: &Path, out: Output) -> Result<String> {
    let status = call(socket, ControlRequestBody::Status, |r| match r {
        ControlResponse::Status(s) => Ok(s),
        other => Err(other),
    })?;
    show(out, &status, render::control::status)
}

/// Sends `body` to podswitch-control and hands the response to `pick`, which returns the
/// payload of the expected kind or gives the response back.
fn call<T>(
    socket: &Path,
    body: ControlRequestBody,
    pick: impl FnOnce(ControlResponse) -> Result<T, ControlResponse>,
) -> Result<T> {
    let asked = request_name(&body);
    match pick(client::control_request(socket, body)?) {
        Ok(payload) => Ok(payload),
        Err(ControlResponse::Error { message, .. }) => Err(anyhow!(message)),
        Err(other) => Err(anyhow!(
            "podswitch-control answered the {asked} request with the wrong kind of response \
             ({}); are podswitchctl and podswitch-control from the same release?",
            response_name(&other)
        )),
    }
}

fn request_name(body: &ControlRequestBody) -> &'static str {
    match body {
        ControlRequestBody::CniAdd(_) => "cni_add",
        ControlRequestBody::CniDel(_) => "cni_del",
        ControlRequestBody::CniCheck(_) => "cni_check",
        ControlRequestBody::CniGc { .. } => "cni_gc",
        ControlRequestBody::Status => "status",
        ControlRequestBody::Pods => "pods",
        ControlRequestBody::Apply { .. } => "apply",
        ControlRequestBody::Delete { .. } => "delete",
    }
}

fn response_name(r: &ControlResponse) -> &'static str {
    match r {
        ControlResponse::Attached(_) => "attached",
        ControlResponse::Detached => "detached",
        ControlResponse::Checked => "checked",
        ControlResponse::Collected { .. } => "collected",
        ControlResponse::Status(_) => "status",
        ControlResponse::Pods { .. } => "pods",
        ControlResponse::Applied { .. } => "applied",
        ControlResponse::Error { .. } => "error",
    }
}
