//! Multi-document YAML into validated [`Object`]s: the entry point of an `apply`.
//!
//! This file handles the stream: documents, `List`s, duplicates. Each document goes YAML →
//! JSON value, and each object in it through `decode` (apiVersion/kind, typed, validated).
//! Any failure fails the whole input: the caller applies all of it or none. An input of JSON
//! documents only takes a fast path (`json_stream.rs`): each document is checked in one pass
//! over its text and a clean object is typed straight from that text (`decode::decode_text`,
//! no JSON value between; a third less CPU for the 10k-Service apply); anything else is
//! decoded from its JSON value as before, so its error is the same.
//!
//! YAML: `serde_yaml` 0.9. It is marked deprecated upstream (no further releases), but it is
//! complete and widely used, follows YAML 1.2 (`on`/`yes` stay strings), rejects duplicate
//! keys, and does all this crate needs; the forks (`serde_yml`, `serde_norway`) add nothing
//! here, so the crate stays on the well-known one until a reason to move appears.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use crate::decode::{decode_object, decode_text, identity, Decoded};
use crate::json_stream::{self, NotJson};
use crate::{FieldPath, ManifestError, ManifestErrorKind, ManifestWarning, Object, ObjectKey};

/// What [`parse_manifests_with_warnings`] accepted: the objects, in input order, and what the
/// API server would have warned about (empty for a clean input).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Parsed {
    /// The validated objects.
    pub objects: Vec<Object>,
    /// Each object's JSON, as [`Object::to_json`] writes it (`json[i]` is `objects[i]`'s):
    /// written once while parsing, for the caller to store without serializing again.
    pub json: Vec<String>,
    /// One per field Kubernetes accepts but reads differently from how it is written.
    pub warnings: Vec<ManifestWarning>,
}

/// Parses a multi-document YAML (or JSON) input into validated objects, in input order.
///
/// - Documents are separated by `---`; empty and comment-only documents are skipped (but
///   counted, so `document N` in an error is the N-th document of the file).
/// - A `kind: List` (`apiVersion: v1`) contributes its `items`.
/// - Namespaced kinds without `metadata.namespace` get `"default"`; Namespace and Node must
///   not have one.
/// - The first problem anywhere fails the whole input; the same object twice is a problem.
pub fn parse_manifests(yaml: &str) -> Result<Vec<Object>, ManifestError> {
    parse_manifests_with_warnings(yaml).map(|parsed| parsed.objects)
}

/// [`parse_manifests`], keeping the warnings: what `apply` shows its user (see `apiserver.rs`
/// for what is changed on the way in).
///
/// An input of JSON documents only is read with `serde_json` directly (`json_stream.rs`: the
/// same values, several times faster); anything else, and any JSON the fast path declines, is
/// read as YAML from its start, so errors are always the YAML path's.
pub fn parse_manifests_with_warnings(yaml: &str) -> Result<Parsed, ManifestError> {
    let texts: Vec<&str> = json_stream::split(yaml).collect();
    let json = read_in_parallel(&texts, |index, text| -> Result<Document, Stop> {
        let Some(checked) = json_stream::check(text)? else {
            return Ok(Document::Empty);
        };
        Ok(match decode_text(index + 1, &checked) {
            Some(decoded) => Document::Decoded(decoded),
            None => Document::Value(checked.value()?),
        })
    });
    match objects_of(json.into_iter()) {
        Ok(parsed) => Ok(parsed),
        Err(Stop::Invalid(error)) => Err(error),
        Err(Stop::NotJson) => parse_yaml(yaml),
    }
}

/// From how many documents [`read_in_parallel`] uses more than one thread.
const PARALLEL_FROM: usize = 512;

/// `read` of each of `texts` (with its index), in order. A large input (the 10k-Service apply:
/// 20k documents) is read on up to four threads, one contiguous share each: documents are
/// independent until `objects_of` puts them together, in order, so the outcome is the
/// sequential one, errors included (the first failing document in input order wins; the
/// documents after it are read for nothing, which only a failing apply pays). A thread
/// that cannot be started leaves its share to this one.
fn read_in_parallel<'t, T: Send>(
    texts: &[&'t str],
    read: impl Fn(usize, &'t str) -> T + Sync,
) -> Vec<T> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(4));
    if threads < 2 || texts.len() < PARALLEL_FROM {
        return texts.iter().enumerate().map(|(i, t)| read(i, t)).collect();
    }
    let share = texts.len().div_ceil(threads);
    let read = &read;
    let read_share = move |first: usize, part: &[&'t str]| -> Vec<T> {
        part.iter()
            .enumerate()
            .map(|(i, t)| read(first + i, t))
            .collect()
    };
    std::thread::scope(|scope| {
        let mut shares = texts.chunks(share).enumerate();
        let (_, own) = shares.next().unwrap_or((0, &[]));
        let others: Vec<_> = shares
            .map(|(n, part)| {
                let spawned = std::thread::Builder::new()
                    .name("psw-parse".into())
                    .spawn_scoped(scope, move || read_share(n * share, part));
                (n, part, spawned)
            })
            .collect();
        let mut out = read_share(0, own);
        out.reserve(texts.len() - out.len());
        for (n, part, spawned) in others {
            match spawned {
                Ok(thread) => match thread.join() {
                    Ok(results) => out.extend(results),
                    Err(panic) => std::panic::resume_unwind(panic),
                },
                Err(_) => out.extend(read_share(n * share, part)),
            }
        }
        out
    })
}

/// The YAML path alone (what every input not wholly JSON takes).
fn parse_yaml(yaml: &str) -> Result<Parsed, ManifestError> {
    let documents =
        serde_yaml::Deserializer::from_str(yaml)
            .enumerate()
            .map(|(index, document)| {
                document_to_json(document)
                    .map(Document::Value)
                    .map_err(|message| {
                        ManifestError::new(
                            index + 1,
                            None,
                            FieldPath::root(),
                            ManifestErrorKind::Syntax,
                            message,
                        )
                    })
            });
    objects_of(documents)
}

/// The YAML path's objects, for a timing beside the JSON path's.
#[cfg(test)]
pub(crate) fn parse_yaml_for_timing(yaml: &str) -> Vec<Object> {
    parse_yaml(yaml).map(|p| p.objects).unwrap_or_default()
}

/// Why the JSON fast path stopped.
enum Stop {
    /// The input is wrong: the error for the user (the YAML path would give the same).
    Invalid(ManifestError),
    /// A document is not JSON the fast path reads: read the input as YAML.
    NotJson,
}

impl From<NotJson> for Stop {
    fn from(_: NotJson) -> Self {
        Stop::NotJson
    }
}

impl From<ManifestError> for Stop {
    fn from(error: ManifestError) -> Self {
        Stop::Invalid(error)
    }
}

/// One document of the stream, as far as it has been read. The JSON path holds the whole
/// input's (~1 KB each, 20 MB for the 10k-Service apply's 20k documents, beside the objects'
/// own data) until `objects_of` takes them in order; boxing the decoded ones would cost an
/// allocation each for no gain.
#[allow(clippy::large_enum_variant)]
enum Document {
    /// An empty document (counted all the same).
    Empty,
    /// A document's value, to decode (`Null` for an empty one).
    Value(Value),
    /// A document the JSON fast path decoded already (`decode::decode_text`).
    Decoded(Decoded),
}

/// The objects of a stream of documents.
fn objects_of<E: From<ManifestError>>(
    documents: impl Iterator<Item = Result<Document, E>>,
) -> Result<Parsed, E> {
    let mut objects = Vec::new();
    let mut json = Vec::new();
    let mut warnings = Vec::new();
    let mut seen: BTreeMap<ObjectKey, usize> = BTreeMap::new();
    for (index, document) in documents.enumerate() {
        let number = index + 1;
        let decoded = match document? {
            Document::Empty => continue,
            Document::Value(value) if value.is_null() => continue,
            Document::Value(value) => decode_document(number, &value)?,
            Document::Decoded(decoded) => vec![decoded],
        };
        for Decoded {
            object,
            json: object_json,
            warnings: object_warnings,
        } in decoded
        {
            warnings.extend(object_warnings);
            let key = object.key();
            if let Some(first) = seen.get(&key) {
                return Err(ManifestError::new(
                    number,
                    Some(identity(&object)),
                    FieldPath::root(),
                    ManifestErrorKind::Duplicate,
                    format!("duplicate object: {key} is already defined in document {first}"),
                )
                .into());
            }
            seen.insert(key, number);
            objects.push(object);
            json.push(object_json);
        }
    }
    Ok(Parsed {
        objects,
        json,
        warnings,
    })
}

/// A YAML document as a JSON value (`Null` for an empty one). Merge keys (`<<: *base`) are
/// applied first, so anchors work as in kubectl.
fn document_to_json(document: serde_yaml::Deserializer<'_>) -> Result<Value, String> {
    let mut yaml =
        serde_yaml::Value::deserialize(document).map_err(|e| format!("not valid YAML: {e}"))?;
    yaml.apply_merge()
        .map_err(|e| format!("not valid YAML: {e}"))?;
    serde_json::to_value(&yaml).map_err(|e| format!("not a JSON-compatible document: {e}"))
}

/// The objects of one non-empty document (itself, or the items of a `List`), each with its
/// warnings.
fn decode_document(number: usize, value: &Value) -> Result<Vec<Decoded>, ManifestError> {
    if value.get("kind").and_then(Value::as_str) != Some("List") {
        return Ok(vec![decode_object(number, value, &FieldPath::root())?]);
    }
    let fail = |path: FieldPath, message: String| {
        ManifestError::new(
            number,
            Some("List".into()),
            path,
            ManifestErrorKind::Unsupported,
            message,
        )
    };
    let root = FieldPath::root();
    match value.get("apiVersion") {
        Some(Value::String(v)) if v == "v1" => {}
        Some(Value::String(v)) => {
            return Err(fail(
                root.field("apiVersion"),
                format!("{v:?} is not the apiVersion of List; use v1"),
            ))
        }
        _ => return Err(fail(root.field("apiVersion"), "is required (v1)".into())),
    }
    match value.get("items") {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, item)| decode_object(number, item, &root.field("items").index(i)))
            .collect(),
        Some(_) => Err(fail(
            root.field("items"),
            "must be a list of objects".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::error_of;
    use crate::{labels, pod_labels};

    /// What a user applies for a small app: every kind, comments, a leading `---`, an empty
    /// document, namespaces both given and defaulted.
    const SHOP: &str = include_str!("../testdata/shop.yaml");

    #[test]
    fn realistic_manifest_parses_in_order_with_defaulted_namespaces() {
        let objects = parse_manifests(SHOP).unwrap();
        let keys: Vec<String> = objects.iter().map(|o| o.key().to_string()).collect();
        assert_eq!(
            keys,
            [
                "namespace shop",
                "pod shop/web-1",
                "pod default/client",
                "service shop/web",
                "endpointslice shop/web-abc12",
                "networkpolicy shop/web-from-client",
                "node node-1",
            ]
        );
        let Object::Pod(web) = &objects[1] else {
            panic!("{:?}", objects[1]);
        };
        assert_eq!(
            pod_labels(web),
            BTreeMap::from([
                ("app".to_string(), "web".to_string()),
                ("app.kubernetes.io/part-of".to_string(), "shop".to_string()),
            ])
        );
        let status = web.status.as_ref().unwrap();
        assert_eq!(status.pod_ip.as_deref(), Some("10.244.1.5"));
        let ports = web.spec.as_ref().unwrap().containers[0]
            .ports
            .as_ref()
            .unwrap();
        assert_eq!(
            (ports[0].name.as_deref(), ports[0].container_port),
            (Some("http"), 8080)
        );
        assert_eq!(
            labels(&objects[2]).get("version").map(String::as_str),
            Some("2")
        );
        assert_eq!(
            labels(&objects[0]).get("team").map(String::as_str),
            Some("payments")
        );

        let Object::Service(svc) = &objects[3] else {
            panic!("{:?}", objects[3]);
        };
        let spec = svc.spec.as_ref().unwrap();
        assert_eq!(spec.cluster_ip.as_deref(), Some("10.96.0.20"));
        assert_eq!(spec.ports.as_ref().unwrap()[0].port, 80);
        let Object::EndpointSlice(slice) = &objects[4] else {
            panic!("{:?}", objects[4]);
        };
        assert_eq!(
            slice.endpoints.as_ref().unwrap()[0].addresses,
            ["10.244.1.5"]
        );
        let Object::NetworkPolicy(policy) = &objects[5] else {
            panic!("{:?}", objects[5]);
        };
        let peers = policy.spec.as_ref().unwrap().ingress.as_ref().unwrap()[0]
            .from
            .as_ref()
            .unwrap();
        assert!(peers[0].namespace_selector.is_some() && peers[0].pod_selector.is_some());
        let Object::Node(node) = &objects[6] else {
            panic!("{:?}", objects[6]);
        };
        assert_eq!(node.metadata.namespace, None);
        assert_eq!(
            node.spec.as_ref().unwrap().pod_cidr.as_deref(),
            Some("10.244.1.0/24")
        );

        // Stored and read back, every object is unchanged.
        for object in &objects {
            assert_eq!(
                &Object::from_json(&object.to_json().unwrap()).unwrap(),
                object
            );
        }
    }

    #[test]
    fn errors_count_every_document_including_empty_ones() {
        // A comment before the first `---` is no document (YAML 1.2, 9.2), so SHOP's Namespace is
        // document 1; document 4 is the comment-only one, the Service after it is document 5.
        let broken = SHOP.replace("    port: 80\n", "    port: 70000\n");
        assert_eq!(
            parse_manifests(&broken).unwrap_err().to_string(),
            "document 5 (Service shop/web): spec.ports[0].port: 70000 is out of range 1..=65535"
        );
    }

    #[test]
    fn empty_and_comment_only_inputs_give_no_objects() {
        for input in [
            "",
            "\n",
            "---\n",
            "# nothing\n",
            "---\n---\n# c\n---\n",
            "--- ~\n",
        ] {
            assert_eq!(parse_manifests(input).unwrap(), [], "{input:?}");
        }
    }

    #[test]
    fn lists_are_expanded_and_their_items_named_by_index() {
        let list = "apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: Namespace, metadata: {name: a}}\n- {apiVersion: v1, kind: Pod, metadata: {name: p, namespace: a}}\n";
        let keys: Vec<String> = parse_manifests(list)
            .unwrap()
            .iter()
            .map(|o| o.key().to_string())
            .collect();
        assert_eq!(keys, ["namespace a", "pod a/p"]);
        assert_eq!(
            parse_manifests("apiVersion: v1\nkind: List\nitems: []\n").unwrap(),
            []
        );
        assert_eq!(
            error_of("apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: Namespace, metadata: {name: a}}\n- {apiVersion: v1, kind: Pod, metadata: {name: p, namespace: a}, spec: {containers: [{name: c, ports: [{containerPort: 0}]}]}}\n"),
            "document 1 (Pod a/p): items[1].spec.containers[0].ports[0].containerPort: 0 is out of range 1..=65535 (is the port missing?)"
        );
        assert_eq!(
            error_of("apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: List, items: []}\n"),
            "document 1 (List): items[0].kind: a List may only be a whole document, not inside another List"
        );
        assert_eq!(
            error_of("apiVersion: v1\nkind: List\nitems: {a: 1}\n"),
            "document 1 (List): items: must be a list of objects"
        );
        assert_eq!(
            error_of("apiVersion: apps/v1\nkind: List\nitems: []\n"),
            "document 1 (List): apiVersion: \"apps/v1\" is not the apiVersion of List; use v1"
        );
    }

    #[test]
    fn the_same_object_twice_is_an_error() {
        let pod = "apiVersion: v1\nkind: Pod\nmetadata: {name: web}\n";
        let err = parse_manifests(&format!("{pod}---\n{pod}")).unwrap_err();
        assert_eq!(err.kind, ManifestErrorKind::Duplicate);
        assert_eq!(
            err.to_string(),
            "document 2 (Pod default/web): duplicate object: pod default/web is already defined in document 1"
        );
        // An explicit "default" is the same namespace as none.
        assert_eq!(
            error_of(&format!("{pod}---\napiVersion: v1\nkind: Pod\nmetadata: {{name: web, namespace: default}}\n")),
            "document 2 (Pod default/web): duplicate object: pod default/web is already defined in document 1"
        );
        // Same name, other namespace or other kind: different objects.
        let other = format!("{pod}---\napiVersion: v1\nkind: Pod\nmetadata: {{name: web, namespace: b}}\n---\napiVersion: v1\nkind: Endpoints\nmetadata: {{name: web}}\n");
        assert_eq!(parse_manifests(&other).unwrap().len(), 3);
    }

    #[test]
    fn syntax_errors_name_the_document() {
        let err =
            parse_manifests("apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n---\nkind: [\n")
                .unwrap_err();
        assert_eq!(err.kind, ManifestErrorKind::Syntax);
        assert_eq!(err.document, 2);
        assert!(
            err.to_string().starts_with("document 2: not valid YAML: "),
            "{err}"
        );
        assert_eq!(
            error_of("apiVersion: v1\nkind: Pod\nmetadata: {name: a, name: b}\n"),
            "document 1: not valid YAML: metadata: duplicate entry with key \"name\" at line 3 column 11"
        );
        assert_eq!(
            error_of("- a\n- b\n"),
            "document 1: a manifest must be a mapping with apiVersion and kind, not a list"
        );
        assert_eq!(
            error_of("just text\n"),
            "document 1: a manifest must be a mapping with apiVersion and kind, not a string"
        );
    }

    #[test]
    fn one_bad_document_fails_the_whole_input() {
        let input = format!("{SHOP}---\napiVersion: v1\nkind: Pod\nmetadata: {{name: Bad}}\n");
        let err = parse_manifests(&input).unwrap_err();
        assert_eq!(err.document, 9);
        assert_eq!(err.object.as_deref(), Some("Pod default/Bad"));
        assert_eq!(err.field.as_str(), "metadata.name");
    }

    #[test]
    fn yaml_anchors_and_merge_keys_work_within_a_document() {
        let input = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: a\n  labels: &l {app: web}\n  annotations:\n    <<: *l\n    tier: front\n";
        let objects = parse_manifests(input).unwrap();
        assert_eq!(objects[0].metadata().annotations.as_ref().unwrap().len(), 2);
        // Anchors do not reach into the next document (YAML 1.2, 9.2).
        let err = parse_manifests(&format!(
            "{input}---\napiVersion: v1\nkind: Pod\nmetadata: {{name: b, labels: *l}}\n"
        ))
        .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("document 2: not valid YAML: unknown anchor"),
            "{err}"
        );
    }

    #[test]
    fn json_documents_parse_too() {
        let objects = parse_manifests(
            r#"{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "a"}}"#,
        )
        .unwrap();
        assert_eq!(objects[0].key(), ObjectKey::new("Namespace", None, "a"));
    }
}

/// The JSON fast path against the YAML path.
#[cfg(test)]
#[path = "parse_json_tests.rs"]
mod json_tests;
