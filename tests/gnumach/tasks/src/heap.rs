//! The global allocator: size classes of 16 bytes to 32 KiB carved from
//! 1 MiB chunks, and anything larger (or more aligned than a page)
//! directly from `vm_allocate`/`vm_deallocate`. Freed small blocks go on
//! their class's free list.

use core::alloc::{GlobalAlloc, Layout};
use core::ptr;

use mach::Ipc;
use spin::Mutex;

use crate::MACH;

const PAGE: usize = 4096;
const CLASSES: usize = 12; // 16 << 11 = 32 KiB
const MAX_SMALL: usize = 16 << (CLASSES - 1);
const CHUNK: usize = 1 << 20;

struct Small {
    free: [*mut u8; CLASSES],
    next: usize,
    end: usize,
}

// SAFETY: the raw pointers are only touched under the mutex.
unsafe impl Send for Small {}

/// The allocator.
pub struct Heap(Mutex<Small>);

fn class(layout: Layout) -> Option<usize> {
    let size = layout.size().max(layout.align()).max(16);
    (size <= MAX_SMALL).then(|| size.next_power_of_two().trailing_zeros() as usize - 4)
}

// SAFETY: blocks are disjoint (carved once from chunks no one else uses,
// or whole `vm_allocate` regions), aligned to their size class (a power of
// two at least the layout's alignment; chunks are page aligned and classes
// are carved at multiples of their size), and freed to where they came from.
unsafe impl GlobalAlloc for Heap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let Some(c) = class(layout) else {
            let size = layout.size().next_multiple_of(PAGE);
            return match MACH.vm_allocate(size) {
                Ok(a) if layout.align() <= PAGE => a as *mut u8,
                Ok(a) => {
                    // SAFETY: the region is ours; larger alignments are not used here.
                    let _ = unsafe { MACH.vm_deallocate(a, size) };
                    ptr::null_mut()
                }
                Err(_) => ptr::null_mut(),
            };
        };
        let mut s = self.0.lock();
        let head = s.free[c];
        if !head.is_null() {
            // SAFETY: a free block holds the next free block's address.
            s.free[c] = unsafe { head.cast::<*mut u8>().read_unaligned() };
            return head;
        }
        let size = 16usize << c;
        let start = s.next.next_multiple_of(size);
        if start + size > s.end || s.end == 0 {
            let Ok(a) = MACH.vm_allocate(CHUNK) else {
                return ptr::null_mut();
            };
            s.next = a as usize + size;
            s.end = a as usize + CHUNK;
            return a as *mut u8;
        }
        s.next = start + size;
        start as *mut u8
    }

    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        let Some(c) = class(layout) else {
            // SAFETY: a whole region from `alloc`.
            let _ = unsafe { MACH.vm_deallocate(p as u64, layout.size().next_multiple_of(PAGE)) };
            return;
        };
        let mut s = self.0.lock();
        // SAFETY: the block is at least 16 bytes and no longer in use.
        unsafe { p.cast::<*mut u8>().write_unaligned(s.free[c]) };
        s.free[c] = p;
    }
}

#[global_allocator]
static HEAP: Heap = Heap(Mutex::new(Small {
    free: [ptr::null_mut(); CLASSES],
    next: 0,
    end: 0,
}));
