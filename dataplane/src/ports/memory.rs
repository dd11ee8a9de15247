//! In-memory ports for unit tests and benchmarks: frames go in and out of plain queues, with no
//! kernel involved. Never used by the daemon.

use super::{rx_buffer, PortIo, PortQueue};
use crate::batch::{Batch, Offload, Packet, PortId};
use crate::buffer::{PktBuf, MAX_LARGE_FRAME};
use crate::counters::{DropReason, Event};
use std::collections::VecDeque;

/// Where received frames come from.
#[derive(Debug)]
enum Source {
    /// Frames queued by a test, each delivered once, with their offload state.
    Queue(VecDeque<(Vec<u8>, Offload)>),
    /// The same frames over and over, `burst` per call (benchmarks).
    Repeat {
        frames: Vec<(Vec<u8>, Offload)>,
        next: usize,
        burst: usize,
    },
}

/// A memory port queue.
#[derive(Debug)]
pub struct MemoryQueue {
    port: PortId,
    source: Source,
    /// Frames transmitted, with the offload state they left with, when collecting.
    sent: Option<Vec<(Vec<u8>, Offload)>>,
    /// Frames transmitted in all.
    pub tx_count: u64,
    /// Where sent frames are also recorded, for tests that hand the queue to a worker.
    sink: Option<Sink>,
}

/// A record of the frames a memory queue sent, shared with the test that reads it (memory
/// ports are test-only: the lock is taken once per transmitted burst, never by the daemon).
pub type Sink = std::sync::Arc<std::sync::Mutex<Vec<(Vec<u8>, Offload)>>>;

impl MemoryQueue {
    /// A queue that delivers what [`MemoryQueue::inject`] queued and records what is sent.
    pub fn new(port: PortId) -> Self {
        Self {
            port,
            source: Source::Queue(VecDeque::new()),
            sent: Some(Vec::new()),
            tx_count: 0,
            sink: None,
        }
    }

    /// A queue like [`MemoryQueue::new`] that also records what it sends into `sink`, which
    /// the test keeps while the queue is inside a worker.
    pub fn with_sink(port: PortId, sink: Sink) -> Self {
        Self {
            sink: Some(sink),
            sent: None,
            ..Self::new(port)
        }
    }

    /// A queue that delivers `burst` frames per receive, cycling through `frames`, and discards
    /// (counts) what is sent: a traffic generator and sink for benchmarks.
    pub fn generator(port: PortId, frames: Vec<Vec<u8>>, burst: usize) -> Self {
        let frames = frames.into_iter().map(|f| (f, Offload::NONE)).collect();
        Self::generator_offloaded(port, frames, burst)
    }

    /// A generator whose frames carry offload state (GSO super-frames, partial checksums).
    pub fn generator_offloaded(
        port: PortId,
        frames: Vec<(Vec<u8>, Offload)>,
        burst: usize,
    ) -> Self {
        Self {
            port,
            source: Source::Repeat {
                frames,
                next: 0,
                burst,
            },
            sent: None,
            tx_count: 0,
            sink: None,
        }
    }

    /// Queues a frame for receipt. Frames longer than a small buffer arrive in a large one
    /// (dropped as `rx_truncated` past [`MAX_LARGE_FRAME`], or when the pool has none).
    pub fn inject(&mut self, frame: &[u8]) {
        self.inject_offloaded(frame, Offload::NONE);
    }

    /// Queues a frame for receipt with an offload state, as a tap with vnet headers would
    /// deliver it (a GSO super-frame, a partial checksum).
    pub fn inject_offloaded(&mut self, frame: &[u8], offload: Offload) {
        if let Source::Queue(q) = &mut self.source {
            q.push_back((frame.to_vec(), offload));
        }
    }

    /// Takes the frames sent so far.
    pub fn take_sent(&mut self) -> Vec<Vec<u8>> {
        self.take_sent_offloaded()
            .into_iter()
            .map(|(f, _)| f)
            .collect()
    }

    /// Takes the frames sent so far, each with the offload state it left with (what a tap
    /// with vnet headers would have written in its header).
    pub fn take_sent_offloaded(&mut self) -> Vec<(Vec<u8>, Offload)> {
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
                    let Some((frame, offload)) = q.front() else {
                        break;
                    };
                    let offload = *offload;
                    if frame.len() > MAX_LARGE_FRAME
                        || (frame.len() > crate::buffer::MAX_FRAME && io.pool.total_large() == 0)
                    {
                        // As a tap read of a frame longer than the buffer: counted, dropped.
                        let stats = io.ctr.port(self.port as usize);
                        stats.rx_packets += 1;
                        stats.rx_bytes += frame.len() as u64;
                        io.ctr.drop(DropReason::RxTruncated);
                        q.pop_front();
                        continue;
                    }
                    let Some(mut buf) = buffer_for(io, frame.len()) else {
                        break;
                    };
                    buf.fill(frame);
                    if offload.is_gso() {
                        io.ctr.event(Event::GsoFramesRx);
                    }
                    q.pop_front();
                    let _ = batch.push_offloaded(buf, offload);
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
                    let (frame, offload) = &frames[*next];
                    let Some(mut buf) = buffer_for(io, frame.len()) else {
                        break;
                    };
                    buf.fill(frame);
                    if offload.is_gso() {
                        io.ctr.event(Event::GsoFramesRx);
                    }
                    let _ = batch.push_offloaded(buf, *offload);
                    *next = (*next + 1) % frames.len();
                }
            }
        }
    }

    fn tx_burst(&mut self, io: &mut PortIo<'_>, pkts: &mut Vec<Packet>) {
        if let Some(sink) = &self.sink {
            if let Ok(mut sink) = sink.lock() {
                sink.extend(
                    pkts.iter()
                        .map(|p| (p.buf.frame().to_vec(), p.meta.offload)),
                );
            }
        }
        for p in pkts.drain(..) {
            self.tx_count += 1;
            io.ctr.tx_sent(self.port as usize, p.buf.len());
            if let Some(sent) = &mut self.sent {
                sent.push((p.buf.frame().to_vec(), p.meta.offload));
            }
            io.pool.put(p.buf);
        }
    }
}

/// A buffer for a frame of `len` bytes (large past a small buffer), counting an empty pool.
fn buffer_for(io: &mut PortIo<'_>, len: usize) -> Option<PktBuf> {
    if len <= crate::buffer::MAX_FRAME {
        return rx_buffer(io);
    }
    let b = io.pool.get_large();
    if b.is_none() {
        io.ctr.event(Event::LargePoolEmpty);
    }
    b
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
        q.inject(&[0u8; crate::buffer::MAX_FRAME + 1]);
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
        assert_eq!(ctr.ports[1].rx_bytes, crate::buffer::MAX_FRAME as u64 + 1);
    }
}
