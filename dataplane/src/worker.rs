//! The worker: one thread, one io_uring, one buffer pool, one queue of every port. It polls its
//! queues and runs each received burst to completion — pipeline, then output — before the
//! next. Nothing a worker touches per packet is shared: tables are an immutable snapshot
//! loaded once per iteration, counters are its own, ports are its own queues.
//!
//! Idle policy: `busy` spins forever (benchmarks, dedicated cores); `adaptive` spins for a
//! while after the last packet, then sleeps in the ring until a completion (a packet on any of
//! its queues) or a wake-up (a command from the daemon) arrives.

use crate::batch::{Batch, Next, Packet, PortId, L3, MAX_BURST};
use crate::buffer::Pool;
use crate::counters::{Counters, DropReason, SharedCounters};
use crate::pipeline::{self, gro::Gro, offload};
use crate::ports::{PortIo, PortQueue, Token, Uring, Waker};
use crate::tables::Tables;
use crate::trace::Trace;
use arc_swap::ArcSwap;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The longest a sync waits for the kernel to complete the worker's outstanding transmits.
/// Tap writes complete at submission, so this bounds only a misbehaving device.
pub const SYNC_TX_WAIT: Duration = Duration::from_millis(100);

/// What a worker does when its ports are quiet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum IdlePolicy {
    /// Spin without ever sleeping: lowest latency, one whole core per worker.
    Busy,
    /// Spin briefly after traffic, then sleep until a packet or command arrives.
    Adaptive,
}

/// Sizes and policies of a worker.
#[derive(Debug, Clone, Copy)]
pub struct WorkerConfig {
    /// Packets taken from a queue per burst (1..=256).
    pub burst: usize,
    /// Idle policy.
    pub idle: IdlePolicy,
    /// Small (4 KiB) buffers in the worker's pool.
    pub pool_buffers: usize,
    /// Large (68 KiB) buffers in the worker's pool, for GSO super-frames.
    pub pool_large_buffers: usize,
    /// Largest port id + 1.
    pub max_ports: usize,
    /// Reads kept armed per tap queue.
    pub rx_depth: usize,
    /// Empty iterations before an adaptive worker sleeps.
    pub spin_iterations: u32,
    /// Longest sleep of an adaptive worker (it also wakes on any packet or command).
    pub sleep: Duration,
    /// Whether an adaptive worker yields the CPU between empty polls while it spins.
    pub spin_yield: bool,
    /// The CPU this worker's thread is pinned to (`None`: wherever the scheduler puts it).
    pub cpu: Option<usize>,
}

/// Instructions from the daemon to a worker.
#[derive(Debug)]
pub enum Command {
    /// Start polling this queue.
    AddQueue(Box<dyn PortQueue>),
    /// Stop polling the port, cancel its I/O, drop its queue; with `release_device`, also let
    /// a persistent kernel device go (it disappears with its last queue).
    RemovePort {
        /// The port.
        id: PortId,
        /// Whether the kernel device goes too.
        release_device: bool,
    },
    /// Publish counters and answer, once every earlier command is done and every transmit
    /// submitted before it has completed and been counted (waiting at most
    /// [`SYNC_TX_WAIT`]). A bounded channel
    /// (room for the one answer), so that answering allocates nothing.
    Sync(SyncSender<()>),
}

/// What the loop keeps between iterations: the ring and the idle policy's counts.
#[derive(Debug)]
pub struct LoopState {
    ring: Uring,
    idle_iterations: u32,
    since_publish: u32,
}

impl LoopState {
    fn new(ring: Uring) -> LoopState {
        LoopState {
            ring,
            idle_iterations: 0,
            since_publish: 0,
        }
    }
}

/// A worker's state. Built on the daemon thread, run on its own thread by [`Worker::run`].
#[derive(Debug)]
pub struct Worker {
    cfg: WorkerConfig,
    tables: Arc<ArcSwap<Tables>>,
    pool: Pool,
    ctr: Counters,
    shared: Arc<SharedCounters>,
    ports: Vec<Option<Box<dyn PortQueue>>>,
    active: Vec<PortId>,
    /// Where in `active` the next [`Worker::poll_once`] starts: it moves on by one each poll,
    /// so no queue is always polled last (a tap queue with vnet headers takes half the free
    /// large buffers it finds; in a fixed order, the tenth busy port of a worker found none,
    /// every iteration).
    poll_start: usize,
    batch: Batch,
    /// Output staging, one vector per port id (allocated when the port is added).
    tx_stage: Vec<Vec<Packet>>,
    /// The burst's TCP segments being coalesced for ports that take TSO frames (empty
    /// between bursts).
    gro: Gro,
    touched: Vec<PortId>,
    completions: Vec<(Token, i32)>,
    commands: Receiver<Command>,
    waker: Arc<Waker>,
    stop: Arc<AtomicBool>,
    trace: Trace,
    /// The stages' per-worker state (ICMP error budget, GC cursor).
    state: pipeline::WorkerState,
    /// The clock the stages see: read once per poll that received anything.
    now: Instant,
    /// When the conntrack GC last ran a step ([`Worker::gc_paced`]).
    last_gc: Instant,
    /// Conntrack and its companions, shared with every worker.
    flows: Arc<pipeline::FlowState>,
}

/// Conntrack slots the GC examines per millisecond, busy or idle: a sweep of the default
/// 262144 slots takes 2 s (expired entries are never found by lookups meanwhile: the GC only
/// frees room). Paced by the clock rather than by iterations or sleeps: at 16 slots per busy
/// iteration and 4096 before every sleep, the cross-node sender's worker, iterating on small
/// bursts, spent 5% of its time sweeping cold memory, and the receiver's, once GRO let it
/// sleep and wake thousands of times a second, 16% (BENCHMARKS.md, "Issue 16: GRO on the
/// receiving switch").
const GC_SLOTS_PER_MS: usize = 128;
/// The most one step examines on a busy iteration: small, so a burst's latency does not notice.
const GC_BUSY_SLOTS: usize = GC_SLOTS_PER_MS;
/// The most one step examines before a worker sleeps (catching up on a quiet interval).
const GC_IDLE_SLOTS: usize = 4096;

/// Stages `pkt` for port `out` (whose queue exists). A full staging vector (software
/// segmentation can produce more than a burst) is transmitted first, so it never grows: its
/// capacity was reserved when the port was added.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn stage_packet(
    ports: &mut [Option<Box<dyn PortQueue>>],
    tx_stage: &mut [Vec<Packet>],
    touched: &mut Vec<PortId>,
    ring: &mut Uring,
    pool: &mut Pool,
    ctr: &mut Counters,
    out: PortId,
    pkt: Packet,
) {
    let stage = &mut tx_stage[out as usize];
    if stage.is_empty() {
        // First packet for this port in this batch. (A stage flushed below is never left
        // empty: the packet that found it full is pushed right after, so `touched` already
        // holds the port and never gets it twice.)
        touched.push(out);
    } else if stage.len() == stage.capacity() {
        if let Some(queue) = ports[out as usize].as_mut() {
            let mut io = PortIo { pool, ring, ctr };
            queue.tx_burst(&mut io, stage);
        }
    }
    stage.push(pkt);
}

impl Worker {
    /// A worker reading `tables` and sharing `flows` with the other workers, taking commands
    /// from `commands`.
    pub fn new(
        cfg: WorkerConfig,
        tables: Arc<ArcSwap<Tables>>,
        flows: Arc<pipeline::FlowState>,
        commands: Receiver<Command>,
        waker: Arc<Waker>,
        stop: Arc<AtomicBool>,
    ) -> Self {
        let burst = cfg.burst.clamp(1, MAX_BURST);
        Self {
            cfg: WorkerConfig { burst, ..cfg },
            tables,
            pool: Pool::with_large(cfg.pool_buffers, cfg.pool_large_buffers),
            ctr: Counters::new(cfg.max_ports),
            shared: Arc::new(SharedCounters::new(cfg.max_ports)),
            ports: (0..cfg.max_ports).map(|_| None).collect(),
            active: Vec::with_capacity(cfg.max_ports),
            poll_start: 0,
            batch: Batch::with_limit(burst),
            tx_stage: (0..cfg.max_ports).map(|_| Vec::new()).collect(),
            gro: Gro::new(),
            touched: Vec::with_capacity(cfg.max_ports),
            completions: Vec::with_capacity(8192),
            commands,
            waker,
            stop,
            trace: Trace::off(),
            state: pipeline::WorkerState::new(Instant::now()),
            now: Instant::now(),
            last_gc: Instant::now(),
            flows,
        }
    }

    /// The worker's small-buffer region as an AF_XDP UMEM: address, length, and chunks that
    /// may be lent ([`Pool::umem_area`]).
    pub fn umem_area(&self) -> (*mut u8, usize, usize) {
        let (base, len) = self.pool.umem_area();
        (base, len, self.pool.umem_chunks())
    }

    /// The counters this worker publishes.
    pub fn shared_counters(&self) -> Arc<SharedCounters> {
        self.shared.clone()
    }

    /// Runs until the stop flag is set. Creates the worker's ring on the calling thread.
    pub fn run(self) -> std::io::Result<()> {
        let ring = self.open_ring()?;
        self.run_on(ring)
    }

    /// Creates the worker's ring, with the read on its wake-up eventfd armed. Must be called
    /// on the thread that then calls [`Worker::run_on`] (the ring is single-issuer). Separate
    /// from the loop so that the daemon can report a ring the kernel refuses before it
    /// counts the worker as started. Pins the thread first if the config names a CPU.
    pub fn open_ring(&self) -> std::io::Result<Uring> {
        self.pin()?;
        let ring_entries = 1024;
        let mut ring = Uring::new(ring_entries, 8192)?;
        // SAFETY: the pool's region stays mapped while the ring lives: the ring (in the
        // loop's state) is dropped before the worker and its pool, and a pool never unmaps a
        // region with a buffer out.
        if let Err(e) = unsafe { ring.register_buffers(self.pool.fixed_pieces()) } {
            // Not fatal: writes stay plain (each pins its pages), which is only slower.
            eprintln!(
                "podswitchd: worker: registering the packet buffers with io_uring failed ({e}); \
                 writes will not use fixed buffers"
            );
        }
        ring.arm_wake(&self.waker)?;
        Ok(ring)
    }

    /// Pins the calling thread to the configured CPU, if any (see `worker_cpus` in the
    /// daemon's config: a worker on the CPU of the pods it serves wakes them without an
    /// inter-processor interrupt, which on a VM costs tens of microseconds per hop).
    fn pin(&self) -> std::io::Result<()> {
        let Some(cpu) = self.cfg.cpu else {
            return Ok(());
        };
        // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET writes within it (cpu is
        // checked against CPU_SETSIZE); sched_setaffinity reads `size_of` bytes of it.
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            if cpu >= libc::CPU_SETSIZE as usize {
                return Err(std::io::Error::other(format!("cpu {cpu} is out of range")));
            }
            libc::CPU_SET(cpu, &mut set);
            if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
                let e = std::io::Error::last_os_error();
                return Err(std::io::Error::new(
                    e.kind(),
                    format!("pinning the worker to cpu {cpu}: {e}"),
                ));
            }
        }
        Ok(())
    }

    /// Runs on `ring` (from [`Worker::open_ring`] on this thread) until the stop flag is set.
    pub fn run_on(mut self, ring: Uring) -> std::io::Result<()> {
        let mut state = LoopState::new(ring);
        while !self.stop.load(Ordering::Relaxed) {
            self.iterate(&mut state)?;
        }
        self.publish();
        Ok(())
    }

    /// Creates the worker's ring (on the calling thread, which must be the one that iterates)
    /// and arms the wake-up read: what [`Worker::run`] does before its first iteration.
    pub fn start_loop(&self) -> std::io::Result<LoopState> {
        Ok(LoopState::new(self.open_ring()?))
    }

    /// One iteration of the loop: commands, completions, one poll of every queue, one submit,
    /// and the idle policy (publish counters, maybe sleep). Returns the packets received.
    /// [`Worker::run`] is this in a loop; tests drive it directly to watch the whole loop.
    pub fn iterate(&mut self, state: &mut LoopState) -> std::io::Result<usize> {
        let ring = &mut state.ring;
        self.handle_commands(ring);
        self.dispatch_completions(ring, None);
        let tables = self.tables.load();
        let packets = self.poll_once(ring, &tables);
        // One system call per iteration at most: submits this iteration's writes and
        // re-armed reads, and runs the deferred completions the next iteration reaps.
        ring.submit()?;
        state.since_publish += 1;
        if packets > 0 {
            state.idle_iterations = 0;
            // Incremental conntrack GC, with the burst's clock.
            self.gc_paced(self.now, GC_BUSY_SLOTS);
            if state.since_publish >= 1024 {
                self.publish();
                state.since_publish = 0;
            }
            return Ok(packets);
        }
        state.idle_iterations = state.idle_iterations.saturating_add(1);
        if self.cfg.idle == IdlePolicy::Adaptive && state.idle_iterations > self.cfg.spin_iterations
        {
            self.publish();
            state.since_publish = 0;
            drop(tables);
            // Going to sleep: the GC catches up, as an idle worker does on each wake-up (at
            // least every `sleep_us`).
            self.gc_paced(Instant::now(), GC_IDLE_SLOTS);
            ring.wait(self.cfg.sleep)?;
        } else if self.cfg.idle == IdlePolicy::Adaptive && self.cfg.spin_yield {
            // Spinning, but not against the pods: the frames just written woke their
            // receivers, often on this CPU, and a spinning worker keeps them off it until the
            // scheduler preempts it. A yield with nothing else runnable returns at once. Off
            // by default (`spin_yield`): measured, it did not pay (BENCHMARKS.md, issue 13).
            // SAFETY: sched_yield takes no arguments and cannot fail in a way that matters.
            unsafe { libc::sched_yield() };
            if state.since_publish >= 1 << 16 {
                self.publish();
                state.since_publish = 0;
            }
        } else if state.since_publish >= 1 << 16 {
            self.publish();
            state.since_publish = 0;
        }
        if state.idle_iterations % 1024 == 0 {
            // A spinning worker with nothing to do still collects.
            self.gc_paced(Instant::now(), GC_IDLE_SLOTS);
        }
        Ok(0)
    }

    /// A step of the conntrack GC worth the time since the last one ([`GC_SLOTS_PER_MS`]), at
    /// most `max_slots`; nothing within the same millisecond.
    fn gc_paced(&mut self, now: Instant, max_slots: usize) {
        let ms = now.saturating_duration_since(self.last_gc).as_millis();
        if ms == 0 {
            return;
        }
        self.last_gc = now;
        let budget = usize::try_from(ms)
            .unwrap_or(usize::MAX)
            .saturating_mul(GC_SLOTS_PER_MS)
            .min(max_slots);
        self.flows
            .conntrack
            .gc_step(&mut self.state.gc, now, budget);
    }

    /// Polls every queue once: receive a burst, run it through the pipeline, send the output.
    /// Returns the number of packets received. Public for benchmarks and tests, which drive a
    /// worker without a thread.
    pub fn poll_once(&mut self, ring: &mut Uring, tables: &Tables) -> usize {
        let mut received = 0;
        let mut clock_read = false;
        let n = self.active.len();
        let first = if n == 0 { 0 } else { self.poll_start % n };
        self.poll_start = first + 1;
        for k in 0..n {
            let id = self.active[(first + k) % n];
            let Some(queue) = self.ports[id as usize].as_mut() else {
                continue;
            };
            self.batch.in_port = id;
            let mut io = PortIo {
                pool: &mut self.pool,
                ring,
                ctr: &mut self.ctr,
            };
            queue.rx_burst(&mut io, &mut self.batch);
            if self.batch.is_empty() {
                continue;
            }
            received += self.batch.len();
            let stats = self.ctr.port(id as usize);
            stats.rx_packets += self.batch.len() as u64;
            stats.rx_bytes += self.batch.iter().map(|p| p.buf.len() as u64).sum::<u64>();
            if !clock_read {
                // One clock read per poll that received anything; stages never read it.
                self.now = Instant::now();
                clock_read = true;
            }
            let mut cx = pipeline::Ctx::new(
                tables,
                &self.flows,
                &mut self.ctr,
                &mut self.trace,
                &mut self.state,
                self.now,
                pipeline::Mode::Forward,
            );
            pipeline::run(&mut self.batch, &mut cx);
            self.output(ring, tables);
        }
        received
    }

    /// Moves each packet of the batch to its output port's staging (or back to the pool), then
    /// transmits every staged burst. A frame with offload state the port cannot take is
    /// segmented or has its checksum completed here ([`pipeline::offload`]); TCP to a port
    /// that takes TSO frames is coalesced first ([`pipeline::gro`]); per-port tx counts then
    /// count the frames written, segments and super-frames included.
    fn output(&mut self, ring: &mut Uring, tables: &Tables) {
        let Self {
            batch,
            ports,
            tx_stage,
            touched,
            gro,
            pool,
            ctr,
            state,
            ..
        } = self;
        // Only what came in as wire-sized segments is worth coalescing: a port with offloads
        // (a tap) hands over the sender's super-frames already, and offering each of its TCP
        // packets to GRO cost established flows ~20% on memory ports (criterion).
        let segments_in = !tables.port(batch.in_port).is_some_and(|e| e.offloads);
        for mut pkt in batch.drain() {
            match pkt.meta.next {
                Next::Output(out) if ports.get(out as usize).is_some_and(Option::is_some) => {
                    // No port takes a tunnelled super-frame or partial checksum whole.
                    let offloads =
                        !pkt.meta.tunneled && tables.port(out).is_some_and(|e| e.offloads);
                    if offloads
                        && segments_in
                        && pkt.meta.l3 == L3::Ipv4
                        && pkt.meta.flow.proto == podswitch_packet::IpProtocol::TCP
                    {
                        // The port takes whatever offload state the packet has; its segments
                        // may become one super-frame.
                        gro.offer(pkt, out, pool, ctr, |pool, ctr, out, p| {
                            stage_packet(ports, tx_stage, touched, ring, pool, ctr, out, p)
                        });
                        continue;
                    }
                    if !pkt.meta.offload.is_none() {
                        let caps = offload::Caps::of(offloads);
                        if !caps.takes(&pkt.meta.offload) {
                            if pkt.meta.offload.is_gso() {
                                offload::segment(&pkt, caps, pool, ctr, |pool, ctr, seg| {
                                    stage_packet(
                                        ports, tx_stage, touched, ring, pool, ctr, out, seg,
                                    )
                                });
                                pool.put(pkt.buf);
                                continue;
                            }
                            if !offload::complete_csum(&mut pkt, ctr) {
                                pool.put(pkt.buf);
                                continue;
                            }
                        }
                    }
                    stage_packet(ports, tx_stage, touched, ring, pool, ctr, out, pkt);
                }
                Next::Output(_) => {
                    ctr.drop(DropReason::OutputPortGone);
                    pool.put(pkt.buf);
                }
                // Dropped packets were counted by the stage that dropped them.
                Next::Drop(_) | Next::Continue => pool.put(pkt.buf),
            }
        }
        // The runs still held: the burst is over.
        gro.flush(pool, ctr, |pool, ctr, out, p| {
            stage_packet(ports, tx_stage, touched, ring, pool, ctr, out, p)
        });
        // Unicast re-probes of stale next hops the stages asked for, out of the uplink.
        if let Some(uplink) = tables.uplink {
            for (ip, mac) in state.arp_probes.take() {
                if ports.get(uplink.port as usize).is_none_or(Option::is_none) {
                    break;
                }
                let Some(buf) = pool.get() else {
                    break;
                };
                let mut probe = Packet::new(buf);
                pipeline::tunnel::arp_request(&mut probe, &uplink, ip, Some(mac));
                stage_packet(
                    ports,
                    tx_stage,
                    touched,
                    ring,
                    pool,
                    ctr,
                    uplink.port,
                    probe,
                );
            }
        }
        // The queue counts what it sends (tx_packets/tx_bytes once the kernel took a frame
        // whole) and what it loses (tx_errors and a drop reason).
        for out in touched.drain(..) {
            let stage = &mut tx_stage[out as usize];
            if let Some(queue) = ports[out as usize].as_mut() {
                let mut io = PortIo { pool, ring, ctr };
                queue.tx_burst(&mut io, stage);
            }
        }
    }

    /// Hands reaped completions to their queues. While a port is being removed its queue is
    /// passed as `removing`, since it is no longer in the port table.
    fn dispatch_completions(
        &mut self,
        ring: &mut Uring,
        mut removing: Option<&mut Box<dyn PortQueue>>,
    ) {
        ring.reap(&mut self.completions);
        for i in 0..self.completions.len() {
            let (token, result) = self.completions[i];
            let port = match token {
                Token::Rx { port, .. } | Token::Tx { port, .. } | Token::Poll { port, .. } => port,
                Token::Wake => {
                    ring.wake_completed();
                    let _ = ring.arm_wake(&self.waker);
                    continue;
                }
                Token::Cancel => continue,
            };
            let mut io = PortIo {
                pool: &mut self.pool,
                ring,
                ctr: &mut self.ctr,
            };
            match (
                &mut removing,
                self.ports.get_mut(port as usize).and_then(Option::as_mut),
            ) {
                (Some(q), _) if q.port() == port => q.complete(&mut io, token, result),
                (_, Some(q)) => q.complete(&mut io, token, result),
                _ => {}
            }
        }
    }

    fn handle_commands(&mut self, ring: &mut Uring) {
        while let Ok(cmd) = self.commands.try_recv() {
            match cmd {
                Command::AddQueue(q) => self.add_queue(q),
                Command::RemovePort { id, release_device } => {
                    self.remove_port(ring, id, release_device)
                }
                Command::Sync(done) => {
                    self.settle_tx(ring);
                    self.publish();
                    let _ = done.send(());
                }
            }
        }
    }

    /// Waits (at most [`SYNC_TX_WAIT`]) until every transmit handed to the kernel so far has
    /// completed and been counted, so that a sync's counters include every frame the worker
    /// processed before it: the writes of the last iteration were submitted but their
    /// completions are reaped only by the next one. Submits whatever is queued first.
    fn settle_tx(&mut self, ring: &mut Uring) {
        let deadline = Instant::now() + SYNC_TX_WAIT;
        loop {
            if ring.submit().is_err() {
                return;
            }
            self.dispatch_completions(ring, None);
            for &id in &self.active {
                if let Some(q) = self.ports.get_mut(id as usize).and_then(Option::as_mut) {
                    q.settle(&mut PortIo {
                        pool: &mut self.pool,
                        ring,
                        ctr: &mut self.ctr,
                    });
                }
            }
            let pending = self
                .active
                .iter()
                .filter_map(|&id| self.ports.get(id as usize).and_then(Option::as_ref))
                .any(|q| q.tx_pending());
            let left = deadline.saturating_duration_since(Instant::now());
            if !pending || left.is_zero() {
                return;
            }
            if ring.wait(left.min(Duration::from_millis(1))).is_err() {
                return;
            }
        }
    }

    /// Starts polling a queue. Ids beyond `max_ports` are refused by the daemon beforehand.
    pub fn add_queue(&mut self, queue: Box<dyn PortQueue>) {
        let id = queue.port() as usize;
        if id >= self.ports.len() {
            return;
        }
        *self.ctr.port(id) = Default::default();
        if self.tx_stage[id].capacity() < MAX_BURST {
            self.tx_stage[id] = Vec::with_capacity(MAX_BURST);
        }
        self.ports[id] = Some(queue);
        if !self.active.contains(&(id as PortId)) {
            self.active.push(id as PortId);
        }
    }

    /// Stops polling a port and waits (briefly) for the kernel to return its buffers.
    fn remove_port(&mut self, ring: &mut Uring, id: PortId, release_device: bool) {
        self.active.retain(|&p| p != id);
        let Some(mut queue) = self.ports.get_mut(id as usize).and_then(Option::take) else {
            return;
        };
        if release_device {
            queue.release_device();
        }
        for _ in 0..1000 {
            let done = queue.close(&mut PortIo {
                pool: &mut self.pool,
                ring,
                ctr: &mut self.ctr,
            });
            if done {
                break;
            }
            if ring.submit().is_err() || ring.wait(Duration::from_millis(1)).is_err() {
                break;
            }
            self.dispatch_completions(ring, Some(&mut queue));
        }
        // A queue still holding requests leaks their buffers on drop instead of freeing them.
        drop(queue);
        self.publish();
    }

    fn publish(&self) {
        self.shared
            .publish(&self.ctr, self.active.iter().map(|&p| p as usize));
    }

    /// The worker's own counters (benchmarks and tests).
    pub fn counters(&self) -> &Counters {
        &self.ctr
    }
}
