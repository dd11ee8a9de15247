//! The transmit offloads of an interface, read and switched off through the ethtool ioctl
//! (`SIOCETHTOOL`), as `ethtool -K IF tx off tso off gso off` does, without the binary.
//!
//! Why: a pod whose interface is a veth whose other end is an AF_XDP port must send whole,
//! checksummed frames: AF_XDP carries no `skb` checksum or segmentation state, so a partial
//! checksum or a 64 KB GSO frame would reach the switch as a broken or oversized frame.
//!
//! The legacy per-feature commands (`ETHTOOL_{G,S}TXCSUM`, `_TSO`, `_GSO`, ABI-stable since
//! 2.6) are used rather than `ETHTOOL_SFEATURES`, which needs the kernel's feature-name string
//! set to find bit positions: three fixed commands are all this needs. The kernel maps each
//! one to its feature mask (`ethtool_get_feature_mask`: every checksum feature, every TSO
//! feature, GSO) and recomputes the device's features as for `ethtool -K`.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use crate::error::{Error, Result, Subject};
use crate::link::validate_ifname;
use crate::netns::in_netns;
use crate::socket::Ctx;

// include/uapi/linux/ethtool.h
const ETHTOOL_GTXCSUM: u32 = 0x16;
const ETHTOOL_STXCSUM: u32 = 0x17;
const ETHTOOL_GTSO: u32 = 0x1e;
const ETHTOOL_STSO: u32 = 0x1f;
const ETHTOOL_GGSO: u32 = 0x23;
const ETHTOOL_SGSO: u32 = 0x24;

/// `struct ethtool_value`: the argument of every legacy get/set command above.
#[repr(C)]
struct EthtoolValue {
    cmd: u32,
    data: u32,
}

/// Which transmit offloads an interface has (`ethtool -k`: `tx-checksumming`,
/// `tcp-segmentation-offload`, `generic-segmentation-offload`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxOffloads {
    /// Any transmit checksum offload.
    pub checksum: bool,
    /// TCP segmentation offload (any of TSO, TSO6, ...).
    pub tso: bool,
    /// Generic segmentation offload.
    pub gso: bool,
}

impl TxOffloads {
    /// None of them: the interface hands its driver whole, checksummed frames.
    pub const NONE: TxOffloads = TxOffloads {
        checksum: false,
        tso: false,
        gso: false,
    };
}

/// An ethtool ioctl handle: a datagram socket, which acts on the interfaces of the network
/// namespace it was created in, from whichever thread uses it.
#[derive(Debug)]
pub struct Ethtool {
    socket: OwnedFd,
}

impl Ethtool {
    /// A handle in the calling thread's network namespace.
    pub fn new() -> Result<Ethtool> {
        // SAFETY: socket takes integers and touches no memory of ours; a non-negative result
        // is a new fd that nothing else owns, so `OwnedFd` may take it.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(Error::Open {
                source: io::Error::last_os_error(),
            });
        }
        // SAFETY: see above: `fd` is open and ours alone.
        let socket = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Ethtool { socket })
    }

    /// A handle acting in the network namespace at `netns_path`.
    pub fn new_in_netns(netns_path: &Path) -> Result<Ethtool> {
        in_netns(netns_path, Ethtool::new)?
    }

    /// The transmit offloads `ifname` has now.
    pub fn tx_offloads(&self, ifname: &str) -> Result<TxOffloads> {
        let ctx = Ctx::new("read transmit offloads", Subject::LinkName(ifname.into()));
        Ok(TxOffloads {
            checksum: self.value(ifname, ETHTOOL_GTXCSUM, 0, &ctx)? != 0,
            tso: self.value(ifname, ETHTOOL_GTSO, 0, &ctx)? != 0,
            gso: self.value(ifname, ETHTOOL_GGSO, 0, &ctx)? != 0,
        })
    }

    /// Switches transmit checksum offload, TSO and GSO of `ifname` off, and reads them back:
    /// an error if the kernel kept any of them on (a device that cannot turn one off).
    pub fn disable_tx_offloads(&self, ifname: &str) -> Result<()> {
        let ctx = Ctx::new(
            "switch off transmit offloads",
            Subject::LinkName(ifname.into()),
        );
        // Segmentation first: TSO depends on checksum offload, and the kernel recomputes the
        // dependent features after each command anyway.
        for cmd in [ETHTOOL_STSO, ETHTOOL_SGSO, ETHTOOL_STXCSUM] {
            self.value(ifname, cmd, 0, &ctx)?;
        }
        let now = self.tx_offloads(ifname)?;
        if now != TxOffloads::NONE {
            return Err(ctx.protocol(format!(
                "the device kept some on ({now:?}); it cannot send without them"
            )));
        }
        Ok(())
    }

    /// One legacy ethtool command with an `ethtool_value`; returns the value the kernel left.
    fn value(&self, ifname: &str, cmd: u32, data: u32, ctx: &Ctx) -> Result<u32> {
        validate_ifname(ifname, ctx)?;
        let mut value = EthtoolValue { cmd, data };
        // SAFETY: `ifreq` is plain old data (a name array and a union of integers and
        // pointers) for which all zeroes is a valid value.
        let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
        // The name is at most IFNAMSIZ - 1 bytes (checked above), so the zeroed last byte
        // stays its terminator.
        for (dst, &src) in req.ifr_name.iter_mut().zip(ifname.as_bytes()) {
            *dst = src as libc::c_char;
        }
        req.ifr_ifru.ifru_data = (&raw mut value).cast();
        // SAFETY: SIOCETHTOOL reads `req` (a NUL-terminated name and a pointer) and reads and
        // writes the `ethtool_value` the pointer points at; both live on this stack frame for
        // the whole call, and the fd is open for as long as `self` is.
        let rc = unsafe { libc::ioctl(self.socket.as_raw_fd(), libc::SIOCETHTOOL, &raw mut req) };
        if rc != 0 {
            let err = io::Error::last_os_error();
            return Err(ctx.io(err).hint_on(
                libc::ENODEV,
                "no interface of that name in this network namespace",
            ));
        }
        Ok(value.data)
    }
}
