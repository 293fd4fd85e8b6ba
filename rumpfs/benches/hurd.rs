//! rumpfs's Hurd front end on the loopback transport, against the same
//! work done without RPCs, in the same run: `dir_lookup` of a 3-component
//! path + `io_stat` of the result (+ releasing the protid) per second, as
//! glibc's `stat` does it (no open modes), vs
//! the volume's own lookup + stat calls; `io_stat` alone; and a 256 MiB
//! file read with 1 MiB `io_read`s (warm caches) vs `pread` of the image
//! file in 1 MiB pieces. Prints the rates and ratios (RPC path / direct).
//!
//! `RUMP_PREFIX=... cargo bench -p rumpfs --bench hurd` (mke2fs needed).

#[cfg(rump_kernel)]
mod run {
    use std::fs;
    use std::os::unix::fs::FileExt;
    use std::path::{Path, PathBuf};
    use std::process::{Command, Stdio};
    use std::sync::Arc;
    use std::time::Instant;

    use mach::PortName;
    use mach::ipc::Ipc;
    use mach::loopback::{Kernel, Task};
    use mach::msg::MsgBuf;
    use mach::port::{Right, type_name as tn};
    use machdev::PoolConfig;
    use machdev::netfs::{NetfsServer, oflag};
    use mig_bindings::{fs as hfs, fsys, io, rpc};
    use rumpfs::hurd::HurdFs;
    use rumpfs::store::Store;
    use rumpfs::volume::{self, Volume};

    const FILE_MIB: u32 = 256;
    const LOOKUPS: u32 = 20_000;

    /// The served volume and a client holding its root.
    struct Bed {
        vol: Arc<Volume>,
        server: Arc<NetfsServer<HurdFs>>,
        client: Task,
        reply: PortName,
        root: PortName,
    }

    impl Bed {
        fn call(&self, build: impl FnOnce(PortName) -> MsgBuf) -> MsgBuf {
            rpc::call(&self.client, self.reply, build).unwrap()
        }

        /// A lookup with `flags` (0: as glibc's `stat` asks).
        fn open(&self, name: &str, flags: i32) -> PortName {
            let m = self.call(|r| hfs::lookup_request(self.root, r, name, flags, 0));
            hfs::decode_lookup_reply(m.as_bytes()).unwrap().2
        }

        fn stat(&self, f: PortName) {
            let m = self.call(|r| io::bare_request(f, r, io::ID_STAT));
            assert!(io::decode_stat_reply(m.as_bytes()).is_ok());
        }
    }

    /// Per second: `n` runs of `f`.
    fn rate(n: u32, mut f: impl FnMut()) -> f64 {
        let t0 = Instant::now();
        for _ in 0..n {
            f();
        }
        f64::from(n) / t0.elapsed().as_secs_f64()
    }

    /// An ext2 image holding `a/b/c` and the `big` file (None without
    /// mke2fs).
    fn image(dir: &Path, big: &[u8]) -> Option<PathBuf> {
        let src = dir.join("src");
        fs::create_dir_all(src.join("a/b")).unwrap();
        fs::write(src.join("a/b/c"), b"x").unwrap();
        fs::write(src.join("big"), big).unwrap();
        let img = dir.join("ext2.img");
        let ok = Command::new("/usr/sbin/mke2fs")
            .args(["-q", "-F", "-t", "ext2", "-d"])
            .arg(&src)
            .arg(&img)
            .arg(format!("{}M", FILE_MIB + 64))
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        fs::remove_dir_all(&src).unwrap();
        ok.then_some(img)
    }

    fn serve(img: &Path) -> Bed {
        let vol = Arc::new(
            Volume::mount(&volume::Options {
                store: Store::File(img.to_path_buf()),
                fstype: None,
                readonly: true,
                sync: false,
                accept_kernel_defect: false,
                device_master: None,
            })
            .unwrap(),
        );
        let kernel = Kernel::new();
        let server_task = Arc::new(kernel.new_task());
        let ipc: Arc<dyn Ipc> = server_task.clone();
        let fs = Arc::new(HurdFs::new(Arc::clone(&vol)));
        let server = NetfsServer::new(ipc, fs, PoolConfig::default()).unwrap();
        machdev::loopback::serve_on(&server_task, &server, true).unwrap();
        let client = kernel.new_task();
        let control = server_task
            .give_send_right(server.control_port(), &client)
            .unwrap();
        let reply = client.port_allocate(Right::Receive).unwrap();
        let mut bed = Bed {
            vol,
            server,
            client,
            reply,
            root: PortName::NULL,
        };
        let m = bed.call(|r| {
            let dotdot = (PortName::NULL, tn::COPY_SEND);
            fsys::getroot_request_as(control, r, dotdot, &[0], &[0], oflag::O_READ)
        });
        bed.root = fsys::decode_getroot_reply(m.as_bytes()).unwrap().2;
        bed
    }

    fn lookups(b: &Bed) {
        let rpcs = rate(LOOKUPS, || {
            let f = b.open("a/b/c", 0);
            b.stat(f);
            let _ = b.client.port_deallocate(f);
        });
        let vol = &b.vol;
        let direct = rate(LOOKUPS, || {
            let mut at = vol.root();
            for name in [&b"a"[..], b"b", b"c"] {
                let next = vol.lookup(at, name).unwrap().ino;
                if at != vol.root() {
                    vol.forget(at, 1);
                }
                at = next;
            }
            vol.stat(at).unwrap();
            vol.forget(at, 1);
        });
        println!(
            "dir_lookup(a/b/c) + io_stat: {rpcs:.0}/s over RPCs, {direct:.0}/s direct; ratio {:.2}",
            rpcs / direct
        );
        let c = b.open("a/b/c", 0);
        let rpcs = rate(LOOKUPS, || b.stat(c));
        let _ = b.client.port_deallocate(c);
        let node = vol.lookup(vol.root(), b"a").unwrap().ino;
        let direct = rate(LOOKUPS, || {
            vol.stat(node).unwrap();
        });
        vol.forget(node, 1);
        println!(
            "io_stat of an open file: {rpcs:.0}/s over RPCs, {direct:.0}/s direct; ratio {:.2}",
            rpcs / direct
        );
    }

    /// MiB/s of reading `big` in 1 MiB `io_read`s and of `pread`s of the
    /// image; the second of two runs each (the first warms the caches).
    fn reads(b: &Bed, img: &Path, big: &[u8]) {
        let f = b.open("big", oflag::O_READ);
        let mut rpc_mibs = 0.0;
        for _ in 0..2 {
            rpc_mibs = f64::from(FILE_MIB)
                * rate(1, || {
                    let mut off = 0;
                    while off < big.len() {
                        let m = b.call(|r| io::read_request(f, r, off as i64, 1 << 20));
                        let d = io::decode_read_reply(m.as_bytes()).unwrap();
                        // SAFETY: the reply's region came into this task.
                        let got = unsafe { io::take_data(&b.client, d) };
                        assert_eq!(got[..16], big[off..off + 16]);
                        off += got.len();
                    }
                });
        }
        let _ = b.client.port_deallocate(f);
        let image = fs::File::open(img).unwrap();
        let mut buf = vec![0u8; 1 << 20];
        let mut pread_mibs = 0.0;
        for _ in 0..2 {
            pread_mibs = f64::from(FILE_MIB)
                * rate(1, || {
                    for i in 0..u64::from(FILE_MIB) {
                        image.read_exact_at(&mut buf, i << 20).unwrap();
                    }
                });
        }
        println!(
            "1 MiB io_read of {FILE_MIB} MiB: {rpc_mibs:.0} MiB/s; pread of the image: {pread_mibs:.0} MiB/s; ratio {:.2}",
            rpc_mibs / pread_mibs
        );
    }

    pub fn main() {
        let dir = std::env::temp_dir().join(format!("rumpfs-bench-hurd-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let big: Vec<u8> = (0..FILE_MIB << 20).map(|i| (i % 251) as u8).collect();
        let Some(img) = image(&dir, &big) else {
            println!("skipped: mke2fs failed or is not installed (bash tests/setup.sh)");
            return;
        };
        let bed = serve(&img);
        lookups(&bed);
        reads(&bed, &img, &big);
        let _ = bed.client.port_deallocate(bed.root);
        bed.server.stop();
        bed.vol.unmount().unwrap();
        fs::remove_dir_all(&dir).unwrap();
    }
}

fn main() {
    #[cfg(rump_kernel)]
    run::main();
    #[cfg(not(rump_kernel))]
    println!("skipped: RUMP_PREFIX not set");
}
