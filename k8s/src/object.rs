//! The objects podswitch takes from manifests, as `k8s-openapi` types, and their identity.
//!
//! An [`Object`] that came out of [`crate::parse_manifests`] or [`Object::from_json`] is
//! validated: it has a name, namespaced kinds have a namespace, cluster-scoped kinds have none.

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::api::core::v1::{Endpoints, Namespace, Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::Resource;
use serde::{Deserialize, Serialize};

use crate::ManifestError;

/// One Kubernetes object of a kind podswitch understands.
// A Pod is ~2.5 KB and a Node ~1.5 KB, the other kinds under 1 KB: those two are boxed, so a
// large apply (20k Services and EndpointSlices) does not move and hold 2.5 KB per object.
// The rest stay unboxed (a Service, the largest, is 824 bytes): plain patterns.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq)]
pub enum Object {
    /// `v1 Namespace` (cluster-scoped): its labels feed NetworkPolicy namespace selectors.
    Namespace(Namespace),
    /// `v1 Pod`: labels for selectors, named container ports.
    Pod(Box<Pod>),
    /// `v1 Service`: VIPs, ports, selector.
    Service(Service),
    /// `discovery.k8s.io/v1 EndpointSlice`: a Service's backends.
    EndpointSlice(EndpointSlice),
    /// `v1 Endpoints`: legacy form of a Service's backends.
    Endpoints(Endpoints),
    /// `networking.k8s.io/v1 NetworkPolicy`.
    NetworkPolicy(NetworkPolicy),
    /// `v1 Node` (cluster-scoped): podCIDR, InternalIP.
    Node(Box<Node>),
}

/// A supported kind: its `kind`, `apiVersion`, and whether its objects live in a namespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct KindInfo {
    pub(crate) kind: &'static str,
    pub(crate) api_version: &'static str,
    pub(crate) namespaced: bool,
}

const fn info<T: Resource>(namespaced: bool) -> KindInfo {
    KindInfo {
        kind: T::KIND,
        api_version: T::API_VERSION,
        namespaced,
    }
}

/// Every kind podswitch takes, in the order error messages list them.
pub(crate) const KINDS: [KindInfo; 7] = [
    info::<Namespace>(false),
    info::<Pod>(true),
    info::<Service>(true),
    info::<Endpoints>(true),
    info::<EndpointSlice>(true),
    info::<NetworkPolicy>(true),
    info::<Node>(false),
];

pub(crate) fn kind_info(kind: &str) -> Option<KindInfo> {
    KINDS.iter().copied().find(|k| k.kind == kind)
}

impl Object {
    /// The Kubernetes kind: `"Pod"`, `"EndpointSlice"`, ...
    pub fn kind(&self) -> &'static str {
        self.info().kind
    }

    /// The Kubernetes apiVersion: `"v1"`, `"discovery.k8s.io/v1"`, ...
    pub fn api_version(&self) -> &'static str {
        self.info().api_version
    }

    /// True for kinds whose objects live in a namespace (all but Namespace and Node).
    pub fn is_namespaced(&self) -> bool {
        self.info().namespaced
    }

    fn info(&self) -> KindInfo {
        match self {
            Object::Namespace(_) => info::<Namespace>(false),
            Object::Pod(_) => info::<Pod>(true),
            Object::Service(_) => info::<Service>(true),
            Object::EndpointSlice(_) => info::<EndpointSlice>(true),
            Object::Endpoints(_) => info::<Endpoints>(true),
            Object::NetworkPolicy(_) => info::<NetworkPolicy>(true),
            Object::Node(_) => info::<Node>(false),
        }
    }

    /// The object's metadata.
    pub fn metadata(&self) -> &ObjectMeta {
        match self {
            Object::Namespace(o) => &o.metadata,
            Object::Pod(o) => &o.metadata,
            Object::Service(o) => &o.metadata,
            Object::EndpointSlice(o) => &o.metadata,
            Object::Endpoints(o) => &o.metadata,
            Object::NetworkPolicy(o) => &o.metadata,
            Object::Node(o) => &o.metadata,
        }
    }

    /// The object's metadata, to change (an object changed this way is no longer known valid).
    pub fn metadata_mut(&mut self) -> &mut ObjectMeta {
        match self {
            Object::Namespace(o) => &mut o.metadata,
            Object::Pod(o) => &mut o.metadata,
            Object::Service(o) => &mut o.metadata,
            Object::EndpointSlice(o) => &mut o.metadata,
            Object::Endpoints(o) => &mut o.metadata,
            Object::NetworkPolicy(o) => &mut o.metadata,
            Object::Node(o) => &mut o.metadata,
        }
    }

    /// `metadata.name` (empty only for an object not built by this crate).
    pub fn name(&self) -> &str {
        self.metadata().name.as_deref().unwrap_or_default()
    }

    /// `metadata.namespace`: set for namespaced kinds (default `"default"`), `None` otherwise.
    pub fn namespace(&self) -> Option<&str> {
        self.metadata().namespace.as_deref()
    }

    /// Identity of the object: at most one object per key in an input and in the store.
    pub fn key(&self) -> ObjectKey {
        ObjectKey {
            kind: self.kind().to_string(),
            namespace: self.namespace().map(str::to_string),
            name: self.name().to_string(),
        }
    }

    /// The object as JSON for storage: the k8s-openapi serialization, which carries
    /// `apiVersion` and `kind`, so [`Object::from_json`] needs nothing else.
    pub fn to_json(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string(self)
    }

    /// Reads back what [`Object::to_json`] wrote (or any single JSON manifest), with the same
    /// checks as [`crate::parse_manifests`]; errors name document 1.
    pub fn from_json(json: &str) -> Result<Object, ManifestError> {
        crate::decode::object_from_json(json)
    }
}

impl Serialize for Object {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Object::Namespace(o) => o.serialize(serializer),
            Object::Pod(o) => o.serialize(serializer),
            Object::Service(o) => o.serialize(serializer),
            Object::EndpointSlice(o) => o.serialize(serializer),
            Object::Endpoints(o) => o.serialize(serializer),
            Object::NetworkPolicy(o) => o.serialize(serializer),
            Object::Node(o) => o.serialize(serializer),
        }
    }
}

/// Deserializes and validates like [`Object::from_json`], so a `Vec<Object>` or a struct
/// holding one can be stored and read back with serde.
impl<'de> Deserialize<'de> for Object {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = serde_json::Value::deserialize(deserializer)?;
        crate::decode::object_from_value(value).map_err(serde::de::Error::custom)
    }
}

macro_rules! from_kind {
    ($($variant:ident),*) => {$(
        impl From<$variant> for Object {
            fn from(o: $variant) -> Self {
                Object::$variant(o.into())
            }
        }
    )*};
}
from_kind!(
    Namespace,
    Pod,
    Service,
    EndpointSlice,
    Endpoints,
    NetworkPolicy,
    Node
);

/// Which object: kind, namespace (none for cluster-scoped kinds) and name.
/// Orders by kind, then namespace, then name. Displays as `pod default/web`,
/// `namespace kube-system`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ObjectKey {
    /// The Kubernetes kind, as in manifests: `"Pod"`.
    pub kind: String,
    /// The namespace; `None` for Namespace and Node.
    pub namespace: Option<String>,
    /// `metadata.name`.
    pub name: String,
}

impl ObjectKey {
    /// A key from its parts.
    pub fn new(kind: impl Into<String>, namespace: Option<&str>, name: impl Into<String>) -> Self {
        Self {
            kind: kind.into(),
            namespace: namespace.map(str::to_string),
            name: name.into(),
        }
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = self.kind.to_ascii_lowercase();
        match &self.namespace {
            Some(namespace) => write!(f, "{kind} {namespace}/{}", self.name),
            None => write!(f, "{kind} {}", self.name),
        }
    }
}

/// The object's labels (empty when it has none).
pub fn labels(obj: &Object) -> BTreeMap<String, String> {
    obj.metadata().labels.clone().unwrap_or_default()
}

/// A pod's labels (empty when it has none), what pod selectors match against.
pub fn pod_labels(pod: &Pod) -> BTreeMap<String, String> {
    pod.metadata.labels.clone().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(namespace: &str, name: &str, labels: &[(&str, &str)]) -> Object {
        Object::from(Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some(namespace.into()),
                labels: Some(
                    labels
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
                ..Default::default()
            },
            ..Default::default()
        })
    }

    #[test]
    fn key_displays_like_kubectl_and_orders_by_kind_namespace_name() {
        let web = pod("default", "web", &[]);
        assert_eq!(web.key().to_string(), "pod default/web");
        let ns = Object::Namespace(Namespace {
            metadata: ObjectMeta {
                name: Some("kube-system".into()),
                ..Default::default()
            },
            ..Default::default()
        });
        assert_eq!(ns.key().to_string(), "namespace kube-system");
        assert_eq!(ns.key(), ObjectKey::new("Namespace", None, "kube-system"));
        let mut keys = [
            ObjectKey::new("Pod", Some("b"), "a"),
            ObjectKey::new("Pod", Some("a"), "z"),
            ObjectKey::new("Node", None, "n1"),
        ];
        keys.sort();
        assert_eq!(
            keys.iter().map(ToString::to_string).collect::<Vec<_>>(),
            ["node n1", "pod a/z", "pod b/a"]
        );
    }

    #[test]
    fn kind_and_api_version_come_from_k8s_openapi() {
        let web = pod("default", "web", &[]);
        assert_eq!((web.kind(), web.api_version()), ("Pod", "v1"));
        assert!(web.is_namespaced());
        let slice = Object::from(EndpointSlice::default());
        assert_eq!(
            (slice.kind(), slice.api_version()),
            ("EndpointSlice", "discovery.k8s.io/v1")
        );
        let policy = Object::from(NetworkPolicy::default());
        assert_eq!(policy.api_version(), "networking.k8s.io/v1");
        assert!(!Object::from(Node::default()).is_namespaced());
    }

    #[test]
    fn json_round_trip_keeps_the_object() {
        let web = pod("shop", "web", &[("app", "web"), ("tier", "front")]);
        let json = web.to_json().unwrap();
        assert!(json.contains(r#""kind":"Pod""#), "{json}");
        assert!(json.contains(r#""apiVersion":"v1""#), "{json}");
        assert_eq!(Object::from_json(&json).unwrap(), web);

        let all: Vec<Object> = vec![web.clone(), pod("shop", "db", &[])];
        let text = serde_json::to_string(&all).unwrap();
        let back: Vec<Object> = serde_json::from_str(&text).unwrap();
        assert_eq!(back, all);
    }

    #[test]
    fn from_json_validates() {
        let err =
            Object::from_json(r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"Web"}}"#)
                .unwrap_err();
        assert_eq!(
            err.to_string(),
            "document 1 (Pod default/Web): metadata.name: \"Web\" is not a valid DNS-1123 subdomain: \
             use lowercase letters, digits, '-' and '.', each '.'-separated part starting and ending with a letter or digit"
        );
        assert!(Object::from_json("{").is_err());
        let err =
            serde_json::from_str::<Object>(r#"{"apiVersion":"v1","kind":"Secret"}"#).unwrap_err();
        assert!(
            err.to_string()
                .contains("kind: \"Secret\" is not supported"),
            "{err}"
        );
    }

    #[test]
    fn labels_are_empty_when_absent() {
        let web = pod("default", "web", &[("app", "web")]);
        assert_eq!(labels(&web).get("app").map(String::as_str), Some("web"));
        assert!(labels(&Object::from(Node::default())).is_empty());
        assert!(pod_labels(&Pod::default()).is_empty());
    }
}
