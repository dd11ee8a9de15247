//! Dataplane integration tests that need no root: the worker loop on memory ports.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod no_alloc;
mod output_port_gone;
mod sync_counts_transmits;
