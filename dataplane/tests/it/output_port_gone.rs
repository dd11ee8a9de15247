//! The worker's own drop: a packet the pipeline sends to a port this worker holds no queue
//! for (the port is in the tables, its queue is not, or not yet, in the worker) is counted as
//! `output_port_gone`, and its buffer goes back to the pool.

use podswitch_dataplane::counters::DropReason;
use podswitch_dataplane::ports::memory::MemoryQueue;
use podswitch_dataplane::ports::Uring;
use podswitch_dataplane::testkit::*;

#[test]
fn packet_for_a_port_without_a_queue_is_counted_as_output_port_gone() {
    let crate::Rig {
        mut worker, tables, ..
    } = crate::rig(4, 16, 4);
    // Pod A's queue only: the tables route pod B's address to port POD_B, which has none here.
    let frames = vec![udp_frame(POD_A_MAC, GW_MAC, POD_A_IP, POD_B_IP, 64, 18)];
    worker.add_queue(Box::new(MemoryQueue::generator(POD_A, frames, 4)));
    let mut ring = Uring::new(64, 128).unwrap();
    let snapshot = tables.load_full();
    // More packets than the pool holds: a leaked buffer would stop reception.
    let mut received = 0;
    for _ in 0..10 {
        received += worker.poll_once(&mut ring, &snapshot);
    }
    assert_eq!(received, 40);
    let c = worker.counters();
    assert_eq!(c.drops[DropReason::OutputPortGone as usize], 40);
    assert_eq!(c.drops.iter().sum::<u64>(), 40, "{:?}", c.drops);
    assert_eq!(c.ports[usize::from(POD_B)].tx_packets, 0);
}
