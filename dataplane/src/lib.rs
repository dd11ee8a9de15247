//! podswitchd: a poll-mode userspace switch for Kubernetes pods.
//!
//! Layers, bottom up (a layer uses only those below it): `buffer`/`batch` (packet memory),
//! `tables` (immutable snapshots), `pipeline` (stages over a batch, no I/O), `ports` (I/O),
//! `worker` (the poll loop), `daemon` (threads, state, socket API). See ARCHITECTURE.md.

pub mod affinity;
pub mod batch;
pub mod buffer;
pub mod config;
pub mod conntrack;
pub mod counters;
pub mod daemon;
pub mod neighbors;
pub mod pipeline;
pub mod ports;
pub(crate) mod prefetch;
pub mod tables;
pub mod testkit;
pub mod trace;
pub mod worker;
