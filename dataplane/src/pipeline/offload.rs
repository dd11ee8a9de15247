//! Output offloads: what a frame needs before it leaves through a port that cannot take it as
//! it is (ARCHITECTURE.md, "Offloads"). Called by the worker's output for each packet routed
//! to a port, after the pipeline: a frame the port takes passes untouched (a tap with vnet
//! headers takes partial checksums and TSO4/TSO6/USO4 super-frames); otherwise a GSO frame is
//! cut into segments by [`Segmenter`] and a partial checksum is completed by
//! [`PartialCsum::complete`], both in software. Nothing here allocates: segments go into
//! pool buffers and are handed to the caller one by one.

use crate::batch::{Offload, Packet};
use crate::buffer::Pool;
use crate::counters::{Counters, DropReason, Event};
use podswitch_packet::gso::{SegmentChecksum, Segmenter};
use podswitch_packet::virtio_net::{PartialCsum, GSO_ECN, GSO_TCPV4, GSO_UDP_L4};
use podswitch_packet::{vxlan, Ipv4Packet, ETHERNET_HEADER_LEN};

/// What an output port can take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caps {
    /// Completes partial checksums (`NEEDS_CSUM`).
    pub csum: bool,
    /// Takes TCP/IPv4 super-frames.
    pub tso4: bool,
    /// Takes TCP/IPv6 super-frames.
    pub tso6: bool,
    /// Takes UDP/IPv4 super-datagrams (USO).
    pub uso4: bool,
}

impl Caps {
    /// A port with offloads (a tap with vnet headers) takes everything; one without, nothing.
    pub const fn of(offloads: bool) -> Caps {
        Caps {
            csum: offloads,
            tso4: offloads,
            tso6: offloads,
            uso4: offloads,
        }
    }

    /// Whether the port takes a frame with this offload state as it is.
    #[inline]
    pub fn takes(&self, o: &Offload) -> bool {
        if o.is_gso() {
            match o.gso_type & !GSO_ECN {
                GSO_TCPV4 => self.tso4,
                GSO_UDP_L4 => self.uso4,
                _ => false,
            }
        } else {
            !o.needs_csum() || self.csum
        }
    }
}

/// Cuts the GSO frame of `pkt` (its inner frame, if it is `tunneled`) into segments, each in its own pool buffer with `pkt`'s
/// metadata, handed to `emit` in order; the caller keeps (and returns) `pkt`'s buffer.
/// Checksums are full unless the port completes them (`caps.csum`), then partial. When the
/// pool runs dry the remaining segments are dropped, each counted as `gso_pool_empty`.
pub fn segment(
    pkt: &Packet,
    caps: Caps,
    pool: &mut Pool,
    ctr: &mut Counters,
    mut emit: impl FnMut(&mut Pool, &mut Counters, Packet),
) {
    let o = pkt.meta.offload;
    let checksum = if caps.csum {
        SegmentChecksum::Partial
    } else {
        SegmentChecksum::Full
    };
    // An encapsulated super-frame: the inner frame is cut, and each segment gets a copy of
    // the outer headers with its own lengths (Linux's software UDP tunnel GSO does the same).
    let encap = if pkt.meta.tunneled {
        vxlan::ENCAP_LEN
    } else {
        0
    };
    let Some((outer, frame)) = pkt.buf.frame().split_at_checked(encap) else {
        ctr.drop(DropReason::GsoSegmentFailed);
        return;
    };
    let cut = match o.gso_type & !GSO_ECN {
        GSO_TCPV4 => Segmenter::tcpv4(frame, o.gso_size, checksum),
        GSO_UDP_L4 => Segmenter::udpv4(frame, o.gso_size, checksum),
        // Parse lets no other kind through.
        _ => {
            ctr.drop(DropReason::GsoSegmentFailed);
            return;
        }
    };
    let Ok(mut segs) = cut else {
        ctr.drop(DropReason::GsoSegmentFailed);
        return;
    };
    let mut seg_offload = Offload::NONE;
    if checksum == SegmentChecksum::Partial {
        let c = segs.partial_csum();
        seg_offload.csum_start = c.start;
        seg_offload.csum_offset = c.offset;
        seg_offload.flags = podswitch_packet::virtio_net::FLAG_NEEDS_CSUM;
    }
    ctr.event(Event::GsoSegmentedSw);
    while let Some(len) = segs.next_len() {
        let Some(mut buf) = pool.get_for(len + encap) else {
            // The segments not written yet are lost: count each.
            ctr.drops[DropReason::GsoPoolEmpty as usize] += segs.remaining() as u64;
            return;
        };
        let area = buf.rx_area();
        match segs.next_into(&mut area[encap..]) {
            Ok(Some(n)) => {
                area[..encap].copy_from_slice(outer);
                if encap > 0 && vxlan::Outer::set_inner_len(area, n).is_none() {
                    pool.put(buf);
                    ctr.drop(DropReason::GsoSegmentFailed);
                    return;
                }
                buf.set_len(n + encap);
                let mut meta = pkt.meta;
                meta.offload = seg_offload;
                if seg_offload.needs_csum() {
                    meta.offload.csum_start += encap as u16;
                }
                ctr.event(Event::GsoSegmentsSw);
                emit(pool, ctr, Packet { buf, meta });
            }
            _ => {
                pool.put(buf);
                ctr.drop(DropReason::GsoSegmentFailed);
                return;
            }
        }
    }
}

/// Completes the partial checksum of a non-GSO frame in software, for a port that cannot.
/// False (counted) if the checksum field is not inside the IP packet.
pub fn complete_csum(pkt: &mut Packet, ctr: &mut Counters) -> bool {
    let o = pkt.meta.offload;
    let frame = pkt.buf.frame_mut();
    // Sum up to the end of the IP packet, not the Ethernet padding behind it.
    let end = frame
        .get(ETHERNET_HEADER_LEN..)
        .map(|ip| ETHERNET_HEADER_LEN + usize::from(Ipv4Packet::new_unchecked(ip).total_len()))
        .unwrap_or(0)
        .min(frame.len());
    let csum = PartialCsum {
        start: o.csum_start,
        offset: o.csum_offset,
    };
    if csum.complete(&mut frame[..end]).is_err() {
        ctr.drop(DropReason::CsumCompleteFailed);
        return false;
    }
    pkt.meta.offload = Offload::NONE;
    ctr.event(Event::CsumCompletedSw);
    true
}
