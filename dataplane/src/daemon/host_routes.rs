//! Routes the node's own traffic into the host port where the switch, not the node's kernel,
//! knows the way, as the Service CIDR route does for ClusterIPs (`tap_factory`):
//! - Service externalIPs and LoadBalancer ingress IPs outside the Service CIDR, one
//!   `<ip>/32 dev psw0 scope link` each: host processes (and hostNetwork pods) reach them
//!   through the switch, which answers ARP for them there and translates the connection;
//! - other nodes' pod CIDRs (each node route's prefix, `<podCIDR> via <its first host> dev
//!   psw0 onlink`): the node reaches every pod of the cluster through the switch, from its
//!   address on the host port (the gateway), which the other node routes back here — also when
//!   the uplink is an AF_XDP port that took the underlay away from the node's kernel, and
//!   through VXLAN. Via one address per node (the switch answers ARP for it on the host port,
//!   as for every address it routes elsewhere), so the kernel keeps one neighbour entry per
//!   node, not one per remote pod. A prefix that would cover the node's own addresses (its
//!   pod CIDR's gateway, the uplink's address or gateway) or overlap the Service CIDR is not
//!   routed: a bad Node object must not take over the node's own routes.
//!
//! The daemon's apply path calls [`HostRoutes::sync`] after each successful transaction;
//! only the difference from what it installed is sent to the kernel. Workers never see it.
//!
//! The routes live on the host port's device: they go with it (the daemon's exit, the port
//! re-created), so what was installed is forgotten when the host port's uid changes.

use super::state::Config;
use podswitch_netlink::Netlink;
use podswitch_proto::{FrontendKind, PortRole, RouteTarget};
use std::collections::BTreeSet;
use std::net::Ipv4Addr;

/// The routes the configuration calls for: through which host port, to which addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Wanted {
    /// The host port's device name.
    pub host: String,
    /// Its uid (a re-created port is a new device, with none of the old routes).
    pub host_uid: u32,
    /// Every externalIP and LoadBalancer ingress IP outside the Service CIDR (as /32s, on
    /// link), and every other node's pod CIDR (via its first host, on link).
    pub prefixes: BTreeSet<HostRoute>,
}

/// What the daemon installed in the kernel.
#[derive(Debug, Default)]
pub(super) struct HostRoutes {
    /// The host port (uid) the routes below are on.
    host_uid: Option<u32>,
    installed: BTreeSet<HostRoute>,
}

/// One route into the host port: network, prefix length, and the address it goes via
/// (`None`: the destination itself is on the link).
pub(super) type HostRoute = (Ipv4Addr, u8, Option<Ipv4Addr>);

impl HostRoutes {
    /// Installs the routes `want` has and this has not, and deletes those it no longer has.
    /// On an error, what succeeded is remembered and the next call does the rest.
    pub(super) fn sync(&mut self, want: Option<&Wanted>) -> Result<(), podswitch_netlink::Error> {
        let Some(want) = want else {
            // No host port: the device and its routes are gone, or there is nothing to route.
            self.host_uid = None;
            self.installed.clear();
            return Ok(());
        };
        if self.host_uid != Some(want.host_uid) {
            self.host_uid = Some(want.host_uid);
            self.installed.clear();
        }
        if self.installed == want.prefixes {
            return Ok(());
        }
        let mut nl = Netlink::new()?;
        let gone: Vec<_> = self.installed.difference(&want.prefixes).copied().collect();
        for route in gone {
            match nl.route_del_v4(route.0, route.1) {
                Ok(()) => {}
                // Already gone (an operator's `ip route del`): what we wanted.
                Err(e) if e.errno() == Some(libc::ESRCH) => {}
                Err(e) => return Err(e),
            }
            self.installed.remove(&route);
        }
        let new: Vec<_> = want.prefixes.difference(&self.installed).copied().collect();
        if new.is_empty() {
            return Ok(());
        }
        let Some(index) = nl.link_index(&want.host)? else {
            return Ok(()); // the device is being re-created: the next apply routes
        };
        for route in new {
            match route {
                (addr, len, Some(via)) => nl.route_replace_v4_onlink(addr, len, via, index)?,
                (addr, len, None) => nl.route_replace_v4(addr, len, None, Some(index), true)?,
            }
            self.installed.insert(route);
        }
        Ok(())
    }
}

/// The routes `config` calls for: none without a host port; else every externalIP and
/// LoadBalancer ingress IP of its Services that the Service CIDR route does not cover, and
/// every node route's prefix.
pub(super) fn wanted(config: &Config) -> Option<Wanted> {
    let host = config
        .ports
        .values()
        .find(|p| matches!(p.spec.role, PortRole::Host { .. }))?;
    let service_cidr = config.node.as_ref().and_then(|n| n.service_cidr);
    let frontends = config
        .services
        .values()
        .flat_map(|s| s.frontends.iter())
        .filter(|f| {
            matches!(
                f.kind,
                FrontendKind::ExternalIp | FrontendKind::LoadBalancer
            )
        })
        .map(|f| f.ip)
        .filter(|ip| !ip.is_unspecified() && !service_cidr.is_some_and(|c| c.contains(*ip)))
        .map(|ip| (ip, 32, None));
    // The node's own addresses, which no node route may take over.
    let own: Vec<Ipv4Addr> = config
        .node
        .iter()
        .map(|n| n.gateway)
        .chain(
            config
                .ports
                .values()
                .flat_map(|p| match &p.spec.role {
                    PortRole::Uplink { ip, gateway, .. } => vec![Some(*ip), gateway.map(|g| g.ip)],
                    _ => Vec::new(),
                })
                .flatten(),
        )
        .collect();
    let routable = |prefix: &podswitch_proto::Ipv4Prefix| {
        prefix.len > 0
            && !own.iter().any(|ip| prefix.contains(*ip))
            && !service_cidr.is_some_and(|c| c.overlaps(prefix))
    };
    let other_nodes_pods = config.routes.iter().filter_map(|(prefix, target)| {
        let first_host = Ipv4Addr::from(u32::from(prefix.addr).wrapping_add(1));
        (matches!(target, RouteTarget::Node { .. }) && routable(prefix)).then_some((
            prefix.addr,
            prefix.len,
            Some(first_host),
        ))
    });
    Some(Wanted {
        host: host.spec.name.clone(),
        host_uid: host.uid,
        prefixes: frontends.chain(other_nodes_pods).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::state::tests::node_config;
    use podswitch_proto::{Frontend, L4Protocol, ServiceSpec};

    fn config(host_port: bool) -> Config {
        let mut c = node_config(None, host_port);
        let mut web = ServiceSpec::cluster_ip(
            "default/web",
            L4Protocol::Tcp,
            Ipv4Addr::new(10, 96, 0, 10),
            80,
            Vec::new(),
        );
        for (kind, ip) in [
            (FrontendKind::ExternalIp, Ipv4Addr::new(203, 0, 113, 10)),
            // An externalIP inside the Service CIDR is routed already.
            (FrontendKind::ExternalIp, Ipv4Addr::new(10, 96, 1, 1)),
            (FrontendKind::LoadBalancer, Ipv4Addr::new(198, 51, 100, 10)),
            (FrontendKind::NodePort, Ipv4Addr::UNSPECIFIED),
        ] {
            web.frontends.push(Frontend { kind, ip, port: 80 });
        }
        c.services.insert(web.name.clone(), web.into());
        c
    }

    #[test]
    fn external_and_load_balancer_ips_outside_the_service_cidr_are_routed_to_the_host_port() {
        let want = wanted(&config(true)).unwrap();
        assert_eq!((want.host.as_str(), want.host_uid), ("psw0", 7));
        assert_eq!(
            want.prefixes,
            BTreeSet::from([
                (Ipv4Addr::new(198, 51, 100, 10), 32, None),
                (Ipv4Addr::new(203, 0, 113, 10), 32, None)
            ]),
            "not the ClusterIP, not one inside the Service CIDR, not the NodePort's 0.0.0.0"
        );
    }

    #[test]
    fn other_nodes_pod_cidrs_are_routed_to_the_host_port_and_nothing_else_of_the_routes() {
        use podswitch_proto::RouteTarget;
        let mut c = config(true);
        let routes = std::sync::Arc::make_mut(&mut c.routes);
        let node = |ip: [u8; 4]| RouteTarget::Node {
            ip: Ipv4Addr::from(ip),
            vtep_mac: None,
            gateway: None,
        };
        for (prefix, target) in [
            ("10.244.2.0/24", node([192, 168, 1, 2])),
            ("10.244.3.0/24", node([192, 168, 1, 3])),
            // Node routes that would take over the node's own routes are not installed.
            ("10.244.0.0/16", node([192, 168, 1, 4])),
            ("10.96.0.0/12", node([192, 168, 1, 5])),
            ("0.0.0.0/1", node([192, 168, 1, 6])),
            ("0.0.0.0/0", RouteTarget::Host),
            ("192.168.1.0/24", RouteTarget::Uplink { gateway: None }),
            ("10.9.0.0/16", RouteTarget::Unreachable),
        ] {
            let prefix: podswitch_proto::Ipv4Prefix = prefix.parse().unwrap();
            routes.insert(prefix.network(), target);
        }
        let want = wanted(&c).unwrap();
        let pods: Vec<_> = want.prefixes.iter().filter(|r| r.2.is_some()).collect();
        assert_eq!(
            pods,
            [
                &(
                    Ipv4Addr::new(10, 244, 2, 0),
                    24,
                    Some(Ipv4Addr::new(10, 244, 2, 1))
                ),
                &(
                    Ipv4Addr::new(10, 244, 3, 0),
                    24,
                    Some(Ipv4Addr::new(10, 244, 3, 1))
                )
            ],
            "via each node's first host; not the prefixes over the node's own pod CIDR, the \
             Service CIDR or everything"
        );
        assert_eq!(want.prefixes.len(), 4, "{:?}", want.prefixes);
    }

    #[test]
    fn nothing_is_routed_without_a_host_port() {
        assert_eq!(wanted(&config(false)), None);
    }

    #[test]
    fn sync_to_what_is_installed_does_not_touch_the_kernel() {
        // Returns before opening a netlink socket, so it passes in any namespace.
        let mut routes = HostRoutes::default();
        let want = Wanted {
            host: "psw0".into(),
            host_uid: 7,
            prefixes: BTreeSet::new(),
        };
        routes.sync(Some(&want)).unwrap();
        assert_eq!(routes.host_uid, Some(7));
        routes
            .installed
            .insert((Ipv4Addr::new(203, 0, 113, 10), 32, None));
        // A re-created host port: the old device's routes are not ours to delete any more.
        let recreated = Wanted {
            host_uid: 8,
            ..want
        };
        routes.sync(Some(&recreated)).unwrap();
        assert!(routes.installed.is_empty());
        routes.sync(None).unwrap();
        assert_eq!(routes.host_uid, None);
    }
}
