//! rumpdisk benchmarks: each figure against a baseline measured in the same
//! run, printed as a ratio. Linux only (the device interface runs on the
//! loopback kernel; NBD against `qemu-img` on the file itself).
//!
//! Usage: `rumpdisk-bench [IMAGE_MIB]` (default 256).

// A measuring tool: rates are floating point, loops are long and linear.
#![allow(
    clippy::cast_precision_loss,
    clippy::many_single_char_names,
    clippy::too_many_lines
)]

#[cfg(target_os = "linux")]
mod linux {
    use std::collections::BTreeMap;
    use std::os::unix::fs::FileExt;
    use std::path::Path;
    use std::process::{Command, Stdio};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use machdev::loopback::LocalServer;
    use machdev::{Mode, PoolConfig};
    use mig_bindings::device::Client;
    use rumpdisk::device::Disks;
    use rumpdisk::disk::Disk;
    use rumpdisk::image::Image;

    const MIB: usize = 1 << 20;

    fn rate(bytes: usize, d: Duration) -> f64 {
        bytes as f64 / d.as_secs_f64() / MIB as f64
    }

    fn lcg(x: &mut u64) -> u64 {
        *x = x
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        *x >> 33
    }

    fn report(what: &str, ours: f64, base: f64, unit: &str) {
        println!(
            "{what:<44} {ours:>10.1} {unit:<6} baseline {base:>10.1} {unit:<6} ratio {:.2}",
            ours / base
        );
    }

    pub fn main() {
        let mib: usize = std::env::args()
            .nth(1)
            .and_then(|a| a.parse().ok())
            .unwrap_or(256);
        let dir = std::env::temp_dir().join(format!("rumpdisk-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("bench dir");
        let _cleanup = RemoveOnDrop(dir.clone());
        let img = dir.join("disk.img");
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&img)
            .expect("image");
        let chunk: Vec<u8> = (0..MIB).map(|i| (i * 7 % 251) as u8).collect();
        for i in 0..mib {
            f.write_all_at(&chunk, (i * MIB) as u64)
                .expect("fill image");
        }
        f.sync_all().expect("sync");
        let size = mib * MIB;

        let disk = Arc::new(Image::open(&img, false).expect("open image"));
        let mut disks: BTreeMap<String, Arc<dyn Disk>> = BTreeMap::new();
        disks.insert("wd0".into(), disk.clone());
        let local = LocalServer::start(vec![Arc::new(Disks::new(disks))], PoolConfig::default())
            .expect("server");
        let (client, master) = local.client().expect("client");
        let c = Client::new(&client);
        let dev = c
            .open(master, Mode::READ | Mode::WRITE, "wd0")
            .expect("open wd0");

        println!(
            "rumpdisk-bench: {mib} MiB image, page cache warm; device interface on the loopback kernel"
        );
        // Sequential 1 MiB. Each baseline is measured before and after its
        // RPC run and the faster kept, so warm-up favours neither side.
        // Page-aligned, as the reply's pages are (a misaligned destination
        // slows the kernel's copy several-fold).
        let mut backing = vec![0u8; MIB + 4096];
        let skew = backing.as_ptr().align_offset(4096);
        let buf = &mut backing[skew..skew + MIB];
        let raw_read_pass = |buf: &mut [u8]| {
            let t = Instant::now();
            for i in 0..mib {
                f.read_exact_at(buf, (i * MIB) as u64).expect("pread");
            }
            rate(size, t.elapsed())
        };
        let raw_read = raw_read_pass(buf);
        let ops0 = disk.ops();
        let t = Instant::now();
        for i in 0..mib {
            let d = c
                .read_region(dev, (i * MIB / 512) as u64, MIB as i32)
                .expect("device_read");
            assert_eq!(d.len(), MIB);
        }
        let rpc_read = rate(size, t.elapsed());
        let raw_read = raw_read.max(raw_read_pass(buf));
        let ops_per_read = (disk.ops() - ops0) as f64 / mib as f64;
        report(
            "sequential 1 MiB read (device RPC / pread)",
            rpc_read,
            raw_read,
            "MiB/s",
        );
        let raw_write_pass = || {
            let t = Instant::now();
            for i in 0..mib {
                f.write_all_at(&chunk, (i * MIB) as u64).expect("pwrite");
            }
            rate(size, t.elapsed())
        };
        let raw_write = raw_write_pass();
        let ops0 = disk.ops();
        let t = Instant::now();
        for i in 0..mib {
            c.write(dev, (i * MIB / 512) as u64, &chunk)
                .expect("device_write");
        }
        let rpc_write = rate(size, t.elapsed());
        let raw_write = raw_write.max(raw_write_pass());
        let ops_per_write = (disk.ops() - ops0) as f64 / mib as f64;
        report(
            "sequential 1 MiB write (device RPC / pwrite)",
            rpc_write,
            raw_write,
            "MiB/s",
        );
        println!(
            "{:<44} {ops_per_read:.2} per read, {ops_per_write:.2} per write (the C rumpdisk: 256)",
            "driver operations per 1 MiB request"
        );

        // Random 4 KiB reads, 1 and 16 clients.
        let records = (size / 4096) as u64;
        for clients in [1usize, 16] {
            let n = 20_000 / clients;
            let t = Instant::now();
            std::thread::scope(|s| {
                for k in 0..clients {
                    let f = &f;
                    s.spawn(move || {
                        let mut x = k as u64 + 1;
                        let mut b = vec![0u8; 4096];
                        for _ in 0..n {
                            f.read_exact_at(&mut b, (lcg(&mut x) % records) * 4096)
                                .expect("pread");
                        }
                    });
                }
            });
            let raw = (n * clients) as f64 / t.elapsed().as_secs_f64();
            let tasks: Vec<_> = (0..clients)
                .map(|_| local.client().expect("client"))
                .collect();
            let t = Instant::now();
            std::thread::scope(|s| {
                for (k, (task, m)) in tasks.iter().enumerate() {
                    let m = *m;
                    s.spawn(move || {
                        let c = Client::new(task);
                        let d = c.open(m, Mode::READ, "wd0").expect("open");
                        let mut x = k as u64 + 1;
                        for _ in 0..n {
                            c.read_region(d, (lcg(&mut x) % records) * 8, 4096)
                                .expect("device_read");
                        }
                    });
                }
            });
            let rpc = (n * clients) as f64 / t.elapsed().as_secs_f64();
            report(
                &format!("random 4 KiB read, {clients} client(s) (RPC / pread)"),
                rpc,
                raw,
                "IOPS",
            );
        }

        nbd_and_process(&img, &dir);
    }

    /// qemu-img bench over NBD against the file, and the rumpdisk process's
    /// start-to-serving time and idle RSS.
    fn nbd_and_process(img: &Path, dir: &Path) {
        let exe = std::env::current_exe()
            .expect("exe")
            .with_file_name("rumpdisk");
        let sock = dir.join("nbd.sock");
        let t = Instant::now();
        let child = Command::new(&exe)
            .args([
                "--image",
                &format!("wd0={}", img.display()),
                "--nbd-unix",
                &sock.display().to_string(),
            ])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "{}: {e} (build it: cargo build --release -p rumpdisk)",
                    exe.display()
                )
            });
        // Killed however this function ends (a panic included, e.g. when
        // stdout is a closed pipe), so no server outlives the bench.
        let child = KillOnDrop(child);
        while !sock.exists() {
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "rumpdisk did not start"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        let started = t.elapsed();
        std::thread::sleep(Duration::from_millis(500));
        let rss = std::fs::read_to_string(format!("/proc/{}/status", child.0.id()))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("VmRSS:"))
                    .map(str::to_owned)
            })
            .unwrap_or_default();
        println!(
            "{:<44} {:.1} ms (target < 500)",
            "start to serving (process start to NBD socket)",
            started.as_secs_f64() * 1e3
        );
        println!(
            "{:<44} {} (target < 32 MiB)",
            "idle RSS",
            rss.trim_start_matches("VmRSS:").trim()
        );
        let nbd = format!("nbd+unix:///wd0?socket={}", sock.display());
        for (what, write) in [("read", false), ("write", true)] {
            // Both through the host page cache: rumpdisk's image I/O is cached.
            let ours = qemu_img_bench(&nbd, write, "none");
            let base = qemu_img_bench(&img.display().to_string(), write, "writeback");
            if let (Some(o), Some(b)) = (ours, base) {
                report(
                    &format!("qemu-img bench 1 MiB {what} (NBD / file)"),
                    o,
                    b,
                    "MiB/s",
                );
            } else {
                println!("qemu-img bench {what}: qemu-img not available");
            }
        }
    }

    /// A directory removed when dropped.
    struct RemoveOnDrop(std::path::PathBuf);

    impl Drop for RemoveOnDrop {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// A child process killed and reaped when dropped.
    struct KillOnDrop(std::process::Child);

    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    fn qemu_img_bench(target: &str, write: bool, cache: &str) -> Option<f64> {
        let count = "256";
        let mut args = vec![
            "bench", "-f", "raw", "-c", count, "-s", "1M", "-d", "4", "-t", cache,
        ];
        if write {
            args.push("-w");
        }
        let t = Instant::now();
        let out = Command::new("qemu-img")
            .args(&args)
            .arg(target)
            .output()
            .ok()?;
        if !out.status.success() {
            eprintln!(
                "qemu-img bench {target}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            return None;
        }
        Some(rate(256 * MIB, t.elapsed()))
    }
}

#[cfg(target_os = "linux")]
fn main() {
    linux::main();
}

#[cfg(not(target_os = "linux"))]
fn main() {
    eprintln!("rumpdisk-bench measures the Linux front ends; it runs on Linux");
    std::process::exit(1);
}
