//! The pods a policy's selectors can name, indexed by namespace and by `key=value` label, kept
//! between pushes and changed one pod at a time. Selector results are cached per namespace
//! (a pod added to or removed from a namespace drops that namespace's cache) and namespace
//! selector results globally (dropped when a namespace's labels change or it gains its first
//! or loses its last pod), so a cached answer always equals a fresh one.

use super::selector::Selector;
use crate::store::PodRecord;
use podswitch_k8s::k8s_openapi::api::core::v1::Pod;
use podswitch_k8s::NAMESPACE_NAME_LABEL;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::Ipv4Addr;
use std::sync::Arc;

/// A pod's place in the index; stable while the pod is in it (ids of removed pods are reused).
pub(super) type PodId = usize;

/// Labels as Kubernetes objects carry them.
pub(super) type Labels = BTreeMap<String, String>;

/// A pod the compiler knows: attached here (address from its record) or only stored.
#[derive(Debug, Clone)]
pub(super) struct KnownPod {
    pub namespace: String,
    pub ip: Ipv4Addr,
    pub labels: Arc<Labels>,
    pub manifest: Option<Arc<Pod>>,
    pub attached: Option<PodRecord>,
}

/// A namespace with pods: its labels, its pods, and its pods by label key and value.
#[derive(Debug, Default)]
struct NamespaceIndex {
    labels: Labels,
    pods: BTreeSet<PodId>,
    by_label: HashMap<String, HashMap<String, BTreeSet<PodId>>>,
}

/// The index and its selection caches.
#[derive(Debug, Default)]
pub(super) struct PodIndex {
    pods: Vec<Option<KnownPod>>,
    free: Vec<PodId>,
    namespaces: BTreeMap<String, NamespaceIndex>,
    /// Labels of the stored Namespace objects, by name.
    stored_labels: HashMap<String, Labels>,
    pod_selections: HashMap<String, HashMap<Selector, Vec<PodId>>>,
    namespace_selections: HashMap<Selector, Vec<String>>,
}

impl PodIndex {
    /// The pod `id` (which must be in the index).
    pub fn pod(&self, id: PodId) -> Option<&KnownPod> {
        self.pods.get(id).and_then(Option::as_ref)
    }

    /// Every pod in the index, ascending.
    pub fn all(&self) -> Vec<PodId> {
        (0..self.pods.len())
            .filter(|&i| self.pods[i].is_some())
            .collect()
    }

    /// The labels a namespace selector sees for `namespace`: its stored labels plus
    /// `kubernetes.io/metadata.name`, which the API server sets on every namespace.
    pub fn namespace_labels(&self, namespace: &str) -> Labels {
        let mut labels = self
            .stored_labels
            .get(namespace)
            .cloned()
            .unwrap_or_default();
        labels.insert(NAMESPACE_NAME_LABEL.to_string(), namespace.to_string());
        labels
    }

    /// Sets (or, `None`, forgets) a stored Namespace's labels.
    pub fn set_namespace(&mut self, name: &str, labels: Option<Labels>) {
        match labels {
            Some(l) => self.stored_labels.insert(name.to_string(), l),
            None => self.stored_labels.remove(name),
        };
        let effective = self.namespace_labels(name);
        if let Some(ns) = self.namespaces.get_mut(name) {
            ns.labels = effective;
        }
        self.namespace_selections.clear();
    }

    /// Adds a pod; its id.
    pub fn insert(&mut self, pod: KnownPod) -> PodId {
        let id = self.free.pop().unwrap_or(self.pods.len());
        let labels = self.namespace_labels(&pod.namespace);
        if !self.namespaces.contains_key(&pod.namespace) {
            self.namespace_selections.clear();
        }
        let ns = self
            .namespaces
            .entry(pod.namespace.clone())
            .or_insert_with(|| NamespaceIndex {
                labels,
                ..NamespaceIndex::default()
            });
        ns.pods.insert(id);
        for (k, v) in pod.labels.iter() {
            ns.by_label
                .entry(k.clone())
                .or_default()
                .entry(v.clone())
                .or_default()
                .insert(id);
        }
        self.pod_selections.remove(&pod.namespace);
        if id == self.pods.len() {
            self.pods.push(Some(pod));
        } else {
            self.pods[id] = Some(pod);
        }
        id
    }

    /// Removes pod `id`; the pod it was.
    pub fn remove(&mut self, id: PodId) -> Option<KnownPod> {
        let pod = self.pods.get_mut(id)?.take()?;
        self.free.push(id);
        self.pod_selections.remove(&pod.namespace);
        if let Some(ns) = self.namespaces.get_mut(&pod.namespace) {
            ns.pods.remove(&id);
            for (k, v) in pod.labels.iter() {
                if let Some(values) = ns.by_label.get_mut(k) {
                    if let Some(ids) = values.get_mut(v) {
                        ids.remove(&id);
                        if ids.is_empty() {
                            values.remove(v);
                        }
                    }
                    if values.is_empty() {
                        ns.by_label.remove(k);
                    }
                }
            }
            if ns.pods.is_empty() {
                self.namespaces.remove(&pod.namespace);
                self.namespace_selections.clear();
            }
        }
        Some(pod)
    }

    /// The pods of `namespace` that `selector` matches, ascending.
    pub fn select_pods(&mut self, namespace: &str, selector: &Selector) -> Vec<PodId> {
        if let Some(found) = self
            .pod_selections
            .get(namespace)
            .and_then(|cache| cache.get(selector))
        {
            return found.clone();
        }
        let matches = |i: &PodId| {
            self.pods
                .get(*i)
                .and_then(Option::as_ref)
                .is_some_and(|p| selector.matches(&p.labels))
        };
        let found: Vec<PodId> = match self.namespaces.get(namespace) {
            None => Vec::new(),
            Some(ns) if selector.is_everything() => ns.pods.iter().copied().collect(),
            Some(ns) => match selector.narrowest_in() {
                Some((k, values)) => {
                    let by_value = ns.by_label.get(k);
                    let mut found: Vec<PodId> = values
                        .iter()
                        .filter_map(|v| by_value.and_then(|m| m.get(v.as_str())))
                        .flatten()
                        .copied()
                        .filter(matches)
                        .collect();
                    found.sort_unstable();
                    found.dedup();
                    found
                }
                None => ns.pods.iter().copied().filter(matches).collect(),
            },
        };
        self.pod_selections
            .entry(namespace.to_string())
            .or_default()
            .insert(selector.clone(), found.clone());
        found
    }

    /// The namespaces (with pods) whose labels `selector` matches.
    pub fn select_namespaces(&mut self, selector: &Selector) -> Vec<String> {
        if let Some(found) = self.namespace_selections.get(selector) {
            return found.clone();
        }
        let found: Vec<String> = self
            .namespaces
            .iter()
            .filter(|(_, ns)| selector.matches(&ns.labels))
            .map(|(name, _)| name.clone())
            .collect();
        self.namespace_selections
            .insert(selector.clone(), found.clone());
        found
    }
}
