//! rumpfs through FUSE against its peers, same image kinds, same run:
//! on ext2, fuse2fs (Debian's FUSE ext2 server) and the Linux kernel's own
//! ext2 on a loop device; on FAT, the kernel's vfat; on FFS, rumpfs alone.
//! Loads: a 256 MiB file written and read back in 1 MiB requests (cold
//! caches for the read), the untar of a 10,000-file tree, and `find` +
//! `stat` of those files after a remount. Each contender runs every load
//! [`ROUNDS`] times, the contenders taking turns, and the median counts:
//! prints the medians in seconds (with the range) and, per load, rumpfs's
//! speed relative to each peer (> 1: rumpfs is faster).
//!
//! `RUMP_PREFIX=... cargo bench -p rumpfs --bench fuse` (root: loop mounts
//! and dropping the page cache; `bash tests/setup.sh` installs fuse2fs).

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const FILE_MIB: u32 = 256;
const TREE_FILES: usize = 10_000;
/// Runs of every load by every contender (this host's page cache and disk
/// are shared and noisy).
const ROUNDS: usize = 3;

fn sh(cmd: &mut Command) {
    let st = cmd.status().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(st.success(), "{cmd:?}: {st}");
}

fn mounted(mnt: &Path) -> bool {
    fs::read_to_string("/proc/self/mounts")
        .unwrap_or_default()
        .lines()
        .any(|l| l.split(' ').nth(1) == mnt.to_str())
}

fn wait_mounted(mnt: &Path, what: &str) {
    let t0 = Instant::now();
    while !mounted(mnt) {
        assert!(
            t0.elapsed() < Duration::from_mins(1),
            "{what} did not mount"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn drop_caches() {
    // Everything written is on the image first, then no cached page of it
    // (or of the loop device) is left for the read.
    // SAFETY: sync(2) takes no arguments.
    unsafe { libc::sync() };
    let _ = fs::write("/proc/sys/vm/drop_caches", "3");
}

/// A mounted contender.
enum Server {
    Rumpfs(Child),
    Fuse2fs,
    Kernel,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Who {
    Rumpfs,
    Fuse2fs,
    Kernel,
}

impl Who {
    fn name(self, fstype: &str) -> String {
        match self {
            Who::Rumpfs => "rumpfs".into(),
            Who::Fuse2fs => "fuse2fs".into(),
            Who::Kernel => format!("linux {fstype}"),
        }
    }
}

fn mount(who: Who, img: &Path, mnt: &Path, fstype: &str) -> Server {
    fs::create_dir_all(mnt).unwrap();
    match who {
        Who::Rumpfs => {
            let mut args = vec!["--fuse".to_owned(), mnt.display().to_string()];
            if !rump::DIR_COMPACTION_SAFE {
                // The loads only add files.
                args.push("--accept-kernel-defect".into());
            }
            let child = Command::new(env!("CARGO_BIN_EXE_rumpfs"))
                .args(&args)
                .arg(img)
                .env("RUST_LOG", "warn")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .spawn()
                .unwrap();
            wait_mounted(mnt, "rumpfs");
            Server::Rumpfs(child)
        }
        Who::Fuse2fs => {
            sh(Command::new("fuse2fs").arg(img).arg(mnt).args(["-o", "rw"]));
            wait_mounted(mnt, "fuse2fs");
            Server::Fuse2fs
        }
        Who::Kernel => {
            let t = if fstype == "msdos" { "vfat" } else { fstype };
            sh(Command::new("mount")
                .args(["-t", t, "-o", "loop"])
                .arg(img)
                .arg(mnt));
            Server::Kernel
        }
    }
}

fn unmount(server: Server, img: &Path, mnt: &Path) {
    match server {
        Server::Rumpfs(mut c) => {
            sh(Command::new("fusermount3").arg("-u").arg(mnt));
            c.wait().unwrap();
        }
        Server::Fuse2fs => {
            sh(Command::new("fusermount3").arg("-u").arg(mnt));
            // fuse2fs writes back after the unmount returns: wait for it.
            let img = img.display().to_string();
            while Command::new("pgrep")
                .args(["-f", &format!("fuse2fs {img}")])
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
            {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Server::Kernel => sh(Command::new("umount").arg(mnt)),
    }
}

fn make_image(fstype: &str, path: &Path) {
    let _ = fs::remove_file(path);
    match fstype {
        "ext2" => sh(Command::new("mke2fs")
            .args(["-q", "-F", "-t", "ext2", "-b", "4096"])
            .arg(path)
            .arg("1G")),
        "ffs" => {
            let empty = path.with_extension("empty");
            fs::create_dir_all(&empty).unwrap();
            sh(Command::new("makefs")
                .args(["-t", "ffs", "-s", "1g", "-o", "version=2,density=16384"])
                .arg(path)
                .arg(&empty));
        }
        "msdos" => sh(Command::new("mkfs.fat")
            .args(["-F", "32", "-C"])
            .arg(path)
            .arg("1048576")),
        _ => unreachable!(),
    }
}

/// The tree the untar load unpacks: `TREE_FILES` files of 0–8 KiB in
/// 100 directories, as a tar file.
fn make_tree(dir: &Path) -> PathBuf {
    let src = dir.join("tree");
    let _ = fs::remove_dir_all(&src);
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    for i in 0..TREE_FILES {
        let d = src.join(format!("d{:02}", i % 100));
        fs::create_dir_all(&d).unwrap();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let len = (x % 8192) as usize;
        fs::write(d.join(format!("F{i:05}.C")), vec![(i % 251) as u8; len]).unwrap();
    }
    let tar = dir.join("tree.tar");
    sh(Command::new("tar")
        .arg("-C")
        .arg(&src)
        .arg("-cf")
        .arg(&tar)
        .arg("."));
    fs::remove_dir_all(&src).unwrap();
    tar
}

#[derive(Clone, Copy)]
struct Times {
    write: f64,
    read: f64,
    untar: f64,
    stat: f64,
}

impl Times {
    fn loads(&self) -> [f64; 4] {
        [self.write, self.read, self.untar, self.stat]
    }
}

/// Each load's median over the rounds, and its range.
struct Summary {
    median: [f64; 4],
    range: [(f64, f64); 4],
}

fn summarise(rounds: &[Times]) -> Summary {
    let mut median = [0.0; 4];
    let mut range = [(0.0, 0.0); 4];
    for load in 0..4 {
        let mut v: Vec<f64> = rounds.iter().map(|t| t.loads()[load]).collect();
        v.sort_by(f64::total_cmp);
        median[load] = v[v.len() / 2];
        range[load] = (v[0], v[v.len() - 1]);
    }
    Summary { median, range }
}

fn print_results(fstype: &str, results: &[(Who, Summary)]) {
    println!("\n{fstype} (median of {ROUNDS}; range):");
    println!(
        "  {:<12} {:>17} {:>17} {:>17} {:>17}",
        "", "write s", "read s", "untar s", "stat s"
    );
    for (w, s) in results {
        let cell = |i: usize| {
            format!(
                "{:.3} ({:.2}-{:.2})",
                s.median[i], s.range[i].0, s.range[i].1
            )
        };
        println!(
            "  {:<12} {:>17} {:>17} {:>17} {:>17}   ({:.0} / {:.0} MiB/s)",
            w.name(fstype),
            cell(0),
            cell(1),
            cell(2),
            cell(3),
            f64::from(FILE_MIB) / s.median[0],
            f64::from(FILE_MIB) / s.median[1]
        );
    }
    let ours = results[0].1.median;
    for (w, s) in &results[1..] {
        let t = s.median;
        println!(
            "  rumpfs/{:<8} write {:.2}  read {:.2}  untar {:.2}  find+stat {:.2}",
            w.name(fstype),
            t[0] / ours[0],
            t[1] / ours[1],
            t[2] / ours[2],
            t[3] / ours[3]
        );
    }
}

fn run_loads(who: Who, fstype: &str, img: &Path, mnt: &Path, tar: &Path) -> Times {
    make_image(fstype, img);
    // 1 MiB writes of a 256 MiB file, then fsync.
    let server = mount(who, img, mnt, fstype);
    let block = vec![0x5au8; 1 << 20];
    let t0 = Instant::now();
    let mut file = fs::File::create(mnt.join("big")).unwrap();
    for _ in 0..FILE_MIB {
        file.write_all(&block).unwrap();
    }
    file.sync_all().unwrap();
    drop(file);
    let write = t0.elapsed().as_secs_f64();
    unmount(server, img, mnt);
    drop_caches();
    // Read back cold, 1 MiB at a time.
    let server = mount(who, img, mnt, fstype);
    let t0 = Instant::now();
    let mut file = fs::File::open(mnt.join("big")).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0;
    loop {
        let n = file.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        total += n;
    }
    let read = t0.elapsed().as_secs_f64();
    assert_eq!(total, (FILE_MIB as usize) << 20);
    drop(file);
    // Untar, then make it durable.
    fs::create_dir(mnt.join("src")).unwrap();
    let t0 = Instant::now();
    sh(Command::new("tar")
        .arg("-C")
        .arg(mnt.join("src"))
        .args(["--no-same-owner", "-xf"])
        .arg(tar));
    sh(Command::new("sync").arg("-f").arg(mnt.join("src")));
    let untar = t0.elapsed().as_secs_f64();
    unmount(server, img, mnt);
    drop_caches();
    // find + stat of every file, cold.
    let server = mount(who, img, mnt, fstype);
    let t0 = Instant::now();
    let mut files = 0;
    let mut dirs = vec![mnt.join("src")];
    while let Some(d) = dirs.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let m = fs::symlink_metadata(e.path()).unwrap();
            if m.is_dir() {
                dirs.push(e.path());
            } else {
                files += 1;
            }
        }
    }
    let stat = t0.elapsed().as_secs_f64();
    assert_eq!(files, TREE_FILES);
    unmount(server, img, mnt);
    Times {
        write,
        read,
        untar,
        stat,
    }
}

fn main() {
    if !rump::LINKED {
        println!("skipped: RUMP_PREFIX not set (rumpfs runs NetBSD's file systems)");
        return;
    }
    if !Path::new("/dev/fuse").exists() {
        println!("skipped: no /dev/fuse");
        return;
    }
    let dir = std::env::temp_dir().join(format!("rumpfs-bench-{}", std::process::id()));
    fs::create_dir_all(&dir).unwrap();
    let tar = make_tree(&dir);
    let img = dir.join("disk.img");
    let mnt = dir.join("mnt");
    let have_fuse2fs = Command::new("fuse2fs")
        .arg("--help")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    println!(
        "rumpfs bench: {FILE_MIB} MiB in 1 MiB requests; untar and find+stat of {TREE_FILES} files"
    );
    for fstype in ["ext2", "ffs", "msdos"] {
        let mut who = vec![Who::Rumpfs];
        if fstype == "ext2" && have_fuse2fs {
            who.push(Who::Fuse2fs);
        }
        let kernel_type = if fstype == "msdos" { "vfat" } else { fstype };
        if root
            && fs::read_to_string("/proc/filesystems")
                .unwrap_or_default()
                .lines()
                .any(|l| l.trim_start_matches("nodev").trim() == kernel_type)
        {
            who.push(Who::Kernel);
        } else if fstype != "ffs" {
            println!("(no kernel {kernel_type} here: not root, or not in /proc/filesystems)");
        }
        let mut rounds: Vec<Vec<Times>> = vec![Vec::new(); who.len()];
        for _ in 0..ROUNDS {
            for (i, &w) in who.iter().enumerate() {
                rounds[i].push(run_loads(w, fstype, &img, &mnt, &tar));
            }
        }
        let results: Vec<(Who, Summary)> = who
            .iter()
            .zip(&rounds)
            .map(|(&w, r)| (w, summarise(r)))
            .collect();
        print_results(fstype, &results);
    }
    let _ = fs::remove_dir_all(&dir);
}
