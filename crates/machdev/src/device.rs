//! What a driver implements: a name space of devices ([`Driver`]) and the
//! operations on one open device ([`Device`]).

use alloc::sync::Arc;
use alloc::vec::Vec;

use mach::ipc::Ipc;
use mach::{KernReturn, PortName};

use crate::reply::{DataReply, WriteReply};

/// `dev_mode_t` bits of `device_open`.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct Mode(pub u32);

impl Mode {
    /// `D_READ`.
    pub const READ: u32 = 0x1;
    /// `D_WRITE`.
    pub const WRITE: u32 = 0x2;
    /// `D_NODELAY`: do not wait for the device to become ready.
    pub const NODELAY: u32 = 0x4;
    /// Every bit `device_open` accepts.
    pub const ALL: u32 = Self::READ | Self::WRITE | Self::NODELAY;

    /// Opened for reading.
    #[must_use]
    pub fn can_read(self) -> bool {
        self.0 & Self::READ != 0
    }

    /// Opened for writing.
    #[must_use]
    pub fn can_write(self) -> bool {
        self.0 & Self::WRITE != 0
    }
}

/// One open of a device. Calls may come from several server threads at
/// once. Errors are GNU Mach device codes (`D_IO_ERROR`, ...).
pub trait Device: Send + Sync {
    /// Reads `len` bytes at record `recnum`.
    fn read(&self, recnum: u64, len: usize) -> Result<Vec<u8>, KernReturn>;

    /// Writes `data` at record `recnum`; returns the bytes written.
    fn write(&self, recnum: u64, data: &[u8]) -> Result<usize, KernReturn>;

    /// `device_get_status`: up to `max` words of status `flavor`.
    fn get_status(&self, flavor: u32, max: usize) -> Result<Vec<i32>, KernReturn> {
        let _ = (flavor, max);
        Err(KernReturn::D_INVALID_OPERATION)
    }

    /// `device_set_status`.
    fn set_status(&self, flavor: u32, status: &[i32]) -> Result<(), KernReturn> {
        let _ = (flavor, status);
        Err(KernReturn::D_INVALID_OPERATION)
    }

    /// `device_set_filter`: frames this device receives (or sends) that
    /// the program `filter` accepts go to `port`, a send right the server
    /// holds in the task `ipc` (the server's), as `net_rcv_msg`s (see
    /// [`crate::net::FilterSet`]). On
    /// success the device keeps the right; on an error the server releases
    /// it. Devices that are not network interfaces answer
    /// `D_INVALID_OPERATION`, as GNU Mach's do.
    fn set_filter(
        &self,
        ipc: &Arc<dyn Ipc>,
        port: PortName,
        priority: i32,
        filter: &[u16],
    ) -> Result<(), KernReturn> {
        let _ = (ipc, port, priority, filter);
        Err(KernReturn::D_INVALID_OPERATION)
    }

    /// `port`, a filter's port given to [`Device::set_filter`], died (the
    /// server's dead-name notification): remove its filter and release the
    /// right now. Returns whether there was one.
    fn remove_filter(&self, port: PortName) -> bool {
        let _ = port;
        false
    }

    /// The open ends (explicit close, or the client's last send right
    /// went away). Called once.
    fn close(&self) {}

    /// Whether `device_read_inband`/`device_write_inband` are served (GNU
    /// Mach's disks do not serve them: `D_INVALID_OPERATION`).
    fn inband(&self) -> bool {
        true
    }

    /// Reads and answers through `reply`, now or later from any thread
    /// (the request's thread returns at once). The default reads in place.
    fn read_async(&self, recnum: u64, len: usize, reply: DataReply) {
        reply.send(self.read(recnum, len));
    }

    /// Writes and answers through `reply`, now or later from any thread.
    /// The default writes in place.
    fn write_async(&self, recnum: u64, data: crate::reply::Data, reply: WriteReply) {
        reply.send(self.write(recnum, &data));
    }
}

/// A family of devices, chosen by name.
pub trait Driver: Send + Sync {
    /// Whether `name` belongs to this driver (e.g. a prefix such as `wd`).
    fn claims(&self, name: &str) -> bool;

    /// Opens `name` with `mode`; each open gets its own handle.
    fn open(&self, name: &str, mode: Mode) -> Result<Arc<dyn Device>, KernReturn>;

    /// Flush everything (system shutdown: `startup_dosync`).
    fn sync(&self) {}
}
