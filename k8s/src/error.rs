//! The one error a manifest can fail with, and the field paths it names.
//!
//! Every error says where (document, object, field) and what: the control process shows it to
//! the user as is, so the message must be enough to fix the manifest.

use std::fmt;

/// What class of problem a [`ManifestError`] reports, for callers that branch on it (the message
/// is for people).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ManifestErrorKind {
    /// Not YAML (or JSON), or not a mapping at the top of a document.
    Syntax,
    /// `apiVersion`/`kind` missing, or a pair podswitch does not take.
    Unsupported,
    /// A value of the wrong type for its field (`port: "80"`, a number as a label value).
    Type,
    /// A field the Kubernetes API does not have (usually a typo).
    UnknownField,
    /// A value of the right type that Kubernetes would reject (names, ports, IPs, CIDRs, ...).
    Invalid,
    /// The same object (kind, namespace, name) twice in one input.
    Duplicate,
}

/// A manifest was rejected. Displays as
/// `document 2 (Pod default/web): spec.ports[0].port: 70000 is out of range 1..=65535`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.render())]
#[non_exhaustive]
pub struct ManifestError {
    /// 1-based position of the YAML document in the input (empty documents count).
    pub document: usize,
    /// The object as `Kind namespace/name` (`Kind name` when cluster-scoped, `Kind` when the
    /// name is missing); `None` when not even the kind is known.
    pub object: Option<String>,
    /// Path of the offending field inside the document (`spec.ports[0].port`,
    /// `metadata.labels["a b"]`, `items[1].metadata.name` inside a `List`); empty when the
    /// error is about the document as a whole.
    pub field: FieldPath,
    /// What was wrong, and where possible what to do instead.
    pub message: String,
    /// The class of problem.
    pub kind: ManifestErrorKind,
}

impl ManifestError {
    pub(crate) fn new(
        document: usize,
        object: Option<String>,
        field: FieldPath,
        kind: ManifestErrorKind,
        message: impl Into<String>,
    ) -> Self {
        Self {
            document,
            object,
            field,
            message: message.into(),
            kind,
        }
    }

    fn render(&self) -> String {
        let mut out = format!("document {}", self.document);
        if let Some(object) = &self.object {
            out.push_str(&format!(" ({object})"));
        }
        out.push_str(": ");
        if !self.field.is_root() {
            out.push_str(&format!("{}: ", self.field));
        }
        out.push_str(&self.message);
        out
    }
}

/// Something an accepted manifest did that Kubernetes accepts but its author should fix, as the
/// API server's warnings. Displays as `Warning: document 1 (NetworkPolicy shop/web):
/// spec.ingress[0].from[0].ipBlock.cidr: non-standard CIDR value ...`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ManifestWarning {
    /// 1-based position of the YAML document in the input.
    pub document: usize,
    /// The object as `Kind namespace/name`.
    pub object: String,
    /// Path of the field inside the document.
    pub field: FieldPath,
    /// What was accepted, and how to write it instead.
    pub message: String,
}

impl fmt::Display for ManifestWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Warning: document {} ({}): {}: {}",
            self.document, self.object, self.field, self.message
        )
    }
}

/// A problem found inside one object, with a path relative to that object; the parser turns it
/// into a [`ManifestError`] by adding the document, the object and the object's place in the
/// document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Invalid {
    pub(crate) kind: ManifestErrorKind,
    pub(crate) path: FieldPath,
    pub(crate) message: String,
}

impl Invalid {
    pub(crate) fn new(
        kind: ManifestErrorKind,
        path: FieldPath,
        message: impl Into<String>,
    ) -> Self {
        Self {
            kind,
            path,
            message: message.into(),
        }
    }
}

/// A path to a field inside a manifest, written as a reader would look it up:
/// `spec.ports[0].port`; map keys that are not plain identifiers are quoted,
/// `metadata.labels["app.kubernetes.io/name"]`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct FieldPath(String);

impl FieldPath {
    /// The document itself.
    pub fn root() -> Self {
        Self::default()
    }

    /// True for the document itself.
    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    /// The path as text (empty for the root).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A struct field (`spec`, `podCIDR`) below this path.
    pub fn field(&self, name: &str) -> Self {
        self.key(name)
    }

    /// A map key below this path: `.key` when it is an identifier, `["key"]` otherwise, so that
    /// label keys with `/`, `.` or spaces stay readable and unambiguous.
    pub fn key(&self, key: &str) -> Self {
        let mut out = self.0.clone();
        if is_identifier(key) {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(key);
        } else {
            out.push_str(&format!("[{key:?}]"));
        }
        Self(out)
    }

    /// A list element below this path.
    pub fn index(&self, index: usize) -> Self {
        Self(format!("{}[{index}]", self.0))
    }

    /// `suffix` (a path relative to an object) appended below this path (the object's place
    /// in the document: root, or `items[3]` in a `List`).
    pub fn join(&self, suffix: &FieldPath) -> Self {
        if self.is_root() {
            return suffix.clone();
        }
        if suffix.is_root() {
            return self.clone();
        }
        if suffix.0.starts_with('[') {
            Self(format!("{}{}", self.0, suffix.0))
        } else {
            Self(format!("{}.{}", self.0, suffix.0))
        }
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn is_identifier(key: &str) -> bool {
    let mut chars = key.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_quote_keys_that_are_not_identifiers() {
        let labels = FieldPath::root().field("metadata").field("labels");
        assert_eq!(labels.key("app").as_str(), "metadata.labels.app");
        assert_eq!(labels.key("a b").as_str(), r#"metadata.labels["a b"]"#);
        assert_eq!(
            labels.key("app.kubernetes.io/name").as_str(),
            r#"metadata.labels["app.kubernetes.io/name"]"#
        );
        assert_eq!(labels.key("").as_str(), r#"metadata.labels[""]"#);
    }

    #[test]
    fn paths_index_and_join() {
        let port = FieldPath::root()
            .field("spec")
            .field("ports")
            .index(0)
            .field("port");
        assert_eq!(port.as_str(), "spec.ports[0].port");
        let item = FieldPath::root().field("items").index(2);
        assert_eq!(item.join(&port).as_str(), "items[2].spec.ports[0].port");
        assert_eq!(FieldPath::root().join(&port), port);
        assert_eq!(item.join(&FieldPath::root()), item);
        assert_eq!(
            item.join(&FieldPath::root().index(1)).as_str(),
            "items[2][1]"
        );
    }

    #[test]
    fn display_names_document_object_and_field() {
        let err = ManifestError::new(
            2,
            Some("Pod default/web".into()),
            FieldPath::root()
                .field("spec")
                .field("ports")
                .index(0)
                .field("port"),
            ManifestErrorKind::Invalid,
            "70000 is out of range 1..=65535",
        );
        assert_eq!(
            err.to_string(),
            "document 2 (Pod default/web): spec.ports[0].port: 70000 is out of range 1..=65535"
        );
        let err = ManifestError::new(1, None, FieldPath::root(), ManifestErrorKind::Syntax, "bad");
        assert_eq!(err.to_string(), "document 1: bad");
    }
}
