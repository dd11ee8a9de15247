//! Transactions for `podswitchctl dp`: read from a JSON file, or built as one op from flags.

use crate::{AddPortArgs, AddRouteArgs, SetNodeArgs};
use anyhow::{anyhow, bail, Context, Result};
use podswitch_proto::{
    NodeSpec, Op, PortKind, PortRole, PortSpec, RouteSpec, RouteTarget, Transaction,
};
use std::path::Path;

/// The MTU a port gets when none is given: the protocol's own default.
pub use podswitch_proto::DEFAULT_MTU;

const EXPECTED: &str =
    r#"expected a JSON object {"generation": N, "ops": [...]} or a bare array of ops"#;

/// Reads a transaction from `file`, or from stdin when `file` is `-`.
pub fn read(file: &Path) -> Result<Transaction> {
    let input = crate::input::read(file, "transaction", std::io::stdin().lock())?;
    parse(&input.text).with_context(|| format!("{} is not a valid transaction", input.source))
}

/// Parses a transaction: an object with `ops` (and optionally `generation`), or a bare array of
/// ops applied without a generation.
pub fn parse(text: &str) -> Result<Transaction> {
    match text.trim_start().chars().next() {
        None => bail!("it is empty; {EXPECTED}"),
        Some('{') => Ok(serde_json::from_str::<Transaction>(text)?),
        Some('[') => Ok(Transaction {
            generation: None,
            replace: false,
            ops: serde_json::from_str(text)?,
        }),
        Some(_) => match serde_json::from_str::<serde_json::Value>(text) {
            Ok(v) => bail!("{EXPECTED}, found {}", json_kind(&v)),
            Err(e) => Err(anyhow!(e)),
        },
    }
}

fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// A transaction of exactly one op, without a generation.
pub fn single(op: Op) -> Transaction {
    Transaction {
        generation: None,
        replace: false,
        ops: vec![op],
    }
}

impl AddPortArgs {
    /// The `add_port` op these flags describe.
    pub fn to_op(&self) -> Result<Op> {
        let role = if self.pod {
            let need = |flag: &str| anyhow!("a --pod port needs {flag}");
            PortRole::Pod {
                mac: self.mac.ok_or_else(|| need("--mac"))?,
                ip: self.ip.ok_or_else(|| need("--ip"))?,
                namespace: self.namespace.clone(),
                pod: self.pod_name.clone(),
            }
        } else if self.host {
            PortRole::Host { mac: self.mac }
        } else if self.uplink {
            let need = |flag: &str| anyhow!("an --uplink port needs {flag}");
            PortRole::Uplink {
                mac: self.mac.ok_or_else(|| need("--mac"))?,
                ip: self.ip.ok_or_else(|| need("--ip"))?,
                encap: match self.vxlan {
                    Some(vni) => podswitch_proto::Encap::Vxlan { vni, port: 4789 },
                    None => podswitch_proto::Encap::Direct,
                },
                gateway: None,
            }
        } else {
            bail!("say what the port leads to: --pod, --host or --uplink");
        };
        Ok(Op::AddPort(PortSpec {
            name: self.name.clone(),
            kind: PortKind::Tap,
            role,
            mtu: self.mtu,
            offloads: !self.no_offloads,
            netns: None,
            queue_ids: Vec::new(),
        }))
    }
}

impl AddRouteArgs {
    /// The `add_route` op these flags describe.
    pub fn to_op(&self) -> Result<Op> {
        let gateway = self.gateway;
        let target = match (
            &self.port,
            self.host,
            self.unreachable,
            self.node,
            self.uplink,
        ) {
            (Some(port), false, false, None, false) => RouteTarget::Port { port: port.clone() },
            (None, true, false, None, false) => RouteTarget::Host,
            (None, false, true, None, false) => RouteTarget::Unreachable,
            (None, false, false, Some(ip), false) => RouteTarget::Node {
                ip,
                vtep_mac: None,
                gateway,
            },
            (None, false, false, None, true) => RouteTarget::Uplink { gateway },
            _ => bail!(
                "give exactly one route target: --port NAME, --host, --unreachable, --node IP \
                 or --uplink"
            ),
        };
        if gateway.is_some()
            && !matches!(
                target,
                RouteTarget::Node { .. } | RouteTarget::Uplink { .. }
            )
        {
            bail!("--gateway goes with --node or --uplink");
        }
        Ok(Op::AddRoute(RouteSpec {
            prefix: self.prefix,
            target,
        }))
    }
}

impl SetNodeArgs {
    /// The `set_node` op these flags describe.
    pub fn to_op(&self) -> Op {
        Op::SetNode(NodeSpec {
            pod_cidr: self.pod_cidr,
            gateway: self.gateway,
            gateway_mac: self.gateway_mac,
            service_cidr: None,
            node_port_ip: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Cli, Command, DpCommand};
    use clap::Parser;
    use serde_json::json;
    use std::net::Ipv4Addr;

    #[test]
    fn object_form_keeps_its_generation() {
        let tx = parse(
            r#"{"generation": 4, "ops": [
                 {"op": "set_node", "pod_cidr": "10.244.1.0/24", "gateway": "10.244.1.1"},
                 {"op": "del_port", "name": "tap1"}]}"#,
        )
        .unwrap();
        assert_eq!(tx.generation, Some(4));
        assert_eq!(tx.ops.len(), 2);
        assert!(matches!(&tx.ops[1], Op::DelPort { name } if name == "tap1"));
    }

    #[test]
    fn bare_array_is_a_transaction_without_generation() {
        let tx =
            parse(r#"  [{"op": "add_route", "prefix": "0.0.0.0/0", "target": {"via": "host"}}]"#)
                .unwrap();
        assert_eq!(tx.generation, None);
        assert!(matches!(
            &tx.ops[0],
            Op::AddRoute(RouteSpec {
                target: RouteTarget::Host,
                ..
            })
        ));
    }

    #[test]
    fn malformed_input_names_the_problem() {
        let cases = [
            ("", "it is empty"),
            ("\"ops\"", "found a string"),
            ("{\"ops\": [", "EOF while parsing"),
            ("{\"generation\": 1}", "missing field `ops`"),
            ("[{\"op\": \"add_prot\"}]", "unknown variant `add_prot`"),
            (
                r#"[{"op":"add_port","name":"p","role":{"role":"pod","mac":"zz","ip":"10.0.0.1"}}]"#,
                r#"MAC address "zz" is malformed"#,
            ),
            (
                r#"{"ops": [{"op": "del_route", "prefix": "10.0.0.0/33"}]}"#,
                "10.0.0.0/33",
            ),
        ];
        for (text, want) in cases {
            let err = format!("{:#}", parse(text).unwrap_err());
            assert!(err.contains(want), "{text:?}: {err:?} lacks {want:?}");
        }
    }

    #[test]
    fn unreadable_file_is_named() {
        let err = read(Path::new("/nonexistent/tx.json")).unwrap_err();
        assert_eq!(
            format!("{err:#}"),
            "cannot read the transaction file /nonexistent/tx.json: No such file or directory"
        );
    }

    fn dp_op(args: &[&str]) -> Result<Op> {
        let cli = Cli::try_parse_from([&["podswitchctl", "dp"], args].concat())?;
        match cli.command {
            Command::Dp(DpCommand::AddPort(a)) => a.to_op(),
            Command::Dp(DpCommand::AddRoute(a)) => a.to_op(),
            Command::Dp(DpCommand::SetNode(a)) => Ok(a.to_op()),
            other => panic!("{other:?}"),
        }
    }

    fn op_json(args: &[&str]) -> serde_json::Value {
        serde_json::to_value(dp_op(args).unwrap()).unwrap()
    }

    #[test]
    fn add_port_flags_build_a_pod_port() {
        assert_eq!(
            op_json(&[
                "add-port",
                "tap-web",
                "--pod",
                "--mac",
                "02:00:00:00:00:02",
                "--ip",
                "10.244.1.2",
                "--namespace",
                "default",
                "--pod-name",
                "web-0",
                "--mtu",
                "9000",
            ]),
            json!({"op": "add_port", "name": "tap-web", "kind": "tap", "mtu": 9000,
                   "offloads": true,
                   "role": {"role": "pod", "mac": "02:00:00:00:00:02", "ip": "10.244.1.2",
                            "namespace": "default", "pod": "web-0"}})
        );
    }

    #[test]
    fn no_offloads_builds_a_port_without_them() {
        let op = op_json(&["add-port", "psw0", "--host", "--no-offloads"]);
        assert_eq!(op["offloads"], json!(false));
    }

    #[test]
    fn add_port_flags_build_a_host_port() {
        assert_eq!(
            op_json(&["add-port", "psw0", "--host"]),
            json!({"op": "add_port", "name": "psw0", "kind": "tap", "mtu": 1500,
                   "offloads": true, "role": {"role": "host"}})
        );
        let Op::AddPort(p) =
            dp_op(&["add-port", "psw0", "--host", "--mac", "02:aa:00:00:00:09"]).unwrap()
        else {
            panic!()
        };
        assert_eq!(
            p.role,
            PortRole::Host {
                mac: Some("02:aa:00:00:00:09".parse().unwrap())
            }
        );
    }

    #[test]
    fn add_port_flags_build_an_uplink() {
        let args = ["add-port", "eth1", "--uplink", "--mac", "0a:58:c0:a8:01:01"];
        let with_ip = [&args[..], &["--ip", "192.168.1.1"]].concat();
        assert_eq!(
            op_json(&with_ip)["role"],
            json!({"role": "uplink", "mac": "0a:58:c0:a8:01:01", "ip": "192.168.1.1",
                   "encap": {"mode": "direct"}})
        );
        assert_eq!(
            op_json(&[&with_ip[..], &["--vxlan", "42"]].concat())["role"]["encap"],
            json!({"mode": "vxlan", "vni": 42, "port": 4789})
        );
        assert!(dp_op(&args).is_err(), "an uplink needs its address");
        assert!(dp_op(&[&with_ip[..], &["--host"]].concat()).is_err());
        assert!(dp_op(&["add-port", "p", "--host", "--vxlan", "1"]).is_err());
    }

    #[test]
    fn add_port_flags_that_do_not_fit_are_refused() {
        for bad in [
            &["add-port", "p"][..],
            &["add-port", "p", "--pod", "--host"],
            &["add-port", "p", "--pod", "--ip", "10.0.0.2"],
            &["add-port", "p", "--pod", "--mac", "02:00:00:00:00:02"],
            &["add-port", "p", "--host", "--ip", "10.0.0.2"],
            &["add-port", "p", "--pod", "--mac", "zz", "--ip", "10.0.0.2"],
        ] {
            assert!(dp_op(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn add_route_flags_pick_exactly_one_target() {
        assert_eq!(
            op_json(&["add-route", "10.244.2.0/24", "--port", "uplink"]),
            json!({"op": "add_route", "prefix": "10.244.2.0/24",
                   "target": {"via": "port", "port": "uplink"}})
        );
        assert_eq!(
            op_json(&["add-route", "0.0.0.0/0", "--host"])["target"],
            json!({"via": "host"})
        );
        assert_eq!(
            op_json(&["add-route", "10.9.0.0/16", "--unreachable"])["target"],
            json!({"via": "unreachable"})
        );
        assert_eq!(
            op_json(&["add-route", "10.244.2.0/24", "--node", "192.168.1.2"])["target"],
            json!({"via": "node", "ip": "192.168.1.2"})
        );
        assert!(dp_op(&["add-route", "10.9.0.0/16", "--node", "1.2.3.4", "--host"]).is_err());
        assert!(dp_op(&["add-route", "10.9.0.0/16"]).is_err());
        assert!(dp_op(&["add-route", "10.9.0.0/16", "--host", "--unreachable"]).is_err());
        assert!(dp_op(&["add-route", "10.9.0.0", "--host"]).is_err());
    }

    #[test]
    fn set_node_flags_build_the_node_spec() {
        assert_eq!(
            op_json(&[
                "set-node",
                "--pod-cidr",
                "10.244.1.0/24",
                "--gateway",
                "10.244.1.1"
            ]),
            json!({"op": "set_node", "pod_cidr": "10.244.1.0/24", "gateway": "10.244.1.1"})
        );
        let Op::SetNode(n) = dp_op(&[
            "set-node",
            "--pod-cidr",
            "10.244.1.0/24",
            "--gateway",
            "10.244.1.1",
            "--gateway-mac",
            "02:aa:00:00:00:01",
        ])
        .unwrap() else {
            panic!()
        };
        assert_eq!(n.gateway, Ipv4Addr::new(10, 244, 1, 1));
        assert_eq!(n.gateway_mac, Some("02:aa:00:00:00:01".parse().unwrap()));
    }
}
