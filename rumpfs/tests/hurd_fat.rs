//! rumpfs's Hurd front end on FAT (an image made by mkfs.fat): removals
//! and renames through `dir_unlink`, `dir_rmdir` and `dir_rename`, then 16
//! client threads creating, writing, reading back and renaming in shared
//! directories at once, every file read back; `fsys_goaway`, after which
//! nothing is served and `fsck.fat -n` finds the image clean.

#[cfg(rump_kernel)]
mod common;

#[cfg(not(rump_kernel))]
#[test]
fn needs_a_rump_kernel() {
    println!("skipped: RUMP_PREFIX not set");
}

#[cfg(rump_kernel)]
mod served {
    use super::common;

    use std::fs;
    use std::sync::Arc;

    use common::{Hurd, e, missing, run};
    use mach::PortName;
    use mach::ipc::Ipc;
    use machdev::netfs::{errno, oflag, pc};
    use mig_bindings::io;

    const O_RDWR: i32 = oflag::O_READ | oflag::O_WRITE;

    fn content(thread: usize, n: usize) -> Vec<u8> {
        format!("thread {thread} file {n} ")
            .into_bytes()
            .repeat(1 + (thread * 7 + n) % 300)
    }

    /// One client: rename within and across directories, unlink, rmdir.
    fn renames_and_removals(hurd: &Hurd, root: PortName) {
        hurd.mkdir(root, "a", 0o755).unwrap();
        hurd.mkdir(root, "b", 0o755).unwrap();
        let dir_a = hurd.open(root, "a", oflag::O_READ).unwrap();
        let dir_b = hurd.open(root, "b", oflag::O_READ).unwrap();
        let file = hurd
            .open(dir_a, "file.txt", oflag::O_CREAT | O_RDWR)
            .unwrap();
        hurd.write(file, b"moved around", 0).unwrap();
        hurd.rename(dir_a, "file.txt", dir_a, "renamed.txt", false)
            .unwrap();
        hurd.rename(dir_a, "renamed.txt", dir_b, "there.txt", false)
            .unwrap();
        // The open file follows its node.
        assert_eq!(hurd.read(file, 0, 100).unwrap(), b"moved around");
        let moved = hurd.open(dir_b, "there.txt", oflag::O_READ).unwrap();
        assert_eq!(hurd.read(moved, 0, 100).unwrap(), b"moved around");
        assert_eq!(hurd.open(dir_a, "file.txt", 0), Err(e(errno::ENOENT)));
        let other = hurd
            .open(dir_b, "other", oflag::O_CREAT | oflag::O_WRITE)
            .unwrap();
        assert_eq!(
            hurd.rename(dir_b, "there.txt", dir_b, "other", true),
            Err(e(errno::EEXIST))
        );
        hurd.rename(dir_b, "there.txt", dir_b, "other", false)
            .unwrap();
        assert_eq!(hurd.readdir(dir_b, -1).unwrap(), [".", "..", "other"]);
        assert_eq!(hurd.rmdir(root, "b"), Err(e(errno::ENOTEMPTY)));
        assert_eq!(hurd.unlink(dir_b, "nothing"), Err(e(errno::ENOENT)));
        // An open file outlives its name.
        let kept = hurd.open(dir_b, "other", O_RDWR | oflag::O_TRUNC).unwrap();
        hurd.write(kept, b"still here", 0).unwrap();
        hurd.unlink(dir_b, "other").unwrap();
        assert_eq!(hurd.read(kept, 0, 100).unwrap(), b"still here");
        assert_eq!(hurd.stat(kept).unwrap().size, 10);
        hurd.release(kept);
        hurd.rmdir(root, "b").unwrap();
        assert_eq!(hurd.open(root, "b", 0), Err(e(errno::ENOENT)));
        // A directory port of another server is not ours to rename into.
        let foreign = hurd
            .client
            .port_allocate(mach::port::Right::Receive)
            .unwrap();
        let to_foreign = |r| {
            let newdir = (foreign, mach::port::type_name::MAKE_SEND);
            mig_bindings::fs::rename_request(dir_a, r, "x", newdir, "y", false)
        };
        assert_eq!(
            hurd.simple(to_foreign, mig_bindings::fs::ID_RENAME),
            Err(e(errno::EXDEV))
        );
        // dir_mkfile: written before it has a name, then named.
        let m = hurd.call(|r| mig_bindings::fs::mkfile_request(dir_a, r, O_RDWR, 0o644));
        let anon = io::decode_port_reply(m.as_bytes(), mig_bindings::fs::ID_MKFILE).unwrap();
        hurd.write(anon, b"born nameless", 0).unwrap();
        assert_eq!(hurd.readdir(dir_a, -1).unwrap(), [".", ".."]);
        hurd.simple(
            |r| {
                let file = (anon, mach::port::type_name::COPY_SEND);
                mig_bindings::fs::link_request(dir_a, r, file, "named.txt", true)
            },
            mig_bindings::fs::ID_LINK,
        )
        .unwrap();
        let named = hurd.open(dir_a, "named.txt", oflag::O_READ).unwrap();
        assert_eq!(hurd.read(named, 0, 100).unwrap(), b"born nameless");
        // FAT has no symbolic links.
        assert!(
            hurd.make_special(dir_a, "sym", b"/hurd/symlink\0x\0")
                .is_err()
        );
        assert_eq!(hurd.readdir(dir_a, -1).unwrap(), [".", "..", "named.txt"]);
        for port in [dir_a, dir_b, file, moved, other, anon, named] {
            hurd.release(port);
        }
    }

    /// Sixteen clients at once in two shared directories; every file read
    /// back whole under its final name.
    fn sixteen_clients(hurd: &Arc<Hurd>, root: PortName) {
        hurd.mkdir(root, "s0", 0o755).unwrap();
        hurd.mkdir(root, "s1", 0o755).unwrap();
        let threads: Vec<_> = (0..16)
            .map(|t| {
                let hurd = Arc::clone(hurd);
                std::thread::spawn(move || {
                    let shared = hurd
                        .open(root, &format!("s{}", t % 2), oflag::O_READ)
                        .unwrap();
                    for n in 0..12 {
                        let name = format!("t{t}-{n}.tmp");
                        let file = hurd
                            .open(shared, &name, oflag::O_CREAT | oflag::O_EXCL | O_RDWR)
                            .unwrap();
                        let data = content(t, n);
                        assert_eq!(hurd.write(file, &data, -1).unwrap(), data.len() as i64);
                        assert_eq!(hurd.read(file, 0, 1 << 20).unwrap(), data);
                        hurd.release(file);
                        hurd.rename(shared, &name, shared, &format!("t{t}-{n}.dat"), false)
                            .unwrap();
                    }
                    hurd.release(shared);
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        for s in 0..2 {
            let dir = hurd.open(root, &format!("s{s}"), oflag::O_READ).unwrap();
            assert_eq!(hurd.readdir(dir, 7).unwrap().len(), 2 + 8 * 12);
            for t in (s..16).step_by(2) {
                for n in 0..12 {
                    let file = hurd
                        .open(dir, &format!("t{t}-{n}.dat"), oflag::O_READ)
                        .unwrap();
                    let back = hurd.read(file, 0, 1 << 20).unwrap();
                    assert_eq!(back, content(t, n), "t{t}-{n}");
                    hurd.release(file);
                }
            }
            hurd.release(dir);
        }
    }

    #[test]
    fn renames_removals_and_sixteen_clients_on_fat() {
        if let Some(why) = missing(&["mkfs.fat", "fsck.fat"]) {
            println!("skipped: {why}");
            return;
        }
        let dir = std::env::temp_dir().join(format!("rumpfs-hurd-fat-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let img = dir.join("fat.img");
        run(
            "mkfs.fat",
            &["-F", "32", "-C", img.to_str().unwrap(), "65536"],
        );
        let hurd = Arc::new(Hurd::serve(&img, false));
        let root = hurd.root_as(&[0], &[0], oflag::O_READ).unwrap();
        renames_and_removals(&hurd, root);
        // FAT's limits as io_pathconf tells them: 32-bit sizes, names as
        // long as NetBSD's msdosfs finds them again.
        let pathconf = |name| {
            let m = hurd.call(|r| io::int32_request(root, r, io::ID_PATHCONF, name));
            io::decode_int32_reply(m.as_bytes(), io::ID_PATHCONF)
        };
        assert_eq!(pathconf(pc::FILESIZEBITS), Ok(33));
        assert_eq!(pathconf(pc::NAME_MAX), Ok(253));
        sixteen_clients(&hurd, root);
        hurd.release(root);
        hurd.goaway().unwrap();
        // Nothing is served after fsys_goaway.
        let gone = mig_bindings::rpc::rpc(&hurd.client, |r| {
            mig_bindings::fsys::getroot_request(hurd.control, r, (PortName::NULL, 0), 0)
        });
        assert!(gone.is_err(), "{gone:?}");
        run("fsck.fat", &["-n", img.to_str().unwrap()]);
        fs::remove_dir_all(&dir).unwrap();
    }
}
