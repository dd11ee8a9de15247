//! A sync (what the daemon sends before a counters dump) publishes counters that include every
//! frame the worker handed to the kernel before it: a transmit is counted when its completion
//! is reaped, and the writes of the last iteration have been submitted but not yet reaped
//! when the worker reads its commands.

use podswitch_dataplane::counters::PortStats;
use podswitch_dataplane::ports::memory::MemoryQueue;
use podswitch_dataplane::ports::tap::TapQueue;
use podswitch_dataplane::testkit::*;
use podswitch_dataplane::worker::Command;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixDatagram;

#[test]
fn sync_answers_with_every_transmit_submitted_before_it_counted() {
    let crate::Rig {
        mut worker,
        commands,
        ..
    } = crate::rig(32, 64, 4);
    // Pod A sends five frames to pod B, whose queue writes through the ring to a datagram
    // socket standing in for its tap.
    let frame = udp_frame(POD_A_MAC, GW_MAC, POD_A_IP, POD_B_IP, 64, 18);
    let mut pod_a = MemoryQueue::new(POD_A);
    for _ in 0..5 {
        pod_a.inject(&frame);
    }
    let (tap, pod_b) = UnixDatagram::pair().unwrap();
    worker.add_queue(Box::new(pod_a));
    worker.add_queue(Box::new(TapQueue::new(POD_B, OwnedFd::from(tap), 4, 32)));
    let mut state = worker.start_loop().unwrap();
    assert_eq!(
        worker.iterate(&mut state).unwrap(),
        5,
        "the frames were received, routed and their writes submitted"
    );

    let (done, answered) = std::sync::mpsc::sync_channel(1);
    commands.send(Command::Sync(done)).unwrap();
    // Nothing arrives in this iteration, so nothing publishes after the sync's answer.
    assert_eq!(worker.iterate(&mut state).unwrap(), 0);
    answered.try_recv().expect("the sync was answered");
    let mut published = PortStats::default();
    worker
        .shared_counters()
        .sum_port(usize::from(POD_B), &mut published);
    assert_eq!(
        (
            published.tx_packets,
            published.tx_bytes,
            published.tx_errors
        ),
        (5, 5 * frame.len() as u64, 0),
        "the sync's counters include the writes of the iteration before it"
    );
    pod_b.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 2048];
    let delivered = std::iter::from_fn(|| pod_b.recv(&mut buf).ok()).count();
    assert_eq!(delivered, 5, "and the kernel did take all five");
}
