//! Arbitrary bytes as a user's manifests, through `podswitch_k8s::parse_manifests`.
//!
//! The bytes are read as UTF-8, invalid sequences replaced (valid UTF-8 is passed unchanged),
//! since `apply` hands the crate a `&str`. Nothing may panic, and:
//! - on `Ok`, every object has a name, its `key()` is unique in the result, it has a
//!   (non-empty) namespace exactly when its kind is namespaced, and `to_json` then `from_json`
//!   gives back an equal object (what control stores is what it reads after a restart), and
//!   `to_json` is the JSON the parse returned for it (what control stores);
//! - on `Err`, the message starts with `document N`, N ≥ 1 being the error's `document`, so the
//!   user is always told where to look.

#![no_main]

use libfuzzer_sys::fuzz_target;
use podswitch_k8s::{parse_manifests_with_warnings, Object};
use std::collections::HashSet;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    match parse_manifests_with_warnings(&text) {
        Ok(parsed) => check_objects(&parsed.objects, &parsed.json),
        Err(err) => {
            let shown = err.to_string();
            assert!(err.document >= 1, "document {} in {shown:?}", err.document);
            let number = shown
                .strip_prefix("document ")
                .map(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
                .and_then(|digits| digits?.parse::<usize>().ok());
            assert_eq!(
                number,
                Some(err.document),
                "the message does not start with `document {}`: {shown:?}",
                err.document
            );
        }
    }
});

fn check_objects(objects: &[Object], written: &[String]) {
    assert_eq!(objects.len(), written.len(), "one JSON per object");
    let mut keys = HashSet::new();
    for (object, written) in objects.iter().zip(written) {
        let key = object.key();
        assert!(!object.name().is_empty(), "{key} has no name");
        assert_eq!(
            object.namespace().is_some(),
            object.is_namespaced(),
            "{key}: namespace {:?} for a kind that is {}namespaced",
            object.namespace(),
            if object.is_namespaced() { "" } else { "not " }
        );
        assert_ne!(object.namespace(), Some(""), "{key}: empty namespace");
        assert!(keys.insert(key.clone()), "{key} twice in the result");

        let json = object
            .to_json()
            .unwrap_or_else(|e| panic!("{key} does not serialize: {e}"));
        let back = Object::from_json(&json)
            .unwrap_or_else(|e| panic!("{key} does not read back: {e}\n{json}"));
        assert_eq!(&back, object, "{key} changed in a JSON round trip\n{json}");
        assert_eq!(
            &json, written,
            "{key}: to_json is not the JSON the parse wrote"
        );
    }
}
