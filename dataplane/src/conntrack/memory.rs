//! The table's big arrays (slots, index buckets) in one allocation each, aligned to and advised
//! onto 2 MiB huge pages, and handed to the shards as disjoint parts.
//!
//! A million connections take ~250 MB of slots and ~130 MB of buckets, read at random: with
//! 4 KiB pages nearly every access of a new connection also misses the TLB, and a prefetch
//! issued for it waits for a page walk. On huge pages the same table needs ~190 TLB entries,
//! which the second-level TLB holds. Where the kernel has no huge page to give
//! (`transparent_hugepage` set to `never`, fragmented memory), the advice is ignored and the
//! memory is ordinary pages: slower, never wrong.

use std::alloc::{alloc, dealloc, handle_alloc_error, Layout};
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;
use std::sync::Arc;

/// The huge page size the allocation is aligned to.
const HUGE_PAGE: usize = 2 << 20;

/// One allocation, freed when its last part goes.
#[derive(Debug)]
struct Allocation {
    base: NonNull<u8>,
    layout: Layout,
}

// SAFETY: plain memory; every access goes through a `Part`, which owns its range alone.
unsafe impl Send for Allocation {}
// SAFETY: the allocation itself is never read or written through a shared reference.
unsafe impl Sync for Allocation {}

impl Drop for Allocation {
    fn drop(&mut self) {
        // SAFETY: allocated in `parts` with this layout, freed once (the last `Arc` drops it).
        unsafe { dealloc(self.base.as_ptr(), self.layout) };
    }
}

/// `len` values of `T` no other part overlaps, kept alive with their allocation.
#[derive(Debug)]
pub(super) struct Part<T: Copy> {
    ptr: NonNull<T>,
    len: usize,
    _allocation: Arc<Allocation>,
}

// SAFETY: a part is the only way to its range, so moving it to another thread moves sole
// access, as for a `Box<[T]>`.
unsafe impl<T: Copy + Send> Send for Part<T> {}
// SAFETY: shared access to a part only gives `&[T]`, as for a `Box<[T]>`.
unsafe impl<T: Copy + Sync> Sync for Part<T> {}

impl<T: Copy> Deref for Part<T> {
    type Target = [T];

    fn deref(&self) -> &[T] {
        // SAFETY: `ptr..ptr+len` lies in the live allocation, initialised in `parts`, and
        // no other part covers it.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl<T: Copy> DerefMut for Part<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        // SAFETY: as in `deref`, and `&mut self` makes this the only access to the range.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

/// `count` parts of `each` values, the `i`-th value of part `p` set to `init(p, i)`, all in
/// one allocation on huge pages where the kernel has them. Aborts on allocation failure, as
/// a `Box` would.
pub(super) fn parts<T: Copy>(
    count: usize,
    each: usize,
    init: impl Fn(usize, usize) -> T,
) -> Vec<Part<T>> {
    // The daemon bounds the capacity (16M entries), so neither can overflow there.
    let values = count.saturating_mul(each);
    let bytes = values.saturating_mul(std::mem::size_of::<T>()).max(1);
    let align = if bytes >= HUGE_PAGE {
        HUGE_PAGE
    } else {
        std::mem::align_of::<T>()
    };
    let Ok(layout) = Layout::from_size_align(bytes.next_multiple_of(align), align) else {
        panic!("a conntrack table of {values} entries does not fit in the address space");
    };
    // SAFETY: `layout` has a non-zero size.
    let base = NonNull::new(unsafe { alloc(layout) }).unwrap_or_else(|| handle_alloc_error(layout));
    if align == HUGE_PAGE {
        // SAFETY: a hint on memory this function owns; a kernel without THP refuses it, which
        // changes nothing else.
        unsafe { libc::madvise(base.as_ptr().cast(), layout.size(), libc::MADV_HUGEPAGE) };
    }
    let first = base.cast::<T>();
    for p in 0..count {
        for i in 0..each {
            // SAFETY: `p * each + i < values`: inside the allocation, aligned for `T`;
            // written once before any part is made.
            unsafe { first.as_ptr().add(p * each + i).write(init(p, i)) };
        }
    }
    let allocation = Arc::new(Allocation { base, layout });
    (0..count)
        .map(|p| Part {
            // SAFETY: in bounds, as above.
            ptr: unsafe { first.add(p * each) },
            len: each,
            _allocation: allocation.clone(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_are_disjoint_initialised_and_outlive_each_other() {
        let mut ps = parts(4, 1000, |p, i| (p * 1000 + i) as u32);
        for (p, part) in ps.iter().enumerate() {
            assert_eq!(part.len(), 1000);
            assert!(part
                .iter()
                .enumerate()
                .all(|(i, v)| *v as usize == p * 1000 + i));
        }
        ps[1][999] = 7;
        assert_eq!((ps[1][999], ps[2][0]), (7, 2000));
        let last = ps.pop().unwrap();
        drop(ps);
        assert_eq!(last[0], 3000, "a part keeps the allocation alive");
    }

    #[test]
    fn a_large_table_is_aligned_to_huge_pages() {
        // Two parts of 1 MiB each: one huge page for both.
        let ps = parts(2, HUGE_PAGE / 16, |_, _| 0u64);
        assert_eq!(ps[0].as_ptr() as usize % HUGE_PAGE, 0);
        assert_eq!(
            ps[1].as_ptr() as usize,
            ps[0].as_ptr() as usize + HUGE_PAGE / 2
        );
    }
}
