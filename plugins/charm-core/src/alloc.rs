//! The plugins' global allocator: size classes over bump-allocated chunks.
//!
//! A plugin instance runs one event and is then dropped with its whole linear memory, so
//! memory never has to return to a shared pool. What costs is the number of calls: a
//! pebble-ready run makes thousands of small allocations (config values, parameter names,
//! rendered lines, lowered capability results), and wasi-libc's dlmalloc spent about a tenth
//! of a fuzz execution in `malloc` and `free` (boundary tags, bins, coalescing).
//!
//! Freed small blocks stay in their class (at worst a run holds every class's own peak at
//! once); a plugin's working set is far below its memory limit, and the instance goes away.
//!
//! Rust gives the size back on `dealloc`, so a small block needs no header: each size class
//! keeps a free list threaded through its free blocks, and a fresh block comes from the end
//! of the current chunk. Blocks above [`MAX_SMALL`] bytes, or aligned above 16, go to wasi-libc's
//! allocator (`System`), which also supplies the chunks, so both share one heap and one
//! memory limit: a refused growth is a null pointer, and Rust's usual "memory allocation of
//! N bytes failed" abort follows.
//!
//! The classes are 16-byte steps up to 256 bytes, so a block has under 16 bytes of slack and a
//! run touches few more pages than under dlmalloc alone (every page touched is a page the host
//! resets after the event).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::UnsafeCell;
use std::ptr::{self, NonNull};

/// The largest size served from the classes. Larger blocks (Vecs of records, rendered files)
/// are fewer, and in dlmalloc they share freed space across sizes: with classes up to 4 KiB a
/// pebble-ready run touched more pages, and resetting them after the event cost more system
/// time than the classes saved (A/B, `charm-host fuzz`).
pub const MAX_SMALL: usize = 256;
/// Chunk size: 16 KiB, four of the host's 4 KiB pages (a quarter of a wasm page).
const CHUNK: usize = 16 << 10;
const ALIGN: usize = 16;
/// 16-byte steps: 16, 32, ..., 256.
const CLASSES: usize = MAX_SMALL / ALIGN;

/// Class index and block size for a request of `size` bytes (1..=MAX_SMALL).
#[inline]
const fn class_of(size: usize) -> (usize, usize) {
    let i = size.div_ceil(ALIGN); // 1..=CLASSES
    (i - 1, i * ALIGN)
}

struct State {
    free: [*mut u8; CLASSES],
    next: *mut u8,
    end: *mut u8,
}

pub struct ClassAlloc {
    state: UnsafeCell<State>,
}

// Plugins are single-threaded wasm instances (wasm32-wasip2 has no threads).
unsafe impl Sync for ClassAlloc {}

impl ClassAlloc {
    pub const fn new() -> ClassAlloc {
        ClassAlloc {
            state: UnsafeCell::new(State {
                free: [ptr::null_mut(); CLASSES],
                next: ptr::null_mut(),
                end: ptr::null_mut(),
            }),
        }
    }

    #[inline]
    fn small(layout: Layout) -> bool {
        layout.size() <= MAX_SMALL && layout.align() <= ALIGN && layout.size() != 0
    }

    #[inline]
    unsafe fn alloc_small(&self, size: usize) -> *mut u8 {
        let st = unsafe { &mut *self.state.get() };
        let (class, block) = class_of(size);
        let head = st.free[class];
        if !head.is_null() {
            // The free block's first word holds the next free block of its class.
            st.free[class] = unsafe { *(head as *mut *mut u8) };
            return head;
        }
        if (st.end as usize) - (st.next as usize) < block {
            // The chunk's tail (under 256 bytes) is left unused.
            let chunk = unsafe { System.alloc(Layout::from_size_align_unchecked(CHUNK, ALIGN)) };
            if chunk.is_null() {
                return chunk;
            }
            st.next = chunk;
            st.end = unsafe { chunk.add(CHUNK) };
        }
        let p = st.next;
        st.next = unsafe { p.add(block) };
        p
    }

    #[inline]
    unsafe fn free_small(&self, p: *mut u8, size: usize) {
        let st = unsafe { &mut *self.state.get() };
        let (class, _) = class_of(size);
        unsafe { *(p as *mut *mut u8) = st.free[class] };
        st.free[class] = p;
    }
}

impl Default for ClassAlloc {
    fn default() -> Self {
        Self::new()
    }
}

unsafe impl GlobalAlloc for ClassAlloc {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if Self::small(layout) {
            unsafe { self.alloc_small(layout.size()) }
        } else {
            unsafe { System.alloc(layout) }
        }
    }

    #[inline]
    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        if Self::small(layout) {
            unsafe { self.free_small(p, layout.size()) }
        } else {
            unsafe { System.dealloc(p, layout) }
        }
    }

    unsafe fn realloc(&self, p: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let new = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        match (Self::small(layout), Self::small(new)) {
            // Both in System's heap: it may grow in place.
            (false, false) => unsafe { System.realloc(p, layout, new_size) },
            // The same class: the block already has room.
            (true, true) if class_of(layout.size()).0 == class_of(new_size).0 => p,
            _ => {
                let q = unsafe { self.alloc(new) };
                if let Some(q) = NonNull::new(q) {
                    let n = layout.size().min(new_size);
                    unsafe {
                        ptr::copy_nonoverlapping(p, q.as_ptr(), n);
                        self.dealloc(p, layout);
                    }
                }
                q
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_cover_every_small_size_with_under_16_bytes_of_slack() {
        for size in 1..=MAX_SMALL {
            let (class, block) = class_of(size);
            assert!(class < CLASSES, "size {size}: class {class}");
            assert!(
                block >= size && block - size < ALIGN,
                "size {size}: block {block}"
            );
            assert_eq!(block % ALIGN, 0, "size {size}: block {block}");
        }
        assert_eq!(class_of(MAX_SMALL), (CLASSES - 1, MAX_SMALL));
    }

    #[test]
    fn freed_blocks_are_reused_by_their_class_and_contents_survive_realloc() {
        let a = ClassAlloc::new();
        unsafe {
            let l = Layout::from_size_align(40, 8).unwrap();
            let p = a.alloc(l);
            let q = a.alloc(l);
            assert_ne!(p, q);
            a.dealloc(p, l);
            assert_eq!(a.alloc(l), p, "the freed block comes back first");
            // Same class (40 and 48 bytes share the 48-byte class): in place.
            assert_eq!(a.realloc(p, l, 48), p);
            // Growing out of the class, and out of the small sizes: contents kept.
            for i in 0..40 {
                *q.add(i) = i as u8;
            }
            let r = a.realloc(q, l, 200);
            let big = a.realloc(r, Layout::from_size_align(200, 8).unwrap(), 10_000);
            for i in 0..40 {
                assert_eq!(*big.add(i), i as u8);
            }
            a.dealloc(big, Layout::from_size_align(10_000, 8).unwrap());
        }
    }
}
