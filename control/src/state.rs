//! The desired dataplane configuration kept between pushes, so that a push costs what
//! changed rather than what is stored.
//!
//! [`DesiredState`] holds every stored object of the kinds that program the dataplane,
//! decoded once, the attachments, the two incremental compilers (`crate::service_state`,
//! `crate::policy::PolicyEngine`) and their output as a [`Desired`]. It learns what changed
//! from the store's change feed (`crate::changes`): [`DesiredState::update`] reads and decodes
//! only the touched keys, so the decoded cache is invalidated exactly by the store's writes,
//! and recompiles only what they affect. It also keeps, per key, what the configuration held
//! at the last push the dataplane accepted (the journal), which makes the next incremental
//! push ([`DesiredState::changes`]) the same ops `crate::desired::diff` gives for the whole
//! configurations, computed over the touched keys only.
//!
//! Whether a pod's namespace still exists is asked when the state is loaded (every pod) and
//! when its record changes; a namespace that vanishes later keeps its port until the next
//! load, as it kept it until the next push before. Loading happens at the sync thread's first
//! push and again after any failure, so a failed or refused push never leaves a stale state.

use crate::changes::Changed;
use crate::compile::{compile, pod_port};
use crate::config::Settings;
use crate::desired::{diff, Desired};
use crate::nodes::{self, NodeRoute};
use crate::podnet::PodNetwork;
use crate::policy::{self, PolicyEngine};
use crate::service_state::ServiceState;
use crate::services;
use crate::store::{decode_object, object_kind, PodRecord, ReadTx, StoreError};
use podswitch_k8s::k8s_openapi::api::core::v1::Pod;
use podswitch_k8s::{EndpointSlice, Endpoints, Namespace, NetworkPolicy, Object, Service};
use podswitch_proto::{Ipv4Prefix, Op, PolicySpec, PortSpec, RouteSpec, ServiceSpec, Transaction};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// A stored object, decoded.
#[derive(Debug, Clone)]
enum Decoded {
    Service(Arc<Service>),
    Slice(Arc<EndpointSlice>),
    Endpoints(Arc<Endpoints>),
    Policy(Arc<NetworkPolicy>),
    Namespace(Arc<Namespace>),
    Pod(Arc<Pod>),
    Node(NodeRoute),
}

/// An object the manifest handler decoded and stored (`Syncer::offer`): used instead of
/// decoding the store's copy when that copy is `json`, byte for byte.
///
/// It holds the object in the form the state keeps (behind an `Arc`), made on the applying
/// thread: an [`Object`] is as large as its largest kind (a Pod, ~2.5 KB), and moving 20k of
/// them through a vector and a map cost ~0.3 s of fresh pages in a 10k-Service apply.
#[derive(Debug)]
pub struct Offered {
    /// The store key (`service default/web`).
    pub key: String,
    /// The JSON stored under it.
    pub json: String,
    object: Decoded,
}

impl Offered {
    /// `object`, stored under `key` as `json`.
    pub fn new(key: String, json: String, object: Object) -> Offered {
        Offered {
            key,
            json,
            object: Decoded::of(object),
        }
    }
}

impl Decoded {
    /// The parser's object, as [`decode`] would read the JSON it was stored as.
    fn of(object: Object) -> Decoded {
        match object {
            Object::Service(o) => Decoded::Service(Arc::new(o)),
            Object::EndpointSlice(o) => Decoded::Slice(Arc::new(o)),
            Object::Endpoints(o) => Decoded::Endpoints(Arc::new(o)),
            Object::NetworkPolicy(o) => Decoded::Policy(Arc::new(o)),
            Object::Namespace(o) => Decoded::Namespace(Arc::new(o)),
            Object::Pod(o) => Decoded::Pod(Arc::from(o)),
            Object::Node(o) => Decoded::Node(NodeRoute::of(&o)),
        }
    }
}

/// The values of the touched keys as they were at the last accepted push.
#[derive(Debug, Default)]
struct Journal {
    ports: BTreeMap<String, Option<PortSpec>>,
    services: BTreeMap<String, Option<ServiceSpec>>,
    policies: BTreeMap<String, Option<PolicySpec>>,
    routes: BTreeMap<(u32, u8), Option<RouteSpec>>,
}

/// See the module doc.
#[derive(Debug)]
pub struct DesiredState {
    settings: Settings,
    /// Every stored attachment, by key; `present` those that get a port.
    records: BTreeMap<String, PodRecord>,
    present: BTreeMap<String, ()>,
    objects: HashMap<String, Decoded>,
    services: ServiceState,
    policies: PolicyEngine,
    /// Stored Nodes, by key: one route each to another node's pod CIDR.
    nodes: BTreeMap<String, NodeRoute>,
    desired: Desired,
    journal: Journal,
    /// The generation of the last push the dataplane accepted from this state.
    pushed_at: Option<u64>,
}

impl DesiredState {
    /// Everything, read, decoded and compiled from `view`; `gone` is told each attachment
    /// left out because its namespace no longer exists.
    pub fn load(
        settings: &Settings,
        view: &ReadTx,
        podnet: &dyn PodNetwork,
        gone: &mut dyn FnMut(&PodRecord),
    ) -> Result<DesiredState, StoreError> {
        let mut state = DesiredState {
            settings: settings.clone(),
            records: BTreeMap::new(),
            present: BTreeMap::new(),
            objects: HashMap::new(),
            services: ServiceState::default(),
            policies: PolicyEngine::default(),
            nodes: BTreeMap::new(),
            desired: Desired::of(&compile(settings, 0, [], [], [], [])),
            journal: Journal::default(),
            pushed_at: None,
        };
        let mut kinds: Vec<&str> = services::KINDS.to_vec();
        kinds.extend(policy::KINDS);
        kinds.extend(nodes::KINDS);
        for (key, record) in view.pods()? {
            state.update_attachment(&key, Some(record), podnet, gone);
        }
        for (key, json) in view.objects_of_kinds(&kinds)? {
            let decoded = decode(&key, &json)?;
            state.update_object(&key, Some(decoded));
        }
        state.settle();
        state.journal = Journal::default();
        Ok(state)
    }

    /// Reads, decodes and recompiles what `changed` names, as `view` has it now.
    pub fn update(
        &mut self,
        view: &ReadTx,
        changed: &Changed,
        offered: &mut HashMap<String, Offered>,
        podnet: &dyn PodNetwork,
        gone: &mut dyn FnMut(&PodRecord),
    ) -> Result<(), StoreError> {
        for key in &changed.pods {
            self.update_attachment(key, view.pod(key)?, podnet, gone);
        }
        for key in &changed.objects {
            if !programs_dataplane(key) {
                continue;
            }
            let now = match view.object(key)? {
                Some(json) => Some(match offered.remove(key) {
                    Some(o) if o.json == json => o.object,
                    _ => decode(key, &json)?,
                }),
                None => None,
            };
            self.update_object(key, now);
        }
        self.settle();
        Ok(())
    }

    /// Recompiles what the updates since the last call affect, into `desired`.
    fn settle(&mut self) {
        for (name, spec) in self.services.settle(&self.settings) {
            self.journal
                .services
                .entry(name.clone())
                .or_insert_with(|| self.desired.services.get(&name).cloned());
            match spec {
                Some(s) => self.desired.services.insert(name, s),
                None => self.desired.services.remove(&name),
            };
        }
        for (port, spec) in self.policies.settle() {
            self.touch_policy(&port);
            match spec {
                Some(s) => self.desired.policies.insert(port, s),
                None => self.desired.policies.remove(&port),
            };
        }
    }

    fn touch_policy(&mut self, port: &str) {
        self.journal
            .policies
            .entry(port.to_string())
            .or_insert_with(|| self.desired.policies.get(port).cloned());
    }

    fn update_attachment(
        &mut self,
        key: &str,
        now: Option<PodRecord>,
        podnet: &dyn PodNetwork,
        gone: &mut dyn FnMut(&PodRecord),
    ) {
        if let Some(old) = self.records.remove(key) {
            if self.present.remove(key).is_some() {
                self.policies.remove_attachment(key);
                self.set_port(&old.port, None);
            }
        }
        let Some(record) = now else { return };
        // A tombstone's port goes: its DEL is under way (see `PodRecord::deleting`).
        if !record.deleting {
            if podnet.attachable(&record) {
                self.policies.put_attachment(&record);
                self.set_port(&record.port, Some(pod_port(&self.settings, &record)));
                self.present.insert(key.to_string(), ());
            } else {
                gone(&record);
            }
        }
        self.records.insert(key.to_string(), record);
    }

    fn set_port(&mut self, name: &str, spec: Option<PortSpec>) {
        self.journal
            .ports
            .entry(name.to_string())
            .or_insert_with(|| self.desired.ports.get(name).cloned());
        // A port's policy goes and comes around it: the diff must see both.
        self.touch_policy(name);
        match spec {
            Some(s) => self.desired.ports.insert(name.to_string(), s),
            None => self.desired.ports.remove(name),
        };
    }

    /// A route of `desired` (by its prefix) becomes `spec`, journalled.
    fn set_route(&mut self, prefix: Ipv4Prefix, spec: Option<RouteSpec>) {
        let key = (u32::from(prefix.addr), prefix.len);
        self.journal
            .routes
            .entry(key)
            .or_insert_with(|| self.desired.routes.get(&key).cloned());
        match spec {
            Some(s) => self.desired.routes.insert(key, s),
            None => self.desired.routes.remove(&key),
        };
    }

    fn update_object(&mut self, key: &str, now: Option<Decoded>) {
        if let Some(Decoded::Node(_)) | None = &now {
            if let Some(old) = self.nodes.remove(key) {
                for r in nodes::compile_routes(&self.settings, [&old]) {
                    self.set_route(r.prefix, None);
                }
            }
        }
        if let Some(Decoded::Node(n)) = now {
            for r in nodes::compile_routes(&self.settings, [&n]) {
                self.set_route(r.prefix, Some(r));
            }
            self.nodes.insert(key.to_string(), n);
            return;
        }
        match self.objects.remove(key) {
            Some(Decoded::Service(s)) => self.services.remove_service(&s),
            Some(Decoded::Slice(_)) => self.services.remove_slice(key),
            Some(Decoded::Endpoints(e)) => self.services.remove_endpoints(&e),
            Some(Decoded::Policy(p)) => {
                let m = &p.metadata;
                self.policies.remove_policy(
                    m.namespace.as_deref().unwrap_or("default"),
                    m.name.as_deref().unwrap_or_default(),
                );
            }
            Some(Decoded::Namespace(n)) => {
                self.policies
                    .put_namespace(n.metadata.name.as_deref().unwrap_or_default(), None);
            }
            Some(Decoded::Pod(p)) => {
                let m = &p.metadata;
                self.policies.remove_pod(
                    m.namespace.as_deref().unwrap_or("default"),
                    m.name.as_deref().unwrap_or_default(),
                );
            }
            Some(Decoded::Node(_)) | None => {}
        }
        let Some(now) = now else { return };
        match &now {
            Decoded::Service(s) => self.services.put_service(s.clone()),
            Decoded::Slice(s) => self.services.put_slice(key, s.clone()),
            Decoded::Endpoints(e) => self.services.put_endpoints(e.clone()),
            Decoded::Policy(p) => self.policies.put_policy(p.clone()),
            Decoded::Namespace(n) => {
                if let Some(name) = n.metadata.name.as_deref() {
                    let labels = n.metadata.labels.clone().unwrap_or_default();
                    self.policies.put_namespace(name, Some(labels));
                }
            }
            Decoded::Pod(p) => self.policies.put_pod(p.clone()),
            Decoded::Node(_) => {} // handled above
        }
        self.objects.insert(key.to_string(), now);
    }

    /// Asks again whether each attachment's namespace exists, and leaves out (or takes back)
    /// those whose answer changed: before a replace, which creates every port whose spec the
    /// dataplane does not hold, and would fail as a whole on one dead pod's namespace.
    pub fn recheck_namespaces(
        &mut self,
        podnet: &dyn PodNetwork,
        gone: &mut dyn FnMut(&PodRecord),
    ) {
        let flipped: Vec<PodRecord> = self
            .records
            .iter()
            .filter(|(key, r)| {
                let wanted = !r.deleting && podnet.attachable(r);
                wanted != self.present.contains_key(*key)
            })
            .map(|(_, r)| r.clone())
            .collect();
        if flipped.is_empty() {
            return;
        }
        for record in flipped {
            self.update_attachment(&record.key(), Some(record.clone()), podnet, gone);
        }
        self.settle();
    }

    /// The whole configuration as one replace transaction numbered `generation`.
    pub fn transaction(&self, generation: u64) -> Transaction {
        compile(
            &self.settings,
            generation,
            self.present_records(),
            self.desired.services.values().cloned(),
            self.desired.policies.values().cloned(),
            nodes::compile_routes(&self.settings, self.nodes.values()),
        )
    }

    /// The attachments that get a port, by key.
    pub fn present_records(&self) -> impl Iterator<Item = &PodRecord> {
        self.present.keys().filter_map(|k| self.records.get(k))
    }

    /// How many pods, Service ports and isolated ports the configuration has.
    pub fn counts(&self) -> (usize, usize, usize) {
        (
            self.present.len(),
            self.desired.services.len(),
            self.desired.policies.len(),
        )
    }

    /// The whole configuration, by key.
    pub fn desired(&self) -> &Desired {
        &self.desired
    }

    /// The ops that bring a dataplane holding the last accepted push (at `generation`) to
    /// this configuration; `None` when that is not what it holds, or when the diff cannot
    /// express the change (`crate::desired::diff`): push [`DesiredState::transaction`].
    pub fn changes(&self, generation: u64) -> Option<Vec<Op>> {
        if self.pushed_at != Some(generation) {
            return None;
        }
        let mut before = Desired {
            node: self.desired.node.clone(),
            ..Desired::default()
        };
        let mut after = before.clone();
        for (name, old) in &self.journal.ports {
            if let Some(old) = old {
                before.ports.insert(name.clone(), old.clone());
            }
            if let Some(new) = self.desired.ports.get(name) {
                after.ports.insert(name.clone(), new.clone());
            }
        }
        for (name, old) in &self.journal.services {
            if let Some(old) = old {
                before.services.insert(name.clone(), old.clone());
            }
            if let Some(new) = self.desired.services.get(name) {
                after.services.insert(name.clone(), new.clone());
            }
        }
        for (key, old) in &self.journal.routes {
            if let Some(old) = old {
                before.routes.insert(*key, old.clone());
            }
            if let Some(new) = self.desired.routes.get(key) {
                after.routes.insert(*key, new.clone());
            }
        }
        for (port, old) in &self.journal.policies {
            if let Some(old) = old {
                before.policies.insert(port.clone(), old.clone());
            }
            if let Some(new) = self.desired.policies.get(port) {
                after.policies.insert(port.clone(), new.clone());
            }
        }
        diff(&before, &after)
    }

    /// The dataplane accepted this configuration at `generation` (`None`: what it holds is
    /// unknown, e.g. after a failed push): the next changes are counted from here.
    pub fn pushed(&mut self, generation: Option<u64>) {
        self.pushed_at = generation;
        self.journal = Journal::default();
    }
}

/// Whether a stored object of this key's kind is compiled into the dataplane's configuration.
fn programs_dataplane(key: &str) -> bool {
    object_kind(key).is_some_and(|k| {
        services::KINDS.contains(&k) || policy::KINDS.contains(&k) || nodes::KINDS.contains(&k)
    })
}

/// A stored object of a kind [`programs_dataplane`] accepts, decoded.
fn decode(key: &str, json: &str) -> Result<Decoded, StoreError> {
    Ok(match object_kind(key) {
        Some("service") => Decoded::Service(Arc::new(decode_object(key, json)?)),
        Some("endpointslice") => Decoded::Slice(Arc::new(decode_object(key, json)?)),
        Some("endpoints") => Decoded::Endpoints(Arc::new(decode_object(key, json)?)),
        Some("networkpolicy") => Decoded::Policy(Arc::new(decode_object(key, json)?)),
        Some("namespace") => Decoded::Namespace(Arc::new(decode_object(key, json)?)),
        Some("node") => Decoded::Node(NodeRoute::of(&decode_object(key, json)?)),
        _ => Decoded::Pod(Arc::new(decode_object(key, json)?)),
    })
}

#[cfg(test)]
#[path = "state_tests.rs"]
mod tests;
