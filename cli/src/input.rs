//! `FILE|-` arguments: the text of the named file, or of stdin when the name is `-`.
//!
//! Shared by `dp apply` (a JSON transaction) and `apply`/`delete` (YAML manifests), so both
//! name an unreadable input the same way.

use crate::client::os_error_text;
use anyhow::{anyhow, Context, Result};
use std::io::Read;
use std::path::Path;

/// Text read from a `FILE|-` argument.
#[derive(Debug)]
pub struct Input {
    /// Where it came from, for messages: the path, or `stdin`.
    pub source: String,
    /// The whole text.
    pub text: String,
}

/// Reads `file`, or `stdin` when `file` is `-`; `what` names the contents in errors
/// ("cannot read the manifest file ...").
pub fn read(file: &Path, what: &str, mut stdin: impl Read) -> Result<Input> {
    if file == Path::new("-") {
        let mut text = String::new();
        stdin
            .read_to_string(&mut text)
            .with_context(|| format!("cannot read the {what} from stdin"))?;
        return Ok(Input {
            source: "stdin".to_string(),
            text,
        });
    }
    let text = std::fs::read_to_string(file).map_err(|e| {
        anyhow!(
            "cannot read the {what} file {}: {}",
            file.display(),
            os_error_text(&e)
        )
    })?;
    Ok(Input {
        source: file.display().to_string(),
        text,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dash_reads_stdin_and_says_so() {
        let input = read(Path::new("-"), "manifest", &b"kind: Pod\n"[..]).unwrap();
        assert_eq!(input.source, "stdin");
        assert_eq!(input.text, "kind: Pod\n");
    }

    #[test]
    fn unreadable_stdin_is_named() {
        let err = read(Path::new("-"), "manifest", &b"\xff\xfe"[..]).unwrap_err();
        assert_eq!(
            format!("{err:#}"),
            "cannot read the manifest from stdin: stream did not contain valid UTF-8"
        );
    }
}
