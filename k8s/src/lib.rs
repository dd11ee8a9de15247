//! Kubernetes manifests for podswitch: multi-document YAML in, validated [`Object`]s out.
//!
//! This is the first step of an `apply`: [`parse_manifests`] turns the user's YAML into typed
//! `k8s-openapi` objects (Namespace, Pod, Service, EndpointSlice, Endpoints, NetworkPolicy,
//! Node), rejecting with one [`ManifestError`] anything Kubernetes would reject that podswitch
//! reads: names, labels, selectors, ports, protocols, IPs and CIDRs, unknown fields,
//! duplicates. The control process compiles what comes out into tables; it never sees YAML.
//!
//! Invariants: this crate does no I/O and knows nothing of tables, the dataplane or the
//! protocol. Every [`Object`] it returns has a name, a namespace exactly when its kind is
//! namespaced (`"default"` when the manifest gave none), and CIDRs in canonical form. What
//! the API server changes on the way in is changed here too (`apiserver.rs`: a Namespace's
//! `kubernetes.io/metadata.name` label, ipBlock CIDRs with host bits set, which come back as
//! [`ManifestWarning`]s).
//!
//! ```
//! let objects = podswitch_k8s::parse_manifests(
//!     "apiVersion: v1\nkind: Pod\nmetadata: {name: web, labels: {app: web}}\n",
//! )?;
//! assert_eq!(objects[0].key().to_string(), "pod default/web");
//! # Ok::<(), podswitch_k8s::ManifestError>(())
//! ```

mod apiserver;
mod decode;
mod error;
mod json_stream;
mod names;
mod net;
mod object;
mod parse;
mod validate;

pub use apiserver::NAMESPACE_NAME_LABEL;
pub use error::{FieldPath, ManifestError, ManifestErrorKind, ManifestWarning};
pub use object::{labels, pod_labels, Object, ObjectKey};
pub use parse::{parse_manifests, parse_manifests_with_warnings, Parsed};

/// The k8s-openapi this crate's types come from (feature `v1_37`), so callers name the same
/// types without depending on a second copy.
pub use k8s_openapi;
pub use k8s_openapi::api::core::v1::{Endpoints, Namespace, Node, Pod, Service};
pub use k8s_openapi::api::discovery::v1::EndpointSlice;
pub use k8s_openapi::api::networking::v1::NetworkPolicy;

/// The daemons' allocator, so that the timings here are what `podswitch-control` sees.
#[cfg(test)]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
