//! What `podswitchd` does with the `apply` of 10k new Service ports of 10 endpoints each (the
//! 13.9 MB request of issue 14's scale, `control_publish`'s "apply 10000 Services" step),
//! without the socket, the workers and the kernel: decoding the request, applying its ops to
//! the configuration, compiling the new tables, and all three with the old configuration and
//! request dropped, as the daemon does. Results: BENCHMARKS.md, "Control publish latency".

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use podswitch_benches::services::apply_request_json;
use podswitch_dataplane::daemon::error::PortError;
use podswitch_dataplane::daemon::state::{Changes, Config, CreatedPort, PortFactory};
use podswitch_dataplane::tables::Tables;
use podswitch_dataplane::testkit::GW_MAC;
use podswitch_proto::{Ipv4Prefix, NodeSpec, Op, PortSpec, Request, RequestBody, Transaction};
use std::net::Ipv4Addr;
use std::time::Duration;

const PORTS: usize = 10_000;

/// Service ops create no port.
struct NoPorts;

impl PortFactory for NoPorts {
    fn create(&mut self, _: u16, spec: &PortSpec, _: &NodeSpec) -> Result<CreatedPort, PortError> {
        unreachable!("a Service transaction created port {}", spec.name)
    }
}

/// The node the Service ports are applied to, and its tables.
fn node() -> (Config, Tables) {
    let node = Op::SetNode(NodeSpec {
        pod_cidr: Ipv4Prefix {
            addr: Ipv4Addr::new(10, 244, 1, 0),
            len: 24,
        },
        gateway: Ipv4Addr::new(10, 244, 1, 1),
        gateway_mac: None,
        service_cidr: Some(Ipv4Prefix {
            addr: Ipv4Addr::new(10, 96, 0, 0),
            len: 12,
        }),
        node_port_ip: None,
    });
    let mut config = Config::default();
    if let Err(e) = config.apply(&[node], false, 16, &mut NoPorts) {
        panic!("setting the node: {e}");
    }
    let tables = config.compile(GW_MAC, &Tables::default(), None);
    (config, tables)
}

fn decode(json: &[u8]) -> Request {
    serde_json::from_slice(json).unwrap_or_else(|e| panic!("decoding the request: {e}"))
}

fn transaction(json: &[u8]) -> Transaction {
    match decode(json).body {
        RequestBody::Apply(tx) => tx,
        other => unreachable!("an apply, not {}", other.name()),
    }
}

/// The configuration after `tx`, as the daemon applies it.
fn apply_ops(config: &Config, tx: Transaction) -> (Config, Changes) {
    (config.applied(tx.ops, tx.replace, 16, &mut NoPorts))
        .unwrap_or_else(|e| panic!("applying the Service ports: {e}"))
}

fn apply(c: &mut Criterion) {
    let json = apply_request_json(PORTS);
    let (config, tables) = node();
    let tx = transaction(&json);
    let mut g = c.benchmark_group("podswitchd_apply");
    g.warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5))
        .sample_size(10);
    g.bench_function(format!("decode/ports{PORTS}"), |b| {
        b.iter_batched(|| (), |()| decode(&json), BatchSize::PerIteration)
    });
    // The request is dropped with the ops, as the daemon drops it.
    g.bench_function(format!("ops/ports{PORTS}"), |b| {
        b.iter_batched(
            || tx.clone(),
            |tx| apply_ops(&config, tx),
            BatchSize::PerIteration,
        )
    });
    let (next, _) = apply_ops(&config, tx.clone());
    g.bench_function(format!("compile/ports{PORTS}"), |b| {
        b.iter_batched(
            || (),
            |()| next.compile(GW_MAC, &tables, Some(&config)),
            BatchSize::PerIteration,
        )
    });
    // Decode, apply, compile; the old configuration and tables dropped, as the daemon drops
    // them once the new ones are published.
    g.bench_function(format!("all/ports{PORTS}"), |b| {
        b.iter_batched(
            || (config.clone(), tables.clone()),
            |(config, tables)| {
                let (next, changes) = apply_ops(&config, transaction(&json));
                let compiled = next.compile(GW_MAC, &tables, Some(&config));
                drop((config, tables, changes));
                (next, compiled)
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

criterion_group!(benches, apply);
criterion_main!(benches);
