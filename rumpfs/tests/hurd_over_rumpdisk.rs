//! rumpfs over rumpdisk, both servers in one test on the loopback
//! transport: rumpdisk's disk driver serves a partitioned disk image as
//! Mach device `hd0`; rumpfs mounts `part:1:device:hd0` (its blocks going
//! out as `device_read`/`device_write` RPCs) and serves it to a Hurd
//! client, which creates, writes, renames and reads back. After
//! `fsys_goaway`, `fsck.fat -n` finds the partition clean and the data is
//! in it. Missing devices and partitions are clear errors.

#[cfg(rump_kernel)]
mod common;

#[cfg(not(rump_kernel))]
#[test]
fn needs_a_rump_kernel() {
    println!("skipped: RUMP_PREFIX not set");
}

#[cfg(rump_kernel)]
mod served {
    use std::collections::BTreeMap;
    use std::fs;
    use std::sync::Arc;

    use super::common::{Hurd, missing, run};
    use diskdev::device::Disks;
    use diskdev::disk::Disk;
    use diskdev::image::{Cache, Image};
    use machdev::PoolConfig;
    use machdev::loopback::LocalServer;
    use machdev::netfs::oflag;
    use rumpfs::store::{DeviceMaster, Store};
    use rumpfs::volume::{self, Volume};

    const START: u64 = 2048;

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 + i / 4096) as u8).collect()
    }

    /// A disk with an MBR and one FAT32 partition from sector 2048.
    fn make_disk(dir: &std::path::Path) -> (std::path::PathBuf, u64) {
        let fat = dir.join("fat.img");
        let sectors: u64 = 64 * 1024 * 2;
        run(
            "mkfs.fat",
            &[
                "-F",
                "32",
                "-C",
                fat.to_str().unwrap(),
                &(sectors / 2).to_string(),
            ],
        );
        let mut disk = vec![0u8; (START * 512) as usize];
        let entry = &mut disk[446..462];
        entry[4] = 0x0c;
        entry[8..12].copy_from_slice(&(START as u32).to_le_bytes());
        entry[12..16].copy_from_slice(&(sectors as u32).to_le_bytes());
        disk[510] = 0x55;
        disk[511] = 0xaa;
        disk.extend(fs::read(&fat).unwrap());
        let path = dir.join("disk.img");
        fs::write(&path, disk).unwrap();
        (path, sectors)
    }

    fn options(store: &str, master: &DeviceMaster) -> volume::Options {
        volume::Options {
            store: Store::parse(store).unwrap(),
            fstype: None,
            readonly: false,
            sync: false,
            accept_kernel_defect: false,
            device_master: Some(master.clone()),
        }
    }

    #[test]
    fn rumpfs_serves_a_partition_of_a_disk_rumpdisk_serves() {
        if let Some(why) = missing(&["mkfs.fat", "fsck.fat"]) {
            println!("skipped: {why}");
            return;
        }
        let dir = std::env::temp_dir().join(format!("rumpfs-over-rumpdisk-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let (disk_path, sectors) = make_disk(&dir);

        // rumpdisk's driver serving the image as hd0.
        let image: Arc<dyn Disk> =
            Arc::new(Image::open(&disk_path, false, Cache::Writeback).unwrap());
        let disks = Disks::new(BTreeMap::from([("hd0".to_owned(), image)]));
        let rumpdisk = LocalServer::start(vec![Arc::new(disks)], PoolConfig::default()).unwrap();
        let (task, master_port) = rumpdisk.client().unwrap();
        let master = DeviceMaster {
            ipc: Arc::new(task),
            port: master_port,
        };

        // Names that are not there.
        let e = Volume::mount(&options("device:hd9", &master)).unwrap_err();
        assert!(e.to_string().contains("device:hd9"), "{e}");
        let e = Volume::mount(&options("part:2:device:hd0", &master)).unwrap_err();
        assert!(e.to_string().contains("no partition 2"), "{e}");

        let vol = Volume::mount(&options("part:1:device:hd0", &master)).unwrap();
        let h = Hurd::serve_volume(vol, Arc::clone(rumpdisk.kernel()));
        let root = h.root_as(&[0], &[0], oflag::O_READ).unwrap();
        h.mkdir(root, "docs", 0o755).unwrap();
        let f = h
            .open(
                root,
                "docs/draft.bin",
                oflag::O_CREAT | oflag::O_READ | oflag::O_WRITE,
            )
            .unwrap();
        let data = pattern(1 << 20);
        assert_eq!(h.write(f, &data, 0).unwrap(), 1 << 20);
        let docs = h.open(root, "docs", oflag::O_READ).unwrap();
        h.rename(docs, "draft.bin", root, "final.bin", false)
            .unwrap();
        let g = h.open(root, "final.bin", oflag::O_READ).unwrap();
        assert_eq!(h.read(g, 0, 2 << 20).unwrap(), data);
        for p in [root, f, docs, g] {
            h.release(p);
        }
        h.goaway().unwrap();

        // What rumpfs wrote went through hd0 into the partition.
        let raw = fs::read(&disk_path).unwrap();
        let partition = &raw[(START * 512) as usize..((START + sectors) * 512) as usize];
        let fat = dir.join("part.img");
        fs::write(&fat, partition).unwrap();
        run("fsck.fat", &["-n", fat.to_str().unwrap()]);
        assert!(
            partition.chunks(512).any(|s| s == &data[..512]),
            "the file's first sector is in the partition"
        );
        fs::remove_dir_all(&dir).unwrap();
    }
}
