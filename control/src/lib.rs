//! podswitch-control: the node's source of truth. It owns the desired state (attached pods,
//! IPAM, applied Kubernetes manifests) in an embedded database, compiles it into
//! `podswitchd`'s configuration and keeps the dataplane at that configuration across restarts
//! of either process; it serves the CNI plugin and `podswitchctl` on its own socket.
//!
//! Bottom up — a module uses only those above it in this list:
//!
//! | module | role |
//! |---|---|
//! | [`config`] | `ControlConfig` (TOML + flags), checked into `Settings` |
//! | [`changes`] | the store's change feed: the keys each committed write touched |
//! | [`store`] | the redb state database: pods, ipam, objects, meta (generation) |
//! | [`ipam`] | address allocation over the store's view (pure) |
//! | [`services`] | Services + EndpointSlices/Endpoints → `ServiceSpec`s; apply's checks (pure) |
//! | [`policy`] | NetworkPolicies + Namespaces + Pods → per-port `PolicySpec`s; selectors (pure) |
//! | [`compile`] | pods + settings + Service ports + policies → one replace `Transaction`; port names, MACs (pure) |
//! | [`desired`] | a configuration by key, and the diff of two as non-replace ops (pure) |
//! | [`dataplane`] | the `Dataplane` trait and its unix-socket client |
//! | [`podnet`] | the `PodNetwork` trait: address/routes inside a pod's namespace (netlink) |
//! | [`service_state`] | the Service compiler kept between pushes: one Service recompiled per change |
//! | [`state`] | the desired configuration kept between pushes: decoded objects, both compilers, the journal of the next diff |
//! | [`sync`] | the thread that owns the dataplane connection: resync, `push_now` |
//! | [`control`] | `Control`: state + dispatch, status, pods |
//! | `cni`, `manifests` | the handlers (methods of `Control`) |
//! | [`api`] | `Control` as a `podswitch_proto::server::Service` (the socket) |
//!
//! Invariants: control never touches a packet; the database is the truth (the dataplane's
//! tables and the pods' interfaces are derived from it and restored from it); every state
//! change is one database transaction and bumps the generation when it changes what the
//! dataplane should hold.

// Tests may panic on what they did not expect; the library itself may not (workspace lints).
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod api;
pub mod changes;
mod cni;
pub mod compile;
pub mod config;
pub mod control;
pub mod dataplane;
pub mod desired;
pub mod ipam;
mod manifests;
pub mod nodes;
pub mod podnet;
pub mod policy;
pub mod service_state;
pub mod services;
pub mod state;
pub mod store;
pub mod sync;

#[cfg(test)]
mod testkit;

pub use control::{Control, Failure};

/// One line on stderr, prefixed with the program name (the service manager adds time stamps).
pub fn log(message: &str) {
    eprintln!("podswitch-control: {message}");
}
