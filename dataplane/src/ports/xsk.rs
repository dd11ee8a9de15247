//! AF_XDP sockets: the socket, its UMEM registration and its four rings, as the kernel's
//! `include/uapi/linux/if_xdp.h` defines them. No library: a few `setsockopt`s, one
//! `getsockopt` for the ring offsets, four `mmap`s and a `bind`.
//!
//! The rings are single-producer/single-consumer queues shared with the kernel: the producer
//! writes descriptors, then publishes its index with a release store; the consumer reads the
//! index with an acquire load, reads the descriptors, then publishes its own index. We
//! produce into the fill and tx rings and consume the rx and completion rings. Indexes are
//! free-running `u32`s; a descriptor's slot is `index & mask`.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU32, Ordering};

const AF_XDP: libc::c_int = 44;
const SOL_XDP: libc::c_int = 283;
const XDP_MMAP_OFFSETS: libc::c_int = 1;
const XDP_RX_RING: libc::c_int = 2;
const XDP_TX_RING: libc::c_int = 3;
const XDP_UMEM_REG: libc::c_int = 4;
const XDP_UMEM_FILL_RING: libc::c_int = 5;
const XDP_UMEM_COMPLETION_RING: libc::c_int = 6;
const XDP_STATISTICS: libc::c_int = 7;
const XDP_OPTIONS: libc::c_int = 8;
const XDP_OPTIONS_ZEROCOPY: u32 = 1;
const XDP_USE_NEED_WAKEUP: u16 = 1 << 3;
/// Bind flag: frames may span several chunks (multi-buffer, Linux 6.6).
const XDP_USE_SG: u16 = 1 << 4;
/// `Desc::options` bit: the frame goes on in the next descriptor (multi-buffer).
pub const XDP_PKT_CONTD: u32 = 1;
const XDP_RING_NEED_WAKEUP: u32 = 1;
const XDP_PGOFF_RX_RING: libc::off_t = 0;
const XDP_PGOFF_TX_RING: libc::off_t = 0x8000_0000;
const XDP_UMEM_PGOFF_FILL_RING: libc::off_t = 0x1_0000_0000;
const XDP_UMEM_PGOFF_COMPLETION_RING: libc::off_t = 0x1_8000_0000;

/// `struct xdp_umem_reg`.
#[repr(C)]
struct UmemReg {
    addr: u64,
    len: u64,
    chunk_size: u32,
    headroom: u32,
    flags: u32,
    tx_metadata_len: u32,
}

/// `struct xdp_ring_offset`.
#[repr(C)]
#[derive(Default, Clone, Copy)]
struct RingOffset {
    producer: u64,
    consumer: u64,
    desc: u64,
    flags: u64,
}

/// `struct xdp_mmap_offsets`.
#[repr(C)]
#[derive(Default)]
struct MmapOffsets {
    rx: RingOffset,
    tx: RingOffset,
    fr: RingOffset,
    cr: RingOffset,
}

/// `struct sockaddr_xdp`.
#[repr(C)]
struct SockaddrXdp {
    family: u16,
    flags: u16,
    ifindex: u32,
    queue_id: u32,
    shared_umem_fd: u32,
}

/// `struct xdp_desc`: a frame in the UMEM (rx and tx rings).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct Desc {
    /// UMEM address of the frame's first byte.
    pub addr: u64,
    /// Frame length.
    pub len: u32,
    /// Multi-buffer flags: [`XDP_PKT_CONTD`] on every piece of a frame but its last.
    pub options: u32,
}

/// `struct xdp_statistics`: the kernel's counts for one socket, since it was bound.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Statistics {
    /// Frames dropped for other reasons than a full rx ring (no fill-ring chunk, too long).
    pub rx_dropped: u64,
    /// Invalid descriptors in the rx ring (never, for a correct producer: the kernel).
    pub rx_invalid_descs: u64,
    /// Invalid descriptors we put in the tx ring.
    pub tx_invalid_descs: u64,
    /// Frames dropped because the rx ring was full.
    pub rx_ring_full: u64,
    /// Times the kernel found the fill ring empty.
    pub rx_fill_ring_empty_descs: u64,
    /// Times the kernel found the tx ring empty.
    pub tx_ring_empty_descs: u64,
}

/// One mapped ring of `T` descriptors (`u64` addresses for fill/completion, [`Desc`] for
/// rx/tx).
#[derive(Debug)]
pub struct Ring<T> {
    map: *mut u8,
    map_len: usize,
    producer: *const AtomicU32,
    consumer: *const AtomicU32,
    flags: *const AtomicU32,
    descs: *mut T,
    mask: u32,
    /// Producer rings: the next index we write. Consumer rings: the next index we read.
    local: u32,
    /// Producer rings: the consumer index last read. Consumer rings: the producer's.
    cached: u32,
}

// SAFETY: the ring's memory is a mapping owned by this value (unmapped in `Drop`), shared
// only with the kernel; moving it to another thread (its worker) moves that ownership.
unsafe impl<T: Send> Send for Ring<T> {}

impl<T: Copy> Ring<T> {
    /// Maps ring `pgoff` of socket `fd` with `entries` descriptors at `off`.
    fn map(fd: RawFd, off: &RingOffset, entries: u32, pgoff: libc::off_t) -> io::Result<Self> {
        let map_len = off.desc as usize + entries as usize * std::mem::size_of::<T>();
        // SAFETY: a shared mapping of the socket's ring, at the offset the kernel defines
        // for it; the result is checked before use.
        let map = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                fd,
                pgoff,
            )
        };
        if map == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let map = map.cast::<u8>();
        // SAFETY: the kernel's offsets lie inside the mapping it sized for them; the index
        // words are 4-byte aligned u32s the kernel also accesses atomically.
        let ring = unsafe {
            Ring {
                map,
                map_len,
                producer: map.add(off.producer as usize).cast::<AtomicU32>(),
                consumer: map.add(off.consumer as usize).cast::<AtomicU32>(),
                flags: map.add(off.flags as usize).cast::<AtomicU32>(),
                descs: map.add(off.desc as usize).cast::<T>(),
                mask: entries - 1,
                // A fresh socket's rings start at 0 on both sides.
                local: 0,
                cached: 0,
            }
        };
        Ok(ring)
    }

    #[inline]
    fn producer(&self) -> &AtomicU32 {
        // SAFETY: points into the live mapping (see `map`).
        unsafe { &*self.producer }
    }

    #[inline]
    fn consumer(&self) -> &AtomicU32 {
        // SAFETY: points into the live mapping (see `map`).
        unsafe { &*self.consumer }
    }

    /// Whether the kernel asks to be woken up to process this ring (`XDP_USE_NEED_WAKEUP`).
    #[inline]
    pub fn needs_wakeup(&self) -> bool {
        // SAFETY: points into the live mapping (see `map`).
        unsafe { &*self.flags }.load(Ordering::Relaxed) & XDP_RING_NEED_WAKEUP != 0
    }

    /// Ring size.
    #[inline]
    pub fn size(&self) -> u32 {
        self.mask + 1
    }

    // --- producer side (fill, tx) ---

    /// Descriptors written and not yet taken by the kernel, reading its index afresh.
    #[inline]
    pub fn outstanding(&mut self) -> u32 {
        self.cached = self.consumer().load(Ordering::Acquire);
        self.local.wrapping_sub(self.cached)
    }

    /// Free slots to produce into (reads the kernel's index only when the cached one says
    /// fewer than `want` are free).
    #[inline]
    pub fn free(&mut self, want: u32) -> u32 {
        let free = self.size() - self.local.wrapping_sub(self.cached);
        if free >= want {
            return free;
        }
        self.size() - self.outstanding()
    }

    /// Writes a descriptor into the next free slot; the caller checked [`Ring::free`].
    #[inline]
    pub fn push(&mut self, d: T) {
        let slot = (self.local & self.mask) as usize;
        // SAFETY: `slot` is within the ring's `mask + 1` descriptors, which the kernel does
        // not read until the producer index published by `submit` covers it.
        unsafe { self.descs.add(slot).write(d) };
        self.local = self.local.wrapping_add(1);
    }

    /// Publishes the descriptors pushed so far.
    #[inline]
    pub fn submit(&mut self) {
        self.producer().store(self.local, Ordering::Release);
    }

    // --- consumer side (rx, completion) ---

    /// Descriptors ready to read, at most `max`.
    #[inline]
    pub fn ready(&mut self, max: u32) -> u32 {
        let mut n = self.cached.wrapping_sub(self.local);
        if n == 0 {
            self.cached = self.producer().load(Ordering::Acquire);
            n = self.cached.wrapping_sub(self.local);
        }
        n.min(max)
    }

    /// The `i`th ready descriptor (`i` below what [`Ring::ready`] said).
    #[inline]
    pub fn get(&self, i: u32) -> T {
        let slot = (self.local.wrapping_add(i) & self.mask) as usize;
        // SAFETY: the kernel published this slot (the producer index read in `ready` covers
        // it) and does not rewrite it until our consumer index passes it.
        unsafe { self.descs.add(slot).read() }
    }

    /// Gives `n` read descriptors back to the kernel.
    #[inline]
    pub fn release(&mut self, n: u32) {
        self.local = self.local.wrapping_add(n);
        self.consumer().store(self.local, Ordering::Release);
    }
}

impl<T> Drop for Ring<T> {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `Ring::map`, unmapped once; nothing points into it
        // after this value.
        unsafe { libc::munmap(self.map.cast(), self.map_len) };
    }
}

/// A bound AF_XDP socket and its rings.
#[derive(Debug)]
pub struct Xsk {
    /// Fill ring: chunks lent to the kernel for receiving.
    pub fill: Ring<u64>,
    /// Completion ring: chunks the kernel has sent.
    pub comp: Ring<u64>,
    /// Received frames.
    pub rx: Ring<Desc>,
    /// Frames to send.
    pub tx: Ring<Desc>,
    /// The driver works on the UMEM directly (else the kernel copies).
    pub zero_copy: bool,
    /// Bound with `XDP_USE_SG`: frames longer than a chunk arrive, and may be sent, as
    /// several descriptors.
    pub multi_buffer: bool,
    // Declared last: the rings are unmapped before the socket closes.
    fd: OwnedFd,
}

/// What an AF_XDP socket is bound to and with which memory.
#[derive(Debug, Clone, Copy)]
pub struct XskConfig {
    /// The UMEM: address and length (whole pages).
    pub umem: (usize, usize),
    /// Bytes per chunk (a power of two, 2048 or 4096).
    pub chunk_size: u32,
    /// Descriptors per ring (a power of two).
    pub ring_size: u32,
    /// Interface index, in the namespace of the thread that calls [`Xsk::open`].
    pub ifindex: u32,
    /// The interface's queue.
    pub queue_id: u32,
    /// Bind for multi-buffer frames (`XDP_USE_SG`): only for an MTU whose frames do not fit
    /// one chunk, since a zero-copy driver without multi-buffer support answers the flag by
    /// binding in copy mode, silently.
    pub multi_buffer: bool,
}

impl Xsk {
    /// Creates a socket, registers `cfg.umem` as its UMEM, sets up its rings and binds it to
    /// `cfg.ifindex`/`cfg.queue_id` (zero-copy where the driver supports it, else copy; with
    /// `XDP_USE_NEED_WAKEUP`). Must run in the interface's network namespace.
    ///
    /// # Safety
    /// `cfg.umem` must be memory of this process that stays allocated for the socket's life,
    /// and the kernel may write any chunk the caller puts into the fill ring, and read any
    /// chunk put into the tx ring, until the chunk comes back (rx or completion ring) or the
    /// socket is closed. (The kernel pins the pages, so unmapping them early frees nothing
    /// under it; it is the caller's buffers that must not be reused while lent.)
    pub unsafe fn open(cfg: &XskConfig) -> io::Result<Xsk> {
        // SAFETY: socket(2) takes no pointers; the result is checked.
        let raw = unsafe { libc::socket(AF_XDP, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            return Err(with_op("socket(AF_XDP)", io::Error::last_os_error()));
        }
        // SAFETY: a fresh descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let reg = UmemReg {
            addr: cfg.umem.0 as u64,
            len: cfg.umem.1 as u64,
            chunk_size: cfg.chunk_size,
            headroom: 0,
            flags: 0,
            tx_metadata_len: 0,
        };
        setsockopt(&fd, XDP_UMEM_REG, &reg, "XDP_UMEM_REG")?;
        let n = cfg.ring_size;
        setsockopt(&fd, XDP_UMEM_FILL_RING, &n, "XDP_UMEM_FILL_RING")?;
        setsockopt(
            &fd,
            XDP_UMEM_COMPLETION_RING,
            &n,
            "XDP_UMEM_COMPLETION_RING",
        )?;
        setsockopt(&fd, XDP_RX_RING, &n, "XDP_RX_RING")?;
        setsockopt(&fd, XDP_TX_RING, &n, "XDP_TX_RING")?;
        let off: MmapOffsets = getsockopt(&fd, XDP_MMAP_OFFSETS, "XDP_MMAP_OFFSETS")?;
        let raw = fd.as_raw_fd();
        let fill = Ring::map(raw, &off.fr, n, XDP_UMEM_PGOFF_FILL_RING)
            .map_err(|e| with_op("mmap fill ring", e))?;
        let comp = Ring::map(raw, &off.cr, n, XDP_UMEM_PGOFF_COMPLETION_RING)
            .map_err(|e| with_op("mmap completion ring", e))?;
        let rx = Ring::map(raw, &off.rx, n, XDP_PGOFF_RX_RING)
            .map_err(|e| with_op("mmap rx ring", e))?;
        let tx = Ring::map(raw, &off.tx, n, XDP_PGOFF_TX_RING)
            .map_err(|e| with_op("mmap tx ring", e))?;
        // Neither XDP_COPY nor XDP_ZEROCOPY: the kernel tries zero-copy and falls back to
        // copy mode when the driver cannot (veth); XDP_OPTIONS says which it chose.
        // Multi-buffer (frames over a chunk, a jumbo MTU) only when asked for: the caller
        // refuses the port when the kernel would not bind it.
        let bind = |flags: u16| {
            let addr = SockaddrXdp {
                family: AF_XDP as u16,
                flags,
                ifindex: cfg.ifindex,
                queue_id: cfg.queue_id,
                shared_umem_fd: 0,
            };
            // SAFETY: bind reads `size_of::<SockaddrXdp>()` bytes of a live local.
            let rc = unsafe {
                libc::bind(
                    raw,
                    (&addr as *const SockaddrXdp).cast(),
                    std::mem::size_of::<SockaddrXdp>() as libc::socklen_t,
                )
            };
            if rc == 0 {
                Ok(())
            } else {
                Err(io::Error::last_os_error())
            }
        };
        let mut multi_buffer = cfg.multi_buffer;
        let mut rc = if multi_buffer {
            bind(XDP_USE_NEED_WAKEUP | XDP_USE_SG)
        } else {
            bind(XDP_USE_NEED_WAKEUP)
        };
        if let (Err(e), true) = (&rc, multi_buffer) {
            if matches!(e.raw_os_error(), Some(libc::EOPNOTSUPP | libc::EINVAL)) {
                // Refused (a kernel before 6.6, a driver without it): bound without, and
                // the caller, seeing `multi_buffer` false, refuses the port's MTU.
                multi_buffer = false;
                rc = bind(XDP_USE_NEED_WAKEUP);
            }
        }
        if let Err(e) = rc {
            return Err(match e.raw_os_error() {
                Some(libc::EINVAL) => io::Error::new(
                    e.kind(),
                    format!(
                        "bind to queue {}: {e} (does the interface have that many queues? a \
                         veth needs `numrxqueues`/`numtxqueues` of at least the worker count)",
                        cfg.queue_id
                    ),
                ),
                Some(libc::EBUSY) => io::Error::new(
                    e.kind(),
                    format!(
                        "bind to queue {}: {e} (another AF_XDP socket holds that queue)",
                        cfg.queue_id
                    ),
                ),
                _ => with_op(&format!("bind to queue {}", cfg.queue_id), e),
            });
        }
        let opts: u32 = getsockopt(&fd, XDP_OPTIONS, "XDP_OPTIONS")?;
        Ok(Xsk {
            fill,
            comp,
            rx,
            tx,
            zero_copy: opts & XDP_OPTIONS_ZEROCOPY != 0,
            multi_buffer,
            fd,
        })
    }

    /// The socket's descriptor (for the XSKMAP and the worker's readiness poll).
    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Asks the kernel to process the tx ring (copy mode: it sends up to 32 frames per call
    /// and says EAGAIN when more are left). Non-blocking.
    pub fn kick_tx(&self) -> io::Result<()> {
        // SAFETY: a zero-length sendto with no buffer and no address.
        let rc = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                std::ptr::null(),
                0,
                libc::MSG_DONTWAIT,
                std::ptr::null(),
                0,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Wakes the driver to refill from the fill ring (zero-copy drivers that set the fill
    /// ring's need-wakeup flag). Non-blocking.
    pub fn kick_fill(&self) {
        // SAFETY: a zero-length recvfrom with no buffer and no address.
        let _ = unsafe {
            libc::recvfrom(
                self.fd.as_raw_fd(),
                std::ptr::null_mut(),
                0,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            )
        };
    }

    /// The kernel's counts for this socket (`XDP_STATISTICS`).
    pub fn statistics(&self) -> io::Result<Statistics> {
        getsockopt(&self.fd, XDP_STATISTICS, "XDP_STATISTICS")
    }
}

fn with_op(op: &str, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{op}: {e}"))
}

fn setsockopt<T>(fd: &OwnedFd, opt: libc::c_int, val: &T, what: &str) -> io::Result<()> {
    // SAFETY: setsockopt reads `size_of::<T>()` bytes of a live value.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            SOL_XDP,
            opt,
            (val as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(with_op(what, io::Error::last_os_error()));
    }
    Ok(())
}

fn getsockopt<T: Default>(fd: &OwnedFd, opt: libc::c_int, what: &str) -> io::Result<T> {
    let mut val = T::default();
    let mut len = std::mem::size_of::<T>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into a live value of that size (all the
    // `T`s used are plain-old-data C structs or integers) and updates `len`.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            SOL_XDP,
            opt,
            (&mut val as *mut T).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(with_op(what, io::Error::last_os_error()));
    }
    Ok(val)
}
