//! Control's publish latency at scale (issues 14 and 15), end to end: the real control code
//! (`Control::apply` of manifests → store → compile → diff → socket) against a real
//! `podswitchd` on its unix socket, timed until the dataplane answers with the new generation.
//! An ignored timing (meaningful in release only; ~1–2 min, most of it creating 10k taps):
//!
//! ```sh
//! sudo -E cargo test --release -p podswitch-tests --test it -- --ignored control_publish \
//!     --nocapture --test-threads 1
//! ```
//!
//! Pods: 10 000 Pod objects; the first `PODSWITCH_BENCH_LOCAL_PODS` (default 1000) run on this
//! node, the others elsewhere (their `status.podIP` is all control knows of them, as for any
//! remote pod). The local ones are attachments written to control's store as CNI ADD leaves
//! them (records plus IPAM), in batches of 250 per push, each a real tap port of `podswitchd`,
//! all in one shared namespace under distinct interface names (`p0`, `p1`, …): the least
//! artificial way to have many pod ports without as many namespaces. The only step skipped is
//! configuring addresses and routes inside the pods (`NoAddressing`, a `PodNetwork` that does
//! nothing): many interfaces in one namespace cannot each have a default route, and no packet
//! is sent here. Creating a tap costs ~10–50 ms here (more under load), so 10k local pods take
//! minutes to set up; a real node runs ~110.
//!
//! Each step prints its wall time split into control (manifest parsing, store, compile, diff:
//! everything but the request), the request's JSON encoding (measured by encoding the same
//! transaction once more, outside the timing) and the rest of the request's round trip (socket
//! transfer plus `podswitchd`'s decoding, compiling and publishing: it answers once the new
//! tables are published).

use podswitch_control::config::ControlConfig;
use podswitch_control::dataplane::{Dataplane, DataplaneError, SocketDataplane};
use podswitch_control::podnet::{PodNetError, PodNetwork};
use podswitch_control::store::{PodRecord, Store};
use podswitch_control::Control;
use podswitch_proto::{PortInfo, Status, Transaction};
use podswitch_tests::{root_or_skip, Netns, Node};
use serde_json::json;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const SERVICES: usize = 10_000;
const ENDPOINTS_PER_SLICE: usize = 10;
const PODS: usize = 10_000;
/// Attachments per push while setting up (each push creates that many taps).
const ATTACH_BATCH: usize = 250;
/// Pods per `group` label value; a policy admits one group, so a pod's group change
/// touches the policies of two groups (`2 × GROUP_SIZE`), whatever the scale.
const GROUP_SIZE: usize = 10;
const NAMESPACES: usize = 100;

/// What one `apply` to the dataplane cost, seen from control.
#[derive(Debug, Default, Clone)]
struct Request {
    ops: usize,
    replace: bool,
    bytes: usize,
    encode: Duration,
    round_trip: Duration,
}

/// The socket client, timed.
struct Timed {
    inner: SocketDataplane,
    log: Arc<Mutex<Vec<Request>>>,
}

impl Dataplane for Timed {
    fn status(&mut self) -> Result<Status, DataplaneError> {
        self.inner.status()
    }
    fn apply(&mut self, tx: &Transaction) -> Result<u64, DataplaneError> {
        let started = Instant::now();
        let bytes = serde_json::to_vec(tx).map(|b| b.len()).unwrap_or(0);
        let encode = started.elapsed();
        let started = Instant::now();
        let result = self.inner.apply(tx);
        let round_trip = started.elapsed();
        self.log.lock().unwrap().push(Request {
            ops: tx.ops.len(),
            replace: tx.replace,
            bytes,
            encode,
            round_trip,
        });
        result
    }
    fn ports(&mut self) -> Result<Vec<PortInfo>, DataplaneError> {
        self.inner.ports()
    }
}

/// Pods' namespaces exist; their addressing is not configured (see the module doc).
struct NoAddressing;

impl PodNetwork for NoAddressing {
    fn netns_exists(&self, netns: &str) -> bool {
        std::path::Path::new(netns).exists()
    }
    fn configure(&self, _: &PodRecord, _: Ipv4Addr) -> Result<(), PodNetError> {
        Ok(())
    }
    fn check(&self, _: &PodRecord, _: Ipv4Addr) -> Result<(), PodNetError> {
        Ok(())
    }
    fn remove(&self, _: &PodRecord, _: &str) -> Result<bool, PodNetError> {
        Ok(false)
    }
}

struct Bench {
    control: Control,
    store: Arc<Store>,
    log: Arc<Mutex<Vec<Request>>>,
}

impl Bench {
    /// Runs `step` (which pushes), prints its time split, returns the wall time.
    fn time(&self, what: &str, step: impl FnOnce()) -> Duration {
        self.log.lock().unwrap().clear();
        let started = Instant::now();
        step();
        let wall = started.elapsed();
        let requests = std::mem::take(&mut *self.log.lock().unwrap());
        let encode: Duration = requests.iter().map(|r| r.encode).sum();
        let round_trip: Duration = requests.iter().map(|r| r.round_trip).sum();
        let control = wall.saturating_sub(encode + round_trip);
        let shape: Vec<String> = requests
            .iter()
            .map(|r| {
                format!(
                    "{} of {} ops, {} KB",
                    if r.replace { "replace" } else { "diff" },
                    r.ops,
                    r.bytes / 1024
                )
            })
            .collect();
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        println!(
            "control_publish: {what}: {:.1} ms = control {:.1} + JSON encoding {:.1} + socket and \
             podswitchd {:.1} ({})",
            ms(wall),
            ms(control),
            ms(encode),
            ms(round_trip - encode.min(round_trip)),
            shape.join("; ")
        );
        // Every step ends with the dataplane at control's generation.
        let generation = self.store.read().unwrap().generation().unwrap();
        let status = self.control.sync().dataplane_status().unwrap();
        assert_eq!(status.generation, generation, "{what}: not published");
        wall
    }

    /// Applies a manifest written by [`manifest`] (outside the timing: writing 20k documents
    /// is the client's work, not control's).
    fn apply(&self, manifest: &str) {
        let summary = self.control.apply(manifest).unwrap();
        let warnings: Vec<&String> = summary
            .iter()
            .filter(|l| l.starts_with("Warning"))
            .collect();
        assert!(warnings.is_empty(), "{warnings:?}");
    }
}

/// The documents as one multi-document manifest, as `podswitchctl apply -f` sends it.
fn manifest(docs: &[serde_json::Value]) -> String {
    let text: Vec<String> = docs.iter().map(|d| d.to_string()).collect();
    text.join("\n---\n")
}

fn namespace(i: usize) -> String {
    format!("ns{}", i % NAMESPACES)
}

fn service(i: usize) -> serde_json::Value {
    let [_, _, a, b] = u32::try_from(10 + i).unwrap().to_be_bytes();
    json!({"apiVersion": "v1", "kind": "Service",
           "metadata": {"name": format!("svc{i}"), "namespace": namespace(i)},
           "spec": {"clusterIP": format!("10.96.{a}.{b}"),
                    "ports": [{"name": "http", "port": 80, "targetPort": 8080,
                               "protocol": "TCP"}]}})
}

/// Service `i`'s slice; `shift` moves its endpoints (a changed slice).
fn slice(i: usize, shift: usize) -> serde_json::Value {
    let endpoints: Vec<serde_json::Value> = (0..ENDPOINTS_PER_SLICE)
        .map(|k| {
            let j = u32::try_from(i * ENDPOINTS_PER_SLICE + k + shift).unwrap();
            let [_, a, b, c] = j.to_be_bytes();
            json!({"addresses": [format!("10.{}.{b}.{c}", 128 + a)],
                   "conditions": {"ready": true}, "nodeName": "elsewhere",
                   "targetRef": {"kind": "Pod", "name": format!("backend{j}"),
                                 "namespace": namespace(i)}})
        })
        .collect();
    json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
           "metadata": {"name": format!("svc{i}-abcde"), "namespace": namespace(i),
                        "labels": {"kubernetes.io/service-name": format!("svc{i}")}},
           "addressType": "IPv4",
           "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
           "endpoints": endpoints})
}

/// Pod `i`'s address: local pods' from this node's CIDR, the others' from another node's.
fn pod_ip(i: usize, local: usize) -> Ipv4Addr {
    let base = if i < local {
        Ipv4Addr::new(10, 200, 0, 2)
    } else {
        Ipv4Addr::new(10, 201, 0, 2)
    };
    Ipv4Addr::from(u32::from(base) + u32::try_from(i).unwrap())
}

fn pod(i: usize, group: usize, local: usize) -> serde_json::Value {
    let mut pod = json!({"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": format!("pod{i}"), "namespace": namespace(i),
                        "labels": {"app": format!("pod{i}"), "group": format!("g{group}")}},
           "spec": {"containers": [{"name": "c", "image": "busybox",
                                    "ports": [{"name": "http", "containerPort": 80}]}]}});
    if i >= local {
        pod["spec"]["nodeName"] = json!("elsewhere");
        pod["status"] = json!({"phase": "Running", "podIP": pod_ip(i, local).to_string(),
                               "podIPs": [{"ip": pod_ip(i, local).to_string()}]});
    }
    pod
}

/// Policy `i` isolates pod `i` for ingress and admits group `i + 1`'s pods, from any
/// namespace, on TCP 80.
fn policy(i: usize) -> serde_json::Value {
    let groups = PODS / GROUP_SIZE;
    json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
           "metadata": {"name": format!("p{i}"), "namespace": namespace(i)},
           "spec": {"podSelector": {"matchLabels": {"app": format!("pod{i}")}},
                    "ingress": [{"from": [{"namespaceSelector": {},
                                           "podSelector": {"matchLabels":
                                               {"group": format!("g{}", (i + 1) % groups)}}}],
                                 "ports": [{"port": 80, "protocol": "TCP"}]}]}})
}

#[test]
#[ignore = "a timing at 10k scale: run in release (see the module doc)"]
fn control_publish_at_ten_thousand() {
    if !root_or_skip("control_publish_at_ten_thousand") {
        return;
    }
    let node = Node::bare(&[]);
    let pods_ns = Netns::new("pswb");
    let state = node.dir().join("control-state");
    let settings = ControlConfig {
        node_name: "bench".into(),
        pod_cidr: Some("10.200.0.0/16".parse().unwrap()),
        state_dir: state.clone(),
        dataplane_socket: node.socket.clone(),
        socket: node.dir().join("control.sock"),
        resync_interval_ms: 3_600_000,
        ..Default::default()
    }
    .settings()
    .unwrap();
    let store = Arc::new(Store::open(&state).unwrap());
    let log = Arc::new(Mutex::new(Vec::new()));
    let dataplane = Timed {
        inner: SocketDataplane::new(&node.socket),
        log: log.clone(),
    };
    let control = Control::start(
        settings.clone(),
        store.clone(),
        Box::new(dataplane),
        Arc::new(NoAddressing),
    );
    control.sync().push_now().unwrap();
    let bench = Bench {
        control,
        store: store.clone(),
        log,
    };

    // The attachments, as CNI ADD stores them.
    let local: usize = std::env::var("PODSWITCH_BENCH_LOCAL_PODS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000)
        .min(PODS);
    let netns = pods_ns.path().display().to_string();
    let attach = |range: std::ops::Range<usize>| {
        store
            .write(|tx| -> Result<(), podswitch_control::store::StoreError> {
                for i in range {
                    let ip = pod_ip(i, local);
                    let container = format!("c{i:05}");
                    let ifname = format!("p{i}");
                    let record = PodRecord {
                        port: podswitch_control::compile::port_name(
                            &podswitch_control::store::attachment_key(&container, &ifname),
                        ),
                        container_id: container,
                        ifname,
                        netns: netns.clone(),
                        namespace: namespace(i),
                        name: format!("pod{i}"),
                        uid: String::new(),
                        ip,
                        mac: podswitch_control::compile::pod_mac(ip),
                        mtu: None,
                        offloads: true,
                        attachment: Default::default(),
                        pending: false,
                        deleting: false,
                    };
                    tx.allocate_ip(ip, &record.key())?;
                    tx.put_pod(&record)?;
                }
                tx.bump_generation()?;
                Ok(())
            })
            .unwrap();
        bench.control.sync().push_now().unwrap();
    };
    bench.time(&format!("attach {local} local pods (tap ports)"), || {
        for first in (0..local).step_by(ATTACH_BATCH) {
            attach(first..(first + ATTACH_BATCH).min(local));
        }
    });

    let mut docs: Vec<serde_json::Value> = (0..SERVICES).map(service).collect();
    docs.extend((0..SERVICES).map(|i| slice(i, 0)));
    let text = manifest(&docs);
    bench.time(
        &format!(
            "apply {SERVICES} Services + EndpointSlices ({} endpoints)",
            SERVICES * ENDPOINTS_PER_SLICE
        ),
        || bench.apply(&text),
    );
    let rounds: usize = std::env::var("PODSWITCH_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    for round in 1..=rounds {
        let text = manifest(&[slice(SERVICES / 2, round)]);
        bench.time(&format!("one EndpointSlice changed (#{round})"), || {
            bench.apply(&text)
        });
    }

    let docs: Vec<serde_json::Value> = (0..PODS).map(|i| pod(i, i / GROUP_SIZE, local)).collect();
    let text = manifest(&docs);
    bench.time(&format!("apply {PODS} Pods ({local} local)"), || {
        bench.apply(&text)
    });
    let docs: Vec<serde_json::Value> = (0..PODS).map(policy).collect();
    let text = manifest(&docs);
    bench.time(
        &format!("apply {PODS} NetworkPolicies over {PODS} pods ({local} local)"),
        || bench.apply(&text),
    );
    let groups = PODS / GROUP_SIZE;
    for round in 1..=rounds {
        // Pod 5 moves group: the policies admitting its old and its new group change.
        let group = (5 / GROUP_SIZE + round) % groups;
        let text = manifest(&[pod(5, group, local)]);
        bench.time(&format!("one pod's label changed (#{round})"), || {
            bench.apply(&text)
        });
    }
    drop(bench);
}
