//! Block-style YAML from a JSON value: the manifests a test applies stay readable in its
//! failure messages. Strings are double-quoted (a JSON string is a YAML scalar), so no value
//! needs YAML's quoting rules.

use serde_json::Value;
use std::fmt::Write as _;

/// A JSON value as block-style YAML (strings double-quoted: JSON strings are YAML scalars).
pub fn to_yaml(value: &Value) -> String {
    let mut out = String::new();
    emit(value, 0, &mut out);
    out
}

fn scalar(v: &Value) -> String {
    match v {
        Value::Object(m) if m.is_empty() => "{}".into(),
        Value::Array(a) if a.is_empty() => "[]".into(),
        other => other.to_string(),
    }
}

fn is_block(v: &Value) -> bool {
    matches!(v, Value::Object(m) if !m.is_empty()) || matches!(v, Value::Array(a) if !a.is_empty())
}

fn emit(value: &Value, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    match value {
        Value::Object(m) if !m.is_empty() => {
            for (k, v) in m {
                if is_block(v) {
                    let _ = writeln!(out, "{pad}{k}:");
                    emit(v, indent + 2, out);
                } else {
                    let _ = writeln!(out, "{pad}{k}: {}", scalar(v));
                }
            }
        }
        Value::Array(a) if !a.is_empty() => {
            for v in a {
                if is_block(v) {
                    // "- " then the first line of the nested block on the same line.
                    let mut inner = String::new();
                    emit(v, indent + 2, &mut inner);
                    let _ = write!(out, "{pad}- {}", &inner[indent + 2..]);
                } else {
                    let _ = writeln!(out, "{pad}- {}", scalar(v));
                }
            }
        }
        other => {
            let _ = writeln!(out, "{pad}{}", scalar(other));
        }
    }
}
