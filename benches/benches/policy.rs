//! NetworkPolicy: the policy stage for new connections at 10, 1k and 10k rules over 10k pods,
//! beside the same connections with no policy at all; established flows with and without
//! policies (they must pay nothing measurable: their verdict is cached in conntrack); the
//! lookup alone (`Policies::check`); and the cost of compiling the policies of 10k pods, whole
//! and after one pod's label change. Rigs: `benches/src/policy.rs`. Results and method:
//! BENCHMARKS.md, "Issue 15: NetworkPolicy".
//!
//! Bursts are 64 TCP segments from pod A, one flow to each of the 64 server pods (port 80),
//! allowed by pod A's egress and each server's ingress.

use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion, Throughput};
use podswitch_benches::policy::{
    pod_specs, policies, servers, tables_with_policies, ALLOWED_PORT, DENIED_PORT, RULE_SCALES,
};
use podswitch_benches::services::{tcp_from_pod_a, NewConnections, FIRST_PORT, TCP_ACK, TCP_SYN};
use podswitch_benches::{extra_pod_ip, PipelineRig};
use podswitch_dataplane::batch::{Next, PortId};
use podswitch_dataplane::counters::DropReason;
use podswitch_dataplane::pipeline::FlowState;
use podswitch_dataplane::tables::policy::Policies;
use podswitch_dataplane::tables::Tables;
use podswitch_dataplane::testkit::{GW_IP, POD_A, POD_A_IP};
use podswitch_proto::{Ipv4Prefix, PeerBlock, PolicySpec};
use std::hint::black_box;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

type Group<'a> = BenchmarkGroup<'a, criterion::measurement::WallTime>;

const BURST: usize = 64;

fn configure<'a>(c: &'a mut Criterion, name: &str) -> Group<'a> {
    let mut g = c.benchmark_group(name);
    g.warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(20);
    g
}

/// The tables of a variant (`None`: no policy), built once and cloned for every group that
/// needs them: compiling 10k pods' policies is the slow part of the set-up, slowest in the
/// unoptimised test mode CI runs benches in.
fn tables(rules: Option<usize>) -> Tables {
    static BUILT: Mutex<Vec<(Option<usize>, Tables)>> = Mutex::new(Vec::new());
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, t)) = built.iter().find(|(r, _)| *r == rules) {
        return t.clone();
    }
    let t = tables_with_policies(rules);
    built.push((rules, t.clone()));
    t
}

/// `label` and rule count of each variant: no policy (the baseline), then each scale.
fn variants() -> impl Iterator<Item = (String, Option<usize>)> {
    std::iter::once(("none".to_string(), None))
        .chain(RULE_SCALES.map(|r| (format!("rules{r}"), Some(r))))
}

/// One segment pod A → each server on `port`, source ports from `first`.
fn frames(first: u16, port: u16, flags: u8) -> (Vec<Vec<u8>>, Vec<PortId>) {
    servers()
        .into_iter()
        .enumerate()
        .map(|(k, i)| {
            let f = tcp_from_pod_a(first + k as u16, extra_pod_ip(i), port, flags);
            (f, 3 + i as PortId)
        })
        .unzip()
}

/// A rig on `tables` that checks, outside any timing, that the policy stage is really there:
/// with policies, a SYN to a port no rule allows is dropped as `policy_denied`; without, it
/// leaves. So a bench never measures a pipeline that skips the check.
fn assert_policy_enforced(tables: &Tables, with_policies: bool) {
    let (f, outs) = frames(FIRST_PORT, DENIED_PORT, TCP_SYN);
    let mut rig = PipelineRig::new(tables.clone(), POD_A, f, BURST);
    rig.set_flows(FlowState::new(1024, 1024));
    if with_policies {
        rig.assert_verdict(|_| Next::Drop(DropReason::PolicyDenied));
    } else {
        rig.assert_verdict(|i| Next::Output(outs[i]));
    }
}

fn new_connections(c: &mut Criterion) {
    let mut g = configure(c, "policy_new_connections");
    g.throughput(Throughput::Elements(BURST as u64));
    for (label, rules) in variants() {
        let tables = tables(rules);
        assert_policy_enforced(&tables, rules.is_some());
        let (f, outs) = frames(FIRST_PORT, ALLOWED_PORT, TCP_SYN);
        let mut rig = PipelineRig::new(tables, POD_A, f, BURST);
        let mut sweep = NewConnections::start(&mut rig);
        rig.assert_verdict(|i| Next::Output(outs[i]));
        assert_eq!(rig.flows().conntrack.len(), BURST, "64 new connections");
        g.bench_function(format!("syn_64servers/{label}"), |b| {
            b.iter_custom(|iters| sweep.time(&mut rig, iters))
        });
    }
    g.finish();
}

fn established(c: &mut Criterion) {
    let mut g = configure(c, "policy_established");
    g.throughput(Throughput::Elements(BURST as u64));
    for (label, rules) in variants() {
        let tables = tables(rules);
        let (f, outs) = frames(40_000, ALLOWED_PORT, TCP_ACK);
        let mut rig = PipelineRig::new(tables, POD_A, f, BURST);
        rig.set_flows(FlowState::new(1024, 1024));
        // The first burst creates the 64 connections (a non-SYN is picked up as established)
        // and takes their verdicts; the measured ones find them cached.
        rig.assert_verdict(|i| Next::Output(outs[i]));
        rig.assert_verdict(|i| Next::Output(outs[i]));
        g.bench_function(format!("tcp_64flows/{label}"), |b| {
            b.iter(|| rig.refill_and_run())
        });
    }
    g.finish();
}

/// The lookup alone: 64 `Policies::check`s (pod A's egress and a server's ingress each).
fn check(c: &mut Criterion) {
    let mut g = configure(c, "policy_check");
    g.throughput(Throughput::Elements(BURST as u64));
    let dsts: Vec<Ipv4Addr> = servers().into_iter().map(extra_pod_ip).collect();
    for rules in RULE_SCALES {
        let p = tables(Some(rules)).policies;
        assert!(
            dsts.iter()
                .all(|&d| p.check(POD_A_IP, d, 6, Some(ALLOWED_PORT)).allowed()),
            "every server takes pod A on TCP 80"
        );
        assert!(
            dsts.iter()
                .all(|&d| !p.check(POD_A_IP, d, 6, Some(DENIED_PORT)).allowed()),
            "no server takes pod A on TCP 81"
        );
        g.bench_function(format!("allowed_64servers/rules{rules}"), |b| {
            b.iter(|| {
                for &d in &dsts {
                    black_box(p.check(POD_A_IP, black_box(d), 6, Some(ALLOWED_PORT)));
                }
            })
        });
    }
    g.finish();
}

fn compile(c: &mut Criterion) {
    let mut g = c.benchmark_group("policy_compile");
    g.warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(10);
    for rules in RULE_SCALES {
        let specs = pod_specs(rules);
        g.bench_function(format!("pods10000/rules{rules}"), |b| {
            b.iter(|| policies(&specs))
        });
        // A pod's label change as control sends it: the pod (a new address in the rules that
        // select it) joins rule 0's peers in every group's direction, so every pod's spec is
        // resent and each group's direction compiled again; the rest is reused.
        let previous = policies(&specs);
        let mut changed = specs.clone();
        let joined = PeerBlock {
            cidr: Ipv4Prefix {
                addr: Ipv4Addr::new(10, 247, 0, 1),
                len: 32,
            },
            except: Vec::new(),
        };
        for (_, _, s) in &mut changed[1..] {
            if let Some(peers) = s
                .ingress
                .as_mut()
                .and_then(|d| d.rules.first_mut())
                .and_then(|r| r.peers.as_mut())
            {
                peers.push(joined.clone());
            }
        }
        // The daemon's path when one pod's policy changed: specs are shared (`Arc`), the
        // other 9 999 pods are reused by pointer, one is compiled.
        let shared: Vec<(Ipv4Addr, PortId, Arc<PolicySpec>)> = specs
            .iter()
            .map(|(ip, port, s)| (*ip, *port, Arc::new(s.clone())))
            .collect();
        let before =
            Policies::from_shared(shared.iter().cloned(), Some(GW_IP), &Policies::default());
        let mut one = shared.clone();
        one[0].2 = Arc::new(changed[1].2.clone());
        g.bench_function(format!("one_pod_changed/rules{rules}"), |b| {
            b.iter(|| Policies::from_shared(one.iter().cloned(), Some(GW_IP), &before))
        });
        g.bench_function(format!("label_change/rules{rules}"), |b| {
            b.iter(|| {
                Policies::new(
                    changed.iter().map(|(ip, port, s)| (*ip, *port, s)),
                    Some(GW_IP),
                    &previous,
                )
            })
        });
    }
    g.finish();
}

criterion_group!(benches, check, new_connections, established, compile);
criterion_main!(benches);
