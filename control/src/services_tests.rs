//! Tests of `services.rs`: compiling manifests as a user applies them, and apply end to end.

use super::*;
use crate::testkit::{self, Harness};
use podswitch_k8s::{parse_manifests, Object};

fn objects(yaml: &str) -> ServiceObjects {
    let mut out = ServiceObjects::default();
    for o in parse_manifests(yaml).unwrap() {
        match o {
            Object::Service(s) => out.services.push(s),
            Object::EndpointSlice(s) => out.slices.push(s),
            Object::Endpoints(e) => out.endpoints.push(e),
            _ => {}
        }
    }
    out
}

fn compile(yaml: &str) -> Vec<ServiceSpec> {
    compile_services(&testkit::settings(), &objects(yaml))
}

const WEB: &str = "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: shop}\nspec:\n  clusterIP: 10.96.0.10\n  ports:\n  - {name: http, port: 80, targetPort: web}\n  - {name: dns, port: 53, protocol: UDP}\n";

const SLICE: &str = "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: web-a, namespace: shop, labels: {kubernetes.io/service-name: web}}\naddressType: IPv4\nports:\n- {name: http, port: 8080}\nendpoints:\n- addresses: [10.244.1.5]\n  nodeName: n1\n  targetRef: {kind: Pod, name: web-0}\n- addresses: [10.244.2.7]\n  nodeName: n2\n  conditions: {ready: false, serving: true, terminating: true}\n";

#[test]
fn named_ports_resolve_per_endpoint_and_conditions_default_as_kubernetes_says() {
    let specs = compile(&format!("{WEB}---\n{SLICE}"));
    let names: Vec<_> = specs.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["shop/web:dns", "shop/web:http"]);
    let http = &specs[1];
    assert_eq!(http.frontends.len(), 1);
    assert_eq!(http.frontends[0].ip, Ipv4Addr::new(10, 96, 0, 10));
    let b = &http.backends;
    assert_eq!(b.len(), 2);
    assert_eq!((b[0].ip, b[0].port), (Ipv4Addr::new(10, 244, 1, 5), 8080));
    assert!(b[0].ready && b[0].serving && !b[0].terminating && b[0].local);
    assert_eq!(b[0].target.as_deref(), Some("shop/web-0"));
    assert!(!b[1].ready && b[1].serving && b[1].terminating && !b[1].local);
    // The slice has no "dns" port: the numeric targetPort (default: port) is used.
    assert_eq!(specs[0].protocol, L4Protocol::Udp);
    assert_eq!(specs[0].backends.len(), 2);
    assert!(specs[0].backends.iter().all(|b| b.port == 53));
    // A named targetPort with no slice port of that name cannot be resolved.
    let unnamed_slice = SLICE.replace("name: http, ", "name: other, ");
    assert!(compile(&format!("{WEB}---\n{unnamed_slice}"))[1]
        .backends
        .is_empty());
}

#[test]
fn legacy_endpoints_are_used_only_without_a_slice() {
    let legacy = "apiVersion: v1\nkind: Endpoints\nmetadata: {name: web, namespace: shop}\nsubsets:\n- addresses: [{ip: 10.244.3.1}]\n  notReadyAddresses: [{ip: 10.244.3.2}]\n  ports: [{name: http, port: 9090}]\n";
    let specs = compile(&format!("{WEB}---\n{legacy}"));
    let http = &specs[1].backends;
    assert_eq!(http.len(), 2);
    assert_eq!((http[0].port, http[0].ready), (9090, true));
    assert_eq!(
        (http[1].port, http[1].ready, http[1].serving),
        (9090, false, false)
    );
    let with_slice = compile(&format!("{WEB}---\n{legacy}---\n{SLICE}"));
    assert_eq!(with_slice[1].backends[0].port, 8080, "the slice wins");
}

#[test]
fn headless_and_external_name_services_compile_to_nothing() {
    let headless = "apiVersion: v1\nkind: Service\nmetadata: {name: h}\nspec:\n  clusterIP: None\n  ports: [{port: 80}]\n";
    let external = "apiVersion: v1\nkind: Service\nmetadata: {name: e}\nspec:\n  type: ExternalName\n  externalName: example.com\n";
    assert!(compile(&format!("{headless}---\n{external}")).is_empty());
}

#[test]
fn node_port_load_balancer_and_external_ips_are_frontends() {
    let lb = "apiVersion: v1\nkind: Service\nmetadata: {name: lb}\nspec:\n  type: LoadBalancer\n  clusterIP: 10.96.0.20\n  externalIPs: [192.0.2.1]\n  ports: [{port: 80, nodePort: 30080}]\n  externalTrafficPolicy: Local\n  internalTrafficPolicy: Local\nstatus:\n  loadBalancer: {ingress: [{ip: 198.51.100.1}]}\n";
    let specs = compile(lb);
    assert_eq!(specs.len(), 1);
    assert_eq!(
        specs[0].name, "default/lb",
        "an unnamed port is the Service's name"
    );
    let f: Vec<_> = specs[0]
        .frontends
        .iter()
        .map(|f| (f.kind, f.ip.to_string(), f.port))
        .collect();
    assert_eq!(
        f,
        [
            (FrontendKind::ClusterIp, "10.96.0.20".into(), 80),
            (FrontendKind::ExternalIp, "192.0.2.1".into(), 80),
            (FrontendKind::LoadBalancer, "198.51.100.1".into(), 80),
            (FrontendKind::NodePort, "0.0.0.0".into(), 30080),
        ]
    );
    assert!(specs[0].internal_local && specs[0].external_local);
}

#[test]
fn client_ip_affinity_defaults_to_three_hours_and_the_algorithm_annotation_is_read() {
    let svc = "apiVersion: v1\nkind: Service\nmetadata: {name: a, annotations: {podswitch.io/lb-algorithm: random}}\nspec:\n  clusterIP: 10.96.0.30\n  sessionAffinity: ClientIP\n  ports: [{port: 80}]\n";
    let specs = compile(svc);
    assert_eq!(specs[0].affinity_timeout_secs, Some(10_800));
    assert_eq!(specs[0].algorithm, Algorithm::Random);
    let plain = compile(
        &svc.replace("sessionAffinity: ClientIP\n  ", "")
            .replace("random", "x"),
    );
    assert_eq!(plain[0].affinity_timeout_secs, None);
    assert_eq!(plain[0].algorithm, Algorithm::Maglev);
}

#[test]
fn sctp_and_clusterips_this_node_cannot_serve_are_refused_with_state_intact() {
    let h = Harness::new();
    h.c().apply(WEB).unwrap();
    let before = h.store().read().unwrap().objects().unwrap();
    let sctp = WEB.replace("protocol: UDP", "protocol: SCTP");
    let err = h.c().apply(&sctp).unwrap_err();
    assert_eq!(
        err.message,
        "service shop/web: spec.ports[1].protocol: SCTP is not supported by podswitch (TCP and UDP only)"
    );
    let outside = h
        .c()
        .apply(&WEB.replace("10.96.0.10", "192.168.0.1"))
        .unwrap_err();
    assert!(
        outside
            .message
            .contains("spec.clusterIP: 192.168.0.1 is outside the service CIDR"),
        "{outside}"
    );
    let reserved = h
        .c()
        .apply(&WEB.replace("10.96.0.10", "10.111.255.254"))
        .unwrap_err();
    assert!(reserved.message.contains("is reserved"), "{reserved}");
    assert_eq!(h.store().read().unwrap().objects().unwrap(), before);
    assert_eq!(h.dp.state().services.len(), 2);
}

#[test]
fn an_endpoint_slice_change_is_pushed_as_exactly_one_set_service() {
    let h = Harness::new();
    let web = WEB.replace("  - {name: dns, port: 53, protocol: UDP}\n", "");
    h.c().apply(&format!("{web}---\n{SLICE}")).unwrap();
    assert_eq!(h.dp.state().services.len(), 1);
    let pushes = h.dp.state().applied.len();
    h.c()
        .apply(&SLICE.replace("10.244.1.5", "10.244.1.6"))
        .unwrap();
    let dp = h.dp.state();
    assert_eq!(dp.applied.len(), pushes + 1);
    let last = dp.applied.last().unwrap();
    assert!(!last.replace);
    assert_eq!(last.ops.len(), 1);
    assert!(
        matches!(&last.ops[0], podswitch_proto::Op::SetService(s) if s.name == "shop/web:http")
    );
    assert_eq!(
        dp.services["shop/web:http"].backends[0].ip,
        Ipv4Addr::new(10, 244, 1, 6)
    );
    drop(dp);
    // Deleting the Service goes as a del_service; a restarted dataplane gets a replace.
    h.c().delete(&web).unwrap();
    assert!(!h.dp.state().applied.last().unwrap().replace);
    assert!(h.dp.state().services.is_empty());
    h.dp.state().restart();
    h.c().sync().push_now().unwrap();
    assert!(h.dp.state().applied.last().unwrap().replace);
}
