//! The pipeline: every packet of a burst goes through these stages, in this order, on the
//! worker that received it. Each stage is a function over the whole batch that reads the
//! tables snapshot, writes only packet metadata (and the frame, where it rewrites), and counts.
//! The pipeline performs no I/O: the worker delivers `Next::Output` packets afterwards.

pub mod icmp_error;
pub mod l2;
pub mod l3;
pub mod parse;

#[cfg(test)]
mod drop_reason_tests;

use crate::batch::Batch;
use crate::counters::Counters;
use crate::tables::Tables;
use crate::trace::Trace;

/// Runs a batch through the stages.
///
/// The later stages of the design slot in between `l2` and `l3`, in this order:
/// `conntrack` (look up / create the connection), `service_nat` (DNAT to a backend, reverse
/// NAT), `policy` (NetworkPolicy verdict on a connection's first packet). See ARCHITECTURE.md.
#[inline]
pub fn run(batch: &mut Batch, tables: &Tables, ctr: &mut Counters, trace: &mut Trace) {
    parse::run(batch, tables, ctr, trace);
    l2::run(batch, tables, ctr, trace);
    l3::run(batch, tables, ctr, trace);
}
