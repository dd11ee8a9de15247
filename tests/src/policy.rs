//! NetworkPolicy for the integration tests: a small model of the objects a test applies
//! (namespaces, pods, `networking.k8s.io/v1` NetworkPolicies), the YAML generated from it, and an
//! evaluator of the Kubernetes semantics written from the API documentation, independent of
//! control's compiler: the expected reachability of every test comes from here, the observed one
//! from real kernel traffic ([`cluster`]).
//!
//! Semantics implemented (networking.k8s.io/v1): a policy selects the pods of its namespace its
//! `podSelector` matches; `policyTypes` default to Ingress, plus Egress when `egress` has a rule;
//! a pod selected for a direction by any policy is isolated in it and allowed what the union of
//! those policies' rules allows; an empty `from`/`to` or `ports` means all; peers are OR, a
//! peer's pod and namespace selectors are AND; a pod selector alone means the policy's
//! namespace; namespaces carry `kubernetes.io/metadata.name`; a named port resolves against the
//! destination pod's containerPorts (egress: only for destinations matched as pods, not through
//! an ipBlock); traffic a pod sends to itself always passes.

pub mod cluster;
mod yaml;

pub use yaml::to_yaml;

use podswitch_proto::{Ipv4Prefix, PolicyProtocol};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;

/// Labels of an object.
pub type Labels = BTreeMap<String, String>;

/// The label the API server gives every Namespace.
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// Labels from pairs.
pub fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A `matchExpressions` operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SelectorOp {
    /// The label is one of the values.
    In(Vec<String>),
    /// The label is absent or none of the values.
    NotIn(Vec<String>),
    /// The label is present.
    Exists,
    /// The label is absent.
    DoesNotExist,
}

/// A metav1.LabelSelector: every `matchLabels` pair and every expression must hold; empty
/// matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selector {
    /// `matchLabels`.
    pub match_labels: Labels,
    /// `matchExpressions` as (key, operator).
    pub match_expressions: Vec<(String, SelectorOp)>,
}

impl Selector {
    /// `{}`: everything.
    pub fn all() -> Selector {
        Selector::default()
    }

    /// `matchLabels` of these pairs.
    pub fn labels(pairs: &[(&str, &str)]) -> Selector {
        Selector {
            match_labels: labels(pairs),
            match_expressions: Vec::new(),
        }
    }

    /// Adds an expression.
    pub fn with(mut self, key: &str, op: SelectorOp) -> Selector {
        self.match_expressions.push((key.to_string(), op));
        self
    }

    /// Whether `labels` satisfy the selector.
    pub fn matches(&self, labels: &Labels) -> bool {
        self.match_labels
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
            && self.match_expressions.iter().all(|(k, op)| {
                let value = labels.get(k);
                match op {
                    SelectorOp::In(values) => value.is_some_and(|v| values.contains(v)),
                    SelectorOp::NotIn(values) => value.is_none_or(|v| !values.contains(v)),
                    SelectorOp::Exists => value.is_some(),
                    SelectorOp::DoesNotExist => value.is_none(),
                }
            })
    }

    fn json(&self) -> Value {
        let mut v = serde_json::Map::new();
        if !self.match_labels.is_empty() {
            v.insert("matchLabels".into(), json!(self.match_labels));
        }
        if !self.match_expressions.is_empty() {
            let exprs: Vec<Value> = self
                .match_expressions
                .iter()
                .map(|(key, op)| match op {
                    SelectorOp::In(values) => {
                        json!({"key": key, "operator": "In", "values": values})
                    }
                    SelectorOp::NotIn(values) => {
                        json!({"key": key, "operator": "NotIn", "values": values})
                    }
                    SelectorOp::Exists => json!({"key": key, "operator": "Exists"}),
                    SelectorOp::DoesNotExist => json!({"key": key, "operator": "DoesNotExist"}),
                })
                .collect();
            v.insert("matchExpressions".into(), Value::Array(exprs));
        }
        Value::Object(v)
    }
}

/// One entry of a rule's `from` or `to`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Peer {
    /// `podSelector` alone: pods of the policy's namespace.
    Pods(Selector),
    /// `namespaceSelector` alone: every pod of the matching namespaces.
    Namespaces(Selector),
    /// Both in one peer: pods matching `pods` in namespaces matching `namespaces`.
    PodsInNamespaces {
        /// `podSelector`.
        pods: Selector,
        /// `namespaceSelector`.
        namespaces: Selector,
    },
    /// `ipBlock`.
    Block {
        /// `cidr`.
        cidr: Ipv4Prefix,
        /// `except`.
        except: Vec<Ipv4Prefix>,
    },
}

impl Peer {
    fn json(&self) -> Value {
        match self {
            Peer::Pods(s) => json!({"podSelector": s.json()}),
            Peer::Namespaces(s) => json!({"namespaceSelector": s.json()}),
            Peer::PodsInNamespaces { pods, namespaces } => {
                json!({"podSelector": pods.json(), "namespaceSelector": namespaces.json()})
            }
            Peer::Block { cidr, except } => {
                let mut b = json!({"cidr": cidr.to_string()});
                if !except.is_empty() {
                    let e: Vec<String> = except.iter().map(ToString::to_string).collect();
                    b["except"] = json!(e);
                }
                json!({ "ipBlock": b })
            }
        }
    }
}

/// `port` of a NetworkPolicyPort.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortValue {
    /// A number (with `endPort`: the first of a range).
    Number(u16),
    /// A containerPort name.
    Name(String),
}

/// A NetworkPolicyPort.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyPort {
    /// `protocol` (absent: TCP).
    pub protocol: Option<PolicyProtocol>,
    /// `port` (absent: every port of the protocol).
    pub port: Option<PortValue>,
    /// `endPort`.
    pub end_port: Option<u16>,
}

impl PolicyPort {
    /// One numeric port.
    pub fn number(protocol: PolicyProtocol, port: u16) -> PolicyPort {
        PolicyPort {
            protocol: Some(protocol),
            port: Some(PortValue::Number(port)),
            end_port: None,
        }
    }

    /// `port`..=`end_port`.
    pub fn range(protocol: PolicyProtocol, port: u16, end_port: u16) -> PolicyPort {
        PolicyPort {
            end_port: Some(end_port),
            ..PolicyPort::number(protocol, port)
        }
    }

    /// A named port.
    pub fn named(protocol: PolicyProtocol, name: &str) -> PolicyPort {
        PolicyPort {
            protocol: Some(protocol),
            port: Some(PortValue::Name(name.to_string())),
            end_port: None,
        }
    }

    fn json(&self) -> Value {
        let mut v = serde_json::Map::new();
        if let Some(p) = self.protocol {
            v.insert("protocol".into(), json!(p.to_string()));
        }
        match &self.port {
            Some(PortValue::Number(n)) => v.insert("port".into(), json!(n)),
            Some(PortValue::Name(s)) => v.insert("port".into(), json!(s)),
            None => None,
        };
        if let Some(e) = self.end_port {
            v.insert("endPort".into(), json!(e));
        }
        Value::Object(v)
    }
}

/// An ingress or egress rule: peers × ports, each empty meaning all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rule {
    /// `from` (ingress) or `to` (egress).
    pub peers: Vec<Peer>,
    /// `ports`.
    pub ports: Vec<PolicyPort>,
}

impl Rule {
    /// `{}`: everything.
    pub fn all() -> Rule {
        Rule::default()
    }

    /// From/to these peers, every port.
    pub fn peers(peers: Vec<Peer>) -> Rule {
        Rule {
            peers,
            ports: Vec::new(),
        }
    }

    /// Any peer, these ports.
    pub fn ports(ports: Vec<PolicyPort>) -> Rule {
        Rule {
            peers: Vec::new(),
            ports,
        }
    }

    fn json(&self, peers_field: &str) -> Value {
        let mut v = serde_json::Map::new();
        if !self.peers.is_empty() {
            let peers: Vec<Value> = self.peers.iter().map(Peer::json).collect();
            v.insert(peers_field.into(), Value::Array(peers));
        }
        if !self.ports.is_empty() {
            let ports: Vec<Value> = self.ports.iter().map(PolicyPort::json).collect();
            v.insert("ports".into(), Value::Array(ports));
        }
        Value::Object(v)
    }
}

/// A direction of isolation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// `Ingress`.
    Ingress,
    /// `Egress`.
    Egress,
}

/// A NetworkPolicy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// `metadata.namespace`.
    pub namespace: String,
    /// `metadata.name`.
    pub name: String,
    /// `spec.podSelector`.
    pub pod_selector: Selector,
    /// `spec.policyTypes` (None: omitted, defaulted).
    pub policy_types: Option<Vec<Direction>>,
    /// `spec.ingress` (None: absent).
    pub ingress: Option<Vec<Rule>>,
    /// `spec.egress` (None: absent).
    pub egress: Option<Vec<Rule>>,
}

impl Policy {
    /// A policy selecting every pod of `namespace`, with no rules and no policyTypes: a default
    /// deny of ingress.
    pub fn new(namespace: &str, name: &str) -> Policy {
        Policy {
            namespace: namespace.to_string(),
            name: name.to_string(),
            pod_selector: Selector::all(),
            policy_types: None,
            ingress: None,
            egress: None,
        }
    }

    /// Selecting the pods `selector` matches.
    pub fn selecting(mut self, selector: Selector) -> Policy {
        self.pod_selector = selector;
        self
    }

    /// With these ingress rules.
    pub fn ingress(mut self, rules: Vec<Rule>) -> Policy {
        self.ingress = Some(rules);
        self
    }

    /// With these egress rules.
    pub fn egress(mut self, rules: Vec<Rule>) -> Policy {
        self.egress = Some(rules);
        self
    }

    /// With explicit policyTypes.
    pub fn types(mut self, types: &[Direction]) -> Policy {
        self.policy_types = Some(types.to_vec());
        self
    }

    /// `namespace/name`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// The policyTypes in effect (defaulted as the API server does).
    pub fn effective_types(&self) -> Vec<Direction> {
        match &self.policy_types {
            Some(t) => t.clone(),
            // The API server's SetDefaults_NetworkPolicy: Egress only when `egress` has a
            // rule (`len(spec.Egress) != 0`); `egress: []` alone isolates nothing.
            None if self.egress.as_ref().is_some_and(|e| !e.is_empty()) => {
                vec![Direction::Ingress, Direction::Egress]
            }
            None => vec![Direction::Ingress],
        }
    }

    /// The manifest.
    pub fn yaml(&self) -> String {
        let mut spec = json!({"podSelector": self.pod_selector.json()});
        if let Some(types) = &self.policy_types {
            let t: Vec<&str> = types
                .iter()
                .map(|d| match d {
                    Direction::Ingress => "Ingress",
                    Direction::Egress => "Egress",
                })
                .collect();
            spec["policyTypes"] = json!(t);
        }
        if let Some(rules) = &self.ingress {
            spec["ingress"] = Value::Array(rules.iter().map(|r| r.json("from")).collect());
        }
        if let Some(rules) = &self.egress {
            spec["egress"] = Value::Array(rules.iter().map(|r| r.json("to")).collect());
        }
        to_yaml(&json!({
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {"namespace": self.namespace, "name": self.name},
            "spec": spec,
        }))
    }
}

/// A Namespace object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamespaceModel {
    /// Its name.
    pub name: String,
    /// Its labels (without the one the API server adds).
    pub labels: Labels,
}

impl NamespaceModel {
    /// The manifest.
    pub fn yaml(&self) -> String {
        to_yaml(&json!({
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": self.name, "labels": self.labels},
        }))
    }
}

/// A container port of a pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerPort {
    /// `name`.
    pub name: String,
    /// `protocol`.
    pub protocol: PolicyProtocol,
    /// `containerPort`.
    pub port: u16,
}

/// A pod: its Pod object and the address it has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodModel {
    /// Kubernetes namespace.
    pub namespace: String,
    /// Pod name.
    pub name: String,
    /// Labels.
    pub labels: Labels,
    /// Address.
    pub ip: Ipv4Addr,
    /// The one container's ports.
    pub container_ports: Vec<ContainerPort>,
}

impl PodModel {
    /// `namespace/name`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// The manifest (no status: control knows the address from the attachment).
    pub fn yaml(&self) -> String {
        let ports: Vec<Value> = self
            .container_ports
            .iter()
            .map(|p| json!({"name": p.name, "containerPort": p.port, "protocol": p.protocol.to_string()}))
            .collect();
        to_yaml(&json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"namespace": self.namespace, "name": self.name, "labels": self.labels},
            "spec": {"containers": [{"name": "serve", "image": "none", "ports": ports}]},
        }))
    }
}

/// How a destination matched an egress peer: named ports resolve only on pods matched as pods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Match {
    AsPod,
    ByAddress,
}

/// Everything the evaluator needs: the objects applied.
#[derive(Debug, Clone, Default)]
pub struct World {
    /// Namespace objects.
    pub namespaces: Vec<NamespaceModel>,
    /// Pods.
    pub pods: Vec<PodModel>,
    /// NetworkPolicies.
    pub policies: Vec<Policy>,
}

impl World {
    /// A namespace's labels as selectors see them: its object's plus the name label.
    pub fn namespace_labels(&self, namespace: &str) -> Labels {
        let mut l = self
            .namespaces
            .iter()
            .find(|n| n.name == namespace)
            .map(|n| n.labels.clone())
            .unwrap_or_default();
        l.insert(NAMESPACE_NAME_LABEL.to_string(), namespace.to_string());
        l
    }

    /// The policies isolating `pod` in `dir`, as sorted `namespace/name`.
    pub fn isolating(&self, pod: &PodModel, dir: Direction) -> Vec<String> {
        let mut keys: Vec<String> = self.isolating_policies(pod, dir).map(Policy::key).collect();
        keys.sort();
        keys
    }

    fn isolating_policies<'a>(
        &'a self,
        pod: &'a PodModel,
        dir: Direction,
    ) -> impl Iterator<Item = &'a Policy> + 'a {
        self.policies.iter().filter(move |p| {
            p.namespace == pod.namespace
                && p.pod_selector.matches(&pod.labels)
                && p.effective_types().contains(&dir)
        })
    }

    /// How `peer` matches `candidate` for a policy of `policy_ns`, if it does.
    fn peer_match(&self, peer: &Peer, policy_ns: &str, candidate: &PodModel) -> Option<Match> {
        let hit = match peer {
            Peer::Pods(s) => candidate.namespace == policy_ns && s.matches(&candidate.labels),
            Peer::Namespaces(s) => s.matches(&self.namespace_labels(&candidate.namespace)),
            Peer::PodsInNamespaces { pods, namespaces } => {
                pods.matches(&candidate.labels)
                    && namespaces.matches(&self.namespace_labels(&candidate.namespace))
            }
            Peer::Block { cidr, except } => {
                return (cidr.contains(candidate.ip)
                    && !except.iter().any(|e| e.contains(candidate.ip)))
                .then_some(Match::ByAddress)
            }
        };
        hit.then_some(Match::AsPod)
    }

    /// Whether a rule's ports admit `protocol`/`port` to `dest` (named ports resolved on it
    /// when `named_ok`).
    fn ports_match(
        ports: &[PolicyPort],
        dest: &PodModel,
        protocol: PolicyProtocol,
        port: u16,
        named_ok: bool,
    ) -> bool {
        ports.is_empty()
            || ports.iter().any(|p| {
                p.protocol.unwrap_or(PolicyProtocol::Tcp) == protocol
                    && match &p.port {
                        None => true,
                        Some(PortValue::Number(n)) => {
                            (*n..=p.end_port.unwrap_or(*n)).contains(&port)
                        }
                        Some(PortValue::Name(name)) => {
                            named_ok
                                && dest.container_ports.iter().any(|c| {
                                    &c.name == name && c.protocol == protocol && c.port == port
                                })
                        }
                    }
            })
    }

    /// Whether a new connection `from` → `to` at `protocol`/`port` is allowed.
    pub fn allowed(
        &self,
        from: &PodModel,
        to: &PodModel,
        protocol: PolicyProtocol,
        port: u16,
    ) -> bool {
        if from.key() == to.key() {
            return true;
        }
        self.egress_allows(from, to, protocol, port)
            && self.ingress_allows(to, from, protocol, port)
    }

    fn ingress_allows(
        &self,
        to: &PodModel,
        from: &PodModel,
        protocol: PolicyProtocol,
        port: u16,
    ) -> bool {
        let mut isolated = false;
        for p in self.isolating_policies(to, Direction::Ingress) {
            isolated = true;
            for rule in p.ingress.iter().flatten() {
                let peer_ok = rule.peers.is_empty()
                    || rule
                        .peers
                        .iter()
                        .any(|peer| self.peer_match(peer, &p.namespace, from).is_some());
                if peer_ok && Self::ports_match(&rule.ports, to, protocol, port, true) {
                    return true;
                }
            }
        }
        !isolated
    }

    fn egress_allows(
        &self,
        from: &PodModel,
        to: &PodModel,
        protocol: PolicyProtocol,
        port: u16,
    ) -> bool {
        let mut isolated = false;
        for p in self.isolating_policies(from, Direction::Egress) {
            isolated = true;
            for rule in p.egress.iter().flatten() {
                let matches: Vec<Match> = if rule.peers.is_empty() {
                    vec![Match::AsPod]
                } else {
                    rule.peers
                        .iter()
                        .filter_map(|peer| self.peer_match(peer, &p.namespace, to))
                        .collect()
                };
                if matches
                    .iter()
                    .any(|m| Self::ports_match(&rule.ports, to, protocol, port, *m == Match::AsPod))
                {
                    return true;
                }
            }
        }
        !isolated
    }
}

#[cfg(test)]
mod tests;
