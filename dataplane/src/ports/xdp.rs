//! The XDP side of AF_XDP ports: an XSKMAP (queue index → AF_XDP socket), the six-instruction
//! program that redirects each frame to the socket of the queue it arrived on
//! (`bpf_redirect_map(&xsks, ctx->rx_queue_index, XDP_PASS)`), and its attachment to the
//! interface through rtnetlink (`IFLA_XDP`), native mode first, generic if the driver has none.
//!
//! No loader library: the map is made with `BPF_MAP_CREATE`, the program assembled here and
//! loaded with `BPF_PROG_LOAD`, sockets inserted with `BPF_MAP_UPDATE_ELEM`.
//!
//! An `IFLA_XDP` attachment is not tied to a descriptor: it outlives the process unless
//! detached. So (ARCHITECTURE.md, "AF_XDP ports"): attaching first detaches whatever program
//! the interface runs (a stale one from a daemon killed with SIGKILL); the hook is detached
//! when the port's last queue goes, and [`detach_all`] detaches every live hook on a clean
//! exit, which does not wait for the workers to drop their queues. A stale program that
//! survives anyway is harmless until then: its map has no socket left, and the `XDP_PASS`
//! fallback of `bpf_redirect_map` hands every frame to the kernel's stack.

use podswitch_netlink::{Netlink, XdpMode};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::{Arc, Mutex, Weak};

const BPF_MAP_CREATE: libc::c_long = 0;
const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_MAP_TYPE_XSKMAP: u32 = 17;
const BPF_PROG_TYPE_XDP: u32 = 6;
const BPF_FUNC_REDIRECT_MAP: i32 = 51;
const BPF_PSEUDO_MAP_FD: u8 = 1;
const XDP_PASS: i32 = 2;
/// `offsetof(struct xdp_md, rx_queue_index)`.
const XDP_MD_RX_QUEUE_INDEX: i16 = 16;

/// `union bpf_attr`, as bytes: every command reads a prefix of it.
struct Attr([u8; 128]);

impl Attr {
    fn new() -> Attr {
        Attr([0; 128])
    }

    fn u32(mut self, off: usize, v: u32) -> Attr {
        self.0[off..off + 4].copy_from_slice(&v.to_ne_bytes());
        self
    }

    fn u64(mut self, off: usize, v: u64) -> Attr {
        self.0[off..off + 8].copy_from_slice(&v.to_ne_bytes());
        self
    }

    fn name(mut self, off: usize, name: &str) -> Attr {
        let n = name.len().min(15);
        self.0[off..off + n].copy_from_slice(&name.as_bytes()[..n]);
        self
    }
}

/// `bpf(cmd, attr, size)`.
///
/// # Safety
/// Every pointer stored in `attr` must point at memory valid for what `cmd` does with it,
/// for the duration of the call.
unsafe fn bpf(cmd: libc::c_long, attr: &mut Attr) -> io::Result<libc::c_long> {
    // SAFETY: `attr` is a live, zero-padded 128-byte `union bpf_attr`; the caller vouches for
    // the pointers inside it.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr.0.as_mut_ptr(),
            std::mem::size_of_val(&attr.0),
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(rc)
}

/// A new descriptor returned by `bpf`.
fn owned(fd: libc::c_long) -> OwnedFd {
    // SAFETY: `bpf` returned a fresh descriptor that nothing else owns.
    unsafe { OwnedFd::from_raw_fd(fd as RawFd) }
}

/// An XSKMAP: AF_XDP sockets by queue index.
#[derive(Debug)]
pub struct XskMap {
    fd: OwnedFd,
}

impl XskMap {
    /// A map for queue indexes `0..entries`.
    pub fn new(entries: u32) -> io::Result<XskMap> {
        let mut attr = Attr::new()
            .u32(0, BPF_MAP_TYPE_XSKMAP)
            .u32(4, 4) // key: u32 queue index
            .u32(8, 4) // value: u32 socket fd
            .u32(12, entries.max(1))
            .name(28, "psw_xsks");
        // SAFETY: BPF_MAP_CREATE reads only integers and the inline name.
        let fd = unsafe { bpf(BPF_MAP_CREATE, &mut attr) }.map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("creating the XSKMAP (BPF_MAP_CREATE): {e}"),
            )
        })?;
        Ok(XskMap { fd: owned(fd) })
    }

    /// Puts the AF_XDP socket `xsk_fd` at `queue`: frames arriving on that queue go to it.
    pub fn insert(&self, queue: u32, xsk_fd: RawFd) -> io::Result<()> {
        let key = queue;
        let value = xsk_fd as u32;
        let mut attr = Attr::new()
            .u32(0, self.fd.as_raw_fd() as u32)
            .u64(8, &key as *const u32 as u64)
            .u64(16, &value as *const u32 as u64);
        // SAFETY: key and value point at live locals of the map's key and value size.
        unsafe { bpf(BPF_MAP_UPDATE_ELEM, &mut attr) }.map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("inserting the socket of queue {queue} into the XSKMAP: {e}"),
            )
        })?;
        Ok(())
    }
}

/// One `struct bpf_insn`: opcode, destination and source registers, offset, immediate.
const fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> u64 {
    code as u64
        | ((dst as u64 & 0xf) << 8)
        | ((src as u64 & 0xf) << 12)
        | ((off as u16 as u64) << 16)
        | ((imm as u32 as u64) << 32)
}

/// The redirect program for `map`, as instructions.
fn redirect_insns(map: &XskMap) -> [u64; 6] {
    [
        // r2 = ctx->rx_queue_index (BPF_LDX | BPF_MEM | BPF_W)
        insn(0x61, 2, 1, XDP_MD_RX_QUEUE_INDEX, 0),
        // r1 = &xsks (BPF_LD | BPF_IMM | BPF_DW, the map's fd resolved by the verifier)
        insn(0x18, 1, BPF_PSEUDO_MAP_FD, 0, map.fd.as_raw_fd()),
        insn(0, 0, 0, 0, 0),
        // r3 = XDP_PASS: the action when the map has no socket at that index
        insn(0xb7, 3, 0, 0, XDP_PASS),
        // r0 = bpf_redirect_map(r1, r2, r3)
        insn(0x85, 0, 0, 0, BPF_FUNC_REDIRECT_MAP),
        // return r0
        insn(0x95, 0, 0, 0, 0),
    ]
}

/// `BPF_F_XDP_HAS_FRAGS`: the program takes frames in several buffers (its only action,
/// the redirect, does not read the frame), so a driver lets the interface's MTU exceed a
/// page and the frames reach a multi-buffer AF_XDP socket in pieces.
const BPF_F_XDP_HAS_FRAGS: u32 = 1 << 5;

/// Loads the redirect program for `map`, marked as taking multi-buffer frames when
/// `multi_buffer` (an MTU over one chunk; unmarked otherwise, so that a kernel whose XSKMAP
/// redirect cannot take fragments never sees one); a refusal carries the verifier's log.
pub fn load_redirect_program(map: &XskMap, multi_buffer: bool) -> io::Result<OwnedFd> {
    let flags = if multi_buffer { BPF_F_XDP_HAS_FRAGS } else { 0 };
    load_redirect_program_with(map, flags)
}

fn load_redirect_program_with(map: &XskMap, prog_flags: u32) -> io::Result<OwnedFd> {
    let insns = redirect_insns(map);
    let license = b"GPL\0";
    let load = |log: &mut [u8]| {
        let mut attr = Attr::new()
            .u32(0, BPF_PROG_TYPE_XDP)
            .u32(4, insns.len() as u32)
            .u64(8, insns.as_ptr() as u64)
            .u64(16, license.as_ptr() as u64)
            .u32(24, u32::from(!log.is_empty()))
            .u32(28, log.len() as u32)
            // No buffer at all without a log: the kernel refuses a pointer with size 0.
            .u64(
                32,
                if log.is_empty() {
                    0
                } else {
                    log.as_mut_ptr() as u64
                },
            )
            .u32(44, prog_flags)
            .name(48, "psw_xsk");
        // SAFETY: instructions, license and log buffer are live for the call, of the sizes
        // the attr gives.
        unsafe { bpf(BPF_PROG_LOAD, &mut attr) }
    };
    match load(&mut []) {
        Ok(fd) => Ok(owned(fd)),
        Err(e) => {
            // Again with the verifier's log, to say why.
            let mut log = vec![0u8; 16 * 1024];
            if let Ok(fd) = load(&mut log) {
                // Accepted the second time (a transient failure): use it.
                return Ok(owned(fd));
            }
            let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
            let log = String::from_utf8_lossy(&log[..end]);
            Err(io::Error::new(
                e.kind(),
                format!(
                    "loading the XDP redirect program: {e}; verifier: {}",
                    log.trim()
                ),
            ))
        }
    }
}

/// The redirect program attached to one interface, with its map. Shared by the port's
/// queues; the last one dropped detaches it.
#[derive(Debug)]
pub struct XdpHook {
    /// A handle in the interface's namespace (a netlink socket stays in the namespace it was
    /// made in), for detaching from any thread.
    netlink: Mutex<Option<Netlink>>,
    ifindex: u32,
    ifname: String,
    mode: XdpMode,
    /// The kernel's id of our program: detaching checks that it is still the one attached
    /// (a port re-created on the same interface has replaced it).
    prog_id: u32,
    map: XskMap,
    _prog: OwnedFd,
}

/// Every live hook, for [`detach_all`].
static HOOKS: Mutex<Vec<Weak<XdpHook>>> = Mutex::new(Vec::new());

impl XdpHook {
    /// Attaches `prog` (redirecting into `map`) to interface `ifindex` of `netlink`'s
    /// namespace: first detaches whatever program runs there (the stale one of a daemon killed
    /// before it could detach), then attaches in native mode, or generic mode when the driver
    /// has no native XDP or `generic` asks for it. Returns the hook and the program found
    /// there before, if any.
    pub fn attach(
        mut netlink: Netlink,
        ifindex: u32,
        ifname: &str,
        map: XskMap,
        prog: OwnedFd,
        generic: bool,
    ) -> io::Result<(Arc<XdpHook>, Option<podswitch_netlink::XdpAttachment>)> {
        let nl_err = |e: podswitch_netlink::Error| io::Error::other(e.to_string());
        let stale = netlink.link_xdp_detach_all(ifindex).map_err(nl_err)?;
        let fd = prog.as_raw_fd();
        let mode = if generic {
            netlink
                .link_xdp_attach(ifindex, fd, XdpMode::Generic)
                .map_err(nl_err)?;
            XdpMode::Generic
        } else {
            match netlink.link_xdp_attach(ifindex, fd, XdpMode::Native) {
                Ok(()) => XdpMode::Native,
                Err(native) => {
                    netlink
                        .link_xdp_attach(ifindex, fd, XdpMode::Generic)
                        .map_err(|generic| {
                            io::Error::other(format!(
                                "native XDP: {native}; generic XDP: {generic}"
                            ))
                        })?;
                    XdpMode::Generic
                }
            }
        };
        let prog_id = netlink
            .link_xdp(ifindex)
            .map_err(nl_err)?
            .map_or(0, |a| a.prog_id);
        let hook = Arc::new(XdpHook {
            netlink: Mutex::new(Some(netlink)),
            ifindex,
            ifname: ifname.to_string(),
            mode,
            prog_id,
            map,
            _prog: prog,
        });
        let mut hooks = HOOKS.lock().unwrap_or_else(|p| p.into_inner());
        hooks.retain(|h| h.strong_count() > 0);
        hooks.push(Arc::downgrade(&hook));
        Ok((hook, stale))
    }

    /// Where the program runs.
    pub fn mode(&self) -> XdpMode {
        self.mode
    }

    /// The map the program redirects into.
    pub fn map(&self) -> &XskMap {
        &self.map
    }

    /// Detaches the program if it is still ours; once (later calls do nothing).
    pub fn detach(&self) {
        let mut netlink = self.netlink.lock().unwrap_or_else(|p| p.into_inner());
        let Some(mut nl) = netlink.take() else {
            return;
        };
        match nl.link_xdp(self.ifindex) {
            Ok(Some(a)) if a.prog_id == self.prog_id => {
                if let Err(e) = nl.link_xdp_detach(self.ifindex, self.mode) {
                    eprintln!(
                        "podswitchd: detaching the XDP program from {}: {e}",
                        self.ifname
                    );
                }
            }
            // Gone with the interface, or replaced by a newer port's program.
            Ok(_) => {}
            Err(e) if e.errno() == Some(libc::ENODEV) => {}
            Err(e) => eprintln!(
                "podswitchd: reading the XDP program of {}: {e}",
                self.ifname
            ),
        }
    }
}

impl Drop for XdpHook {
    fn drop(&mut self) {
        self.detach();
    }
}

/// Detaches the program of every AF_XDP port (a clean exit: the process ends without the
/// workers dropping their queues).
pub fn detach_all() {
    let hooks: Vec<Arc<XdpHook>> = HOOKS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .filter_map(Weak::upgrade)
        .collect();
    for hook in hooks {
        hook.detach();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instructions_encode_as_the_kernel_lays_out_bpf_insn() {
        // r2 = *(u32 *)(r1 + 16): code 0x61, dst 2, src 1, off 16.
        assert_eq!(
            insn(0x61, 2, 1, 16, 0).to_le_bytes(),
            [0x61, 0x12, 16, 0, 0, 0, 0, 0]
        );
        // call 51
        assert_eq!(
            insn(0x85, 0, 0, 0, 51).to_le_bytes(),
            [0x85, 0, 0, 0, 51, 0, 0, 0]
        );
        // r3 = -1 sign-extends in the immediate.
        assert_eq!(insn(0xb7, 3, 0, -1, -1) >> 16, u64::MAX >> 16);
    }

    #[test]
    fn the_kernel_verifier_accepts_the_redirect_program() {
        // Needs CAP_BPF; skipped (with a note) when the map cannot even be created.
        let map = match XskMap::new(4) {
            Ok(m) => m,
            Err(e) => {
                eprintln!("SKIPPED the_kernel_verifier_accepts_the_redirect_program: {e}");
                return;
            }
        };
        load_redirect_program(&map, false).unwrap();
        load_redirect_program(&map, true).unwrap();
    }
}
