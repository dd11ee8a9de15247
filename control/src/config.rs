//! `podswitch-control`'s configuration: one serde struct with defaults, read from a TOML file
//! and overridden by flags (see `podswitch-control --help`, `--print-config`).
//!
//! [`ControlConfig`] is what the user writes (optional values stay optional);
//! [`ControlConfig::settings`] checks it and resolves the defaults that depend on other values
//! (the gateway, the node name) into [`Settings`], which is what the rest of the crate uses.

use podswitch_proto::{ifname_problem, Ipv4Prefix, MTU_RANGE};
use serde::{Deserialize, Serialize};
use std::net::Ipv4Addr;
use std::path::PathBuf;

/// Process settings of the control process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ControlConfig {
    /// The Kubernetes node this process serves; empty means the machine's hostname.
    pub node_name: String,
    /// The node's pod CIDR (required), e.g. `10.244.1.0/24`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod_cidr: Option<Ipv4Prefix>,
    /// The cluster's Service CIDR.
    pub service_cidr: Ipv4Prefix,
    /// The cluster's pod CIDR, of which `pod_cidr` is this node's share. Default:
    /// [`DEFAULT_CLUSTER_CIDR`] (kubeadm's and flannel's 10.244.0.0/16) when it contains
    /// `pod_cidr`, else `pod_cidr` itself (a one-node cluster), so that `--pod-cidr` alone
    /// always starts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster_cidr: Option<Ipv4Prefix>,
    /// The node's own address (for multi-node routing; optional today).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_ip: Option<Ipv4Addr>,
    /// The pods' gateway (the switch); default: the first host address of `pod_cidr`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gateway: Option<Ipv4Addr>,
    /// Directory of the state database (`state.redb`).
    pub state_dir: PathBuf,
    /// `podswitchd`'s socket.
    pub dataplane_socket: PathBuf,
    /// This process's socket (mode 0600), for the CNI plugin and `podswitchctl`.
    pub socket: PathBuf,
    /// Name of the host port (the tap in the node's namespace holding the gateway address).
    pub host_port: String,
    /// MTU of pod interfaces and the host port, unless the CNI config asks for another.
    pub mtu: u16,
    /// How often the dataplane's generation is compared with control's, in milliseconds.
    pub resync_interval_ms: u64,
    /// The uplink port's name (the switch's link to the other nodes; for a tap port, the
    /// device's name). Empty: no uplink, a one-node cluster (Node manifests are stored, no
    /// route is made).
    pub uplink: String,
    /// The switch's MAC on the uplink; default `0a:58:` + the four octets of `node_ip`.
    #[serde(
        with = "podswitch_proto::net::mac::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub uplink_mac: Option<podswitch_proto::MacAddr>,
    /// The uplink's MTU; default `mtu`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uplink_mtu: Option<u16>,
    /// How packets cross to other nodes: `direct` (routed to the other node's InternalIP;
    /// the underlay must carry pod addresses) or `vxlan`.
    pub encap: EncapMode,
    /// The VXLAN Network Identifier (`encap = "vxlan"`), the same on every node.
    pub vni: u32,
    /// The VXLAN UDP port, the same on every node.
    pub vxlan_port: u16,
    /// What the uplink port is: `tap` (a tap device the switch creates in its namespace, for
    /// the node's kernel to route to the underlay) or `afxdp` (AF_XDP sockets bound to the
    /// existing interface named `uplink` in podswitchd's namespace — a NIC, or a veth end —
    /// which the switch then owns: it sets its MAC to `uplink_mac` and its MTU; any MTU
    /// in [`MTU_RANGE`], up to 9000, frames over one UMEM chunk crossing in several).
    pub uplink_kind: UplinkKind,
    /// The underlay router on the uplink's segment: the other nodes whose InternalIP is
    /// outside the segment (`node_ip`/`uplink_prefix_len`) are reached through it, and with
    /// `egress = "uplink"` everything outside the cluster. Needs `uplink_prefix_len`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uplink_gateway: Option<Ipv4Addr>,
    /// The prefix length of the uplink's segment, the subnet `node_ip` is on (e.g. 24).
    /// Without `uplink_gateway` every other node is taken to be on the segment.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uplink_prefix_len: Option<u8>,
    /// How pods (and the node, through the host port) reach addresses outside the cluster:
    /// `host` (the default route leads to the host port; the node's kernel forwards and
    /// masquerades) or `uplink` (out of the uplink to `uplink_gateway`, or straight to an
    /// address on the segment, each new connection source-translated to `node_ip`; for an
    /// AF_XDP uplink that owns the node's NIC, whose kernel then has no way out).
    pub egress: EgressMode,
}

/// `egress` in the configuration.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum EgressMode {
    /// Through the host port and the node's kernel.
    #[default]
    Host,
    /// Out of the uplink, SNAT to the node's address.
    Uplink,
}

/// `uplink_kind` in the configuration.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum UplinkKind {
    /// A tap device created by the switch.
    #[default]
    Tap,
    /// AF_XDP sockets on an existing interface.
    Afxdp,
}

/// `encap` in the configuration.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum EncapMode {
    /// Routed.
    #[default]
    Direct,
    /// VXLAN.
    Vxlan,
}

/// The uplink as the configuration resolves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UplinkSettings {
    /// Port name.
    pub port: String,
    /// The switch's address on it (`node_ip`).
    pub ip: Ipv4Addr,
    /// The switch's MAC on it.
    pub mac: podswitch_proto::MacAddr,
    /// Its MTU.
    pub mtu: u16,
    /// Routed or VXLAN.
    pub encap: podswitch_proto::Encap,
    /// Tap or AF_XDP.
    pub kind: podswitch_proto::PortKind,
    /// The uplink's segment (`node_ip`/`uplink_prefix_len`, host bits clear), when given.
    pub segment: Option<Ipv4Prefix>,
    /// The underlay router on the segment, when given.
    pub gateway: Option<Ipv4Addr>,
    /// Addresses outside the cluster are reached out of the uplink (`egress = "uplink"`).
    pub egress: bool,
}

impl UplinkSettings {
    /// The underlay router in front of `ip`: `None` when `ip` is on the uplink's segment, or
    /// no gateway is configured (every node on one segment).
    pub fn gateway_for(&self, ip: Ipv4Addr) -> Option<Ipv4Addr> {
        let segment = self.segment?;
        self.gateway.filter(|_| !segment.contains(ip))
    }
}

impl Default for ControlConfig {
    fn default() -> Self {
        Self {
            node_name: String::new(),
            pod_cidr: None,
            service_cidr: Ipv4Prefix {
                addr: Ipv4Addr::new(10, 96, 0, 0),
                len: 12,
            },
            cluster_cidr: None,
            node_ip: None,
            gateway: None,
            state_dir: PathBuf::from("/var/lib/podswitch"),
            dataplane_socket: PathBuf::from(podswitch_proto::DEFAULT_DATAPLANE_SOCKET),
            socket: PathBuf::from(podswitch_proto::control::DEFAULT_CONTROL_SOCKET),
            host_port: "psw0".into(),
            mtu: podswitch_proto::DEFAULT_MTU,
            resync_interval_ms: 500,
            uplink: String::new(),
            uplink_mac: None,
            uplink_mtu: None,
            encap: EncapMode::Direct,
            vni: 1,
            vxlan_port: 4789,
            uplink_kind: UplinkKind::Tap,
            uplink_gateway: None,
            uplink_prefix_len: None,
            egress: EgressMode::Host,
        }
    }
}

/// The cluster CIDR assumed when none is given and it contains the node's pod CIDR.
pub const DEFAULT_CLUSTER_CIDR: Ipv4Prefix = Ipv4Prefix {
    addr: Ipv4Addr::new(10, 244, 0, 0),
    len: 16,
};

/// The checked configuration, defaults resolved. Everything the crate needs beyond paths.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Node name.
    pub node_name: String,
    /// The node's pod CIDR, host bits clear.
    pub pod_cidr: Ipv4Prefix,
    /// The gateway inside it.
    pub gateway: Ipv4Addr,
    /// Service CIDR.
    pub service_cidr: Ipv4Prefix,
    /// The address the node's kernel redirects its own NodePort connections to (and where the
    /// switch matches NodePort frontends): the last host address of `service_cidr`
    /// (10.96.255.254 for 10.96.0.0/16), the end of the range an API server allocates
    /// ClusterIPs from last, so the least likely to be taken; apply refuses it as a ClusterIP.
    pub node_port_ip: Ipv4Addr,
    /// Cluster CIDR.
    pub cluster_cidr: Ipv4Prefix,
    /// Node IP, if configured.
    pub node_ip: Option<Ipv4Addr>,
    /// Host port name.
    pub host_port: String,
    /// Default MTU.
    pub mtu: u16,
    /// Resync period.
    pub resync_interval: std::time::Duration,
    /// State database directory.
    pub state_dir: PathBuf,
    /// `podswitchd`'s socket.
    pub dataplane_socket: PathBuf,
    /// Own socket.
    pub socket: PathBuf,
    /// The uplink to other nodes, if any.
    pub uplink: Option<UplinkSettings>,
}

/// A configuration value that makes no sense; the message names the key.
#[derive(Debug, thiserror::Error)]
#[error("config: {0}")]
pub struct ConfigError(String);

impl ControlConfig {
    /// Reads a TOML file's text; missing keys take their defaults, unknown keys are refused.
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError(e.to_string()))
    }

    /// Checks every value and resolves the dependent defaults. The node name defaults to the
    /// hostname, as kubelet's does.
    pub fn settings(&self) -> Result<Settings, ConfigError> {
        let err = |m: String| Err(ConfigError(m));
        let Some(pod_cidr) = self.pod_cidr else {
            return err(
                "pod_cidr is required: the node's pod CIDR, e.g. --pod-cidr 10.244.1.0/24 \
                 (the Node's spec.podCIDR)"
                    .into(),
            );
        };
        if pod_cidr.network() != pod_cidr {
            return err(format!(
                "pod_cidr = {pod_cidr} has host bits set: did you mean {}?",
                pod_cidr.network()
            ));
        }
        if pod_cidr.len > 30 {
            return err(format!(
                "pod_cidr = {pod_cidr} is too small: a /30 or larger leaves room for the \
                 network, gateway and broadcast addresses and at least one pod"
            ));
        }
        let cluster_cidr = self.cluster_cidr.unwrap_or_else(|| {
            if DEFAULT_CLUSTER_CIDR.contains(pod_cidr.addr)
                && DEFAULT_CLUSTER_CIDR.len <= pod_cidr.len
            {
                DEFAULT_CLUSTER_CIDR
            } else {
                pod_cidr
            }
        });
        for (key, cidr) in [
            ("service_cidr", self.service_cidr),
            ("cluster_cidr", cluster_cidr),
        ] {
            if cidr.network() != cidr {
                return err(format!(
                    "{key} = {cidr} has host bits set: did you mean {}?",
                    cidr.network()
                ));
            }
        }
        if self.service_cidr.len > 30 {
            return err(format!(
                "service_cidr = {} is too small: a /30 or larger leaves room for ClusterIPs \
                 and the NodePort address (its last host address)",
                self.service_cidr
            ));
        }
        if !(cluster_cidr.len <= pod_cidr.len && cluster_cidr.contains(pod_cidr.addr)) {
            return err(format!(
                "pod_cidr = {pod_cidr} is not inside cluster_cidr = {cluster_cidr}: give the \
                 cluster's pod CIDR that contains it (--cluster-cidr), or leave cluster_cidr \
                 unset to use {pod_cidr}"
            ));
        }
        if self.service_cidr.overlaps(&cluster_cidr) {
            return err(format!(
                "service_cidr = {} overlaps cluster_cidr = {cluster_cidr}: Service VIPs and pod \
                 addresses must be distinct; give another --service-cidr",
                self.service_cidr
            ));
        }
        let first_host = Ipv4Addr::from(u32::from(pod_cidr.addr) + 1);
        let gateway = self.gateway.unwrap_or(first_host);
        if !pod_cidr.is_host(gateway) {
            return err(format!(
                "gateway = {gateway} is not a host address of pod_cidr = {pod_cidr}"
            ));
        }
        if let Some(problem) = ifname_problem(&self.host_port) {
            return err(format!("host_port = {:?}: {problem}", self.host_port));
        }
        if !MTU_RANGE.contains(&self.mtu) {
            return err(format!(
                "mtu = {} is out of range {}..={}",
                self.mtu,
                MTU_RANGE.start(),
                MTU_RANGE.end()
            ));
        }
        if !(10..=3_600_000).contains(&self.resync_interval_ms) {
            return err(format!(
                "resync_interval_ms = {} is out of range 10..=3600000",
                self.resync_interval_ms
            ));
        }
        for (key, path) in [
            ("state_dir", &self.state_dir),
            ("dataplane_socket", &self.dataplane_socket),
            ("socket", &self.socket),
        ] {
            if path.as_os_str().is_empty() {
                return err(format!("{key} is empty: give a path"));
            }
        }
        if self.socket == self.dataplane_socket {
            return err(format!(
                "socket = {} is also dataplane_socket: control and podswitchd need their own",
                self.socket.display()
            ));
        }
        let uplink = self.uplink_settings(pod_cidr, cluster_cidr)?;
        let node_name = if self.node_name.is_empty() {
            hostname().ok_or_else(|| {
                ConfigError("node_name is empty and the hostname cannot be read: set it".into())
            })?
        } else {
            self.node_name.clone()
        };
        Ok(Settings {
            node_name,
            pod_cidr,
            gateway,
            service_cidr: self.service_cidr,
            node_port_ip: Ipv4Addr::from(u32::from(self.service_cidr.broadcast()) - 1),
            cluster_cidr,
            node_ip: self.node_ip,
            host_port: self.host_port.clone(),
            mtu: self.mtu,
            resync_interval: std::time::Duration::from_millis(self.resync_interval_ms),
            state_dir: self.state_dir.clone(),
            dataplane_socket: self.dataplane_socket.clone(),
            socket: self.socket.clone(),
            uplink,
        })
    }

    fn uplink_settings(
        &self,
        pod_cidr: Ipv4Prefix,
        cluster_cidr: Ipv4Prefix,
    ) -> Result<Option<UplinkSettings>, ConfigError> {
        let err = |m: String| Err(ConfigError(m));
        if self.uplink.is_empty() {
            let set = [
                ("uplink_gateway", self.uplink_gateway.is_some()),
                ("uplink_prefix_len", self.uplink_prefix_len.is_some()),
                ("egress = \"uplink\"", self.egress == EgressMode::Uplink),
            ];
            if let Some((key, _)) = set.iter().find(|(_, set)| *set) {
                return err(format!("{key} needs an uplink (--uplink)"));
            }
            return Ok(None);
        }
        if let Some(problem) = ifname_problem(&self.uplink) {
            return err(format!("uplink = {:?}: {problem}", self.uplink));
        }
        if self.uplink == self.host_port {
            return err(format!(
                "uplink = {:?} is also host_port: the uplink is the link to the other nodes",
                self.uplink
            ));
        }
        let Some(ip) = self.node_ip else {
            return err(format!(
                "uplink = {:?} needs node_ip: the node's InternalIP, the switch's own address \
                 on the uplink (--node-ip)",
                self.uplink
            ));
        };
        if pod_cidr.contains(ip) {
            return err(format!("node_ip = {ip} is inside pod_cidr = {pod_cidr}"));
        }
        let mac = self
            .uplink_mac
            .unwrap_or_else(|| crate::compile::pod_mac(ip));
        if !mac.is_unicast() {
            return err(format!("uplink_mac = {mac} is not a unicast MAC"));
        }
        let mtu = self.uplink_mtu.unwrap_or(self.mtu);
        if !MTU_RANGE.contains(&mtu) {
            return err(format!("uplink_mtu = {mtu} is out of range"));
        }
        let kind = match self.uplink_kind {
            UplinkKind::Tap => podswitch_proto::PortKind::Tap,
            UplinkKind::Afxdp => podswitch_proto::PortKind::Afxdp,
        };
        let encap = match self.encap {
            EncapMode::Direct => podswitch_proto::Encap::Direct,
            EncapMode::Vxlan => {
                if self.vni > 0x00ff_ffff {
                    return err(format!("vni = {} is not a 24-bit number", self.vni));
                }
                if self.vxlan_port == 0 {
                    return err("vxlan_port = 0: give a UDP port (4789 is VXLAN's)".into());
                }
                if mtu < 68 + 50 {
                    return err(format!(
                        "uplink_mtu = {mtu} leaves no room for VXLAN's 50 bytes"
                    ));
                }
                podswitch_proto::Encap::Vxlan {
                    vni: self.vni,
                    port: self.vxlan_port,
                }
            }
        };
        let segment = match self.uplink_prefix_len {
            None => None,
            Some(len @ 1..=32) => Some(Ipv4Prefix { addr: ip, len }.network()),
            Some(len) => {
                return err(format!(
                    "uplink_prefix_len = {len} is out of range 1..=32: the length of the \
                     subnet node_ip = {ip} is on"
                ))
            }
        };
        let gateway = match (self.uplink_gateway, segment) {
            (None, None) => None,
            (None, Some(segment)) => {
                return err(format!(
                    "uplink_prefix_len = {} does nothing without uplink_gateway: give the \
                     router of {segment} too, or leave both out (every node on one segment)",
                    segment.len
                ))
            }
            (Some(g), None) => {
                return err(format!(
                    "uplink_gateway = {g} needs uplink_prefix_len: the length of node_ip's \
                     subnet, to know which nodes are on it"
                ))
            }
            (Some(g), Some(segment)) => {
                // A /32 (a cloud's host-route address) has its gateway off the segment, on
                // link all the same; a /31 (RFC 3021) has no network or broadcast address.
                let on_segment = match segment.len {
                    32 => true,
                    31 => segment.contains(g),
                    _ => segment.is_host(g),
                };
                if !on_segment || g == ip {
                    return err(format!(
                        "uplink_gateway = {g} is not another host address of the uplink's \
                         segment {segment} (node_ip = {ip})"
                    ));
                }
                if pod_cidr.contains(g) {
                    return err(format!(
                        "uplink_gateway = {g} is inside pod_cidr = {pod_cidr}"
                    ));
                }
                Some(g)
            }
        };
        if let Some(segment) = segment {
            for (key, cidr) in [
                ("cluster_cidr", cluster_cidr),
                ("service_cidr", self.service_cidr),
            ] {
                if segment.overlaps(&cidr) {
                    return err(format!(
                        "the uplink's segment {segment} (node_ip/uplink_prefix_len) overlaps \
                         {key} = {cidr}: the underlay's addresses and the cluster's must be \
                         distinct"
                    ));
                }
            }
        }
        let egress = self.egress == EgressMode::Uplink;
        if egress && gateway.is_none() {
            return err(
                "egress = \"uplink\" needs uplink_gateway (and uplink_prefix_len): the \
                 router that leads outside the cluster"
                    .into(),
            );
        }
        Ok(Some(UplinkSettings {
            port: self.uplink.clone(),
            ip,
            mac,
            mtu,
            encap,
            kind,
            segment,
            gateway,
            egress,
        }))
    }

    /// The configuration with its resolved defaults written in (what `--print-config` shows).
    pub fn resolved(&self) -> Result<Self, ConfigError> {
        let s = self.settings()?;
        Ok(Self {
            node_name: s.node_name,
            gateway: Some(s.gateway),
            cluster_cidr: Some(s.cluster_cidr),
            ..self.clone()
        })
    }
}

fn hostname() -> Option<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    let name = name.trim();
    (!name.is_empty()).then(|| name.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_cidr() -> ControlConfig {
        ControlConfig {
            node_name: "n1".into(),
            pod_cidr: Some("10.244.1.0/24".parse().unwrap()),
            ..Default::default()
        }
    }

    #[test]
    fn an_uplink_needs_the_node_ip_and_resolves_its_mac_and_encapsulation() {
        let mut c = with_cidr();
        assert!(
            c.settings().unwrap().uplink.is_none(),
            "no uplink by default"
        );
        c.uplink = "eth1".into();
        let err = c.settings().unwrap_err().to_string();
        assert!(err.contains("needs node_ip"), "{err}");
        c.node_ip = Some(Ipv4Addr::new(10, 244, 1, 9));
        let err = c.settings().unwrap_err().to_string();
        assert!(err.contains("inside pod_cidr"), "{err}");
        c.node_ip = Some(Ipv4Addr::new(192, 168, 1, 1));
        let u = c.settings().unwrap().uplink.unwrap();
        assert_eq!(u.mac.to_string(), "0a:58:c0:a8:01:01");
        assert_eq!((u.mtu, u.encap), (1500, podswitch_proto::Encap::Direct));
        let c = ControlConfig::from_toml(
            "node_name = \"a\"\npod_cidr = \"10.244.7.0/24\"\nnode_ip = \"192.168.1.7\"\n\
             uplink = \"eth1\"\nencap = \"vxlan\"\nvni = 7\nuplink_mac = \"02:00:00:00:00:07\"\n",
        )
        .unwrap();
        let u = c.settings().unwrap().uplink.unwrap();
        assert_eq!(
            u.encap,
            podswitch_proto::Encap::Vxlan { vni: 7, port: 4789 }
        );
        assert_eq!(u.mac.to_string(), "02:00:00:00:00:07");
        let mut bad = c.clone();
        bad.vni = 1 << 24;
        assert!(bad.settings().unwrap_err().to_string().contains("24-bit"));
        let mut bad = c.clone();
        bad.uplink = "psw0".into();
        assert!(bad
            .settings()
            .unwrap_err()
            .to_string()
            .contains("also host_port"));
        assert_eq!(
            c.settings().unwrap().uplink.unwrap().kind,
            podswitch_proto::PortKind::Tap,
            "a tap uplink by default"
        );
    }

    #[test]
    fn egress_through_the_uplink_needs_its_gateway_on_the_segment_and_compiles_its_routes() {
        use podswitch_proto::{Op, RouteTarget};
        let base = "node_name = \"a\"\npod_cidr = \"10.244.7.0/24\"\nnode_ip = \"192.168.1.7\"\n";
        let cfg = |extra: &str| ControlConfig::from_toml(&format!("{base}{extra}")).unwrap();
        let refused = |extra: &str, needle: &str| {
            let e = cfg(extra).settings().unwrap_err().to_string();
            assert!(e.contains(needle), "{extra}: {e}");
        };
        let up = "uplink = \"eth1\"\n";
        refused(
            "egress = \"uplink\"\n",
            "egress = \"uplink\" needs an uplink",
        );
        refused(
            "uplink_gateway = \"192.168.1.254\"\n",
            "uplink_gateway needs an uplink",
        );
        refused(
            &format!("{up}egress = \"uplink\"\n"),
            "needs uplink_gateway",
        );
        refused(
            &format!("{up}uplink_gateway = \"192.168.1.254\"\n"),
            "needs uplink_prefix_len",
        );
        refused(
            &format!("{up}uplink_gateway = \"192.168.2.254\"\nuplink_prefix_len = 24\n"),
            "not another host address of the uplink's segment 192.168.1.0/24",
        );
        refused(
            &format!("{up}uplink_gateway = \"192.168.1.7\"\nuplink_prefix_len = 24\n"),
            "not another host address",
        );
        refused(
            &format!("{up}uplink_gateway = \"192.168.1.254\"\nuplink_prefix_len = 33\n"),
            "out of range 1..=32",
        );
        refused(
            &format!("{up}uplink_prefix_len = 24\n"),
            "does nothing without uplink_gateway",
        );
        let far = ControlConfig::from_toml(
            "node_name = \"a\"\npod_cidr = \"10.244.7.0/24\"\nnode_ip = \"10.100.0.7\"\n\
             uplink = \"eth1\"\nuplink_gateway = \"10.100.0.1\"\nuplink_prefix_len = 8\n",
        )
        .unwrap();
        let e = far.settings().unwrap_err().to_string();
        assert!(
            e.contains("segment 10.0.0.0/8 (node_ip/uplink_prefix_len) overlaps cluster_cidr"),
            "{e}"
        );
        // A /31 takes its other address as the gateway; a /32 any (on link, as clouds do).
        let ok = |extra: &str| cfg(&format!("{up}{extra}")).settings().unwrap();
        ok("uplink_gateway = \"192.168.1.6\"\nuplink_prefix_len = 31\n");
        refused(
            &format!("{up}uplink_gateway = \"192.168.1.5\"\nuplink_prefix_len = 31\n"),
            "not another host address",
        );
        ok("uplink_gateway = \"10.0.0.1\"\nuplink_prefix_len = 32\n");

        let gw = "uplink_gateway = \"192.168.1.254\"\nuplink_prefix_len = 24\n";
        let routes = |c: &ControlConfig| -> Vec<(String, RouteTarget)> {
            let s = c.settings().unwrap();
            let t = crate::compile::compile(&s, 1, [], [], [], []);
            t.ops
                .into_iter()
                .filter_map(|op| match op {
                    Op::AddRoute(r) => Some((r.prefix.to_string(), r.target)),
                    _ => None,
                })
                .collect()
        };
        // A gateway alone reaches far nodes; the default route stays the host's.
        let host_egress = routes(&cfg(&format!("{up}{gw}")));
        assert!(host_egress.contains(&("0.0.0.0/0".into(), RouteTarget::Host)));
        assert!(!host_egress
            .iter()
            .any(|(_, t)| matches!(t, RouteTarget::Uplink { .. })));
        let g: Ipv4Addr = "192.168.1.254".parse().unwrap();
        let uplink_egress = routes(&cfg(&format!("{up}{gw}egress = \"uplink\"\n")));
        for want in [
            ("0.0.0.0/0", RouteTarget::Uplink { gateway: Some(g) }),
            ("192.168.1.0/24", RouteTarget::Uplink { gateway: None }),
            ("192.168.1.7/32", RouteTarget::Host),
        ] {
            assert!(
                uplink_egress.contains(&(want.0.into(), want.1.clone())),
                "{want:?} in {uplink_egress:?}"
            );
        }
        assert!(
            !uplink_egress.contains(&("0.0.0.0/0".into(), RouteTarget::Host)),
            "the default route is replaced: {uplink_egress:?}"
        );
        let host_route = routes(&cfg(&format!(
            "{up}uplink_gateway = \"10.0.0.1\"\nuplink_prefix_len = 32\negress = \"uplink\"\n"
        )));
        assert!(
            host_route.contains(&("192.168.1.7/32".into(), RouteTarget::Host))
                && host_route
                    .iter()
                    .filter(|(p, _)| p == "192.168.1.7/32")
                    .count()
                    == 1,
            "a /32: no segment route beside the node's own: {host_route:?}"
        );
        let printed = toml::to_string(
            &cfg(&format!("{up}{gw}egress = \"uplink\"\n"))
                .resolved()
                .unwrap(),
        )
        .unwrap();
        assert!(printed.contains("egress = \"uplink\""), "{printed}");
    }

    #[test]
    fn an_afxdp_uplink_is_a_setting_and_takes_jumbo_frames() {
        let c = ControlConfig::from_toml(
            "node_name = \"a\"\npod_cidr = \"10.244.7.0/24\"\nnode_ip = \"192.168.1.7\"\n\
             uplink = \"eth1\"\nuplink_kind = \"afxdp\"\n",
        )
        .unwrap();
        let u = c.settings().unwrap().uplink.unwrap();
        assert_eq!(u.kind, podswitch_proto::PortKind::Afxdp);
        let port = crate::compile::uplink_port(&c.settings().unwrap()).unwrap();
        assert_eq!(
            (port.kind, port.name.as_str(), port.netns.is_none()),
            (podswitch_proto::PortKind::Afxdp, "eth1", true),
            "control asks for AF_XDP sockets on eth1 in podswitchd's namespace"
        );
        let printed = toml::to_string(&c.resolved().unwrap()).unwrap();
        assert!(printed.contains("uplink_kind = \"afxdp\""), "{printed}");
        let mut jumbo = c.clone();
        jumbo.uplink_mtu = Some(*MTU_RANGE.end());
        assert!(
            jumbo.settings().is_ok(),
            "an afxdp uplink takes 9000-byte jumbo frames (multi-buffer)"
        );
        jumbo.uplink_kind = UplinkKind::Tap;
        assert!(jumbo.settings().is_ok(), "a tap uplink takes jumbo frames");
        jumbo.uplink_mtu = Some(*MTU_RANGE.end() + 1);
        let e = jumbo.settings().unwrap_err().to_string();
        assert!(e.contains("out of range"), "{e}");
        let e = ControlConfig::from_toml("uplink_kind = \"xdp\"")
            .unwrap_err()
            .to_string();
        assert!(e.contains("uplink_kind") || e.contains("tap"), "{e}");
    }

    #[test]
    fn defaults_resolve_the_gateway_to_the_first_host() {
        let s = with_cidr().settings().unwrap();
        assert_eq!(s.gateway, Ipv4Addr::new(10, 244, 1, 1));
        assert_eq!(s.host_port, "psw0");
        assert_eq!(s.mtu, 1500);
        assert_eq!(s.resync_interval.as_millis(), 500);
        assert_eq!(s.state_dir, PathBuf::from("/var/lib/podswitch"));
        assert_eq!(s.socket, PathBuf::from("/run/podswitch/control.sock"));
    }

    #[test]
    fn toml_overrides_defaults_and_round_trips() {
        let c = ControlConfig::from_toml(
            "node_name = \"a\"\npod_cidr = \"10.244.7.0/24\"\nmtu = 1400\nstate_dir = \"/tmp/x\"\n",
        )
        .unwrap();
        assert_eq!(c.mtu, 1400);
        let printed = toml::to_string(&c.resolved().unwrap()).unwrap();
        assert!(printed.contains("gateway = \"10.244.7.1\""), "{printed}");
        let again = ControlConfig::from_toml(&printed).unwrap();
        assert_eq!(again.settings().unwrap(), c.settings().unwrap());
    }

    #[test]
    fn missing_pod_cidr_and_unknown_keys_are_named() {
        let e = ControlConfig::default().settings().unwrap_err().to_string();
        assert!(e.contains("pod_cidr is required"), "{e}");
        let e = ControlConfig::from_toml("pod_cdir = \"10.0.0.0/24\"")
            .unwrap_err()
            .to_string();
        assert!(e.contains("pod_cdir"), "{e}");
    }

    #[test]
    fn a_pod_cidr_outside_the_conventional_cluster_cidr_alone_starts() {
        // What a newcomer types: `podswitch-control --pod-cidr 10.250.0.0/24`.
        let lone = ControlConfig {
            pod_cidr: Some("10.250.0.0/24".parse().unwrap()),
            ..with_cidr()
        };
        let s = lone.settings().unwrap();
        assert_eq!(s.cluster_cidr, "10.250.0.0/24".parse().unwrap());
        assert_eq!(s.gateway, Ipv4Addr::new(10, 250, 0, 1));
        let printed = toml::to_string(&lone.resolved().unwrap()).unwrap();
        assert!(
            printed.contains("cluster_cidr = \"10.250.0.0/24\""),
            "{printed}"
        );
        // Inside 10.244.0.0/16, the conventional cluster CIDR is kept.
        assert_eq!(
            with_cidr().settings().unwrap().cluster_cidr,
            DEFAULT_CLUSTER_CIDR
        );
        // A pod CIDR larger than the default one is its own cluster CIDR.
        let big = ControlConfig {
            pod_cidr: Some("10.0.0.0/8".parse().unwrap()),
            service_cidr: "172.30.0.0/16".parse().unwrap(),
            ..with_cidr()
        };
        assert_eq!(
            big.settings().unwrap().cluster_cidr,
            "10.0.0.0/8".parse().unwrap()
        );
    }

    #[test]
    fn bad_values_name_the_key() {
        let cases: Vec<(ControlConfig, &str)> = vec![
            (
                ControlConfig {
                    pod_cidr: Some("10.244.1.5/24".parse().unwrap()),
                    ..with_cidr()
                },
                "did you mean 10.244.1.0/24",
            ),
            (
                ControlConfig {
                    pod_cidr: Some("10.9.1.0/24".parse().unwrap()),
                    cluster_cidr: Some("10.244.0.0/16".parse().unwrap()),
                    ..with_cidr()
                },
                "not inside cluster_cidr = 10.244.0.0/16: give the cluster's pod CIDR",
            ),
            (
                ControlConfig {
                    gateway: Some(Ipv4Addr::new(10, 244, 1, 255)),
                    ..with_cidr()
                },
                "gateway = 10.244.1.255",
            ),
            (
                ControlConfig {
                    mtu: 20,
                    ..with_cidr()
                },
                "mtu = 20",
            ),
            (
                ControlConfig {
                    host_port: "a-very-long-interface".into(),
                    ..with_cidr()
                },
                "host_port",
            ),
            (
                ControlConfig {
                    resync_interval_ms: 0,
                    ..with_cidr()
                },
                "resync_interval_ms",
            ),
            (
                ControlConfig {
                    service_cidr: "10.244.0.0/12".parse().unwrap(),
                    cluster_cidr: Some("10.240.0.0/12".parse().unwrap()),
                    ..with_cidr()
                },
                "has host bits set",
            ),
            (
                ControlConfig {
                    service_cidr: "10.240.0.0/12".parse().unwrap(),
                    ..with_cidr()
                },
                "overlaps",
            ),
        ];
        for (cfg, want) in cases {
            let e = cfg.settings().unwrap_err().to_string();
            assert!(e.contains(want), "{e} does not contain {want}");
        }
    }
}
