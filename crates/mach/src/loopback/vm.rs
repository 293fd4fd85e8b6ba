//! The loopback kernel's `vm_allocate`: page-aligned zeroed regions, kept
//! in a table with their owner (a task's space, or the kernel while the
//! region travels in a message), so a task can only free its own regions
//! and a region handed over in a message moves without being copied.
//! Freed regions stay mapped in a bounded cache for reuse, as a real
//! kernel's warm pages would.

use std::alloc::{Layout, alloc, alloc_zeroed, dealloc};
use std::collections::BTreeMap;
use std::sync::Mutex;

use crate::kern::KernReturn;

const PAGE: usize = 4096;

/// Who holds a region: a task's space id, or `None` for the kernel.
pub type Owner = Option<u64>;

/// Bytes of freed regions kept mapped for reuse.
const CACHE_BYTES: usize = 64 << 20;

/// Regions handed out, by start address.
#[derive(Debug, Default)]
pub struct Vm {
    regions: Mutex<BTreeMap<u64, (Layout, Owner)>>,
    /// Freed regions kept mapped (at most [`CACHE_BYTES`]), so a stream of
    /// same-sized transfers does not fault fresh pages in every time.
    cache: Mutex<Cache>,
}

/// Freed regions by layout, and the bytes they hold.
#[derive(Debug, Default)]
struct Cache {
    free: BTreeMap<usize, Vec<u64>>,
    bytes: usize,
}

impl Drop for Vm {
    fn drop(&mut self) {
        let cache = self.cache.get_mut().expect("vm cache lock");
        for (&size, addrs) in &cache.free {
            let layout = Layout::from_size_align(size, PAGE).expect("cached layout");
            for &a in addrs {
                // SAFETY: cached regions are in no table and referred to by
                // no task; each is freed once.
                unsafe { dealloc(a as *mut u8, layout) };
            }
        }
    }
}

impl Vm {
    /// Regions not yet freed.
    pub fn regions(&self) -> usize {
        self.regions.lock().expect("vm lock").len()
    }

    /// Rounds to whole pages.
    pub fn round(size: usize) -> usize {
        size.div_ceil(PAGE).max(1) * PAGE
    }

    /// A cached region of exactly `layout`, if one is kept.
    fn reuse(&self, layout: Layout) -> Option<*mut u8> {
        let mut cache = self.cache.lock().expect("vm cache lock");
        let addr = cache.free.get_mut(&layout.size())?.pop()?;
        cache.bytes -= layout.size();
        Some(addr as *mut u8)
    }

    /// Frees a region taken out of the table, or keeps it for reuse.
    ///
    /// # Safety
    /// `addr` was allocated with `layout`, is in no table, and nothing
    /// refers to it any more.
    unsafe fn release(&self, addr: u64, layout: Layout) {
        let mut cache = self.cache.lock().expect("vm cache lock");
        if cache.bytes + layout.size() <= CACHE_BYTES {
            cache.bytes += layout.size();
            cache.free.entry(layout.size()).or_default().push(addr);
        } else {
            // SAFETY: the caller's contract; freed once.
            unsafe { dealloc(addr as *mut u8, layout) };
        }
    }

    /// A region of at least `size` bytes for `owner`: zeroed, or with
    /// `zero` false, a reused region keeps the bytes of its last owner in
    /// its first `size` bytes (for a caller that overwrites them before
    /// they are read or sent); the rest of its last page is zeroed.
    pub fn allocate(&self, size: usize, owner: Owner, zero: bool) -> Result<u64, KernReturn> {
        let layout = Self::layout(size)?;
        let p = match self.reuse(layout) {
            // SAFETY: a cached region of `layout`, ours alone; `size` is
            // within it.
            Some(p) => unsafe {
                let from = if zero { 0 } else { size };
                std::ptr::write_bytes(p.add(from), 0, layout.size() - from);
                p
            },
            // SAFETY: the layout has a non-zero size.
            None => unsafe { alloc_zeroed(layout) },
        };
        self.record(p, layout, owner)
    }

    /// A region for `owner` holding a copy of the `n` bytes at `src`, the
    /// rest of its last page zeroed (one pass over the memory, not a
    /// zeroing pass and then a copy).
    ///
    /// # Safety
    /// `src` must be readable for `n` bytes, and `n` must not be zero.
    pub unsafe fn copy(&self, src: *const u8, n: usize, owner: Owner) -> Result<u64, KernReturn> {
        let layout = Self::layout(n)?;
        // SAFETY: the layout has a non-zero size.
        let p = self
            .reuse(layout)
            .unwrap_or_else(|| unsafe { alloc(layout) });
        if p.is_null() {
            return Err(KernReturn::RESOURCE_SHORTAGE);
        }
        // SAFETY: `p` is ours alone and `layout.size() >= n`; the caller vouches
        // for `src`; the tail written is inside the allocation.
        unsafe {
            std::ptr::copy_nonoverlapping(src, p, n);
            std::ptr::write_bytes(p.add(n), 0, layout.size() - n);
        }
        self.record(p, layout, owner)
    }

    /// Whole, page-aligned pages for `size` bytes.
    fn layout(size: usize) -> Result<Layout, KernReturn> {
        Layout::from_size_align(Self::round(size), PAGE).map_err(|_| KernReturn::NO_SPACE)
    }

    /// Enters a region just allocated (null: allocation failed) in the table.
    fn record(&self, p: *mut u8, layout: Layout, owner: Owner) -> Result<u64, KernReturn> {
        if p.is_null() {
            return Err(KernReturn::RESOURCE_SHORTAGE);
        }
        let addr = p as u64;
        self.regions
            .lock()
            .expect("vm lock")
            .insert(addr, (layout, owner));
        Ok(addr)
    }

    /// Whether `[addr, addr+size)` is exactly one region of `owner`.
    pub fn owns(&self, owner: Owner, addr: u64, size: usize) -> bool {
        self.regions
            .lock()
            .expect("vm lock")
            .get(&addr)
            .is_some_and(|(l, o)| l.size() == Self::round(size) && *o == owner)
    }

    /// Hands a whole region of `from` to `to`.
    pub fn transfer(&self, addr: u64, from: Owner, to: Owner) -> bool {
        match self.regions.lock().expect("vm lock").get_mut(&addr) {
            Some((_, o)) if *o == from => {
                *o = to;
                true
            }
            _ => false,
        }
    }

    /// Frees a whole region of `owner`.
    pub fn deallocate(&self, owner: Owner, addr: u64, size: usize) -> KernReturn {
        if size == 0 {
            return KernReturn::SUCCESS;
        }
        let mut regions = self.regions.lock().expect("vm lock");
        match regions.get(&addr) {
            Some((l, o)) if l.size() == Self::round(size) && *o == owner => {
                let l = *l;
                regions.remove(&addr);
                // SAFETY: the region was allocated with this layout and is
                // removed from the table, so it is released once.
                unsafe { self.release(addr, l) };
                KernReturn::SUCCESS
            }
            _ => KernReturn::INVALID_ADDRESS,
        }
    }

    /// Frees every region of `owner` (its task died).
    pub fn free_all(&self, owner: Owner) {
        let mut regions = self.regions.lock().expect("vm lock");
        let mine: Vec<u64> = regions
            .iter()
            .filter(|(_, (_, o))| *o == owner)
            .map(|(a, _)| *a)
            .collect();
        for a in mine {
            let (l, _) = regions.remove(&a).expect("region");
            // SAFETY: removed from the table; released once.
            unsafe { self.release(a, l) };
        }
    }
}
