//! No heap allocation per call on one thread: the kernels work in their callers' buffers,
//! on the stack and in a per-thread scratch row allocated by a thread's first call. A counting allocator (this binary's global allocator) counts the
//! allocations each thread makes.

use crate::common::kernels;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use xent::CrossEntropy;

/// The system allocator, counting each thread's allocations.
pub struct Counting;

thread_local! {
    // Const-initialised and without a destructor: reading it never allocates.
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

fn count() {
    let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
}

// SAFETY: every method forwards to `System` unchanged; counting touches no allocation.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: the caller's obligations, forwarded.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
}

/// How many allocations this thread makes while running `f`.
fn allocations_in(f: impl FnOnce()) -> usize {
    let before = ALLOCATIONS.with(Cell::get);
    f();
    ALLOCATIONS.with(Cell::get) - before
}

/// Every path (row groups, grouped rows, staged, linked, online and blocked rows), every
/// kernel, with and without a gradient, in place and into a buffer, plain and with label
/// smoothing (linked and online rows are plain only): no allocation on one thread after
/// the first call.
#[test]
fn one_thread_calls_do_not_allocate() {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    for (rows, c) in [
        (70usize, 3usize),
        (9, 100),
        (5, 1000),
        (5, 4000),
        (5, 20_000),
        (3, 40_000),
        (2, 140_000),
    ] {
        let z: Vec<f32> = (0..rows * c).map(|i| (i % 13) as f32 * 0.3 - 2.0).collect();
        let t: Vec<u32> = (0..rows as u32).map(|r| r * 31 % c as u32).collect();
        let (mut g, mut g2) = (z.clone(), vec![0.0; z.len()]);
        for (k, smooth) in kernels().into_iter().flat_map(|k| [(k, 0.0), (k, 0.05)]) {
            let ce = CrossEntropy::new(c).kernel(k).label_smoothing(smooth);
            pool.install(|| {
                let mut calls = || {
                    g.copy_from_slice(&z);
                    ce.forward_backward(&mut g, &t).unwrap();
                    ce.forward_backward_into(&z, &t, &mut g2).unwrap();
                    ce.forward(&z, &t).unwrap();
                };
                calls(); // warm-up: the kernel choice is made once per process
                let n = allocations_in(calls);
                assert_eq!(n, 0, "{k:?} {rows}x{c} eps {smooth}: {n} allocations");
            });
        }
    }
}
