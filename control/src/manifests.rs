//! `apply` and `delete` of Kubernetes manifests (multi-document YAML, parsed and validated by
//! `podswitch-k8s`). Objects are stored by key (`pod default/web`) as their JSON.
//!
//! Both are all-or-nothing: every document is parsed and validated first (any error: code 100
//! with the parser's message naming document, object and field, and nothing is stored), then
//! all objects are written in one database transaction. `delete` reports objects that are not
//! stored as `not found` lines rather than failing, like `kubectl delete --ignore-not-found`:
//! deleting is idempotent, and a manifest that names one already-deleted object still deletes
//! the rest.
//!
//! What the API server changes on the way in is changed here too (`podswitch_k8s`'s
//! `apiserver.rs`); its warnings lead the summary of `apply` as `Warning: ...` lines, as
//! `kubectl apply` prints them before its own lines.
//!
//! A change to a Service, EndpointSlice or Endpoints (`crate::services`), or to a
//! NetworkPolicy, Namespace or Pod (`crate::policy`: labels and containerPorts feed the
//! selectors and named ports), or to a Node (`crate::nodes`: a route to another node's pod
//! CIDR), bumps the generation in the same transaction and is pushed before the answer;
//! Nodes are checked together with the stored ones (overlapping pod CIDRs, a missing
//! InternalIP: refused whole). A push that fails leaves the change stored (the
//! store is the truth: the next resync pushes it) and adds a `Warning:` line saying so.
//! What this switch cannot program (SCTP, a ClusterIP outside the service CIDR) is refused
//! like an invalid manifest, with nothing stored.

use crate::config::Settings;
use crate::control::{code, Control, Failure};
use crate::nodes;
use crate::policy::is_policy_key;
use crate::services::{check_service, is_service_key};
use crate::state::Offered;
use crate::store::{ObjectWrite, ReadTx, StoreError};
use podswitch_k8s::{parse_manifests_with_warnings, pod_labels, Object, ObjectKey};
use std::collections::BTreeMap;

impl Control {
    /// Stores every object of `manifests`; the warnings (`Warning: document 1 (...): ...`),
    /// then one summary line per object: `pod default/web created`, `configured` or
    /// `unchanged`.
    pub fn apply(&self, manifests: &str) -> Result<Vec<String>, Failure> {
        let ((objects, warnings), decoded) = parse(manifests, &self.settings)?;
        let _guard = self.lock();
        let (summary, programmed) =
            self.store
                .write(|tx| -> Result<(Vec<String>, bool), Failure> {
                    let mut summary = warnings;
                    summary.reserve(objects.len());
                    let mut programmed = false;
                    check_nodes(&self.settings, tx, &objects)?;
                    let writes = tx.put_objects(
                        objects.iter().map(|(k, j)| (k.as_str(), j.as_str())),
                        same_json,
                    )?;
                    for ((key, _), write) in objects.iter().zip(writes) {
                        let verb = match write {
                            ObjectWrite::Created => "created",
                            ObjectWrite::Changed => "configured",
                            ObjectWrite::Unchanged => "unchanged",
                        };
                        programmed |= write != ObjectWrite::Unchanged && programs_dataplane(key);
                        summary.push(format!("{key} {verb}"));
                    }
                    if programmed {
                        tx.bump_generation()?;
                    }
                    Ok((summary, programmed))
                })?;
        if programmed {
            // The sync thread takes these rather than decoding what was just stored.
            let offered = (objects.into_iter().zip(decoded))
                .filter(|((key, _), _)| programs_dataplane(key))
                .map(|((key, json), object)| Offered::new(key, json, object))
                .collect();
            self.sync.offer(offered);
        }
        Ok(self.pushed(summary, programmed))
    }

    /// Pushes a stored change to the dataplane when it is one; a failure is a warning line.
    fn pushed(&self, mut summary: Vec<String>, programmed: bool) -> Vec<String> {
        if programmed {
            if let Err(e) = self.sync.push_now() {
                summary.insert(
                    0,
                    format!("Warning: stored, but not in the dataplane yet (retried at the next resync): {e}"),
                );
            }
        }
        summary
    }

    /// Removes every object `manifests` names; one line per object: `pod default/web deleted`
    /// or `pod default/web not found`.
    pub fn delete(&self, manifests: &str) -> Result<Vec<String>, Failure> {
        // Deleting what this switch would refuse to apply must still work.
        let (objects, _) = parse_only(manifests)?;
        let _guard = self.lock();
        let (summary, programmed) = self
            .store
            .write(|tx| -> Result<(Vec<String>, bool), StoreError> {
                let mut summary = Vec::with_capacity(objects.len());
                let mut programmed = false;
                for (key, _) in &objects {
                    let verb = if tx.remove_object(key)? {
                        programmed |= programs_dataplane(key);
                        "deleted"
                    } else {
                        "not found"
                    };
                    summary.push(format!("{key} {verb}"));
                }
                if programmed {
                    tx.bump_generation()?;
                }
                Ok((summary, programmed))
            })
            .map_err(Failure::from)?;
        Ok(self.pushed(summary, programmed))
    }
}

/// A manifest's objects as `(key, json)` in input order, and its warnings as lines.
type Encoded = (Vec<(String, String)>, Vec<String>);

/// Parses and validates all documents, checks what this node cannot program
/// (`crate::services::check_service`), then encodes each object.
/// The objects themselves are returned too, in the same order.
fn parse(manifests: &str, settings: &Settings) -> Result<(Encoded, Vec<Object>), Failure> {
    let mut parsed = parse_manifests_with_warnings(manifests)
        .map_err(|e| Failure::new(code::INVALID_MANIFEST, e.to_string()))?;
    for object in &parsed.objects {
        if let Object::Service(svc) = object {
            check_service(settings, svc).map_err(|e| Failure::new(code::INVALID_MANIFEST, e))?;
        }
    }
    let objects = std::mem::take(&mut parsed.objects);
    let keys = objects.iter().map(|o| o.key().to_string());
    let warnings = parsed.warnings.iter().map(ToString::to_string).collect();
    Ok(((keys.zip(parsed.json).collect(), warnings), objects))
}

/// Parses and validates all documents, then encodes each object.
fn parse_only(manifests: &str) -> Result<Encoded, Failure> {
    let parsed = parse_manifests_with_warnings(manifests)
        .map_err(|e| Failure::new(code::INVALID_MANIFEST, e.to_string()))?;
    Ok(encode(parsed))
}

/// Each object's key and the JSON the parser wrote for it (`Parsed::json`, what
/// `Object::to_json` gives: not serialized a second time here).
fn encode(parsed: podswitch_k8s::Parsed) -> Encoded {
    let warnings: Vec<String> = parsed.warnings.iter().map(ToString::to_string).collect();
    let objects = parsed
        .objects
        .iter()
        .zip(parsed.json)
        .map(|(o, json)| (o.key().to_string(), json))
        .collect();
    (objects, warnings)
}

/// Whether a change to the stored object `key` changes the dataplane's configuration.
fn programs_dataplane(key: &str) -> bool {
    is_service_key(key) || is_policy_key(key) || nodes::is_node_key(key)
}

/// The Nodes stored with those of `objects` in their place, checked together
/// (`crate::nodes::check_nodes`): a manifest whose Nodes overlap each other or the stored ones
/// is refused whole.
fn check_nodes(
    settings: &Settings,
    tx: &crate::store::WriteTx,
    objects: &[(String, String)],
) -> Result<(), Failure> {
    if !objects.iter().any(|(key, _)| nodes::is_node_key(key)) {
        return Ok(());
    }
    let mut all = BTreeMap::new();
    let stored = tx.objects_of_kinds(nodes::KINDS)?;
    let given = objects.iter().filter(|(key, _)| nodes::is_node_key(key));
    for (key, json) in stored.iter().chain(given.map(|(k, j)| (k, j))) {
        let node: podswitch_k8s::Node = crate::store::decode_object(key, json)?;
        all.insert(key.clone(), nodes::NodeRoute::of(&node));
    }
    nodes::check_nodes(settings, &all).map_err(|e| Failure::new(code::INVALID_MANIFEST, e))
}

/// Equal as JSON values (independent of key order and spacing); the same text is the same
/// value without parsing either (what re-applying an unchanged object stores and compares).
fn same_json(a: &str, b: &str) -> bool {
    if a == b {
        return true;
    }
    match (
        serde_json::from_str::<serde_json::Value>(a),
        serde_json::from_str::<serde_json::Value>(b),
    ) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// Labels of the stored Pod object `namespace/name`; empty when there is none (or the runtime
/// gave no pod name).
pub(crate) fn stored_pod_labels(
    view: &ReadTx,
    namespace: &str,
    name: &str,
) -> Result<BTreeMap<String, String>, Failure> {
    if namespace.is_empty() || name.is_empty() {
        return Ok(BTreeMap::new());
    }
    let key = ObjectKey::new("Pod", Some(namespace), name).to_string();
    let Some(json) = view.object(&key)? else {
        return Ok(BTreeMap::new());
    };
    match Object::from_json(&json) {
        Ok(Object::Pod(pod)) => Ok(pod_labels(&pod)),
        Ok(_) => Ok(BTreeMap::new()),
        Err(e) => {
            // A stored object this version cannot read costs the labels, not the listing.
            crate::log(&format!("stored object {key} does not decode: {e}"));
            Ok(BTreeMap::new())
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::control::code;
    use crate::testkit::{add_request, Harness};
    use std::collections::BTreeMap;

    const WEB: &str =
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\n  labels:\n    app: web\n";
    const NS: &str = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: shop\n";

    fn objects(h: &Harness) -> BTreeMap<String, String> {
        h.store().read().unwrap().objects().unwrap()
    }

    #[test]
    fn apply_reports_created_unchanged_and_configured() {
        let h = Harness::new();
        let both = format!("{WEB}---\n{NS}");
        assert_eq!(
            h.c().apply(&both).unwrap(),
            ["pod default/web created", "namespace shop created"]
        );
        assert_eq!(
            h.c().apply(&both).unwrap(),
            ["pod default/web unchanged", "namespace shop unchanged"]
        );
        let relabelled = WEB.replace("app: web", "app: shop");
        assert_eq!(
            h.c().apply(&relabelled).unwrap(),
            ["pod default/web configured"]
        );
        assert!(objects(&h)["pod default/web"].contains("shop"));
        // Pods and Namespaces feed policy selectors: each change is a new generation (two
        // applies that changed something), an unchanged apply is not.
        assert_eq!(h.store().read().unwrap().generation().unwrap(), 3);
    }

    #[test]
    fn apply_stores_what_the_api_server_would_and_leads_with_its_warnings() {
        let h = Harness::new();
        let policy = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: shop}\nspec:\n  podSelector: {}\n  ingress:\n  - from: [{ipBlock: {cidr: 10.0.0.1/8}}]\n";
        let summary = h.c().apply(&format!("{NS}---\n{policy}")).unwrap();
        assert_eq!(summary.len(), 3, "{summary:?}");
        assert!(
            summary[0].starts_with(
                "Warning: document 2 (NetworkPolicy shop/p): spec.ingress[0].from[0].ipBlock.cidr: \
                 non-standard CIDR value \"10.0.0.1/8\""
            ),
            "{summary:?}"
        );
        assert_eq!(
            summary[1..],
            ["namespace shop created", "networkpolicy shop/p created"]
        );
        let stored = objects(&h);
        assert!(
            stored["networkpolicy shop/p"].contains("\"10.0.0.0/8\""),
            "stored as its network: {stored:?}"
        );
        assert!(
            stored["namespace shop"].contains("\"kubernetes.io/metadata.name\":\"shop\""),
            "{stored:?}"
        );
    }

    #[test]
    fn policies_and_the_pods_they_select_are_pushed_without_a_warning() {
        let h = Harness::new();
        let mut req = add_request("c1");
        req.pod_namespace = Some("shop".into());
        req.pod_name = Some("web".into());
        let port = h.c().cni_add(&req).unwrap().port;
        let policy = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: deny, namespace: shop}\nspec:\n  podSelector: {matchLabels: {app: web}}\n  policyTypes: [Ingress]\n";
        let summary = h.c().apply(&format!("{NS}---\n{policy}")).unwrap();
        assert_eq!(
            summary,
            ["namespace shop created", "networkpolicy shop/deny created"],
            "no warning: NetworkPolicy is enforced"
        );
        // The pod has no labels yet: the policy selects nothing.
        assert!(h.dp.state().policies.is_empty());
        let pod = "apiVersion: v1\nkind: Pod\nmetadata: {name: web, namespace: shop, labels: {app: web}}\n";
        let before = h.store().read().unwrap().generation().unwrap();
        assert_eq!(h.c().apply(pod).unwrap(), ["pod shop/web created"]);
        assert_eq!(h.store().read().unwrap().generation().unwrap(), before + 1);
        {
            let dp = h.dp.state();
            let spec = &dp.policies[&port];
            let ingress = spec.ingress.as_ref().unwrap();
            assert_eq!(ingress.policies, ["shop/deny"]);
            assert!(ingress.rules.is_empty());
            assert!(spec.egress.is_none());
        }
        // Deleting the policy lifts the isolation.
        assert_eq!(
            h.c().delete(policy).unwrap(),
            ["networkpolicy shop/deny deleted"]
        );
        assert!(h.dp.state().policies.is_empty());
        // And the pod's DEL takes its (re-applied) policy with it.
        h.c().apply(policy).unwrap();
        assert_eq!(h.dp.state().policies.len(), 1);
        h.c()
            .cni_del(&podswitch_proto::control::CniDetach {
                container_id: "c1".into(),
                ifname: "eth0".into(),
                netns: None,
            })
            .unwrap();
        assert!(h.dp.state().policies.is_empty());
        assert!(!h.dp.state().port_names().contains(&port));
    }

    #[test]
    fn a_bad_document_rejects_the_whole_apply() {
        let h = Harness::new();
        h.c().apply(NS).unwrap();
        let before = objects(&h);
        let bad = format!("{WEB}---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: Bad_Name\n");
        let err = h.c().apply(&bad).unwrap_err();
        assert_eq!(err.code, code::INVALID_MANIFEST);
        assert!(err.message.starts_with("document 2"), "{err}");
        assert_eq!(
            objects(&h),
            before,
            "the first document was not stored either"
        );
        let err = h.c().delete(&bad).unwrap_err();
        assert_eq!(err.code, code::INVALID_MANIFEST);
        assert_eq!(objects(&h), before);
    }

    #[test]
    fn delete_removes_what_is_stored_and_reports_the_rest() {
        let h = Harness::new();
        h.c().apply(WEB).unwrap();
        assert_eq!(
            h.c().delete(&format!("{WEB}---\n{NS}")).unwrap(),
            ["pod default/web deleted", "namespace shop not found"]
        );
        assert!(objects(&h).is_empty());
    }

    #[test]
    fn pods_are_sorted_and_carry_the_labels_of_their_applied_pod() {
        let h = Harness::new();
        h.c().apply(WEB).unwrap();
        let mut zed = add_request("c1");
        zed.pod_name = Some("zed".into());
        let mut web = add_request("c2");
        web.pod_name = Some("web".into());
        let mut other_ns = add_request("c3");
        other_ns.pod_namespace = Some("alpha".into());
        other_ns.pod_name = Some("web".into());
        for req in [&zed, &web, &other_ns] {
            h.c().cni_add(req).unwrap();
        }
        let pods = h.c().pods().unwrap();
        let names: Vec<_> = pods
            .iter()
            .map(|p| format!("{}/{}", p.namespace, p.name))
            .collect();
        assert_eq!(names, ["alpha/web", "default/web", "default/zed"]);
        assert!(pods[0].labels.is_empty());
        assert_eq!(pods[1].labels.get("app").map(String::as_str), Some("web"));
        assert_eq!(pods[1].container_id, "c2");
    }
}
