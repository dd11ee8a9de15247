//! The worker's io_uring: one ring per worker thread carries the reads and writes of every
//! tap queue that worker owns, plus a read on its wake-up eventfd.
//!
//! The ring is created with `DEFER_TASKRUN | SINGLE_ISSUER | TASKRUN_FLAG`: completions are
//! produced only when the worker enters the kernel, in a batch, on its own CPU (no IPIs, no
//! io-wq threads for tap I/O, which supports `IOCB_NOWAIT`). One `io_uring_enter` per loop
//! iteration submits every queued read and write and collects every completion; an iteration
//! with nothing to submit and no pending work makes no system call at all. An idle worker
//! blocks in the same call with a timeout, so waiting on all its ports is one wait.

use io_uring::{opcode, squeue, types, IoUring};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

/// What a completion belongs to, decoded from its `user_data`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Token {
    /// A receive into slot `slot` of port `port`'s queue.
    Rx {
        /// Port id.
        port: u16,
        /// Slot index.
        slot: u32,
    },
    /// A transmit from slot `slot` of port `port`'s queue.
    Tx {
        /// Port id.
        port: u16,
        /// Slot index.
        slot: u32,
    },
    /// The readiness poll of port `port`'s queue fired (multishot: it stays armed unless
    /// `ended`).
    Poll {
        /// Port id.
        port: u16,
        /// The kernel ended the multishot poll (no `IORING_CQE_F_MORE`): re-arm it.
        ended: bool,
    },
    /// A cancellation request finished.
    Cancel,
    /// The wake-up eventfd was written.
    Wake,
}

const KIND_RX: u64 = 0;
const KIND_TX: u64 = 1;
const KIND_CANCEL: u64 = 2;
const KIND_WAKE: u64 = 3;
const KIND_POLL: u64 = 4;
/// `IORING_CQE_F_MORE`: a multishot request stays armed after this completion.
const CQE_F_MORE: u32 = 1 << 1;

impl Token {
    /// Encodes as `user_data`: port in bits 32..48, kind in 24..27, slot in 0..24. (A poll's
    /// `ended` is not encoded: it comes from the completion's flags.)
    pub fn encode(self) -> u64 {
        let (kind, port, slot) = match self {
            Token::Rx { port, slot } => (KIND_RX, port, slot),
            Token::Tx { port, slot } => (KIND_TX, port, slot),
            Token::Poll { port, .. } => (KIND_POLL, port, 0),
            Token::Cancel => (KIND_CANCEL, 0, 0),
            Token::Wake => (KIND_WAKE, 0, 0),
        };
        (u64::from(port) << 32) | (kind << 24) | u64::from(slot & 0x00ff_ffff)
    }

    /// Decodes `user_data` produced by [`Token::encode`] (a poll as still armed).
    pub fn decode(v: u64) -> Token {
        Token::from_completion(v, CQE_F_MORE)
    }

    /// Decodes a completion: its `user_data` and its flags.
    pub fn from_completion(v: u64, flags: u32) -> Token {
        let port = (v >> 32) as u16;
        let slot = (v & 0x00ff_ffff) as u32;
        match (v >> 24) & 7 {
            KIND_RX => Token::Rx { port, slot },
            KIND_TX => Token::Tx { port, slot },
            KIND_CANCEL => Token::Cancel,
            KIND_POLL => Token::Poll {
                port,
                ended: !io_uring::cqueue::more(flags),
            },
            _ => Token::Wake,
        }
    }
}

/// A worker's ring.
pub struct Uring {
    ring: IoUring,
    /// Target of the read armed on the wake-up eventfd. Leaked on purpose (8 bytes per worker):
    /// the kernel may still hold the read when the ring is torn down.
    wake_buf: &'static mut [u8; 8],
    wake_armed: bool,
    /// The worker's buffer region is registered as fixed buffers (`IORING_REGISTER_BUFFERS`):
    /// writes from it are `WriteFixed`, which skip pinning the pages on every request.
    fixed_buffers: bool,
}

impl std::fmt::Debug for Uring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Uring").finish_non_exhaustive()
    }
}

impl Uring {
    /// A ring with `sq_entries` submission slots and room for `cq_entries` completions.
    /// Must be created on the thread that will use it (single issuer).
    pub fn new(sq_entries: u32, cq_entries: u32) -> io::Result<Self> {
        let ring = IoUring::builder()
            .setup_single_issuer()
            .setup_defer_taskrun()
            .setup_taskrun_flag()
            .setup_cqsize(cq_entries)
            .build(sq_entries)?;
        Ok(Self {
            ring,
            wake_buf: Box::leak(Box::new([0; 8])),
            wake_armed: false,
            fixed_buffers: false,
        })
    }

    /// Registers a buffer region, as `(address, length)` pieces (`Pool::fixed_pieces`), as the
    /// ring's fixed buffers; piece *i* is fixed buffer *i*. Afterwards
    /// [`Uring::has_fixed_buffers`] says so and ports write from it with `WriteFixed`. Called
    /// once, before the first request. A kernel or limit refusing it (`RLIMIT_MEMLOCK` without
    /// `CAP_IPC_LOCK`) is an error the caller may ignore: writes then stay plain.
    ///
    /// # Safety
    /// The pieces must stay mapped for as long as the ring lives (a `Pool` never unmaps its
    /// region while a buffer is out, and the worker drops its ring before its pool).
    pub unsafe fn register_buffers(
        &mut self,
        pieces: impl Iterator<Item = (*mut u8, usize)>,
    ) -> io::Result<()> {
        let iovecs: Vec<libc::iovec> = pieces
            .map(|(p, n)| libc::iovec {
                iov_base: p.cast(),
                iov_len: n,
            })
            .collect();
        // SAFETY: the caller keeps the memory mapped for the ring's life (see above).
        unsafe { self.ring.submitter().register_buffers(&iovecs)? };
        self.fixed_buffers = true;
        Ok(())
    }

    /// Whether a buffer region is registered (see [`Uring::register_buffers`]).
    #[inline]
    pub fn has_fixed_buffers(&self) -> bool {
        self.fixed_buffers
    }

    /// Keeps a read armed on `waker`'s eventfd, so that [`Waker::wake`] ends a [`Uring::wait`].
    /// Call after every [`Token::Wake`] completion (and once at start).
    pub fn arm_wake(&mut self, waker: &Waker) -> io::Result<()> {
        if self.wake_armed {
            return Ok(());
        }
        let entry = opcode::Read::new(
            types::Fd(waker.fd.as_raw_fd()),
            self.wake_buf.as_mut_ptr(),
            8,
        )
        .build()
        .user_data(Token::Wake.encode());
        // SAFETY: `wake_buf` is leaked, so it outlives any request; only the kernel writes it
        // and we never read it.
        unsafe { self.push(&entry)? };
        self.wake_armed = true;
        Ok(())
    }

    /// Arms a multishot readiness poll (`POLLIN`) on `fd` for port `port`'s queue: its
    /// completions are `Token::Poll { port, .. }`, one each time the fd becomes readable, until
    /// one says `ended`.
    pub fn arm_readiness_poll(&mut self, fd: std::os::fd::RawFd, port: u16) -> io::Result<()> {
        let entry = opcode::PollAdd::new(types::Fd(fd), libc::POLLIN as u32)
            .multi(true)
            .build()
            .user_data(Token::Poll { port, ended: false }.encode());
        // SAFETY: a poll request references no buffer.
        unsafe { self.push(&entry) }
    }

    /// Notes that the wake-up read completed (its token was reaped).
    pub fn wake_completed(&mut self) {
        self.wake_armed = false;
    }

    /// Queues one request, submitting what is queued first if the submission queue is full.
    ///
    /// # Safety
    /// Every buffer the entry points at must stay valid and unmoved, and must not be accessed
    /// by the caller, until the request's completion has been reaped from this ring.
    pub unsafe fn push(&mut self, entry: &squeue::Entry) -> io::Result<()> {
        if self.ring.submission().is_full() {
            self.ring.submit()?;
        }
        // SAFETY: the caller upholds the buffer contract above; the queue has room now.
        unsafe { self.ring.submission().push(entry) }
            .map_err(|_| io::Error::other("io_uring submission queue still full after submit"))
    }

    /// Submits queued requests and runs deferred completions. Makes no system call when there
    /// is nothing to do.
    pub fn submit(&mut self) -> io::Result<()> {
        let mut sq = self.ring.submission();
        sq.sync();
        let needed = !sq.is_empty() || sq.taskrun() || sq.cq_overflow();
        drop(sq);
        if needed {
            self.enter(0, None)?;
        }
        Ok(())
    }

    /// Submits, then sleeps until at least one completion arrives or `timeout` passes.
    pub fn wait(&mut self, timeout: Duration) -> io::Result<()> {
        self.enter(1, Some(timeout))
    }

    fn enter(&mut self, want: usize, timeout: Option<Duration>) -> io::Result<()> {
        let ts;
        let mut args = types::SubmitArgs::new();
        if let Some(t) = timeout {
            ts = types::Timespec::from(t);
            args = args.timespec(&ts);
        }
        // Deferred task work only runs on an enter with GETEVENTS, which submit_with_args sets.
        match self.ring.submitter().submit_with_args(want, &args) {
            Ok(_) => Ok(()),
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ETIME | libc::EINTR | libc::EBUSY)
                ) =>
            {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Takes every available completion as `(token, result)` pairs into `out` (cleared first).
    pub fn reap(&mut self, out: &mut Vec<(Token, i32)>) {
        out.clear();
        let mut cq = self.ring.completion();
        cq.sync();
        out.extend(cq.map(|c| (Token::from_completion(c.user_data(), c.flags()), c.result())));
    }
}

/// The handle other threads use to wake a sleeping worker: an eventfd the worker keeps a read
/// armed on.
#[derive(Debug)]
pub struct Waker {
    fd: OwnedFd,
}

impl Waker {
    /// A new eventfd.
    pub fn new() -> io::Result<Self> {
        // SAFETY: eventfd has no memory arguments; a negative return is checked below.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a freshly created descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Self { fd })
    }

    /// Wakes the worker (if it sleeps; harmless otherwise).
    pub fn wake(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live local; the fd is a valid eventfd. A failed write
        // (counter saturated) still leaves the eventfd readable, which is all we need.
        let _ = unsafe { libc::write(self.fd.as_raw_fd(), (&one as *const u64).cast(), 8) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fixed_write_from_a_registered_pool_sends_the_frame() {
        use crate::buffer::Pool;
        let mut pool = Pool::with_large(4, 1);
        let mut ring = Uring::new(8, 16).unwrap();
        // SAFETY: the pool outlives the ring (declared before it, dropped after).
        unsafe { ring.register_buffers(pool.fixed_pieces()) }.unwrap();
        assert!(ring.has_fixed_buffers());
        let (a, b) = std::os::unix::net::UnixDatagram::pair().unwrap();
        for mut buf in [pool.get().unwrap(), pool.get_large().unwrap()] {
            let frame: Vec<u8> = (0..1500u32).map(|i| (i * 3) as u8).collect();
            buf.fill(&frame);
            let index = pool.fixed_index(&buf).unwrap();
            let entry =
                opcode::WriteFixed::new(types::Fd(a.as_raw_fd()), buf.frame_ptr(), 1500, index)
                    .build()
                    .user_data(Token::Tx { port: 1, slot: 0 }.encode());
            // SAFETY: `buf` is neither touched nor freed until the completion is reaped below.
            unsafe { ring.push(&entry) }.unwrap();
            ring.wait(Duration::from_secs(1)).unwrap();
            let mut done = Vec::new();
            ring.reap(&mut done);
            assert_eq!(done, vec![(Token::Tx { port: 1, slot: 0 }, 1500)]);
            let mut got = [0u8; 2000];
            assert_eq!(b.recv(&mut got).unwrap(), 1500);
            assert_eq!(&got[..1500], &frame[..]);
            pool.put(buf);
        }
    }

    #[test]
    fn tokens_round_trip() {
        for t in [
            Token::Rx { port: 7, slot: 31 },
            Token::Tx {
                port: u16::MAX,
                slot: 0x00ff_ffff,
            },
            Token::Poll {
                port: 3,
                ended: false,
            },
            Token::Cancel,
            Token::Wake,
        ] {
            assert_eq!(Token::decode(t.encode()), t);
        }
    }

    #[test]
    fn a_poll_completion_without_more_has_ended() {
        let v = Token::Poll {
            port: 3,
            ended: false,
        }
        .encode();
        assert_eq!(
            Token::from_completion(v, 0),
            Token::Poll {
                port: 3,
                ended: true
            }
        );
    }
}
