//! Encoding checked against what nft 1.0.6 sends for the same table (`nft --debug=mnl -f`
//! on `table ip podswitch { set nodeports_tcp { type inet_service; elements = { 30080 } };
//! chain prerouting { type nat hook prerouting priority -100; fib daddr type local meta
//! l4proto tcp tcp dport @nodeports_tcp dnat to 10.96.255.254; } }`), from the nfgenmsg on
//! (sequence numbers and flags differ: nft numbers from 0 and asks for no ACKs).

use super::*;

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// The body (after the 16-byte header) of the only message `write` produces.
fn body(write: impl FnOnce(&mut Writer)) -> Vec<u8> {
    let mut w = Writer::default();
    w.begin(nft_type(NFT_MSG_NEWRULE), NLM_F_REQUEST, 5, NFPROTO_IPV4, 0);
    write(&mut w);
    w.end();
    let bytes = w.into_bytes();
    let len = u32::from_ne_bytes(bytes[..4].try_into().unwrap()) as usize;
    assert_eq!(len, bytes.len(), "message length covers the message");
    bytes[16..].to_vec()
}

const NFT_RULE: &str = "
    020000000e000100706f647377697463680000000f000200707265726f757469
    6e670000680104802800018008000100666962001c0002800800030000000002
    080002000000000308000100000000012c00018008000100636d700020000280
    080001000000000108000200000000000c000380080001000200000024000180
    090001006d657461000000001400028008000200000000100800010000000001
    2c00018008000100636d70002000028008000100000000010800020000000000
    0c0003800500010006000000340001800c0001007061796c6f61640024000280
    0800010000000001080002000000000208000300000000020800040000000002
    380001800b0001006c6f6f6b7570000028000280080002000000000112000100
    6e6f6465706f7274735f74637000000008000400000000012c0001800e000100
    696d6d6564696174650000001800028008000100000000010c00028008000100
    0a60fffe28000180080001006e6174001c000280080001000000000108000200
    000000020800030000000001";

#[test]
fn dnat_rule_is_encoded_as_nft_encodes_it() {
    if cfg!(target_endian = "big") {
        return; // the capture holds host-order register data of a little-endian machine
    }
    let to = Ipv4Addr::new(10, 96, 255, 254);
    let got = body(|w| encode_dnat_rule(w, "prerouting", 6, TCP_SET, 1, to));
    assert_eq!(got, hex(NFT_RULE));
}

#[test]
fn nat_chain_is_encoded_as_nft_encodes_it() {
    let want = "020000000e000100706f647377697463680000000f000300707265726f7574696e67
        0000080007006e61740014000480080001000000000008000200ffffff9c";
    let got = body(|w| encode_nat_chain(w, "prerouting", NF_INET_PRE_ROUTING));
    assert_eq!(got, hex(want));
}

#[test]
fn port_set_elements_are_encoded_as_nft_encodes_them() {
    let want = "020000000e000100706f64737769746368000000120002006e6f6465706f7274735f
        746370000000080004000000000114000380100001800c0001800600010075800000";
    assert_eq!(
        body(|w| encode_elements(w, TCP_SET, 1, &[30080])),
        hex(want)
    );
}

#[test]
fn port_set_is_encoded_as_nft_encodes_it_less_its_userdata() {
    // nft adds NFTA_SET_USERDATA (how to print keys), which the kernel only stores.
    let want = "020000000e000100706f64737769746368000000120002006e6f6465706f7274735f
        7463700000000800030000000000080004000000000d080005000000000208000a0000000001";
    let mut batch = Batch::new(0);
    batch.add_port_set(TCP_SET, 1, &[]);
    let (bytes, sent, _) = batch.finish();
    assert_eq!(sent.len(), 1, "no element message for an empty set");
    let set = &bytes[20..bytes.len() - 20];
    assert_eq!(&set[16..], hex(want).as_slice());
}

/// The (type, flags, seq) of each message of a datagram.
fn headers(bytes: &[u8]) -> Vec<(u16, u16, u32)> {
    Replies::new(bytes)
        .map(|m| m.unwrap())
        .map(|m| (m.kind, m.flags, m.seq))
        .collect()
}

#[test]
fn replace_batch_is_framed_and_every_message_inside_asks_for_an_ack() {
    let mut batch = Batch::new(100);
    batch.drop_table();
    batch.add_table();
    batch.add_port_set(TCP_SET, 1, &[30080, 30081]);
    let (bytes, sent, next) = batch.finish();
    let h = headers(&bytes);
    assert_eq!(h.first(), Some(&(NFNL_MSG_BATCH_BEGIN, NLM_F_REQUEST, 100)));
    assert_eq!(h.last(), Some(&(NFNL_MSG_BATCH_END, NLM_F_REQUEST, 106)));
    assert_eq!(next, 107);
    let inner = &h[1..h.len() - 1];
    let types: Vec<u16> = inner.iter().map(|m| m.0).collect();
    assert_eq!(
        types,
        [
            NFT_MSG_NEWTABLE,
            NFT_MSG_DELTABLE,
            NFT_MSG_NEWTABLE,
            NFT_MSG_NEWSET,
            NFT_MSG_NEWSETELEM
        ]
        .map(nft_type)
    );
    for (m, s) in inner.iter().zip(&sent) {
        assert_ne!(m.1 & NLM_F_ACK, 0, "{} asks for an ACK", s.what);
        assert_eq!(
            m.2, s.seq,
            "{} is named under its own sequence number",
            s.what
        );
    }
    assert_eq!(sent[1].what, "delete table ip podswitch");
}

#[test]
fn kernel_error_reply_is_decoded_with_errno_and_message() {
    // NLMSG_ERROR, capped, with NLMSGERR_ATTR_MSG "bad"; then an ACK (code 0).
    let mut d = Vec::new();
    let mut err = Vec::new();
    err.extend_from_slice(&(-libc::ENOENT).to_ne_bytes());
    err.extend_from_slice(&[0u8; 16]); // the echoed header
    err.extend_from_slice(&8u16.to_ne_bytes());
    err.extend_from_slice(&1u16.to_ne_bytes());
    err.extend_from_slice(b"bad\0");
    let flags = netlink_packet_core::NLM_F_CAPPED | netlink_packet_core::NLM_F_ACK_TLVS;
    for (payload, seq) in [(err.as_slice(), 7u32), (&[0u8; 20][..], 8)] {
        d.extend_from_slice(&((16 + payload.len()) as u32).to_ne_bytes());
        d.extend_from_slice(&NLMSG_ERROR.to_ne_bytes());
        d.extend_from_slice(&flags.to_ne_bytes());
        d.extend_from_slice(&seq.to_ne_bytes());
        d.extend_from_slice(&0u32.to_ne_bytes());
        d.extend_from_slice(payload);
    }
    let replies: Vec<_> = Replies::new(&d).map(|r| r.unwrap()).collect();
    assert_eq!(replies.len(), 2);
    assert_eq!(replies[0].seq, 7);
    assert_eq!(replies[0].error(), Some((libc::ENOENT, Some("bad".into()))));
    assert_eq!(replies[1].error().map(|e| e.0), Some(0));
}

#[test]
fn truncated_reply_is_a_protocol_problem_not_a_panic() {
    let mut d = vec![0u8; 16];
    d[..4].copy_from_slice(&64u32.to_ne_bytes());
    assert!(Replies::new(&d).next().unwrap().is_err());
    assert!(Replies::new(&d[..8]).next().is_none());
}

#[test]
fn refused_message_error_names_the_operation_and_the_message() {
    let ctx = Ctx::new("replace nf_tables table ip podswitch", Subject::Nothing);
    let err = named(
        &ctx,
        "add chain ip podswitch output",
        libc::EOPNOTSUPP,
        None,
    );
    let text = err.to_string();
    assert!(
        text.starts_with("replace nf_tables table ip podswitch: add chain ip podswitch output: "),
        "{text}"
    );
    assert!(text.contains("nft_chain_nat"), "{text}");
    assert_eq!(err.errno(), Some(libc::EOPNOTSUPP));
}

#[test]
fn ports_are_deduplicated_and_port_zero_refused_before_sending() {
    assert_eq!(sorted_unique(&[30081, 30080, 30081]), [30080, 30081]);
}
