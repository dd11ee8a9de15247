//! Benchmark rigs shared by the criterion benches (`benches/*.rs`) and the callgrind driver
//! (`src/bin/callgrind_pipeline.rs`), so that both measure exactly the same work.
//!
//! Two rigs, on the dataplane's standard test topology (`testkit`: gateway 10.244.1.1, pod A on
//! port 1, pod B on port 2):
//! - [`PipelineRig`]: a batch refilled from a buffer pool the way a port receives (take a buffer,
//!   copy the frame in at the headroom, push), run through `pipeline::run`, buffers returned. The
//!   pipeline rewrites TTL, checksum and MACs in place, so a batch cannot be replayed untouched:
//!   every iteration refills. [`PipelineRig::refill_only`] measures that refill alone, so the
//!   pipeline's own cost is the difference.
//! - [`WorkerRig`]: a real `Worker` with a generator memory queue on pod A's port and a
//!   discarding memory queue on pod B's, driven by `Worker::poll_once` (rx, pipeline, output,
//!   tx, buffers back to the pool).

pub mod policy;
pub mod services;

use arc_swap::ArcSwap;
use podswitch_dataplane::batch::{Batch, Next, Offload, PortId};
use podswitch_dataplane::buffer::Pool;
use podswitch_dataplane::counters::Counters;
use podswitch_dataplane::pipeline;
use podswitch_dataplane::ports::memory::MemoryQueue;
use podswitch_dataplane::ports::Uring;
use podswitch_dataplane::ports::Waker;
use podswitch_dataplane::tables::Tables;
use podswitch_dataplane::testkit::POD_B_IP;
use podswitch_dataplane::testkit::{self, GW_IP, GW_MAC, POD_A, POD_A_IP, POD_A_MAC, POD_B};
use podswitch_dataplane::trace::Trace;
use podswitch_dataplane::worker::{Command, IdlePolicy, Worker, WorkerConfig};
use podswitch_packet::{Ipv4Packet, ETHERNET_HEADER_LEN};
use std::net::Ipv4Addr;
use std::sync::atomic::AtomicBool;
use std::sync::mpsc::{self, Sender};
use std::sync::Arc;
use std::time::Duration;

/// UDP payload that makes the smallest Ethernet frame: 14 (Ethernet) + 20 (IPv4) + 8 (UDP) + 18
/// = 60 bytes, i.e. the 64-byte minimum frame on the wire once the NIC adds the 4-byte FCS.
pub const MIN_FRAME_UDP_PAYLOAD: usize = 18;

/// Length of the frames the L3 benches send.
pub const L3_FRAME_LEN: usize = 60;

/// Extra pods in the "big table" benches (`testkit::tables_with(.., extra_pods)`).
pub const BIG_TABLE_PODS: usize = 10_000;

/// Distinct destinations the big-table benches cycle through (a random subset of the pods).
pub const BIG_TABLE_DESTINATIONS: usize = 4096;

/// A 60-byte UDP frame from pod A, addressed to the gateway's MAC, for `dst`.
pub fn udp_from_pod_a(dst: Ipv4Addr) -> Vec<u8> {
    let f = testkit::udp_frame(POD_A_MAC, GW_MAC, POD_A_IP, dst, 64, MIN_FRAME_UDP_PAYLOAD);
    assert_eq!(f.len(), L3_FRAME_LEN);
    f
}

/// Pod A → pod B, 60 bytes.
pub fn udp_a_to_b() -> Vec<u8> {
    udp_from_pod_a(POD_B_IP)
}

/// Pod A's ARP request for the gateway (42 bytes, as a pod's kernel writes it into its device;
/// the padding to 60 is added by hardware, which a tap or veth does not have).
pub fn arp_for_gateway() -> Vec<u8> {
    testkit::arp_request(POD_A_MAC, POD_A_IP, GW_IP)
}

/// Address of extra pod `i` in `testkit::tables_with` (10.245.0.0 + i, port 3 + i).
pub fn extra_pod_ip(i: usize) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 245, 0, 0)) + i as u32)
}

/// A small deterministic generator (xorshift64), so runs pick the same "random" pods.
#[derive(Debug, Clone)]
pub struct XorShift(u64);

impl XorShift {
    /// Seeded generator (`seed` must not be 0).
    pub fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    /// Next value.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// Uniform-enough index below `n`.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

/// `count` distinct extra-pod indices out of `pods`, in random order.
pub fn random_pod_subset(pods: usize, count: usize, seed: u64) -> Vec<usize> {
    let mut all: Vec<usize> = (0..pods).collect();
    let mut rng = XorShift::new(seed);
    // Partial Fisher–Yates: the first `count` slots end up a uniform random subset.
    for i in 0..count.min(pods) {
        let j = i + rng.below(pods - i);
        all.swap(i, j);
    }
    all.truncate(count);
    all
}

/// Frames from pod A to a random subset of the big table's extra pods.
pub fn udp_to_random_extra_pods() -> Vec<Vec<u8>> {
    random_pod_subset(BIG_TABLE_PODS, BIG_TABLE_DESTINATIONS, 0x5eed)
        .into_iter()
        .map(|i| udp_from_pod_a(extra_pod_ip(i)))
        .collect()
}

/// A batch, a pool and the tables, run through the pipeline with no ports involved.
#[derive(Debug)]
pub struct PipelineRig {
    /// The snapshot the pipeline reads.
    pub tables: Tables,
    pool: Pool,
    batch: Batch,
    /// The pipeline's counters.
    pub ctr: Counters,
    trace: Trace,
    state: pipeline::WorkerState,
    flows: pipeline::FlowState,
    now: std::time::Instant,
    frames: Vec<Vec<u8>>,
    next: usize,
    burst: usize,
}

impl PipelineRig {
    /// A rig receiving `frames` (cycled through) on `in_port`, `burst` per batch.
    pub fn new(tables: Tables, in_port: PortId, frames: Vec<Vec<u8>>, burst: usize) -> Self {
        assert!(!frames.is_empty());
        let mut batch = Batch::with_limit(burst);
        batch.in_port = in_port;
        let ctr = Counters::new(tables.ports.len().max(1));
        Self {
            tables,
            // Twice the burst: the free list is a stack, so the same buffers come back each
            // time, as they do in a worker whose pool is much larger than its bursts in flight.
            pool: Pool::new(2 * burst),
            batch,
            ctr,
            trace: Trace::off(),
            state: pipeline::WorkerState::new(std::time::Instant::now()),
            flows: pipeline::FlowState::default(),
            now: std::time::Instant::now(),
            frames,
            next: 0,
            burst,
        }
    }

    /// Packets per batch.
    pub fn burst(&self) -> usize {
        self.burst
    }

    /// The shared flow state (conntrack, affinity, fragments) the pipeline runs against.
    pub fn flows(&self) -> &pipeline::FlowState {
        &self.flows
    }

    /// Replaces the flow state, e.g. with a large or pre-filled conntrack, or a fresh one when
    /// a new-connection bench nears capacity.
    pub fn set_flows(&mut self, flows: pipeline::FlowState) {
        self.flows = flows;
    }

    /// Takes the flow state out (leaving a tiny empty one), to hand a filled conntrack to
    /// the next rig.
    pub fn take_flows(&mut self) -> pipeline::FlowState {
        std::mem::replace(&mut self.flows, pipeline::FlowState::new(1, 1))
    }

    /// The frames the rig cycles through, for benches that change headers between bursts.
    pub fn frames_mut(&mut self) -> &mut [Vec<u8>] {
        &mut self.frames
    }

    /// Fills the batch as a port's receive does: a buffer from the pool per frame, the frame
    /// copied in at the headroom.
    #[inline]
    fn refill(&mut self) {
        for _ in 0..self.burst {
            let Some(mut buf) = self.pool.get() else {
                break;
            };
            buf.fill(&self.frames[self.next]);
            self.next += 1;
            if self.next == self.frames.len() {
                self.next = 0;
            }
            if let Err(buf) = self.batch.push(buf) {
                self.pool.put(buf);
                break;
            }
        }
    }

    /// One burst: refill, pipeline, buffers back to the pool. Returns the packets processed.
    #[inline]
    pub fn refill_and_run(&mut self) -> usize {
        self.refill();
        let mut cx = pipeline::Ctx::new(
            &self.tables,
            &self.flows,
            &mut self.ctr,
            &mut self.trace,
            &mut self.state,
            self.now,
            pipeline::Mode::Forward,
        );
        pipeline::run(&mut self.batch, &mut cx);
        let n = self.batch.len();
        std::hint::black_box(&mut self.batch);
        self.batch.recycle(&mut self.pool);
        n
    }

    /// The same burst without the pipeline: what [`Self::refill_and_run`] costs besides it.
    #[inline]
    pub fn refill_only(&mut self) -> usize {
        self.refill();
        let n = self.batch.len();
        std::hint::black_box(&mut self.batch);
        self.batch.recycle(&mut self.pool);
        n
    }

    /// Runs one burst and checks that every packet got `expected`; for bench setup, so that a
    /// bench never measures a drop path by mistake.
    pub fn assert_verdict(&mut self, expected: impl Fn(usize) -> Next) {
        self.refill();
        let mut cx = pipeline::Ctx::new(
            &self.tables,
            &self.flows,
            &mut self.ctr,
            &mut self.trace,
            &mut self.state,
            self.now,
            pipeline::Mode::Forward,
        );
        pipeline::run(&mut self.batch, &mut cx);
        for (i, p) in self.batch.iter().enumerate() {
            assert_eq!(p.meta.next, expected(i), "packet {i} of the bench burst");
        }
        self.batch.recycle(&mut self.pool);
    }
}

/// Expected output port of a big-table frame: extra pod `i` (10.245.0.0 + i) sits on port 3 + i.
pub fn extra_pod_port(frame: &[u8]) -> PortId {
    let dst = Ipv4Packet::new_unchecked(&frame[ETHERNET_HEADER_LEN..]).dst();
    let i = u32::from(dst) - u32::from(Ipv4Addr::new(10, 245, 0, 0));
    3 + i as PortId
}

/// A worker polling two memory queues: a generator on pod A (frames to pod B, `burst` per poll)
/// and a sink on pod B that counts and frees what it is sent.
#[derive(Debug)]
pub struct WorkerRig {
    /// The worker under test.
    pub worker: Worker,
    /// Its ring (unused by memory ports, but `poll_once` takes it, as in the daemon).
    pub ring: Uring,
    /// The snapshot handed to `poll_once` (the worker's own `ArcSwap` holds the same one).
    pub tables: Arc<Tables>,
    _commands: Sender<Command>,
    burst: usize,
}

impl WorkerRig {
    /// A worker at `burst`, pod A sending `frames` to the switch. Creates the ring on the
    /// calling thread (rings are single-issuer).
    pub fn new(burst: usize, frames: Vec<Vec<u8>>) -> std::io::Result<Self> {
        let frames = frames.into_iter().map(|f| (f, Offload::NONE)).collect();
        Self::offloaded(burst, frames, true)
    }

    /// A worker at `burst`, pod A sending `frames` with their offload state (GSO super-frames,
    /// partial checksums, as a tap with vnet headers delivers them); pod B's port takes
    /// offloaded frames as they are when `pod_b_offloads`, else the switch segments and
    /// completes checksums in software for it.
    pub fn offloaded(
        burst: usize,
        frames: Vec<(Vec<u8>, Offload)>,
        pod_b_offloads: bool,
    ) -> std::io::Result<Self> {
        let mut tables = testkit::tables_with(true, 1500, 0);
        if let Some(b) = std::sync::Arc::make_mut(&mut tables.ports)[usize::from(POD_B)].as_mut() {
            b.offloads = pod_b_offloads;
        }
        let tables = Arc::new(tables);
        let cfg = WorkerConfig {
            burst,
            idle: IdlePolicy::Busy,
            // Room for a burst of super-frames cut into ~45 segments each.
            pool_buffers: 1024 + 64 * burst,
            pool_large_buffers: 64,
            max_ports: 4,
            rx_depth: burst,
            spin_iterations: 0,
            spin_yield: false,
            cpu: None,
            sleep: Duration::from_millis(1),
        };
        let (commands, rx) = mpsc::channel();
        let mut worker = Worker::new(
            cfg,
            Arc::new(ArcSwap::new(tables.clone())),
            Arc::default(),
            rx,
            Arc::new(Waker::new()?),
            Arc::new(AtomicBool::new(false)),
        );
        worker.add_queue(Box::new(MemoryQueue::generator_offloaded(
            POD_A, frames, burst,
        )));
        // A generator with nothing to send is a sink that counts and frees (no copy kept).
        worker.add_queue(Box::new(MemoryQueue::generator(POD_B, Vec::new(), 0)));
        let ring = Uring::new(1024, 8192)?;
        Ok(Self {
            worker,
            ring,
            tables,
            _commands: commands,
            burst,
        })
    }

    /// The standard rig: 60-byte UDP frames pod A → pod B.
    pub fn a_to_b(burst: usize) -> std::io::Result<Self> {
        Self::new(burst, vec![udp_a_to_b()])
    }

    /// Packets per poll.
    pub fn burst(&self) -> usize {
        self.burst
    }

    /// One `poll_once`; returns the packets received.
    #[inline]
    pub fn poll(&mut self) -> usize {
        self.worker.poll_once(&mut self.ring, &self.tables)
    }

    /// Polls a few times and checks that everything received on pod A left on pod B with no
    /// drop: for bench setup.
    pub fn assert_forwards(&mut self) {
        let before = self.worker.counters().clone();
        let mut received = 0;
        for _ in 0..4 {
            received += self.poll();
        }
        let after = self.worker.counters();
        let rx = after.ports[POD_A as usize].rx_packets - before.ports[POD_A as usize].rx_packets;
        let tx = after.ports[POD_B as usize].tx_packets - before.ports[POD_B as usize].tx_packets;
        assert_eq!(received, 4 * self.burst, "generator delivers a full burst");
        assert_eq!(
            (rx, tx),
            (received as u64, received as u64),
            "all forwarded"
        );
        assert_eq!(after.drops, before.drops, "no drops");
    }

    /// Polls a few times and checks that every frame received on pod A left pod B (whole or as
    /// segments) with no drop: for the offload benches' setup.
    pub fn assert_forwards_offloaded(&mut self) {
        let before = self.worker.counters().clone();
        let mut received = 0;
        for _ in 0..4 {
            received += self.poll();
        }
        let after = self.worker.counters();
        let tx = after.ports[POD_B as usize].tx_packets - before.ports[POD_B as usize].tx_packets;
        assert_eq!(received, 4 * self.burst, "generator delivers a full burst");
        assert!(
            tx >= received as u64,
            "all forwarded: {tx} frames out of {received}"
        );
        assert_eq!(after.drops, before.drops, "no drops");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_pod_subset_is_distinct_and_in_range() {
        let mut s = random_pod_subset(BIG_TABLE_PODS, BIG_TABLE_DESTINATIONS, 1);
        assert_eq!(s.len(), BIG_TABLE_DESTINATIONS);
        assert!(s.iter().all(|&i| i < BIG_TABLE_PODS));
        s.sort_unstable();
        s.dedup();
        assert_eq!(s.len(), BIG_TABLE_DESTINATIONS);
    }

    #[test]
    fn big_table_frames_are_routed_to_their_pods() {
        let frames = udp_to_random_extra_pods();
        let ports: Vec<PortId> = frames.iter().map(|f| extra_pod_port(f)).collect();
        let tables = testkit::tables_with(true, 1500, BIG_TABLE_PODS);
        let mut rig = PipelineRig::new(tables, POD_A, frames, 32);
        rig.assert_verdict(|i| Next::Output(ports[i]));
    }

    /// The one way a test here skips: says why on the process's stderr (not through
    /// `eprintln!`, which libtest swallows for a passing test) and appends the line to the file
    /// named by `PODSWITCH_SKIP_LOG`; under `PODSWITCH_REQUIRE_ALL` (set by `scripts/test.sh` as
    /// root and in CI) it panics instead. A copy of `podswitch_tests::skip`, which this crate
    /// does not depend on.
    fn skip(test: &str, reason: &str) {
        use std::io::Write;
        let line = format!("SKIPPED {test}: {reason}");
        if std::env::var("PODSWITCH_REQUIRE_ALL").is_ok_and(|v| !v.is_empty() && v != "0") {
            panic!(
                "{line}; PODSWITCH_REQUIRE_ALL is set, so a skip is a failure (PODSWITCH_REQUIRE_ALL=0 allows skips)"
            );
        }
        let _ = writeln!(std::io::stderr(), "{line}");
        if let Some(log) = std::env::var_os("PODSWITCH_SKIP_LOG") {
            let appended = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log)
                .and_then(|mut f| writeln!(f, "{line}"));
            if let Err(e) = appended {
                panic!("{line}; and recording it in PODSWITCH_SKIP_LOG={log:?} failed: {e}");
            }
        }
    }

    #[test]
    fn worker_rig_forwards_every_packet() {
        match WorkerRig::a_to_b(32) {
            Ok(mut rig) => rig.assert_forwards(),
            Err(e) => skip(
                "worker_rig_forwards_every_packet",
                &format!("the worker needs io_uring, and io_uring_setup failed: {e}"),
            ),
        }
    }
}
