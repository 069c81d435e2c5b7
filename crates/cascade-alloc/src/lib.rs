//! The global allocator cascade's programs (`cascade-server`, `cascade`, the bench) run with:
//! mimalloc, through its plain `mi_malloc` for ordinary allocations.
//!
//! The engine makes many small, short-lived allocations per cascade, and glibc's malloc spent
//! a third of its time on them; mimalloc does the same work in a fraction. The `mimalloc`
//! crate's allocator sends every allocation through `mi_malloc_aligned`, whose extra checks
//! cost about as much again as the allocation itself. Every block mimalloc hands out is aligned
//! to a machine word, so an allocation that asks for no more than that takes the plain path;
//! larger alignments keep the aligned one.
//!
//! ```no_run
//! #[global_allocator]
//! static ALLOCATOR: cascade_alloc::Allocator = cascade_alloc::Allocator;
//! ```
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout};
use std::ffi::c_void;

use libmimalloc_sys as mi;

/// The alignment every mimalloc block has: blocks are whole words, in word-aligned pages.
const WORD: usize = std::mem::size_of::<usize>();

/// mimalloc as the global allocator (see the crate documentation).
#[derive(Clone, Copy, Debug, Default)]
pub struct Allocator;

// SAFETY: every method returns memory from mimalloc that satisfies `layout`: the plain calls
// only when `layout.align()` is at most a word, which every mimalloc block is aligned to;
// otherwise mimalloc's aligned calls, which honour any alignment. Frees go to `mi_free`,
// which takes blocks from either.
unsafe impl GlobalAlloc for Allocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: mimalloc's allocation functions accept any size and alignment.
        unsafe {
            if layout.align() <= WORD {
                mi::mi_malloc(layout.size()).cast()
            } else {
                mi::mi_malloc_aligned(layout.size(), layout.align()).cast()
            }
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        unsafe {
            if layout.align() <= WORD {
                mi::mi_zalloc(layout.size()).cast()
            } else {
                mi::mi_zalloc_aligned(layout.size(), layout.align()).cast()
            }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        // SAFETY: `ptr` came from this allocator, so from mimalloc.
        unsafe { mi::mi_free(ptr.cast::<c_void>()) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr` came from this allocator with `layout`; the new block keeps its
        // alignment as `alloc` would give it.
        unsafe {
            if layout.align() <= WORD {
                mi::mi_realloc(ptr.cast::<c_void>(), new_size).cast()
            } else {
                mi::mi_realloc_aligned(ptr.cast::<c_void>(), new_size, layout.align()).cast()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Blocks of every size up to a few pages, at every alignment up to 4 KiB, are aligned,
    /// writable, keep their contents when grown and shrunk, and zeroed ones are zero.
    #[test]
    fn blocks_honour_their_layouts() {
        let a = Allocator;
        for align in [1, 2, 4, 8, 16, 32, 64, 4096] {
            for size in (1..=300).chain([1000, 4096, 10_000, 100_000]) {
                let layout = Layout::from_size_align(size, align).expect("layout");
                // SAFETY: a non-zero size; every pointer is used within its layout and freed once.
                unsafe {
                    let p = a.alloc(layout);
                    assert!(!p.is_null());
                    assert_eq!(p as usize % align, 0, "size {size}, align {align}");
                    p.write_bytes(0xAB, size);
                    let grown = a.realloc(p, layout, size * 3);
                    assert_eq!(grown as usize % align, 0, "grown: size {size}, align {align}");
                    assert!((0..size).all(|i| *grown.add(i) == 0xAB));
                    let bigger = Layout::from_size_align(size * 3, align).expect("layout");
                    let shrunk = a.realloc(grown, bigger, size / 2 + 1);
                    assert_eq!(shrunk as usize % align, 0, "shrunk: size {size}, align {align}");
                    assert!((0..size / 2 + 1).all(|i| *shrunk.add(i) == 0xAB));
                    a.dealloc(shrunk, Layout::from_size_align(size / 2 + 1, align).expect("layout"));
                    let z = a.alloc_zeroed(layout);
                    assert_eq!(z as usize % align, 0);
                    assert!((0..size).all(|i| *z.add(i) == 0));
                    a.dealloc(z, layout);
                }
            }
        }
    }
}
