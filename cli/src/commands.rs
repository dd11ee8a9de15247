//! What each verb asks podswitchd, and how the answer is shown; `control` does the same for
//! the verbs podswitch-control answers, and `install_cni` is the one verb that asks no daemon.
//!
//! Every verb is one request and one response. A [`Response::Error`] becomes this CLI's error
//! with the daemon's message unchanged (main prints it as `podswitchctl: <message>` and exits
//! 1); any other response than the one asked for means the two sides disagree about the
//! protocol, and says so.

mod control;

use crate::manifests::{self, Verb};
use crate::{client, install_cni, render, transaction, Cli, Command, DpCommand, Output};
use anyhow::{anyhow, Result};
use podswitch_proto::{Op, RequestBody, Response, Transaction};
use serde::Serialize;
use std::path::Path;

/// Runs the command `cli` describes and returns what to print on stdout.
pub fn execute(cli: &Cli) -> Result<String> {
    let socket = cli.socket.as_path();
    let control_socket = cli.control_socket.as_path();
    let out = cli.output;
    match &cli.command {
        Command::Status => {
            let status = call(socket, RequestBody::Status, |r| match r {
                Response::Status(s) => Ok(s),
                other => Err(other),
            })?;
            show(out, &status, render::status)
        }
        Command::Ports => {
            let ports = call(socket, RequestBody::Ports, |r| match r {
                Response::Ports { ports } => Ok(ports),
                other => Err(other),
            })?;
            show(out, &ports, |p| render::ports(p))
        }
        Command::Routes => {
            let routes = call(socket, RequestBody::Routes, |r| match r {
                Response::Routes { routes } => Ok(routes),
                other => Err(other),
            })?;
            show(out, &routes, |r| render::routes(r))
        }
        Command::Neighbors => {
            let neighbors = call(socket, RequestBody::Neighbors, |r| match r {
                Response::Neighbors { neighbors } => Ok(neighbors),
                other => Err(other),
            })?;
            show(out, &neighbors, |n| render::neighbors(n))
        }
        Command::Counters { all } => {
            let dump = call(socket, RequestBody::Counters, |r| match r {
                Response::Counters(c) => Ok(c),
                other => Err(other),
            })?;
            show(out, &dump, |c| render::counters(c, *all))
        }
        Command::Services => {
            let services = call(socket, RequestBody::Services, |r| match r {
                Response::Services { services } => Ok(services),
                other => Err(other),
            })?;
            show(out, &services, |s| render::flows::services(s))
        }
        Command::Policies => {
            let policies = call(socket, RequestBody::Policies, |r| match r {
                Response::Policies { policies } => Ok(policies),
                other => Err(other),
            })?;
            show(out, &policies, |p| render::policies::policies(p))
        }
        Command::Conntrack(a) => {
            let filter = podswitch_proto::ConntrackFilter {
                ip: a.ip,
                port: a.port,
                protocol: a.protocol.as_deref().map(|p| match p {
                    "tcp" => 6,
                    "udp" => 17,
                    _ => 1,
                }),
                service: a.service.clone(),
                limit: Some(a.limit),
            };
            let dump = call(socket, RequestBody::Conntrack(filter), |r| match r {
                Response::Conntrack(d) => Ok(d),
                other => Err(other),
            })?;
            show(out, &dump, render::flows::conntrack)
        }
        Command::Trace(a) => {
            let packet = podswitch_proto::TracePacket {
                in_port: a.in_port.clone(),
                src: a.src,
                dst: a.dst,
                protocol: a.protocol.clone(),
                src_port: Some(a.src_port),
                dst_port: Some(a.dst_port),
            };
            let result = call(socket, RequestBody::Trace(packet), |r| match r {
                Response::Trace(t) => Ok(t),
                other => Err(other),
            })?;
            show(out, &result, render::flows::trace)
        }
        Command::Dp(dp) => {
            let tx = match dp {
                DpCommand::Apply { file } => transaction::read(file)?,
                DpCommand::AddPort(a) => transaction::single(a.to_op()?),
                DpCommand::DelPort { name } => {
                    transaction::single(Op::DelPort { name: name.clone() })
                }
                DpCommand::AddRoute(a) => transaction::single(a.to_op()?),
                DpCommand::DelRoute { prefix } => {
                    transaction::single(Op::DelRoute { prefix: *prefix })
                }
                DpCommand::SetNode(a) => transaction::single(a.to_op()),
            };
            apply(socket, out, tx)
        }
        Command::Get(what) => control::get(control_socket, out, what),
        Command::Apply(a) => {
            let body = manifests::request(Verb::Apply, &a.file, std::io::stdin().lock())?;
            control::change(control_socket, out, body)
        }
        Command::Delete(a) => {
            let body = manifests::request(Verb::Delete, &a.file, std::io::stdin().lock())?;
            control::change(control_socket, out, body)
        }
        Command::ControlStatus => control::status(control_socket, out),
        Command::InstallCni(args) => {
            let installed = install_cni::run(args, control_socket)?;
            show(out, &installed, install_cni::render)
        }
    }
}

fn apply(socket: &Path, out: Output, tx: Transaction) -> Result<String> {
    #[derive(Serialize)]
    struct Applied {
        generation: u64,
    }
    let generation = call(socket, RequestBody::Apply(tx), |r| match r {
        Response::Applied { generation } => Ok(generation),
        other => Err(other),
    })?;
    show(out, &Applied { generation }, |a| {
        format!("applied: generation {}\n", a.generation)
    })
}

/// Sends `body` and hands the response to `pick`, which returns the payload of the expected
/// kind or gives the response back.
fn call<T>(
    socket: &Path,
    body: RequestBody,
    pick: impl FnOnce(Response) -> Result<T, Response>,
) -> Result<T> {
    let asked = body.name();
    match pick(client::request(socket, body)?) {
        Ok(payload) => Ok(payload),
        Err(Response::Error { message }) => Err(anyhow!(message)),
        Err(other) => Err(anyhow!(
            "podswitchd answered the {asked} request with the wrong kind of response ({}); \
             are podswitchctl and podswitchd from the same release?",
            other.name()
        )),
    }
}

fn show<T: Serialize + ?Sized>(
    out: Output,
    payload: &T,
    table: impl Fn(&T) -> String,
) -> Result<String> {
    Ok(match out {
        Output::Table => table(payload),
        Output::Json => serde_json::to_string_pretty(payload)? + "\n",
    })
}
