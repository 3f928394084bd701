//! The operator's allocator sends what is built inside `alloc::long_lived`
//! to an arena of its own and everything else to jemalloc's automatic
//! arenas (src/alloc.rs). The unit tests run on the system allocator, so
//! this test installs the operator's, as `main` does.

#![cfg(not(feature = "system-allocator"))]

use std::ffi::c_void;

use dts_operator::alloc;

#[global_allocator]
static ALLOCATOR: alloc::Allocator = alloc::Allocator;

/// The arena jemalloc holds `ptr` in.
fn arena_of(ptr: *const u8) -> u32 {
    let mut arena: u32 = 0;
    let mut len = std::mem::size_of::<u32>();
    let mut p = ptr as *mut c_void;
    // SAFETY: `arenas.lookup` takes a pointer (new value) and gives the
    // arena index as an unsigned int (old value); both buffers are sized.
    let rc = unsafe {
        tikv_jemalloc_sys::mallctl(
            c"arenas.lookup".as_ptr(),
            (&mut arena as *mut u32).cast(),
            &mut len,
            (&mut p as *mut *mut c_void).cast(),
            std::mem::size_of::<*mut c_void>(),
        )
    };
    assert_eq!(rc, 0, "arenas.lookup failed");
    arena
}

#[test]
fn long_lived_allocations_get_their_own_arena_and_the_rest_do_not() {
    let before_init = alloc::long_lived(|| Box::new([1u8; 200]));
    alloc::init().expect("the arena is created");
    let ordinary = Box::new([2u8; 200]);
    let kept: Vec<Box<[u8; 200]>> = alloc::long_lived(|| (0..100).map(|i| Box::new([i as u8; 200])).collect());
    let grown = alloc::long_lived(|| {
        let mut v = Vec::with_capacity(1);
        v.extend(0..5000u32);
        v
    });
    let after = Box::new([3u8; 200]);

    let ours = arena_of(kept[0].as_ptr());
    assert_ne!(
        ours,
        arena_of(ordinary.as_ptr()),
        "an ordinary allocation is not in the arena"
    );
    assert_ne!(ours, arena_of(after.as_ptr()), "nor one after the closure returned");
    assert_ne!(ours, arena_of(before_init.as_ptr()), "before init, no arena is ours");
    assert!(
        kept.iter().all(|b| arena_of(b.as_ptr()) == ours),
        "all that was built inside is"
    );
    assert_eq!(
        arena_of(grown.as_ptr().cast()),
        ours,
        "a reallocation inside stays in it"
    );
    assert_eq!(kept[99][199], 99, "and holds what was written");

    // Frees of either kind go back to their own arena; a later allocation
    // inside reuses the arena's freed room.
    drop(kept);
    let again = alloc::long_lived(|| Box::new([4u8; 200]));
    assert_eq!(arena_of(again.as_ptr()), ours);
}
