//! The kernel LWP bound to each host thread (`rumpuser_curlwp`).

use std::cell::Cell;
use std::ptr;

/// Opaque `struct lwp` of the rump kernel.
#[repr(C)]
pub struct Lwp {
    _opaque: [u8; 0],
}

/// `enum rumplwpop`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LwpOp {
    /// An LWP was created (informational).
    Create,
    /// An LWP is being destroyed (informational).
    Destroy,
    /// Bind the LWP to the calling host thread.
    Set,
    /// Unbind the calling host thread's LWP.
    Clear,
}

impl LwpOp {
    /// Decodes the C enum value.
    #[must_use]
    pub fn from_raw(op: i32) -> Option<Self> {
        match op {
            0 => Some(Self::Create),
            1 => Some(Self::Destroy),
            2 => Some(Self::Set),
            3 => Some(Self::Clear),
            _ => None,
        }
    }
}

thread_local! {
    static CURLWP: Cell<*mut Lwp> = const { Cell::new(ptr::null_mut()) };
}

/// The LWP bound to the calling thread, or null.
#[inline]
#[must_use]
pub fn current() -> *mut Lwp {
    CURLWP.with(Cell::get)
}

/// Applies a `rumpuser_curlwpop` operation to the calling thread.
pub fn apply(op: LwpOp, l: *mut Lwp) {
    match op {
        LwpOp::Create | LwpOp::Destroy => {}
        LwpOp::Set => {
            debug_assert!(current().is_null(), "curlwp SET over a bound LWP");
            CURLWP.with(|c| c.set(l));
        }
        LwpOp::Clear => {
            debug_assert!(current() == l, "curlwp CLEAR of a foreign LWP");
            CURLWP.with(|c| c.set(ptr::null_mut()));
        }
    }
}
