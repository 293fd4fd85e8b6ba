//! An in-process Mach kernel for tests on Linux: several tasks (IPC
//! spaces) in one process exchange typed messages with Mach's semantics.
//!
//! Modelled: receive, send and send-once rights with user references and
//! name merging; port sets; message queues with a queue limit (blocking or
//! timed sends); send and receive timeouts; `MACH_RCV_TOO_LARGE` (and
//! `MACH_RCV_LARGE`); out-of-line memory handed over by copy — or, when the
//! sender gives up a region of its own (deallocate bit), moved without a
//! copy, as GNU Mach remaps pages; VM regions belong to a task, which can
//! free only its own, and are freed when it dies; no-senders, dead-name,
//! port-deleted and send-once notifications; task termination releasing
//! every right the task held (so servers see no-senders and clients see
//! dead names, and pending RPCs get `MIG_SERVER_DIED` from their stubs);
//! GNU Mach's hand-off of a client blocking for its reply to a server
//! thread waiting in receive, as the client's thread running the server's
//! handler ([`Task::set_handoff`]).
//!
//! Not modelled (answered with the error named): receive rights in messages
//! (`MACH_MSG_TYPE_MOVE_RECEIVE`, `MACH_SEND_INVALID_TYPE`), out-of-line
//! port arrays (`MACH_SEND_INVALID_TYPE`), port-destroyed and
//! msg-accepted notifications (`KERN_INVALID_VALUE`), partial
//! `vm_deallocate` of a region (`KERN_INVALID_ADDRESS`), out-of-line
//! addresses that are not readable memory (the real kernel answers
//! `MACH_SEND_INVALID_MEMORY`; this one trusts the sender), and the
//! deallocate bit on memory that `vm_allocate` did not hand out
//! (`MACH_SEND_INVALID_MEMORY` here; the real kernel unmaps the pages).

mod kernel;
mod vm;

pub use kernel::{Handler, Kernel, Stats, Task};
