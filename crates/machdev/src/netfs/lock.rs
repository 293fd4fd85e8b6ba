//! Advisory whole-file locks (`file_lock`, glibc's `flock`), as libfshelp's
//! lock boxes keep them: a node is unlocked, share-locked by any number of
//! opens, or exclusively locked by one; an open holds at most one lock,
//! which goes when the open does.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI32, Ordering};

use parking_lot::{Condvar, Mutex};

use super::{Errno, Node, errno};

/// `LOCK_SH`: a shared lock.
pub const LOCK_SH: i32 = 1;
/// `LOCK_EX`: an exclusive lock.
pub const LOCK_EX: i32 = 2;
/// `LOCK_NB`: fail with `EWOULDBLOCK` instead of waiting.
pub const LOCK_NB: i32 = 4;
/// `LOCK_UN`: unlocked (and, asked for, unlock).
pub const LOCK_UN: i32 = 8;

/// The Hurd's `EWOULDBLOCK`.
const EWOULDBLOCK: Errno = errno::EAGAIN;

/// The locks of a server's nodes.
#[derive(Default)]
pub(super) struct Locks {
    nodes: Mutex<BTreeMap<Node, Held>>,
    /// Signalled whenever a lock goes.
    freed: Condvar,
}

/// What a locked node has.
#[derive(Default)]
struct Held {
    exclusive: bool,
    shared: u32,
}

impl Locks {
    /// `file_lock(flags)` by the open whose lock is `mine`: takes the lock
    /// asked (waiting for it unless `LOCK_NB`), or unlocks. Asking for
    /// another kind of lock than the one held lets go of the held one
    /// first, as libfshelp's `fshelp_acquire_lock` does (the change is not
    /// atomic: another open may get the node in between).
    pub(super) fn acquire(&self, node: Node, mine: &AtomicI32, flags: i32) -> Result<(), Errno> {
        let asked = flags & (LOCK_SH | LOCK_EX | LOCK_UN);
        if asked == 0 {
            return Ok(());
        }
        if asked & LOCK_UN != 0 && asked != LOCK_UN {
            return Err(errno::EINVAL);
        }
        // Both kinds asked: the exclusive one.
        let asked = if asked & LOCK_EX != 0 { LOCK_EX } else { asked };
        let mut nodes = self.nodes.lock();
        if mine.load(Ordering::Acquire) == asked {
            return Ok(());
        }
        self.let_go(&mut nodes, node, mine);
        if asked == LOCK_UN {
            return Ok(());
        }
        loop {
            let held = nodes.entry(node).or_default();
            let free = !held.exclusive && (asked == LOCK_SH || held.shared == 0);
            if free {
                if asked == LOCK_SH {
                    held.shared += 1;
                } else {
                    held.exclusive = true;
                }
                mine.store(asked, Ordering::Release);
                return Ok(());
            }
            if flags & LOCK_NB != 0 {
                return Err(EWOULDBLOCK);
            }
            self.freed.wait(&mut nodes);
        }
    }

    /// The open whose lock is `mine` goes: its lock goes with it.
    pub(super) fn release(&self, node: Node, mine: &AtomicI32) {
        if mine.load(Ordering::Acquire) != LOCK_UN {
            let mut nodes = self.nodes.lock();
            self.let_go(&mut nodes, node, mine);
        }
    }

    /// The node's lock (`LOCK_SH`, `LOCK_EX` or `LOCK_UN`).
    pub(super) fn status(&self, node: Node) -> i32 {
        match self.nodes.lock().get(&node) {
            Some(h) if h.exclusive => LOCK_EX,
            Some(h) if h.shared > 0 => LOCK_SH,
            _ => LOCK_UN,
        }
    }

    /// Lets go of the lock `mine` holds on `node` (if any), waking the
    /// waiters.
    fn let_go(&self, nodes: &mut BTreeMap<Node, Held>, node: Node, mine: &AtomicI32) {
        let was = mine.swap(LOCK_UN, Ordering::AcqRel);
        let Some(held) = nodes.get_mut(&node) else {
            return;
        };
        match was {
            LOCK_SH => held.shared = held.shared.saturating_sub(1),
            LOCK_EX => held.exclusive = false,
            _ => return,
        }
        if !held.exclusive && held.shared == 0 {
            nodes.remove(&node);
        }
        self.freed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    #[test]
    fn shared_exclusive_and_unlock_as_flock() {
        let locks = Locks::default();
        let (a, b) = (AtomicI32::new(LOCK_UN), AtomicI32::new(LOCK_UN));
        locks.acquire(7, &a, LOCK_SH).unwrap();
        locks.acquire(7, &b, LOCK_SH | LOCK_NB).unwrap();
        assert_eq!(locks.status(7), LOCK_SH);
        assert_eq!(locks.acquire(7, &a, LOCK_EX | LOCK_NB), Err(EWOULDBLOCK));
        // The failed upgrade let go of the shared lock, as libfshelp does.
        assert_eq!(a.load(Ordering::Acquire), LOCK_UN);
        locks.acquire(7, &b, LOCK_UN).unwrap();
        assert_eq!(locks.status(7), LOCK_UN);
        locks.acquire(7, &a, LOCK_EX | LOCK_NB).unwrap();
        assert_eq!(locks.acquire(7, &b, LOCK_SH | LOCK_NB), Err(EWOULDBLOCK));
        // Another node is another lock; asking again what is held is done.
        locks.acquire(8, &b, LOCK_EX).unwrap();
        locks.acquire(7, &a, LOCK_EX).unwrap();
        assert_eq!(locks.acquire(7, &a, LOCK_UN | LOCK_SH), Err(errno::EINVAL));
        locks.release(7, &a);
        locks.release(8, &b);
        assert!(locks.nodes.lock().is_empty());
    }

    #[test]
    fn a_waiter_gets_the_lock_when_it_goes() {
        let locks = Arc::new(Locks::default());
        let holder = Arc::new(AtomicI32::new(LOCK_UN));
        locks.acquire(1, &holder, LOCK_EX).unwrap();
        let waiter = {
            let locks = Arc::clone(&locks);
            std::thread::spawn(move || {
                let mine = AtomicI32::new(LOCK_UN);
                locks.acquire(1, &mine, LOCK_SH).unwrap();
                mine.load(Ordering::Acquire)
            })
        };
        std::thread::sleep(Duration::from_millis(50));
        assert!(!waiter.is_finished());
        locks.release(1, &holder);
        assert_eq!(waiter.join().unwrap(), LOCK_SH);
    }
}
