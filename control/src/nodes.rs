//! Other nodes: Kubernetes `Node` objects (`spec.podCIDR`, `status.addresses` InternalIP)
//! become one route each, that node's pod CIDR → its InternalIP through the uplink (routed,
//! or VXLAN to it, as the uplink's `encap` says). This node's own Node object is recognised
//! (by name, or by a pod CIDR equal to this node's) and not routed.
//!
//! What `apply` refuses, naming the object and the field, with nothing stored
//! ([`check_nodes`], over the stored Nodes and the manifest's together): another node without
//! an InternalIP while it has a pod CIDR (there would be nowhere to route it); a pod CIDR that
//! overlaps another node's or this node's own; this node's Node with another pod CIDR than the
//! one control was started with. A Node without a pod CIDR is stored and not routed (its CIDR
//! is not allocated yet). The k8s crate has already checked the syntax (IPv4 CIDR, address
//! types).

use crate::config::Settings;
use podswitch_k8s::Node;
use podswitch_proto::{Ipv4Prefix, RouteSpec, RouteTarget};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;

/// The stored kinds this module reads (key prefix).
pub const KINDS: &[&str] = &["node"];

/// Whether a stored object's key is a Node's.
pub fn is_node_key(key: &str) -> bool {
    key.starts_with("node ")
}

/// What routing needs of one Node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRoute {
    /// `metadata.name`.
    pub name: String,
    /// `spec.podCIDR` (or the IPv4 one of `spec.podCIDRs`).
    pub pod_cidr: Option<Ipv4Prefix>,
    /// The first InternalIP (IPv4) of `status.addresses`.
    pub internal_ip: Option<Ipv4Addr>,
}

impl NodeRoute {
    /// The parts of `node` routing uses.
    pub fn of(node: &Node) -> NodeRoute {
        let spec = node.spec.as_ref();
        let pod_cidr = spec.and_then(|s| {
            s.pod_cidr
                .iter()
                .chain(s.pod_cidrs.iter().flatten())
                .find_map(|c| c.parse::<Ipv4Prefix>().ok())
        });
        let internal_ip = node
            .status
            .iter()
            .flat_map(|s| s.addresses.iter().flatten())
            .filter(|a| a.type_ == "InternalIP")
            .find_map(|a| a.address.parse::<Ipv4Addr>().ok());
        NodeRoute {
            name: node.metadata.name.clone().unwrap_or_default(),
            pod_cidr,
            internal_ip,
        }
    }

    /// Whether this is the node control serves.
    pub fn is_own(&self, settings: &Settings) -> bool {
        self.name == settings.node_name || self.pod_cidr == Some(settings.pod_cidr)
    }
}

/// Checks the Nodes a store would hold (by key), as the module doc says. The error names the
/// object and the field: `node node-2: spec.podCIDR 10.244.1.0/24 overlaps ...`.
pub fn check_nodes(settings: &Settings, nodes: &BTreeMap<String, NodeRoute>) -> Result<(), String> {
    let mut routed: Vec<(&str, Ipv4Prefix)> = Vec::new();
    for (key, n) in nodes {
        let Some(cidr) = n.pod_cidr else { continue };
        if n.name == settings.node_name {
            if cidr != settings.pod_cidr {
                return Err(format!(
                    "{key}: spec.podCIDR {cidr} is not this node's pod CIDR {} (--pod-cidr): \
                     this is the node control serves ({:?})",
                    settings.pod_cidr, settings.node_name
                ));
            }
            continue;
        }
        if cidr == settings.pod_cidr {
            // Recognised as this node's by its pod CIDR (a node name control does not use).
            continue;
        }
        if cidr.overlaps(&settings.pod_cidr) {
            return Err(format!(
                "{key}: spec.podCIDR {cidr} overlaps this node's pod CIDR {}",
                settings.pod_cidr
            ));
        }
        if let Some((other, _)) = routed.iter().find(|(_, c)| c.overlaps(&cidr)) {
            return Err(format!(
                "{key}: spec.podCIDR {cidr} overlaps {other}'s: every node needs its own"
            ));
        }
        if n.internal_ip.is_none() {
            return Err(format!(
                "{key}: status.addresses has no IPv4 InternalIP: podswitch routes the node's \
                 podCIDR {cidr} to it; add {{type: InternalIP, address: ...}}"
            ));
        }
        routed.push((key.as_str(), cidr));
    }
    Ok(())
}

/// One route per other node with a pod CIDR and an InternalIP, in key order, through the
/// uplink's gateway when the InternalIP is off the uplink's segment; none without an uplink
/// (a one-node cluster stores Nodes and routes nothing).
pub fn compile_routes<'a>(
    settings: &Settings,
    nodes: impl IntoIterator<Item = &'a NodeRoute>,
) -> Vec<RouteSpec> {
    let Some(uplink) = &settings.uplink else {
        return Vec::new();
    };
    nodes
        .into_iter()
        .filter(|n| !n.is_own(settings))
        .filter_map(|n| {
            let ip = n.internal_ip?;
            Some(RouteSpec {
                prefix: n.pod_cidr?,
                target: RouteTarget::Node {
                    ip,
                    vtep_mac: None,
                    gateway: uplink.gateway_for(ip),
                },
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit;

    fn node(name: &str, cidr: Option<&str>, ip: Option<&str>) -> NodeRoute {
        NodeRoute {
            name: name.into(),
            pod_cidr: cidr.map(|c| c.parse().unwrap()),
            internal_ip: ip.map(|i| i.parse().unwrap()),
        }
    }

    fn with_uplink() -> Settings {
        let mut s = testkit::settings();
        s.uplink = Some(crate::config::UplinkSettings {
            port: "eth1".into(),
            ip: "192.168.1.1".parse().unwrap(),
            mac: "0a:58:c0:a8:01:01".parse().unwrap(),
            mtu: 1500,
            encap: podswitch_proto::Encap::Direct,
            kind: podswitch_proto::PortKind::Tap,
            segment: None,
            gateway: None,
            egress: false,
        });
        s
    }

    #[test]
    fn a_route_per_other_node_and_none_for_this_one() {
        let s = with_uplink();
        let nodes: Vec<NodeRoute> = (1..=100)
            .map(|i| {
                node(
                    &format!("node-{i}"),
                    Some(&format!("10.{}.{}.0/24", 200 + i / 256, i % 256)),
                    Some(&format!("192.168.{}.{}", i / 256, i % 256 + 1)),
                )
            })
            .chain([
                node(
                    &s.node_name,
                    Some(&s.pod_cidr.to_string()),
                    Some("192.168.9.9"),
                ),
                node("no-cidr-yet", None, Some("192.168.9.10")),
            ])
            .collect();
        let by_key: BTreeMap<String, NodeRoute> = nodes
            .iter()
            .map(|n| (format!("node {}", n.name), n.clone()))
            .collect();
        check_nodes(&s, &by_key).unwrap();
        let routes = compile_routes(&s, &nodes);
        assert_eq!(routes.len(), 100);
        assert_eq!(routes[41].prefix.to_string(), "10.200.42.0/24");
        assert_eq!(
            routes[41].target,
            RouteTarget::Node {
                ip: "192.168.0.43".parse().unwrap(),
                vtep_mac: None,
                gateway: None,
            }
        );
        assert!(routes.iter().all(|r| r.prefix != s.pod_cidr));
        assert!(
            compile_routes(&testkit::settings(), &nodes).is_empty(),
            "no uplink, no routes"
        );
    }

    #[test]
    fn a_node_off_the_uplinks_segment_is_reached_through_its_gateway() {
        let mut s = with_uplink();
        if let Some(u) = s.uplink.as_mut() {
            u.segment = Some("192.168.1.0/24".parse().unwrap());
            u.gateway = Some("192.168.1.254".parse().unwrap());
        }
        let nodes = [
            node("near", Some("10.244.2.0/24"), Some("192.168.1.2")),
            node("far", Some("10.244.3.0/24"), Some("192.168.3.3")),
        ];
        let gateways: Vec<_> = compile_routes(&s, &nodes)
            .into_iter()
            .map(|r| match r.target {
                RouteTarget::Node { gateway, .. } => gateway.map(|g| g.to_string()),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(gateways, [None, Some("192.168.1.254".into())]);
    }

    #[test]
    fn bad_nodes_are_refused_naming_object_and_field() {
        let s = with_uplink();
        let check = |ns: &[NodeRoute]| {
            let m = ns
                .iter()
                .map(|n| (format!("node {}", n.name), n.clone()))
                .collect();
            check_nodes(&s, &m)
        };
        let own = s.pod_cidr.to_string();
        assert_eq!(
            check(&[node("b", Some("10.244.2.0/24"), None)]).unwrap_err(),
            "node b: status.addresses has no IPv4 InternalIP: podswitch routes the node's \
             podCIDR 10.244.2.0/24 to it; add {type: InternalIP, address: ...}"
        );
        assert_eq!(
            check(&[
                node("b", Some("10.244.2.0/24"), Some("192.168.1.2")),
                node("c", Some("10.244.2.0/25"), Some("192.168.1.3")),
            ])
            .unwrap_err(),
            "node c: spec.podCIDR 10.244.2.0/25 overlaps node b's: every node needs its own"
        );
        let err = check(&[node("b", Some("10.244.0.0/16"), Some("192.168.1.2"))]).unwrap_err();
        assert!(
            err.starts_with("node b: spec.podCIDR 10.244.0.0/16 overlaps this node's"),
            "{err}"
        );
        let err = check(&[node(&s.node_name.clone(), Some("10.244.7.0/24"), None)]).unwrap_err();
        assert!(err.contains("is not this node's pod CIDR"), "{err}");
        // This node's own Node needs no InternalIP, and one matching by pod CIDR is ours.
        check(&[node(&s.node_name.clone(), Some(&own), None)]).unwrap();
        check(&[node("alias", Some(&own), None)]).unwrap();
        check(&[node("later", None, None)]).unwrap();
    }
}

/// Node manifests through `apply`/`delete`, the store and the pushes to the (fake) dataplane.
#[cfg(test)]
mod apply_tests {
    use crate::control::code;
    use crate::testkit::{node_manifest, settings_with_uplink, Harness};
    use podswitch_proto::{Encap, Op, PortRole, RouteTarget};
    use std::net::Ipv4Addr;

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    #[test]
    fn applied_nodes_become_routes_through_the_uplink_and_this_node_is_not_routed() {
        let h = Harness::with_settings(settings_with_uplink(true));
        {
            let s = h.dp.state();
            let up = s
                .ports
                .iter()
                .find(|p| p.name == "eth1")
                .expect("uplink pushed");
            assert_eq!(
                up.role,
                PortRole::Uplink {
                    mac: "0a:58:c0:a8:01:01".parse().unwrap(),
                    ip: ip("192.168.1.1"),
                    encap: Encap::Vxlan {
                        vni: 42,
                        port: 4789
                    },
                    gateway: None,
                }
            );
            assert!(!up.offloads, "a VXLAN uplink takes no offloaded frame");
        }
        let nodes = [
            node_manifest("n1", Some("10.244.1.0/24"), Some("192.168.1.1")),
            node_manifest("n2", Some("10.244.2.0/24"), Some("192.168.1.2")),
            node_manifest("n3", Some("10.244.3.0/24"), Some("192.168.1.3")),
        ]
        .join("---\n");
        assert_eq!(
            h.c().apply(&nodes).unwrap(),
            ["node n1 created", "node n2 created", "node n3 created"]
        );
        assert_eq!(
            h.dp.state().node_routes(),
            [
                ("10.244.2.0/24".to_string(), ip("192.168.1.2")),
                ("10.244.3.0/24".to_string(), ip("192.168.1.3"))
            ]
        );
        // A change is pushed as the route ops alone, not a replace.
        let moved = node_manifest("n3", Some("10.244.3.0/24"), Some("192.168.1.33"));
        assert_eq!(h.c().apply(&moved).unwrap(), ["node n3 configured"]);
        let last = h.dp.state().applied.last().cloned().unwrap();
        assert!(!last.replace, "incremental: {last:?}");
        assert!(
            matches!(
                &last.ops[..],
                [Op::AddRoute(r)] if r.target == RouteTarget::Node { ip: ip("192.168.1.33"), vtep_mac: None, gateway: None }
            ),
            "{:?}",
            last.ops
        );
        assert_eq!(h.c().delete(&nodes).unwrap().len(), 3);
        assert!(h.dp.state().node_routes().is_empty());
    }

    #[test]
    fn routes_survive_a_control_restart_and_a_dataplane_replace() {
        let mut h = Harness::with_settings(settings_with_uplink(false));
        h.c()
            .apply(&node_manifest(
                "n2",
                Some("10.244.2.0/24"),
                Some("192.168.1.2"),
            ))
            .unwrap();
        h.restart_control();
        h.dp.state().restart();
        h.c().sync().push_now().unwrap();
        assert_eq!(
            h.dp.state().node_routes(),
            [("10.244.2.0/24".to_string(), ip("192.168.1.2"))]
        );
    }

    #[test]
    fn a_bad_node_is_refused_naming_object_and_field_and_nothing_changes() {
        let h = Harness::with_settings(settings_with_uplink(false));
        h.c()
            .apply(&node_manifest(
                "n2",
                Some("10.244.2.0/24"),
                Some("192.168.1.2"),
            ))
            .unwrap();
        let generation = h.store().read().unwrap().generation().unwrap();
        let pushes = h.dp.state().applied.len();
        for (manifest, message) in [
            (
                node_manifest("n3", Some("10.244.2.0/25"), Some("192.168.1.3")),
                "node n3: spec.podCIDR 10.244.2.0/25 overlaps node n2's: every node needs its own",
            ),
            (
                node_manifest("n4", Some("10.244.4.0/24"), None),
                "node n4: status.addresses has no IPv4 InternalIP",
            ),
            (
                node_manifest("n5", Some("10.244.0.0/16"), Some("192.168.1.5")),
                "node n5: spec.podCIDR 10.244.0.0/16 overlaps this node's pod CIDR",
            ),
            (
                node_manifest("n1", Some("10.244.9.0/24"), Some("192.168.1.1")),
                "node n1: spec.podCIDR 10.244.9.0/24 is not this node's pod CIDR",
            ),
            (
                node_manifest("n6", Some("10.244.6.1/24"), Some("192.168.1.6")),
                "spec.podCIDR: \"10.244.6.1/24\" is not a valid CIDR",
            ),
        ] {
            // A good Node in the same manifest is not stored either.
            let both = format!(
                "{}---\n{manifest}",
                node_manifest("n7", Some("10.244.7.0/24"), Some("192.168.1.7"))
            );
            let err = h.c().apply(&both).unwrap_err();
            assert_eq!(err.code, code::INVALID_MANIFEST);
            assert!(err.message.contains(message), "{}", err.message);
            let view = h.store().read().unwrap();
            assert!(view.object("node n7").unwrap().is_none());
            assert_eq!(view.generation().unwrap(), generation);
            assert_eq!(h.dp.state().applied.len(), pushes);
        }
    }
}
