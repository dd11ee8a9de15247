//! The protocol spoken on `podswitchd`'s unix socket (see `docs/protocol.md`).
//!
//! Every message is one frame: a 4-byte big-endian length followed by that many bytes of JSON.
//! A request carries the protocol version; the daemon refuses versions it does not speak.
//! Changes to the dataplane's tables travel as a [`Transaction`]: a list of operations applied
//! all together, or not at all, under a generation number.

pub mod client;
pub mod control;
mod framing;
mod messages;
pub mod net;
mod policy;
pub mod server;
mod services;

pub use framing::{read_frame, read_frame_bytes, write_frame, FrameError, MAX_FRAME_LEN};
pub use messages::*;
pub use net::{ifname_problem, Ipv4Prefix, MacAddr, ParseError, IFNAME_MAX_LEN, MTU_RANGE};

/// The version of the protocol this crate speaks. Bumped on any incompatible change.
pub const PROTOCOL_VERSION: u32 = 1;

/// Default path of `podswitchd`'s socket.
pub const DEFAULT_DATAPLANE_SOCKET: &str = "/run/podswitch/dataplane.sock";
