//! Routes the node's own traffic to Service externalIPs and LoadBalancer ingress IPs into the
//! host port, as the Service CIDR route does for ClusterIPs: one `<ip>/32 dev psw0 scope link`
//! per such address outside the Service CIDR, so host processes (and hostNetwork pods) reach
//! them through the switch, which answers ARP for them there and translates the connection.
//! The daemon's apply path calls [`FrontendRoutes::sync`] after each successful transaction;
//! only the difference from what it installed is sent to the kernel. Workers never see it.
//!
//! The routes live on the host port's device: they go with it (the daemon's exit, the port
//! re-created), so what was installed is forgotten when the host port's uid changes.

use super::state::Config;
use podswitch_netlink::Netlink;
use podswitch_proto::{FrontendKind, PortRole};
use std::collections::BTreeSet;
use std::net::Ipv4Addr;

/// The routes the configuration calls for: through which host port, to which addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Wanted {
    /// The host port's device name.
    pub host: String,
    /// Its uid (a re-created port is a new device, with none of the old routes).
    pub host_uid: u32,
    /// Every externalIP and LoadBalancer ingress IP outside the Service CIDR.
    pub ips: BTreeSet<Ipv4Addr>,
}

/// What the daemon installed in the kernel.
#[derive(Debug, Default)]
pub(super) struct FrontendRoutes {
    /// The host port (uid) the routes below are on.
    host_uid: Option<u32>,
    installed: BTreeSet<Ipv4Addr>,
}

impl FrontendRoutes {
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
        if self.installed == want.ips {
            return Ok(());
        }
        let mut nl = Netlink::new()?;
        let gone: Vec<Ipv4Addr> = self.installed.difference(&want.ips).copied().collect();
        for ip in gone {
            match nl.route_del_v4(ip, 32) {
                Ok(()) => {}
                // Already gone (an operator's `ip route del`): what we wanted.
                Err(e) if e.errno() == Some(libc::ESRCH) => {}
                Err(e) => return Err(e),
            }
            self.installed.remove(&ip);
        }
        let new: Vec<Ipv4Addr> = want.ips.difference(&self.installed).copied().collect();
        if new.is_empty() {
            return Ok(());
        }
        let Some(index) = nl.link_index(&want.host)? else {
            return Ok(()); // the device is being re-created: the next apply routes
        };
        for ip in new {
            nl.route_replace_v4(ip, 32, None, Some(index), true)?;
            self.installed.insert(ip);
        }
        Ok(())
    }
}

/// The routes `config` calls for: none without a host port; else every externalIP and
/// LoadBalancer ingress IP of its Services that the Service CIDR route does not cover.
pub(super) fn wanted(config: &Config) -> Option<Wanted> {
    let host = config
        .ports
        .values()
        .find(|p| matches!(p.spec.role, PortRole::Host { .. }))?;
    let service_cidr = config.node.as_ref().and_then(|n| n.service_cidr);
    let ips = config
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
        .collect();
    Some(Wanted {
        host: host.spec.name.clone(),
        host_uid: host.uid,
        ips,
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
            want.ips,
            BTreeSet::from([
                Ipv4Addr::new(198, 51, 100, 10),
                Ipv4Addr::new(203, 0, 113, 10)
            ]),
            "not the ClusterIP, not one inside the Service CIDR, not the NodePort's 0.0.0.0"
        );
    }

    #[test]
    fn nothing_is_routed_without_a_host_port() {
        assert_eq!(wanted(&config(false)), None);
    }

    #[test]
    fn sync_to_what_is_installed_does_not_touch_the_kernel() {
        // Returns before opening a netlink socket, so it passes in any namespace.
        let mut routes = FrontendRoutes::default();
        let want = Wanted {
            host: "psw0".into(),
            host_uid: 7,
            ips: BTreeSet::new(),
        };
        routes.sync(Some(&want)).unwrap();
        assert_eq!(routes.host_uid, Some(7));
        routes.installed.insert(Ipv4Addr::new(203, 0, 113, 10));
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
