//! The loopback kernel's `vm_allocate`: page-aligned zeroed regions, kept
//! in a table so `vm_deallocate` and out-of-line deallocation find them.

use std::alloc::{Layout, alloc_zeroed, dealloc};
use std::collections::BTreeMap;
use std::sync::Mutex;

use crate::kern::KernReturn;

const PAGE: usize = 4096;

/// Regions handed out, by start address.
#[derive(Debug, Default)]
pub struct Vm {
    regions: Mutex<BTreeMap<u64, Layout>>,
}

impl Vm {
    /// Regions handed out and not yet freed.
    pub fn regions(&self) -> usize {
        self.regions.lock().expect("vm lock").len()
    }

    /// Rounds to whole pages.
    pub fn round(size: usize) -> usize {
        size.div_ceil(PAGE).max(1) * PAGE
    }

    /// A zeroed region of at least `size` bytes.
    pub fn allocate(&self, size: usize) -> Result<u64, KernReturn> {
        let layout =
            Layout::from_size_align(Self::round(size), PAGE).map_err(|_| KernReturn::NO_SPACE)?;
        // SAFETY: the layout has a non-zero size.
        let p = unsafe { alloc_zeroed(layout) };
        if p.is_null() {
            return Err(KernReturn::RESOURCE_SHORTAGE);
        }
        let addr = p as u64;
        self.regions.lock().expect("vm lock").insert(addr, layout);
        Ok(addr)
    }

    /// Whether `[addr, addr+size)` is exactly one region handed out.
    pub fn owns(&self, addr: u64, size: usize) -> bool {
        self.regions
            .lock()
            .expect("vm lock")
            .get(&addr)
            .is_some_and(|l| l.size() == Self::round(size))
    }

    /// Frees a whole region.
    pub fn deallocate(&self, addr: u64, size: usize) -> KernReturn {
        if size == 0 {
            return KernReturn::SUCCESS;
        }
        let mut regions = self.regions.lock().expect("vm lock");
        match regions.get(&addr) {
            Some(l) if l.size() == Self::round(size) => {
                let l = *l;
                regions.remove(&addr);
                // SAFETY: the region was allocated with this layout and is
                // removed from the table, so it is freed once.
                unsafe { dealloc(addr as *mut u8, l) };
                KernReturn::SUCCESS
            }
            _ => KernReturn::INVALID_ADDRESS,
        }
    }
}
