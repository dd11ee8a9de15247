//! In-memory ports for unit tests and benchmarks: frames go in and out of plain queues, with no
//! kernel involved. Never used by the daemon.

use super::{rx_buffer, PortIo, PortQueue};
use crate::batch::{Batch, Packet, PortId};
use crate::buffer::MAX_FRAME;
use crate::counters::DropReason;
use std::collections::VecDeque;

/// Where received frames come from.
#[derive(Debug)]
enum Source {
    /// Frames queued by a test, each delivered once.
    Queue(VecDeque<Vec<u8>>),
    /// The same frames over and over, `burst` per call (benchmarks).
    Repeat {
        frames: Vec<Vec<u8>>,
        next: usize,
        burst: usize,
    },
}

/// A memory port queue.
#[derive(Debug)]
pub struct MemoryQueue {
    port: PortId,
    source: Source,
    /// Frames transmitted, when collecting.
    sent: Option<Vec<Vec<u8>>>,
    /// Frames transmitted in all.
    pub tx_count: u64,
}

impl MemoryQueue {
    /// A queue that delivers what [`MemoryQueue::inject`] queued and records what is sent.
    pub fn new(port: PortId) -> Self {
        Self {
            port,
            source: Source::Queue(VecDeque::new()),
            sent: Some(Vec::new()),
            tx_count: 0,
        }
    }

    /// A queue that delivers `burst` frames per receive, cycling through `frames`, and discards
    /// (counts) what is sent: a traffic generator and sink for benchmarks.
    pub fn generator(port: PortId, frames: Vec<Vec<u8>>, burst: usize) -> Self {
        Self {
            port,
            source: Source::Repeat {
                frames,
                next: 0,
                burst,
            },
            sent: None,
            tx_count: 0,
        }
    }

    /// Queues a frame for receipt.
    pub fn inject(&mut self, frame: &[u8]) {
        if let Source::Queue(q) = &mut self.source {
            q.push_back(frame.to_vec());
        }
    }

    /// Takes the frames sent so far.
    pub fn take_sent(&mut self) -> Vec<Vec<u8>> {
        self.sent.as_mut().map(std::mem::take).unwrap_or_default()
    }
}

impl PortQueue for MemoryQueue {
    fn port(&self) -> PortId {
        self.port
    }

    fn rx_burst(&mut self, io: &mut PortIo<'_>, batch: &mut Batch) {
        match &mut self.source {
            Source::Queue(q) => {
                while batch.room() > 0 {
                    let Some(frame) = q.front() else { break };
                    if frame.len() > MAX_FRAME {
                        // As a tap read of a frame longer than the buffer: counted, dropped.
                        let stats = io.ctr.port(self.port as usize);
                        stats.rx_packets += 1;
                        stats.rx_bytes += frame.len() as u64;
                        io.ctr.drop(DropReason::RxTruncated);
                        q.pop_front();
                        continue;
                    }
                    let Some(mut buf) = rx_buffer(io) else { break };
                    buf.fill(frame);
                    q.pop_front();
                    let _ = batch.push(buf);
                }
            }
            Source::Repeat {
                frames,
                next,
                burst,
            } => {
                if frames.is_empty() {
                    return;
                }
                for _ in 0..(*burst).min(batch.room()) {
                    let Some(mut buf) = rx_buffer(io) else { break };
                    buf.fill(&frames[*next]);
                    *next = (*next + 1) % frames.len();
                    let _ = batch.push(buf);
                }
            }
        }
    }

    fn tx_burst(&mut self, io: &mut PortIo<'_>, pkts: &mut Vec<Packet>) {
        for p in pkts.drain(..) {
            self.tx_count += 1;
            io.ctr.tx_sent(self.port as usize, p.buf.len());
            if let Some(sent) = &mut self.sent {
                sent.push(p.buf.frame().to_vec());
            }
            io.pool.put(p.buf);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buffer::Pool;
    use crate::counters::Counters;
    use crate::ports::Uring;

    #[test]
    fn an_injected_frame_longer_than_a_buffer_is_counted_at_its_length_and_dropped() {
        let mut q = MemoryQueue::new(1);
        q.inject(&[0u8; MAX_FRAME + 1]);
        q.inject(&[0u8; 60]);
        let (mut pool, mut ring, mut ctr) =
            (Pool::new(4), Uring::new(8, 8).unwrap(), Counters::new(2));
        let mut batch = Batch::with_limit(8);
        let mut io = PortIo {
            pool: &mut pool,
            ring: &mut ring,
            ctr: &mut ctr,
        };
        q.rx_burst(&mut io, &mut batch);
        assert_eq!(batch.len(), 1, "only the frame that fits is delivered");
        assert_eq!(ctr.drops[DropReason::RxTruncated as usize], 1);
        assert_eq!(ctr.ports[1].rx_packets, 1);
        assert_eq!(ctr.ports[1].rx_bytes, MAX_FRAME as u64 + 1);
    }
}
