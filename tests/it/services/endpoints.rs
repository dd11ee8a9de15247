//! Where a Service's endpoints come from and which take new connections, with real traffic:
//! several ports with named targetPorts resolved per EndpointSlice, legacy `Endpoints`,
//! EndpointSlice conditions (ready, serving, terminating), ClientIP affinity running out, and
//! an SCTP Service refused by apply with everything before it left as it was.

use super::{cluster, web, Cluster, TARGET_PORT, VIP};
use podswitch_proto::{L4Protocol, ServiceInfo, TracePacket};
use podswitch_tests::services::*;
use podswitch_tests::*;
use std::collections::BTreeSet;
use std::io::ErrorKind;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

/// The backends that answered `n` connections from `ns` to `to`; panics if any failed.
fn tcp_answers(ns: &Netns, to: SocketAddr, n: usize) -> BTreeSet<String> {
    let results = connect_many(ns, to, n);
    let (failed, first) = failures(&results);
    assert_eq!(failed, 0, "every connection to {to} succeeds: {first:?}");
    by_backend(results.iter().flatten()).into_keys().collect()
}

fn names(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// Whether podswitchd selects (for ClusterIP traffic) exactly the endpoints at `ips`.
fn selects_only(info: &ServiceInfo, ips: &[Ipv4Addr]) -> bool {
    info.spec
        .backends
        .iter()
        .zip(&info.selected)
        .all(|(b, s)| s.internal == ips.contains(&b.ip))
}

#[test]
fn several_ports_resolve_named_target_ports_per_endpoint_slice() {
    if !root_or_skip("several_ports_resolve_named_target_ports_per_endpoint_slice") {
        return;
    }
    let Cluster { cn, client, a, b } = cluster();
    // Each pod names its ports "web", "stats" and "dns" but gives them other numbers, so the
    // EndpointSlice controller publishes one slice per pod; each pod also listens on the
    // other pod's numbers, answering "wrong", so a port resolved from the wrong slice shows.
    let _servers = (
        TcpServer::start(&a.ns, 8080, "a-http"),
        TcpServer::start(&a.ns, 9100, "a-metrics"),
        UdpServer::start(&a.ns, 5353, "a-dns"),
        TcpServer::start(&a.ns, 8081, "wrong"),
        TcpServer::start(&a.ns, 9101, "wrong"),
        UdpServer::start(&a.ns, 5354, "wrong"),
        TcpServer::start(&b.ns, 8081, "b-http"),
        TcpServer::start(&b.ns, 9101, "b-metrics"),
        UdpServer::start(&b.ns, 5354, "b-dns"),
        TcpServer::start(&b.ns, 8080, "wrong"),
        TcpServer::start(&b.ns, 9100, "wrong"),
        UdpServer::start(&b.ns, 5353, "wrong"),
    );
    let service = format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: multi, namespace: default}}\nspec:\n  \
         clusterIP: {VIP}\n  ports:\n  - {{name: http, port: 80, targetPort: web}}\n  \
         - {{name: metrics, port: 81, targetPort: stats}}\n  \
         - {{name: dns, port: 53, targetPort: dns, protocol: UDP}}\n"
    );
    let slice = |pod: &str, ip: Ipv4Addr, offset: u16| {
        format!(
            "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: multi-{pod}\n  \
             namespace: default\n  labels: {{kubernetes.io/service-name: multi}}\n\
             addressType: IPv4\nports:\n- {{name: http, port: {}}}\n- {{name: metrics, port: {}}}\n\
             - {{name: dns, port: {}, protocol: UDP}}\nendpoints:\n- addresses: [\"{ip}\"]\n",
            8080 + offset,
            9100 + offset,
            5353 + offset
        )
    };
    let yaml = format!(
        "{service}---\n{}---\n{}",
        slice("a", a.ip, 0),
        slice("b", b.ip, 1)
    );
    cn.apply_manifests(&yaml)
        .unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    // Each Service port as podswitchd must hold it: its own numbers on each pod.
    let ports = [
        (L4Protocol::Tcp, 80, 8080),
        (L4Protocol::Tcp, 81, 9100),
        (L4Protocol::Udp, 53, 5353),
    ];
    for (protocol, port, target) in ports {
        let svc = ServiceManifest::new("multi", protocol, VIP, port, target);
        let want = [
            SocketAddrV4::new(a.ip, target),
            SocketAddrV4::new(b.ip, target + 1),
        ];
        cn.wait_for_service_where(&svc, &want, |_| true);
    }

    let vip = |port| SocketAddr::from((VIP, port));
    assert_eq!(
        tcp_answers(&client.ns, vip(80), 40),
        names(&["a-http", "b-http"]),
        "port 80 reaches each pod's own \"web\" port"
    );
    assert_eq!(
        tcp_answers(&client.ns, vip(81), 40),
        names(&["a-metrics", "b-metrics"]),
        "port 81 reaches each pod's own \"stats\" port"
    );
    let dns: BTreeSet<String> = (0..30)
        .map(|i| {
            udp_ask(&client.ns, vip(53), 3)
                .unwrap_or_else(|e| panic!("question {i} to {VIP}:53/UDP: {e}"))
                .backend
        })
        .collect();
    assert_eq!(
        dns,
        names(&["a-dns", "b-dns"]),
        "port 53/UDP reaches each pod's own \"dns\" port"
    );
}

#[test]
fn legacy_endpoints_serve_a_service_that_has_no_endpoint_slice() {
    if !root_or_skip("legacy_endpoints_serve_a_service_that_has_no_endpoint_slice") {
        return;
    }
    let Cluster { cn, client, a, b } = cluster();
    let _sa = TcpServer::start(&a.ns, TARGET_PORT, "a");
    let _sb = TcpServer::start(&b.ns, TARGET_PORT, "b");
    let svc = web(L4Protocol::Tcp);
    let both = svc.backends(&[a.ip, b.ip]);

    // b is listed under notReadyAddresses: held, never sent a connection.
    let yaml = format!(
        "{}---\n{}",
        svc.service_yaml(),
        svc.endpoints_yaml(&[a.ip], &[b.ip])
    );
    cn.apply_and_wait(&yaml, &svc, &both, |i| selects_only(i, &[a.ip]));
    assert_eq!(tcp_answers(&client.ns, svc.vip(), 30), names(&["a"]));

    // b becomes ready: the Endpoints update alone moves it.
    let ready = svc.endpoints_yaml(&[a.ip, b.ip], &[]);
    cn.apply_and_wait(&ready, &svc, &both, |i| selects_only(i, &[a.ip, b.ip]));
    assert_eq!(tcp_answers(&client.ns, svc.vip(), 40), names(&["a", "b"]));

    // Once the Service has an EndpointSlice, the legacy object is ignored.
    cn.apply_and_wait(
        &svc.slice_yaml(&[b.ip]),
        &svc,
        &svc.backends(&[b.ip]),
        |_| true,
    );
    assert_eq!(tcp_answers(&client.ns, svc.vip(), 20), names(&["b"]));
}

#[test]
fn terminating_endpoints_serve_only_when_none_is_ready_and_not_ready_ones_never() {
    if !root_or_skip("terminating_endpoints_serve_only_when_none_is_ready_and_not_ready_ones_never")
    {
        return;
    }
    let Cluster { cn, client, a, b } = cluster();
    let c = cn.add_pod("backend-c");
    let _servers = (
        TcpServer::start(&a.ns, TARGET_PORT, "a"),
        TcpServer::start(&b.ns, TARGET_PORT, "b"),
        TcpServer::start(&c.ns, TARGET_PORT, "c"),
    );
    let svc = web(L4Protocol::Tcp);
    let all = svc.backends(&[a.ip, b.ip, c.ip]);

    // a ready, b terminating but serving, c not ready: only a.
    let yaml = svc.yaml_with(&[
        SliceEndpoint::ready(a.ip),
        SliceEndpoint::terminating(b.ip),
        SliceEndpoint::not_ready(c.ip),
    ]);
    cn.apply_and_wait(&yaml, &svc, &all, |i| selects_only(i, &[a.ip]));
    assert_eq!(
        tcp_answers(&client.ns, svc.vip(), 40),
        names(&["a"]),
        "a serving-terminating endpoint waits while a ready one exists"
    );

    // a is not ready any more: the terminating b takes the connections, c still none.
    let yaml = svc.slice_yaml_with(&[
        SliceEndpoint::not_ready(a.ip),
        SliceEndpoint::terminating(b.ip),
        SliceEndpoint::not_ready(c.ip),
    ]);
    cn.apply_and_wait(&yaml, &svc, &all, |i| selects_only(i, &[b.ip]));
    assert_eq!(
        tcp_answers(&client.ns, svc.vip(), 40),
        names(&["b"]),
        "with no ready endpoint, the serving-terminating one is used, never the not-ready ones"
    );

    // b stops serving too: nothing takes the connection, which is refused at once.
    let stopped = SliceEndpoint {
        serving: false,
        ..SliceEndpoint::terminating(b.ip)
    };
    let yaml = svc.slice_yaml_with(&[
        SliceEndpoint::not_ready(a.ip),
        stopped,
        SliceEndpoint::not_ready(c.ip),
    ]);
    cn.apply_and_wait(&yaml, &svc, &all, |i| selects_only(i, &[]));
    let err = connect_with(&client.ns, svc.vip(), Duration::from_secs(1)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused, "{err}");
}

#[test]
fn sctp_service_is_refused_by_apply_and_the_previous_state_stays() {
    if !root_or_skip("sctp_service_is_refused_by_apply_and_the_previous_state_stays") {
        return;
    }
    let Cluster { cn, client, a, b } = cluster();
    let _sa = TcpServer::start(&a.ns, TARGET_PORT, "a");
    let _sb = TcpServer::start(&b.ns, TARGET_PORT, "b");
    let svc = web(L4Protocol::Tcp);
    cn.apply_service(&svc, &[a.ip]);
    let before = cn.node.services();

    // One manifest: web's endpoints moved to b, a new Service, and an SCTP Service. All of it
    // is refused, so web keeps a and the new Service never appears.
    let other = ServiceManifest::new(
        "other",
        L4Protocol::Tcp,
        Ipv4Addr::new(10, 96, 0, 20),
        80,
        TARGET_PORT,
    );
    let sctp = "apiVersion: v1\nkind: Service\nmetadata: {name: signalling, namespace: default}\n\
                spec:\n  clusterIP: 10.96.0.30\n  ports:\n  - {name: http, port: 80}\n  \
                - {name: diameter, port: 3868, protocol: SCTP}\n";
    let yaml = format!(
        "{}---\n{}---\n{sctp}",
        svc.slice_yaml(&[b.ip]),
        other.yaml(&[a.ip])
    );
    let err = cn.apply_manifests(&yaml).unwrap_err();
    assert!(
        err.contains(
            "service default/signalling: spec.ports[1].protocol: SCTP is not supported by \
             podswitch (TCP and UDP only)"
        ),
        "the refusal names the object, the field and why: {err}"
    );

    assert_eq!(
        cn.node.services(),
        before,
        "podswitchd holds what it held before"
    );
    assert_eq!(
        tcp_answers(&client.ns, svc.vip(), 20),
        names(&["a"]),
        "web still goes to a alone"
    );
    assert!(
        connect_with(&client.ns, other.vip(), Duration::from_secs(1)).is_err(),
        "the Service applied beside the SCTP one does not exist"
    );
}

#[test]
fn client_ip_affinity_runs_out_and_maglev_moves_the_client() {
    if !root_or_skip("client_ip_affinity_runs_out_and_maglev_moves_the_client") {
        return;
    }
    const TIMEOUT_SECS: u32 = 2;
    let Cluster { cn, client, a, b } = cluster();
    let _sa = UdpServer::start(&a.ns, TARGET_PORT, "a");
    let _sb = UdpServer::start(&b.ns, TARGET_PORT, "b");
    let mut svc = web(L4Protocol::Udp);
    svc.affinity_timeout_secs = Some(TIMEOUT_SECS);
    cn.apply_service(&svc, &[a.ip, b.ip]);

    // Which backend Maglev gives each source port, asked of the live pipeline (trace sends
    // nothing and records no affinity): two ports for a and two for b, so the test knows
    // where each datagram goes without affinity.
    let in_port = cn.port_of(&client.container_id);
    let maglev = |src_port: u16| {
        cn.node.traced_endpoint(TracePacket {
            in_port: in_port.clone(),
            src: None,
            dst: VIP,
            protocol: "udp".into(),
            src_port: Some(src_port),
            dst_port: Some(svc.port),
        })
    };
    let (mut to_a, mut to_b) = (Vec::new(), Vec::new());
    for src_port in 41000..41200 {
        match maglev(src_port) {
            Some((e, how)) if how == "maglev" && *e.ip() == a.ip => to_a.push(src_port),
            Some((e, how)) if how == "maglev" && *e.ip() == b.ip => to_b.push(src_port),
            other => panic!("source port {src_port} traced as {other:?}"),
        }
        if to_a.len() >= 2 && to_b.len() >= 2 {
            break;
        }
    }
    assert!(to_a.len() >= 2 && to_b.len() >= 2, "{to_a:?} {to_b:?}");

    let ask = |src_port: u16| {
        udp_ask_from(&client.ns, src_port, svc.vip(), 3, Duration::from_secs(1))
            .unwrap_or_else(|e| panic!("from port {src_port}: {e}"))
            .backend
    };
    assert_eq!(
        ask(to_a[0]),
        "a",
        "the first flow goes where Maglev sends it"
    );
    assert_eq!(
        ask(to_b[0]),
        "a",
        "a flow Maglev sends to b stays on a while the affinity holds"
    );
    // The affinity runs out TIMEOUT_SECS after the last new flow.
    std::thread::sleep(Duration::from_millis(u64::from(TIMEOUT_SECS) * 1000 + 1000));
    assert_eq!(
        maglev(to_b[1]).map(|(_, how)| how).as_deref(),
        Some("maglev"),
        "the trace no longer sees the affinity"
    );
    assert_eq!(
        ask(to_b[1]),
        "b",
        "after the timeout, Maglev's choice moves the client"
    );
    assert_eq!(
        ask(to_a[1]),
        "b",
        "and the client is now pinned to b, even for a flow Maglev sends to a"
    );
}
