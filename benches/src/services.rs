//! Service-path rigs shared by `benches/services.rs` and `src/bin/services_memory.rs`: tables
//! with N Service ports of 10 endpoints each, and TCP frames from pod A to their VIPs.
//!
//! Every endpoint sits on pod B (10.244.1.3, a distinct port per endpoint of a Service), so a
//! Service's flows all leave on pod B's port and the bench measures the Service machinery, not
//! a big FIB (the pipeline bench's `l3_forward_big_table` does that).

use podswitch_dataplane::tables::{ServiceEntry, Services, Tables};
use podswitch_dataplane::testkit::{self, GW_MAC, POD_A_IP, POD_A_MAC, POD_B_IP};
use podswitch_proto::{
    BackendSpec, L4Protocol, Op, Request, RequestBody, ServiceSpec, Transaction,
};
use std::net::Ipv4Addr;
use std::sync::Arc;

/// Endpoints per Service port.
pub const ENDPOINTS_PER_SERVICE: usize = 10;

/// TCP flags of the frames.
pub const TCP_SYN: u8 = 0x02;
/// An ACK segment (a flow conntrack picks up as established).
pub const TCP_ACK: u8 = 0x10;

/// ClusterIP of Service port `i`: 10.96.0.1 + i, port 80.
pub fn vip(i: usize) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 96, 0, 1)) + i as u32)
}

/// The spec of Service port `i`: TCP, ClusterIP `vip(i)`:80, 10 ready endpoints on pod B,
/// Maglev. `generation` shifts the endpoints' ports, for a "changed" spec.
pub fn service_spec(i: usize, generation: u16) -> ServiceSpec {
    let backends = (0..ENDPOINTS_PER_SERVICE)
        .map(|j| BackendSpec::ready(POD_B_IP, 10_000 + generation + j as u16))
        .collect();
    ServiceSpec::cluster_ip(
        format!("bench/svc-{i}:http"),
        L4Protocol::Tcp,
        vip(i),
        80,
        backends,
    )
}

/// The VIP of each of `burst` flows at `ports` Service ports: a random subset of distinct
/// ports (every flow its own port when there are at least `burst`).
pub fn flow_vips(ports: usize, burst: usize) -> Vec<Ipv4Addr> {
    let subset = crate::random_pod_subset(ports, burst.min(ports), 0x5eed);
    (0..burst).map(|k| vip(subset[k % subset.len()])).collect()
}

/// `ports` compiled Service entries (ids 1..).
pub fn service_entries(ports: usize) -> Vec<Arc<ServiceEntry>> {
    (0..ports)
        .map(|i| Arc::new(ServiceEntry::new(i as u32 + 1, &service_spec(i, 0))))
        .collect()
}

/// The standard test tables with `ports` Service ports.
pub fn tables_with_services(ports: usize) -> Tables {
    let mut tables = testkit::tables_with(true, 1500, 0);
    tables.services = Arc::new(Services::new(service_entries(ports), None));
    tables
}

/// A 54-byte TCP segment (no payload) pod A `sport` → `dst:dport` with `flags`. The TCP
/// checksum is not filled: the switch does not verify it (it updates it incrementally).
pub fn tcp_from_pod_a(sport: u16, dst: Ipv4Addr, dport: u16, flags: u8) -> Vec<u8> {
    let mut f = testkit::tcp_syn_frame(POD_A_MAC, GW_MAC, POD_A_IP, dst);
    set_src_port(&mut f, sport);
    f[TCP_OFFSET + 2..TCP_OFFSET + 4].copy_from_slice(&dport.to_be_bytes());
    f[TCP_OFFSET + 13] = flags;
    f
}

/// Offset of the TCP header in the frames (Ethernet + 20-byte IPv4 header).
const TCP_OFFSET: usize = 14 + 20;

/// Rewrites a frame's TCP source port in place.
#[inline]
pub fn set_src_port(frame: &mut [u8], sport: u16) {
    frame[TCP_OFFSET..TCP_OFFSET + 2].copy_from_slice(&sport.to_be_bytes());
}

/// Conntrack capacity of the new-connection benches: room for every connection one source
/// port sweep creates.
pub const NEW_CONN_CONNTRACK: usize = 131_072;
/// The first source port a sweep gives.
pub const FIRST_PORT: u16 = 1024;

/// Bursts of new connections through a rig: before each burst every frame gets a source port
/// no earlier burst of this conntrack used; once the ports run out, the sweep's connections
/// go (a fresh conntrack, or in a pre-filled one only pod A's entries are flushed); both
/// outside the timing.
#[derive(Debug)]
pub struct NewConnections {
    next_port: u16,
    /// Keep the rig's (pre-filled) conntrack and flush the sweep's entries from it, rather than
    /// replacing it with a fresh one.
    flush: bool,
}

impl NewConnections {
    /// Gives `rig` a fresh conntrack and its frames their first source ports.
    pub fn start(rig: &mut crate::PipelineRig) -> Self {
        rig.set_flows(podswitch_dataplane::pipeline::FlowState::new(
            NEW_CONN_CONNTRACK,
            1024,
        ));
        Self::sweep(rig, false)
    }

    /// Keeps `rig`'s conntrack (filled with other connections, with room for
    /// [`NEW_CONN_CONNTRACK`] more) and gives its frames their first source ports.
    pub fn start_in_filled(rig: &mut crate::PipelineRig) -> Self {
        Self::sweep(rig, true)
    }

    fn sweep(rig: &mut crate::PipelineRig, flush: bool) -> Self {
        let mut s = NewConnections {
            next_port: FIRST_PORT,
            flush,
        };
        s.advance(rig);
        s
    }

    /// New source ports for the next burst.
    pub fn advance(&mut self, rig: &mut crate::PipelineRig) {
        if usize::from(u16::MAX - self.next_port) < rig.frames_mut().len() {
            if self.flush {
                rig.flows()
                    .conntrack
                    .flush(|e| e.original.src == podswitch_dataplane::testkit::POD_A_IP);
            } else {
                rig.set_flows(podswitch_dataplane::pipeline::FlowState::new(
                    NEW_CONN_CONNTRACK,
                    1024,
                ));
            }
            self.next_port = FIRST_PORT;
        }
        for f in rig.frames_mut() {
            set_src_port(f, self.next_port);
            self.next_port += 1;
        }
    }

    /// The time `iters` bursts of new connections take (`criterion`'s `iter_custom`).
    pub fn time(&mut self, rig: &mut crate::PipelineRig, iters: u64) -> std::time::Duration {
        let mut total = std::time::Duration::ZERO;
        for _ in 0..iters {
            self.advance(rig);
            let t = std::time::Instant::now();
            std::hint::black_box(rig.refill_and_run());
            total += t.elapsed();
        }
        total
    }
}

/// Connections of others a busy node's conntrack holds in the `ct1M` benchmarks.
pub const BIG_CONNTRACK_FILL: usize = 1_000_000;
/// The large conntrack's capacity: room for the fill and a new-connection sweep.
pub const BIG_CONNTRACK: usize = BIG_CONNTRACK_FILL + NEW_CONN_CONNTRACK;

/// A conntrack holding [`BIG_CONNTRACK_FILL`] other established connections (10.250.0.0/16 →
/// 10.251.0.1:443) committed straight into the table, as a busy node's would be.
pub fn big_flow_state() -> podswitch_dataplane::pipeline::FlowState {
    let flows = podswitch_dataplane::pipeline::FlowState::new(BIG_CONNTRACK, 1024);
    let now = std::time::Instant::now();
    let mut ok = 0;
    for i in 0..BIG_CONNTRACK_FILL as u32 {
        let t = podswitch_dataplane::conntrack::Tuple {
            src: Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 250, 0, 0)) + (i >> 14)),
            dst: Ipv4Addr::new(10, 251, 0, 1),
            src_port: 1024 + (i & 0x3fff) as u16,
            dst_port: 443,
            proto: 6,
        };
        ok += usize::from(
            flows
                .conntrack
                .commit(&t, Default::default(), None, TCP_ACK, 54, now)
                .is_ok(),
        );
    }
    assert_eq!(ok, BIG_CONNTRACK_FILL, "every filler connection committed");
    flows
}

/// The `apply` control sends for `ports` new Service ports of 10 endpoints each, as JSON
/// (issue 14's shape: ~1.4 KB per port, 13.9 MB at 10k): port `i` has ClusterIP
/// 10.96.0.0 + i, port 80, and endpoints 10.200.x.y:8080 (a distinct pod each, named as
/// control names them).
pub fn apply_request_json(ports: usize) -> Vec<u8> {
    let ops = (0..ports as u32)
        .map(|i| {
            let backends = (0..ENDPOINTS_PER_SERVICE as u32)
                .map(|j| {
                    let pod = i * ENDPOINTS_PER_SERVICE as u32 + j;
                    let [_, _, c, d] = pod.to_be_bytes();
                    BackendSpec {
                        target: Some(format!("ns-{:03}/pod-{pod:06}", i % 100)),
                        ..BackendSpec::ready(Ipv4Addr::new(10, 200, c, d), 8080)
                    }
                })
                .collect();
            Op::SetService(ServiceSpec::cluster_ip(
                format!("ns-{:03}/svc-{i:05}:http", i % 100),
                L4Protocol::Tcp,
                Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 96, 0, 0)) + i),
                80,
                backends,
            ))
        })
        .collect();
    let request = Request::new(RequestBody::Apply(Transaction {
        generation: Some(2),
        replace: false,
        ops,
    }));
    serde_json::to_vec(&request).unwrap_or_else(|e| panic!("encoding the request: {e}"))
}
