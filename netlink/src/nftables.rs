//! The node's NodePort redirect, as an nf_tables table programmed over NETLINK_NETFILTER (no
//! `nft` binary, no libnftnl): connections the node itself receives or makes to one of its
//! own addresses on a NodePort are DNATed to the switch's `node_port_ip`, where the switch
//! matches NodePort frontends. The table is replaced whole, in one nfnetlink batch, so the
//! kernel swaps old rules for new ones atomically and never runs half of either.
//!
//! What the table holds (as `nft list table ip podswitch` shows it):
//! ```text
//! table ip podswitch {
//!     set nodeports_tcp { type inet_service; elements = { ... } }
//!     set nodeports_udp { type inet_service; elements = { ... } }
//!     chain prerouting {
//!         type nat hook prerouting priority dstnat; policy accept;
//!         fib daddr type local tcp dport @nodeports_tcp dnat to <node_port_ip>
//!         fib daddr type local udp dport @nodeports_udp dnat to <node_port_ip>
//!     }
//!     chain output { type nat hook output priority -100; (the same two rules) }
//! }
//! ```
//! `fib daddr type local` rather than a list of the node's addresses: it follows address
//! changes without reprogramming (kube-proxy's nftables mode does the same). The port is kept.

mod wire;

use std::io;
use std::net::Ipv4Addr;

use netlink_packet_core::{NLM_F_ACK, NLM_F_APPEND, NLM_F_CREATE, NLM_F_REQUEST};
use netlink_sys::{protocols::NETLINK_NETFILTER, Socket, SocketAddr};

use crate::error::{Error, Result, Subject};
use crate::socket::{align4, extack_message, recv_retrying, Ctx, NLMSG_HDR_LEN};
use wire::*;

/// The table's name, in family `ip`.
pub const NODEPORT_TABLE: &str = "podswitch";
const TCP_SET: &str = "nodeports_tcp";
const UDP_SET: &str = "nodeports_udp";
const NLMSG_ERROR: u16 = 2;
const RECV_BUF_LEN: usize = 64 * 1024;

/// What the NodePort table redirects: the node's own NodePort connections (TCP and UDP port
/// numbers) go to `node_port_ip`, port unchanged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodePortNat {
    pub node_port_ip: Ipv4Addr,
    pub tcp_ports: Vec<u16>,
    pub udp_ports: Vec<u16>,
}

/// A client of nf_tables: one NETLINK_NETFILTER socket, bound to the network namespace the
/// calling thread was in when it was made (as [`crate::Netlink`]).
pub struct Nftables {
    socket: Socket,
    seq: u32,
    recv_buf: Vec<u8>,
}

impl std::fmt::Debug for Nftables {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Nftables")
            .field("seq", &self.seq)
            .finish_non_exhaustive()
    }
}

/// One message of a batch, for naming it when the kernel refuses it.
struct Sent {
    seq: u32,
    what: String,
}

/// A transaction being built: `NFNL_MSG_BATCH_BEGIN`, the messages, `NFNL_MSG_BATCH_END`.
/// Every message between asks for an ACK, so a refusal comes back with its sequence number.
struct Batch {
    w: Writer,
    next_seq: u32,
    sent: Vec<Sent>,
}

impl Batch {
    fn new(first_seq: u32) -> Batch {
        let mut w = Writer::default();
        w.begin(
            NFNL_MSG_BATCH_BEGIN,
            NLM_F_REQUEST,
            first_seq,
            AF_UNSPEC,
            NFNL_SUBSYS_NFTABLES,
        );
        w.end();
        Batch {
            w,
            next_seq: first_seq.wrapping_add(1),
            sent: Vec::new(),
        }
    }

    /// Appends an nf_tables message of family `ip` whose attributes `body` writes.
    fn msg(&mut self, msg: u16, flags: u16, what: String, body: impl FnOnce(&mut Writer)) {
        let seq = self.next_seq;
        self.next_seq = seq.wrapping_add(1);
        self.w.begin(
            nft_type(msg),
            NLM_F_REQUEST | NLM_F_ACK | flags,
            seq,
            NFPROTO_IPV4,
            0,
        );
        body(&mut self.w);
        self.w.end();
        self.sent.push(Sent { seq, what });
    }

    fn finish(mut self) -> (Vec<u8>, Vec<Sent>, u32) {
        let seq = self.next_seq;
        self.w.begin(
            NFNL_MSG_BATCH_END,
            NLM_F_REQUEST,
            seq,
            AF_UNSPEC,
            NFNL_SUBSYS_NFTABLES,
        );
        self.w.end();
        (self.w.into_bytes(), self.sent, seq.wrapping_add(1))
    }

    /// Creates the table if missing, then deletes it: the start of both an idempotent delete
    /// and a replace (whose later messages create it again, empty, in the same transaction).
    fn drop_table(&mut self) {
        let table = || format!("table ip {NODEPORT_TABLE}");
        self.msg(
            NFT_MSG_NEWTABLE,
            NLM_F_CREATE,
            format!("add {}", table()),
            |w| {
                w.str(NFTA_TABLE_NAME, NODEPORT_TABLE);
                w.be32(NFTA_TABLE_FLAGS, 0);
            },
        );
        self.msg(NFT_MSG_DELTABLE, 0, format!("delete {}", table()), |w| {
            w.str(NFTA_TABLE_NAME, NODEPORT_TABLE);
        });
    }

    fn add_table(&mut self) {
        self.msg(
            NFT_MSG_NEWTABLE,
            NLM_F_CREATE,
            format!("add table ip {NODEPORT_TABLE}"),
            |w| {
                w.str(NFTA_TABLE_NAME, NODEPORT_TABLE);
                w.be32(NFTA_TABLE_FLAGS, 0);
            },
        );
    }

    /// A named set of ports; `id` lets rules of the same batch refer to it.
    fn add_port_set(&mut self, name: &str, id: u32, ports: &[u16]) {
        let what = format!("add set ip {NODEPORT_TABLE} {name}");
        self.msg(NFT_MSG_NEWSET, NLM_F_CREATE, what, |w| {
            w.str(NFTA_SET_TABLE, NODEPORT_TABLE);
            w.str(NFTA_SET_NAME, name);
            w.be32(NFTA_SET_FLAGS, 0);
            w.be32(NFTA_SET_KEY_TYPE, NFT_DATATYPE_INET_SERVICE);
            w.be32(NFTA_SET_KEY_LEN, 2);
            w.be32(NFTA_SET_ID, id);
        });
        if ports.is_empty() {
            return; // the kernel refuses an element message without elements
        }
        let what = format!(
            "add {} elements to set ip {NODEPORT_TABLE} {name}",
            ports.len()
        );
        self.msg(NFT_MSG_NEWSETELEM, NLM_F_CREATE, what, |w| {
            encode_elements(w, name, id, ports)
        });
    }

    fn add_nat_chain(&mut self, name: &str, hook: u32) {
        let what = format!("add chain ip {NODEPORT_TABLE} {name} (nat hook, priority -100)");
        self.msg(NFT_MSG_NEWCHAIN, NLM_F_CREATE, what, |w| {
            encode_nat_chain(w, name, hook)
        });
    }

    fn add_rule(&mut self, chain: &str, proto: u8, set: &str, set_id: u32, to: Ipv4Addr) {
        let l4 = if proto == libc::IPPROTO_TCP as u8 {
            "tcp"
        } else {
            "udp"
        };
        let what = format!(
            "add rule `fib daddr type local {l4} dport @{set} dnat to {to}` to chain ip \
             {NODEPORT_TABLE} {chain}"
        );
        self.msg(NFT_MSG_NEWRULE, NLM_F_CREATE | NLM_F_APPEND, what, |w| {
            encode_dnat_rule(w, chain, proto, set, set_id, to)
        });
    }
}

impl Nftables {
    /// Opens a NETLINK_NETFILTER socket in the calling thread's network namespace.
    pub fn new() -> Result<Self> {
        let ctx = Ctx::new("open a NETLINK_NETFILTER socket", Subject::Nothing);
        let mut socket = Socket::new(NETLINK_NETFILTER).map_err(|e| ctx.io(e))?;
        socket.bind_auto().map_err(|e| ctx.io(e))?;
        socket
            .connect(&SocketAddr::new(0, 0))
            .map_err(|e| ctx.io(e))?;
        // Optional, as for rtnetlink: without them errors carry less text.
        let _ = socket.set_ext_ack(true);
        let _ = socket.set_cap_ack(true);
        Ok(Nftables {
            socket,
            seq: 0,
            recv_buf: Vec::with_capacity(RECV_BUF_LEN),
        })
    }

    /// Replaces table `ip podswitch` by one redirecting `nat`'s ports (see the module
    /// documentation), atomically: after an error the table is as it was before the call.
    /// Duplicate ports are allowed (each is programmed once).
    pub fn replace_nodeport_table(&mut self, nat: &NodePortNat) -> Result<()> {
        let (tcp, udp) = (sorted_unique(&nat.tcp_ports), sorted_unique(&nat.udp_ports));
        let ctx = Ctx::new(
            format!("replace nf_tables table ip {NODEPORT_TABLE}"),
            Subject::Nothing,
        );
        if tcp.contains(&0) || udp.contains(&0) {
            return Err(ctx.invalid("port 0 is not a NodePort"));
        }
        let mut batch = Batch::new(self.take_seqs());
        batch.drop_table();
        batch.add_table();
        batch.add_port_set(TCP_SET, 1, &tcp);
        batch.add_port_set(UDP_SET, 2, &udp);
        for (chain, hook) in [
            ("prerouting", NF_INET_PRE_ROUTING),
            ("output", NF_INET_LOCAL_OUT),
        ] {
            batch.add_nat_chain(chain, hook);
            let to = nat.node_port_ip;
            batch.add_rule(chain, libc::IPPROTO_TCP as u8, TCP_SET, 1, to);
            batch.add_rule(chain, libc::IPPROTO_UDP as u8, UDP_SET, 2, to);
        }
        self.commit(batch, &ctx)
    }

    /// Deletes table `ip podswitch`; there being none is no error.
    pub fn delete_nodeport_table(&mut self) -> Result<()> {
        let ctx = Ctx::new(
            format!("delete nf_tables table ip {NODEPORT_TABLE}"),
            Subject::Nothing,
        );
        let mut batch = Batch::new(self.take_seqs());
        batch.drop_table();
        self.commit(batch, &ctx)
    }

    /// Whether table `ip podswitch` exists (for tests and diagnostics).
    pub fn has_nodeport_table(&mut self) -> Result<bool> {
        let ctx = Ctx::new(
            format!("look up nf_tables table ip {NODEPORT_TABLE}"),
            Subject::Nothing,
        );
        let seq = self.take_seqs();
        let mut w = Writer::default();
        w.begin(
            nft_type(NFT_MSG_GETTABLE),
            NLM_F_REQUEST | NLM_F_ACK,
            seq,
            NFPROTO_IPV4,
            0,
        );
        w.str(NFTA_TABLE_NAME, NODEPORT_TABLE);
        w.end();
        self.send(&w.into_bytes(), &ctx)?;
        loop {
            let len = self.recv_datagram(&ctx)?;
            for reply in Replies::new(&self.recv_buf[..len]) {
                let reply = reply.map_err(|p| ctx.protocol(p))?;
                match reply.error() {
                    Some((0, _)) if reply.seq == seq => return Ok(true),
                    Some((libc::ENOENT, _)) if reply.seq == seq => return Ok(false),
                    Some((errno, message)) if reply.seq == seq => {
                        return Err(ctx.kernel(errno, message))
                    }
                    _ => {}
                }
            }
        }
    }

    /// Reserves a block of sequence numbers for one batch (ours never approach this size).
    fn take_seqs(&mut self) -> u32 {
        let first = self.seq;
        self.seq = self.seq.wrapping_add(1 << 16);
        first
    }

    /// Sends the batch, then a GETGEN request as a marker: the kernel answers the datagrams
    /// in order, so once the marker's ACK is in, every answer to the batch has been read
    /// (even when the kernel rejected the batch as a whole and ACKed none of its messages).
    fn commit(&mut self, batch: Batch, ctx: &Ctx) -> Result<()> {
        let (bytes, sent, marker_seq) = batch.finish();
        self.send(&bytes, ctx)?;
        let mut marker = Writer::default();
        marker.begin(
            nft_type(NFT_MSG_GETGEN),
            NLM_F_REQUEST | NLM_F_ACK,
            marker_seq,
            AF_UNSPEC,
            0,
        );
        marker.end();
        self.send(&marker.into_bytes(), ctx)?;

        let mut first_error: Option<Error> = None;
        loop {
            let len = self.recv_datagram(ctx)?;
            for reply in Replies::new(&self.recv_buf[..len]) {
                let reply = reply.map_err(|p| ctx.protocol(p))?;
                let Some((errno, message)) = reply.error() else {
                    continue;
                };
                if reply.seq == marker_seq {
                    return match (first_error, errno) {
                        (Some(e), _) => Err(e),
                        (None, 0) => Ok(()),
                        (None, errno) => {
                            Err(named(ctx, "read the ruleset generation", errno, message))
                        }
                    };
                }
                if errno == 0 || first_error.is_some() {
                    continue;
                }
                let what = sent
                    .iter()
                    .find(|s| s.seq == reply.seq)
                    .map_or("begin the batch", |s| s.what.as_str());
                first_error = Some(named(ctx, what, errno, message));
            }
        }
    }

    fn send(&self, bytes: &[u8], ctx: &Ctx) -> Result<()> {
        loop {
            match self.socket.send(bytes, 0) {
                Ok(n) if n == bytes.len() => return Ok(()),
                Ok(n) => {
                    return Err(ctx.protocol(format!("sent {n} of {} bytes", bytes.len())));
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(ctx.io(e)),
            }
        }
    }

    /// One datagram into `recv_buf` (answers here are ACKs and errors: small).
    fn recv_datagram(&mut self, ctx: &Ctx) -> Result<usize> {
        self.recv_buf.clear();
        self.recv_buf.reserve(RECV_BUF_LEN);
        let buf = &mut self.recv_buf;
        recv_retrying(&self.socket, ctx, |socket| socket.recv(buf, 0))
    }
}

/// The error for a refused message: which message, in which operation, the errno, the
/// kernel's words, and a hint for the errnos that have a usual cause here.
fn named(ctx: &Ctx, what: &str, errno: i32, message: Option<String>) -> Error {
    let err = Ctx::new(format!("{}: {what}", ctx.op), ctx.subject.clone()).kernel(errno, message);
    err.hint_on(
        libc::EPERM,
        "changing nf_tables needs CAP_NET_ADMIN in the network namespace",
    )
    .hint_on(
        libc::EOPNOTSUPP,
        "the kernel lacks nf_tables or one of its parts (nf_tables, nft_nat, nft_fib_ipv4, \
         nft_chain_nat modules)",
    )
    .hint_on(
        libc::ENOENT,
        "the kernel lacks a module this table needs (nft_fib_ipv4, nft_nat, nft_chain_nat)",
    )
}

/// One reply message: its sequence number, type, flags and payload.
struct Reply<'a> {
    seq: u32,
    kind: u16,
    flags: u16,
    payload: &'a [u8],
}

impl Reply<'_> {
    /// For an `NLMSG_ERROR`: the errno (0 for an ACK) and the extended ACK's message.
    fn error(&self) -> Option<(i32, Option<String>)> {
        if self.kind != NLMSG_ERROR {
            return None;
        }
        let code = i32::from_ne_bytes(self.payload.get(..4)?.try_into().ok()?);
        let message = extack_message(self.flags, self.payload.get(4..).unwrap_or_default());
        Some((code.saturating_abs(), message))
    }
}

/// The messages of one datagram.
struct Replies<'a> {
    rest: &'a [u8],
}

impl<'a> Replies<'a> {
    fn new(datagram: &'a [u8]) -> Self {
        Replies { rest: datagram }
    }
}

impl<'a> Iterator for Replies<'a> {
    type Item = std::result::Result<Reply<'a>, String>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.len() < NLMSG_HDR_LEN {
            return None;
        }
        let word = |at: usize| u32::from_ne_bytes([0, 1, 2, 3].map(|i| self.rest[at + i]));
        let half = |at: usize| u16::from_ne_bytes([self.rest[at], self.rest[at + 1]]);
        let len = word(0) as usize;
        if len < NLMSG_HDR_LEN || len > self.rest.len() {
            self.rest = &[];
            return Some(Err(format!("netlink message of {len} bytes")));
        }
        let reply = Reply {
            kind: half(4),
            flags: half(6),
            seq: word(8),
            payload: &self.rest[NLMSG_HDR_LEN..len],
        };
        self.rest = self.rest.get(align4(len)..).unwrap_or_default();
        Some(Ok(reply))
    }
}

fn sorted_unique(ports: &[u16]) -> Vec<u16> {
    let mut v = ports.to_vec();
    v.sort_unstable();
    v.dedup();
    v
}

fn encode_elements(w: &mut Writer, set: &str, set_id: u32, ports: &[u16]) {
    w.str(NFTA_SET_ELEM_LIST_TABLE, NODEPORT_TABLE);
    w.str(NFTA_SET_ELEM_LIST_SET, set);
    w.be32(NFTA_SET_ELEM_LIST_SET_ID, set_id);
    let list = w.nest(NFTA_SET_ELEM_LIST_ELEMENTS);
    for port in ports {
        let elem = w.nest(NFTA_LIST_ELEM);
        let key = w.nest(NFTA_SET_ELEM_KEY);
        // The key is compared with the packet's bytes: network order.
        w.bytes(NFTA_DATA_VALUE, &port.to_be_bytes());
        w.end_nest(key);
        w.end_nest(elem);
    }
    w.end_nest(list);
}

fn encode_nat_chain(w: &mut Writer, name: &str, hook: u32) {
    w.str(NFTA_CHAIN_TABLE, NODEPORT_TABLE);
    w.str(NFTA_CHAIN_NAME, name);
    w.str(NFTA_CHAIN_TYPE, "nat");
    let nest = w.nest(NFTA_CHAIN_HOOK);
    w.be32(NFTA_HOOK_HOOKNUM, hook);
    w.be32(NFTA_HOOK_PRIORITY, NF_IP_PRI_NAT_DST as u32);
    w.end_nest(nest);
}

/// `fib daddr type local meta l4proto <proto> th dport @<set> dnat to <to>`, attribute for
/// attribute as nft 1.0 encodes it (the unit test compares with its `--debug=mnl` capture).
fn encode_dnat_rule(w: &mut Writer, chain: &str, proto: u8, set: &str, set_id: u32, to: Ipv4Addr) {
    w.str(NFTA_RULE_TABLE, NODEPORT_TABLE);
    w.str(NFTA_RULE_CHAIN, chain);
    let exprs = w.nest(NFTA_RULE_EXPRESSIONS);
    expr(w, "fib", |w| {
        w.be32(NFTA_FIB_FLAGS, NFTA_FIB_F_DADDR);
        w.be32(NFTA_FIB_RESULT, NFT_FIB_RESULT_ADDRTYPE);
        w.be32(NFTA_FIB_DREG, NFT_REG_1);
    });
    // Registers hold what the expression stored in host order.
    cmp_eq(w, &RTN_LOCAL.to_ne_bytes());
    expr(w, "meta", |w| {
        w.be32(NFTA_META_KEY, NFT_META_L4PROTO);
        w.be32(NFTA_META_DREG, NFT_REG_1);
    });
    cmp_eq(w, &[proto]);
    // The destination port: 2 bytes at offset 2 of the TCP or UDP header.
    expr(w, "payload", |w| {
        w.be32(NFTA_PAYLOAD_DREG, NFT_REG_1);
        w.be32(NFTA_PAYLOAD_BASE, NFT_PAYLOAD_TRANSPORT_HEADER);
        w.be32(NFTA_PAYLOAD_OFFSET, 2);
        w.be32(NFTA_PAYLOAD_LEN, 2);
    });
    expr(w, "lookup", |w| {
        w.be32(NFTA_LOOKUP_SREG, NFT_REG_1);
        w.str(NFTA_LOOKUP_SET, set);
        w.be32(NFTA_LOOKUP_SET_ID, set_id);
    });
    expr(w, "immediate", |w| {
        w.be32(NFTA_IMMEDIATE_DREG, NFT_REG_1);
        let data = w.nest(NFTA_IMMEDIATE_DATA);
        w.bytes(NFTA_DATA_VALUE, &to.octets());
        w.end_nest(data);
    });
    // No proto registers: the port is kept.
    expr(w, "nat", |w| {
        w.be32(NFTA_NAT_TYPE, NFT_NAT_DNAT);
        w.be32(NFTA_NAT_FAMILY, u32::from(NFPROTO_IPV4));
        w.be32(NFTA_NAT_REG_ADDR_MIN, NFT_REG_1);
    });
    w.end_nest(exprs);
}

/// One expression of a rule's list: its name and its attributes.
fn expr(w: &mut Writer, name: &str, data: impl FnOnce(&mut Writer)) {
    let elem = w.nest(NFTA_LIST_ELEM);
    w.str(NFTA_EXPR_NAME, name);
    let nest = w.nest(NFTA_EXPR_DATA);
    data(w);
    w.end_nest(nest);
    w.end_nest(elem);
}

/// `cmp eq reg 1 <value>`.
fn cmp_eq(w: &mut Writer, value: &[u8]) {
    expr(w, "cmp", |w| {
        w.be32(NFTA_CMP_SREG, NFT_REG_1);
        w.be32(NFTA_CMP_OP, NFT_CMP_EQ);
        let data = w.nest(NFTA_CMP_DATA);
        w.bytes(NFTA_DATA_VALUE, value);
        w.end_nest(data);
    });
}

#[cfg(test)]
mod tests;
