//! Stored NetworkPolicies, Namespaces and Pods → the dataplane's [`PolicySpec`]s, one per
//! attached pod port that some policy isolates, with every Kubernetes semantic resolved here
//! (`networking.k8s.io/v1`): pod and namespace selectors become the peers' addresses (/32s),
//! ipBlocks stay blocks with their holes, named ports become numbers. The dataplane never
//! sees a label.
//!
//! The compiler is [`PolicyEngine`] (`engine.rs`), state kept between pushes that recompiles
//! only what a change can affect; [`compile_policies`] is the same engine from scratch. Pods
//! are indexed by namespace and by `key=value` label (`index.rs`); each distinct (namespace,
//! pod selector) and each distinct namespace selector is evaluated once until a pod of that
//! namespace or a namespace changes, and only the rules of policies that select an attached
//! pod are compiled.

mod engine;
mod index;
mod rules;
mod selector;

pub use engine::PolicyEngine;
pub use selector::{Requirement, Selector};

use crate::store::{decode_object, object_kind, PodRecord, StoreError};
use podswitch_k8s::k8s_openapi::api::core::v1::Pod;
use podswitch_k8s::k8s_openapi::api::networking::v1::NetworkPolicyPort;
use podswitch_k8s::k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use podswitch_k8s::k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use podswitch_k8s::{Namespace, NetworkPolicy};
use podswitch_proto::{PolicyProtocol, PolicySpec, PortRange};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The policy-related objects of the store, decoded.
#[derive(Debug, Default, Clone)]
pub struct PolicyObjects {
    /// Every NetworkPolicy.
    pub policies: Vec<NetworkPolicy>,
    /// Every Namespace (their labels feed namespace selectors).
    pub namespaces: Vec<Namespace>,
    /// Every Pod (labels, containerPorts, and `status.podIPs` of pods not attached here).
    pub pods: Vec<Pod>,
}

/// The store's key prefixes of the kinds compiled here (`ObjectKey`'s display, lower case).
pub const KINDS: [&str; 3] = ["networkpolicy", "namespace", "pod"];

/// Whether a stored object key (`pod default/web`) is of a kind compiled here.
pub fn is_policy_key(key: &str) -> bool {
    object_kind(key).is_some_and(|kind| KINDS.contains(&kind))
}

impl PolicyObjects {
    /// Decodes the stored JSON of the objects `is_policy_key` selects; others are ignored.
    pub fn decode<'a>(
        objects: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<PolicyObjects, StoreError> {
        let mut out = PolicyObjects::default();
        for (key, json) in objects {
            match object_kind(key) {
                Some("networkpolicy") => out.policies.push(decode_object(key, json)?),
                Some("namespace") => out.namespaces.push(decode_object(key, json)?),
                Some("pod") => out.pods.push(decode_object(key, json)?),
                _ => {}
            }
        }
        Ok(out)
    }
}

fn namespace_of(meta: &ObjectMeta) -> &str {
    meta.namespace.as_deref().unwrap_or("default")
}

fn protocol(p: Option<&str>) -> Option<PolicyProtocol> {
    match p.unwrap_or("TCP") {
        "TCP" => Some(PolicyProtocol::Tcp),
        "UDP" => Some(PolicyProtocol::Udp),
        "SCTP" => Some(PolicyProtocol::Sctp),
        _ => None,
    }
}

/// Sorted, with overlapping and adjacent ranges of one protocol merged.
fn normalise(mut ranges: Vec<PortRange>) -> Vec<PortRange> {
    ranges.sort_unstable();
    let mut out: Vec<PortRange> = Vec::with_capacity(ranges.len());
    for r in ranges {
        match out.last_mut() {
            Some(last)
                if last.protocol == r.protocol
                    && u32::from(r.first) <= u32::from(last.last) + 1 =>
            {
                last.last = last.last.max(r.last);
            }
            _ => out.push(r),
        }
    }
    out
}

/// A rule's `ports`, split into numeric ranges and named ports; `None`: all ports.
#[derive(Debug)]
struct Ports {
    numeric: Vec<PortRange>,
    named: Vec<(String, PolicyProtocol)>,
}

fn ports(list: Option<&[NetworkPolicyPort]>) -> Option<Ports> {
    let list = list.unwrap_or_default();
    if list.is_empty() {
        return None;
    }
    let mut out = Ports {
        numeric: Vec::new(),
        named: Vec::new(),
    };
    for entry in list {
        let Some(proto) = protocol(entry.protocol.as_deref()) else {
            continue;
        };
        match &entry.port {
            None => out.numeric.push(PortRange {
                protocol: proto,
                first: 0,
                last: u16::MAX,
            }),
            Some(IntOrString::Int(first)) => {
                let last = entry.end_port.unwrap_or(*first);
                if let (Ok(first), Ok(last)) = (u16::try_from(*first), u16::try_from(last)) {
                    if first <= last {
                        out.numeric.push(PortRange {
                            protocol: proto,
                            first,
                            last,
                        });
                    }
                }
            }
            Some(IntOrString::String(name)) => out.named.push((name.clone(), proto)),
        }
    }
    out.numeric = normalise(out.numeric);
    Some(out)
}

/// The policyTypes of a policy, defaulted as the API server does when absent or empty
/// (`SetDefaults_NetworkPolicy`): always Ingress, Egress when `spec.egress` has a rule.
/// Kubernetes tests `len(spec.Egress) != 0`, so `egress: []` without policyTypes isolates
/// nothing for egress.
fn policy_types(policy: &NetworkPolicy) -> (bool, bool) {
    let Some(spec) = &policy.spec else {
        return (true, false);
    };
    match spec.policy_types.as_deref() {
        Some(types) if !types.is_empty() => (
            types.iter().any(|t| t == "Ingress"),
            types.iter().any(|t| t == "Egress"),
        ),
        _ => (true, spec.egress.as_ref().is_some_and(|e| !e.is_empty())),
    }
}

/// One `PolicySpec` per attached pod port that at least one policy isolates, sorted by port.
/// `pods` are the attachments the dataplane gets ports for. From scratch: a fresh
/// [`PolicyEngine`] given everything at once.
pub fn compile_policies(objects: &PolicyObjects, pods: &[&PodRecord]) -> Vec<PolicySpec> {
    let mut engine = PolicyEngine::default();
    for policy in &objects.policies {
        engine.put_policy(Arc::new(policy.clone()));
    }
    for ns in &objects.namespaces {
        if let Some(name) = ns.metadata.name.as_deref() {
            engine.put_namespace(name, Some(ns.metadata.labels.clone().unwrap_or_default()));
        }
    }
    for pod in &objects.pods {
        engine.put_pod(Arc::new(pod.clone()));
    }
    for record in pods {
        engine.put_attachment(record);
    }
    engine.settle();
    engine.specs().values().cloned().collect()
}

/// The specs by port, for diffs.
pub fn by_port(specs: Vec<PolicySpec>) -> BTreeMap<String, PolicySpec> {
    specs.into_iter().map(|s| (s.port.clone(), s)).collect()
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod incremental_tests;
