//! Stored Services, EndpointSlices and legacy Endpoints → the dataplane's [`ServiceSpec`]s,
//! one per Service port, as kube-proxy reads them: frontends from the Service, endpoints from
//! every IPv4 EndpointSlice labelled with the Service's name (legacy `Endpoints` only when the
//! Service has no slice), each endpoint with the port its slice resolved for it.
//!
//! Also the checks apply makes that Kubernetes' own validation cannot (they depend on this
//! node's settings or on what this switch implements): SCTP ports, ClusterIPs outside the
//! service CIDR or equal to the NodePort address.

use crate::config::Settings;
use crate::store::{decode_object, object_kind, StoreError};
use podswitch_k8s::k8s_openapi::api::core::v1::{EndpointSubset, ObjectReference, ServicePort};
use podswitch_k8s::k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use podswitch_k8s::k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use podswitch_k8s::{EndpointSlice, Endpoints, Service};
use podswitch_proto::{Algorithm, BackendSpec, Frontend, FrontendKind, L4Protocol, ServiceSpec};
use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;

/// The label an EndpointSlice names its Service with.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// The annotation choosing the endpoint selection (`maglev`, the default, or `random`).
pub const LB_ALGORITHM_ANNOTATION: &str = "podswitch.io/lb-algorithm";
/// `sessionAffinityConfig.clientIP.timeoutSeconds` when absent: Kubernetes' default, 3 h.
pub const DEFAULT_AFFINITY_TIMEOUT_SECS: u32 = 10_800;

/// The Service-related objects of the store, decoded.
#[derive(Debug, Default, Clone)]
pub struct ServiceObjects {
    /// Every Service.
    pub services: Vec<Service>,
    /// Every EndpointSlice.
    pub slices: Vec<EndpointSlice>,
    /// Every legacy Endpoints.
    pub endpoints: Vec<Endpoints>,
}

/// The store's key prefixes of the kinds compiled here (`ObjectKey`'s display, lower case).
pub const KINDS: [&str; 3] = ["service", "endpointslice", "endpoints"];

/// Whether a stored object key (`service default/web`) is of a kind compiled here: a change
/// to one changes the dataplane's configuration.
pub fn is_service_key(key: &str) -> bool {
    object_kind(key).is_some_and(|kind| KINDS.contains(&kind))
}

impl ServiceObjects {
    /// Decodes the stored JSON of the objects `is_service_key` selects; others are ignored.
    pub fn decode<'a>(
        objects: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<ServiceObjects, StoreError> {
        let mut out = ServiceObjects::default();
        for (key, json) in objects {
            match object_kind(key) {
                Some("service") => out.services.push(decode_object(key, json)?),
                Some("endpointslice") => out.slices.push(decode_object(key, json)?),
                Some("endpoints") => out.endpoints.push(decode_object(key, json)?),
                _ => {}
            }
        }
        Ok(out)
    }
}

/// `ns/name` of an object's metadata.
fn ns_name(meta: &ObjectMeta) -> (&str, &str) {
    (
        meta.namespace.as_deref().unwrap_or("default"),
        meta.name.as_deref().unwrap_or_default(),
    )
}

/// The Service an EndpointSlice belongs to, `(namespace, name)`: its
/// `kubernetes.io/service-name` label, in its own namespace.
pub fn slice_service(slice: &EndpointSlice) -> Option<(&str, &str)> {
    let service = slice
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(SERVICE_NAME_LABEL))?;
    Some((ns_name(&slice.metadata).0, service.as_str()))
}

/// Every Service port of `objects` as a `ServiceSpec`, sorted by name. Headless and
/// ExternalName Services, SCTP ports and ports with no IPv4 frontend compile to nothing.
pub fn compile_services(settings: &Settings, objects: &ServiceObjects) -> Vec<ServiceSpec> {
    let mut slices: HashMap<(&str, &str), Vec<&EndpointSlice>> = HashMap::new();
    for slice in &objects.slices {
        if let Some(service) = slice_service(slice) {
            slices.entry(service).or_default().push(slice);
        }
    }
    let legacy: HashMap<(&str, &str), &Endpoints> = objects
        .endpoints
        .iter()
        .map(|e| (ns_name(&e.metadata), e))
        .collect();
    let mut specs = Vec::new();
    for svc in &objects.services {
        let key = ns_name(&svc.metadata);
        let own_slices = slices.get(&key).map(Vec::as_slice).unwrap_or_default();
        specs.extend(compile_service_ports(
            settings,
            svc,
            own_slices,
            legacy.get(&key).copied(),
        ));
    }
    specs.sort_by(|a, b| a.name.cmp(&b.name));
    specs
}

/// The specs of one Service's ports: endpoints from `slices` (the EndpointSlices labelled
/// with its name in its namespace; only the IPv4 ones count) or, when no IPv4 slice is there,
/// from its legacy `Endpoints`. Depends on nothing else, so a change to another object never
/// changes them.
pub fn compile_service_ports(
    settings: &Settings,
    svc: &Service,
    slices: &[&EndpointSlice],
    legacy: Option<&Endpoints>,
) -> Vec<ServiceSpec> {
    let ipv4: Vec<&EndpointSlice> = slices
        .iter()
        .copied()
        .filter(|s| s.address_type == "IPv4")
        .collect();
    let backends = if ipv4.is_empty() {
        Backends::Legacy(legacy)
    } else {
        Backends::Slices(&ipv4)
    };
    let mut specs = Vec::new();
    compile_service(settings, svc, &backends, &mut specs);
    specs
}

/// Where a Service's endpoints come from.
enum Backends<'a> {
    Slices(&'a [&'a EndpointSlice]),
    Legacy(Option<&'a Endpoints>),
}

fn protocol(p: Option<&str>) -> Option<L4Protocol> {
    match p.unwrap_or("TCP") {
        "TCP" => Some(L4Protocol::Tcp),
        "UDP" => Some(L4Protocol::Udp),
        _ => None,
    }
}

fn ipv4(s: &str) -> Option<Ipv4Addr> {
    s.parse().ok()
}

fn port16(p: i32) -> Option<u16> {
    u16::try_from(p).ok().filter(|p| *p != 0)
}

/// Appends the specs of `svc`'s ports.
fn compile_service(
    settings: &Settings,
    svc: &Service,
    backends: &Backends<'_>,
    out: &mut Vec<ServiceSpec>,
) {
    let Some(spec) = &svc.spec else { return };
    let type_ = spec.type_.as_deref().unwrap_or("ClusterIP");
    if type_ == "ExternalName" || spec.cluster_ip.as_deref() == Some("None") {
        return;
    }
    let (ns, name) = ns_name(&svc.metadata);
    let mut cluster_ips: Vec<Ipv4Addr> = spec
        .cluster_ips
        .iter()
        .flatten()
        .chain(spec.cluster_ip.iter())
        .filter_map(|ip| ipv4(ip))
        .collect();
    cluster_ips.sort_unstable();
    cluster_ips.dedup();
    let external_ips: Vec<Ipv4Addr> = spec
        .external_ips
        .iter()
        .flatten()
        .filter_map(|ip| ipv4(ip))
        .collect();
    let lb_ips: Vec<Ipv4Addr> = if type_ == "LoadBalancer" {
        svc.status
            .as_ref()
            .and_then(|s| s.load_balancer.as_ref())
            .and_then(|lb| lb.ingress.as_ref())
            .into_iter()
            .flatten()
            .filter_map(|i| i.ip.as_deref().and_then(ipv4))
            .collect()
    } else {
        Vec::new()
    };
    let node_ports = matches!(type_, "NodePort" | "LoadBalancer");
    let affinity = (spec.session_affinity.as_deref() == Some("ClientIP")).then(|| {
        spec.session_affinity_config
            .as_ref()
            .and_then(|c| c.client_ip.as_ref())
            .and_then(|c| c.timeout_seconds)
            .and_then(|s| u32::try_from(s).ok())
            .unwrap_or(DEFAULT_AFFINITY_TIMEOUT_SECS)
    });
    let algorithm = match svc
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(LB_ALGORITHM_ANNOTATION))
        .map(String::as_str)
    {
        Some("random") => Algorithm::Random,
        _ => Algorithm::Maglev,
    };
    for port in spec.ports.iter().flatten() {
        let (Some(proto), Some(number)) = (protocol(port.protocol.as_deref()), port16(port.port))
        else {
            continue;
        };
        let port_name = port.name.as_deref().unwrap_or_default();
        let mut frontends: Vec<Frontend> = Vec::new();
        let mut add = |kind, ips: &[Ipv4Addr]| {
            frontends.extend(ips.iter().map(|&ip| Frontend {
                kind,
                ip,
                port: number,
            }));
        };
        add(FrontendKind::ClusterIp, &cluster_ips);
        add(FrontendKind::ExternalIp, &external_ips);
        add(FrontendKind::LoadBalancer, &lb_ips);
        if let Some(node_port) = port.node_port.and_then(port16).filter(|_| node_ports) {
            frontends.push(Frontend {
                kind: FrontendKind::NodePort,
                ip: Ipv4Addr::UNSPECIFIED,
                port: node_port,
            });
        }
        if frontends.is_empty() {
            continue;
        }
        let mut backend_specs = match backends {
            Backends::Slices(slices) => slice_backends(settings, ns, slices, port, proto),
            Backends::Legacy(Some(e)) => legacy_backends(settings, ns, e, port, proto),
            Backends::Legacy(None) => Vec::new(),
        };
        // One endpoint may be in two slices while the controller moves it: once is enough.
        backend_specs.sort();
        backend_specs.dedup_by(|a, b| a.ip == b.ip && a.port == b.port);
        out.push(ServiceSpec {
            name: if port_name.is_empty() {
                format!("{ns}/{name}")
            } else {
                format!("{ns}/{name}:{port_name}")
            },
            protocol: proto,
            frontends,
            backends: backend_specs,
            algorithm,
            affinity_timeout_secs: affinity,
            internal_local: spec.internal_traffic_policy.as_deref() == Some("Local"),
            external_local: spec.external_traffic_policy.as_deref() == Some("Local"),
        });
    }
}

/// The port an endpoint listens on when its slice (or subset) names none for this Service
/// port: a numeric `targetPort` (absent: `port`); a named one cannot be resolved.
fn numeric_target(port: &ServicePort) -> Option<u16> {
    match &port.target_port {
        None => port16(port.port),
        Some(IntOrString::Int(p)) => port16(*p),
        Some(IntOrString::String(s)) => s.parse().ok().and_then(port16),
    }
}

fn is_local(settings: &Settings, ip: Ipv4Addr, node: Option<&str>) -> bool {
    node == Some(settings.node_name.as_str()) || settings.pod_cidr.contains(ip)
}

fn target(ns: &str, reference: Option<&ObjectReference>) -> Option<String> {
    let r = reference?;
    let name = r.name.as_deref()?;
    Some(format!("{}/{name}", r.namespace.as_deref().unwrap_or(ns)))
}

fn slice_backends(
    settings: &Settings,
    ns: &str,
    slices: &[&EndpointSlice],
    port: &ServicePort,
    proto: L4Protocol,
) -> Vec<BackendSpec> {
    let want = port.name.as_deref().unwrap_or_default();
    let mut out = Vec::new();
    for slice in slices {
        // The slice's port numbers are the targetPorts the controller resolved for the pods
        // it holds (a named targetPort may be a different number on each pod).
        let resolved = slice.ports.iter().flatten().find(|p| {
            p.name.as_deref().unwrap_or_default() == want
                && protocol(p.protocol.as_deref()) == Some(proto)
        });
        let Some(number) = resolved
            .and_then(|p| p.port)
            .and_then(port16)
            .or_else(|| numeric_target(port))
        else {
            continue;
        };
        for endpoint in slice.endpoints.iter().flatten() {
            let c = endpoint.conditions.as_ref();
            let ready = c.and_then(|c| c.ready).unwrap_or(true);
            let serving = c.and_then(|c| c.serving).unwrap_or(ready);
            let terminating = c.and_then(|c| c.terminating).unwrap_or(false);
            for ip in endpoint.addresses.iter().filter_map(|a| ipv4(a)) {
                out.push(BackendSpec {
                    ip,
                    port: number,
                    ready,
                    serving,
                    terminating,
                    local: is_local(settings, ip, endpoint.node_name.as_deref()),
                    target: target(ns, endpoint.target_ref.as_ref()),
                });
            }
        }
    }
    out
}

fn legacy_backends(
    settings: &Settings,
    ns: &str,
    endpoints: &Endpoints,
    port: &ServicePort,
    proto: L4Protocol,
) -> Vec<BackendSpec> {
    let want = port.name.as_deref().unwrap_or_default();
    let mut out = Vec::new();
    for subset in endpoints.subsets.iter().flatten() {
        let resolved = subset.ports.iter().flatten().find(|p| {
            p.name.as_deref().unwrap_or_default() == want
                && protocol(p.protocol.as_deref()) == Some(proto)
        });
        let Some(number) = resolved
            .and_then(|p| port16(p.port))
            .or_else(|| numeric_target(port))
        else {
            continue;
        };
        push_subset(settings, ns, subset, number, &mut out);
    }
    out
}

fn push_subset(
    settings: &Settings,
    ns: &str,
    subset: &EndpointSubset,
    port: u16,
    out: &mut Vec<BackendSpec>,
) {
    let ready = subset.addresses.iter().flatten().map(|a| (a, true));
    let not_ready = subset
        .not_ready_addresses
        .iter()
        .flatten()
        .map(|a| (a, false));
    for (address, ready) in ready.chain(not_ready) {
        let Some(ip) = ipv4(&address.ip) else {
            continue;
        };
        out.push(BackendSpec {
            ip,
            port,
            ready,
            serving: ready,
            terminating: false,
            local: is_local(settings, ip, address.node_name.as_deref()),
            target: target(ns, address.target_ref.as_ref()),
        });
    }
}

/// What apply refuses in a Service although Kubernetes takes it: SCTP (this switch carries
/// TCP and UDP only), and a ClusterIP outside the service CIDR (the node routes only that
/// CIDR into the switch) or equal to the NodePort address. The message names the object and
/// the field.
pub fn check_service(settings: &Settings, svc: &Service) -> Result<(), String> {
    let (ns, name) = ns_name(&svc.metadata);
    let Some(spec) = &svc.spec else { return Ok(()) };
    let at =
        |field: String, problem: String| format!("service {ns}/{name}: spec.{field}: {problem}");
    for (i, port) in spec.ports.iter().flatten().enumerate() {
        if port.protocol.as_deref() == Some("SCTP") {
            return Err(at(
                format!("ports[{i}].protocol"),
                "SCTP is not supported by podswitch (TCP and UDP only)".into(),
            ));
        }
    }
    let cluster_ip = spec
        .cluster_ip
        .iter()
        .map(|ip| ("clusterIP".to_string(), ip));
    let cluster_ips = spec
        .cluster_ips
        .iter()
        .flatten()
        .enumerate()
        .map(|(i, ip)| (format!("clusterIPs[{i}]"), ip));
    for (field, ip) in cluster_ip.chain(cluster_ips) {
        let Some(ip) = ipv4(ip) else { continue }; // "None", "", IPv6: not ours to check
        if !settings.service_cidr.contains(ip) {
            return Err(at(
                field,
                format!(
                    "{ip} is outside the service CIDR {}: this node routes only that to its \
                     Services",
                    settings.service_cidr
                ),
            ));
        }
        if ip == settings.node_port_ip {
            return Err(at(
                field,
                format!(
                    "{ip} is reserved: it is the address this node's NodePort traffic is \
                     redirected to (the last address of the service CIDR)"
                ),
            ));
        }
    }
    Ok(())
}

/// The specs by name, for diffs.
pub fn by_name(specs: Vec<ServiceSpec>) -> BTreeMap<String, ServiceSpec> {
    specs.into_iter().map(|s| (s.name.clone(), s)).collect()
}

#[cfg(test)]
#[path = "services_tests.rs"]
mod tests;
