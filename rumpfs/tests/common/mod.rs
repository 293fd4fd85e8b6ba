//! A Hurd client of rumpfs on the loopback kernel: the volume served by a
//! `machdev::netfs` server in one task, RPCs from another, as on the Hurd.

#![allow(dead_code)]

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use mach::ipc::Ipc;
use mach::loopback::{Kernel, Task};
use mach::msg::MsgBuf;
use mach::port::{Right, type_name as tn};
use mach::{KernReturn, PortName};
use machdev::PoolConfig;
use machdev::loopback::AuthServer;
use machdev::netfs::{NetfsServer, hurd_error, oflag};
use mig_bindings::auth::{self, AuthIds};
use mig_bindings::io::{self, Stat};
use mig_bindings::{fs, fsys, rpc};
use rumpfs::hurd::HurdFs;
use rumpfs::store::Store;
use rumpfs::volume::{self, Volume};

/// Why these tests cannot run here, if they cannot.
pub fn missing(tools: &[&str]) -> Option<String> {
    if !rump::LINKED {
        return Some("RUMP_PREFIX not set".into());
    }
    for tool in tools {
        let found = ["/usr/sbin", "/sbin", "/usr/bin", "/bin"]
            .iter()
            .any(|d| Path::new(d).join(tool).exists());
        if !found {
            return Some(format!("{tool} not installed (bash tests/setup.sh)"));
        }
    }
    None
}

/// Runs a host tool (from the sbin directories too), panicking with its
/// output if it fails.
pub fn run(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd)
        .args(args)
        .env("PATH", "/usr/sbin:/sbin:/usr/bin:/bin")
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"));
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A Hurd error from its errno.
pub fn e(errno: i32) -> KernReturn {
    hurd_error(errno)
}

/// The server and a client task.
pub struct Hurd {
    pub kernel: Arc<Kernel>,
    pub server_task: Arc<Task>,
    pub server: Arc<NetfsServer<HurdFs>>,
    pub client: Task,
    /// The client's send right to the control port.
    pub control: PortName,
    /// A port of the client's own, given as the root's `..`.
    pub dotdot: PortName,
    /// The auth server of the server and the client.
    pub auth: Arc<AuthServer>,
}

impl Hurd {
    /// Mounts `image` and serves it.
    pub fn serve(image: &Path, accept_kernel_defect: bool) -> Self {
        // RUST_LOG=debug shows the server's view of failing calls.
        let _ = env_logger::builder().is_test(true).try_init();
        let vol = Volume::mount(&volume::Options {
            store: Store::File(image.to_path_buf()),
            fstype: None,
            readonly: false,
            sync: false,
            accept_kernel_defect,
            device_master: None,
        })
        .expect("mount");
        Self::serve_volume(vol, Kernel::new())
    }

    /// Serves a mounted volume from a new task of `kernel`.
    pub fn serve_volume(vol: Volume, kernel: Arc<Kernel>) -> Self {
        let server_task = Arc::new(kernel.new_task());
        let ipc: Arc<dyn Ipc> = server_task.clone();
        let server = NetfsServer::new(
            ipc,
            Arc::new(HurdFs::new(Arc::new(vol))),
            PoolConfig::default(),
        )
        .unwrap();
        machdev::loopback::serve_on(&server_task, &server, true).unwrap();
        // The server's own handle (it runs as root).
        let auth = AuthServer::start(&kernel).unwrap();
        let root = AuthIds {
            euids: vec![0],
            auids: vec![0, 0],
            egids: vec![0],
            agids: vec![0, 0],
        };
        server.set_auth_server(auth.handle(root, &server_task).unwrap());
        let client = kernel.new_task();
        let control = server_task
            .give_send_right(server.control_port(), &client)
            .unwrap();
        let dotdot = client.port_allocate(Right::Receive).unwrap();
        Self {
            kernel,
            server_task,
            server,
            client,
            control,
            dotdot,
            auth,
        }
    }

    /// `io_reauthenticate` of `port` and the client's
    /// `auth_user_authenticate` with `handle`, as glibc makes them: the
    /// port the server gives through the auth server. With `user_first`,
    /// the client's call waits at the auth server before the server hears
    /// of it.
    pub fn reauthenticate(
        &self,
        port: PortName,
        handle: PortName,
        user_first: bool,
    ) -> Result<PortName, KernReturn> {
        let rendezvous = self.client.port_allocate(Right::Receive).unwrap();
        let user = || {
            let m = self
                .call(|r| auth::user_authenticate_request(handle, r, (rendezvous, tn::MAKE_SEND)));
            auth::decode_user_authenticate_reply(m.as_bytes())
        };
        let reauth = || {
            let mut m = io::reauthenticate_request(port, rendezvous, tn::MAKE_SEND);
            // SAFETY: a complete message, sent only (a simpleroutine).
            let sent = unsafe {
                self.client.mach_msg(
                    m.as_mut_ptr(),
                    mach::ipc::option::SEND_MSG,
                    m.len() as u32,
                    0,
                    PortName::NULL,
                    0,
                    PortName::NULL,
                )
            };
            sent.result()
        };
        let got = if user_first {
            std::thread::scope(|s| {
                let waiting = s.spawn(user);
                while self.auth.waiting() == 0 {
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
                reauth()?;
                waiting.join().expect("the client's call")
            })
        } else {
            reauth().and_then(|()| user())
        };
        let _ = self.client.port_mod_refs(rendezvous, Right::Receive, -1);
        got
    }

    pub fn call(&self, build: impl FnOnce(PortName) -> MsgBuf) -> MsgBuf {
        rpc::rpc(&self.client, build).expect("the RPC went through")
    }

    /// `fsys_getroot` as `uids`/`gids` (the `..` is [`Hurd::dotdot`]).
    pub fn root_as(&self, uids: &[u32], gids: &[u32], flags: i32) -> Result<PortName, KernReturn> {
        let m = self.call(|r| {
            fsys::getroot_request_as(
                self.control,
                r,
                (self.dotdot, tn::MAKE_SEND),
                uids,
                gids,
                flags,
            )
        });
        let (retry, name, port) = fsys::decode_getroot_reply(m.as_bytes())?;
        assert_eq!((retry, name.as_str()), (fs::FS_RETRY_NORMAL, ""));
        Ok(port)
    }

    pub fn lookup_raw(
        &self,
        dir: PortName,
        name: &str,
        flags: i32,
        mode: u32,
    ) -> Result<(i32, String, PortName), KernReturn> {
        let m = self.call(|r| fs::lookup_request(dir, r, name, flags, mode));
        fs::decode_lookup_reply(m.as_bytes())
    }

    /// A lookup that must end here (`FS_RETRY_NORMAL`, no name left).
    pub fn open(&self, dir: PortName, name: &str, flags: i32) -> Result<PortName, KernReturn> {
        self.open_mode(dir, name, flags, 0o644)
    }

    pub fn open_mode(
        &self,
        dir: PortName,
        name: &str,
        flags: i32,
        mode: u32,
    ) -> Result<PortName, KernReturn> {
        let (retry, rest, port) = self.lookup_raw(dir, name, flags, mode)?;
        assert_eq!((retry, rest.as_str()), (fs::FS_RETRY_NORMAL, ""), "{name}");
        Ok(port)
    }

    pub fn read(&self, file: PortName, offset: i64, amount: u64) -> Result<Vec<u8>, KernReturn> {
        let m = self.call(|r| io::read_request(file, r, offset, amount));
        let d = io::decode_read_reply(m.as_bytes())?;
        // SAFETY: out-of-line data came into this task with the reply.
        Ok(unsafe { io::take_data(&self.client, d) })
    }

    pub fn write(&self, file: PortName, data: &[u8], offset: i64) -> Result<i64, KernReturn> {
        let m = self.call(|r| io::write_request(file, r, data, offset));
        io::decode_int64_reply(m.as_bytes(), io::ID_WRITE)
    }

    pub fn seek(&self, file: PortName, offset: i64, whence: i32) -> Result<i64, KernReturn> {
        let m = self.call(|r| io::seek_request(file, r, offset, whence));
        io::decode_int64_reply(m.as_bytes(), io::ID_SEEK)
    }

    pub fn stat(&self, file: PortName) -> Result<Stat, KernReturn> {
        let m = self.call(|r| io::bare_request(file, r, io::ID_STAT));
        io::decode_stat_reply(m.as_bytes()).map(|b| Stat::decode(&b))
    }

    /// Every entry's name, read `per_call` entries at a time.
    pub fn readdir(&self, dir: PortName, per_call: i32) -> Result<Vec<String>, KernReturn> {
        let mut names = Vec::new();
        loop {
            let m = self.call(|r| fs::readdir_request(dir, r, names.len() as i32, per_call, 0));
            let (d, n) = fs::decode_readdir_reply(m.as_bytes())?;
            // SAFETY: as in `read`.
            let bytes = unsafe { io::take_data(&self.client, d) };
            let got = fs::parse_dirents(&bytes);
            assert_eq!(got.len(), n as usize);
            if n == 0 {
                return Ok(names);
            }
            names.extend(
                got.into_iter()
                    .map(|(_, _, n)| String::from_utf8(n).unwrap()),
            );
        }
    }

    pub fn simple(
        &self,
        build: impl FnOnce(PortName) -> MsgBuf,
        id: i32,
    ) -> Result<(), KernReturn> {
        let m = self.call(build);
        rpc::decode_simple_reply(m.as_bytes(), id)
    }

    pub fn mkdir(&self, dir: PortName, name: &str, mode: u32) -> Result<(), KernReturn> {
        self.simple(
            |r| fs::name_request(dir, r, fs::ID_MKDIR, name, Some(mode)),
            fs::ID_MKDIR,
        )
    }

    pub fn unlink(&self, dir: PortName, name: &str) -> Result<(), KernReturn> {
        self.simple(
            |r| fs::name_request(dir, r, fs::ID_UNLINK, name, None),
            fs::ID_UNLINK,
        )
    }

    pub fn rmdir(&self, dir: PortName, name: &str) -> Result<(), KernReturn> {
        self.simple(
            |r| fs::name_request(dir, r, fs::ID_RMDIR, name, None),
            fs::ID_RMDIR,
        )
    }

    pub fn rename(
        &self,
        dir: PortName,
        old: &str,
        newdir: PortName,
        new: &str,
        excl: bool,
    ) -> Result<(), KernReturn> {
        self.simple(
            |r| fs::rename_request(dir, r, old, (newdir, tn::COPY_SEND), new, excl),
            fs::ID_RENAME,
        )
    }

    /// glibc's `symlink`/`mknod` on the Hurd: `dir_mkfile`, a
    /// short-circuited passive translator, `dir_link` (exclusive).
    pub fn make_special(
        &self,
        dir: PortName,
        name: &str,
        passive: &[u8],
    ) -> Result<(), KernReturn> {
        let m = self.call(|r| fs::mkfile_request(dir, r, oflag::O_WRITE, 0o644));
        let node = io::decode_port_reply(m.as_bytes(), fs::ID_MKFILE)?;
        let set = self.simple(
            |r| {
                let flags = fs::FS_TRANS_SET | fs::FS_TRANS_EXCL;
                fs::set_translator_request(node, r, flags, passive)
            },
            fs::ID_SET_TRANSLATOR,
        );
        let linked = set.and_then(|()| {
            self.simple(
                |r| fs::link_request(dir, r, (node, tn::COPY_SEND), name, true),
                fs::ID_LINK,
            )
        });
        self.release(node);
        linked
    }

    pub fn goaway(&self) -> Result<(), KernReturn> {
        self.simple(
            |r| fsys::goaway_request(self.control, r, 0),
            fsys::ID_GOAWAY,
        )
    }

    pub fn release(&self, port: PortName) {
        let _ = self.client.port_deallocate(port);
    }
}
