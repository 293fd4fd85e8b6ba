//! Component discovery (`rumpuser_dl_bootstrap`).
//!
//! Statically linked components are found by the kernel itself through its
//! own link sets (or register from constructors in `RUMP_USE_CTOR` builds).
//! Components in shared objects loaded into the process carry their own
//! link sets; this walks every loaded object and hands their
//! `link_set_modules` and `link_set_rump_components` entries to the kernel,
//! as the reference host does. Objects without link sets are skipped, so a
//! process with none at all is a no-op.

use std::collections::HashSet;
use std::ffi::{CStr, CString, c_int, c_void};

/// One link set found in a loaded object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LinkSet {
    /// First entry (an array of pointers).
    pub start: *const *const c_void,
    /// Number of entries.
    pub count: usize,
}

fn loaded_objects() -> Vec<(CString, usize)> {
    unsafe extern "C" fn each(
        info: *mut libc::dl_phdr_info,
        _size: libc::size_t,
        data: *mut c_void,
    ) -> c_int {
        // SAFETY: the loader hands valid info for the duration of the call;
        // `data` is the vector passed below.
        let (info, out) = unsafe { (&*info, &mut *data.cast::<Vec<(CString, usize)>>()) };
        let name = if info.dlpi_name.is_null() {
            CString::default()
        } else {
            // SAFETY: a non-null dlpi_name is a NUL-terminated string.
            unsafe { CStr::from_ptr(info.dlpi_name) }.to_owned()
        };
        out.push((name, info.dlpi_addr as usize));
        0
    }
    let mut v: Vec<(CString, usize)> = Vec::new();
    // SAFETY: `each` only reads the info and appends to `v`.
    unsafe { libc::dl_iterate_phdr(Some(each), (&raw mut v).cast()) };
    v
}

fn object_base(addr: *const c_void) -> Option<usize> {
    // SAFETY: an all-zero Dl_info is a valid out-value.
    let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
    // SAFETY: dladdr only inspects the address.
    if unsafe { libc::dladdr(addr, &raw mut info) } == 0 {
        return None;
    }
    Some(info.dli_fbase as usize)
}

/// Finds link set `name` in every loaded object that defines it itself.
#[must_use]
pub fn find_link_sets(name: &str) -> Vec<LinkSet> {
    let start_sym = CString::new(format!("__start_link_set_{name}")).expect("no NUL");
    let stop_sym = CString::new(format!("__stop_link_set_{name}")).expect("no NUL");
    let mut seen = HashSet::new();
    let mut sets = Vec::new();
    for (path, base) in loaded_objects() {
        let handle = {
            let p = if path.as_bytes().is_empty() {
                std::ptr::null()
            } else {
                path.as_ptr()
            };
            // SAFETY: RTLD_NOLOAD only returns a handle for an object that
            // is already loaded; it loads nothing.
            unsafe { libc::dlopen(p, libc::RTLD_LAZY | libc::RTLD_NOLOAD) }
        };
        if handle.is_null() {
            continue;
        }
        // SAFETY: `handle` is live; the names are NUL-terminated.
        let (start, stop) = unsafe {
            (
                libc::dlsym(handle, start_sym.as_ptr()),
                libc::dlsym(handle, stop_sym.as_ptr()),
            )
        };
        // SAFETY: balancing the dlopen above.
        unsafe { libc::dlclose(handle) };
        if start.is_null() || stop.is_null() || stop < start {
            continue;
        }
        // Only the object that defines the set itself (dlsym also searches
        // its dependencies).
        if object_base(start) != Some(base) {
            continue;
        }
        let count = (stop as usize - start as usize) / size_of::<*const c_void>();
        let set = LinkSet {
            start: start.cast(),
            count,
        };
        if count > 0 && seen.insert(set) {
            sets.push(set);
        }
    }
    sets
}

/// The entries of a link set.
///
/// # Safety
/// `set` must come from [`find_link_sets`] of an object still loaded.
#[must_use]
pub unsafe fn entries(set: LinkSet) -> Vec<*const c_void> {
    // SAFETY: the loader laid out `count` pointers from `start`.
    unsafe { std::slice::from_raw_parts(set.start, set.count) }.to_vec()
}
