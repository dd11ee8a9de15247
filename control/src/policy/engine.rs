//! The policy compiler as state kept between pushes: the decoded policies, namespaces, pods
//! and attachments, the pod index, each policy's compiled rules and each isolated port's
//! [`PolicySpec`]. Inputs change one object at a time (`put_*`, `remove_*`); [`settle`]
//! then recompiles only what those changes can affect and returns the ports whose spec
//! changed. Compiling from scratch is the same code with everything changed at once.
//!
//! What a change affects (the rest is kept, and equals what a fresh compile would give):
//! - a pod (its manifest or its attachments): its own spec (isolation, ingress named ports),
//!   and every policy with a peer that can select it — with its old or its new labels,
//!   namespace labels or address — whose rules are recompiled, with the specs of every pod
//!   that policy isolates;
//! - a namespace's labels: the policies with a namespace selector matching the old or the
//!   new labels, as above;
//! - a policy: its rules, and the specs of the pods it selected before or selects now.
//!
//! When the changes are many (the first load, a bulk apply), checking every policy against
//! every change costs more than recompiling everything, and everything is recompiled.
//!
//! [`settle`]: PolicyEngine::settle

use super::index::{KnownPod, Labels, PodId, PodIndex};
use super::rules::{compile_rules, resolve_named, CompiledRule, Direction};
use super::selector::Selector;
use super::{namespace_of, normalise, policy_types};
use crate::store::PodRecord;
use podswitch_k8s::k8s_openapi::api::core::v1::Pod;
use podswitch_k8s::k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use podswitch_k8s::NetworkPolicy;
use podswitch_proto::{DirectionSpec, PolicySpec, RuleSpec};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::Ipv4Addr;
use std::sync::Arc;

/// Above this many (change × policy) checks, [`PolicyEngine::settle`] recompiles every policy.
const CHECKS_BEFORE_RECOMPILING_ALL: usize = 2_000_000;

/// A pod's identity in the API: `(namespace, name)`.
type PodName = (String, String);

/// A peer's selectors: `namespaces` `None` means the policy's own namespace.
#[derive(Debug)]
struct PeerSelector {
    namespaces: Option<Selector>,
    pods: Selector,
}

/// A policy with its selectors parsed.
#[derive(Debug)]
struct PolicyEntry {
    object: Arc<NetworkPolicy>,
    namespace: String,
    selector: Selector,
    ingress: bool,
    egress: bool,
    peers: Vec<PeerSelector>,
    /// Its rules read every pod (an egress rule to any peer with named ports).
    reads_every_pod: bool,
    /// The `key=value` labels one of which a pod must carry for a peer to select it (each
    /// peer's narrowest `In`); `None` when some peer has no such requirement.
    peer_labels: Option<Vec<(String, String)>>,
}

impl PolicyEntry {
    fn new(object: Arc<NetworkPolicy>) -> PolicyEntry {
        let namespace = namespace_of(&object.metadata).to_string();
        let spec = object.spec.as_ref();
        let selector = spec
            .and_then(|s| s.pod_selector.as_ref())
            .map(Selector::new)
            .unwrap_or_else(Selector::everything);
        let (ingress, egress) = policy_types(&object);
        let ingress_peers = spec
            .and_then(|s| s.ingress.as_ref())
            .into_iter()
            .flatten()
            .flat_map(|r| r.from.iter().flatten());
        let egress_peers = spec
            .and_then(|s| s.egress.as_ref())
            .into_iter()
            .flatten()
            .flat_map(|r| r.to.iter().flatten());
        let peers: Vec<PeerSelector> = ingress_peers
            .chain(egress_peers)
            .filter(|p| p.ip_block.is_none())
            .filter(|p| p.namespace_selector.is_some() || p.pod_selector.is_some())
            .map(|p| PeerSelector {
                namespaces: p.namespace_selector.as_ref().map(Selector::new),
                pods: p
                    .pod_selector
                    .as_ref()
                    .map(Selector::new)
                    .unwrap_or_else(Selector::everything),
            })
            .collect();
        let reads_every_pod = spec
            .and_then(|s| s.egress.as_ref())
            .into_iter()
            .flatten()
            .any(|r| {
                r.to.as_ref().is_none_or(Vec::is_empty)
                    && r.ports
                        .iter()
                        .flatten()
                        .any(|p| matches!(p.port, Some(IntOrString::String(_))))
            });
        let mut peer_labels: Option<Vec<(String, String)>> = Some(Vec::new());
        for peer in &peers {
            match (peer.pods.narrowest_in(), peer_labels.as_mut()) {
                (Some((k, values)), Some(labels)) => {
                    labels.extend(values.iter().map(|v| (k.to_string(), v.clone())));
                }
                _ => peer_labels = None,
            }
        }
        if reads_every_pod {
            peer_labels = None;
        }
        PolicyEntry {
            object,
            namespace,
            selector,
            ingress,
            egress,
            peers,
            reads_every_pod,
            peer_labels,
        }
    }

    /// Whether one of its peers can select a pod with `labels` in `namespace` (whose labels
    /// are `namespace_labels`).
    fn may_select(&self, namespace: &str, labels: &Labels, namespace_labels: &Labels) -> bool {
        self.reads_every_pod
            || self.peers.iter().any(|peer| {
                let in_namespace = match &peer.namespaces {
                    Some(s) => s.matches(namespace_labels),
                    None => self.namespace == namespace,
                };
                in_namespace && peer.pods.matches(labels)
            })
    }
}

/// A pod as it was or is, for deciding which policies its change affects.
struct PodChange {
    namespace: String,
    labels: Arc<Labels>,
}

/// The compiler's state; see the module doc.
#[derive(Debug)]
pub struct PolicyEngine {
    /// [`CHECKS_BEFORE_RECOMPILING_ALL`] but in tests, which cover both ways.
    checks_before_recompiling_all: usize,
    index: PodIndex,
    manifests: HashMap<PodName, Arc<Pod>>,
    /// Attachments with a Kubernetes namespace, by key.
    records: BTreeMap<String, PodRecord>,
    records_of: HashMap<PodName, BTreeSet<String>>,
    /// Each pod's entries in the index (one per attachment, or per address of a pod stored
    /// only).
    pods_of: HashMap<PodName, Vec<PodId>>,
    /// By `namespace/name`, the order of a spec's policy list.
    policies: BTreeMap<String, PolicyEntry>,
    policies_in: HashMap<String, BTreeSet<String>>,
    /// Which policies a pod change can concern: by a `key=value` label their peers require
    /// (`PolicyEntry::peer_labels`), and those whose peers require none.
    peers_requiring: HashMap<String, HashMap<String, BTreeSet<String>>>,
    peers_requiring_nothing: BTreeSet<String>,
    compiled: HashMap<(String, Direction), Arc<Vec<CompiledRule>>>,
    /// The attached pods each policy selects, and the policies selecting each attached pod.
    selects: HashMap<String, BTreeSet<PodId>>,
    selected_by: HashMap<PodId, BTreeSet<String>>,
    specs: BTreeMap<String, PolicySpec>,
    changed_pods: BTreeSet<PodName>,
    changed_namespaces: BTreeMap<String, Labels>,
    changed_policies: BTreeSet<String>,
    /// How many policies the last `settle` recompiled (tests prove it recompiles few).
    recompiled: usize,
}

impl Default for PolicyEngine {
    fn default() -> PolicyEngine {
        PolicyEngine {
            checks_before_recompiling_all: CHECKS_BEFORE_RECOMPILING_ALL,
            index: PodIndex::default(),
            manifests: HashMap::new(),
            records: BTreeMap::new(),
            records_of: HashMap::new(),
            pods_of: HashMap::new(),
            policies: BTreeMap::new(),
            policies_in: HashMap::new(),
            peers_requiring: HashMap::new(),
            peers_requiring_nothing: BTreeSet::new(),
            compiled: HashMap::new(),
            selects: HashMap::new(),
            selected_by: HashMap::new(),
            specs: BTreeMap::new(),
            changed_pods: BTreeSet::new(),
            changed_namespaces: BTreeMap::new(),
            changed_policies: BTreeSet::new(),
            recompiled: 0,
        }
    }
}

fn pod_name(namespace: &str, name: &str) -> PodName {
    (namespace.to_string(), name.to_string())
}

fn policy_name(policy: &NetworkPolicy) -> String {
    let m = &policy.metadata;
    format!(
        "{}/{}",
        namespace_of(m),
        m.name.as_deref().unwrap_or_default()
    )
}

impl PolicyEngine {
    /// The current specs, by port.
    pub fn specs(&self) -> &BTreeMap<String, PolicySpec> {
        &self.specs
    }

    /// An engine that recompiles every policy on any change (tests: that way must give the
    /// same specs as the incremental one).
    #[cfg(test)]
    pub(super) fn recompiling_all() -> PolicyEngine {
        PolicyEngine {
            checks_before_recompiling_all: 0,
            ..PolicyEngine::default()
        }
    }

    /// How many existing policies the last [`PolicyEngine::settle`] recompiled.
    pub fn recompiled_last(&self) -> usize {
        self.recompiled
    }

    /// Adds (`true`) or removes a policy's entries in the peer label index.
    fn index_peers(&mut self, name: &str, entry_labels: Option<&[(String, String)]>, add: bool) {
        let Some(labels) = entry_labels else {
            if add {
                self.peers_requiring_nothing.insert(name.to_string());
            } else {
                self.peers_requiring_nothing.remove(name);
            }
            return;
        };
        for (k, v) in labels {
            let by_value = self.peers_requiring.entry(k.clone()).or_default();
            let names = by_value.entry(v.clone()).or_default();
            if add {
                names.insert(name.to_string());
            } else {
                names.remove(name);
                if names.is_empty() {
                    by_value.remove(v);
                }
            }
        }
    }

    /// A stored NetworkPolicy, new or changed.
    pub fn put_policy(&mut self, policy: Arc<NetworkPolicy>) {
        let name = policy_name(&policy);
        if let Some(old) = self.policies.get(&name) {
            let labels = old.peer_labels.clone();
            self.index_peers(&name, labels.as_deref(), false);
        }
        let entry = PolicyEntry::new(policy);
        self.index_peers(&name, entry.peer_labels.as_deref(), true);
        self.policies_in
            .entry(entry.namespace.clone())
            .or_default()
            .insert(name.clone());
        self.policies.insert(name.clone(), entry);
        self.changed_policies.insert(name);
    }

    /// A NetworkPolicy deleted.
    pub fn remove_policy(&mut self, namespace: &str, name: &str) {
        let key = format!("{namespace}/{name}");
        if let Some(old) = self.policies.remove(&key) {
            self.index_peers(&key, old.peer_labels.as_deref(), false);
            if let Some(set) = self.policies_in.get_mut(namespace) {
                set.remove(&key);
            }
            self.changed_policies.insert(key);
        }
    }

    /// A stored Namespace's labels, new or changed; `None`: deleted.
    pub fn put_namespace(&mut self, name: &str, labels: Option<Labels>) {
        let before = self.index.namespace_labels(name);
        self.changed_namespaces
            .entry(name.to_string())
            .or_insert(before);
        self.index.set_namespace(name, labels);
    }

    /// A stored Pod, new or changed.
    pub fn put_pod(&mut self, pod: Arc<Pod>) {
        let m = &pod.metadata;
        let key = pod_name(namespace_of(m), m.name.as_deref().unwrap_or_default());
        self.manifests.insert(key.clone(), pod);
        self.changed_pods.insert(key);
    }

    /// A stored Pod deleted.
    pub fn remove_pod(&mut self, namespace: &str, name: &str) {
        let key = pod_name(namespace, name);
        self.manifests.remove(&key);
        self.changed_pods.insert(key);
    }

    /// An attachment that gets a port, new or changed. One the runtime gave no Kubernetes
    /// namespace is no Kubernetes pod: no selector selects it, no policy isolates it.
    pub fn put_attachment(&mut self, record: &PodRecord) {
        let key = record.key();
        self.remove_attachment(&key);
        if record.namespace.is_empty() {
            return;
        }
        let pod = pod_name(&record.namespace, &record.name);
        self.records_of
            .entry(pod.clone())
            .or_default()
            .insert(key.clone());
        self.records.insert(key, record.clone());
        self.changed_pods.insert(pod);
    }

    /// An attachment that no longer gets a port.
    pub fn remove_attachment(&mut self, key: &str) {
        if let Some(old) = self.records.remove(key) {
            let pod = pod_name(&old.namespace, &old.name);
            if let Some(set) = self.records_of.get_mut(&pod) {
                set.remove(key);
                if set.is_empty() {
                    self.records_of.remove(&pod);
                }
            }
            self.changed_pods.insert(pod);
        }
    }

    /// The index entries a pod has now: one per attachment, or one per address of a pod
    /// stored only.
    fn entries_of(&self, pod: &PodName) -> Vec<KnownPod> {
        let manifest = self.manifests.get(pod);
        let labels = Arc::new(
            manifest
                .and_then(|m| m.metadata.labels.clone())
                .unwrap_or_default(),
        );
        if let Some(keys) = self.records_of.get(pod) {
            return keys
                .iter()
                .filter_map(|k| self.records.get(k))
                .map(|record| KnownPod {
                    namespace: pod.0.clone(),
                    ip: record.ip,
                    labels: labels.clone(),
                    manifest: manifest.cloned(),
                    attached: Some(record.clone()),
                })
                .collect();
        }
        let Some(manifest) = manifest else {
            return Vec::new();
        };
        // A hostNetwork pod's address is its node's, and a finished pod's address may
        // already be another pod's: neither is a pod address a selector can mean (Calico
        // and Cilium leave both out too).
        let host_network = manifest
            .spec
            .as_ref()
            .and_then(|s| s.host_network)
            .unwrap_or(false);
        let status = manifest.status.as_ref();
        let phase = status.and_then(|s| s.phase.as_deref());
        if host_network || matches!(phase, Some("Succeeded" | "Failed")) {
            return Vec::new();
        }
        let ips: BTreeSet<Ipv4Addr> = status
            .and_then(|s| s.pod_ips.as_ref())
            .into_iter()
            .flatten()
            .map(|p| p.ip.as_str())
            .chain(status.and_then(|s| s.pod_ip.as_deref()))
            .filter_map(|ip| ip.parse().ok())
            .collect();
        ips.into_iter()
            .map(|ip| KnownPod {
                namespace: pod.0.clone(),
                ip,
                labels: labels.clone(),
                manifest: Some(manifest.clone()),
                attached: None,
            })
            .collect()
    }

    /// Recompiles what the changes since the last call affect; the ports whose spec changed,
    /// each with its new spec (`None`: no policy isolates it any more, or it is gone).
    pub fn settle(&mut self) -> Vec<(String, Option<PolicySpec>)> {
        let changed_pods = std::mem::take(&mut self.changed_pods);
        let changed_namespaces = std::mem::take(&mut self.changed_namespaces);
        let mut changed_policies = std::mem::take(&mut self.changed_policies);
        // The specs to recompute (attached pods) and the ports whose pod went.
        let mut dirty: BTreeSet<PodId> = BTreeSet::new();
        let mut left_ports: BTreeSet<String> = BTreeSet::new();
        let mut pod_changes: Vec<PodChange> = Vec::new();
        let mut new_attached: Vec<PodId> = Vec::new();
        for pod in &changed_pods {
            for id in self.pods_of.remove(pod).unwrap_or_default() {
                if let Some(old) = self.index.remove(id) {
                    if let Some(record) = &old.attached {
                        left_ports.insert(record.port.clone());
                    }
                    for policy in self.selected_by.remove(&id).unwrap_or_default() {
                        if let Some(set) = self.selects.get_mut(&policy) {
                            set.remove(&id);
                        }
                    }
                    dirty.remove(&id);
                    pod_changes.push(PodChange {
                        namespace: old.namespace,
                        labels: old.labels,
                    });
                }
            }
            let entries = self.entries_of(pod);
            let mut ids = Vec::with_capacity(entries.len());
            for entry in entries {
                let change = PodChange {
                    namespace: entry.namespace.clone(),
                    labels: entry.labels.clone(),
                };
                let attached = entry.attached.is_some();
                let id = self.index.insert(entry);
                if attached {
                    new_attached.push(id);
                    dirty.insert(id);
                }
                ids.push(id);
                pod_changes.push(change);
            }
            if !ids.is_empty() {
                self.pods_of.insert(pod.clone(), ids);
            }
        }
        let changes = pod_changes.len() + changed_namespaces.len();
        let everything =
            changes.saturating_mul(self.policies.len()) > self.checks_before_recompiling_all;
        if everything {
            changed_policies.extend(self.policies.keys().cloned());
            // Selections of removed policies were dropped below; every existing one is redone.
            changed_policies.extend(self.selects.keys().cloned());
        }
        // Policies whose rules may read a changed pod or namespace: recompiled.
        let mut stale: BTreeSet<String> = changed_policies.clone();
        if !everything && changes > 0 {
            let mut namespace_labels: HashMap<&str, Vec<Labels>> = HashMap::new();
            for change in &pod_changes {
                namespace_labels
                    .entry(change.namespace.as_str())
                    .or_insert_with(|| {
                        let mut both = vec![self.index.namespace_labels(&change.namespace)];
                        both.extend(changed_namespaces.get(&change.namespace).cloned());
                        both
                    });
            }
            // A pod change can concern only the policies with a peer requiring one of its
            // labels (old or new), or requiring none; a namespace change, any policy.
            let candidates: Vec<&String> = if changed_namespaces.is_empty() {
                let mut found: BTreeSet<&String> = self.peers_requiring_nothing.iter().collect();
                for change in &pod_changes {
                    for (k, v) in change.labels.iter() {
                        if let Some(names) = self.peers_requiring.get(k).and_then(|m| m.get(v)) {
                            found.extend(names);
                        }
                    }
                }
                found.into_iter().collect()
            } else {
                self.policies.keys().collect()
            };
            for name in candidates {
                let Some(entry) = self.policies.get(name) else {
                    continue;
                };
                if stale.contains(name) {
                    continue;
                }
                let by_pod = pod_changes.iter().any(|c| {
                    namespace_labels
                        .get(c.namespace.as_str())
                        .into_iter()
                        .flatten()
                        .any(|ns| entry.may_select(&c.namespace, &c.labels, ns))
                });
                let by_namespace = changed_namespaces.iter().any(|(ns, before)| {
                    let now = self.index.namespace_labels(ns);
                    entry.peers.iter().any(|peer| {
                        peer.namespaces
                            .as_ref()
                            .is_some_and(|s| s.matches(before) || s.matches(&now))
                    })
                });
                if by_pod || by_namespace {
                    stale.insert(name.clone());
                }
            }
        }
        // Selections: changed policies select again; new attached pods are matched against
        // the other policies of their namespace.
        for name in &changed_policies {
            let before = self.selects.remove(name).unwrap_or_default();
            for id in &before {
                if let Some(set) = self.selected_by.get_mut(id) {
                    set.remove(name);
                }
            }
            dirty.extend(before);
            let Some(entry) = self.policies.get(name) else {
                continue;
            };
            let (namespace, selector) = (entry.namespace.clone(), entry.selector.clone());
            let now: BTreeSet<PodId> = self
                .index
                .select_pods(&namespace, &selector)
                .into_iter()
                .filter(|&id| self.index.pod(id).is_some_and(|p| p.attached.is_some()))
                .collect();
            for &id in &now {
                self.selected_by.entry(id).or_default().insert(name.clone());
            }
            dirty.extend(now.iter().copied());
            self.selects.insert(name.clone(), now);
        }
        // When every policy selected again above, the new pods are in those selections.
        let new_attached = if everything { Vec::new() } else { new_attached };
        for &id in &new_attached {
            let Some(pod) = self.index.pod(id) else {
                continue;
            };
            for name in self.policies_in.get(&pod.namespace).into_iter().flatten() {
                if changed_policies.contains(name) {
                    continue;
                }
                let selects = self
                    .policies
                    .get(name)
                    .is_some_and(|e| e.selector.matches(&pod.labels));
                if selects {
                    self.selected_by.entry(id).or_default().insert(name.clone());
                    self.selects.entry(name.clone()).or_default().insert(id);
                }
            }
        }
        self.recompiled = stale
            .iter()
            .filter(|n| self.policies.contains_key(*n))
            .count();
        for name in &stale {
            self.compiled.remove(&(name.clone(), Direction::Ingress));
            self.compiled.remove(&(name.clone(), Direction::Egress));
            dirty.extend(self.selects.get(name).into_iter().flatten().copied());
        }
        // The specs: every dirty attached pod's, and none for a port whose pod went (unless
        // a new entry of the same port produced one).
        let mut produced: BTreeMap<String, Option<PolicySpec>> = BTreeMap::new();
        for id in dirty {
            let Some(port) = self
                .index
                .pod(id)
                .and_then(|p| p.attached.as_ref())
                .map(|r| r.port.clone())
            else {
                continue;
            };
            let spec = self.spec_of(id);
            produced.insert(port, spec);
        }
        for port in left_ports {
            produced.entry(port).or_insert(None);
        }
        let mut changed = Vec::new();
        for (port, spec) in produced {
            let same = self.specs.get(&port) == spec.as_ref();
            if same {
                continue;
            }
            match &spec {
                Some(s) => self.specs.insert(port.clone(), s.clone()),
                None => self.specs.remove(&port),
            };
            changed.push((port, spec));
        }
        changed
    }

    /// The spec of attached pod `id`; `None` when no policy isolates it.
    fn spec_of(&mut self, id: PodId) -> Option<PolicySpec> {
        let policies: Vec<String> = self
            .selected_by
            .get(&id)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default();
        let port = self.index.pod(id)?.attached.as_ref()?.port.clone();
        let ingress: Vec<String> = policies
            .iter()
            .filter(|p| self.policies.get(*p).is_some_and(|e| e.ingress))
            .cloned()
            .collect();
        let egress: Vec<String> = policies
            .iter()
            .filter(|p| self.policies.get(*p).is_some_and(|e| e.egress))
            .cloned()
            .collect();
        if ingress.is_empty() && egress.is_empty() {
            return None;
        }
        let ingress =
            (!ingress.is_empty()).then(|| self.direction(id, ingress, Direction::Ingress));
        let egress = (!egress.is_empty()).then(|| self.direction(id, egress, Direction::Egress));
        Some(PolicySpec {
            port,
            ingress,
            egress,
        })
    }

    /// One direction of pod `id`'s spec: the rules of `policies` (sorted by name, their
    /// position in that order numbers them).
    fn direction(
        &mut self,
        id: PodId,
        policies: Vec<String>,
        direction: Direction,
    ) -> DirectionSpec {
        let mut rules = Vec::new();
        for (position, name) in policies.iter().enumerate() {
            let position = u32::try_from(position).unwrap_or(u32::MAX);
            let compiled = self.compiled_rules(name, direction);
            for rule in compiled.iter() {
                if let Some((peers, ports)) = &rule.ingress_named {
                    let mut resolved = ports.numeric.clone();
                    if let Some(pod) = self.index.pod(id) {
                        resolved.extend(resolve_named(pod, &ports.named));
                    }
                    rules.push(RuleSpec {
                        policy: position,
                        rule: rule.rule,
                        peers: peers.clone(),
                        ports: Some(normalise(resolved)),
                    });
                }
                for (peers, ports) in &rule.parts {
                    rules.push(RuleSpec {
                        policy: position,
                        rule: rule.rule,
                        peers: peers.clone(),
                        ports: ports.clone(),
                    });
                }
            }
        }
        DirectionSpec { policies, rules }
    }

    fn compiled_rules(&mut self, name: &str, direction: Direction) -> Arc<Vec<CompiledRule>> {
        let key = (name.to_string(), direction);
        if let Some(rules) = self.compiled.get(&key) {
            return rules.clone();
        }
        let rules = Arc::new(match self.policies.get(name) {
            Some(entry) => {
                let object = entry.object.clone();
                compile_rules(&mut self.index, &object, direction)
            }
            None => Vec::new(),
        });
        self.compiled.insert(key, rules.clone());
        rules
    }
}
