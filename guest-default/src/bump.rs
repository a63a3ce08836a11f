//! The component's allocator: a bump allocator.
//!
//! The host gives every call a fresh instance and throws it away afterwards, so the general
//! allocator's bookkeeping (free lists, coalescing) is wasted work on the hot path. This one
//! hands out memory by moving a pointer forward; freeing, growing or shrinking the most recent
//! allocation happens in place (the common case for a `String` or `Vec` being built), anything
//! else is left until the instance goes. Linear memory grows as needed, so the host's memory
//! cap still applies: a refused `memory.grow` is an allocation failure (a trap the host reports
//! as out of memory). What a call can waste is bounded by what it allocates in total, a small
//! multiple of the pod's size.

use core::alloc::{GlobalAlloc, Layout};
use core::arch::wasm32;
use core::cell::{Cell, UnsafeCell};
use core::mem::MaybeUninit;

const PAGE: usize = 64 << 10;
/// Served first, from the module's own zero-initialised data: part of the instance's initial
/// memory, so a typical call never grows memory (each growth costs the host an `mprotect`,
/// and the next instance another to undo it). Pages the call does not touch cost nothing.
const ARENA_BYTES: usize = 512 << 10;

#[repr(C, align(16))]
struct Arena(UnsafeCell<[MaybeUninit<u8>; ARENA_BYTES]>);

// SAFETY: as for `Bump` below.
unsafe impl Sync for Arena {}

static ARENA: Arena = Arena(UnsafeCell::new([MaybeUninit::uninit(); ARENA_BYTES]));
/// Linear memory is grown by at least this much at a time (fewer `memory.grow` calls into the
/// host; pages the call never touches cost nothing).
const MIN_GROW_PAGES: usize = 4;

pub struct Bump {
    /// Next free byte.
    next: Cell<usize>,
    /// End of the region `next` is in.
    end: Cell<usize>,
}

// SAFETY: a wasm32-wasip2 component instance runs on one thread; nothing shares this across
// threads.
unsafe impl Sync for Bump {}

impl Bump {
    pub const fn new() -> Self {
        Bump {
            next: Cell::new(0),
            end: Cell::new(0),
        }
    }

    /// Grows linear memory so that `bytes` more fit after `next` (aligned to `align`).
    /// Returns false when the host refuses.
    fn grow(&self, bytes: usize, align: usize) -> bool {
        let Some(want) = bytes
            .checked_add(align)
            .and_then(|b| b.checked_add(PAGE - 1))
        else {
            return false;
        };
        let pages = (want / PAGE).max(MIN_GROW_PAGES);
        let old = wasm32::memory_grow(0, pages);
        if old == usize::MAX {
            return false;
        }
        let base = old * PAGE;
        // Someone else (the C library) may have grown memory since: start a new region then.
        if base != self.end.get() {
            self.next.set(base);
        }
        self.end.set(base + pages * PAGE);
        true
    }

    fn bump(&self, layout: Layout) -> Option<*mut u8> {
        if self.end.get() == 0 {
            let arena = ARENA.0.get() as usize;
            self.next.set(arena);
            self.end.set(arena + ARENA_BYTES);
        }
        let start = self.next.get().checked_next_multiple_of(layout.align())?;
        let end = start.checked_add(layout.size())?;
        if end > self.end.get() {
            return None;
        }
        self.next.set(end);
        Some(start as *mut u8)
    }
}

unsafe impl GlobalAlloc for Bump {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if let Some(p) = self.bump(layout) {
            return p;
        }
        if !self.grow(layout.size(), layout.align()) {
            return core::ptr::null_mut();
        }
        self.bump(layout).unwrap_or(core::ptr::null_mut())
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // Only the most recent allocation can be given back.
        if ptr as usize + layout.size() == self.next.get() {
            self.next.set(ptr as usize);
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let start = ptr as usize;
        if start + layout.size() == self.next.get() {
            // The most recent allocation: resize it where it is.
            if let Some(end) = start.checked_add(new_size) {
                if end <= self.end.get() {
                    self.next.set(end);
                    return ptr;
                }
                // Extend the region when the new pages land right after it.
                // (after a grow into a new region, `next` has moved and this does not apply).
                if self.grow(end - self.end.get(), 1) && self.next.get() == start + layout.size() {
                    self.next.set(end);
                    return ptr;
                }
            }
        } else if new_size <= layout.size() {
            return ptr;
        }
        // SAFETY: the caller's contract for `realloc` (non-zero size, valid align) carries over.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        // SAFETY: as above.
        let new = unsafe { self.alloc(new_layout) };
        if !new.is_null() {
            // SAFETY: both blocks are valid for the smaller size and do not overlap (the new
            // one lies past the old one's end).
            unsafe { core::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size)) };
        }
        new
    }
}
