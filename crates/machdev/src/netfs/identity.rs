//! Identity ports (`io_identity`), as libfshelp's `fshelp_get_identity`
//! keeps them: one port per node, the same for every open of it while any
//! client holds a send right, so that clients compare nodes by the names of
//! their rights (glibc's `getcwd` does). A node's port goes when its last
//! send right does; the no-senders notification carries the make-send
//! count, and one that predates rights made since is waited out.

use std::collections::BTreeMap;

use mach::{KernReturn, PortName};
use parking_lot::Mutex;

use super::Node;

struct Ident {
    port: PortName,
    /// Where its no-senders notification comes.
    notify: PortName,
    /// Send rights made of `port` (one per `io_identity` answered).
    made: u32,
    /// The make-send count the notification was last asked for at.
    armed: u32,
}

/// What to do on a no-senders notification of an identity port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Gone {
    /// The last right made has gone: destroy the port.
    Retire(PortName),
    /// Rights were made after the notification's count (or the count
    /// asked for was never reached): ask again for the notification on
    /// the port `.0` (coming to `.1`) at make-send count `.2`.
    Rearm(PortName, PortName, u32),
    /// The port is not (any more) the node's.
    Stale,
}

/// The identity ports of a server's nodes.
#[derive(Default)]
pub(super) struct Identities {
    ids: Mutex<BTreeMap<Node, Ident>>,
}

impl Identities {
    /// The identity port of `node`, counting one more send right of it
    /// (the reply that carries it makes it): made with `make` the first
    /// time, a port served with its no-senders notification.
    /// `make` answers the port and its notification port, the
    /// notification asked for at make-send count 1.
    pub(super) fn get(
        &self,
        node: Node,
        make: impl FnOnce() -> Result<(PortName, PortName), KernReturn>,
    ) -> Result<PortName, KernReturn> {
        let mut ids = self.ids.lock();
        if let Some(i) = ids.get_mut(&node) {
            i.made += 1;
            return Ok(i.port);
        }
        let (port, notify) = make()?;
        ids.insert(
            node,
            Ident {
                port,
                notify,
                made: 1,
                armed: 1,
            },
        );
        Ok(port)
    }

    /// A send right `get` counted was never made (its reply went nowhere):
    /// with none made at all the port goes at once; a notification asked
    /// for at a count no longer coming is asked for again.
    pub(super) fn unmade(&self, node: Node) -> Gone {
        let mut ids = self.ids.lock();
        let Some(i) = ids.get_mut(&node) else {
            return Gone::Stale;
        };
        i.made = i.made.saturating_sub(1);
        if i.made == 0 {
            let port = i.port;
            ids.remove(&node);
            return Gone::Retire(port);
        }
        if i.armed > i.made {
            i.armed = i.made;
            return Gone::Rearm(i.port, i.notify, i.made);
        }
        Gone::Stale
    }

    /// `node`'s identity `port` had no senders at make-send count `count`.
    pub(super) fn gone(&self, node: Node, port: PortName, count: u32) -> Gone {
        let mut ids = self.ids.lock();
        match ids.get_mut(&node) {
            Some(i) if i.port != port => Gone::Stale,
            None => Gone::Stale,
            Some(i) if count < i.made => {
                i.armed = i.made;
                Gone::Rearm(i.port, i.notify, i.made)
            }
            Some(_) => {
                ids.remove(&node);
                Gone::Retire(port)
            }
        }
    }

    /// Forgets every port (the server stopping destroys them).
    pub(super) fn clear(&self) {
        self.ids.lock().clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_port_per_node_until_its_last_right_goes() {
        let ids = Identities::default();
        let mut next = 10;
        let mut make = || {
            next += 2;
            Ok((PortName(next), PortName(next + 1)))
        };
        let a = ids.get(1, &mut make).unwrap();
        assert_eq!(ids.get(1, &mut make).unwrap(), a);
        let b = ids.get(2, &mut make).unwrap();
        assert_ne!(a, b);
        let a_notify = PortName(a.0 + 1);
        // The first right went, a second was made since: wait for it.
        assert_eq!(ids.gone(1, a, 1), Gone::Rearm(a, a_notify, 2));
        assert_eq!(ids.gone(1, a, 2), Gone::Retire(a));
        assert_eq!(ids.gone(1, a, 2), Gone::Stale);
        // A new port for the node after that.
        assert_ne!(ids.get(1, &mut make).unwrap(), a);
        // A right counted but never sent does not hold the port: the
        // notification waited for it is asked again at the count reached.
        ids.get(2, &mut make).unwrap();
        assert_eq!(ids.gone(2, b, 1), Gone::Rearm(b, PortName(b.0 + 1), 2));
        assert_eq!(ids.unmade(2), Gone::Rearm(b, PortName(b.0 + 1), 1));
        assert_eq!(ids.gone(2, b, 1), Gone::Retire(b));
        // None made at all: it goes at once.
        let c = ids.get(4, &mut make).unwrap();
        assert_eq!(ids.unmade(4), Gone::Retire(c));
        assert_eq!(ids.gone(4, c, 0), Gone::Stale);
        assert_eq!(
            ids.get(3, || Err(KernReturn::NO_SPACE)),
            Err(KernReturn::NO_SPACE)
        );
        assert_eq!(ids.gone(3, PortName(99), 0), Gone::Stale);
    }
}
