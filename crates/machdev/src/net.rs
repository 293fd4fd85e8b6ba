//! Network devices: GNU Mach's packet-filter delivery (`device/net_io.c`).
//!
//! A [`FilterSet`] belongs to one interface. `device_set_filter` installs a
//! program (NETF or BPF, compiled by the `netfilter` crate) for a client's
//! receive port; [`FilterSet::deliver`] runs every frame through the
//! filters in priority order, sends a `net_rcv_msg` to each port whose
//! filter accepts, and stops after the first filter of priority
//! `NET_HI_PRI` or more (GNU Mach's exclusive takers). A send never
//! blocks: a full queue drops that client's copy (counted), a dead port
//! removes its filter; other clients are unaffected either way.

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};

use mach::ipc::{Ipc, option};
use mach::msg::MsgBuf;
use mach::{KernReturn, PortName};
use mig_bindings::net;
use netfilter::{Filter, Verdict};

use crate::sync::RwLock;

/// Which frames a filter is run on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Frames the interface received (`NETF_IN`).
    In,
    /// Frames the interface sent (`NETF_OUT`).
    Out,
}

/// Counters of a [`FilterSet`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FilterStats {
    /// Filters installed now.
    pub filters: usize,
    /// Messages queued to clients.
    pub delivered: u64,
    /// Copies dropped because the client's queue was full.
    pub dropped_full: u64,
    /// Copies that could not be sent for another reason (logged).
    pub dropped_error: u64,
    /// Filters removed because their port died.
    pub removed_dead: u64,
    /// Frames no filter accepted.
    pub unclaimed: u64,
}

struct Entry {
    /// The task `port` is a name in (the device server's).
    ipc: Arc<dyn Ipc>,
    /// A send right of that task.
    port: PortName,
    priority: i32,
    filter: Filter,
    delivered: AtomicU64,
    dropped: AtomicU64,
}

/// The filters of one interface and their delivery.
#[derive(Default)]
pub struct FilterSet {
    /// Highest priority first; equal priorities in the order installed.
    entries: RwLock<Vec<Arc<Entry>>>,
    delivered: AtomicU64,
    dropped_full: AtomicU64,
    dropped_error: AtomicU64,
    removed_dead: AtomicU64,
    unclaimed: AtomicU64,
}

impl core::fmt::Debug for FilterSet {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("FilterSet")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl FilterSet {
    /// An empty set.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// `device_set_filter`: frames `words` accepts go to `port`, a send
    /// right of the task `ipc` (the device server's), which the set keeps
    /// on success. A port that has
    /// a filter already gets the new one instead (GNU Mach replaces it).
    /// A program that does not validate is `D_INVALID_OPERATION` with
    /// nothing installed; the caller then still owns `port`.
    pub fn set_filter(
        &self,
        ipc: &Arc<dyn Ipc>,
        port: PortName,
        priority: i32,
        words: &[u16],
    ) -> Result<(), KernReturn> {
        let filter = Filter::compile(words).map_err(|e| {
            log::debug!("device_set_filter: program refused: {e}");
            KernReturn::D_INVALID_OPERATION
        })?;
        let entry = Arc::new(Entry {
            ipc: Arc::clone(ipc),
            port,
            priority,
            filter,
            delivered: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        });
        let replaced = {
            let mut entries = self.entries.write();
            let old = entries
                .iter()
                .position(|e| e.port == port)
                .map(|i| entries.remove(i));
            let at = entries
                .iter()
                .position(|e| priority > e.priority)
                .unwrap_or(entries.len());
            entries.insert(at, entry);
            old.is_some()
        };
        if replaced {
            // Two references to one name: the old filter's goes.
            let _ = ipc.port_deallocate(port);
        }
        Ok(())
    }

    /// Runs one whole Ethernet `frame` through the filters of `dir` and
    /// sends a `net_rcv_msg` to each port whose filter accepts, in priority
    /// order, until an exclusive filter (priority `NET_HI_PRI` or more) has
    /// taken it. `buf` is the caller's message buffer, kept from one frame
    /// to the next (no allocation per frame). Returns the copies queued.
    pub fn deliver(&self, frame: &[u8], dir: Direction, buf: &mut MsgBuf) -> usize {
        if frame.len() < net::ETHER_HEADER {
            return 0;
        }
        let mut queued = 0;
        let mut dead: Option<Vec<Arc<Entry>>> = None;
        let mut taken = false;
        {
            let entries = self.entries.read();
            for e in entries.iter() {
                let wanted = match dir {
                    Direction::In => e.filter.inbound(),
                    Direction::Out => e.filter.outbound(),
                };
                if !wanted {
                    continue;
                }
                let Verdict::Accept { payload } = e.filter.run(frame) else {
                    continue;
                };
                taken = true;
                match send(e, buf, frame, payload) {
                    KernReturn::SUCCESS => {
                        queued += 1;
                        e.delivered.fetch_add(1, Ordering::Relaxed);
                        self.delivered.fetch_add(1, Ordering::Relaxed);
                    }
                    KernReturn::SEND_TIMED_OUT => {
                        e.dropped.fetch_add(1, Ordering::Relaxed);
                        self.dropped_full.fetch_add(1, Ordering::Relaxed);
                    }
                    KernReturn::SEND_INVALID_DEST | KernReturn::SEND_INVALID_RIGHT => {
                        dead.get_or_insert_with(Vec::new).push(Arc::clone(e));
                        // GNU Mach: a dead filter does not end the search.
                        continue;
                    }
                    other => {
                        log::warn!("net_rcv_msg to port {}: {other}", e.port.0);
                        e.dropped.fetch_add(1, Ordering::Relaxed);
                        self.dropped_error.fetch_add(1, Ordering::Relaxed);
                    }
                }
                if e.priority >= net::NET_HI_PRI {
                    break;
                }
            }
        }
        if !taken {
            self.unclaimed.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(dead) = dead {
            self.remove_dead(&dead);
        }
        queued
    }

    fn remove_dead(&self, dead: &[Arc<Entry>]) {
        let mut removed = Vec::new();
        {
            let mut entries = self.entries.write();
            entries.retain(|e| {
                let is_dead = dead.iter().any(|d| Arc::ptr_eq(d, e));
                if is_dead {
                    removed.push(Arc::clone(e));
                }
                !is_dead
            });
        }
        for e in removed {
            log::debug!("filter of port {} removed: the port died", e.port.0);
            self.removed_dead.fetch_add(1, Ordering::Relaxed);
            let _ = e.ipc.port_deallocate(e.port);
        }
    }

    /// `port` died (a dead-name notification): its filter goes now, rather
    /// than at the next frame it would get, and its right is released.
    /// Returns whether it had one here.
    pub fn remove_port(&self, port: PortName) -> bool {
        let found: Vec<Arc<Entry>> = self
            .entries
            .read()
            .iter()
            .filter(|e| e.port == port)
            .cloned()
            .collect();
        if found.is_empty() {
            return false;
        }
        self.remove_dead(&found);
        true
    }

    /// Removes every filter and releases its port (the interface goes
    /// away).
    pub fn clear(&self) {
        let entries = core::mem::take(&mut *self.entries.write());
        for e in entries {
            let _ = e.ipc.port_deallocate(e.port);
        }
    }

    /// Counters so far.
    #[must_use]
    pub fn stats(&self) -> FilterStats {
        FilterStats {
            filters: self.entries.read().len(),
            delivered: self.delivered.load(Ordering::Relaxed),
            dropped_full: self.dropped_full.load(Ordering::Relaxed),
            dropped_error: self.dropped_error.load(Ordering::Relaxed),
            removed_dead: self.removed_dead.load(Ordering::Relaxed),
            unclaimed: self.unclaimed.load(Ordering::Relaxed),
        }
    }

    /// Per filter, in delivery order: its port, priority, copies delivered
    /// and dropped.
    #[must_use]
    pub fn filters(&self) -> Vec<(PortName, i32, u64, u64)> {
        self.entries
            .read()
            .iter()
            .map(|e| {
                (
                    e.port,
                    e.priority,
                    e.delivered.load(Ordering::Relaxed),
                    e.dropped.load(Ordering::Relaxed),
                )
            })
            .collect()
    }
}

impl Drop for FilterSet {
    fn drop(&mut self) {
        self.clear();
    }
}

/// Sends `e`'s client the first `payload` bytes after the header of
/// `frame`, never waiting for room in its queue.
fn send(e: &Entry, buf: &mut MsgBuf, frame: &[u8], payload: usize) -> KernReturn {
    let (header, rest) = frame.split_at(net::ETHER_HEADER);
    let ethertype = [header[12], header[13]];
    let size = net::write_net_rcv_msg(buf, e.port, header, ethertype, &rest[..payload]);
    // SAFETY: `buf` holds a complete message of `size` bytes; a send only
    // reads it.
    unsafe {
        e.ipc.mach_msg(
            buf.as_mut_ptr(),
            option::SEND_MSG | option::SEND_TIMEOUT,
            size as u32,
            0,
            PortName::NULL,
            0,
            PortName::NULL,
        )
    }
}
