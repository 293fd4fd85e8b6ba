//! Physical DMA addressing before any device is open: `dma_map` locks the
//! pages and only locked pages have bus addresses (a page not held in
//! place may move under a device). Its own process: the addressing is
//! chosen once per process.

#![cfg(target_os = "linux")]

use std::alloc::{Layout, alloc_zeroed, dealloc};

use hypercall::pci::{self, DmaAddressing};

const PAGE: usize = 4096;

/// Whether this process can read its page frames (root).
fn frames_visible() -> bool {
    use std::os::unix::fs::FileExt;
    let probe = Box::new(1u8);
    let va = &raw const *probe as usize;
    let mut e = [0u8; 8];
    std::fs::File::open("/proc/self/pagemap")
        .and_then(|f| f.read_exact_at(&mut e, (va / PAGE * 8) as u64))
        .is_ok_and(|()| u64::from_ne_bytes(e) & ((1 << 55) - 1) != 0)
}

#[test]
fn only_pages_dma_map_locked_have_bus_addresses_until_unmapped() {
    if !frames_visible() {
        println!("skipped: page frames are not readable (not root)");
        return;
    }
    pci::set_dma_addressing(DmaAddressing::Physical).unwrap();
    let layout = Layout::from_size_align(4 * PAGE, PAGE).unwrap();
    // SAFETY: a non-zero size.
    let base = unsafe { alloc_zeroed(layout) };
    assert!(!base.is_null());
    let page = |i: usize| base.wrapping_add(i * PAGE);

    // Memory no one mapped for DMA has no bus address, resident or not.
    assert_eq!(pci::virt_to_bus(page(0)), None);
    assert!(pci::dma_segments(page(0), PAGE).is_err());
    assert!(pci::dma_unmap(page(0), PAGE).is_err());

    // Two ranges sharing page 1.
    // SAFETY: the allocation outlives both mappings.
    unsafe {
        pci::dma_map(page(0), 2 * PAGE).unwrap();
        pci::dma_map(page(1), 2 * PAGE).unwrap();
    }
    for i in 0..3 {
        let bus = pci::virt_to_bus(page(i).wrapping_add(12)).expect("a locked page");
        assert_eq!(bus % PAGE as u64, 12);
    }
    assert_eq!(pci::virt_to_bus(page(3)), None);
    let pieces = pci::dma_segments(page(1), 2 * PAGE).unwrap();
    assert_eq!(pieces.iter().map(|p| p.0).sum::<usize>(), 2 * PAGE);

    // Unmapping the first range leaves the page the second still holds.
    pci::dma_unmap(page(0), 2 * PAGE).unwrap();
    assert_eq!(pci::virt_to_bus(page(0)), None);
    assert!(pci::virt_to_bus(page(1)).is_some());
    assert!(pci::virt_to_bus(page(2)).is_some());
    // A range only partly locked is not a mapping.
    assert!(pci::dma_unmap(page(0), 2 * PAGE).is_err());
    pci::dma_unmap(page(1), 2 * PAGE).unwrap();
    assert_eq!(pci::virt_to_bus(page(1)), None);
    assert!(pci::dma_unmap(page(1), 2 * PAGE).is_err());

    // SAFETY: allocated above with this layout; no mapping remains.
    unsafe { dealloc(base, layout) };
}
