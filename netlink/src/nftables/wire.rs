//! The nfnetlink wire format nf_tables speaks: message header (`struct nlmsghdr`), the
//! `struct nfgenmsg` after it, and netlink attributes (TLVs, nested ones flagged
//! `NLA_F_NESTED`). Numbers are from the kernel's uapi headers `linux/netlink.h`,
//! `linux/netfilter/nfnetlink.h` and `linux/netfilter/nf_tables.h`; nf_tables wants every
//! integer attribute in network byte order (`NLA_BE32`), register data in host order.

/// `NFNL_SUBSYS_NFTABLES`: the high byte of every nf_tables message type.
pub(super) const NFNL_SUBSYS_NFTABLES: u16 = 10;
/// `NFNL_MSG_BATCH_BEGIN` / `_END` (`NLMSG_MIN_TYPE` and the next): they frame a transaction.
pub(super) const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
pub(super) const NFNL_MSG_BATCH_END: u16 = 0x11;

/// `enum nf_tables_msg_types`.
pub(super) const NFT_MSG_NEWTABLE: u16 = 0;
pub(super) const NFT_MSG_GETTABLE: u16 = 1;
pub(super) const NFT_MSG_DELTABLE: u16 = 2;
pub(super) const NFT_MSG_NEWCHAIN: u16 = 3;
pub(super) const NFT_MSG_NEWRULE: u16 = 6;
pub(super) const NFT_MSG_NEWSET: u16 = 9;
pub(super) const NFT_MSG_NEWSETELEM: u16 = 12;
pub(super) const NFT_MSG_GETGEN: u16 = 16;

/// `NFPROTO_IPV4`, the family of an `ip` table; `AF_UNSPEC` for batch framing.
pub(super) const NFPROTO_IPV4: u8 = 2;
pub(super) const AF_UNSPEC: u8 = 0;

/// `enum nft_table_attributes`.
pub(super) const NFTA_TABLE_NAME: u16 = 1;
pub(super) const NFTA_TABLE_FLAGS: u16 = 2;

/// `enum nft_chain_attributes` and `enum nft_hook_attributes`.
pub(super) const NFTA_CHAIN_TABLE: u16 = 1;
pub(super) const NFTA_CHAIN_NAME: u16 = 3;
pub(super) const NFTA_CHAIN_HOOK: u16 = 4;
pub(super) const NFTA_CHAIN_TYPE: u16 = 7;
pub(super) const NFTA_HOOK_HOOKNUM: u16 = 1;
pub(super) const NFTA_HOOK_PRIORITY: u16 = 2;
/// `enum nf_inet_hooks`.
pub(super) const NF_INET_PRE_ROUTING: u32 = 0;
pub(super) const NF_INET_LOCAL_OUT: u32 = 3;
/// `NF_IP_PRI_NAT_DST`, nft's `dstnat`.
pub(super) const NF_IP_PRI_NAT_DST: i32 = -100;

/// `enum nft_set_attributes`.
pub(super) const NFTA_SET_TABLE: u16 = 1;
pub(super) const NFTA_SET_NAME: u16 = 2;
pub(super) const NFTA_SET_FLAGS: u16 = 3;
pub(super) const NFTA_SET_KEY_TYPE: u16 = 4;
pub(super) const NFTA_SET_KEY_LEN: u16 = 5;
pub(super) const NFTA_SET_ID: u16 = 10;
/// nft's `TYPE_INET_SERVICE` (`datatype.h`): the kernel stores it, `nft list` shows ports.
pub(super) const NFT_DATATYPE_INET_SERVICE: u32 = 13;

/// `enum nft_set_elem_list_attributes`, `enum nft_set_elem_attributes`, `enum nft_data_attributes`.
pub(super) const NFTA_SET_ELEM_LIST_TABLE: u16 = 1;
pub(super) const NFTA_SET_ELEM_LIST_SET: u16 = 2;
pub(super) const NFTA_SET_ELEM_LIST_ELEMENTS: u16 = 3;
pub(super) const NFTA_SET_ELEM_LIST_SET_ID: u16 = 4;
pub(super) const NFTA_SET_ELEM_KEY: u16 = 1;
pub(super) const NFTA_DATA_VALUE: u16 = 1;
/// `NFTA_LIST_ELEM`: one entry of a list attribute (elements, expressions).
pub(super) const NFTA_LIST_ELEM: u16 = 1;

/// `enum nft_rule_attributes`, `enum nft_expr_attributes`.
pub(super) const NFTA_RULE_TABLE: u16 = 1;
pub(super) const NFTA_RULE_CHAIN: u16 = 2;
pub(super) const NFTA_RULE_EXPRESSIONS: u16 = 4;
pub(super) const NFTA_EXPR_NAME: u16 = 1;
pub(super) const NFTA_EXPR_DATA: u16 = 2;

/// `NFT_REG_1`: the first 16-byte data register (what nft uses for all of this rule).
pub(super) const NFT_REG_1: u32 = 1;

/// fib: `enum nft_fib_attributes`, `enum nft_fib_result`, `enum nft_fib_flags`.
pub(super) const NFTA_FIB_DREG: u16 = 1;
pub(super) const NFTA_FIB_RESULT: u16 = 2;
pub(super) const NFTA_FIB_FLAGS: u16 = 3;
pub(super) const NFT_FIB_RESULT_ADDRTYPE: u32 = 3;
pub(super) const NFTA_FIB_F_DADDR: u32 = 2;
/// `RTN_LOCAL`: what `fib ... type` yields for an address of this host.
pub(super) const RTN_LOCAL: u32 = 2;

/// cmp: `enum nft_cmp_attributes`, `NFT_CMP_EQ`.
pub(super) const NFTA_CMP_SREG: u16 = 1;
pub(super) const NFTA_CMP_OP: u16 = 2;
pub(super) const NFTA_CMP_DATA: u16 = 3;
pub(super) const NFT_CMP_EQ: u32 = 0;

/// meta: `enum nft_meta_attributes`, `NFT_META_L4PROTO`.
pub(super) const NFTA_META_DREG: u16 = 1;
pub(super) const NFTA_META_KEY: u16 = 2;
pub(super) const NFT_META_L4PROTO: u32 = 16;

/// payload: `enum nft_payload_attributes`, `NFT_PAYLOAD_TRANSPORT_HEADER`.
pub(super) const NFTA_PAYLOAD_DREG: u16 = 1;
pub(super) const NFTA_PAYLOAD_BASE: u16 = 2;
pub(super) const NFTA_PAYLOAD_OFFSET: u16 = 3;
pub(super) const NFTA_PAYLOAD_LEN: u16 = 4;
pub(super) const NFT_PAYLOAD_TRANSPORT_HEADER: u32 = 2;

/// lookup: `enum nft_lookup_attributes`.
pub(super) const NFTA_LOOKUP_SET: u16 = 1;
pub(super) const NFTA_LOOKUP_SREG: u16 = 2;
pub(super) const NFTA_LOOKUP_SET_ID: u16 = 4;

/// immediate: `enum nft_immediate_attributes`.
pub(super) const NFTA_IMMEDIATE_DREG: u16 = 1;
pub(super) const NFTA_IMMEDIATE_DATA: u16 = 2;

/// nat: `enum nft_nat_attributes`, `NFT_NAT_DNAT`.
pub(super) const NFTA_NAT_TYPE: u16 = 1;
pub(super) const NFTA_NAT_FAMILY: u16 = 2;
pub(super) const NFTA_NAT_REG_ADDR_MIN: u16 = 3;
pub(super) const NFT_NAT_DNAT: u32 = 1;

/// `NLA_F_NESTED`: set on every attribute holding attributes, as libnftnl does.
const NLA_F_NESTED: u16 = 0x8000;
const NLA_HDR_LEN: usize = 4;
const NLMSG_HDR_LEN: usize = 16;

/// The start of an open nested attribute, closed by [`Writer::end_nest`].
#[must_use]
pub(super) struct Nest(usize);

/// Appends nfnetlink messages to one buffer (a whole batch is one datagram). A message is
/// opened by [`Writer::begin`] and closed by [`Writer::end`], which writes its length.
#[derive(Default)]
pub(super) struct Writer {
    buf: Vec<u8>,
    msg_start: usize,
}

impl Writer {
    /// Opens a message: header and `nfgenmsg` (family, version 0, resource id in network
    /// byte order).
    pub(super) fn begin(&mut self, msg_type: u16, flags: u16, seq: u32, family: u8, res_id: u16) {
        self.msg_start = self.buf.len();
        self.buf.extend_from_slice(&0u32.to_ne_bytes()); // length, patched by `end`
        self.buf.extend_from_slice(&msg_type.to_ne_bytes());
        self.buf.extend_from_slice(&flags.to_ne_bytes());
        self.buf.extend_from_slice(&seq.to_ne_bytes());
        self.buf.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel fills it in
        self.buf.extend_from_slice(&[family, 0]);
        self.buf.extend_from_slice(&res_id.to_be_bytes());
    }

    /// Closes the message opened last.
    pub(super) fn end(&mut self) {
        let len = (self.buf.len() - self.msg_start) as u32;
        self.buf[self.msg_start..self.msg_start + 4].copy_from_slice(&len.to_ne_bytes());
        debug_assert!(self.buf.len() - self.msg_start >= NLMSG_HDR_LEN);
    }

    /// An attribute holding `value` as is, padded to 4 bytes (the padding is not counted in
    /// its length).
    pub(super) fn bytes(&mut self, kind: u16, value: &[u8]) {
        let len = (NLA_HDR_LEN + value.len()) as u16;
        self.buf.extend_from_slice(&len.to_ne_bytes());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        self.buf.extend_from_slice(value);
        self.pad();
    }

    /// A NUL-terminated string attribute (`NLA_STRING` as nf_tables parses names).
    pub(super) fn str(&mut self, kind: u16, value: &str) {
        let len = (NLA_HDR_LEN + value.len() + 1) as u16;
        self.buf.extend_from_slice(&len.to_ne_bytes());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        self.buf.extend_from_slice(value.as_bytes());
        self.buf.push(0);
        self.pad();
    }

    /// A 32-bit attribute in network byte order (`NLA_BE32`).
    pub(super) fn be32(&mut self, kind: u16, value: u32) {
        self.bytes(kind, &value.to_be_bytes());
    }

    /// Opens a nested attribute.
    pub(super) fn nest(&mut self, kind: u16) -> Nest {
        let start = self.buf.len();
        self.buf.extend_from_slice(&0u16.to_ne_bytes());
        self.buf
            .extend_from_slice(&(kind | NLA_F_NESTED).to_ne_bytes());
        Nest(start)
    }

    /// Closes a nested attribute: its length covers everything written since it was opened.
    pub(super) fn end_nest(&mut self, nest: Nest) {
        let len = (self.buf.len() - nest.0) as u16;
        self.buf[nest.0..nest.0 + 2].copy_from_slice(&len.to_ne_bytes());
    }

    pub(super) fn into_bytes(self) -> Vec<u8> {
        self.buf
    }

    fn pad(&mut self) {
        while self.buf.len() % 4 != 0 {
            self.buf.push(0);
        }
    }
}

/// The message type of nf_tables message `msg`.
pub(super) fn nft_type(msg: u16) -> u16 {
    (NFNL_SUBSYS_NFTABLES << 8) | msg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_attribute_counts_its_nul_but_not_its_padding() {
        let mut w = Writer::default();
        w.str(NFTA_TABLE_NAME, "podswitch");
        // 4 + 9 + 1 = 14 (as `nft --debug=mnl` shows for the table name), padded to 16.
        assert_eq!(
            w.into_bytes(),
            [14, 0, 1, 0, b'p', b'o', b'd', b's', b'w', b'i', b't', b'c', b'h', 0, 0, 0]
        );
    }

    #[test]
    fn nested_attribute_length_covers_its_children_and_is_flagged_nested() {
        let mut w = Writer::default();
        let hook = w.nest(NFTA_CHAIN_HOOK);
        w.be32(NFTA_HOOK_HOOKNUM, NF_INET_PRE_ROUTING);
        w.be32(NFTA_HOOK_PRIORITY, NF_IP_PRI_NAT_DST as u32);
        w.end_nest(hook);
        assert_eq!(
            w.into_bytes(),
            [
                20, 0, 4, 0x80, // len 20, NFTA_CHAIN_HOOK | NLA_F_NESTED
                8, 0, 1, 0, 0, 0, 0, 0, // hooknum prerouting
                8, 0, 2, 0, 0xff, 0xff, 0xff, 0x9c, // priority -100, big endian
            ]
        );
    }

    #[test]
    fn message_length_is_patched_and_resource_id_is_big_endian() {
        let mut w = Writer::default();
        w.begin(NFNL_MSG_BATCH_BEGIN, 1, 7, AF_UNSPEC, NFNL_SUBSYS_NFTABLES);
        w.end();
        let b = w.into_bytes();
        assert_eq!(u32::from_ne_bytes(b[0..4].try_into().unwrap()), 20);
        assert_eq!(u16::from_ne_bytes(b[4..6].try_into().unwrap()), 0x10);
        assert_eq!(u32::from_ne_bytes(b[8..12].try_into().unwrap()), 7);
        assert_eq!(&b[16..20], &[0, 0, 0, 10]);
    }
}
