//! Desired state → dataplane configuration. [`compile`] turns the node settings, the
//! attached pods and the compiled Service ports into one transaction that describes `podswitchd`'s *whole* configuration
//! (`replace: true`), numbered with control's generation; `podswitchd` keeps every port whose
//! spec is unchanged and removes what the transaction does not mention, so pushing it is safe
//! whatever the dataplane held before.
//!
//! Also here: how a pod's switch port is named and which MAC its interface gets, both fixed at
//! CNI ADD time and stored in the pod's record.

use crate::config::Settings;
use crate::store::PodRecord;
use podswitch_proto::control::PodAttachment;
use podswitch_proto::{
    MacAddr, NetnsAttach, NodeSpec, Op, PolicySpec, PortKind, PortRole, PortSpec, RouteSpec,
    RouteTarget, ServiceSpec, Transaction,
};
use std::net::Ipv4Addr;

/// The switch port name of an attachment: `psw` + the first 12 hex digits (the high 48 bits) of
/// the FNV-1a-64 hash of `container_id/ifname`. 15 bytes, the longest interface name Linux
/// takes (the port is a tap device created under this name before it moves into the pod);
/// deterministic, so the same attachment always gets the same port, also across restarts of
/// either process. Two attachments colliding in 48 bits is refused at ADD time.
pub fn port_name(attachment_key: &str) -> String {
    let hash = fnv1a64(attachment_key.as_bytes());
    format!("psw{:012x}", hash >> 16)
}

/// FNV-1a, 64-bit (offset basis 0xcbf29ce484222325, prime 0x100000001b3).
fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The MAC of a pod interface with address `ip` unless the runtime asked for one:
/// `0a:58:` followed by the four octets of the address, the OVN-Kubernetes convention
/// (locally administered, unicast, unique as long as the address is).
pub fn pod_mac(ip: Ipv4Addr) -> MacAddr {
    let [a, b, c, d] = ip.octets();
    MacAddr::new(0x0a, 0x58, a, b, c, d)
}

/// The whole dataplane configuration for `pods` (in the given order; callers pass them sorted
/// by attachment key), as one replace transaction numbered `generation`:
/// the node's addressing, the host port, a default route to the host (out of the uplink with
/// `egress = "uplink"`, with the uplink's segment and the node's address: `egress_routes`), the pod CIDR
/// unreachable (so unassigned pod addresses get ICMP host unreachable instead of bouncing to
/// the host), then one port per pod, attached to the pod's namespace, then one `set_service`
/// per Service port (`services`, from `crate::services::compile_services`), then one
/// `set_policy` per isolated pod port (`policies`, from `crate::policy::compile_policies`;
/// last, because a policy names a port added before it). With an uplink configured, its port
/// comes after the host port, and `node_routes` (`crate::nodes::compile_routes`) after the
/// static routes.
pub fn compile<'a>(
    settings: &Settings,
    generation: u64,
    pods: impl IntoIterator<Item = &'a PodRecord>,
    services: impl IntoIterator<Item = ServiceSpec>,
    policies: impl IntoIterator<Item = PolicySpec>,
    node_routes: impl IntoIterator<Item = RouteSpec>,
) -> Transaction {
    let mut ops = vec![
        Op::SetNode(NodeSpec {
            pod_cidr: settings.pod_cidr,
            gateway: settings.gateway,
            gateway_mac: None,
            service_cidr: Some(settings.service_cidr),
            node_port_ip: Some(settings.node_port_ip),
        }),
        Op::AddPort(PortSpec {
            name: settings.host_port.clone(),
            kind: PortKind::Tap,
            role: PortRole::Host { mac: None },
            mtu: settings.mtu,
            offloads: true,
            netns: None,
            queue_ids: Vec::new(),
        }),
        Op::AddRoute(RouteSpec {
            prefix: DEFAULT_ROUTE,
            target: RouteTarget::Host,
        }),
        Op::AddRoute(RouteSpec {
            prefix: settings.pod_cidr,
            target: RouteTarget::Unreachable,
        }),
    ];
    if let Some(routes) = egress_routes(settings) {
        // The first is the default route: it takes the host's place.
        let mut routes = routes.into_iter().map(Op::AddRoute);
        if let Some(default) = routes.next() {
            ops[2] = default;
        }
        ops.extend(routes);
    }
    if let Some(port) = uplink_port(settings) {
        ops.insert(2, Op::AddPort(port));
    }
    // Other nodes' pod CIDRs through the uplink (`crate::nodes`). Pods reach the rest of the
    // world through the host port, where the node's kernel masquerades (the default route),
    // or with `egress = "uplink"` out of the uplink, translated to the node's address.
    ops.extend(node_routes.into_iter().map(Op::AddRoute));
    ops.extend(
        pods.into_iter()
            .map(|pod| Op::AddPort(pod_port(settings, pod))),
    );
    ops.extend(services.into_iter().map(Op::SetService));
    ops.extend(policies.into_iter().map(Op::SetPolicy));
    Transaction {
        generation: Some(generation),
        replace: true,
        ops,
    }
}

/// 0.0.0.0/0.
const DEFAULT_ROUTE: podswitch_proto::Ipv4Prefix = podswitch_proto::Ipv4Prefix {
    addr: Ipv4Addr::UNSPECIFIED,
    len: 0,
};

/// With `egress = "uplink"`: the default route out of the uplink to its gateway (it replaces
/// the one to the host), the uplink's segment out of it too, to each address itself, and the
/// node's own address on it to the host (its kernel, as before; the switch matches NodePorts
/// there first; no segment route for a /32). `None` otherwise.
fn egress_routes(settings: &Settings) -> Option<Vec<RouteSpec>> {
    let u = settings.uplink.as_ref().filter(|u| u.egress)?;
    let (segment, gateway) = (u.segment?, u.gateway?);
    let mut routes = vec![RouteSpec {
        prefix: DEFAULT_ROUTE,
        target: RouteTarget::Uplink {
            gateway: Some(gateway),
        },
    }];
    // A /32 node address has no segment besides itself (its gateway is on link).
    if segment.len < 32 {
        routes.push(RouteSpec {
            prefix: segment,
            target: RouteTarget::Uplink { gateway: None },
        });
    }
    routes.push(RouteSpec {
        prefix: podswitch_proto::Ipv4Prefix {
            addr: u.ip,
            len: 32,
        },
        target: RouteTarget::Host,
    });
    Some(routes)
}

/// The uplink port, when the configuration has one: the switch's link to the other nodes,
/// holding the node's InternalIP (`node_ip`) and encapsulating as `encap` says; a tap or AF_XDP
/// sockets on an existing interface of podswitchd's namespace (`uplink_kind`), which changes
/// nothing else (an afxdp port ignores `offloads`).
pub fn uplink_port(settings: &Settings) -> Option<PortSpec> {
    let u = settings.uplink.as_ref()?;
    Some(PortSpec {
        name: u.port.clone(),
        kind: u.kind,
        role: PortRole::Uplink {
            mac: u.mac,
            ip: u.ip,
            encap: u.encap,
            gateway: u
                .gateway
                .zip(u.segment)
                .map(|(ip, segment)| podswitch_proto::UplinkGateway { ip, segment }),
        },
        mtu: u.mtu,
        // An encapsulating uplink takes no offloaded frame whole (the switch segments and
        // checksums before encapsulating); a routed one takes them as a pod port does.
        offloads: u.encap == podswitch_proto::Encap::Direct,
        queue_ids: Vec::new(),
        netns: None,
    })
}

/// The switch port of one pod. A tap pod's port is the tap podswitchd creates in the pod's
/// namespace (`netns`). A veth-afxdp pod's port is an `afxdp` port bound to the node end of
/// its veth pair, which control created in podswitchd's namespace under the port's own name
/// (so no `netns`), with one queue per worker (so the default `queue_ids`); it takes no
/// offloaded frames whatever the network config says (AF_XDP carries none).
pub fn pod_port(settings: &Settings, pod: &PodRecord) -> PortSpec {
    let non_empty = |s: &str| (!s.is_empty()).then(|| s.to_string());
    let (kind, offloads, netns) = match pod.attachment {
        PodAttachment::Tap => (
            PortKind::Tap,
            pod.offloads,
            Some(NetnsAttach {
                path: pod.netns.clone(),
                ifname: pod.ifname.clone(),
            }),
        ),
        PodAttachment::VethAfxdp => (PortKind::Afxdp, false, None),
    };
    PortSpec {
        name: pod.port.clone(),
        kind,
        role: PortRole::Pod {
            mac: pod.mac,
            ip: pod.ip,
            namespace: non_empty(&pod.namespace),
            pod: non_empty(&pod.name),
        },
        mtu: pod.mtu.unwrap_or(settings.mtu),
        offloads,
        netns,
        queue_ids: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit;

    #[test]
    fn fnv1a64_matches_the_reference_vectors() {
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn port_names_are_15_bytes_and_deterministic() {
        let a = port_name("abc/eth0");
        assert_eq!(a.len(), 15);
        assert!(a.starts_with("psw"));
        assert_eq!(a, port_name("abc/eth0"));
        assert_ne!(a, port_name("abc/eth1"));
        assert_eq!(port_name("a"), "pswaf63dc4c8601");
    }

    #[test]
    fn pod_mac_embeds_the_address() {
        assert_eq!(
            pod_mac(Ipv4Addr::new(10, 244, 1, 2)).to_string(),
            "0a:58:0a:f4:01:02"
        );
    }

    #[test]
    fn two_pods_compile_to_one_ordered_replace_transaction() {
        let s = testkit::settings();
        let a = testkit::pod("aaa", [10, 244, 1, 2]);
        let mut b = testkit::pod("bbb", [10, 244, 1, 3]);
        b.mtu = Some(1400);
        let tx = compile(&s, 7, [&a, &b], [], [], []);
        assert_eq!(tx.generation, Some(7));
        assert!(tx.replace);
        let json = serde_json::to_value(&tx.ops).unwrap();
        assert_eq!(
            json,
            serde_json::json!([
                {"op": "set_node", "pod_cidr": "10.244.1.0/24", "gateway": "10.244.1.1",
                 "service_cidr": "10.96.0.0/12", "node_port_ip": "10.111.255.254"},
                {"op": "add_port", "name": "psw0", "kind": "tap", "mtu": 1500,
                 "offloads": true, "role": {"role": "host"}},
                {"op": "add_route", "prefix": "0.0.0.0/0", "target": {"via": "host"}},
                {"op": "add_route", "prefix": "10.244.1.0/24", "target": {"via": "unreachable"}},
                {"op": "add_port", "name": "psw1fd96c58e588", "kind": "tap", "mtu": 1500,
                 "offloads": true,
                 "role": {"role": "pod", "mac": "0a:58:0a:f4:01:02", "ip": "10.244.1.2",
                          "namespace": "default", "pod": "aaa"},
                 "netns": {"path": "/var/run/netns/aaa", "ifname": "eth0"}},
                {"op": "add_port", "name": "psw80a29dd2115d", "kind": "tap", "mtu": 1400,
                 "offloads": true,
                 "role": {"role": "pod", "mac": "0a:58:0a:f4:01:03", "ip": "10.244.1.3",
                          "namespace": "default", "pod": "bbb"},
                 "netns": {"path": "/var/run/netns/bbb", "ifname": "eth0"}},
            ])
        );
        assert_eq!(port_name("aaa/eth0"), "psw1fd96c58e588");
        assert_eq!(port_name("bbb/eth0"), "psw80a29dd2115d");
    }

    #[test]
    fn a_pod_without_offloads_compiles_to_a_port_without_them() {
        let s = testkit::settings();
        let on = testkit::pod("aaa", [10, 244, 1, 2]);
        let mut off = testkit::pod("bbb", [10, 244, 1, 3]);
        off.offloads = false;
        assert!(pod_port(&s, &on).offloads);
        assert!(!pod_port(&s, &off).offloads);
        let tx = compile(&s, 3, [&on, &off], [], [], []);
        let offloads: Vec<bool> = tx
            .ops
            .iter()
            .filter_map(|op| match op {
                Op::AddPort(p) => Some(p.offloads),
                _ => None,
            })
            .collect();
        // The host port keeps them; the pods as their records say.
        assert_eq!(offloads, [true, true, false]);
    }

    #[test]
    fn a_veth_afxdp_pod_compiles_to_an_afxdp_port_on_the_node_end_named_like_the_port() {
        let s = testkit::settings();
        let mut pod = testkit::pod("aaa", [10, 244, 1, 2]);
        pod.attachment = PodAttachment::VethAfxdp;
        let json = serde_json::to_value(pod_port(&s, &pod)).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"name": "psw1fd96c58e588", "kind": "afxdp", "mtu": 1500,
                "offloads": false,
                "role": {"role": "pod", "mac": "0a:58:0a:f4:01:02", "ip": "10.244.1.2",
                         "namespace": "default", "pod": "aaa"}})
        );
    }

    #[test]
    fn no_pods_is_still_a_whole_configuration() {
        let tx = compile(&testkit::settings(), 1, [], [], [], []);
        assert_eq!(tx.ops.len(), 4);
        assert!(tx.replace);
    }
}
