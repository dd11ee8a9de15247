//! NetworkPolicy with real kernel traffic (issue 15), the way the Kubernetes e2e suite tests
//! it: three namespaces × three pods attached through the CNI plugin, TCP and UDP servers on
//! ports 80 and 81 in every pod, policies applied through podswitch-control, and the whole 9×9
//! reachability matrix probed and compared with an independent evaluator of the semantics
//! (`podswitch_tests::policy`). Each test shares one cluster among its cases and removes its
//! policies between them.

use podswitch_proto::PolicyProtocol::{Sctp, Tcp, Udp};
use podswitch_proto::{Ipv4Prefix, L4Protocol};
use podswitch_tests::policy::cluster::PolicyCluster;
use podswitch_tests::policy::{
    labels, Direction, Peer, Policy, PolicyPort, Rule, Selector, SelectorOp,
};
use podswitch_tests::root_or_skip;
use podswitch_tests::services::{connect_with, ServiceManifest};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

fn pods(pairs: &[(&str, &str)]) -> Peer {
    Peer::Pods(Selector::labels(pairs))
}

fn namespaces(pairs: &[(&str, &str)]) -> Peer {
    Peer::Namespaces(Selector::labels(pairs))
}

fn host(ip: Ipv4Addr) -> Ipv4Prefix {
    Ipv4Prefix::new(ip, 32).unwrap()
}

/// Applies `policies`, checks TCP 80, TCP 81 and UDP 80, and removes them.
fn case(c: &PolicyCluster, name: &str, policies: &[Policy]) {
    for p in policies {
        c.apply(p);
    }
    c.check_common(name);
    c.delete_all();
}

#[test]
fn ingress_isolation_and_selectors_match_the_evaluator() {
    if !root_or_skip("ingress_isolation_and_selectors_match_the_evaluator") {
        return;
    }
    let c = PolicyCluster::start();
    let _servers = c.serve();
    c.check("no policy: everything reachable", Tcp, 80);

    case(&c, "default deny ingress", &[Policy::new("x", "deny")]);
    let a = Selector::labels(&[("pod", "a")]);
    case(
        &c,
        "allow from a pod selector",
        &[Policy::new("x", "allow-from-b")
            .selecting(a.clone())
            .ingress(vec![Rule::peers(vec![pods(&[("pod", "b")])])])],
    );
    case(
        &c,
        "allow from a namespace selector (matchLabels)",
        &[Policy::new("x", "allow-from-y")
            .selecting(a.clone())
            .ingress(vec![Rule::peers(vec![namespaces(&[("ns", "y")])])])],
    );
    let not_x = Selector::all().with("ns", SelectorOp::NotIn(vec!["x".into()]));
    case(
        &c,
        "allow from a namespace selector (matchExpressions NotIn)",
        &[Policy::new("x", "allow-not-x")
            .ingress(vec![Rule::peers(vec![Peer::Namespaces(not_x)])])],
    );
    let in_yz_with_name = Selector::all()
        .with("ns", SelectorOp::In(vec!["y".into(), "z".into()]))
        .with("kubernetes.io/metadata.name", SelectorOp::Exists);
    case(
        &c,
        "matchExpressions In and Exists on the name label",
        &[Policy::new("x", "allow-yz")
            .selecting(a.clone())
            .ingress(vec![Rule::peers(vec![Peer::Namespaces(in_yz_with_name)])])],
    );
    let and = Peer::PodsInNamespaces {
        pods: Selector::labels(&[("pod", "c")]),
        namespaces: Selector::labels(&[("ns", "y")]),
    };
    case(
        &c,
        "pod and namespace selector in one peer: AND",
        &[Policy::new("x", "and").ingress(vec![Rule::peers(vec![and])])],
    );
    case(
        &c,
        "pod and namespace selectors as two peers: OR",
        &[Policy::new("x", "or").ingress(vec![Rule::peers(vec![
            pods(&[("pod", "c")]),
            namespaces(&[("ns", "y")]),
        ])])],
    );
    case(
        &c,
        "stacked policies are additive",
        &[
            Policy::new("x", "deny"),
            Policy::new("x", "from-y")
                .selecting(a.clone())
                .ingress(vec![Rule::peers(vec![namespaces(&[("ns", "y")])])]),
            Policy::new("x", "from-c")
                .selecting(
                    Selector::all().with("pod", SelectorOp::In(vec!["a".into(), "b".into()])),
                )
                .ingress(vec![Rule::peers(vec![Peer::PodsInNamespaces {
                    pods: Selector::labels(&[("pod", "c")]),
                    namespaces: Selector::all(),
                }])]),
        ],
    );

    // Update: the same policy, changed.
    let mut p = Policy::new("x", "changing")
        .selecting(a.clone())
        .ingress(vec![Rule::peers(vec![namespaces(&[("ns", "y")])])]);
    c.apply(&p);
    c.check("update: before", Tcp, 80);
    p = p.ingress(vec![Rule::peers(vec![namespaces(&[("ns", "z")])])]);
    c.apply(&p);
    c.check("update: from y changed to from z", Tcp, 80);
    p = p.selecting(Selector::labels(&[("pod", "b")]));
    c.apply(&p);
    c.check("update: selecting b instead of a", Tcp, 80);

    c.delete_all();
    c.check("deletion: everything reachable again", Tcp, 80);
    c.check("deletion: everything reachable again", Udp, 81);
}

#[test]
fn ports_protocols_and_named_ports_match_the_evaluator() {
    if !root_or_skip("ports_protocols_and_named_ports_match_the_evaluator") {
        return;
    }
    let c = PolicyCluster::start();
    let _servers = c.serve();
    case(
        &c,
        "port 80 allowed, 81 denied",
        &[
            Policy::new("x", "tcp-80")
                .ingress(vec![Rule::ports(vec![PolicyPort::number(Tcp, 80)])]),
        ],
    );
    let p = Policy::new("x", "named").ingress(vec![Rule {
        peers: vec![namespaces(&[("ns", "y")])],
        ports: vec![
            PolicyPort::named(Tcp, "serve-81-tcp"),
            PolicyPort::named(Udp, "serve-80-udp"),
        ],
    }]);
    c.apply(&p);
    c.check("named ports", Tcp, 81);
    c.check("named ports", Tcp, 80);
    c.check("named ports", Udp, 80);
    c.check("named ports", Udp, 81);
    c.delete_all();

    let p =
        Policy::new("y", "range").ingress(vec![Rule::ports(vec![PolicyPort::range(Tcp, 81, 90)])]);
    c.apply(&p);
    c.check("endPort 81..90", Tcp, 80);
    c.check("endPort 81..90", Tcp, 81);
    c.delete_all();

    let udp_only = Policy::new("z", "udp-from-x").ingress(vec![Rule {
        peers: vec![namespaces(&[("ns", "x")])],
        ports: vec![PolicyPort {
            protocol: Some(Udp),
            port: None,
            end_port: None,
        }],
    }]);
    c.apply(&udp_only);
    c.check("UDP only, any port, from x", Udp, 80);
    c.check("UDP only, any port, from x", Udp, 81);
    c.check("UDP only, any port, from x", Tcp, 80);
    c.delete_all();

    case(
        &c,
        "an SCTP-only policy still isolates for TCP and UDP",
        &[Policy::new("x", "sctp-80")
            .ingress(vec![Rule::ports(vec![PolicyPort::number(Sctp, 80)])])],
    );
}

#[test]
fn egress_ip_blocks_and_both_directions_match_the_evaluator() {
    if !root_or_skip("egress_ip_blocks_and_both_directions_match_the_evaluator") {
        return;
    }
    let c = PolicyCluster::start();
    let _servers = c.serve();
    case(
        &c,
        "default deny all",
        &[Policy::new("y", "deny-all").types(&[Direction::Ingress, Direction::Egress])],
    );
    case(
        &c,
        "egress to another namespace only, TCP 80",
        &[Policy::new("x", "to-y").egress(vec![Rule {
            peers: vec![namespaces(&[("ns", "y")])],
            ports: vec![PolicyPort::number(Tcp, 80)],
        }])],
    );
    case(
        &c,
        "ingress and egress together",
        &[Policy::new("z", "both")
            .selecting(Selector::labels(&[("pod", "a")]))
            .ingress(vec![Rule::peers(vec![namespaces(&[("ns", "x")])])])
            .egress(vec![Rule::peers(vec![pods(&[("pod", "b")])])])],
    );
    let named = Policy::new("x", "to-y-named").egress(vec![Rule {
        peers: vec![namespaces(&[("ns", "y")])],
        ports: vec![PolicyPort::named(Tcp, "serve-81-tcp")],
    }]);
    c.apply(&named);
    c.check(
        "egress to a named port, resolved per destination pod",
        Tcp,
        81,
    );
    c.check(
        "egress to a named port, resolved per destination pod",
        Tcp,
        80,
    );
    c.delete_all();
    let yb = c.pod("y/b").ip;
    let cidr: Ipv4Prefix = podswitch_tests::POD_CIDR.parse().unwrap();
    case(
        &c,
        "ingress ipBlock with except",
        &[Policy::new("x", "block")
            .selecting(Selector::labels(&[("pod", "a")]))
            .ingress(vec![Rule::peers(vec![Peer::Block {
                cidr,
                except: vec![host(yb)],
            }])])],
    );
    let zc = c.pod("z/c").ip;
    case(
        &c,
        "egress ipBlock with except",
        &[
            Policy::new("x", "egress-block").egress(vec![Rule::peers(vec![Peer::Block {
                cidr,
                except: vec![host(yb), host(zc)],
            }])]),
        ],
    );
}

#[test]
fn pod_and_namespace_label_changes_are_reevaluated() {
    if !root_or_skip("pod_and_namespace_label_changes_are_reevaluated") {
        return;
    }
    let c = PolicyCluster::start();
    let _servers = c.serve();
    c.apply(
        &Policy::new("x", "from-blue-web").ingress(vec![Rule::peers(vec![
            Peer::PodsInNamespaces {
                pods: Selector::labels(&[("role", "web")]),
                namespaces: Selector::labels(&[("team", "blue")]),
            },
        ])]),
    );
    c.check("before any label change", Tcp, 80);
    c.relabel_namespace("y", labels(&[("ns", "y"), ("team", "blue")]));
    c.check("namespace y labelled team=blue (no web pod yet)", Tcp, 80);
    c.relabel_pod("y/b", labels(&[("pod", "b"), ("role", "web")]));
    c.check("pod y/b labelled role=web", Tcp, 80);
    c.relabel_pod("x/c", labels(&[("pod", "c"), ("isolated", "no")]));
    c.relabel_namespace("y", labels(&[("ns", "y")]));
    c.check("namespace y loses team=blue", Tcp, 80);
    c.apply(
        &Policy::new("x", "from-blue-web")
            .selecting(Selector::all().with("isolated", SelectorOp::DoesNotExist)),
    );
    c.check("x/c's new label takes it out of the policy", Tcp, 80);

    // A pod attached later is selected at once (CNI ADD re-evaluates), and one removed goes
    // from podswitchd's policies (CNI DEL).
    let late = c.cn.add_pod_in("x", "late");
    let isolated = c.policies();
    assert!(
        isolated
            .iter()
            .any(|s| s.ip == late.ip && s.spec.ingress.is_some()),
        "x/late (no Pod object, so no labels) is selected by x/from-blue-web as soon as it is \
         attached: {isolated:#?}"
    );
    let _late_server = podswitch_tests::services::TcpServer::start(&late.ns, 80, "x/late");
    let to_late = SocketAddr::from((late.ip, 80));
    let from_ya = connect_with(&c.pod("y/a").ns, to_late, Duration::from_millis(500));
    assert!(
        from_ya.is_err(),
        "x/late is isolated as soon as it is attached"
    );
    let del = c.cn.del_pod(&late.container_id, Some(&late.netns()));
    assert_eq!(del.code, 0, "{del:?}");
    let after = c.policies();
    assert!(
        after.iter().all(|s| s.ip != late.ip),
        "x/late's policy goes with it: {after:#?}"
    );
}

#[test]
fn operator_view_node_traffic_services_and_established_connections() {
    if !root_or_skip("operator_view_node_traffic_services_and_established_connections") {
        return;
    }
    let c = PolicyCluster::start();
    let _servers = c.serve();
    let xa = c.pod("x/a").ip;
    let to_xa = SocketAddr::from((xa, 80));

    // An established connection, then a policy that denies it: stopped at its next packet.
    let mut conn = connect_with(&c.pod("z/a").ns, to_xa, Duration::from_secs(2)).unwrap();
    assert_eq!(conn.echo(b"before").unwrap(), b"before");
    let allow = Policy::new("x", "allow-from-y")
        .selecting(Selector::labels(&[("pod", "a")]))
        .ingress(vec![Rule::peers(vec![namespaces(&[("ns", "y")])])]);
    c.apply(&allow);
    let denied_before = c.cn.node.drops("policy_denied");
    conn.stream
        .set_read_timeout(Some(Duration::from_secs(1)))
        .unwrap();
    assert!(
        conn.echo(b"cut").is_err(),
        "an established connection that the new policy denies is stopped"
    );
    c.check("allow-from-y", Tcp, 80);
    assert!(
        c.cn.node.drops_above("policy_denied", denied_before) > denied_before,
        "denials count as policy_denied"
    );
    let status = c.policies();
    let xa_status = status
        .iter()
        .find(|s| s.ip == xa)
        .expect("x/a has a policy");
    assert!(xa_status.ingress_denied > 0, "{xa_status:?}");
    assert_eq!(xa_status.egress_denied, 0, "{xa_status:?}");
    let table = c.cn.node.podswitchctl(&["policies"]);
    assert!(
        table.contains("x/allow-from-y") && table.contains(&xa.to_string()),
        "podswitchctl policies shows x/a isolated by x/allow-from-y:\n{table}"
    );
    let counters = c.cn.node.podswitchctl(&["counters"]);
    assert!(counters.contains("policy_denied"), "{counters}");

    // Trace: the allowed packet names the policy, the denied one says so.
    let allowed = c.cn.node.podswitchctl(&[
        "trace",
        "--in-port",
        &c.port_of("y/b"),
        "--dst",
        &xa.to_string(),
    ]);
    assert!(
        allowed.contains("x/allow-from-y") && !allowed.to_lowercase().contains("denied"),
        "trace of y/b → x/a:80:\n{allowed}"
    );
    let denied = c.cn.node.podswitchctl(&[
        "trace",
        "--in-port",
        &c.port_of("z/a"),
        "--dst",
        &xa.to_string(),
    ]);
    assert!(
        denied.contains("denied") && denied.contains("x/allow-from-y"),
        "trace of z/a → x/a:80:\n{denied}"
    );

    // The node (kubelet probes) reaches the isolated pod.
    let from_node = connect_with(&c.cn.node.ns, to_xa, Duration::from_secs(2));
    assert!(
        from_node.is_ok_and(|n| n.answer.backend == "x/a"),
        "the node's host side reaches an isolated pod"
    );

    // A Service VIP in front of x/a: ingress is evaluated against the backend.
    let vip = Ipv4Addr::new(10, 96, 0, 20);
    let svc = ServiceManifest::new("web", L4Protocol::Tcp, vip, 8080, 80);
    c.cn.apply_service(&svc, &[xa]);
    let through = connect_with(&c.pod("y/b").ns, svc.vip(), Duration::from_secs(2));
    assert!(
        through.as_ref().is_ok_and(|t| t.answer.backend == "x/a"),
        "y/b (allowed) reaches x/a through the VIP: {through:?}"
    );
    let blocked = connect_with(&c.pod("z/a").ns, svc.vip(), Duration::from_millis(800));
    assert!(
        blocked.is_err(),
        "z/a (denied) does not reach x/a through the VIP"
    );

    // The policy goes: the established connection continues (the held data first). "cut" has
    // been retransmitted with exponential back-off since it was denied, so its next attempt is
    // about as far off as the time since it was first sent: everything above, which on a
    // loaded 2-core machine took over 15 s once. Wait that long and more.
    c.delete_all();
    conn.stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    conn.stream.write_all(b"after").unwrap();
    let mut back = [0u8; 8];
    conn.stream.read_exact(&mut back).unwrap();
    assert_eq!(
        &back, b"cutafter",
        "the connection resumes once allowed again"
    );
}
