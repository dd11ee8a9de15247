//! The JSON fast path (`json_stream.rs`) against the YAML path: the same input as JSON and as
//! YAML gives equal objects, warnings and errors, and JSON the YAML path reads otherwise
//! (duplicate keys, merge keys, floats, comments, empty documents) gets the YAML path's answer.

use super::*;

/// A small app of every kind, with comments and an empty document (`parse.rs`'s tests).
const SHOP: &str = include_str!("../testdata/shop.yaml");

/// Both paths on the same input: the result as the caller sees it, the YAML path's, and
/// whether the JSON path read every document.
fn both_paths(
    input: &str,
) -> (
    Result<Parsed, ManifestError>,
    Result<Parsed, ManifestError>,
    bool,
) {
    let fast = json_stream::documents(input).all(|d| d.is_ok());
    (
        parse_manifests_with_warnings(input),
        parse_yaml(input),
        fast,
    )
}

fn assert_same(input: &str) -> Result<Parsed, ManifestError> {
    let (chosen, yaml, _) = both_paths(input);
    match (&chosen, &yaml) {
        (Ok(a), Ok(b)) => {
            assert_eq!(a.objects, b.objects, "{input}");
            assert_eq!(a.json, b.json, "{input}");
            assert_eq!(a.warnings, b.warnings, "{input}");
        }
        (Err(a), Err(b)) => assert_eq!(a, b, "{input}"),
        _ => panic!("the paths disagree on {input}: {chosen:?} / {yaml:?}"),
    }
    chosen
}

/// Documents as a user writes them, as JSON joined by `---` lines (what the fast path
/// reads) and as YAML.
fn as_json_and_yaml(documents: &[Value]) -> (String, String) {
    // An empty document is an empty text (`null` is no object: the fast path declines it).
    let json: Vec<String> = documents
        .iter()
        .map(|d| {
            if d.is_null() {
                String::new()
            } else {
                d.to_string()
            }
        })
        .collect();
    let yaml: Vec<String> = documents
        .iter()
        .map(|d| serde_yaml::to_string(d).unwrap())
        .collect();
    (json.join("\n---\n"), yaml.join("---\n"))
}

fn shop_documents() -> Vec<Value> {
    serde_yaml::Deserializer::from_str(SHOP)
        .map(|d| document_to_json(d).unwrap())
        .collect()
}

#[test]
fn json_documents_take_the_fast_path_and_give_what_yaml_gives() {
    let documents = shop_documents();
    let (json, yaml) = as_json_and_yaml(&documents);
    let (from_json, json_by_yaml, fast) = both_paths(&json);
    assert!(fast, "{json}");
    let from_json = from_json.unwrap();
    let from_yaml = parse_manifests_with_warnings(&yaml).unwrap();
    assert_eq!(from_json.objects, parse_manifests(SHOP).unwrap());
    assert_eq!(from_json.objects, from_yaml.objects);
    assert_eq!(from_json.objects, json_by_yaml.unwrap().objects);
    // A warning (an ipBlock with host bits) comes the same way.
    let policy = serde_json::json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": "p"},
        "spec": {"podSelector": {}, "ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.1/8"}}]}]}});
    let (json, yaml) = as_json_and_yaml(&[policy]);
    let parsed = assert_same(&json).unwrap();
    assert_eq!(parsed.warnings.len(), 1);
    assert_eq!(
        parsed.warnings,
        parse_manifests_with_warnings(&yaml).unwrap().warnings
    );
}

#[test]
fn json_documents_give_the_errors_yaml_gives() {
    let good = shop_documents();
    let mut cases: Vec<(usize, &str, Value)> = vec![
        (1, "/metadata/name", "Bad_Name".into()),
        (4, "/spec/ports/0/port", 70000.into()),
        (4, "/spec/ports/0/targetport", 8080.into()),
        (2, "/apiVersion", "apps/v1".into()),
        (6, "/kind", "Secret".into()),
        (2, "/spec/nodeName", 7.into()),
        (2, "/metadata/namespace", "Bad!".into()),
        (7, "/metadata/namespace", "shop".into()),
    ];
    for (index, pointer, value) in cases.drain(..) {
        let mut documents = good.clone();
        let (parent, field) = pointer.rsplit_once('/').unwrap();
        let target = documents[index].pointer_mut(parent).unwrap();
        match target {
            Value::Object(map) => {
                map.insert(field.to_string(), value);
            }
            other => panic!("{pointer}: {other}"),
        }
        let (json, yaml) = as_json_and_yaml(&documents);
        let (chosen, _, fast) = both_paths(&json);
        assert!(fast, "{json}");
        let from_json = chosen.unwrap_err();
        let from_yaml = parse_manifests_with_warnings(&yaml).unwrap_err();
        assert_eq!(from_json, from_yaml, "{pointer}");
        assert_same(&json).unwrap_err();
    }
    // The same object twice.
    let mut documents = good.clone();
    documents.push(good[1].clone());
    let (json, yaml) = as_json_and_yaml(&documents);
    let err = assert_same(&json).unwrap_err();
    assert_eq!(err.kind, ManifestErrorKind::Duplicate);
    assert_eq!(err, parse_manifests_with_warnings(&yaml).unwrap_err());
    // A List and an error inside it.
    let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "a"}},
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "a"},
         "spec": {"containers": [{"name": "c", "ports": [{"containerPort": 0}]}]}}]});
    let (json, yaml) = as_json_and_yaml(&[list]);
    assert_eq!(
        assert_same(&json).unwrap_err(),
        parse_manifests_with_warnings(&yaml).unwrap_err()
    );
}

#[test]
fn json_that_yaml_reads_otherwise_gets_the_yaml_paths_answer() {
    let ns = |name: &str| {
        format!(r#"{{"apiVersion": "v1", "kind": "Namespace", "metadata": {{"name": "{name}"}}}}"#)
    };
    for input in [
        // Duplicate keys are rejected, with YAML's message.
        r#"{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "a", "name": "b"}}"#.to_string(),
        format!("{}\n---\n{{\"apiVersion\": \"v1\", \"apiVersion\": \"v1\"}}", ns("a")),
        // A merge key.
        r#"{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "a", "labels": {"<<": {"app": "web"}}}}"#.to_string(),
        // Floats.
        r#"{"apiVersion": "v1", "kind": "Service", "metadata": {"name": "a"}, "spec": {"ports": [{"port": 80.0}]}}"#.to_string(),
        // Not JSON after a JSON document; a comment; a document end marker.
        format!("{}\n---\nkind: [\n", ns("a")),
        format!("{}\n---\n# only a comment\n---\n{}", ns("a"), ns("b")),
        format!("{}\n...\n---\n{}", ns("a"), ns("b")),
        format!("--- {}\n--- {}\n", ns("a"), ns("b")),
        // Empty documents are counted the same (the error is in document 4).
        format!("---\n{}\n---\n\n---\n{}\n---\n{}", ns("a"), ns("b"), ns("Bad")),
        format!("\n\n---\n{}\n---\n---\n{}", ns("a"), ns("a")),
        // Escapes and numbers.
        r#"{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "a", "labels": {"x": "caf\u00e9\/\"\\"}}}"#.to_string(),
        r#"{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "a", "generation": -0}}"#.to_string(),
        r#"{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "a", "generation": 18446744073709551615}}"#.to_string(),
        r#"{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "a", "generation": -9223372036854775808}}"#.to_string(),
        // An empty input, an empty object.
        String::new(),
        "{}".to_string(),
    ] {
        let _ = assert_same(&input);
    }
}

#[test]
fn each_objects_json_is_what_to_json_writes() {
    let with_fraction = "apiVersion: v1\nkind: Pod\nmetadata: {name: a, creationTimestamp: \"2024-01-01T00:00:00.5Z\"}\n";
    // The same as JSON, which the fast path reads straight into the typed object.
    let json_with_fraction = r#"{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "a", "creationTimestamp": "2024-01-01T00:00:00.5Z"}}"#;
    assert!(json_stream::documents(json_with_fraction).all(|d| d.is_ok()));
    for input in [SHOP, with_fraction, json_with_fraction] {
        let parsed = parse_manifests_with_warnings(input).unwrap();
        assert_eq!(parsed.json.len(), parsed.objects.len());
        for (object, json) in parsed.objects.iter().zip(&parsed.json) {
            assert_eq!(&object.to_json().unwrap(), json);
            assert_eq!(&Object::from_json(json).unwrap(), object);
        }
    }
}

/// Random JSON-looking inputs, valid and not (documents of objects with kubernetes-like and
/// random keys, duplicate and `<<` keys, integers, floats, escapes, empty documents, markers
/// with and without content, stray YAML): whatever the fast path makes of them, the answer is
/// the YAML path's.
#[test]
fn random_json_inputs_get_the_yaml_paths_answer() {
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = move |n: u64| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state % n
    };
    const KEYS: [&str; 12] = [
        "apiVersion",
        "kind",
        "metadata",
        "name",
        "namespace",
        "labels",
        "spec",
        "ports",
        "port",
        "x",
        "<<",
        "clusterIP",
    ];
    const STRINGS: [&str; 10] = [
        "\"v1\"",
        "\"Namespace\"",
        "\"Service\"",
        "\"a\"",
        "\"b-1\"",
        "\"caf\\u00e9\"",
        "\"\\ud83d\\ude00\"",
        "\"10.96.0.1\"",
        "\"\\/x\\\"\"",
        "\"\"",
    ];
    const NUMBERS: [&str; 9] = [
        "0",
        "-0",
        "80",
        "-1",
        "1.5",
        "1e3",
        "65536",
        "18446744073709551616",
        "-9223372036854775809",
    ];
    fn value(next: &mut dyn FnMut(u64) -> u64, depth: u32, out: &mut String) {
        match next(if depth > 2 { 4 } else { 6 }) {
            0 => out.push_str(STRINGS[next(STRINGS.len() as u64) as usize]),
            1 => out.push_str(NUMBERS[next(NUMBERS.len() as u64) as usize]),
            2 => out.push_str(["true", "false", "null"][next(3) as usize]),
            3 => out.push_str(STRINGS[next(3) as usize]),
            4 => {
                out.push('[');
                for i in 0..next(3) {
                    if i > 0 {
                        out.push(',');
                    }
                    value(next, depth + 1, out);
                }
                out.push(']');
            }
            _ => object(next, depth + 1, out),
        }
    }
    fn object(next: &mut dyn FnMut(u64) -> u64, depth: u32, out: &mut String) {
        out.push('{');
        for i in 0..next(4) {
            if i > 0 {
                out.push_str(if next(4) == 0 { ",\n" } else { ", " });
            }
            out.push_str(&format!("\"{}\": ", KEYS[next(KEYS.len() as u64) as usize]));
            value(next, depth, out);
        }
        out.push('}');
    }
    let ns = |name: &str| {
        format!(r#"{{"apiVersion": "v1", "kind": "Namespace", "metadata": {{"name": "{name}"}}}}"#)
    };
    let mut fast = 0;
    for _ in 0..3000 {
        let mut input = String::new();
        for d in 0..=next(4) {
            if d > 0 || next(3) == 0 {
                input.push_str(
                    ["\n---\n", "---\n", "\n--- ", "\n---x\n", "\n...\n---\n"][next(5) as usize],
                );
            }
            match next(6) {
                0 => {}
                1 => input.push_str(&ns(["a", "b", "Bad"][next(3) as usize])),
                2 => input.push_str("kind: Namespace\n"),
                _ => object(&mut next, 0, &mut input),
            }
            if next(5) == 0 {
                input.push_str([" ", "\t", "\r\n", " # c", "\n\n"][next(5) as usize]);
            }
        }
        if json_stream::documents(&input).all(|d| d.is_ok()) {
            fast += 1;
        }
        let _ = assert_same(&input);
    }
    // Enough of the inputs take the fast path for the comparison to mean something.
    assert!(fast > 300, "{fast} of 3000 inputs read as JSON");
}

/// An input large enough to be read on several threads (`read_in_parallel`) gives what the
/// YAML path gives, read in order: the objects in input order, and the first failing
/// document's error even when a later share fails too or would make the input YAML.
#[test]
fn a_large_input_read_in_parallel_is_read_in_order() {
    let service = |i: usize| {
        format!(
            r#"{{"apiVersion": "v1", "kind": "Service", "metadata": {{"name": "s{i}", "namespace": "ns{}"}}, "spec": {{"ports": [{{"port": 80}}]}}}}"#,
            i % 7
        )
    };
    let count = 3 * super::PARALLEL_FROM;
    let mut documents: Vec<String> = (0..count).map(service).collect();
    // A warning in a later share names its own document.
    let warned = count - 100;
    documents[warned] = format!(
        r#"{{"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {{"name": "s{warned}"}}, "spec": {{"podSelector": {{}}, "ingress": [{{"from": [{{"ipBlock": {{"cidr": "10.0.0.1/8"}}}}]}}]}}}}"#
    );
    let parsed = assert_same(&documents.join("\n---\n")).unwrap();
    let names: Vec<&str> = parsed.objects.iter().map(Object::name).collect();
    let expected: Vec<String> = (0..count).map(|i| format!("s{i}")).collect();
    assert_eq!(names, expected);
    assert_eq!(parsed.warnings.len(), 1);
    assert_eq!(parsed.warnings[0].document, warned + 1);

    let with = |changes: &[(usize, &str)]| {
        let mut documents = documents.clone();
        for (at, text) in changes {
            documents[*at] = text.to_string();
        }
        documents.join("\n---\n")
    };
    let unknown =
        r#"{"apiVersion": "v1", "kind": "Service", "metadata": {"name": "x"}, "spek": {}}"#;
    let yaml_only = "# a comment\n{\"apiVersion\": \"v1\", \"kind\": \"Namespace\", \"metadata\": {\"name\": \"y\"}}";
    let late = count - 10;
    let early = count / 2 + 3;
    for changes in [
        vec![(late, unknown)],
        vec![(early, unknown), (late, unknown)],
        vec![(early, unknown), (late, yaml_only)],
        vec![(late, yaml_only)],
        vec![(1, &service(late) as &str)],
    ] {
        let input = with(&changes);
        let first = changes.iter().map(|c| c.0).min().unwrap_or(0);
        match assert_same(&input) {
            Err(e) => assert!(
                e.document == first + 1 || changes.len() == 1 && e.document == late + 1,
                "{e}"
            ),
            Ok(parsed) => assert_eq!(parsed.objects.len(), count, "{changes:?}"),
        }
    }
}
