//! One object of a document: `apiVersion`/`kind` → k8s-openapi type → namespace defaulting
//! → validation, with every problem named by its field path.
//!
//! Unknown fields: k8s-openapi's `Deserialize` impls skip unknown keys with `IgnoredAny` rather
//! than failing. `serde_ignored` reports every such skip with its path, which is exact where a
//! serialize-and-compare round trip is not (a misspelt field set to `null` disappears in both).

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::Invalid;
use crate::json_stream::Checked;
use crate::object::{kind_info, KindInfo, KINDS};
use crate::{
    apiserver, validate, FieldPath, ManifestError, ManifestErrorKind, ManifestWarning, Object,
};

/// One JSON object, as [`Object::from_json`] reads it.
pub(crate) fn object_from_json(json: &str) -> Result<Object, ManifestError> {
    let value: Value = serde_json::from_str(json).map_err(|e| {
        ManifestError::new(
            1,
            None,
            FieldPath::root(),
            ManifestErrorKind::Syntax,
            format!("not valid JSON: {e}"),
        )
    })?;
    object_from_value(value)
}

pub(crate) fn object_from_value(value: Value) -> Result<Object, ManifestError> {
    decode_object(1, &value, &FieldPath::root()).map(|decoded| decoded.object)
}

/// A decoded object with its JSON and the warnings about it.
#[derive(Debug)]
pub(crate) struct Decoded {
    pub(crate) object: Object,
    /// What [`Object::to_json`] gives for `object`, written once here (see [`canonical`]).
    pub(crate) json: String,
    pub(crate) warnings: Vec<ManifestWarning>,
}

/// One object, found at `at` in document `number`, with its JSON and the warnings about it.
pub(crate) fn decode_object(
    number: usize,
    value: &Value,
    at: &FieldPath,
) -> Result<Decoded, ManifestError> {
    let (object, json, notes) = decode_checked(value).map_err(|invalid| {
        ManifestError::new(
            number,
            raw_identity(value),
            at.join(&invalid.path),
            invalid.kind,
            invalid.message,
        )
    })?;
    Ok(decoded(number, at, object, json, notes))
}

/// The object, its JSON, and its notes as warnings of document `number`, found at `at`.
fn decoded(
    number: usize,
    at: &FieldPath,
    object: Object,
    json: String,
    notes: Vec<apiserver::Note>,
) -> Decoded {
    let warnings = notes
        .into_iter()
        .map(|(path, message)| ManifestWarning {
            document: number,
            object: identity(&object),
            field: at.join(&path),
            message,
        })
        .collect();
    Decoded {
        object,
        json,
        warnings,
    }
}

fn decode_checked(value: &Value) -> Result<(Object, String, Vec<apiserver::Note>), Invalid> {
    let root = FieldPath::root();
    if !value.is_object() {
        return Err(Invalid::new(
            ManifestErrorKind::Syntax,
            root,
            format!(
                "a manifest must be a mapping with apiVersion and kind, not {}",
                describe(value)
            ),
        ));
    }
    let api_version = header_field(value, "apiVersion")?;
    let kind = header_field(value, "kind")?;
    let Some(info) = kind_info(kind) else {
        let accepted: Vec<&str> = KINDS.iter().map(|k| k.kind).collect();
        let message = if kind == "List" {
            "a List may only be a whole document, not inside another List".to_string()
        } else {
            format!(
                "{kind:?} is not supported; podswitch accepts {} and {}",
                accepted[..accepted.len() - 1].join(", "),
                accepted[accepted.len() - 1],
            )
        };
        return Err(Invalid::new(
            ManifestErrorKind::Unsupported,
            root.field("kind"),
            message,
        ));
    };
    if api_version != info.api_version {
        return Err(Invalid::new(
            ManifestErrorKind::Unsupported,
            root.field("apiVersion"),
            format!(
                "{api_version:?} is not the apiVersion of {kind}; use {}",
                info.api_version
            ),
        ));
    }
    let object = object_of(info, &mut FromValue(value))?;
    finish(object, info, has_clock_time(value))
}

/// One way of reading the typed object of a kind: from a JSON value ([`FromValue`], errors
/// with their field paths) or from a document's text ([`FromText`], clean objects only).
trait Typed {
    type Error;
    fn typed<T: DeserializeOwned>(&mut self) -> Result<T, Self::Error>;
}

/// The object of kind `info`, read by `read`: the one place a kind names its type.
fn object_of<R: Typed>(info: KindInfo, read: &mut R) -> Result<Object, R::Error> {
    Ok(match info.kind {
        "Namespace" => Object::Namespace(read.typed()?),
        "Pod" => Object::Pod(Box::new(read.typed()?)),
        "Service" => Object::Service(read.typed()?),
        "Endpoints" => Object::Endpoints(read.typed()?),
        "EndpointSlice" => Object::EndpointSlice(read.typed()?),
        "NetworkPolicy" => Object::NetworkPolicy(read.typed()?),
        _ => Object::Node(Box::new(read.typed()?)),
    })
}

/// Reads a typed object from a JSON value: [`typed`].
struct FromValue<'v>(&'v Value);

impl Typed for FromValue<'_> {
    type Error = Invalid;
    fn typed<T: DeserializeOwned>(&mut self) -> Result<T, Invalid> {
        typed(self.0)
    }
}

/// Reads a typed object from a document's text: [`typed_text`] (`Err(())` for anything but a
/// clean object).
struct FromText<'t>(&'t str);

impl Typed for FromText<'_> {
    type Error = ();
    fn typed<T: DeserializeOwned>(&mut self) -> Result<T, ()> {
        typed_text(self.0).ok_or(())
    }
}

/// A typed object made what is stored: scoped, changed as the API server changes it,
/// validated, and written as JSON (read back from it when `clock_time`: see [`canonical`]).
fn finish(
    mut object: Object,
    info: KindInfo,
    clock_time: bool,
) -> Result<(Object, String, Vec<apiserver::Note>), Invalid> {
    set_scope(&mut object, info)?;
    let notes = apiserver::before_validation(&mut object);
    validate::object(&object)?;
    apiserver::after_validation(&mut object);
    let (object, json) = canonical(object, clock_time)?;
    Ok((object, json, notes))
}

/// The JSON fast path's object (`json_stream::Checked`): typed straight from the document's
/// text, with no JSON value built, then [`finish`]ed as [`decode_object`] does. `None` for
/// anything but a clean object of a supported kind (a `List`, an unknown kind or apiVersion,
/// a type error, an unknown field, an invalid object): the caller then decodes the
/// document's value, which gives that error with its field path, exactly as before.
///
/// The object is the same either way: serde_json hands the typed decoder the same calls from
/// the text as from the value the text makes (the fast path's checks leave out what would
/// differ: duplicate keys, floats). `parse_json_tests.rs` holds the two paths to equal
/// objects, JSON and warnings.
pub(crate) fn decode_text(number: usize, document: &Checked<'_>) -> Option<Decoded> {
    let info = kind_info(document.kind.as_deref()?)?;
    if document.api_version.as_deref()? != info.api_version {
        return None;
    }
    let object = object_of(info, &mut FromText(document.text)).ok()?;
    let (object, json, notes) = finish(object, info, document.clock_time).ok()?;
    Some(decoded(number, &FieldPath::root(), object, json, notes))
}

/// `text` as a `T`, when it is one with no unknown field; `None` otherwise.
fn typed_text<T: DeserializeOwned>(text: &str) -> Option<T> {
    let mut unknown = false;
    let mut note_unknown = |_: serde_ignored::Path<'_>| unknown = true;
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let typed = T::deserialize(serde_ignored::Deserializer::new(
        &mut deserializer,
        &mut note_unknown,
    ))
    .ok()?;
    deserializer.end().ok()?;
    (!unknown).then_some(typed)
}

/// Whether any string in `value` holds a clock time (`hh:mm:ss`, digits): a timestamp field
/// (`metav1.Time`, `MicroTime`) is one. An object read from a value without any reads back
/// from its JSON as itself, so [`canonical`] need not read it back: a timestamp is the only
/// value these kinds write differently from how they read it (sub-second digits are dropped).
/// Keys are looked at too, to keep the rule simple to state.
fn has_clock_time(value: &Value) -> bool {
    match value {
        Value::String(s) => holds_clock_time(s),
        Value::Array(items) => items.iter().any(has_clock_time),
        Value::Object(map) => map
            .iter()
            .any(|(k, v)| holds_clock_time(k) || has_clock_time(v)),
        Value::Null | Value::Bool(_) | Value::Number(_) => false,
    }
}

/// Whether `s` holds a clock time: two digits, a colon, two digits, a colon, two digits.
pub(crate) fn holds_clock_time(s: &str) -> bool {
    s.as_bytes().windows(8).any(|w| {
        let digit = |i: usize| w[i].is_ascii_digit();
        digit(0)
            && digit(1)
            && w[2] == b':'
            && digit(3)
            && digit(4)
            && w[5] == b':'
            && digit(6)
            && digit(7)
    })
}

/// The object as it reads back from its own JSON, and that JSON. Kubernetes keeps timestamps
/// to the second (metav1.Time): a fraction in a manifest is dropped here, as the API server
/// drops it, so that an object equals its stored form (found by fuzzing: `to_json` then
/// `from_json` differed).
///
/// The JSON is what the caller stores, so it is written once: it is also `to_json` of the
/// object returned, since serializing what was read from a serialization gives that
/// serialization again (the fuzz target `manifests` checks it on every input it accepts).
///
/// Reading back costs about a quarter of decoding a large apply, and only an object with a
/// timestamp can change in it: `read_back` is false when the input holds no clock time
/// ([`has_clock_time`]), and the object is its own read-back. The fuzz target `manifests`
/// checks that too (an object equals its JSON's read-back), on every input it accepts.
fn canonical(object: Object, read_back: bool) -> Result<(Object, String), Invalid> {
    fn again<T: serde::Serialize + serde::de::DeserializeOwned>(
        t: T,
        read_back: bool,
    ) -> Result<(T, String), serde_json::Error> {
        let json = serde_json::to_string(&t)?;
        if !read_back {
            return Ok((t, json));
        }
        let read_back = serde_json::from_str(&json).unwrap_or(t);
        Ok((read_back, json))
    }
    fn wrap<T>(
        pair: Result<(T, String), serde_json::Error>,
        variant: fn(T) -> Object,
    ) -> Result<(Object, String), Invalid> {
        let (object, json) = pair.map_err(|e| {
            Invalid::new(
                ManifestErrorKind::Invalid,
                FieldPath::root(),
                format!("cannot be written as JSON: {e}"),
            )
        })?;
        Ok((variant(object), json))
    }
    match object {
        Object::Namespace(o) => wrap(again(o, read_back), Object::Namespace),
        Object::Pod(o) => wrap(again(o, read_back), Object::Pod),
        Object::Service(o) => wrap(again(o, read_back), Object::Service),
        Object::Endpoints(o) => wrap(again(o, read_back), Object::Endpoints),
        Object::EndpointSlice(o) => wrap(again(o, read_back), Object::EndpointSlice),
        Object::NetworkPolicy(o) => wrap(again(o, read_back), Object::NetworkPolicy),
        Object::Node(o) => wrap(again(o, read_back), Object::Node),
    }
}

/// `apiVersion` or `kind`: a non-empty string.
fn header_field<'v>(value: &'v Value, name: &str) -> Result<&'v str, Invalid> {
    let path = FieldPath::root().field(name);
    match value.get(name) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s),
        None | Some(Value::Null) | Some(Value::String(_)) => Err(Invalid::new(
            ManifestErrorKind::Unsupported,
            path,
            "is required",
        )),
        Some(other) => Err(Invalid::new(
            ManifestErrorKind::Type,
            path,
            format!("must be a string, not {}", describe(other)),
        )),
    }
}

/// Deserializes into a k8s-openapi type, reporting type errors and then unknown fields with
/// their paths.
fn typed<T: DeserializeOwned>(value: &Value) -> Result<T, Invalid> {
    let mut unknown: Option<FieldPath> = None;
    let mut note_unknown = |path: serde_ignored::Path<'_>| {
        if unknown.is_none() {
            unknown = Some(ignored_path(&path));
        }
    };
    let result: Result<T, _> = serde_path_to_error::deserialize(serde_ignored::Deserializer::new(
        value,
        &mut note_unknown,
    ));
    let typed = result.map_err(|e| {
        Invalid::new(
            ManifestErrorKind::Type,
            tracked_path(e.path()),
            e.inner().to_string(),
        )
    })?;
    match unknown {
        Some(path) => Err(Invalid::new(
            ManifestErrorKind::UnknownField,
            path,
            "unknown field (check its spelling and indentation)",
        )),
        None => Ok(typed),
    }
}

fn ignored_path(path: &serde_ignored::Path<'_>) -> FieldPath {
    use serde_ignored::Path;
    match path {
        Path::Root => FieldPath::root(),
        Path::Seq { parent, index } => ignored_path(parent).index(*index),
        Path::Map { parent, key } => ignored_path(parent).key(key),
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => ignored_path(parent),
    }
}

fn tracked_path(path: &serde_path_to_error::Path) -> FieldPath {
    use serde_path_to_error::Segment;
    path.iter()
        .fold(FieldPath::root(), |out, segment| match segment {
            Segment::Seq { index } => out.index(*index),
            Segment::Map { key } => out.key(key),
            Segment::Enum { variant } => out.key(variant),
            Segment::Unknown => out,
        })
}

/// Namespaced kinds get `"default"` when they name none; cluster-scoped kinds may not name one.
fn set_scope(object: &mut Object, info: KindInfo) -> Result<(), Invalid> {
    let meta = object.metadata_mut();
    let empty = meta.namespace.as_deref().is_none_or(str::is_empty);
    if info.namespaced {
        if empty {
            meta.namespace = Some("default".into());
        }
    } else if empty {
        meta.namespace = None;
    } else {
        return Err(Invalid::new(
            ManifestErrorKind::Invalid,
            FieldPath::root().field("metadata").field("namespace"),
            format!(
                "{} is cluster-scoped and has no namespace; remove metadata.namespace",
                info.kind
            ),
        ));
    }
    Ok(())
}

/// `Kind namespace/name` of a decoded object.
pub(crate) fn identity(object: &Object) -> String {
    format_identity(object.kind(), object.namespace(), object.name())
}

/// The identity as far as the raw document tells it, for errors raised before (or while)
/// it becomes an [`Object`].
fn raw_identity(value: &Value) -> Option<String> {
    let kind = value.get("kind")?.as_str().filter(|k| !k.is_empty())?;
    let metadata = value.get("metadata");
    let text = |field: &str| {
        metadata
            .and_then(|m| m.get(field))
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    };
    let name = text("name").unwrap_or_default();
    let namespace = match kind_info(kind) {
        Some(info) if info.namespaced => Some(text("namespace").unwrap_or("default")),
        Some(_) => None,
        None => text("namespace"),
    };
    Some(format_identity(kind, namespace, name))
}

fn format_identity(kind: &str, namespace: Option<&str>, name: &str) -> String {
    match (namespace, name) {
        (_, "") => kind.to_string(),
        (Some(namespace), name) => format!("{kind} {namespace}/{name}"),
        (None, name) => format!("{kind} {name}"),
    }
}

fn describe(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse_manifests;
    use crate::validate::error_of;

    #[test]
    fn unknown_fields_are_named_with_their_path() {
        let err = parse_manifests(
            "apiVersion: v1\nkind: Pod\nmetadata: {name: web}\nspec:\n  containres: []\n",
        )
        .unwrap_err();
        assert_eq!(err.kind, ManifestErrorKind::UnknownField);
        assert_eq!(
            err.to_string(),
            "document 1 (Pod default/web): spec.containres: unknown field (check its spelling and indentation)"
        );
        assert_eq!(
            error_of("apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec:\n  ports:\n  - port: 80\n    targetport: 8080\n"),
            "document 1 (Service default/web): spec.ports[0].targetport: unknown field (check its spelling and indentation)"
        );
        // A misspelt field set to null is still caught.
        assert_eq!(
            error_of("apiVersion: v1\nkind: Node\nmetadata: {name: n1, lables: ~}\n"),
            "document 1 (Node n1): metadata.lables: unknown field (check its spelling and indentation)"
        );
        // A field indented one level too deep.
        assert_eq!(
            error_of("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: shop\n  spec: {}\n"),
            "document 1 (Namespace shop): metadata.spec: unknown field (check its spelling and indentation)"
        );
        assert_eq!(
            error_of("apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\nextra: 1\n"),
            "document 1 (Namespace shop): extra: unknown field (check its spelling and indentation)"
        );
    }

    #[test]
    fn api_version_must_match_the_kind() {
        let err =
            parse_manifests("apiVersion: apps/v1\nkind: Pod\nmetadata: {name: web}\n").unwrap_err();
        assert_eq!(err.kind, ManifestErrorKind::Unsupported);
        assert_eq!(
            err.to_string(),
            "document 1 (Pod default/web): apiVersion: \"apps/v1\" is not the apiVersion of Pod; use v1"
        );
        assert_eq!(
            error_of("apiVersion: extensions/v1beta1\nkind: NetworkPolicy\nmetadata: {name: p}\n"),
            "document 1 (NetworkPolicy default/p): apiVersion: \"extensions/v1beta1\" is not the apiVersion of NetworkPolicy; use networking.k8s.io/v1"
        );
        assert_eq!(
            error_of("apiVersion: discovery.k8s.io/v1beta1\nkind: EndpointSlice\nmetadata: {name: s}\naddressType: IPv4\n"),
            "document 1 (EndpointSlice default/s): apiVersion: \"discovery.k8s.io/v1beta1\" is not the apiVersion of EndpointSlice; use discovery.k8s.io/v1"
        );
    }

    #[test]
    fn unsupported_kinds_and_missing_headers_are_named() {
        assert_eq!(
            error_of("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\n"),
            "document 1 (Deployment web): kind: \"Deployment\" is not supported; podswitch accepts Namespace, Pod, Service, Endpoints, EndpointSlice, NetworkPolicy and Node"
        );
        assert_eq!(
            error_of("kind: Pod\nmetadata: {name: web}\n"),
            "document 1 (Pod default/web): apiVersion: is required"
        );
        assert_eq!(
            error_of("apiVersion: v1\nmetadata: {name: web}\n"),
            "document 1: kind: is required"
        );
        assert_eq!(
            error_of("apiVersion: 1\nkind: Pod\n"),
            "document 1 (Pod): apiVersion: must be a string, not a number"
        );
    }

    #[test]
    fn cluster_scoped_kinds_cannot_have_a_namespace() {
        assert_eq!(
            error_of("apiVersion: v1\nkind: Node\nmetadata: {name: node-1, namespace: default}\n"),
            "document 1 (Node node-1): metadata.namespace: Node is cluster-scoped and has no namespace; remove metadata.namespace"
        );
        assert_eq!(
            error_of("apiVersion: v1\nkind: Namespace\nmetadata: {name: shop, namespace: shop}\n"),
            "document 1 (Namespace shop): metadata.namespace: Namespace is cluster-scoped and has no namespace; remove metadata.namespace"
        );
        // An empty namespace is no namespace.
        let objects =
            parse_manifests("apiVersion: v1\nkind: Node\nmetadata: {name: n, namespace: \"\"}\n")
                .unwrap();
        assert_eq!(objects[0].namespace(), None);
    }

    #[test]
    fn kind_table_matches_k8s_openapi() {
        use crate::{EndpointSlice, Endpoints, Namespace, NetworkPolicy, Node, Pod, Service};
        let objects = [
            Object::from(Namespace::default()),
            Object::from(Pod::default()),
            Object::from(Service::default()),
            Object::from(EndpointSlice::default()),
            Object::from(Endpoints::default()),
            Object::from(NetworkPolicy::default()),
            Object::from(Node::default()),
        ];
        assert_eq!(objects.len(), KINDS.len());
        for object in objects {
            let info = kind_info(object.kind()).unwrap();
            assert_eq!(
                (info.api_version, info.namespaced),
                (object.api_version(), object.is_namespaced())
            );
        }
    }

    #[test]
    fn clock_times_are_found_anywhere_in_a_value() {
        use serde_json::json;
        for (value, expected) in [
            (
                json!({"metadata": {"creationTimestamp": "2024-01-01T00:00:00.5Z"}}),
                true,
            ),
            (json!({"a": [1, {"b": "x 23:59:60"}]}), true),
            (json!({"labels": {"12:00:00": "k"}}), true),
            (
                json!({"spec": {"ports": [{"port": 80, "name": "http"}], "clusterIP": "10.96.0.1"}}),
                false,
            ),
            (json!({"note": "1:2:3 and 12:3:45 and 12-00-00"}), false),
            (json!(["12:00:0"]), false),
        ] {
            assert_eq!(has_clock_time(&value), expected, "{value}");
        }
    }

    #[test]
    fn objects_with_and_without_timestamps_equal_their_stored_form() {
        let yaml = "apiVersion: v1\nkind: Pod\nmetadata: {name: a, creationTimestamp: \"2024-01-01T00:00:00.25Z\"}\n\
            ---\napiVersion: v1\nkind: Pod\nmetadata: {name: b, creationTimestamp: \"2024-01-01T10:00:00+02:00\"}\n\
            ---\napiVersion: v1\nkind: Service\nmetadata: {name: c, annotations: {at: \"noon\"}}\n\
            spec: {ports: [{port: 80, targetPort: http}], sessionAffinity: ClientIP}\n";
        let parsed = crate::parse_manifests_with_warnings(yaml).unwrap();
        assert_eq!(parsed.objects.len(), 3);
        for (object, json) in parsed.objects.iter().zip(&parsed.json) {
            assert_eq!(&Object::from_json(json).unwrap(), object, "{json}");
            assert_eq!(&object.to_json().unwrap(), json);
        }
    }

    #[test]
    fn fractional_timestamps_are_dropped_so_objects_equal_their_stored_form() {
        let yaml = "apiVersion: v1\nkind: Pod\nmetadata: {name: a, creationTimestamp: \"2024-01-01T00:00:00.5Z\"}\n";
        let objects = crate::parse_manifests(yaml).unwrap();
        let stored = objects[0].to_json().unwrap();
        assert_eq!(Object::from_json(&stored).unwrap(), objects[0]);
        assert!(stored.contains("2024-01-01T00:00:00Z"), "{stored}");
    }
}
