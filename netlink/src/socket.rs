//! The [`Netlink`] handle: one blocking NETLINK_ROUTE socket and the request/reply exchange
//! every operation is built on. A request is sent with a fresh sequence number and the call
//! blocks until the kernel's ACK (or error) for that number, or until `NLMSG_DONE` for a dump.

use std::fmt;
use std::io;

use netlink_packet_core::{
    NetlinkBuffer, NetlinkHeader, NetlinkMessage, NetlinkPayload, NlasIterator, NLM_F_ACK,
    NLM_F_ACK_TLVS, NLM_F_CAPPED, NLM_F_DUMP, NLM_F_DUMP_INTR, NLM_F_REQUEST,
};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

use crate::error::{Detail, Error, Result, Subject};

/// Size of the netlink message header (`struct nlmsghdr`).
pub(crate) const NLMSG_HDR_LEN: usize = 16;
/// `NLMSGERR_ATTR_MSG`: the human-readable string in an extended ACK.
const NLMSGERR_ATTR_MSG: u16 = 1;
/// Starting receive buffer; the kernel sizes dump datagrams to at most 32 KiB unless a single
/// object needs more, in which case the buffer grows (see `recv_datagram`).
const RECV_BUF_LEN: usize = 64 * 1024;
/// A dump that the kernel flags as interrupted (the table changed under it) is retried this
/// many times before we give up and say so.
const DUMP_ATTEMPTS: usize = 5;

/// A synchronous rtnetlink client: one NETLINK_ROUTE socket plus a sequence counter.
///
/// **Namespace:** a netlink socket belongs to the network namespace its creating thread was in
/// when [`Netlink::new`] ran, for its whole life. Every request made through this handle acts
/// on that namespace, whichever thread later uses it or wherever that thread has moved since.
/// To work inside another namespace, create the handle there: [`Netlink::new_in_netns`], or
/// [`Netlink::new`] inside [`crate::in_netns`].
///
/// Changes and single-object reads are sent with `NLM_F_ACK` and return after the kernel's
/// ACK; table dumps are not ACKed by the kernel and end at `NLMSG_DONE` instead.
///
/// Calls take `&mut self`: requests and their replies share one socket, so one request is in
/// flight at a time. Use one handle per thread that needs one.
pub struct Netlink {
    socket: Socket,
    seq: u32,
    recv_buf: Vec<u8>,
}

impl fmt::Debug for Netlink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Netlink")
            .field("socket", &self.socket)
            .field("seq", &self.seq)
            .finish_non_exhaustive()
    }
}

/// What a request is, for its error messages.
#[derive(Debug, Clone)]
pub(crate) struct Ctx {
    pub(crate) op: String,
    pub(crate) subject: Subject,
}

impl Ctx {
    pub(crate) fn new(op: impl Into<String>, subject: Subject) -> Self {
        Ctx {
            op: op.into(),
            subject,
        }
    }

    pub(crate) fn io(&self, source: io::Error) -> Error {
        Error::Request {
            op: self.op.clone(),
            subject: self.subject.clone(),
            source,
            detail: Detail::default(),
        }
    }

    pub(crate) fn protocol(&self, problem: impl Into<String>) -> Error {
        Error::Protocol {
            op: self.op.clone(),
            subject: self.subject.clone(),
            problem: problem.into(),
        }
    }

    pub(crate) fn invalid(&self, problem: impl Into<String>) -> Error {
        Error::InvalidArgument {
            op: self.op.clone(),
            subject: self.subject.clone(),
            problem: problem.into(),
        }
    }

    pub(crate) fn kernel(&self, errno: i32, kernel_message: Option<String>) -> Error {
        Error::Request {
            op: self.op.clone(),
            subject: self.subject.clone(),
            source: io::Error::from_raw_os_error(errno),
            detail: Detail {
                kernel_message,
                hint: None,
            },
        }
    }
}

impl Netlink {
    /// Opens a NETLINK_ROUTE socket in the calling thread's current network namespace.
    /// See the type's documentation for what that binding means.
    pub fn new() -> Result<Self> {
        let open = |source| Error::Open { source };
        let mut socket = Socket::new(NETLINK_ROUTE).map_err(open)?;
        socket.bind_auto().map_err(open)?;
        socket.connect(&SocketAddr::new(0, 0)).map_err(open)?;
        // Extended ACKs carry the kernel's own explanation ("Nexthop has invalid gateway");
        // capped ACKs keep error replies from echoing our whole request back. Both are
        // optional: without them errors only carry less text.
        let _ = socket.set_ext_ack(true);
        let _ = socket.set_cap_ack(true);
        Ok(Netlink {
            socket,
            seq: 0,
            recv_buf: Vec::with_capacity(RECV_BUF_LEN),
        })
    }

    /// Sends a request with `NLM_F_ACK` plus `flags` and returns the messages that came before
    /// the ACK (the object a GET asked for; nothing for a change). When the request was about a
    /// link by index, a failure is reported with the link's name if it can still be found.
    pub(crate) fn request(
        &mut self,
        msg: RouteNetlinkMessage,
        flags: u16,
        ctx: &Ctx,
    ) -> Result<Vec<RouteNetlinkMessage>> {
        let result = self.request_unnamed(msg, flags, ctx);
        result.map_err(|err| self.name_subject(err))
    }

    /// [`Netlink::request`] without looking up the link's name on failure.
    pub(crate) fn request_unnamed(
        &mut self,
        msg: RouteNetlinkMessage,
        flags: u16,
        ctx: &Ctx,
    ) -> Result<Vec<RouteNetlinkMessage>> {
        self.exchange(msg, NLM_F_ACK | flags, ctx).map(|r| r.0)
    }

    /// Dumps a table (`NLM_F_DUMP`) and returns every message up to `NLMSG_DONE`. Retries when
    /// the kernel marks the dump inconsistent, so the caller sees one coherent snapshot.
    pub(crate) fn dump(
        &mut self,
        msg: RouteNetlinkMessage,
        ctx: &Ctx,
    ) -> Result<Vec<RouteNetlinkMessage>> {
        for _ in 0..DUMP_ATTEMPTS {
            let (replies, interrupted) = self.exchange(msg.clone(), NLM_F_DUMP, ctx)?;
            if !interrupted {
                return Ok(replies);
            }
        }
        Err(ctx.protocol(format!(
            "the dump was interrupted by concurrent changes {DUMP_ATTEMPTS} times in a row"
        )))
    }

    /// Replaces an unresolved `Subject::Link` in `err` by the link's name, when it has one.
    fn name_subject(&mut self, mut err: Error) -> Error {
        let index = match err.subject_mut() {
            Some(Subject::Link { index, name: None }) => *index,
            _ => return err,
        };
        if let Ok(Some(found)) = self.link_name(index) {
            if let Some(Subject::Link { name, .. }) = err.subject_mut() {
                *name = Some(found);
            }
        }
        err
    }

    fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1);
        self.seq
    }

    /// One request and all its replies. Returns the payload messages and whether any of them
    /// carried `NLM_F_DUMP_INTR`.
    fn exchange(
        &mut self,
        msg: RouteNetlinkMessage,
        flags: u16,
        ctx: &Ctx,
    ) -> Result<(Vec<RouteNetlinkMessage>, bool)> {
        let seq = self.next_seq();
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | flags;
        header.sequence_number = seq;
        let mut request = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(msg));
        request.finalize();
        let mut bytes = vec![0u8; request.buffer_len()];
        request.serialize(&mut bytes);
        self.send(&bytes, ctx)?;

        let is_dump = flags & NLM_F_DUMP == NLM_F_DUMP;
        let mut replies = Vec::new();
        let mut interrupted = false;
        loop {
            let len = self.recv_datagram(ctx)?;
            let mut offset = 0;
            while offset < len {
                let rest = &self.recv_buf[offset..len];
                let msg_len = NetlinkBuffer::new_checked(rest)
                    .map_err(|e| ctx.protocol(format!("bad netlink header: {e}")))?
                    .length() as usize;
                if msg_len < NLMSG_HDR_LEN {
                    return Err(ctx.protocol(format!("netlink message of {msg_len} bytes")));
                }
                offset += align4(msg_len);
                let reply = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&rest[..msg_len])
                    .map_err(|e| ctx.protocol(format!("cannot decode: {e}")))?;
                if reply.header.sequence_number != seq {
                    // Left over from an earlier request whose reply we stopped reading (it
                    // failed half way through a dump); not ours.
                    continue;
                }
                interrupted |= reply.header.flags & NLM_F_DUMP_INTR != 0;
                let reply_flags = reply.header.flags;
                match reply.payload {
                    NetlinkPayload::InnerMessage(inner) => replies.push(inner),
                    NetlinkPayload::Error(err) => match err.code {
                        // The ACK. A dump ends with NLMSG_DONE instead, never an ACK.
                        None if !is_dump => return Ok((replies, interrupted)),
                        None => {}
                        Some(code) => {
                            let message = extack_message(reply_flags, &err.header);
                            return Err(ctx.kernel(code.get().abs(), message));
                        }
                    },
                    NetlinkPayload::Done(done) => {
                        if done.code != 0 {
                            return Err(ctx.kernel(done.code.abs(), None));
                        }
                        return Ok((replies, interrupted));
                    }
                    NetlinkPayload::Overrun(_) => {
                        return Err(ctx.protocol("the kernel reported a message overrun"));
                    }
                    _ => {}
                }
            }
        }
    }

    fn send(&self, bytes: &[u8], ctx: &Ctx) -> Result<()> {
        loop {
            match self.socket.send(bytes, 0) {
                Ok(n) if n == bytes.len() => return Ok(()),
                Ok(n) => {
                    return Err(
                        ctx.protocol(format!("sent {n} of {} bytes of the request", bytes.len()))
                    )
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(ctx.io(e)),
            }
        }
    }

    /// Reads one datagram into `recv_buf` and returns its length. Peeks first so that a
    /// datagram larger than the buffer grows the buffer instead of being cut (netlink drops
    /// the rest of a truncated datagram).
    fn recv_datagram(&mut self, ctx: &Ctx) -> Result<usize> {
        let mut probe: &mut [u8] = &mut [];
        let needed = recv_retrying(&self.socket, ctx, |socket| {
            socket.recv(&mut probe, libc::MSG_PEEK | libc::MSG_TRUNC)
        })?;
        self.recv_buf.clear();
        self.recv_buf.reserve(needed.max(RECV_BUF_LEN));
        let buf = &mut self.recv_buf;
        let got = recv_retrying(&self.socket, ctx, |socket| socket.recv(buf, 0))?;
        if got > self.recv_buf.len() {
            return Err(ctx.protocol(format!(
                "reply of {got} bytes was cut to {}",
                self.recv_buf.len()
            )));
        }
        Ok(got)
    }
}

/// Runs one receive call, again as long as it is interrupted by a signal.
pub(crate) fn recv_retrying(
    socket: &Socket,
    ctx: &Ctx,
    mut recv: impl FnMut(&Socket) -> io::Result<usize>,
) -> Result<usize> {
    loop {
        match recv(socket) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other.map_err(|e| ctx.io(e)),
        }
    }
}

pub(crate) fn align4(len: usize) -> usize {
    (len + 3) & !3
}

/// Pulls the kernel's explanation (`NLMSGERR_ATTR_MSG`) out of an error reply. `payload` is
/// what follows the errno: the header of our request (all of the request unless the reply is
/// `NLM_F_CAPPED`), then, if `NLM_F_ACK_TLVS` is set, the extended-ACK attributes.
pub(crate) fn extack_message(reply_flags: u16, payload: &[u8]) -> Option<String> {
    if reply_flags & NLM_F_ACK_TLVS == 0 {
        return None;
    }
    let echoed_len = if reply_flags & NLM_F_CAPPED != 0 {
        NLMSG_HDR_LEN
    } else {
        let len_bytes: [u8; 4] = payload.get(..4)?.try_into().ok()?;
        align4(u32::from_ne_bytes(len_bytes) as usize)
    };
    let attrs = payload.get(echoed_len..)?;
    NlasIterator::new(attrs)
        .filter_map(|nla| nla.ok())
        .find(|nla| nla.kind() == NLMSGERR_ATTR_MSG)
        .map(|nla| {
            let text = nla.value();
            let text = text.split(|b| *b == 0).next().unwrap_or(text);
            String::from_utf8_lossy(text).into_owned()
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An echoed 16-byte request header (as with NETLINK_CAP_ACK), then one
    /// NLMSGERR_ATTR_MSG attribute holding "bad gw\0" padded to 4 bytes.
    fn capped_error_payload() -> Vec<u8> {
        let mut p = vec![0u8; NLMSG_HDR_LEN];
        p[..4].copy_from_slice(&40u32.to_ne_bytes());
        p.extend_from_slice(&11u16.to_ne_bytes()); // nla_len: 4 + 7
        p.extend_from_slice(&NLMSGERR_ATTR_MSG.to_ne_bytes());
        p.extend_from_slice(b"bad gw\0\0");
        p
    }

    #[test]
    fn extack_message_is_read_after_capped_header() {
        let flags = NLM_F_ACK_TLVS | NLM_F_CAPPED;
        assert_eq!(
            extack_message(flags, &capped_error_payload()),
            Some("bad gw".to_string())
        );
    }

    #[test]
    fn extack_message_skips_a_whole_echoed_request_when_not_capped() {
        // The echoed request claims 20 bytes: header plus 4 bytes of body.
        let mut p = vec![0u8; 20];
        p[..4].copy_from_slice(&20u32.to_ne_bytes());
        p.extend_from_slice(&capped_error_payload()[NLMSG_HDR_LEN..]);
        assert_eq!(
            extack_message(NLM_F_ACK_TLVS, &p),
            Some("bad gw".to_string())
        );
    }

    #[test]
    fn no_extack_without_tlv_flag_or_with_short_payload() {
        assert_eq!(extack_message(NLM_F_CAPPED, &capped_error_payload()), None);
        assert_eq!(extack_message(NLM_F_ACK_TLVS, &[1, 2]), None);
        assert_eq!(extack_message(NLM_F_ACK_TLVS | NLM_F_CAPPED, &[0; 8]), None);
    }

    #[test]
    fn align4_rounds_up_to_netlink_alignment() {
        assert_eq!(align4(16), 16);
        assert_eq!(align4(17), 20);
        assert_eq!(align4(0), 0);
    }
}
