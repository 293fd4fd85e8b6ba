//! Port rights that release themselves.

use std::sync::Arc;

use crate::ipc::Ipc;
use crate::kern::KernReturn;
use crate::port::{PortName, Right};

/// A receive right; destroyed on drop.
#[derive(Debug)]
pub struct ReceiveRight<I: Ipc + ?Sized> {
    ipc: Arc<I>,
    name: PortName,
}

impl<I: Ipc + ?Sized> ReceiveRight<I> {
    /// Allocates a new port.
    pub fn new(ipc: &Arc<I>) -> Result<Self, KernReturn> {
        let name = ipc.port_allocate(Right::Receive)?;
        Ok(Self {
            ipc: Arc::clone(ipc),
            name,
        })
    }

    /// Takes ownership of an existing receive right.
    pub fn from_name(ipc: &Arc<I>, name: PortName) -> Self {
        Self {
            ipc: Arc::clone(ipc),
            name,
        }
    }

    /// The name.
    #[must_use]
    pub fn name(&self) -> PortName {
        self.name
    }

    /// Gives up ownership without destroying the right.
    #[must_use]
    pub fn into_name(self) -> PortName {
        let n = self.name;
        std::mem::forget(self);
        n
    }
}

impl<I: Ipc + ?Sized> Drop for ReceiveRight<I> {
    fn drop(&mut self) {
        let _ = self.ipc.port_mod_refs(self.name, Right::Receive, -1);
    }
}

/// A send or send-once right (one user reference); released on drop.
#[derive(Debug)]
pub struct SendRight<I: Ipc + ?Sized> {
    ipc: Arc<I>,
    name: PortName,
}

impl<I: Ipc + ?Sized> SendRight<I> {
    /// Takes ownership of one user reference of `name`.
    pub fn from_name(ipc: &Arc<I>, name: PortName) -> Self {
        Self {
            ipc: Arc::clone(ipc),
            name,
        }
    }

    /// The name.
    #[must_use]
    pub fn name(&self) -> PortName {
        self.name
    }

    /// Gives up ownership without releasing (e.g. after moving it into a
    /// message).
    #[must_use]
    pub fn into_name(self) -> PortName {
        let n = self.name;
        std::mem::forget(self);
        n
    }
}

impl<I: Ipc + ?Sized> Drop for SendRight<I> {
    fn drop(&mut self) {
        if self.name.is_valid() {
            let _ = self.ipc.port_deallocate(self.name);
        }
    }
}
