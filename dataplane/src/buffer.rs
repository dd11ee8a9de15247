//! Packet buffers and the per-worker pool they come from.
//!
//! Every buffer is carved out of one page-aligned memory region per worker, mapped once when
//! the worker starts and recycled through its pool: the forwarding path never allocates. The
//! region is one mapping so that the same memory can be registered with io_uring (fixed
//! buffers) and, later, as an AF_XDP UMEM; a [`PktBuf`] is an index into it (plus a cached
//! address), never a heap allocation. Its address is stable while the kernel reads or writes
//! it, and it keeps headroom in front of the frame so that a virtio-net header (tap offloads)
//! or an encapsulation header (VXLAN, with multi-node) can be prepended without copying.
//!
//! Two classes (ARCHITECTURE.md, "Offloads"):
//! - **small**, [`SMALL_BUF`] bytes: every frame up to [`MAX_FRAME`];
//! - **large**, [`LARGE_BUF`] bytes: a GSO super-frame up to [`MAX_LARGE_FRAME`].
//!
//! A frame always lives in one contiguous buffer, so every packet view, the segmenter and
//! every later stage work on one slice.

use std::ptr::NonNull;

/// Bytes per small buffer: one page, as libxdp's default UMEM frame, so that an AF_XDP port
/// (whose UMEM chunks are these buffers) carries frames up to 3826 bytes: a jumbo-frame
/// underlay of MTU ~3500 (veth's native XDP limit) instead of 1778. The pool is 4 KiB per
/// buffer, 32 MiB per worker at the default 8192.
pub const SMALL_BUF: usize = 4096;
/// Bytes per buffer of the small class (the historical name).
pub const BUF_SIZE: usize = SMALL_BUF;
/// Bytes kept free in front of a received frame.
pub const HEADROOM: usize = 128;
/// Largest frame a small buffer holds.
pub const MAX_FRAME: usize = SMALL_BUF - HEADROOM;
/// Bytes per large buffer: headroom, the head of a frame read first into a small buffer, and
/// 64 KiB plus slack for the rest.
pub const LARGE_BUF: usize = 68 * 1024;
/// Largest frame a large buffer holds (more than IPv4's 65535 + Ethernet + VLAN).
pub const MAX_LARGE_FRAME: usize = LARGE_BUF - HEADROOM;
/// Where, in a large buffer, a two-part read puts what does not fit the small buffer: right
/// after the space the small buffer's part is copied into (see `ports::tap`).
pub const LARGE_TAIL: usize = HEADROOM + MAX_FRAME;

const PAGE: usize = 4096;

/// Which class a buffer belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// [`SMALL_BUF`] bytes.
    Small,
    /// [`LARGE_BUF`] bytes.
    Large,
}

impl Class {
    /// Bytes of storage.
    #[inline]
    pub const fn size(self) -> usize {
        match self {
            Class::Small => SMALL_BUF,
            Class::Large => LARGE_BUF,
        }
    }
}

/// One packet buffer (16 bytes): a slot of its worker's region plus the window `[start, start + len)`
/// that holds the frame. Not `Clone`: a slot has exactly one owner.
pub struct PktBuf {
    /// The slot's first byte; its offset from the region's base says which slot it is (the
    /// pool computes it where it needs it, so the buffer stays 16 bytes: packets are moved
    /// between batches and staging by value, several times per packet).
    base: NonNull<u8>,
    class: Class,
    start: u16,
    len: u32,
}

// SAFETY: a `PktBuf` is the unique owner of its slot (never cloned, handed out once by its
// pool); the region behind it is never unmapped while any slot is out of the pool (see
// `Region::drop`), so moving the buffer to another thread (a worker built on the daemon
// thread and run on its own) moves nothing but that exclusive access.
unsafe impl Send for PktBuf {}

impl std::fmt::Debug for PktBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PktBuf")
            .field("class", &self.class)
            .field("start", &self.start)
            .field("len", &self.len)
            .finish()
    }
}

impl PktBuf {
    /// The whole slot.
    #[inline]
    fn storage(&self) -> &[u8] {
        // SAFETY: `base` points at `class.size()` bytes of a live mapping this buffer owns
        // exclusively (see the `Send` impl), and `&self` borrows it for the slice's life.
        unsafe { std::slice::from_raw_parts(self.base.as_ptr(), self.class.size()) }
    }

    /// The whole slot, writable.
    #[inline]
    fn storage_mut(&mut self) -> &mut [u8] {
        // SAFETY: as `storage`, with `&mut self` for exclusive access.
        unsafe { std::slice::from_raw_parts_mut(self.base.as_ptr(), self.class.size()) }
    }

    /// The frame.
    #[inline]
    pub fn frame(&self) -> &[u8] {
        let (s, l) = (self.start as usize, self.len as usize);
        debug_assert!(s + l <= self.class.size());
        // SAFETY: every method that moves the window keeps `start + len` within the slot
        // (`set_len` clamps, `resize` and `push_front` check, `pull_front` keeps the sum), so
        // this is a sub-slice of the slot `storage` describes; no bounds check on the hot path.
        unsafe { std::slice::from_raw_parts(self.base.as_ptr().add(s), l) }
    }

    /// The frame, writable.
    #[inline]
    pub fn frame_mut(&mut self) -> &mut [u8] {
        let (s, l) = (self.start as usize, self.len as usize);
        debug_assert!(s + l <= self.class.size());
        // SAFETY: as `frame`, with `&mut self` for exclusive access.
        unsafe { std::slice::from_raw_parts_mut(self.base.as_ptr().add(s), l) }
    }

    /// Frame length.
    #[inline]
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// Whether the frame is empty.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The buffer's class.
    #[inline]
    pub fn class(&self) -> Class {
        self.class
    }

    /// Bytes free in front of the frame.
    #[inline]
    pub fn headroom(&self) -> usize {
        self.start as usize
    }

    /// The largest frame this buffer holds at the default headroom.
    #[inline]
    pub fn max_frame(&self) -> usize {
        self.class.size() - HEADROOM
    }

    /// The `n` bytes right in front of the frame (a virtio-net header, an encapsulation);
    /// `None` when the headroom is smaller.
    #[inline]
    pub fn front_mut(&mut self, n: usize) -> Option<&mut [u8]> {
        let s = self.start as usize;
        let from = s.checked_sub(n)?;
        Some(&mut self.storage_mut()[from..s])
    }

    /// The `n` bytes right in front of the frame, read-only.
    #[inline]
    pub fn front(&self, n: usize) -> Option<&[u8]> {
        let s = self.start as usize;
        let from = s.checked_sub(n)?;
        Some(&self.storage()[from..s])
    }

    /// Resets the window to the default headroom and returns the whole writable area behind
    /// it, for a port to receive into. Follow with [`PktBuf::set_len`].
    #[inline]
    pub fn rx_area(&mut self) -> &mut [u8] {
        self.start = HEADROOM as u16;
        self.len = 0;
        &mut self.storage_mut()[HEADROOM..]
    }

    /// Sets the frame length after a receive into [`PktBuf::rx_area`]; clamped to the buffer.
    #[inline]
    pub fn set_len(&mut self, len: usize) {
        self.len = len.min(self.class.size() - self.start as usize) as u32;
    }

    /// Copies `frame` in at the default headroom; truncates what does not fit.
    pub fn fill(&mut self, frame: &[u8]) {
        let n = frame.len().min(self.max_frame());
        self.rx_area()[..n].copy_from_slice(&frame[..n]);
        self.len = n as u32;
    }

    /// Grows the frame at the front by `n` bytes (taken from the headroom) and returns the new
    /// frame; `None` when the headroom is too small.
    pub fn push_front(&mut self, n: usize) -> Option<&mut [u8]> {
        let start = (self.start as usize).checked_sub(n)?;
        self.start = start as u16;
        self.len += n as u32;
        Some(self.frame_mut())
    }

    /// Shrinks the frame at the front by `n` bytes (they become headroom); `None` when the
    /// frame is shorter.
    pub fn pull_front(&mut self, n: usize) -> Option<()> {
        let n32 = u32::try_from(n).ok().filter(|&n| n <= self.len)?;
        self.start = u16::try_from(self.start as usize + n).ok()?;
        self.len -= n32;
        Some(())
    }

    /// Grows or shrinks the frame at the back; `None` if it would not fit.
    pub fn resize(&mut self, len: usize) -> Option<()> {
        (self.start as usize + len <= self.class.size()).then(|| self.len = len as u32)
    }

    /// Raw pointer and capacity of the receive area, for ports handing the buffer to the kernel.
    /// The pointer stays valid as long as the buffer is alive (the region outlives it).
    pub(crate) fn rx_ptr(&mut self) -> (*mut u8, usize) {
        let area = self.rx_area();
        (area.as_mut_ptr(), area.len())
    }

    /// Raw pointer to the slot's byte `offset` (clamped to the slot), for ports handing part
    /// of the buffer to the kernel.
    #[allow(dead_code)] // used by the tap reads of the offload path
    pub(crate) fn raw_ptr(&mut self, offset: usize) -> *mut u8 {
        let offset = offset.min(self.class.size());
        self.storage_mut()[offset..].as_mut_ptr()
    }

    /// Raw pointer of the frame, for ports writing it out.
    pub(crate) fn frame_ptr(&self) -> *const u8 {
        self.frame().as_ptr()
    }

    /// Moves the frame of `small` (its default-headroom window, with `front` bytes before it)
    /// into this buffer at the same offsets: the head of a two-part read, whose tail the
    /// kernel already wrote at [`LARGE_TAIL`]. Sets the window to `len` bytes.
    #[allow(dead_code)] // used by the tap reads of the offload path
    pub(crate) fn take_head_of(&mut self, small: &PktBuf, front: usize, len: usize) {
        let from = HEADROOM - front.min(HEADROOM);
        let head_end = (HEADROOM + len).min(SMALL_BUF).min(LARGE_TAIL);
        self.storage_mut()[from..head_end].copy_from_slice(&small.storage()[from..head_end]);
        self.start = HEADROOM as u16;
        self.set_len(len);
    }
}

/// The memory of one worker's buffers: one anonymous, page-aligned mapping, small slots first.
struct Region {
    base: NonNull<u8>,
    len: usize,
    small: usize,
    large: usize,
}

// SAFETY: the region is plain memory owned by its pool; the pool (and so the region) moves to
// its worker's thread as a whole.
unsafe impl Send for Region {}

impl Region {
    fn map(small: usize, large: usize) -> std::io::Result<Region> {
        let bytes = small * SMALL_BUF + large * LARGE_BUF;
        let len = bytes.max(1).div_ceil(PAGE) * PAGE;
        // SAFETY: an anonymous private mapping: no file, no fixed address; the result is
        // checked before use.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            let e = std::io::Error::last_os_error();
            return Err(std::io::Error::new(
                e.kind(),
                format!("mapping {len} bytes of packet buffers: {e}"),
            ));
        }
        // SAFETY: a hint on the mapping just made; failure (no THP) is harmless.
        unsafe { libc::madvise(ptr, len, libc::MADV_HUGEPAGE) };
        let base = NonNull::new(ptr.cast::<u8>()).ok_or_else(|| std::io::Error::other("mmap"))?;
        Ok(Region {
            base,
            len,
            small,
            large,
        })
    }

    fn slot_offset(&self, slot: u32) -> usize {
        let slot = slot as usize;
        if slot < self.small {
            slot * SMALL_BUF
        } else {
            self.small * SMALL_BUF + (slot - self.small) * LARGE_BUF
        }
    }

    fn buf(&self, slot: u32) -> PktBuf {
        let class = if (slot as usize) < self.small {
            Class::Small
        } else {
            Class::Large
        };
        // SAFETY: the offset of a slot below `small + large` is inside the mapping.
        let base =
            unsafe { NonNull::new_unchecked(self.base.as_ptr().add(self.slot_offset(slot))) };
        PktBuf {
            base,
            class,
            start: HEADROOM as u16,
            len: 0,
        }
    }

    /// The offset of `buf`'s slot in this region, if it is one of this region's slots.
    #[inline]
    fn offset_of(&self, buf: &PktBuf) -> Option<usize> {
        let off = (buf.base.as_ptr() as usize).checked_sub(self.base.as_ptr() as usize)?;
        let small_end = self.small * SMALL_BUF;
        let ok = match buf.class {
            Class::Small => off < small_end && off % SMALL_BUF == 0,
            Class::Large => {
                off >= small_end
                    && (off - small_end) % LARGE_BUF == 0
                    && (off - small_end) / LARGE_BUF < self.large
            }
        };
        ok.then_some(off)
    }

    fn owns(&self, buf: &PktBuf) -> bool {
        self.offset_of(buf).is_some()
    }
}

/// A worker's buffers. `get` and `put` never allocate: the free lists have room for every
/// buffer the pool created, and buffers only ever come from a pool.
pub struct Pool {
    region: Region,
    free: Vec<PktBuf>,
    free_large: Vec<PktBuf>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("small", &(self.free.len(), self.region.small))
            .field("large", &(self.free_large.len(), self.region.large))
            .finish()
    }
}

impl Pool {
    /// `n` small buffers and no large one. Panics if the memory cannot be mapped (tests and
    /// benchmarks; the daemon uses [`Pool::try_new`]).
    pub fn new(n: usize) -> Self {
        Self::with_large(n, 0)
    }

    /// `small` small buffers and `large` large ones. Panics if the memory cannot be mapped.
    pub fn with_large(small: usize, large: usize) -> Self {
        match Self::try_new(small, large) {
            Ok(p) => p,
            Err(e) => panic!("packet buffer pool: {e}"),
        }
    }

    /// Maps the region for `small` + `large` buffers up front.
    pub fn try_new(small: usize, large: usize) -> std::io::Result<Self> {
        let region = Region::map(small, large)?;
        let free = (0..small as u32).map(|s| region.buf(s)).collect();
        let free_large = (small as u32..(small + large) as u32)
            .map(|s| region.buf(s))
            .collect();
        Ok(Self {
            region,
            free,
            free_large,
        })
    }

    /// A free small buffer, or `None` when all are in use.
    #[inline]
    pub fn get(&mut self) -> Option<PktBuf> {
        self.free.pop()
    }

    /// A free large buffer, or `None` when all are in use (or the pool has none).
    #[inline]
    pub fn get_large(&mut self) -> Option<PktBuf> {
        self.free_large.pop()
    }

    /// A buffer that holds a frame of `len` bytes: small when it fits, else large.
    #[inline]
    pub fn get_for(&mut self, len: usize) -> Option<PktBuf> {
        if len <= MAX_FRAME {
            self.get()
        } else if len <= MAX_LARGE_FRAME {
            self.get_large()
        } else {
            None
        }
    }

    /// Returns a buffer. A buffer of another pool is a bug: it is leaked (its region stays
    /// mapped, so nothing dangles), never mixed into this pool's lists.
    #[inline]
    pub fn put(&mut self, mut buf: PktBuf) {
        if !self.region.owns(&buf) {
            debug_assert!(
                false,
                "a buffer was returned to a pool it does not belong to"
            );
            // Dropping a `PktBuf` frees nothing: its own pool just never sees it again.
            let _ = buf;
            return;
        }
        buf.start = HEADROOM as u16;
        buf.len = 0;
        // Capacity was reserved for every buffer, so neither push reallocates.
        match buf.class {
            Class::Small => {
                debug_assert!(self.free.len() < self.region.small);
                self.free.push(buf);
            }
            Class::Large => {
                debug_assert!(self.free_large.len() < self.region.large);
                self.free_large.push(buf);
            }
        }
    }

    /// Small buffers currently free.
    pub fn available(&self) -> usize {
        self.free.len()
    }

    /// Large buffers currently free.
    pub fn available_large(&self) -> usize {
        self.free_large.len()
    }

    /// Small buffers the pool owns in all.
    pub fn total(&self) -> usize {
        self.region.small
    }

    /// Large buffers the pool owns in all.
    pub fn total_large(&self) -> usize {
        self.region.large
    }

    /// The region as `(address, length)` pieces of at most 1 GiB, for registering it with
    /// io_uring as fixed buffers; buffer `slot` lies in piece [`Pool::fixed_index`].
    pub fn fixed_pieces(&self) -> impl Iterator<Item = (*mut u8, usize)> + '_ {
        let len = self.region.len;
        (0..len.div_ceil(FIXED_PIECE)).map(move |i| {
            let off = i * FIXED_PIECE;
            // SAFETY: `off` is inside the mapping.
            let ptr = unsafe { self.region.base.as_ptr().add(off) };
            (ptr, (len - off).min(FIXED_PIECE))
        })
    }

    /// The fixed-buffer index of the piece holding `buf` (see [`Pool::fixed_pieces`]), when
    /// the whole frame lies inside one piece.
    pub fn fixed_index(&self, buf: &PktBuf) -> Option<u16> {
        let off = self.region.offset_of(buf)?;
        let (a, b) = (
            off / FIXED_PIECE,
            (off + buf.class.size() - 1) / FIXED_PIECE,
        );
        (a == b).then_some(a as u16)
    }
}

impl Pool {
    /// The small sub-region as `(address, length)`, whole pages: what an AF_XDP socket
    /// registers as its UMEM with [`SMALL_BUF`]-byte chunks, chunk *k* being small slot *k*
    /// (ARCHITECTURE.md, "AF_XDP ports"). The length may reach into the first large slot (to
    /// a page boundary); those chunks are never lent.
    pub fn umem_area(&self) -> (*mut u8, usize) {
        let len = (self.region.small * SMALL_BUF).div_ceil(PAGE) * PAGE;
        (self.region.base.as_ptr(), len.min(self.region.len))
    }

    /// Small slots, which are the UMEM chunks an AF_XDP queue may lend.
    pub fn umem_chunks(&self) -> usize {
        self.region.small
    }

    /// The UMEM chunk `buf` is (its small slot), `None` for a large buffer or another
    /// pool's.
    #[inline]
    pub fn umem_chunk(&self, buf: &PktBuf) -> Option<u32> {
        if buf.class != Class::Small {
            return None;
        }
        self.region
            .offset_of(buf)
            .map(|off| (off / SMALL_BUF) as u32)
    }

    /// Gives `buf` up for its UMEM chunk number, to lend the chunk to the kernel; it comes
    /// back as a buffer through [`Pool::reclaim_chunk`]. A large buffer or another pool's is
    /// handed back untouched.
    #[inline]
    pub fn lend_chunk(&self, buf: PktBuf) -> Result<u32, PktBuf> {
        match self.umem_chunk(&buf) {
            // The `PktBuf` ends here; its slot is the chunk's owner's now (it frees nothing).
            Some(chunk) => Ok(chunk),
            None => Err(buf),
        }
    }

    /// The buffer of UMEM chunk `chunk`, holding the frame `[start, start + len)` of the
    /// chunk; `None` if there is no such small slot or the window does not fit it. The
    /// counterpart of handing a buffer to the kernel by its chunk number (the `PktBuf` given
    /// up, which frees nothing).
    ///
    /// # Safety
    /// No other `PktBuf` of this slot may exist: the caller gave up the one it had when it
    /// lent the chunk to the kernel, and reclaims each lent chunk once.
    #[inline]
    pub unsafe fn reclaim_chunk(&self, chunk: u32, start: usize, len: usize) -> Option<PktBuf> {
        if chunk as usize >= self.region.small || start + len > SMALL_BUF {
            return None;
        }
        let mut buf = self.region.buf(chunk);
        buf.start = start as u16;
        buf.len = len as u32;
        Some(buf)
    }
}

/// The size of the pieces the region is registered in: io_uring limits one fixed buffer to
/// 1 GiB. No buffer straddles two pieces unless the region exceeds a piece.
const FIXED_PIECE: usize = 1 << 30;

impl Drop for Pool {
    fn drop(&mut self) {
        if self.free.len() == self.region.small && self.free_large.len() == self.region.large {
            // Every buffer is home: nothing can point into the mapping any more.
            self.free.clear();
            self.free_large.clear();
            // SAFETY: the mapping made in `Region::map`, unmapped once, with no buffer left.
            unsafe { libc::munmap(self.region.base.as_ptr().cast(), self.region.len) };
        }
        // Otherwise a buffer is still out (lent to the kernel by a queue that leaked it, or
        // held by a structure dropped after the pool): leak the mapping, so it never dangles.
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_buffer_is_16_bytes() {
        assert_eq!(std::mem::size_of::<PktBuf>(), 16);
    }

    #[test]
    fn a_pool_refuses_a_buffer_of_another_pool() {
        let (mut a, mut b) = (Pool::with_large(2, 1), Pool::with_large(2, 1));
        let (small, large) = (b.get().unwrap(), b.get_large().unwrap());
        assert!(!a.region.owns(&small) && !a.region.owns(&large));
        assert!(b.region.owns(&small) && b.region.owns(&large));
        assert_eq!(a.fixed_index(&small), None);
        b.put(small);
        b.put(large);
        assert!(a.get().is_some());
    }

    #[test]
    fn pool_recycles_without_growing() {
        let mut pool = Pool::new(2);
        let a = pool.get().unwrap();
        let b = pool.get().unwrap();
        assert!(pool.get().is_none());
        pool.put(a);
        pool.put(b);
        assert_eq!(pool.available(), 2);
        assert_eq!(pool.free.capacity(), 2);
    }

    #[test]
    fn push_front_uses_headroom_and_keeps_the_frame() {
        let mut pool = Pool::new(1);
        let mut b = pool.get().unwrap();
        b.fill(&[1, 2, 3]);
        let f = b.push_front(2).unwrap();
        assert_eq!(&f[2..], &[1, 2, 3]);
        assert_eq!(b.len(), 5);
        assert!(b.push_front(HEADROOM).is_none());
        b.pull_front(2).unwrap();
        assert_eq!(b.frame(), &[1, 2, 3]);
        assert!(b.pull_front(4).is_none());
        pool.put(b);
    }

    #[test]
    fn oversized_fill_is_truncated_not_panicking() {
        let mut pool = Pool::new(1);
        let mut b = pool.get().unwrap();
        b.fill(&[0u8; BUF_SIZE * 2]);
        assert_eq!(b.len(), MAX_FRAME);
        b.set_len(usize::MAX);
        assert_eq!(b.len(), MAX_FRAME);
        pool.put(b);
    }

    #[test]
    fn buffers_are_disjoint_slots_of_one_page_aligned_region() {
        let mut pool = Pool::with_large(3, 2);
        assert_eq!(pool.region.base.as_ptr() as usize % PAGE, 0);
        let small: Vec<_> = (0..3).map(|_| pool.get().unwrap()).collect();
        let large: Vec<_> = (0..2).map(|_| pool.get_large().unwrap()).collect();
        assert!(pool.get().is_none() && pool.get_large().is_none());
        let mut spans: Vec<_> = small
            .iter()
            .chain(&large)
            .map(|b| (b.base.as_ptr() as usize, b.class.size()))
            .collect();
        spans.sort();
        for w in spans.windows(2) {
            assert!(w[0].0 + w[0].1 <= w[1].0, "slots overlap: {spans:?}");
        }
        let base = pool.region.base.as_ptr() as usize;
        assert!(spans
            .iter()
            .all(|&(a, n)| a >= base && a + n <= base + pool.region.len));
        for b in small.into_iter().chain(large) {
            assert_eq!(pool.fixed_index(&b), Some(0));
            pool.put(b);
        }
        assert_eq!((pool.available(), pool.available_large()), (3, 2));
    }

    #[test]
    fn a_large_buffer_holds_a_64k_super_frame() {
        let mut pool = Pool::with_large(1, 1);
        let mut b = pool.get_for(65549).unwrap();
        assert_eq!(b.class(), Class::Large);
        let frame: Vec<u8> = (0..65549u32).map(|i| i as u8).collect();
        b.fill(&frame);
        assert_eq!(b.frame(), &frame[..]);
        assert!(pool.get_for(MAX_LARGE_FRAME + 1).is_none());
        pool.put(b);
        assert_eq!(pool.get_for(60).unwrap().class(), Class::Small);
    }

    #[test]
    fn a_two_part_read_is_joined_in_the_large_buffer() {
        let mut pool = Pool::with_large(1, 1);
        let (mut small, mut large) = (pool.get().unwrap(), pool.get_large().unwrap());
        let frame: Vec<u8> = (0..5000u32).map(|i| (i * 7) as u8).collect();
        // What a readv of [small from HEADROOM - 10, large from LARGE_TAIL] writes.
        small.front_mut(10).unwrap().copy_from_slice(&[9; 10]);
        small.rx_area()[..MAX_FRAME].copy_from_slice(&frame[..MAX_FRAME]);
        let tail = 5000 - MAX_FRAME;
        // SAFETY: test-only write into the large buffer's tail area, inside the slot.
        unsafe {
            std::ptr::copy_nonoverlapping(
                frame[MAX_FRAME..].as_ptr(),
                large.raw_ptr(LARGE_TAIL),
                tail,
            )
        };
        large.take_head_of(&small, 10, 5000);
        assert_eq!(large.frame(), &frame[..]);
        assert_eq!(large.front(10).unwrap(), &[9; 10]);
        pool.put(small);
        pool.put(large);
    }

    #[test]
    fn a_pool_dropped_with_a_buffer_out_leaks_its_region_instead_of_unmapping_it() {
        let mut pool = Pool::new(2);
        let mut b = pool.get().unwrap();
        drop(pool);
        b.fill(&[1, 2, 3]); // still mapped
        assert_eq!(b.frame(), &[1, 2, 3]);
    }
}
