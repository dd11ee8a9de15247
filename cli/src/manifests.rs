//! `apply -f` and `delete -f`: the manifests' text, sent whole to podswitch-control.
//!
//! The CLI does not parse the YAML: podswitch-control decodes it as Kubernetes types and
//! accepts all of it or none, naming the object and field that was wrong. Reading it here only
//! catches what needs no Kubernetes knowledge: an unreadable or empty input.

use crate::input;
use anyhow::{bail, Result};
use podswitch_proto::control::ControlRequestBody;
use std::io::Read;
use std::path::Path;

/// What to do with the objects the manifests describe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    /// Create or update them.
    Apply,
    /// Remove them.
    Delete,
}

impl Verb {
    fn name(self) -> &'static str {
        match self {
            Verb::Apply => "apply",
            Verb::Delete => "delete",
        }
    }
}

/// The control request for `verb` with the manifests in `file` (`-`: `stdin`).
pub fn request(verb: Verb, file: &Path, stdin: impl Read) -> Result<ControlRequestBody> {
    let input = input::read(file, "manifest", stdin)?;
    if input.text.trim().is_empty() {
        bail!("{} is empty: nothing to {}", input.source, verb.name());
    }
    let manifests = input.text;
    Ok(match verb {
        Verb::Apply => ControlRequestBody::Apply { manifests },
        Verb::Delete => ControlRequestBody::Delete { manifests },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TWO_PODS: &str = "apiVersion: v1\nkind: Pod\nmetadata: {name: a}\n---\n\
                            apiVersion: v1\nkind: Pod\nmetadata: {name: b}\n";

    /// A file in the temp dir holding `text`, removed when dropped.
    struct TempFile(std::path::PathBuf);

    impl TempFile {
        fn new(test: &str, text: &str) -> Self {
            let path = std::env::temp_dir().join(format!(
                "podswitchctl-manifests-{}-{test}.yaml",
                std::process::id()
            ));
            std::fs::write(&path, text).unwrap();
            Self(path)
        }
    }

    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    #[test]
    fn apply_from_a_file_sends_its_text_unchanged() {
        let file = TempFile::new("apply", TWO_PODS);
        let body = request(Verb::Apply, &file.0, std::io::empty()).unwrap();
        assert!(
            matches!(&body, ControlRequestBody::Apply { manifests } if manifests == TWO_PODS),
            "{body:?}"
        );
    }

    #[test]
    fn delete_from_stdin_sends_its_text_unchanged() {
        let body = request(Verb::Delete, Path::new("-"), TWO_PODS.as_bytes()).unwrap();
        assert!(
            matches!(&body, ControlRequestBody::Delete { manifests } if manifests == TWO_PODS),
            "{body:?}"
        );
    }

    #[test]
    fn wire_form_is_the_control_protocols() {
        let body = request(Verb::Apply, Path::new("-"), &b"kind: Pod\n"[..]).unwrap();
        assert_eq!(
            serde_json::to_value(body).unwrap(),
            serde_json::json!({"request": "apply", "manifests": "kind: Pod\n"})
        );
    }

    #[test]
    fn empty_input_is_refused_before_asking_control() {
        let err = request(Verb::Apply, Path::new("-"), &b" \n\n"[..]).unwrap_err();
        assert_eq!(err.to_string(), "stdin is empty: nothing to apply");
        let file = TempFile::new("empty", "");
        let err = request(Verb::Delete, &file.0, std::io::empty()).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("{} is empty: nothing to delete", file.0.display())
        );
    }

    #[test]
    fn unreadable_file_is_named() {
        let err = request(
            Verb::Apply,
            Path::new("/nonexistent/web.yaml"),
            std::io::empty(),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot read the manifest file /nonexistent/web.yaml: No such file or directory"
        );
    }
}
