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
    use std::os::unix::fs::{FileExt, OpenOptionsExt};
    use std::path::Path;
    use std::process::{Command, Stdio};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use machdev::loopback::LocalServer;
    use machdev::{Mode, PoolConfig};
    use mig_bindings::device::Client;
    use rumpdisk::device::Disks;
    use rumpdisk::disk::{AlignedBuf, Disk, PAGE};
    use rumpdisk::image::{Cache, Image};

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

    fn report_vs(what: &str, ours: f64, name: &str, base: f64, unit: &str) {
        println!(
            "{what:<44} {ours:>10.1} {unit:<6} {name:<9}{base:>10.1} {unit:<6} ratio {:.2}",
            ours / base
        );
    }

    fn report(what: &str, ours: f64, base: f64, unit: &str) {
        report_vs(what, ours, "baseline", base, unit);
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

        println!("rumpdisk-bench: {mib} MiB image; device interface on the loopback kernel");
        // Through the page cache (warm): the baseline is a memory copy, so
        // this shows the transport's own cost. Past it (O_DIRECT on both
        // sides): the disk's speed, as a disk driver meets it.
        device_suite(&img, false, mib, &chunk);
        device_suite(&img, true, mib, &chunk);
        nbd_and_process(&img, &dir);
    }

    /// The device-RPC figures for one cache mode: rumpdisk serving `img`
    /// with `cache` against `pread`/`pwrite` of the same file opened the
    /// same way.
    fn device_suite(img: &Path, direct: bool, mib: usize, chunk: &[u8]) {
        let cache = if direct {
            Cache::None
        } else {
            Cache::Writeback
        };
        let size = mib * MIB;
        let mut opts = std::fs::OpenOptions::new();
        opts.read(true).write(true);
        if direct {
            opts.custom_flags(libc::O_DIRECT);
        }
        let (f, disk) = match (opts.open(img), Image::open(img, false, cache)) {
            (Ok(f), Ok(d)) => (f, Arc::new(d)),
            (Err(e), _) | (_, Err(e)) => {
                println!("cache={cache:?}: skipped ({e})");
                return;
            }
        };
        let mut disks: BTreeMap<String, Arc<dyn Disk>> = BTreeMap::new();
        disks.insert("wd0".into(), disk.clone());
        let disks = Arc::new(Disks::new(disks));
        let local = LocalServer::start(vec![disks.clone()], PoolConfig::default()).expect("server");
        // The same disk with every request queued for a worker the kernel
        // wakes: what the hand-off saves.
        let queued =
            LocalServer::start_with(vec![disks], PoolConfig::default(), false).expect("server");
        let (client, master) = local.client().expect("client");
        let c = Client::new(&client);
        let dev = c
            .open(master, Mode::READ | Mode::WRITE, "wd0")
            .expect("open wd0");
        let mode = if direct { "O_DIRECT" } else { "page cache" };
        println!("-- cache={cache:?}: rumpdisk and the baseline both {mode}");

        // Sequential 1 MiB.
        // Page-aligned: direct I/O needs it, and a misaligned destination
        // slows the kernel's copy several-fold (reply pages are aligned).
        let mut buf = AlignedBuf::new(MIB, PAGE).expect("buffer");
        let mut src = AlignedBuf::new(MIB, PAGE).expect("buffer");
        src.as_mut_slice().copy_from_slice(chunk);
        let ops0 = disk.ops();
        let (rpc, raw) = best_of(
            || {
                let t = Instant::now();
                for i in 0..mib {
                    let d = c
                        .read_region(dev, (i * MIB / 512) as u64, MIB as i32)
                        .expect("device_read");
                    assert_eq!(d.len(), MIB);
                }
                rate(size, t.elapsed())
            },
            || {
                let t = Instant::now();
                for i in 0..mib {
                    f.read_exact_at(buf.as_mut_slice(), (i * MIB) as u64)
                        .expect("pread");
                }
                rate(size, t.elapsed())
            },
        );
        let per_read = (disk.ops() - ops0) as f64 / (ROUNDS * mib) as f64;
        report(
            &format!("sequential 1 MiB read ({mode})"),
            rpc,
            raw,
            "MiB/s",
        );
        let ops0 = disk.ops();
        let (rpc, raw) = best_of(
            || {
                let t = Instant::now();
                for i in 0..mib {
                    c.write(dev, (i * MIB / 512) as u64, chunk)
                        .expect("device_write");
                }
                rate(size, t.elapsed())
            },
            || {
                let t = Instant::now();
                for i in 0..mib {
                    f.write_all_at(src.as_mut_slice(), (i * MIB) as u64)
                        .expect("pwrite");
                }
                rate(size, t.elapsed())
            },
        );
        let per_write = (disk.ops() - ops0) as f64 / (ROUNDS * mib) as f64;
        report(
            &format!("sequential 1 MiB write ({mode})"),
            rpc,
            raw,
            "MiB/s",
        );
        println!(
            "{:<44} {per_read:.2} per read, {per_write:.2} per write (the C rumpdisk: 256)",
            "driver operations per 1 MiB request"
        );

        // Random 4 KiB reads, 1 and 16 clients; each client its own task.
        // Rounds of about a second: shorter ones (6,000 direct reads) were
        // dominated by starting 16 threads and swung 0.5-0.75.
        let records = (size / 4096) as u64;
        let total = if direct { 30_000 } else { 200_000 };
        for (clients, handoff) in [(1usize, true), (16, true), (16, false)] {
            let n = total / clients;
            let server = if handoff { &local } else { &queued };
            let tasks: Vec<_> = (0..clients)
                .map(|_| {
                    let (task, m) = server.client().expect("client");
                    let d = Client::new(&task).open(m, Mode::READ, "wd0").expect("open");
                    (task, d)
                })
                .collect();
            let mut round = 0u64;
            let before = server.kernel().stats();
            let (rpc, raw) = best_of(
                || {
                    round += 1;
                    let t = Instant::now();
                    std::thread::scope(|s| {
                        for (k, (task, d)) in tasks.iter().enumerate() {
                            let d = *d;
                            s.spawn(move || {
                                let c = Client::new(task);
                                let mut x = round * 7919 + k as u64;
                                for _ in 0..n {
                                    c.read_region(d, (lcg(&mut x) % records) * 8, 4096)
                                        .expect("device_read");
                                }
                            });
                        }
                    });
                    (n * clients) as f64 / t.elapsed().as_secs_f64()
                },
                || {
                    let t = Instant::now();
                    std::thread::scope(|s| {
                        for k in 0..clients {
                            let f = &f;
                            s.spawn(move || {
                                let mut x = 104_729 + k as u64;
                                let mut b = AlignedBuf::new(4096, PAGE).expect("buffer");
                                for _ in 0..n {
                                    f.read_exact_at(
                                        b.as_mut_slice(),
                                        (lcg(&mut x) % records) * 4096,
                                    )
                                    .expect("pread");
                                }
                            });
                        }
                    });
                    (n * clients) as f64 / t.elapsed().as_secs_f64()
                },
            );
            let how = if handoff { "" } else { ", no hand-off" };
            report(
                &format!("random 4 KiB read, {clients:>2} client(s){how} ({mode})"),
                rpc,
                raw,
                "IOPS",
            );
            println!(
                "{:<44} {:.0}%",
                "  of them run on the client's thread (hand-off)",
                (server.kernel().stats().handoffs - before.handoffs) as f64 * 100.0
                    / (ROUNDS * n * clients) as f64
            );
        }
        println!(
            "{:<44} {}",
            "server threads after the runs",
            local.server().thread_count()
        );
    }

    /// Rounds of each measurement.
    const ROUNDS: usize = 5;

    /// Runs `ours` and `base` alternately [`ROUNDS`] times and keeps the
    /// best of each, so neither side gains from warm-up or from a quiet
    /// moment of this shared machine.
    fn best_of(mut ours: impl FnMut() -> f64, mut base: impl FnMut() -> f64) -> (f64, f64) {
        let (mut o, mut b) = (0f64, 0f64);
        for _ in 0..ROUNDS {
            b = b.max(base());
            o = o.max(ours());
        }
        (o, b)
    }

    /// qemu-img bench over NBD: rumpdisk against nbdkit's file plugin on
    /// the same image (when nbdkit is installed) and against the file
    /// itself; and the rumpdisk process's start-to-serving time and idle
    /// RSS.
    fn nbd_and_process(img: &Path, dir: &Path) {
        let file = img.display().to_string();
        for cache in ["writeback", "none", "evict"] {
            let sock = dir.join(format!("nbd-{cache}.sock"));
            let (child, started) = start_rumpdisk(img, &sock, cache);
            if cache == "writeback" {
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
            }
            let nbd = format!("nbd+unix:///wd0?socket={}", sock.display());
            // The NBD servers a Linux user would otherwise pick, on the
            // same image with the nearest cache mode.
            let peers: Vec<Peer> = [
                start_nbdkit(img, dir, cache),
                start_qemu_nbd(img, dir, cache),
            ]
            .into_iter()
            .flatten()
            .collect();
            match cache {
                "none" => println!(
                    "-- cache=none: rumpdisk and qemu-nbd O_DIRECT (nbdkit has no direct I/O: \
                     its cache=none is in the evict pass), qemu-img -t none on the file; the \
                     image's pages evicted before every run"
                ),
                "evict" => println!(
                    "-- cache=evict: rumpdisk and nbdkit cache=none both through the page cache, \
                     pages evicted after use; qemu-img -t writeback on the file; the image's \
                     pages evicted before every run"
                ),
                _ => println!("-- cache=writeback: all through the warm page cache"),
            }
            // qemu-img on the file itself: O_DIRECT for none, else the
            // page cache.
            let file_cache = if cache == "none" { "none" } else { "writeback" };
            // 4 KiB requests 1 MiB + 4 KiB apart (scattered over the image
            // as the offset wraps), one at a time and 16 in flight, then
            // 1 MiB sequential with 16 in flight, each way.
            let load = |write, size, depth, count| Load {
                write,
                size,
                step: if size == MIB { MIB } else { MIB + 4096 },
                depth,
                count,
            };
            for (what, load) in [
                (
                    "4 KiB scattered read, depth 1",
                    load(false, 4096, 1, 10_000),
                ),
                (
                    "4 KiB scattered read, depth 16",
                    load(false, 4096, 16, 20_000),
                ),
                (
                    "4 KiB scattered write, depth 1",
                    load(true, 4096, 1, 10_000),
                ),
                (
                    "4 KiB scattered write, depth 16",
                    load(true, 4096, 16, 20_000),
                ),
                ("1 MiB sequential read, depth 16", load(false, MIB, 16, 512)),
                ("1 MiB sequential write, depth 16", load(true, MIB, 16, 512)),
            ] {
                let (unit, mib_per_op) = if load.size == MIB {
                    ("MiB/s", 1.0)
                } else {
                    ("IOPS", load.size as f64 / MIB as f64)
                };
                // Every run from the same start: with cache=none, nothing
                // of the image in the page cache.
                let run = |target: &str, client_cache: &str| {
                    if cache != "writeback" {
                        evict(img);
                    }
                    qemu_img_bench(target, client_cache, &load).map(|r| r / mib_per_op)
                };
                // qemu-img caches nothing of the NBD disks; the servers and
                // the direct baseline use the page cache alike (or not).
                // Best rate and the server's CPU time over all rounds.
                let (mut ours, mut base, mut our_cpu) = (0f64, 0f64, 0f64);
                let mut theirs = vec![(0f64, 0f64); peers.len()];
                for _ in 0..ROUNDS {
                    let c0 = cpu_seconds(child.0.id());
                    let o = run(&nbd, "none");
                    our_cpu += cpu_seconds(child.0.id()) - c0;
                    let (Some(o), Some(b)) = (o, run(&file, file_cache)) else {
                        println!("qemu-img bench {what}: qemu-img not available");
                        return;
                    };
                    ours = ours.max(o);
                    base = base.max(b);
                    for ((best, cpu), peer) in theirs.iter_mut().zip(&peers) {
                        let c0 = cpu_seconds(peer.process.0.id());
                        *best = best.max(run(&peer.uri, "none").unwrap_or(0.0));
                        *cpu += cpu_seconds(peer.process.0.id()) - c0;
                    }
                }
                println!("NBD {what}, cache={cache}:");
                let per_request = |cpu: f64| cpu * 1e6 / (ROUNDS * load.count) as f64;
                let mut cpu = vec![format!("rumpdisk {:.1}", per_request(our_cpu))];
                for ((best, their_cpu), peer) in theirs.iter().zip(&peers) {
                    report_vs("  rumpdisk", ours, peer.name, *best, unit);
                    cpu.push(format!("{} {:.1}", peer.name, per_request(*their_cpu)));
                }
                report_vs("  rumpdisk", ours, "the file", base, unit);
                println!("  server CPU µs per request: {}", cpu.join(", "));
            }
        }
    }

    /// Another NBD server, serving the bench's image at `uri`.
    struct Peer {
        name: &'static str,
        uri: String,
        process: KillOnDrop,
    }

    /// User and system CPU time process `pid` has used, in seconds.
    fn cpu_seconds(pid: u32) -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // After the command name, which may hold spaces: fields 3 on;
        // utime and stime are fields 14 and 15.
        let rest = stat.rsplit_once(')').map_or("", |r| r.1);
        let ticks: f64 = rest
            .split_whitespace()
            .skip(11)
            .take(2)
            .filter_map(|t| t.parse::<f64>().ok())
            .sum();
        // SAFETY: sysconf reads a system constant.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        ticks / hz
    }

    /// Drops the page cache's copy of `img` (clean pages; dirty ones are
    /// written first), so a run starts from the disk.
    fn evict(img: &Path) {
        if let Ok(f) = std::fs::File::open(img) {
            let _ = f.sync_all();
            // SAFETY: an advisory call on a descriptor we own.
            unsafe {
                libc::posix_fadvise(
                    std::os::fd::AsRawFd::as_raw_fd(&f),
                    0,
                    0,
                    libc::POSIX_FADV_DONTNEED,
                );
            }
        }
    }

    /// Starts nbdkit's file plugin serving `img` (its `cache=none` for
    /// rumpdisk's `evict`, the same mechanism); `None` when nbdkit is not
    /// installed, and for rumpdisk's `none`: nbdkit has no direct I/O (its
    /// `cache=none` goes through the page cache and returns before the
    /// disk has a write), so that pass compares with qemu-nbd alone.
    fn start_nbdkit(img: &Path, dir: &Path, cache: &str) -> Option<Peer> {
        if cache == "none" {
            return None;
        }
        let sock = dir.join(format!("nbdkit-{cache}.sock"));
        let mut c = Command::new("nbdkit");
        c.args(["--exit-with-parent", "-f", "-U"])
            .arg(&sock)
            .args(["file", &img.display().to_string()]);
        if cache != "writeback" {
            c.arg("cache=none");
        }
        start_peer(
            "nbdkit",
            c,
            &sock,
            format!("nbd+unix:///?socket={}", sock.display()),
        )
    }

    /// Starts QEMU's qemu-nbd serving `img` with the same `--cache` mode
    /// (none is `O_DIRECT` there too); `None` when it is not installed or
    /// has no such mode (evict).
    fn start_qemu_nbd(img: &Path, dir: &Path, cache: &str) -> Option<Peer> {
        if cache == "evict" {
            return None;
        }
        let sock = dir.join(format!("qemu-nbd-{cache}.sock"));
        let mut c = Command::new("qemu-nbd");
        c.args(["--persistent", "-f", "raw", "--cache", cache, "-k"])
            .arg(&sock)
            .arg(img);
        start_peer(
            "qemu-nbd",
            c,
            &sock,
            format!("nbd+unix:///?socket={}", sock.display()),
        )
    }

    /// Runs `c` and waits for it to create `sock`.
    fn start_peer(name: &'static str, mut c: Command, sock: &Path, uri: String) -> Option<Peer> {
        let _ = std::fs::remove_file(sock);
        let process = KillOnDrop(c.stdout(Stdio::null()).spawn().ok()?);
        let t = Instant::now();
        while !sock.exists() {
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "{name} did not start"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        Some(Peer { name, uri, process })
    }

    /// One `qemu-img bench` run.
    struct Load {
        write: bool,
        size: usize,
        step: usize,
        depth: usize,
        count: usize,
    }

    /// Starts rumpdisk serving `img` over NBD on `sock`; returns it and the
    /// time it took to serve.
    fn start_rumpdisk(img: &Path, sock: &Path, cache: &str) -> (KillOnDrop, Duration) {
        let exe = std::env::current_exe()
            .expect("exe")
            .with_file_name("rumpdisk");
        let t = Instant::now();
        let child = Command::new(&exe)
            .args([
                "--image",
                &format!("wd0={}", img.display()),
                "--cache",
                cache,
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
        // Killed however the bench ends (a panic included, e.g. when stdout
        // is a closed pipe), so no server outlives it.
        let child = KillOnDrop(child);
        while !sock.exists() {
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "rumpdisk did not start"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        (child, t.elapsed())
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

    /// MiB/s of `load` on `target` by `qemu-img bench` with `cache`.
    fn qemu_img_bench(target: &str, cache: &str, load: &Load) -> Option<f64> {
        let (count, size, step, depth) = (
            load.count.to_string(),
            load.size.to_string(),
            load.step.to_string(),
            load.depth.to_string(),
        );
        let mut args = vec![
            "bench", "-f", "raw", "-c", &count, "-s", &size, "-S", &step, "-d", &depth, "-t", cache,
        ];
        if load.write {
            args.push("-w");
        }
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
        // Its own clock ("Run completed in 0.265 seconds."): the transfers,
        // not the process start-up.
        let text = String::from_utf8_lossy(&out.stdout);
        let secs: f64 = text
            .split("Run completed in ")
            .nth(1)?
            .split_whitespace()
            .next()?
            .parse()
            .ok()?;
        Some((load.count * load.size) as f64 / MIB as f64 / secs)
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
