//! IPv4 addresses on links: add (strict or idempotent), delete, list.
//!
//! An address is identified by the kernel as (link, address, prefix length): replacing
//! 10.0.0.1/24 by 10.0.0.1/16 adds a second address rather than changing the first.

use std::io;
use std::net::{IpAddr, Ipv4Addr};

use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL, NLM_F_REPLACE};
use netlink_packet_route::address::{AddressAttribute, AddressMessage, AddressScope};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

use crate::error::{Result, Subject};
use crate::socket::{Ctx, Netlink};

impl Netlink {
    /// Adds `addr/prefix_len` to the link; fails with `EEXIST` when the link already has it.
    /// For prefixes up to /30 the broadcast address is set as `ip addr add ... brd +` would.
    pub fn addr_add_v4(&mut self, index: u32, addr: Ipv4Addr, prefix_len: u8) -> Result<()> {
        let ctx = Ctx::new(
            format!("add address {addr}/{prefix_len}"),
            Subject::index(index),
        );
        self.new_address(index, addr, prefix_len, NLM_F_CREATE | NLM_F_EXCL, &ctx)
    }

    /// Like [`Netlink::addr_add_v4`], but succeeds when the link already has the address.
    pub fn addr_replace_v4(&mut self, index: u32, addr: Ipv4Addr, prefix_len: u8) -> Result<()> {
        let ctx = Ctx::new(
            format!("replace address {addr}/{prefix_len}"),
            Subject::index(index),
        );
        self.new_address(index, addr, prefix_len, NLM_F_CREATE | NLM_F_REPLACE, &ctx)
    }

    /// Removes `addr/prefix_len` from the link (`EADDRNOTAVAIL` when it is not there).
    pub fn addr_del_v4(&mut self, index: u32, addr: Ipv4Addr, prefix_len: u8) -> Result<()> {
        let ctx = Ctx::new(
            format!("delete address {addr}/{prefix_len}"),
            Subject::index(index),
        );
        check_address_args(index, prefix_len, &ctx)?;
        let msg = address_message(index, addr, prefix_len);
        self.request(RouteNetlinkMessage::DelAddress(msg), 0, &ctx)
            .map(drop)
            .map_err(|e| e.hint_on(libc::EADDRNOTAVAIL, "the link has no such address"))
    }

    /// The IPv4 addresses on the link, in the kernel's order (primary addresses first).
    /// Fails with `ENODEV` when there is no such link rather than returning an empty list.
    pub fn addr_list_v4(&mut self, index: u32) -> Result<Vec<(Ipv4Addr, u8)>> {
        let ctx = Ctx::new("list addresses", Subject::index(index));
        check_address_args(index, 0, &ctx)?;
        let mut query = AddressMessage::default();
        query.header.family = AddressFamily::Inet;
        let replies = self.dump(RouteNetlinkMessage::GetAddress(query), &ctx)?;
        let addrs: Vec<_> = replies
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewAddress(a) => Some(a),
                _ => None,
            })
            .filter(|a| a.header.index == index && a.header.family == AddressFamily::Inet)
            .filter_map(|a| address_of(&a).map(|ip| (ip, a.header.prefix_len)))
            .collect();
        // A dump cannot say "no such link"; an empty answer is checked, a non-empty one
        // already proves the link exists.
        if addrs.is_empty() && self.link_name(index)?.is_none() {
            return Err(ctx.io(io::Error::from_raw_os_error(libc::ENODEV)));
        }
        Ok(addrs)
    }

    fn new_address(
        &mut self,
        index: u32,
        addr: Ipv4Addr,
        prefix_len: u8,
        flags: u16,
        ctx: &Ctx,
    ) -> Result<()> {
        check_address_args(index, prefix_len, ctx)?;
        let msg = address_message(index, addr, prefix_len);
        self.request(RouteNetlinkMessage::NewAddress(msg), flags, ctx)
            .map(drop)
            .map_err(|e| e.hint_on(libc::EEXIST, "the link already has this address"))
    }
}

fn check_address_args(index: u32, prefix_len: u8, ctx: &Ctx) -> Result<()> {
    if index == 0 {
        return Err(ctx.invalid("0 is not a link index"));
    }
    if prefix_len > 32 {
        return Err(ctx.invalid(format!("prefix length {prefix_len} is longer than 32")));
    }
    Ok(())
}

/// RTM_NEWADDR/RTM_DELADDR body for one IPv4 address, as `ip addr add A/N brd + dev X` sends it.
fn address_message(index: u32, addr: Ipv4Addr, prefix_len: u8) -> AddressMessage {
    let mut msg = AddressMessage::default();
    msg.header.family = AddressFamily::Inet;
    msg.header.prefix_len = prefix_len;
    msg.header.scope = AddressScope::Universe;
    msg.header.index = index;
    msg.attributes
        .push(AddressAttribute::Local(IpAddr::V4(addr)));
    msg.attributes
        .push(AddressAttribute::Address(IpAddr::V4(addr)));
    if let Some(brd) = broadcast(addr, prefix_len) {
        msg.attributes.push(AddressAttribute::Broadcast(brd));
    }
    msg
}

/// The directed broadcast address of `addr/prefix_len`; none for /31 (RFC 3021) and /32.
fn broadcast(addr: Ipv4Addr, prefix_len: u8) -> Option<Ipv4Addr> {
    if prefix_len > 30 {
        return None;
    }
    let host_mask = u32::MAX.checked_shr(u32::from(prefix_len)).unwrap_or(0);
    Some(Ipv4Addr::from(u32::from(addr) | host_mask))
}

/// The link's own address: `IFA_LOCAL` (on point-to-point links `IFA_ADDRESS` is the peer).
fn address_of(msg: &AddressMessage) -> Option<Ipv4Addr> {
    let mut fallback = None;
    for attr in &msg.attributes {
        match attr {
            AddressAttribute::Local(IpAddr::V4(ip)) => return Some(*ip),
            AddressAttribute::Address(IpAddr::V4(ip)) => fallback = Some(*ip),
            _ => {}
        }
    }
    fallback
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcast_sets_host_bits() {
        let a = Ipv4Addr::new(10, 0, 0, 1);
        assert_eq!(broadcast(a, 24), Some(Ipv4Addr::new(10, 0, 0, 255)));
        assert_eq!(broadcast(a, 8), Some(Ipv4Addr::new(10, 255, 255, 255)));
        assert_eq!(broadcast(a, 0), Some(Ipv4Addr::BROADCAST));
        assert_eq!(broadcast(a, 30), Some(Ipv4Addr::new(10, 0, 0, 3)));
    }

    #[test]
    fn point_to_point_prefixes_have_no_broadcast() {
        let a = Ipv4Addr::new(10, 0, 0, 1);
        assert_eq!(broadcast(a, 31), None);
        assert_eq!(broadcast(a, 32), None);
    }

    #[test]
    fn local_address_wins_over_peer_address() {
        let mut msg = AddressMessage::default();
        msg.attributes
            .push(AddressAttribute::Address(IpAddr::V4(Ipv4Addr::new(
                10, 0, 0, 2,
            ))));
        msg.attributes
            .push(AddressAttribute::Local(IpAddr::V4(Ipv4Addr::new(
                10, 0, 0, 1,
            ))));
        assert_eq!(address_of(&msg), Some(Ipv4Addr::new(10, 0, 0, 1)));
    }

    #[test]
    fn prefix_longer_than_32_is_refused_before_sending() {
        let ctx = Ctx::new("add address 10.0.0.1/33", Subject::index(4));
        let err = check_address_args(4, 33, &ctx).expect_err("/33");
        assert_eq!(
            err.to_string(),
            "add address 10.0.0.1/33 on link index 4: prefix length 33 is longer than 32"
        );
    }
}
