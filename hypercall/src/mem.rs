//! Kernel memory (`rumpuser_malloc`, `rumpuser_anonmmap` and their frees).

use std::ffi::c_void;
use std::ptr;

use parking_lot::Mutex;

use crate::errno::{HyResult, NetbsdErrno, nb};

/// Blocks of at least this size are kept when freed, for the next
/// allocation of their size class: the kernel's pager windows (a block per
/// block I/O, copied to and from the pages) would otherwise fault in and
/// zero fresh host memory on every I/O.
const CACHED_MIN: usize = 64 << 10;
/// The largest size class kept.
const CACHED_MAX: usize = 16 << 20;
/// Size classes: powers of two from [`CACHED_MIN`] to [`CACHED_MAX`].
const CLASSES: usize = (CACHED_MAX.trailing_zeros() - CACHED_MIN.trailing_zeros()) as usize + 1;
/// Bytes kept at most, all classes together.
const CACHED_BUDGET: usize = 64 << 20;
/// Alignment of cached blocks (any smaller alignment is served by them).
const CACHED_ALIGN: usize = 4096;

/// Freed large blocks by size class (addresses), and their total size.
struct Cache {
    free: [Vec<usize>; CLASSES],
    bytes: usize,
}

static CACHE: Mutex<Cache> = Mutex::new(Cache {
    free: [const { Vec::new() }; CLASSES],
    bytes: 0,
});

/// The kernel's page size: its page-cache pages are allocated one by one,
/// page-aligned.
const PAGE: usize = 4096;
/// Pages are taken from the host this many at a time, populated at once:
/// one fault-free mapping instead of a heap growth (an `mprotect`) and two
/// faults per page.
const PAGE_CHUNK: usize = 512;
/// Free pages kept as they are; a page freed beyond them has its memory
/// given back to the host (`MADV_FREE`) and is kept for reuse.
const PAGES_KEPT: usize = 16384;

/// Free kernel pages (addresses).
static PAGES: Mutex<Vec<usize>> = Mutex::new(Vec::new());

/// A page from the pool, refilled by a populated chunk when empty.
fn page_alloc() -> HyResult<*mut c_void> {
    let mut pages = PAGES.lock();
    if let Some(p) = pages.pop() {
        return Ok(p as *mut c_void);
    }
    let len = PAGE * PAGE_CHUNK;
    // SAFETY: a new anonymous mapping; it is never unmapped (its pages
    // stay the pool's or the kernel's).
    let chunk = unsafe {
        libc::mmap(
            ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANON | MAP_POPULATE,
            -1,
            0,
        )
    };
    if chunk == libc::MAP_FAILED {
        return Err(NetbsdErrno::last_os_error());
    }
    let base = chunk as usize;
    pages.extend((1..PAGE_CHUNK).map(|i| base + i * PAGE));
    Ok(chunk)
}

/// Returns a page to the pool.
fn page_free(p: *mut c_void) {
    let mut pages = PAGES.lock();
    if pages.len() >= PAGES_KEPT {
        // SAFETY: the page is the pool's again; the host may reclaim its
        // memory (it reads back as zeros or as it was).
        unsafe { libc::madvise(p, PAGE, MADV_FREE) };
    }
    pages.push(p as usize);
}

#[cfg(target_os = "linux")]
const MAP_POPULATE: i32 = libc::MAP_POPULATE;
#[cfg(not(target_os = "linux"))]
const MAP_POPULATE: i32 = 0;
#[cfg(target_os = "linux")]
const MADV_FREE: i32 = libc::MADV_FREE;
#[cfg(not(target_os = "linux"))]
const MADV_FREE: i32 = libc::MADV_DONTNEED;

/// The class of a block of `len` bytes allocated by [`alloc`], if cached.
fn class_of(len: usize) -> Option<usize> {
    (CACHED_MIN..=CACHED_MAX)
        .contains(&len)
        .then(|| (len.next_power_of_two().trailing_zeros() - CACHED_MIN.trailing_zeros()) as usize)
}

/// Allocates `len` bytes aligned to `align` (0: pointer alignment).
/// Returns `ENOMEM` when the host has no memory, `EINVAL` for an alignment
/// that is not a power of two.
pub fn alloc(len: usize, align: usize) -> HyResult<*mut c_void> {
    if align != 0 && !align.is_power_of_two() {
        return Err(NetbsdErrno(nb::EINVAL));
    }
    if len == PAGE && align <= PAGE {
        return page_alloc();
    }
    // A block of a cached size class is always allocated whole, so that
    // whatever its alignment it serves any request of its class later.
    let class = class_of(len);
    if let Some(class) = class
        && align <= CACHED_ALIGN
    {
        let mut cache = CACHE.lock();
        if let Some(p) = cache.free[class].pop() {
            cache.bytes -= CACHED_MIN << class;
            return Ok(p as *mut c_void);
        }
    }
    let (len, align) = match class {
        Some(class) => (CACHED_MIN << class, align.max(CACHED_ALIGN)),
        None => (len, align.max(size_of::<*mut c_void>())),
    };
    let mut p = ptr::null_mut();
    // SAFETY: `p` is a valid out-pointer; `align` is a power of two and a
    // multiple of the pointer size.
    match unsafe { libc::posix_memalign(&raw mut p, align, len.max(1)) } {
        0 => Ok(p),
        e => Err(NetbsdErrno::from_host(e)),
    }
}

/// Frees memory from [`alloc`] of `len` bytes (a large block is kept for
/// the next allocation of its size class while the cache has room).
///
/// # Safety
/// `p` must come from [`alloc`] of `len` bytes and not be used afterwards.
pub unsafe fn free(p: *mut c_void, len: usize) {
    if len == PAGE {
        return page_free(p);
    }
    if let Some(class) = class_of(len) {
        let mut cache = CACHE.lock();
        if cache.bytes + (CACHED_MIN << class) <= CACHED_BUDGET {
            cache.bytes += CACHED_MIN << class;
            cache.free[class].push(p as usize);
            return;
        }
    }
    // SAFETY: the caller's contract.
    unsafe { libc::free(p) };
}

/// Maps `size` bytes of anonymous private memory, read-write (and
/// executable if `exec`), aligned to `1 << alignbit`, near `hint`.
pub fn anon_map(hint: usize, size: usize, alignbit: u32, exec: bool) -> HyResult<*mut c_void> {
    if size == 0 || alignbit >= usize::BITS {
        return Err(NetbsdErrno(nb::EINVAL));
    }
    let align = 1usize << alignbit;
    let prot = libc::PROT_READ | libc::PROT_WRITE | if exec { libc::PROT_EXEC } else { 0 };
    let page = crate::sys::page_size();
    let extra = if align > page { align } else { 0 };
    let total = size.checked_add(extra).ok_or(NetbsdErrno(nb::ENOMEM))?;
    // SAFETY: an anonymous mapping touches no existing memory; `hint` is
    // only a hint (no MAP_FIXED).
    let p = unsafe {
        libc::mmap(
            hint as *mut c_void,
            total,
            prot,
            libc::MAP_PRIVATE | libc::MAP_ANON,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(NetbsdErrno::last_os_error());
    }
    if extra == 0 {
        return Ok(p);
    }
    let start = p as usize;
    let aligned = start.next_multiple_of(align);
    let head = aligned - start;
    let tail = extra - head;
    // SAFETY: both ranges lie inside the mapping made above and are not
    // handed out.
    unsafe {
        if head > 0 {
            libc::munmap(p, head);
        }
        if tail > 0 {
            libc::munmap((aligned + size) as *mut c_void, tail);
        }
    }
    Ok(aligned as *mut c_void)
}

/// Unmaps memory from [`anon_map`].
///
/// # Safety
/// `[p, p+len)` must be a mapping from [`anon_map`] not used afterwards.
pub unsafe fn unmap(p: *mut c_void, len: usize) -> HyResult<()> {
    // SAFETY: the caller's contract.
    if unsafe { libc::munmap(p, len) } == 0 {
        Ok(())
    } else {
        Err(NetbsdErrno::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_blocks_are_kept_by_size_class() {
        assert_eq!(class_of(CACHED_MIN), Some(0));
        assert_eq!(class_of(CACHED_MIN + 1), Some(1));
        assert_eq!(class_of(CACHED_MAX), Some(CLASSES - 1));
        assert_eq!(class_of(CACHED_MAX + 1), None);
        assert_eq!(class_of(PAGE), None);
        // A block is its whole class, whatever its alignment, so any
        // later request of the class fits in it.
        let p = alloc(100_000, 8192).unwrap();
        assert_eq!(p as usize % 8192, 0);
        // SAFETY: the block is the class's 128 KiB, ours.
        unsafe { ptr::write_bytes(p.cast::<u8>(), 0xa5, 128 << 10) };
        // SAFETY: from `alloc` of that length.
        unsafe { free(p, 100_000) };
        let q = alloc(128 << 10, 0).unwrap();
        assert_eq!(q as usize % CACHED_ALIGN, 0);
        // SAFETY: as above.
        unsafe {
            ptr::write_bytes(q.cast::<u8>(), 0x5a, 128 << 10);
            free(q, 128 << 10);
        }
        // What is kept stays within the budget.
        let many: Vec<_> = (0..100).map(|_| alloc(1 << 20, 0).unwrap()).collect();
        for p in many {
            // SAFETY: from `alloc` of that length.
            unsafe { free(p, 1 << 20) };
        }
        assert!(CACHE.lock().bytes <= CACHED_BUDGET);
    }

    #[test]
    fn pages_are_aligned_distinct_and_reused() {
        let n = PAGE_CHUNK + 100;
        let pages: Vec<_> = (0..n).map(|_| alloc(PAGE, PAGE).unwrap()).collect();
        for (i, &p) in pages.iter().enumerate() {
            assert_eq!(p as usize % PAGE, 0);
            // SAFETY: a page of ours.
            unsafe { ptr::write_bytes(p.cast::<u8>(), i as u8, PAGE) };
        }
        for (i, &p) in pages.iter().enumerate() {
            // SAFETY: as above; no other page overlaps it.
            let page = unsafe { std::slice::from_raw_parts(p.cast::<u8>(), PAGE) };
            assert!(page.iter().all(|&b| b == i as u8), "page {i} overlapped");
        }
        for &p in &pages {
            // SAFETY: from `alloc` of a page.
            unsafe { free(p, PAGE) };
        }
        let again: Vec<_> = (0..n).map(|_| alloc(PAGE, 0).unwrap()).collect();
        let mut sorted: Vec<_> = again.iter().map(|&p| p as usize).collect();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), n);
        for p in again {
            // SAFETY: as above.
            unsafe { free(p, PAGE) };
        }
    }
}
