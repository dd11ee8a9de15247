//! The fast path of [`crate::parse_manifests`]: an input whose every document is a JSON object
//! (what `kubectl get -o json` writes, and what programs generate) is read with `serde_json`
//! directly, without building a `serde_yaml::Value` per document and converting it. A clean
//! document is not even built as a `serde_json::Value`: [`Checked`] is what one pass over its
//! text finds, and the typed object is read from the text.
//!
//! It gives the same JSON values as the YAML path (a JSON text is a YAML 1.2 document with the
//! same meaning) or declines, and the caller then reads the whole input as YAML, so that every
//! error message is the YAML path's own. It declines on anything where the two could differ:
//! - a document that is not one JSON object (a YAML document, a comment, a directive, `...`,
//!   trailing text, invalid JSON);
//! - a duplicate key (YAML rejects it; `serde_json::Value` would keep the last);
//! - a `<<` key (the YAML path applies it as a merge key, even quoted);
//! - a `\uD800`–`\uDFFF` escape (JSON's surrogate pairs, which YAML rejects);
//! - a tab, or a carriage return not before a line feed (YAML does not take them as spaces
//!   everywhere JSON does);
//! - a floating-point number (serde_json's float parsing is not always correctly rounded, and
//!   none of the kinds podswitch accepts has a float field: such a number is an error either
//!   way, and the YAML path's message is the one shown).
//!
//! Documents: a JSON text has no line starting with `---` (a string cannot span lines, and no
//! token starts with `--`), so the documents are split on lines that are `---`, alone or
//! followed by a space and the start of the next document, as YAML's document markers split
//! them. What comes before the first marker is a document only if it is not blank (YAML 1.2,
//! 9.2); every other blank document is an empty one, counted and skipped, so `document N`
//! means the same in both paths.

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use crate::decode::holds_clock_time;

/// The input is not (all) JSON documents: read it as YAML.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NotJson;

/// One document this path reads: checked against the module doc's rules in one pass over its
/// text that builds nothing but what the decoder needs first, so that the typed object can
/// be read straight from the text (`crate::decode::decode_text`) with no JSON value between.
#[derive(Debug)]
pub(crate) struct Checked<'a> {
    /// The document's text: one JSON object.
    pub(crate) text: &'a str,
    /// The top-level `apiVersion` and `kind`, where they are strings.
    pub(crate) api_version: Option<Cow<'a, str>>,
    pub(crate) kind: Option<Cow<'a, str>>,
    /// Whether a string (key or value) holds a clock time (`crate::decode::has_clock_time`
    /// of its value).
    pub(crate) clock_time: bool,
}

impl Checked<'_> {
    /// The document as a JSON value (what the fast decoder declined is decoded from it).
    pub(crate) fn value(&self) -> Result<Value, NotJson> {
        let mut deserializer = serde_json::Deserializer::from_str(self.text);
        let value = Strict.deserialize(&mut deserializer).map_err(|_| NotJson)?;
        deserializer.end().map_err(|_| NotJson)?;
        Ok(value)
    }
}

/// Each document of `input`, checked (`None` for an empty one), in order: [`check`] of each
/// of [`split`]'s texts.
#[cfg(test)]
pub(crate) fn documents(input: &str) -> impl Iterator<Item = Result<Option<Checked<'_>>, NotJson>> {
    split(input).map(check)
}

/// One document's text, checked (`None` for an empty one); `Err(NotJson)` where it is not a
/// JSON object this path can read (see the module doc), and the caller then reads the whole
/// input as YAML.
pub(crate) fn check(text: &str) -> Result<Option<Checked<'_>>, NotJson> {
    if has_tab_or_lone_cr(text) {
        return Err(NotJson);
    }
    let text = text.trim_matches(is_json_space);
    if text.is_empty() {
        return Ok(None);
    }
    if !text.starts_with('{') || has_surrogate_escape(text) {
        return Err(NotJson);
    }
    let mut checked = Checked {
        text,
        api_version: None,
        kind: None,
        clock_time: false,
    };
    let mut deserializer = serde_json::Deserializer::from_str(text);
    Check {
        top: true,
        found: &mut checked,
    }
    .deserialize(&mut deserializer)
    .map_err(|_| NotJson)?;
    deserializer.end().map_err(|_| NotJson)?;
    Ok(Some(checked))
}

/// The documents' texts, in order, each for [`check`]: split on marker lines (`---`, or
/// `--- ` and the document's first line); the text before the first marker only if it is not
/// blank. A line starting with `---` otherwise (`---x`, `---\t`) is left in its document, which then is no JSON.
pub(crate) fn split(input: &str) -> impl Iterator<Item = &str> + '_ {
    let mut rest = Some(input);
    let mut first = true;
    // Whether `rest` starts after `--- ` on a marker line (not at a line start).
    let mut mid_line = false;
    std::iter::from_fn(move || loop {
        let text = rest?;
        let (document, next) = match find_marker(text, mid_line) {
            Some((end, start)) => {
                mid_line = start > 0 && text.as_bytes()[start - 1] != b'\n';
                (&text[..end], Some(&text[start..]))
            }
            None => (text, None),
        };
        rest = next;
        let leading = std::mem::replace(&mut first, false);
        if leading
            && document.trim_matches(is_json_space).is_empty()
            && !has_tab_or_lone_cr(document)
        {
            continue;
        }
        return Some(document);
    })
}

/// Whether `text` may hold a `\uD800`–`\uDFFF` escape: JSON writes a character beyond the
/// BMP as such a pair, which YAML's double-quoted scalars reject (found by the random inputs
/// of `parse_json_tests.rs`). An escaped backslash followed by `ud8..` is declined too: the YAML path reads it.
fn has_surrogate_escape(text: &str) -> bool {
    text.match_indices("\\u").any(|(at, _)| {
        let digits = &text.as_bytes()[at + 2..];
        matches!(digits.first(), Some(b'd' | b'D'))
            && matches!(digits.get(1), Some(b'8'..=b'9' | b'a'..=b'f' | b'A'..=b'F'))
    })
}

/// Whether `text` has a tab or a carriage return not ending a line: whitespace to JSON (a
/// JSON string holds neither raw), but not everywhere to YAML (a tab cannot indent or start a
/// token; found by the random inputs of `parse_json_tests.rs`).
fn has_tab_or_lone_cr(text: &str) -> bool {
    text.contains('\t')
        || text
            .split('\r')
            .skip(1)
            .any(|after| !after.starts_with('\n'))
}

fn is_json_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r')
}

/// The first marker line of `text` (whose first line is no line of its own when `mid_line`):
/// where the document before it ends and where the next one's text starts (after `---` and
/// its one space, or after the line).
fn find_marker(text: &str, mid_line: bool) -> Option<(usize, usize)> {
    let mut line_start = if mid_line { text.find('\n')? + 1 } else { 0 };
    loop {
        let line_end = text[line_start..]
            .find('\n')
            .map_or(text.len(), |i| line_start + i);
        let line = text[line_start..line_end].trim_end_matches('\r');
        if let Some(after) = line.strip_prefix("---") {
            if after.is_empty() {
                return Some((line_start, (line_end + 1).min(text.len())));
            }
            if after.starts_with(' ') {
                return Some((line_start, line_start + 4));
            }
        }
        if line_end == text.len() {
            return None;
        }
        line_start = line_end + 1;
    }
}

/// A `serde_json::Value` that rejects what the YAML path would read otherwise (module doc).
struct Strict;

impl<'de> DeserializeSeed<'de> for Strict {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Strict {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value without duplicate keys, merge keys or floats")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Value, E> {
        Err(E::custom("a float: read as YAML"))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(item) = seq.next_element_seed(Strict)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if key == "<<" {
                return Err(de::Error::custom("a merge key: read as YAML"));
            }
            let value = map.next_value_seed(Strict)?;
            if out.insert(key, value).is_some() {
                return Err(de::Error::custom("a duplicate key: read as YAML"));
            }
        }
        Ok(Value::Object(out))
    }
}

/// [`Strict`]'s rules without building the value: what it keeps is the top-level
/// `apiVersion` and `kind`, and whether any string holds a clock time. A string value is
/// returned (borrowed from the text where it has no escape) for the map above to keep.
struct Check<'c, 'a> {
    /// Whether this is the document's top-level value.
    top: bool,
    found: &'c mut Checked<'a>,
}

impl<'de, 'c> DeserializeSeed<'de> for Check<'c, 'de> {
    type Value = Option<Cow<'de, str>>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de, 'c> Visitor<'de> for Check<'c, 'de> {
    type Value = Option<Cow<'de, str>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        Strict.expecting(f)
    }

    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Strict.visit_f64(v).map(|_| None)
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        self.found.clock_time |= holds_clock_time(v);
        Ok(Some(Cow::Borrowed(v)))
    }

    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        self.found.clock_time |= holds_clock_time(v);
        Ok(Some(Cow::Owned(v.to_owned())))
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq
            .next_element_seed(Check {
                top: false,
                found: &mut *self.found,
            })?
            .is_some()
        {}
        Ok(None)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        // Keys seen, for duplicates: a scan while the map is small, a set past that.
        let mut keys: Vec<Cow<'de, str>> = Vec::new();
        let mut many: Option<HashSet<Cow<'de, str>>> = None;
        while let Some(key) = map.next_key_seed(Key)? {
            if key == "<<" {
                return Err(de::Error::custom("a merge key: read as YAML"));
            }
            self.found.clock_time |= holds_clock_time(&key);
            let value = map.next_value_seed(Check {
                top: false,
                found: &mut *self.found,
            })?;
            if self.top && (key == "apiVersion" || key == "kind") {
                let slot = if key == "kind" {
                    &mut self.found.kind
                } else {
                    &mut self.found.api_version
                };
                *slot = value;
            }
            let fresh = match &mut many {
                Some(set) => set.insert(key),
                None if keys.len() < 16 => {
                    let fresh = !keys.contains(&key);
                    keys.push(key);
                    fresh
                }
                None => {
                    let mut set: HashSet<Cow<'de, str>> = keys.drain(..).collect();
                    let fresh = set.insert(key);
                    many = Some(set);
                    fresh
                }
            };
            if !fresh {
                return Err(de::Error::custom("a duplicate key: read as YAML"));
            }
        }
        Ok(None)
    }
}

/// A map key, borrowed from the text where it has no escape.
struct Key;

impl<'de> DeserializeSeed<'de> for Key {
    type Value = Cow<'de, str>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string key")
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(input: &str) -> Vec<&str> {
        split(input).collect()
    }

    #[test]
    fn documents_split_on_marker_lines_like_yaml() {
        assert_eq!(texts("{}\n---\n{}"), ["{}\n", "{}"]);
        assert_eq!(texts("---\n{}\n---\n{}\n"), ["{}\n", "{}\n"]);
        // A blank text before the first marker is no document; later blank ones are.
        assert_eq!(texts("\n---\n---\n{}"), ["", "{}"]);
        assert_eq!(texts("--- {}\n--- {}"), ["{}\n", "{}"]);
        // What follows `--- ` is the document's first line, never a marker of its own.
        assert_eq!(texts("--- ---\n{}"), ["---\n{}"]);
        assert_eq!(texts("{}\r\n---\r\n{}"), ["{}\r\n", "{}"]);
        // Not markers: they stay in the document, which then is no JSON.
        assert_eq!(texts("{}\n---x\n{}"), ["{}\n---x\n{}"]);
        assert_eq!(texts("{}\n----\n"), ["{}\n----\n"]);
        assert_eq!(texts(""), Vec::<&str>::new());
        assert_eq!(texts("{}"), ["{}"]);
    }

    #[test]
    fn the_check_keeps_the_header_and_sees_clock_times() {
        let input = r#"{"kind": "Service", "metadata": {"kind": "x", "annotations": {"at": "12:00:00"}}, "apiVersion": "v\u0031"}"#;
        let checked = documents(input).next().unwrap().unwrap().unwrap();
        assert_eq!(checked.kind.as_deref(), Some("Service"));
        assert_eq!(checked.api_version.as_deref(), Some("v1"));
        assert!(checked.clock_time);
        let checked = documents(r#"{"kind": 1, "spec": {"a": ["12:00"]}}"#)
            .next()
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(
            (checked.kind, checked.api_version, checked.clock_time),
            (None, None, false)
        );
    }

    #[test]
    fn duplicate_keys_are_found_in_large_maps_and_behind_escapes() {
        let keys: Vec<String> = (0..40).map(|i| format!("\"k{i}\": {i}")).collect();
        let unique = format!("{{{}}}", keys.join(", "));
        assert!(documents(&unique).all(|d| d.is_ok()), "{unique}");
        for duplicate in ["k0", "k17", "k39"] {
            let input = format!("{{{}, \"{duplicate}\": 1}}", keys.join(", "));
            assert!(documents(&input).any(|d| d.is_err()), "{input}");
        }
        assert!(documents(r#"{"a": 1, "\u0061": 2}"#).any(|d| d.is_err()));
    }

    #[test]
    fn declines_what_yaml_reads_otherwise() {
        for input in [
            "apiVersion: v1\n",
            "# comment\n{}",
            "{} # comment",
            r#"{"a": 1, "a": 2}"#,
            r#"{"a": {"<<": {"b": 1}}}"#,
            r#"{"a": 1.5}"#,
            r#"{"a": 1e3}"#,
            r#"{"a": 18446744073709551616}"#,
            "{a: 1}",
            "{}\n{}",
            "{}\n...\n",
            "[1]",
            "%YAML 1.2\n---\n{}",
            "\u{feff}{}",
            r#"{"a": "\ud83d\ude00"}"#,
            r#"{"a": "\uDFFF"}"#,
            "{\t}",
            "\t",
            "{}\r{}",
        ] {
            assert!(
                documents(input).any(|d| d.is_err()),
                "{input:?} read as JSON"
            );
        }
    }

    /// The parse step of the 10k-Service apply (`tests/it/control_publish.rs`'s documents:
    /// 10k Services and 10k EndpointSlices of 10 endpoints, JSON joined by `---` lines), both
    /// paths, timed. Release only:
    /// `cargo test --release -p podswitch-k8s -- --ignored parse_timing --nocapture`
    #[test]
    #[ignore = "a timing: run in release"]
    fn parse_timing_ten_thousand_services() {
        use serde_json::json;
        let mut documents = Vec::new();
        for i in 0..10_000u32 {
            let ns = format!("ns{}", i % 100);
            let [_, _, a, b] = (10 + i).to_be_bytes();
            documents.push(json!({"apiVersion": "v1", "kind": "Service",
                "metadata": {"name": format!("svc{i}"), "namespace": ns},
                "spec": {"clusterIP": format!("10.96.{a}.{b}"),
                         "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}]}}));
        }
        for i in 0..10_000u32 {
            let ns = format!("ns{}", i % 100);
            let endpoints: Vec<Value> = (0..10)
                .map(|k| {
                    let [_, a, b, c] = (i * 10 + k).to_be_bytes();
                    json!({"addresses": [format!("10.{}.{b}.{c}", 128 + a)],
                           "conditions": {"ready": true}, "nodeName": "elsewhere",
                           "targetRef": {"kind": "Pod", "name": format!("backend{}", i * 10 + k),
                                         "namespace": ns}})
                })
                .collect();
            documents.push(
                json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                "metadata": {"name": format!("svc{i}-abcde"), "namespace": ns,
                             "labels": {"kubernetes.io/service-name": format!("svc{i}")}},
                "addressType": "IPv4",
                "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
                "endpoints": endpoints}),
            );
        }
        let input: Vec<String> = documents.iter().map(Value::to_string).collect();
        let input = input.join("\n---\n");
        for round in 0..3 {
            let started = std::time::Instant::now();
            let fast = crate::parse_manifests(&input).unwrap();
            let fast_ms = started.elapsed().as_secs_f64() * 1e3;
            let started = std::time::Instant::now();
            let values = documents_values(&input);
            let split_ms = started.elapsed().as_secs_f64() * 1e3;
            println!(
                "parse_timing #{round}: {} objects, {} MB: parse_manifests {fast_ms:.0} ms (of which JSON values {split_ms:.0} ms)",
                fast.len(),
                input.len() >> 20,
            );
            assert_eq!(values, 20_000);
        }
        let started = std::time::Instant::now();
        let yaml = crate::parse::parse_yaml_for_timing(&input);
        println!(
            "parse_timing: the YAML path alone {:.0} ms",
            started.elapsed().as_secs_f64() * 1e3
        );
        assert_eq!(yaml.len(), 20_000);
    }

    fn documents_values(input: &str) -> usize {
        documents(input).filter(|d| d.is_ok()).count()
    }
}
