//! Ports: where packets enter and leave the switch.
//!
//! A port has one queue per worker; each worker owns its queues outright, so no port is ever
//! touched by two threads. Every queue implements [`PortQueue`]: receive a burst into a batch,
//! transmit a burst, and, for queues whose I/O is asynchronous, take the completions the worker
//! reaps from its ring. Kinds: `tap` (pod and host ports, batched through the worker's io_uring),
//! `afxdp` (an existing interface through AF_XDP sockets and an XDP redirect program) and
//! `memory` (unit tests and benchmarks only). All `unsafe` of the dataplane lives here.

pub mod afxdp;
pub mod memory;
pub mod tap;
pub mod uring;
pub mod xdp;
pub mod xsk;

use crate::batch::{Batch, Packet, PortId};
use crate::buffer::Pool;
use crate::counters::{Counters, Event};
pub use uring::{Token, Uring, Waker};

/// What a queue may use while doing I/O: the worker's buffers, ring and counters.
#[derive(Debug)]
pub struct PortIo<'a> {
    /// Buffers.
    pub pool: &'a mut Pool,
    /// The worker's ring (unused by memory ports).
    pub ring: &'a mut Uring,
    /// The worker's counters.
    pub ctr: &'a mut Counters,
}

/// One queue of a port, owned by one worker.
pub trait PortQueue: Send + std::fmt::Debug {
    /// The port this queue belongs to.
    fn port(&self) -> PortId;

    /// Moves received frames into `batch` (up to its room) and re-arms receives.
    fn rx_burst(&mut self, io: &mut PortIo<'_>, batch: &mut Batch);

    /// Sends `pkts` (draining it). Buffers go back to the pool when the send completes.
    fn tx_burst(&mut self, io: &mut PortIo<'_>, pkts: &mut Vec<Packet>);

    /// A completion of a request this queue issued on the worker's ring.
    fn complete(&mut self, _io: &mut PortIo<'_>, _token: Token, _result: i32) {}

    /// Whether a transmit handed to the kernel has not had its completion reaped yet: its
    /// frame is not counted (sent or lost) until then. Synchronous queues never have one.
    fn tx_pending(&self) -> bool {
        false
    }

    /// Brings the queue's own accounting up to date before counters are published on
    /// request: queues whose completions arrive without a ring completion (AF_XDP) take them
    /// here, and read what the kernel counted. Called only on the slow path (a sync).
    fn settle(&mut self, _io: &mut PortIo<'_>) {}

    /// Lets the kernel device behind the port go once its last queue closes (undoes
    /// persistence). Called once, by one worker, when the port is deleted for good.
    fn release_device(&mut self) {}

    /// Starts tearing down: cancels outstanding requests. Returns true once nothing is in
    /// flight and the queue can be dropped.
    fn close(&mut self, _io: &mut PortIo<'_>) -> bool {
        true
    }
}

/// Takes a buffer for a receive, counting an empty pool.
pub(crate) fn rx_buffer(io: &mut PortIo<'_>) -> Option<crate::buffer::PktBuf> {
    let b = io.pool.get();
    if b.is_none() {
        io.ctr.event(Event::PoolEmpty);
    }
    b
}
