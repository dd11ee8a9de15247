//! Tap ports: a Linux tap device per port, opened with one queue (file descriptor) per worker
//! (`IFF_MULTI_QUEUE`), so the kernel spreads a pod's flows over the workers by hash.
//!
//! I/O is batched through the worker's io_uring. Each queue keeps one multishot readiness
//! poll armed; while the queue has frames it keeps up to `depth` reads in flight, each into
//! its own pool buffer, all `RWF_NOWAIT`: a read that finds the queue empty completes at once
//! with EAGAIN, and reads resume when the poll fires again. A burst of transmits is a burst of
//! write requests submitted with the worker's single `io_uring_enter` for the iteration.
//! Buffers stay owned by the queue's slots while the kernel holds them and return to the pool
//! when their completion is reaped.
//!
//! Why not simply keep `depth` reads waiting: io_uring parks a read that finds nothing on the
//! file's wait queue, every arriving frame wakes all of them, one wins, the others re-park,
//! and after 128 fruitless wake-ups (`APOLL_MAX_RETRY`) a read is handed to an io-wq thread
//! (`iou-wrk-*`) that blocks in it. That was measured: four such threads during a TCP
//! transfer. Nothing waits in the kernel now but the one poll per queue, so no read is ever
//! punted (`tests/it/tcp.rs` counts the threads). Opening a queue probes that the kernel
//! honours `RWF_NOWAIT` on it ([`probe_nowait`]) and fails the port with a clear error if
//! not, rather than leaving a port whose every read fails.

use super::{rx_buffer, PortIo, PortQueue, Token};
use crate::batch::{Batch, Offload, Packet, PortId};
use crate::buffer::{PktBuf, HEADROOM, LARGE_BUF, LARGE_TAIL, MAX_FRAME, MAX_LARGE_FRAME};
use crate::counters::{DropReason, Event};
use io_uring::{opcode, types};
use std::collections::VecDeque;
use std::fs::OpenOptions;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::time::{Duration, Instant};

const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const TUNSETPERSIST: libc::c_ulong = 0x4004_54cb;
const IFF_TAP: libc::c_short = 0x0002;
const IFF_NO_PI: libc::c_short = 0x1000;
const IFF_MULTI_QUEUE: libc::c_short = 0x0100;
const IFF_VNET_HDR: libc::c_short = 0x4000;
const TUNSETOFFLOAD: libc::c_ulong = 0x4004_54d0;
const TUNSETVNETHDRSZ: libc::c_ulong = 0x4004_54d8;
const TUNSETVNETLE: libc::c_ulong = 0x4004_54dc;
const TUN_F_CSUM: libc::c_uint = 0x01;
const TUN_F_TSO4: libc::c_uint = 0x02;
const TUN_F_TSO6: libc::c_uint = 0x04;
const TUN_F_TSO_ECN: libc::c_uint = 0x08;
const TUN_F_USO4: libc::c_uint = 0x20;
const TUN_F_USO6: libc::c_uint = 0x40;
/// The legacy virtio-net header, in front of every frame of a queue with offloads.
pub const VNET_HDR_LEN: usize = podswitch_packet::virtio_net::LEGACY_HEADER_LEN;

/// `struct ifreq` as TUNSETIFF reads it: a name and the flags member of the union.
#[repr(C)]
struct IfReqFlags {
    name: [libc::c_char; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

/// Opens `queues` queues of the tap device `name`, creating it if needed. Closing every queue
/// removes the device unless it was made persistent.
///
/// With `offloads`, every queue is opened with `IFF_VNET_HDR` (a 10-byte legacy virtio-net
/// header in front of every frame, both directions) and the device is told what the pod may
/// hand us (`TUNSETOFFLOAD`: checksum, TSO4/6 with ECN, and USO4/6 where the kernel knows
/// them). Without, no header and `TUNSETOFFLOAD` 0: the pod sends whole, checksummed frames.
///
/// Re-attaching to an existing (persistent) device opened before with the other setting:
/// `IFF_VNET_HDR` is one of the flags `TUNSETIFF` rewrites on the device for every queue
/// (`TUN_FEATURES` in drivers/net/tun.c), and `TUNSETOFFLOAD` is re-issued here either way,
/// so the device is *reconfigured* to what this call asks, never refused (seen on 6.18: a
/// persistent tap created with offloads and re-attached without shows `tun_flags` 0x1902,
/// and 0x5902 again when re-attached with); all its queues are ours, so none is left reading
/// with the old header layout.
pub fn open(name: &str, queues: usize, offloads: bool) -> io::Result<Vec<OwnedFd>> {
    if let Some(problem) = podswitch_proto::ifname_problem(name) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("tap name: {problem}"),
        ));
    }
    let mut flags = IFF_TAP | IFF_NO_PI | IFF_MULTI_QUEUE;
    if offloads {
        flags |= IFF_VNET_HDR;
    }
    let mut req = IfReqFlags {
        name: [0; libc::IFNAMSIZ],
        flags,
        _pad: [0; 22],
    };
    for (d, s) in req.name.iter_mut().zip(name.bytes()) {
        *d = s as libc::c_char;
    }
    (0..queues.max(1))
        .map(|_| {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .custom_flags(libc::O_CLOEXEC)
                .open("/dev/net/tun")
                .map_err(|e| io::Error::new(e.kind(), format!("opening /dev/net/tun: {e}")))?;
            // SAFETY: TUNSETIFF reads a `struct ifreq`; `req` is a properly sized and aligned
            // ifreq prefix followed by padding up to sizeof(struct ifreq), alive for the call.
            let rc = unsafe { libc::ioctl(file.as_raw_fd(), TUNSETIFF, &mut req) };
            if rc < 0 {
                let e = io::Error::last_os_error();
                return Err(io::Error::new(e.kind(), format!("TUNSETIFF {name}: {e}")));
            }
            let fd = OwnedFd::from(file);
            set_offloads(&fd, offloads)
                .map_err(|e| io::Error::new(e.kind(), format!("{name}: {e}")))?;
            probe_nowait(&fd)?;
            Ok(fd)
        })
        .collect()
}

/// Sets the header size (10, the legacy layout), its byte order on a big-endian host, and
/// `TUNSETOFFLOAD`: everything with `offloads`, nothing without. USO (6.2+) is tried first
/// and left out if the kernel refuses it.
fn set_offloads(fd: &OwnedFd, offloads: bool) -> io::Result<()> {
    let ioctl_int = |req: libc::c_ulong, val: libc::c_int, what: &str| -> io::Result<()> {
        let mut v = val;
        // SAFETY: these tun ioctls read one `int` through the pointer, alive for the call.
        let rc = unsafe { libc::ioctl(fd.as_raw_fd(), req, &mut v) };
        if rc < 0 {
            let e = io::Error::last_os_error();
            return Err(io::Error::new(e.kind(), format!("{what}: {e}")));
        }
        Ok(())
    };
    if offloads {
        ioctl_int(
            TUNSETVNETHDRSZ,
            VNET_HDR_LEN as libc::c_int,
            "TUNSETVNETHDRSZ",
        )?;
        if cfg!(target_endian = "big") {
            // The legacy header is little-endian only when asked (virtio 1.0 layout).
            ioctl_int(TUNSETVNETLE, 1, "TUNSETVNETLE")?;
        }
    }
    let base = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_TSO_ECN;
    if !offloads {
        return set_offload_mask(fd, 0);
    }
    match set_offload_mask(fd, base | TUN_F_USO4 | TUN_F_USO6) {
        Ok(()) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => set_offload_mask(fd, base),
        Err(e) => Err(e),
    }
}

fn set_offload_mask(fd: &OwnedFd, mask: libc::c_uint) -> io::Result<()> {
    // SAFETY: TUNSETOFFLOAD takes its argument by value; the fd is a valid tun fd.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETOFFLOAD, libc::c_ulong::from(mask)) };
    if rc < 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(
            e.kind(),
            format!("TUNSETOFFLOAD {mask:#x}: {e}"),
        ));
    }
    Ok(())
}

/// Checks, on a queue just opened, that the kernel honours `RWF_NOWAIT` reads on it: every
/// read a queue arms carries the flag (see the module's first lines), and a kernel that refused
/// it would fail each one, leaving the port dead behind its read back-off. A non-blocking read
/// of an empty queue must say EAGAIN; one that finds a frame (a re-attached, busy device) also
/// proves the flag works, at the cost of that one frame.
pub fn probe_nowait(fd: &OwnedFd) -> io::Result<()> {
    let mut buf = [0u8; 64];
    let iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: one iovec over a live local buffer of `iov_len` bytes, for the duration of the
    // call; the fd is a valid open descriptor.
    let rc = unsafe { libc::preadv2(fd.as_raw_fd(), &iov, 1, -1, libc::RWF_NOWAIT) };
    if rc >= 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EAGAIN) => Ok(()),
        Some(libc::EOPNOTSUPP) => Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "this kernel refuses non-blocking reads (RWF_NOWAIT) on tap queues, which \
             podswitchd's receive path needs; run podswitchd on a newer kernel"
                .to_string(),
        )),
        _ => Err(io::Error::new(
            e.kind(),
            format!("a non-blocking read (RWF_NOWAIT) of the new queue failed: {e}"),
        )),
    }
}

/// `TUNSETSTEERINGEBPF`: `_IOR('T', 224, int)`.
const TUNSETSTEERINGEBPF: libc::c_ulong = 0x8004_54e0;

/// The queue-steering program: `return bpf_get_smp_processor_id();` — the tap then puts a
/// frame the pod sends into queue `cpu % queues`, so the worker pinned to the sender's CPU
/// reads it (see [`steer_by_cpu`]). Two instructions, as raw `struct bpf_insn`s.
fn cpu_steering_program() -> io::Result<libc::c_int> {
    static PROG: std::sync::OnceLock<Result<libc::c_int, i32>> = std::sync::OnceLock::new();
    let loaded = PROG.get_or_init(|| {
        const BPF_PROG_LOAD: libc::c_long = 5;
        const BPF_PROG_TYPE_SOCKET_FILTER: u32 = 1;
        const BPF_FUNC_GET_SMP_PROCESSOR_ID: u64 = 8;
        // code | regs | off | imm, little-endian: BPF_JMP|BPF_CALL (0x85), then BPF_EXIT (0x95).
        let insns: [u64; 2] = [0x85 | (BPF_FUNC_GET_SMP_PROCESSOR_ID << 32), 0x95];
        let license = b"GPL\0";
        // `union bpf_attr` for BPF_PROG_LOAD: prog_type, insn_cnt, insns, license; the rest 0.
        let mut attr = [0u64; 16];
        attr[0] = u64::from(BPF_PROG_TYPE_SOCKET_FILTER) | (2u64 << 32);
        attr[1] = insns.as_ptr() as u64;
        attr[2] = license.as_ptr() as u64;
        // SAFETY: bpf(2) reads `size_of_val(&attr)` bytes of a zeroed attr whose pointers
        // (instructions, license) point at live locals for the duration of the call.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_PROG_LOAD,
                attr.as_mut_ptr(),
                std::mem::size_of_val(&attr),
            )
        };
        if fd < 0 {
            Err(io::Error::last_os_error()
                .raw_os_error()
                .unwrap_or(libc::EINVAL))
        } else {
            // The program lives as long as the process: every tap of it may use it.
            Ok(fd as libc::c_int)
        }
    });
    loaded.map_err(io::Error::from_raw_os_error)
}

/// Makes the tap behind `fd` (any queue: the setting is the device's) put each frame its
/// kernel side sends into the queue of the CPU that sends it, instead of the queue its flow
/// hash picks. With one worker per CPU, pinned (`worker_cpus = [0, 1, ...]`), a pod's frames
/// are then read, switched and delivered on the CPU the pod runs on: no wake-up crosses CPUs
/// (on a VM each such wake-up costs tens of µs; BENCHMARKS.md, "Where the latency goes").
pub fn steer_by_cpu(fd: &OwnedFd) -> io::Result<()> {
    let prog = cpu_steering_program().map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("loading the queue-steering BPF program: {e}"),
        )
    })?;
    // SAFETY: TUNSETSTEERINGEBPF reads an int (the program's fd) through the pointer, which
    // points at a live local; the tap fd is valid.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETSTEERINGEBPF, &prog) };
    if rc < 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(e.kind(), format!("TUNSETSTEERINGEBPF: {e}")));
    }
    Ok(())
}

/// Marks the device behind `fd` persistent (it survives the daemon) or not.
pub fn set_persist(fd: &OwnedFd, persist: bool) -> io::Result<()> {
    // SAFETY: TUNSETPERSIST takes an integer argument by value; the fd is a valid tun fd.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETPERSIST, libc::c_ulong::from(persist)) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The largest frame a tap can deliver (64 KiB MTU + Ethernet header), and so the most a
/// read can spill past its buffer.
const OVERFLOW_LEN: usize = 64 * 1024;

/// Where the kernel writes the part of a frame that does not fit its buffer: one leaked area
/// shared by every read of the process. A tap read returns only what it copied, so without
/// this a 9000-byte frame would read as a full 3968-byte buffer, indistinguishable from a
/// 3968-byte frame. With it, the read returns the real length, and a result past the buffer
/// means the frame was cut (dropped as `rx_truncated`). Nothing ever reads this area, so
/// concurrent writes by the kernel into it are harmless.
fn overflow_area() -> (*mut u8, usize) {
    static AREA: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    let addr = *AREA.get_or_init(|| {
        Box::leak(vec![0u8; OVERFLOW_LEN].into_boxed_slice()).as_mut_ptr() as usize
    });
    (addr as *mut u8, OVERFLOW_LEN)
}

fn empty_iovec() -> libc::iovec {
    libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    }
}

/// The iovec pairs of a queue's reads.
#[derive(Debug)]
struct RxIoVecs(Vec<[libc::iovec; 2]>);

// SAFETY: the iovecs only point at the queue's own buffers and the process-wide overflow
// area; they are read by the kernel, never dereferenced by us, so moving the queue to
// another thread (its worker) is sound.
unsafe impl Send for RxIoVecs {}

/// One worker's queue of a tap port.
#[derive(Debug)]
pub struct TapQueue {
    port: PortId,
    fd: OwnedFd,
    /// Buffers lent to armed reads, by slot.
    rx_slots: Vec<Option<PktBuf>>,
    /// Slots with no read armed.
    rx_free: Vec<u32>,
    /// Completed reads not yet handed to a batch, with their offload state.
    rx_ready: VecDeque<(PktBuf, Offload)>,
    /// Per slot, the two-part destination of its read: the buffer, then the shared overflow
    /// area (so a read returns the frame's real length; see [`overflow_area`]), or, on a
    /// queue with vnet headers, the slot's large buffer from [`LARGE_TAIL`] on.
    rx_iov: RxIoVecs,
    /// Per slot, on a queue with vnet headers: the large buffer that takes the tail of a
    /// super-frame, lent for the one read in flight (returned to the pool at its completion).
    rx_large: Vec<Option<PktBuf>>,
    /// The queue was opened with `IFF_VNET_HDR`: every frame, both ways, has a 10-byte
    /// virtio-net header in front.
    vnet: bool,
    /// Buffers lent to writes in flight, by slot.
    tx_slots: Vec<Option<PktBuf>>,
    tx_free: Vec<u32>,
    /// Requests the kernel holds (reads + writes).
    in_flight: usize,
    /// Stop arming reads and refuse writes: the port is closing.
    stopped: bool,
    cancel_sent: bool,
    /// The kernel said the queue has frames (its poll fired) and no read since found it
    /// empty: reads are armed only then, so none ever waits in the kernel (see below).
    rx_readable: bool,
    /// The multishot readiness poll is armed.
    poll_armed: bool,
    /// How many reads to keep armed while the queue is readable (1..=depth): at an EAGAIN,
    /// the frames the run of reads found, or half the window if more (so a flood's brief
    /// lull does not collapse it: 20% more 64-byte frames forwarded than without the half);
    /// doubled while reads keep finding frames.
    /// Arming all `depth` reads for every frame of a request/response exchange made 31 of
    /// 32 reads fail with EAGAIN, 33 requests per hop (BENCHMARKS.md, issue 13).
    rx_window: usize,
    /// Frames read since the last EAGAIN.
    rx_run: usize,
    /// After a failed read: no reads are armed before this instant.
    rx_retry_at: Option<Instant>,
    /// The wait before the next retry if the next read fails too (doubles, up to a cap).
    rx_backoff: Duration,
}

/// First wait after a failed read.
const RX_BACKOFF_MIN: Duration = Duration::from_millis(1);
/// Longest wait between retries of a failing queue.
const RX_BACKOFF_MAX: Duration = Duration::from_secs(1);

impl TapQueue {
    /// A queue over `fd` keeping `rx_depth` reads armed and up to `tx_depth` writes in flight.
    pub fn new(port: PortId, fd: OwnedFd, rx_depth: usize, tx_depth: usize) -> Self {
        Self {
            port,
            fd,
            rx_slots: (0..rx_depth).map(|_| None).collect(),
            rx_free: (0..rx_depth as u32).rev().collect(),
            rx_ready: VecDeque::with_capacity(rx_depth),
            rx_iov: RxIoVecs(
                (0..rx_depth)
                    .map(|_| [empty_iovec(), empty_iovec()])
                    .collect(),
            ),
            rx_large: (0..rx_depth).map(|_| None).collect(),
            vnet: false,
            tx_slots: (0..tx_depth).map(|_| None).collect(),
            tx_free: (0..tx_depth as u32).rev().collect(),
            in_flight: 0,
            stopped: false,
            cancel_sent: false,
            rx_readable: false,
            poll_armed: false,
            rx_window: rx_depth.max(1),
            rx_run: 0,
            rx_retry_at: None,
            rx_backoff: RX_BACKOFF_MIN,
        }
    }

    /// The queue's fd was opened with `IFF_VNET_HDR` ([`open`] with offloads): reads parse,
    /// and writes carry, the virtio-net header, and super-frames are read into large buffers.
    pub fn with_vnet_hdr(mut self, vnet: bool) -> Self {
        self.vnet = vnet;
        self
    }

    /// Whether receives are backing off after a failed read.
    pub fn rx_backing_off(&self) -> bool {
        self.rx_retry_at.is_some()
    }

    fn arm_reads(&mut self, io: &mut PortIo<'_>) {
        if self.stopped {
            return;
        }
        if let Some(at) = self.rx_retry_at {
            // Only a failing queue reads the clock; a healthy one never gets here.
            if Instant::now() < at {
                return;
            }
            self.rx_retry_at = None;
        }
        if !self.poll_armed {
            if io
                .ring
                .arm_readiness_poll(self.fd.as_raw_fd(), self.port)
                .is_err()
            {
                return;
            }
            self.poll_armed = true;
            self.in_flight += 1;
        }
        if !self.rx_readable {
            return;
        }
        // A queue takes at most half the free large buffers per call, so that the queues
        // polled after it in the same iteration still find some (ARCHITECTURE.md, "Offloads").
        let mut large_share = io.pool.available_large().div_ceil(2);
        let armed = self.rx_slots.len() - self.rx_free.len();
        for _ in armed..self.rx_window {
            let Some(&slot) = self.rx_free.last() else {
                return;
            };
            let s = slot as usize;
            if self.vnet && self.rx_large[s].is_none() {
                // No large buffer for this read: arm no more (the frames wait in the tap
                // queue) rather than a read that would cut a super-frame.
                let large = if large_share > 0 {
                    io.pool.get_large()
                } else {
                    None
                };
                match large {
                    Some(large) => {
                        large_share -= 1;
                        self.rx_large[s] = Some(large);
                    }
                    None => {
                        if io.pool.available_large() == 0 {
                            io.ctr.event(Event::LargePoolEmpty);
                        }
                        return;
                    }
                }
            }
            let Some(mut buf) = rx_buffer(io) else {
                // No read on this slot: its large buffer goes back, or a port starved of
                // small buffers would sit on a large one it cannot use.
                if let Some(large) = self.rx_large[s].take() {
                    io.pool.put(large);
                }
                return;
            };
            let iov = &mut self.rx_iov.0[s];
            match self.rx_large[s].as_mut() {
                Some(large) if self.vnet => {
                    // [header + the first MAX_FRAME bytes][the rest, in the large buffer at
                    // the offset where `take_head_of` expects it].
                    buf.rx_area();
                    let ptr = buf.raw_ptr(HEADROOM - VNET_HDR_LEN);
                    *iov = [
                        libc::iovec {
                            iov_base: ptr.cast(),
                            iov_len: VNET_HDR_LEN + MAX_FRAME,
                        },
                        libc::iovec {
                            iov_base: large.raw_ptr(LARGE_TAIL).cast(),
                            iov_len: LARGE_BUF - LARGE_TAIL,
                        },
                    ];
                }
                _ => {
                    let (ptr, cap) = buf.rx_ptr();
                    let (over_ptr, over_len) = overflow_area();
                    *iov = [
                        libc::iovec {
                            iov_base: ptr.cast(),
                            iov_len: cap,
                        },
                        libc::iovec {
                            iov_base: over_ptr.cast(),
                            iov_len: over_len,
                        },
                    ];
                }
            }
            // RWF_NOWAIT: a read that finds the queue empty fails at once with EAGAIN instead
            // of waiting in the kernel (see the module's first lines on io-wq).
            let entry = opcode::Readv::new(types::Fd(self.fd.as_raw_fd()), iov.as_ptr(), 2)
                .rw_flags(libc::RWF_NOWAIT)
                .build()
                .user_data(
                    Token::Rx {
                        port: self.port,
                        slot,
                    }
                    .encode(),
                );
            // SAFETY: the buffer is boxed storage that moves into `rx_slots[slot]` right after
            // and stays there, untouched, until this request's completion is reaped; a queue
            // dropped with requests in flight leaks its buffers instead of freeing them. The
            // iovec pair lives in `rx_iov`, which never reallocates and is leaked likewise; the
            // overflow area is leaked memory that nothing reads.
            if unsafe { io.ring.push(&entry) }.is_err() {
                io.pool.put(buf);
                // Not submitted: the kernel never saw the iovecs, so the large buffer is free.
                if let Some(large) = self.rx_large[s].take() {
                    io.pool.put(large);
                }
                return;
            }
            self.rx_slots[slot as usize] = Some(buf);
            self.rx_free.pop();
            self.in_flight += 1;
        }
    }

    /// A read of a queue with vnet headers returned `n` bytes: header, then the frame, whose
    /// head is in `small` and, past [`MAX_FRAME`], its tail in the slot's large buffer.
    fn rx_vnet(&mut self, io: &mut PortIo<'_>, slot: usize, mut small: PktBuf, n: usize) {
        let len = n.saturating_sub(VNET_HDR_LEN);
        let lost = |io: &mut PortIo<'_>, buf: PktBuf, reason: DropReason| {
            let stats = io.ctr.port(self.port as usize);
            stats.rx_packets += 1;
            stats.rx_bytes += len as u64;
            io.ctr.drop(reason);
            io.pool.put(buf);
        };
        if n <= VNET_HDR_LEN {
            return lost(io, small, DropReason::BadVnetHeader);
        }
        let mut buf = if len <= MAX_FRAME {
            small.set_len(len);
            small
        } else {
            match self.rx_large[slot].take() {
                Some(mut large) if len <= MAX_LARGE_FRAME => {
                    large.take_head_of(&small, VNET_HDR_LEN, len);
                    io.pool.put(small);
                    large
                }
                // Cannot happen with a large buffer armed (a tap frame is at most 64 KiB +
                // 14 bytes, the large buffer's tail holds more).
                other => {
                    self.rx_large[slot] = other;
                    return lost(io, small, DropReason::RxTruncated);
                }
            }
        };
        match parse_vnet(&mut buf) {
            Some(offload) => {
                if offload.is_gso() {
                    io.ctr.event(Event::GsoFramesRx);
                }
                self.rx_ready.push_back((buf, offload));
            }
            None => lost(io, buf, DropReason::BadVnetHeader),
        }
    }

    /// A read returned a frame: one more for the run, and the read window doubles (up to the
    /// depth) once the run fills it.
    fn rx_frame_found(&mut self) {
        self.rx_run += 1;
        if self.rx_run >= self.rx_window {
            self.rx_window = (self.rx_window * 2).min(self.rx_slots.len());
        }
    }

    /// A read failed: count it, stop arming reads for a while (doubling the wait each time
    /// the retry fails too), then try again. A queue is never given up on: the device may
    /// come back (a pod's interface set up again), and a retry costs one failed read.
    fn rx_failed(&mut self, io: &mut PortIo<'_>) {
        io.ctr.port(self.port as usize).rx_errors += 1;
        io.ctr.event(Event::RxReadError);
        if self.rx_retry_at.is_none() {
            self.rx_retry_at = Some(Instant::now() + self.rx_backoff);
            self.rx_backoff = (self.rx_backoff * 2).min(RX_BACKOFF_MAX);
        }
    }
}

impl PortQueue for TapQueue {
    fn port(&self) -> PortId {
        self.port
    }

    fn rx_burst(&mut self, io: &mut PortIo<'_>, batch: &mut Batch) {
        while batch.room() > 0 {
            let Some((buf, offload)) = self.rx_ready.pop_front() else {
                break;
            };
            let _ = batch.push_offloaded(buf, offload);
        }
        self.arm_reads(io);
    }

    fn tx_burst(&mut self, io: &mut PortIo<'_>, pkts: &mut Vec<Packet>) {
        for p in pkts.drain(..) {
            let slot = if self.stopped {
                None
            } else {
                self.tx_free.pop()
            };
            let Some(slot) = slot else {
                io.ctr.tx_lost(self.port as usize, DropReason::TxQueueFull);
                io.pool.put(p.buf);
                continue;
            };
            let mut buf = p.buf;
            let (ptr, len) = if self.vnet {
                // Header and frame in one write: the header goes in the headroom right in
                // front (every buffer has 128 bytes of it).
                let hdr_len = tx_hdr_len(&p.meta.offload);
                match buf.front_mut(VNET_HDR_LEN) {
                    Some(front) => {
                        let mut hdr = [0u8; VNET_HDR_LEN];
                        p.meta.offload.emit(&mut hdr, hdr_len);
                        front.copy_from_slice(&hdr);
                    }
                    None => {
                        self.tx_free.push(slot);
                        io.ctr.tx_lost(self.port as usize, DropReason::TxWriteError);
                        io.pool.put(buf);
                        continue;
                    }
                }
                (
                    buf.frame_ptr().wrapping_sub(VNET_HDR_LEN),
                    buf.len() + VNET_HDR_LEN,
                )
            } else {
                (buf.frame_ptr(), buf.len())
            };
            let fd = types::Fd(self.fd.as_raw_fd());
            let fixed = io
                .ring
                .has_fixed_buffers()
                .then(|| io.pool.fixed_index(&buf))
                .flatten();
            // A fixed write uses the pages registered once with the ring instead of pinning
            // the buffer's pages for every request (16 of them for a 64 KB super-frame).
            let entry = match fixed {
                Some(index) => opcode::WriteFixed::new(fd, ptr, len as u32, index).build(),
                None => opcode::Write::new(fd, ptr, len as u32).build(),
            }
            .user_data(
                Token::Tx {
                    port: self.port,
                    slot,
                }
                .encode(),
            );
            // SAFETY: as for reads: the buffer moves into `tx_slots[slot]` and stays there,
            // unread and unwritten by us, until the write's completion is reaped.
            match unsafe { io.ring.push(&entry) } {
                Ok(()) => {
                    self.tx_slots[slot as usize] = Some(buf);
                    self.in_flight += 1;
                }
                Err(_) => {
                    self.tx_free.push(slot);
                    io.ctr.tx_lost(self.port as usize, DropReason::TxQueueFull);
                    io.pool.put(buf);
                }
            }
        }
    }

    fn tx_pending(&self) -> bool {
        self.tx_free.len() < self.tx_slots.len()
    }

    fn complete(&mut self, io: &mut PortIo<'_>, token: Token, result: i32) {
        match token {
            Token::Rx { slot, .. } => {
                let Some(mut buf) = self.rx_slots.get_mut(slot as usize).and_then(Option::take)
                else {
                    return;
                };
                self.in_flight -= 1;
                self.rx_free.push(slot);
                if self.stopped {
                    // Closing: completions are cancellations or frames nobody will route.
                    io.pool.put(buf);
                } else if self.vnet && result > 0 {
                    self.rx_vnet(io, slot as usize, buf, result as usize);
                    self.rx_backoff = RX_BACKOFF_MIN;
                    // The read found a frame: it grows the window like a plain queue's (a
                    // vnet queue that never counted its run shrank to one read per loop at
                    // its first few EAGAINs and stayed there).
                    self.rx_frame_found();
                } else if result > 0 && result as usize > MAX_FRAME {
                    // A tap read returns the frame's real length even when the buffer held
                    // only its head: count what arrived, drop the cut frame.
                    let stats = io.ctr.port(self.port as usize);
                    stats.rx_packets += 1;
                    stats.rx_bytes += result as u64;
                    io.ctr.drop(DropReason::RxTruncated);
                    io.pool.put(buf);
                    self.rx_backoff = RX_BACKOFF_MIN;
                } else if result > 0 {
                    buf.set_len(result as usize);
                    self.rx_ready.push_back((buf, Offload::NONE));
                    self.rx_backoff = RX_BACKOFF_MIN;
                    self.rx_frame_found();
                } else {
                    io.pool.put(buf);
                    match -result {
                        // The queue is empty: read again once the poll says frames arrived.
                        // The first EAGAIN of a run sizes the next run's reads: what it found,
                        // shrinking by half at most.
                        libc::EAGAIN => {
                            if self.rx_readable {
                                self.rx_window = self
                                    .rx_run
                                    .max(self.rx_window / 2)
                                    .clamp(1, self.rx_slots.len());
                                self.rx_run = 0;
                            }
                            self.rx_readable = false;
                        }
                        libc::EINTR => {}
                        // Anything else (device detached or down, a zero-length read): count
                        // it and retry after a back-off.
                        _ => self.rx_failed(io),
                    }
                }
                // The slot's large buffer (unused unless the frame was a super-frame) goes
                // back at once: a slot left without a read (an empty queue) must not sit on
                // one, or idle ports would hold every large buffer and busy ones arm nothing.
                if let Some(large) = self.rx_large[slot as usize].take() {
                    io.pool.put(large);
                }
            }
            Token::Poll { ended, .. } => {
                if ended {
                    self.poll_armed = false;
                    self.in_flight -= 1;
                }
                let ready = (libc::POLLIN | libc::POLLERR | libc::POLLHUP) as i32;
                if result > 0 && result & ready != 0 {
                    // An error or hang-up is readable too: the read then says what it is.
                    self.rx_readable = true;
                } else if result < 0 && !self.stopped {
                    self.rx_failed(io);
                }
            }
            Token::Tx { slot, .. } => {
                let Some(buf) = self.tx_slots.get_mut(slot as usize).and_then(Option::take) else {
                    return;
                };
                self.in_flight -= 1;
                self.tx_free.push(slot);
                let port = self.port as usize;
                let hdr = if self.vnet { VNET_HDR_LEN } else { 0 };
                match usize::try_from(result) {
                    Ok(n) if n == buf.len() + hdr => io.ctr.tx_sent(port, buf.len()),
                    Ok(_) => io.ctr.tx_lost(port, DropReason::TxShortWrite),
                    Err(_) => io.ctr.tx_lost(port, DropReason::TxWriteError),
                }
                io.pool.put(buf);
            }
            Token::Cancel | Token::Wake => {}
        }
    }

    fn release_device(&mut self) {
        // Harmless on a device that was never persistent. A failure leaves a persistent tap
        // behind, which the next start re-attaches to or `ip link del` removes.
        let _ = set_persist(&self.fd, false);
    }

    fn close(&mut self, io: &mut PortIo<'_>) -> bool {
        self.stopped = true;
        for (buf, _) in self.rx_ready.drain(..) {
            io.pool.put(buf);
        }
        for (slot, large) in self.rx_large.iter_mut().enumerate() {
            // Only the slots without a read in flight: the kernel may still write the others.
            if self.rx_slots[slot].is_none() {
                if let Some(b) = large.take() {
                    io.pool.put(b);
                }
            }
        }
        if self.in_flight > 0 && !self.cancel_sent {
            let entry = opcode::AsyncCancel2::new(
                types::CancelBuilder::fd(types::Fd(self.fd.as_raw_fd())).all(),
            )
            .build()
            .user_data(Token::Cancel.encode());
            // SAFETY: a cancel request references no buffer.
            self.cancel_sent = unsafe { io.ring.push(&entry) }.is_ok();
        }
        self.in_flight == 0
    }
}

impl Drop for TapQueue {
    fn drop(&mut self) {
        if self.in_flight > 0 {
            // The kernel may still write into these buffers: they are never returned to the
            // pool, so the pool never reuses them and never unmaps its region (`Pool::drop`
            // keeps a region with a buffer out mapped). Only happens when a port is torn down
            // without its completions.
            self.rx_slots.clear();
            self.rx_large.clear();
            self.tx_slots.clear();
            std::mem::forget(std::mem::take(&mut self.rx_iov.0));
        }
    }
}

/// The `hdr_len` a transmitted header carries: the end of the checksum field of a partial
/// checksum (what the kernel fixes a shorter one up to itself), else 0.
fn tx_hdr_len(o: &Offload) -> u16 {
    if o.needs_csum() {
        o.csum_start.saturating_add(o.csum_offset).saturating_add(2)
    } else {
        0
    }
}

/// Reads the virtio-net header in front of the frame of `buf` into its native form; `None`
/// if it is not a valid header for this frame.
fn parse_vnet(buf: &mut PktBuf) -> Option<Offload> {
    use podswitch_packet::virtio_net::{HeaderFormat, VirtioNetPacket, VirtioNetRepr};
    let with_header = buf.push_front(VNET_HDR_LEN)?;
    // The common case: an all-zero header, nothing to parse.
    let parsed = if with_header[..VNET_HDR_LEN].iter().all(|&b| b == 0) {
        Some(Offload::NONE)
    } else {
        let pkt = VirtioNetPacket::new_unchecked(&*with_header, HeaderFormat::Legacy);
        VirtioNetRepr::parse(&pkt)
            .ok()
            .map(|r| Offload::from_repr(&r))
    };
    buf.pull_front(VNET_HDR_LEN)?;
    parsed
}

#[cfg(test)]
mod tests {
    //! The queue's bookkeeping, driven by hand-made completions: the reads and writes are
    //! queued on a ring that is never submitted, over a socket that stands in for a tap.
    use super::*;
    use crate::buffer::Pool;
    use crate::counters::Counters;
    use crate::ports::Uring;
    use std::os::unix::net::UnixDatagram;

    const PORT: PortId = 1;

    struct Rig {
        queue: TapQueue,
        pool: Pool,
        ring: Uring,
        ctr: Counters,
        _peer: UnixDatagram,
    }

    impl Rig {
        /// The read slots that have a read armed.
        fn armed_slots(&self) -> Vec<u32> {
            (0..self.queue.rx_slots.len() as u32)
                .filter(|&s| self.queue.rx_slots[s as usize].is_some())
                .collect()
        }

        /// A queue whose poll is armed and has fired: the next burst arms reads.
        fn new(rx_depth: usize, tx_depth: usize) -> Rig {
            let (a, b) = UnixDatagram::pair().unwrap();
            let mut rig = Rig {
                queue: TapQueue::new(PORT, OwnedFd::from(a), rx_depth, tx_depth),
                pool: Pool::new(16),
                ring: Uring::new(64, 128).unwrap(),
                ctr: Counters::new(4),
                _peer: b,
            };
            assert!(rig.rx().is_empty());
            assert_eq!(rig.queue.in_flight, 1, "only the poll is armed at first");
            rig.readable();
            rig
        }

        /// A queue with vnet headers over a pool with `large` large buffers, readable.
        fn vnet(rx_depth: usize, large: usize) -> Rig {
            let (a, b) = UnixDatagram::pair().unwrap();
            let mut rig = Rig {
                queue: TapQueue::new(PORT, OwnedFd::from(a), rx_depth, 4).with_vnet_hdr(true),
                pool: Pool::with_large(16, large),
                ring: Uring::new(64, 128).unwrap(),
                ctr: Counters::new(4),
                _peer: b,
            };
            assert!(rig.rx().is_empty());
            rig.readable();
            rig
        }

        /// Writes what the kernel would for a read of slot `slot`: `hdr`, then `frame` (its
        /// head in the small buffer, the rest in the large one's tail), and completes it.
        fn kernel_read(&mut self, slot: u32, hdr: [u8; VNET_HDR_LEN], frame: &[u8]) {
            let s = slot as usize;
            let small = self.queue.rx_slots[s].as_mut().unwrap();
            small.rx_area();
            small.front_mut(VNET_HDR_LEN).unwrap().copy_from_slice(&hdr);
            let head = frame.len().min(MAX_FRAME);
            small.rx_area()[..head].copy_from_slice(&frame[..head]);
            if frame.len() > head {
                let large = self.queue.rx_large[s].as_mut().unwrap();
                large.rx_area()[LARGE_TAIL - HEADROOM..][..frame.len() - head]
                    .copy_from_slice(&frame[head..]);
            }
            self.complete(rx(slot), (VNET_HDR_LEN + frame.len()) as i32);
        }

        fn readable(&mut self) {
            self.complete(POLL, i32::from(libc::POLLIN));
        }

        fn io(&mut self) -> (&mut TapQueue, PortIo<'_>) {
            (
                &mut self.queue,
                PortIo {
                    pool: &mut self.pool,
                    ring: &mut self.ring,
                    ctr: &mut self.ctr,
                },
            )
        }

        fn rx(&mut self) -> Batch {
            let mut batch = Batch::with_limit(8);
            let (q, mut io) = self.io();
            q.rx_burst(&mut io, &mut batch);
            batch
        }

        fn complete(&mut self, token: Token, result: i32) {
            let (q, mut io) = self.io();
            q.complete(&mut io, token, result);
        }

        fn tx(&mut self, lens: &[usize]) {
            let mut pkts: Vec<Packet> = Vec::new();
            let mut batch = Batch::with_limit(8);
            for &len in lens {
                let mut buf = self.pool.get().unwrap();
                buf.fill(&vec![0xab; len]);
                batch.push(buf).unwrap();
            }
            pkts.extend(batch.drain());
            let (q, mut io) = self.io();
            q.tx_burst(&mut io, &mut pkts);
        }

        fn port(&self) -> crate::counters::PortStats {
            self.ctr.ports[PORT as usize]
        }
    }

    const POLL: Token = Token::Poll {
        port: PORT,
        ended: false,
    };

    fn rx(slot: u32) -> Token {
        Token::Rx { port: PORT, slot }
    }

    fn tx(slot: u32) -> Token {
        Token::Tx { port: PORT, slot }
    }

    fn hdr(o: Offload) -> [u8; VNET_HDR_LEN] {
        let mut h = [0u8; VNET_HDR_LEN];
        o.emit(&mut h, 0);
        h
    }

    #[test]
    fn a_vnet_read_parses_the_header_and_a_super_frame_lands_whole_in_a_large_buffer() {
        let mut rig = Rig::vnet(2, 4);
        rig.rx();
        assert_eq!(rig.queue.in_flight, 1 + 2);
        assert_eq!(
            rig.pool.available_large(),
            2,
            "one large buffer per armed read"
        );
        let (small, small_o) = crate::testkit::tso4_frame(100, 0);
        let (big, big_o) = crate::testkit::tso4_frame(30_000, 1448);
        rig.kernel_read(0, hdr(small_o), &small);
        rig.kernel_read(1, hdr(big_o), &big);
        let batch = rig.rx();
        let got: Vec<_> = batch
            .iter()
            .map(|p| (p.buf.frame().to_vec(), p.meta.offload))
            .collect();
        assert_eq!(got, vec![(small, small_o), (big, big_o)]);
        let classes: Vec<_> = batch.iter().map(|p| p.buf.class()).collect();
        assert_eq!(
            classes,
            vec![crate::buffer::Class::Small, crate::buffer::Class::Large]
        );
        assert_eq!(rig.ctr.events[Event::GsoFramesRx as usize], 1);
        let mut batch = batch;
        batch.recycle(&mut rig.pool);
    }

    #[test]
    fn a_bad_vnet_header_or_a_read_shorter_than_one_is_dropped_by_reason() {
        let mut rig = Rig::vnet(2, 4);
        rig.rx();
        let frame = crate::testkit::udp_frame(
            crate::testkit::POD_A_MAC,
            crate::testkit::GW_MAC,
            crate::testkit::POD_A_IP,
            crate::testkit::POD_B_IP,
            64,
            18,
        );
        let mut bad = [0u8; VNET_HDR_LEN];
        bad[0] = 0x80; // an unknown flag
        rig.kernel_read(0, bad, &frame);
        rig.complete(rx(1), 6);
        assert!(rig.rx().is_empty());
        assert_eq!(rig.ctr.drops[DropReason::BadVnetHeader as usize], 2);
        assert_eq!(rig.port().rx_packets, 2);
    }

    #[test]
    fn without_a_free_large_buffer_a_vnet_queue_arms_fewer_reads() {
        let mut rig = Rig::vnet(4, 1);
        rig.rx();
        assert_eq!(
            rig.queue.in_flight,
            1 + 1,
            "the poll and the one read with a large buffer"
        );
        assert!(rig.ctr.events[Event::LargePoolEmpty as usize] > 0);
    }

    #[test]
    fn a_vnet_queue_takes_at_most_half_the_free_large_buffers_per_burst() {
        let mut rig = Rig::vnet(8, 6);
        rig.rx();
        assert_eq!(
            rig.queue.in_flight,
            1 + 3,
            "the poll and reads for half of the six"
        );
        assert_eq!(
            rig.pool.available_large(),
            3,
            "left for the queues polled next"
        );
        assert_eq!(rig.ctr.events[Event::LargePoolEmpty as usize], 0);
    }

    #[test]
    fn vnet_writes_carry_the_header_in_front_and_count_the_frame_alone() {
        let mut rig = Rig::vnet(1, 2);
        rig.tx(&[100]);
        let sent = rig.queue.tx_slots[0].as_ref().unwrap();
        assert_eq!(
            sent.front(VNET_HDR_LEN).unwrap(),
            &[0u8; VNET_HDR_LEN],
            "a plain frame: zero header"
        );
        rig.complete(tx(0), (100 + VNET_HDR_LEN) as i32);
        assert_eq!((rig.port().tx_packets, rig.port().tx_bytes), (1, 100));
        rig.tx(&[100]);
        rig.complete(tx(0), 100);
        assert_eq!(rig.ctr.drops[DropReason::TxShortWrite as usize], 1);
    }

    #[test]
    fn the_nowait_probe_accepts_an_empty_queue_and_one_with_a_frame() {
        let (a, b) = UnixDatagram::pair().unwrap();
        let fd = OwnedFd::from(a);
        probe_nowait(&fd).expect("an empty queue says EAGAIN");
        b.send(&[1; 60]).unwrap();
        probe_nowait(&fd).expect("a queued frame proves the flag works too");
    }

    #[test]
    fn the_nowait_probe_refuses_a_file_without_nonblocking_reads_and_says_why() {
        // /dev/full does not support RWF_NOWAIT reads (EOPNOTSUPP): what a tun queue on a
        // kernel without it looks like.
        let fd = OwnedFd::from(std::fs::File::open("/dev/full").unwrap());
        let err = probe_nowait(&fd).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::Unsupported);
        let msg = err.to_string();
        assert!(
            msg.contains("RWF_NOWAIT") && msg.contains("newer kernel"),
            "{msg}"
        );
    }

    #[test]
    fn a_failed_read_is_counted_and_receives_resume_after_a_back_off() {
        let mut rig = Rig::new(4, 2);
        rig.rx();
        assert_eq!(rig.queue.in_flight, 1 + 4);
        rig.complete(rx(0), -libc::EBADFD);
        assert_eq!(rig.port().rx_errors, 1);
        assert_eq!(rig.ctr.events[Event::RxReadError as usize], 1);
        assert!(rig.queue.rx_backing_off());
        rig.rx();
        assert_eq!(
            rig.queue.in_flight,
            1 + 3,
            "no read re-armed during the back-off"
        );
        std::thread::sleep(RX_BACKOFF_MIN * 3);
        rig.rx();
        assert_eq!(rig.queue.in_flight, 1 + 4, "the failed read was re-armed");
        assert!(!rig.queue.rx_backing_off());
        // And the queue still delivers frames.
        rig.complete(rx(1), 60);
        assert_eq!(rig.rx().len(), 1);
    }

    #[test]
    fn repeated_read_failures_back_off_longer_and_a_frame_resets_it() {
        let mut rig = Rig::new(2, 1);
        rig.rx();
        rig.complete(rx(0), -libc::EIO);
        rig.complete(rx(1), -libc::EIO);
        assert_eq!(rig.port().rx_errors, 2);
        assert_eq!(rig.queue.rx_backoff, RX_BACKOFF_MIN * 2);
        std::thread::sleep(RX_BACKOFF_MIN * 3);
        rig.rx();
        rig.complete(rx(1), -libc::EIO);
        assert_eq!(rig.queue.rx_backoff, RX_BACKOFF_MIN * 4);
        rig.complete(rx(0), 60);
        assert_eq!(rig.queue.rx_backoff, RX_BACKOFF_MIN);
    }

    #[test]
    fn eagain_and_eintr_are_not_read_errors() {
        let mut rig = Rig::new(2, 1);
        rig.rx();
        rig.complete(rx(0), -libc::EINTR);
        rig.complete(rx(1), -libc::EAGAIN);
        assert_eq!(rig.port().rx_errors, 0);
        assert!(!rig.queue.rx_backing_off());
    }

    #[test]
    fn an_empty_queue_arms_no_read_until_its_poll_fires_again() {
        let mut rig = Rig::new(2, 1);
        rig.rx();
        assert_eq!(rig.queue.in_flight, 1 + 2);
        rig.complete(rx(0), -libc::EAGAIN);
        rig.complete(rx(1), -libc::EAGAIN);
        rig.rx();
        assert_eq!(
            rig.queue.in_flight, 1,
            "no read waits in the kernel on an empty queue"
        );
        rig.readable();
        rig.rx();
        assert_eq!(
            rig.queue.in_flight,
            1 + 1,
            "frames arrived: reads again, as many as the last run found (at least one)"
        );
    }

    #[test]
    fn a_vnet_queue_out_of_small_buffers_keeps_no_large_one() {
        let mut rig = Rig::vnet(4, 4);
        rig.rx();
        let armed = (0..4).filter(|&s| rig.queue.rx_slots[s].is_some()).count();
        for slot in 0..armed as u32 {
            rig.complete(rx(slot), -libc::EAGAIN);
        }
        let mut held = Vec::new();
        while let Some(b) = rig.pool.get() {
            held.push(b);
        }
        rig.readable();
        rig.rx();
        assert_eq!(rig.queue.in_flight, 1, "no small buffer: no read");
        assert_eq!(
            rig.pool.available_large(),
            4,
            "the large buffer taken for the read that could not be armed went back"
        );
        for b in held {
            rig.pool.put(b);
        }
    }

    #[test]
    fn a_vnet_queue_grows_its_read_window_while_reads_find_frames() {
        let mut rig = Rig::vnet(8, 16);
        let frame = crate::testkit::udp_frame(
            crate::testkit::POD_A_MAC,
            crate::testkit::GW_MAC,
            crate::testkit::POD_A_IP,
            crate::testkit::POD_B_IP,
            64,
            18,
        );
        rig.rx();
        assert_eq!(rig.queue.in_flight, 1 + 8);
        // One frame, then the queue is empty: the window halves to 4.
        rig.kernel_read(0, [0; VNET_HDR_LEN], &frame);
        for slot in 1..8 {
            rig.complete(rx(slot), -libc::EAGAIN);
        }
        let mut batch = rig.rx();
        batch.recycle(&mut rig.pool);
        rig.readable();
        rig.rx();
        assert_eq!(rig.queue.in_flight, 1 + 4);
        // Every read finds a frame: the window doubles back to the depth.
        for slot in rig.armed_slots() {
            rig.kernel_read(slot, [0; VNET_HDR_LEN], &frame);
        }
        let mut batch = rig.rx();
        assert_eq!(batch.len(), 4);
        batch.recycle(&mut rig.pool);
        assert_eq!(
            rig.queue.in_flight,
            1 + 8,
            "a run that filled the window doubles it, as on a queue without vnet headers"
        );
    }

    #[test]
    fn the_reads_armed_follow_the_frames_the_queue_had() {
        let mut rig = Rig::new(8, 1);
        rig.rx();
        assert_eq!(rig.queue.in_flight, 1 + 8, "the first run arms every read");
        // A request/response exchange: one frame, then the queue is empty.
        rig.complete(rx(0), 60);
        for slot in 1..8 {
            rig.complete(rx(slot), -libc::EAGAIN);
        }
        assert_eq!(rig.rx().len(), 1);
        assert_eq!(rig.queue.in_flight, 1, "empty: only the poll");
        rig.readable();
        rig.rx();
        assert_eq!(
            rig.queue.in_flight,
            1 + 4,
            "one frame last time: the window halves (a flood's brief lull does not collapse it)"
        );
        let armed = rig.armed_slots();
        for slot in armed {
            rig.complete(rx(slot), -libc::EAGAIN);
        }
        rig.readable();
        rig.rx();
        assert_eq!(rig.queue.in_flight, 1 + 2, "and halves again");
        let armed = rig.armed_slots();
        for slot in armed {
            rig.complete(rx(slot), -libc::EAGAIN);
        }
        rig.readable();
        rig.rx();
        assert_eq!(rig.queue.in_flight, 1 + 1, "down to one read");
        // A flood: every read finds a frame, and the window doubles up to the depth.
        let mut got = 0;
        for round in 0..3 {
            let armed = rig.armed_slots();
            for slot in armed {
                rig.complete(rx(slot), 60);
            }
            got += rig.rx().len();
            let want = [2, 4, 8][round];
            assert_eq!(rig.queue.in_flight, 1 + want, "round {round}");
        }
        assert_eq!(got, 1 + 2 + 4);
    }

    #[test]
    fn an_ended_multishot_poll_is_armed_again() {
        let mut rig = Rig::new(1, 1);
        rig.complete(
            Token::Poll {
                port: PORT,
                ended: true,
            },
            i32::from(libc::POLLIN),
        );
        assert!(!rig.queue.poll_armed);
        rig.rx();
        assert!(rig.queue.poll_armed);
        assert_eq!(rig.queue.in_flight, 1 + 1, "the poll and the read");
    }

    #[test]
    fn a_frame_longer_than_the_buffer_counts_its_real_length_and_is_dropped() {
        let mut rig = Rig::new(2, 1);
        rig.rx();
        rig.complete(rx(0), 9000);
        assert_eq!(rig.ctr.drops[DropReason::RxTruncated as usize], 1);
        assert_eq!((rig.port().rx_packets, rig.port().rx_bytes), (1, 9000));
        assert!(rig.rx().is_empty(), "a cut frame is not forwarded");
        rig.complete(rx(1), MAX_FRAME as i32);
        let batch = rig.rx();
        assert_eq!(
            batch.len(),
            1,
            "a frame that fills the buffer exactly is whole"
        );
        assert_eq!(rig.ctr.drops[DropReason::RxTruncated as usize], 1);
    }

    #[test]
    fn tx_counts_only_frames_the_kernel_took_whole_and_each_loss_by_reason() {
        let mut rig = Rig::new(1, 2);
        rig.tx(&[100, 200, 300]);
        assert_eq!(
            rig.port().tx_packets,
            0,
            "nothing is sent before its completion"
        );
        assert_eq!(rig.ctr.drops[DropReason::TxQueueFull as usize], 1);
        assert_eq!(rig.port().tx_errors, 1);
        rig.complete(tx(0), 100);
        rig.complete(tx(1), -libc::EIO);
        assert_eq!((rig.port().tx_packets, rig.port().tx_bytes), (1, 100));
        assert_eq!(rig.ctr.drops[DropReason::TxWriteError as usize], 1);
        rig.tx(&[400]);
        rig.complete(tx(1), 399);
        assert_eq!(rig.ctr.drops[DropReason::TxShortWrite as usize], 1);
        assert_eq!(rig.port().tx_packets, 1);
        assert_eq!(rig.port().tx_errors, 3);
        assert_eq!(rig.pool.available(), 16, "every buffer is back in the pool");
    }
}
