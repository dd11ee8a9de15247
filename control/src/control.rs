//! The control process's service: the store, the sync thread and the pod network, and the
//! dispatch of every socket request to its handler (`cni.rs`, `manifests.rs`, and the
//! read-only ones here).
//!
//! Requests that change state take one global mutex for their whole duration (database
//! transaction, push to the dataplane, interface configuration, rollback), so they are
//! serialised and a rollback never interleaves with another change. Read-only requests
//! (`status`, `pods`, CNI CHECK) read a consistent database snapshot without it.

use crate::config::Settings;
use crate::dataplane::{Dataplane, DataplaneError};
use crate::ipam::Pool;
use crate::podnet::PodNetwork;
use crate::store::{Store, StoreError};
use crate::sync::{SyncError, Syncer};
use podswitch_proto::control::{ControlRequestBody, ControlResponse, ControlStatus, PodInfo};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// CNI error codes (CNI spec, "Error") and podswitch's own (100+).
pub mod code {
    /// The container (attachment) is unknown.
    pub const UNKNOWN_CONTAINER: u32 = 3;
    /// `CNI_*` environment or `CNI_ARGS` values are invalid.
    pub const INVALID_ENVIRONMENT: u32 = 4;
    /// An I/O failure: the state database, a namespace, an interface, a refusing dataplane.
    pub const IO_FAILURE: u32 = 5;
    /// The network configuration is invalid.
    pub const INVALID_CONFIG: u32 = 7;
    /// Try again later: `podswitchd` is not reachable.
    pub const TRY_AGAIN_LATER: u32 = 11;
    /// A manifest was rejected.
    pub const INVALID_MANIFEST: u32 = 100;
    /// No address left in the pod CIDR.
    pub const POOL_EXHAUSTED: u32 = 101;
}

/// A request failed: a CNI error code and a message for people.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} (code {code})")]
pub struct Failure {
    /// See [`code`].
    pub code: u32,
    /// What was wrong and what to do.
    pub message: String,
}

impl Failure {
    /// A failure with this code and message.
    pub fn new(code: u32, message: impl Into<String>) -> Failure {
        Failure {
            code,
            message: message.into(),
        }
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Failure {
        Failure::new(code::IO_FAILURE, e.to_string())
    }
}

impl From<SyncError> for Failure {
    fn from(e: SyncError) -> Failure {
        let code = match &e {
            SyncError::Dataplane(DataplaneError::Unreachable { .. }) | SyncError::Stopped => {
                code::TRY_AGAIN_LATER
            }
            SyncError::Dataplane(_) | SyncError::Store(_) => code::IO_FAILURE,
        };
        Failure::new(code, e.to_string())
    }
}

impl From<Failure> for ControlResponse {
    fn from(f: Failure) -> ControlResponse {
        ControlResponse::Error {
            code: f.code,
            message: f.message,
        }
    }
}

/// The control process's state and its handlers.
#[derive(Debug)]
pub struct Control {
    pub(crate) settings: Settings,
    pub(crate) store: Arc<Store>,
    pub(crate) sync: Syncer,
    pub(crate) podnet: Arc<dyn PodNetwork>,
    pub(crate) pool: Pool,
    writer: Mutex<()>,
}

impl Control {
    /// Releases ADDs a crash left unfinished whose namespace is gone (`cni.rs`), starts the
    /// sync thread over `dataplane` (which resyncs at once) and returns the service, ready to
    /// [`Control::handle`] requests.
    pub fn start(
        settings: Settings,
        store: Arc<Store>,
        dataplane: Box<dyn Dataplane>,
        podnet: Arc<dyn PodNetwork>,
    ) -> Control {
        if let Err(e) = crate::cni::release_abandoned_adds(&store, podnet.as_ref()) {
            crate::log(&format!("releasing unfinished ADDs: {e}"));
        }
        let sync = Syncer::start(settings.clone(), store.clone(), dataplane, podnet.clone());
        let pool = Pool::new(settings.pod_cidr, settings.gateway);
        Control {
            settings,
            store,
            sync,
            podnet,
            pool,
            writer: Mutex::new(()),
        }
    }

    /// The sync layer (for `push_now`, status).
    pub fn sync(&self) -> &Syncer {
        &self.sync
    }

    /// The checked settings.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Serialises state changes; see the module doc.
    pub(crate) fn lock(&self) -> MutexGuard<'_, ()> {
        self.writer.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Answers one request.
    pub fn handle(&self, body: ControlRequestBody) -> ControlResponse {
        let result = match body {
            ControlRequestBody::CniAdd(req) => self.cni_add(&req).map(ControlResponse::Attached),
            ControlRequestBody::CniDel(req) => {
                self.cni_del(&req).map(|()| ControlResponse::Detached)
            }
            ControlRequestBody::CniCheck(req) => {
                self.cni_check(&req).map(|()| ControlResponse::Checked)
            }
            ControlRequestBody::CniGc { valid } => self
                .cni_gc(&valid)
                .map(|released| ControlResponse::Collected { released }),
            ControlRequestBody::Status => self.status().map(ControlResponse::Status),
            ControlRequestBody::Pods => self.pods().map(|pods| ControlResponse::Pods { pods }),
            ControlRequestBody::Apply { manifests } => self
                .apply(&manifests)
                .map(|summary| ControlResponse::Applied { summary }),
            ControlRequestBody::Delete { manifests } => self
                .delete(&manifests)
                .map(|summary| ControlResponse::Applied { summary }),
        };
        result.unwrap_or_else(ControlResponse::from)
    }

    /// Generations, counts, and whether the dataplane (asked now) holds control's generation.
    pub fn status(&self) -> Result<ControlStatus, Failure> {
        let view = self.store.read()?;
        let generation = view.generation()?;
        let pods = view.pods()?.len();
        let allocated_ips = view.ipam()?.len();
        let dataplane_generation = self.sync.dataplane_status().ok().map(|s| s.generation);
        Ok(ControlStatus {
            version: podswitch_proto::PROTOCOL_VERSION,
            node: self.settings.node_name.clone(),
            pod_cidr: self.settings.pod_cidr.to_string(),
            generation,
            dataplane_in_sync: dataplane_generation == Some(generation),
            dataplane_generation,
            pods,
            allocated_ips,
            pool_capacity: Some(self.pool.capacity()),
        })
    }

    /// The attached pods, sorted by namespace and name, with the labels of the applied Pod
    /// object of the same namespace/name (if any).
    pub fn pods(&self) -> Result<Vec<PodInfo>, Failure> {
        let view = self.store.read()?;
        let mut pods: Vec<PodInfo> = view
            .pods()?
            .into_values()
            .map(|p| -> Result<PodInfo, Failure> {
                let labels = crate::manifests::stored_pod_labels(&view, &p.namespace, &p.name)?;
                Ok(PodInfo {
                    namespace: p.namespace,
                    name: p.name,
                    container_id: p.container_id,
                    ifname: p.ifname,
                    netns: p.netns,
                    ip: p.ip,
                    mac: p.mac,
                    port: p.port,
                    labels,
                })
            })
            .collect::<Result<_, _>>()?;
        pods.sort_by(|a, b| {
            (&a.namespace, &a.name, &a.container_id, &a.ifname).cmp(&(
                &b.namespace,
                &b.name,
                &b.container_id,
                &b.ifname,
            ))
        });
        Ok(pods)
    }
}
