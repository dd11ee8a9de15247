//! AF_XDP ports: an existing interface (a veth end, a NIC) whose frames an XDP program
//! redirects into one AF_XDP socket per worker (`xdp.rs`), read and written through the
//! socket's rings (`xsk.rs`) without a system call per packet.
//!
//! The UMEM of every socket is its worker's small-buffer region (`Pool::umem_area`): chunk *k*
//! is small buffer *k*, so a frame received from an AF_XDP port is a `PktBuf` like any other,
//! and a frame from any port goes out of an AF_XDP port without a copy. Each socket registers
//! the region itself (no `XDP_SHARED_UMEM`): ports come and go independently, each binds
//! zero-copy or copy as its own driver allows. A chunk belongs either to the pool (or a batch)
//! or to the kernel; the queue tracks which chunks it lent (`lent`), takes each back exactly
//! once (rx and completion rings, or all at once when the socket is closed), and never reuses
//! one the kernel holds.
//!
//! Per iteration: the completion ring is reaped (sent chunks back to the pool, counted as
//! sent), the rx ring read into the batch, the fill ring topped up from the pool. A tx burst
//! writes descriptors into the tx ring and, only when the kernel asks for it
//! (`XDP_USE_NEED_WAKEUP`: always in copy mode), kicks it with one `sendto`. An idle worker
//! sleeps on a multishot readiness poll of the socket in its io_uring, like a tap queue.

use super::xdp::XdpHook;
use super::xsk::{Desc, Statistics, Xsk, XDP_PKT_CONTD};
use super::{PortIo, PortQueue, Token};
use crate::batch::{Batch, Packet, PortId};
use crate::buffer::{PktBuf, HEADROOM, MAX_FRAME, SMALL_BUF};
use crate::counters::{DropReason, Event};
use io_uring::{opcode, types};
use podswitch_proto::MTU_RANGE;
use std::sync::Arc;

/// UMEM chunk size: one small buffer.
pub const CHUNK_SIZE: u32 = SMALL_BUF as u32;
/// Where the kernel puts a received frame in its chunk: after `XDP_PACKET_HEADROOM`.
pub const RX_OFFSET: u32 = 256;
/// The largest MTU whose frames (MTU + Ethernet header) fit one chunk behind the kernel's
/// headroom: what a socket without multi-buffer carries.
pub const ONE_CHUNK_MTU: u16 = (CHUNK_SIZE - RX_OFFSET - 14) as u16;
/// The largest MTU an afxdp port carries: any MTU a port may have ([`MTU_RANGE`], up to a
/// 9000-byte jumbo frame), in several chunks on a socket bound for multi-buffer frames
/// (`XDP_USE_SG`), gathered into a large buffer on receive and spread over chunks on transmit.
pub const MAX_MTU: u16 = *MTU_RANGE.end();
/// The longest frame an afxdp port sends: [`MAX_MTU`] with an Ethernet header and a VLAN tag.
const MAX_TX_FRAME: usize = MAX_MTU as usize + 18;
/// Chunks a frame of [`MAX_TX_FRAME`] bytes takes at most.
const MAX_PIECES: usize = MAX_TX_FRAME.div_ceil(MAX_FRAME);
/// Descriptors per ring.
pub const RING_SIZE: u32 = 4096;
/// Fewest chunks a queue keeps lent for receiving, however small the pool.
const FILL_MIN: u32 = 64;
/// The share of the worker's small buffers a queue keeps lent for receiving (fill ring, the
/// kernel's hands, rx ring): an eighth, 1024 of the default 8192, about 7 ms of frames at
/// 140k pps, so six AF_XDP ports leave a quarter of the pool to the rest. A veth or NIC has no
/// back-pressure: frames arriving while the worker is off its CPU longer than that are
/// dropped (`xsk_rx_dropped`); a larger `pool_buffers` buys a deeper reserve.
pub const FILL_SHARE: usize = 8;
/// `sendto` kicks per tx burst at most: copy mode sends 32 frames per kick (the kernel's
/// `TX_BATCH_SIZE`) and says EAGAIN when more are queued.
const MAX_KICKS: usize = 8;

/// One worker's socket on one queue of an AF_XDP port.
#[derive(Debug)]
pub struct AfxdpQueue {
    port: PortId,
    /// `None` once closed.
    xsk: Option<Xsk>,
    /// The program feeding the socket; detached when the port's last queue goes.
    _hook: Arc<XdpHook>,
    /// The UMEM's first byte: the pool of the worker running this queue must be the one
    /// registered (checked on first use).
    umem_base: usize,
    umem_checked: bool,
    /// Per chunk: lent to the kernel (fill, rx, tx or completion ring).
    lent: Vec<bool>,
    /// Per chunk lent for transmit: the frame's length, counted when it completes (0 on
    /// every chunk of a multi-buffer frame but its last, which carries the whole length).
    tx_len: Vec<u16>,
    /// A multi-buffer frame being received: its pieces so far, in a large buffer.
    gather: Option<PktBuf>,
    /// The rest of a multi-buffer frame that could not be gathered is being dropped.
    gather_dropping: bool,
    /// Chunks in the tx or completion ring.
    tx_outstanding: u32,
    /// Chunks to keep lent for receiving ([`FILL_SHARE`] of the pool, at most a ring).
    fill_target: u32,
    /// Chunks lent for receiving and not back yet (in the fill ring, taken by the kernel,
    /// or in the rx ring). Not the fill ring's occupancy: the kernel publishes its fill-ring
    /// consumer index only when it has used up what it last saw, so the ring looks full
    /// until it is empty, and a refill sized by it came too late (measured: half the frames of
    /// a flood dropped as `xsk_fill_ring_empty`).
    rx_lent: u32,
    /// A kick found more to send than one call took, or failed: retried next iteration.
    kick_pending: bool,
    poll_armed: bool,
    in_flight: usize,
    stopped: bool,
    cancel_sent: bool,
    /// The kernel's counts as last read, so each read adds only what is new.
    stats_seen: Statistics,
}

impl AfxdpQueue {
    /// A queue over a bound socket whose UMEM is the region at `umem_base` with `chunks`
    /// chunks, fed by `hook`.
    pub fn new(
        port: PortId,
        xsk: Xsk,
        hook: Arc<XdpHook>,
        umem_base: usize,
        chunks: usize,
    ) -> Self {
        AfxdpQueue {
            port,
            xsk: Some(xsk),
            _hook: hook,
            umem_base,
            umem_checked: false,
            lent: vec![false; chunks],
            tx_len: vec![0; chunks],
            gather: None,
            gather_dropping: false,
            tx_outstanding: 0,
            rx_lent: 0,
            fill_target: ((chunks / FILL_SHARE) as u32).clamp(FILL_MIN, RING_SIZE),
            kick_pending: false,
            poll_armed: false,
            in_flight: 0,
            stopped: false,
            cancel_sent: false,
            stats_seen: Statistics::default(),
        }
    }

    /// Whether the socket runs zero-copy.
    pub fn zero_copy(&self) -> bool {
        self.xsk.as_ref().is_some_and(|x| x.zero_copy)
    }

    /// Sent chunks back to the pool, each counted as sent.
    fn reap_completions(&mut self, io: &mut PortIo<'_>) {
        let Some(xsk) = self.xsk.as_mut() else { return };
        let n = xsk.comp.ready(u32::MAX);
        if n == 0 {
            return;
        }
        for i in 0..n {
            let addr = xsk.comp.get(i);
            let chunk = addr / u64::from(CHUNK_SIZE);
            let Some(lent) = self.lent.get_mut(chunk as usize).filter(|l| **l) else {
                io.ctr.event(Event::XskBadAddress);
                continue;
            };
            *lent = false;
            let len = self.tx_len[chunk as usize];
            if len > 0 {
                io.ctr.tx_sent(self.port as usize, usize::from(len));
            }
            // SAFETY: the chunk was lent (its `PktBuf` given up in `tx_burst`) and is taken
            // back once: `lent` was set and is cleared right above.
            if let Some(buf) = unsafe { io.pool.reclaim_chunk(chunk as u32, 0, 0) } {
                io.pool.put(buf);
            }
        }
        xsk.comp.release(n);
        self.tx_outstanding = self.tx_outstanding.saturating_sub(n);
    }

    /// Tops the chunks lent for receiving up to the queue's fill target from the pool,
    /// leaving the pool a quarter of its buffers for the worker's other ports.
    fn refill(&mut self, io: &mut PortIo<'_>) {
        let Some(xsk) = self.xsk.as_mut() else { return };
        let have = self.rx_lent;
        let target = self.fill_target;
        if have >= target {
            return;
        }
        let reserve = io.pool.total() / 4;
        let mut want = (target - have).min(xsk.fill.free(target - have));
        let mut pushed = 0;
        while want > 0 && io.pool.available() > reserve {
            let Some(buf) = io.pool.get() else { break };
            // The buffer is given up for its chunk, the kernel's until it comes back in the
            // rx ring (or the socket closes).
            let chunk = match io.pool.lend_chunk(buf) {
                Ok(c) if (c as usize) < self.lent.len() => c,
                Ok(c) => {
                    // Past the chunks this queue tracks (never: both come from the pool).
                    // SAFETY: the buffer was just given up and is taken back once.
                    if let Some(b) = unsafe { io.pool.reclaim_chunk(c, HEADROOM, 0) } {
                        io.pool.put(b);
                    }
                    break;
                }
                Err(buf) => {
                    io.pool.put(buf);
                    break;
                }
            };
            self.lent[chunk as usize] = true;
            xsk.fill.push(u64::from(chunk) * u64::from(CHUNK_SIZE));
            self.rx_lent += 1;
            pushed += 1;
            want -= 1;
        }
        if pushed > 0 {
            xsk.fill.submit();
            if xsk.fill.needs_wakeup() {
                xsk.kick_fill();
            }
        } else if have == 0 {
            io.ctr.event(Event::PoolEmpty);
        }
    }

    /// Wakes the kernel to send what the tx ring holds, if it asks for it: one `sendto`, or a
    /// few when copy mode takes only 32 frames per call.
    fn kick(&mut self, io: &mut PortIo<'_>) {
        self.kick_pending = false;
        for _ in 0..MAX_KICKS {
            let Some(xsk) = self.xsk.as_mut() else { return };
            if xsk.tx.outstanding() == 0 || !xsk.tx.needs_wakeup() {
                return;
            }
            match xsk.kick_tx() {
                Ok(()) => continue,
                Err(e) => match e.raw_os_error() {
                    // More left than one call sends, or the completion ring is full: take
                    // the completions and go on.
                    Some(libc::EAGAIN) => self.reap_completions(io),
                    // The driver is busy or out of memory: next iteration.
                    Some(libc::EBUSY | libc::ENOBUFS) => {
                        self.kick_pending = true;
                        return;
                    }
                    _ => {
                        io.ctr.event(Event::XskKickError);
                        self.kick_pending = true;
                        return;
                    }
                },
            }
        }
        self.kick_pending = true;
    }

    fn arm_poll(&mut self, io: &mut PortIo<'_>) {
        if self.poll_armed || self.stopped {
            return;
        }
        let Some(xsk) = self.xsk.as_ref() else { return };
        if io.ring.arm_readiness_poll(xsk.raw_fd(), self.port).is_ok() {
            self.poll_armed = true;
            self.in_flight += 1;
        }
    }

    /// Adds what the kernel counted since the last read to the worker's drops and events.
    fn read_statistics(&mut self, io: &mut PortIo<'_>) {
        let Some(Ok(s)) = self.xsk.as_ref().map(Xsk::statistics) else {
            return;
        };
        let seen = std::mem::replace(&mut self.stats_seen, s);
        for _ in seen.rx_dropped..s.rx_dropped {
            io.ctr.drop(DropReason::XskRxDropped);
        }
        for _ in seen.rx_ring_full..s.rx_ring_full {
            io.ctr.drop(DropReason::XskRxRingFull);
        }
        for _ in seen.rx_fill_ring_empty_descs..s.rx_fill_ring_empty_descs {
            io.ctr.event(Event::XskFillRingEmpty);
        }
    }

    /// The pool handed in is the one whose region the socket registered (once per queue).
    fn pool_is_the_umem(&mut self, io: &mut PortIo<'_>) -> bool {
        if !self.umem_checked {
            if io.pool.umem_area().0 as usize != self.umem_base {
                // A queue handed to the wrong worker: lending its buffers would let the
                // kernel write into another worker's memory. Never expected.
                debug_assert!(
                    false,
                    "AF_XDP queue polled by a worker whose pool is not its UMEM"
                );
                return false;
            }
            self.umem_checked = true;
        }
        true
    }
}

impl AfxdpQueue {
    /// Sends a frame longer than a chunk as one multi-buffer frame: each piece copied into a
    /// chunk of its own, every descriptor but the last marked [`XDP_PKT_CONTD`]. The frame is
    /// counted once, with its last chunk. Returns the chunks queued: none (counted as a drop)
    /// when the tx ring or the pool has no room for all its pieces, as a frame is never sent
    /// in part.
    fn send_pieces(&mut self, io: &mut PortIo<'_>, frame: &PktBuf) -> u32 {
        let pieces = frame.len().div_ceil(MAX_FRAME);
        if frame.len() > MAX_TX_FRAME {
            // Longer than any afxdp port's MTU (the kernel would refuse or drop it).
            io.ctr.tx_lost(self.port as usize, DropReason::XskTxTooLong);
            return 0;
        }
        let Some(xsk) = self.xsk.as_mut() else {
            return 0;
        };
        if xsk.tx.free(pieces as u32) < pieces as u32 || io.pool.available() < pieces {
            io.ctr.tx_lost(self.port as usize, DropReason::TxQueueFull);
            return 0;
        }
        // Every piece in a chunk of its own before any descriptor is pushed, so the ring
        // never holds part of a frame.
        let mut held: [Option<(PktBuf, u32)>; MAX_PIECES] = std::array::from_fn(|_| None);
        for (slot, part) in held.iter_mut().zip(frame.frame().chunks(MAX_FRAME)) {
            let chunk = io.pool.get().and_then(|mut small| {
                small.fill(part);
                match io.pool.umem_chunk(&small) {
                    Some(c) if (c as usize) < self.lent.len() => Some((small, c)),
                    _ => {
                        io.pool.put(small);
                        None
                    }
                }
            });
            match chunk {
                Some(h) => *slot = Some(h),
                None => {
                    // Never: the pool had a buffer for every piece, each a chunk of this UMEM.
                    for (b, _) in held.iter_mut().filter_map(Option::take) {
                        io.pool.put(b);
                    }
                    io.ctr.tx_lost(self.port as usize, DropReason::TxQueueFull);
                    return 0;
                }
            }
        }
        for (k, (small, chunk)) in held.iter_mut().filter_map(Option::take).enumerate() {
            let last = k + 1 == pieces;
            xsk.tx.push(Desc {
                addr: u64::from(chunk) * u64::from(CHUNK_SIZE) + small.headroom() as u64,
                len: small.len() as u32,
                options: if last { 0 } else { XDP_PKT_CONTD },
            });
            let _ = io.pool.lend_chunk(small);
            self.lent[chunk as usize] = true;
            self.tx_len[chunk as usize] = if last {
                u16::try_from(frame.len()).unwrap_or(u16::MAX)
            } else {
                0
            };
        }
        io.ctr.event(Event::XskTxMultiBuffer);
        pieces as u32
    }
}

/// Counts a received frame that could not be gathered: received (`len` bytes of it seen) and
/// dropped as `xsk_rx_gather_failed`.
fn count_lost(io: &mut PortIo<'_>, port: PortId, len: usize) {
    let stats = io.ctr.port(port as usize);
    stats.rx_packets += 1;
    stats.rx_bytes += len as u64;
    io.ctr.drop(DropReason::XskRxGatherFailed);
}

/// Drops the frame being gathered, if any, because a piece of it went wrong; `more` says
/// whether the frame's remaining pieces follow (they are then returned as they come).
fn abandon(
    gathering: &mut Option<PktBuf>,
    dropping: &mut bool,
    more: bool,
    io: &mut PortIo<'_>,
    port: PortId,
) {
    if let Some(frame) = gathering.take() {
        count_lost(io, port, frame.len());
        io.pool.put(frame);
        *dropping = more;
    } else if *dropping {
        *dropping = more;
    }
}

/// Adds one received piece of a multi-buffer frame to `gathering` (started in a large buffer
/// from the pool at its first piece); returns the whole frame with its last piece. A frame
/// that finds no large buffer, or outgrows one, is dropped whole (`xsk_rx_gather_failed`):
/// its remaining pieces are taken and returned as they come (`dropping`).
fn gather(
    gathering: &mut Option<PktBuf>,
    dropping: &mut bool,
    piece: PktBuf,
    more: bool,
    io: &mut PortIo<'_>,
    port: PortId,
) -> Option<PktBuf> {
    let data_len = piece.len();
    if *dropping {
        io.pool.put(piece);
        *dropping = more;
        return None;
    }
    let mut frame = match gathering.take() {
        Some(f) => f,
        None => match io.pool.get_large() {
            Some(mut f) => {
                f.rx_area();
                f.set_len(0);
                f
            }
            None => {
                count_lost(io, port, data_len);
                io.pool.put(piece);
                *dropping = more;
                return None;
            }
        },
    };
    let old = frame.len();
    if frame.resize(old + data_len).is_none() {
        count_lost(io, port, old + data_len);
        io.pool.put(piece);
        io.pool.put(frame);
        *dropping = more;
        return None;
    }
    frame.frame_mut()[old..].copy_from_slice(piece.frame());
    io.pool.put(piece);
    if more {
        *gathering = Some(frame);
        return None;
    }
    io.ctr.event(Event::XskRxMultiBuffer);
    Some(frame)
}

impl PortQueue for AfxdpQueue {
    fn port(&self) -> PortId {
        self.port
    }

    fn rx_burst(&mut self, io: &mut PortIo<'_>, batch: &mut Batch) {
        if self.stopped || !self.pool_is_the_umem(io) {
            return;
        }
        self.reap_completions(io);
        if self.kick_pending {
            self.kick(io);
        }
        if let Some(xsk) = self.xsk.as_mut() {
            let n = xsk.rx.ready(batch.room() as u32);
            let mut taken = 0;
            for i in 0..n {
                let Desc { addr, len, options } = xsk.rx.get(i);
                let piece = options & XDP_PKT_CONTD != 0;
                if piece
                    && self.gather.is_none()
                    && !self.gather_dropping
                    && io.pool.available_large() == 0
                {
                    // A multi-buffer frame and no large buffer to gather it into: left in
                    // the ring (the kernel publishes a frame's pieces together) until one
                    // comes back, rather than dropped after the kernel delivered it.
                    io.ctr.event(Event::XskRxGatherWait);
                    break;
                }
                taken += 1;
                self.rx_lent = self.rx_lent.saturating_sub(1);
                let chunk = addr / u64::from(CHUNK_SIZE);
                let Some(lent) = self.lent.get_mut(chunk as usize).filter(|l| **l) else {
                    io.ctr.event(Event::XskBadAddress);
                    // A frame being gathered lost a piece: dropped whole, never spliced
                    // onto the next.
                    abandon(
                        &mut self.gather,
                        &mut self.gather_dropping,
                        piece,
                        io,
                        self.port,
                    );
                    continue;
                };
                *lent = false;
                let start = (addr % u64::from(CHUNK_SIZE)) as usize;
                // SAFETY: the chunk was lent through the fill ring (its `PktBuf` given up in
                // `refill`) and comes back once: `lent` was set and is cleared right above.
                let buf = unsafe { io.pool.reclaim_chunk(chunk as u32, start, len as usize) };
                match buf {
                    Some(buf) if piece || self.gather.is_some() || self.gather_dropping => {
                        // A piece of a multi-buffer frame: gathered into a large buffer, which
                        // goes to the batch with the last piece.
                        if let Some(frame) = gather(
                            &mut self.gather,
                            &mut self.gather_dropping,
                            buf,
                            piece,
                            io,
                            self.port,
                        ) {
                            if let Err(frame) = batch.push(frame) {
                                io.pool.put(frame);
                            }
                        }
                    }
                    Some(buf) => {
                        // The batch has room: `ready` was capped by it.
                        if let Err(buf) = batch.push(buf) {
                            io.pool.put(buf);
                        }
                    }
                    None => {
                        // The kernel never writes past a chunk; count it, take the chunk back.
                        abandon(
                            &mut self.gather,
                            &mut self.gather_dropping,
                            piece,
                            io,
                            self.port,
                        );
                        let stats = io.ctr.port(self.port as usize);
                        stats.rx_packets += 1;
                        stats.rx_bytes += u64::from(len);
                        io.ctr.drop(DropReason::RxTruncated);
                        // SAFETY: as above, an empty window always fits.
                        if let Some(b) = unsafe { io.pool.reclaim_chunk(chunk as u32, 0, 0) } {
                            io.pool.put(b);
                        }
                    }
                }
            }
            xsk.rx.release(taken);
        }
        self.refill(io);
        self.arm_poll(io);
    }

    fn tx_burst(&mut self, io: &mut PortIo<'_>, pkts: &mut Vec<Packet>) {
        if self.stopped || self.xsk.is_none() || !self.pool_is_the_umem(io) {
            for p in pkts.drain(..) {
                io.ctr.tx_lost(self.port as usize, DropReason::TxQueueFull);
                io.pool.put(p.buf);
            }
            return;
        }
        self.reap_completions(io);
        let mut queued = 0;
        for p in pkts.drain(..) {
            let mut buf = p.buf;
            let chunk = match io
                .pool
                .umem_chunk(&buf)
                .filter(|&c| (c as usize) < self.lent.len())
            {
                Some(c) => c,
                None if buf.len() > MAX_FRAME
                    && self.xsk.as_ref().is_some_and(|x| x.multi_buffer) =>
                {
                    // A jumbo frame: copied into as many chunks as it takes, sent as one
                    // multi-buffer frame.
                    queued += self.send_pieces(io, &buf);
                    io.pool.put(buf);
                    continue;
                }
                None => {
                    // A large buffer (a frame that arrived as one and was not segmented): one
                    // copy into a chunk, if it fits one.
                    let copy = (buf.len() <= MAX_FRAME).then(|| io.pool.get()).flatten();
                    let Some(mut small) = copy else {
                        let reason = if buf.len() > MAX_FRAME {
                            DropReason::XskTxTooLong
                        } else {
                            DropReason::TxQueueFull
                        };
                        io.ctr.tx_lost(self.port as usize, reason);
                        io.pool.put(buf);
                        continue;
                    };
                    small.fill(buf.frame());
                    io.pool.put(std::mem::replace(&mut buf, small));
                    io.ctr.event(Event::XskTxCopied);
                    match io.pool.umem_chunk(&buf) {
                        Some(c) if (c as usize) < self.lent.len() => c,
                        _ => {
                            io.ctr.tx_lost(self.port as usize, DropReason::TxQueueFull);
                            io.pool.put(buf);
                            continue;
                        }
                    }
                }
            };
            let Some(xsk) = self.xsk.as_mut() else { break };
            if xsk.tx.free(1) == 0 {
                io.ctr.tx_lost(self.port as usize, DropReason::TxQueueFull);
                io.pool.put(buf);
                continue;
            }
            let addr = u64::from(chunk) * u64::from(CHUNK_SIZE) + buf.headroom() as u64;
            let len = buf.len();
            xsk.tx.push(Desc {
                addr,
                len: len as u32,
                options: 0,
            });
            // The buffer is given up for its chunk (checked above to be one of the
            // queue's), the kernel's until it completes.
            let _ = io.pool.lend_chunk(buf);
            self.lent[chunk as usize] = true;
            self.tx_len[chunk as usize] = len as u16;
            queued += 1;
        }
        if queued > 0 {
            if let Some(xsk) = self.xsk.as_mut() {
                xsk.tx.submit();
            }
            self.tx_outstanding += queued;
            self.kick(io);
        }
    }

    fn tx_pending(&self) -> bool {
        self.tx_outstanding > 0
    }

    fn settle(&mut self, io: &mut PortIo<'_>) {
        if self.kick_pending {
            self.kick(io);
        }
        self.reap_completions(io);
        self.read_statistics(io);
    }

    fn complete(&mut self, _io: &mut PortIo<'_>, token: Token, _result: i32) {
        if let Token::Poll { ended: true, .. } = token {
            self.poll_armed = false;
            self.in_flight -= 1;
        }
        // A poll that fired only woke the worker: the next `rx_burst` reads the ring.
    }

    fn close(&mut self, io: &mut PortIo<'_>) -> bool {
        self.stopped = true;
        if self.in_flight > 0 {
            if !self.cancel_sent {
                if let Some(xsk) = self.xsk.as_ref() {
                    let entry = opcode::AsyncCancel2::new(
                        types::CancelBuilder::fd(types::Fd(xsk.raw_fd())).all(),
                    )
                    .build()
                    .user_data(Token::Cancel.encode());
                    // SAFETY: a cancel request references no buffer.
                    self.cancel_sent = unsafe { io.ring.push(&entry) }.is_ok();
                }
            }
            return false;
        }
        self.read_statistics(io);
        // Closing the socket (no poll holds it any more) unbinds it; the kernel waits for
        // its receive path to finish (`synchronize_net`) before the close returns, and never
        // touches the UMEM after. Every chunk still lent comes back then.
        self.xsk = None;
        for (chunk, lent) in self.lent.iter_mut().enumerate() {
            if std::mem::take(lent) {
                // SAFETY: the socket is closed, so the kernel holds none of the queue's
                // chunks; each lent one is taken back once (`lent` cleared).
                if let Some(b) = unsafe { io.pool.reclaim_chunk(chunk as u32, HEADROOM, 0) } {
                    io.pool.put(b);
                }
            }
        }
        self.tx_outstanding = 0;
        self.rx_lent = 0;
        if let Some(b) = self.gather.take() {
            io.pool.put(b);
        }
        self.gather_dropping = false;
        true
    }
}

impl Drop for AfxdpQueue {
    fn drop(&mut self) {
        if self.in_flight > 0 || self.lent.iter().any(|&l| l) {
            // Dropped without `close` completing: a poll may still hold the socket open, so
            // the kernel may still write into lent chunks. They are never returned to the
            // pool, which then keeps its region mapped (`Pool::drop`).
            std::mem::forget(self.xsk.take());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buffer::Pool;
    use crate::counters::Counters;
    use crate::ports::uring::Uring;

    /// What a queue is handed: 8 small buffers and 1 large one, a ring, counters.
    struct Rig(Pool, Uring, Counters);

    impl Rig {
        fn new() -> Rig {
            Rig(
                Pool::with_large(8, 1),
                Uring::new(8, 8).unwrap(),
                Counters::new(1),
            )
        }

        fn io(&mut self) -> PortIo<'_> {
            PortIo {
                pool: &mut self.0,
                ring: &mut self.1,
                ctr: &mut self.2,
            }
        }
    }

    /// A small buffer holding `len` bytes of `byte`, as a received piece.
    fn piece(pool: &mut Pool, byte: u8, len: usize) -> PktBuf {
        let mut b = pool.get().expect("a small buffer");
        b.fill(&vec![byte; len]);
        b
    }

    /// A two-piece frame after a failed one comes out whole and with nothing of the failed
    /// one, and every buffer is back in the pool.
    fn next_frame_is_gathered_whole(
        io: &mut PortIo<'_>,
        g: &mut Option<PktBuf>,
        dropping: &mut bool,
    ) {
        let a = piece(io.pool, 4, 10);
        assert!(gather(g, dropping, a, true, io, 0).is_none());
        let b = piece(io.pool, 5, 10);
        let f = gather(g, dropping, b, false, io, 0).expect("gathered");
        assert_eq!(f.frame(), &[[4u8; 10], [5u8; 10]].concat()[..]);
        io.pool.put(f);
        assert_eq!((io.pool.available(), io.pool.available_large()), (8, 1));
    }

    #[test]
    fn pieces_are_gathered_in_order_into_one_frame_and_every_buffer_comes_back() {
        let mut rig = Rig::new();
        let mut io = rig.io();
        let (mut g, mut dropping) = (None, false);
        let parts = [(1u8, MAX_FRAME), (2, MAX_FRAME), (3, 700)];
        let mut out = None;
        for (k, &(byte, len)) in parts.iter().enumerate() {
            let p = piece(io.pool, byte, len);
            let more = k + 1 < parts.len();
            out = gather(&mut g, &mut dropping, p, more, &mut io, 0);
            assert_eq!(out.is_some(), !more, "piece {k}");
        }
        let frame = out.expect("the whole frame with its last piece");
        let want: Vec<u8> = parts.iter().flat_map(|&(b, l)| vec![b; l]).collect();
        assert_eq!(frame.frame(), &want[..]);
        assert_eq!(io.ctr.events[Event::XskRxMultiBuffer as usize], 1);
        io.pool.put(frame);
        assert_eq!((io.pool.available(), io.pool.available_large()), (8, 1));
    }

    #[test]
    fn a_frame_without_a_large_buffer_is_dropped_whole_and_the_next_one_starts_clean() {
        let mut rig = Rig::new();
        let mut io = rig.io();
        let held = io.pool.get_large().expect("the only large buffer");
        let (mut g, mut dropping) = (None, false);
        for (k, more) in [true, true, false].into_iter().enumerate() {
            let p = piece(io.pool, 9, 100);
            assert!(
                gather(&mut g, &mut dropping, p, more, &mut io, 0).is_none(),
                "piece {k}"
            );
            assert_eq!(dropping, more, "piece {k}");
        }
        assert_eq!(
            io.ctr.drops[DropReason::XskRxGatherFailed as usize],
            1,
            "one frame, one drop"
        );
        io.pool.put(held);
        // The next frame is gathered as if nothing had happened.
        next_frame_is_gathered_whole(&mut io, &mut g, &mut dropping);
    }

    #[test]
    fn a_frame_outgrowing_a_large_buffer_is_dropped_whole() {
        let mut rig = Rig::new();
        let mut io = rig.io();
        let (mut g, mut dropping) = (None, false);
        let mut k = 0;
        // Pieces until the large buffer is full, then one more, then the frame's end.
        while !dropping {
            let p = piece(io.pool, 1, MAX_FRAME);
            assert!(gather(&mut g, &mut dropping, p, true, &mut io, 0).is_none());
            k += 1;
            assert!(k < 100, "a large buffer holds ~17 chunks");
        }
        assert!(g.is_none());
        let last = piece(io.pool, 1, 10);
        assert!(gather(&mut g, &mut dropping, last, false, &mut io, 0).is_none());
        assert!(!dropping);
        assert_eq!(io.ctr.drops[DropReason::XskRxGatherFailed as usize], 1);
        assert_eq!((io.pool.available(), io.pool.available_large()), (8, 1));
    }

    #[test]
    fn a_frame_that_loses_a_piece_is_dropped_whole_not_spliced_onto_the_next() {
        let mut rig = Rig::new();
        let mut io = rig.io();
        let (mut g, mut dropping) = (None, false);
        let first = piece(io.pool, 7, 100);
        assert!(gather(&mut g, &mut dropping, first, true, &mut io, 0).is_none());
        // Its last piece came back with an address the queue never lent.
        abandon(&mut g, &mut dropping, false, &mut io, 0);
        assert!(g.is_none() && !dropping);
        assert_eq!(io.ctr.drops[DropReason::XskRxGatherFailed as usize], 1);
        assert_eq!(
            io.ctr.ports[0].rx_packets, 1,
            "the lost frame is counted as received"
        );
        next_frame_is_gathered_whole(&mut io, &mut g, &mut dropping);
    }
}
