//! The network config the runtime streams on stdin (spec 1.1 §"Plugin configuration objects",
//! with the runtime's additions: `runtimeConfig`, `prevResult`, `cni.dev/valid-attachments`).
//! Fields podswitch does not use (`ipam`, `dns`, `capabilities`, ...) are ignored, as the spec
//! allows plugin-specific keys.

use crate::result::{code, CniError};
use crate::version::CniVersion;
use podswitch_proto::control::{AttachmentId, PodAttachment, DEFAULT_CONTROL_SOCKET};
use podswitch_proto::MTU_RANGE;
use serde::Deserialize;
use serde_json::Value;
use std::path::PathBuf;

/// A validated network config.
#[derive(Debug, Clone, PartialEq)]
pub struct NetConf {
    /// The version every answer is written in.
    pub cni_version: CniVersion,
    /// The network's name.
    pub name: String,
    /// `type`: the executable name the runtime ran; any value is accepted, since the runtime
    /// already picked this binary by it (it is `podswitch` or `podswitch-cni` depending on how
    /// the binary was installed).
    pub plugin_type: Option<String>,
    /// Where podswitch-control listens.
    pub control_socket: PathBuf,
    /// MTU for the pod's interface, if the config sets one.
    pub mtu: Option<u16>,
    /// `offloads`: whether the pod's switch port exchanges offloaded frames with the pod
    /// (64 KB TSO/USO super-frames and partial checksums cross the switch unsegmented;
    /// `PortSpec::offloads`). `None` when the config does not say: control's default, on.
    /// `"offloads": false` gives pods plain, whole, checksummed frames of at most the MTU,
    /// the switch segmenting in software what it forwards to them: for a pod whose stack or
    /// capture tooling must not see super-frames, at a cost in throughput. A JSON boolean or
    /// nothing; anything else is an invalid config (code 7).
    pub offloads: Option<bool>,
    /// `attachment`: how the pod is wired to the switch, `"tap"` (the default) or
    /// `"veth-afxdp"` (a veth pair whose node end is an AF_XDP port of the switch). `None`
    /// when the config does not say. Anything else is an invalid config (code 7).
    pub attachment: Option<PodAttachment>,
    /// `runtimeConfig.portMappings`: parsed and validated, not acted on yet — hostPort support
    /// arrives with Services, which own the NAT tables it needs.
    pub port_mappings: Vec<PortMapping>,
    /// `prevResult`: the result of the previous ADD (CHECK, DEL, chained ADD), raw.
    pub prev_result: Option<Value>,
    /// `args`: accepted and ignored (conventions' `args.cni`; nothing podswitch uses).
    pub args: Option<Value>,
    /// `cni.dev/valid-attachments` (GC).
    pub valid_attachments: Option<Vec<AttachmentId>>,
}

/// One `runtimeConfig.portMappings` entry. containerd writes `hostPort`, some runtimes (and
/// CNI's own Go types before tags) `HostPort`; both spellings of every key are accepted.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct PortMapping {
    /// Port on the node.
    #[serde(rename = "hostPort", alias = "HostPort")]
    pub host_port: u16,
    /// Port in the pod.
    #[serde(rename = "containerPort", alias = "ContainerPort")]
    pub container_port: u16,
    /// `tcp`, `udp` or `sctp`.
    #[serde(default, alias = "Protocol")]
    pub protocol: Option<String>,
    /// Node address to bind, when not all.
    #[serde(default, rename = "hostIP", alias = "HostIP")]
    pub host_ip: Option<String>,
}

#[derive(Deserialize)]
struct RawConf {
    name: Option<String>,
    #[serde(rename = "type")]
    plugin_type: Option<String>,
    #[serde(rename = "controlSocket")]
    control_socket: Option<String>,
    mtu: Option<u64>,
    /// Any JSON, checked by [`validate_offloads`] (serde's own error for a wrong type names
    /// neither the key nor what to write).
    offloads: Option<Value>,
    /// Any JSON, checked by [`validate_attachment`].
    attachment: Option<Value>,
    #[serde(rename = "runtimeConfig")]
    runtime_config: Option<RuntimeConfig>,
    #[serde(rename = "prevResult")]
    prev_result: Option<Value>,
    args: Option<Value>,
    #[serde(rename = "cni.dev/valid-attachments")]
    valid_attachments: Option<Vec<ValidAttachment>>,
    /// The key the GC section of spec 1.1.0 printed by mistake; libcni sends it beside the
    /// right one (containernetworking/cni#1101), and older runtimes may send only it.
    #[serde(rename = "cni.dev/attachments")]
    legacy_attachments: Option<Vec<ValidAttachment>>,
}

#[derive(Deserialize)]
struct RuntimeConfig {
    #[serde(rename = "portMappings")]
    port_mappings: Option<Vec<PortMapping>>,
}

#[derive(Deserialize)]
struct ValidAttachment {
    #[serde(rename = "containerID")]
    container_id: String,
    ifname: String,
}

impl NetConf {
    /// Parses stdin. Not JSON: code 6. No or an unsupported `cniVersion`: code 1 (a config
    /// without one is 0.1.0 by the spec's rule). JSON of the wrong shape, no `name`, or an
    /// impossible MTU: code 7. A network name the spec's pattern refuses: code 7 too.
    pub fn parse(stdin: &[u8]) -> Result<NetConf, CniError> {
        Self::parse_checking(stdin, NameCheck::Pattern)
    }

    /// As [`NetConf::parse`], for the verbs that only release (DEL, GC): any non-empty network
    /// name is accepted. Earlier plugins did not check the name, and a config they accepted
    /// must not make the DEL of what they added fail after an upgrade (the pod's address would
    /// never be released); ADD, CHECK and STATUS still refuse it, which says what to fix.
    pub fn parse_for_release(stdin: &[u8]) -> Result<NetConf, CniError> {
        Self::parse_checking(stdin, NameCheck::NonEmpty)
    }

    fn parse_checking(stdin: &[u8], name_check: NameCheck) -> Result<NetConf, CniError> {
        if stdin.iter().all(u8::is_ascii_whitespace) {
            return Err(CniError::new(
                code::DECODE_FAILURE,
                "stdin is empty: the runtime must stream the network config on stdin",
            ));
        }
        let value: Value = serde_json::from_slice(stdin).map_err(|e| {
            CniError::new(
                code::DECODE_FAILURE,
                "the network config on stdin is not valid JSON",
            )
            .with_details(e.to_string())
        })?;
        let Value::Object(object) = &value else {
            return Err(CniError::new(
                code::DECODE_FAILURE,
                "the network config on stdin is not a JSON object",
            ));
        };
        let cni_version = match object.get("cniVersion") {
            None => {
                return Err(CniError::new(
                    code::INCOMPATIBLE_VERSION,
                    format!(
                        "the network config has no cniVersion, which means 0.1.0; \
                         podswitch-cni supports {}",
                        CniVersion::supported_list()
                    ),
                ))
            }
            Some(Value::String(v)) => CniVersion::parse(v).ok_or_else(|| {
                CniError::new(
                    code::INCOMPATIBLE_VERSION,
                    format!(
                        "cniVersion {v:?} is not supported; podswitch-cni supports {}",
                        CniVersion::supported_list()
                    ),
                )
            })?,
            Some(other) => {
                return Err(CniError::new(
                    code::INVALID_CONFIG,
                    format!("cniVersion must be a string such as \"1.0.0\", not {other}"),
                ))
            }
        };
        let raw: RawConf = serde_json::from_value(value).map_err(|e| {
            CniError::new(code::INVALID_CONFIG, "the network config is invalid")
                .with_details(e.to_string())
        })?;
        let name = raw
            .name
            .filter(|n| !n.is_empty())
            .ok_or_else(|| CniError::new(code::INVALID_CONFIG, "the network config has no name"))?;
        if name_check == NameCheck::Pattern {
            validate_name(&name)?;
        }
        let mtu = raw.mtu.map(validate_mtu).transpose()?;
        let offloads = raw.offloads.map(validate_offloads).transpose()?;
        let attachment = raw.attachment.map(validate_attachment).transpose()?;
        let valid_attachments = merge_attachments(raw.valid_attachments, raw.legacy_attachments);
        Ok(NetConf {
            cni_version,
            name,
            plugin_type: raw.plugin_type,
            control_socket: PathBuf::from(
                raw.control_socket
                    .unwrap_or_else(|| DEFAULT_CONTROL_SOCKET.to_string()),
            ),
            mtu,
            offloads,
            attachment,
            port_mappings: raw
                .runtime_config
                .and_then(|rc| rc.port_mappings)
                .unwrap_or_default(),
            prev_result: raw.prev_result,
            args: raw.args,
            valid_attachments,
        })
    }
}

/// How much of the network name [`NetConf`] checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NameCheck {
    /// The spec's pattern ([`validate_name`]).
    Pattern,
    /// Only that there is one.
    NonEmpty,
}

/// Spec 1.1 §"Configuration format": a network name "must start with an alphanumeric
/// character, optionally followed by any combination of one or more alphanumeric characters,
/// underscore, dot (.) or hyphen (-)" — libcni's `^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$`. (It should
/// also be unique across the host's configs; only the runtime, which reads them all, can check
/// that.)
fn validate_name(name: &str) -> Result<(), CniError> {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if first_ok && rest_ok {
        Ok(())
    } else {
        Err(CniError::new(
            code::INVALID_CONFIG,
            format!(
                "network name {name:?} is invalid: it must start with a letter or digit, \
                 followed by letters, digits, '_', '.' or '-'"
            ),
        ))
    }
}

/// GC's valid attachments from either key; with both (libcni sends both), every attachment
/// either lists stays: a union can only release less.
fn merge_attachments(
    valid: Option<Vec<ValidAttachment>>,
    legacy: Option<Vec<ValidAttachment>>,
) -> Option<Vec<AttachmentId>> {
    if valid.is_none() && legacy.is_none() {
        return None;
    }
    let mut ids: Vec<AttachmentId> = valid
        .into_iter()
        .chain(legacy)
        .flatten()
        .map(|a| AttachmentId {
            container_id: a.container_id,
            ifname: a.ifname,
        })
        .collect();
    ids.sort();
    ids.dedup();
    Some(ids)
}

/// The same range control and the dataplane enforce, so a bad `mtu` fails here, as a config
/// error, before anything is allocated.
fn validate_mtu(mtu: u64) -> Result<u16, CniError> {
    u16::try_from(mtu)
        .ok()
        .filter(|m| MTU_RANGE.contains(m))
        .ok_or_else(|| {
            CniError::new(
                code::INVALID_CONFIG,
                format!(
                    "mtu {mtu} is out of range: podswitch ports take {} to {}",
                    MTU_RANGE.start(),
                    MTU_RANGE.end()
                ),
            )
        })
}

/// `offloads` must be a JSON boolean: a string such as `"false"` is refused rather than read
/// as true (it is not empty) or false (it says so), either of which would be a guess.
fn validate_offloads(offloads: Value) -> Result<bool, CniError> {
    match offloads {
        Value::Bool(b) => Ok(b),
        other => Err(CniError::new(
            code::INVALID_CONFIG,
            format!(
                "offloads must be true or false (a JSON boolean, unquoted), not {other}; \
                 leave it out for the default, on"
            ),
        )),
    }
}

/// `attachment` must be one of [`PodAttachment::NAMES`], as a JSON string.
fn validate_attachment(attachment: Value) -> Result<PodAttachment, CniError> {
    let known = [PodAttachment::Tap, PodAttachment::VethAfxdp];
    match &attachment {
        Value::String(s) => known.into_iter().find(|a| a.name() == s),
        _ => None,
    }
    .ok_or_else(|| {
        CniError::new(
            code::INVALID_CONFIG,
            format!(
                "attachment must be one of \"{}\", not {attachment}; leave it out for the \
                 default, \"tap\"",
                PodAttachment::NAMES.join("\", \"")
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value) -> Result<NetConf, CniError> {
        NetConf::parse(v.to_string().as_bytes())
    }

    #[test]
    fn spec_example_plugin_config_parses_ignoring_foreign_keys() {
        // The shape of the spec's example (1.1 §"Example configuration"), as one plugin's
        // config: plugin-specific keys and the ipam/dns sections are podswitch's to ignore.
        let conf = parse(json!({
            "cniVersion": "1.1.0",
            "name": "dbnet",
            "type": "podswitch",
            "bridge": "cni0",
            "keyA": ["some more", "plugin specific", "configuration"],
            "ipam": {"type": "host-local", "subnet": "10.1.0.0/16", "gateway": "10.1.0.1",
                     "routes": [{"dst": "0.0.0.0/0"}]},
            "dns": {"nameservers": ["10.1.0.1"]},
            "capabilities": {"portMappings": true}
        }))
        .unwrap();
        assert_eq!(conf.cni_version, CniVersion::V1_1_0);
        assert_eq!(conf.name, "dbnet");
        assert_eq!(conf.plugin_type.as_deref(), Some("podswitch"));
        assert_eq!(conf.control_socket, PathBuf::from(DEFAULT_CONTROL_SOCKET));
        assert_eq!(conf.mtu, None);
        assert_eq!(conf.offloads, None);
        assert!(conf.port_mappings.is_empty() && conf.prev_result.is_none());
    }

    #[test]
    fn control_socket_mtu_and_args_are_read() {
        let conf = parse(json!({
            "cniVersion": "0.4.0", "name": "podswitch", "type": "podswitch",
            "controlSocket": "/tmp/c.sock", "mtu": 1450,
            "args": {"cni": {"labels": [{"key": "app", "value": "web"}]}}
        }))
        .unwrap();
        assert_eq!(conf.cni_version, CniVersion::V0_4_0);
        assert_eq!(conf.control_socket, PathBuf::from("/tmp/c.sock"));
        assert_eq!(conf.mtu, Some(1450));
        assert!(conf.args.is_some());
    }

    #[test]
    fn attachment_is_tap_or_veth_afxdp_or_absent() {
        for (v, want) in [
            (json!("tap"), Some(PodAttachment::Tap)),
            (json!("veth-afxdp"), Some(PodAttachment::VethAfxdp)),
            (json!(null), None),
        ] {
            let conf = parse(json!({"cniVersion": "1.0.0", "name": "n", "attachment": v})).unwrap();
            assert_eq!(conf.attachment, want, "{v}");
        }
        let conf = parse(json!({"cniVersion": "1.0.0", "name": "n"})).unwrap();
        assert_eq!(conf.attachment, None);
        for bad in [json!("veth"), json!("AF_XDP"), json!(true), json!(1)] {
            let err =
                parse(json!({"cniVersion": "1.0.0", "name": "n", "attachment": bad})).unwrap_err();
            assert_eq!(err.code, code::INVALID_CONFIG, "{bad}");
            assert!(
                err.msg
                    .contains(r#"attachment must be one of "tap", "veth-afxdp""#),
                "{}",
                err.msg
            );
        }
    }

    #[test]
    fn offloads_is_a_boolean_or_absent() {
        for (v, want) in [(json!(false), Some(false)), (json!(true), Some(true))] {
            let conf = parse(json!({"cniVersion": "1.0.0", "name": "n", "offloads": v})).unwrap();
            assert_eq!(conf.offloads, want, "{v}");
        }
        // Absent, or null (JSON's absent): control's default.
        for conf in [
            json!({"cniVersion": "1.0.0", "name": "n"}),
            json!({"cniVersion": "1.0.0", "name": "n", "offloads": null}),
        ] {
            assert_eq!(parse(conf.clone()).unwrap().offloads, None, "{conf}");
        }
        for bad in [json!("false"), json!(0), json!({"tso": false})] {
            let err =
                parse(json!({"cniVersion": "1.0.0", "name": "n", "offloads": bad})).unwrap_err();
            assert_eq!(err.code, code::INVALID_CONFIG, "{bad}");
            assert!(
                err.msg.contains("offloads must be true or false"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn port_mappings_accept_both_key_spellings() {
        let conf = parse(json!({
            "cniVersion": "1.0.0", "name": "n", "type": "podswitch",
            "runtimeConfig": {
                "portMappings": [
                    {"hostPort": 8080, "containerPort": 80, "protocol": "tcp"},
                    {"HostPort": 5353, "ContainerPort": 53, "Protocol": "udp", "HostIP": "192.0.2.1"}
                ],
                "bandwidth": {"ingressRate": 1000}
            }
        }))
        .unwrap();
        assert_eq!(
            conf.port_mappings,
            vec![
                PortMapping {
                    host_port: 8080,
                    container_port: 80,
                    protocol: Some("tcp".into()),
                    host_ip: None
                },
                PortMapping {
                    host_port: 5353,
                    container_port: 53,
                    protocol: Some("udp".into()),
                    host_ip: Some("192.0.2.1".into())
                },
            ]
        );
    }

    #[test]
    fn null_port_mappings_are_none_and_bad_ports_are_code_7() {
        let conf = parse(json!({"cniVersion": "1.0.0", "name": "n",
                                "runtimeConfig": {"portMappings": null}}))
        .unwrap();
        assert!(conf.port_mappings.is_empty());
        let err = parse(json!({"cniVersion": "1.0.0", "name": "n",
            "runtimeConfig": {"portMappings": [{"hostPort": 70000, "containerPort": 80}]}}))
        .unwrap_err();
        assert_eq!(err.code, code::INVALID_CONFIG);
    }

    #[test]
    fn valid_attachments_become_attachment_ids() {
        let conf = parse(json!({"cniVersion": "1.1.0", "name": "n",
            "cni.dev/valid-attachments": [{"containerID": "c1", "ifname": "eth0"}]}))
        .unwrap();
        assert_eq!(
            conf.valid_attachments,
            Some(vec![AttachmentId {
                container_id: "c1".into(),
                ifname: "eth0".into()
            }])
        );
        let err = parse(json!({"cniVersion": "1.1.0", "name": "n",
            "cni.dev/valid-attachments": [{"containerID": "c1"}]}))
        .unwrap_err();
        assert_eq!(
            err.code,
            code::INVALID_CONFIG,
            "an entry without ifname is refused"
        );
    }

    #[test]
    fn gc_reads_the_legacy_attachments_key_libcni_also_sends() {
        let legacy = parse(json!({"cniVersion": "1.1.0", "name": "n",
            "cni.dev/attachments": [{"containerID": "c1", "ifname": "eth0"}]}))
        .unwrap();
        let c1 = AttachmentId {
            container_id: "c1".into(),
            ifname: "eth0".into(),
        };
        assert_eq!(legacy.valid_attachments, Some(vec![c1.clone()]));
        // Both keys, as libcni sends them: the same list once, or the union if they differ.
        let both = parse(json!({"cniVersion": "1.1.0", "name": "n",
            "cni.dev/valid-attachments": [{"containerID": "c1", "ifname": "eth0"}],
            "cni.dev/attachments": [{"containerID": "c1", "ifname": "eth0"},
                                    {"containerID": "c2", "ifname": "eth0"}]}))
        .unwrap();
        let c2 = AttachmentId {
            container_id: "c2".into(),
            ifname: "eth0".into(),
        };
        assert_eq!(both.valid_attachments, Some(vec![c1, c2]));
        let neither = parse(json!({"cniVersion": "1.1.0", "name": "n"})).unwrap();
        assert_eq!(neither.valid_attachments, None);
    }

    #[test]
    fn network_names_follow_the_spec_pattern() {
        for good in ["podswitch", "k8s-pod-network", "a", "0net", "my_net.v1-2"] {
            let conf = parse(json!({"cniVersion": "1.0.0", "name": good})).unwrap();
            assert_eq!(conf.name, good);
        }
        for bad in [
            "-net", "_net", ".net", "my net", "net/1", "nét", "net:1", "net\n",
        ] {
            let err = parse(json!({"cniVersion": "1.0.0", "name": bad})).unwrap_err();
            assert_eq!(err.code, code::INVALID_CONFIG, "{bad:?}");
            assert!(err.msg.contains("network name"), "{err}");
        }
    }

    #[test]
    fn a_network_name_outside_the_pattern_is_accepted_when_only_releasing() {
        // A name an earlier plugin accepted: DEL and GC must still release what it added.
        let conf = json!({"cniVersion": "1.1.0", "name": "my net"}).to_string();
        let parsed = NetConf::parse_for_release(conf.as_bytes()).unwrap();
        assert_eq!(parsed.name, "my net");
        // A missing or empty name is still refused.
        for conf in [
            json!({"cniVersion": "1.1.0"}),
            json!({"cniVersion": "1.1.0", "name": ""}),
        ] {
            let err = NetConf::parse_for_release(conf.to_string().as_bytes()).unwrap_err();
            assert_eq!(err.code, code::INVALID_CONFIG, "{conf}");
        }
    }

    #[test]
    fn malformed_or_empty_stdin_is_code_6() {
        for stdin in [&b"{\"cniVersion\": \"1.0.0\","[..], b"", b"  \n", b"[1,2]"] {
            let err = NetConf::parse(stdin).unwrap_err();
            assert_eq!(
                err.code,
                code::DECODE_FAILURE,
                "{}",
                String::from_utf8_lossy(stdin)
            );
        }
    }

    #[test]
    fn missing_or_unsupported_version_is_code_1() {
        for v in [
            json!({"name": "n"}),
            json!({"cniVersion": "0.2.0", "name": "n"}),
            json!({"cniVersion": "2.0.0", "name": "n"}),
        ] {
            let err = parse(v).unwrap_err();
            assert_eq!(err.code, code::INCOMPATIBLE_VERSION);
            assert!(
                err.msg.contains("0.3.0, 0.3.1, 0.4.0, 1.0.0, 1.1.0"),
                "{err}"
            );
        }
    }

    #[test]
    fn wrong_shapes_missing_name_and_bad_mtu_are_code_7() {
        for v in [
            json!({"cniVersion": 1.0, "name": "n"}),
            json!({"cniVersion": "1.0.0"}),
            json!({"cniVersion": "1.0.0", "name": ""}),
            json!({"cniVersion": "1.0.0", "name": "n", "mtu": "1500"}),
            json!({"cniVersion": "1.0.0", "name": "n", "mtu": 67}),
            json!({"cniVersion": "1.0.0", "name": "n", "mtu": 65536}),
            json!({"cniVersion": "1.0.0", "name": "n", "mtu": 9001}),
            json!({"cniVersion": "1.0.0", "name": "n", "controlSocket": 5}),
        ] {
            assert_eq!(
                parse(v.clone()).unwrap_err().code,
                code::INVALID_CONFIG,
                "{v}"
            );
        }
    }
}
