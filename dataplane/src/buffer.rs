//! Packet buffers and the per-worker pool they come from.
//!
//! Every buffer is allocated once, when a worker starts, and recycled through its pool: the
//! forwarding path never allocates. A buffer is a fixed 2 KiB box so its address is stable while
//! the kernel reads or writes it (io_uring), and it keeps headroom in front of the frame so that
//! an encapsulation header (VXLAN, with multi-node) can be prepended without copying the packet.
//! (ICMP errors, built in place today, grow the frame at the back instead.)

/// Bytes per buffer.
pub const BUF_SIZE: usize = 2048;
/// Bytes kept free in front of a received frame.
pub const HEADROOM: usize = 128;
/// Largest frame a buffer holds.
pub const MAX_FRAME: usize = BUF_SIZE - HEADROOM;

/// One packet buffer: storage plus the window `[start, start + len)` that holds the frame.
pub struct PktBuf {
    data: Box<[u8; BUF_SIZE]>,
    start: u16,
    len: u16,
}

impl std::fmt::Debug for PktBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PktBuf")
            .field("start", &self.start)
            .field("len", &self.len)
            .finish()
    }
}

impl PktBuf {
    fn new() -> Self {
        Self {
            data: Box::new([0u8; BUF_SIZE]),
            start: HEADROOM as u16,
            len: 0,
        }
    }

    /// The frame.
    #[inline]
    pub fn frame(&self) -> &[u8] {
        &self.data[self.start as usize..self.start as usize + self.len as usize]
    }

    /// The frame, writable.
    #[inline]
    pub fn frame_mut(&mut self) -> &mut [u8] {
        &mut self.data[self.start as usize..self.start as usize + self.len as usize]
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

    /// Bytes free in front of the frame.
    #[inline]
    pub fn headroom(&self) -> usize {
        self.start as usize
    }

    /// Resets the window to the default headroom and returns the whole writable area behind
    /// it, for a port to receive into. Follow with [`PktBuf::set_len`].
    #[inline]
    pub fn rx_area(&mut self) -> &mut [u8] {
        self.start = HEADROOM as u16;
        self.len = 0;
        &mut self.data[HEADROOM..]
    }

    /// Sets the frame length after a receive into [`PktBuf::rx_area`]; clamped to the buffer.
    #[inline]
    pub fn set_len(&mut self, len: usize) {
        self.len = len.min(BUF_SIZE - self.start as usize) as u16;
    }

    /// Copies `frame` in at the default headroom; truncates what does not fit.
    pub fn fill(&mut self, frame: &[u8]) {
        let n = frame.len().min(MAX_FRAME);
        self.rx_area()[..n].copy_from_slice(&frame[..n]);
        self.len = n as u16;
    }

    /// Grows the frame at the front by `n` bytes (taken from the headroom) and returns the new
    /// frame; `None` when the headroom is too small.
    pub fn push_front(&mut self, n: usize) -> Option<&mut [u8]> {
        let start = (self.start as usize).checked_sub(n)?;
        self.start = start as u16;
        self.len += n as u16;
        Some(self.frame_mut())
    }

    /// Grows or shrinks the frame at the back; `None` if it would not fit.
    pub fn resize(&mut self, len: usize) -> Option<()> {
        (self.start as usize + len <= BUF_SIZE).then(|| self.len = len as u16)
    }

    /// Raw pointer and capacity of the receive area, for ports handing the buffer to the kernel.
    /// The pointer stays valid as long as the buffer is alive: the storage is boxed.
    pub(crate) fn rx_ptr(&mut self) -> (*mut u8, usize) {
        let area = self.rx_area();
        (area.as_mut_ptr(), area.len())
    }

    /// Raw pointer of the frame, for ports writing it out.
    pub(crate) fn frame_ptr(&self) -> *const u8 {
        self.frame().as_ptr()
    }
}

/// A worker's buffers. `get` and `put` never allocate: the free list has room for every buffer
/// the pool created, and buffers only ever come from a pool.
#[derive(Debug)]
pub struct Pool {
    free: Vec<PktBuf>,
    total: usize,
}

impl Pool {
    /// Allocates `n` buffers up front.
    pub fn new(n: usize) -> Self {
        let mut free = Vec::with_capacity(n);
        free.extend((0..n).map(|_| PktBuf::new()));
        Self { free, total: n }
    }

    /// A free buffer, or `None` when all are in use.
    #[inline]
    pub fn get(&mut self) -> Option<PktBuf> {
        self.free.pop()
    }

    /// Returns a buffer.
    #[inline]
    pub fn put(&mut self, buf: PktBuf) {
        // Capacity was reserved for `total` buffers, so this never reallocates.
        debug_assert!(self.free.len() < self.total);
        self.free.push(buf);
    }

    /// Buffers currently free.
    pub fn available(&self) -> usize {
        self.free.len()
    }

    /// Buffers the pool owns in all.
    pub fn total(&self) -> usize {
        self.total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    }

    #[test]
    fn oversized_fill_is_truncated_not_panicking() {
        let mut pool = Pool::new(1);
        let mut b = pool.get().unwrap();
        b.fill(&[0u8; BUF_SIZE * 2]);
        assert_eq!(b.len(), MAX_FRAME);
        b.set_len(usize::MAX);
        assert_eq!(b.len(), MAX_FRAME);
    }
}
