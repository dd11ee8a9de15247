//! Label selectors (`metav1.LabelSelector`) as NetworkPolicy reads them: `matchLabels` and
//! `matchExpressions` (In, NotIn, Exists, DoesNotExist), all of which must hold; the empty
//! selector matches everything. A [`Selector`] is normalised (requirements sorted, values
//! sorted and deduplicated), so two selectors that say the same compare equal and hash alike:
//! the compiler evaluates each distinct one once.

use podswitch_k8s::k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use std::collections::BTreeMap;

/// One requirement on a label key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Requirement {
    /// The key is present with one of the values (`matchLabels` is `In` with one value).
    In(String, Vec<String>),
    /// The key is absent, or present with none of the values.
    NotIn(String, Vec<String>),
    /// The key is present.
    Exists(String),
    /// The key is absent.
    DoesNotExist(String),
    /// An operator this version does not know: matches nothing (validation refuses it, so
    /// only a hand-edited store can hold one).
    Never,
}

impl Requirement {
    fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        match self {
            Requirement::In(key, values) => labels
                .get(key)
                .is_some_and(|v| values.binary_search(v).is_ok()),
            Requirement::NotIn(key, values) => labels
                .get(key)
                .is_none_or(|v| values.binary_search(v).is_err()),
            Requirement::Exists(key) => labels.contains_key(key),
            Requirement::DoesNotExist(key) => !labels.contains_key(key),
            Requirement::Never => false,
        }
    }
}

/// A normalised label selector: the conjunction of its requirements.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Selector {
    requirements: Vec<Requirement>,
}

impl Selector {
    /// The selector that matches everything (`{}`, or an absent `podSelector`).
    pub fn everything() -> Selector {
        Selector::default()
    }

    /// Normalises a Kubernetes selector.
    pub fn new(selector: &LabelSelector) -> Selector {
        let mut requirements: Vec<Requirement> = selector
            .match_labels
            .iter()
            .flatten()
            .map(|(k, v)| Requirement::In(k.clone(), vec![v.clone()]))
            .collect();
        for expr in selector.match_expressions.iter().flatten() {
            let mut values = expr.values.clone().unwrap_or_default();
            values.sort_unstable();
            values.dedup();
            let key = expr.key.clone();
            requirements.push(match expr.operator.as_str() {
                "In" => Requirement::In(key, values),
                "NotIn" => Requirement::NotIn(key, values),
                "Exists" => Requirement::Exists(key),
                "DoesNotExist" => Requirement::DoesNotExist(key),
                _ => Requirement::Never,
            });
        }
        requirements.sort_unstable();
        requirements.dedup();
        Selector { requirements }
    }

    /// Whether every requirement holds for `labels`.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.requirements.iter().all(|r| r.matches(labels))
    }

    /// Whether this selector matches every label set.
    pub fn is_everything(&self) -> bool {
        self.requirements.is_empty()
    }

    /// The `In` requirement with the fewest values, if any: only objects carrying one of
    /// those `key=value` labels can match, so an index on labels narrows the candidates.
    pub fn narrowest_in(&self) -> Option<(&str, &[String])> {
        self.requirements
            .iter()
            .filter_map(|r| match r {
                Requirement::In(k, v) => Some((k.as_str(), v.as_slice())),
                _ => None,
            })
            .min_by_key(|(_, v)| v.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use podswitch_k8s::k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn expr(key: &str, operator: &str, values: &[&str]) -> LabelSelectorRequirement {
        LabelSelectorRequirement {
            key: key.into(),
            operator: operator.into(),
            values: (!values.is_empty()).then(|| values.iter().map(|v| v.to_string()).collect()),
        }
    }

    fn selector(match_labels: &[(&str, &str)], exprs: Vec<LabelSelectorRequirement>) -> Selector {
        Selector::new(&LabelSelector {
            match_labels: (!match_labels.is_empty()).then(|| labels(match_labels)),
            match_expressions: (!exprs.is_empty()).then_some(exprs),
        })
    }

    #[test]
    fn every_operator_matches_as_kubernetes_defines_it() {
        let web = labels(&[("app", "web"), ("tier", "front")]);
        let db = labels(&[("app", "db")]);
        let none = labels(&[]);
        // (selector, matches web, matches db, matches a pod without labels)
        let cases = [
            (selector(&[], vec![]), true, true, true),
            (selector(&[("app", "web")], vec![]), true, false, false),
            (
                selector(&[("app", "web"), ("tier", "front")], vec![]),
                true,
                false,
                false,
            ),
            (
                selector(&[("app", "web"), ("tier", "back")], vec![]),
                false,
                false,
                false,
            ),
            (
                selector(&[], vec![expr("app", "In", &["web", "db"])]),
                true,
                true,
                false,
            ),
            (
                selector(&[], vec![expr("app", "In", &["cache"])]),
                false,
                false,
                false,
            ),
            // NotIn and DoesNotExist match objects without the key.
            (
                selector(&[], vec![expr("app", "NotIn", &["web"])]),
                false,
                true,
                true,
            ),
            (
                selector(&[], vec![expr("tier", "Exists", &[])]),
                true,
                false,
                false,
            ),
            (
                selector(&[], vec![expr("tier", "DoesNotExist", &[])]),
                false,
                true,
                true,
            ),
            // matchLabels AND matchExpressions.
            (
                selector(&[("app", "web")], vec![expr("tier", "DoesNotExist", &[])]),
                false,
                false,
                false,
            ),
            (
                selector(
                    &[("app", "db")],
                    vec![
                        expr("tier", "NotIn", &["front"]),
                        expr("app", "Exists", &[]),
                    ],
                ),
                false,
                true,
                false,
            ),
            (
                selector(&[], vec![expr("app", "Sometimes", &[])]),
                false,
                false,
                false,
            ),
        ];
        for (i, (s, w, d, n)) in cases.iter().enumerate() {
            assert_eq!(
                (s.matches(&web), s.matches(&db), s.matches(&none)),
                (*w, *d, *n),
                "case {i}: {s:?}"
            );
        }
    }

    #[test]
    fn equal_selectors_normalise_to_one_key() {
        let a = selector(
            &[("app", "web")],
            vec![
                expr("tier", "In", &["b", "a", "a"]),
                expr("x", "Exists", &[]),
            ],
        );
        let b = selector(
            &[],
            vec![
                expr("x", "Exists", &[]),
                expr("tier", "In", &["a", "b"]),
                expr("app", "In", &["web"]),
            ],
        );
        assert_eq!(a, b);
        assert!(Selector::new(&LabelSelector::default()).is_everything());
        assert_eq!(a.narrowest_in(), Some(("app", &["web".to_string()][..])));
    }
}
