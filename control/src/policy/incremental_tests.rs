//! The incremental policy compiler against itself from scratch: random sequences of changes
//! to policies, namespaces, pods and attachments, each followed by `settle`, must leave the
//! specs a fresh compile of the same objects gives, and `settle` must report exactly the
//! ports whose spec changed.

use super::*;
use crate::testkit;
use podswitch_k8s::k8s_openapi::api::core::v1::Pod;
use serde_json::json;
use std::collections::BTreeMap;

/// xorshift64*: deterministic, so a failure reproduces from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

const NAMESPACES: [&str; 3] = ["a", "b", "c"];
const PODS: usize = 12;
const POLICIES: usize = 8;

fn pod_namespace(i: usize) -> &'static str {
    NAMESPACES[i % NAMESPACES.len()]
}

fn random_labels(rng: &mut Rng) -> serde_json::Value {
    let mut labels = serde_json::Map::new();
    if rng.chance(80) {
        labels.insert("app".into(), rng.pick(&["x", "y", "z"]).into());
    }
    if rng.chance(50) {
        labels.insert("tier".into(), rng.pick(&["1", "2"]).into());
    }
    serde_json::Value::Object(labels)
}

fn random_pod(rng: &mut Rng, i: usize) -> Pod {
    let mut spec = json!({"containers": [{"name": "c"}]});
    if rng.chance(60) {
        let port = if rng.chance(50) { 80 } else { 8080 };
        spec["containers"][0]["ports"] = json!([{"name": "http", "containerPort": port}]);
    }
    if rng.chance(10) {
        spec["hostNetwork"] = json!(true);
    }
    let mut status = json!({"podIP": format!("10.244.2.{}", 10 + i + 20 * rng.below(2))});
    if rng.chance(10) {
        status["phase"] = json!("Succeeded");
    }
    serde_json::from_value(json!({
        "metadata": {"name": format!("p{i}"), "namespace": pod_namespace(i),
                     "labels": random_labels(rng)},
        "spec": spec, "status": status}))
    .unwrap()
}

fn random_selector(rng: &mut Rng) -> serde_json::Value {
    match rng.below(4) {
        0 => json!({}),
        1 => json!({"matchLabels": {"app": rng.pick(&["x", "y", "z"])}}),
        2 => json!({"matchExpressions": [{"key": "tier", "operator": "In",
                                         "values": [rng.pick(&["1", "2"])]}]}),
        _ => json!({"matchExpressions": [{"key": "app", "operator": "NotIn",
                                         "values": [rng.pick(&["x", "y"])]}]}),
    }
}

fn random_peers(rng: &mut Rng) -> serde_json::Value {
    let mut peers = Vec::new();
    for _ in 0..rng.below(3) {
        peers.push(match rng.below(4) {
            0 => json!({"podSelector": random_selector(rng)}),
            1 => json!({"namespaceSelector":
                        {"matchLabels": {"team": rng.pick(&["red", "blue"])}}}),
            2 => json!({"namespaceSelector": random_selector(rng),
                        "podSelector": random_selector(rng)}),
            _ => json!({"ipBlock": {"cidr": "10.244.0.0/16", "except": ["10.244.2.0/24"]}}),
        });
    }
    json!(peers)
}

fn random_ports(rng: &mut Rng) -> serde_json::Value {
    match rng.below(3) {
        0 => json!([]),
        1 => json!([{"port": 80 + rng.below(2)}]),
        _ => json!([{"port": "http"}, {"port": 53, "protocol": "UDP"}]),
    }
}

fn random_policy(rng: &mut Rng, i: usize) -> NetworkPolicy {
    let mut spec = json!({"podSelector": random_selector(rng)});
    if rng.chance(80) {
        spec["ingress"] = json!([{"from": random_peers(rng), "ports": random_ports(rng)}]);
    }
    if rng.chance(50) {
        spec["egress"] = json!([{"to": random_peers(rng), "ports": random_ports(rng)}]);
    }
    if rng.chance(30) {
        spec["policyTypes"] = json!(["Ingress", "Egress"]);
    }
    serde_json::from_value(json!({
        "metadata": {"name": format!("q{i}"), "namespace": rng.pick(&NAMESPACES)},
        "spec": spec}))
    .unwrap()
}

fn record(i: usize) -> PodRecord {
    let mut r = testkit::pod(&format!("c{i}"), [10, 244, 1, 10 + i as u8]);
    r.namespace = pod_namespace(i).into();
    r.name = format!("p{i}");
    r
}

/// The objects as they stand, for the from-scratch compile.
#[derive(Default)]
struct World {
    policies: BTreeMap<String, NetworkPolicy>,
    namespaces: BTreeMap<String, Namespace>,
    pods: BTreeMap<usize, Pod>,
    attached: BTreeMap<usize, PodRecord>,
}

impl World {
    fn compiled_from_scratch(&self) -> BTreeMap<String, PolicySpec> {
        let objects = PolicyObjects {
            policies: self.policies.values().cloned().collect(),
            namespaces: self.namespaces.values().cloned().collect(),
            pods: self.pods.values().cloned().collect(),
        };
        let records: Vec<&PodRecord> = self.attached.values().collect();
        by_port(compile_policies(&objects, &records))
    }
}

/// One random change, made to both the engine and the world.
fn change(rng: &mut Rng, engine: &mut PolicyEngine, world: &mut World) {
    match rng.below(8) {
        0 | 1 => {
            let i = rng.below(POLICIES);
            let p = random_policy(rng, i);
            let name = p.metadata.name.clone().unwrap();
            // A policy keeps its name's namespace for this test's bookkeeping: delete first.
            if let Some(old) = world.policies.remove(&name) {
                let ns = old.metadata.namespace.clone().unwrap();
                engine.remove_policy(&ns, &name);
            }
            engine.put_policy(Arc::new(p.clone()));
            world.policies.insert(name, p);
        }
        2 => {
            let name = format!("q{}", rng.below(POLICIES));
            if let Some(old) = world.policies.remove(&name) {
                engine.remove_policy(old.metadata.namespace.as_deref().unwrap(), &name);
            }
        }
        3 => {
            let name = rng.pick(&NAMESPACES);
            if rng.chance(80) {
                let labels: BTreeMap<String, String> = if rng.chance(70) {
                    [("team".to_string(), rng.pick(&["red", "blue"]).to_string())].into()
                } else {
                    BTreeMap::new()
                };
                let ns: Namespace = serde_json::from_value(json!({
                    "metadata": {"name": name, "labels": labels}}))
                .unwrap();
                engine.put_namespace(name, Some(labels));
                world.namespaces.insert(name.into(), ns);
            } else {
                engine.put_namespace(name, None);
                world.namespaces.remove(name);
            }
        }
        4 | 5 => {
            let i = rng.below(PODS);
            let pod = random_pod(rng, i);
            engine.put_pod(Arc::new(pod.clone()));
            world.pods.insert(i, pod);
        }
        6 => {
            let i = rng.below(PODS);
            if world.pods.remove(&i).is_some() {
                engine.remove_pod(pod_namespace(i), &format!("p{i}"));
            }
        }
        _ => {
            let i = rng.below(PODS);
            if world.attached.remove(&i).is_some() {
                engine.remove_attachment(&record(i).key());
            } else {
                engine.put_attachment(&record(i));
                world.attached.insert(i, record(i));
            }
        }
    }
}

#[test]
fn incremental_compiles_equal_compiles_from_scratch_over_random_changes() {
    for seed in 1..=30u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        // Every third run takes the recompile-everything way on every change.
        let mut engine = if seed % 3 == 0 {
            PolicyEngine::recompiling_all()
        } else {
            PolicyEngine::default()
        };
        let mut world = World::default();
        let mut specs: BTreeMap<String, PolicySpec> = BTreeMap::new();
        for step in 0..150 {
            for _ in 0..=rng.below(3) {
                change(&mut rng, &mut engine, &mut world);
            }
            for (port, spec) in engine.settle() {
                assert_ne!(
                    specs.get(&port),
                    spec.as_ref(),
                    "seed {seed} step {step}: {port} reported unchanged"
                );
                match spec {
                    Some(s) => specs.insert(port, s),
                    None => specs.remove(&port),
                };
            }
            let expected = world.compiled_from_scratch();
            assert_eq!(
                engine.specs(),
                &expected,
                "seed {seed} step {step}: engine state"
            );
            assert_eq!(specs, expected, "seed {seed} step {step}: reported changes");
        }
    }
}

#[test]
fn a_label_change_recompiles_only_the_policies_that_can_select_the_pod() {
    // Two policies isolate x/a; only the one admitting app=b pods is affected by x/b's label.
    let mut engine = PolicyEngine::default();
    let pod = |name: &str, app: &str| -> Arc<Pod> {
        Arc::new(
            serde_json::from_value(json!({"metadata": {"name": name, "namespace": "x",
                                                      "labels": {"app": app}},
                                         "status": {"podIP": "10.244.2.7"}}))
            .unwrap(),
        )
    };
    let policy = |name: &str, from_app: &str| -> Arc<NetworkPolicy> {
        Arc::new(
            serde_json::from_value(json!({"metadata": {"name": name, "namespace": "x"},
                "spec": {"podSelector": {"matchLabels": {"app": "a"}},
                         "ingress": [{"from": [{"podSelector":
                                                {"matchLabels": {"app": from_app}}}]}]}}))
            .unwrap(),
        )
    };
    let mut a = record(0);
    a.namespace = "x".into();
    a.name = "a".into();
    engine.put_attachment(&a);
    engine.put_pod(pod("a", "a"));
    engine.put_pod(pod("b", "b"));
    engine.put_policy(policy("from-b", "b"));
    engine.put_policy(policy("from-c", "c"));
    assert_eq!(engine.settle().len(), 1);
    let before = engine.specs()[&a.port].clone();
    engine.put_pod(pod("b", "c"));
    let changed = engine.settle();
    assert_eq!(changed.len(), 1, "x/a's spec changed");
    let after = engine.specs()[&a.port].clone();
    assert_ne!(before, after);
    assert_eq!(
        engine.recompiled_last(),
        2,
        "from-b and from-c, not unrelated policies"
    );
    engine.put_pod(pod("b", "d"));
    engine.settle();
    assert_eq!(
        engine.recompiled_last(),
        1,
        "only from-c could select x/b (app=c)"
    );
}
