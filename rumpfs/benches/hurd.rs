//! rumpfs's Hurd front end on the loopback transport, against the same
//! work done without RPCs, in the same run: `dir_lookup` of a 3-component
//! path + `io_stat` of the result (+ releasing the protid) per second, vs
//! the volume's own lookup + stat calls; and a 256 MiB file read with
//! 1 MiB `io_read`s (warm caches) vs `pread` of the image file in 1 MiB
//! pieces. Prints the rates and ratios (RPC path / direct path).
//!
//! `RUMP_PREFIX=... cargo bench -p rumpfs --bench hurd` (mke2fs needed).

#[cfg(rump_kernel)]
mod run {
    use std::fs;
    use std::os::unix::fs::FileExt;
    use std::process::Command;
    use std::sync::Arc;
    use std::time::Instant;

    use mach::ipc::Ipc;
    use mach::loopback::Kernel;
    use mach::port::{Right, type_name as tn};
    use machdev::PoolConfig;
    use machdev::netfs::{NetfsServer, oflag};
    use mig_bindings::{fs as hfs, fsys, io, rpc};
    use rumpfs::hurd::HurdFs;
    use rumpfs::store::Store;
    use rumpfs::volume::{self, Volume};

    const FILE_MIB: usize = 256;
    const LOOKUPS: usize = 20_000;

    pub fn main() {
        let dir = std::env::temp_dir().join(format!("rumpfs-bench-hurd-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let src = dir.join("src");
        fs::create_dir_all(src.join("a/b")).unwrap();
        fs::write(src.join("a/b/c"), b"x").unwrap();
        let big: Vec<u8> = (0..FILE_MIB << 20).map(|i| (i % 251) as u8).collect();
        fs::write(src.join("big"), &big).unwrap();
        let img = dir.join("ext2.img");
        let ok = Command::new("/usr/sbin/mke2fs")
            .args(["-q", "-F", "-t", "ext2", "-d"])
            .arg(&src)
            .arg(&img)
            .arg(format!("{}M", FILE_MIB + 64))
            .stdout(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            println!("skipped: mke2fs failed or is not installed (bash tests/setup.sh)");
            return;
        }
        fs::remove_dir_all(&src).unwrap();
        let vol = Arc::new(
            Volume::mount(&volume::Options {
                store: Store::File(img.clone()),
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
        let server = NetfsServer::new(
            ipc,
            Arc::new(HurdFs::new(Arc::clone(&vol))),
            PoolConfig::default(),
        )
        .unwrap();
        machdev::loopback::serve_on(&server_task, &server, true).unwrap();
        let client = kernel.new_task();
        let control = server_task
            .give_send_right(server.control_port(), &client)
            .unwrap();
        let reply = client.port_allocate(Right::Receive).unwrap();
        let call = |build: &dyn Fn(mach::PortName) -> mach::msg::MsgBuf| {
            rpc::call(&client, reply, build).unwrap()
        };
        let m = call(&|r| {
            fsys::getroot_request_as(
                control,
                r,
                (mach::PortName::NULL, tn::COPY_SEND),
                &[0],
                &[0],
                1,
            )
        });
        let root = fsys::decode_getroot_reply(m.as_bytes()).unwrap().2;

        // Lookup + stat.
        let t0 = Instant::now();
        for _ in 0..LOOKUPS {
            let m = call(&|r| hfs::lookup_request(root, r, "a/b/c", oflag::O_READ, 0));
            let (_, _, f) = hfs::decode_lookup_reply(m.as_bytes()).unwrap();
            let m = call(&|r| io::bare_request(f, r, io::ID_STAT));
            assert_eq!(io::decode_stat_reply(m.as_bytes()).map(|_| ()), Ok(()));
            let _ = client.port_deallocate(f);
        }
        let rpc_rate = LOOKUPS as f64 / t0.elapsed().as_secs_f64();
        let t0 = Instant::now();
        for _ in 0..LOOKUPS {
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
        }
        let direct_rate = LOOKUPS as f64 / t0.elapsed().as_secs_f64();

        // io_stat alone, on one open file.
        let m = call(&|r| hfs::lookup_request(root, r, "a/b/c", oflag::O_READ, 0));
        let (_, _, c) = hfs::decode_lookup_reply(m.as_bytes()).unwrap();
        let t0 = Instant::now();
        for _ in 0..LOOKUPS {
            let m = call(&|r| io::bare_request(c, r, io::ID_STAT));
            assert_eq!(io::decode_stat_reply(m.as_bytes()).map(|_| ()), Ok(()));
        }
        let stat_rate = LOOKUPS as f64 / t0.elapsed().as_secs_f64();
        let _ = client.port_deallocate(c);
        let node = vol.lookup(vol.root(), b"a").unwrap().ino;
        let t0 = Instant::now();
        for _ in 0..LOOKUPS {
            vol.stat(node).unwrap();
        }
        let direct_stat_rate = LOOKUPS as f64 / t0.elapsed().as_secs_f64();
        vol.forget(node, 1);

        // 1 MiB reads, twice each way (the first warms the caches).
        let m = call(&|r| hfs::lookup_request(root, r, "big", oflag::O_READ, 0));
        let (_, _, f) = hfs::decode_lookup_reply(m.as_bytes()).unwrap();
        let mut rpc_mibs = 0.0;
        for _ in 0..2 {
            let t0 = Instant::now();
            let mut off = 0;
            while off < big.len() {
                let m = call(&|r| io::read_request(f, r, off as i64, 1 << 20));
                let d = io::decode_read_reply(m.as_bytes()).unwrap();
                // SAFETY: the reply's region came into this task.
                let got = unsafe { io::take_data(&client, d) };
                assert_eq!(got[..16], big[off..off + 16]);
                off += got.len();
            }
            rpc_mibs = FILE_MIB as f64 / t0.elapsed().as_secs_f64();
        }
        let image = fs::File::open(&img).unwrap();
        let mut buf = vec![0u8; 1 << 20];
        let mut pread_mibs = 0.0;
        for _ in 0..2 {
            let t0 = Instant::now();
            for i in 0..FILE_MIB {
                image.read_exact_at(&mut buf, (i << 20) as u64).unwrap();
            }
            pread_mibs = FILE_MIB as f64 / t0.elapsed().as_secs_f64();
        }
        println!(
            "dir_lookup(a/b/c) + io_stat: {rpc_rate:.0}/s over RPCs, {direct_rate:.0}/s direct; ratio {:.2}",
            rpc_rate / direct_rate
        );
        println!(
            "io_stat of an open file: {stat_rate:.0}/s over RPCs, {direct_stat_rate:.0}/s direct; ratio {:.2}",
            stat_rate / direct_stat_rate
        );
        println!(
            "1 MiB io_read of {FILE_MIB} MiB: {rpc_mibs:.0} MiB/s; pread of the image: {pread_mibs:.0} MiB/s; ratio {:.2}",
            rpc_mibs / pread_mibs
        );
        let _ = client.port_deallocate(f);
        let _ = client.port_deallocate(root);
        server.stop();
        vol.unmount().unwrap();
        fs::remove_dir_all(&dir).unwrap();
    }
}

fn main() {
    #[cfg(rump_kernel)]
    run::main();
    #[cfg(not(rump_kernel))]
    println!("skipped: RUMP_PREFIX not set");
}
