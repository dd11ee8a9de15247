//! The YAML of one Service port and its endpoints, as a user would `podswitchctl apply -f`
//! it: the Service (ClusterIP, NodePort, externalIPs, LoadBalancer ingress, traffic policies,
//! ClientIP affinity) and its endpoints either as an EndpointSlice with per-endpoint
//! conditions and node names, or as a legacy `Endpoints` object.

use podswitch_proto::{FrontendKind, L4Protocol, ServiceInfo};
use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

/// One Service port of one Service, and the EndpointSlice that goes with it: the YAML a user
/// would `podswitchctl apply -f`. The Service has no selector, so its endpoints are exactly
/// the slice's (the pattern Kubernetes documents for Services backed by hand-made slices).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceManifest {
    /// `metadata.name` (namespace `default`).
    pub name: String,
    /// `spec.clusterIP`.
    pub cluster_ip: Ipv4Addr,
    /// The port's protocol.
    pub protocol: L4Protocol,
    /// `spec.ports[0].port`.
    pub port: u16,
    /// `spec.ports[0].targetPort`, and the slice's port.
    pub target_port: u16,
    /// `type: NodePort` with this `nodePort`.
    pub node_port: Option<u16>,
    /// `sessionAffinity: ClientIP` with this `timeoutSeconds`.
    pub affinity_timeout_secs: Option<u32>,
    /// `spec.externalIPs`.
    pub external_ips: Vec<Ipv4Addr>,
    /// `type: LoadBalancer` with these `status.loadBalancer.ingress[].ip` (empty: not a
    /// LoadBalancer).
    pub load_balancer_ips: Vec<Ipv4Addr>,
    /// `internalTrafficPolicy: Local` (else the default, `Cluster`).
    pub internal_local: bool,
    /// `externalTrafficPolicy: Local` (else the default, `Cluster`).
    pub external_local: bool,
}

/// One endpoint of an EndpointSlice: its address, conditions and node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SliceEndpoint {
    /// `addresses[0]`.
    pub ip: Ipv4Addr,
    /// `conditions.ready`.
    pub ready: bool,
    /// `conditions.serving`.
    pub serving: bool,
    /// `conditions.terminating`.
    pub terminating: bool,
    /// `nodeName`, if set.
    pub node_name: Option<String>,
}

impl SliceEndpoint {
    /// A ready endpoint (serving, not terminating), no node name.
    pub fn ready(ip: Ipv4Addr) -> SliceEndpoint {
        SliceEndpoint {
            ip,
            ready: true,
            serving: true,
            terminating: false,
            node_name: None,
        }
    }

    /// A pod being deleted that still serves: ready false, serving true, terminating true
    /// (what the EndpointSlice controller publishes during graceful termination).
    pub fn terminating(ip: Ipv4Addr) -> SliceEndpoint {
        SliceEndpoint {
            ready: false,
            terminating: true,
            ..SliceEndpoint::ready(ip)
        }
    }

    /// A pod that is not ready and not terminating (failing its readiness probe).
    pub fn not_ready(ip: Ipv4Addr) -> SliceEndpoint {
        SliceEndpoint {
            ready: false,
            serving: false,
            ..SliceEndpoint::ready(ip)
        }
    }

    /// The same endpoint with `nodeName: node`.
    pub fn on(self, node: &str) -> SliceEndpoint {
        SliceEndpoint {
            node_name: Some(node.to_string()),
            ..self
        }
    }
}

impl ServiceManifest {
    /// A ClusterIP Service `name` at `cluster_ip:port` → endpoints' `target_port`.
    pub fn new(
        name: &str,
        protocol: L4Protocol,
        cluster_ip: Ipv4Addr,
        port: u16,
        target_port: u16,
    ) -> ServiceManifest {
        ServiceManifest {
            name: name.to_string(),
            cluster_ip,
            protocol,
            port,
            target_port,
            node_port: None,
            affinity_timeout_secs: None,
            external_ips: Vec::new(),
            load_balancer_ips: Vec::new(),
            internal_local: false,
            external_local: false,
        }
    }

    /// The ClusterIP frontend.
    pub fn vip(&self) -> SocketAddr {
        SocketAddr::from((self.cluster_ip, self.port))
    }

    /// The Service object.
    pub fn service_yaml(&self) -> String {
        let type_ = if !self.load_balancer_ips.is_empty() {
            "LoadBalancer"
        } else if self.node_port.is_some() {
            "NodePort"
        } else {
            "ClusterIP"
        };
        let mut spec = format!(
            "  type: {type_}\n  clusterIP: {}\n  ports:\n  - port: {}\n    targetPort: {}\n    \
             protocol: {}\n",
            self.cluster_ip, self.port, self.target_port, self.protocol
        );
        if let Some(node_port) = self.node_port {
            let _ = writeln!(spec, "    nodePort: {node_port}");
        }
        if let Some(secs) = self.affinity_timeout_secs {
            let _ = write!(
                spec,
                "  sessionAffinity: ClientIP\n  sessionAffinityConfig:\n    clientIP:\n      \
                 timeoutSeconds: {secs}\n"
            );
        }
        if !self.external_ips.is_empty() {
            let _ = writeln!(spec, "  externalIPs: {}", yaml_list(&self.external_ips));
        }
        if self.internal_local {
            spec.push_str("  internalTrafficPolicy: Local\n");
        }
        if self.external_local {
            spec.push_str("  externalTrafficPolicy: Local\n");
        }
        let mut yaml = format!(
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: {}\n  namespace: default\nspec:\n{spec}",
            self.name
        );
        if !self.load_balancer_ips.is_empty() {
            yaml.push_str("status:\n  loadBalancer:\n    ingress:\n");
            for ip in &self.load_balancer_ips {
                let _ = writeln!(yaml, "    - ip: \"{ip}\"");
            }
        }
        yaml
    }

    /// The Service's one EndpointSlice (`<name>-1`) with `endpoints`, all ready.
    pub fn slice_yaml(&self, endpoints: &[Ipv4Addr]) -> String {
        let endpoints: Vec<SliceEndpoint> = endpoints
            .iter()
            .map(|&ip| SliceEndpoint::ready(ip))
            .collect();
        self.slice_yaml_with(&endpoints)
    }

    /// The Service's one EndpointSlice (`<name>-1`) with `endpoints` as they are described.
    pub fn slice_yaml_with(&self, endpoints: &[SliceEndpoint]) -> String {
        let mut list = String::new();
        for e in endpoints {
            let _ = write!(
                list,
                "\n- addresses: [\"{}\"]\n  conditions: {{ready: {}, serving: {}, terminating: {}}}",
                e.ip, e.ready, e.serving, e.terminating
            );
            if let Some(node) = &e.node_name {
                let _ = write!(list, "\n  nodeName: {node}");
            }
        }
        if list.is_empty() {
            list.push_str(" []");
        }
        format!(
            "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: {name}-1\n  \
             namespace: default\n  labels:\n    kubernetes.io/service-name: {name}\n\
             addressType: IPv4\nports:\n- port: {port}\n  protocol: {proto}\nendpoints:{list}\n",
            name = self.name,
            port = self.target_port,
            proto = self.protocol
        )
    }

    /// The Service's legacy `Endpoints` object (same name, no EndpointSlice): one subset with
    /// `ready` as `addresses` and `not_ready` as `notReadyAddresses`, at the target port.
    pub fn endpoints_yaml(&self, ready: &[Ipv4Addr], not_ready: &[Ipv4Addr]) -> String {
        let addresses = |ips: &[Ipv4Addr]| {
            let items: Vec<String> = ips.iter().map(|ip| format!("{{ip: \"{ip}\"}}")).collect();
            format!("[{}]", items.join(", "))
        };
        format!(
            "apiVersion: v1\nkind: Endpoints\nmetadata:\n  name: {}\n  namespace: default\n\
             subsets:\n- addresses: {}\n  notReadyAddresses: {}\n  ports:\n  - port: {}\n    \
             protocol: {}\n",
            self.name,
            addresses(ready),
            addresses(not_ready),
            self.target_port,
            self.protocol
        )
    }

    /// The Service and its slice, as one multi-document manifest.
    pub fn yaml(&self, endpoints: &[Ipv4Addr]) -> String {
        format!("{}---\n{}", self.service_yaml(), self.slice_yaml(endpoints))
    }

    /// The Service and its slice of `endpoints` as described, as one multi-document manifest.
    pub fn yaml_with(&self, endpoints: &[SliceEndpoint]) -> String {
        format!(
            "{}---\n{}",
            self.service_yaml(),
            self.slice_yaml_with(endpoints)
        )
    }

    /// The endpoints as podswitchd should hold them: each address at the target port.
    pub fn backends(&self, endpoints: &[Ipv4Addr]) -> Vec<SocketAddrV4> {
        endpoints
            .iter()
            .map(|ip| SocketAddrV4::new(*ip, self.target_port))
            .collect()
    }

    /// Whether `info` is this Service port (by its ClusterIP frontend and protocol).
    pub fn is(&self, info: &ServiceInfo) -> bool {
        info.spec.protocol == self.protocol
            && info.spec.frontends.iter().any(|f| {
                f.kind == FrontendKind::ClusterIp && f.ip == self.cluster_ip && f.port == self.port
            })
    }
}

/// `["a", "b"]`.
fn yaml_list(ips: &[Ipv4Addr]) -> String {
    let items: Vec<String> = ips.iter().map(|ip| format!("\"{ip}\"")).collect();
    format!("[{}]", items.join(", "))
}
