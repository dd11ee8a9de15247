//! The protocol spoken on `podswitch-control`'s unix socket: the CNI plugin and `podswitchctl`
//! talk to the control process with it. Same framing and version rule as the dataplane socket
//! (see `docs/protocol.md`): every request is `{"version": 1, "request": KIND, ...}` and gets one
//! response `{"response": KIND, ...}`.

use crate::net::{mac, MacAddr};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;

/// Default path of the control process's socket.
pub const DEFAULT_CONTROL_SOCKET: &str = "/run/podswitch/control.sock";

/// One request to the control process.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ControlRequest {
    /// Must equal [`crate::PROTOCOL_VERSION`].
    pub version: u32,
    /// What is asked.
    #[serde(flatten)]
    pub body: ControlRequestBody,
}

impl ControlRequest {
    /// A request in this crate's protocol version.
    pub fn new(body: ControlRequestBody) -> Self {
        Self {
            version: crate::PROTOCOL_VERSION,
            body,
        }
    }
}

/// What a control request asks for.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "request", rename_all = "snake_case")]
pub enum ControlRequestBody {
    /// CNI ADD: give the container's network namespace an interface on the switch.
    CniAdd(CniAttach),
    /// CNI DEL: remove it and release its address. Idempotent; `netns` may be absent.
    CniDel(CniDetach),
    /// CNI CHECK: verify the attachment is as ADD left it.
    CniCheck(CniAttach),
    /// CNI GC (spec 1.1): release every attachment of this network not in `valid`.
    CniGc {
        /// Attachments the runtime still knows.
        valid: Vec<AttachmentId>,
    },
    /// Control process health, for CNI STATUS and `podswitchctl`.
    Status,
    /// Attached pods.
    Pods,
    /// Apply Kubernetes manifests (multi-document YAML): all documents, or none.
    Apply {
        /// The YAML text.
        manifests: String,
    },
    /// Delete the objects the manifests name: all, or none.
    Delete {
        /// The YAML text.
        manifests: String,
    },
}

/// Which container attachment: the CNI identity of an ADD.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct AttachmentId {
    /// `CNI_CONTAINERID`.
    pub container_id: String,
    /// `CNI_IFNAME`.
    pub ifname: String,
}

/// A CNI ADD or CHECK.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CniAttach {
    /// `CNI_CONTAINERID`.
    pub container_id: String,
    /// `CNI_IFNAME`.
    pub ifname: String,
    /// `CNI_NETNS`: `/var/run/netns/NAME` or `/proc/PID/ns/net`.
    pub netns: String,
    /// `K8S_POD_NAMESPACE` from `CNI_ARGS`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_namespace: Option<String>,
    /// `K8S_POD_NAME`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_name: Option<String>,
    /// `K8S_POD_UID`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_uid: Option<String>,
    /// A specific address asked for (`IP=` in `CNI_ARGS`, as podman sends).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_ip: Option<Ipv4Addr>,
    /// A specific MAC asked for (`MAC=`).
    #[serde(default, with = "mac::option", skip_serializing_if = "Option::is_none")]
    pub requested_mac: Option<MacAddr>,
    /// MTU from the network config, if it sets one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u16>,
    /// `offloads` from the network config, if it sets it: whether the pod's switch port
    /// exchanges offloaded frames (64 KB TSO/USO super-frames, partial checksums) with the
    /// pod; see [`crate::PortSpec::offloads`]. `None` (a plugin that predates the field, or a
    /// config without it) means on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offloads: Option<bool>,
    /// `attachment` from the network config, if it sets it: how the pod is wired to the
    /// switch. `None` (a plugin that predates the field, or a config without it) is a tap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attachment: Option<PodAttachment>,
}

/// How a pod's interface is wired to the switch; the CNI network config's `attachment`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PodAttachment {
    /// `"tap"`: the pod's interface is a tap whose other side podswitchd reads and writes
    /// (a `tap` port, created by podswitchd). Offloaded frames cross it whole.
    #[default]
    Tap,
    /// `"veth-afxdp"`: the pod's interface is one end of a veth pair whose other end stays
    /// in podswitchd's namespace (named like the port) and is an `afxdp` port of the switch.
    /// Control creates the pair; the pod's end sends no offloaded frames (AF_XDP carries none).
    VethAfxdp,
}

impl PodAttachment {
    /// Every attachment, as the network config spells them.
    pub const NAMES: [&'static str; 2] = ["tap", "veth-afxdp"];

    /// As the network config spells it.
    pub fn name(self) -> &'static str {
        match self {
            PodAttachment::Tap => "tap",
            PodAttachment::VethAfxdp => "veth-afxdp",
        }
    }

    /// The default, a tap (for `skip_serializing_if`).
    pub fn is_tap(&self) -> bool {
        *self == PodAttachment::Tap
    }
}

/// A CNI DEL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CniDetach {
    /// `CNI_CONTAINERID`.
    pub container_id: String,
    /// `CNI_IFNAME`.
    pub ifname: String,
    /// `CNI_NETNS`, absent when the runtime no longer has one (containerd's second DEL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netns: Option<String>,
}

/// What an ADD produced; the CNI plugin turns it into the CNI result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    /// Container id.
    pub container_id: String,
    /// Interface name in the pod.
    pub ifname: String,
    /// The pod's namespace path.
    pub netns: String,
    /// The pod's MAC.
    #[serde(with = "mac")]
    pub mac: MacAddr,
    /// The pod's address.
    pub ip: Ipv4Addr,
    /// Its prefix length on the interface (32: everything goes via the gateway).
    pub prefix_len: u8,
    /// The gateway (the switch).
    pub gateway: Ipv4Addr,
    /// The switch port's name.
    pub port: String,
}

/// Control process health.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControlStatus {
    /// Protocol version spoken.
    pub version: u32,
    /// Node name.
    pub node: String,
    /// The node's pod CIDR.
    pub pod_cidr: String,
    /// Generation of the desired state control last computed.
    pub generation: u64,
    /// Whether the dataplane is connected and holds that generation.
    pub dataplane_in_sync: bool,
    /// The generation the dataplane reported last, if it answered.
    pub dataplane_generation: Option<u64>,
    /// Attached pods.
    pub pods: usize,
    /// Addresses allocated (equal to `pods` unless something leaked).
    pub allocated_ips: usize,
    /// How many addresses the pod CIDR can give to pods (`None` from a control process that
    /// does not say); the pool is exhausted when `allocated_ips` reaches it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool_capacity: Option<u32>,
}

/// One attached pod.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodInfo {
    /// Kubernetes namespace (empty when the runtime did not say).
    pub namespace: String,
    /// Pod name (empty when the runtime did not say).
    pub name: String,
    /// Container (sandbox) id.
    pub container_id: String,
    /// Interface name in the pod.
    pub ifname: String,
    /// Network namespace path.
    pub netns: String,
    /// Address.
    pub ip: Ipv4Addr,
    /// MAC.
    #[serde(with = "mac")]
    pub mac: MacAddr,
    /// Switch port.
    pub port: String,
    /// Labels from an applied Pod manifest of the same namespace/name, if any.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// The control process's answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "response", rename_all = "snake_case")]
pub enum ControlResponse {
    /// ADD done.
    Attached(Attachment),
    /// DEL done (also when there was nothing to delete).
    Detached,
    /// CHECK passed.
    Checked,
    /// GC done.
    Collected {
        /// What was released.
        released: Vec<AttachmentId>,
    },
    /// See [`ControlStatus`].
    Status(ControlStatus),
    /// See [`PodInfo`].
    Pods {
        /// Sorted by namespace, name.
        pods: Vec<PodInfo>,
    },
    /// Manifests applied or deleted.
    Applied {
        /// One line per object, e.g. `pod default/web configured`.
        summary: Vec<String>,
    },
    /// The request failed; nothing changed.
    Error {
        /// A CNI error code (spec §"Error"): 3 unknown container, 4 invalid environment,
        /// 5 I/O failure, 7 invalid network config, 11 try again later, 50 not available;
        /// 100+ are podswitch's own (100 invalid manifest, 101 address pool exhausted).
        code: u32,
        /// What was wrong and, where it helps, what to do.
        message: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cni_add_has_a_readable_wire_form() {
        let req = ControlRequest::new(ControlRequestBody::CniAdd(CniAttach {
            container_id: "abc".into(),
            ifname: "eth0".into(),
            netns: "/var/run/netns/x".into(),
            pod_namespace: Some("default".into()),
            pod_name: Some("web".into()),
            pod_uid: None,
            requested_ip: None,
            requested_mac: None,
            mtu: None,
            offloads: None,
            attachment: None,
        }));
        assert_eq!(
            serde_json::to_value(&req).unwrap(),
            serde_json::json!({"version": 1, "request": "cni_add", "container_id": "abc",
                "ifname": "eth0", "netns": "/var/run/netns/x", "pod_namespace": "default",
                "pod_name": "web"})
        );
        let del: ControlRequest = serde_json::from_str(
            r#"{"version":1,"request":"cni_del","container_id":"abc","ifname":"eth0"}"#,
        )
        .unwrap();
        assert!(matches!(
            del.body,
            ControlRequestBody::CniDel(CniDetach { netns: None, .. })
        ));
    }

    #[test]
    fn cni_add_offloads_is_optional_and_read_when_sent() {
        // An ADD from a plugin that predates the field: no offloads, which control reads as on.
        let old: ControlRequest = serde_json::from_str(
            r#"{"version":1,"request":"cni_add","container_id":"a","ifname":"eth0","netns":"/n"}"#,
        )
        .unwrap();
        let ControlRequestBody::CniAdd(old) = old.body else {
            panic!("not an ADD")
        };
        assert_eq!(old.offloads, None);
        let off: ControlRequest = serde_json::from_str(
            r#"{"version":1,"request":"cni_add","container_id":"a","ifname":"eth0","netns":"/n",
                "offloads":false}"#,
        )
        .unwrap();
        let ControlRequestBody::CniAdd(off) = off.body else {
            panic!("not an ADD")
        };
        assert_eq!(off.offloads, Some(false));
        assert_eq!(
            serde_json::to_value(&off).unwrap()["offloads"],
            serde_json::json!(false)
        );
    }
}
