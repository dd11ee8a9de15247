//! Dataplane integration tests: the worker loop on memory ports (no root), and on AF_XDP ports
//! over veths (`no_alloc::afxdp_forwarding_allocates_nothing`: root, skipped without).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod gro;
mod multinode;
mod no_alloc;
mod offload;
mod output_port_gone;
mod poll_order;
mod sync_counts_transmits;

/// A worker on the standard two-pod tables (`testkit::tables_with`), busy-polling and not yet
/// started: the rig every test here drives by hand, with the ends the tests need.
#[derive(Debug)]
pub struct Rig {
    pub worker: podswitch_dataplane::worker::Worker,
    pub commands: std::sync::mpsc::Sender<podswitch_dataplane::worker::Command>,
    pub tables: std::sync::Arc<arc_swap::ArcSwap<podswitch_dataplane::tables::Tables>>,
    pub waker: std::sync::Arc<podswitch_dataplane::ports::Waker>,
}

/// The rig with `burst`, a pool of `pool_buffers` and `rx_depth` reads per queue.
pub fn rig(burst: usize, pool_buffers: usize, rx_depth: usize) -> Rig {
    rig_with_flows(burst, pool_buffers, rx_depth, std::sync::Arc::default())
}

/// [`rig`] whose worker shares `flows` (conntrack, neighbours) with the test.
pub fn rig_with_flows(
    burst: usize,
    pool_buffers: usize,
    rx_depth: usize,
    flows: std::sync::Arc<podswitch_dataplane::pipeline::FlowState>,
) -> Rig {
    use podswitch_dataplane::worker::{IdlePolicy, Worker, WorkerConfig};
    use std::sync::Arc;
    let tables = Arc::new(arc_swap::ArcSwap::from_pointee(
        podswitch_dataplane::testkit::tables_with(true, 1500, 0),
    ));
    let (commands, rx) = std::sync::mpsc::channel();
    let cfg = WorkerConfig {
        burst,
        idle: IdlePolicy::Busy,
        pool_buffers,
        pool_large_buffers: 64,
        max_ports: 8,
        rx_depth,
        spin_iterations: 0,
        sleep: std::time::Duration::ZERO,
        spin_yield: false,
        cpu: None,
    };
    let waker = Arc::new(podswitch_dataplane::ports::Waker::new().unwrap());
    let worker = Worker::new(
        cfg,
        tables.clone(),
        flows,
        rx,
        waker.clone(),
        Arc::new(std::sync::atomic::AtomicBool::new(false)),
    );
    Rig {
        worker,
        commands,
        tables,
        waker,
    }
}
