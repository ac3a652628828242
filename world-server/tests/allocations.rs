//! A chat line costs no allocation per delivery: the fan-out to a room's members (encoded once,
//! one batch per member, the batches' buffers given back after the tick) allocates the same
//! whether the room holds 20 members or 100. Counted with an allocator that counts, on the
//! test's own thread.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

mod common;

use common::room::{room_of, say};

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static COUNTING: Counting = Counting;

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

/// The allocations of the tick in which one member says one line, the fewest of `rounds`
/// lines (each from another member); and the deliveries of each.
fn one_line(members: usize) -> (u64, usize) {
    let (mut sim, sessions) = room_of(members);
    let mut fewest = u64::MAX;
    let mut delivered = 0;
    for (n, &from) in sessions.iter().enumerate().take(10) {
        let before = allocations();
        delivered = say(&mut sim, from, 100 + n as u64);
        fewest = fewest.min(allocations() - before);
    }
    (fewest, delivered)
}

#[test]
fn a_chat_line_allocates_nothing_per_delivery() {
    let (small, to_small) = one_line(20);
    let (large, to_large) = one_line(100);
    assert_eq!(
        (to_small, to_large),
        (20, 100),
        "every member is sent the line"
    );
    assert_eq!(
        small, large,
        "a line to 100 members allocates as often as one to 20 ({small} allocations)"
    );
}
