//! The worker polls its queues from a different one each time: no queue is always last to
//! take from what the queues share (large buffers, the ICMP error budget).

use podswitch_dataplane::batch::{Batch, Packet, PortId};
use podswitch_dataplane::ports::{PortIo, PortQueue, Uring};
use std::sync::{Arc, Mutex};

#[derive(Debug)]
struct Recorder {
    port: PortId,
    order: Arc<Mutex<Vec<PortId>>>,
}

impl PortQueue for Recorder {
    fn port(&self) -> PortId {
        self.port
    }

    fn rx_burst(&mut self, _io: &mut PortIo<'_>, _batch: &mut Batch) {
        self.order.lock().unwrap().push(self.port);
    }

    fn tx_burst(&mut self, io: &mut PortIo<'_>, pkts: &mut Vec<Packet>) {
        for p in pkts.drain(..) {
            io.pool.put(p.buf);
        }
    }
}

#[test]
fn every_queue_is_polled_first_in_turn() {
    let mut worker = crate::rig(32, 64, 8).worker;
    let order = Arc::new(Mutex::new(Vec::new()));
    for port in 1..=3 {
        worker.add_queue(Box::new(Recorder {
            port,
            order: order.clone(),
        }));
    }
    let mut ring = Uring::new(64, 128).unwrap();
    let tables = podswitch_dataplane::testkit::tables_with(true, 1500, 0);
    let mut firsts = Vec::new();
    let mut lasts = Vec::new();
    for _ in 0..3 {
        worker.poll_once(&mut ring, &tables);
        let mut o = order.lock().unwrap();
        let mut all = o.clone();
        all.sort();
        assert_eq!(all, vec![1, 2, 3], "each queue once per poll");
        firsts.push(o[0]);
        lasts.push(o[2]);
        o.clear();
    }
    firsts.sort();
    lasts.sort();
    assert_eq!(firsts, vec![1, 2, 3], "a different queue first each poll");
    assert_eq!(lasts, vec![1, 2, 3], "and a different one last");
}
