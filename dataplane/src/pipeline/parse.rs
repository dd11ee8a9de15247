//! Parse: validates the Ethernet, ARP and IPv4 headers once, so later stages read fields
//! without checking, and extracts the addresses into the packet's metadata. Anything malformed
//! is dropped here with a precise reason (RFC 791 §3.1 for the IPv4 header rules).

use crate::batch::{Batch, Next, L3};
use crate::counters::{Counters, DropReason};
use crate::tables::Tables;
use crate::trace::{Stage, Trace};
use podswitch_packet::{
    ArpPacket, EtherType, EthernetFrame, Ipv4Error, Ipv4Packet, ETHERNET_HEADER_LEN,
};

/// Runs the stage.
pub fn run(batch: &mut Batch, tables: &Tables, ctr: &mut Counters, trace: &mut Trace) {
    // Frames longer than this are jumbo frames the input port never allowed.
    let max_frame = tables
        .port(batch.in_port)
        .map_or(usize::MAX, |p| usize::from(p.mtu) + ETHERNET_HEADER_LEN);
    for (i, pkt) in batch.iter_mut().enumerate() {
        let verdict = classify(pkt.buf.frame(), max_frame, &mut pkt.meta);
        match verdict {
            Ok(()) => trace.note(i, Stage::Parse, Next::Continue, "headers valid"),
            Err(reason) => {
                pkt.drop(reason, ctr);
                trace.note(i, Stage::Parse, pkt.meta.next, reason.description());
            }
        }
    }
}

fn classify(
    frame: &[u8],
    max_frame: usize,
    meta: &mut crate::batch::Meta,
) -> Result<(), DropReason> {
    if frame.len() < ETHERNET_HEADER_LEN {
        return Err(DropReason::Runt);
    }
    if frame.len() > max_frame {
        return Err(DropReason::FrameTooLong);
    }
    let eth = EthernetFrame::new_unchecked(frame);
    match eth.ethertype() {
        EtherType::IPV4 => {
            let ip =
                Ipv4Packet::new_checked(&frame[ETHERNET_HEADER_LEN..]).map_err(|e| match e {
                    Ipv4Error::Truncated => DropReason::Ipv4Truncated,
                    Ipv4Error::BadVersion => DropReason::Ipv4BadVersion,
                    Ipv4Error::BadHeaderLen => DropReason::Ipv4BadHeaderLen,
                    Ipv4Error::BadTotalLen => DropReason::Ipv4BadTotalLen,
                })?;
            if !ip.verify_checksum() {
                return Err(DropReason::Ipv4BadChecksum);
            }
            meta.l3 = L3::Ipv4;
            meta.ip_proto = ip.protocol().0;
            meta.src_ip = ip.src();
            meta.dst_ip = ip.dst();
            Ok(())
        }
        EtherType::ARP => {
            let arp = ArpPacket::new_checked(&frame[ETHERNET_HEADER_LEN..])
                .map_err(|_| DropReason::ArpMalformed)?;
            meta.l3 = L3::Arp;
            meta.src_ip = arp.sender_ip();
            meta.dst_ip = arp.target_ip();
            Ok(())
        }
        _ => Err(DropReason::UnsupportedEtherType),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::*;

    fn verdict(frame: &[u8]) -> Next {
        let mut h = Harness::new();
        h.run_one(POD_A, frame, run)
    }

    #[test]
    fn valid_ipv4_and_arp_continue_with_addresses_extracted() {
        let mut h = Harness::new();
        let frame = udp_frame(POD_A_MAC, GW_MAC, POD_A_IP, POD_B_IP, 64, 18);
        let meta = h.run_meta(POD_A, &frame, run);
        assert_eq!(meta.next, Next::Continue);
        assert_eq!(
            (meta.l3, meta.src_ip, meta.dst_ip, meta.ip_proto),
            (L3::Ipv4, POD_A_IP, POD_B_IP, 17)
        );
        let arp = arp_request(POD_A_MAC, POD_A_IP, GW_IP);
        assert_eq!(verdict(&arp), Next::Continue);
    }

    #[test]
    fn malformed_frames_are_dropped_by_reason() {
        let good = udp_frame(POD_A_MAC, GW_MAC, POD_A_IP, POD_B_IP, 64, 18);
        assert_eq!(verdict(&good[..13]), Next::Drop(DropReason::Runt));
        assert_eq!(verdict(&good[..30]), Next::Drop(DropReason::Ipv4Truncated));
        let mut v = good.clone();
        v[14] = 0x65;
        assert_eq!(verdict(&v), Next::Drop(DropReason::Ipv4BadVersion));
        let mut v = good.clone();
        v[14] = 0x44;
        assert_eq!(verdict(&v), Next::Drop(DropReason::Ipv4BadHeaderLen));
        let mut v = good.clone();
        v[16..18].copy_from_slice(&2000u16.to_be_bytes());
        assert_eq!(verdict(&v), Next::Drop(DropReason::Ipv4BadTotalLen));
        let mut v = good.clone();
        v[24] ^= 0xff;
        assert_eq!(verdict(&v), Next::Drop(DropReason::Ipv4BadChecksum));
        let mut v = good.clone();
        v[12..14].copy_from_slice(&[0x86, 0xdd]);
        assert_eq!(verdict(&v), Next::Drop(DropReason::UnsupportedEtherType));
        let arp = arp_request(POD_A_MAC, POD_A_IP, GW_IP);
        assert_eq!(verdict(&arp[..30]), Next::Drop(DropReason::ArpMalformed));
        let jumbo = udp_frame(POD_A_MAC, GW_MAC, POD_A_IP, POD_B_IP, 64, 1600);
        assert_eq!(verdict(&jumbo), Next::Drop(DropReason::FrameTooLong));
    }

    #[test]
    fn ethernet_padding_after_the_ip_packet_is_accepted() {
        let mut f = udp_frame(POD_A_MAC, GW_MAC, POD_A_IP, POD_B_IP, 64, 0);
        f.resize(60, 0);
        assert_eq!(verdict(&f), Next::Continue);
    }
}
