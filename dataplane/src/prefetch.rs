//! Software prefetch: what the stages use to start the cache misses of packets further on
//! in a batch while they work on the one at hand.

/// Asks the CPU to bring the line at `addr` into its caches; never faults, whatever `addr`.
#[inline(always)]
pub fn prefetch(addr: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        // SAFETY: a prefetch is a hint: it neither reads into the program nor faults, for
        // any address.
        #[allow(unused_unsafe)]
        unsafe {
            _mm_prefetch::<_MM_HINT_T0>(addr as *const i8)
        };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = addr;
}

/// Prefetches the line `p` points into.
#[inline(always)]
pub fn prefetch_ptr<T: ?Sized>(p: *const T) {
    prefetch(p.cast::<u8>() as usize);
}
