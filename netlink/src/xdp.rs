//! XDP attachment through rtnetlink (`IFLA_XDP`): read which program a link runs and in which
//! mode, attach a program (driver or generic mode), detach. The dataplane's AF_XDP ports use
//! this to put their redirect program on an interface and to take it (or a stale one a killed
//! daemon left) off again. Attachments made this way are not tied to any file descriptor:
//! they stay until detached or until the link goes.

use netlink_packet_route::link::{LinkAttribute, LinkMessage, LinkXdp, XdpAttached};
use netlink_packet_route::RouteNetlinkMessage;

use crate::error::{Result, Subject};
use crate::link::{check_index, link_get_message, only_link};
use crate::socket::{Ctx, Netlink};

/// `XDP_FLAGS_SKB_MODE`: generic XDP, run by the stack on an skb (any driver).
const XDP_FLAGS_SKB_MODE: u32 = 1 << 1;
/// `XDP_FLAGS_DRV_MODE`: native XDP, run by the driver before an skb exists.
const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;

/// Where an XDP program runs on a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XdpMode {
    /// In the driver (`XDP_FLAGS_DRV_MODE`, "xdpdrv").
    Native,
    /// In the stack, on an skb (`XDP_FLAGS_SKB_MODE`, "xdpgeneric").
    Generic,
    /// Offloaded to the NIC.
    Hardware,
    /// More than one of the above at once.
    Multiple,
}

impl XdpMode {
    fn flags(self) -> u32 {
        match self {
            XdpMode::Native => XDP_FLAGS_DRV_MODE,
            XdpMode::Generic => XDP_FLAGS_SKB_MODE,
            // Detaching these is not ours to do in one call; callers detach mode by mode.
            XdpMode::Hardware | XdpMode::Multiple => 0,
        }
    }

    /// `native`, `generic`, `hardware`, `multiple`.
    pub fn name(self) -> &'static str {
        match self {
            XdpMode::Native => "native",
            XdpMode::Generic => "generic",
            XdpMode::Hardware => "hardware",
            XdpMode::Multiple => "multiple",
        }
    }
}

/// The XDP program a link runs, as `IFLA_XDP` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct XdpAttachment {
    /// Where it runs.
    pub mode: XdpMode,
    /// The kernel's id of the program (`bpftool prog show id N`); 0 when the kernel did not
    /// say (several programs, `XDP_ATTACHED_MULTI`).
    pub prog_id: u32,
}

impl Netlink {
    /// The XDP program attached to the link with this index, if any (`ip link show` prints
    /// it as `prog/xdp id N`).
    pub fn link_xdp(&mut self, index: u32) -> Result<Option<XdpAttachment>> {
        let ctx = Ctx::new("read XDP attachment", Subject::index(index));
        check_index(index, &ctx)?;
        let replies = self.request(
            RouteNetlinkMessage::GetLink(link_get_message(index)),
            0,
            &ctx,
        )?;
        Ok(xdp_from_message(&only_link(replies, &ctx)?))
    }

    /// Attaches the XDP program `prog_fd` to the link in `mode` (native or generic),
    /// replacing a program of the same mode. The kernel refuses a second mode next to an
    /// attached one (`EEXIST`): detach first ([`Netlink::link_xdp_detach_all`]).
    pub fn link_xdp_attach(&mut self, index: u32, prog_fd: i32, mode: XdpMode) -> Result<()> {
        let ctx = Ctx::new(
            format!("attach XDP program ({} mode)", mode.name()),
            Subject::index(index),
        );
        check_index(index, &ctx)?;
        if mode.flags() == 0 {
            return Err(ctx.invalid("only native or generic mode can be attached"));
        }
        self.set_xdp(index, prog_fd, mode.flags(), &ctx)
            .map_err(|e| {
                e.hint_on(
                    libc::EEXIST,
                    "a program is attached in the other mode; detach it first",
                )
                .hint_on(
                    libc::EOPNOTSUPP,
                    "the driver has no native XDP; use generic mode",
                )
            })
    }

    /// Detaches the link's XDP program in `mode`; nothing attached there is not an error.
    pub fn link_xdp_detach(&mut self, index: u32, mode: XdpMode) -> Result<()> {
        let ctx = Ctx::new(
            format!("detach XDP program ({} mode)", mode.name()),
            Subject::index(index),
        );
        check_index(index, &ctx)?;
        self.set_xdp(index, -1, mode.flags(), &ctx)
    }

    /// Detaches whatever XDP program runs on the link in native or generic mode (a stale one
    /// a killed process left, or our own). Returns what was attached before.
    pub fn link_xdp_detach_all(&mut self, index: u32) -> Result<Option<XdpAttachment>> {
        let found = self.link_xdp(index)?;
        match found.map(|a| a.mode) {
            None => {}
            Some(XdpMode::Native) => self.link_xdp_detach(index, XdpMode::Native)?,
            Some(XdpMode::Generic) => self.link_xdp_detach(index, XdpMode::Generic)?,
            Some(XdpMode::Hardware | XdpMode::Multiple) => {
                self.link_xdp_detach(index, XdpMode::Native)?;
                self.link_xdp_detach(index, XdpMode::Generic)?;
            }
        }
        Ok(found)
    }

    fn set_xdp(&mut self, index: u32, fd: i32, flags: u32, ctx: &Ctx) -> Result<()> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        msg.attributes.push(LinkAttribute::Xdp(vec![
            LinkXdp::Fd(fd),
            LinkXdp::Flags(flags),
        ]));
        self.request(RouteNetlinkMessage::SetLink(msg), 0, ctx)
            .map(drop)
    }
}

fn xdp_from_message(msg: &LinkMessage) -> Option<XdpAttachment> {
    let nlas = msg.attributes.iter().find_map(|a| match a {
        LinkAttribute::Xdp(nlas) => Some(nlas),
        _ => None,
    })?;
    let mut mode = None;
    let mut prog_id = 0;
    for nla in nlas {
        match nla {
            LinkXdp::Attached(XdpAttached::Driver) => mode = Some(XdpMode::Native),
            LinkXdp::Attached(XdpAttached::SocketBuffer) => mode = Some(XdpMode::Generic),
            LinkXdp::Attached(XdpAttached::Hardware) => mode = Some(XdpMode::Hardware),
            LinkXdp::Attached(XdpAttached::Multiple) => mode = Some(XdpMode::Multiple),
            LinkXdp::ProgId(id) => prog_id = *id,
            _ => {}
        }
    }
    mode.map(|mode| XdpAttachment { mode, prog_id })
}
