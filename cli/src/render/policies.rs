//! `policies` for people: one row per allow rule of each isolated direction of each pod, with
//! the policy and rule it comes from, its peers and ports, and the packets the direction denied.

use super::{Align::Left, Align::Right, Table};
use podswitch_proto::{DirectionSpec, PeerBlock, PolicyStatus, PortRange};

fn peers(p: &Option<Vec<PeerBlock>>) -> String {
    match p {
        None => "any".into(),
        Some(v) if v.is_empty() => "none".into(),
        Some(v) => v
            .iter()
            .map(|b| {
                let cidr = if b.cidr.len == 32 {
                    b.cidr.addr.to_string()
                } else {
                    b.cidr.to_string()
                };
                if b.except.is_empty() {
                    cidr
                } else {
                    let except: Vec<String> = b.except.iter().map(ToString::to_string).collect();
                    format!("{cidr} except {}", except.join(" "))
                }
            })
            .collect::<Vec<_>>()
            .join(","),
    }
}

fn ports(p: &Option<Vec<PortRange>>) -> String {
    match p {
        None => "any".into(),
        Some(v) if v.is_empty() => "none".into(),
        Some(v) => v
            .iter()
            .map(|r| match (r.first, r.last) {
                (0, 65535) => format!("{}", r.protocol),
                (a, b) if a == b => format!("{}/{a}", r.protocol),
                (a, b) => format!("{}/{a}-{b}", r.protocol),
            })
            .collect::<Vec<_>>()
            .join(","),
    }
}

/// `policies`: POD IP DIRECTION POLICY RULE PEERS PORTS DENIED, one row per rule (a direction
/// with no rule shows one `deny all` row naming its policies); then, per NetworkPolicy, the
/// pods it isolates and the packets denied at them (a pod isolated by two policies counts for
/// both: each one's isolation denied them).
pub fn policies(list: &[PolicyStatus]) -> String {
    let mut out = pod_rules(list);
    if !list.is_empty() {
        out.push('\n');
        out.push_str(&by_policy(list));
    }
    out
}

fn by_policy(list: &[PolicyStatus]) -> String {
    // (policy, direction) → (pods isolated, packets denied at them).
    let mut sums: std::collections::BTreeMap<(&str, &str), (usize, u64)> = Default::default();
    for s in list {
        let sides = [
            ("ingress", &s.spec.ingress, s.ingress_denied),
            ("egress", &s.spec.egress, s.egress_denied),
        ];
        for (name, dir, denied) in sides {
            for p in dir.iter().flat_map(|d| &d.policies) {
                let e = sums.entry((p.as_str(), name)).or_default();
                e.0 += 1;
                e.1 += denied;
            }
        }
    }
    let mut t = Table::new(&[
        ("NETWORKPOLICY", Left),
        ("DIRECTION", Left),
        ("PODS", Right),
        ("DENIED", Right),
    ]);
    for ((policy, dir), (pods, denied)) in sums {
        t.row(vec![
            policy.into(),
            dir.into(),
            pods.to_string(),
            denied.to_string(),
        ]);
    }
    t.render()
}

fn pod_rules(list: &[PolicyStatus]) -> String {
    let mut t = Table::new(&[
        ("POD", Left),
        ("IP", Left),
        ("DIRECTION", Left),
        ("POLICY", Left),
        ("RULE", Right),
        ("PEERS", Left),
        ("PORTS", Left),
        ("DENIED", Right),
    ]);
    for s in list {
        let pod = match (&s.namespace, &s.pod) {
            (Some(ns), Some(name)) => format!("{ns}/{name}"),
            _ => s.spec.port.clone(),
        };
        let sides: [(&str, &Option<DirectionSpec>, u64); 2] = [
            ("ingress", &s.spec.ingress, s.ingress_denied),
            ("egress", &s.spec.egress, s.egress_denied),
        ];
        for (name, dir, denied) in sides {
            let Some(dir) = dir else { continue };
            if dir.rules.is_empty() {
                t.row(vec![
                    pod.clone(),
                    s.ip.to_string(),
                    name.into(),
                    dir.policies.join(","),
                    "-".into(),
                    "deny all".into(),
                    "-".into(),
                    denied.to_string(),
                ]);
                continue;
            }
            for (i, r) in dir.rules.iter().enumerate() {
                let policy = dir
                    .policies
                    .get(r.policy as usize)
                    .cloned()
                    .unwrap_or_default();
                t.row(vec![
                    pod.clone(),
                    s.ip.to_string(),
                    name.into(),
                    policy,
                    r.rule.to_string(),
                    peers(&r.peers),
                    ports(&r.ports),
                    if i == 0 {
                        denied.to_string()
                    } else {
                        String::new()
                    },
                ]);
            }
        }
    }
    t.render()
}

#[cfg(test)]
mod tests {
    use super::*;
    use podswitch_proto::{Ipv4Prefix, PolicyProtocol, PolicySpec, RuleSpec};
    use std::net::Ipv4Addr;

    #[test]
    fn each_rule_is_a_row_and_a_ruleless_direction_denies_all() {
        let status = PolicyStatus {
            ip: Ipv4Addr::new(10, 244, 1, 5),
            namespace: Some("shop".into()),
            pod: Some("db".into()),
            spec: PolicySpec {
                port: "psw1".into(),
                ingress: Some(DirectionSpec {
                    policies: vec!["shop/allow-web".into()],
                    rules: vec![RuleSpec {
                        policy: 0,
                        rule: 1,
                        peers: Some(vec![PeerBlock {
                            cidr: Ipv4Prefix {
                                addr: Ipv4Addr::new(10, 0, 0, 0),
                                len: 8,
                            },
                            except: vec![Ipv4Prefix {
                                addr: Ipv4Addr::new(10, 1, 0, 0),
                                len: 16,
                            }],
                        }]),
                        ports: Some(vec![PortRange {
                            protocol: PolicyProtocol::Tcp,
                            first: 5432,
                            last: 5432,
                        }]),
                    }],
                }),
                egress: Some(DirectionSpec {
                    policies: vec!["shop/deny-egress".into()],
                    rules: vec![],
                }),
            },
            ingress_denied: 7,
            egress_denied: 2,
        };
        let out = policies(&[status.clone(), status]);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 5 + 1 + 3, "{out}");
        assert!(
            lines[1].contains("shop/db") && lines[1].contains("shop/allow-web"),
            "{out}"
        );
        assert!(
            lines[1].contains("10.0.0.0/8 except 10.1.0.0/16") && lines[1].contains("TCP/5432"),
            "{out}"
        );
        assert!(lines[1].trim_end().ends_with('7'), "{out}");
        assert!(
            lines[2].contains("egress") && lines[2].contains("deny all"),
            "{out}"
        );
        assert!(lines[2].trim_end().ends_with('2'), "{out}");
        assert!(lines[6].starts_with("NETWORKPOLICY"), "{out}");
        let allow = lines
            .iter()
            .find(|l| l.starts_with("shop/allow-web"))
            .expect("allow-web row");
        assert_eq!(
            allow.split_whitespace().collect::<Vec<_>>(),
            ["shop/allow-web", "ingress", "2", "14"]
        );
        let deny = lines
            .iter()
            .find(|l| l.starts_with("shop/deny-egress"))
            .expect("deny row");
        assert_eq!(
            deny.split_whitespace().collect::<Vec<_>>(),
            ["shop/deny-egress", "egress", "2", "4"]
        );
    }
}
