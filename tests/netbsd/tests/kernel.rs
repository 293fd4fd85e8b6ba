//! The NetBSD rump kernel on this project's hypercall crate: boot, etfs
//! block devices, and file systems written, unmounted, remounted and read
//! back. Without a kernel each test prints "skipped: `RUMP_PREFIX` not set".

#![cfg_attr(not(rump_kernel_linked), allow(unused_imports))]

use netbsd_tests::{kernel, pattern, patterned_image, run, scratch};

#[test]
fn rump_init_runs_on_the_hypercall_crate() {
    let Some(_k) = kernel() else { return };
    // rump_init handed its upcalls to this project's rumpuser_init.
    assert!(hypercall::sched::kernel().is_some());
    #[cfg(rump_kernel_linked)]
    assert!(!rump::COMPONENTS.split(' ').any(|c| c == "rumpuser"));
    // NetBSD's PCI bus probed bus 0 through rumpcomp_pci_confread (every
    // function absent: the tests hand it none).
    #[cfg(rump_component = "rumpdev_pci")]
    assert!(
        hypercall::pci::rump::conf_reads() >= 32,
        "{} configuration reads",
        hypercall::pci::rump::conf_reads()
    );
}

/// Without a kernel, every kernel test still runs and says it was skipped.
#[cfg(not(rump_kernel_linked))]
mod without_kernel {
    macro_rules! skipped {
        ($($name:ident),* $(,)?) => {$(
            #[test]
            fn $name() {
                assert!(super::kernel().is_none());
            }
        )*};
    }
    skipped!(
        etfs_block_device_reads_and_writes_whole_transfers,
        missing_devices_and_paths_are_clean_errors,
        ffs_image_survives_unmount_and_remount,
        msdos_image_survives_unmount_and_remount,
    );
}

#[cfg(rump_kernel_linked)]
mod with_kernel {
    use rump::{EtfsType, RumpError, oflags};

    use super::*;

    const MIB: usize = 1 << 20;

    #[test]
    fn etfs_block_device_reads_and_writes_whole_transfers() {
        let Some(k) = kernel() else { return };
        let dir = scratch("etfs");
        let img = dir.join("disk.img");
        patterned_image(&img, 8 * MIB);
        let etfs = k
            .etfs_register("/dev/etfs_rw", &img, EtfsType::Blk)
            .expect("etfs register");
        let fd = k
            .open("/dev/etfs_rw", oflags::RDWR, 0)
            .expect("open block device");

        // Reads of 512 B .. 1 MiB at various offsets see the host bytes.
        for (off, len) in [
            (0u64, 512usize),
            (4096, 4096),
            (MIB as u64, MIB),
            (7 * MIB as u64, MIB),
        ] {
            let mut buf = vec![0u8; len];
            assert_eq!(fd.pread(&mut buf, off).unwrap(), len);
            assert!(buf == pattern(off, len, 0), "read mismatch at {off}+{len}");
        }

        // Writes, read back through the kernel and then on the host.
        let data = pattern(3 * MIB as u64, 256 * 1024, 0x5a);
        assert_eq!(fd.pwrite(&data, 3 * MIB as u64).unwrap(), data.len());
        let mut back = vec![0u8; data.len()];
        assert_eq!(fd.pread(&mut back, 3 * MIB as u64).unwrap(), data.len());
        assert!(back == data);
        fd.fsync().expect("fsync");

        // Past the end: nothing read, or an error; never data.
        let mut tail = vec![0u8; 4096];
        match fd.pread(&mut tail, 8 * MIB as u64) {
            Ok(n) => assert_eq!(n, 0),
            Err(e) => assert!(e.errno().is_some(), "{e}"),
        }
        fd.close().expect("close");
        etfs.remove().expect("etfs remove");

        let host = std::fs::read(&img).unwrap();
        assert!(
            host[3 * MIB..3 * MIB + data.len()] == data[..],
            "write did not reach the host image"
        );
        assert!(
            host[..3 * MIB] == pattern(0, 3 * MIB, 0)[..],
            "bytes before the write changed"
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn missing_devices_and_paths_are_clean_errors() {
        let Some(k) = kernel() else { return };
        let e = k
            .open("/dev/no_such_device", oflags::RDONLY, 0)
            .unwrap_err();
        assert_eq!(e.errno().map(|e| e.0), Some(2), "{e}");
        let io: std::io::Error = e.into();
        assert_eq!(io.kind(), std::io::ErrorKind::NotFound);
        let missing = std::path::Path::new("/nonexistent/image.img");
        match k.etfs_register("/dev/etfs_missing", missing, EtfsType::Blk) {
            Err(RumpError::Kernel { errno, .. }) => assert_eq!(errno.0, 2),
            other => panic!("expected ENOENT, got {other:?}"),
        }
        assert!(matches!(
            k.open("/dev/a\0b", oflags::RDONLY, 0),
            Err(RumpError::Nul(_))
        ));
    }

    /// Registers `image`, mounts it, writes a file, unmounts, mounts again,
    /// reads the file back, runs `also` while mounted, unmounts.
    fn remount_cycle(
        fstype: &str,
        key: &str,
        mnt: &str,
        image: &std::path::Path,
        mount: &dyn Fn(&str) -> Result<(), RumpError>,
        also: &dyn Fn(&str),
    ) {
        let Some(k) = kernel() else { return };
        let etfs = k
            .etfs_register(key, image, EtfsType::Blk)
            .expect("etfs register");
        k.mkdir(mnt, 0o755).expect("mkdir mount point");
        mount(mnt).unwrap_or_else(|e| panic!("mount {fstype}: {e}"));

        let file = format!("{mnt}/written.bin");
        let data = pattern(0, 300 * 1024 + 17, 0x33);
        let f = k
            .open(&file, oflags::RDWR | oflags::CREAT | oflags::TRUNC, 0o644)
            .expect("create file");
        let mut off = 0;
        while off < data.len() {
            off += f.pwrite(&data[off..], off as u64).expect("write file");
        }
        f.close().expect("close file");
        k.unmount(mnt, 0).expect("unmount");

        mount(mnt).unwrap_or_else(|e| panic!("remount {fstype}: {e}"));
        let f = k
            .open(&file, oflags::RDONLY, 0)
            .expect("open after remount");
        let mut back = vec![0u8; data.len() + 100];
        let mut got = 0;
        loop {
            let n = f.pread(&mut back[got..], got as u64).expect("read back");
            if n == 0 {
                break;
            }
            got += n;
        }
        assert_eq!(got, data.len());
        assert!(
            back[..got] == data[..],
            "{fstype}: data differs after remount"
        );
        f.close().unwrap();
        also(mnt);
        k.unmount(mnt, 0).expect("final unmount");
        etfs.remove().expect("etfs remove");
    }

    #[test]
    #[cfg(rump_component = "rumpfs_ffs")]
    fn ffs_image_survives_unmount_and_remount() {
        let dir = scratch("ffs");
        let content = dir.join("content");
        std::fs::create_dir_all(&content).unwrap();
        std::fs::write(content.join("hello.txt"), b"made by makefs\n").unwrap();
        let img = dir.join("ffs.img");
        run(
            "makefs",
            &[
                "-t",
                "ffs",
                "-s",
                "16m",
                "-o",
                "version=2",
                img.to_str().unwrap(),
                content.to_str().unwrap(),
            ],
        );
        let Some(k) = kernel() else { return };
        let dev = std::ffi::CString::new("/dev/etfs_ffs").unwrap();
        let mount = |mnt: &str| {
            let mut args = rump::mount::UfsArgs {
                fspec: dev.as_ptr(),
            };
            // SAFETY: ufs_args is FFS's argument structure; `dev` outlives the call.
            unsafe { k.mount("ffs", mnt, 0, &mut args) }
        };
        // The file makefs put there is readable too.
        let made_by_makefs = |mnt: &str| {
            let f = k
                .open(&format!("{mnt}/hello.txt"), oflags::RDONLY, 0)
                .unwrap();
            let mut b = [0u8; 64];
            let n = f.pread(&mut b, 0).unwrap();
            assert_eq!(&b[..n], b"made by makefs\n");
        };
        remount_cycle(
            "ffs",
            "/dev/etfs_ffs",
            "/mnt_ffs",
            &img,
            &mount,
            &made_by_makefs,
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    #[cfg(rump_component = "rumpfs_msdos")]
    fn msdos_image_survives_unmount_and_remount() {
        let dir = scratch("msdos");
        let img = dir.join("fat.img");
        run(
            "mkfs.fat",
            &["-C", "-F", "16", img.to_str().unwrap(), "16384"],
        );
        let Some(k) = kernel() else { return };
        let dev = std::ffi::CString::new("/dev/etfs_fat").unwrap();
        let mount = |mnt: &str| {
            let mut args = rump::mount::MsdosfsArgs::new(dev.as_ptr(), 0o755);
            // SAFETY: msdosfs_args is msdos's argument structure; `dev` outlives the call.
            unsafe { k.mount("msdos", mnt, 0, &mut args) }
        };
        remount_cycle("msdos", "/dev/etfs_fat", "/mnt_fat", &img, &mount, &|_| {});
        run("fsck.fat", &["-n", img.to_str().unwrap()]);
        let _ = std::fs::remove_dir_all(dir);
    }
}
