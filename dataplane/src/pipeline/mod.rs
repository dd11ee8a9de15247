//! The pipeline: every packet of a burst goes through these stages, in this order, on the
//! worker that received it. Each stage is a function over the whole batch that reads the
//! tables snapshot, writes only packet metadata (and the frame, where it rewrites), and counts.
//! The pipeline performs no I/O: the worker delivers `Next::Output` packets afterwards.

pub mod icmp_error;
pub mod l2;
pub mod l3;
pub mod offload;
pub mod parse;

#[cfg(test)]
mod drop_reason_tests;

use crate::batch::Batch;
use crate::counters::Counters;
use crate::tables::Tables;
use crate::trace::Trace;
use icmp_error::IcmpRateLimit;
use std::time::Instant;

/// What the stages keep from one burst to the next on one worker, and the worker's clock.
/// Owned by the worker (never shared), so stages mutate it without synchronisation.
#[derive(Debug, Clone)]
pub struct Context {
    /// When the worker received the burst: read once per poll by the worker, never per packet.
    pub now: Instant,
    /// The budget of ICMP errors this worker may still send.
    pub icmp_errors: IcmpRateLimit,
}

impl Context {
    /// A context starting at `now`, with the default ICMP error budget (full).
    pub fn new(now: Instant) -> Self {
        Self {
            now,
            icmp_errors: IcmpRateLimit::linux_default(now),
        }
    }
}

/// Runs a batch through the stages. `ctx.now` must be the time the batch was received.
///
/// The later stages of the design slot in between `l2` and `l3`, in this order:
/// `conntrack` (look up / create the connection), `service_nat` (DNAT to a backend, reverse
/// NAT), `policy` (NetworkPolicy verdict on a connection's first packet). See ARCHITECTURE.md.
#[inline]
pub fn run(
    batch: &mut Batch,
    tables: &Tables,
    ctx: &mut Context,
    ctr: &mut Counters,
    trace: &mut Trace,
) {
    parse::run(batch, tables, ctr, trace);
    l2::run(batch, tables, ctr, trace);
    l3::run(batch, tables, ctx, ctr, trace);
}
