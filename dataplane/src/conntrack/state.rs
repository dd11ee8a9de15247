//! Connection states and how packets move an entry between them, with the per-state timeouts.
//!
//! A simplified form of Linux's `tcp_conntrack` table (no window tracking): the flags of each
//! packet and its direction pick the next state; UDP and ICMP echo only learn whether the other
//! side has answered. Pure functions, so the table is tested without a conntrack around it.

use super::Dir;
use std::time::Duration;

/// TCP flag bits as they sit in the header's flags byte.
pub const TCP_FIN: u8 = 0x01;
/// SYN.
pub const TCP_SYN: u8 = 0x02;
/// RST.
pub const TCP_RST: u8 = 0x04;
/// ACK.
pub const TCP_ACK: u8 = 0x10;

/// IP protocol numbers the state machine distinguishes.
pub const PROTO_ICMP: u8 = 1;
/// TCP.
pub const PROTO_TCP: u8 = 6;

/// Where a connection stands. Protocols other than TCP and ICMP use the UDP states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    TcpSynSent,
    TcpSynRecv,
    TcpEstablished,
    TcpFinWait,
    TcpCloseWait,
    TcpLastAck,
    TcpTimeWait,
    TcpClose,
    UdpUnreplied,
    UdpReplied,
    IcmpUnreplied,
    IcmpReplied,
}

impl State {
    /// Stable snake_case name (dumps, JSON).
    pub fn name(self) -> &'static str {
        match self {
            State::TcpSynSent => "syn_sent",
            State::TcpSynRecv => "syn_recv",
            State::TcpEstablished => "established",
            State::TcpFinWait => "fin_wait",
            State::TcpCloseWait => "close_wait",
            State::TcpLastAck => "last_ack",
            State::TcpTimeWait => "time_wait",
            State::TcpClose => "close",
            State::UdpUnreplied => "udp_unreplied",
            State::UdpReplied => "udp_replied",
            State::IcmpUnreplied => "icmp_unreplied",
            State::IcmpReplied => "icmp_replied",
        }
    }

    /// The state of a new entry whose first packet has protocol `proto` and TCP `flags`.
    /// A TCP packet other than a bare SYN means the connection was picked up mid-stream (after
    /// a restart, say): taken as established, like `nf_conntrack_tcp_loose`.
    pub fn initial(proto: u8, flags: u8) -> State {
        match proto {
            PROTO_TCP if flags & (TCP_SYN | TCP_ACK | TCP_RST) == TCP_SYN => State::TcpSynSent,
            PROTO_TCP => State::TcpEstablished,
            PROTO_ICMP => State::IcmpUnreplied,
            _ => State::UdpUnreplied,
        }
    }
}

/// What a packet does to an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    pub state: State,
    /// A new connection reuses the tuple (SYN on a time_wait/close entry): counters restart.
    pub reopened: bool,
}

/// The next state after a packet in direction `dir` with TCP `flags` (ignored for UDP/ICMP).
/// `fin_from` is the side that sent the first FIN (kept by the entry), updated here.
pub fn advance(state: State, dir: Dir, flags: u8, fin_from: &mut Dir) -> Step {
    use State::*;
    let keep = Step {
        state,
        reopened: false,
    };
    let to = |state| Step {
        state,
        reopened: false,
    };
    let syn = flags & TCP_SYN != 0;
    let ack = flags & TCP_ACK != 0;
    let fin = flags & TCP_FIN != 0;
    match state {
        UdpUnreplied if dir == Dir::Reply => to(UdpReplied),
        IcmpUnreplied if dir == Dir::Reply => to(IcmpReplied),
        UdpUnreplied | UdpReplied | IcmpUnreplied | IcmpReplied => keep,
        // From here on TCP. RST ends any state, at once.
        _ if flags & TCP_RST != 0 => to(TcpClose),
        TcpTimeWait | TcpClose if syn && !ack && dir == Dir::Original => Step {
            state: TcpSynSent,
            reopened: true,
        },
        TcpSynSent if syn && ack && dir == Dir::Reply => to(TcpSynRecv),
        TcpSynRecv if fin => {
            *fin_from = dir;
            to(TcpFinWait)
        }
        TcpSynRecv if ack && !syn && dir == Dir::Original => to(TcpEstablished),
        TcpEstablished if fin => {
            *fin_from = dir;
            to(TcpFinWait)
        }
        // The other side closes too: only the last ACK is missing.
        TcpFinWait | TcpCloseWait if fin && dir != *fin_from => to(TcpLastAck),
        // The other side acknowledged the first FIN but keeps sending.
        TcpFinWait if ack && dir != *fin_from => to(TcpCloseWait),
        // The first closer acknowledges the second FIN.
        TcpLastAck if ack && dir == *fin_from => to(TcpTimeWait),
        _ => keep,
    }
}

/// How long an entry lives in each state without a packet. Defaults are Linux's
/// `nf_conntrack` ones except established: 24 h, between Cilium's 6 h and Linux's 5 days.
/// Five days keeps entries of vanished peers filling the table for most of a week; 6 h cuts
/// idle but healthy connections (databases, long polls with no keepalive under 2 h, Linux's
/// `tcp_keepalive_time`) — 24 h outlives every default keepalive with room to spare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    pub syn_sent: Duration,
    pub syn_recv: Duration,
    pub established: Duration,
    pub fin_wait: Duration,
    pub close_wait: Duration,
    pub last_ack: Duration,
    pub time_wait: Duration,
    pub close: Duration,
    pub udp_unreplied: Duration,
    pub udp_replied: Duration,
    pub icmp: Duration,
}

impl Default for Timeouts {
    fn default() -> Timeouts {
        let s = Duration::from_secs;
        Timeouts {
            syn_sent: s(120),
            syn_recv: s(60),
            established: s(24 * 3600),
            fin_wait: s(120),
            close_wait: s(60),
            last_ack: s(30),
            time_wait: s(120),
            close: s(10),
            udp_unreplied: s(30),
            udp_replied: s(120),
            icmp: s(30),
        }
    }
}

impl Timeouts {
    /// The idle time after which an entry in `state` is expired.
    pub fn of(&self, state: State) -> Duration {
        match state {
            State::TcpSynSent => self.syn_sent,
            State::TcpSynRecv => self.syn_recv,
            State::TcpEstablished => self.established,
            State::TcpFinWait => self.fin_wait,
            State::TcpCloseWait => self.close_wait,
            State::TcpLastAck => self.last_ack,
            State::TcpTimeWait => self.time_wait,
            State::TcpClose => self.close,
            State::UdpUnreplied => self.udp_unreplied,
            State::UdpReplied => self.udp_replied,
            State::IcmpUnreplied | State::IcmpReplied => self.icmp,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Dir::{Original as O, Reply as R};
    use State::*;

    /// Runs `packets` from `start` and returns each state reached.
    fn walk(start: State, packets: &[(Dir, u8)]) -> Vec<(State, bool)> {
        let mut state = start;
        let mut fin_from = O;
        packets
            .iter()
            .map(|&(dir, flags)| {
                let step = advance(state, dir, flags, &mut fin_from);
                state = step.state;
                (step.state, step.reopened)
            })
            .collect()
    }

    /// Name, start state, packets (direction, flags), the states they lead to.
    type Case<'a> = (&'a str, State, &'a [(Dir, u8)], &'a [State]);

    #[test]
    fn tcp_state_machine_follows_the_table() {
        let syn = TCP_SYN;
        let synack = TCP_SYN | TCP_ACK;
        let ack = TCP_ACK;
        let finack = TCP_FIN | TCP_ACK;
        let cases: &[Case] = &[
            (
                "handshake",
                TcpSynSent,
                &[(R, synack), (O, ack)],
                &[TcpSynRecv, TcpEstablished],
            ),
            (
                "syn retransmit stays",
                TcpSynSent,
                &[(O, syn)],
                &[TcpSynSent],
            ),
            (
                "ack before syn-ack ignored",
                TcpSynSent,
                &[(O, ack)],
                &[TcpSynSent],
            ),
            (
                "fin both ways",
                TcpEstablished,
                &[(O, finack), (R, finack), (O, ack)],
                &[TcpFinWait, TcpLastAck, TcpTimeWait],
            ),
            (
                "half close then fin",
                TcpEstablished,
                &[(R, finack), (O, ack), (O, finack), (R, ack)],
                &[TcpFinWait, TcpCloseWait, TcpLastAck, TcpTimeWait],
            ),
            (
                "fin retransmit stays",
                TcpEstablished,
                &[(O, finack), (O, finack)],
                &[TcpFinWait, TcpFinWait],
            ),
            (
                "rst in established",
                TcpEstablished,
                &[(R, TCP_RST)],
                &[TcpClose],
            ),
            (
                "rst in syn_sent",
                TcpSynSent,
                &[(R, TCP_RST | TCP_ACK)],
                &[TcpClose],
            ),
            (
                "syn reopens time_wait",
                TcpTimeWait,
                &[(O, syn)],
                &[TcpSynSent],
            ),
            ("syn reopens close", TcpClose, &[(O, syn)], &[TcpSynSent]),
            (
                "reply syn does not reopen",
                TcpTimeWait,
                &[(R, syn)],
                &[TcpTimeWait],
            ),
            (
                "syn in established ignored",
                TcpEstablished,
                &[(O, syn)],
                &[TcpEstablished],
            ),
        ];
        for (name, start, packets, want) in cases {
            let got: Vec<State> = walk(*start, packets).into_iter().map(|(s, _)| s).collect();
            assert_eq!(&got, want, "{name}");
        }
        assert_eq!(walk(TcpTimeWait, &[(O, syn)]), vec![(TcpSynSent, true)]);
        assert_eq!(walk(TcpSynSent, &[(O, syn)]), vec![(TcpSynSent, false)]);
    }

    #[test]
    fn udp_and_icmp_become_replied_on_a_reply_only() {
        assert_eq!(
            walk(UdpUnreplied, &[(O, 0), (R, 0), (O, 0)]).last(),
            Some(&(UdpReplied, false))
        );
        assert_eq!(
            walk(UdpUnreplied, &[(O, 0), (O, 0)]).last(),
            Some(&(UdpUnreplied, false))
        );
        assert_eq!(walk(IcmpUnreplied, &[(R, 0)]), vec![(IcmpReplied, false)]);
    }

    #[test]
    fn first_packet_picks_the_initial_state() {
        assert_eq!(State::initial(PROTO_TCP, TCP_SYN), TcpSynSent);
        assert_eq!(State::initial(PROTO_TCP, TCP_ACK), TcpEstablished);
        assert_eq!(State::initial(PROTO_TCP, TCP_SYN | TCP_ACK), TcpEstablished);
        assert_eq!(State::initial(17, 0), UdpUnreplied);
        assert_eq!(State::initial(PROTO_ICMP, 0), IcmpUnreplied);
    }

    #[test]
    fn default_timeouts_are_the_documented_ones() {
        let t = Timeouts::default();
        assert_eq!(t.of(TcpEstablished), Duration::from_secs(86400));
        assert_eq!(t.of(TcpClose), Duration::from_secs(10));
        assert_eq!(t.of(UdpUnreplied), Duration::from_secs(30));
        assert_eq!(t.of(UdpReplied), Duration::from_secs(120));
    }
}
