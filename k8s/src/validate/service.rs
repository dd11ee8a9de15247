//! Services and their backends (EndpointSlice, legacy Endpoints): what the service NAT table
//! is compiled from, so ports, protocols and addresses must be exact.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};

use k8s_openapi::api::core::v1::{Endpoints, Service, ServiceSpec};
use k8s_openapi::api::discovery::v1::EndpointSlice;

use super::{
    invalid, ip_address, label_map, port_number, port_or_name, protocol, required_port, root,
    syntax, Check,
};
use crate::names;

/// Most addresses one EndpointSlice endpoint may have (Kubernetes' limit).
const ENDPOINT_ADDRESSES_MAX: usize = 100;
/// Longest ClientIP session affinity Kubernetes allows, in seconds (one day).
const AFFINITY_TIMEOUT_MAX_SECS: i32 = 86_400;

pub(super) fn service(svc: &Service) -> Check {
    let spec_path = root().field("spec");
    let no_spec = ServiceSpec::default();
    let spec = svc.spec.as_ref().unwrap_or(&no_spec);
    let type_ = spec.type_.as_deref().unwrap_or("ClusterIP");
    if !matches!(
        type_,
        "ClusterIP" | "NodePort" | "LoadBalancer" | "ExternalName"
    ) {
        return Err(invalid(
            spec_path.field("type"),
            format!("{type_:?} is not a Service type: use ClusterIP, NodePort, LoadBalancer or ExternalName"),
        ));
    }
    let headless = spec.cluster_ip.as_deref() == Some("None");
    let ports = spec.ports.as_deref().unwrap_or_default();
    if ports.is_empty() && !headless && type_ != "ExternalName" {
        return Err(invalid(
            spec_path.field("ports"),
            "at least one port is required (unless clusterIP is None or type is ExternalName)",
        ));
    }
    let mut names_seen: BTreeMap<&str, usize> = BTreeMap::new();
    let mut ports_seen: BTreeMap<(i32, &str), usize> = BTreeMap::new();
    for (i, port) in ports.iter().enumerate() {
        let at = spec_path.field("ports").index(i);
        let name_path = at.field("name");
        match port.name.as_deref().filter(|n| !n.is_empty()) {
            None if ports.len() > 1 => {
                return Err(invalid(
                    name_path,
                    "is required when a Service has more than one port",
                ))
            }
            None => {}
            Some(name) => {
                syntax(&name_path, name, names::dns1123_label, "DNS-1123 label")?;
                if let Some(first) = names_seen.insert(name, i) {
                    return Err(invalid(
                        name_path,
                        format!("duplicate port name {name:?} (also spec.ports[{first}])"),
                    ));
                }
            }
        }
        required_port(&at.field("port"), port.port)?;
        protocol(&at.field("protocol"), port.protocol.as_deref())?;
        if let Some(target) = &port.target_port {
            port_or_name(&at.field("targetPort"), target)?;
        }
        if let Some(node_port) = port.node_port.filter(|p| *p != 0) {
            port_number(&at.field("nodePort"), node_port)?;
        }
        let proto = port.protocol.as_deref().unwrap_or("TCP");
        if let Some(first) = ports_seen.insert((port.port, proto), i) {
            return Err(invalid(
                at,
                format!(
                    "duplicate port {}/{proto} (also spec.ports[{first}])",
                    port.port
                ),
            ));
        }
    }
    let cluster_ip = spec.cluster_ip.as_deref();
    if let Some(ip) = cluster_ip.filter(|ip| !ip.is_empty() && *ip != "None") {
        ip_address(&spec_path.field("clusterIP"), ip)?;
    }
    for (i, ip) in spec.cluster_ips.iter().flatten().enumerate() {
        let path = spec_path.field("clusterIPs").index(i);
        if ip != "None" {
            ip_address(&path, ip)?;
        }
        if i == 0 && cluster_ip.is_some_and(|first| !first.is_empty() && first != ip) {
            return Err(invalid(
                path,
                format!("{ip:?} must be the same as spec.clusterIP"),
            ));
        }
    }
    for (i, ip) in spec.external_ips.iter().flatten().enumerate() {
        ip_address(&spec_path.field("externalIPs").index(i), ip)?;
    }
    if let Some(selector) = &spec.selector {
        label_map(&spec_path.field("selector"), selector)?;
    }
    match spec.session_affinity.as_deref() {
        None | Some("None" | "ClientIP") => {}
        Some(other) => {
            return Err(invalid(
                spec_path.field("sessionAffinity"),
                format!("{other:?} is not a session affinity: use None or ClientIP"),
            ))
        }
    }
    let timeout = spec
        .session_affinity_config
        .as_ref()
        .and_then(|c| c.client_ip.as_ref())
        .and_then(|c| c.timeout_seconds);
    if let Some(secs) = timeout {
        if !(1..=AFFINITY_TIMEOUT_MAX_SECS).contains(&secs) {
            return Err(invalid(
                spec_path
                    .field("sessionAffinityConfig")
                    .field("clientIP")
                    .field("timeoutSeconds"),
                format!("{secs} is out of range 1..={AFFINITY_TIMEOUT_MAX_SECS}"),
            ));
        }
    }
    Ok(())
}

pub(super) fn endpoint_slice(slice: &EndpointSlice) -> Check {
    let address_type = slice.address_type.as_str();
    let type_path = root().field("addressType");
    let parse: fn(&str) -> bool = match address_type {
        "IPv4" => |a| a.parse::<Ipv4Addr>().is_ok(),
        "IPv6" => |a| a.parse::<Ipv6Addr>().is_ok(),
        "FQDN" => |a| names::dns1123_subdomain(a).is_ok(),
        "" => return Err(invalid(type_path, "is required: IPv4, IPv6 or FQDN")),
        other => {
            return Err(invalid(
                type_path,
                format!("{other:?} is not an address type: use IPv4, IPv6 or FQDN"),
            ))
        }
    };
    for (i, endpoint) in slice.endpoints.iter().flatten().enumerate() {
        let path = root().field("endpoints").index(i).field("addresses");
        match endpoint.addresses.len() {
            0 => return Err(invalid(path, "at least one address is required")),
            n if n > ENDPOINT_ADDRESSES_MAX => {
                return Err(invalid(
                    path,
                    format!("{n} addresses; at most {ENDPOINT_ADDRESSES_MAX} are allowed"),
                ))
            }
            _ => {}
        }
        for (j, address) in endpoint.addresses.iter().enumerate() {
            if !parse(address) {
                return Err(invalid(
                    path.index(j),
                    format!("{address:?} is not a valid {address_type} address"),
                ));
            }
        }
    }
    let mut names_seen: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, port) in slice.ports.iter().flatten().enumerate() {
        let at = root().field("ports").index(i);
        if let Some(number) = port.port {
            port_number(&at.field("port"), number)?;
        }
        protocol(&at.field("protocol"), port.protocol.as_deref())?;
        let name = port.name.as_deref().unwrap_or_default();
        if !name.is_empty() {
            syntax(
                &at.field("name"),
                name,
                names::dns1123_label,
                "DNS-1123 label",
            )?;
        }
        if let Some(first) = names_seen.insert(name, i) {
            return Err(invalid(
                at.field("name"),
                format!("duplicate port name {name:?} (also ports[{first}])"),
            ));
        }
    }
    Ok(())
}

pub(super) fn endpoints(endpoints: &Endpoints) -> Check {
    for (i, subset) in endpoints.subsets.iter().flatten().enumerate() {
        let at = root().field("subsets").index(i);
        let lists = [
            ("addresses", &subset.addresses),
            ("notReadyAddresses", &subset.not_ready_addresses),
        ];
        for (field, addresses) in lists {
            for (j, address) in addresses.iter().flatten().enumerate() {
                ip_address(&at.field(field).index(j).field("ip"), &address.ip)?;
            }
        }
        let ports = subset.ports.as_deref().unwrap_or_default();
        for (j, port) in ports.iter().enumerate() {
            let port_path = at.field("ports").index(j);
            required_port(&port_path.field("port"), port.port)?;
            protocol(&port_path.field("protocol"), port.protocol.as_deref())?;
            match port.name.as_deref().filter(|n| !n.is_empty()) {
                Some(name) => syntax(
                    &port_path.field("name"),
                    name,
                    names::dns1123_label,
                    "DNS-1123 label",
                )?,
                None if ports.len() > 1 => {
                    return Err(invalid(
                        port_path.field("name"),
                        "is required when a subset has more than one port",
                    ))
                }
                None => {}
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::validate::error_of;

    fn service(spec: &str) -> String {
        format!("apiVersion: v1\nkind: Service\nmetadata: {{name: web}}\nspec:\n{spec}")
    }

    #[test]
    fn service_ports_are_in_range_with_a_known_protocol() {
        assert_eq!(
            error_of(&service("  ports: [{port: 70000}]\n")),
            "document 1 (Service default/web): spec.ports[0].port: 70000 is out of range 1..=65535"
        );
        assert_eq!(
            error_of(&service("  ports: [{port: -1}]\n")),
            "document 1 (Service default/web): spec.ports[0].port: -1 is out of range 1..=65535"
        );
        assert_eq!(
            error_of(&service("  ports: [{targetPort: 8080}]\n")),
            "document 1 (Service default/web): spec.ports[0].port: 0 is out of range 1..=65535 (is the port missing?)"
        );
        assert_eq!(
            error_of(&service("  ports: [{port: 80, protocol: HTTP}]\n")),
            "document 1 (Service default/web): spec.ports[0].protocol: \"HTTP\" is not a supported protocol: use TCP, UDP or SCTP"
        );
        assert_eq!(
            error_of(&service("  ports: [{port: 80, targetPort: 0}]\n")),
            "document 1 (Service default/web): spec.ports[0].targetPort: 0 is out of range 1..=65535"
        );
        assert_eq!(
            error_of(&service("  ports: [{port: 80, targetPort: \"8080\"}]\n")),
            "document 1 (Service default/web): spec.ports[0].targetPort: \"8080\" is not a valid port name: \
             use lowercase letters, digits and '-' with at least one letter, and no '-' at either end or twice in a row"
        );
        assert_eq!(
            error_of(&service("  type: NodePort\n  ports: [{port: 80, nodePort: 100000}]\n")),
            "document 1 (Service default/web): spec.ports[0].nodePort: 100000 is out of range 1..=65535"
        );
        assert_eq!(
            error_of(&service("  ports: [{port: \"80\"}]\n")),
            "document 1 (Service default/web): spec.ports[0].port: invalid type: string \"80\", expected i32"
        );
    }

    #[test]
    fn service_port_names_are_required_unique_labels() {
        assert_eq!(
            error_of(&service("  ports: [{name: http, port: 80}, {port: 443}]\n")),
            "document 1 (Service default/web): spec.ports[1].name: is required when a Service has more than one port"
        );
        assert_eq!(
            error_of(&service("  ports: [{name: HTTP, port: 80}]\n")),
            "document 1 (Service default/web): spec.ports[0].name: \"HTTP\" is not a valid DNS-1123 label: \
             use lowercase letters, digits and '-', starting and ending with a letter or digit"
        );
        assert_eq!(
            error_of(&service("  ports: [{name: http, port: 80}, {name: http, port: 81}]\n")),
            "document 1 (Service default/web): spec.ports[1].name: duplicate port name \"http\" (also spec.ports[0])"
        );
        assert_eq!(
            error_of(&service("  ports: [{name: a, port: 53, protocol: UDP}, {name: b, port: 53, protocol: UDP}]\n")),
            "document 1 (Service default/web): spec.ports[1]: duplicate port 53/UDP (also spec.ports[0])"
        );
        // Same number, other protocol: fine (DNS on TCP and UDP).
        crate::parse_manifests(&service(
            "  ports: [{name: dns, port: 53, protocol: UDP}, {name: dns-tcp, port: 53}]\n",
        ))
        .unwrap();
    }

    #[test]
    fn service_needs_ports_unless_headless() {
        assert_eq!(
            error_of("apiVersion: v1\nkind: Service\nmetadata: {name: web}\n"),
            "document 1 (Service default/web): spec.ports: at least one port is required (unless clusterIP is None or type is ExternalName)"
        );
        crate::parse_manifests(&service("  clusterIP: None\n")).unwrap();
        assert_eq!(
            error_of(&service("  type: Internal\n  ports: [{port: 80}]\n")),
            "document 1 (Service default/web): spec.type: \"Internal\" is not a Service type: use ClusterIP, NodePort, LoadBalancer or ExternalName"
        );
    }

    #[test]
    fn service_addresses_selector_and_affinity_are_checked() {
        assert_eq!(
            error_of(&service("  clusterIP: 10.96.0.300\n  ports: [{port: 80}]\n")),
            "document 1 (Service default/web): spec.clusterIP: \"10.96.0.300\" is not a valid IP address"
        );
        assert_eq!(
            error_of(&service("  clusterIP: 10.96.0.10\n  clusterIPs: [10.96.0.11]\n  ports: [{port: 80}]\n")),
            "document 1 (Service default/web): spec.clusterIPs[0]: \"10.96.0.11\" must be the same as spec.clusterIP"
        );
        assert_eq!(
            error_of(&service("  externalIPs: [203.0.113.7, example.com]\n  ports: [{port: 80}]\n")),
            "document 1 (Service default/web): spec.externalIPs[1]: \"example.com\" is not a valid IP address"
        );
        assert_eq!(
            error_of(&service("  selector: {\"app name\": web}\n  ports: [{port: 80}]\n")),
            "document 1 (Service default/web): spec.selector[\"app name\"]: \"app name\" is not a valid label key: \
             the name part must use letters, digits, '-', '_' and '.', starting and ending with a letter or digit"
        );
        assert_eq!(
            error_of(&service("  sessionAffinity: Cookie\n  ports: [{port: 80}]\n")),
            "document 1 (Service default/web): spec.sessionAffinity: \"Cookie\" is not a session affinity: use None or ClientIP"
        );
        assert_eq!(
            error_of(&service(
                "  sessionAffinity: ClientIP\n  sessionAffinityConfig: {clientIP: {timeoutSeconds: 0}}\n  ports: [{port: 80}]\n"
            )),
            "document 1 (Service default/web): spec.sessionAffinityConfig.clientIP.timeoutSeconds: 0 is out of range 1..=86400"
        );
    }

    fn slice(body: &str) -> String {
        format!("apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: web-abc}}\n{body}")
    }

    #[test]
    fn endpoint_slice_addresses_match_the_address_type() {
        assert_eq!(
            error_of(&slice("endpoints: [{addresses: [10.244.1.5]}]\n")),
            "document 1 (EndpointSlice default/web-abc): addressType: is required: IPv4, IPv6 or FQDN"
        );
        assert_eq!(
            error_of(&slice("addressType: ipv4\n")),
            "document 1 (EndpointSlice default/web-abc): addressType: \"ipv4\" is not an address type: use IPv4, IPv6 or FQDN"
        );
        assert_eq!(
            error_of(&slice("addressType: IPv4\nendpoints: [{addresses: [10.244.1.5]}, {addresses: [\"fd00::5\"]}]\n")),
            "document 1 (EndpointSlice default/web-abc): endpoints[1].addresses[0]: \"fd00::5\" is not a valid IPv4 address"
        );
        assert_eq!(
            error_of(&slice("addressType: IPv4\nendpoints: [{addresses: []}]\n")),
            "document 1 (EndpointSlice default/web-abc): endpoints[0].addresses: at least one address is required"
        );
        crate::parse_manifests(&slice(
            "addressType: IPv6\nendpoints: [{addresses: [\"fd00::5\"]}]\n",
        ))
        .unwrap();
        crate::parse_manifests(&slice(
            "addressType: FQDN\nendpoints: [{addresses: [db.example.com]}]\n",
        ))
        .unwrap();
    }

    #[test]
    fn endpoint_slice_ports_are_checked() {
        assert_eq!(
            error_of(&slice("addressType: IPv4\nports: [{name: http, port: 65536}]\n")),
            "document 1 (EndpointSlice default/web-abc): ports[0].port: 65536 is out of range 1..=65535"
        );
        assert_eq!(
            error_of(&slice("addressType: IPv4\nports: [{port: 80, protocol: ICMP}]\n")),
            "document 1 (EndpointSlice default/web-abc): ports[0].protocol: \"ICMP\" is not a supported protocol: use TCP, UDP or SCTP"
        );
        assert_eq!(
            error_of(&slice("addressType: IPv4\nports: [{port: 80}, {port: 81}]\n")),
            "document 1 (EndpointSlice default/web-abc): ports[1].name: duplicate port name \"\" (also ports[0])"
        );
    }

    #[test]
    fn endpoints_addresses_and_ports_are_checked() {
        let endpoints = |subsets: &str| {
            format!(
                "apiVersion: v1\nkind: Endpoints\nmetadata: {{name: web}}\nsubsets: {subsets}\n"
            )
        };
        assert_eq!(
            error_of(&endpoints("[{addresses: [{ip: 10.244.1.5}], notReadyAddresses: [{ip: web-1}], ports: [{port: 80}]}]")),
            "document 1 (Endpoints default/web): subsets[0].notReadyAddresses[0].ip: \"web-1\" is not a valid IP address"
        );
        assert_eq!(
            error_of(&endpoints("[{addresses: [{ip: 10.244.1.5}], ports: [{name: a, port: 80, protocol: UDP}, {name: b, port: 0}]}]")),
            "document 1 (Endpoints default/web): subsets[0].ports[1].port: 0 is out of range 1..=65535 (is the port missing?)"
        );
        assert_eq!(
            error_of(&endpoints("[{addresses: [{ip: 10.244.1.5}], ports: [{name: a, port: 80}, {port: 81}]}]")),
            "document 1 (Endpoints default/web): subsets[0].ports[1].name: is required when a subset has more than one port"
        );
        assert_eq!(
            error_of(&endpoints("[{addresses: [{}]}]")),
            "document 1 (Endpoints default/web): subsets[0].addresses[0].ip: is required"
        );
    }
}
