//! Tap ports: a Linux tap device per port, opened with one queue (file descriptor) per worker
//! (`IFF_MULTI_QUEUE`), so the kernel spreads a pod's flows over the workers by hash.
//!
//! I/O is batched through the worker's io_uring: each queue keeps `depth` reads armed, each
//! into its own pool buffer; a burst of transmits is a burst of write requests submitted with
//! the worker's single `io_uring_enter` for the iteration. Buffers stay owned by the queue's
//! slots while the kernel holds them and return to the pool when their completion is reaped.

use super::{rx_buffer, PortIo, PortQueue, Token};
use crate::batch::{Batch, Packet, PortId};
use crate::buffer::PktBuf;
use crate::counters::Counters;
use io_uring::{opcode, types};
use std::collections::VecDeque;
use std::fs::OpenOptions;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;

const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const TUNSETPERSIST: libc::c_ulong = 0x4004_54cb;
const IFF_TAP: libc::c_short = 0x0002;
const IFF_NO_PI: libc::c_short = 0x1000;
const IFF_MULTI_QUEUE: libc::c_short = 0x0100;

/// `struct ifreq` as TUNSETIFF reads it: a name and the flags member of the union.
#[repr(C)]
struct IfReqFlags {
    name: [libc::c_char; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

/// Opens `queues` queues of the tap device `name`, creating it if needed. Closing every queue
/// removes the device unless it was made persistent.
pub fn open(name: &str, queues: usize) -> io::Result<Vec<OwnedFd>> {
    if let Some(problem) = podswitch_proto::ifname_problem(name) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("tap name: {problem}"),
        ));
    }
    let mut req = IfReqFlags {
        name: [0; libc::IFNAMSIZ],
        flags: IFF_TAP | IFF_NO_PI | IFF_MULTI_QUEUE,
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
            Ok(OwnedFd::from(file))
        })
        .collect()
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

/// One worker's queue of a tap port.
#[derive(Debug)]
pub struct TapQueue {
    port: PortId,
    fd: OwnedFd,
    /// Buffers lent to armed reads, by slot.
    rx_slots: Vec<Option<PktBuf>>,
    /// Slots with no read armed.
    rx_free: Vec<u32>,
    /// Completed reads not yet handed to a batch.
    rx_ready: VecDeque<PktBuf>,
    /// Buffers lent to writes in flight, by slot.
    tx_slots: Vec<Option<PktBuf>>,
    tx_free: Vec<u32>,
    /// Requests the kernel holds (reads + writes).
    in_flight: usize,
    /// Stop arming reads: the device failed or the port is closing.
    stopped: bool,
    cancel_sent: bool,
}

impl TapQueue {
    /// A queue over `fd` keeping `rx_depth` reads armed and up to `tx_depth` writes in flight.
    pub fn new(port: PortId, fd: OwnedFd, rx_depth: usize, tx_depth: usize) -> Self {
        Self {
            port,
            fd,
            rx_slots: (0..rx_depth).map(|_| None).collect(),
            rx_free: (0..rx_depth as u32).rev().collect(),
            rx_ready: VecDeque::with_capacity(rx_depth),
            tx_slots: (0..tx_depth).map(|_| None).collect(),
            tx_free: (0..tx_depth as u32).rev().collect(),
            in_flight: 0,
            stopped: false,
            cancel_sent: false,
        }
    }

    fn arm_reads(&mut self, io: &mut PortIo<'_>) {
        if self.stopped {
            return;
        }
        while let Some(&slot) = self.rx_free.last() {
            let Some(mut buf) = rx_buffer(io) else { return };
            let (ptr, cap) = buf.rx_ptr();
            let entry = opcode::Read::new(types::Fd(self.fd.as_raw_fd()), ptr, cap as u32)
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
            // dropped with requests in flight leaks its buffers instead of freeing them.
            if unsafe { io.ring.push(&entry) }.is_err() {
                io.pool.put(buf);
                return;
            }
            self.rx_slots[slot as usize] = Some(buf);
            self.rx_free.pop();
            self.in_flight += 1;
        }
    }

    fn tx_failed(ctr: &mut Counters, port: PortId) {
        ctr.port(port as usize).tx_errors += 1;
    }
}

impl PortQueue for TapQueue {
    fn port(&self) -> PortId {
        self.port
    }

    fn rx_burst(&mut self, io: &mut PortIo<'_>, batch: &mut Batch) {
        while batch.room() > 0 {
            let Some(buf) = self.rx_ready.pop_front() else {
                break;
            };
            let _ = batch.push(buf);
        }
        self.arm_reads(io);
    }

    fn tx_burst(&mut self, io: &mut PortIo<'_>, pkts: &mut Vec<Packet>) {
        for p in pkts.drain(..) {
            let Some(slot) = self.tx_free.pop().filter(|_| !self.stopped) else {
                Self::tx_failed(io.ctr, self.port);
                io.pool.put(p.buf);
                continue;
            };
            let entry = opcode::Write::new(
                types::Fd(self.fd.as_raw_fd()),
                p.buf.frame_ptr(),
                p.buf.len() as u32,
            )
            .build()
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
                    self.tx_slots[slot as usize] = Some(p.buf);
                    self.in_flight += 1;
                }
                Err(_) => {
                    self.tx_free.push(slot);
                    Self::tx_failed(io.ctr, self.port);
                    io.pool.put(p.buf);
                }
            }
        }
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
                if result > 0 && !self.stopped {
                    buf.set_len(result as usize);
                    self.rx_ready.push_back(buf);
                } else {
                    io.pool.put(buf);
                    // EAGAIN/EINTR: re-armed on the next burst. Anything else (device gone,
                    // cancelled): stop reading from this queue.
                    if !matches!(-result, libc::EAGAIN | libc::EINTR) {
                        self.stopped = true;
                    }
                }
            }
            Token::Tx { slot, .. } => {
                let Some(buf) = self.tx_slots.get_mut(slot as usize).and_then(Option::take) else {
                    return;
                };
                self.in_flight -= 1;
                self.tx_free.push(slot);
                if result < 0 {
                    Self::tx_failed(io.ctr, self.port);
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
        for buf in self.rx_ready.drain(..) {
            io.pool.put(buf);
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
            // The kernel may still write into these buffers: leak them rather than free memory
            // it can reach. Only happens when a port is torn down without its completions.
            for b in self
                .rx_slots
                .drain(..)
                .chain(self.tx_slots.drain(..))
                .flatten()
            {
                std::mem::forget(b);
            }
        }
    }
}
