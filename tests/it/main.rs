//! Integration tests: real pods (network namespaces with tap devices) around a real
//! `podswitchd`, real kernel traffic. One binary, a module per feature; see the harness in
//! `tests/src/lib.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

/// The daemons' allocator: `control_publish` runs control's code in this process and times it.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod afxdp;
mod api;
mod cni;
mod cni_afxdp;
mod containerd;
mod control;
mod control_publish;
mod counters;
mod l2;
mod l3;
mod malformed;
mod multinode;
mod offload;
mod policy;
mod policy_dp;
mod restart;
mod service_cidr;
mod service_dp;
mod services;
mod steering;
mod tcp;
mod two_nodes;
