//! What the API server does to an object on its way in, besides validating it, so that an
//! object applied here means what it would mean in a cluster:
//! - every Namespace carries the label `kubernetes.io/metadata.name: <name>` (set, and
//!   overwritten if the manifest says otherwise, since Kubernetes 1.21: namespaceSelectors
//!   select namespaces by name through it);
//! - an ipBlock `cidr` or `except` entry with host bits set (`10.0.0.1/8`) is accepted as its
//!   network (`10.0.0.0/8`), as Go's `net.ParseCIDR` reads it, with a warning like the one the
//!   API server returns for it. The object keeps the masked form, so what is stored, shown and
//!   compiled is the network the policy really means.

use k8s_openapi::api::networking::v1::{IPBlock, NetworkPolicy};

use crate::{net, FieldPath, Object};

/// The label every Namespace carries.
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// A change made to an object that its author should hear about: path inside the object and
/// what was done.
pub(crate) type Note = (FieldPath, String);

/// Masks ipBlock CIDRs (before validation, which requires canonical CIDRs); returns a note for
/// each one changed.
pub(crate) fn before_validation(object: &mut Object) -> Vec<Note> {
    let mut notes = Vec::new();
    if let Object::NetworkPolicy(policy) = object {
        mask_ip_blocks(policy, &mut notes);
    }
    notes
}

/// Labels a Namespace with its name (after validation: the name is then a valid label value).
pub(crate) fn after_validation(object: &mut Object) {
    if let Object::Namespace(ns) = object {
        let name = ns.metadata.name.clone().unwrap_or_default();
        ns.metadata
            .labels
            .get_or_insert_with(Default::default)
            .insert(NAMESPACE_NAME_LABEL.to_string(), name);
    }
}

fn mask_ip_blocks(policy: &mut NetworkPolicy, notes: &mut Vec<Note>) {
    let Some(spec) = policy.spec.as_mut() else {
        return;
    };
    let spec_path = FieldPath::root().field("spec");
    for (i, rule) in spec.ingress.iter_mut().flatten().enumerate() {
        let rule_path = spec_path.field("ingress").index(i);
        for (j, peer) in rule.from.iter_mut().flatten().enumerate() {
            if let Some(block) = peer.ip_block.as_mut() {
                let path = rule_path.field("from").index(j).field("ipBlock");
                mask_block(block, &path, notes);
            }
        }
    }
    for (i, rule) in spec.egress.iter_mut().flatten().enumerate() {
        let rule_path = spec_path.field("egress").index(i);
        for (j, peer) in rule.to.iter_mut().flatten().enumerate() {
            if let Some(block) = peer.ip_block.as_mut() {
                let path = rule_path.field("to").index(j).field("ipBlock");
                mask_block(block, &path, notes);
            }
        }
    }
}

fn mask_block(block: &mut IPBlock, path: &FieldPath, notes: &mut Vec<Note>) {
    mask(&mut block.cidr, path.field("cidr"), notes);
    for (k, except) in block.except.iter_mut().flatten().enumerate() {
        mask(except, path.field("except").index(k), notes);
    }
}

/// Rewrites `value` to its network if it parses with host bits set; anything that does not
/// parse is left for validation to reject.
fn mask(value: &mut String, path: FieldPath, notes: &mut Vec<Note>) {
    if let Ok((network, true)) = net::lenient(value) {
        notes.push((
            path,
            format!(
                "non-standard CIDR value {value:?} has host bits set; it is read as {network} \
                 (write {network} to silence this warning)"
            ),
        ));
        *value = network.to_string();
    }
}

#[cfg(test)]
mod tests {
    use crate::{labels, parse_manifests, Object, NAMESPACE_NAME_LABEL};

    fn namespace_labels(yaml: &str) -> std::collections::BTreeMap<String, String> {
        let objects = parse_manifests(yaml).unwrap();
        assert!(matches!(objects[0], Object::Namespace(_)), "{objects:?}");
        labels(&objects[0])
    }

    #[test]
    fn every_namespace_is_labelled_with_its_name_as_the_api_server_does() {
        let plain = namespace_labels("apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n");
        assert_eq!(
            plain.get(NAMESPACE_NAME_LABEL).map(String::as_str),
            Some("shop")
        );
        // Other labels stay; a wrong value of this one is overwritten, as the API server does.
        let kept = namespace_labels(
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: shop\n  labels: {team: a, kubernetes.io/metadata.name: other}\n",
        );
        assert_eq!(kept.get("team").map(String::as_str), Some("a"));
        assert_eq!(
            kept.get(NAMESPACE_NAME_LABEL).map(String::as_str),
            Some("shop")
        );
        // The label survives the stored form (to_json, from_json) unchanged.
        let object = &parse_manifests("apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n")
            .unwrap()[0];
        let again = Object::from_json(&object.to_json().unwrap()).unwrap();
        assert_eq!(&again, object);
    }
}
