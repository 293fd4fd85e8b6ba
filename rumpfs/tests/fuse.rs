//! rumpfs through FUSE with real clients: images made by Debian's mke2fs,
//! makefs and mkfs.fat; coreutils and tar round trips of a tree with hard
//! links, symbolic links, a sparse file, long names and a 10,000-entry
//! directory, `diff -r` against the source; unmount, the host's fsck, a
//! read-only remount read back. Then many clients at once, bad input
//! (long names, a corrupted image, a read-only mount, a full file
//! system), SIGTERM, and kill -9 under `--sync` with fsync'd data checked
//! after.
//!
//! Needs a rump kernel (`RUMP_PREFIX`), /dev/fuse and fusermount3 (each
//! test says which is missing and skips).

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Why these tests cannot run here, if they cannot.
fn missing() -> Option<String> {
    if !rump::LINKED {
        return Some("RUMP_PREFIX not set".into());
    }
    if !Path::new("/dev/fuse").exists() {
        return Some("no /dev/fuse".into());
    }
    for tool in [
        "fusermount3",
        "mke2fs",
        "e2fsck",
        "makefs",
        "mkfs.fat",
        "fsck.fat",
        "tar",
        "diff",
    ] {
        let found = std::env::var_os("PATH")
            .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).exists()))
            || Path::new("/usr/sbin").join(tool).exists()
            || Path::new("/sbin").join(tool).exists();
        if !found {
            return Some(format!("{tool} not installed (bash tests/setup.sh)"));
        }
    }
    None
}

macro_rules! need_kernel {
    () => {
        if let Some(why) = missing() {
            println!("skipped: {why}");
            return;
        }
    };
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("rumpfs-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(&d).unwrap();
    d
}

fn run(cmd: &mut Command) -> std::process::Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn sbin(tool: &str) -> Command {
    let mut c = Command::new(tool);
    c.env(
        "PATH",
        format!(
            "/usr/sbin:/sbin:{}",
            std::env::var("PATH").unwrap_or_default()
        ),
    );
    c
}

fn mounted(mnt: &Path) -> bool {
    let m = fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let want = mnt.to_str().unwrap();
    m.lines().any(|l| l.split(' ').nth(1) == Some(want))
}

/// A rumpfs serving an image through FUSE; unmounted (and waited for)
/// on drop.
struct Rumpfs {
    child: Option<Child>,
    mnt: PathBuf,
    log: PathBuf,
}

impl Rumpfs {
    /// Starts rumpfs; on a kernel whose FFS and ext2 directory compaction
    /// is broken (`rump::DIR_COMPACTION_SAFE`), with
    /// `--accept-kernel-defect`, for the tests that only add files there
    /// (those that remove or rename run on such kernels only on FAT).
    fn start(image: &Path, mnt: &Path, extra: &[&str]) -> Result<Self, String> {
        let mut args = extra.to_vec();
        if !rump::DIR_COMPACTION_SAFE {
            args.push("--accept-kernel-defect");
        }
        Self::start_strict(image, mnt, &args)
    }

    fn start_strict(image: &Path, mnt: &Path, extra: &[&str]) -> Result<Self, String> {
        fs::create_dir_all(mnt).unwrap();
        let log = mnt.with_extension("log");
        let mut child = Command::new(env!("CARGO_BIN_EXE_rumpfs"))
            .args(extra)
            .arg("--fuse")
            .arg(mnt)
            .arg(image)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let t0 = Instant::now();
        while !mounted(mnt) {
            if let Some(st) = child.try_wait().unwrap() {
                return Err(format!(
                    "{st}: {}",
                    fs::read_to_string(&log).unwrap_or_default()
                ));
            }
            assert!(
                t0.elapsed() < Duration::from_mins(1),
                "rumpfs did not mount"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(Rumpfs {
            child: Some(child),
            mnt: mnt.to_path_buf(),
            log,
        })
    }

    /// `fusermount3 -u`, then the exit status and what rumpfs logged.
    fn unmount(mut self) -> (std::process::ExitStatus, String) {
        run(Command::new("fusermount3").arg("-u").arg(&self.mnt));
        self.wait()
    }

    fn wait(&mut self) -> (std::process::ExitStatus, String) {
        let mut child = self.child.take().expect("running");
        let t0 = Instant::now();
        let st = loop {
            if let Some(st) = child.try_wait().unwrap() {
                break st;
            }
            assert!(t0.elapsed() < Duration::from_mins(1), "rumpfs did not exit");
            std::thread::sleep(Duration::from_millis(20));
        };
        let log = fs::read_to_string(&self.log).unwrap_or_default();
        assert!(!log.contains("panicked"), "rumpfs panicked:\n{log}");
        (st, log)
    }

    fn signal(&self, sig: i32) {
        let pid = self.child.as_ref().expect("running").id() as i32;
        // SAFETY: plain kill(2) of our child.
        assert_eq!(unsafe { libc::kill(pid, sig) }, 0);
    }
}

impl Drop for Rumpfs {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("fusermount3")
                .arg("-u")
                .arg(&self.mnt)
                .status();
            std::thread::sleep(Duration::from_millis(200));
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Deterministic bytes.
fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// What the source tree holds.
#[derive(Clone, Copy)]
struct Features {
    links: bool,
    sparse: bool,
    wide: usize,
    /// The wide directory's names as FAT's 8.3 ones: NetBSD's msdosfs
    /// makes each long name's short alias by trying ~1, ~2 ... against the
    /// whole directory, quadratic in its size.
    short: bool,
    /// The longest name in the tree.
    long: usize,
}

/// Builds the tree the round trips copy.
fn make_tree(root: &Path, f: Features) {
    fs::create_dir_all(root.join("a/b/c/d")).unwrap();
    for (i, len) in [0usize, 1, 511, 4096, 65_537, 1 << 20, (3 << 20) + 5]
        .iter()
        .enumerate()
    {
        fs::write(root.join(format!("a/file{i}")), pattern(i as u64, *len)).unwrap();
    }
    fs::write(root.join("a/b/c/d/deep.txt"), b"deep\n").unwrap();
    fs::write(root.join("a/b/Mixed Case & spaces.txt"), b"x").unwrap();
    let long = "L".repeat(200) + &"n".repeat(f.long - 200);
    fs::write(root.join("a/b").join(&long), b"long name\n").unwrap();
    fs::create_dir(root.join("wide")).unwrap();
    for i in 0..f.wide {
        let name = if f.short {
            format!("E{i:05}")
        } else {
            format!("entry-{i:05}")
        };
        fs::write(
            root.join("wide").join(name),
            if i % 1000 == 0 { b"k".as_slice() } else { b"" },
        )
        .unwrap();
    }
    if f.links {
        fs::hard_link(root.join("a/file3"), root.join("a/b/hard3")).unwrap();
        fs::hard_link(root.join("a/file3"), root.join("hard3-again")).unwrap();
        std::os::unix::fs::symlink("file2", root.join("a/rel-link")).unwrap();
        std::os::unix::fs::symlink("/etc/hostname", root.join("a/abs-link")).unwrap();
        std::os::unix::fs::symlink("nowhere/at/all", root.join("a/dangling")).unwrap();
        std::os::unix::fs::symlink("..", root.join("a/b/dirlink")).unwrap();
        fs::set_permissions(
            root.join("a/file1"),
            std::os::unix::fs::PermissionsExt::from_mode(0o640),
        )
        .unwrap();
    }
    if f.sparse {
        let mut s = fs::File::create(root.join("sparse")).unwrap();
        s.write_all(b"start").unwrap();
        s.set_len(64 << 20).unwrap();
        std::os::unix::fs::FileExt::write_all_at(&s, b"middle", 40 << 20).unwrap();
    }
}

fn diff(a: &Path, b: &Path) {
    run(Command::new("diff")
        .arg("-r")
        .arg("--no-dereference")
        .arg(a)
        .arg(b));
}

/// Copies `src` in with cp and with tar, checks both against it, then
/// checks what FUSE shows of links and sparseness.
fn round_trip(src: &Path, mnt: &Path, f: Features, scratch: &Path) {
    let cp = if f.links { "-a" } else { "-r" };
    run(Command::new("cp")
        .arg(cp)
        .arg("--sparse=always")
        .arg(src)
        .arg(mnt.join("cp")));
    diff(src, &mnt.join("cp"));
    fs::create_dir(mnt.join("tar")).unwrap();
    let tar_flags: &[&str] = if f.links {
        &[]
    } else {
        &["--no-same-owner", "--no-same-permissions"]
    };
    run(Command::new("sh").arg("-c").arg(format!(
        "tar -C {} -cSf - . | tar -C {} -xf - {}",
        src.display(),
        mnt.join("tar").display(),
        tar_flags.join(" ")
    )));
    diff(src, &mnt.join("tar"));
    // And back out: a tar of the mounted copy unpacked on the host.
    let back = scratch.join("back");
    fs::create_dir(&back).unwrap();
    run(Command::new("sh").arg("-c").arg(format!(
        "tar -C {} -cf - . | tar -C {} -xf -",
        mnt.join("tar").display(),
        back.display()
    )));
    diff(src, &back);
    let wide = fs::read_dir(mnt.join("cp/wide")).unwrap().count();
    assert_eq!(wide, f.wide);
    if f.links {
        let a = fs::metadata(mnt.join("tar/a/file3")).unwrap();
        let b = fs::metadata(mnt.join("tar/a/b/hard3")).unwrap();
        let c = fs::metadata(mnt.join("tar/hard3-again")).unwrap();
        assert_eq!((a.ino(), a.nlink()), (b.ino(), 3));
        assert_eq!(a.ino(), c.ino());
        assert_eq!(
            fs::read_link(mnt.join("cp/a/dangling")).unwrap(),
            Path::new("nowhere/at/all")
        );
        assert_eq!(
            fs::read(mnt.join("cp/a/b/dirlink/file2")).unwrap(),
            pattern(2, 511)
        );
    }
    if f.sparse {
        let m = fs::metadata(mnt.join("cp/sparse")).unwrap();
        assert_eq!(m.len(), 64 << 20);
        assert!(
            m.blocks() * 512 < 1 << 20,
            "sparse file takes {} blocks",
            m.blocks()
        );
    }
}

/// Mounts `image`, round-trips the tree, unmounts, runs `check` on the
/// image, remounts read-only and compares again.
fn file_system_round_trip(name: &str, image: &Path, f: Features, check: &dyn Fn(&Path)) {
    let dir = image.parent().unwrap().to_path_buf();
    let src = dir.join("src");
    make_tree(&src, f);
    let mnt = dir.join("mnt");
    let fs = Rumpfs::start(image, &mnt, &[]).unwrap_or_else(|e| panic!("{name}: {e}"));
    round_trip(&src, &mnt, f, &dir);
    let (st, log) = fs.unmount();
    assert!(st.success(), "{name}: {st}\n{log}");
    assert!(log.contains("unmounted"), "{log}");
    check(image);
    let fs = Rumpfs::start(image, &mnt, &["--readonly"]).unwrap();
    diff(&src, &mnt.join("cp"));
    diff(&src, &mnt.join("tar"));
    let e = fs::write(mnt.join("cp/new"), b"x").unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EROFS), "{e}");
    let (st, _) = fs.unmount();
    assert!(st.success());
    check(image);
}

fn e2fsck_clean(image: &Path) {
    run(sbin("e2fsck").arg("-fn").arg(image));
}

#[test]
fn ext2_round_trips_through_cp_and_tar() {
    need_kernel!();
    let dir = scratch("ext2");
    let img = dir.join("disk.img");
    run(sbin("mke2fs")
        .args(["-q", "-F", "-t", "ext2", "-b", "4096"])
        .arg(&img)
        .arg("256M"));
    let f = Features {
        links: true,
        sparse: true,
        wide: 10_000,
        short: false,
        long: 255,
    };
    file_system_round_trip("ext2", &img, f, &e2fsck_clean);
    fs::remove_dir_all(&dir).unwrap();
}

/// NetBSD's `fs_clean` of a UFS1 superblock at 8192 (`FS_ISCLEAN`), the
/// check left where Debian has no `fsck_ffs`.
fn ffs_clean(image: &Path) {
    let mut f = fs::File::open(image).unwrap();
    let mut sb = vec![0u8; 8192 + 2048];
    f.read_exact(&mut sb).unwrap();
    let magic = u32::from_le_bytes(sb[8192 + 1372..8192 + 1376].try_into().unwrap());
    assert_eq!(magic, 0x0001_1954, "UFS1 superblock");
    assert_eq!(sb[8192 + 209] & 0x01, 0x01, "fs_clean has FS_ISCLEAN");
}

#[test]
fn ffs_round_trips_through_cp_and_tar() {
    need_kernel!();
    let dir = scratch("ffs");
    let img = dir.join("disk.img");
    let empty = dir.join("empty");
    fs::create_dir(&empty).unwrap();
    run(sbin("makefs")
        .args(["-t", "ffs", "-s", "256m", "-o", "version=1,density=8192"])
        .arg(&img)
        .arg(&empty));
    let f = Features {
        links: true,
        sparse: true,
        wide: 10_000,
        short: false,
        long: 255,
    };
    file_system_round_trip("ffs", &img, f, &ffs_clean);
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn fat_round_trips_through_cp_and_tar() {
    need_kernel!();
    let dir = scratch("fat");
    let img = dir.join("disk.img");
    run(sbin("mkfs.fat")
        .args(["-F", "32", "-C"])
        .arg(&img)
        .arg("262144"));
    // FAT has no links, owners or holes; 10,000 entries fit a FAT32
    // directory.
    let f = Features {
        links: false,
        sparse: false,
        wide: 10_000,
        short: true,
        long: 253,
    };
    // What the round trip leaves out: a name msdosfs would lose.
    let mnt = dir.join("mnt");
    let fs = Rumpfs::start(&img, &mnt, &[]).unwrap();
    let e = fs::write(mnt.join("x".repeat(254)), b"x").unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::ENAMETOOLONG), "{e}");
    let (st, _) = fs.unmount();
    assert!(st.success());
    file_system_round_trip("fat", &img, f, &|img| {
        run(sbin("fsck.fat").arg("-n").arg(img));
    });
    fs::remove_dir_all(&dir).unwrap();
}

fn small_ext2(dir: &Path, size: &str) -> PathBuf {
    let img = dir.join("disk.img");
    run(sbin("mke2fs")
        .args(["-q", "-F", "-t", "ext2"])
        .arg(&img)
        .arg(size));
    img
}

/// The kinds of image the removal and rename tests run on: FAT always,
/// ext2 where the kernel compacts directories safely.
fn churn_images(dir: &Path, size_mb: u32) -> Vec<(&'static str, PathBuf)> {
    let fat = dir.join("fat.img");
    run(sbin("mkfs.fat")
        .args(["-F", "32", "-C"])
        .arg(&fat)
        .arg((size_mb * 1024).to_string()));
    let mut v = vec![("msdos", fat)];
    if rump::DIR_COMPACTION_SAFE {
        let e = dir.join("ext2.img");
        run(sbin("mke2fs")
            .args(["-q", "-F", "-t", "ext2"])
            .arg(&e)
            .arg(format!("{size_mb}M")));
        v.push(("ext2fs", e));
    } else {
        println!(
            "ext2 part skipped: this kernel corrupts ext2 and FFS directories when it compacts them (docs/rumpfs.md)"
        );
    }
    v
}

fn fsck(kind: &str, img: &Path) {
    if kind == "msdos" {
        run(sbin("fsck.fat").arg("-n").arg(img));
    } else {
        e2fsck_clean(img);
    }
}

#[test]
fn sixteen_clients_create_read_and_rename_in_shared_directories() {
    need_kernel!();
    let dir = scratch("clients");
    for (kind, img) in churn_images(&dir, 128) {
        let mnt = dir.join(format!("mnt-{kind}"));
        let fs = Rumpfs::start(&img, &mnt, &["--threads", "8"]).unwrap();
        sixteen_clients(&mnt);
        let (st, log) = fs.unmount();
        assert!(st.success(), "{kind}: {log}");
        fsck(kind, &img);
    }
    fs::remove_dir_all(&dir).unwrap();
}

fn sixteen_clients(mnt: &Path) {
    for d in 0..4 {
        fs::create_dir(mnt.join(format!("shared{d}"))).unwrap();
    }
    let threads: Vec<_> = (0..16u64)
        .map(|t| {
            let mnt = mnt.to_path_buf();
            std::thread::spawn(move || {
                for i in 0..60u64 {
                    let d = mnt.join(format!("shared{}", (t + i) % 4));
                    let data = pattern(
                        t * 1000 + i,
                        1000 + ((t * 7919 + i * 104_729) % 200_000) as usize,
                    );
                    let tmp = d.join(format!("tmp-{t}-{i}"));
                    fs::write(&tmp, &data).unwrap();
                    let done = d.join(format!("done-{t}-{i}"));
                    fs::rename(&tmp, &done).unwrap();
                    assert_eq!(fs::read(&done).unwrap(), data, "{}", done.display());
                    if i % 3 == 0 {
                        fs::remove_file(&done).unwrap();
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    // Everything kept is there, whole, under its final name only.
    let mut kept = 0;
    for d in 0..4 {
        for e in fs::read_dir(mnt.join(format!("shared{d}"))).unwrap() {
            let name = e.unwrap().file_name().into_string().unwrap();
            let (t, i) = name
                .strip_prefix("done-")
                .and_then(|n| n.split_once('-'))
                .unwrap_or_else(|| panic!("unexpected entry {name:?}"));
            let (t, i): (u64, u64) = (t.parse().unwrap(), i.parse().unwrap());
            assert_ne!(i % 3, 0, "{name} was removed");
            let data = pattern(
                t * 1000 + i,
                1000 + ((t * 7919 + i * 104_729) % 200_000) as usize,
            );
            assert_eq!(
                fs::read(mnt.join(format!("shared{d}")).join(&name)).unwrap(),
                data
            );
            kept += 1;
        }
    }
    assert_eq!(kept, 16 * 40);
}

#[test]
fn a_kernel_that_corrupts_directories_is_refused_read_write() {
    need_kernel!();
    if rump::DIR_COMPACTION_SAFE {
        println!("skipped: this kernel compacts directories safely");
        return;
    }
    let dir = scratch("defect");
    let img = small_ext2(&dir, "16M");
    let mnt = dir.join("mnt");
    let e = Rumpfs::start_strict(&img, &mnt, &[])
        .err()
        .expect("refused");
    assert!(e.contains("corrupts FFS and ext2 directories"), "{e}");
    let fs = Rumpfs::start_strict(&img, &mnt, &["--readonly"]).unwrap();
    assert!(mnt.join("lost+found").is_dir());
    drop(fs.unmount());
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_names_and_a_read_only_mount_get_clear_errors() {
    need_kernel!();
    let dir = scratch("names");
    let img = small_ext2(&dir, "16M");
    let mnt = dir.join("mnt");
    let fs = Rumpfs::start(&img, &mnt, &[]).unwrap();
    let e = fs::write(mnt.join("n".repeat(256)), b"x").unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::ENAMETOOLONG), "{e}");
    fs::write(mnt.join("n".repeat(255)), b"x").unwrap();
    fs::create_dir(mnt.join("d")).unwrap();
    fs::write(mnt.join("d/f"), b"x").unwrap();
    let e = fs::remove_dir(mnt.join("d")).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::ENOTEMPTY), "{e}");
    let e = fs::read_dir(mnt.join("d/f")).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::ENOTDIR), "{e}");
    let e = fs::rename(mnt.join("d"), mnt.join("d/f/x")).unwrap_err();
    assert!(
        matches!(e.raw_os_error(), Some(libc::ENOTDIR | libc::EINVAL)),
        "{e}"
    );
    let (st, _) = fs.unmount();
    assert!(st.success());
    let before = fs::read(&img).unwrap();
    let fs = Rumpfs::start(&img, &mnt, &["-r"]).unwrap();
    assert_eq!(fs::read(mnt.join("d/f")).unwrap(), b"x");
    for e in [
        fs::write(mnt.join("d/g"), b"x").unwrap_err(),
        fs::remove_file(mnt.join("d/f")).unwrap_err(),
        fs::OpenOptions::new()
            .write(true)
            .open(mnt.join("d/f"))
            .unwrap_err(),
    ] {
        assert_eq!(e.raw_os_error(), Some(libc::EROFS), "{e}");
    }
    let (st, _) = fs.unmount();
    assert!(st.success());
    assert!(
        fs::read(&img).unwrap() == before,
        "a read-only mount changed the image"
    );
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn corrupted_and_unknown_images_are_refused_at_mount() {
    need_kernel!();
    let dir = scratch("corrupt");
    let mnt = dir.join("mnt");
    // Not a file system at all.
    let junk = dir.join("junk.img");
    fs::write(&junk, pattern(7, 4 << 20)).unwrap();
    let e = Rumpfs::start(&junk, &mnt, &[]).err().expect("junk refused");
    assert!(e.contains("no FFS, ext2 or FAT superblock"), "{e}");
    // An ext2 superblock over garbage: NetBSD's ext2fs refuses it.
    let img = small_ext2(&dir, "16M");
    let mut b = fs::read(&img).unwrap();
    b[2048..1 << 20].copy_from_slice(&pattern(9, (1 << 20) - 2048));
    b[1024 + 24..1024 + 28].copy_from_slice(&40u32.to_le_bytes()); // absurd block size
    fs::write(&img, &b).unwrap();
    let e = Rumpfs::start(&img, &mnt, &[])
        .err()
        .expect("corrupt ext2 refused");
    assert!(e.contains("refused to mount"), "{e}");
    // Forcing the wrong type says what the store looks like.
    let fat = dir.join("fat.img");
    run(sbin("mkfs.fat").arg("-C").arg(&fat).arg("8192"));
    let e = Rumpfs::start(&fat, &mnt, &["-t", "ffs"])
        .err()
        .expect("wrong type refused");
    assert!(e.contains("looks like msdos"), "{e}");
    // Missing stores and bad partitions.
    let e = Rumpfs::start(&dir.join("absent.img"), &mnt, &[])
        .err()
        .unwrap();
    assert!(e.contains("No such file"), "{e}");
    let e = Rumpfs::start(Path::new(&format!("part:2:{}", fat.display())), &mnt, &[])
        .err()
        .unwrap();
    assert!(
        e.contains("no partition 2") || e.contains("partition"),
        "{e}"
    );
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_partition_of_a_disk_image_is_served() {
    need_kernel!();
    let dir = scratch("part");
    let part = small_ext2(&dir, "16M");
    // An MBR disk: partition 1 at sector 2048, the ext2 image in it.
    let disk = dir.join("whole.img");
    let mut d = vec![0u8; 1 << 20];
    let sectors = (fs::metadata(&part).unwrap().len() / 512) as u32;
    d[446 + 4] = 0x83;
    d[446 + 8..446 + 12].copy_from_slice(&2048u32.to_le_bytes());
    d[446 + 12..446 + 16].copy_from_slice(&sectors.to_le_bytes());
    d[510] = 0x55;
    d[511] = 0xaa;
    d.extend(fs::read(&part).unwrap());
    d.extend(vec![0xeeu8; 1 << 20]); // what follows the partition stays as it is
    fs::write(&disk, &d).unwrap();
    let mnt = dir.join("mnt");
    let store = format!("part:1:file:{}", disk.display());
    let fs = Rumpfs::start(Path::new(&store), &mnt, &[]).unwrap();
    fs::write(mnt.join("in-the-partition"), pattern(3, 300_000)).unwrap();
    let (st, log) = fs.unmount();
    assert!(st.success(), "{log}");
    let after = fs::read(&disk).unwrap();
    assert!(
        after[..1 << 20] == d[..1 << 20],
        "the bytes before the partition changed"
    );
    assert!(
        after[after.len() - (1 << 20)..].iter().all(|&b| b == 0xee),
        "the bytes after it changed"
    );
    let p = dir.join("p.img");
    fs::write(&p, &after[1 << 20..after.len() - (1 << 20)]).unwrap();
    e2fsck_clean(&p);
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_full_file_system_answers_enospc_and_loses_nothing_else() {
    need_kernel!();
    let dir = scratch("full");
    for (kind, img) in churn_images(&dir, 34) {
        let mnt = dir.join(format!("mnt-{kind}"));
        let fs = Rumpfs::start(&img, &mnt, &[]).unwrap();
        let keep: Vec<Vec<u8>> = (0..5).map(|i| pattern(100 + i, 100_000)).collect();
        for (i, k) in keep.iter().enumerate() {
            fs::write(mnt.join(format!("keep{i}")), k).unwrap();
        }
        let mut f = fs::File::create(mnt.join("filler")).unwrap();
        let chunk = pattern(1, 1 << 20);
        let err = loop {
            match f.write_all(&chunk) {
                Ok(()) => {}
                Err(e) => break e,
            }
        };
        assert_eq!(err.raw_os_error(), Some(libc::ENOSPC), "{kind}: {err}");
        drop(f);
        for (i, k) in keep.iter().enumerate() {
            assert_eq!(
                &fs::read(mnt.join(format!("keep{i}"))).unwrap(),
                k,
                "{kind}"
            );
        }
        fs::remove_file(mnt.join("filler")).unwrap();
        fs::write(mnt.join("after"), b"room again").unwrap();
        let (st, _) = fs.unmount();
        assert!(st.success());
        fsck(kind, &img);
    }
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn sigterm_unmounts_cleanly() {
    need_kernel!();
    let dir = scratch("sigterm");
    let img = small_ext2(&dir, "16M");
    let mnt = dir.join("mnt");
    let mut fs = Rumpfs::start(&img, &mnt, &[]).unwrap();
    fs::write(mnt.join("f"), pattern(5, 2 << 20)).unwrap();
    fs.signal(libc::SIGTERM);
    let (st, log) = fs.wait();
    assert!(st.success(), "{st}: {log}");
    assert!(log.contains("unmounted ext2fs"), "{log}");
    assert!(!mounted(&mnt));
    e2fsck_clean(&img);
    let fs = Rumpfs::start(&img, &mnt, &["-r"]).unwrap();
    assert_eq!(fs::read(mnt.join("f")).unwrap(), pattern(5, 2 << 20));
    drop(fs.unmount());
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn what_fsync_acknowledged_survives_kill_9_under_sync() {
    need_kernel!();
    let dir = scratch("kill9");
    let img = small_ext2(&dir, "64M");
    let mnt = dir.join("mnt");
    let mut fs = Rumpfs::start(&img, &mnt, &["--sync"]).unwrap();
    // A writer fsyncs file after file and records each acknowledgement;
    // rumpfs is killed in the middle of it.
    let acked = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let writer = {
        let (mnt, acked) = (mnt.clone(), acked.clone());
        std::thread::spawn(move || {
            for i in 0..10_000u64 {
                let Ok(mut f) = fs::File::create(mnt.join(format!("f{i}"))) else {
                    return;
                };
                if f.write_all(&pattern(i, 50_000)).is_err() || f.sync_all().is_err() {
                    return;
                }
                acked.lock().unwrap().push(i);
            }
        })
    };
    while acked.lock().unwrap().len() < 20 {
        std::thread::sleep(Duration::from_millis(10));
    }
    fs.signal(libc::SIGKILL);
    let _ = fs.wait();
    writer.join().unwrap();
    let _ = Command::new("fusermount3")
        .args(["-u", "-z"])
        .arg(&mnt)
        .status();
    let acked = acked.lock().unwrap().clone();
    // fsck repairs what was under way; what was acknowledged is there.
    let st = sbin("e2fsck").arg("-fy").arg(&img).status().unwrap();
    assert!(st.code().is_some_and(|c| c <= 1), "e2fsck -fy: {st}");
    e2fsck_clean(&img);
    let fs = Rumpfs::start(&img, &mnt, &["-r"]).unwrap();
    for i in &acked {
        assert_eq!(
            fs::read(mnt.join(format!("f{i}"))).unwrap(),
            pattern(*i, 50_000),
            "f{i}"
        );
    }
    println!("{} fsync'd files found whole after kill -9", acked.len());
    drop(fs.unmount());
    fs::remove_dir_all(&dir).unwrap();
}
