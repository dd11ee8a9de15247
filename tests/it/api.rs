//! The socket API under bad input and port removal.

use podswitch_proto::{Op, PortKind, PortRole, PortSpec, RequestBody, Response};
use podswitch_tests::*;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;

fn ports(node: &Node) -> Vec<String> {
    match node.request(RequestBody::Ports) {
        Response::Ports { ports } => ports.into_iter().map(|p| p.name).collect(),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_failing_transaction_changes_nothing() {
    if !root_or_skip("a_failing_transaction_changes_nothing") {
        return;
    }
    let node = Node::start();
    let a = node.add_pod(2);
    let before = ports(&node);
    let pod = |name: &str, ip: &str| {
        Op::AddPort(PortSpec {
            name: name.into(),
            kind: PortKind::Tap,
            role: PortRole::Pod {
                mac: "02:00:00:00:00:09".parse().unwrap(),
                ip: ip.parse().unwrap(),
                namespace: None,
                pod: None,
            },
            mtu: 1500,
            netns: None,
        })
    };
    let good = unique("pt");
    let err = node
        .apply(vec![
            pod(&good, "10.244.1.9"),
            pod(&unique("pt"), "10.244.1.2"),
        ])
        .unwrap_err();
    assert!(err.contains("op 2") && err.contains("10.244.1.2"), "{err}");
    assert_eq!(ports(&node), before);
    // The tap created by op 1 was closed again: no device left behind.
    let links = node.ns.ip(&["-o", "link"]);
    assert!(!links.contains(&good), "{links}");
    assert!(a.ns.ping(GATEWAY, &[]).0, "forwarding unaffected");
}

#[test]
fn malformed_and_wrong_version_requests_get_errors_and_the_connection_survives() {
    if !root_or_skip("malformed_and_wrong_version_requests_get_errors_and_the_connection_survives")
    {
        return;
    }
    let node = Node::bare(&[]);
    let mut conn = UnixStream::connect(&node.socket).unwrap();
    let mut send = |body: &[u8]| -> Response {
        conn.write_all(&(body.len() as u32).to_be_bytes()).unwrap();
        conn.write_all(body).unwrap();
        podswitch_proto::read_frame(&mut conn).unwrap()
    };
    for (body, needle) in [
        (&b"{not json"[..], "malformed"),
        (br#"{"version":99,"request":"status"}"#, "version 99"),
        (br#"{"version":1,"request":"launch_rockets"}"#, "malformed"),
        (br#"{"version":1,"request":"apply","ops":[{"op":"add_port","name":"x","role":{"role":"pod","mac":"zz","ip":"10.244.1.2"}}]}"#, "zz"),
    ] {
        match send(body) {
            Response::Error { message } => assert!(message.contains(needle), "{message}"),
            other => panic!("{other:?}"),
        }
    }
    assert!(matches!(
        send(br#"{"version":1,"request":"status"}"#),
        Response::Status(_)
    ));
    // An oversized frame is refused and the connection closed.
    let mut conn = UnixStream::connect(&node.socket).unwrap();
    conn.write_all(&u32::MAX.to_be_bytes()).unwrap();
    match podswitch_proto::read_frame(&mut conn).unwrap() {
        Response::Error { message } => assert!(
            message.contains(&u32::MAX.to_string()) && message.contains("exceeds the limit"),
            "{message}"
        ),
        other => panic!("{other:?}"),
    }
    let mut rest = Vec::new();
    assert_eq!(conn.read_to_end(&mut rest).unwrap(), 0);
}

#[test]
fn a_removed_port_stops_forwarding_and_can_come_back() {
    if !root_or_skip("a_removed_port_stops_forwarding_and_can_come_back") {
        return;
    }
    let node = Node::start();
    let a = node.add_pod(2);
    let b = node.add_pod(3);
    assert!(a.ns.ping(b.ip, &[]).0);
    node.apply(vec![Op::DelPort {
        name: b.port.clone(),
    }])
    .unwrap();
    let (ok, out) = a.ns.ping(b.ip, &[]);
    assert!(!ok && out.contains("Destination Host Unreachable"), "{out}");
    assert!(!ports(&node).contains(&b.port));
    let c = node.add_pod(3);
    assert!(
        a.ns.ping(c.ip, &[]).0,
        "the address works again on a new port"
    );
}
