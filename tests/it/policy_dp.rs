//! NetworkPolicy in the dataplane alone, fed `set_policy` ops directly (no control): real pods,
//! real kernel TCP. The Kubernetes semantics (selectors, namespaces, named ports) are control's
//! and are tested through manifests in `policy.rs`; here: the verdict on real connections, the
//! re-evaluation of an established one, and what `policies`, `counters` and `trace` show.

use podswitch_proto::{
    DirectionSpec, Ipv4Prefix, Op, PeerBlock, PolicyProtocol, PolicySpec, PortRange, RuleSpec,
};
use podswitch_tests::services::{connect, connect_with, TcpServer};
use podswitch_tests::*;
use std::io::Read;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

/// `port` ingress-isolated by `shop/allow-a`, whose rule 0 lets `from` in on TCP 80 only.
fn allow_only(port: &str, from: Ipv4Addr) -> Op {
    Op::SetPolicy(PolicySpec {
        port: port.into(),
        ingress: Some(DirectionSpec {
            policies: vec!["shop/allow-a".into()],
            rules: vec![RuleSpec {
                policy: 0,
                rule: 0,
                peers: Some(vec![PeerBlock {
                    cidr: Ipv4Prefix {
                        addr: from,
                        len: 32,
                    },
                    except: vec![],
                }]),
                ports: Some(vec![PortRange {
                    protocol: PolicyProtocol::Tcp,
                    first: 80,
                    last: 80,
                }]),
            }],
        }),
        egress: None,
    })
}

/// `port` ingress-isolated by `shop/deny-all`, with no rule.
fn deny_all(port: &str) -> Op {
    Op::SetPolicy(PolicySpec {
        port: port.into(),
        ingress: Some(DirectionSpec {
            policies: vec!["shop/deny-all".into()],
            rules: vec![],
        }),
        egress: None,
    })
}

const DENIED_WITHIN: Duration = Duration::from_millis(600);

#[test]
fn an_isolated_pod_is_reached_only_as_its_policy_allows_and_podswitchctl_explains_why() {
    if !root_or_skip(
        "an_isolated_pod_is_reached_only_as_its_policy_allows_and_podswitchctl_explains_why",
    ) {
        return;
    }
    let node = Node::start();
    let (a, b, server) = (node.add_pod(2), node.add_pod(3), node.add_pod(4));
    let _http = TcpServer::start(&server.ns, 80, "server");
    let _other = TcpServer::start(&server.ns, 81, "server");
    let to = |port| SocketAddr::from((server.ip, port));
    connect(&b.ns, to(80)).expect("unrestricted before any policy");

    node.apply(vec![allow_only(&server.port, a.ip)]).unwrap();
    connect(&a.ns, to(80)).expect("a on 80 is allowed");
    let denied = connect_with(&b.ns, to(80), DENIED_WITHIN);
    assert!(denied.is_err(), "b is not allowed: {denied:?}");
    let denied = connect_with(&a.ns, to(81), DENIED_WITHIN);
    assert!(denied.is_err(), "81 is not allowed: {denied:?}");

    let policies = node.podswitchctl(&["policies"]);
    let row = policies
        .lines()
        .find(|l| l.contains(&server.ip.to_string()))
        .unwrap_or_else(|| panic!("no row for the server:\n{policies}"));
    assert!(
        row.contains("ingress") && row.contains("shop/allow-a"),
        "{policies}"
    );
    assert!(
        row.contains(&a.ip.to_string()) && row.contains("TCP/80"),
        "{policies}"
    );
    let denied_count: u64 = row
        .split_whitespace()
        .last()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(
        denied_count >= 2,
        "both denied connections' SYNs: {policies}"
    );
    let counters = node.podswitchctl(&["counters"]);
    assert!(counters.contains("policy_denied"), "{counters}");

    let trace = |from: &Pod| {
        node.podswitchctl(&[
            "trace",
            "--in-port",
            &from.port,
            "--dst",
            &server.ip.to_string(),
            "--protocol",
            "tcp",
            "--dport",
            "80",
        ])
    };
    let allowed = trace(&a);
    assert!(
        allowed.contains("allowed by NetworkPolicy shop/allow-a ingress rule 0"),
        "{allowed}"
    );
    let denied = trace(&b);
    assert!(
        denied.contains("DENIED") && denied.contains("shop/allow-a"),
        "{denied}"
    );
}

#[test]
fn an_established_connection_is_stopped_by_a_new_deny_and_resumes_when_it_goes() {
    if !root_or_skip("an_established_connection_is_stopped_by_a_new_deny_and_resumes_when_it_goes")
    {
        return;
    }
    let node = Node::start();
    let (client, server) = (node.add_pod(2), node.add_pod(3));
    let _echo = TcpServer::start(&server.ns, 80, "server");
    let mut conn = connect(&client.ns, SocketAddr::from((server.ip, 80))).unwrap();
    assert_eq!(conn.echo(b"before").unwrap(), b"before");

    node.apply(vec![deny_all(&server.port)]).unwrap();
    conn.stream
        .set_read_timeout(Some(Duration::from_millis(800)))
        .unwrap();
    assert!(conn.echo(b"during").is_err(), "the connection is stopped");

    node.apply(vec![Op::DelPolicy {
        port: server.port.clone(),
    }])
    .unwrap();
    // The stopped segment is retransmitted and its echo arrives.
    conn.stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut back = [0u8; 6];
    conn.stream
        .read_exact(&mut back)
        .expect("the connection resumes");
    assert_eq!(&back, b"during");
    assert_eq!(conn.echo(b"after").unwrap(), b"after");
}
