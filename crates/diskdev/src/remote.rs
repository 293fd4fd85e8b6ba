//! A Mach disk device as a client sees it: opened through a device master
//! (the kernel's, or a disk translator's such as rumpdisk's), sized with
//! `DEV_GET_RECORDS` (records and their size: past 4 GiB, which
//! `DEV_GET_SIZE`'s byte count cannot say), read and written with `device_read`/`device_write` in
//! whole records. It is a [`hypercall::file::BlockDevice`], so a rump
//! kernel's etfs block device can sit on it (rumpfs's `device:NAME`
//! stores): every block the kernel reads or writes goes out as RPCs.

use std::io;
use std::sync::Arc;

use hypercall::errno::{HyResult, NetbsdErrno, nb};
use hypercall::file::BlockDevice;
use mach::ipc::Ipc;
use mach::{KernReturn, PortName};
use machdev::Mode;
use mig_bindings::device::Client;
use parking_lot::Mutex;

use crate::device::{DEV_FLUSH_CACHE, DEV_GET_RECORDS};

/// Largest transfer of one RPC.
const CHUNK: usize = 1 << 20;

/// An open Mach disk device.
pub struct MachDisk {
    ipc: Arc<dyn Ipc>,
    port: PortName,
    name: String,
    size: u64,
    record: u64,
    read_only: bool,
    /// Reply ports of finished calls, for the next ones (a call takes one,
    /// so several threads can call at once).
    replies: Mutex<Vec<PortName>>,
}

impl std::fmt::Debug for MachDisk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MachDisk")
            .field("name", &self.name)
            .field("size", &self.size)
            .field("record", &self.record)
            .finish_non_exhaustive()
    }
}

fn kr(what: &str, name: &str, e: KernReturn) -> io::Error {
    let kind = match e {
        KernReturn::D_NO_SUCH_DEVICE => io::ErrorKind::NotFound,
        KernReturn::D_READ_ONLY => io::ErrorKind::PermissionDenied,
        _ => io::ErrorKind::Other,
    };
    io::Error::new(kind, format!("device:{name}: {what}: {e}"))
}

/// GNU Mach's device errors as NetBSD's errno.
fn errno(e: KernReturn) -> NetbsdErrno {
    NetbsdErrno(match e {
        KernReturn::D_READ_ONLY => nb::EROFS,
        KernReturn::D_INVALID_RECNUM | KernReturn::D_INVALID_SIZE => nb::EINVAL,
        KernReturn::D_NO_SUCH_DEVICE | KernReturn::D_DEVICE_DOWN => nb::ENXIO,
        KernReturn::D_NO_MEMORY => nb::ENOMEM,
        _ => nb::EIO,
    })
}

impl MachDisk {
    /// Opens device `name` through `master` (read-write unless
    /// `read_only`).
    pub fn open(
        ipc: Arc<dyn Ipc>,
        master: PortName,
        name: &str,
        read_only: bool,
    ) -> io::Result<Self> {
        let mode = Mode::READ | if read_only { 0 } else { Mode::WRITE };
        let client = Client::new(&*ipc);
        let port = client
            .open(master, mode, name)
            .map_err(|e| kr("device_open", name, e))?;
        let sized = client
            .get_status(port, DEV_GET_RECORDS, 2)
            .map_err(|e| kr("DEV_GET_RECORDS", name, e));
        let status = match sized {
            Ok(s) if s.len() == 2 && s[1] > 0 => s,
            other => {
                let _ = ipc.port_deallocate(port);
                return Err(other.err().unwrap_or_else(|| {
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("device:{name}: DEV_GET_RECORDS answered no size"),
                    )
                }));
            }
        };
        drop(client);
        Ok(Self {
            ipc,
            port,
            name: name.into(),
            size: u64::from(status[0] as u32) * u64::from(status[1] as u32),
            record: u64::from(status[1] as u32),
            read_only,
            replies: Mutex::new(Vec::new()),
        })
    }

    /// Runs `f` with a client whose reply port is one of an earlier call
    /// (made on first use), and keeps the port for the next call.
    fn with_client<T>(&self, f: impl FnOnce(&Client<'_, dyn Ipc>) -> T) -> T {
        let reply = self.replies.lock().pop().unwrap_or(PortName::NULL);
        let client = Client::with_reply(&*self.ipc, reply);
        let r = f(&client);
        let reply = client.into_reply();
        if reply.is_valid() {
            self.replies.lock().push(reply);
        }
        r
    }

    /// The device's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Bytes per record.
    #[must_use]
    pub fn record_size(&self) -> u64 {
        self.record
    }

    /// Reads `buf.len()` bytes at `offset`, whole (records read around an
    /// unaligned range).
    pub fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        match self.read_at(offset, buf) {
            Ok(n) if n == buf.len() => Ok(()),
            Ok(_) => Err(io::ErrorKind::UnexpectedEof.into()),
            Err(e) => Err(e.to_io()),
        }
    }

    /// Writes `data` at `offset`, whole (an unaligned range is read,
    /// changed and written back by the record).
    pub fn write_all_at(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.write_at(offset, data)
            .map(drop)
            .map_err(NetbsdErrno::to_io)
    }

    /// Whole records `[first, first + buf.len() / record)`.
    fn read_records(
        &self,
        client: &Client<'_, dyn Ipc>,
        offset: u64,
        buf: &mut [u8],
    ) -> HyResult<()> {
        let mut done = 0;
        while done < buf.len() {
            let n = (buf.len() - done).min(CHUNK);
            let got = client
                .read_region(self.port, (offset + done as u64) / self.record, n as i32)
                .map_err(errno)?;
            if got.len() != n {
                return Err(NetbsdErrno(nb::EIO));
            }
            buf[done..done + n].copy_from_slice(&got);
            done += n;
        }
        Ok(())
    }

    fn write_records(
        &self,
        client: &Client<'_, dyn Ipc>,
        offset: u64,
        data: &[u8],
    ) -> HyResult<()> {
        let mut done = 0;
        while done < data.len() {
            let n = (data.len() - done).min(CHUNK);
            let put = client
                .write(
                    self.port,
                    (offset + done as u64) / self.record,
                    &data[done..done + n],
                )
                .map_err(errno)?;
            if put as usize != n {
                return Err(NetbsdErrno(nb::EIO));
            }
            done += n;
        }
        Ok(())
    }

    /// The record-aligned range around `[offset, offset + len)`.
    fn around(&self, offset: u64, len: usize) -> (u64, usize) {
        let start = offset - offset % self.record;
        let end = (offset + len as u64).next_multiple_of(self.record);
        (start, (end - start) as usize)
    }
}

impl BlockDevice for MachDisk {
    fn size(&self) -> u64 {
        self.size
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> HyResult<usize> {
        let len = buf.len().min(self.size.saturating_sub(offset) as usize);
        if len == 0 {
            return Ok(0);
        }
        let (start, span) = self.around(offset, len);
        self.with_client(|client| {
            if start == offset && span == len {
                self.read_records(client, offset, &mut buf[..len])
            } else {
                let mut tmp = vec![0u8; span];
                self.read_records(client, start, &mut tmp)?;
                let at = (offset - start) as usize;
                buf[..len].copy_from_slice(&tmp[at..at + len]);
                Ok(())
            }
        })?;
        Ok(len)
    }

    fn write_at(&self, offset: u64, data: &[u8]) -> HyResult<usize> {
        if self.read_only {
            return Err(NetbsdErrno(nb::EROFS));
        }
        if offset + data.len() as u64 > self.size {
            return Err(NetbsdErrno(nb::ENOSPC));
        }
        if data.is_empty() {
            return Ok(0);
        }
        let (start, span) = self.around(offset, data.len());
        self.with_client(|client| {
            if start == offset && span == data.len() {
                self.write_records(client, offset, data)
            } else {
                let mut tmp = vec![0u8; span];
                self.read_records(client, start, &mut tmp)?;
                let at = (offset - start) as usize;
                tmp[at..at + data.len()].copy_from_slice(data);
                self.write_records(client, start, &tmp)
            }
        })?;
        Ok(data.len())
    }

    fn flush(&self) -> HyResult<()> {
        if self.read_only {
            return Ok(());
        }
        match self.with_client(|client| client.set_status(self.port, DEV_FLUSH_CACHE, &[])) {
            // A device without a cache to flush.
            Ok(()) | Err(KernReturn::D_INVALID_OPERATION) => Ok(()),
            Err(e) => Err(errno(e)),
        }
    }
}

impl Drop for MachDisk {
    fn drop(&mut self) {
        let _ = self.with_client(|client| client.close(self.port));
        let _ = self.ipc.port_deallocate(self.port);
        for reply in self.replies.get_mut().drain(..) {
            let _ = self
                .ipc
                .port_mod_refs(reply, mach::port::Right::Receive, -1);
        }
    }
}
