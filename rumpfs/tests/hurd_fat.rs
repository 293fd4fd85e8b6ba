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
    use machdev::netfs::{errno, oflag};

    const O_RDWR: i32 = oflag::O_READ | oflag::O_WRITE;

    fn content(thread: usize, n: usize) -> Vec<u8> {
        format!("thread {thread} file {n} ")
            .into_bytes()
            .repeat(1 + (thread * 7 + n) % 300)
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
        let h = Arc::new(Hurd::serve(&img, false));
        let root = h.root_as(&[0], &[0], oflag::O_READ).unwrap();

        // One client: rename within and across directories, unlink, rmdir.
        h.mkdir(root, "a", 0o755).unwrap();
        h.mkdir(root, "b", 0o755).unwrap();
        let a = h.open(root, "a", oflag::O_READ).unwrap();
        let b = h.open(root, "b", oflag::O_READ).unwrap();
        let f = h.open(a, "file.txt", oflag::O_CREAT | O_RDWR).unwrap();
        h.write(f, b"moved around", 0).unwrap();
        h.rename(a, "file.txt", a, "renamed.txt", false).unwrap();
        h.rename(a, "renamed.txt", b, "there.txt", false).unwrap();
        // The open file follows its node.
        assert_eq!(h.read(f, 0, 100).unwrap(), b"moved around");
        let g = h.open(b, "there.txt", oflag::O_READ).unwrap();
        assert_eq!(h.read(g, 0, 100).unwrap(), b"moved around");
        assert_eq!(h.open(a, "file.txt", 0), Err(e(errno::ENOENT)));
        let other = h.open(b, "other", oflag::O_CREAT | oflag::O_WRITE).unwrap();
        assert_eq!(
            h.rename(b, "there.txt", b, "other", true),
            Err(e(errno::EEXIST))
        );
        h.rename(b, "there.txt", b, "other", false).unwrap();
        assert_eq!(h.readdir(b, -1).unwrap(), [".", "..", "other"]);
        assert_eq!(h.rmdir(root, "b"), Err(e(errno::ENOTEMPTY)));
        assert_eq!(h.unlink(b, "nothing"), Err(e(errno::ENOENT)));
        h.unlink(b, "other").unwrap();
        h.rmdir(root, "b").unwrap();
        assert_eq!(h.open(root, "b", 0), Err(e(errno::ENOENT)));
        // A directory port of another server is not ours to rename into.
        let foreign = h.client.port_allocate(mach::port::Right::Receive).unwrap();
        assert_eq!(
            h.simple(
                |r| mig_bindings::fs::rename_request(
                    a,
                    r,
                    "x",
                    (foreign, mach::port::type_name::MAKE_SEND),
                    "y",
                    false
                ),
                mig_bindings::fs::ID_RENAME
            ),
            Err(e(errno::EXDEV))
        );
        for p in [a, f, g, other] {
            h.release(p);
        }

        // Sixteen clients at once, two shared directories.
        h.mkdir(root, "s0", 0o755).unwrap();
        h.mkdir(root, "s1", 0o755).unwrap();
        let threads: Vec<_> = (0..16)
            .map(|t| {
                let h = Arc::clone(&h);
                std::thread::spawn(move || {
                    let shared = h.open(root, &format!("s{}", t % 2), oflag::O_READ).unwrap();
                    for n in 0..12 {
                        let name = format!("t{t}-{n}.tmp");
                        let f = h
                            .open(shared, &name, oflag::O_CREAT | oflag::O_EXCL | O_RDWR)
                            .unwrap();
                        let data = content(t, n);
                        assert_eq!(h.write(f, &data, -1).unwrap(), data.len() as i64);
                        assert_eq!(h.read(f, 0, 1 << 20).unwrap(), data);
                        h.release(f);
                        h.rename(shared, &name, shared, &format!("t{t}-{n}.dat"), false)
                            .unwrap();
                    }
                    h.release(shared);
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        for s in 0..2 {
            let d = h.open(root, &format!("s{s}"), oflag::O_READ).unwrap();
            let mut names = h.readdir(d, 7).unwrap();
            names.sort();
            assert_eq!(names.len(), 2 + 8 * 12);
            for t in (s..16).step_by(2) {
                for n in 0..12 {
                    let f = h.open(d, &format!("t{t}-{n}.dat"), oflag::O_READ).unwrap();
                    assert_eq!(h.read(f, 0, 1 << 20).unwrap(), content(t, n), "t{t}-{n}");
                    h.release(f);
                }
            }
            h.release(d);
        }
        h.release(root);
        h.goaway().unwrap();
        // Nothing is served after fsys_goaway.
        let gone = mig_bindings::rpc::rpc(&h.client, |r| {
            mig_bindings::fsys::getroot_request(h.control, r, (PortName::NULL, 0), 0)
        });
        assert!(gone.is_err(), "{gone:?}");
        run("fsck.fat", &["-n", img.to_str().unwrap()]);
        fs::remove_dir_all(&dir).unwrap();
    }
}
