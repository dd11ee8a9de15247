//! NetworkPolicy: selectors, peers, ports and ipBlocks, as the policy compiler will read them.

use k8s_openapi::api::networking::v1::{NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{cidr, invalid, label_selector, port_number, port_or_name, protocol, root, Check};
use crate::FieldPath;

pub(super) fn network_policy(policy: &NetworkPolicy) -> Check {
    let Some(spec) = &policy.spec else {
        return Ok(());
    };
    let spec_path = root().field("spec");
    if let Some(selector) = &spec.pod_selector {
        label_selector(&spec_path.field("podSelector"), selector)?;
    }
    for (i, policy_type) in spec.policy_types.iter().flatten().enumerate() {
        if !matches!(policy_type.as_str(), "Ingress" | "Egress") {
            return Err(invalid(
                spec_path.field("policyTypes").index(i),
                format!("{policy_type:?} is not a policy type: use Ingress or Egress"),
            ));
        }
    }
    for (i, rule) in spec.ingress.iter().flatten().enumerate() {
        let at = spec_path.field("ingress").index(i);
        rule_parts(&at, "from", rule.from.as_deref(), rule.ports.as_deref())?;
    }
    for (i, rule) in spec.egress.iter().flatten().enumerate() {
        let at = spec_path.field("egress").index(i);
        rule_parts(&at, "to", rule.to.as_deref(), rule.ports.as_deref())?;
    }
    Ok(())
}

/// An ingress rule's `from` or an egress rule's `to` (`peers_field`), and its `ports`.
fn rule_parts(
    path: &FieldPath,
    peers_field: &str,
    peers: Option<&[NetworkPolicyPeer]>,
    ports: Option<&[NetworkPolicyPort]>,
) -> Check {
    for (i, p) in ports.unwrap_or_default().iter().enumerate() {
        port(&path.field("ports").index(i), p)?;
    }
    for (i, p) in peers.unwrap_or_default().iter().enumerate() {
        peer(&path.field(peers_field).index(i), p)?;
    }
    Ok(())
}

fn port(path: &FieldPath, port: &NetworkPolicyPort) -> Check {
    protocol(&path.field("protocol"), port.protocol.as_deref())?;
    if let Some(p) = &port.port {
        port_or_name(&path.field("port"), p)?;
    }
    let Some(end) = port.end_port else {
        return Ok(());
    };
    let end_path = path.field("endPort");
    let start = match &port.port {
        Some(IntOrString::Int(start)) => *start,
        _ => {
            return Err(invalid(
                end_path,
                "requires port to be a number (a range cannot start at a named port)",
            ))
        }
    };
    port_number(&end_path, end)?;
    if end < start {
        return Err(invalid(
            end_path,
            format!("{end} is less than port {start}"),
        ));
    }
    Ok(())
}

fn peer(path: &FieldPath, peer: &NetworkPolicyPeer) -> Check {
    let has_selector = peer.pod_selector.is_some() || peer.namespace_selector.is_some();
    match &peer.ip_block {
        Some(_) if has_selector => return Err(invalid(
            path.clone(),
            "ipBlock cannot be combined with podSelector or namespaceSelector; use separate peers",
        )),
        Some(block) => {
            let block_path = path.field("ipBlock");
            let net = cidr(&block_path.field("cidr"), &block.cidr)?;
            for (i, except) in block.except.iter().flatten().enumerate() {
                let except_path = block_path.field("except").index(i);
                let hole = cidr(&except_path, except)?;
                if hole == net || !net.contains(&hole) {
                    return Err(invalid(
                        except_path,
                        format!("{except:?} must lie strictly inside cidr {net}"),
                    ));
                }
            }
        }
        None if !has_selector => {
            return Err(invalid(
                path.clone(),
                "a peer needs podSelector, namespaceSelector or ipBlock",
            ))
        }
        None => {}
    }
    if let Some(selector) = &peer.pod_selector {
        label_selector(&path.field("podSelector"), selector)?;
    }
    if let Some(selector) = &peer.namespace_selector {
        label_selector(&path.field("namespaceSelector"), selector)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::validate::error_of;
    use crate::Object;

    fn policy(spec: &str) -> String {
        format!("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: allow-web, namespace: shop}}\nspec:\n{spec}")
    }

    #[test]
    fn selectors_are_checked() {
        assert_eq!(
            error_of(&policy("  podSelector: {matchLabels: {app: \"web app\"}}\n")),
            "document 1 (NetworkPolicy shop/allow-web): spec.podSelector.matchLabels.app: \"web app\" is not a valid label value: \
             use letters, digits, '-', '_' and '.', starting and ending with a letter or digit (or leave it empty)"
        );
        assert_eq!(
            error_of(&policy("  podSelector: {matchExpressions: [{key: tier, operator: in, values: [web]}]}\n")),
            "document 1 (NetworkPolicy shop/allow-web): spec.podSelector.matchExpressions[0].operator: \"in\" is not a valid operator: use In, NotIn, Exists or DoesNotExist"
        );
        assert_eq!(
            error_of(&policy("  podSelector: {matchExpressions: [{key: tier, operator: In}]}\n")),
            "document 1 (NetworkPolicy shop/allow-web): spec.podSelector.matchExpressions[0].values: must not be empty when operator is In"
        );
        assert_eq!(
            error_of(&policy("  podSelector: {matchExpressions: [{key: tier, operator: Exists, values: [x]}]}\n")),
            "document 1 (NetworkPolicy shop/allow-web): spec.podSelector.matchExpressions[0].values: must be empty when operator is Exists"
        );
        assert_eq!(
            error_of(&policy("  podSelector: {}\n  ingress:\n  - from:\n    - namespaceSelector: {matchExpressions: [{key: \"a/b/c\", operator: Exists}]}\n")),
            "document 1 (NetworkPolicy shop/allow-web): spec.ingress[0].from[0].namespaceSelector.matchExpressions[0].key: \"a/b/c\" is not a valid label key: \
             it may contain at most one '/'"
        );
    }

    #[test]
    fn policy_types_are_ingress_or_egress() {
        assert_eq!(
            error_of(&policy("  podSelector: {}\n  policyTypes: [Ingress, egress]\n")),
            "document 1 (NetworkPolicy shop/allow-web): spec.policyTypes[1]: \"egress\" is not a policy type: use Ingress or Egress"
        );
    }

    #[test]
    fn ports_and_ranges_are_checked() {
        let ports = |p: &str| {
            policy(&format!(
                "  podSelector: {{}}\n  egress:\n  - ports: [{p}]\n"
            ))
        };
        assert_eq!(
            error_of(&ports("{protocol: TCP, port: 65536}")),
            "document 1 (NetworkPolicy shop/allow-web): spec.egress[0].ports[0].port: 65536 is out of range 1..=65535"
        );
        assert_eq!(
            error_of(&ports("{protocol: tcp, port: 80}")),
            "document 1 (NetworkPolicy shop/allow-web): spec.egress[0].ports[0].protocol: \"tcp\" is not a supported protocol: use TCP, UDP or SCTP"
        );
        assert_eq!(
            error_of(&ports("{port: http, endPort: 90}")),
            "document 1 (NetworkPolicy shop/allow-web): spec.egress[0].ports[0].endPort: requires port to be a number (a range cannot start at a named port)"
        );
        assert_eq!(
            error_of(&ports("{port: 80, endPort: 79}")),
            "document 1 (NetworkPolicy shop/allow-web): spec.egress[0].ports[0].endPort: 79 is less than port 80"
        );
        assert_eq!(
            error_of(&ports("{port: 80, endPort: 70000}")),
            "document 1 (NetworkPolicy shop/allow-web): spec.egress[0].ports[0].endPort: 70000 is out of range 1..=65535"
        );
        crate::parse_manifests(&ports(
            "{port: 32000, endPort: 32768}, {port: http}, {protocol: UDP}",
        ))
        .unwrap();
    }

    #[test]
    fn peers_and_ip_blocks_are_checked() {
        let from = |peer: &str| {
            policy(&format!(
                "  podSelector: {{}}\n  ingress:\n  - from: [{peer}]\n"
            ))
        };
        assert_eq!(
            error_of(&from("{ipBlock: {cidr: 10.0.0.0/8}, podSelector: {}}")),
            "document 1 (NetworkPolicy shop/allow-web): spec.ingress[0].from[0]: ipBlock cannot be combined with podSelector or namespaceSelector; use separate peers"
        );
        assert_eq!(
            error_of(&from("{}")),
            "document 1 (NetworkPolicy shop/allow-web): spec.ingress[0].from[0]: a peer needs podSelector, namespaceSelector or ipBlock"
        );
        assert_eq!(
            error_of(&from("{ipBlock: {cidr: 10.0.0.0/40}}")),
            "document 1 (NetworkPolicy shop/allow-web): spec.ingress[0].from[0].ipBlock.cidr: \"10.0.0.0/40\" is not a valid CIDR: \
             prefix length \"40\" is not a number in 0..=32"
        );
        assert_eq!(
            error_of(&from("{ipBlock: {}}")),
            "document 1 (NetworkPolicy shop/allow-web): spec.ingress[0].from[0].ipBlock.cidr: is required"
        );
        assert_eq!(
            error_of(&from("{ipBlock: {cidr: 10.0.0.0/8, except: [10.1.0.0/16, 192.168.0.0/16]}}")),
            "document 1 (NetworkPolicy shop/allow-web): spec.ingress[0].from[0].ipBlock.except[1]: \"192.168.0.0/16\" must lie strictly inside cidr 10.0.0.0/8"
        );
        assert_eq!(
            error_of(&from("{ipBlock: {cidr: 10.0.0.0/8, except: [10.0.0.0/8]}}")),
            "document 1 (NetworkPolicy shop/allow-web): spec.ingress[0].from[0].ipBlock.except[0]: \"10.0.0.0/8\" must lie strictly inside cidr 10.0.0.0/8"
        );
        crate::parse_manifests(&from(
            "{ipBlock: {cidr: 0.0.0.0/0, except: [10.0.0.0/8]}}, {namespaceSelector: {}, podSelector: {matchLabels: {app: db}}}",
        ))
        .unwrap();
    }

    #[test]
    fn ip_blocks_with_host_bits_are_read_as_their_network_with_a_warning() {
        // As the API server: accepted as the masked network, and the author is warned.
        let yaml = policy(
            "  podSelector: {}\n  ingress:\n  - from: [{ipBlock: {cidr: 10.0.0.1/8, except: [10.1.2.3/16]}}]\n  egress:\n  - to: [{ipBlock: {cidr: 192.168.1.7/24}}]\n",
        );
        let parsed = crate::parse_manifests_with_warnings(&yaml).unwrap();
        let Object::NetworkPolicy(p) = &parsed.objects[0] else {
            panic!("{:?}", parsed.objects)
        };
        let spec = p.spec.as_ref().unwrap();
        let block = |peer: &k8s_openapi::api::networking::v1::NetworkPolicyPeer| {
            peer.ip_block.clone().unwrap()
        };
        let ingress = block(&spec.ingress.as_ref().unwrap()[0].from.as_ref().unwrap()[0]);
        assert_eq!(ingress.cidr, "10.0.0.0/8");
        assert_eq!(ingress.except, Some(vec!["10.1.0.0/16".to_string()]));
        let egress = block(&spec.egress.as_ref().unwrap()[0].to.as_ref().unwrap()[0]);
        assert_eq!(egress.cidr, "192.168.1.0/24");
        let warnings: Vec<String> = parsed.warnings.iter().map(ToString::to_string).collect();
        assert_eq!(
            warnings,
            [
                "Warning: document 1 (NetworkPolicy shop/allow-web): spec.ingress[0].from[0].ipBlock.cidr: \
                 non-standard CIDR value \"10.0.0.1/8\" has host bits set; it is read as 10.0.0.0/8 \
                 (write 10.0.0.0/8 to silence this warning)",
                "Warning: document 1 (NetworkPolicy shop/allow-web): spec.ingress[0].from[0].ipBlock.except[0]: \
                 non-standard CIDR value \"10.1.2.3/16\" has host bits set; it is read as 10.1.0.0/16 \
                 (write 10.1.0.0/16 to silence this warning)",
                "Warning: document 1 (NetworkPolicy shop/allow-web): spec.egress[0].to[0].ipBlock.cidr: \
                 non-standard CIDR value \"192.168.1.7/24\" has host bits set; it is read as 192.168.1.0/24 \
                 (write 192.168.1.0/24 to silence this warning)",
            ]
        );
        // Masking happens before the except-inside-cidr check, which then holds.
        assert_eq!(
            error_of(&policy(
                "  podSelector: {}\n  ingress:\n  - from: [{ipBlock: {cidr: 10.0.0.1/8, except: [10.0.0.5/8]}}]\n"
            )),
            "document 1 (NetworkPolicy shop/allow-web): spec.ingress[0].from[0].ipBlock.except[0]: \"10.0.0.0/8\" must lie strictly inside cidr 10.0.0.0/8"
        );
        // A canonical policy has no warnings.
        let clean = crate::parse_manifests_with_warnings(&policy(
            "  podSelector: {}\n  ingress:\n  - from: [{ipBlock: {cidr: 10.0.0.0/8}}]\n",
        ))
        .unwrap();
        assert!(clean.warnings.is_empty(), "{:?}", clean.warnings);
    }
}
