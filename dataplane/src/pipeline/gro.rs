//! Receive coalescing (GRO) at output: consecutive TCP/IPv4 segments of one flow, in one
//! burst, headed to the same port that takes TSO frames (a tap with vnet headers), leave as
//! one `GSO_TCPV4` super-frame with a partial checksum instead of one frame each, so the
//! receiving pod's kernel handles one frame where it would have handled tens (ARCHITECTURE.md,
//! "Offloads"). Called by the worker's output after the pipeline, beside `offload`: every
//! stage (conntrack, NAT, policy) has already seen each segment, so their counters and state
//! are per segment as before. The rules and header fix-ups are `podswitch_packet::gro`'s
//! (Linux's `tcp_gro_receive`); this module holds the runs being built and their buffers.
//!
//! Batch-local, as VPP's gro node, without timers: what is held is handed on by
//! [`Gro::flush`] at the end of the burst, before the transmits. Nothing is reordered within a
//! flow: a packet of a held flow that does not join its run (or any other TCP packet between
//! the same two addresses that is no candidate: a GSO frame, a fragment, a pure ACK) first
//! sends the run on. Packets of different flows may leave in another order than they came,
//! as with Linux's GRO. Nothing allocates: at most [`MAX_FLOWS`] runs, in a vector whose
//! capacity is reserved once, and a run of two segments or more lives in a large pool
//! buffer (the first segment is copied there when the second joins; a lone segment is sent
//! on in its own buffer, untouched).
//!
//! Checksums: the switch verifies no transport checksum on the way through, leaving that to
//! the receiver; a super-frame's checksum is partial, which the receiver trusts, so each
//! segment's own checksum is verified before it joins a run (as Linux's GRO validates every
//! segment it merges). A segment that fails is sent on alone (`gro_bad_checksum`), for the
//! receiving kernel to drop as it would have.

use crate::batch::{Offload, Packet, PortId};
use crate::buffer::Pool;
use crate::counters::{Counters, DropReason, Event};
use podswitch_packet::gro::{Run, TcpSegment};
use podswitch_packet::virtio_net::{FLAG_NEEDS_CSUM, GSO_TCPV4};
use podswitch_packet::{Ipv4Packet, ETHERNET_HEADER_LEN};
use std::net::Ipv4Addr;

/// Runs held at once (Linux's `MAX_GRO_SKBS`): a ninth flow sends the oldest run on.
pub const MAX_FLOWS: usize = 8;

/// One run being built: the frame (the first segment's headers, then every payload) and
/// where it goes.
#[derive(Debug)]
struct Held {
    out: PortId,
    pkt: Packet,
    run: Run,
}

/// The runs of one burst. Owned by the worker, empty between bursts.
#[derive(Debug)]
pub struct Gro {
    /// Oldest first.
    held: Vec<Held>,
}

impl Default for Gro {
    fn default() -> Self {
        Self::new()
    }
}

impl Gro {
    /// No runs; room for [`MAX_FLOWS`] reserved.
    pub fn new() -> Gro {
        Gro {
            held: Vec::with_capacity(MAX_FLOWS),
        }
    }

    /// Runs held now (tests).
    pub fn held(&self) -> usize {
        self.held.len()
    }

    /// Takes `pkt`, a TCP/IPv4 packet routed to `out`, a port that takes TSO4 frames and
    /// partial checksums: it joins a run, starts one, or is handed to `emit` (after the run of
    /// its flow, if that cannot take it). Packets that are no candidate (with offload state, a
    /// fragment, options, no payload, malformed) are handed on unchanged.
    pub fn offer(
        &mut self,
        pkt: Packet,
        out: PortId,
        pool: &mut Pool,
        ctr: &mut Counters,
        mut emit: impl FnMut(&mut Pool, &mut Counters, PortId, Packet),
    ) {
        let seg = if pkt.meta.offload.is_none() {
            TcpSegment::parse(pkt.buf.frame()).ok()
        } else {
            None
        };
        let Some(seg) = seg else {
            // Whatever it is, nothing held between these two addresses may overtake it.
            if let Some((src, dst)) = addresses(pkt.buf.frame()) {
                self.flush_where(pool, ctr, &mut emit, |h| {
                    h.run.first().src == src && h.run.first().dst == dst
                });
            }
            emit(pool, ctr, out, pkt);
            return;
        };
        let mut may_start = true;
        let pkt = match self.held.iter().position(|h| h.run.first().same_flow(&seg)) {
            None => pkt,
            Some(i) => {
                let h = &mut self.held[i];
                let joins = h.out == out
                    && h.run
                        .check(&seg, h.pkt.buf.frame(), pkt.buf.frame())
                        .is_ok();
                let pkt = if joins {
                    match join(h, pkt, &seg, pool, ctr) {
                        Join::Joined { open: true } => return,
                        Join::Joined { open: false } => {
                            // Closed by its last segment: nothing more can join.
                            let h = self.held.remove(i);
                            send(h, pool, ctr, &mut emit);
                            return;
                        }
                        Join::Refused { pkt, bad_checksum } => {
                            may_start = !bad_checksum;
                            pkt
                        }
                    }
                } else {
                    pkt
                };
                // It does not join: the run goes first.
                let h = self.held.remove(i);
                send(h, pool, ctr, &mut emit);
                pkt
            }
        };
        let run = match Run::start(&seg) {
            Some(run) if may_start => run,
            _ => {
                emit(pool, ctr, out, pkt);
                return;
            }
        };
        if self.held.len() == MAX_FLOWS {
            let oldest = self.held.remove(0);
            send(oldest, pool, ctr, &mut emit);
        }
        self.held.push(Held { out, pkt, run });
    }

    /// Hands every run on (the end of a burst), oldest first.
    pub fn flush(
        &mut self,
        pool: &mut Pool,
        ctr: &mut Counters,
        mut emit: impl FnMut(&mut Pool, &mut Counters, PortId, Packet),
    ) {
        for h in self.held.drain(..) {
            send(h, pool, ctr, &mut emit);
        }
    }

    fn flush_where(
        &mut self,
        pool: &mut Pool,
        ctr: &mut Counters,
        emit: &mut impl FnMut(&mut Pool, &mut Counters, PortId, Packet),
        which: impl Fn(&Held) -> bool,
    ) {
        let mut i = 0;
        while i < self.held.len() {
            if which(&self.held[i]) {
                let h = self.held.remove(i);
                send(h, pool, ctr, emit);
            } else {
                i += 1;
            }
        }
    }
}

/// What became of a segment [`Run::check`] accepted.
enum Join {
    /// Its payload is in the run; `open`: more may follow (false after a short or PSH
    /// segment, the run's last).
    Joined { open: bool },
    /// It could not join after all: the caller sends the run on, then this packet, which may
    /// start the next run unless its own checksum was wrong.
    Refused { pkt: Packet, bad_checksum: bool },
}

/// Adds `pkt`'s payload to `h`'s run, unless its checksum is wrong, the run's first segment's
/// is (verified only when a second one comes: a lone segment is sent on untouched), or no
/// large buffer is free for the run to move into.
fn join(h: &mut Held, pkt: Packet, seg: &TcpSegment, pool: &mut Pool, ctr: &mut Counters) -> Join {
    if !seg.checksum_ok(pkt.buf.frame()) {
        ctr.event(Event::GroBadChecksum);
        return Join::Refused {
            pkt,
            bad_checksum: true,
        };
    }
    if h.run.count() == 1 {
        if !h.run.first().checksum_ok(h.pkt.buf.frame()) {
            ctr.event(Event::GroBadChecksum);
            return Join::Refused {
                pkt,
                bad_checksum: false,
            };
        }
        let Some(mut large) = pool.get_large() else {
            ctr.event(Event::GroNoLargeBuffer);
            return Join::Refused {
                pkt,
                bad_checksum: false,
            };
        };
        large.fill(h.pkt.buf.frame());
        let small = std::mem::replace(&mut h.pkt.buf, large);
        pool.put(small);
    }
    let at = h.pkt.buf.len();
    let payload = seg.payload(pkt.buf.frame());
    if h.pkt.buf.resize(at + payload.len()).is_none() {
        // Cannot happen (a run stays within 65535 bytes of IPv4, a large buffer holds more);
        // sent on separately all the same.
        return Join::Refused {
            pkt,
            bad_checksum: false,
        };
    }
    h.pkt.buf.frame_mut()[at..].copy_from_slice(payload);
    let open = h.run.append(seg);
    pool.put(pkt.buf);
    Join::Joined { open }
}

/// Hands a run on: a lone segment as it came, a longer run as one super-frame.
fn send(
    mut h: Held,
    pool: &mut Pool,
    ctr: &mut Counters,
    emit: &mut impl FnMut(&mut Pool, &mut Counters, PortId, Packet),
) {
    if h.run.count() > 1 {
        let Some(csum) = h.run.finish(h.pkt.buf.frame_mut()) else {
            // Never expected: the frame was built to the run's length. Its segments cannot
            // be told apart any more, so it is dropped, counted.
            ctr.drops[DropReason::GroFinishFailed as usize] += h.run.count() as u64;
            pool.put(h.pkt.buf);
            return;
        };
        h.pkt.meta.offload = Offload {
            csum_start: csum.start,
            csum_offset: csum.offset,
            gso_size: h.run.gso_size(),
            gso_type: GSO_TCPV4,
            flags: FLAG_NEEDS_CSUM,
        };
        ctr.event(Event::GroFrames);
        ctr.events[Event::GroSegments as usize] += h.run.count() as u64;
    }
    emit(pool, ctr, h.out, h.pkt);
}

/// The IPv4 source and destination of `frame`, if it is IPv4 at all.
fn addresses(frame: &[u8]) -> Option<(Ipv4Addr, Ipv4Addr)> {
    let ip = Ipv4Packet::new_checked(frame.get(ETHERNET_HEADER_LEN..)?).ok()?;
    Some((ip.src(), ip.dst()))
}
