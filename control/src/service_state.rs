//! The Service compiler as state kept between pushes: the decoded Services, EndpointSlices
//! and legacy Endpoints, and each Service's compiled ports. A Service's ports depend only on
//! the Service, the slices labelled with its name in its namespace and its legacy Endpoints,
//! so a change to one of those recompiles that one Service ([`ServiceState::settle`]); the
//! others keep their specs.

use crate::config::Settings;
use crate::services::{compile_service_ports, slice_service};
use podswitch_k8s::k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use podswitch_k8s::{EndpointSlice, Endpoints, Service};
use podswitch_proto::ServiceSpec;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

/// A Service's identity: `(namespace, name)`.
type ServiceName = (String, String);

fn name_of(meta: &ObjectMeta) -> ServiceName {
    (
        meta.namespace.as_deref().unwrap_or("default").to_string(),
        meta.name.clone().unwrap_or_default(),
    )
}

/// See the module doc.
#[derive(Debug, Default)]
pub struct ServiceState {
    services: HashMap<ServiceName, Arc<Service>>,
    /// Slices by store key, and the keys of each Service's slices (by its label).
    slices: BTreeMap<String, Arc<EndpointSlice>>,
    slices_of: HashMap<ServiceName, BTreeSet<String>>,
    endpoints: HashMap<ServiceName, Arc<Endpoints>>,
    /// Each Service's port names (the specs' names).
    ports_of: HashMap<ServiceName, Vec<String>>,
    specs: BTreeMap<String, ServiceSpec>,
    changed: BTreeSet<ServiceName>,
}

impl ServiceState {
    /// The current specs, by name.
    pub fn specs(&self) -> &BTreeMap<String, ServiceSpec> {
        &self.specs
    }

    /// A Service, new or changed.
    pub fn put_service(&mut self, svc: Arc<Service>) {
        let name = name_of(&svc.metadata);
        self.services.insert(name.clone(), svc);
        self.changed.insert(name);
    }

    /// A Service deleted (`svc` as it was).
    pub fn remove_service(&mut self, svc: &Service) {
        let name = name_of(&svc.metadata);
        self.services.remove(&name);
        self.changed.insert(name);
    }

    /// An EndpointSlice stored under `key`, new or changed.
    pub fn put_slice(&mut self, key: &str, slice: Arc<EndpointSlice>) {
        self.remove_slice(key);
        if let Some((ns, service)) = slice_service(&slice) {
            let name = (ns.to_string(), service.to_string());
            self.slices_of
                .entry(name.clone())
                .or_default()
                .insert(key.to_string());
            self.changed.insert(name);
        }
        self.slices.insert(key.to_string(), slice);
    }

    /// The EndpointSlice stored under `key` deleted.
    pub fn remove_slice(&mut self, key: &str) {
        let Some(old) = self.slices.remove(key) else {
            return;
        };
        if let Some((ns, service)) = slice_service(&old) {
            let name = (ns.to_string(), service.to_string());
            if let Some(keys) = self.slices_of.get_mut(&name) {
                keys.remove(key);
                if keys.is_empty() {
                    self.slices_of.remove(&name);
                }
            }
            self.changed.insert(name);
        }
    }

    /// Legacy Endpoints, new or changed.
    pub fn put_endpoints(&mut self, endpoints: Arc<Endpoints>) {
        let name = name_of(&endpoints.metadata);
        self.endpoints.insert(name.clone(), endpoints);
        self.changed.insert(name);
    }

    /// Legacy Endpoints deleted (as they were).
    pub fn remove_endpoints(&mut self, endpoints: &Endpoints) {
        let name = name_of(&endpoints.metadata);
        self.endpoints.remove(&name);
        self.changed.insert(name);
    }

    /// Recompiles the Services changed since the last call; the Service ports whose spec
    /// changed, each with its new spec (`None`: gone).
    pub fn settle(&mut self, settings: &Settings) -> Vec<(String, Option<ServiceSpec>)> {
        let mut out: BTreeMap<String, Option<ServiceSpec>> = BTreeMap::new();
        for name in std::mem::take(&mut self.changed) {
            for port in self.ports_of.remove(&name).unwrap_or_default() {
                out.insert(port, None);
            }
            let Some(svc) = self.services.get(&name) else {
                continue;
            };
            let slices: Vec<&EndpointSlice> = self
                .slices_of
                .get(&name)
                .into_iter()
                .flatten()
                .filter_map(|k| self.slices.get(k).map(AsRef::as_ref))
                .collect();
            let legacy = self.endpoints.get(&name).map(AsRef::as_ref);
            let specs = compile_service_ports(settings, svc, &slices, legacy);
            self.ports_of
                .insert(name, specs.iter().map(|s| s.name.clone()).collect());
            for spec in specs {
                out.insert(spec.name.clone(), Some(spec));
            }
        }
        let mut changed = Vec::new();
        for (name, spec) in out {
            if self.specs.get(&name) == spec.as_ref() {
                continue;
            }
            match &spec {
                Some(s) => self.specs.insert(name.clone(), s.clone()),
                None => self.specs.remove(&name),
            };
            changed.push((name, spec));
        }
        changed
    }
}
