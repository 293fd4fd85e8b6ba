//! The loopback kernel's ports, spaces and message transfer.

use std::cell::Cell;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use foldhash::HashMap;
use parking_lot::{Condvar, Mutex, MutexGuard};

use super::vm::Vm;
use crate::ipc::{Ipc, option};
use crate::kern::KernReturn;
use crate::msg::{self, Builder, HEADER_SIZE, Header, TypeDesc};
use crate::port::{PortName, Right, notify, type_name as tn};

type PortId = u64;
type SpaceId = u64;

/// Default queue limit (`MACH_PORT_QLIMIT_DEFAULT`).
const QLIMIT: usize = 5;
/// Largest out-of-line region one item may carry.
const MAX_OOL: usize = 1 << 30;
/// Largest message (header and inline body).
const MAX_MSG: usize = 1 << 24;

#[derive(Debug)]
struct Port {
    is_set: bool,
    receiver: Option<SpaceId>,
    queue: VecDeque<KMsg>,
    seqno: u32,
    srights: u32,
    sorights: u32,
    mscount: u32,
    in_set: Option<PortId>,
    no_senders: Option<PortId>,
    /// Threads receiving on this port (or set) sleep here; a message wakes
    /// one of them, not every thread of the server.
    recv_cv: Arc<Condvar>,
    /// Threads waiting for room in this port's queue sleep here.
    room_cv: Arc<Condvar>,
    /// Threads asleep in a receive on this port (or set), less those lent
    /// to senders by hand-offs (below zero while a lent one also woke).
    waiting: i32,
    /// The receiving task's code for messages handed off to the sending
    /// thread (see [`Task::set_handoff`]).
    handoff: Option<Handoff>,
}

thread_local! {
    /// The message buffer of hand-offs run on this thread.
    static HANDOFF_BUF: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
}

/// A receiver lent to a hand-off: counted waiting again when dropped.
struct Lent<'a> {
    kernel: &'a Kernel,
    target: PortId,
}

impl Drop for Lent<'_> {
    fn drop(&mut self) {
        if let Some(t) = self.kernel.lock().ports.get_mut(&self.target) {
            t.waiting += 1;
        }
    }
}

/// Handles one message, as received, in the receiving task.
pub type Handler = Arc<dyn Fn(&[u8]) + Send + Sync>;

/// A [`Handler`] kept on a port.
#[derive(Clone)]
struct Handoff(Handler);

impl std::fmt::Debug for Handoff {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Handoff")
    }
}

impl Port {
    fn new(owner: SpaceId, is_set: bool) -> Self {
        Self {
            is_set,
            receiver: Some(owner),
            queue: VecDeque::new(),
            seqno: 0,
            srights: 0,
            sorights: 0,
            mscount: 0,
            in_set: None,
            no_senders: None,
            recv_cv: Arc::new(Condvar::new()),
            room_cv: Arc::new(Condvar::new()),
            waiting: 0,
            handoff: None,
        }
    }
}

#[derive(Debug, Default, Clone)]
struct Entry {
    port: PortId,
    receive: bool,
    set: bool,
    send: u32,
    send_once: bool,
    dead: u32,
    dead_request: Option<PortId>,
}

impl Entry {
    fn is_empty(&self) -> bool {
        !self.receive && !self.set && self.send == 0 && !self.send_once && self.dead == 0
    }
}

#[derive(Debug, Default)]
struct Space {
    names: HashMap<u32, Entry>,
    by_port: HashMap<PortId, u32>,
    next: u32,
}

/// A right carried by a queued message.
#[derive(Debug, Clone, Copy)]
enum Carried {
    Send(Option<PortId>),
    SendOnce(Option<PortId>),
    Name,
}

#[derive(Debug)]
struct KMsg {
    bits: u32,
    id: i32,
    via_send_once: bool,
    reply: Option<Carried>,
    body: Vec<u8>,
    ports: Vec<(usize, Carried, u32)>,
    /// Out-of-line regions: offset of the address slot, region, length.
    ool: Vec<(usize, u64, usize)>,
}

#[derive(Debug, Default)]
struct State {
    ports: HashMap<PortId, Port>,
    spaces: HashMap<SpaceId, Space>,
    next_id: u64,
    /// Messages handed off ([`Stats`]).
    handoffs: u64,
    /// The kernel's VM (regions of queued out-of-line data live there).
    vm: Arc<Vm>,
}

/// The in-process kernel. Tasks made by [`Kernel::new_task`] share it.
#[derive(Debug)]
pub struct Kernel {
    state: Mutex<State>,
    vm: Arc<Vm>,
}

impl Default for Kernel {
    fn default() -> Self {
        let vm = Arc::new(Vm::default());
        Self {
            state: Mutex::new(State {
                vm: Arc::clone(&vm),
                ..State::default()
            }),
            vm,
        }
    }
}

/// A task: an IPC space of the loopback kernel. Dropping it terminates the
/// task, releasing every right it holds.
#[derive(Debug)]
pub struct Task {
    kernel: Arc<Kernel>,
    space: SpaceId,
}

/// Counts of kernel objects, for leak checks in tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Ports and port sets alive (or dead but still referenced).
    pub ports: usize,
    /// Names in all spaces.
    pub names: usize,
    /// Messages queued on all ports.
    pub queued: usize,
    /// `vm_allocate` regions not yet deallocated.
    pub vm_regions: usize,
    /// Threads asleep receiving, less those lent to hand-offs.
    pub waiting: usize,
    /// Messages a hand-off ran on the sender's thread, since the kernel
    /// started.
    pub handoffs: u64,
}

impl Kernel {
    /// Counts of live kernel objects.
    pub fn stats(&self) -> Stats {
        let st = self.lock();
        Stats {
            ports: st.ports.len(),
            names: st.spaces.values().map(|s| s.names.len()).sum(),
            queued: st.ports.values().map(|p| p.queue.len()).sum(),
            vm_regions: self.vm.regions(),
            waiting: st
                .ports
                .values()
                .map(|p| usize::try_from(p.waiting).unwrap_or(0))
                .sum(),
            handoffs: st.handoffs,
        }
    }

    /// A new kernel with no tasks.
    #[must_use]
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Creates a task.
    pub fn new_task(self: &Arc<Self>) -> Task {
        let mut st = self.lock();
        st.next_id += 1;
        let id = st.next_id;
        st.spaces.insert(
            id,
            Space {
                next: 0x100,
                ..Space::default()
            },
        );
        Task {
            kernel: Arc::clone(self),
            space: id,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock()
    }

    /// Gives space `s` the out-of-line regions of a message delivered into
    /// `buf`, and writes their addresses there.
    fn copyout_ool(&self, s: SpaceId, ool: &[(usize, u64, usize)], buf: &mut [u8]) {
        for &(off, addr, len) in ool {
            if len > 0 {
                self.vm.transfer(addr, None, Some(s));
            }
            buf[HEADER_SIZE + off..HEADER_SIZE + off + 8].copy_from_slice(&addr.to_ne_bytes());
        }
    }
}

impl State {
    /// Wakes every thread waiting on port `p` and on the set it is in (the
    /// port itself changed: destroyed, or moved between sets).
    fn wake(&self, p: PortId) {
        if let Some(port) = self.ports.get(&p) {
            port.recv_cv.notify_all();
            port.room_cv.notify_all();
            if let Some(set) = port.in_set.and_then(|s| self.ports.get(&s)) {
                set.recv_cv.notify_all();
            }
        }
    }

    /// A message was queued on `p`: wakes one receiver of its set, or of
    /// the port when it is in none (a port in a set cannot be received on
    /// directly). Every receiver re-checks the queues when it wakes, so one
    /// woken thread per message is enough and the rest sleep on.
    fn wake_receiver(&self, p: PortId) {
        if let Some(port) = self.ports.get(&p) {
            match port.in_set.and_then(|s| self.ports.get(&s)) {
                Some(set) => set.recv_cv.notify_one(),
                None => port.recv_cv.notify_one(),
            };
        }
    }

    /// A message left `p`'s queue: wakes one sender waiting for room.
    fn wake_sender(&self, p: PortId) {
        if let Some(port) = self.ports.get(&p) {
            port.room_cv.notify_one();
        }
    }

    fn new_port(&mut self, owner: SpaceId, is_set: bool) -> PortId {
        self.next_id += 1;
        let id = self.next_id;
        self.ports.insert(id, Port::new(owner, is_set));
        id
    }

    fn space(&mut self, s: SpaceId) -> Result<&mut Space, KernReturn> {
        self.spaces.get_mut(&s).ok_or(KernReturn::INVALID_TASK)
    }

    fn entry(&mut self, s: SpaceId, name: PortName) -> Result<&mut Entry, KernReturn> {
        self.space(s)?
            .names
            .get_mut(&name.0)
            .ok_or(KernReturn::INVALID_NAME)
    }

    fn alive(&self, p: PortId) -> bool {
        self.ports.get(&p).is_some_and(|p| p.receiver.is_some())
    }

    fn alloc_name(space: &mut Space) -> u32 {
        loop {
            space.next = space.next.wrapping_add(1).max(0x100);
            if !space.names.contains_key(&space.next) {
                return space.next;
            }
        }
    }

    /// Inserts a send right (merging with an existing name) into `s`.
    fn insert_send(&mut self, s: SpaceId, p: PortId) -> PortName {
        if !self.alive(p) {
            self.release_send(p);
            return PortName::DEAD;
        }
        let Ok(space) = self.space(s) else {
            self.release_send(p);
            return PortName::NULL;
        };
        if let Some(&n) = space.by_port.get(&p) {
            let e = space.names.get_mut(&n).expect("name of by_port");
            let merged = e.send > 0;
            e.send += 1;
            if merged {
                // The name already held a send right: the new one merges
                // into it as a user reference.
                self.release_send(p);
            }
            return PortName(n);
        }
        let n = Self::alloc_name(space);
        space.names.insert(
            n,
            Entry {
                port: p,
                send: 1,
                ..Entry::default()
            },
        );
        space.by_port.insert(p, n);
        PortName(n)
    }

    fn insert_send_once(&mut self, s: SpaceId, p: PortId) -> PortName {
        if !self.alive(p) {
            self.release_send_once(p);
            return PortName::DEAD;
        }
        let Ok(space) = self.space(s) else {
            self.release_send_once(p);
            return PortName::NULL;
        };
        let n = Self::alloc_name(space);
        space.names.insert(
            n,
            Entry {
                port: p,
                send_once: true,
                ..Entry::default()
            },
        );
        PortName(n)
    }

    /// One send right of `p` goes away.
    fn release_send(&mut self, p: PortId) {
        let Some(port) = self.ports.get_mut(&p) else {
            return;
        };
        port.srights = port.srights.saturating_sub(1);
        if port.srights == 0
            && port.receiver.is_some()
            && let Some(target) = port.no_senders.take()
        {
            let mscount = port.mscount;
            let mut b = Builder::new(Header::default());
            b.desc(TypeDesc::inline(tn::INTEGER_32, 32, 1))
                .raw(&mscount.to_ne_bytes());
            self.send_notification(target, notify::NO_SENDERS, &b.finish());
        }
        self.gc_port(p);
    }

    /// One send-once right of `p` is destroyed unused: the port gets a
    /// send-once notification.
    fn release_send_once(&mut self, p: PortId) {
        let b = Builder::new(Header::default());
        self.send_notification(p, notify::SEND_ONCE, &b.finish());
    }

    /// Delivers a kernel notification through a send-once right to
    /// `target`, which it consumes.
    fn send_notification(&mut self, target: PortId, id: i32, body: &msg::MsgBuf) {
        let Some(port) = self.ports.get_mut(&target) else {
            return;
        };
        port.sorights = port.sorights.saturating_sub(1);
        if port.receiver.is_some() {
            port.queue.push_back(KMsg {
                bits: 0,
                id,
                via_send_once: true,
                reply: None,
                body: body.as_bytes()[HEADER_SIZE..].to_vec(),
                ports: Vec::new(),
                ool: Vec::new(),
            });
        }
        self.wake_receiver(target);
        self.gc_port(target);
    }

    /// Forgets a dead port nobody refers to.
    fn gc_port(&mut self, p: PortId) {
        if let Some(port) = self.ports.get(&p)
            && port.receiver.is_none()
            && port.srights == 0
            && port.sorights == 0
        {
            self.ports.remove(&p);
        }
    }

    /// Releases the rights a message carries (when it is destroyed).
    fn destroy_msg(&mut self, m: &KMsg) {
        for &(_, addr, len) in &m.ool {
            if len > 0 {
                let _ = self.vm.deallocate(None, addr, len);
            }
        }
        let carried = m
            .reply
            .into_iter()
            .chain(m.ports.iter().map(|(_, c, _)| *c));
        for c in carried.collect::<Vec<_>>() {
            self.release_carried(c);
        }
    }

    fn release_carried(&mut self, c: Carried) {
        match c {
            Carried::Send(Some(p)) => self.release_send(p),
            Carried::SendOnce(Some(p)) => self.release_send_once(p),
            _ => {}
        }
    }

    /// The receive right of `p` is destroyed: queued messages go, send
    /// rights become dead names (with dead-name notifications), the
    /// no-senders request's right is released.
    fn destroy_port(&mut self, p: PortId) {
        self.wake(p);
        let Some(port) = self.ports.get_mut(&p) else {
            return;
        };
        port.receiver = None;
        let queued: Vec<KMsg> = port.queue.drain(..).collect();
        let ns = port.no_senders.take();
        port.in_set = None;
        if port.is_set {
            for member in self.ports.values_mut().filter(|m| m.in_set == Some(p)) {
                member.in_set = None;
            }
        }
        for m in queued {
            self.destroy_msg(&m);
        }
        if let Some(t) = ns {
            self.release_send_once(t);
        }
        // Every space's names for this port turn into dead names.
        let mut notes = Vec::new();
        for space in self.spaces.values_mut() {
            let names: Vec<u32> = space
                .names
                .iter()
                .filter(|(_, e)| e.port == p && !e.receive && !e.set)
                .map(|(n, _)| *n)
                .collect();
            for n in names {
                let e = space.names.get_mut(&n).expect("entry");
                let refs = e.send + u32::from(e.send_once);
                if refs == 0 {
                    continue;
                }
                e.dead += refs;
                e.send = 0;
                e.send_once = false;
                if let Some(t) = e.dead_request.take() {
                    e.dead += 1;
                    notes.push((t, n));
                }
            }
            space.by_port.remove(&p);
        }
        for (t, n) in notes {
            let mut b = Builder::new(Header::default());
            b.desc(TypeDesc::inline(tn::PORT_NAME, 32, 1))
                .raw(&n.to_ne_bytes());
            self.send_notification(t, notify::DEAD_NAME, &b.finish());
        }
        if let Some(port) = self.ports.get_mut(&p) {
            // Dead names hold no references on the port in this model.
            port.srights = 0;
            port.sorights = 0;
        }
        self.gc_port(p);
    }

    /// Drops one user reference of a send, send-once or dead name.
    fn deallocate(&mut self, s: SpaceId, name: PortName) -> KernReturn {
        let Ok(e) = self.entry(s, name) else {
            return KernReturn::INVALID_NAME;
        };
        let port = e.port;
        if e.send_once {
            e.send_once = false;
            let req = e.dead_request.take();
            self.drop_if_empty(s, name);
            self.release_send_once(port);
            self.port_deleted(req, name);
            return KernReturn::SUCCESS;
        }
        if e.send > 0 {
            e.send -= 1;
            if e.send == 0 {
                let req = e.dead_request.take();
                self.drop_if_empty(s, name);
                self.release_send(port);
                self.port_deleted(req, name);
            }
            return KernReturn::SUCCESS;
        }
        if e.dead > 0 {
            e.dead -= 1;
            self.drop_if_empty(s, name);
            return KernReturn::SUCCESS;
        }
        KernReturn::INVALID_RIGHT
    }

    fn port_deleted(&mut self, req: Option<PortId>, name: PortName) {
        if let Some(t) = req {
            let mut b = Builder::new(Header::default());
            b.desc(TypeDesc::inline(tn::PORT_NAME, 32, 1))
                .raw(&name.0.to_ne_bytes());
            self.send_notification(t, notify::PORT_DELETED, &b.finish());
        }
    }

    fn drop_if_empty(&mut self, s: SpaceId, name: PortName) {
        if let Ok(space) = self.space(s)
            && space.names.get(&name.0).is_some_and(Entry::is_empty)
        {
            let e = space.names.remove(&name.0).expect("entry");
            if space.by_port.get(&e.port) == Some(&name.0) {
                space.by_port.remove(&e.port);
            }
        }
    }

    /// Takes a right out of space `s` for a message (`disp` is the
    /// sender's disposition). Checked by `check_copyin` first.
    fn copyin(&mut self, s: SpaceId, name: PortName, disp: u8) -> Result<Carried, KernReturn> {
        if name == PortName::NULL {
            return Ok(match disp {
                tn::MOVE_SEND_ONCE | tn::MAKE_SEND_ONCE => Carried::SendOnce(None),
                tn::PORT_NAME => Carried::Name,
                _ => Carried::Send(None),
            });
        }
        if disp == tn::PORT_NAME {
            return Ok(Carried::Name);
        }
        let e = self.entry(s, name)?.clone();
        let p = e.port;
        match disp {
            tn::COPY_SEND | tn::MOVE_SEND if e.dead > 0 => {
                if disp == tn::MOVE_SEND {
                    let _ = self.deallocate(s, name);
                }
                Ok(Carried::Send(None))
            }
            tn::MOVE_SEND_ONCE if e.dead > 0 => {
                let _ = self.deallocate(s, name);
                Ok(Carried::SendOnce(None))
            }
            tn::COPY_SEND if e.send > 0 => {
                self.ports.get_mut(&p).expect("port").srights += 1;
                Ok(Carried::Send(Some(p)))
            }
            tn::MOVE_SEND if e.send > 0 => {
                let ent = self.entry(s, name)?;
                ent.send -= 1;
                if ent.send == 0 {
                    let req = ent.dead_request.take();
                    self.drop_if_empty(s, name);
                    self.port_deleted(req, name);
                } else {
                    // The space keeps a right under this name.
                    self.ports.get_mut(&p).expect("port").srights += 1;
                }
                Ok(Carried::Send(Some(p)))
            }
            tn::MAKE_SEND if e.receive => {
                let port = self.ports.get_mut(&p).expect("port");
                port.srights += 1;
                port.mscount += 1;
                Ok(Carried::Send(Some(p)))
            }
            tn::MOVE_SEND_ONCE if e.send_once => {
                let ent = self.entry(s, name)?;
                ent.send_once = false;
                let req = ent.dead_request.take();
                self.drop_if_empty(s, name);
                self.port_deleted(req, name);
                Ok(Carried::SendOnce(Some(p)))
            }
            tn::MAKE_SEND_ONCE if e.receive => {
                self.ports.get_mut(&p).expect("port").sorights += 1;
                Ok(Carried::SendOnce(Some(p)))
            }
            _ => Err(KernReturn::INVALID_RIGHT),
        }
    }

    /// Whether `copyin` of `disp` on `name` would succeed, without doing it.
    fn check_copyin(&self, s: SpaceId, name: PortName, disp: u8) -> bool {
        if name == PortName::NULL || name == PortName::DEAD || disp == tn::PORT_NAME {
            return matches!(
                disp,
                tn::PORT_NAME
                    | tn::COPY_SEND
                    | tn::MOVE_SEND
                    | tn::MOVE_SEND_ONCE
                    | tn::MAKE_SEND
                    | tn::MAKE_SEND_ONCE
            );
        }
        let Some(e) = self.spaces.get(&s).and_then(|sp| sp.names.get(&name.0)) else {
            return false;
        };
        match disp {
            tn::COPY_SEND | tn::MOVE_SEND => e.send > 0 || e.dead > 0,
            tn::MOVE_SEND_ONCE => e.send_once || e.dead > 0,
            tn::MAKE_SEND | tn::MAKE_SEND_ONCE => e.receive,
            _ => false,
        }
    }

    /// Whether copying in `items` one after the other, as a send does
    /// (destination, reply port, then the body in order), would succeed:
    /// a right moved by one item is gone for the next. Returns the index of
    /// the first item that would fail.
    fn check_copyins(&self, s: SpaceId, items: &[(PortName, u8)]) -> Result<(), usize> {
        // Per name: send urefs, send-once right, dead urefs still there.
        let mut left: HashMap<u32, (u32, bool, u32)> = HashMap::default();
        for (i, &(name, disp)) in items.iter().enumerate() {
            if !self.check_copyin(s, name, disp) {
                return Err(i);
            }
            if !name.is_valid() || disp == tn::PORT_NAME {
                continue;
            }
            let e = &self.spaces[&s].names[&name.0];
            let l = left.entry(name.0).or_insert((e.send, e.send_once, e.dead));
            let ok = match disp {
                tn::COPY_SEND => l.0 > 0 || l.2 > 0,
                tn::MOVE_SEND if l.0 > 0 => {
                    l.0 -= 1;
                    true
                }
                tn::MOVE_SEND | tn::MOVE_SEND_ONCE if l.2 > 0 => {
                    l.2 -= 1;
                    true
                }
                tn::MOVE_SEND_ONCE if l.1 => {
                    l.1 = false;
                    true
                }
                tn::MAKE_SEND | tn::MAKE_SEND_ONCE => true,
                _ => false,
            };
            if !ok {
                return Err(i);
            }
        }
        Ok(())
    }

    /// Consumes the destination right of a message; returns its port.
    fn take_dest(&mut self, dest: Carried) -> Option<PortId> {
        let (Carried::Send(Some(p)) | Carried::SendOnce(Some(p))) = dest else {
            return None;
        };
        match dest {
            Carried::Send(_) => self.release_send(p),
            _ => {
                if let Some(port) = self.ports.get_mut(&p) {
                    port.sorights = port.sorights.saturating_sub(1);
                }
            }
        }
        Some(p)
    }

    /// Queues `kmsg` on the port `dest` names, consuming that right.
    fn enqueue(&mut self, dest: Carried, kmsg: KMsg) -> KernReturn {
        let Some(p) = self.take_dest(dest) else {
            self.destroy_msg(&kmsg);
            return KernReturn::SEND_INVALID_DEST;
        };
        if let Some(port) = self.ports.get_mut(&p)
            && port.receiver.is_some()
        {
            port.queue.push_back(kmsg);
            self.wake_receiver(p);
            return KernReturn::SUCCESS;
        }
        self.destroy_msg(&kmsg);
        KernReturn::SEND_INVALID_DEST
    }

    /// Where a message to `dest` can be handed off: its port and the port
    /// or set received on take hand-offs, a thread is asleep receiving there
    /// that no other hand-off has borrowed, and nothing is queued ahead of
    /// the message. Returns the port, what is received on, the receiving
    /// space and its handler.
    fn handoff_for(&self, dest: Carried) -> Option<(PortId, PortId, SpaceId, Handoff)> {
        let (Carried::Send(Some(p)) | Carried::SendOnce(Some(p))) = dest else {
            return None;
        };
        let port = self.ports.get(&p)?;
        let space = port.receiver?;
        if !port.queue.is_empty() {
            return None;
        }
        let target = port.in_set.unwrap_or(p);
        let t = self.ports.get(&target)?;
        if t.waiting <= 0 {
            return None;
        }
        Some((p, target, space, t.handoff.clone()?))
    }

    /// Writes `kmsg`, taken off port `port_id`, into `buf` as space `s`
    /// receives it: its header, body and rights (out-of-line regions are
    /// the caller's, through [`Kernel::copyout_ool`]). Returns its size.
    fn deliver(
        &mut self,
        s: SpaceId,
        port_id: PortId,
        seqno: u32,
        kmsg: &KMsg,
        buf: &mut [u8],
    ) -> usize {
        // The destination's name here: the receive right's name.
        let local = self
            .spaces
            .get(&s)
            .and_then(|sp| sp.by_port.get(&port_id).copied())
            .map_or(PortName::NULL, PortName);
        let (reply_name, reply_bits) = match kmsg.reply {
            Some(c @ Carried::Send(_)) => (self.copyout(s, c), tn::MOVE_SEND),
            Some(c @ Carried::SendOnce(_)) => (self.copyout(s, c), tn::MOVE_SEND_ONCE),
            _ => (PortName::NULL, 0),
        };
        let local_bits = if kmsg.via_send_once {
            tn::MOVE_SEND_ONCE
        } else {
            tn::MOVE_SEND
        };
        let size = HEADER_SIZE + kmsg.body.len();
        let h = Header {
            bits: kmsg.bits | msg::bits(reply_bits, local_bits),
            size: size as u32,
            remote: reply_name,
            local,
            seqno,
            id: kmsg.id,
        };
        h.write(buf);
        buf[HEADER_SIZE..size].copy_from_slice(&kmsg.body);
        for &(off, c, name_value) in &kmsg.ports {
            let n = if matches!(c, Carried::Name) {
                PortName(name_value)
            } else {
                self.copyout(s, c)
            };
            buf[HEADER_SIZE + off..HEADER_SIZE + off + 8]
                .copy_from_slice(&u64::from(n.0).to_ne_bytes());
        }
        size
    }

    /// Puts a carried right into space `s`; returns its name there.
    fn copyout(&mut self, s: SpaceId, c: Carried) -> PortName {
        match c {
            Carried::Send(Some(p)) => self.insert_send(s, p),
            Carried::SendOnce(Some(p)) => self.insert_send_once(s, p),
            Carried::Send(None) | Carried::SendOnce(None) | Carried::Name => PortName::NULL,
        }
    }

    /// The port and set a receive on `name` waits on.
    fn receive_target(&self, s: SpaceId, name: PortName) -> Result<PortId, KernReturn> {
        let e = self
            .spaces
            .get(&s)
            .and_then(|sp| sp.names.get(&name.0))
            .ok_or(KernReturn::RCV_INVALID_NAME)?;
        if e.set {
            return Ok(e.port);
        }
        if !e.receive {
            return Err(KernReturn::RCV_INVALID_NAME);
        }
        if self.ports.get(&e.port).is_some_and(|p| p.in_set.is_some()) {
            return Err(KernReturn::RCV_IN_SET);
        }
        Ok(e.port)
    }

    /// A port (of `target`, a port or a set) with a queued message.
    fn ready(&self, target: PortId) -> Option<PortId> {
        let t = self.ports.get(&target)?;
        if !t.is_set {
            return (!t.queue.is_empty()).then_some(target);
        }
        let mut ready: Vec<PortId> = self
            .ports
            .iter()
            .filter(|(_, p)| p.in_set == Some(target) && !p.queue.is_empty())
            .map(|(id, _)| *id)
            .collect();
        ready.sort_unstable();
        ready.first().copied()
    }
}

/// A message body parsed for copy-in: where the rights and out-of-line
/// regions are.
struct Parsed {
    ports: Vec<(usize, PortName, u8)>,
    ool: Vec<(usize, u64, usize, bool)>,
}

/// Walks the typed items of a complex body (offsets relative to the
/// message start).
fn parse_body(bytes: &[u8]) -> Result<Parsed, KernReturn> {
    let mut pos = HEADER_SIZE;
    let mut parsed = Parsed {
        ports: Vec::new(),
        ool: Vec::new(),
    };
    while pos < bytes.len() {
        let d = TypeDesc::read(&bytes[pos..]).map_err(|_| KernReturn::SEND_MSG_TOO_SMALL)?;
        pos += d.desc_len();
        if tn::is_port(d.name) {
            if d.name == tn::MOVE_RECEIVE || !d.inline || d.size != 64 {
                return Err(KernReturn::SEND_INVALID_TYPE);
            }
            for i in 0..d.number as usize {
                let at = pos + i * 8;
                let raw = bytes
                    .get(at..at + 8)
                    .ok_or(KernReturn::SEND_MSG_TOO_SMALL)?;
                let name = PortName(u64::from_ne_bytes(raw.try_into().expect("8")) as u32);
                parsed.ports.push((at, name, d.name));
            }
            pos += msg::pad(d.number as usize * 8);
        } else if d.inline {
            let n = d.data_len().ok_or(KernReturn::SEND_INVALID_TYPE)?;
            pos = pos
                .checked_add(msg::pad(n))
                .ok_or(KernReturn::SEND_MSG_TOO_SMALL)?;
        } else {
            let n = d.data_len().ok_or(KernReturn::SEND_INVALID_TYPE)?;
            if n > MAX_OOL {
                return Err(KernReturn::SEND_NO_BUFFER);
            }
            let raw = bytes
                .get(pos..pos + 8)
                .ok_or(KernReturn::SEND_MSG_TOO_SMALL)?;
            let addr = u64::from_ne_bytes(raw.try_into().expect("8"));
            if addr == 0 && n > 0 {
                return Err(KernReturn::SEND_INVALID_MEMORY);
            }
            parsed.ool.push((pos, addr, n, d.deallocate));
            pos += 8;
        }
        if pos > bytes.len() {
            return Err(KernReturn::SEND_MSG_TOO_SMALL);
        }
    }
    Ok(parsed)
}

impl Task {
    /// The kernel this task lives in.
    #[must_use]
    pub fn kernel(&self) -> &Arc<Kernel> {
        &self.kernel
    }

    /// Gives `to` a send right to the port `name` denotes here (made from
    /// a receive right or copied from a send right), as a boot script or a
    /// bootstrap port hands rights to a new task. Returns the name in `to`.
    pub fn give_send_right(&self, name: PortName, to: &Task) -> Result<PortName, KernReturn> {
        let mut st = self.kernel.lock();
        let disp = if st.entry(self.space, name)?.receive {
            tn::MAKE_SEND
        } else {
            tn::COPY_SEND
        };
        if !st.check_copyin(self.space, name, disp) {
            return Err(KernReturn::INVALID_RIGHT);
        }
        let c = st.copyin(self.space, name, disp)?;
        Ok(st.copyout(to.space, c))
    }

    /// Lets a sender that blocks for a reply run `handler` for its message
    /// on its own thread whenever a thread of this task is asleep receiving
    /// on `name` (a receive right not in a set, or a port set) and no
    /// message is queued ahead of it there: GNU Mach's hand-off, where such
    /// a sender gives its processor straight to the receiving thread.
    /// `handler` sees the message as a receive on `name` would deliver it,
    /// and owns what it carries. The kernel keeps `handler` until the port
    /// or set goes, so it should hold the receiving task's state weakly (a
    /// strong hold is a cycle through the kernel).
    ///
    /// # Errors
    /// `KERN_INVALID_NAME` when `name` is neither here.
    pub fn set_handoff(&self, name: PortName, handler: Handler) -> Result<(), KernReturn> {
        let mut st = self.kernel.lock();
        let target = st
            .receive_target(self.space, name)
            .map_err(|_| KernReturn::INVALID_NAME)?;
        st.ports.get_mut(&target).expect("received-on port").handoff = Some(Handoff(handler));
        Ok(())
    }

    /// Terminates the task: every right it holds is released (receive
    /// rights destroyed, send rights dropped), as when a task dies.
    pub fn terminate(&self) {
        let mut st = self.kernel.lock();
        let Some(space) = st.spaces.remove(&self.space) else {
            return;
        };
        self.kernel.vm.free_all(Some(self.space));
        let mut receives = Vec::new();
        let mut sends = Vec::new();
        let mut send_onces = Vec::new();
        let mut requests = Vec::new();
        for e in space.names.values() {
            if e.receive || e.set {
                receives.push(e.port);
            }
            if e.send > 0 {
                sends.push(e.port);
            }
            if e.send_once {
                send_onces.push(e.port);
            }
            if let Some(t) = e.dead_request {
                requests.push(t);
            }
        }
        for p in receives {
            st.destroy_port(p);
        }
        for p in sends {
            st.release_send(p);
        }
        for p in send_onces.into_iter().chain(requests) {
            st.release_send_once(p);
        }
        drop(st);
    }

    /// Checks what can be checked without the kernel lock.
    fn precheck(&self, bytes: &[u8]) -> Result<(Header, Parsed), KernReturn> {
        if bytes.len() < HEADER_SIZE || !bytes.len().is_multiple_of(4) {
            return Err(KernReturn::SEND_MSG_TOO_SMALL);
        }
        if bytes.len() > MAX_MSG {
            return Err(KernReturn::SEND_NO_BUFFER);
        }
        let h = Header::read(bytes).map_err(|_| KernReturn::SEND_MSG_TOO_SMALL)?;
        if h.bits & !msg::BITS_USER != 0 {
            return Err(KernReturn::SEND_INVALID_HEADER);
        }
        let parsed = if h.is_complex() {
            parse_body(bytes)?
        } else {
            Parsed {
                ports: Vec::new(),
                ool: Vec::new(),
            }
        };
        for &(_, addr, n, dealloc) in &parsed.ool {
            if dealloc && n > 0 && !self.kernel.vm.owns(Some(self.space), addr, n) {
                return Err(KernReturn::SEND_INVALID_MEMORY);
            }
        }
        Ok((h, parsed))
    }

    /// Waits for the kernel's state to change, until `deadline` when
    /// `timed` (then `expired` is the error, with the lock taken again).
    fn wait<'a>(
        mut st: MutexGuard<'a, State>,
        cv: &Condvar,
        timed: bool,
        deadline: Option<Instant>,
        expired: KernReturn,
    ) -> (MutexGuard<'a, State>, Result<(), KernReturn>) {
        if !timed {
            cv.wait(&mut st);
            return (st, Ok(()));
        }
        let deadline = deadline.unwrap_or_else(Instant::now);
        if Instant::now() >= deadline {
            return (st, Err(expired));
        }
        cv.wait_until(&mut st, deadline);
        (st, Ok(()))
    }

    /// Sends `bytes`; with `handoff`, to a receiver that takes hand-offs
    /// by running its handler on this thread.
    fn send(
        &self,
        bytes: &[u8],
        option: u32,
        timeout: Option<Instant>,
        handoff: bool,
    ) -> KernReturn {
        let (h, parsed) = match self.precheck(bytes) {
            Ok(x) => x,
            Err(e) => return e,
        };
        let mut st = self.kernel.lock();
        let rdisp = h.remote_bits();
        if !matches!(
            rdisp,
            tn::COPY_SEND | tn::MOVE_SEND | tn::MAKE_SEND | tn::MOVE_SEND_ONCE | tn::MAKE_SEND_ONCE
        ) || !h.remote.is_valid()
            || !st.check_copyin(self.space, h.remote, rdisp)
        {
            return KernReturn::SEND_INVALID_DEST;
        }
        let ldisp = h.local_bits();
        if h.local != PortName::NULL && ldisp == 0 {
            return KernReturn::SEND_INVALID_REPLY;
        }
        // Everything the send moves, in the order it moves it.
        let mut items = vec![(h.remote, rdisp)];
        if h.local != PortName::NULL {
            items.push((h.local, ldisp));
        }
        let body_at = items.len();
        items.extend(parsed.ports.iter().map(|&(_, name, disp)| (name, disp)));
        let refusal = |i: usize| match i {
            0 => KernReturn::SEND_INVALID_DEST,
            i if i < body_at => KernReturn::SEND_INVALID_REPLY,
            _ => KernReturn::SEND_INVALID_RIGHT,
        };
        if let Err(i) = st.check_copyins(self.space, &items) {
            return refusal(i);
        }
        let dest_port = match st.entry(self.space, h.remote) {
            Ok(e) if e.dead > 0 => return KernReturn::SEND_INVALID_DEST,
            Ok(e) => e.port,
            Err(_) => return KernReturn::SEND_INVALID_DEST,
        };
        let via_send_once = matches!(rdisp, tn::MOVE_SEND_ONCE | tn::MAKE_SEND_ONCE);

        // Wait for room in the queue (send-once messages always fit).
        if !via_send_once {
            loop {
                match st.ports.get(&dest_port) {
                    Some(p) if p.receiver.is_none() => return KernReturn::SEND_INVALID_DEST,
                    Some(p) if p.queue.len() < QLIMIT => break,
                    Some(_) => {}
                    None => return KernReturn::SEND_INVALID_DEST,
                }
                let cv = Arc::clone(&st.ports[&dest_port].room_cv);
                let waited;
                (st, waited) = Self::wait(
                    st,
                    &cv,
                    option & option::SEND_TIMEOUT != 0,
                    timeout,
                    KernReturn::SEND_TIMED_OUT,
                );
                if let Err(e) = waited {
                    return e;
                }
                // Other threads of the task may have changed its rights.
                if let Err(i) = st.check_copyins(self.space, &items) {
                    return refusal(i);
                }
            }
        }

        // Out-of-line data: a region the sender gives up moves as it is; any
        // other is copied once into a new region. Nothing has moved yet if
        // this fails.
        let ool = match self.copyin_ool(&parsed) {
            Ok(ool) => ool,
            Err(e) => return e,
        };
        // Copy in: everything was checked, so these succeed.
        let dest = st
            .copyin(self.space, h.remote, rdisp)
            .expect("checked destination");
        let reply = if h.local == PortName::NULL {
            None
        } else {
            Some(
                st.copyin(self.space, h.local, ldisp)
                    .expect("checked reply port"),
            )
        };
        let (body, ports) = self.copyin_body(&mut st, bytes, &parsed, &ool);
        let kmsg = KMsg {
            bits: h.bits & msg::BITS_COMPLEX,
            id: h.id,
            via_send_once,
            reply,
            body,
            ports,
            ool,
        };
        if handoff && let Some((p, target, space, handler)) = st.handoff_for(dest) {
            st.take_dest(dest);
            return self.hand_off(st, (p, target, space), &kmsg, &handler);
        }
        let r = st.enqueue(dest, kmsg);
        drop(st);
        r
    }

    /// Runs the receiver's `handler` on this thread for `kmsg` (its
    /// destination right already consumed), as if the thread asleep
    /// receiving on `target` had taken it: GNU Mach's hand-off, where a
    /// sender blocking for a reply gives its processor straight to the
    /// receiver. The borrowed receiver is not lent again meanwhile.
    fn hand_off(
        &self,
        mut st: MutexGuard<'_, State>,
        (p, target, space): (PortId, PortId, SpaceId),
        kmsg: &KMsg,
        handler: &Handoff,
    ) -> KernReturn {
        let port = st.ports.get_mut(&p).expect("hand-off port");
        let seqno = port.seqno;
        port.seqno = seqno.wrapping_add(1);
        st.ports.get_mut(&target).expect("hand-off target").waiting -= 1;
        st.handoffs += 1;
        // Nested hand-offs (a handler's own RPCs) find the buffer taken and
        // make their own.
        let mut buf = HANDOFF_BUF.take();
        buf.resize(HEADER_SIZE + kmsg.body.len(), 0);
        let size = st.deliver(space, p, seqno, kmsg, &mut buf);
        drop(st);
        self.kernel.copyout_ool(space, &kmsg.ool, &mut buf);
        // The receiver is lent back however the handler ends: a panic
        // unwinds into the sender, so a server's bug shows in its client
        // instead of leaving it waiting for a reply.
        let _lent = Lent {
            kernel: &self.kernel,
            target,
        };
        (handler.0)(&buf[..size]);
        HANDOFF_BUF.set(buf);
        KernReturn::SUCCESS
    }

    /// The out-of-line regions of a message about to be queued (offsets
    /// relative to the body).
    fn copyin_ool(&self, parsed: &Parsed) -> Result<Vec<(usize, u64, usize)>, KernReturn> {
        let mut out: Vec<(usize, u64, usize)> = Vec::new();
        for &(at, addr, n, dealloc) in &parsed.ool {
            let off = at - HEADER_SIZE;
            if n == 0 {
                out.push((off, 0, 0));
            } else if dealloc && self.kernel.vm.transfer(addr, Some(self.space), None) {
                // A whole region of the sender's: it changes hands.
                out.push((off, addr, n));
            } else {
                // SAFETY: the sender vouches (mach_msg's contract) that `addr`
                // is readable for `n` bytes, and `n` is not zero.
                let copied = unsafe { self.kernel.vm.copy(addr as *const u8, n, None) };
                let Ok(region) = copied else {
                    // Undo: moved regions go back, copies are freed.
                    for &(_, a, l) in &out {
                        if l > 0 && !self.kernel.vm.transfer(a, None, Some(self.space)) {
                            let _ = self.kernel.vm.deallocate(None, a, l);
                        }
                    }
                    return Err(KernReturn::SEND_NO_BUFFER);
                };
                out.push((off, region, n));
            }
        }
        Ok(out)
    }

    /// Takes the body's rights and out-of-line data into a kernel message.
    /// The body with its port slots cleared, and the rights it carries.
    #[allow(clippy::type_complexity)]
    fn copyin_body(
        &self,
        st: &mut State,
        bytes: &[u8],
        parsed: &Parsed,
        ool: &[(usize, u64, usize)],
    ) -> (Vec<u8>, Vec<(usize, Carried, u32)>) {
        let mut body = bytes[HEADER_SIZE..].to_vec();
        let mut ports = Vec::new();
        for &(at, name, disp) in &parsed.ports {
            let c = st.copyin(self.space, name, disp).expect("checked right");
            body[at - HEADER_SIZE..at - HEADER_SIZE + 8].fill(0);
            let name_value = if matches!(c, Carried::Name) {
                name.0
            } else {
                0
            };
            ports.push((at - HEADER_SIZE, c, name_value));
            // What the receiver sees in the descriptor.
            let dpos = Self::desc_offset_for(bytes, at);
            if let (Some(dpos), Some(recv)) = (dpos, tn::received(disp)) {
                body[dpos - HEADER_SIZE] = recv;
            }
        }
        for &(at, _, _) in ool {
            body[at..at + 8].fill(0);
        }
        (body, ports)
    }

    /// Offset of the descriptor whose data contains `data_at` (for port
    /// items, the descriptor directly precedes the first port slot).
    fn desc_offset_for(bytes: &[u8], data_at: usize) -> Option<usize> {
        let mut pos = HEADER_SIZE;
        while pos < bytes.len() {
            let d = TypeDesc::read(&bytes[pos..]).ok()?;
            let start = pos + d.desc_len();
            let end = pos + d.item_len()?;
            if (start..end).contains(&data_at) {
                return Some(pos);
            }
            pos = end;
        }
        None
    }

    fn receive(
        &self,
        buf: &mut [u8],
        option: u32,
        name: PortName,
        timeout: Option<Instant>,
    ) -> KernReturn {
        let mut st = self.kernel.lock();
        let (port_id, kmsg) = loop {
            let target = match st.receive_target(self.space, name) {
                Ok(t) => t,
                Err(e) => return e,
            };
            if let Some(p) = st.ready(target) {
                let port = st.ports.get_mut(&p).expect("ready port");
                let needed = HEADER_SIZE + port.queue.front().expect("queued").body.len();
                if needed > buf.len() {
                    if option & option::RCV_LARGE != 0 {
                        if buf.len() >= 8 {
                            buf[4..8].copy_from_slice(&(needed as u32).to_ne_bytes());
                        }
                        return KernReturn::RCV_TOO_LARGE;
                    }
                    let m = port.queue.pop_front().expect("queued");
                    st.destroy_msg(&m);
                    st.wake_sender(p);
                    return KernReturn::RCV_TOO_LARGE;
                }
                port.seqno = port.seqno.wrapping_add(1);
                let m = port.queue.pop_front().expect("queued");
                // Room for a blocked sender.
                st.wake_sender(p);
                break (p, m);
            }
            let t = st.ports.get_mut(&target).expect("received-on port");
            t.waiting += 1;
            let cv = Arc::clone(&t.recv_cv);
            let waited;
            (st, waited) = Self::wait(
                st,
                &cv,
                option & option::RCV_TIMEOUT != 0,
                timeout,
                KernReturn::RCV_TIMED_OUT,
            );
            if let Some(t) = st.ports.get_mut(&target) {
                t.waiting -= 1;
            }
            if let Err(e) = waited {
                return e;
            }
        };
        let seqno = st
            .ports
            .get(&port_id)
            .map_or(0, |p| p.seqno.wrapping_sub(1));
        st.deliver(self.space, port_id, seqno, &kmsg, buf);
        drop(st);
        self.kernel.copyout_ool(self.space, &kmsg.ool, buf);
        KernReturn::SUCCESS
    }
}

fn deadline(timeout_ms: u32) -> Option<Instant> {
    Instant::now().checked_add(Duration::from_millis(u64::from(timeout_ms)))
}

impl Ipc for Task {
    unsafe fn mach_msg(
        &self,
        msg: *mut u8,
        option: u32,
        send_size: u32,
        rcv_size: u32,
        rcv_name: PortName,
        timeout_ms: u32,
        _notify: PortName,
    ) -> KernReturn {
        // The clock is read only for a call that has a timeout.
        let limit = if option & (option::SEND_TIMEOUT | option::RCV_TIMEOUT) == 0 {
            None
        } else {
            deadline(timeout_ms)
        };
        if option & option::SEND_MSG != 0 {
            // SAFETY: mach_msg's contract: readable for send_size bytes.
            let bytes = unsafe { std::slice::from_raw_parts(msg, send_size as usize) };
            // An RPC that would block for its reply can run the receiver on
            // this thread; a timed one waits for a receiver thread instead,
            // so that its timeouts keep their meaning.
            let handoff = option & option::RCV_MSG != 0
                && option & (option::SEND_TIMEOUT | option::RCV_TIMEOUT) == 0;
            let r = self.send(bytes, option, limit, handoff);
            if r != KernReturn::SUCCESS {
                return r;
            }
        }
        if option & option::RCV_MSG != 0 {
            // SAFETY: mach_msg's contract: writable for rcv_size bytes.
            let buf = unsafe { std::slice::from_raw_parts_mut(msg, rcv_size as usize) };
            return self.receive(buf, option, rcv_name, limit);
        }
        KernReturn::SUCCESS
    }

    fn port_allocate(&self, right: Right) -> Result<PortName, KernReturn> {
        let mut st = self.kernel.lock();
        let is_set = match right {
            Right::Receive => false,
            Right::PortSet => true,
            _ => return Err(KernReturn::INVALID_VALUE),
        };
        let p = st.new_port(self.space, is_set);
        let space = st.space(self.space)?;
        let n = State::alloc_name(space);
        space.names.insert(
            n,
            Entry {
                port: p,
                receive: !is_set,
                set: is_set,
                ..Entry::default()
            },
        );
        space.by_port.insert(p, n);
        Ok(PortName(n))
    }

    fn port_deallocate(&self, name: PortName) -> KernReturn {
        self.kernel.lock().deallocate(self.space, name)
    }

    fn port_mod_refs(&self, name: PortName, right: Right, delta: i32) -> KernReturn {
        let mut st = self.kernel.lock();
        let r = match (right, delta) {
            (Right::Receive | Right::PortSet, -1) => {
                let Ok(e) = st.entry(self.space, name) else {
                    return KernReturn::INVALID_NAME;
                };
                let ok = if right == Right::Receive {
                    e.receive
                } else {
                    e.set
                };
                if !ok {
                    return KernReturn::INVALID_RIGHT;
                }
                e.receive = false;
                e.set = false;
                let p = e.port;
                st.drop_if_empty(self.space, name);
                st.destroy_port(p);
                KernReturn::SUCCESS
            }
            (Right::Send | Right::DeadName, d) if d > 0 => {
                let Ok(e) = st.entry(self.space, name) else {
                    return KernReturn::INVALID_NAME;
                };
                let d = d as u32;
                match right {
                    Right::Send if e.send > 0 => e.send += d,
                    Right::DeadName if e.dead > 0 => e.dead += d,
                    _ => return KernReturn::INVALID_RIGHT,
                }
                KernReturn::SUCCESS
            }
            (Right::Send | Right::DeadName | Right::SendOnce, d) if d < 0 => {
                let mut r = KernReturn::SUCCESS;
                for _ in 0..d.unsigned_abs() {
                    r = st.deallocate(self.space, name);
                    if r != KernReturn::SUCCESS {
                        break;
                    }
                }
                r
            }
            (_, 0) => KernReturn::SUCCESS,
            _ => KernReturn::INVALID_VALUE,
        };
        drop(st);
        r
    }

    fn port_insert_right(&self, name: PortName, poly: PortName, disposition: u8) -> KernReturn {
        let mut st = self.kernel.lock();
        if name != poly || disposition != tn::MAKE_SEND {
            // Only the common case: a send right under the receive right's name.
            return KernReturn::INVALID_VALUE;
        }
        let Ok(e) = st.entry(self.space, name) else {
            return KernReturn::INVALID_NAME;
        };
        if !e.receive {
            return KernReturn::INVALID_RIGHT;
        }
        let new_right = e.send == 0;
        e.send += 1;
        let p = e.port;
        let port = st.ports.get_mut(&p).expect("port");
        if new_right {
            port.srights += 1;
        }
        port.mscount += 1;
        KernReturn::SUCCESS
    }

    fn port_move_member(&self, member: PortName, set: PortName) -> KernReturn {
        let mut st = self.kernel.lock();
        let Ok(m) = st.entry(self.space, member) else {
            return KernReturn::INVALID_NAME;
        };
        if !m.receive {
            return KernReturn::INVALID_RIGHT;
        }
        let mp = m.port;
        let sp = if set == PortName::NULL {
            None
        } else {
            match st.entry(self.space, set) {
                Ok(e) if e.set => Some(e.port),
                Ok(_) => return KernReturn::INVALID_RIGHT,
                Err(e) => return e,
            }
        };
        let old = st.ports[&mp].in_set;
        st.wake(mp);
        st.ports.get_mut(&mp).expect("port").in_set = sp;
        st.wake(mp);
        if let Some(o) = old {
            st.wake(o);
        }
        drop(st);
        KernReturn::SUCCESS
    }

    fn request_notification(
        &self,
        name: PortName,
        id: i32,
        sync: u32,
        notify_port: PortName,
        notify_disposition: u8,
    ) -> Result<PortName, KernReturn> {
        let mut st = self.kernel.lock();
        let e = st.entry(self.space, name)?.clone();
        if !matches!(notify_disposition, tn::MAKE_SEND_ONCE | tn::MOVE_SEND_ONCE)
            || !st.check_copyin(self.space, notify_port, notify_disposition)
        {
            return Err(KernReturn::INVALID_CAPABILITY);
        }
        match id {
            notify::NO_SENDERS => {
                if !e.receive {
                    return Err(KernReturn::INVALID_RIGHT);
                }
                let Carried::SendOnce(Some(t)) =
                    st.copyin(self.space, notify_port, notify_disposition)?
                else {
                    return Err(KernReturn::INVALID_CAPABILITY);
                };
                let port = st.ports.get_mut(&e.port).expect("port");
                let previous = port.no_senders.replace(t);
                let fire = port.srights == 0 && port.mscount >= sync;
                let prev_name =
                    previous.map_or(PortName::NULL, |p| st.insert_send_once(self.space, p));
                if fire {
                    let port = st.ports.get_mut(&e.port).expect("port");
                    if let Some(t) = port.no_senders.take() {
                        let mscount = port.mscount;
                        let mut b = Builder::new(Header::default());
                        b.desc(TypeDesc::inline(tn::INTEGER_32, 32, 1))
                            .raw(&mscount.to_ne_bytes());
                        st.send_notification(t, notify::NO_SENDERS, &b.finish());
                    }
                }
                drop(st);
                Ok(prev_name)
            }
            notify::DEAD_NAME => {
                if e.send == 0 && !e.send_once && e.dead == 0 {
                    return Err(KernReturn::INVALID_RIGHT);
                }
                let Carried::SendOnce(Some(t)) =
                    st.copyin(self.space, notify_port, notify_disposition)?
                else {
                    return Err(KernReturn::INVALID_CAPABILITY);
                };
                if e.dead > 0 {
                    // Already dead: the notification goes out at once.
                    st.entry(self.space, name)?.dead += 1;
                    let mut b = Builder::new(Header::default());
                    b.desc(TypeDesc::inline(tn::PORT_NAME, 32, 1))
                        .raw(&name.0.to_ne_bytes());
                    st.send_notification(t, notify::DEAD_NAME, &b.finish());
                    drop(st);
                    return Ok(PortName::NULL);
                }
                let previous = st.entry(self.space, name)?.dead_request.replace(t);
                Ok(previous.map_or(PortName::NULL, |p| st.insert_send_once(self.space, p)))
            }
            _ => Err(KernReturn::INVALID_VALUE),
        }
    }

    fn task_self(&self) -> PortName {
        PortName::NULL
    }

    fn reply_port(&self) -> PortName {
        self.port_allocate(Right::Receive).unwrap_or(PortName::NULL)
    }

    fn vm_allocate(&self, size: usize) -> Result<u64, KernReturn> {
        self.kernel.vm.allocate(size, Some(self.space), true)
    }

    fn vm_allocate_for_overwrite(&self, size: usize) -> Result<u64, KernReturn> {
        self.kernel.vm.allocate(size, Some(self.space), false)
    }

    unsafe fn vm_deallocate(&self, addr: u64, size: usize) -> KernReturn {
        self.kernel.vm.deallocate(Some(self.space), addr, size)
    }
}

impl Drop for Task {
    fn drop(&mut self) {
        self.terminate();
    }
}
