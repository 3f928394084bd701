//! The process's allocator: jemalloc, with the allocations that live as
//! long as a DtsJob (its watch-cache entry, DTS's view of it) made in an
//! arena of their own.
//!
//! Why: a burst of stops replaces every cache entry two or three times
//! while the watch's decoding, the HTTP clients and the reconciles make and
//! free far more short-lived objects of the same sizes. In one arena the
//! entries that survive end up scattered over slabs that the short-lived
//! objects had filled, and jemalloc cannot move them: after a burst of
//! 50,000 stops the heap held 41 MiB live in 69 MiB of RSS, against 26 in
//! 42 for an operator started with the same jobs. In their own arena a
//! replaced entry's slot is taken by the next entry, so those slabs stay
//! full, and what the short-lived objects used is emptied and returned.
//!
//! [`long_lived`] marks the allocations of a closure (on this thread) as
//! such; the global allocator sends them to the arena [`init`] created,
//! bypassing the thread cache (which would hand them slots of the other
//! arenas). Frees need no mark: jemalloc finds an allocation's arena
//! itself. Without [`init`] (tests, the `system-allocator` build) the mark
//! changes nothing.

use std::cell::Cell;

thread_local! {
    /// Whether allocations on this thread are long-lived now.
    static LONG_LIVED: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f` with its allocations (on this thread) in the long-lived arena.
/// Nested calls are fine; what `f` allocates and frees again is short-lived
/// in fact, so keep the closure to building what is kept.
pub fn long_lived<T>(f: impl FnOnce() -> T) -> T {
    let _mark = LongLived::enter();
    f()
}

/// [`long_lived`] as a guard: marked from [`LongLived::enter`] until it is
/// dropped (also when unwinding), then as before.
pub struct LongLived(bool);

impl LongLived {
    pub fn enter() -> Self {
        LongLived(LONG_LIVED.try_with(|l| l.replace(true)).unwrap_or(false))
    }
}

impl Drop for LongLived {
    fn drop(&mut self) {
        let _ = LONG_LIVED.try_with(|l| l.set(self.0));
    }
}

/// Whether the current thread is inside [`long_lived`] (or a [`LongLived`]).
#[cfg_attr(feature = "system-allocator", allow(dead_code))]
fn marked() -> bool {
    LONG_LIVED.try_with(Cell::get).unwrap_or(false)
}

#[cfg(not(feature = "system-allocator"))]
pub use jemalloc::{init, Allocator};

#[cfg(feature = "system-allocator")]
/// The system allocator's build keeps no arena of its own.
pub fn init() -> Result<(), String> {
    Ok(())
}

#[cfg(not(feature = "system-allocator"))]
mod jemalloc {
    use std::alloc::{GlobalAlloc, Layout};
    use std::ffi::c_void;
    use std::sync::atomic::{AtomicI32, Ordering};

    use tikv_jemalloc_sys as ffi;
    use tikv_jemallocator::Jemalloc;

    /// The `mallocx` flags that select the long-lived arena and no thread
    /// cache; 0 until [`init`].
    static ARENA_FLAGS: AtomicI32 = AtomicI32::new(0);

    /// Creates the long-lived arena. Called once, first thing in `main`;
    /// until then (or if it fails) every allocation goes to jemalloc's
    /// automatic arenas.
    pub fn init() -> Result<(), String> {
        // SAFETY: `arenas.create` is read as an unsigned int, its type.
        let arena: u32 = unsafe { tikv_jemalloc_ctl::raw::read(b"arenas.create\0") }
            .map_err(|e| format!("creating the long-lived jemalloc arena: {e}"))?;
        ARENA_FLAGS.store(
            ffi::MALLOCX_ARENA(arena as usize) | ffi::MALLOCX_TCACHE_NONE,
            Ordering::Relaxed,
        );
        Ok(())
    }

    /// jemalloc (as `tikv_jemallocator::Jemalloc`), but what is allocated
    /// inside [`super::long_lived`] goes to the long-lived arena.
    pub struct Allocator;

    /// The flags of a long-lived allocation of `layout` (resized to
    /// `size`), or None for an ordinary one.
    #[inline]
    fn long_lived_flags(align: usize, size: usize) -> Option<i32> {
        let arena = ARENA_FLAGS.load(Ordering::Relaxed);
        if arena == 0 || !super::marked() {
            return None;
        }
        // As tikv-jemallocator: an alignment flag only where malloc's own
        // (16 bytes on 64-bit) would not do.
        let align = if align <= 16 && align <= size {
            0
        } else {
            ffi::MALLOCX_ALIGN(align)
        };
        Some(arena | align)
    }

    // SAFETY: every call is passed to jemalloc with the layout it was given
    // (frees and resizes of long-lived allocations work through either
    // path: jemalloc finds the arena from the pointer).
    unsafe impl GlobalAlloc for Allocator {
        #[inline]
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            match long_lived_flags(layout.align(), layout.size()) {
                Some(flags) => unsafe { ffi::mallocx(layout.size(), flags) as *mut u8 },
                None => unsafe { Jemalloc.alloc(layout) },
            }
        }

        #[inline]
        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            match long_lived_flags(layout.align(), layout.size()) {
                Some(flags) => unsafe { ffi::mallocx(layout.size(), flags | ffi::MALLOCX_ZERO) as *mut u8 },
                None => unsafe { Jemalloc.alloc_zeroed(layout) },
            }
        }

        #[inline]
        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            unsafe { Jemalloc.dealloc(ptr, layout) }
        }

        #[inline]
        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            match long_lived_flags(layout.align(), new_size) {
                Some(flags) => unsafe { ffi::rallocx(ptr as *mut c_void, new_size, flags) as *mut u8 },
                None => unsafe { Jemalloc.realloc(ptr, layout, new_size) },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mark_holds_inside_the_closure_only_and_nests() {
        assert!(!marked());
        let inner = long_lived(|| {
            assert!(marked());
            long_lived(marked) && marked()
        });
        assert!(inner, "still marked after a nested call returned");
        assert!(!marked());
        let caught = std::panic::catch_unwind(|| long_lived(|| panic!("inside")));
        assert!(caught.is_err());
        assert!(!marked(), "cleared when the closure unwinds");
    }
}
