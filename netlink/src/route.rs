//! IPv4 unicast routes in the main table: add, replace, delete, list.
//!
//! Routes we add carry protocol `static` (`RTPROT_STATIC`), as `ip route add ... proto static`
//! would, so they can be told from the kernel's own connected routes (`proto kernel`).

use std::net::Ipv4Addr;

use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL, NLM_F_REPLACE};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteFlags, RouteHeader, RouteMessage, RouteProtocol, RouteScope,
    RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

use crate::error::{Result, Subject};
use crate::socket::{Ctx, Netlink};

/// The main routing table (`RT_TABLE_MAIN`), the only one this crate touches.
const MAIN_TABLE: u32 = RouteHeader::RT_TABLE_MAIN as u32;

/// An IPv4 unicast route from the main table.
///
/// Multipath routes are listed with neither `gateway` nor `oif`: their next hops are not
/// represented here.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RouteV4 {
    pub dst: Ipv4Addr,
    pub prefix_len: u8,
    pub gateway: Option<Ipv4Addr>,
    /// Output interface index.
    pub oif: Option<u32>,
    /// Scope link: the destination is directly on the link, no gateway in between. Connected
    /// routes the kernel makes for an address have it.
    pub scope_link: bool,
    /// Preferred source address (`src` in `ip route`).
    pub pref_src: Option<Ipv4Addr>,
    /// Route priority (`metric` in `ip route`).
    pub metric: Option<u32>,
}

impl Netlink {
    /// Adds a route to `dst/prefix_len` in the main table; fails with `EEXIST` if one exists.
    ///
    /// `gateway` needs to be reachable through a route of link scope (an address's connected
    /// route, or a `scope_link` route to it) or the kernel answers `ENETUNREACH`.
    /// `scope_link` makes the route a link-scope one (`ip route add ... scope link`); without
    /// a gateway it says "the destination is on `oif`".
    pub fn route_add_v4(
        &mut self,
        dst: Ipv4Addr,
        prefix_len: u8,
        gateway: Option<Ipv4Addr>,
        oif: Option<u32>,
        scope_link: bool,
    ) -> Result<()> {
        let spec = RouteSpec {
            dst,
            prefix_len,
            gateway,
            oif,
            scope_link,
            onlink: false,
        };
        self.new_route(&spec, "add", NLM_F_CREATE | NLM_F_EXCL)
            .map_err(|e| {
                e.hint_on(
                    libc::EEXIST,
                    "the main table already has a route to this prefix; use route_replace_v4",
                )
            })
    }

    /// Adds the route, or replaces the main table's route to `dst/prefix_len` if there is one
    /// (`NLM_F_REPLACE`): the idempotent form of [`Netlink::route_add_v4`].
    pub fn route_replace_v4(
        &mut self,
        dst: Ipv4Addr,
        prefix_len: u8,
        gateway: Option<Ipv4Addr>,
        oif: Option<u32>,
        scope_link: bool,
    ) -> Result<()> {
        let spec = RouteSpec {
            dst,
            prefix_len,
            gateway,
            oif,
            scope_link,
            onlink: false,
        };
        self.new_route(&spec, "replace", NLM_F_CREATE | NLM_F_REPLACE)
    }

    /// [`Netlink::route_replace_v4`] to `dst/prefix_len` via `gateway` on link `oif` whatever
    /// the link's addresses (`ip route replace ... via GW dev IF onlink`): the kernel takes the
    /// gateway to be on the link without a route to it, and resolves it there.
    pub fn route_replace_v4_onlink(
        &mut self,
        dst: Ipv4Addr,
        prefix_len: u8,
        gateway: Ipv4Addr,
        oif: u32,
    ) -> Result<()> {
        let spec = RouteSpec {
            dst,
            prefix_len,
            gateway: Some(gateway),
            oif: Some(oif),
            scope_link: false,
            onlink: true,
        };
        self.new_route(&spec, "replace", NLM_F_CREATE | NLM_F_REPLACE)
    }

    /// Deletes the main table's route to `dst/prefix_len`, whatever its gateway, interface or
    /// scope. The kernel says `ESRCH` ("No such process") when there is none.
    pub fn route_del_v4(&mut self, dst: Ipv4Addr, prefix_len: u8) -> Result<()> {
        let ctx = Ctx::new(format!("delete route {dst}/{prefix_len}"), Subject::Nothing);
        check_prefix_len(prefix_len, &ctx)?;
        let mut msg = RouteMessage::default();
        msg.header.address_family = AddressFamily::Inet;
        msg.header.destination_prefix_length = prefix_len;
        msg.header.table = RouteHeader::RT_TABLE_MAIN;
        // Wildcards: NOWHERE matches any scope, UNSPEC any protocol and type.
        msg.header.scope = RouteScope::NoWhere;
        msg.header.protocol = RouteProtocol::Unspec;
        msg.header.kind = RouteType::Unspec;
        msg.attributes
            .push(RouteAttribute::Destination(RouteAddress::Inet(dst)));
        self.request(RouteNetlinkMessage::DelRoute(msg), 0, &ctx)
            .map(drop)
            .map_err(|e| e.hint_on(libc::ESRCH, "there is no such route in the main table"))
    }

    /// The IPv4 unicast routes of the main table (not the `local` table's host and broadcast
    /// routes, nor blackhole/unreachable/prohibit routes).
    pub fn route_list_v4(&mut self) -> Result<Vec<RouteV4>> {
        let ctx = Ctx::new("list IPv4 routes", Subject::Nothing);
        let mut query = RouteMessage::default();
        query.header.address_family = AddressFamily::Inet;
        let replies = self.dump(RouteNetlinkMessage::GetRoute(query), &ctx)?;
        Ok(replies
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewRoute(r) => route_from_message(&r),
                _ => None,
            })
            .collect())
    }

    fn new_route(&mut self, spec: &RouteSpec, verb: &str, flags: u16) -> Result<()> {
        let ctx = spec.ctx(verb);
        check_prefix_len(spec.prefix_len, &ctx)?;
        if spec.oif == Some(0) {
            return Err(ctx.invalid("0 is not a link index"));
        }
        let msg = spec.message();
        let result = self.request(RouteNetlinkMessage::NewRoute(msg), flags, &ctx);
        result.map(drop).map_err(|e| {
            e.hint_on(
                libc::ENETUNREACH,
                "the gateway must be inside a subnet the link reaches directly: add an address \
                 there or a scope-link route to the gateway first",
            )
        })
    }
}

/// The arguments of an add or replace, gathered.
struct RouteSpec {
    dst: Ipv4Addr,
    prefix_len: u8,
    gateway: Option<Ipv4Addr>,
    oif: Option<u32>,
    scope_link: bool,
    /// `RTNH_F_ONLINK`: the gateway is on the link, no route to it needed.
    onlink: bool,
}

impl RouteSpec {
    /// "add route 10.1.0.0/16 via 10.0.0.254 scope link", about the output link if any.
    fn ctx(&self, verb: &str) -> Ctx {
        let mut op = format!("{verb} route {}/{}", self.dst, self.prefix_len);
        if let Some(gw) = self.gateway {
            op.push_str(&format!(" via {gw}"));
        }
        if self.scope_link {
            op.push_str(" scope link");
        }
        if self.onlink {
            op.push_str(" onlink");
        }
        let subject = self.oif.map_or(Subject::Nothing, Subject::index);
        Ctx::new(op, subject)
    }

    fn message(&self) -> RouteMessage {
        let mut msg = RouteMessage::default();
        msg.header.address_family = AddressFamily::Inet;
        msg.header.destination_prefix_length = self.prefix_len;
        msg.header.table = RouteHeader::RT_TABLE_MAIN;
        msg.header.protocol = RouteProtocol::Static;
        msg.header.scope = if self.scope_link {
            RouteScope::Link
        } else {
            RouteScope::Universe
        };
        msg.header.kind = RouteType::Unicast;
        if self.onlink {
            msg.header.flags = RouteFlags::Onlink;
        }
        msg.attributes
            .push(RouteAttribute::Destination(RouteAddress::Inet(self.dst)));
        if let Some(gw) = self.gateway {
            msg.attributes
                .push(RouteAttribute::Gateway(RouteAddress::Inet(gw)));
        }
        if let Some(oif) = self.oif {
            msg.attributes.push(RouteAttribute::Oif(oif));
        }
        msg
    }
}

fn check_prefix_len(prefix_len: u8, ctx: &Ctx) -> Result<()> {
    if prefix_len > 32 {
        return Err(ctx.invalid(format!("prefix length {prefix_len} is longer than 32")));
    }
    Ok(())
}

/// A main-table IPv4 unicast route, or `None` for anything else in the dump.
fn route_from_message(msg: &RouteMessage) -> Option<RouteV4> {
    if msg.header.address_family != AddressFamily::Inet || msg.header.kind != RouteType::Unicast {
        return None;
    }
    // Table ids above 255 only fit in RTA_TABLE; the header then says RT_TABLE_COMPAT.
    let mut table = u32::from(msg.header.table);
    let mut route = RouteV4 {
        dst: Ipv4Addr::UNSPECIFIED,
        prefix_len: msg.header.destination_prefix_length,
        gateway: None,
        oif: None,
        scope_link: msg.header.scope == RouteScope::Link,
        pref_src: None,
        metric: None,
    };
    for attr in &msg.attributes {
        match attr {
            RouteAttribute::Table(t) => table = *t,
            RouteAttribute::Destination(RouteAddress::Inet(ip)) => route.dst = *ip,
            RouteAttribute::Gateway(RouteAddress::Inet(ip)) => route.gateway = Some(*ip),
            RouteAttribute::PrefSource(RouteAddress::Inet(ip)) => route.pref_src = Some(*ip),
            RouteAttribute::Oif(oif) => route.oif = Some(*oif),
            RouteAttribute::Priority(p) => route.metric = Some(*p),
            _ => {}
        }
    }
    (table == MAIN_TABLE).then_some(route)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> RouteSpec {
        RouteSpec {
            dst: Ipv4Addr::new(10, 1, 0, 0),
            prefix_len: 16,
            gateway: Some(Ipv4Addr::new(10, 0, 0, 254)),
            oif: Some(5),
            scope_link: false,
            onlink: false,
        }
    }

    #[test]
    fn an_onlink_route_carries_the_flag_and_says_so() {
        let mut s = spec();
        s.onlink = true;
        assert_eq!(
            s.ctx("replace").op,
            "replace route 10.1.0.0/16 via 10.0.0.254 onlink"
        );
        assert_eq!(s.message().header.flags, RouteFlags::Onlink);
        assert_eq!(spec().message().header.flags, RouteFlags::empty());
    }

    #[test]
    fn operation_text_names_prefix_gateway_and_scope() {
        let mut s = spec();
        assert_eq!(s.ctx("add").op, "add route 10.1.0.0/16 via 10.0.0.254");
        s.gateway = None;
        s.scope_link = true;
        assert_eq!(s.ctx("replace").op, "replace route 10.1.0.0/16 scope link");
        assert_eq!(s.ctx("add").subject, Subject::index(5));
    }

    #[test]
    fn added_route_message_lists_back_as_the_same_route() {
        let msg = spec().message();
        assert_eq!(msg.header.protocol, RouteProtocol::Static);
        assert_eq!(
            route_from_message(&msg),
            Some(RouteV4 {
                dst: Ipv4Addr::new(10, 1, 0, 0),
                prefix_len: 16,
                gateway: Some(Ipv4Addr::new(10, 0, 0, 254)),
                oif: Some(5),
                scope_link: false,
                pref_src: None,
                metric: None,
            })
        );
    }

    #[test]
    fn routes_outside_the_main_table_or_not_unicast_are_not_listed() {
        let mut local = spec().message();
        local.header.table = 255;
        assert_eq!(route_from_message(&local), None);

        let mut big_table = spec().message();
        big_table.header.table = 252; // RT_TABLE_COMPAT
        big_table.attributes.push(RouteAttribute::Table(1000));
        assert_eq!(route_from_message(&big_table), None);

        let mut blackhole = spec().message();
        blackhole.header.kind = RouteType::BlackHole;
        assert_eq!(route_from_message(&blackhole), None);
    }

    #[test]
    fn default_route_without_destination_attribute_is_0_0_0_0_slash_0() {
        let mut msg = spec().message();
        msg.header.destination_prefix_length = 0;
        msg.attributes
            .retain(|a| !matches!(a, RouteAttribute::Destination(_)));
        let route = route_from_message(&msg).expect("main-table unicast route");
        assert_eq!((route.dst, route.prefix_len), (Ipv4Addr::UNSPECIFIED, 0));
    }
}
