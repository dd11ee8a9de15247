//! Partial checksums (`CHECKSUM_PARTIAL` in Linux, `NEEDS_CSUM` in a virtio-net header): a
//! sender with checksum offload leaves the pseudo-header sum in the transport checksum field
//! and the rest to whoever sends the frame on. The switch completes one in software when the
//! output cannot ([`PartialCsum::complete`], as Linux's `skb_checksum_help`); NAT on such a
//! frame will update the pseudo-header sum instead of the checksum (ARCHITECTURE.md,
//! "Offloads").

use crate::virtio_net::VirtioNetError;

/// A partial checksum (`NEEDS_CSUM`): the ones'-complement sum from `start` to the end of the
/// frame is still to be folded into the 16 bits at `start + offset`, which already hold the
/// pseudo-header sum (not complemented). Offsets count from the start of the Ethernet frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartialCsum {
    /// `csum_start`: the first byte covered (the transport header).
    pub start: u16,
    /// `csum_offset`: where the checksum is, from `start`.
    pub offset: u16,
}

impl PartialCsum {
    /// The byte range of the checksum field in the frame, if it fits in `frame_len` bytes.
    pub(crate) fn field(self, frame_len: usize) -> Result<crate::Field, VirtioNetError> {
        let at = usize::from(self.start) + usize::from(self.offset);
        if at + 2 > frame_len {
            return Err(VirtioNetError::CsumOutOfFrame {
                csum_start: self.start,
                csum_offset: self.offset,
                frame_len,
            });
        }
        Ok(at..at + 2)
    }

    /// Completes the checksum in software, as the kernel's `skb_checksum_help` does: sums
    /// `frame[start..]` (the checksum field, holding the pseudo-header sum, included), and
    /// stores the complement at `start + offset` — `0xFFFF` where that complement is 0
    /// (`CSUM_MANGLED_0`: the same value in ones' complement for TCP, and the only correct
    /// one for UDP, where 0 means "no checksum").
    ///
    /// Fails without touching the frame if the checksum field is not inside it.
    pub fn complete(self, frame: &mut [u8]) -> Result<(), VirtioNetError> {
        let field = self.field(frame.len())?;
        let covered = &frame[usize::from(self.start)..];
        let folded = !crate::checksum::sum(covered);
        let value = if folded == 0 { 0xFFFF } else { folded };
        frame[field].copy_from_slice(&value.to_be_bytes());
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::checksum;
    use crate::{Ipv4Packet, TcpPacket, UdpPacket};
    use core::net::Ipv4Addr;
    use std::vec::Vec;

    const SRC: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 7);
    const DST: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 9);

    /// An Ethernet + IPv4 + `l4` frame with a correct IPv4 header.
    fn frame(proto: u8, l4: &[u8]) -> Vec<u8> {
        let mut f = std::vec![0u8; 14 + 20];
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        f.extend_from_slice(l4);
        let total = (20 + l4.len()) as u16;
        let ip = &mut f[14..34];
        ip[0] = 0x45;
        ip[2..4].copy_from_slice(&total.to_be_bytes());
        ip[8] = 64;
        ip[9] = proto;
        ip[12..16].copy_from_slice(&SRC.octets());
        ip[16..20].copy_from_slice(&DST.octets());
        Ipv4Packet::new_checked(&mut f[14..])
            .unwrap()
            .fill_checksum();
        f
    }

    /// Puts the pseudo-header sum (not complemented) into the checksum at `at`, as a sender
    /// with checksum offload leaves it.
    fn make_partial(f: &mut [u8], proto: u8, at: usize) {
        let len = (f.len() - 34) as u16;
        let pseudo = checksum::pseudo_header_ipv4(SRC, DST, crate::IpProtocol(proto), len);
        f[at..at + 2].copy_from_slice(&pseudo.to_be_bytes());
    }

    #[test]
    fn completing_a_partial_tcp_checksum_equals_the_full_checksum() {
        for payload_len in [0usize, 1, 2, 3, 1447, 1448, 9000, 65_000] {
            let mut tcp = std::vec![0u8; 20];
            tcp[0..4].copy_from_slice(&[0x9c, 0x40, 0x00, 0x50]);
            tcp[4..8].copy_from_slice(&0xfeed_f00du32.to_be_bytes());
            tcp[12] = 0x50;
            tcp[13] = 0x18;
            tcp.extend((0..payload_len).map(|i| (i * 7 + 3) as u8));
            let mut f = frame(6, &tcp);
            // The independent answer: the full checksum over pseudo-header and segment.
            let expected = TcpPacket::new_checked(&f[34..])
                .unwrap()
                .compute_checksum(SRC, DST);
            make_partial(&mut f, 6, 34 + 16);
            PartialCsum {
                start: 34,
                offset: 16,
            }
            .complete(&mut f)
            .unwrap();
            let seg = TcpPacket::new_checked(&f[34..]).unwrap();
            assert_eq!(seg.checksum(), expected, "payload {payload_len}");
            assert!(seg.verify_checksum(SRC, DST));
        }
    }

    #[test]
    fn completing_a_udp_checksum_that_folds_to_zero_writes_ffff() {
        // Choose the last payload word so that the datagram's full checksum is 0: UDP must
        // then send 0xFFFF, since 0 means "no checksum" (RFC 768).
        let mut udp = std::vec![0u8; 8 + 4];
        udp[0..4].copy_from_slice(&[0x30, 0x39, 0x00, 0x35]);
        udp[4..6].copy_from_slice(&12u16.to_be_bytes());
        let f0 = frame(17, &udp);
        let c = UdpPacket::new_checked(&f0[34..])
            .unwrap()
            .compute_checksum(SRC, DST);
        // compute_checksum maps a 0 result to 0xFFFF; the raw one's complement decides here.
        let raw = !checksum::combine(&[
            checksum::pseudo_header_ipv4(SRC, DST, crate::IpProtocol::UDP, 12),
            checksum::sum(&f0[34..]),
        ]);
        assert_eq!(c, if raw == 0 { 0xFFFF } else { raw });
        let mut f = f0.clone();
        // Adding `raw` to the covered data makes the complement of the new sum zero.
        f[34 + 8..34 + 10].copy_from_slice(&raw.to_be_bytes());
        make_partial(&mut f, 17, 34 + 6);
        PartialCsum {
            start: 34,
            offset: 6,
        }
        .complete(&mut f)
        .unwrap();
        assert_eq!(&f[40..42], &[0xFF, 0xFF]);
        assert!(UdpPacket::new_checked(&f[34..])
            .unwrap()
            .verify_checksum(SRC, DST));
    }

    #[test]
    fn completing_outside_the_frame_fails_and_changes_nothing() {
        let mut f = frame(6, &[0u8; 20]);
        let before = f.clone();
        for (start, offset) in [(34u16, 19u16), (53, 1), (0xffff, 0xffff)] {
            assert_eq!(
                PartialCsum { start, offset }.complete(&mut f),
                Err(VirtioNetError::CsumOutOfFrame {
                    csum_start: start,
                    csum_offset: offset,
                    frame_len: 54
                })
            );
        }
        assert_eq!(f, before);
        // The last two bytes are a valid place.
        PartialCsum {
            start: 34,
            offset: 18,
        }
        .complete(&mut f)
        .unwrap();
    }
}
