//! Links: look one up, create a veth pair, change state (up/down, MAC, MTU, name, namespace),
//! delete. Links are addressed by index everywhere but in lookups and creation, because an
//! index survives renames while a name does not survive a move to another namespace.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL};
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVeth, LinkAttribute, LinkExtentMask, LinkFlags, LinkInfo, LinkMessage,
};
use netlink_packet_route::RouteNetlinkMessage;

use crate::error::{Result, Subject};
use crate::socket::{Ctx, Netlink};

/// Longest interface name Linux accepts (`IFNAMSIZ` - 1 for the terminating NUL).
pub const IFNAME_MAX_LEN: usize = 15;

/// The far end of a veth pair made by [`Netlink::link_add_veth_into`]: created directly in
/// another network namespace, under its final name, with its MAC and MTU, so it never exists
/// in ours (no name clash with our own `eth0`, nothing to move or rename afterwards).
#[derive(Debug, Clone, Copy)]
pub struct VethPeer<'a> {
    /// Its name in `netns`.
    pub name: &'a str,
    /// The namespace it is created in (an open `/var/run/netns/NAME`, `/proc/PID/ns/net`).
    pub netns: BorrowedFd<'a>,
    /// Its MAC; the kernel picks a random one when `None`.
    pub mac: Option<[u8; 6]>,
}

/// A link as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub name: String,
    /// Hardware address, when the link has a 6-byte (Ethernet) one.
    pub mac: Option<[u8; 6]>,
    pub mtu: u32,
    /// Administratively up (`IFF_UP`).
    pub up: bool,
    /// Carrier present (`IFF_LOWER_UP`); for a veth, that needs both ends up.
    pub lower_up: bool,
}

/// A link's traffic counters as the kernel keeps them (`IFLA_STATS64`), from the device's
/// point of view: `rx` is what the device delivered to its stack, `tx` what its stack sent
/// through it. For a tap, `tx` is what the namespace sent for the tap's reader, and
/// `tx_dropped` what was lost because the reader did not drain the queue.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkStats {
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub rx_errors: u64,
    pub rx_dropped: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
    pub tx_errors: u64,
    pub tx_dropped: u64,
}

impl Netlink {
    /// The traffic counters of the link with this index (`ip -s link show`).
    pub fn link_stats(&mut self, index: u32) -> Result<LinkStats> {
        let ctx = Ctx::new("read link statistics", Subject::index(index));
        check_index(index, &ctx)?;
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        let replies = self.request(RouteNetlinkMessage::GetLink(msg), 0, &ctx)?;
        stats_from_message(&only_link(replies, &ctx)?)
            .ok_or_else(|| ctx.protocol("no IFLA_STATS64 in the reply"))
    }

    /// The index of the link called `name`, or `None` when there is no such link.
    pub fn link_index(&mut self, name: &str) -> Result<Option<u32>> {
        let ctx = Ctx::new("look up link", Subject::LinkName(name.to_string()));
        validate_ifname(name, &ctx)?;
        let mut msg = link_get_message(0);
        msg.attributes.push(LinkAttribute::IfName(name.to_string()));
        match self.request(RouteNetlinkMessage::GetLink(msg), 0, &ctx) {
            Ok(replies) => Ok(Some(only_link(replies, &ctx)?.header.index)),
            Err(err) if err.errno() == Some(libc::ENODEV) => Ok(None),
            Err(err) => Err(err),
        }
    }

    /// Name, MAC, MTU and state of the link with this index.
    pub fn link(&mut self, index: u32) -> Result<Link> {
        let ctx = Ctx::new("read link", Subject::index(index));
        check_index(index, &ctx)?;
        let replies = self.request(
            RouteNetlinkMessage::GetLink(link_get_message(index)),
            0,
            &ctx,
        )?;
        link_from_message(only_link(replies, &ctx)?, &ctx)
    }

    /// The name of the link with this index, `None` when there is none. Never tries to name
    /// the link in its own error (that is what it is used for).
    pub fn link_name(&mut self, index: u32) -> Result<Option<String>> {
        let ctx = Ctx::new("read link name", Subject::index(index));
        check_index(index, &ctx)?;
        let msg = RouteNetlinkMessage::GetLink(link_get_message(index));
        match self.request_unnamed(msg, 0, &ctx) {
            Ok(replies) => Ok(Some(
                link_from_message(only_link(replies, &ctx)?, &ctx)?.name,
            )),
            Err(err) if err.errno() == Some(libc::ENODEV) => Ok(None),
            Err(err) => Err(err),
        }
    }

    /// The link's Ethernet address; an error for links without a 6-byte one (tun and IP
    /// tunnels). Loopback reports an all-zero one.
    pub fn link_mac(&mut self, index: u32) -> Result<[u8; 6]> {
        let link = self.link(index)?;
        link.mac.ok_or_else(|| {
            Ctx::new("read MAC address", Subject::index(index))
                .invalid(format!("{} has no 6-byte hardware address", link.name))
        })
    }

    /// Sets the link administratively up (`ip link set X up`).
    pub fn link_set_up(&mut self, index: u32) -> Result<()> {
        self.set_link(index, "set link up", |msg| {
            msg.header.flags = LinkFlags::Up;
            msg.header.change_mask = LinkFlags::Up;
        })
    }

    /// Sets the link administratively down.
    pub fn link_set_down(&mut self, index: u32) -> Result<()> {
        self.set_link(index, "set link down", |msg| {
            msg.header.flags = LinkFlags::empty();
            msg.header.change_mask = LinkFlags::Up;
        })
    }

    /// Sets the link's Ethernet address. The kernel refuses multicast and all-zero addresses
    /// (`EADDRNOTAVAIL`).
    pub fn link_set_mac(&mut self, index: u32, mac: [u8; 6]) -> Result<()> {
        let op = format!("set MAC address {}", format_mac(mac));
        self.set_link(index, &op, |msg| {
            msg.attributes.push(LinkAttribute::Address(mac.to_vec()));
        })
    }

    /// Sets the link's MTU; the kernel checks it against the device's minimum and maximum.
    pub fn link_set_mtu(&mut self, index: u32, mtu: u32) -> Result<()> {
        self.set_link(index, &format!("set MTU {mtu}"), |msg| {
            msg.attributes.push(LinkAttribute::Mtu(mtu));
        })
    }

    /// Renames the link. Kernels before 6.7 only rename links that are down (`EBUSY`
    /// otherwise); newer ones rename running links too.
    pub fn link_rename(&mut self, index: u32, new_name: &str) -> Result<()> {
        let ctx = Ctx::new(format!("rename to {new_name}"), Subject::index(index));
        validate_ifname(new_name, &ctx)?;
        self.set_link(index, &ctx.op, |msg| {
            msg.attributes
                .push(LinkAttribute::IfName(new_name.to_string()));
        })
        .map_err(|e| {
            e.hint_on(libc::EBUSY, "a link must be down to be renamed")
                .hint_on(libc::EEXIST, "another link already has that name")
        })
    }

    /// Moves the link into the network namespace that `netns` refers to (an open
    /// `/var/run/netns/NAME`, `/proc/PID/ns/net`, ...). The link keeps its index only if it is
    /// free there, goes down, and loses its addresses and routes on the way. From then on
    /// this handle no longer sees it.
    pub fn link_set_netns_fd(&mut self, index: u32, netns: impl AsFd) -> Result<()> {
        let fd = netns.as_fd().as_raw_fd();
        self.set_link(index, "move to another network namespace", |msg| {
            msg.attributes.push(LinkAttribute::NetNsFd(fd));
        })
        .map_err(|e| {
            e.hint_on(
                libc::EEXIST,
                "a link with this name already exists in the target namespace; rename first",
            )
            .hint_on(
                libc::EINVAL,
                "the fd must refer to a network namespace and the link must be movable",
            )
        })
    }

    /// Deletes the link. Deleting one end of a veth pair deletes the other end too.
    pub fn link_del(&mut self, index: u32) -> Result<()> {
        let ctx = Ctx::new("delete link", Subject::index(index));
        check_index(index, &ctx)?;
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        self.request(RouteNetlinkMessage::DelLink(msg), 0, &ctx)
            .map(drop)
    }

    /// Creates a veth pair `name` <-> `peer_name` in this handle's namespace, both down, and
    /// returns their indexes `(name's, peer's)`.
    pub fn link_add_veth(&mut self, name: &str, peer_name: &str) -> Result<(u32, u32)> {
        let ctx = Ctx::new(
            format!("create veth pair with peer {peer_name}"),
            Subject::LinkName(name.to_string()),
        );
        validate_ifname(name, &ctx)?;
        validate_ifname(peer_name, &ctx)?;

        let mut peer = LinkMessage::default();
        peer.attributes
            .push(LinkAttribute::IfName(peer_name.to_string()));
        self.new_veth(
            name,
            Vec::new(),
            peer,
            &ctx,
            "a link with one of these names already exists",
        )?;

        let index = self.link_index(name)?;
        let peer_index = self.link_index(peer_name)?;
        match (index, peer_index) {
            (Some(a), Some(b)) => Ok((a, b)),
            _ => Err(ctx.protocol("the new veth pair vanished right after creation")),
        }
    }

    /// Creates a veth pair whose end `name` stays in this handle's namespace and whose other
    /// end is `peer`, made in `peer.netns` in the same request. Both ends get `mtu` and
    /// `queues` rx and tx queues (an AF_XDP socket binds one queue, so a switch with N
    /// workers wants N), and are down. Returns the index of `name` (the peer's is not ours to
    /// see).
    pub fn link_add_veth_into(
        &mut self,
        name: &str,
        peer: &VethPeer<'_>,
        mtu: u32,
        queues: u32,
    ) -> Result<u32> {
        let ctx = Ctx::new(
            format!(
                "create veth pair with peer {} in another namespace",
                peer.name
            ),
            Subject::LinkName(name.to_string()),
        );
        validate_ifname(name, &ctx)?;
        validate_ifname(peer.name, &ctx)?;
        if queues == 0 {
            return Err(ctx.invalid("a veth needs at least one queue"));
        }
        let sizes = |attrs: &mut Vec<LinkAttribute>| {
            attrs.push(LinkAttribute::Mtu(mtu));
            attrs.push(LinkAttribute::NumTxQueues(queues));
            attrs.push(LinkAttribute::NumRxQueues(queues));
        };
        let mut far = LinkMessage::default();
        far.attributes
            .push(LinkAttribute::IfName(peer.name.to_string()));
        far.attributes
            .push(LinkAttribute::NetNsFd(peer.netns.as_raw_fd()));
        if let Some(mac) = peer.mac {
            far.attributes.push(LinkAttribute::Address(mac.to_vec()));
        }
        sizes(&mut far.attributes);
        let mut own = Vec::new();
        sizes(&mut own);
        self.new_veth(
            name,
            own,
            far,
            &ctx,
            "a link with this name exists here, or one with the peer's name in the peer's \
             namespace",
        )?;
        self.link_index(name)?
            .ok_or_else(|| ctx.protocol("the new veth vanished right after creation"))
    }

    /// Sends the request for a veth `name` (with `own` attributes besides its name) whose
    /// other end is `peer`; `exists` is the hint when the kernel answers EEXIST.
    fn new_veth(
        &mut self,
        name: &str,
        own: Vec<LinkAttribute>,
        peer: LinkMessage,
        ctx: &Ctx,
        exists: &'static str,
    ) -> Result<()> {
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.to_string()));
        msg.attributes.extend(own);
        msg.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Veth),
            LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer))),
        ]));
        self.request(
            RouteNetlinkMessage::NewLink(msg),
            NLM_F_CREATE | NLM_F_EXCL,
            ctx,
        )
        .map(drop)
        .map_err(|e| e.hint_on(libc::EEXIST, exists))
    }

    /// One RTM_SETLINK on `index`, with `fill` adding what changes.
    fn set_link(
        &mut self,
        index: u32,
        op: &str,
        fill: impl FnOnce(&mut LinkMessage),
    ) -> Result<()> {
        let ctx = Ctx::new(op, Subject::index(index));
        check_index(index, &ctx)?;
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        fill(&mut msg);
        self.request(RouteNetlinkMessage::SetLink(msg), 0, &ctx)
            .map(drop)
    }
}

/// An RTM_GETLINK for `index` (0: by name, added by the caller) that skips statistics, which
/// we never read and which make up most of a link message.
pub(crate) fn link_get_message(index: u32) -> LinkMessage {
    let mut msg = LinkMessage::default();
    msg.header.index = index;
    msg.attributes
        .push(LinkAttribute::ExtMask(vec![LinkExtentMask::SkipStats]));
    msg
}

pub(crate) fn only_link(replies: Vec<RouteNetlinkMessage>, ctx: &Ctx) -> Result<LinkMessage> {
    replies
        .into_iter()
        .find_map(|m| match m {
            RouteNetlinkMessage::NewLink(link) => Some(link),
            _ => None,
        })
        .ok_or_else(|| ctx.protocol("no link in the reply"))
}

fn link_from_message(msg: LinkMessage, ctx: &Ctx) -> Result<Link> {
    let mut name = None;
    let mut mac = None;
    let mut mtu = None;
    for attr in msg.attributes {
        match attr {
            LinkAttribute::IfName(n) => name = Some(n),
            LinkAttribute::Address(a) => mac = <[u8; 6]>::try_from(a.as_slice()).ok(),
            LinkAttribute::Mtu(m) => mtu = Some(m),
            _ => {}
        }
    }
    Ok(Link {
        index: msg.header.index,
        name: name.ok_or_else(|| ctx.protocol("link without a name"))?,
        mac,
        mtu: mtu.ok_or_else(|| ctx.protocol("link without an MTU"))?,
        up: msg.header.flags.contains(LinkFlags::Up),
        lower_up: msg.header.flags.contains(LinkFlags::LowerUp),
    })
}

fn stats_from_message(msg: &LinkMessage) -> Option<LinkStats> {
    msg.attributes.iter().find_map(|attr| match attr {
        LinkAttribute::Stats64(s) => Some(LinkStats {
            rx_packets: s.rx_packets,
            rx_bytes: s.rx_bytes,
            rx_errors: s.rx_errors,
            rx_dropped: s.rx_dropped,
            tx_packets: s.tx_packets,
            tx_bytes: s.tx_bytes,
            tx_errors: s.tx_errors,
            tx_dropped: s.tx_dropped,
        }),
        _ => None,
    })
}

pub(crate) fn check_index(index: u32, ctx: &Ctx) -> Result<()> {
    if index == 0 {
        return Err(ctx.invalid("0 is not a link index"));
    }
    Ok(())
}

/// The kernel's `dev_valid_name`: 1 to 15 bytes, not `.` or `..`, no `/`, `:`, whitespace or
/// NUL. Checked here so that a bad name is reported as such, not as the kernel's EINVAL.
pub(crate) fn validate_ifname(name: &str, ctx: &Ctx) -> Result<()> {
    let problem = if name.is_empty() {
        "an interface name cannot be empty".to_string()
    } else if name.len() > IFNAME_MAX_LEN {
        format!(
            "interface name {name:?} is {} bytes; Linux allows at most {IFNAME_MAX_LEN}",
            name.len()
        )
    } else if name == "." || name == ".." {
        format!("{name:?} is not a valid interface name")
    } else if name
        .bytes()
        .any(|b| b == b'/' || b == b':' || b == 0 || b.is_ascii_whitespace() || b == 0x0b)
    {
        format!("interface name {name:?} contains '/', ':', whitespace or NUL")
    } else {
        return Ok(());
    };
    Err(ctx.invalid(problem))
}

pub(crate) fn format_mac(mac: [u8; 6]) -> String {
    let [a, b, c, d, e, f] = mac;
    format!("{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{f:02x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> Ctx {
        Ctx::new("create link", Subject::Nothing)
    }

    /// This crate depends on no other podswitch crate, so it keeps its own copy of the rule
    /// at the kernel boundary; `podswitch_proto::ifname_problem` is the one every process
    /// validates input with. They must not drift apart.
    #[test]
    fn the_name_rule_here_is_the_one_in_proto() {
        assert_eq!(IFNAME_MAX_LEN, podswitch_proto::IFNAME_MAX_LEN);
        for name in [
            "",
            "eth0",
            ".",
            "..",
            "...",
            "a/b",
            "a:b",
            "a b",
            "a\tb",
            "a\0b",
            "a\u{b}b",
            "abcdefghijklmno",
            "abcdefghijklmnop",
            "é",
            "x-y_z.1",
        ] {
            assert_eq!(
                validate_ifname(name, &ctx()).is_ok(),
                podswitch_proto::ifname_problem(name).is_none(),
                "{name:?}"
            );
        }
    }

    #[test]
    fn names_the_kernel_accepts_pass() {
        for name in ["psw0", "a", "eth0.100", "veth-abcdef1234", "x_y@z"] {
            assert!(validate_ifname(name, &ctx()).is_ok(), "{name}");
        }
    }

    #[test]
    fn names_the_kernel_rejects_fail_with_a_reason() {
        for name in [
            "",
            ".",
            "..",
            "a/b",
            "a:b",
            "a b",
            "a\tb",
            "a\0b",
            "sixteen-chars-xx",
        ] {
            let err = validate_ifname(name, &ctx()).expect_err(name);
            assert!(err.to_string().starts_with("create link: "), "{err}");
        }
    }

    #[test]
    fn fifteen_byte_name_is_the_longest_allowed() {
        assert!(validate_ifname("fifteen-chars-x", &ctx()).is_ok());
        let err = validate_ifname("sixteen-chars-xx", &ctx()).expect_err("too long");
        assert!(err.to_string().contains("at most 15"), "{err}");
    }

    #[test]
    fn mac_is_formatted_as_lowercase_colon_hex() {
        assert_eq!(
            format_mac([0x02, 0xab, 0, 1, 0x10, 0xff]),
            "02:ab:00:01:10:ff"
        );
    }

    #[test]
    fn link_is_read_from_message_attributes_and_flags() {
        let mut msg = LinkMessage::default();
        msg.header.index = 3;
        msg.header.flags = LinkFlags::Up | LinkFlags::LowerUp;
        msg.attributes.push(LinkAttribute::IfName("psw0".into()));
        msg.attributes
            .push(LinkAttribute::Address(vec![2, 0, 0, 0, 0, 1]));
        msg.attributes.push(LinkAttribute::Mtu(9000));
        let link = link_from_message(msg, &ctx()).expect("complete link message");
        assert_eq!(
            link,
            Link {
                index: 3,
                name: "psw0".into(),
                mac: Some([2, 0, 0, 0, 0, 1]),
                mtu: 9000,
                up: true,
                lower_up: true,
            }
        );
    }

    #[test]
    fn stats_are_read_from_the_stats64_attribute() {
        let mut msg = LinkMessage::default();
        assert_eq!(stats_from_message(&msg), None);
        let mut s = netlink_packet_route::link::Stats64::default();
        s.rx_packets = 1;
        s.tx_packets = 2;
        s.tx_dropped = 3;
        s.rx_bytes = 4;
        msg.attributes.push(LinkAttribute::Stats64(s));
        let got = stats_from_message(&msg).expect("stats present");
        assert_eq!(
            (got.rx_packets, got.tx_packets, got.tx_dropped, got.rx_bytes),
            (1, 2, 3, 4)
        );
    }

    #[test]
    fn link_with_a_non_ethernet_address_has_no_mac() {
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName("tun0".into()));
        msg.attributes
            .push(LinkAttribute::Address(vec![10, 0, 0, 1]));
        msg.attributes.push(LinkAttribute::Mtu(1480));
        let link = link_from_message(msg, &ctx()).expect("complete link message");
        assert_eq!(link.mac, None);
    }
}
