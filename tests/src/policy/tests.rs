//! The evaluator against cases worked out by hand from the API documentation.
use super::*;
use PolicyProtocol::{Tcp, Udp};

fn pod(ns: &str, name: &str, host: u8) -> PodModel {
    PodModel {
        namespace: ns.into(),
        name: name.into(),
        labels: labels(&[("pod", name)]),
        ip: Ipv4Addr::new(10, 244, 1, host),
        container_ports: vec![ContainerPort {
            name: "serve-80-tcp".into(),
            protocol: Tcp,
            port: 80,
        }],
    }
}

fn world(policies: Vec<Policy>) -> (World, PodModel, PodModel, PodModel) {
    let (xa, xb, ya) = (pod("x", "a", 2), pod("x", "b", 3), pod("y", "a", 4));
    let w = World {
        namespaces: vec![
            NamespaceModel {
                name: "x".into(),
                labels: labels(&[("ns", "x")]),
            },
            NamespaceModel {
                name: "y".into(),
                labels: labels(&[("ns", "y")]),
            },
        ],
        pods: vec![xa.clone(), xb.clone(), ya.clone()],
        policies,
    };
    (w, xa, xb, ya)
}

#[test]
fn no_policy_allows_and_default_deny_isolates_only_its_namespace() {
    let (w, xa, xb, ya) = world(vec![]);
    assert!(w.allowed(&ya, &xa, Tcp, 80));
    let (w, ..) = world(vec![Policy::new("x", "deny")]);
    assert!(!w.allowed(&ya, &xa, Tcp, 80));
    assert!(!w.allowed(&xb, &xa, Udp, 81));
    assert!(w.allowed(&xa, &ya, Tcp, 80), "egress is not isolated");
    assert!(w.allowed(&xa, &xa, Tcp, 80), "self");
    assert_eq!(w.isolating(&xa, Direction::Ingress), ["x/deny"]);
    assert!(w.isolating(&xa, Direction::Egress).is_empty());
}

#[test]
fn egress_type_with_no_rule_isolates_egress_and_and_peers_differ_from_or_peers() {
    let deny_egress = Policy::new("x", "e")
        .egress(vec![])
        .types(&[Direction::Egress]);
    let (w, xa, _, ya) = world(vec![deny_egress]);
    assert!(!w.allowed(&xa, &ya, Tcp, 80));
    let and = Peer::PodsInNamespaces {
        pods: Selector::labels(&[("pod", "b")]),
        namespaces: Selector::labels(&[("ns", "y")]),
    };
    let (w, xa, xb, ya) = world(vec![
        Policy::new("x", "p").ingress(vec![Rule::peers(vec![and])])
    ]);
    assert!(!w.allowed(&ya, &xa, Tcp, 80), "y/a is not pod=b");
    assert!(!w.allowed(&xb, &xa, Tcp, 80), "x/b is not in ns=y");
    let or = vec![
        Peer::Pods(Selector::labels(&[("pod", "b")])),
        Peer::Namespaces(Selector::labels(&[("ns", "y")])),
    ];
    let (w, ..) = world(vec![Policy::new("x", "p").ingress(vec![Rule::peers(or)])]);
    assert!(w.allowed(&ya, &xa, Tcp, 80) && w.allowed(&xb, &xa, Tcp, 80));
}

#[test]
fn selectors_expressions_named_ports_and_blocks() {
    let s = Selector::all().with("ns", SelectorOp::NotIn(vec!["x".into()]));
    assert!(s.matches(&labels(&[])) && !s.matches(&labels(&[("ns", "x")])));
    assert!(Selector::all()
        .with("a", SelectorOp::DoesNotExist)
        .matches(&labels(&[])));
    assert!(!Selector::all()
        .with("a", SelectorOp::In(vec!["1".into()]))
        .matches(&labels(&[])));
    let named = Rule::ports(vec![PolicyPort::named(Tcp, "serve-80-tcp")]);
    let (w, xa, _, ya) = world(vec![Policy::new("x", "n").ingress(vec![named.clone()])]);
    assert!(w.allowed(&ya, &xa, Tcp, 80) && !w.allowed(&ya, &xa, Tcp, 81));
    assert!(!w.allowed(&ya, &xa, Udp, 80));
    let block = Peer::Block {
        cidr: "10.244.1.0/24".parse().unwrap(),
        except: vec!["10.244.1.4/32".parse().unwrap()],
    };
    let (w, xa, xb, ya) = world(vec![
        Policy::new("x", "b").ingress(vec![Rule::peers(vec![block.clone()])])
    ]);
    assert!(w.allowed(&xb, &xa, Tcp, 80) && !w.allowed(&ya, &xa, Tcp, 80));
    let egress = Rule {
        peers: vec![block],
        ports: named.ports,
    };
    let (w, xa, xb, _) = world(vec![Policy::new("x", "e").egress(vec![egress])]);
    assert!(
        !w.allowed(&xa, &xb, Tcp, 80),
        "a named port never matches through an ipBlock"
    );
}

#[test]
fn yaml_is_block_style() {
    let p = Policy::new("x", "p").ingress(vec![Rule::all()]);
    assert_eq!(
        p.yaml(),
        "apiVersion: \"networking.k8s.io/v1\"\nkind: \"NetworkPolicy\"\nmetadata:\n  name: \"p\"\n  namespace: \"x\"\nspec:\n  ingress:\n    - {}\n  podSelector: {}\n"
    );
}

#[test]
fn policy_types_default_as_the_api_server_sets_them() {
    use Direction::{Egress, Ingress};
    let base = || Policy::new("x", "p");
    assert_eq!(base().effective_types(), vec![Ingress]);
    assert_eq!(
        base().egress(vec![]).effective_types(),
        vec![Ingress],
        "egress: [] alone has no rule: not egress-isolated"
    );
    assert_eq!(
        base().egress(vec![Rule::default()]).effective_types(),
        vec![Ingress, Egress]
    );
    assert_eq!(base().types(&[Egress]).effective_types(), vec![Egress]);
}
