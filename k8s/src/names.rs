//! The syntax of Kubernetes names: DNS-1123 labels and subdomains, DNS-1035 labels, qualified
//! names (label and annotation keys), label values and IANA service names (named ports).
//!
//! Each check returns `Err(reason)`: the caller puts the value and what it is in front, so the
//! user reads `"Web" is not a valid DNS-1123 label: ...`. The rules are those of
//! `k8s.io/apimachinery/pkg/util/validation`.

/// At most this many characters in a DNS-1123 or DNS-1035 label, and in the name part of a
/// qualified name or a label value.
const LABEL_MAX: usize = 63;
/// At most this many characters in a DNS-1123 subdomain (and a qualified name's prefix).
const SUBDOMAIN_MAX: usize = 253;
/// At most this many characters in an IANA service name (RFC 6335 section 5.1).
const SERVICE_NAME_MAX: usize = 15;

fn too_long(value: &str, max: usize) -> Option<String> {
    let len = value.chars().count();
    (len > max).then(|| format!("it has {len} characters, at most {max} are allowed"))
}

/// `[a-z0-9]([-a-z0-9]*[a-z0-9])?`, without a length limit.
fn is_label_chars(value: &str) -> bool {
    let bytes = value.as_bytes();
    let alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    match (bytes.first(), bytes.last()) {
        (Some(first), Some(last)) => {
            alnum(first) && alnum(last) && bytes.iter().all(|b| alnum(b) || *b == b'-')
        }
        _ => false,
    }
}

/// RFC 1123 label: namespace names, service port names, container names.
pub(crate) fn dns1123_label(value: &str) -> Result<(), String> {
    if let Some(reason) = too_long(value, LABEL_MAX) {
        return Err(reason);
    }
    if !is_label_chars(value) {
        return Err(
            "use lowercase letters, digits and '-', starting and ending with a letter or digit"
                .into(),
        );
    }
    Ok(())
}

/// RFC 1035 label: like a DNS-1123 label but starting with a letter. Kubernetes requires it
/// for Service names (a Service name becomes a DNS name and an environment variable prefix).
pub(crate) fn dns1035_label(value: &str) -> Result<(), String> {
    if let Some(reason) = too_long(value, LABEL_MAX) {
        return Err(reason);
    }
    let starts_with_letter = value.bytes().next().is_some_and(|b| b.is_ascii_lowercase());
    if !starts_with_letter || !is_label_chars(value) {
        return Err(
            "use lowercase letters, digits and '-', starting with a letter and ending with a letter or digit"
                .into(),
        );
    }
    Ok(())
}

/// RFC 1123 subdomain: most object names, label key prefixes.
pub(crate) fn dns1123_subdomain(value: &str) -> Result<(), String> {
    if let Some(reason) = too_long(value, SUBDOMAIN_MAX) {
        return Err(reason);
    }
    if !value.split('.').all(is_label_chars) {
        return Err("use lowercase letters, digits, '-' and '.', each '.'-separated part starting and ending with a letter or digit".into());
    }
    Ok(())
}

/// `[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?`, without a length limit.
fn is_name_chars(value: &str) -> bool {
    let bytes = value.as_bytes();
    match (bytes.first(), bytes.last()) {
        (Some(first), Some(last)) => {
            first.is_ascii_alphanumeric()
                && last.is_ascii_alphanumeric()
                && bytes
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        }
        _ => false,
    }
}

const NAME_CHARS: &str =
    "letters, digits, '-', '_' and '.', starting and ending with a letter or digit";

/// A qualified name, `[prefix/]name`: label keys, annotation keys, selector keys. The prefix
/// is a DNS-1123 subdomain of at most 253 characters; the name at most 63 characters of
/// [`NAME_CHARS`].
pub(crate) fn qualified_name(value: &str) -> Result<(), String> {
    let (prefix, name) = match value.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, value),
    };
    if let Some(prefix) = prefix {
        if prefix.is_empty() {
            return Err("the prefix before '/' is empty".into());
        }
        if name.contains('/') {
            return Err("it may contain at most one '/'".into());
        }
        if let Err(reason) = dns1123_subdomain(prefix) {
            return Err(format!(
                "the prefix {prefix:?} must be a DNS-1123 subdomain: {reason}"
            ));
        }
    }
    if name.is_empty() {
        return Err("the name part is empty".into());
    }
    if let Some(reason) = too_long(name, LABEL_MAX) {
        return Err(format!("the name part is too long: {reason}"));
    }
    if !is_name_chars(name) {
        return Err(format!("the name part must use {NAME_CHARS}"));
    }
    Ok(())
}

/// A label value: empty, or at most 63 characters of [`NAME_CHARS`].
pub(crate) fn label_value(value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Ok(());
    }
    if let Some(reason) = too_long(value, LABEL_MAX) {
        return Err(reason);
    }
    if !is_name_chars(value) {
        return Err(format!("use {NAME_CHARS} (or leave it empty)"));
    }
    Ok(())
}

/// An IANA service name (RFC 6335 section 5.1): named container ports, and the names a
/// Service's `targetPort` or a NetworkPolicy port refers to.
pub(crate) fn iana_service_name(value: &str) -> Result<(), String> {
    if let Some(reason) = too_long(value, SERVICE_NAME_MAX) {
        return Err(reason);
    }
    let ok = is_label_chars(value)
        && !value.contains("--")
        && value.bytes().any(|b| b.is_ascii_lowercase());
    if !ok {
        return Err("use lowercase letters, digits and '-' with at least one letter, and no '-' at either end or twice in a row".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns1123_label_accepts_kubernetes_examples_and_rejects_the_rest() {
        for ok in ["a", "web", "kube-system", "0a", "a0-b", &"a".repeat(63)] {
            assert_eq!(dns1123_label(ok), Ok(()), "{ok}");
        }
        for bad in ["", "Web", "-a", "a-", "a.b", "a_b", "a b"] {
            assert!(dns1123_label(bad).is_err(), "{bad}");
        }
        assert_eq!(
            dns1123_label(&"a".repeat(64)),
            Err("it has 64 characters, at most 63 are allowed".into())
        );
    }

    #[test]
    fn dns1035_label_must_start_with_a_letter() {
        assert_eq!(dns1035_label("web-1"), Ok(()));
        assert!(dns1035_label("1web").is_err());
        assert!(dns1035_label("web-").is_err());
    }

    #[test]
    fn dns1123_subdomain_checks_every_part() {
        for ok in [
            "a",
            "web.default",
            "node-1.example.com",
            "1.2",
            &"a".repeat(253),
        ] {
            assert_eq!(dns1123_subdomain(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "a..b",
            ".a",
            "a.",
            "A.b",
            "a.-b",
            "a_b",
            &"a".repeat(254),
        ] {
            assert!(dns1123_subdomain(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn qualified_names_take_an_optional_subdomain_prefix() {
        for ok in [
            "app",
            "App_1.x-y",
            "app.kubernetes.io/name",
            "example.com/Tier",
            &format!("{}/{}", "a".repeat(253), "b".repeat(63)),
        ] {
            assert_eq!(qualified_name(ok), Ok(()), "{ok}");
        }
        assert_eq!(
            qualified_name("a b"),
            Err("the name part must use letters, digits, '-', '_' and '.', starting and ending with a letter or digit".into())
        );
        assert_eq!(
            qualified_name("/app"),
            Err("the prefix before '/' is empty".into())
        );
        assert_eq!(
            qualified_name("a/b/c"),
            Err("it may contain at most one '/'".into())
        );
        assert_eq!(
            qualified_name("example.com/"),
            Err("the name part is empty".into())
        );
        assert!(qualified_name("Example.com/app").is_err_and(
            |e| e.starts_with("the prefix \"Example.com\" must be a DNS-1123 subdomain")
        ));
        assert!(qualified_name(&"a".repeat(64)).is_err());
        assert!(qualified_name(&format!("{}/b", "a".repeat(254))).is_err());
        assert!(qualified_name("-app").is_err());
    }

    #[test]
    fn label_values_may_be_empty() {
        for ok in ["", "v1", "1", "a.b_c-d", &"x".repeat(63)] {
            assert_eq!(label_value(ok), Ok(()), "{ok}");
        }
        for bad in ["a b", "-a", "a-", "a/b", &"x".repeat(64)] {
            assert!(label_value(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn iana_service_names_need_a_letter_and_no_double_dash() {
        for ok in ["http", "http-alt", "h2c", "a1"] {
            assert_eq!(iana_service_name(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "80",
            "http--alt",
            "-http",
            "http_alt",
            "HTTP",
            "abcdefghijklmnop",
        ] {
            assert!(iana_service_name(bad).is_err(), "{bad}");
        }
    }
}
