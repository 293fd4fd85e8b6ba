//! Mutexes, reader/writer locks and condition variables with the rump
//! kernel's semantics: owner tracking by LWP, the SPIN / KMUTEX flavours,
//! and the CPU release around every wait that can block
//! (rumpuser(3), "Locks" and "Condition variables").

use std::ffi::c_void;
use std::ptr;
use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use parking_lot::lock_api::RawMutex as _;

use crate::lwp::{self, Lwp};
use crate::sched;

/// `RUMPUSER_MTX_SPIN`: never releases the CPU while waiting.
pub const MTX_SPIN: i32 = 0x01;
/// `RUMPUSER_MTX_KMUTEX`: a kernel mutex, whose owner is tracked.
pub const MTX_KMUTEX: i32 = 0x02;

/// A host mutex backing a kernel mutex (`struct rumpuser_mtx`).
#[derive(Debug)]
pub struct KernelMutex {
    raw: parking_lot::Mutex<()>,
    flags: i32,
    owner: AtomicPtr<Lwp>,
}

impl KernelMutex {
    /// A mutex with `RUMPUSER_MTX_*` flags.
    #[must_use]
    pub fn new(flags: i32) -> Self {
        Self {
            raw: parking_lot::Mutex::new(()),
            flags,
            owner: AtomicPtr::new(ptr::null_mut()),
        }
    }

    /// Created with `RUMPUSER_MTX_SPIN`.
    #[must_use]
    pub fn is_spin(&self) -> bool {
        self.flags & MTX_SPIN != 0
    }

    /// Created with `RUMPUSER_MTX_KMUTEX`.
    #[must_use]
    pub fn is_kmutex(&self) -> bool {
        self.flags & MTX_KMUTEX != 0
    }

    fn as_interlock(&self) -> *mut c_void {
        ptr::from_ref(self).cast_mut().cast()
    }

    fn raw(&self) -> &parking_lot::RawMutex {
        // SAFETY: the raw mutex is only used through this type, which keeps
        // lock and unlock paired as the kernel's contract requires.
        unsafe { self.raw.raw() }
    }

    fn took(&self) {
        if self.is_kmutex() {
            self.owner.store(lwp::current(), Ordering::Relaxed);
        }
    }

    /// `rumpuser_mutex_enter`: a SPIN mutex is taken without touching the
    /// CPU; otherwise an uncontended mutex is taken at once and a contended
    /// one with the CPU released while waiting.
    pub fn enter(&self) {
        if self.is_spin() {
            self.enter_nowrap();
            return;
        }
        if !self.raw().try_lock() {
            sched::released(|| self.raw().lock());
        }
        self.took();
    }

    /// `rumpuser_mutex_enter_nowrap`: may block the host thread, never
    /// releases the CPU (the scheduler's own locking uses it).
    pub fn enter_nowrap(&self) {
        self.raw().lock();
        self.took();
    }

    /// `rumpuser_mutex_tryenter`.
    #[must_use]
    pub fn try_enter(&self) -> bool {
        let ok = self.raw().try_lock();
        if ok {
            self.took();
        }
        ok
    }

    /// `rumpuser_mutex_exit`.
    ///
    /// # Safety
    /// The mutex must be held (taken by `enter*` or `try_enter` and not yet
    /// released).
    pub unsafe fn exit(&self) {
        self.owner.store(ptr::null_mut(), Ordering::Relaxed);
        // SAFETY: the caller holds the mutex.
        unsafe { self.raw().unlock() };
    }

    /// `rumpuser_mutex_owner`: the owning LWP of a held KMUTEX, else null.
    #[must_use]
    pub fn owner(&self) -> *mut Lwp {
        self.owner.load(Ordering::Relaxed)
    }

    /// Whether some thread holds the mutex now.
    #[must_use]
    pub fn is_locked(&self) -> bool {
        self.raw.is_locked()
    }
}

/// `enum rumprwlock`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RwMode {
    /// Shared.
    Reader,
    /// Exclusive.
    Writer,
}

impl RwMode {
    /// Decodes the C enum value.
    #[must_use]
    pub fn from_raw(v: i32) -> Option<Self> {
        match v {
            0 => Some(Self::Reader),
            1 => Some(Self::Writer),
            _ => None,
        }
    }
}

#[derive(Debug, Default)]
struct RwState {
    readers: usize,
    writer: bool,
}

/// A reader/writer lock backing a kernel rwlock (`struct rumpuser_rw`).
/// Readers are preferred, as with the reference host's pthread rwlocks, so
/// a thread that already reads can read again while a writer waits.
#[derive(Debug, Default)]
pub struct KernelRwLock {
    state: parking_lot::Mutex<RwState>,
    cv: parking_lot::Condvar,
    writer: AtomicPtr<Lwp>,
}

impl KernelRwLock {
    /// An unlocked rwlock.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    fn try_locked(&self, st: &mut RwState, mode: RwMode) -> bool {
        match mode {
            RwMode::Reader if !st.writer => st.readers += 1,
            RwMode::Writer if !st.writer && st.readers == 0 => {
                st.writer = true;
                self.writer.store(lwp::current(), Ordering::Relaxed);
            }
            _ => return false,
        }
        true
    }

    /// `rumpuser_rw_enter`: the CPU is released only if the lock is busy.
    pub fn enter(&self, mode: RwMode) {
        if self.try_enter(mode) {
            return;
        }
        sched::released(|| {
            let mut st = self.state.lock();
            while !self.try_locked(&mut st, mode) {
                self.cv.wait(&mut st);
            }
        });
    }

    /// `rumpuser_rw_tryenter`.
    #[must_use]
    pub fn try_enter(&self, mode: RwMode) -> bool {
        let mut st = self.state.lock();
        self.try_locked(&mut st, mode)
    }

    /// `rumpuser_rw_tryupgrade`: shared to exclusive, if the caller is the
    /// only reader.
    #[must_use]
    pub fn try_upgrade(&self) -> bool {
        let mut st = self.state.lock();
        if st.writer || st.readers != 1 {
            return false;
        }
        st.readers = 0;
        st.writer = true;
        self.writer.store(lwp::current(), Ordering::Relaxed);
        true
    }

    /// `rumpuser_rw_downgrade`: exclusive to shared, atomically (no writer
    /// can get in between). Never blocks.
    pub fn downgrade(&self) {
        let mut st = self.state.lock();
        debug_assert!(st.writer, "downgrade of an rwlock not held for writing");
        st.writer = false;
        st.readers += 1;
        self.writer.store(ptr::null_mut(), Ordering::Relaxed);
        drop(st);
        self.cv.notify_all();
    }

    /// `rumpuser_rw_exit`: releases whichever mode the caller holds.
    pub fn exit(&self) {
        let mut st = self.state.lock();
        if st.writer {
            st.writer = false;
            self.writer.store(ptr::null_mut(), Ordering::Relaxed);
        } else {
            debug_assert!(st.readers > 0, "exit of an unheld rwlock");
            st.readers = st.readers.saturating_sub(1);
        }
        drop(st);
        self.cv.notify_all();
    }

    /// `rumpuser_rw_held`: WRITER asks whether the calling LWP writes,
    /// READER whether anybody reads.
    #[must_use]
    pub fn held(&self, mode: RwMode) -> bool {
        let st = self.state.lock();
        match mode {
            RwMode::Writer => st.writer && self.writer.load(Ordering::Relaxed) == lwp::current(),
            RwMode::Reader => st.readers > 0,
        }
    }
}

/// A condition variable backing a kernel one (`struct rumpuser_cv`).
#[derive(Debug, Default)]
pub struct KernelCondvar {
    cv: parking_lot::Condvar,
    waiters: AtomicUsize,
}

/// How a timed wait ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitOutcome {
    /// Signalled (or a spurious wake-up, which callers must tolerate).
    Woken,
    /// The timeout passed.
    TimedOut,
}

impl KernelCondvar {
    /// A condition variable with no waiters.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    fn wait_host(&self, m: &KernelMutex, deadline: Option<Instant>) -> WaitOutcome {
        // SAFETY: the caller holds `m` (the contract of every wait below);
        // the guard is forgotten afterwards, so `m` stays held as before.
        let mut guard = unsafe { m.raw.make_guard_unchecked() };
        let outcome = match deadline {
            None => {
                self.cv.wait(&mut guard);
                WaitOutcome::Woken
            }
            Some(d) => {
                if self.cv.wait_until(&mut guard, d).timed_out() {
                    WaitOutcome::TimedOut
                } else {
                    WaitOutcome::Woken
                }
            }
        };
        std::mem::forget(guard);
        outcome
    }

    /// `rumpuser_cv_wait_nowrap`: waits without touching the CPU.
    ///
    /// # Safety
    /// The caller must hold `m`.
    pub unsafe fn wait_nowrap(&self, m: &KernelMutex) {
        self.waiters.fetch_add(1, Ordering::Relaxed);
        m.owner.store(ptr::null_mut(), Ordering::Relaxed);
        self.wait_host(m, None);
        m.took();
        self.waiters.fetch_sub(1, Ordering::Relaxed);
    }

    /// `rumpuser_cv_wait`: the CPU is released with `m` as the interlock,
    /// and taken again in the order that cannot deadlock (for a kernel spin
    /// mutex: CPU first, then the mutex).
    ///
    /// # Safety
    /// The caller must hold `m`, or `m` must be the interlock the kernel
    /// takes itself when the CPU is released (its scheduler mutex).
    pub unsafe fn wait(&self, m: &KernelMutex) {
        // SAFETY: forwarded contract.
        unsafe { self.wait_wrapped(m, None) };
    }

    /// `rumpuser_cv_timedwait` with a relative timeout, measured from
    /// before the CPU is released.
    ///
    /// # Safety
    /// As for [`KernelCondvar::wait`].
    pub unsafe fn timed_wait(&self, m: &KernelMutex, timeout: Duration) -> WaitOutcome {
        // A timeout too large for `Instant` is an untimed wait.
        let deadline = Instant::now().checked_add(timeout);
        // SAFETY: forwarded contract.
        unsafe { self.wait_wrapped(m, deadline) }
    }

    unsafe fn wait_wrapped(&self, m: &KernelMutex, deadline: Option<Instant>) -> WaitOutcome {
        self.waiters.fetch_add(1, Ordering::Relaxed);
        let cpu = sched::release_cpu(m.as_interlock());
        m.owner.store(ptr::null_mut(), Ordering::Relaxed);
        let outcome = self.wait_host(m, deadline);
        if m.is_spin() && m.is_kmutex() {
            // SAFETY: `wait_host` returned with `m` held.
            unsafe { m.raw().unlock() };
            cpu.reacquire(m.as_interlock());
            m.enter_nowrap();
        } else {
            m.took();
            cpu.reacquire(m.as_interlock());
        }
        self.waiters.fetch_sub(1, Ordering::Relaxed);
        outcome
    }

    /// `rumpuser_cv_signal`.
    pub fn signal(&self) {
        self.cv.notify_one();
    }

    /// `rumpuser_cv_broadcast`.
    pub fn broadcast(&self) {
        self.cv.notify_all();
    }

    /// `rumpuser_cv_has_waiters`: how many threads wait now.
    #[must_use]
    pub fn waiters(&self) -> usize {
        self.waiters.load(Ordering::Relaxed)
    }
}
