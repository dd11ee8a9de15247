//! Creates `afxdp` ports: finds the interface (in the daemon's namespace under the port's
//! name, or `netns.ifname` inside `netns.path`), sets its MTU and brings it up, attaches the
//! XDP redirect program (replacing any program found there: a killed daemon's), and binds one
//! AF_XDP socket per worker, each over that worker's buffer region, to the interface's queue
//! the spec names for that worker.
//!
//! The device is not ours: it is never created nor deleted here, only its XDP hook is
//! (detached when the port goes, or on a clean exit).

use super::error::PortError;
use super::state::CreatedPort;
use crate::batch::PortId;
use crate::ports::afxdp::{AfxdpQueue, CHUNK_SIZE, ONE_CHUNK_MTU, RING_SIZE, RX_OFFSET};
use crate::ports::xdp::{load_redirect_program, XdpHook, XskMap};
use crate::ports::xsk::{Xsk, XskConfig};
use crate::ports::PortQueue;
use podswitch_netlink::{in_netns, Netlink, XdpMode};
use podswitch_proto::{AfxdpInfo, PortRole, PortSpec, XdpAttachMode, XskBindMode};
use std::io;
use std::path::Path;
use std::time::{Duration, Instant};

/// A worker's buffer region as an AF_XDP UMEM: address, length, chunks that may be lent.
#[derive(Debug, Clone, Copy)]
pub struct UmemArea {
    /// First byte (page-aligned).
    pub base: usize,
    /// Length (whole pages).
    pub len: usize,
    /// Chunks (small buffers) in it.
    pub chunks: usize,
}

/// Creates AF_XDP port `id` as `spec` says, one socket per entry of `umems` (worker order).
pub(super) fn create(
    id: PortId,
    spec: &PortSpec,
    umems: &[UmemArea],
    generic: bool,
) -> Result<CreatedPort, PortError> {
    let fail = |err: io::Error| PortError::Afxdp {
        name: spec.name.clone(),
        err,
    };
    // An uplink's interface is the switch's own on the underlay: it takes the uplink's MAC
    // (a NIC filters unicast by it), and what is behind it is many MACs, none bound.
    let (peer_mac, own_mac) = match &spec.role {
        PortRole::Pod { mac, .. } => (*mac, None),
        PortRole::Uplink { mac, .. } => (*mac, Some(*mac)),
        PortRole::Host { .. } => {
            return Err(fail(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the host port is a tap (it holds the gateway address); afxdp ports are pods \
                 or the uplink",
            )))
        }
    };
    let queue_ids: Vec<u32> = if spec.queue_ids.is_empty() {
        (0..umems.len() as u32).collect()
    } else {
        spec.queue_ids.clone()
    };
    if queue_ids.len() != umems.len() {
        return Err(fail(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "queue_ids has {} entries; give one per worker ({}), or none for queues 0..{}",
                queue_ids.len(),
                umems.len(),
                umems.len()
            ),
        )));
    }
    let (netns, ifname) = match &spec.netns {
        Some(a) => (Some(Path::new(&a.path)), a.ifname.clone()),
        None => (None, spec.name.clone()),
    };
    // Everything that names the interface runs in its namespace: the netlink handle stays
    // there afterwards, and a socket binds to an index of the namespace it was made in.
    let run = |f: &(dyn Fn() -> Result<Opened, PortError> + Sync)| match netns {
        Some(path) => in_netns(path, f).map_err(|err| PortError::EnterNetns {
            path: path.display().to_string(),
            err: Box::new(err),
        })?,
        None => f(),
    };
    let mtu = u32::from(spec.mtu);
    let opened = run(&|| {
        let mut nl = Netlink::new()?;
        let index = nl.link_index(&ifname)?.ok_or_else(|| {
            fail(io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "no interface {ifname}{}: an afxdp port binds an existing interface",
                    netns.map_or(String::new(), |p| format!(" in {}", p.display()))
                ),
            ))
        })?;
        if let Some(mac) = own_mac {
            nl.link_set_mac(index, mac.0)?;
        }
        nl.link_set_mtu(index, mtu)?;
        nl.link_set_up(index)?;
        let entries = queue_ids.iter().max().map_or(1, |&q| q + 1);
        let map = XskMap::new(entries).map_err(fail)?;
        let prog = load_redirect_program(&map, spec.mtu > ONE_CHUNK_MTU).map_err(fail)?;
        let (hook, stale) =
            XdpHook::attach(nl, index, &ifname, map, prog, generic).map_err(fail)?;
        if let Some(stale) = stale {
            eprintln!(
                "podswitchd: {ifname}: detached a stale XDP program (id {}, {}) before attaching \
                 the port's own",
                stale.prog_id,
                stale.mode.name()
            );
        }
        let mut sockets = Vec::with_capacity(umems.len());
        for (umem, &queue_id) in umems.iter().zip(&queue_ids) {
            let cfg = XskConfig {
                umem: (umem.base, umem.len),
                chunk_size: CHUNK_SIZE,
                ring_size: RING_SIZE,
                ifindex: index,
                queue_id,
                multi_buffer: spec.mtu > ONE_CHUNK_MTU,
            };
            let xsk = open_socket(&cfg)
                .map_err(|e| fail(io::Error::new(e.kind(), format!("{ifname}: {e}"))))?;
            if spec.mtu > ONE_CHUNK_MTU && !xsk.multi_buffer {
                return Err(fail(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "{ifname}: mtu {} needs multi-buffer AF_XDP frames (a frame over one \
                         {CHUNK_SIZE}-byte UMEM chunk behind the kernel's {RX_OFFSET}-byte \
                         headroom), which this kernel or driver refused; at most {ONE_CHUNK_MTU}",
                        spec.mtu
                    ),
                )));
            }
            hook.map().insert(queue_id, xsk.raw_fd()).map_err(fail)?;
            sockets.push(xsk);
        }
        Ok(Opened { hook, sockets })
    })?;
    let zero_copy = opened.sockets.iter().all(|x| x.zero_copy);
    let info = AfxdpInfo {
        ifname,
        queue_ids,
        xdp: match opened.hook.mode() {
            XdpMode::Native => XdpAttachMode::Native,
            _ => XdpAttachMode::Generic,
        },
        bind: if zero_copy {
            XskBindMode::ZeroCopy
        } else {
            XskBindMode::Copy
        },
    };
    let queues = opened
        .sockets
        .into_iter()
        .zip(umems)
        .map(|(xsk, umem)| {
            Box::new(AfxdpQueue::new(
                id,
                xsk,
                opened.hook.clone(),
                umem.base,
                umem.chunks,
            )) as Box<dyn PortQueue>
        })
        .collect();
    Ok(CreatedPort {
        queues,
        peer_mac,
        new_device: false,
        afxdp: Some(info),
    })
}

/// How long a bind waits for a queue the kernel still holds: a socket closed a moment ago
/// (the port removed, or re-created in the same transaction) releases its queue from a
/// workqueue, after the close returned.
const BIND_BUSY_WAIT: Duration = Duration::from_secs(2);

/// [`Xsk::open`], retried while the queue is busy for up to [`BIND_BUSY_WAIT`].
fn open_socket(cfg: &XskConfig) -> io::Result<Xsk> {
    let deadline = Instant::now() + BIND_BUSY_WAIT;
    loop {
        // SAFETY: the region is the worker's pool, mapped for the process's life while any
        // of its buffers is out (`Pool::drop`), and its pages stay pinned by the socket
        // anyway; the queue lends only chunks it took from that pool and takes each back
        // once (`ports::afxdp`), and it refuses a pool that is not this region.
        match unsafe { Xsk::open(cfg) } {
            Err(e) if e.kind() == io::ErrorKind::ResourceBusy && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
            }
            other => return other,
        }
    }
}

/// The hook and the sockets of a port being created.
struct Opened {
    hook: std::sync::Arc<XdpHook>,
    sockets: Vec<Xsk>,
}
