//! Advisory record locks (`file_record_lock`, glibc's `fcntl` with
//! `F_GETLK`, `F_SETLK`, `F_SETLKW`), as libfshelp's `fshelp_rlock_tweak`
//! keeps them: byte ranges of a node, read-locked by any number of opens or
//! write-locked by one. Each open's ranges are kept disjoint and merged; a
//! lock over part of one the open holds replaces that part (splitting it),
//! and an open's locks go when the open does.

use std::collections::BTreeMap;

use mig_bindings::fs::Flock;
use mig_bindings::fs::record::{F_GETLK64, F_RDLCK, F_SETLK64, F_SETLKW64, F_UNLCK, F_WRLCK};
use parking_lot::{Condvar, Mutex};

use super::{Errno, Node, errno, oflag};

/// `SEEK_SET`, `SEEK_CUR`, `SEEK_END`.
const SEEK_SET: i32 = 0;
const SEEK_CUR: i32 = 1;
const SEEK_END: i32 = 2;

/// To the end of the file, however far it grows (`l_len` 0).
const EOF: u64 = u64::MAX;

/// One open's lock on bytes `start..end` of a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Range {
    owner: u64,
    start: u64,
    end: u64,
    kind: i32,
}

impl Range {
    fn overlaps(&self, start: u64, end: u64) -> bool {
        self.start < end && start < self.end
    }

    /// Whether `kind` asked by another open over `start..end` must wait.
    fn keeps_out(&self, owner: u64, start: u64, end: u64, kind: i32) -> bool {
        self.owner != owner
            && (self.kind == F_WRLCK || kind == F_WRLCK)
            && self.overlaps(start, end)
    }
}

/// The open asking and what it may: its id, open modes, file pointer.
pub(super) struct Asker {
    pub owner: u64,
    pub modes: i32,
    pub at: u64,
}

/// The record locks of a server's nodes.
#[derive(Default)]
pub(super) struct RecordLocks {
    nodes: Mutex<BTreeMap<Node, Vec<Range>>>,
    /// Signalled whenever a lock goes or shrinks.
    freed: Condvar,
}

impl RecordLocks {
    /// `file_record_lock(cmd, lock)` by `asker` on `node` (`size`: the
    /// file's size, for `SEEK_END`): `lock` becomes the answer (for
    /// `F_GETLK64` the first lock that keeps it out, or `F_UNLCK`).
    /// `F_SETLKW64` waits while another open's lock is in the way.
    pub(super) fn tweak(
        &self,
        node: Node,
        asker: &Asker,
        size: impl FnOnce() -> Result<u64, Errno>,
        cmd: i32,
        lock: &mut Flock,
    ) -> Result<(), Errno> {
        if ![F_GETLK64, F_SETLK64, F_SETLKW64].contains(&cmd) {
            return Err(errno::EOPNOTSUPP);
        }
        let kind = lock.kind;
        if ![F_RDLCK, F_WRLCK, F_UNLCK].contains(&kind) || kind == F_UNLCK && cmd == F_GETLK64 {
            return Err(errno::EINVAL);
        }
        // POSIX: a read lock needs the file open for reading, a write lock
        // for writing.
        let needs = match kind {
            F_RDLCK => oflag::O_READ,
            F_WRLCK => oflag::O_WRITE,
            _ => 0,
        };
        if cmd != F_GETLK64 && asker.modes & needs != needs {
            return Err(errno::EBADF);
        }
        let (start, end) = bytes(lock, asker.at, size)?;
        let mut nodes = self.nodes.lock();
        if kind == F_UNLCK {
            let ranges = nodes.entry(node).or_default();
            carve(ranges, asker.owner, start, end);
            Self::tidy(&mut nodes, node);
            self.freed.notify_all();
            return Ok(());
        }
        loop {
            let ranges = nodes.entry(node).or_default();
            let first = ranges
                .iter()
                .filter(|r| r.keeps_out(asker.owner, start, end, kind))
                .min_by_key(|r| r.start);
            match (first, cmd) {
                (Some(r), F_GETLK64) => {
                    *lock = Flock {
                        kind: r.kind,
                        whence: SEEK_SET,
                        start: r.start as i64,
                        len: if r.end == EOF {
                            0
                        } else {
                            (r.end - r.start) as i64
                        },
                        // Which process holds it is not known (libfshelp
                        // answers the same).
                        pid: -1,
                    };
                    Self::tidy(&mut nodes, node);
                    return Ok(());
                }
                (None, F_GETLK64) => {
                    lock.kind = F_UNLCK;
                    Self::tidy(&mut nodes, node);
                    return Ok(());
                }
                (Some(_), F_SETLK64) => {
                    Self::tidy(&mut nodes, node);
                    return Err(errno::EAGAIN);
                }
                (Some(_), _) => self.freed.wait(&mut nodes),
                (None, _) => {
                    carve(ranges, asker.owner, start, end);
                    ranges.push(Range {
                        owner: asker.owner,
                        start,
                        end,
                        kind,
                    });
                    merge(ranges, asker.owner);
                    // A write lock turned read lets readers in.
                    self.freed.notify_all();
                    return Ok(());
                }
            }
        }
    }

    /// Open `owner` of `node` goes: its locks go with it.
    pub(super) fn release(&self, node: Node, owner: u64) {
        let mut nodes = self.nodes.lock();
        let Some(ranges) = nodes.get_mut(&node) else {
            return;
        };
        let before = ranges.len();
        ranges.retain(|r| r.owner != owner);
        if ranges.len() != before {
            Self::tidy(&mut nodes, node);
            self.freed.notify_all();
        }
    }

    /// Forgets `node` when it has no lock left.
    fn tidy(nodes: &mut BTreeMap<Node, Vec<Range>>, node: Node) {
        if nodes.get(&node).is_some_and(Vec::is_empty) {
            nodes.remove(&node);
        }
    }
}

/// The bytes `lock` covers: from `l_start` after its `l_whence` (the file
/// pointer `at`, the file's end), `l_len` of them (0: to the end of the
/// file, however far it grows; negative: those before the start, as POSIX
/// has it).
fn bytes(
    lock: &Flock,
    at: u64,
    size: impl FnOnce() -> Result<u64, Errno>,
) -> Result<(u64, u64), Errno> {
    let base = match lock.whence {
        SEEK_SET => 0,
        SEEK_CUR => i64::try_from(at).map_err(|_| errno::EINVAL)?,
        SEEK_END => i64::try_from(size()?).map_err(|_| errno::EINVAL)?,
        _ => return Err(errno::EINVAL),
    };
    let start = base.checked_add(lock.start).ok_or(errno::EINVAL)?;
    let (start, end) = match lock.len {
        0 => (start, None),
        len if len < 0 => (start.checked_add(len).ok_or(errno::EINVAL)?, Some(start)),
        len => (start, start.checked_add(len)),
    };
    let start = u64::try_from(start).map_err(|_| errno::EINVAL)?;
    // A range past the largest offset runs to the end.
    let end = end.map_or(EOF, |e| e as u64);
    Ok((start, end))
}

/// Takes `start..end` out of `owner`'s ranges (splitting those it cuts).
fn carve(ranges: &mut Vec<Range>, owner: u64, start: u64, end: u64) {
    let mut kept = Vec::with_capacity(ranges.len() + 1);
    for r in ranges.drain(..) {
        if r.owner != owner || !r.overlaps(start, end) {
            kept.push(r);
            continue;
        }
        if r.start < start {
            kept.push(Range { end: start, ..r });
        }
        if end < r.end {
            kept.push(Range { start: end, ..r });
        }
    }
    *ranges = kept;
}

/// Joins `owner`'s ranges of one kind that touch.
fn merge(ranges: &mut Vec<Range>, owner: u64) {
    let (mut mine, others): (Vec<Range>, Vec<Range>) =
        ranges.drain(..).partition(|r| r.owner == owner);
    mine.sort_by_key(|r| r.start);
    let mut joined: Vec<Range> = Vec::with_capacity(mine.len());
    for r in mine {
        match joined.last_mut() {
            Some(last) if last.kind == r.kind && last.end >= r.start => {
                last.end = last.end.max(r.end);
            }
            _ => joined.push(r),
        }
    }
    *ranges = others;
    ranges.extend(joined);
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    const RW: i32 = oflag::O_READ | oflag::O_WRITE;

    fn asker(owner: u64) -> Asker {
        Asker {
            owner,
            modes: RW,
            at: 0,
        }
    }

    fn set(locks: &RecordLocks, owner: u64, kind: i32, start: i64, len: i64) -> Result<(), Errno> {
        let mut l = Flock {
            kind,
            start,
            len,
            ..Flock::default()
        };
        locks.tweak(1, &asker(owner), || Ok(0), F_SETLK64, &mut l)
    }

    fn get(locks: &RecordLocks, owner: u64, kind: i32, start: i64, len: i64) -> Flock {
        let mut l = Flock {
            kind,
            start,
            len,
            ..Flock::default()
        };
        locks
            .tweak(1, &asker(owner), || Ok(0), F_GETLK64, &mut l)
            .unwrap();
        l
    }

    fn ranges(locks: &RecordLocks, owner: u64) -> Vec<(u64, u64, i32)> {
        let nodes = locks.nodes.lock();
        let mut v: Vec<_> = nodes
            .get(&1)
            .map(|rs| {
                rs.iter()
                    .filter(|r| r.owner == owner)
                    .map(|r| (r.start, r.end, r.kind))
                    .collect()
            })
            .unwrap_or_default();
        v.sort_unstable();
        v
    }

    #[test]
    fn readers_share_writers_exclude_and_getlk_names_the_conflict() {
        let locks = RecordLocks::default();
        set(&locks, 1, F_RDLCK, 0, 100).unwrap();
        set(&locks, 2, F_RDLCK, 50, 100).unwrap();
        assert_eq!(set(&locks, 2, F_WRLCK, 0, 10), Err(errno::EAGAIN));
        // Beyond both read locks a write lock fits, to the end.
        set(&locks, 3, F_WRLCK, 150, 0).unwrap();
        assert_eq!(set(&locks, 1, F_RDLCK, 1 << 40, 1), Err(errno::EAGAIN));
        let l = get(&locks, 3, F_WRLCK, 0, 60);
        assert_eq!(
            (l.kind, l.whence, l.start, l.len, l.pid),
            (F_RDLCK, 0, 0, 100, -1)
        );
        let l = get(&locks, 1, F_RDLCK, 200, 5);
        assert_eq!((l.kind, l.start, l.len), (F_WRLCK, 150, 0));
        // Its own locks never keep an open out.
        assert_eq!(get(&locks, 3, F_WRLCK, 150, 10).kind, F_UNLCK);
        locks.release(1, 1);
        locks.release(1, 2);
        locks.release(1, 3);
        assert!(locks.nodes.lock().is_empty());
    }

    #[test]
    fn an_open_s_ranges_split_merge_and_change_kind() {
        let locks = RecordLocks::default();
        set(&locks, 1, F_WRLCK, 0, 100).unwrap();
        // Unlocking the middle splits it.
        set(&locks, 1, F_UNLCK, 40, 20).unwrap();
        assert_eq!(ranges(&locks, 1), [(0, 40, F_WRLCK), (60, 100, F_WRLCK)]);
        set(&locks, 2, F_RDLCK, 45, 10).unwrap();
        // Part turned read: another reader may share that part only.
        set(&locks, 1, F_RDLCK, 20, 10).unwrap();
        assert_eq!(
            ranges(&locks, 1),
            [
                (0, 20, F_WRLCK),
                (20, 30, F_RDLCK),
                (30, 40, F_WRLCK),
                (60, 100, F_WRLCK)
            ]
        );
        set(&locks, 3, F_RDLCK, 22, 5).unwrap();
        assert_eq!(set(&locks, 3, F_RDLCK, 30, 1), Err(errno::EAGAIN));
        // Back to write over it all, the gap included: one range.
        locks.release(1, 2);
        locks.release(1, 3);
        set(&locks, 1, F_WRLCK, 0, 100).unwrap();
        assert_eq!(ranges(&locks, 1), [(0, 100, F_WRLCK)]);
        // Touching ranges of a kind join.
        set(&locks, 1, F_WRLCK, 100, 50).unwrap();
        assert_eq!(ranges(&locks, 1), [(0, 150, F_WRLCK)]);
        set(&locks, 1, F_UNLCK, 0, 0).unwrap();
        assert!(locks.nodes.lock().is_empty());
    }

    #[test]
    fn whence_lengths_modes_and_bad_requests() {
        let locks = RecordLocks::default();
        let at = Asker {
            owner: 1,
            modes: oflag::O_READ,
            at: 1000,
        };
        let mut l = Flock {
            kind: F_RDLCK,
            whence: SEEK_CUR,
            start: -10,
            len: -20,
            ..Flock::default()
        };
        locks.tweak(1, &at, || Ok(0), F_SETLK64, &mut l).unwrap();
        assert_eq!(ranges(&locks, 1), [(970, 990, F_RDLCK)]);
        l.whence = SEEK_END;
        l.start = 0;
        l.len = 5;
        locks.tweak(1, &at, || Ok(4096), F_SETLK64, &mut l).unwrap();
        assert_eq!(ranges(&locks, 1)[1], (4096, 4101, F_RDLCK));
        // A write lock needs O_WRITE; asking about one does not.
        l.kind = F_WRLCK;
        assert_eq!(
            locks.tweak(1, &at, || Ok(0), F_SETLK64, &mut l),
            Err(errno::EBADF)
        );
        assert!(locks.tweak(1, &at, || Ok(0), F_GETLK64, &mut l).is_ok());
        let bad = |kind, whence, start, len, cmd| {
            let mut l = Flock {
                kind,
                whence,
                start,
                len,
                pid: 0,
            };
            locks.tweak(1, &asker(2), || Ok(0), cmd, &mut l)
        };
        assert_eq!(bad(9, 0, 0, 0, F_SETLK64), Err(errno::EINVAL));
        assert_eq!(bad(F_UNLCK, 0, 0, 0, F_GETLK64), Err(errno::EINVAL));
        assert_eq!(bad(F_RDLCK, 7, 0, 0, F_SETLK64), Err(errno::EINVAL));
        assert_eq!(bad(F_RDLCK, 0, -1, 0, F_SETLK64), Err(errno::EINVAL));
        assert_eq!(bad(F_RDLCK, 0, 5, -6, F_SETLK64), Err(errno::EINVAL));
        assert_eq!(bad(F_RDLCK, 0, i64::MAX, i64::MAX, F_SETLK64), Ok(()));
        assert_eq!(bad(F_RDLCK, 0, 0, 0, 7), Err(errno::EOPNOTSUPP));
    }

    #[test]
    fn a_waiter_gets_its_range_when_the_holder_lets_go() {
        let locks = Arc::new(RecordLocks::default());
        set(&locks, 1, F_WRLCK, 0, 10).unwrap();
        let waiter = {
            let locks = Arc::clone(&locks);
            std::thread::spawn(move || {
                let mut l = Flock {
                    kind: F_WRLCK,
                    start: 5,
                    len: 10,
                    ..Flock::default()
                };
                locks.tweak(1, &asker(2), || Ok(0), F_SETLKW64, &mut l)
            })
        };
        std::thread::sleep(Duration::from_millis(50));
        assert!(!waiter.is_finished());
        // Unlocking bytes the waiter does not want keeps it waiting.
        set(&locks, 1, F_UNLCK, 0, 2).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        assert!(!waiter.is_finished());
        locks.release(1, 1);
        waiter.join().unwrap().unwrap();
        assert_eq!(ranges(&locks, 2), [(5, 15, F_WRLCK)]);
    }
}
