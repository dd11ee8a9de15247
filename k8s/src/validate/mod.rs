//! What Kubernetes would reject in a well-typed object: names, labels, ports, protocols, IPs,
//! CIDRs, selectors. The control process relies on it: an [`Object`] it gets has passed here,
//! so it can compile tables without re-checking syntax.
//!
//! Checks stop at the first problem, in field order, so the same input always gives the same
//! error. Paths are relative to the object; the parser adds where the object sits.

mod policy;
mod service;

use std::collections::BTreeMap;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{Container, Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::error::Invalid;
use crate::net::{self, Cidr};
use crate::{names, FieldPath, ManifestErrorKind, Object};

pub(crate) type Check = Result<(), Invalid>;

/// Validates one decoded object whose namespace has already been defaulted.
pub(crate) fn object(obj: &Object) -> Check {
    metadata(obj)?;
    match obj {
        Object::Namespace(_) => Ok(()),
        Object::Pod(pod) => self::pod(pod),
        Object::Service(svc) => service::service(svc),
        Object::EndpointSlice(slice) => service::endpoint_slice(slice),
        Object::Endpoints(endpoints) => service::endpoints(endpoints),
        Object::NetworkPolicy(policy) => policy::network_policy(policy),
        Object::Node(node) => self::node(node),
    }
}

fn invalid(path: FieldPath, message: impl Into<String>) -> Invalid {
    Invalid::new(ManifestErrorKind::Invalid, path, message)
}

fn root() -> FieldPath {
    FieldPath::root()
}

/// `value` must follow `rule`; the error reads `"x" is not a valid {what}: {reason}`.
fn syntax(
    path: &FieldPath,
    value: &str,
    rule: fn(&str) -> Result<(), String>,
    what: &str,
) -> Check {
    rule(value).map_err(|reason| {
        invalid(
            path.clone(),
            format!("{value:?} is not a valid {what}: {reason}"),
        )
    })
}

fn required<'a>(path: &FieldPath, value: Option<&'a str>) -> Result<&'a str, Invalid> {
    match value {
        Some(v) if !v.is_empty() => Ok(v),
        _ => Err(invalid(path.clone(), "is required")),
    }
}

fn metadata(obj: &Object) -> Check {
    let meta = obj.metadata();
    let path = root().field("metadata");
    let name_path = path.field("name");
    let name = match meta.name.as_deref() {
        Some(name) if !name.is_empty() => name,
        _ if meta.generate_name.is_some() => {
            return Err(invalid(
                name_path,
                "is required (generateName is not supported: podswitch needs the final name)",
            ))
        }
        _ => return Err(invalid(name_path, "is required")),
    };
    match obj {
        Object::Namespace(_) => syntax(&name_path, name, names::dns1123_label, "DNS-1123 label")?,
        Object::Service(_) => syntax(&name_path, name, names::dns1035_label, "DNS-1035 label")?,
        _ => syntax(
            &name_path,
            name,
            names::dns1123_subdomain,
            "DNS-1123 subdomain",
        )?,
    }
    if let Some(namespace) = &meta.namespace {
        syntax(
            &path.field("namespace"),
            namespace,
            names::dns1123_label,
            "DNS-1123 label",
        )?;
    }
    if let Some(labels) = &meta.labels {
        label_map(&path.field("labels"), labels)?;
    }
    for key in meta.annotations.iter().flat_map(BTreeMap::keys) {
        let key_path = path.field("annotations").key(key);
        syntax(&key_path, key, names::qualified_name, "annotation key")?;
    }
    Ok(())
}

/// Labels, and the label maps of selectors: keys are qualified names, values label values.
fn label_map(path: &FieldPath, labels: &BTreeMap<String, String>) -> Check {
    for (key, value) in labels {
        let entry = path.key(key);
        syntax(&entry, key, names::qualified_name, "label key")?;
        syntax(&entry, value, names::label_value, "label value")?;
    }
    Ok(())
}

/// A metav1.LabelSelector (NetworkPolicy pod and namespace selectors).
fn label_selector(path: &FieldPath, selector: &LabelSelector) -> Check {
    if let Some(labels) = &selector.match_labels {
        label_map(&path.field("matchLabels"), labels)?;
    }
    let expressions = selector.match_expressions.iter().flatten();
    for (i, expr) in expressions.enumerate() {
        let at = path.field("matchExpressions").index(i);
        syntax(
            &at.field("key"),
            &expr.key,
            names::qualified_name,
            "label key",
        )?;
        let values = expr.values.as_deref().unwrap_or_default();
        let values_path = at.field("values");
        match expr.operator.as_str() {
            "In" | "NotIn" if values.is_empty() => {
                return Err(invalid(
                    values_path,
                    format!("must not be empty when operator is {}", expr.operator),
                ))
            }
            "In" | "NotIn" => {}
            "Exists" | "DoesNotExist" if !values.is_empty() => {
                return Err(invalid(
                    values_path,
                    format!("must be empty when operator is {}", expr.operator),
                ))
            }
            "Exists" | "DoesNotExist" => {}
            other => {
                return Err(invalid(
                    at.field("operator"),
                    format!(
                        "{other:?} is not a valid operator: use In, NotIn, Exists or DoesNotExist"
                    ),
                ))
            }
        }
        for (j, value) in values.iter().enumerate() {
            syntax(
                &values_path.index(j),
                value,
                names::label_value,
                "label value",
            )?;
        }
    }
    Ok(())
}

/// A port number that may be left out (`Option`), or `hostPort`/`nodePort` 0 meaning none.
fn port_number(path: &FieldPath, port: i32) -> Check {
    if (1..=65535).contains(&port) {
        Ok(())
    } else {
        Err(invalid(
            path.clone(),
            format!("{port} is out of range 1..=65535"),
        ))
    }
}

/// A required port number: k8s-openapi reads a missing one as 0, so 0 says so.
fn required_port(path: &FieldPath, port: i32) -> Check {
    if port == 0 {
        return Err(invalid(
            path.clone(),
            "0 is out of range 1..=65535 (is the port missing?)",
        ));
    }
    port_number(path, port)
}

/// A port given as a number or as the name of a container port.
fn port_or_name(path: &FieldPath, port: &IntOrString) -> Check {
    match port {
        IntOrString::Int(n) => port_number(path, *n),
        IntOrString::String(name) => syntax(path, name, names::iana_service_name, "port name"),
    }
}

/// `protocol`, where absent means TCP.
fn protocol(path: &FieldPath, protocol: Option<&str>) -> Check {
    match protocol {
        None | Some("TCP" | "UDP" | "SCTP") => Ok(()),
        Some(other) => Err(invalid(
            path.clone(),
            format!("{other:?} is not a supported protocol: use TCP, UDP or SCTP"),
        )),
    }
}

fn ip_address(path: &FieldPath, value: &str) -> Result<IpAddr, Invalid> {
    if value.is_empty() {
        return Err(invalid(path.clone(), "is required"));
    }
    value
        .parse()
        .map_err(|_| invalid(path.clone(), format!("{value:?} is not a valid IP address")))
}

fn cidr(path: &FieldPath, value: &str) -> Result<Cidr, Invalid> {
    if value.is_empty() {
        return Err(invalid(path.clone(), "is required"));
    }
    net::cidr(value).map_err(|reason| {
        invalid(
            path.clone(),
            format!("{value:?} is not a valid CIDR: {reason}"),
        )
    })
}

fn pod(pod: &Pod) -> Check {
    if let Some(spec) = &pod.spec {
        let spec_path = root().field("spec");
        for (i, c) in spec.containers.iter().enumerate() {
            container(&spec_path.field("containers").index(i), c)?;
        }
        for (i, c) in spec.init_containers.iter().flatten().enumerate() {
            container(&spec_path.field("initContainers").index(i), c)?;
        }
    }
    if let Some(status) = &pod.status {
        let status_path = root().field("status");
        let pod_ip = status
            .pod_ip
            .as_deref()
            .map(|ip| ip_address(&status_path.field("podIP"), ip))
            .transpose()?;
        for (i, ip) in status.pod_ips.iter().flatten().enumerate() {
            let at = status_path.field("podIPs").index(i).field("ip");
            let parsed = ip_address(&at, &ip.ip)?;
            if i == 0 && pod_ip.is_some_and(|first| first != parsed) {
                return Err(invalid(
                    at,
                    format!("{:?} must be the same address as status.podIP", ip.ip),
                ));
            }
        }
        if let Some(ip) = &status.host_ip {
            ip_address(&status_path.field("hostIP"), ip)?;
        }
        for (i, ip) in status.host_ips.iter().flatten().enumerate() {
            ip_address(&status_path.field("hostIPs").index(i).field("ip"), &ip.ip)?;
        }
    }
    Ok(())
}

/// A container's name and ports: named ports are what Services and NetworkPolicies refer to.
fn container(path: &FieldPath, container: &Container) -> Check {
    let name_path = path.field("name");
    required(&name_path, Some(container.name.as_str()))?;
    syntax(
        &name_path,
        &container.name,
        names::dns1123_label,
        "DNS-1123 label",
    )?;
    let mut port_names: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, port) in container.ports.iter().flatten().enumerate() {
        let at = path.field("ports").index(i);
        required_port(&at.field("containerPort"), port.container_port)?;
        if let Some(host_port) = port.host_port.filter(|p| *p != 0) {
            port_number(&at.field("hostPort"), host_port)?;
        }
        protocol(&at.field("protocol"), port.protocol.as_deref())?;
        if let Some(name) = &port.name {
            let name_path = at.field("name");
            syntax(&name_path, name, names::iana_service_name, "port name")?;
            if let Some(first) = port_names.insert(name, i) {
                return Err(invalid(
                    name_path,
                    format!("duplicate port name {name:?} (also ports[{first}])"),
                ));
            }
        }
    }
    Ok(())
}

fn node(node: &Node) -> Check {
    if let Some(spec) = &node.spec {
        let spec_path = root().field("spec");
        let pod_cidr = match &spec.pod_cidr {
            Some(value) => {
                let path = spec_path.field("podCIDR");
                let parsed = cidr(&path, value)?;
                if !parsed.addr.is_ipv4() {
                    return Err(invalid(
                        path,
                        format!("{value:?} is not an IPv4 CIDR: podswitch gives pods IPv4 addresses from the podCIDR"),
                    ));
                }
                Some(parsed)
            }
            None => None,
        };
        let mut families = [false; 2];
        for (i, value) in spec.pod_cidrs.iter().flatten().enumerate() {
            let path = spec_path.field("podCIDRs").index(i);
            let parsed = cidr(&path, value)?;
            if i == 0 && pod_cidr.is_some_and(|first| first != parsed) {
                return Err(invalid(
                    path,
                    format!("{value:?} must be the same CIDR as spec.podCIDR"),
                ));
            }
            let family = &mut families[usize::from(parsed.addr.is_ipv6())];
            if std::mem::replace(family, true) {
                return Err(invalid(
                    path,
                    format!("{value:?} is a second CIDR of the same IP family; a node has at most one per family"),
                ));
            }
        }
    }
    let addresses = node
        .status
        .iter()
        .flat_map(|s| s.addresses.iter().flatten());
    for (i, address) in addresses.enumerate() {
        let path = root().field("status").field("addresses").index(i);
        match address.type_.as_str() {
            "InternalIP" | "ExternalIP" => {
                ip_address(&path.field("address"), &address.address)?;
            }
            "Hostname" | "InternalDNS" | "ExternalDNS" => {}
            other => {
                return Err(invalid(
                    path.field("type"),
                    format!("{other:?} is not a node address type: use InternalIP, ExternalIP, Hostname, InternalDNS or ExternalDNS"),
                ))
            }
        }
    }
    Ok(())
}

/// The error text `parse_manifests` gives for `yaml`, which must fail.
#[cfg(test)]
pub(crate) fn error_of(yaml: &str) -> String {
    match crate::parse_manifests(yaml) {
        Ok(objects) => panic!("expected an error, got {objects:?}"),
        Err(e) => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::error_of;

    #[test]
    fn name_is_required_and_must_fit_the_kind() {
        assert_eq!(
            error_of("apiVersion: v1\nkind: Pod\nmetadata: {labels: {app: web}}\n"),
            "document 1 (Pod): metadata.name: is required"
        );
        assert_eq!(
            error_of("apiVersion: v1\nkind: Pod\nmetadata: {generateName: web-}\n"),
            "document 1 (Pod): metadata.name: is required (generateName is not supported: podswitch needs the final name)"
        );
        assert_eq!(
            error_of("apiVersion: v1\nkind: Pod\nmetadata: {name: Web_1}\n"),
            "document 1 (Pod default/Web_1): metadata.name: \"Web_1\" is not a valid DNS-1123 subdomain: \
             use lowercase letters, digits, '-' and '.', each '.'-separated part starting and ending with a letter or digit"
        );
        assert_eq!(
            error_of("apiVersion: v1\nkind: Namespace\nmetadata: {name: team.a}\n"),
            "document 1 (Namespace team.a): metadata.name: \"team.a\" is not a valid DNS-1123 label: \
             use lowercase letters, digits and '-', starting and ending with a letter or digit"
        );
        assert_eq!(
            error_of("apiVersion: v1\nkind: Service\nmetadata: {name: 1web}\nspec: {ports: [{port: 80}]}\n"),
            "document 1 (Service default/1web): metadata.name: \"1web\" is not a valid DNS-1035 label: \
             use lowercase letters, digits and '-', starting with a letter and ending with a letter or digit"
        );
        let long = "a".repeat(254);
        assert_eq!(
            error_of(&format!("apiVersion: v1\nkind: Node\nmetadata: {{name: {long}}}\n")),
            format!("document 1 (Node {long}): metadata.name: {long:?} is not a valid DNS-1123 subdomain: it has 254 characters, at most 253 are allowed")
        );
    }

    #[test]
    fn namespace_must_be_a_dns_label() {
        assert_eq!(
            error_of("apiVersion: v1\nkind: Pod\nmetadata: {name: web, namespace: Shop}\n"),
            "document 1 (Pod Shop/web): metadata.namespace: \"Shop\" is not a valid DNS-1123 label: \
             use lowercase letters, digits and '-', starting and ending with a letter or digit"
        );
    }

    #[test]
    fn label_keys_and_values_follow_kubernetes_rules() {
        assert_eq!(
            error_of("apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\n  labels: {\"a b\": x}\n"),
            "document 1 (Pod default/web): metadata.labels[\"a b\"]: \"a b\" is not a valid label key: \
             the name part must use letters, digits, '-', '_' and '.', starting and ending with a letter or digit"
        );
        assert_eq!(
            error_of("apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\n  labels: {Example.com/app: x}\n"),
            "document 1 (Pod default/web): metadata.labels[\"Example.com/app\"]: \"Example.com/app\" is not a valid label key: \
             the prefix \"Example.com\" must be a DNS-1123 subdomain: \
             use lowercase letters, digits, '-' and '.', each '.'-separated part starting and ending with a letter or digit"
        );
        let long = "k".repeat(64);
        assert_eq!(
            error_of(&format!("apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\n  labels: {{{long}: x}}\n")),
            format!("document 1 (Pod default/web): metadata.labels.{long}: {long:?} is not a valid label key: \
             the name part is too long: it has 64 characters, at most 63 are allowed")
        );
        assert_eq!(
            error_of("apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\n  labels: {app: \"-web\"}\n"),
            "document 1 (Pod default/web): metadata.labels.app: \"-web\" is not a valid label value: \
             use letters, digits, '-', '_' and '.', starting and ending with a letter or digit (or leave it empty)"
        );
        assert_eq!(
            error_of(&format!("apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\n  labels: {{app: {}}}\n", "v".repeat(64))),
            format!("document 1 (Pod default/web): metadata.labels.app: {:?} is not a valid label value: \
             it has 64 characters, at most 63 are allowed", "v".repeat(64))
        );
        // Empty values and prefixed keys are fine.
        crate::parse_manifests(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\n  labels: {app.kubernetes.io/name: web, empty: \"\"}\n",
        )
        .unwrap();
    }

    #[test]
    fn a_number_as_label_value_is_a_type_error() {
        assert_eq!(
            error_of("apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\n  labels: {version: 2}\n"),
            "document 1 (Pod default/web): metadata.labels.version: invalid type: integer `2`, expected a string"
        );
    }

    #[test]
    fn annotation_keys_are_qualified_names() {
        assert_eq!(
            error_of("apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\n  annotations: {\"a/b/c\": x}\n"),
            "document 1 (Pod default/web): metadata.annotations[\"a/b/c\"]: \"a/b/c\" is not a valid annotation key: \
             it may contain at most one '/'"
        );
    }

    #[test]
    fn pod_ips_must_be_addresses() {
        let pod = |status: &str| {
            format!("apiVersion: v1\nkind: Pod\nmetadata: {{name: web}}\nstatus: {status}\n")
        };
        assert_eq!(
            error_of(&pod("{podIP: 10.244.1.300}")),
            "document 1 (Pod default/web): status.podIP: \"10.244.1.300\" is not a valid IP address"
        );
        assert_eq!(
            error_of(&pod("{podIP: 10.244.1.5, podIPs: [{ip: 10.244.1.6}]}")),
            "document 1 (Pod default/web): status.podIPs[0].ip: \"10.244.1.6\" must be the same address as status.podIP"
        );
        assert_eq!(
            error_of(&pod("{podIPs: [{ip: 10.244.1.6}, {ip: \"fd00::zz\"}]}")),
            "document 1 (Pod default/web): status.podIPs[1].ip: \"fd00::zz\" is not a valid IP address"
        );
        assert_eq!(
            error_of(&pod("{hostIP: 010.0.0.1}")),
            "document 1 (Pod default/web): status.hostIP: \"010.0.0.1\" is not a valid IP address"
        );
        crate::parse_manifests(&pod(
            "{podIP: 10.244.1.5, podIPs: [{ip: 10.244.1.5}, {ip: \"fd00::5\"}]}",
        ))
        .unwrap();
    }

    #[test]
    fn container_ports_are_checked() {
        let pod = |ports: &str| {
            format!("apiVersion: v1\nkind: Pod\nmetadata: {{name: web}}\nspec:\n  containers:\n  - name: app\n    ports: {ports}\n")
        };
        assert_eq!(
            error_of(&pod("[{containerPort: 70000}]")),
            "document 1 (Pod default/web): spec.containers[0].ports[0].containerPort: 70000 is out of range 1..=65535"
        );
        assert_eq!(
            error_of(&pod("[{name: http}]")),
            "document 1 (Pod default/web): spec.containers[0].ports[0].containerPort: 0 is out of range 1..=65535 (is the port missing?)"
        );
        assert_eq!(
            error_of(&pod("[{containerPort: 80, protocol: tcp}]")),
            "document 1 (Pod default/web): spec.containers[0].ports[0].protocol: \"tcp\" is not a supported protocol: use TCP, UDP or SCTP"
        );
        assert_eq!(
            error_of(&pod("[{containerPort: 80, name: http_web}]")),
            "document 1 (Pod default/web): spec.containers[0].ports[0].name: \"http_web\" is not a valid port name: \
             use lowercase letters, digits and '-' with at least one letter, and no '-' at either end or twice in a row"
        );
        assert_eq!(
            error_of(&pod("[{containerPort: 80, name: http}, {containerPort: 81, name: http}]")),
            "document 1 (Pod default/web): spec.containers[0].ports[1].name: duplicate port name \"http\" (also ports[0])"
        );
        assert_eq!(
            error_of(&pod("[{containerPort: 80, hostPort: 65536}]")),
            "document 1 (Pod default/web): spec.containers[0].ports[0].hostPort: 65536 is out of range 1..=65535"
        );
        assert_eq!(
            error_of("apiVersion: v1\nkind: Pod\nmetadata: {name: web}\nspec:\n  containers: [{image: nginx}]\n"),
            "document 1 (Pod default/web): spec.containers[0].name: is required"
        );
    }

    #[test]
    fn node_pod_cidr_is_a_canonical_ipv4_cidr() {
        let node = |spec: &str| {
            format!("apiVersion: v1\nkind: Node\nmetadata: {{name: node-1}}\nspec: {spec}\n")
        };
        assert_eq!(
            error_of(&node("{podCIDR: 10.244.1.0/33}")),
            "document 1 (Node node-1): spec.podCIDR: \"10.244.1.0/33\" is not a valid CIDR: prefix length \"33\" is not a number in 0..=32"
        );
        assert_eq!(
            error_of(&node("{podCIDR: 10.244.1.1/24}")),
            "document 1 (Node node-1): spec.podCIDR: \"10.244.1.1/24\" is not a valid CIDR: \
             bits are set past the prefix length; did you mean 10.244.1.0/24?"
        );
        assert_eq!(
            error_of(&node("{podCIDR: 10.244.1.0}")),
            "document 1 (Node node-1): spec.podCIDR: \"10.244.1.0\" is not a valid CIDR: expected ADDRESS/PREFIX-LENGTH, like 10.244.1.0/24"
        );
        assert_eq!(
            error_of(&node("{podCIDR: \"fd00:1::/64\"}")),
            "document 1 (Node node-1): spec.podCIDR: \"fd00:1::/64\" is not an IPv4 CIDR: podswitch gives pods IPv4 addresses from the podCIDR"
        );
        assert_eq!(
            error_of(&node("{podCIDR: 10.244.1.0/24, podCIDRs: [10.244.2.0/24]}")),
            "document 1 (Node node-1): spec.podCIDRs[0]: \"10.244.2.0/24\" must be the same CIDR as spec.podCIDR"
        );
        assert_eq!(
            error_of(&node("{podCIDRs: [10.244.2.0/24, 10.245.2.0/24]}")),
            "document 1 (Node node-1): spec.podCIDRs[1]: \"10.245.2.0/24\" is a second CIDR of the same IP family; a node has at most one per family"
        );
        crate::parse_manifests(&node(
            "{podCIDR: 10.244.1.0/24, podCIDRs: [10.244.1.0/24, \"fd00:1::/64\"]}",
        ))
        .unwrap();
    }

    #[test]
    fn node_addresses_are_checked() {
        let node = |addresses: &str| {
            format!("apiVersion: v1\nkind: Node\nmetadata: {{name: node-1}}\nstatus:\n  addresses: {addresses}\n")
        };
        assert_eq!(
            error_of(&node("[{type: Hostname, address: node-1}, {type: InternalIP, address: node-1}]")),
            "document 1 (Node node-1): status.addresses[1].address: \"node-1\" is not a valid IP address"
        );
        assert_eq!(
            error_of(&node("[{type: InternalIp, address: 192.168.1.10}]")),
            "document 1 (Node node-1): status.addresses[0].type: \"InternalIp\" is not a node address type: \
             use InternalIP, ExternalIP, Hostname, InternalDNS or ExternalDNS"
        );
    }
}
