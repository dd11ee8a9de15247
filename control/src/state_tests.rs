//! The incremental state against a load from scratch: random sequences of store writes
//! (attachments and objects of every kind that programs the dataplane), each followed by
//! `update` from the change feed, must leave the configuration a fresh load gives, and the
//! incremental push must be exactly the diff of the whole configurations.

use super::*;
use crate::desired::diff;
use crate::store::Store;
use crate::testkit::{self, FakePodNetwork};
use serde_json::json;

struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n as u64) as usize
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

const PODS: usize = 8;

fn record(rng: &mut Rng, i: usize) -> PodRecord {
    let mut r = testkit::pod(&format!("c{i}"), [10, 244, 1, 10 + i as u8]);
    r.namespace = rng.pick(&["a", "b"]).into();
    r.name = format!("p{i}");
    r.deleting = rng.below(8) == 0;
    r.mtu = (rng.below(4) == 0).then_some(1400);
    r
}

/// A random object of a kind that programs the dataplane, as `(key, json)`.
fn object(rng: &mut Rng) -> (String, String) {
    let ns = rng.pick(&["a", "b"]);
    let app = rng.pick(&["x", "y"]);
    let (key, value) = match rng.below(6) {
        0 => {
            let name = rng.pick(&["web", "db"]);
            let ip = format!("10.96.0.{}", 10 + rng.below(3));
            (
                format!("service {ns}/{name}"),
                json!({"metadata": {"name": name, "namespace": ns},
                       "spec": {"clusterIP": ip, "ports": [
                           {"name": "http", "port": 80, "targetPort": 8080}]}}),
            )
        }
        1 => {
            let name = rng.pick(&["s1", "s2", "s3"]);
            let service = rng.pick(&["web", "db"]);
            let ip = format!("10.244.2.{}", rng.below(4));
            (
                format!("endpointslice {ns}/{name}"),
                json!({"metadata": {"name": name, "namespace": ns,
                                    "labels": {"kubernetes.io/service-name": service}},
                       "addressType": rng.pick(&["IPv4", "IPv4", "IPv6"]),
                       "ports": [{"name": "http", "port": 8080 + rng.below(2)}],
                       "endpoints": [{"addresses": [ip]}]}),
            )
        }
        2 => {
            let name = rng.pick(&["web", "db"]);
            (
                format!("endpoints {ns}/{name}"),
                json!({"metadata": {"name": name, "namespace": ns},
                       "subsets": [{"addresses": [{"ip": "10.244.3.1"}],
                                    "ports": [{"name": "http", "port": 9090}]}]}),
            )
        }
        3 => {
            let name = rng.pick(&["q1", "q2"]);
            (
                format!("networkpolicy {ns}/{name}"),
                json!({"metadata": {"name": name, "namespace": ns},
                       "spec": {"podSelector": {"matchLabels": {"app": app}},
                                "ingress": [{"from": [{"namespaceSelector":
                                    {"matchLabels": {"team": rng.pick(&["red", "blue"])}}}]}]}}),
            )
        }
        4 => (
            format!("namespace {ns}"),
            json!({"metadata": {"name": ns, "labels": {"team": rng.pick(&["red", "blue"])}}}),
        ),
        _ => {
            let name = format!("p{}", rng.below(PODS));
            (
                format!("pod {ns}/{name}"),
                json!({"metadata": {"name": name, "namespace": ns, "labels": {"app": app}},
                       "status": {"podIP": format!("10.244.4.{}", rng.below(9))}}),
            )
        }
    };
    (key, value.to_string())
}

/// The object the manifest parser would have made of `json`, stored under `key` (the test's
/// objects carry no apiVersion or kind: the key says the kind).
fn parsed(key: &str, json: &str) -> Option<podswitch_k8s::Object> {
    use podswitch_k8s::Object;
    let o = match crate::store::object_kind(key)? {
        "service" => Object::Service(serde_json::from_str(json).ok()?),
        "endpointslice" => Object::EndpointSlice(serde_json::from_str(json).ok()?),
        "endpoints" => Object::Endpoints(serde_json::from_str(json).ok()?),
        "networkpolicy" => Object::NetworkPolicy(serde_json::from_str(json).ok()?),
        "namespace" => Object::Namespace(serde_json::from_str(json).ok()?),
        _ => Object::Pod(serde_json::from_str(json).ok()?),
    };
    Some(o)
}

fn load(store: &Store, net: &FakePodNetwork) -> DesiredState {
    let view = store.read().unwrap();
    DesiredState::load(&testkit::settings(), &view, net, &mut |_| {}).unwrap()
}

#[test]
fn updates_from_the_change_feed_equal_a_load_from_scratch_and_push_exactly_the_diff() {
    for seed in 1..=12u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let net = FakePodNetwork::default();
        net.state().missing.insert("/var/run/netns/c3".into());
        let feed = store.subscribe();
        let mut state = load(&store, &net);
        let mut objects: Vec<String> = Vec::new();
        let mut offered = std::collections::HashMap::new();
        state.pushed(Some(1));
        let mut pushed = state.desired().clone();
        for step in 1..=60u64 {
            store
                .write(|tx| -> Result<(), StoreError> {
                    for _ in 0..=rng.below(3) {
                        match rng.below(5) {
                            0 => {
                                let i = rng.below(PODS);
                                let r = record(&mut rng, i);
                                tx.put_pod(&r)?;
                            }
                            1 => {
                                tx.remove_pod(&format!("c{}/eth0", rng.below(PODS)))?;
                            }
                            2 if !objects.is_empty() => {
                                let key = objects.swap_remove(rng.below(objects.len()));
                                tx.remove_object(&key)?;
                            }
                            _ => {
                                let (key, json) = object(&mut rng);
                                tx.put_object(&key, &json)?;
                                // As the manifest handler does (`Syncer::offer`): the parsed
                                // object; now and then one whose JSON is not what was stored,
                                // which must be ignored; sometimes none.
                                let given = match rng.below(4) {
                                    0 => None,
                                    1 => Some(object(&mut rng).1),
                                    _ => Some(json.clone()),
                                };
                                let decoded = given.and_then(|g| {
                                    let o = parsed(&key, &g)?;
                                    Some((g, o))
                                });
                                if let Some((given, o)) = decoded {
                                    let offer = Offered::new(key.clone(), given, o);
                                    offered.insert(key.clone(), offer);
                                }
                                objects.push(key);
                            }
                        }
                    }
                    Ok(())
                })
                .unwrap();
            let changed = feed.take();
            let view = store.read().unwrap();
            state
                .update(&view, &changed, &mut offered, &net, &mut |_| {})
                .unwrap();
            offered.clear();
            let fresh = load(&store, &net);
            assert_eq!(state.desired(), fresh.desired(), "seed {seed} step {step}");
            // `Op` has no `PartialEq`: compare the ops as they go on the wire.
            let json = |ops: Option<Vec<podswitch_proto::Op>>| serde_json::to_value(ops).unwrap();
            assert_eq!(
                json(state.changes(step)),
                json(diff(&pushed, state.desired())),
                "seed {seed} step {step}"
            );
            if rng.below(6) == 0 {
                // A failed push: what the dataplane holds is unknown, so no diff is offered.
                state.pushed(None);
                assert!(state.changes(step).is_none());
                state.pushed(Some(step + 1));
            } else {
                state.pushed(Some(step + 1));
            }
            pushed = state.desired().clone();
        }
    }
}
